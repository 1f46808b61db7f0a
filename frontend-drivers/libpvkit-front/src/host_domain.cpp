#include "pvkit/front/host_domain.hpp"

#include <pvkit/evtchn.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "detail.hpp"
#include "device_impl.hpp"
#include "pvkit/front/error.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::front {

// ---- Errors ------------------------------------------------------------------

const char* to_string(BlkError e) {
    switch (e) {
    case BlkError::kInvalid:
        return "invalid offset, length or buffer";
    case BlkError::kReadOnly:
        return "device is read-only";
    case BlkError::kNotSupported:
        return "operation not supported by the backend";
    case BlkError::kOutOfRange:
        return "beyond the end of the device";
    case BlkError::kIo:
        return "I/O error reported by the backend";
    case BlkError::kBusy:
        return "queue full";
    case BlkError::kNoBuffer:
        return "no room in the grant pool";
    case BlkError::kTimeout:
        return "timed out";
    case BlkError::kClosed:
        return "device closed or backend gone";
    }
    return "unknown error";
}

BlkError blk_error_from_status(int status) {
    switch (-status) {
    case PVKIT_EROFS:
        return BlkError::kReadOnly;
    case PVKIT_EOPNOTSUPP:
        return BlkError::kNotSupported;
    case PVKIT_ERANGE:
        return BlkError::kOutOfRange;
    case PVKIT_EINVAL:
        return BlkError::kInvalid;
    case PVKIT_ENOTCONN:
        return BlkError::kClosed;
    default:
        return BlkError::kIo;
    }
}

namespace detail {

// ---- Store connection -----------------------------------------------------------

using store::StoreError;
using store::StoreResult;

StoreConnection connect_store(const std::string& socket_path, std::chrono::milliseconds timeout) {
    std::string detail;
    auto client = store::StoreClient::connect(socket_path, timeout, &detail);
    if (!client)
        throw FrontError("cannot connect to pvkit-stored at " + detail);
    // Callers wait for watch events on this descriptor in their own poll loops.
    const int raw = client->native_handle();
    StoreConnection c{std::move(client.value()), raw};
    c.client.set_reply_timeout(timeout);
    // Follow a pvkit-stored restart, with a deadline of zero: a call that
    // finds the connection lost dials once and fails at once if no daemon
    // answers, so no call (and no I/O path that pumps store events) ever
    // sleeps in a redial. DomainImpl::pump_events() dials again with its
    // own backoff for as long as it takes.
    store::ReconnectPolicy policy;
    policy.deadline = std::chrono::milliseconds(0);
    if (auto p = c.client.set_reconnect_policy(policy); !p)
        throw_store("enable store reconnection", p.error());
    return c;
}

void throw_store(const std::string& what, store::StoreError error) {
    throw FrontError(what + ": " + std::string(store::to_string(error)));
}

void run_transaction(store::StoreClient& client, const std::string& what,
                     const std::function<std::optional<store::StoreError>(store::TxId)>& body) {
    constexpr int kAttempts = 16;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
        StoreResult<store::TxId> tx = client.transaction_start();
        if (!tx)
            throw_store(what + ": transaction start", tx.error());
        std::optional<StoreError> failed;
        try {
            failed = body(*tx);
        } catch (...) {
            (void)client.transaction_end(*tx, false);
            throw;
        }
        if (failed) {
            (void)client.transaction_end(*tx, false);
            throw_store(what, *failed);
        }
        StoreResult<void> done = client.transaction_end(*tx, true);
        if (done)
            return;
        if (done.error() != StoreError::kAgain)
            throw_store(what + ": commit", done.error());
    }
    throw FrontError(what + ": transaction conflicted " + std::to_string(kAttempts) +
                     " times (EAGAIN)");
}

std::optional<store::StoreError> apply_ops(store::StoreClient& client,
                                           const std::vector<toolstack::StoreOp>& ops,
                                           store::TxId tx) {
    for (const toolstack::StoreOp& op : ops) {
        StoreResult<void> r = op.kind == toolstack::StoreOp::Kind::kMkdir
                                  ? client.mkdir(op.path, tx)
                                  : client.write(op.path, op.value, tx);
        if (!r)
            return r.error();
        store::Perms perms;
        for (const std::string& text : op.perms) {
            std::optional<store::Perm> p = store::parse_perm(text);
            if (!p)
                return StoreError::kInval;
            perms.push_back(*p);
        }
        if (!perms.empty()) {
            r = client.set_perms(op.path, perms, tx);
            if (!r)
                return r.error();
        }
    }
    return std::nullopt;
}

// ---- Frames -----------------------------------------------------------------------

FrameAllocator::FrameAllocator(std::uint32_t first, std::uint32_t count) {
    if (count > 0)
        m_extents.emplace(first, count);
    m_free_frames = count;
}

std::optional<std::uint32_t> FrameAllocator::alloc(std::uint32_t count) {
    if (count == 0)
        return std::nullopt;
    for (auto it = m_extents.begin(); it != m_extents.end(); ++it) {
        if (it->second < count)
            continue;
        const std::uint32_t first = it->first;
        const std::uint32_t left = it->second - count;
        m_extents.erase(it);
        if (left > 0)
            m_extents.emplace(first + count, left);
        m_free_frames -= count;
        return first;
    }
    return std::nullopt;
}

void FrameAllocator::free(std::uint32_t first, std::uint32_t count) {
    if (count == 0)
        return;
    m_free_frames += count;
    auto next = m_extents.lower_bound(first);
    // Merge with the extent that ends where this one starts, and with the
    // one that starts where it ends, so extents are never adjacent.
    if (next != m_extents.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second == first) {
            first = prev->first;
            count += prev->second;
            m_extents.erase(prev);
        }
    }
    if (next != m_extents.end() && next->first == first + count) {
        count += next->second;
        m_extents.erase(next);
    }
    m_extents.emplace(first, count);
}

// ---- The domain ---------------------------------------------------------------------

namespace {

std::atomic<unsigned> g_domain_counter{0};

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > toolstack::kNameMaxLength)
        return false;
    // The config's name characters, minus '.', which store paths do not allow.
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

} // namespace

DomainImpl::DomainImpl(HostDomainOptions opts, store::StoreClient toolstack)
    : options(std::move(opts)), dom0(std::move(toolstack)), m_self{store::StoreClient(nullptr), -1},
      m_ports(std::size_t{PVKIT_EVTCHN_MAX_PORT} + 1, false) {}

void DomainImpl::open_restricted() {
    m_self = connect_store(options.store_socket, options.timeout);
    // First thing on the connection: from now on it speaks as the domain.
    StoreResult<void> r = m_self.client.restrict(domid);
    if (!r)
        throw_store("restrict the store connection to domain " + std::to_string(domid), r.error());
}

void DomainImpl::create_in_store() {
    if (name.empty())
        name = "hostproc-" + std::to_string(::getpid()) + "-" + std::to_string(g_domain_counter++);
    if (!valid_name(name))
        throw FrontError("domain name '" + name +
                         "': expected 1 to 64 characters from A-Z a-z 0-9 _ -");
    toolstack::DomainConfig config;
    config.source = "libpvkit-front";
    config.name = name;
    config.type = toolstack::DomainType::kHostProcess;

    run_transaction(dom0, "create domain " + name, [&](store::TxId tx) -> std::optional<StoreError> {
        // Domids in use, then the lowest free one; a racing creator that
        // picks the same one conflicts at commit and we start over.
        std::vector<pvkit_domid_t> in_use;
        StoreResult<std::vector<std::string>> list = dom0.directory("/local/domain", tx);
        if (!list && list.error() != StoreError::kNoEnt)
            return list.error();
        if (list) {
            for (const std::string& child : *list) {
                if (auto d = toolstack::parse_domid(child))
                    in_use.push_back(*d);
            }
        }
        std::optional<pvkit_domid_t> picked = toolstack::allocate_domid(in_use);
        if (!picked)
            throw FrontError("create domain " + name + ": every domid is in use");
        StoreResult<std::string> existing = dom0.read(toolstack::vm_path(name), tx);
        if (existing || existing.error() != StoreError::kNoEnt) {
            if (existing)
                throw FrontError("create domain " + name + ": the name is in use");
            return existing.error();
        }
        auto ops = toolstack::domain_create_ops(*picked, config);
        if (!ops)
            throw FrontError("create domain " + name + ": " + toolstack::to_string(ops.error()));
        // The pid pvkit-blkback checks (SO_PEERCRED) before it takes our
        // grant pools: written by domain 0, readable by the domain.
        ops->push_back({toolstack::StoreOp::Kind::kWrite,
                        toolstack::domain_path(*picked) + "/pid", std::to_string(::getpid()),
                        {toolstack::perm_none(PVKIT_DOMID_HOST), toolstack::perm_read(*picked)}});
        if (auto err = apply_ops(dom0, *ops, tx))
            return err;
        domid = *picked;
        return std::nullopt;
    });
    m_owned = true;
    try {
        open_restricted();
    } catch (...) {
        destroy();
        throw;
    }
}

void DomainImpl::adopt_in_store(pvkit_domid_t id) {
    domid = id;
    const std::string home = toolstack::domain_path(domid);
    StoreResult<std::string> type = dom0.read(home + "/type");
    if (!type)
        throw_store("adopt domain " + std::to_string(domid) + ": " + home + "/type", type.error());
    if (*type != toolstack::to_string(toolstack::DomainType::kHostProcess))
        throw FrontError("adopt domain " + std::to_string(domid) + ": type is '" + *type +
                         "', expected host-process");
    StoreResult<std::string> n = dom0.read(home + "/name");
    name = n ? *n : std::string();
    run_transaction(dom0, "adopt domain " + std::to_string(domid),
                    [&](store::TxId tx) -> std::optional<StoreError> {
                        std::vector<toolstack::StoreOp> ops{
                            {toolstack::StoreOp::Kind::kWrite, home + "/pid",
                             std::to_string(::getpid()),
                             {toolstack::perm_none(PVKIT_DOMID_HOST), toolstack::perm_read(domid)}}};
                        return apply_ops(dom0, ops, tx);
                    });
    m_owned = false;
    open_restricted();
}

void DomainImpl::register_device(const std::string& token, DeviceImpl* device) {
    m_devices[token] = device;
}

void DomainImpl::unregister_device(const std::string& token) { m_devices.erase(token); }

namespace {

// How often a HostDomain redials a pvkit-stored that went away.
constexpr std::chrono::milliseconds kStoreRetryFirst{10};
constexpr std::chrono::milliseconds kStoreRetryMax{500};

} // namespace

void DomainImpl::store_lost() {
    if (m_store_down)
        return;
    // The client closed the descriptor; connected devices keep doing I/O
    // (their data path is the ring and the event channel), only their
    // handshakes wait for the store.
    m_store_down = true;
    m_self.fd = -1;
    m_store_backoff = kStoreRetryFirst;
    m_store_retry_at = Clock::now() + m_store_backoff;
}

void DomainImpl::check_reconnected() {
    if (!m_self.client.connected()) {
        store_lost();
        return;
    }
    m_store_down = false;
    const std::uint64_t reconnects = m_self.client.reconnect_stats().reconnects;
    if (reconnects == m_seen_reconnects && m_self.fd >= 0)
        return;
    // A new connection (restricted again, watches set again): a new
    // descriptor, which may or may not have the old number. The watches'
    // first events are queued and make every device re-read its backend.
    m_seen_reconnects = reconnects;
    m_self.fd = m_self.client.native_handle();
}

std::size_t DomainImpl::pump_events() {
    if (!m_store_down && !m_self.client.connected())
        store_lost();
    const bool redial = m_store_down;
    const Clock::time_point now = Clock::now();
    if (redial && now < m_store_retry_at)
        return 0;
    std::size_t handed = 0;
    // Drain everything buffered or readable now; a device's reaction may
    // queue more events (its own store calls read the socket), hence the
    // bound rather than a loop until quiet. With the connection closed the
    // first call dials once (the policy's deadline is zero); on success it
    // restores the restriction and the watches, whose events (one per
    // watch) it queues: each device then re-reads its backend.
    for (int round = 0; round < 256; ++round) {
        StoreResult<store::WatchEvent> ev = m_self.client.wait_for_event(std::chrono::milliseconds(0));
        if (!ev)
            break; // kTimedOut: quiet; otherwise lost, and check_reconnected() sees it
        auto it = m_devices.find(ev->token);
        if (it != m_devices.end()) {
            it->second->on_store_event();
            ++handed;
        }
    }
    if (redial && !m_self.client.connected()) {
        // Still unreachable: dial again later.
        m_store_retry_at = now + m_store_backoff;
        m_store_backoff = std::min(m_store_backoff * 2, kStoreRetryMax);
        return handed;
    }
    check_reconnected();
    return handed;
}

std::optional<pvkit_evtchn_port_t> DomainImpl::alloc_port() {
    for (pvkit_evtchn_port_t p = 1; p < m_ports.size(); ++p) {
        if (!m_ports[p]) {
            m_ports[p] = true;
            return p;
        }
    }
    return std::nullopt;
}

void DomainImpl::free_port(pvkit_evtchn_port_t port) {
    if (port < m_ports.size())
        m_ports[port] = false;
}

void DomainImpl::destroy() {
    if (m_destroyed)
        return;
    m_destroyed = true;
    // Devices detach themselves (teardown dance) and unregister.
    std::vector<DeviceImpl*> devices;
    for (auto& [token, dev] : m_devices)
        devices.push_back(dev);
    std::string first_error;
    std::vector<toolstack::DeviceRef> left;
    for (DeviceImpl* dev : devices) {
        try {
            dev->detach();
        } catch (const FrontError& e) {
            if (first_error.empty())
                first_error = e.what();
            left.push_back(dev->device_ref());
        }
    }
    if (m_owned && domid != 0) {
        const auto paths = toolstack::domain_destroy_paths(domid, name, left);
        run_transaction(dom0, "destroy domain " + name, [&](store::TxId tx) -> std::optional<StoreError> {
            for (const std::string& path : paths) {
                StoreResult<void> r = dom0.rm(path, tx);
                if (!r && r.error() != StoreError::kNoEnt)
                    return r.error();
            }
            return std::nullopt;
        });
    } else if (domid != 0) {
        (void)dom0.rm(toolstack::domain_path(domid) + "/pid");
    }
    if (!first_error.empty())
        throw FrontError(first_error);
}

} // namespace detail

// ---- HostDomain ----------------------------------------------------------------------

namespace {

std::unique_ptr<detail::DomainImpl> make_impl(const HostDomainOptions& options) {
    detail::StoreConnection c = detail::connect_store(options.store_socket, options.timeout);
    return std::make_unique<detail::DomainImpl>(options, std::move(c.client));
}

} // namespace

HostDomain HostDomain::create(const HostDomainOptions& options) {
    auto impl = make_impl(options);
    impl->name = options.name;
    impl->create_in_store();
    return HostDomain(std::move(impl));
}

HostDomain HostDomain::adopt(pvkit_domid_t domid, const HostDomainOptions& options) {
    auto impl = make_impl(options);
    impl->adopt_in_store(domid);
    return HostDomain(std::move(impl));
}

HostDomain::HostDomain(std::unique_ptr<detail::DomainImpl> impl) : m_impl(std::move(impl)) {}
HostDomain::HostDomain(HostDomain&&) noexcept = default;
HostDomain& HostDomain::operator=(HostDomain&&) noexcept = default;

HostDomain::~HostDomain() {
    if (!m_impl)
        return;
    try {
        m_impl->destroy();
    } catch (const std::exception&) {
        // A destructor cannot report; destroy() does for callers who ask.
    }
}

pvkit_domid_t HostDomain::domid() const { return m_impl->domid; }
const std::string& HostDomain::name() const { return m_impl->name; }
void HostDomain::destroy() { m_impl->destroy(); }
store::StoreClient& HostDomain::toolstack() { return m_impl->dom0; }
store::StoreClient& HostDomain::store() { return m_impl->m_self.client; }

} // namespace pvkit::front
