#include "pvkit/transport/event_channel.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace pvkit {

namespace {
UniqueFd make_eventfd() {
    // Non-blocking: waits go through poll(2), so a spurious wakeup or a
    // counter drained by someone else never blocks in read(2).
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd.valid())
        throw_errno("eventfd");
    return fd;
}
} // namespace

EventChannelFds make_event_channel_fds() {
    return EventChannelFds{make_eventfd(), make_eventfd()};
}

EventChannel::EventChannel(UniqueFd wait_fd, UniqueFd notify_fd)
    : m_wait(std::move(wait_fd)), m_notify(std::move(notify_fd)) {}

EventChannel EventChannel::frontend_end(EventChannelFds& fds) {
    return EventChannel(std::move(fds.to_frontend), std::move(fds.to_backend));
}

EventChannel EventChannel::backend_end(EventChannelFds& fds) {
    return EventChannel(std::move(fds.to_backend), std::move(fds.to_frontend));
}

void EventChannel::notify() {
    std::uint64_t one = 1;
    ssize_t n;
    do {
        n = ::write(m_notify.get(), &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    // EAGAIN: the counter is saturated, so the peer has a kick pending.
    // Anything else (a closed or foreign descriptor) delivered nothing and
    // is not counted; the caller's next wait times out as it would for a
    // peer that never answers.
    if (n == static_cast<ssize_t>(sizeof one) || (n < 0 && errno == EAGAIN))
        ++m_sent;
}

bool EventChannel::try_consume() {
    std::uint64_t value = 0;
    ssize_t n;
    do {
        n = ::read(m_wait.get(), &value, sizeof value);
    } while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(sizeof value);
}

bool EventChannel::wait(std::chrono::nanoseconds spin, std::chrono::milliseconds timeout) {
    if (spin.count() > 0) {
        SpinDeadline deadline(spin);
        do {
            if (try_consume()) {
                ++m_wakeups;
                return true;
            }
            cpu_relax();
        } while (!deadline.expired());
    } else if (try_consume()) {
        ++m_wakeups;
        return true;
    }
    ++m_sleeps;
    pollfd pfd{m_wait.get(), POLLIN, 0};
    // poll(2) takes an int: clamp, so a long timeout neither wraps to 0 nor
    // turns negative (forever).
    int ms = timeout.count() < 0 ? -1
                                 : static_cast<int>(std::min<std::chrono::milliseconds::rep>(
                                       timeout.count(), std::numeric_limits<int>::max()));
    for (;;) {
        int r = ::poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        if (try_consume()) {
            ++m_wakeups;
            return true;
        }
        // Someone else drained it (or a spurious wakeup): wait again.
        if (ms >= 0)
            return false;
    }
}

} // namespace pvkit
