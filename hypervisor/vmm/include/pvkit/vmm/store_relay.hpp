// The guest's store ring (pvkit/store.h) and the VMM's relay between it
// and pvkit-stored.
//
// The ring page is its own memfd, mapped here and into the guest's device
// window (a KVM memory slot), so guest user mode can use it directly. The
// VMM owns one connection to pvkit-stored per guest, restricted to the
// guest's domid (CONTROL restrict) before the guest runs: the daemon
// applies the guest's permissions and quotas, not domain 0's. A relay
// thread moves bytes both ways; the guest kicks the store event channel
// (a doorbell write, which KVM turns into an eventfd signal the thread
// waits on) and the thread kicks back through the port's irqfd.
//
// Everything the guest writes is untrusted: each index is read once per
// pass and checked (a producer more than PVKIT_STORE_RING_SIZE ahead of
// its consumer, or a consumer ahead of its producer, is impossible), and
// each request header is checked before its bytes reach the daemon (more
// than PVKIT_STORE_PAYLOAD_MAX bytes is impossible). Either stops the
// relay for that guest: the page says DISCONNECTED with ERR_PROTO, the
// daemon connection is closed (its watches and transactions with it), the
// VMM reports it on stderr and the guest keeps running without a store.
#pragma once

#include <pvkit/abi.h>
#include <pvkit/store.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "pvkit/store/wire.hpp"
#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::vmm {

// One page of shared memory (memfd) holding struct pvkit_store_ring.
class StoreRingPage {
public:
    // Zero-filled, connection CONNECTED. Throws std::system_error.
    static StoreRingPage create();

    StoreRingPage(StoreRingPage&& other) noexcept;
    StoreRingPage& operator=(StoreRingPage&&) = delete;
    StoreRingPage(const StoreRingPage&) = delete;
    StoreRingPage& operator=(const StoreRingPage&) = delete;
    ~StoreRingPage();

    // For KVM_SET_USER_MEMORY_REGION (an integer: nothing parses through it).
    [[nodiscard]] std::uint64_t kvm_userspace_addr() const;
    [[nodiscard]] static constexpr std::uint64_t size() { return PVKIT_PAGE_SIZE; }
    // The shared ring. Only StoreRingPump (and tests playing the guest)
    // touch it, and only through single loads and copies.
    [[nodiscard]] pvkit_store_ring* ring() const { return m_ring; }

private:
    StoreRingPage(UniqueFd fd, pvkit_store_ring* ring) : m_fd(std::move(fd)), m_ring(ring) {}

    UniqueFd m_fd;
    pvkit_store_ring* m_ring;
};

enum class StoreRingFault {
    kRequestIndex,   // req_prod more than the ring size ahead of req_cons
    kResponseIndex,  // rsp_cons ahead of rsp_prod, or behind by more than the ring
    kRequestTooLong, // a request header announced more than PVKIT_STORE_PAYLOAD_MAX bytes
};
const char* to_string(StoreRingFault fault);

// The ring logic on the VMM side, without threads or sockets: the relay
// runs it, tests drive it with a page they write as the guest would.
class StoreRingPump {
public:
    explicit StoreRingPump(pvkit_store_ring* ring);

    // Copies up to `room` bytes the guest produced to the end of `out` and
    // publishes the new req_cons. Returns the number of bytes taken.
    Result<std::size_t, StoreRingFault> take_requests(std::string& out, std::size_t room);
    // Copies as much of `in` as the response ring has room for, removes it
    // from `in` and publishes the new rsp_prod. Returns the bytes moved.
    Result<std::size_t, StoreRingFault> put_responses(std::string& in);
    // Marks the connection closed; `fault` sets error = ERR_PROTO.
    void disconnect(bool fault);
    // Whether the requests taken so far end inside a message (the guest
    // has more of it to write).
    [[nodiscard]] bool mid_message() const { return m_requests.buffered() != 0; }
    [[nodiscard]] bool connected() const { return m_connected; }

    // The evidence of the last fault, for the report.
    [[nodiscard]] std::uint32_t seen_index() const { return m_seen; }
    [[nodiscard]] std::uint32_t own_index() const { return m_own; }

private:
    pvkit_store_ring* m_ring;
    // Our own indices, kept privately: the guest can overwrite the shared
    // copies, so they are written there but never read back.
    std::uint32_t m_req_cons = 0;
    std::uint32_t m_rsp_prod = 0;
    bool m_connected = true;
    store::FrameDecoder m_requests; // checks each request header in the stream
    std::uint32_t m_seen = 0;
    std::uint32_t m_own = 0;
};

struct StoreRelayCounters {
    std::atomic<std::uint64_t> bytes_to_daemon{0};
    std::atomic<std::uint64_t> bytes_to_guest{0};
    std::atomic<std::uint64_t> guest_kicks{0}; // wakeups by the store port's doorbell
    std::atomic<std::uint64_t> irqs_sent{0};   // interrupts raised on the store port
};

class StoreRelay {
public:
    // Connects to pvkit-stored at `socket_path` and restricts the
    // connection to `domid`. Throws std::runtime_error naming the socket
    // and the reason (a start-up error).
    static std::unique_ptr<StoreRelay> connect(const std::string& socket_path, pvkit_domid_t domid,
                                               std::chrono::milliseconds timeout);

    StoreRelay(const StoreRelay&) = delete;
    StoreRelay& operator=(const StoreRelay&) = delete;
    ~StoreRelay();

    // Starts the relay thread on `page`. `kick` is the store port's
    // doorbell eventfd (the guest signals it), `irq` its irqfd eventfd
    // (signalling it interrupts the guest). Throws std::system_error.
    void start(StoreRingPage& page, UniqueFd kick, UniqueFd irq);
    // Stops and joins the thread (also done by the destructor).
    void stop();

    [[nodiscard]] const StoreRelayCounters& counters() const { return m_counters; }
    // Why the guest's store connection ended, or "" while it is up.
    [[nodiscard]] std::string disconnect_reason() const;
    [[nodiscard]] nlohmann::json stats() const;

private:
    StoreRelay(UniqueFd sock, pvkit_domid_t domid) : m_sock(std::move(sock)), m_domid(domid) {}
    void run();
    // Moves bytes until nothing moves; returns whether the guest needs a kick.
    bool service();
    void end_connection(const std::string& reason, bool fault);

    UniqueFd m_sock;
    pvkit_domid_t m_domid;
    UniqueFd m_kick;
    UniqueFd m_irq;
    UniqueFd m_stop;
    std::unique_ptr<StoreRingPump> m_pump;
    std::string m_to_daemon;
    std::string m_to_guest;
    std::thread m_thread;
    StoreRelayCounters m_counters;
    mutable std::mutex m_reason_lock;
    std::string m_reason;
};

} // namespace pvkit::vmm
