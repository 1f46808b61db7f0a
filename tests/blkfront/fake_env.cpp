#include "fake_env.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::blkfront::test {

// ---- FakeStore ---------------------------------------------------------------------

std::optional<std::string> FakeStore::get(const std::string& path) const {
    auto it = m_nodes.find(path);
    if (it == m_nodes.end())
        return std::nullopt;
    return it->second;
}

void FakeStore::remove_tree(const std::string& path) {
    for (auto it = m_nodes.begin(); it != m_nodes.end();) {
        if (it->first == path || it->first.rfind(path + "/", 0) == 0)
            it = m_nodes.erase(it);
        else
            ++it;
    }
}

void FakeStore::apply(const std::string& path, const std::optional<std::string>& value) {
    if (value) {
        m_nodes[path] = *value;
        m_history[path].push_back(*value);
    } else {
        remove_tree(path);
    }
}

int FakeStore::read(std::uint32_t tx, const std::string& path, std::string& out) const {
    if (m_fail_err != 0 && path.rfind(m_fail_prefix, 0) == 0)
        return -m_fail_err;
    if (tx != 0) {
        auto t = m_txs.find(tx);
        if (t == m_txs.end())
            return -PVKIT_ENOENT;
        auto w = t->second.writes.find(path);
        if (w != t->second.writes.end()) {
            if (!w->second)
                return -PVKIT_ENOENT;
            out = *w->second;
            return 0;
        }
    }
    auto v = get(path);
    if (!v)
        return -PVKIT_ENOENT;
    out = *v;
    return 0;
}

int FakeStore::write(std::uint32_t tx, const std::string& path, const std::string& value) {
    if (tx != 0) {
        auto t = m_txs.find(tx);
        if (t == m_txs.end())
            return -PVKIT_ENOENT;
        t->second.writes[path] = value;
        return 0;
    }
    apply(path, value);
    return 0;
}

int FakeStore::rm(std::uint32_t tx, const std::string& path) {
    if (tx != 0) {
        auto t = m_txs.find(tx);
        if (t == m_txs.end())
            return -PVKIT_ENOENT;
        t->second.writes[path] = std::nullopt;
        return 0;
    }
    apply(path, std::nullopt);
    return 0;
}

int FakeStore::tx_start(std::uint32_t& tx) {
    tx = m_next_tx++;
    m_txs[tx] = Tx{};
    return 0;
}

int FakeStore::tx_end(std::uint32_t tx, bool commit) {
    auto t = m_txs.find(tx);
    if (t == m_txs.end())
        return -PVKIT_ENOENT;
    Tx done = std::move(t->second);
    m_txs.erase(t);
    if (!commit)
        return 0;
    if (m_fail_commits > 0) {
        --m_fail_commits;
        return -PVKIT_EAGAIN;
    }
    for (const auto& [path, value] : done.writes)
        apply(path, value);
    return 0;
}

std::vector<std::string> FakeStore::history(const std::string& path) const {
    auto it = m_history.find(path);
    return it == m_history.end() ? std::vector<std::string>{} : it->second;
}

// ---- FakeEnv -------------------------------------------------------------------------

FakeEnv::FakeEnv(std::uint32_t data_frames, std::uint32_t grants)
    : m_pool(std::make_unique<GrantPool>(GrantPool::create(kFrontDomid, data_frames, grants))),
      m_table(std::make_unique<GrantTable>(*m_pool)), m_used(data_frames, false) {
    m_env.ctx = this;
    m_env.store_read = &store_read;
    m_env.store_write = &store_write;
    m_env.store_rm = &store_rm;
    m_env.store_tx_start = &tx_start;
    m_env.store_tx_end = &tx_end;
    m_env.alloc_frames = &core_alloc_frames;
    m_env.free_frames = &core_free_frames;
    m_env.grant = &grant;
    m_env.end_grant = &end_grant;
    m_env.evtchn_alloc = &evtchn_alloc;
    m_env.evtchn_free = &evtchn_free;
    m_env.notify = &notify;
    m_env.before_initialised = &before_initialised;
    m_env.complete = &complete;
}

void FakeEnv::toolstack_attach() {
    m_store.put(kBackDir + "/frontend", kFrontDir);
    m_store.put(kBackDir + "/frontend-id", std::to_string(kFrontDomid));
    m_store.put(kBackDir + "/online", "1");
    m_store.put(kBackDir + "/state", "1");
    m_store.put(kFrontDir + "/backend", kBackDir);
    m_store.put(kFrontDir + "/backend-id", "0");
    m_store.put(kFrontDir + "/virtual-device", std::to_string(kDevid));
    m_store.put(kFrontDir + "/state", "1");
}

std::uint32_t FakeEnv::alloc_frames(std::uint32_t count) {
    const std::uint32_t first_data = m_pool->layout().data_first;
    for (std::uint32_t i = 0; i + count <= m_used.size(); ++i) {
        bool free = true;
        for (std::uint32_t k = 0; k < count && free; ++k)
            free = !m_used[i + k];
        if (!free)
            continue;
        for (std::uint32_t k = 0; k < count; ++k)
            m_used[i + k] = true;
        return first_data + i;
    }
    throw std::runtime_error("FakeEnv: out of frames");
}

void FakeEnv::free_frames(std::uint32_t first, std::uint32_t count) {
    const std::uint32_t first_data = m_pool->layout().data_first;
    for (std::uint32_t k = 0; k < count; ++k) {
        if (!m_used.at(first - first_data + k))
            throw std::runtime_error("FakeEnv: double free of frame " + std::to_string(first + k));
        m_used[first - first_data + k] = false;
    }
}

std::uint32_t FakeEnv::frames_in_use() const {
    std::uint32_t n = 0;
    for (bool b : m_used)
        n += b ? 1 : 0;
    return n;
}

int FakeEnv::store_read(void* ctx, std::uint32_t tx, const char* path, char* buf, std::uint32_t size) {
    std::string v;
    int r = static_cast<FakeEnv*>(ctx)->m_store.read(tx, path, v);
    if (r < 0)
        return r;
    if (v.size() > size)
        return -PVKIT_E2BIG;
    std::memcpy(buf, v.data(), v.size());
    return static_cast<int>(v.size());
}

int FakeEnv::store_write(void* ctx, std::uint32_t tx, const char* path, const char* value) {
    return static_cast<FakeEnv*>(ctx)->m_store.write(tx, path, value);
}

int FakeEnv::store_rm(void* ctx, std::uint32_t tx, const char* path) {
    return static_cast<FakeEnv*>(ctx)->m_store.rm(tx, path);
}

int FakeEnv::tx_start(void* ctx, std::uint32_t* tx) {
    return static_cast<FakeEnv*>(ctx)->m_store.tx_start(*tx);
}

int FakeEnv::tx_end(void* ctx, std::uint32_t tx, int commit) {
    return static_cast<FakeEnv*>(ctx)->m_store.tx_end(tx, commit != 0);
}

int FakeEnv::core_alloc_frames(void* ctx, std::uint32_t count, std::uint32_t* first, void** mem) {
    auto* self = static_cast<FakeEnv*>(ctx);
    if (self->frame_limit != 0 && self->m_core_frames + count > self->frame_limit)
        return -PVKIT_ENOMEM;
    try {
        *first = self->alloc_frames(count);
    } catch (const std::exception&) {
        return -PVKIT_ENOMEM;
    }
    self->m_core_frames += count;
    *mem = self->m_pool->frame_ptr(*first);
    return 0;
}

void FakeEnv::core_free_frames(void* ctx, std::uint32_t first, std::uint32_t count) {
    auto* self = static_cast<FakeEnv*>(ctx);
    self->free_frames(first, count);
    self->m_core_frames -= count;
}

int FakeEnv::grant(void* ctx, pvkit_domid_t domid, std::uint32_t frame, int ro, pvkit_grant_ref_t* ref) {
    auto* self = static_cast<FakeEnv*>(ctx);
    if (self->grant_failures_after == 0)
        return -PVKIT_ENOSPC;
    if (self->grant_failures_after > 0)
        --self->grant_failures_after;
    auto r = self->m_table->grant(domid, frame, ro != 0 ? GrantAccess::kReadOnly : GrantAccess::kReadWrite);
    if (!r)
        return r.error() == GrantError::kNoFreeRefs ? -PVKIT_ENOSPC : -PVKIT_EINVAL;
    *ref = *r;
    return 0;
}

int FakeEnv::end_grant(void* ctx, pvkit_grant_ref_t ref) {
    auto r = static_cast<FakeEnv*>(ctx)->m_table->end(ref);
    if (r)
        return 0;
    return r.error() == GrantError::kInUse ? -PVKIT_EBUSY : -PVKIT_EINVAL;
}

int FakeEnv::evtchn_alloc(void* ctx, pvkit_domid_t, pvkit_evtchn_port_t* port) {
    auto* self = static_cast<FakeEnv*>(ctx);
    *port = self->m_next_port++;
    self->live_ports.insert(*port);
    ++self->ports_allocated;
    return 0;
}

void FakeEnv::evtchn_free(void* ctx, pvkit_evtchn_port_t port) {
    auto* self = static_cast<FakeEnv*>(ctx);
    if (self->live_ports.erase(port) != 1)
        throw std::runtime_error("FakeEnv: free of a port that is not live");
}

void FakeEnv::notify(void* ctx, pvkit_evtchn_port_t) { ++static_cast<FakeEnv*>(ctx)->notifications; }

int FakeEnv::before_initialised(void* ctx, pvkit_evtchn_port_t) {
    auto* self = static_cast<FakeEnv*>(ctx);
    ++self->hook_calls;
    return self->hook_result;
}

void FakeEnv::complete(void* ctx, pvkit_blkfront_io* io) {
    static_cast<FakeEnv*>(ctx)->completed.push_back({io, io->status});
}

// ---- FakeBackend -------------------------------------------------------------------------

namespace {

UniqueFd dup_fd(int fd) {
    UniqueFd d(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!d.valid())
        throw_errno("dup");
    return d;
}

std::uint64_t parse(const std::string& s) { return std::stoull(s); }

} // namespace

FakeBackend::FakeBackend(FakeEnv& env, std::uint64_t disk_bytes) : disk(disk_bytes), m_env(env) {
    // The backend's own mapping of the pool, as it would get it over the
    // hand-off socket: attach checks seals and header.
    auto attached = GrantPool::attach(dup_fd(env.pool().fd()));
    if (!attached)
        throw std::runtime_error("FakeBackend: attach failed");
    m_pool.emplace(std::move(attached).value());
    m_mapper = std::make_unique<GrantMapper>(*m_pool, PVKIT_DOMID_HOST);
}

void FakeBackend::set_state(unsigned state) { m_env.store().put(kBackDir + "/state", std::to_string(state)); }

void FakeBackend::set_online(bool online) { m_env.store().put(kBackDir + "/online", online ? "1" : "0"); }

void FakeBackend::initwait(const Features& f) {
    FakeStore& s = m_env.store();
    s.put(kBackDir + "/sectors", std::to_string(f.sectors));
    s.put(kBackDir + "/sector-size", std::to_string(f.sector_size));
    s.put(kBackDir + "/info", std::to_string(f.info));
    s.put(kBackDir + "/feature-flush-cache", f.flush ? "1" : "0");
    s.put(kBackDir + "/feature-discard", f.discard ? "1" : "0");
    s.put(kBackDir + "/discard-granularity", std::to_string(f.sector_size));
    s.put(kBackDir + "/feature-max-indirect-segments", std::to_string(f.max_indirect));
    s.put(kBackDir + "/max-ring-page-order", std::to_string(f.max_ring_order));
    for (const auto& [k, v] : f.overrides) {
        if (v.empty())
            s.remove_tree(kBackDir + "/" + k);
        else
            s.put(kBackDir + "/" + k, v);
    }
    set_state(2);
}

bool FakeBackend::connect() {
    FakeStore& s = m_env.store();
    if (s.get(kFrontDir + "/state") != "3")
        return false;
    if (s.get(kFrontDir + "/protocol") != "x86_64-abi" || !s.get(kFrontDir + "/event-channel"))
        return false;
    std::vector<GrantRef> refs;
    auto order = s.get(kFrontDir + "/ring-page-order");
    if (order) {
        m_order = static_cast<std::uint32_t>(parse(*order));
        if (s.get(kFrontDir + "/ring-ref"))
            return false; // both forms: the backend would refuse
        for (std::uint32_t i = 0; i < (1u << m_order); ++i) {
            auto r = s.get(kFrontDir + "/ring-ref" + std::to_string(i));
            if (!r)
                return false;
            refs.push_back(static_cast<GrantRef>(parse(*r)));
        }
        if (s.get(kFrontDir + "/ring-ref" + std::to_string(1u << m_order)))
            return false;
    } else {
        m_order = 0;
        auto r = s.get(kFrontDir + "/ring-ref");
        if (!r || s.get(kFrontDir + "/ring-ref0"))
            return false;
        refs.push_back(static_cast<GrantRef>(parse(*r)));
    }
    auto mapped = map_ring(*m_mapper, refs);
    if (!mapped)
        throw std::runtime_error(std::string("FakeBackend: map_ring: ") + to_string(mapped.error()));
    m_ring_map.emplace(std::move(mapped).value());
    auto ring = BackRing<Slot>::attach(m_ring_map->bytes);
    if (!ring)
        throw std::runtime_error("FakeBackend: ring attach");
    m_ring.emplace(std::move(ring).value());
    set_state(4);
    return true;
}

std::vector<Slot> FakeBackend::take_requests() {
    std::vector<Slot> out;
    auto n = m_ring->consume([&](const Slot& slot) { out.push_back(slot); });
    if (!n)
        throw std::runtime_error("FakeBackend: consume failed");
    return out;
}

bool FakeBackend::do_segment(std::uint8_t op, std::uint64_t& byte_offset, const pvkit_blkif_segment& seg) {
    if (seg.first_sect > seg.last_sect || seg.last_sect > 7)
        return false;
    const GrantAccess access = op == PVKIT_BLKIF_OP_READ ? GrantAccess::kReadWrite : GrantAccess::kReadOnly;
    auto m = m_mapper->map(seg.gref, access);
    if (!m)
        return false;
    const std::size_t len = (std::size_t{seg.last_sect} - seg.first_sect + 1) * 512;
    const std::size_t in_page = std::size_t{seg.first_sect} * 512;
    if (byte_offset + len > disk.size())
        return false;
    std::span<std::byte> d(disk.data() + byte_offset, len);
    if (op == PVKIT_BLKIF_OP_READ) {
        if (!m->copy_in(in_page, d))
            return false;
    } else {
        if (!m->copy_out(in_page, d))
            return false;
    }
    byte_offset += len;
    if (m_hold_next)
        m_held.push_back(std::move(m).value());
    return true;
}

std::int16_t FakeBackend::perform(const Slot& req) {
    switch (req.req.operation) {
    case PVKIT_BLKIF_OP_READ:
    case PVKIT_BLKIF_OP_WRITE: {
        if (req.req.nr_segments == 0 || req.req.nr_segments > PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST)
            return PVKIT_BLKIF_RSP_ERROR;
        std::uint64_t at = req.req.sector_number * 512;
        for (std::uint8_t i = 0; i < req.req.nr_segments; ++i) {
            if (!do_segment(req.req.operation, at, req.req.seg[i]))
                return PVKIT_BLKIF_RSP_ERROR;
        }
        return PVKIT_BLKIF_RSP_OKAY;
    }
    case PVKIT_BLKIF_OP_INDIRECT: {
        const auto& ind = req.indirect;
        if (ind.nr_segments == 0 || ind.nr_segments > PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME)
            return PVKIT_BLKIF_RSP_ERROR;
        auto page = m_mapper->map(ind.indirect_grefs[0], GrantAccess::kReadOnly);
        if (!page)
            return PVKIT_BLKIF_RSP_ERROR;
        std::uint64_t at = ind.sector_number * 512;
        for (std::uint16_t i = 0; i < ind.nr_segments; ++i) {
            auto seg = page->read<pvkit_blkif_segment>(std::size_t{i} * sizeof(pvkit_blkif_segment));
            if (!seg || !do_segment(ind.indirect_op, at, *seg))
                return PVKIT_BLKIF_RSP_ERROR;
        }
        return PVKIT_BLKIF_RSP_OKAY;
    }
    case PVKIT_BLKIF_OP_FLUSH_DISKCACHE:
        return PVKIT_BLKIF_RSP_OKAY;
    case PVKIT_BLKIF_OP_DISCARD: {
        const auto& d = req.discard;
        if ((d.sector_number + d.nr_sectors) * 512 > disk.size())
            return PVKIT_BLKIF_RSP_ERROR;
        std::memset(disk.data() + d.sector_number * 512, 0, d.nr_sectors * 512);
        return PVKIT_BLKIF_RSP_OKAY;
    }
    default:
        return PVKIT_BLKIF_RSP_EOPNOTSUPP;
    }
}

void FakeBackend::answer(const Slot& req, std::int16_t status) {
    std::int16_t result = perform(req);
    m_hold_next = false;
    if (status != PVKIT_BLKIF_RSP_OKAY)
        result = status;
    pvkit_blkif_response rsp{};
    rsp.id = req.req.id;
    rsp.operation = req.req.operation;
    rsp.status = result;
    respond_raw(rsp);
}

std::size_t FakeBackend::serve() {
    std::vector<Slot> reqs = take_requests();
    for (const Slot& r : reqs)
        answer(r);
    return reqs.size();
}

void FakeBackend::respond_raw(const pvkit_blkif_response& rsp) {
    auto& br = m_ring->raw();
    // The raw C call: a hostile backend may answer more than it consumed.
    if (br.rsp_prod_pvt == br.req_cons)
        br.req_cons++;
    if (pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) != 0)
        throw std::runtime_error("FakeBackend: put_response failed");
    if (m_ring->push())
        ++kicks_sent;
}

void FakeBackend::set_rsp_prod(std::uint32_t value) {
    __atomic_store_n(&m_ring->raw().sring->rsp_prod, value, __ATOMIC_RELEASE);
}

void FakeBackend::crash() {
    m_held.clear();
    m_ring.reset();
    m_ring_map.reset();
}

} // namespace pvkit::blkfront::test
