// The VMM's half of the guest store ring without threads or sockets: the
// test writes the ring as a guest would (well-behaved and hostile) and
// drives StoreRingPump directly.
#include <catch2/catch.hpp>

#include <pvkit/store.h>

#include <cstring>
#include <string>

#include "pvkit/store/wire.hpp"
#include "pvkit/vmm/store_relay.hpp"

using pvkit::vmm::StoreRingFault;
using pvkit::vmm::StoreRingPage;
using pvkit::vmm::StoreRingPump;

namespace {

constexpr std::uint32_t kSize = PVKIT_STORE_RING_SIZE;

// The guest's end of the ring.
struct GuestEnd {
    pvkit_store_ring* ring;
    std::uint32_t prod = 0;
    std::uint32_t cons = 0;

    void produce(const std::string& bytes) {
        for (char c : bytes)
            ring->req[prod++ & (kSize - 1)] = c;
        ring->req_prod = prod;
    }
    std::string consume() {
        std::string out;
        while (cons != ring->rsp_prod)
            out += ring->rsp[cons++ & (kSize - 1)];
        ring->rsp_cons = cons;
        return out;
    }
};

std::string message(std::uint32_t type, const std::string& payload, std::uint32_t id = 1) {
    pvkit::store::Message m;
    m.type = type;
    m.req_id = id;
    m.payload = payload;
    return pvkit::store::encode(m);
}

} // namespace

TEST_CASE("A fresh store ring page is zero and connected", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    const pvkit_store_ring* r = page.ring();
    CHECK(r->req_prod == 0);
    CHECK(r->rsp_prod == 0);
    CHECK(r->connection == PVKIT_STORE_RING_CONNECTED);
    CHECK(r->error == PVKIT_STORE_RING_ERR_NONE);
    CHECK(page.kvm_userspace_addr() % 4096 == 0);
}

TEST_CASE("Requests and replies cross the ring, also across its end", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    std::string to_daemon;
    // Many rounds so the free-running indices wrap the 1 KiB ring often.
    for (int round = 0; round < 50; ++round) {
        const std::string req =
            message(PVKIT_STORE_READ, "/local/domain/1/name" + std::string(1, '\0'),
                    static_cast<std::uint32_t>(round + 1));
        guest.produce(req);
        auto took = pump.take_requests(to_daemon, 64 * 1024);
        REQUIRE(took.ok());
        CHECK(took.value() == req.size());
        CHECK(page.ring()->req_cons == guest.prod);
        CHECK(to_daemon == req);
        to_daemon.clear();

        std::string reply = message(PVKIT_STORE_READ, std::string(300, 'v'));
        auto put = pump.put_responses(reply);
        REQUIRE(put.ok());
        CHECK(reply.empty());
        CHECK(guest.consume() == message(PVKIT_STORE_READ, std::string(300, 'v')));
    }
    CHECK(pump.connected());
}

TEST_CASE("A reply larger than the ring waits for the guest to consume", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    const std::string big = message(PVKIT_STORE_READ, std::string(3000, 'x'));
    std::string pending = big;
    std::string got;
    for (int i = 0; i < 10 && !pending.empty(); ++i) {
        auto put = pump.put_responses(pending);
        REQUIRE(put.ok());
        CHECK(put.value() <= kSize);
        got += guest.consume();
    }
    CHECK(pending.empty());
    CHECK(got == big);
}

TEST_CASE("take_requests takes no more than the room the relay has", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    const std::string req = message(PVKIT_STORE_WRITE, std::string("data/x") + '\0' + "value");
    guest.produce(req);
    std::string out;
    CHECK(pump.take_requests(out, 5).value() == 5);
    CHECK(page.ring()->req_cons == 5);
    CHECK(pump.mid_message()); // the relay kicks at once: the guest has more to write
    CHECK(pump.take_requests(out, 1000).value() == req.size() - 5);
    CHECK(out == req);
    CHECK_FALSE(pump.mid_message()); // the daemon's answer will bring the kick
}

TEST_CASE("A guest req_prod jump disconnects the ring and forwards nothing", "[vmm][store]") {
    for (std::uint32_t jump : {kSize + 1, 5000u, 0x80000000u, 0xffffffffu}) {
        INFO("jump " << jump);
        StoreRingPage page = StoreRingPage::create();
        StoreRingPump pump(page.ring());
        page.ring()->req_prod = jump;
        std::string out;
        auto r = pump.take_requests(out, 64 * 1024);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error() == StoreRingFault::kRequestIndex);
        CHECK(out.empty());
        CHECK(pump.seen_index() == jump);
        pump.disconnect(true);
        CHECK(page.ring()->connection == PVKIT_STORE_RING_DISCONNECTED);
        CHECK(page.ring()->error == PVKIT_STORE_RING_ERR_PROTO);
        CHECK_FALSE(pump.connected());
        // Disconnected: nothing moves any more.
        page.ring()->req_prod = 0;
        CHECK(pump.take_requests(out, 64 * 1024).value() == 0);
    }
}

TEST_CASE("Exactly a full ring of requests is fine", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    // 1024 bytes: a 16-byte header announcing 1008 bytes, then those bytes.
    guest.produce(message(PVKIT_STORE_WRITE, std::string(kSize - 16, 'a')));
    std::string out;
    CHECK(pump.take_requests(out, 64 * 1024).value() == kSize);
}

TEST_CASE("A request header over 4096 bytes disconnects before it is forwarded", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    const std::string good = message(PVKIT_STORE_READ, std::string("a") + '\0');
    pvkit_store_msg_header bad{PVKIT_STORE_READ, 2, 0, PVKIT_STORE_PAYLOAD_MAX + 1};
    guest.produce(good + std::string(reinterpret_cast<const char*>(&bad), sizeof bad));
    std::string out;
    auto r = pump.take_requests(out, 64 * 1024);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == StoreRingFault::kRequestTooLong);
    CHECK(out.empty()); // not even the good message before it went out in this batch
    CHECK(pump.seen_index() == PVKIT_STORE_PAYLOAD_MAX + 1);
}

TEST_CASE("A guest rsp_cons that makes no sense disconnects", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    std::string reply = message(PVKIT_STORE_READ, "ok");
    REQUIRE(pump.put_responses(reply).ok());
    // Ahead of what was produced (would claim free space that is not).
    page.ring()->rsp_cons = 1000;
    std::string more = message(PVKIT_STORE_READ, "again");
    auto r = pump.put_responses(more);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == StoreRingFault::kResponseIndex);
    CHECK(more.size() == 16 + 5); // nothing written
}

TEST_CASE("The pump never reads back the indices it owns", "[vmm][store]") {
    StoreRingPage page = StoreRingPage::create();
    StoreRingPump pump(page.ring());
    GuestEnd guest{page.ring()};
    guest.produce(message(PVKIT_STORE_READ, std::string("a") + '\0'));
    std::string out;
    REQUIRE(pump.take_requests(out, 4096).ok());
    // A guest that rewinds req_cons (ours) cannot make us re-send bytes.
    page.ring()->req_cons = 0;
    out.clear();
    CHECK(pump.take_requests(out, 4096).value() == 0);
    CHECK(out.empty());
    // Nor does rewriting rsp_prod (ours) change where replies go.
    std::string reply = "abc";
    REQUIRE(pump.put_responses(reply).ok());
    page.ring()->rsp_prod = 777;
    std::string reply2 = "def";
    REQUIRE(pump.put_responses(reply2).ok());
    CHECK(page.ring()->rsp_prod == 6);
    CHECK(std::string(page.ring()->rsp, 6) == "abcdef");
}
