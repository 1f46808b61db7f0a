// Single-process tests of the shared ring: the C protocol in <pvkit/ring.h>
// and the C++ FrontRing/BackRing/InFlightTable/wait_for_ring on top of it.
// Both ends live on one page-aligned buffer; hostile peers are played by
// writing the shared indices and slots directly, as a peer could.
#include <catch2/catch.hpp>

#include <pvkit/blkif.h>
#include <pvkit/netif.h>
#include <pvkit/ring.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/ring.hpp"
#include "test_support.hpp"

namespace {

using pvkit::BackRing;
using pvkit::EventChannel;
using pvkit::FrontRing;
using pvkit::InFlightTable;
using pvkit::RingError;
using pvkit::test::AlignedBuffer;
using namespace std::chrono_literals;

struct TestRequest {
    std::uint64_t id;
    std::uint64_t value;
};
struct TestResponse {
    std::uint64_t id;
    std::uint64_t result;
};
// 32-byte slots: a response (16 bytes) leaves room that must be zeroed.
union TestSlot {
    TestRequest req;
    TestResponse rsp;
    std::uint8_t bytes[32];
};
static_assert(sizeof(TestSlot) == 32);

constexpr std::uint32_t kSlotSize = sizeof(TestSlot);
constexpr std::uint32_t kPage = PVKIT_PAGE_SIZE;
// (4096 - 64) / 32 = 126 slots fit; the ring uses the power of two below.
constexpr std::uint32_t kEnts = 64;

constexpr std::uint64_t answer_for(std::uint64_t value) { return value * 3 + 1; }

FrontRing<TestSlot> make_front(std::span<std::byte> mem) {
    auto r = FrontRing<TestSlot>::init(mem);
    if (!r)
        throw std::runtime_error("FrontRing::init failed");
    return std::move(r).value();
}

BackRing<TestSlot> make_back(std::span<std::byte> mem) {
    auto r = BackRing<TestSlot>::attach(mem);
    if (!r)
        throw std::runtime_error("BackRing::attach failed");
    return std::move(r).value();
}

// Both ends of one ring on one page-aligned buffer.
struct Rings {
    AlignedBuffer buffer;
    FrontRing<TestSlot> front;
    BackRing<TestSlot> back;

    explicit Rings(std::size_t bytes = kPage)
        : buffer(bytes), front(make_front(buffer.span())), back(make_back(buffer.span())) {}

    // The shared header, as the hostile peer in a test writes it.
    pvkit_sring_hdr& shared() { return *front.raw().sring; }
    // The shared bytes of the slot that index `idx` maps to.
    std::uint8_t* slot(std::uint32_t idx) {
        pvkit_front_ring& r = front.raw();
        return r.slots + std::size_t{idx & (r.nr_ents - 1)} * r.slot_size;
    }

    // Frontend puts `n` requests with values first_value, first_value+1...
    void put_requests(std::uint32_t n, std::uint64_t first_value = 100) {
        for (std::uint32_t i = 0; i < n; ++i) {
            auto r = front.put(TestRequest{first_value + i, first_value + i});
            if (!r)
                throw std::runtime_error("put failed");
        }
    }
    // Backend consumes every ready request and answers each.
    std::uint32_t answer_all() {
        auto n = back.consume([&](const TestSlot& s) {
            auto r = back.put_response(TestResponse{s.req.id, answer_for(s.req.value)});
            if (!r)
                throw std::runtime_error("put_response failed");
        });
        if (!n)
            throw std::runtime_error("backend consume failed");
        return *n;
    }
};

// The value of a Result that must have succeeded; fails the test otherwise.
template <class T, class E>
T must(pvkit::Result<T, E> r) {
    REQUIRE(r.ok());
    return std::move(r).value();
}

bool contains(const std::string& haystack, std::uint32_t number) {
    return haystack.find(std::to_string(number)) != std::string::npos;
}

// ---- Geometry ----------------------------------------------------------------

TEST_CASE("pvkit_ring_nr_ents is the largest power of two whose slots fit", "[ring]") {
    CHECK(pvkit_ring_nr_ents(kPage, 32) == 64);   // 126 fit
    CHECK(pvkit_ring_nr_ents(kPage, 64) == 32);   // 63 fit
    CHECK(pvkit_ring_nr_ents(kPage, 63) == 64);   // exactly 64 fit: 64 + 64 * 63 == 4096
    CHECK(pvkit_ring_nr_ents(kPage, 112) == 32);  // 36 fit
    CHECK(pvkit_ring_nr_ents(kPage, 4032) == 1);  // one slot fills the page exactly
    CHECK(pvkit_ring_nr_ents(kPage, 4033) == 0);  // no slot fits
    CHECK(pvkit_ring_nr_ents(kPage, 0) == 0);     // no slot size, no ring
    CHECK(pvkit_ring_nr_ents(64, 1) == 0);        // header only
    CHECK(pvkit_ring_nr_ents(0, 8) == 0);
    CHECK(pvkit_ring_nr_ents(4 * kPage, 112) == 128); // multi-page: 145 fit
    CHECK(pvkit_ring_nr_ents(16 * kPage, 1) == 32768);
}

TEST_CASE("one-page protocol rings have Xen's ring sizes", "[ring][abi]") {
    // blkif 32, netif tx 256, netif rx 256, as BLK_RING_SIZE / NET_*_RING_SIZE.
    CHECK(pvkit_ring_nr_ents(kPage, sizeof(pvkit_blkif_sring_entry)) == 32);
    CHECK(pvkit_ring_nr_ents(kPage, sizeof(pvkit_netif_tx_sring_entry)) == 256);
    CHECK(pvkit_ring_nr_ents(kPage, sizeof(pvkit_netif_rx_sring_entry)) == 256);
}

TEST_CASE("ring set-up rejects sizes that are not whole pages", "[ring]") {
    AlignedBuffer buf(2 * kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    CHECK(pvkit_front_ring_init(&fr, buf.data(), kPage + 64, kSlotSize) == -PVKIT_EINVAL);
    CHECK(pvkit_back_ring_attach(&br, buf.data(), kPage + 64, kSlotSize) == -PVKIT_EINVAL);
    CHECK(FrontRing<TestSlot>::init(buf.span().first(kPage + 64)).error() ==
          RingError::kBadGeometry);
    CHECK(BackRing<TestSlot>::attach(buf.span().first(kPage + 64)).error() ==
          RingError::kBadGeometry);
}

TEST_CASE("ring set-up rejects rings above PVKIT_RING_MAX_PAGE_ORDER", "[ring]") {
    const std::uint32_t too_big = kPage << (PVKIT_RING_MAX_PAGE_ORDER + 1);
    AlignedBuffer buf(too_big);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    CHECK(pvkit_front_ring_init(&fr, buf.data(), too_big, kSlotSize) == -PVKIT_EINVAL);
    CHECK(pvkit_back_ring_attach(&br, buf.data(), too_big, kSlotSize) == -PVKIT_EINVAL);
    CHECK(FrontRing<TestSlot>::init(buf.span()).error() == RingError::kBadGeometry);
    CHECK(BackRing<TestSlot>::attach(buf.span()).error() == RingError::kBadGeometry);
    // The largest allowed order works.
    const std::uint32_t largest = kPage << PVKIT_RING_MAX_PAGE_ORDER;
    CHECK(pvkit_front_ring_init(&fr, buf.data(), largest, kSlotSize) == 0);
    CHECK(fr.nr_ents == 1024); // (65536 - 64) / 32 = 2046 fit
}

TEST_CASE("ring set-up rejects a slot larger than the ring", "[ring]") {
    struct HugeSlot {
        std::uint8_t bytes[kPage];
    };
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    CHECK(pvkit_front_ring_init(&fr, buf.data(), kPage, kPage - 63) == -PVKIT_EINVAL);
    CHECK(pvkit_back_ring_attach(&br, buf.data(), kPage, 0) == -PVKIT_EINVAL);
    CHECK(FrontRing<HugeSlot>::init(buf.span()).error() == RingError::kBadGeometry);
    CHECK(BackRing<HugeSlot>::attach(buf.span()).error() == RingError::kBadGeometry);
}

TEST_CASE("front ring init wipes the ring and arms both event indices at 1", "[ring]") {
    AlignedBuffer buf(4 * kPage);
    std::memset(buf.data(), 0xAA, buf.size());
    pvkit_front_ring fr{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), 4 * kPage, kSlotSize) == 0);
    // (16384 - 64) / 32 = 510 fit in a four-page ring.
    CHECK(fr.nr_ents == 256);
    CHECK(fr.sring->req_prod == 0);
    CHECK(fr.sring->rsp_prod == 0);
    CHECK(fr.sring->req_event == 1);
    CHECK(fr.sring->rsp_event == 1);
    // Nothing of what was in the memory before survives (no stale data for the peer).
    CHECK(std::all_of(buf.data() + 16, buf.data() + buf.size(),
                      [](std::byte b) { return b == std::byte{0}; }));
    CHECK(pvkit_front_ring_free(&fr) == 256);
}

TEST_CASE("a four-page ring fills and drains every slot across its pages", "[ring]") {
    Rings rings(4 * kPage);
    REQUIRE(rings.front.nr_ents() == 256);
    REQUIRE(rings.back.nr_ents() == 256);
    rings.put_requests(256, 1000);
    CHECK(rings.front.free_slots() == 0);
    (void)rings.front.push();
    // Slots run on past the first two pages (the rest of the ring is unused:
    // 510 slots would fit, 256 is the power of two below).
    // Same byte type as the ring's own slot pointers.
    const auto* base = reinterpret_cast<const std::uint8_t*>(rings.buffer.data());
    CHECK(rings.slot(255) + kSlotSize == base + PVKIT_RING_HDR_SIZE + 256 * kSlotSize);
    CHECK(rings.slot(255) > base + 2 * kPage);
    REQUIRE(rings.answer_all() == 256);
    (void)rings.back.push();
    std::uint64_t expected = 1000;
    auto n = rings.front.consume<TestResponse>([&](const TestResponse& rsp) {
        return rsp.id == expected && rsp.result == answer_for(expected++);
    });
    REQUIRE(n);
    CHECK(*n == 256);
    CHECK(rings.front.free_slots() == 256);
}

// ---- The protocol, step by step (C API) ----------------------------------------

TEST_CASE("C ring: requests and responses make a round trip", "[ring]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(br.nr_ents == fr.nr_ents);

    for (std::uint64_t i = 0; i < 3; ++i) {
        TestRequest req{i, 1000 + i};
        REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    }
    CHECK(pvkit_front_ring_free(&fr) == kEnts - 3);
    // Not visible before the push.
    CHECK(pvkit_back_ring_requests(&br) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 1); // req_event starts at 1
    REQUIRE(pvkit_back_ring_requests(&br) == 3);

    for (std::uint64_t i = 0; i < 3; ++i) {
        TestRequest req{};
        pvkit_back_ring_take_request(&br, &req, sizeof req);
        CHECK(req.id == i);
        CHECK(req.value == 1000 + i);
        TestResponse rsp{req.id, answer_for(req.value)};
        REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    }
    CHECK(pvkit_front_ring_responses(&fr) == 0); // not pushed yet
    CHECK(pvkit_back_ring_push_responses(&br) == 1); // rsp_event starts at 1
    REQUIRE(pvkit_front_ring_responses(&fr) == 3);
    for (std::uint64_t i = 0; i < 3; ++i) {
        TestResponse rsp{};
        pvkit_front_ring_take_response(&fr, &rsp, sizeof rsp);
        CHECK(rsp.id == i);
        CHECK(rsp.result == answer_for(1000 + i));
    }
    CHECK(pvkit_front_ring_responses(&fr) == 0);
    CHECK(pvkit_front_ring_free(&fr) == kEnts);
}

TEST_CASE("push notifies only when the consumer armed its event index", "[ring][notify]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    TestRequest req{1, 1};
    TestRequest out{};

    // The first request kicks: a fresh backend waits for it.
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 1);

    // The backend is busy (it has not re-armed): more requests, no kick.
    REQUIRE(pvkit_back_ring_requests(&br) == 1);
    pvkit_back_ring_take_request(&br, &out, sizeof out);
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 0);
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 0);

    // The backend drains, then final_check arms req_event = req_cons + 1.
    CHECK(pvkit_back_ring_final_check(&br) == 2); // still work: it does not arm
    CHECK(br.sring->req_event == 1);
    pvkit_back_ring_take_request(&br, &out, sizeof out);
    pvkit_back_ring_take_request(&br, &out, sizeof out);
    CHECK(pvkit_back_ring_final_check(&br) == 0); // nothing: armed, safe to sleep
    CHECK(br.sring->req_event == br.req_cons + 1);

    // Now a push kicks, and one kick covers a batch...
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 1);
    // ...after which the backend is busy again until it re-arms.
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 0);
    // A push with nothing new never kicks.
    CHECK(pvkit_front_ring_push_requests(&fr) == 0);
}

TEST_CASE("response pushes are held off the same way", "[ring][notify]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    TestRequest req{1, 1};
    TestResponse rsp{1, 1};
    TestResponse out{};
    for (int i = 0; i < 4; ++i)
        REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    (void)pvkit_front_ring_push_requests(&fr);
    REQUIRE(pvkit_back_ring_requests(&br) == 4);
    for (int i = 0; i < 4; ++i)
        pvkit_back_ring_take_request(&br, &req, sizeof req);

    REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    CHECK(pvkit_back_ring_push_responses(&br) == 1); // rsp_event starts at 1
    REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    CHECK(pvkit_back_ring_push_responses(&br) == 0); // frontend busy
    REQUIRE(pvkit_front_ring_responses(&fr) == 2);
    pvkit_front_ring_take_response(&fr, &out, sizeof out);
    pvkit_front_ring_take_response(&fr, &out, sizeof out);
    CHECK(pvkit_front_ring_final_check(&fr) == 0);
    CHECK(fr.sring->rsp_event == fr.rsp_cons + 1);
    REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    CHECK(pvkit_back_ring_push_responses(&br) == 1); // armed: kick
}

TEST_CASE("final check sees a request published while the backend went to sleep", "[ring][notify]") {
    // The race the final check closes: the frontend publishes after the
    // backend found the ring empty but before it armed req_event, so the
    // frontend does not kick. Sleeping now would lose the request.
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    TestRequest req{1, 1};
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    REQUIRE(pvkit_front_ring_push_requests(&fr) == 1);
    pvkit_back_ring_take_request(&br, &req, sizeof req);

    REQUIRE(pvkit_back_ring_requests(&br) == 0); // backend: "empty, going to sleep"
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    CHECK(pvkit_front_ring_push_requests(&fr) == 0); // stale req_event: no kick
    CHECK(pvkit_back_ring_final_check(&br) == 1);    // so the backend must not sleep
}

TEST_CASE("final check sees a response published while the frontend went to sleep",
          "[ring][notify]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    TestRequest req{1, 1};
    TestResponse rsp{1, 2};
    for (int i = 0; i < 2; ++i)
        REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    (void)pvkit_front_ring_push_requests(&fr);
    pvkit_back_ring_take_request(&br, &req, sizeof req);
    pvkit_back_ring_take_request(&br, &req, sizeof req);
    REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    REQUIRE(pvkit_back_ring_push_responses(&br) == 1);
    pvkit_front_ring_take_response(&fr, &rsp, sizeof rsp);

    REQUIRE(pvkit_front_ring_responses(&fr) == 0);
    REQUIRE(pvkit_back_ring_put_response(&br, &rsp, sizeof rsp) == 0);
    CHECK(pvkit_back_ring_push_responses(&br) == 0);
    CHECK(pvkit_front_ring_final_check(&fr) == 1);
}

TEST_CASE("free-running indices wrap at 2^32 without losing or duplicating entries",
          "[ring][wrap]") {
    constexpr std::uint32_t kStart = 0xFFFFFFF0u;
    constexpr std::uint64_t kTotal = 700;
    Rings rings;
    pvkit_front_ring& f = rings.front.raw();
    pvkit_back_ring& b = rings.back.raw();
    // Both ends and the shared indices as if 2^32 - 16 entries had passed,
    // with both consumers armed.
    f.req_prod_pvt = f.req_prod_pushed = f.rsp_cons = kStart;
    b.req_cons = b.rsp_prod_pvt = b.rsp_prod_pushed = kStart;
    rings.shared().req_prod = rings.shared().rsp_prod = kStart;
    rings.shared().req_event = rings.shared().rsp_event = kStart + 1;
    REQUIRE(rings.front.free_slots() == kEnts);

    InFlightTable<std::uint64_t> in_flight(kEnts);
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint32_t round = 0;
    while (received < kTotal) {
        // Batch sizes sweep 1..nr_ents so slot positions cross the wrap at
        // every offset.
        std::uint32_t batch = (round * 7) % kEnts + 1;
        auto k = static_cast<std::uint32_t>(
            std::min<std::uint64_t>({batch, rings.front.free_slots(), kTotal - sent}));
        REQUIRE(k > 0);
        const std::uint32_t first_half = (k + 1) / 2;
        for (std::uint32_t i = 0; i < k; ++i) {
            std::uint64_t value = sent * 977 + 5;
            auto id = in_flight.insert(value);
            REQUIRE(id.has_value());
            REQUIRE(rings.front.put(TestRequest{*id, value}));
            ++sent;
            if (i + 1 == first_half) {
                // The backend armed before sleeping: this push kicks.
                CHECK(rings.front.push());
            }
        }
        // It has not re-armed since: the rest of the batch does not kick.
        if (k > first_half)
            CHECK_FALSE(rings.front.push());

        auto ready = rings.back.pending();
        REQUIRE(ready);
        REQUIRE(*ready == k);
        REQUIRE(rings.answer_all() == k);
        CHECK(rings.back.push()); // the frontend armed: kick
        auto idle = rings.back.final_check();
        REQUIRE(idle);
        CHECK(*idle == 0);

        auto got = rings.front.consume<TestResponse>([&](const TestResponse& rsp) {
            auto value = in_flight.take(rsp.id);
            return value.has_value() && rsp.result == answer_for(*value);
        });
        REQUIRE(got);
        REQUIRE(*got == k);
        received += k;
        auto front_idle = rings.front.final_check();
        REQUIRE(front_idle);
        CHECK(*front_idle == 0);
        ++round;
    }
    CHECK(in_flight.size() == 0);
    CHECK_FALSE(rings.front.halted());
    CHECK_FALSE(rings.back.halted());
    // Every index crossed zero and stands at kStart + kTotal (mod 2^32).
    const auto end = static_cast<std::uint32_t>(kStart + kTotal);
    CHECK(end < kStart);
    CHECK(f.req_prod_pvt == end);
    CHECK(f.rsp_cons == end);
    CHECK(b.req_cons == end);
    CHECK(b.rsp_prod_pvt == end);
    CHECK(rings.shared().req_prod == end);
    CHECK(rings.shared().rsp_prod == end);
}

// ---- Private copies and zero-filling ----------------------------------------

TEST_CASE("requests are zero-filled past their length", "[ring][leak]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    std::memset(fr.slots, 0xAA, kSlotSize); // stale bytes in slot 0
    const std::uint8_t small[3] = {1, 2, 3};
    REQUIRE(pvkit_front_ring_put_request(&fr, small, sizeof small) == 0);
    CHECK(std::memcmp(fr.slots, small, sizeof small) == 0);
    CHECK(std::all_of(fr.slots + sizeof small, fr.slots + kSlotSize,
                      [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("a request longer than the slot is refused", "[ring]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    const std::array<std::uint8_t, kSlotSize + 1> big{};
    CHECK(pvkit_front_ring_put_request(&fr, big.data(), kSlotSize + 1) == -PVKIT_EINVAL);
    CHECK(fr.req_prod_pvt == 0);
    TestRequest req{};
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    (void)pvkit_front_ring_push_requests(&fr);
    pvkit_back_ring_take_request(&br, &req, sizeof req);
    CHECK(pvkit_back_ring_put_response(&br, big.data(), kSlotSize + 1) == -PVKIT_EINVAL);
    CHECK(br.rsp_prod_pvt == 0);
}

TEST_CASE("responses are zero-filled past their length", "[ring][leak]") {
    Rings rings;
    rings.put_requests(1);
    (void)rings.front.push();
    REQUIRE(must(rings.back.consume([](const TestSlot&) {})) == 1);
    // Stale bytes where the response goes (the slot held the request).
    std::memset(rings.slot(0), 0xAA, kSlotSize);
    const TestResponse rsp{0x1111, 0x2222};
    REQUIRE(rings.back.put_response(rsp));
    CHECK(std::memcmp(rings.slot(0), &rsp, sizeof rsp) == 0);
    CHECK(std::all_of(rings.slot(0) + sizeof rsp, rings.slot(0) + kSlotSize,
                      [](std::uint8_t b) { return b == 0; }));
}

TEST_CASE("a request slot rewritten after it was copied does not change the copy",
          "[ring][hostile]") {
    Rings rings;
    rings.put_requests(1, 42);
    (void)rings.front.push();
    TestSlot kept{};
    int calls = 0;
    auto n = rings.back.consume([&](const TestSlot& s) {
        ++calls;
        // The frontend rewrites the slot while the backend handles it...
        std::memset(rings.slot(0), 0xEE, kSlotSize);
        // ...and the backend's view, a private copy, does not move.
        CHECK(s.req.id == 42);
        CHECK(s.req.value == 42);
        kept = s;
    });
    REQUIRE(n);
    CHECK(*n == 1);
    std::memset(rings.slot(0), 0x55, kSlotSize);
    CHECK(kept.req.id == 42);
    CHECK(kept.req.value == 42);
    // The slot is consumed: a second pass neither reports nor re-reads it.
    CHECK(must(rings.back.pending()) == 0);
    CHECK(must(rings.back.consume([&](const TestSlot&) { ++calls; })) == 0);
    CHECK(calls == 1);
}

TEST_CASE("C ring: a taken request is a private copy", "[ring][hostile]") {
    AlignedBuffer buf(kPage);
    pvkit_front_ring fr{};
    pvkit_back_ring br{};
    REQUIRE(pvkit_front_ring_init(&fr, buf.data(), kPage, kSlotSize) == 0);
    REQUIRE(pvkit_back_ring_attach(&br, buf.data(), kPage, kSlotSize) == 0);
    TestRequest req{7, 8};
    REQUIRE(pvkit_front_ring_put_request(&fr, &req, sizeof req) == 0);
    (void)pvkit_front_ring_push_requests(&fr);
    TestRequest copy{};
    pvkit_back_ring_take_request(&br, &copy, sizeof copy);
    std::memset(br.slots, 0xEE, kSlotSize);
    CHECK(copy.id == 7);
    CHECK(copy.value == 8);
    CHECK(pvkit_back_ring_requests(&br) == 0);
}

TEST_CASE("a response slot rewritten after it was copied does not change the copy",
          "[ring][hostile]") {
    Rings rings;
    rings.put_requests(1, 42);
    (void)rings.front.push();
    REQUIRE(rings.answer_all() == 1);
    (void)rings.back.push();
    TestResponse kept{};
    int calls = 0;
    auto n = rings.front.consume<TestResponse>([&](const TestResponse& rsp) {
        ++calls;
        std::memset(rings.slot(0), 0xEE, kSlotSize);
        CHECK(rsp.id == 42);
        CHECK(rsp.result == answer_for(42));
        kept = rsp;
        return true;
    });
    REQUIRE(n);
    CHECK(*n == 1);
    std::memset(rings.slot(0), 0x55, kSlotSize);
    CHECK(kept.id == 42);
    CHECK(kept.result == answer_for(42));
    CHECK(must(rings.front.pending()) == 0);
    CHECK(must(rings.front.consume<TestResponse>([&](const TestResponse&) {
        ++calls;
        return true;
    })) == 0);
    CHECK(calls == 1);
}

// ---- Full and empty -------------------------------------------------------------

TEST_CASE("put on a full ring fails with kFull until a response frees a slot", "[ring]") {
    Rings rings;
    rings.put_requests(kEnts);
    CHECK(rings.front.free_slots() == 0);
    CHECK(rings.front.outstanding() == kEnts);
    CHECK(rings.front.put(TestRequest{1, 1}).error() == RingError::kFull);
    // The C layer says the same.
    TestRequest req{};
    CHECK(pvkit_front_ring_put_request(&rings.front.raw(), &req, sizeof req) == PVKIT_RING_EFULL);
    // Full is not a protocol error: the ring still works.
    (void)rings.front.push();
    REQUIRE(must(rings.back.pending()) == kEnts);
    REQUIRE(rings.answer_all() == kEnts);
    (void)rings.back.push();
    REQUIRE(must(rings.front.consume<TestResponse>([](const TestResponse&) { return true; }, 1)) == 1);
    CHECK(rings.front.put(TestRequest{1, 1}));
    CHECK_FALSE(rings.front.halted());
}

TEST_CASE("put_response with nothing consumed fails with kFull", "[ring]") {
    Rings rings;
    CHECK(rings.back.put_response(TestResponse{1, 1}).error() == RingError::kFull);
    // Published but not yet consumed requests cannot be answered either.
    rings.put_requests(2);
    (void)rings.front.push();
    CHECK(rings.back.put_response(TestResponse{1, 1}).error() == RingError::kFull);
    REQUIRE(must(rings.back.consume([](const TestSlot&) {}, 1)) == 1);
    CHECK(rings.back.in_flight() == 1);
    CHECK(rings.back.put_response(TestResponse{1, 1}));
    CHECK(rings.back.put_response(TestResponse{1, 1}).error() == RingError::kFull);
    CHECK_FALSE(rings.back.halted());
}

TEST_CASE("a frontend may fill every slot: req_prod at the limit is accepted", "[ring]") {
    Rings rings;
    rings.put_requests(kEnts);
    (void)rings.front.push();
    auto n = rings.back.pending();
    REQUIRE(n);
    CHECK(*n == kEnts);
    CHECK_FALSE(rings.back.halted());
}

// ---- Hostile frontend ----------------------------------------------------------

TEST_CASE("hostile frontend: req_prod past the free slots halts the ring with kProtocol",
          "[ring][hostile]") {
    Rings rings;
    // Ten requests consumed and not answered still hold their slots, so at
    // most kEnts - 10 new ones can exist.
    rings.put_requests(10);
    (void)rings.front.push();
    REQUIRE(must(rings.back.consume([](const TestSlot&) {})) == 10);
    REQUIRE(rings.back.in_flight() == 10);

    rings.shared().req_prod = 10 + (kEnts - 10); // exactly the limit: fine
    REQUIRE(must(rings.back.pending()) == kEnts - 10);

    rings.shared().req_prod = 10 + (kEnts - 10) + 1; // one more than can exist
    auto n = rings.back.pending();
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    REQUIRE(rings.back.halted());
    const pvkit::RingHalt& halt = *rings.back.halt();
    CHECK(halt.error == RingError::kProtocol);
    CHECK(halt.peer_index == kEnts + 1);
    CHECK(halt.consumer == 10);
    CHECK(halt.limit == kEnts - 10);
    const std::string why = halt.describe();
    INFO(why);
    CHECK(contains(why, kEnts + 1));
    CHECK(contains(why, 10));
    CHECK(contains(why, kEnts - 10));
}

TEST_CASE("hostile frontend: req_prod jumping far past the ring halts it", "[ring][hostile]") {
    Rings rings;
    rings.shared().req_prod = 0x40000000u;
    int calls = 0;
    auto n = rings.back.consume([&](const TestSlot&) { ++calls; });
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    CHECK(calls == 0); // not a single slot was read
    CHECK(rings.back.halt()->peer_index == 0x40000000u);
    CHECK(rings.back.halt()->limit == kEnts);
}

TEST_CASE("hostile frontend: req_prod moving backwards halts the ring", "[ring][hostile]") {
    Rings rings;
    rings.put_requests(5);
    (void)rings.front.push();
    REQUIRE(rings.answer_all() == 5);
    (void)rings.back.push();
    rings.shared().req_prod = 3;
    auto n = rings.back.pending();
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    CHECK(rings.back.halt()->peer_index == 3);
    CHECK(rings.back.halt()->consumer == 5);
    const std::string why = rings.back.halt()->describe();
    CHECK(contains(why, 3));
    CHECK(contains(why, 5));
}

TEST_CASE("hostile frontend: the final check catches an impossible req_prod too",
          "[ring][hostile]") {
    Rings rings;
    rings.shared().req_prod = kEnts + 1;
    auto n = rings.back.final_check();
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    CHECK(rings.back.halted());
}

TEST_CASE("a halted back ring refuses every later call with kHalted", "[ring][hostile]") {
    Rings rings;
    rings.put_requests(3);
    (void)rings.front.push();
    REQUIRE(must(rings.back.consume([](const TestSlot&) {}, 1)) == 1); // one in flight
    rings.shared().req_prod = 1000;
    REQUIRE(rings.back.pending().error() == RingError::kProtocol);

    // Even after the frontend puts back a sane index, the ring stays down.
    rings.shared().req_prod = 3;
    int calls = 0;
    CHECK(rings.back.pending().error() == RingError::kHalted);
    CHECK(rings.back.final_check().error() == RingError::kHalted);
    CHECK(rings.back.consume([&](const TestSlot&) { ++calls; }).error() == RingError::kHalted);
    CHECK(rings.back.put_response(TestResponse{1, 1}).error() == RingError::kHalted);
    CHECK(calls == 0);
    // The first reason is kept.
    CHECK(rings.back.halt()->error == RingError::kProtocol);
    CHECK(rings.back.halt()->peer_index == 1000);
}

// ---- Hostile backend ------------------------------------------------------------

TEST_CASE("hostile backend: rsp_prod claiming more responses than outstanding halts the ring",
          "[ring][hostile]") {
    Rings rings;
    rings.put_requests(4);
    (void)rings.front.push();
    rings.shared().rsp_prod = 4; // as many as outstanding: possible
    REQUIRE(must(rings.front.pending()) == 4);
    rings.shared().rsp_prod = 5; // one more than was ever asked for
    auto n = rings.front.pending();
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    REQUIRE(rings.front.halted());
    const pvkit::RingHalt& halt = *rings.front.halt();
    CHECK(halt.peer_index == 5);
    CHECK(halt.consumer == 0);
    CHECK(halt.limit == 4);
    const std::string why = halt.describe();
    INFO(why);
    CHECK(contains(why, 5));
    CHECK(contains(why, 4));
}

TEST_CASE("hostile backend: rsp_prod covering requests not yet pushed halts the ring",
          "[ring][hostile]") {
    // The backend cannot have seen requests we have not published, so it
    // cannot have answered them; their slots still hold our own requests.
    Rings rings;
    rings.put_requests(4);
    (void)rings.front.push();
    rings.put_requests(2); // written, not published
    rings.shared().rsp_prod = 5;
    auto n = rings.front.pending();
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kProtocol);
    CHECK(rings.front.halt()->peer_index == 5);
}

// Fails until ring.hpp's FrontRing::check reports the bound the C check
// used (req_prod_pushed - rsp_cons) instead of req_prod_pvt - rsp_cons:
// today the message says "at most 6 entries possible" about an rsp_prod of
// 5 that was rejected because only 4 were published.
TEST_CASE("a front ring halt reports the bound that was actually checked", "[ring][hostile]") {
    Rings rings;
    rings.put_requests(4);
    (void)rings.front.push();
    rings.put_requests(2);
    rings.shared().rsp_prod = 5;
    REQUIRE(rings.front.pending().error() == RingError::kProtocol);
    CHECK(rings.front.halt()->limit == 4);
}

TEST_CASE("push decides on the index it last published, not on the shared word",
          "[ring][hostile][notify]") {
    // A backend that rewrites req_prod cannot make the frontend skip a kick
    // (or send one for nothing): the frontend remembers what it published.
    Rings rings;
    rings.put_requests(1);
    REQUIRE(rings.front.push()); // req_event starts at 1
    REQUIRE(must(rings.back.final_check()) == 1);
    REQUIRE(rings.answer_all() == 1);
    REQUIRE(must(rings.back.final_check()) == 0); // armed: req_event = 2
    // The backend pre-empts our next publish: had push() compared with the
    // shared word, it would see no new requests and not kick.
    rings.shared().req_prod = 2;
    rings.put_requests(1);
    CHECK(rings.front.push()); // req_event 2 lies in (1, 2]: kick
    CHECK(rings.front.raw().req_prod_pushed == 2);
    CHECK(rings.shared().req_prod == 2);
}

TEST_CASE("hostile backend: rsp_prod moving backwards halts the ring", "[ring][hostile]") {
    Rings rings;
    rings.put_requests(4);
    (void)rings.front.push();
    REQUIRE(rings.answer_all() == 4);
    (void)rings.back.push();
    REQUIRE(must(rings.front.consume<TestResponse>([](const TestResponse&) { return true; })) == 4);
    rings.shared().rsp_prod = 2;
    CHECK(rings.front.pending().error() == RingError::kProtocol);
    CHECK(rings.front.halt()->peer_index == 2);
    CHECK(rings.front.halt()->consumer == 4);
}

TEST_CASE("a halted front ring refuses every later call with kHalted", "[ring][hostile]") {
    Rings rings;
    rings.put_requests(2);
    (void)rings.front.push();
    rings.shared().rsp_prod = 0x80000000u;
    REQUIRE(rings.front.final_check().error() == RingError::kProtocol);
    rings.shared().rsp_prod = 0;
    int calls = 0;
    CHECK(rings.front.put(TestRequest{1, 1}).error() == RingError::kHalted);
    CHECK(rings.front.pending().error() == RingError::kHalted);
    CHECK(rings.front.final_check().error() == RingError::kHalted);
    CHECK(rings.front.consume<TestResponse>([&](const TestResponse&) {
        ++calls;
        return true;
    }).error() == RingError::kHalted);
    CHECK(calls == 0);
}

TEST_CASE("hostile backend: a response with an unknown id halts the ring with kBadResponse",
          "[ring][hostile]") {
    Rings rings;
    InFlightTable<std::uint64_t> in_flight(kEnts);
    for (std::uint64_t v = 0; v < 3; ++v) {
        auto id = in_flight.insert(v);
        REQUIRE(id);
        REQUIRE(rings.front.put(TestRequest{*id, v}));
    }
    (void)rings.front.push();
    // The backend answers the first request properly, then makes up an id.
    std::uint32_t answered = 0;
    REQUIRE(rings.back.consume([&](const TestSlot& s) {
        std::uint64_t id = answered == 1 ? 0xdeadbeefULL : s.req.id;
        REQUIRE(rings.back.put_response(TestResponse{id, answer_for(s.req.value)}));
        ++answered;
    }));
    (void)rings.back.push();

    std::uint32_t accepted = 0;
    auto n = rings.front.consume<TestResponse>([&](const TestResponse& rsp) {
        if (!in_flight.take(rsp.id))
            return false;
        ++accepted;
        return true;
    });
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kBadResponse);
    CHECK(accepted == 1); // the good one before the bad one was taken
    REQUIRE(rings.front.halted());
    CHECK(rings.front.halt()->error == RingError::kBadResponse);
    CHECK_FALSE(rings.front.halt()->describe().empty());
    // The rest is never looked at.
    CHECK(rings.front.consume<TestResponse>([](const TestResponse&) { return true; }).error() ==
          RingError::kHalted);
    CHECK(in_flight.size() == 2);
}

// ---- InFlightTable ----------------------------------------------------------------

TEST_CASE("InFlightTable: an id that was never issued is unknown", "[ring][inflight]") {
    InFlightTable<int> t(4);
    CHECK_FALSE(t.take(0)); // a zero-filled response
    CHECK(t.find(0) == nullptr);
    auto id = t.insert(5);
    REQUIRE(id);
    CHECK(*id != 0); // ids are never 0, so zeroed memory names nothing
    CHECK_FALSE(t.take(*id + 1)); // right generation, other (free) index
    CHECK(t.size() == 1);
}

TEST_CASE("InFlightTable: an id of a slot's earlier generation is stale", "[ring][inflight]") {
    InFlightTable<int> t(4);
    auto first = t.insert(1);
    REQUIRE(first);
    REQUIRE(t.take(*first) == 1);
    auto second = t.insert(2); // reuses the same index with the next generation
    REQUIRE(second);
    CHECK((*second & 0xffffffffu) == (*first & 0xffffffffu));
    CHECK(*second != *first);
    CHECK_FALSE(t.take(*first));
    CHECK(t.find(*first) == nullptr);
    REQUIRE(t.find(*second) != nullptr);
    CHECK(*t.find(*second) == 2);
}

TEST_CASE("InFlightTable: a duplicate response (same id twice) is rejected", "[ring][inflight]") {
    InFlightTable<int> t(4);
    auto id = t.insert(7);
    REQUIRE(id);
    CHECK(t.take(*id) == 7);
    CHECK_FALSE(t.take(*id));
    CHECK(t.size() == 0);
}

TEST_CASE("InFlightTable: an index beyond the table is rejected", "[ring][inflight]") {
    InFlightTable<int> t(4);
    auto id = t.insert(7);
    REQUIRE(id);
    const std::uint64_t generation = *id >> 32;
    CHECK_FALSE(t.take((generation << 32) | 4));
    CHECK_FALSE(t.take((generation << 32) | 0xffffffffu));
    CHECK(t.find((generation << 32) | 4) == nullptr);
    CHECK(t.size() == 1);
}

TEST_CASE("InFlightTable: insert fails when full and works again after a take",
          "[ring][inflight]") {
    InFlightTable<int> t(3);
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 3; ++i) {
        auto id = t.insert(i);
        REQUIRE(id);
        ids.push_back(*id);
    }
    CHECK(t.size() == 3);
    CHECK(t.capacity() == 3);
    CHECK_FALSE(t.insert(99));
    std::sort(ids.begin(), ids.end());
    CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end()); // all distinct
    REQUIRE(t.take(ids[1]));
    CHECK(t.insert(99));
    CHECK_FALSE(t.insert(100));
}

TEST_CASE("InFlightTable: find looks without taking", "[ring][inflight]") {
    InFlightTable<std::string> t(2);
    auto id = t.insert("request");
    REQUIRE(id);
    REQUIRE(t.find(*id) != nullptr);
    CHECK(*t.find(*id) == "request");
    CHECK(t.size() == 1);
    CHECK(t.take(*id) == std::string("request"));
}

// ---- wait_for_ring ---------------------------------------------------------------


TEST_CASE("wait_for_ring returns ready entries without sleeping", "[ring][wait]") {
    Rings rings;
    pvkit::test::ChannelPair ch = pvkit::test::make_channel_pair();
    rings.put_requests(2);
    (void)rings.front.push();
    auto n = pvkit::wait_for_ring(rings.back, ch.back, 0ns, 0ms);
    REQUIRE(n);
    CHECK(*n == 2);
    CHECK(ch.back.sleeps() == 0);
}

TEST_CASE("wait_for_ring times out on an empty ring and leaves it armed", "[ring][wait]") {
    Rings rings;
    pvkit::test::ChannelPair ch = pvkit::test::make_channel_pair();
    auto n = pvkit::wait_for_ring(rings.back, ch.back, 0ns, 0ms);
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kTimeout);
    CHECK(rings.shared().req_event == rings.back.raw().req_cons + 1);
    CHECK_FALSE(rings.back.halted()); // a timeout is not a protocol error
    // Spinning first changes nothing about the outcome.
    CHECK(pvkit::wait_for_ring(rings.back, ch.back, 200us, 0ms).error() == RingError::kTimeout);
}

TEST_CASE("wait_for_ring treats a kick without entries as nothing", "[ring][wait]") {
    // Kicks carry no data: a spurious one (or one for entries already
    // consumed) must lead back to the ring, not to a made-up count.
    Rings rings;
    pvkit::test::ChannelPair ch = pvkit::test::make_channel_pair();
    ch.front.notify();
    auto n = pvkit::wait_for_ring(rings.back, ch.back, 0ns, 0ms);
    REQUIRE_FALSE(n);
    CHECK(n.error() == RingError::kTimeout);
    CHECK(ch.back.wakeups() == 1);
}

TEST_CASE("wait_for_ring reports a protocol violation instead of waiting", "[ring][wait]") {
    Rings rings;
    pvkit::test::ChannelPair ch = pvkit::test::make_channel_pair();
    rings.shared().req_prod = 5000;
    CHECK(pvkit::wait_for_ring(rings.back, ch.back, 0ns, 10s).error() == RingError::kProtocol);
    CHECK(pvkit::wait_for_ring(rings.back, ch.back, 0ns, 10s).error() == RingError::kHalted);
    rings.shared().rsp_prod = 5000;
    CHECK(pvkit::wait_for_ring(rings.front, ch.front, 1ms, 10s).error() == RingError::kProtocol);
}

TEST_CASE("wait_for_ring wakes when another thread publishes and kicks", "[ring][wait]") {
    Rings rings;
    pvkit::test::ChannelPair ch = pvkit::test::make_channel_pair();
    std::thread producer([&] {
        rings.put_requests(1);
        if (rings.front.push())
            ch.front.notify();
    });
    // However the two threads interleave, the request is found: either the
    // final check sees it or the kick (sent because we armed) wakes us.
    auto n = pvkit::wait_for_ring(rings.back, ch.back, 0ns, 10s);
    producer.join();
    REQUIRE(n);
    CHECK(*n == 1);
}

TEST_CASE("every ring error has a description", "[ring]") {
    for (RingError e : {RingError::kBadGeometry, RingError::kProtocol, RingError::kBadResponse,
                        RingError::kFull, RingError::kHalted, RingError::kTimeout}) {
        CHECK(std::string(pvkit::to_string(e)) != "unknown ring error");
    }
}

} // namespace
