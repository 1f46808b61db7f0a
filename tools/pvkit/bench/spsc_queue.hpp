// The baseline for `pvkit bench ring`: a bare single-producer
// single-consumer queue in shared memory (Lamport's queue with cached
// indices, one cache line per index). It does nothing but move messages, so
// it is the limit a request/response ring can approach.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

namespace pvkit::bench {

template <class Msg, std::uint32_t N>
struct SpscShared {
    static_assert((N & (N - 1)) == 0, "N must be a power of two");
    alignas(64) std::atomic<std::uint32_t> head{0}; // written by the consumer
    alignas(64) std::atomic<std::uint32_t> tail{0}; // written by the producer
    alignas(64) Msg slots[N];
};

template <class Msg, std::uint32_t N>
class SpscProducer {
public:
    explicit SpscProducer(SpscShared<Msg, N>* q) : m_q(q) {}

    [[nodiscard]] std::uint32_t free_slots() {
        if (m_tail - m_cached_head == N)
            m_cached_head = m_q->head.load(std::memory_order_acquire);
        return N - (m_tail - m_cached_head);
    }
    // Caller checked free_slots().
    void put(const Msg& m) {
        std::memcpy(&m_q->slots[m_tail & (N - 1)], &m, sizeof(Msg));
        ++m_tail;
    }
    void publish() { m_q->tail.store(m_tail, std::memory_order_release); }

private:
    SpscShared<Msg, N>* m_q;
    std::uint32_t m_tail = 0;
    std::uint32_t m_cached_head = 0;
};

template <class Msg, std::uint32_t N>
class SpscConsumer {
public:
    explicit SpscConsumer(SpscShared<Msg, N>* q) : m_q(q) {}

    // Copies out up to `max` messages into `fn`, releases their slots once.
    template <class Fn>
    std::uint32_t consume(Fn&& fn, std::uint32_t max) {
        if (m_cached_tail == m_head)
            m_cached_tail = m_q->tail.load(std::memory_order_acquire);
        std::uint32_t n = m_cached_tail - m_head;
        if (n > max)
            n = max;
        for (std::uint32_t i = 0; i < n; ++i) {
            Msg m;
            std::memcpy(&m, &m_q->slots[(m_head + i) & (N - 1)], sizeof(Msg));
            fn(m);
        }
        if (n > 0) {
            m_head += n;
            m_q->head.store(m_head, std::memory_order_release);
        }
        return n;
    }

private:
    SpscShared<Msg, N>* m_q;
    std::uint32_t m_head = 0;
    std::uint32_t m_cached_tail = 0;
};

} // namespace pvkit::bench
