// Internals of libpvkit-front shared by its translation units.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/front/host_domain.hpp"
#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"

namespace pvkit::front::detail {

class DeviceImpl;

// A store connection whose socket we know, so that a waiter can sleep in
// poll(2) on it together with its event channel.
struct StoreConnection {
    store::StoreClient client;
    // Owned by the client's transport; changes when the client reconnects
    // (DomainImpl::pump_events() keeps it current, -1 while down).
    int fd = -1;
};
// Connects to pvkit-stored (resolve_socket_path(path)). Throws FrontError.
StoreConnection connect_store(const std::string& path, std::chrono::milliseconds timeout);

// "<what>: <errno name>" for a failed store call.
[[noreturn]] void throw_store(const std::string& what, store::StoreError error);

// Runs `body(tx)` in a transaction, starting over on EAGAIN (at most 16
// times, docs/handshake.md rule 3). `body` returns a store error to abort
// with, or nullopt to commit; it may throw FrontError (the transaction is
// then aborted).
void run_transaction(store::StoreClient& client, const std::string& what,
                     const std::function<std::optional<store::StoreError>(store::TxId)>& body);

// Performs the toolstack's operations (mkdir/write, then SET_PERMS).
std::optional<store::StoreError> apply_ops(store::StoreClient& client,
                                           const std::vector<toolstack::StoreOp>& ops,
                                           store::TxId tx);

// First-fit allocator of consecutive data frames of a pool.
class FrameAllocator {
public:
    FrameAllocator(std::uint32_t first, std::uint32_t count);
    std::optional<std::uint32_t> alloc(std::uint32_t count);
    // Any subrange of an earlier allocation.
    void free(std::uint32_t first, std::uint32_t count);
    [[nodiscard]] std::uint32_t free_frames() const { return m_free_frames; }

private:
    std::map<std::uint32_t, std::uint32_t> m_extents; // first -> count, never adjacent
    std::uint32_t m_free_frames = 0;
};

// A device's grant pool with its grant table and frame allocator. Shared
// with the PoolBuffers handed out, so the pool stays mapped while any
// buffer lives.
struct PoolMemory {
    explicit PoolMemory(GrantPool p)
        : pool(std::move(p)), grants(pool),
          frames(pool.layout().data_first, pool.layout().nr_data_frames()) {}
    PoolMemory(const PoolMemory&) = delete;
    PoolMemory& operator=(const PoolMemory&) = delete;

    GrantPool pool; // GrantTable keeps a pointer to it: PoolMemory never moves
    GrantTable grants;
    FrameAllocator frames;
};

class DomainImpl {
public:
    DomainImpl(HostDomainOptions options, store::StoreClient toolstack);

    // create() and adopt(): the toolstack part and the restricted connection.
    void create_in_store();
    void adopt_in_store(pvkit_domid_t domid);

    void register_device(const std::string& token, DeviceImpl* device);
    void unregister_device(const std::string& token);

    // Store events, without blocking: each goes to the device whose token
    // it carries. Returns how many were handed out. While the restricted
    // connection is down it redials first (once, without waiting, at most
    // every m_store_backoff); after a reconnect the watches fire again and
    // the devices re-read the store.
    std::size_t pump_events();
    // -1 while the connection is down (a waiter then stops polling it).
    [[nodiscard]] int store_fd() const { return m_store_down ? -1 : m_self.client.native_handle(); }
    // True while pvkit-stored is unreachable: a waiter sleeps in short
    // ticks so that pump_events() gets to redial.
    [[nodiscard]] bool store_down() const { return m_store_down; }

    std::optional<pvkit_evtchn_port_t> alloc_port();
    void free_port(pvkit_evtchn_port_t port);

    void destroy();

    HostDomainOptions options;
    pvkit_domid_t domid = 0;
    std::string name;
    store::StoreClient dom0;
    StoreConnection m_self;

private:
    using Clock = std::chrono::steady_clock;

    void open_restricted();
    // The connection is gone (the client closed its descriptor).
    void store_lost();
    // Notices a reconnect made inside any call on m_self (the devices'
    // own store calls too): takes the new descriptor.
    void check_reconnected();

    bool m_owned = false;
    bool m_destroyed = false;
    bool m_store_down = false;
    std::uint64_t m_seen_reconnects = 0;
    Clock::time_point m_store_retry_at{};
    std::chrono::milliseconds m_store_backoff{0};
    std::map<std::string, DeviceImpl*> m_devices;
    std::vector<bool> m_ports;
};

} // namespace pvkit::front::detail
