#include "pvkit/blkback/io_ring.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace pvkit::blkback {

Result<std::unique_ptr<IoRing>, int> IoRing::create(unsigned entries, unsigned cq_entries) {
    std::unique_ptr<IoRing> ring(new IoRing());
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = cq_entries;
    int r = io_uring_queue_init_params(entries, &ring->m_ring, &params);
    if (r < 0)
        return Unexpected{r};
    ring->m_initialised = true;
    ring->m_cq_entries = params.cq_entries;
    ring->m_event.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!ring->m_event.valid())
        return Unexpected{-errno};
    r = io_uring_register_eventfd(&ring->m_ring, ring->m_event.get());
    if (r < 0)
        return Unexpected{r};
    return ring;
}

IoRing::~IoRing() {
    if (m_initialised)
        io_uring_queue_exit(&m_ring);
}

io_uring_sqe* IoRing::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&m_ring);
    if (sqe == nullptr) {
        if (submit() < 0)
            return nullptr;
        sqe = io_uring_get_sqe(&m_ring);
    }
    if (sqe != nullptr)
        ++m_queued;
    return sqe;
}

int IoRing::submit() {
    if (m_queued == 0)
        return 0;
    int r;
    do {
        r = io_uring_submit(&m_ring);
    } while (r == -EINTR);
    ++m_submit_calls;
    if (r >= 0)
        m_queued = 0;
    return r;
}

io_uring_cqe* IoRing::peek() {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&m_ring, &cqe) != 0)
        return nullptr;
    return cqe;
}

void IoRing::seen(io_uring_cqe* cqe) { io_uring_cqe_seen(&m_ring, cqe); }

int IoRing::wait() {
    io_uring_cqe* cqe = nullptr;
    int r;
    do {
        r = io_uring_wait_cqe(&m_ring, &cqe);
    } while (r == -EINTR);
    return r;
}

void IoRing::clear_event() {
    std::uint64_t value = 0;
    // Non-blocking: nothing to read just means no new completion signal.
    (void)!::read(m_event.get(), &value, sizeof value);
}

} // namespace pvkit::blkback
