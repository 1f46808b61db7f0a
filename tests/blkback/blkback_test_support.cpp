#include "blkback_test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pvkit/evtchn.h>
#include <pvkit/ring.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/store_layout.hpp"

namespace pvkit::blkback::test {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string blkback_binary() { return PVKIT_BLKBACK_PATH; }

namespace {

std::chrono::milliseconds left_until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? std::chrono::milliseconds(0) : left;
}

void check(bool ok, const std::string& what) {
    if (!ok)
        throw std::runtime_error(what);
}

template <class T>
void check_store(const pvkit::store::StoreResult<T>& r, const std::string& what) {
    if (!r)
        throw std::runtime_error(what + ": " + std::string(pvkit::store::to_string(r.error())));
}

} // namespace

// ============================================================================
// Processes

Blkback::Blkback(std::string store_socket, std::string handoff_socket, std::vector<std::string> extra)
    : m_store(std::move(store_socket)), m_handoff(std::move(handoff_socket)), m_extra(std::move(extra)) {
    start();
}

Blkback::~Blkback() {
    if (m_child) {
        ::kill(m_child->pid(), SIGKILL);
        (void)m_child->wait(kWait);
    }
}

void Blkback::start() {
    if (m_child)
        throw std::logic_error("Blkback::start: already running");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        pvkit::throw_errno("pipe2");
    UniqueFd rd(fds[0]);
    UniqueFd wr(fds[1]);
    std::vector<std::string> args = {"--store-socket", m_store, "--handoff-socket", m_handoff,
                                     "--ready-fd", std::to_string(wr.get()), "--close-timeout-ms", "3000"};
    args.insert(args.end(), m_extra.begin(), m_extra.end());
    m_child.emplace(pvkit::test::ChildProcess::spawn(blkback_binary(), args, wr.get()));
    wr.reset();
    std::string got;
    auto deadline = Clock::now() + kWait;
    while (got.find('\n') == std::string::npos) {
        auto left = left_until(deadline);
        if (left.count() <= 0)
            throw std::runtime_error("pvkit-blkback did not become ready in time");
        pollfd pfd{rd.get(), POLLIN, 0};
        int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char buf[64];
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            std::optional<int> status = m_child->wait(kWait);
            m_child.reset();
            throw std::runtime_error("pvkit-blkback exited before it was ready: " +
                                     (status ? pvkit::test::describe_wait_status(*status) : "hung"));
        }
        got.append(buf, static_cast<std::size_t>(n));
    }
    if (got != "READY\n")
        throw std::runtime_error("pvkit-blkback wrote '" + got + "' on its ready descriptor");
}

int Blkback::stop() {
    if (!m_child)
        throw std::logic_error("Blkback::stop: not running");
    ::kill(m_child->pid(), SIGTERM);
    std::optional<int> status = m_child->wait(kWait);
    m_child.reset();
    if (!status)
        throw std::runtime_error("pvkit-blkback did not stop on SIGTERM");
    return *status;
}

void Blkback::kill9() {
    if (!m_child)
        throw std::logic_error("Blkback::kill9: not running");
    ::kill(m_child->pid(), SIGKILL);
    (void)m_child->wait(kWait);
    m_child.reset();
}

void Blkback::pause() {
    if (!m_child)
        throw std::logic_error("Blkback::pause: not running");
    ::kill(m_child->pid(), SIGSTOP);
}

bool Blkback::alive() {
    if (!m_child)
        return false;
    siginfo_t info{};
    // WNOWAIT leaves the child to be reaped by ChildProcess.
    if (::waitid(P_PID, static_cast<id_t>(m_child->pid()), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return false;
    return info.si_pid == 0;
}

Bench::Bench(std::vector<std::string> blkback_extra)
    : store(), blkback(store.socket(), (dir.path() / "blkback.sock").string(), std::move(blkback_extra)) {}

// ============================================================================
// Images and the toolstack

std::string backend_dir(pvkit_domid_t domid, std::uint32_t devid) {
    return "/local/domain/0/backend/vbd/" + std::to_string(domid) + "/" + std::to_string(devid);
}

std::string frontend_dir(pvkit_domid_t domid, std::uint32_t devid) {
    return "/local/domain/" + std::to_string(domid) + "/device/vbd/" + std::to_string(devid);
}

bool wait_node(StoreClient& c, const std::string& path, const std::string& value) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    (void)c.watch(path, "wait");
    while (std::chrono::steady_clock::now() < deadline) {
        auto v = c.read(path);
        if (v && *v == value)
            return true;
        (void)c.wait_for_event(std::chrono::milliseconds(200));
    }
    return false;
}

DiskSpec image_disk(const Bench& b, pvkit_domid_t domid, const std::string& name,
                    std::uint64_t bytes) {
    DiskSpec s;
    s.domid = domid;
    s.devid = 51712;
    s.image = b.image(name);
    make_image(s.image, bytes);
    return s;
}

void make_image(const std::string& path, std::uint64_t bytes, std::uint8_t fill) {
    UniqueFd fd(::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600));
    if (!fd.valid())
        pvkit::throw_errno("create " + path);
    std::vector<std::uint8_t> chunk(1 << 20, fill);
    std::uint64_t done = 0;
    while (done < bytes) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), bytes - done));
        ssize_t w = ::pwrite(fd.get(), chunk.data(), n, static_cast<off_t>(done));
        if (w <= 0)
            pvkit::throw_errno("write " + path);
        done += static_cast<std::uint64_t>(w);
    }
}

std::vector<std::byte> read_image(const std::string& path, std::uint64_t offset, std::size_t len) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        pvkit::throw_errno("open " + path);
    std::vector<std::byte> out(len);
    std::size_t done = 0;
    while (done < len) {
        ssize_t r = ::pread(fd.get(), out.data() + done, len - done, static_cast<off_t>(offset + done));
        if (r <= 0)
            throw std::runtime_error("short read of " + path);
        done += static_cast<std::size_t>(r);
    }
    return out;
}

std::uint64_t allocated_bytes(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        pvkit::throw_errno("stat " + path);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

void attach_disk(StoreClient& dom0, const DiskSpec& spec, pid_t frontend_pid) {
    using namespace pvkit::toolstack;
    DiskConfig disk;
    disk.devid = spec.devid;
    disk.path = spec.image;
    disk.mode = spec.read_only ? DiskMode::kRead : DiskMode::kWrite;
    disk.sector_size = spec.sector_size;
    disk.max_ring_page_order = spec.max_ring_page_order;
    BlkbackOptions options;
    options.max_indirect_segments = spec.max_indirect_segments;
    options.feature_flush_cache = spec.flush;
    options.feature_discard = spec.discard;
    auto ops = disk_attach_ops(spec.domid, disk, options);
    check(ops.ok(), "disk_attach_ops failed");
    for (int attempt = 0; attempt < 16; ++attempt) {
        auto tx = dom0.transaction_start();
        check_store(tx, "transaction_start");
        // handoff.hpp's credential check: the toolstack (or libpvkit-front
        // when it registers a host-process domain) writes the pid.
        check_store(dom0.write(domain_path(spec.domid) + "/pid", std::to_string(frontend_pid), *tx), "write pid");
        for (const StoreOp& op : *ops) {
            if (op.kind == StoreOp::Kind::kMkdir)
                check_store(dom0.mkdir(op.path, *tx), "mkdir " + op.path);
            else
                check_store(dom0.write(op.path, op.value, *tx), "write " + op.path);
            std::vector<std::string_view> texts(op.perms.begin(), op.perms.end());
            auto perms = pvkit::store::parse_perms(texts);
            check(perms.has_value(), "bad perms in layout");
            check_store(dom0.set_perms(op.path, *perms, *tx), "set_perms " + op.path);
        }
        const std::string back = backend_dir(spec.domid, spec.devid);
        for (const auto& [node, value] : spec.backend_overrides) {
            if (value == "<rm>")
                check_store(dom0.rm(back + "/" + node, *tx), "rm override");
            else
                check_store(dom0.write(back + "/" + node, value, *tx), "write override");
        }
        auto end = dom0.transaction_end(*tx, true);
        if (end)
            return;
        if (end.error() != pvkit::store::StoreError::kAgain)
            check_store(end, "transaction_end");
    }
    throw std::runtime_error("attach_disk: too many transaction conflicts");
}

void detach_disk(StoreClient& dom0, const DiskSpec& spec) {
    const std::string back = backend_dir(spec.domid, spec.devid);
    auto tx = dom0.transaction_start();
    check_store(tx, "transaction_start");
    check_store(dom0.write(back + "/online", "0", *tx), "online");
    check_store(dom0.write(back + "/state", "5", *tx), "state");
    check_store(dom0.transaction_end(*tx, true), "transaction_end");
}

std::vector<std::byte> pattern_block(std::uint64_t block, std::uint64_t version) {
    std::vector<std::byte> out(PVKIT_PAGE_SIZE);
    std::uint64_t x = block * 0x9E3779B97F4A7C15ull ^ (version + 1) * 0xC2B2AE3D27D4EB4Full;
    for (std::size_t i = 0; i < out.size(); i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::uint64_t v = x ^ block ^ (version << 40);
        std::memcpy(out.data() + i, &v, 8);
    }
    return out;
}

// ============================================================================
// TestFrontend

TestFrontend::TestFrontend(const std::string& store_socket, DiskSpec spec, Options options)
    : m_store_socket(store_socket), m_spec(std::move(spec)), m_options(options),
      m_back(backend_dir(m_spec.domid, m_spec.devid)), m_front(frontend_dir(m_spec.domid, m_spec.devid)) {
    std::string detail;
    auto c = StoreClient::connect(store_socket, kWait, &detail);
    check(c.ok(), "frontend cannot connect to the store: " + detail);
    m_store.emplace(std::move(c.value()));
    m_store->set_reply_timeout(kWait);
    // The frontend speaks for its own domain only, as a guest would.
    check_store(m_store->restrict(m_spec.domid), "restrict");
    check_store(m_store->watch(m_back + "/state", "backend-state"), "watch backend state");
    m_pool = std::make_unique<GrantPool>(GrantPool::create(m_spec.domid, m_options.data_frames, m_options.grants));
    m_table = std::make_unique<GrantTable>(*m_pool);
    for (std::uint32_t f = m_pool->layout().data_first; f < m_pool->layout().nr_frames; ++f)
        m_free_frames.push_back(f);
}

TestFrontend::~TestFrontend() = default;

std::optional<std::string> TestFrontend::read_backend(const std::string& name) {
    auto r = m_store->read(m_back + "/" + name);
    if (!r)
        return std::nullopt;
    return std::move(r.value());
}

std::optional<std::string> TestFrontend::backend_node(const std::string& name) { return read_backend(name); }

void TestFrontend::write_front(const std::string& name, const std::string& value) {
    check_store(m_store->write(m_front + "/" + name, value), "frontend write " + name);
}

void TestFrontend::set_state(XenbusState s) { write_front("state", pvkit::toolstack::format_xenbus_state(s)); }

XenbusState TestFrontend::backend_state() {
    auto v = read_backend("state");
    if (!v)
        return XenbusState::kUnknown;
    return pvkit::toolstack::parse_xenbus_state(*v).value_or(XenbusState::kUnknown);
}

void TestFrontend::pump_store() {
    while (m_store->poll_event()) {
    }
}

bool TestFrontend::wait_backend_state(XenbusState s, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        pump_store();
        if (backend_state() == s)
            return true;
        auto left = left_until(deadline);
        if (left.count() <= 0)
            return false;
        (void)m_store->wait_for_event(std::min(left, std::chrono::milliseconds(100)));
    }
}

std::uint32_t TestFrontend::alloc_frame() {
    check(!m_free_frames.empty(), "test frontend: out of data frames");
    std::uint32_t f = m_free_frames.back();
    m_free_frames.pop_back();
    return f;
}

void TestFrontend::free_frame(std::uint32_t frame) { m_free_frames.push_back(frame); }

int TestFrontend::prepare_and_handoff() {
    check(wait_backend_state(XenbusState::kInitWait), "backend did not reach InitWait");
    auto num = [&](const char* name) -> std::uint64_t {
        auto v = read_backend(name);
        check(v.has_value(), std::string("backend node missing: ") + name);
        return std::stoull(*v);
    };
    m_sectors = num("sectors");
    m_sector_size = static_cast<std::uint32_t>(num("sector-size"));
    m_max_indirect = static_cast<std::uint32_t>(num("feature-max-indirect-segments"));
    m_max_order = static_cast<std::uint32_t>(num("max-ring-page-order"));
    auto sock = read_backend("handoff-socket");
    check(sock.has_value(), "backend did not publish handoff-socket");

    // A fresh ring: 2^order consecutive frames, granted read-write.
    const std::uint32_t order = std::min(m_options.ring_order, m_max_order);
    const std::uint32_t pages = 1u << order;
    std::set<std::uint32_t> free(m_free_frames.begin(), m_free_frames.end());
    std::optional<std::uint32_t> first;
    for (std::uint32_t f : free) {
        bool run = true;
        for (std::uint32_t i = 0; i < pages && run; ++i)
            run = free.count(f + i) != 0;
        if (run) {
            first = f;
            break;
        }
    }
    check(first.has_value(), "no consecutive frames for the ring");
    m_ring_frames.clear();
    m_ring_grants.clear();
    for (std::uint32_t i = 0; i < pages; ++i) {
        std::uint32_t f = *first + i;
        m_free_frames.erase(std::find(m_free_frames.begin(), m_free_frames.end(), f));
        m_ring_frames.push_back(f);
    }
    auto ring = FrontRing<pvkit_blkif_sring_entry>::init(
        std::span(m_pool->frame_ptr(*first), std::size_t{pages} * PVKIT_PAGE_SIZE));
    check(ring.ok(), "FrontRing::init failed");
    m_ring.emplace(std::move(ring.value()));
    m_inflight = std::make_unique<InFlightTable<std::uint64_t>>(m_ring->nr_ents());
    for (std::uint32_t f : m_ring_frames) {
        auto g = m_table->grant(PVKIT_DOMID_HOST, f, GrantAccess::kReadWrite);
        check(g.ok(), "cannot grant ring frame");
        m_ring_grants.push_back(*g);
    }

    // A fresh event channel (a new port each time, as after a reconnect).
    EventChannelFds fds = make_event_channel_fds();
    UniqueFd to_backend = pvkit::test::dup_fd(fds.to_backend.get());
    UniqueFd to_frontend = pvkit::test::dup_fd(fds.to_frontend.get());
    m_channel = EventChannel::frontend_end(fds);
    m_port = m_port % PVKIT_EVTCHN_MAX_PORT + 1;

    // Values before the hand-off and the state (contract in docs/blkback.md).
    for (const char* stale : {"ring-ref", "ring-page-order"})
        (void)m_store->rm(m_front + "/" + stale);
    for (std::uint32_t i = 0; i < 16; ++i)
        (void)m_store->rm(m_front + "/ring-ref" + std::to_string(i));
    if (order == 0) {
        write_front("ring-ref", std::to_string(m_ring_grants[0]));
    } else {
        write_front("ring-page-order", std::to_string(order));
        for (std::uint32_t i = 0; i < pages; ++i)
            write_front("ring-ref" + std::to_string(i), std::to_string(m_ring_grants[i]));
    }
    write_front("event-channel", std::to_string(m_port));
    write_front("protocol", "x86_64-abi");

    HandoffRequest req;
    req.frontend_domid = m_spec.domid;
    req.devid = m_spec.devid;
    req.type = "vbd";
    req.ports = {m_port};
    req.fds.push_back(pvkit::test::dup_fd(m_pool->fd()));
    req.fds.push_back(std::move(to_backend));
    req.fds.push_back(std::move(to_frontend));
    return handoff_device(*sock, req, kWait);
}

void TestFrontend::connect() {
    int status = prepare_and_handoff();
    check(status == 0, "hand-off refused: " + std::string(std::strerror(status)));
    // The old stale in-use bits were cleared by the backend on the hand-off.
    retry_quarantine();
    set_state(XenbusState::kInitialised);
    check(wait_backend_state(XenbusState::kConnected), "backend did not reach Connected");
    set_state(XenbusState::kConnected);
}

void TestFrontend::end_grants(std::vector<GrantRef>& grants, std::vector<std::uint32_t>& frames) {
    for (std::size_t i = 0; i < grants.size(); ++i) {
        auto r = m_table->end(grants[i]);
        std::uint32_t frame = i < frames.size() ? frames[i] : 0;
        if (r) {
            if (frame != 0)
                free_frame(frame);
        } else {
            // Still mapped by a backend (or one that died holding it):
            // the frame stays out of use until the grant can be ended.
            m_quarantine.emplace_back(grants[i], frame);
        }
    }
    grants.clear();
    frames.clear();
}

void TestFrontend::retry_quarantine() {
    std::vector<std::pair<GrantRef, std::uint32_t>> still;
    for (auto [ref, frame] : m_quarantine) {
        if (m_table->end(ref)) {
            if (frame != 0)
                free_frame(frame);
        } else {
            still.emplace_back(ref, frame);
        }
    }
    m_quarantine = std::move(still);
}

bool TestFrontend::issue(Shadow& s) {
    if (!m_ring || m_ring->free_slots() == 0)
        return false;
    const std::uint32_t data_frames =
        static_cast<std::uint32_t>((s.nr_sectors + PVKIT_BLKIF_SECTORS_PER_PAGE - 1) / PVKIT_BLKIF_SECTORS_PER_PAGE);
    const bool data_op = s.op == PVKIT_BLKIF_OP_READ || s.op == PVKIT_BLKIF_OP_WRITE || s.op == PVKIT_BLKIF_OP_INDIRECT;
    const bool reading = s.op == PVKIT_BLKIF_OP_READ ||
                         (s.op == PVKIT_BLKIF_OP_INDIRECT && s.indirect_op == PVKIT_BLKIF_OP_READ);
    if (data_op && m_free_frames.size() < data_frames + 1u)
        return false;
    auto id = m_inflight->insert(s.seq);
    if (!id)
        return false;
    s.id = *id;
    std::vector<pvkit_blkif_segment> segs;
    if (data_op) {
        for (std::uint32_t i = 0; i < data_frames; ++i) {
            std::uint32_t f = alloc_frame();
            if (!reading) {
                std::size_t off = std::size_t{i} * PVKIT_PAGE_SIZE;
                std::size_t n = std::min<std::size_t>(PVKIT_PAGE_SIZE, s.data.size() - off);
                std::memcpy(frame(f).data(), s.data.data() + off, n);
            }
            auto g = m_table->grant(PVKIT_DOMID_HOST, f, reading ? GrantAccess::kReadWrite : GrantAccess::kReadOnly);
            check(g.ok(), "cannot grant data frame");
            s.frames.push_back(f);
            s.grants.push_back(*g);
            pvkit_blkif_segment seg{};
            seg.gref = *g;
            seg.first_sect = 0;
            std::uint64_t left = s.nr_sectors - std::uint64_t{i} * PVKIT_BLKIF_SECTORS_PER_PAGE;
            seg.last_sect = static_cast<std::uint8_t>(std::min<std::uint64_t>(left, 8) - 1);
            segs.push_back(seg);
        }
    }
    if (s.op == PVKIT_BLKIF_OP_READ || s.op == PVKIT_BLKIF_OP_WRITE) {
        pvkit_blkif_request r{};
        r.operation = s.op;
        r.nr_segments = static_cast<std::uint8_t>(segs.size());
        r.handle = static_cast<std::uint16_t>(m_spec.devid);
        r.id = s.id;
        r.sector_number = s.sector;
        for (std::size_t i = 0; i < segs.size(); ++i)
            r.seg[i] = segs[i];
        check(m_ring->put(r).ok(), "ring put");
    } else if (s.op == PVKIT_BLKIF_OP_FLUSH_DISKCACHE) {
        pvkit_blkif_request r{};
        r.operation = s.op;
        r.handle = static_cast<std::uint16_t>(m_spec.devid);
        r.id = s.id;
        check(m_ring->put(r).ok(), "ring put");
    } else if (s.op == PVKIT_BLKIF_OP_DISCARD) {
        pvkit_blkif_request_discard r{};
        r.operation = s.op;
        r.flag = s.flag;
        r.handle = static_cast<std::uint16_t>(m_spec.devid);
        r.id = s.id;
        r.sector_number = s.sector;
        r.nr_sectors = s.nr_sectors;
        check(m_ring->put(r).ok(), "ring put");
    } else {
        // One indirect page holding the segment list, granted read-only.
        std::uint32_t f = alloc_frame();
        std::memset(frame(f).data(), 0, PVKIT_PAGE_SIZE);
        std::memcpy(frame(f).data(), segs.data(), segs.size() * sizeof(pvkit_blkif_segment));
        auto g = m_table->grant(PVKIT_DOMID_HOST, f, GrantAccess::kReadOnly);
        check(g.ok(), "cannot grant indirect page");
        s.frames.push_back(f);
        s.grants.push_back(*g);
        pvkit_blkif_request_indirect r{};
        r.operation = PVKIT_BLKIF_OP_INDIRECT;
        r.indirect_op = s.indirect_op;
        r.nr_segments = static_cast<std::uint16_t>(segs.size());
        r.id = s.id;
        r.sector_number = s.sector;
        r.handle = static_cast<std::uint16_t>(m_spec.devid);
        r.indirect_grefs[0] = *g;
        check(m_ring->put(r).ok(), "ring put");
    }
    if (m_ring->push())
        m_channel.notify();
    return true;
}

bool TestFrontend::submit_write(std::uint64_t tag, std::uint64_t sector, std::span<const std::byte> data) {
    Shadow s;
    s.tag = tag;
    s.seq = m_next_seq;
    s.op = PVKIT_BLKIF_OP_WRITE;
    s.sector = sector;
    s.nr_sectors = data.size() / PVKIT_BLKIF_SECTOR_SIZE;
    s.data.assign(data.begin(), data.end());
    if (!issue(s))
        return false;
    m_shadows.emplace(m_next_seq++, std::move(s));
    return true;
}

bool TestFrontend::submit_read(std::uint64_t tag, std::uint64_t sector, std::uint32_t nr_sectors) {
    Shadow s;
    s.tag = tag;
    s.seq = m_next_seq;
    s.op = PVKIT_BLKIF_OP_READ;
    s.sector = sector;
    s.nr_sectors = nr_sectors;
    if (!issue(s))
        return false;
    m_shadows.emplace(m_next_seq++, std::move(s));
    return true;
}

bool TestFrontend::submit_flush(std::uint64_t tag) {
    Shadow s;
    s.tag = tag;
    s.seq = m_next_seq;
    s.op = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
    if (!issue(s))
        return false;
    m_shadows.emplace(m_next_seq++, std::move(s));
    return true;
}

bool TestFrontend::submit_discard(std::uint64_t tag, std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag) {
    Shadow s;
    s.tag = tag;
    s.seq = m_next_seq;
    s.op = PVKIT_BLKIF_OP_DISCARD;
    s.sector = sector;
    s.nr_sectors = nr_sectors;
    s.flag = flag;
    if (!issue(s))
        return false;
    m_shadows.emplace(m_next_seq++, std::move(s));
    return true;
}

bool TestFrontend::submit_indirect(std::uint64_t tag, std::uint8_t op, std::uint64_t sector,
                                   std::span<const std::byte> data, std::uint32_t nr_sectors) {
    Shadow s;
    s.tag = tag;
    s.seq = m_next_seq;
    s.op = PVKIT_BLKIF_OP_INDIRECT;
    s.indirect_op = op;
    s.sector = sector;
    s.nr_sectors = nr_sectors;
    s.data.assign(data.begin(), data.end());
    if (!issue(s))
        return false;
    m_shadows.emplace(m_next_seq++, std::move(s));
    return true;
}

void TestFrontend::take_responses(std::vector<Completion>& out) {
    if (!m_ring || m_ring->halted())
        return;
    auto n = m_ring->consume<pvkit_blkif_response>([&](const pvkit_blkif_response& rsp) {
        auto seq = m_inflight->take(rsp.id);
        if (!seq)
            return false;
        auto it = m_shadows.find(*seq);
        if (it == m_shadows.end())
            return false;
        Shadow& s = it->second;
        if (rsp.operation != s.op)
            return false;
        Completion c;
        c.tag = s.tag;
        c.status = rsp.status;
        const bool reading = s.op == PVKIT_BLKIF_OP_READ ||
                             (s.op == PVKIT_BLKIF_OP_INDIRECT && s.indirect_op == PVKIT_BLKIF_OP_READ);
        if (reading && rsp.status == PVKIT_BLKIF_RSP_OKAY) {
            c.data.resize(s.nr_sectors * PVKIT_BLKIF_SECTOR_SIZE);
            for (std::size_t i = 0; i * PVKIT_PAGE_SIZE < c.data.size(); ++i) {
                std::size_t n2 = std::min<std::size_t>(PVKIT_PAGE_SIZE, c.data.size() - i * PVKIT_PAGE_SIZE);
                std::memcpy(c.data.data() + i * PVKIT_PAGE_SIZE, frame(s.frames[i]).data(), n2);
            }
        }
        end_grants(s.grants, s.frames);
        m_shadows.erase(it);
        out.push_back(std::move(c));
        return true;
    });
    if (!n)
        throw std::runtime_error(std::string("response ring error: ") + to_string(n.error()));
}

std::vector<pvkit_blkif_response> TestFrontend::collect(std::size_t n, std::chrono::milliseconds timeout) {
    std::vector<pvkit_blkif_response> out;
    auto deadline = Clock::now() + timeout;
    while (out.size() < n) {
        auto got = m_ring->consume<pvkit_blkif_response>([&](const pvkit_blkif_response& r) {
            out.push_back(r);
            return true;
        });
        check(got.ok(), "collect: ring error");
        if (out.size() >= n)
            break;
        auto left = left_until(deadline);
        if (left.count() <= 0)
            throw std::runtime_error("collect: only " + std::to_string(out.size()) + " of " +
                                     std::to_string(n) + " responses arrived");
        (void)wait_for_ring(*m_ring, m_channel, std::chrono::microseconds(20),
                            std::min(left, std::chrono::milliseconds(100)));
    }
    return out;
}

std::vector<TestFrontend::Completion> TestFrontend::wait_completions(std::chrono::milliseconds timeout) {
    std::vector<Completion> out = std::move(m_pending_early);
    m_pending_early.clear();
    auto deadline = Clock::now() + timeout;
    for (;;) {
        take_responses(out);
        if (!out.empty())
            return out;
        auto left = left_until(deadline);
        if (left.count() <= 0 || !m_ring)
            return out;
        (void)wait_for_ring(*m_ring, m_channel, std::chrono::microseconds(20),
                            std::min(left, std::chrono::milliseconds(50)));
    }
}

bool TestFrontend::backend_went_away() {
    pump_store();
    XenbusState s = backend_state();
    auto online = read_backend("online");
    return s == XenbusState::kClosed && online && *online == "1";
}

void TestFrontend::reconnect() {
    // Whatever the old backend answered before it went away is complete.
    std::vector<Completion> early;
    take_responses(early);
    m_pending_early.insert(m_pending_early.end(), early.begin(), early.end());
    // The old ring and every in-flight request's grants are ended; those the
    // dead backend still holds are quarantined until the new instance clears them.
    end_grants(m_ring_grants, m_ring_frames);
    for (auto& [seq, s] : m_shadows)
        end_grants(s.grants, s.frames);
    m_ring.reset();
    set_state(XenbusState::kInitialising);
    connect();
    // Re-issue in the original order, with fresh grants and new ids.
    for (auto& [seq, s] : m_shadows) {
        check(issue(s), "re-issue: ring or frames exhausted");
        ++m_reissued;
    }
}

std::int16_t TestFrontend::write_sync(std::uint64_t sector, std::span<const std::byte> data) {
    check(submit_write(0, sector, data), "write_sync: cannot submit");
    auto c = wait_completions();
    check(c.size() == 1, "write_sync: no completion");
    return c[0].status;
}

std::int16_t TestFrontend::read_sync(std::uint64_t sector, std::uint32_t nr_sectors, std::vector<std::byte>& out) {
    check(submit_read(0, sector, nr_sectors), "read_sync: cannot submit");
    auto c = wait_completions();
    check(c.size() == 1, "read_sync: no completion");
    out = std::move(c[0].data);
    return c[0].status;
}

std::int16_t TestFrontend::flush_sync() {
    check(submit_flush(0), "flush_sync: cannot submit");
    auto c = wait_completions();
    check(c.size() == 1, "flush_sync: no completion");
    return c[0].status;
}

std::int16_t TestFrontend::discard_sync(std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag) {
    check(submit_discard(0, sector, nr_sectors, flag), "discard_sync: cannot submit");
    auto c = wait_completions();
    check(c.size() == 1, "discard_sync: no completion");
    return c[0].status;
}

void TestFrontend::close() {
    set_state(XenbusState::kClosing);
    auto deadline = Clock::now() + kWait;
    while (!m_shadows.empty() && Clock::now() < deadline)
        (void)wait_completions(left_until(deadline));
    check(m_shadows.empty(), "close: requests still in flight");
    set_state(XenbusState::kClosed);
    check(wait_backend_state(XenbusState::kClosed), "backend did not reach Closed");
    end_grants(m_ring_grants, m_ring_frames);
    m_ring.reset();
    check(m_quarantine.empty(), "close: grants still in use after the backend closed");
}

} // namespace pvkit::blkback::test
