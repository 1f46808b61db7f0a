// A small owner of one io_uring instance (liburing).
//
// The daemon runs one ring for all devices: every submission carries
// user_data naming (connection serial, op slot), and completions are
// reaped in the event loop. An eventfd registered with the ring makes
// completions visible to epoll.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::blkback {

class IoRing {
public:
    // `entries` submission slots; the completion queue is `cq_entries`
    // long, which bounds the operations the daemon keeps in flight (so the
    // completion queue can never overflow). Returns -errno on failure.
    static Result<std::unique_ptr<IoRing>, int> create(unsigned entries, unsigned cq_entries);

    IoRing(const IoRing&) = delete;
    IoRing& operator=(const IoRing&) = delete;
    ~IoRing();

    // A free submission entry; submits what is queued first if the queue is
    // full. nullptr only if the kernel refuses to take any.
    io_uring_sqe* get_sqe();
    // Submits everything queued; returns the number submitted or -errno.
    int submit();
    [[nodiscard]] unsigned queued() const { return m_queued; }

    // The oldest completion, without waiting, or nullptr.
    io_uring_cqe* peek();
    void seen(io_uring_cqe* cqe);
    // Blocks until at least one completion is there; -errno on failure.
    int wait();

    [[nodiscard]] int event_fd() const { return m_event.get(); }
    // Drains the eventfd counter after a wakeup.
    void clear_event();

    [[nodiscard]] unsigned capacity() const { return m_cq_entries; }
    [[nodiscard]] std::uint64_t submit_calls() const { return m_submit_calls; }

private:
    IoRing() = default;

    io_uring m_ring{};
    bool m_initialised = false;
    UniqueFd m_event;
    unsigned m_queued = 0;
    unsigned m_cq_entries = 0;
    std::uint64_t m_submit_calls = 0;
};

} // namespace pvkit::blkback
