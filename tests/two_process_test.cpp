// Two real processes: this test and pvkit-test-ring-peer, started with
// fork() and execv(), sharing a grant pool (a sealed memfd) and eventfds
// passed over a Unix socket with SCM_RIGHTS, exactly as a backend daemon
// gets them. The peer plays an honest backend, hostile backends, a hostile
// frontend and a grant mapper; see peer/peer_protocol.hpp.
//
// Every wait is bounded: socket receives and ring waits by kWaitTimeout,
// the peer's exit by kExitTimeout, after which it is killed.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/wait.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "peer/peer_protocol.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/ring.hpp"
#include "pvkit/transport/unique_fd.hpp"
#include "test_support.hpp"

namespace {

using namespace pvkit;
using namespace pvkit::test::peer;
using pvkit::test::ChildProcess;
using namespace std::chrono_literals;

constexpr pvkit_domid_t kFrontendDomid = 1;
constexpr pvkit_domid_t kBackendDomid = 0;
constexpr pvkit_domid_t kOtherDomid = 7;

template <class T, class E>
T must(Result<T, E> r) {
    REQUIRE(r.ok());
    return std::move(r).value();
}

// The peer process and our end of the socket to it.
struct Peer {
    UniqueFd sock;
    ChildProcess child;
};

Peer start_peer(const std::string& mode) {
    pvkit::test::SocketPair sp = pvkit::test::make_socket_pair(SOCK_SEQPACKET);
    pvkit::test::set_receive_timeout(sp.first.get(), kWaitTimeout);
    // Only the peer's end is inherited; ours is close-on-exec, so the peer
    // sees end-of-stream if this process goes away.
    ChildProcess child = ChildProcess::spawn(
        PVKIT_TEST_RING_PEER, {mode, std::to_string(sp.second.get())}, sp.second.get());
    return Peer{std::move(sp.first), std::move(child)};
}

// Waits for the peer to exit and returns its exit status (-1: killed by a
// signal). Fails the test if it does not exit in time.
int peer_exit_status(Peer& peer) {
    auto status = peer.child.wait(kExitTimeout);
    REQUIRE(status.has_value());
    INFO("peer " << pvkit::test::describe_wait_status(*status));
    REQUIRE(WIFEXITED(*status));
    return WEXITSTATUS(*status);
}

// One fixed-size message from the peer. If it never comes, the peer's own
// exit status (and its stderr, which the test inherits) says why.
template <class T>
T receive_report(Peer& peer) {
    try {
        ReceivedFds msg = recv_fds(peer.sock.get(), sizeof(T), 0);
        REQUIRE(msg.payload.size() == sizeof(T));
        T report;
        std::memcpy(&report, msg.payload.data(), sizeof report);
        return report;
    } catch (const std::system_error& e) {
        auto status = peer.child.wait(5s);
        FAIL("no report from the peer (" << e.what() << "); peer "
                                         << (status ? pvkit::test::describe_wait_status(*status)
                                                    : std::string("still running, killed")));
        throw;
    }
}

// A frontend's side of a device: its pool, grant table, ring on the first
// data frame, a writable data page on the second, and the event channel
// whose fds go to the backend.
struct FrontendDevice {
    GrantPool pool = GrantPool::create(kFrontendDomid, 2, 16);
    GrantTable table{pool};
    std::uint32_t ring_frame = pool.layout().data_first;
    std::uint32_t data_frame = pool.layout().data_first + 1;
    GrantRef ring_ref = must(table.grant(kBackendDomid, ring_frame, GrantAccess::kReadWrite));
    GrantRef data_ref = must(table.grant(kBackendDomid, data_frame, GrantAccess::kReadWrite));
    FrontRing<EchoSlot> ring = must(FrontRing<EchoSlot>::init(pool.data_frame(ring_frame)));
    EventChannelFds fds = make_event_channel_fds();
    EventChannel channel;

    // Sends the pool and the backend's eventfds to the peer, then keeps
    // the frontend's end of the channel.
    void hand_to(Peer& peer, std::uint32_t nr_requests) {
        BackendSetup setup{};
        setup.ring_ref = ring_ref;
        setup.data_ref = data_ref;
        setup.nr_requests = nr_requests;
        setup.backend_domid = kBackendDomid;
        const std::array<int, 3> passed{pool.fd(), fds.to_backend.get(), fds.to_frontend.get()};
        send_fds(peer.sock.get(), pvkit::test::bytes_of(setup), passed);
        channel = EventChannel::frontend_end(fds);
    }
};

std::string ring_error(RingError e) { return to_string(e); }

TEST_CASE("an echo backend in another process answers every request and writes a granted page",
          "[process][ring][grant]") {
    constexpr std::uint32_t kRequests = 1000; // many times around the 128-slot ring
    FrontendDevice dev;
    std::span<std::byte> data = dev.pool.data_frame(dev.data_frame);
    for (std::uint32_t i = 0; i < kDataBytes; ++i)
        data[i] = static_cast<std::byte>(data_byte(kFrontendSeed, i));
    REQUIRE(dev.ring.nr_ents() == 128);

    Peer peer = start_peer("echo-backend");
    dev.hand_to(peer, kRequests);

    InFlightTable<std::uint64_t> in_flight(dev.ring.nr_ents());
    std::uint32_t sent = 0;
    std::uint32_t received = 0;
    std::uint32_t bad = 0;
    while (received < kRequests) {
        while (sent < kRequests && dev.ring.free_slots() > 0) {
            const std::uint64_t value = std::uint64_t{sent} * 0x10001 + 3;
            auto id = in_flight.insert(value);
            REQUIRE(id.has_value());
            REQUIRE(dev.ring.put(EchoRequest{*id, value}));
            ++sent;
        }
        if (dev.ring.push())
            dev.channel.notify();
        // Blocking: arm rsp_event, then sleep on the eventfd until kicked.
        auto ready = wait_for_ring(dev.ring, dev.channel, 0ns, kWaitTimeout);
        if (!ready)
            FAIL("frontend wait: " << ring_error(ready.error()));
        auto n = dev.ring.consume<EchoResponse>([&](const EchoResponse& rsp) {
            auto value = in_flight.take(rsp.id);
            if (!value || rsp.value != *value || rsp.result != echo_result(*value))
                ++bad;
            return value.has_value();
        });
        if (!n)
            FAIL("frontend consume: " << ring_error(n.error()));
        received += *n;
    }
    CHECK(bad == 0);
    CHECK(in_flight.size() == 0);

    const EchoReport report = receive_report<EchoReport>(peer);
    CHECK(report.answered == kRequests);
    CHECK(report.seed_ok == 1);
    CHECK(report.maps == 2);
    CHECK(report.rejected == 0);
    // What the backend wrote through its GrantMapping is in our page.
    for (std::uint32_t i = 0; i < kDataBytes; ++i) {
        INFO("byte " << i);
        REQUIRE(std::to_integer<std::uint8_t>(data[kDataReplyOffset + i]) ==
                data_byte(kBackendSeed, i));
    }
    // The peer unmapped both pages, clearing the in-use bits in our table.
    CHECK(dev.table.end(dev.ring_ref).ok());
    CHECK(dev.table.end(dev.data_ref).ok());
    CHECK(peer_exit_status(peer) == kExitOk);
}

TEST_CASE("a backend process publishing rsp_prod far ahead halts our ring, nothing else",
          "[process][ring][hostile]") {
    FrontendDevice dev;
    Peer peer = start_peer("hostile-backend-jump");
    dev.hand_to(peer, 0);

    InFlightTable<std::uint64_t> in_flight(dev.ring.nr_ents());
    for (std::uint64_t v = 0; v < 4; ++v)
        REQUIRE(dev.ring.put(EchoRequest{*in_flight.insert(v), v}));
    if (dev.ring.push())
        dev.channel.notify();

    auto r = wait_for_ring(dev.ring, dev.channel, 0ns, kWaitTimeout);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == RingError::kProtocol);

    const HostileReport report = receive_report<HostileReport>(peer);
    CHECK(report.requests_seen == 4);
    CHECK(report.published_rsp_prod == 4 + kJumpAhead);
    REQUIRE(dev.ring.halted());
    CHECK(dev.ring.halt()->peer_index == report.published_rsp_prod);
    CHECK(dev.ring.halt()->limit == 4);
    const std::string why = dev.ring.halt()->describe();
    INFO(why);
    CHECK(why.find(std::to_string(report.published_rsp_prod)) != std::string::npos);

    // The ring stays down; no response was ever taken.
    CHECK(dev.ring.put(EchoRequest{1, 1}).error() == RingError::kHalted);
    CHECK(dev.ring.pending().error() == RingError::kHalted);
    CHECK(wait_for_ring(dev.ring, dev.channel, 0ns, 0ms).error() == RingError::kHalted);
    CHECK(in_flight.size() == 4);
    CHECK(peer_exit_status(peer) == kExitOk);
}

TEST_CASE("a backend process answering with ids never issued halts our ring (kBadResponse)",
          "[process][ring][hostile]") {
    FrontendDevice dev;
    Peer peer = start_peer("hostile-backend-unknown-id");
    dev.hand_to(peer, 0);

    InFlightTable<std::uint64_t> in_flight(dev.ring.nr_ents());
    for (std::uint64_t v = 0; v < 4; ++v)
        REQUIRE(dev.ring.put(EchoRequest{*in_flight.insert(v), v}));
    if (dev.ring.push())
        dev.channel.notify();

    auto ready = wait_for_ring(dev.ring, dev.channel, 0ns, kWaitTimeout);
    if (!ready)
        FAIL("frontend wait: " << ring_error(ready.error()));
    CHECK(*ready > 0);
    std::vector<std::uint64_t> seen;
    auto n = dev.ring.consume<EchoResponse>([&](const EchoResponse& rsp) {
        seen.push_back(rsp.id);
        return in_flight.take(rsp.id).has_value();
    });
    REQUIRE_FALSE(n.ok());
    CHECK(n.error() == RingError::kBadResponse);
    REQUIRE(seen.size() == 1); // the ring stopped at the first bad id
    CHECK(seen[0] == kMadeUpIdBase);
    CHECK(dev.ring.halted());
    CHECK(dev.ring.halt()->error == RingError::kBadResponse);
    CHECK(in_flight.size() == 4); // every real request is still ours to fail
    CHECK(dev.ring.pending().error() == RingError::kHalted);

    const HostileReport report = receive_report<HostileReport>(peer);
    CHECK(report.requests_seen == 4);
    CHECK(peer_exit_status(peer) == kExitOk);
}

TEST_CASE("a frontend process jumping req_prod past the ring halts that ring; "
          "the backend keeps serving a fresh one",
          "[process][ring][hostile]") {
    Peer peer = start_peer("hostile-frontend");
    // This time the peer owns the pool and sends it to us, the backend.
    ReceivedFds msg = recv_fds(peer.sock.get(), sizeof(FrontendSetup), 5);
    REQUIRE(msg.payload.size() == sizeof(FrontendSetup));
    REQUIRE(msg.fds.size() == 5);
    FrontendSetup setup;
    std::memcpy(&setup, msg.payload.data(), sizeof setup);
    REQUIRE(setup.backend_domid == kBackendDomid);

    GrantPool pool = must(GrantPool::attach(std::move(msg.fds[0])));
    GrantMapper mapper(pool, kBackendDomid);

    // Ring A: serve it honestly until the frontend breaks it.
    GrantMapping page_a = must(mapper.map(setup.bad_ring_ref, GrantAccess::kReadWrite));
    BackRing<EchoSlot> ring_a =
        must(BackRing<EchoSlot>::attach(std::span(page_a.payload_ptr(), PVKIT_PAGE_SIZE)));
    EventChannel chan_a(std::move(msg.fds[1]), std::move(msg.fds[2]));
    auto answer = [](BackRing<EchoSlot>& ring) {
        return ring.consume([&](const EchoSlot& slot) {
            const EchoRequest req = slot.req;
            REQUIRE(ring.put_response(EchoResponse{req.id, req.value, echo_result(req.value)}));
        });
    };
    Result<std::uint32_t, RingError> r = Unexpected{RingError::kTimeout};
    std::uint32_t answered_a = 0;
    // At most legit_requests rounds can succeed before the jump is seen.
    for (std::uint32_t round = 0; round <= setup.legit_requests; ++round) {
        r = wait_for_ring(ring_a, chan_a, 0ns, kWaitTimeout);
        if (!r)
            break;
        auto n = answer(ring_a);
        if (!n) {
            r = Unexpected{n.error()};
            break;
        }
        answered_a += *n;
        if (ring_a.push())
            chan_a.notify();
    }
    REQUIRE_FALSE(r.ok());
    INFO("ring A: " << ring_error(r.error()));
    CHECK(r.error() == RingError::kProtocol);
    CHECK(answered_a <= setup.legit_requests);
    REQUIRE(ring_a.halted());
    CHECK(ring_a.halt()->peer_index == setup.bad_req_prod);
    CHECK(ring_a.halt()->describe().find(std::to_string(setup.bad_req_prod)) != std::string::npos);
    CHECK(ring_a.pending().error() == RingError::kHalted);
    CHECK(ring_a.put_response(EchoResponse{}).error() == RingError::kHalted);

    // Ring B, same pool, same peer: still served in full.
    GrantMapping page_b = must(mapper.map(setup.good_ring_ref, GrantAccess::kReadWrite));
    BackRing<EchoSlot> ring_b =
        must(BackRing<EchoSlot>::attach(std::span(page_b.payload_ptr(), PVKIT_PAGE_SIZE)));
    EventChannel chan_b(std::move(msg.fds[3]), std::move(msg.fds[4]));
    std::uint32_t answered_b = 0;
    while (answered_b < setup.nr_requests) {
        auto ready = wait_for_ring(ring_b, chan_b, 0ns, kWaitTimeout);
        if (!ready)
            FAIL("ring B wait: " << ring_error(ready.error()));
        auto n = answer(ring_b);
        REQUIRE(n.ok());
        answered_b += *n;
        if (ring_b.push())
            chan_b.notify();
    }
    CHECK(answered_b == setup.nr_requests);
    CHECK_FALSE(ring_b.halted());

    const FrontendReport report = receive_report<FrontendReport>(peer);
    CHECK(report.answered == setup.nr_requests);
    CHECK(peer_exit_status(peer) == kExitOk);
}

TEST_CASE("grants across processes: read-only and foreign grants are enforced in the backend",
          "[process][grant][hostile]") {
    GrantPool pool = GrantPool::create(kFrontendDomid, 2, 16);
    GrantTable table(pool);
    const std::uint32_t ro_frame = pool.layout().data_first;
    const std::uint32_t foreign_frame = ro_frame + 1;
    const GrantRef ro_ref = must(table.grant(kBackendDomid, ro_frame, GrantAccess::kReadOnly));
    const GrantRef foreign_ref =
        must(table.grant(kOtherDomid, foreign_frame, GrantAccess::kReadWrite));
    std::span<std::byte> page = pool.data_frame(ro_frame);
    for (std::uint32_t i = 0; i < PVKIT_PAGE_SIZE; ++i)
        page[i] = static_cast<std::byte>(data_byte(kFrontendSeed, i));

    Peer peer = start_peer("grant-backend");
    GrantCheckSetup setup{};
    setup.ro_ref = ro_ref;
    setup.foreign_ref = foreign_ref;
    setup.backend_domid = kBackendDomid;
    const std::array<int, 1> passed{pool.fd()};
    send_fds(peer.sock.get(), pvkit::test::bytes_of(setup), passed);

    const GrantCheckReport report = receive_report<GrantCheckReport>(peer);
    const auto as_code = [](GrantError e) { return static_cast<std::int32_t>(e); };
    CHECK(report.rw_map_of_ro == as_code(GrantError::kReadOnly));
    CHECK(report.ro_map_of_ro == kGrantOk);
    CHECK(report.write_through_ro == as_code(GrantError::kReadOnly));
    CHECK(report.ro_map_of_foreign == as_code(GrantError::kWrongDomain));
    CHECK(report.rw_map_of_foreign == as_code(GrantError::kWrongDomain));
    for (std::uint32_t i = 0; i < sizeof report.first_bytes; ++i)
        CHECK(report.first_bytes[i] == data_byte(kFrontendSeed, i));
    // The refused write left our page alone.
    CHECK(std::to_integer<std::uint8_t>(page[0]) == data_byte(kFrontendSeed, 0));

    // While the peer holds its mapping, its in-use bit is in our table and
    // we cannot end the grant.
    GrantEntryWord entries(pool.table_base(), pool.layout().nr_grants);
    CHECK(entries.load(ro_ref).flags ==
          (PVKIT_GTF_PERMIT_ACCESS | PVKIT_GTF_READONLY | PVKIT_GTF_READING));
    CHECK(entries.load(foreign_ref).flags == PVKIT_GTF_PERMIT_ACCESS);
    CHECK(table.end(ro_ref).error() == GrantError::kInUse);

    const char release = kReleaseCommand;
    send_fds(peer.sock.get(), pvkit::test::bytes_of(release), {});
    const char reply = receive_report<char>(peer);
    CHECK(reply == kReleasedReply);
    CHECK(table.end(ro_ref).ok());
    CHECK(table.end(foreign_ref).ok());
    CHECK(peer_exit_status(peer) == kExitOk);
}

TEST_CASE("a backend process handed an unsealed pool refuses it and exits with an error",
          "[process][grant][hostile]") {
    auto hdr = pvkit::test::consistent_pool_header(4, 1, 16, kFrontendDomid);
    UniqueFd unsealed = pvkit::test::make_crafted_pool(4 * PVKIT_PAGE_SIZE, hdr, 0);
    EventChannelFds fds = make_event_channel_fds();
    Peer peer = start_peer("echo-backend");
    BackendSetup setup{};
    setup.ring_ref = 1;
    setup.data_ref = 2;
    setup.nr_requests = 1;
    const std::array<int, 3> passed{unsealed.get(), fds.to_backend.get(), fds.to_frontend.get()};
    send_fds(peer.sock.get(), pvkit::test::bytes_of(setup), passed);
    // The peer's stderr names the reason (kNotSealed); its status says it failed.
    CHECK(peer_exit_status(peer) == kExitFailed);
}

} // namespace
