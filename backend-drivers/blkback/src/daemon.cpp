#include "pvkit/blkback/daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <pvkit/blkif.h>
#include <pvkit/evtchn.h>
#include <pvkit/ring.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "pvkit/blkback/connection.hpp"
#include "pvkit/blkback/counters.hpp"
#include "pvkit/blkback/image.hpp"
#include "pvkit/blkback/io_ring.hpp"
#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/toolstack/xenbus_state.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/handoff.hpp"

namespace pvkit::blkback {

namespace {

using Clock = std::chrono::steady_clock;
using pvkit::store::StoreClient;
using pvkit::store::StoreError;
using pvkit::toolstack::XenbusState;

constexpr const char* kBackendRoot = "/local/domain/0/backend/vbd";
constexpr const char* kBackendToken = "be";
constexpr int kTransactionRetries = 16; // docs/handshake.md, ordering rule 3
constexpr std::size_t kMaxHandoffClients = 32;
constexpr std::chrono::seconds kHandoffClientTimeout{5};
constexpr std::chrono::milliseconds kTick{200};
// A lost store is dialled again from the loop's tick, one dial at a time
// (docs/blkback.md, "Store restarts"): first at the next tick, then with
// the pause doubling up to kStoreRetryMax.
constexpr std::chrono::milliseconds kStoreRetryFirst{200};
constexpr std::chrono::milliseconds kStoreRetryMax{2000};
// The data path spins at most this long before going through epoll_wait
// once (docs/blkback.md, "Event loop").
constexpr std::chrono::milliseconds kMaxSpinRun{1};
// Consume/submit rounds of one run_data_path() at most.
constexpr unsigned kMaxRounds = 64;

// epoll data: the kind in the top byte, an id below.
enum class Source : std::uint8_t { kStore = 1, kListen, kHandoffClient, kDevice, kIo, kSignal, kTimer };
std::uint64_t tag(Source s, std::uint64_t id = 0) {
    return (std::uint64_t{static_cast<std::uint8_t>(s)} << 56) | id;
}
Source tag_source(std::uint64_t t) { return static_cast<Source>(t >> 56); }
std::uint64_t tag_id(std::uint64_t t) { return t & ((std::uint64_t{1} << 56) - 1); }

std::uint64_t device_key(pvkit_domid_t domid, std::uint32_t devid) {
    return (std::uint64_t{domid} << 32) | devid;
}

// Internal phases of a device; the store's state node follows them.
enum class Phase : std::uint8_t {
    kNew,       // found in the store, not looked at yet
    kInitWait,  // features published, waiting for Initialised and the hand-off
    kConnected, // ring mapped, serving
    kClosing,   // serving what the frontend still has on the ring, until it is Closed
    kStopping,  // no new requests; waiting for I/O in flight, then unmap and Closed
    kClosed,    // holds nothing of the frontend; InitWait again on Initialising
    kDropping,  // directory removed: waiting for I/O in flight, then forgotten
};

const char* to_string(Phase p) {
    switch (p) {
    case Phase::kNew:
        return "new";
    case Phase::kInitWait:
        return "InitWait";
    case Phase::kConnected:
        return "Connected";
    case Phase::kClosing:
        return "Closing";
    case Phase::kStopping:
        return "stopping";
    case Phase::kClosed:
        return "Closed";
    case Phase::kDropping:
        return "dropping";
    }
    return "?";
}

// What a hand-off brought, kept until the frontend is Initialised.
struct Handoff {
    std::unique_ptr<GrantPool> pool;
    EventChannel channel;
    pvkit_evtchn_port_t port = 0;
};

struct Device {
    pvkit_domid_t domid = 0;
    std::uint32_t devid = 0;
    std::string dir;            // backend directory
    std::string frontend_dir;   // as the toolstack wrote it (checked)
    std::string frontend_token; // watch token for <frontend_dir>/state
    bool watching_frontend = false;
    Phase phase = Phase::kNew;
    bool dirty = true;
    // Set when setting the device up failed while the frontend was
    // Initialising; cleared when the frontend leaves Initialising, so a bad
    // config is retried once per frontend attempt, not on every event.
    bool failed_this_round = false;
    std::optional<DeviceConfig> config;
    std::optional<Image> image;
    DeviceLimits limits;
    std::optional<Handoff> handoff;
    std::unique_ptr<Connection> conn;
    Clock::time_point close_deadline{};
    DeviceCounters counters;
    DeviceCounters published;
    bool published_once = false;
    Clock::time_point last_publish{};
    // Nodes written while the store was away (or whose write's outcome the
    // loss left unknown), written again once it is back; later values win.
    std::map<std::string, std::string> unsaved;
};

struct HandoffClient {
    UniqueFd fd;
    Clock::time_point deadline;
};

[[noreturn]] void fail_startup(const std::string& what) { throw std::runtime_error(what); }

bool is_eventfd(int fd) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    return !ec && target.string() == "anon_inode:[eventfd]";
}



UniqueFd bind_handoff_socket(const std::string& path) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        fail_startup("hand-off socket path empty or too long: " + path);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    std::error_code ec;
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
        std::filesystem::create_directories(parent, ec);
        if (ec)
            fail_startup("cannot create " + parent.string() + ": " + ec.message());
        ::chmod(parent.c_str(), 0755);
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            fail_startup(path + " exists and is not a socket");
        // A socket someone still answers on belongs to a live blkback.
        UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
        if (probe.valid() && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
            fail_startup("cannot bind " + path + ": another pvkit-blkback is listening on it");
        ::unlink(path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        fail_startup(std::string("socket: ") + std::strerror(errno));
    // 0660: frontends (VMMs, host processes) reach it through the group, as
    // with the store's socket; the store-vouched pid check does the rest.
    mode_t old = ::umask(0117);
    // sockaddr_un is what bind() takes for AF_UNIX; the cast is the API.
    int r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = errno;
    ::umask(old);
    if (r != 0)
        fail_startup("cannot bind " + path + ": " + std::strerror(err));
    if (::listen(fd.get(), 64) != 0)
        fail_startup("cannot listen on " + path + ": " + std::strerror(errno));
    return fd;
}

} // namespace

class Daemon::Impl {
public:
    explicit Impl(DaemonOptions options);
    ~Impl();
    int run();

private:
    // ---- store --------------------------------------------------------------
    std::optional<std::string> read_node(const std::string& path);
    XenbusState read_state(const std::string& path);
    void drain_store_events();
    void handle_store_event(const pvkit::store::WatchEvent& e);
    void rescan();
    // The connection is gone and one dial failed: keep serving the rings,
    // stop using the store, and dial again from tick().
    void store_lost(const char* what, StoreError e);
    // The client reconnected (from tick() or inside a call): watch the new
    // descriptor and look at everything again.
    void store_back();
    // After store calls: notices a loss or a reconnect made inside a call.
    void check_store();
    void try_store_reconnect();
    void flush_unsaved();

    // ---- devices ------------------------------------------------------------
    Device* find_device(pvkit_domid_t domid, std::uint32_t devid);
    void log(const Device& dev, const std::string& msg);
    void reconcile_dirty();
    // Returns true if the device changed phase (and should be looked at again).
    bool reconcile(Device& dev);
    bool setup(Device& dev);
    void connect(Device& dev);
    void set_state(Device& dev, XenbusState state);
    // Writes nodes of the device's directory in one transaction, only if the
    // directory still exists: a write after the toolstack removed it would
    // create it again. False if the directory is gone.
    bool write_device_nodes(Device& dev, const std::vector<std::pair<std::string, std::string>>& nodes);
    void fail_device(Device& dev, const std::string& reason, XenbusState state);
    void start_closing(Device& dev, const std::string& why, bool write_closing);
    void finalize(Device& dev);
    void release_connection(Device& dev);
    void forget(std::uint64_t key);
    void watch_frontend(Device& dev);
    void unwatch_frontend(Device& dev);
    void publish_statistics(bool force);
    void print_statistics();

    // ---- hand-off -----------------------------------------------------------
    void accept_handoff_clients();
    void serve_handoff_client(std::uint64_t id);
    int accept_handoff(int sock, HandoffRequest& req, std::string& why);

    // ---- data path ----------------------------------------------------------
    bool run_data_path();
    bool reap_completions();
    void flush_all_responses();
    std::uint32_t ops_in_flight() const;
    bool any_work_pending();
    void epoll_add(int fd, std::uint64_t t);
    void epoll_del(int fd);
    void tick();
    void shutdown();

    DaemonOptions m_options;
    std::unique_ptr<StoreClient> m_store;
    int m_store_fd = -1;
    // Store reconnection (docs/blkback.md, "Store restarts").
    bool m_store_down = false;
    bool m_store_resync = false; // publish statistics once the store is back
    std::uint64_t m_seen_reconnects = 0;
    std::uint64_t m_store_losses = 0;
    Clock::time_point m_store_lost_at{};
    Clock::time_point m_store_retry_at{};
    std::chrono::milliseconds m_store_backoff{kStoreRetryFirst};
    std::string m_store_last_reason;
    UniqueFd m_epoll;
    UniqueFd m_listen;
    UniqueFd m_signal;
    UniqueFd m_timer;
    std::unique_ptr<IoRing> m_io;
    std::map<std::uint64_t, std::unique_ptr<Device>> m_devices;
    std::unordered_map<std::uint32_t, Device*> m_by_serial; // connected devices
    std::map<std::uint64_t, HandoffClient> m_handoff_clients;
    std::uint64_t m_next_client = 1;
    std::uint32_t m_next_serial = 1;
    bool m_rescan = true;
    bool m_stop = false;
    int m_exit_status = 0;
};

// ============================================================================
// Start-up and shutdown

Daemon::Impl::Impl(DaemonOptions options) : m_options(std::move(options)) {
    std::string detail;
    auto client = StoreClient::connect(m_options.store_socket, std::chrono::seconds(10), &detail);
    if (!client)
        fail_startup("cannot connect to pvkit-stored at " + detail);
    // The daemon waits for store messages in its own epoll loop.
    m_store_fd = client->native_handle();
    m_store = std::make_unique<StoreClient>(std::move(client.value()));
    m_store->set_reply_timeout(std::chrono::seconds(10));
    // Reconnect with a deadline of zero: a call that finds the connection
    // lost dials once and fails at once if no daemon answers, so the loop
    // (which serves the rings too) never sleeps in a redial. tick() dials
    // again with its own backoff, for as long as it takes.
    pvkit::store::ReconnectPolicy policy;
    policy.deadline = std::chrono::milliseconds(0);
    if (auto p = m_store->set_reconnect_policy(policy); !p)
        fail_startup("cannot enable store reconnection: " +
                     std::string(pvkit::store::to_string(p.error())));

    m_epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!m_epoll.valid())
        fail_startup(std::string("epoll_create1: ") + std::strerror(errno));

    auto io = IoRing::create(m_options.sq_entries, m_options.cq_entries);
    if (!io)
        fail_startup(std::string("io_uring setup failed: ") + std::strerror(-io.error()));
    m_io = std::move(io.value());

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0)
        fail_startup(std::string("sigprocmask: ") + std::strerror(errno));
    ::signal(SIGPIPE, SIG_IGN);
    m_signal.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!m_signal.valid())
        fail_startup(std::string("signalfd: ") + std::strerror(errno));

    m_timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!m_timer.valid())
        fail_startup(std::string("timerfd_create: ") + std::strerror(errno));
    itimerspec its{};
    its.it_interval.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(kTick).count();
    its.it_value = its.it_interval;
    if (::timerfd_settime(m_timer.get(), 0, &its, nullptr) != 0)
        fail_startup(std::string("timerfd_settime: ") + std::strerror(errno));

    m_listen = bind_handoff_socket(m_options.handoff_socket);

    epoll_add(m_store_fd, tag(Source::kStore));
    epoll_add(m_listen.get(), tag(Source::kListen));
    epoll_add(m_io->event_fd(), tag(Source::kIo));
    epoll_add(m_signal.get(), tag(Source::kSignal));
    epoll_add(m_timer.get(), tag(Source::kTimer));

    // Watch first, then read (docs/handshake.md, ordering rule 2): the
    // watch's first event triggers the initial scan, so a device created in
    // between is never missed.
    if (auto w = m_store->watch(kBackendRoot, kBackendToken); !w)
        fail_startup(std::string("cannot watch ") + kBackendRoot + ": " +
                     std::string(pvkit::store::to_string(w.error())));
    drain_store_events();
    rescan();
    reconcile_dirty();
    std::fprintf(stderr, "pvkit-blkback: serving %s, hand-off socket %s, %zu device(s) found\n",
                 kBackendRoot, m_options.handoff_socket.c_str(), m_devices.size());

    if (m_options.ready_fd >= 0) {
        static const char kReady[] = "READY\n";
        (void)!::write(m_options.ready_fd, kReady, sizeof kReady - 1);
        ::close(m_options.ready_fd);
    }
}

Daemon::Impl::~Impl() {
    if (m_listen.valid())
        ::unlink(m_options.handoff_socket.c_str());
}

void Daemon::Impl::shutdown() {
    // Answer what is in flight before going: an acknowledged write is then
    // in the image. The store keeps the devices' states; the next instance
    // takes them over (docs/blkback.md, "Restart").
    for (auto& [key, dev] : m_devices) {
        if (dev->conn)
            dev->conn->stop();
    }
    while (ops_in_flight() > 0) {
        if (m_io->wait() < 0)
            break;
        reap_completions();
    }
    for (auto& [key, dev] : m_devices) {
        if (dev->conn)
            dev->conn->flush_responses();
        release_connection(*dev);
    }
    publish_statistics(true);
    print_statistics();
}

// ============================================================================
// Store helpers

void Daemon::Impl::store_lost(const char* what, StoreError e) {
    if (m_store_down)
        return;
    m_store_down = true;
    ++m_store_losses;
    // The client closed the descriptor, which took it out of the epoll set.
    m_store_fd = -1;
    m_store_lost_at = Clock::now();
    m_store_retry_at = m_store_lost_at + kStoreRetryFirst;
    m_store_backoff = kStoreRetryFirst;
    m_store_last_reason = m_store->reconnect_stats().last_error;
    std::fprintf(stderr,
                 "pvkit-blkback: store connection lost (%s: %s%s%s); %zu connected device(s) keep "
                 "serving, reconnecting\n",
                 what, std::string(pvkit::store::to_string(e)).c_str(),
                 m_store_last_reason.empty() ? "" : ", ", m_store_last_reason.c_str(),
                 m_by_serial.size());
}

void Daemon::Impl::store_back() {
    const auto& stats = m_store->reconnect_stats();
    const bool was_down = m_store_down;
    m_store_down = false;
    m_seen_reconnects = stats.reconnects;
    m_store_fd = m_store->native_handle();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(Source::kStore);
    // The old descriptor left the set when it was closed; the new one may
    // have the same number.
    if (::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, m_store_fd, &ev) != 0 &&
        (errno != EEXIST || ::epoll_ctl(m_epoll.get(), EPOLL_CTL_MOD, m_store_fd, &ev) != 0))
        std::fprintf(stderr, "pvkit-blkback: epoll_ctl (store): %s\n", std::strerror(errno));
    const auto away =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - m_store_lost_at);
    const std::string how =
        was_down ? ", away " + std::to_string(away.count()) + " ms" : ", within a call";
    std::fprintf(stderr,
                 "pvkit-blkback: store connection restored (reconnect %llu, %llu failed "
                 "dial(s)%s); re-reading %s\n",
                 static_cast<unsigned long long>(stats.reconnects),
                 static_cast<unsigned long long>(stats.dial_failures), how.c_str(), kBackendRoot);
    // The watches fired again on the new connection; what changed while
    // there was no daemon is found by looking at everything.
    m_rescan = true;
    for (auto& [key, dev] : m_devices)
        dev->dirty = true;
    m_store_resync = true;
}

void Daemon::Impl::check_store() {
    if (m_store_down)
        return;
    if (!m_store->connected())
        store_lost("connection", StoreError::kNotConn);
    else if (m_store->reconnect_stats().reconnects != m_seen_reconnects)
        store_back();
}

void Daemon::Impl::try_store_reconnect() {
    const auto now = Clock::now();
    if (now < m_store_retry_at)
        return;
    // With the connection closed this dials once (the policy's deadline is
    // zero) and, on success, restores the watches, whose events it queues.
    auto e = m_store->wait_for_event(std::chrono::milliseconds(0));
    if (m_store->connected()) {
        store_back();
        if (e)
            handle_store_event(*e);
        return;
    }
    m_store_retry_at = now + m_store_backoff;
    m_store_backoff = std::min(m_store_backoff * 2, kStoreRetryMax);
    const std::string& why = m_store->reconnect_stats().last_error;
    if (why != m_store_last_reason) {
        m_store_last_reason = why;
        std::fprintf(stderr, "pvkit-blkback: store still unreachable: %s; retrying\n", why.c_str());
    }
}

void Daemon::Impl::flush_unsaved() {
    for (auto& [key, dev] : m_devices) {
        if (m_store_down)
            return;
        if (dev->phase == Phase::kDropping)
            dev->unsaved.clear(); // its directory is gone: nothing to write
        if (dev->unsaved.empty())
            continue;
        std::vector<std::pair<std::string, std::string>> nodes(dev->unsaved.begin(),
                                                               dev->unsaved.end());
        dev->unsaved.clear();
        // Lost again: write_device_nodes keeps them. Directory gone: dropped.
        write_device_nodes(*dev, nodes);
    }
}

std::optional<std::string> Daemon::Impl::read_node(const std::string& path) {
    if (m_store_down)
        return std::nullopt;
    auto r = m_store->read(path);
    if (r)
        return std::move(r.value());
    if (r.error() != StoreError::kNoEnt && r.error() != StoreError::kAccess && !m_store->connected())
        store_lost("read", r.error());
    return std::nullopt;
}

XenbusState Daemon::Impl::read_state(const std::string& path) {
    auto v = read_node(path);
    if (!v)
        return XenbusState::kUnknown;
    // Anything but one digit counts as Unknown: the peer is treated as gone.
    return pvkit::toolstack::parse_xenbus_state(*v).value_or(XenbusState::kUnknown);
}

void Daemon::Impl::drain_store_events() {
    for (;;) {
        if (m_store_down)
            return;
        // A connection found lost here is dialled once, at once.
        auto e = m_store->wait_for_event(std::chrono::milliseconds(0));
        if (!e) {
            if (e.error() != StoreError::kTimedOut || !m_store->connected())
                store_lost("watch", e.error());
            return;
        }
        handle_store_event(*e);
    }
}

void Daemon::Impl::handle_store_event(const pvkit::store::WatchEvent& e) {
    if (e.token == kBackendToken) {
        const std::string root = kBackendRoot;
        if (e.path.size() <= root.size() || e.path.compare(0, root.size(), root) != 0 ||
            e.path[root.size()] != '/') {
            m_rescan = true;
            return;
        }
        // <domid>/<devid>[/<node>...]
        std::string rest = e.path.substr(root.size() + 1);
        auto slash = rest.find('/');
        if (slash == std::string::npos) {
            m_rescan = true; // a whole domain's directory changed
            return;
        }
        auto domid = pvkit::toolstack::parse_domid(rest.substr(0, slash));
        std::string after = rest.substr(slash + 1);
        auto slash2 = after.find('/');
        std::string devid_text = after.substr(0, slash2);
        std::string node = slash2 == std::string::npos ? std::string() : after.substr(slash2 + 1);
        auto devid = parse_decimal(devid_text, UINT32_MAX);
        if (!domid || !devid)
            return; // not a device this daemon could serve
        // Only these nodes change what the device should do; our own writes
        // (features, statistics, error) come back as events too and are
        // ignored here.
        if (!node.empty() && node != "online" && node != "state")
            return;
        Device* dev = find_device(*domid, static_cast<std::uint32_t>(*devid));
        if (dev == nullptr)
            m_rescan = true;
        else
            dev->dirty = true;
        return;
    }
    for (auto& [key, dev] : m_devices) {
        if (dev->watching_frontend && dev->frontend_token == e.token) {
            dev->dirty = true;
            return;
        }
    }
}

void Daemon::Impl::rescan() {
    if (m_store_down)
        return;
    m_rescan = false;
    std::vector<std::uint64_t> seen;
    auto domains = m_store->directory(kBackendRoot);
    if (domains) {
        for (const std::string& d : *domains) {
            auto domid = pvkit::toolstack::parse_domid(d);
            if (!domid)
                continue;
            auto devs = m_store->directory(std::string(kBackendRoot) + "/" + d);
            if (!devs && !m_store->connected()) {
                m_rescan = true; // a partial listing must not drop devices
                store_lost("directory", devs.error());
                return;
            }
            if (!devs)
                continue;
            for (const std::string& v : *devs) {
                auto devid = parse_decimal(v, UINT32_MAX);
                if (!devid)
                    continue;
                std::uint64_t key = device_key(*domid, static_cast<std::uint32_t>(*devid));
                seen.push_back(key);
                if (m_devices.count(key) != 0)
                    continue;
                auto dev = std::make_unique<Device>();
                dev->domid = *domid;
                dev->devid = static_cast<std::uint32_t>(*devid);
                dev->dir = std::string(kBackendRoot) + "/" + d + "/" + v;
                dev->frontend_dir = "/local/domain/" + d + "/device/vbd/" + v;
                dev->frontend_token = "fe/" + d + "/" + v;
                m_devices.emplace(key, std::move(dev));
            }
        }
    } else if (!m_store->connected()) {
        m_rescan = true;
        store_lost("directory", domains.error());
        return;
    }
    // Devices that were not listed are looked at again: reconcile notices
    // that their directory is gone.
    for (auto& [key, dev] : m_devices) {
        if (std::find(seen.begin(), seen.end(), key) == seen.end())
            dev->dirty = true;
    }
}

// ============================================================================
// Devices

Device* Daemon::Impl::find_device(pvkit_domid_t domid, std::uint32_t devid) {
    auto it = m_devices.find(device_key(domid, devid));
    return it == m_devices.end() ? nullptr : it->second.get();
}

void Daemon::Impl::log(const Device& dev, const std::string& msg) {
    std::fprintf(stderr, "pvkit-blkback: vbd %u/%u: %s\n", unsigned{dev.domid}, dev.devid, msg.c_str());
}

void Daemon::Impl::watch_frontend(Device& dev) {
    if (dev.watching_frontend || m_store_down)
        return;
    if (m_store->watch(dev.frontend_dir + "/state", dev.frontend_token))
        dev.watching_frontend = true;
}

void Daemon::Impl::unwatch_frontend(Device& dev) {
    if (!dev.watching_frontend)
        return;
    // While the store is away the client keeps the watch and sets it again
    // on reconnect; its events then match no device and are ignored.
    if (!m_store_down)
        (void)m_store->unwatch(dev.frontend_dir + "/state", dev.frontend_token);
    dev.watching_frontend = false;
}

bool Daemon::Impl::write_device_nodes(Device& dev, const std::vector<std::pair<std::string, std::string>>& nodes) {
    // Without a store the nodes wait for it (flush_unsaved()).
    auto keep = [&](const char* what, StoreError e) {
        for (const auto& [node, value] : nodes)
            dev.unsaved[node] = value;
        store_lost(what, e);
        return false;
    };
    if (m_store_down)
        return keep("transaction", StoreError::kNotConn);
    for (int attempt = 0; attempt < kTransactionRetries; ++attempt) {
        auto tx = m_store->transaction_start();
        if (!tx) {
            if (!m_store->connected())
                return keep("transaction", tx.error());
            return false;
        }
        // Reading the directory inside the transaction makes its removal
        // conflict with our commit.
        auto listing = m_store->directory(dev.dir, *tx);
        if (!listing) {
            (void)m_store->transaction_end(*tx, false);
            if (!m_store->connected())
                return keep("directory", listing.error());
            if (listing.error() == StoreError::kAgain)
                continue; // the connection was lost and is back: start over
            return false;
        }
        for (const auto& [node, value] : nodes)
            (void)m_store->write(dev.dir + "/" + node, value, *tx);
        auto end = m_store->transaction_end(*tx, true);
        if (end)
            return true;
        if (!m_store->connected())
            return keep("transaction", end.error());
        // kNotConn while connected: the commit's outcome is unknown and the
        // client is connected again. Writing our own nodes again is harmless.
        if (end.error() != StoreError::kAgain && end.error() != StoreError::kNotConn)
            return false;
    }
    return false;
}

void Daemon::Impl::set_state(Device& dev, XenbusState state) {
    write_device_nodes(dev, {{"state", pvkit::toolstack::format_xenbus_state(state)}});
}

void Daemon::Impl::reconcile_dirty() {
    // Without the store nothing can be read: devices keep their phase (the
    // connected ones keep serving) and are looked at once it is back.
    if (m_store_down)
        return;
    flush_unsaved();
    if (m_rescan)
        rescan();
    if (m_store_down)
        return;
    // Bounded: each pass handles what is dirty now; a device that changes
    // phase is looked at again, at most a few times per pass.
    std::vector<std::uint64_t> keys;
    for (auto& [key, dev] : m_devices) {
        if (dev->dirty)
            keys.push_back(key);
    }
    for (std::uint64_t key : keys) {
        for (int round = 0; round < 4 && !m_stop; ++round) {
            auto it = m_devices.find(key);
            if (it == m_devices.end())
                break;
            Device& dev = *it->second;
            dev.dirty = false;
            const bool changed = reconcile(dev);
            if (m_store_down) {
                dev.dirty = true; // looked at again once the store is back
                return;
            }
            if (!changed)
                break;
        }
        auto it = m_devices.find(key);
        if (it != m_devices.end() && it->second->phase == Phase::kDropping && !it->second->conn)
            forget(key);
    }
}

void Daemon::Impl::forget(std::uint64_t key) {
    auto it = m_devices.find(key);
    if (it == m_devices.end())
        return;
    Device& dev = *it->second;
    unwatch_frontend(dev);
    release_connection(dev);
    log(dev, "directory removed: device forgotten");
    m_devices.erase(it);
}

void Daemon::Impl::release_connection(Device& dev) {
    if (dev.conn) {
        epoll_del(dev.conn->wait_fd());
        m_by_serial.erase(dev.conn->serial());
        dev.conn.reset(); // unmaps the ring and every grant, closes pool and eventfds
    }
    dev.handoff.reset();
}

void Daemon::Impl::fail_device(Device& dev, const std::string& reason, XenbusState state) {
    log(dev, reason);
    write_device_nodes(dev, {{"error", reason}, {"state", pvkit::toolstack::format_xenbus_state(state)}});
}

void Daemon::Impl::start_closing(Device& dev, const std::string& why, bool write_closing) {
    log(dev, "Closing: " + why);
    if (write_closing)
        set_state(dev, XenbusState::kClosing);
    dev.phase = Phase::kClosing;
    dev.close_deadline = Clock::now() + m_options.close_timeout;
}

void Daemon::Impl::finalize(Device& dev) {
    if (dev.conn)
        dev.conn->flush_responses();
    const bool had = dev.conn != nullptr;
    release_connection(dev);
    dev.image.reset();
    set_state(dev, XenbusState::kClosed);
    dev.phase = Phase::kClosed;
    log(dev, had ? "Closed: ring and grants unmapped, descriptors closed" : "Closed");
}

bool Daemon::Impl::setup(Device& dev) {
    std::map<std::string, std::string> nodes;
    for (const std::string& name : device_config_nodes()) {
        if (auto v = read_node(dev.dir + "/" + name))
            nodes.emplace(name, std::move(*v));
    }
    if (m_store_down)
        return false; // the caller keeps the phase: retried once the store is back
    auto cfg = parse_device_config(nodes, dev.domid, dev.devid, m_options.caps);
    if (!cfg) {
        fail_device(dev, "bad config: " + cfg.error().node + ": " + to_string(cfg.error().error),
                    XenbusState::kClosed);
        return false;
    }
    ImageOptions io_opts;
    io_opts.read_only = cfg->read_only;
    io_opts.direct = m_options.direct;
    io_opts.sector_size = cfg->sector_size;
    std::string why;
    auto image = Image::open(cfg->params, io_opts, why);
    if (!image) {
        fail_device(dev, "cannot open image: " + why, XenbusState::kClosed);
        return false;
    }
    dev.config = std::move(cfg.value());
    dev.image.emplace(std::move(image.value()));
    const DeviceConfig& c = *dev.config;
    dev.limits.sectors = dev.image->sectors();
    dev.limits.sector_size = c.sector_size;
    dev.limits.read_only = c.read_only;
    dev.limits.flush = c.feature_flush;
    dev.limits.discard = c.feature_discard && !c.read_only;
    dev.limits.max_indirect_segments = c.max_indirect_segments;

    // Features and InitWait in one transaction (ordering rule 3): the
    // frontend never sees InitWait without the values.
    const std::string& d = dev.dir;
    for (int attempt = 0; attempt < kTransactionRetries; ++attempt) {
        auto tx = m_store->transaction_start();
        if (!tx) {
            if (!m_store->connected())
                store_lost("transaction", tx.error());
            dev.image.reset();
            return false;
        }
        if (auto listing = m_store->directory(d, *tx); !listing) {
            (void)m_store->transaction_end(*tx, false);
            if (!m_store->connected()) {
                store_lost("directory", listing.error());
            } else if (listing.error() == StoreError::kAgain) {
                continue; // the connection was lost and is back: start over
            }
            dev.image.reset();
            return false; // removed meanwhile; the next event drops the device
        }
        auto w = [&](const char* node, const std::string& value) {
            (void)m_store->write(d + "/" + node, value, *tx);
        };
        w("sectors", std::to_string(dev.limits.sectors));
        w("sector-size", std::to_string(c.sector_size));
        w("info", std::to_string(c.read_only ? PVKIT_VDISK_READONLY : 0u));
        w("feature-flush-cache", c.feature_flush ? "1" : "0");
        w("feature-discard", dev.limits.discard ? "1" : "0");
        if (dev.limits.discard) {
            w("discard-granularity", std::to_string(dev.image->discard_granularity()));
            w("discard-secure", "0");
        }
        w("feature-max-indirect-segments", std::to_string(c.max_indirect_segments));
        w("max-ring-page-order", std::to_string(c.max_ring_page_order));
        w("handoff-socket", m_options.handoff_socket);
        (void)m_store->rm(d + "/error", *tx);
        w("state", pvkit::toolstack::format_xenbus_state(XenbusState::kInitWait));
        auto end = m_store->transaction_end(*tx, true);
        if (end) {
            dev.phase = Phase::kInitWait;
            log(dev, "InitWait: " + c.params + (c.read_only ? " (read-only)" : "") + ", " +
                         std::to_string(dev.limits.sectors) + " sectors, sector-size " +
                         std::to_string(c.sector_size) + ", ring order <= " +
                         std::to_string(c.max_ring_page_order) + ", indirect <= " +
                         std::to_string(c.max_indirect_segments));
            return true;
        }
        if (!m_store->connected()) {
            store_lost("transaction", end.error());
            dev.image.reset();
            return false;
        }
        // kNotConn while connected: outcome unknown, the client is connected
        // again; the same transaction once more is harmless.
        if (end.error() != StoreError::kAgain && end.error() != StoreError::kNotConn) {
            log(dev, std::string("publishing features failed: ") +
                         std::string(pvkit::store::to_string(end.error())));
            dev.image.reset();
            return false;
        }
    }
    log(dev, "publishing features failed: too many transaction conflicts");
    dev.image.reset();
    return false;
}

void Daemon::Impl::connect(Device& dev) {
    const std::string& f = dev.frontend_dir;
    // Read each frontend node once, validate the copy (ordering rule 4).
    std::vector<GrantRef> refs;
    std::uint32_t order = 0;
    auto fail = [&](const std::string& why) {
        // Reads fail while the store is away: nothing is wrong with the
        // frontend; connect again once the store is back.
        if (m_store_down)
            return;
        dev.handoff.reset();
        fail_device(dev, "cannot connect: " + why, XenbusState::kClosing);
        dev.phase = Phase::kClosing;
        dev.close_deadline = Clock::now() + m_options.close_timeout;
    };
    if (auto o = read_node(f + "/ring-page-order")) {
        auto n = parse_decimal(*o, PVKIT_RING_MAX_PAGE_ORDER);
        if (!n || *n == 0 || *n > dev.config->max_ring_page_order)
            return fail("ring-page-order '" + *o + "' not in 1.." +
                        std::to_string(dev.config->max_ring_page_order));
        order = static_cast<std::uint32_t>(*n);
        for (std::uint32_t i = 0; i < (1u << order); ++i) {
            auto v = read_node(f + "/ring-ref" + std::to_string(i));
            auto r = v ? parse_decimal(*v, UINT32_MAX) : std::nullopt;
            if (!r || *r == 0)
                return fail("ring-ref" + std::to_string(i) + " missing or invalid");
            refs.push_back(static_cast<GrantRef>(*r));
        }
        if (read_node(f + "/ring-ref"))
            return fail("ring-ref present with ring-page-order");
    } else {
        auto v = read_node(f + "/ring-ref");
        auto r = v ? parse_decimal(*v, UINT32_MAX) : std::nullopt;
        if (!r || *r == 0)
            return fail("ring-ref missing or invalid");
        refs.push_back(static_cast<GrantRef>(*r));
    }
    auto ev = read_node(f + "/event-channel");
    auto port = ev ? parse_decimal(*ev, PVKIT_EVTCHN_MAX_PORT) : std::nullopt;
    if (!port || *port == 0)
        return fail("event-channel missing or not in 1.." + std::to_string(PVKIT_EVTCHN_MAX_PORT));
    if (*port != dev.handoff->port)
        return fail("event-channel " + std::to_string(*port) + " does not match the hand-off's port " +
                    std::to_string(dev.handoff->port));
    auto proto = read_node(f + "/protocol");
    if (!proto || *proto != "x86_64-abi")
        return fail("protocol is not x86_64-abi");

    Handoff h = std::move(*dev.handoff);
    dev.handoff.reset();
    const std::uint32_t serial = m_next_serial++;
    auto conn = Connection::create(std::move(h.pool), std::move(h.channel), refs, dev.limits,
                                   dev.image->fd(), serial, dev.counters,
                                   ConnectionOptions{m_options.inline_writes && !m_options.direct,
                                                     m_options.inline_reads && !m_options.direct});
    if (!conn)
        return fail(std::string(to_string(conn.error().error)) + ": " + to_string(conn.error().grant_error));
    dev.conn = std::move(conn.value());
    m_by_serial[serial] = &dev;
    epoll_add(dev.conn->wait_fd(), tag(Source::kDevice, serial));
    ++dev.counters.connections;
    set_state(dev, XenbusState::kConnected);
    dev.phase = Phase::kConnected;
    log(dev, "Connected: ring order " + std::to_string(order) + " (" + std::to_string(dev.conn->nr_ents()) +
                 " slots), event channel " + std::to_string(*port));
}

bool Daemon::Impl::reconcile(Device& dev) {
    const Phase before = dev.phase;
    if (dev.phase == Phase::kDropping) {
        if (dev.conn && dev.conn->ops_in_flight() == 0)
            release_connection(dev);
        return false;
    }
    // Is the device still there?
    auto online_text = read_node(dev.dir + "/online");
    if (!online_text) {
        auto listing = m_store->directory(dev.dir);
        if (!listing && !m_store->connected()) {
            store_lost("directory", listing.error());
            return false;
        }
        if (!listing && listing.error() == StoreError::kNoEnt) {
            // The toolstack removed the directory: drop the device at once
            // and write nothing (docs/handshake.md, teardown).
            unwatch_frontend(dev);
            if (dev.conn) {
                dev.conn->stop();
                dev.phase = Phase::kDropping;
                if (dev.conn->ops_in_flight() == 0)
                    release_connection(dev);
            } else {
                dev.phase = Phase::kDropping;
            }
            dev.handoff.reset();
            dev.image.reset();
            return false;
        }
    }
    const bool online = online_text && *online_text == "1";
    const XenbusState ours = read_state(dev.dir + "/state");
    watch_frontend(dev);
    const XenbusState theirs = read_state(dev.frontend_dir + "/state");
    if (m_store_down)
        return false; // what was read is not the store's: decide nothing
    if (theirs != XenbusState::kInitialising)
        dev.failed_this_round = false;

    switch (dev.phase) {
    case Phase::kNew:
        if (!online) {
            // A device being removed while no backend served it: say we hold
            // nothing, so the toolstack's teardown finishes.
            if (ours != XenbusState::kClosed && ours != XenbusState::kUnknown)
                set_state(dev, XenbusState::kClosed);
            dev.phase = Phase::kClosed;
            break;
        }
        if (ours == XenbusState::kInitialising || ours == XenbusState::kUnknown) {
            if (!setup(dev) && !m_store_down) {
                dev.phase = Phase::kClosed;
                dev.failed_this_round = true;
            }
            break;
        }
        // A state left by an earlier instance is stale: whatever it mapped
        // died with it. Closed first; InitWait once the frontend starts over.
        log(dev, std::string("taking over: stale state ") + pvkit::toolstack::to_string(ours) + ", going Closed");
        set_state(dev, XenbusState::kClosed);
        dev.phase = Phase::kClosed;
        break;

    case Phase::kClosed:
        if (ours != XenbusState::kClosed && ours != XenbusState::kUnknown)
            set_state(dev, XenbusState::kClosed); // e.g. the toolstack wrote Closing
        if (online && theirs == XenbusState::kInitialising && !dev.failed_this_round) {
            if (!setup(dev) && !m_store_down)
                dev.failed_this_round = true;
        }
        break;

    case Phase::kInitWait:
        if (!online || ours == XenbusState::kClosing) {
            dev.handoff.reset();
            finalize(dev);
            break;
        }
        if (theirs == XenbusState::kClosing || theirs == XenbusState::kClosed || theirs == XenbusState::kUnknown) {
            dev.handoff.reset();
            finalize(dev);
            break;
        }
        if (theirs == XenbusState::kInitialised) {
            if (!dev.handoff)
                break; // the hand-off wakes us up when it arrives
            connect(dev);
        }
        break;

    case Phase::kConnected:
        if (dev.conn->halted()) {
            ++dev.counters.ring_halts;
            const std::string why = "ring halted: " + dev.conn->halt()->describe();
            write_device_nodes(dev, {{"error", why}});
            start_closing(dev, why, true);
            break;
        }
        if (!online || ours == XenbusState::kClosing) {
            start_closing(dev, "the toolstack is removing the device", ours != XenbusState::kClosing);
            break;
        }
        if (theirs == XenbusState::kClosing) {
            start_closing(dev, "the frontend is closing", true);
            break;
        }
        if (theirs != XenbusState::kConnected && theirs != XenbusState::kInitialised) {
            log(dev, std::string("frontend went ") + pvkit::toolstack::to_string(theirs) + ": stopping");
            if (ours != XenbusState::kClosing)
                set_state(dev, XenbusState::kClosing);
            dev.phase = Phase::kStopping;
        }
        break;

    case Phase::kClosing:
        if (theirs == XenbusState::kClosed || theirs == XenbusState::kUnknown ||
            theirs == XenbusState::kInitialising || Clock::now() >= dev.close_deadline ||
            (!dev.conn && theirs != XenbusState::kInitialised && theirs != XenbusState::kConnected)) {
            if (Clock::now() >= dev.close_deadline && theirs != XenbusState::kClosed)
                log(dev, "frontend did not close in time: stopping anyway");
            dev.phase = Phase::kStopping;
        }
        break;

    case Phase::kStopping:
        break;
    case Phase::kDropping:
        break;
    }

    if (dev.phase == Phase::kStopping) {
        if (dev.conn)
            dev.conn->stop();
        if (!dev.conn || dev.conn->ops_in_flight() == 0)
            finalize(dev);
    }
    return dev.phase != before;
}

// ============================================================================
// Hand-off

void Daemon::Impl::accept_handoff_clients() {
    for (;;) {
        UniqueFd fd(::accept4(m_listen.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd.valid())
            return; // EAGAIN, or a client that went away already
        if (m_handoff_clients.size() >= kMaxHandoffClients) {
            std::fprintf(stderr, "pvkit-blkback: too many pending hand-off connections; refusing one\n");
            send_handoff_reply(fd.get(), EBUSY);
            continue;
        }
        std::uint64_t id = m_next_client++;
        epoll_add(fd.get(), tag(Source::kHandoffClient, id));
        m_handoff_clients.emplace(id, HandoffClient{std::move(fd), Clock::now() + kHandoffClientTimeout});
    }
}

void Daemon::Impl::serve_handoff_client(std::uint64_t id) {
    auto it = m_handoff_clients.find(id);
    if (it == m_handoff_clients.end())
        return;
    UniqueFd sock = std::move(it->second.fd);
    m_handoff_clients.erase(it);
    epoll_del(sock.get());

    const pid_t pid = peer_pid(sock.get());
    auto req = recv_handoff(sock.get());
    if (!req) {
        std::fprintf(stderr, "pvkit-blkback: hand-off from pid %d refused: %s\n", static_cast<int>(pid),
                     to_string(req.error()));
        if (req.error() != HandoffError::kSystem)
            send_handoff_reply(sock.get(), req.error() == HandoffError::kFdCount ? EBADF : EINVAL);
        return;
    }
    std::string why;
    int status = accept_handoff(sock.get(), req.value(), why);
    if (status != 0) {
        std::fprintf(stderr, "pvkit-blkback: hand-off for %s %u/%u from pid %d refused: %s\n",
                     req->type.c_str(), unsigned{req->frontend_domid}, req->devid, static_cast<int>(pid),
                     why.c_str());
    }
    // The request (and any descriptors we did not keep) is closed on return.
    send_handoff_reply(sock.get(), status);
}

int Daemon::Impl::accept_handoff(int sock, HandoffRequest& req, std::string& why) {
    if (req.type != "vbd") {
        why = "this daemon serves vbd devices only";
        return ENODEV;
    }
    if (req.frontend_domid == 0 || req.frontend_domid > PVKIT_DOMID_MAX) {
        why = "frontend domid out of range";
        return EINVAL;
    }
    // Credentials: the peer must be the process the store says runs the domain.
    const std::string domain = "/local/domain/" + std::to_string(req.frontend_domid);
    auto pid_text = read_node(domain + "/pid");
    if (m_store_down) {
        why = "the store is unreachable (reconnecting); try again";
        return EAGAIN;
    }
    auto pid = pid_text ? parse_decimal(*pid_text, INT32_MAX) : std::nullopt;
    const pid_t peer = peer_pid(sock);
    if (!pid || peer <= 0 || static_cast<std::uint64_t>(peer) != *pid) {
        why = "peer pid " + std::to_string(peer) + " is not " + domain + "/pid (" +
              (pid_text ? *pid_text : std::string("missing")) + ")";
        return EPERM;
    }
    Device* dev = find_device(req.frontend_domid, req.devid);
    const std::string dir = std::string(kBackendRoot) + "/" + std::to_string(req.frontend_domid) + "/" +
                            std::to_string(req.devid);
    auto online = read_node(dir + "/online");
    if (m_store_down) {
        why = "the store is unreachable (reconnecting); try again";
        return EAGAIN;
    }
    if (dev == nullptr || dev->phase == Phase::kDropping || !online || *online != "1") {
        why = "no such device online in " + std::string(kBackendRoot);
        return ENODEV;
    }
    if (dev->phase == Phase::kConnected || dev->phase == Phase::kClosing || dev->phase == Phase::kStopping) {
        why = "device is connected";
        return EBUSY;
    }
    if (dev->phase != Phase::kInitWait) {
        why = "device is not in InitWait";
        return EAGAIN;
    }
    if (req.ports.size() != 1) {
        why = "a vbd has exactly one queue";
        return EINVAL;
    }
    const pvkit_evtchn_port_t port = req.ports[0];
    if (port == 0 || port > PVKIT_EVTCHN_MAX_PORT) {
        why = "port out of range";
        return EINVAL;
    }
    // The port must be the frontend's event-channel node. If the frontend
    // has not written it yet, connect() checks it once it is Initialised.
    if (auto ev = read_node(dev->frontend_dir + "/event-channel")) {
        auto n = parse_decimal(*ev, PVKIT_EVTCHN_MAX_PORT);
        if (!n || *n != port) {
            why = "port " + std::to_string(port) + " does not match event-channel '" + *ev + "'";
            return EINVAL;
        }
    }
    if (!is_eventfd(req.fds[1].get()) || !is_eventfd(req.fds[2].get())) {
        why = "event-channel descriptors are not eventfds";
        return EBADF;
    }
    for (int i = 1; i <= 2; ++i) {
        // A blocking eventfd would stall the whole loop on an empty read.
        int fl = ::fcntl(req.fds[static_cast<std::size_t>(i)].get(), F_GETFL);
        if (fl < 0 || ::fcntl(req.fds[static_cast<std::size_t>(i)].get(), F_SETFL, fl | O_NONBLOCK) != 0) {
            why = "cannot make the eventfds non-blocking";
            return EBADF;
        }
    }
    auto pool = GrantPool::attach(std::move(req.fds[0]));
    if (!pool) {
        why = std::string("grant pool refused: ") + to_string(pool.error());
        return EINVAL;
    }
    if (pool->layout().owner != req.frontend_domid) {
        why = "grant pool belongs to domain " + std::to_string(pool->layout().owner);
        return EINVAL;
    }
    // A backend that died holding mappings left READING/WRITING bits in
    // this pool; this daemon holds none of them now, so they are stale.
    // Clearing them lets the frontend end those grants (handshake.md,
    // reconnecting after a backend restart).
    {
        GrantEntryWord entries(pool->table_base(), pool->layout().nr_grants);
        std::uint32_t cleared = 0;
        for (GrantRef ref = 1; ref < entries.nr_grants(); ++ref) {
            GrantEntrySnapshot e = entries.load(ref);
            if (e.domid == PVKIT_DOMID_HOST && (e.flags & PVKIT_GTF_IN_USE) != 0) {
                entries.clear_flags(ref, PVKIT_GTF_IN_USE);
                ++cleared;
            }
        }
        if (cleared > 0)
            log(*dev, "cleared " + std::to_string(cleared) + " stale in-use grant(s) left by an earlier instance");
    }
    Handoff h;
    h.pool = std::make_unique<GrantPool>(std::move(pool.value()));
    h.channel = EventChannel(std::move(req.fds[1]), std::move(req.fds[2]));
    h.port = port;
    dev->handoff = std::move(h);
    dev->dirty = true;
    log(*dev, "hand-off accepted from pid " + std::to_string(peer) + ": pool of " +
                  std::to_string(dev->handoff->pool->layout().nr_frames) + " frames, port " + std::to_string(port));
    return 0;
}

// ============================================================================
// Data path

void Daemon::Impl::epoll_add(int fd, std::uint64_t t) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = t;
    if (::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        std::fprintf(stderr, "pvkit-blkback: epoll_ctl add: %s\n", std::strerror(errno));
}

void Daemon::Impl::epoll_del(int fd) { (void)::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, fd, nullptr); }

std::uint32_t Daemon::Impl::ops_in_flight() const {
    std::uint32_t n = 0;
    for (const auto& [serial, dev] : m_by_serial)
        n += dev->conn->ops_in_flight();
    return n;
}

bool Daemon::Impl::reap_completions() {
    bool any = false;
    while (io_uring_cqe* cqe = m_io->peek()) {
        const std::uint64_t data = io_uring_cqe_get_data64(cqe);
        const std::int32_t res = cqe->res;
        m_io->seen(cqe);
        any = true;
        auto it = m_by_serial.find(static_cast<std::uint32_t>(data >> 32));
        if (it == m_by_serial.end())
            continue;
        Device& dev = *it->second;
        dev.conn->complete(static_cast<std::uint32_t>(data & 0xffffffffu), res, *m_io);
        if (dev.conn->ops_in_flight() == 0 && (dev.phase == Phase::kStopping || dev.phase == Phase::kDropping))
            dev.dirty = true;
    }
    return any;
}

// One pass: completions first (they free budget and produce responses,
// published at once), then rounds of: consume up to `submit_chunk` requests
// per device, one submit for everything queued, reap what completed during
// the submit and publish those responses, until the rings are empty. The
// chunks let a frontend refill its ring while the backend still works on
// the rest (cached reads complete inside io_uring_submit). Returns whether
// anything happened.
bool Daemon::Impl::run_data_path() {
    bool busy = reap_completions();
    if (busy)
        flush_all_responses();
    const std::uint32_t capacity = m_io->capacity();
    const std::uint32_t chunk = m_options.submit_chunk == 0 ? capacity : m_options.submit_chunk;
    for (unsigned round = 0; round < kMaxRounds; ++round) {
        bool consumed = false;
        std::uint32_t in_flight = ops_in_flight();
        for (auto& [serial, dev] : m_by_serial) {
            Connection& c = *dev->conn;
            // A halt found by pending() or final_check() is handled here too.
            if (c.halted() && dev->phase == Phase::kConnected)
                dev->dirty = true;
            if (!c.consuming())
                continue;
            const std::uint32_t budget =
                std::min(in_flight < capacity ? capacity - in_flight : 0, chunk);
            const std::uint32_t before = c.ops_in_flight();
            std::uint32_t n = c.service(*m_io, budget);
            in_flight += c.ops_in_flight() - before;
            if (n > 0)
                consumed = true;
            if (c.halted())
                dev->dirty = true;
        }
        if (m_io->queued() > 0) {
            int r = m_io->submit();
            if (r < 0)
                std::fprintf(stderr, "pvkit-blkback: io_uring_submit: %s\n", std::strerror(-r));
        }
        // Buffered I/O often completes during submit: answer it in this round.
        if (reap_completions() || consumed)
            flush_all_responses();
        if (!consumed)
            break;
        busy = true;
    }
    return busy;
}

void Daemon::Impl::flush_all_responses() {
    for (auto& [serial, dev] : m_by_serial)
        dev->conn->flush_responses();
}

bool Daemon::Impl::any_work_pending() {
    for (auto& [serial, dev] : m_by_serial) {
        if (dev->conn->pending() > 0)
            return true;
    }
    return m_io->peek() != nullptr;
}

void Daemon::Impl::tick() {
    std::uint64_t expirations = 0;
    (void)!::read(m_timer.get(), &expirations, sizeof expirations);
    const auto now = Clock::now();
    for (auto& [key, dev] : m_devices) {
        if (dev->phase == Phase::kClosing && now >= dev->close_deadline)
            dev->dirty = true;
    }
    for (auto it = m_handoff_clients.begin(); it != m_handoff_clients.end();) {
        if (now >= it->second.deadline) {
            epoll_del(it->second.fd.get());
            it = m_handoff_clients.erase(it); // a client that never sent its request
        } else {
            ++it;
        }
    }
    if (m_store_down)
        try_store_reconnect();
    publish_statistics(false);
}

void Daemon::Impl::publish_statistics(bool force) {
    // While the store is away the counters go on; the change is published
    // once it is back (m_store_resync).
    if (m_store_down)
        return;
    const auto now = Clock::now();
    for (auto& [key, dev] : m_devices) {
        if (dev->phase == Phase::kDropping || dev->phase == Phase::kNew)
            continue;
        if (dev->published_once && dev->counters == dev->published)
            continue;
        if (!force && dev->published_once && now - dev->last_publish < m_options.stats_interval)
            continue;
        auto current = dev->counters.items();
        auto old = dev->published.items();
        std::vector<std::pair<std::string, std::string>> changed;
        for (std::size_t i = 0; i < current.size(); ++i) {
            if (dev->published_once && current[i].second == old[i].second)
                continue;
            changed.emplace_back("statistics/" + current[i].first, std::to_string(current[i].second));
        }
        // One transaction: a reader never sees half an update.
        write_device_nodes(*dev, changed);
        dev->published = dev->counters;
        dev->published_once = true;
        dev->last_publish = now;
    }
}

void Daemon::Impl::print_statistics() {
    if (m_options.json_stats) {
        nlohmann::json out = nlohmann::json::object();
        nlohmann::json devices = nlohmann::json::array();
        for (auto& [key, dev] : m_devices) {
            nlohmann::json d;
            d["domid"] = dev->domid;
            d["devid"] = dev->devid;
            d["phase"] = to_string(dev->phase);
            nlohmann::json counters = nlohmann::json::object();
            for (const auto& [name, value] : dev->counters.items())
                counters[name] = value;
            d["counters"] = counters;
            devices.push_back(d);
        }
        out["devices"] = devices;
        const auto& rs = m_store->reconnect_stats();
        out["store"] = {{"connected", !m_store_down},
                        {"losses", m_store_losses},
                        {"reconnects", rs.reconnects},
                        {"dial_failures", rs.dial_failures}};
        std::printf("%s\n", out.dump().c_str());
        std::fflush(stdout);
        return;
    }
    const auto& rs = m_store->reconnect_stats();
    std::fprintf(
        stderr, "pvkit-blkback: store: %s, losses=%llu reconnects=%llu dial_failures=%llu\n",
        m_store_down ? "unreachable" : "connected", static_cast<unsigned long long>(m_store_losses),
        static_cast<unsigned long long>(rs.reconnects),
        static_cast<unsigned long long>(rs.dial_failures));
    for (auto& [key, dev] : m_devices) {
        std::string line;
        for (const auto& [name, value] : dev->counters.items()) {
            if (value == 0 && name.rfind("errors/", 0) == 0)
                continue;
            line += " " + name + "=" + std::to_string(value);
        }
        log(*dev, std::string("statistics (") + to_string(dev->phase) + "):" + line);
    }
}

int Daemon::Impl::run() {
    std::array<epoll_event, 64> events;
    while (!m_stop) {
        // Serve rings and completions; while there is work, keep polling for
        // up to the spin time before arming the rings and sleeping.
        bool busy = run_data_path();
        if (busy && m_options.spin.count() > 0) {
            SpinDeadline deadline(m_options.spin);
            // A frontend that keeps its ring busy must not starve the rest
            // of the loop (store events, hand-offs, signals): go through
            // epoll_wait (without sleeping while there is work) at least
            // every kMaxSpinRun.
            SpinDeadline run_limit(kMaxSpinRun);
            while (!deadline.expired()) {
                if (any_work_pending()) {
                    if (run_limit.expired())
                        break;
                    run_data_path();
                    deadline = SpinDeadline(m_options.spin);
                } else {
                    cpu_relax();
                }
            }
        }
        // Final check before sleeping: arm req_event on every ring and look
        // once more, so a request published meanwhile is never slept on.
        bool more = false;
        for (auto& [serial, dev] : m_by_serial) {
            if (dev->conn->final_check() > 0)
                more = true;
            if (dev->conn->halted() && dev->phase == Phase::kConnected)
                dev->dirty = true;
        }
        // Without the store, dirty devices wait for it (the tick dials again).
        bool dirty = false;
        if (!m_store_down) {
            dirty = m_rescan || m_store->queued_events() > 0;
            for (auto& [key, dev] : m_devices)
                dirty = dirty || dev->dirty || !dev->unsaved.empty();
        }
        const int timeout = (more || dirty) ? 0 : -1;
        int n = ::epoll_wait(m_epoll.get(), events.data(), static_cast<int>(events.size()), timeout);
        if (n < 0 && errno != EINTR) {
            std::fprintf(stderr, "pvkit-blkback: epoll_wait: %s\n", std::strerror(errno));
            m_exit_status = 1;
            break;
        }
        // Awake again: while we poll, the frontends need not kick us.
        for (auto& [serial, dev] : m_by_serial)
            dev->conn->disarm();
        for (int i = 0; i < n; ++i) {
            const std::uint64_t t = events[static_cast<std::size_t>(i)].data.u64;
            switch (tag_source(t)) {
            case Source::kStore:
                break; // drained below, together with events queued during calls
            case Source::kListen:
                accept_handoff_clients();
                break;
            case Source::kHandoffClient:
                serve_handoff_client(tag_id(t));
                break;
            case Source::kDevice: {
                auto it = m_by_serial.find(static_cast<std::uint32_t>(tag_id(t)));
                if (it != m_by_serial.end())
                    it->second->conn->drain_kicks();
                break;
            }
            case Source::kIo:
                m_io->clear_event();
                break;
            case Source::kSignal: {
                signalfd_siginfo si{};
                while (::read(m_signal.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                    if (si.ssi_signo == SIGUSR1)
                        print_statistics();
                    else
                        m_stop = true;
                }
                break;
            }
            case Source::kTimer:
                tick();
                break;
            }
        }
        drain_store_events();
        check_store();
        reconcile_dirty();
        drain_store_events();
        check_store();
        if (m_store_resync && !m_store_down) {
            m_store_resync = false;
            publish_statistics(true);
            check_store();
        }
    }
    shutdown();
    return m_exit_status;
}

Daemon::Daemon(DaemonOptions options) : m_impl(std::make_unique<Impl>(std::move(options))) {}
Daemon::~Daemon() = default;
int Daemon::run() { return m_impl->run(); }

} // namespace pvkit::blkback
