// Event channels between host processes: one eventfd per direction.
//
// A KVM guest reaches the same eventfds through KVM_IOEVENTFD (its kicks)
// and KVM_IRQFD (its interrupts), so a backend holding an EventChannel
// cannot tell a guest from a host-process frontend.
#pragma once

#include <chrono>
#include <cstdint>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit {

// How long a waiter spins on shared memory before it sleeps. Measured here
// (docs/machine-notes.md, "Wakeups and spinning"): below about 5 us the
// peer is often descheduled for longer than the spin and every miss costs a
// ~40 us wakeup; 5 us is the knee, and more than 10 us buys nothing.
inline constexpr std::chrono::nanoseconds kDefaultSpin{5000};

// Both eventfds of one channel; each end uses one to wait and the other to
// notify. Made by the frontend (or the VMM) and passed to the backend.
struct EventChannelFds {
    UniqueFd to_backend;  // frontend notifies, backend waits
    UniqueFd to_frontend; // backend notifies, frontend waits
};
EventChannelFds make_event_channel_fds();

class EventChannel {
public:
    EventChannel() = default;
    EventChannel(UniqueFd wait_fd, UniqueFd notify_fd);

    static EventChannel frontend_end(EventChannelFds& fds);
    static EventChannel backend_end(EventChannelFds& fds);

    // Kicks the other end. Never blocks: a counter that is already huge
    // means a kick is pending anyway. Counted in notifications_sent() only
    // if the kick was delivered (or one was pending).
    void notify();

    // Consumes pending kicks without blocking; true if there were any.
    bool try_consume();

    // Waits for a kick: first polls for `spin` (cheap when the peer answers
    // within it), then sleeps in poll(2) until a kick arrives or `timeout`
    // passes (negative: forever). Returns true if a kick was consumed.
    // Spinning here polls the eventfd (one read(2) per try); a ring user
    // spins on the ring's indices instead (wait_for_ring) and passes 0.
    bool wait(std::chrono::nanoseconds spin = kDefaultSpin,
              std::chrono::milliseconds timeout = std::chrono::milliseconds{-1});

    [[nodiscard]] int wait_fd() const { return m_wait.get(); }
    [[nodiscard]] int notify_fd() const { return m_notify.get(); }
    [[nodiscard]] std::uint64_t notifications_sent() const { return m_sent; }
    [[nodiscard]] std::uint64_t wakeups() const { return m_wakeups; }
    [[nodiscard]] std::uint64_t sleeps() const { return m_sleeps; }

private:
    UniqueFd m_wait;
    UniqueFd m_notify;
    std::uint64_t m_sent = 0;
    std::uint64_t m_wakeups = 0;
    std::uint64_t m_sleeps = 0;
};

// Busy-wait helper shared by the ring wait loops and the benchmarks: a
// monotonic deadline that is cheap to test often.
class SpinDeadline {
public:
    explicit SpinDeadline(std::chrono::nanoseconds spin)
        : m_end(std::chrono::steady_clock::now() + spin) {}
    [[nodiscard]] bool expired() const { return std::chrono::steady_clock::now() >= m_end; }

private:
    std::chrono::steady_clock::time_point m_end;
};

// Hint to the CPU that we are spinning (PAUSE on x86).
inline void cpu_relax() { __builtin_ia32_pause(); }

} // namespace pvkit
