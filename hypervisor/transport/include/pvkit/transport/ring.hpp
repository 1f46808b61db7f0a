// C++ ends of the shared ring in <pvkit/ring.h>.
//
// The protocol logic (index checks, hold-off, final check) lives once, in
// the C header that guests use too; these wrappers add types, a halted
// state with a reason, and the in-flight table that checks response ids.
#pragma once

#include <pvkit/ring.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit {

enum class RingError {
    kBadGeometry, // ring memory too small, not page-sized, or order too large
    kProtocol,    // the peer published an impossible index: ring halted
    kBadResponse, // a response failed the caller's check (unknown id...): ring halted
    kFull,        // no free slot (requests) or nothing to answer (responses)
    kHalted,      // the ring was halted earlier
    kTimeout,     // nothing arrived before the wait's timeout
};
const char* to_string(RingError e);

// Why a ring was halted, with the numbers that proved it.
struct RingHalt {
    RingError error = RingError::kProtocol;
    // The peer's producer index, read again when halting: for the message
    // only; the decision to halt used the single read that failed the check.
    std::uint32_t peer_index = 0;
    std::uint32_t consumer = 0;   // our consumer index at the time
    std::uint32_t limit = 0;      // how many entries could legitimately exist
    [[nodiscard]] std::string describe() const;
};

namespace detail {
template <class T, class Slot>
constexpr void check_wire_type() {
    static_assert(std::is_trivially_copyable_v<T>, "ring entries must be trivially copyable");
    static_assert(std::has_unique_object_representations_v<T>,
                  "ring entries must have no hidden padding (it would leak private memory)");
    static_assert(sizeof(T) <= sizeof(Slot), "entry larger than the ring slot");
}
} // namespace detail

// Frontend end. `Slot` is the protocol's slot union (or any type of slot size).
template <class Slot>
class FrontRing {
public:
    static Result<FrontRing, RingError> init(std::span<std::byte> mem) {
        FrontRing r;
        if (mem.size() > std::numeric_limits<std::uint32_t>::max() ||
            pvkit_front_ring_init(&r.m_ring, mem.data(), static_cast<std::uint32_t>(mem.size()),
                                  sizeof(Slot)) != 0)
            return Unexpected{RingError::kBadGeometry};
        return r;
    }

    [[nodiscard]] std::uint32_t nr_ents() const { return m_ring.nr_ents; }
    [[nodiscard]] std::uint32_t free_slots() const { return pvkit_front_ring_free(&m_ring); }
    // Requests produced and not yet answered.
    [[nodiscard]] std::uint32_t outstanding() const { return nr_ents() - free_slots(); }
    [[nodiscard]] bool halted() const { return m_halt.has_value(); }
    [[nodiscard]] const std::optional<RingHalt>& halt() const { return m_halt; }

    // Writes a request into the next slot (rest of the slot zeroed).
    template <class Req>
    Result<void, RingError> put(const Req& req) {
        detail::check_wire_type<Req, Slot>();
        if (m_halt)
            return Unexpected{RingError::kHalted};
        if (pvkit_front_ring_put_request(&m_ring, &req, sizeof(Req)) != 0)
            return Unexpected{RingError::kFull};
        return {};
    }

    // Publishes produced requests; true if the backend must be notified.
    [[nodiscard]] bool push() { return pvkit_front_ring_push_requests(&m_ring) != 0; }

    // Responses ready now (rsp_prod read once and checked), without consuming.
    Result<std::uint32_t, RingError> pending() { return check(pvkit_front_ring_responses(&m_ring)); }
    // Before sleeping: arms rsp_event, then looks again.
    Result<std::uint32_t, RingError> final_check() {
        return check(pvkit_front_ring_final_check(&m_ring));
    }

    // Copies out up to `max` ready responses and hands each copy to `accept`,
    // which returns false if the response is bogus (e.g. unknown id): the
    // ring is then halted with kBadResponse. Returns how many were consumed.
    template <class Rsp, class Fn>
    Result<std::uint32_t, RingError> consume(Fn&& accept,
                                             std::uint32_t max = std::numeric_limits<std::uint32_t>::max()) {
        detail::check_wire_type<Rsp, Slot>();
        auto ready = pending();
        if (!ready)
            return ready;
        std::uint32_t n = std::min(*ready, max);
        for (std::uint32_t i = 0; i < n; ++i) {
            Rsp rsp;
            pvkit_front_ring_take_response(&m_ring, &rsp, sizeof(Rsp));
            if (!accept(static_cast<const Rsp&>(rsp))) {
                m_halt = RingHalt{RingError::kBadResponse, m_ring.rsp_cons - 1, m_ring.rsp_cons - 1,
                                  outstanding()};
                return Unexpected{RingError::kBadResponse};
            }
        }
        return n;
    }

    // Direct access for tests that play a hostile peer or inspect indices.
    [[nodiscard]] pvkit_front_ring& raw() { return m_ring; }

private:
    FrontRing() = default;
    Result<std::uint32_t, RingError> check(int r) {
        if (m_halt)
            return Unexpected{RingError::kHalted};
        if (r < 0) {
            m_halt = RingHalt{RingError::kProtocol, PVKIT_RING_LOAD_ONCE(&m_ring.sring->rsp_prod),
                              m_ring.rsp_cons, m_ring.req_prod_pushed - m_ring.rsp_cons};
            return Unexpected{RingError::kProtocol};
        }
        return static_cast<std::uint32_t>(r);
    }

    pvkit_front_ring m_ring{};
    std::optional<RingHalt> m_halt;
};

// Backend end.
template <class Slot>
class BackRing {
public:
    static Result<BackRing, RingError> attach(std::span<std::byte> mem) {
        BackRing r;
        if (mem.size() > std::numeric_limits<std::uint32_t>::max() ||
            pvkit_back_ring_attach(&r.m_ring, mem.data(), static_cast<std::uint32_t>(mem.size()),
                                   sizeof(Slot)) != 0)
            return Unexpected{RingError::kBadGeometry};
        return r;
    }

    [[nodiscard]] std::uint32_t nr_ents() const { return m_ring.nr_ents; }
    // Requests consumed and not yet answered.
    [[nodiscard]] std::uint32_t in_flight() const { return m_ring.req_cons - m_ring.rsp_prod_pvt; }
    [[nodiscard]] bool halted() const { return m_halt.has_value(); }
    [[nodiscard]] const std::optional<RingHalt>& halt() const { return m_halt; }

    Result<std::uint32_t, RingError> pending() { return check(pvkit_back_ring_requests(&m_ring)); }
    Result<std::uint32_t, RingError> final_check() {
        return check(pvkit_back_ring_final_check(&m_ring));
    }

    // Copies out up to `max` requests (req_prod read once) and hands each
    // private copy of the whole slot to `handle`. The copy is the only thing
    // the backend parses; validating it is the caller's job.
    template <class Fn>
    Result<std::uint32_t, RingError> consume(Fn&& handle,
                                             std::uint32_t max = std::numeric_limits<std::uint32_t>::max()) {
        static_assert(std::is_trivially_copyable_v<Slot>);
        auto ready = pending();
        if (!ready)
            return ready;
        std::uint32_t n = std::min(*ready, max);
        for (std::uint32_t i = 0; i < n; ++i) {
            Slot slot;
            pvkit_back_ring_take_request(&m_ring, &slot, sizeof(Slot));
            handle(static_cast<const Slot&>(slot));
        }
        return n;
    }

    // Writes one response (slot zeroed first). kFull if every consumed
    // request is answered already.
    template <class Rsp>
    Result<void, RingError> put_response(const Rsp& rsp) {
        detail::check_wire_type<Rsp, Slot>();
        if (m_halt)
            return Unexpected{RingError::kHalted};
        if (pvkit_back_ring_put_response(&m_ring, &rsp, sizeof(Rsp)) != 0)
            return Unexpected{RingError::kFull};
        return {};
    }

    [[nodiscard]] bool push() { return pvkit_back_ring_push_responses(&m_ring) != 0; }

    [[nodiscard]] pvkit_back_ring& raw() { return m_ring; }

private:
    BackRing() = default;
    Result<std::uint32_t, RingError> check(int r) {
        if (m_halt)
            return Unexpected{RingError::kHalted};
        if (r < 0) {
            m_halt = RingHalt{RingError::kProtocol, PVKIT_RING_LOAD_ONCE(&m_ring.sring->req_prod),
                              m_ring.req_cons, m_ring.nr_ents - in_flight()};
            return Unexpected{RingError::kProtocol};
        }
        return static_cast<std::uint32_t>(r);
    }

    pvkit_back_ring m_ring{};
    std::optional<RingHalt> m_halt;
};

// Waits until `ring` has entries to consume: spins on the shared indices for
// `spin` (no system calls, so a busy peer is served at memory speed), then
// arms the event index with final_check() and sleeps on `channel`. The peer
// kicks only once we armed, which is the notification hold-off. Returns the
// number ready, kTimeout, or the ring's error.
template <class Ring>
Result<std::uint32_t, RingError>
wait_for_ring(Ring& ring, EventChannel& channel, std::chrono::nanoseconds spin = kDefaultSpin,
              std::chrono::milliseconds timeout = std::chrono::milliseconds{-1}) {
    if (spin.count() > 0) {
        SpinDeadline deadline(spin);
        do {
            auto n = ring.pending();
            if (!n || *n > 0)
                return n;
            cpu_relax();
        } while (!deadline.expired());
    }
    for (;;) {
        auto n = ring.final_check();
        if (!n || *n > 0)
            return n;
        if (!channel.wait(std::chrono::nanoseconds{0}, timeout))
            return Unexpected{RingError::kTimeout};
    }
}

// The sender's table of requests in flight. Ids handed to the peer encode a
// slot index and a generation; a response is accepted only if its id names
// an occupied slot with the same generation, so unknown, stale and
// duplicate ids are all caught. Ids are never pointers.
template <class T>
class InFlightTable {
public:
    explicit InFlightTable(std::uint32_t capacity) : m_entries(capacity) {
        m_free.reserve(capacity);
        for (std::uint32_t i = capacity; i > 0; --i)
            m_free.push_back(i - 1);
    }

    [[nodiscard]] std::uint32_t size() const {
        return static_cast<std::uint32_t>(m_entries.size() - m_free.size());
    }
    [[nodiscard]] std::uint32_t capacity() const {
        return static_cast<std::uint32_t>(m_entries.size());
    }

    // Returns the id to send, or nullopt when full.
    std::optional<std::uint64_t> insert(T value) {
        if (m_free.empty())
            return std::nullopt;
        std::uint32_t index = m_free.back();
        m_free.pop_back();
        Entry& e = m_entries[index];
        ++e.generation;
        e.value = std::move(value);
        e.busy = true;
        return (std::uint64_t{e.generation} << 32) | index;
    }

    // Looks up without removing; nullptr if the id is not in flight.
    [[nodiscard]] const T* find(std::uint64_t id) const {
        const Entry* e = lookup(id);
        return e != nullptr ? &e->value : nullptr;
    }

    // Removes and returns the entry for `id`, or nullopt if unknown.
    std::optional<T> take(std::uint64_t id) {
        Entry* e = const_cast<Entry*>(lookup(id)); // lookup only reads; the entry is ours
        if (e == nullptr)
            return std::nullopt;
        e->busy = false;
        m_free.push_back(static_cast<std::uint32_t>(id & 0xffffffffu));
        return std::move(e->value);
    }

private:
    struct Entry {
        T value{};
        std::uint32_t generation = 0;
        bool busy = false;
    };

    [[nodiscard]] const Entry* lookup(std::uint64_t id) const {
        std::uint64_t index = id & 0xffffffffu;
        if (index >= m_entries.size())
            return nullptr;
        const Entry& e = m_entries[index];
        if (!e.busy || e.generation != static_cast<std::uint32_t>(id >> 32))
            return nullptr;
        return &e;
    }

    std::vector<Entry> m_entries;
    std::vector<std::uint32_t> m_free;
};

} // namespace pvkit
