// pvkit-test-ring-peer: the other process in two-process tests. It plays a
// well-behaved or a hostile ring backend, a hostile frontend, a grant
// mapper, or an event-channel echo, as a real separate process that gets
// its grant pool and eventfds over a Unix socket. See peer_protocol.hpp.
//
// Every wait is bounded (kWaitTimeout); any surprise becomes a message on
// stderr and exit status kExitFailed, which the test reports.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "peer_protocol.hpp"
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
using namespace std::chrono_literals;

// A check in the peer failed; main turns it into kExitFailed.
struct PeerFailure {
    std::string what;
};

[[noreturn]] void fail(std::string what) { throw PeerFailure{std::move(what)}; }

void expect(bool ok, const char* what) {
    if (!ok)
        fail(what);
}

template <class T>
T receive_setup(int sock, std::size_t nr_fds, std::vector<UniqueFd>& fds) {
    ReceivedFds msg = recv_fds(sock, sizeof(T), nr_fds);
    if (msg.payload.size() != sizeof(T))
        fail("setup message has the wrong size");
    if (msg.fds.size() != nr_fds)
        fail("setup message has " + std::to_string(msg.fds.size()) + " descriptors, expected " +
             std::to_string(nr_fds));
    T setup;
    std::memcpy(&setup, msg.payload.data(), sizeof setup);
    fds = std::move(msg.fds);
    return setup;
}

template <class T>
void send_report(int sock, const T& report) {
    send_fds(sock, pvkit::test::bytes_of(report), {});
}

GrantPool attach_pool(UniqueFd fd) {
    auto pool = GrantPool::attach(std::move(fd));
    if (!pool)
        fail(std::string("GrantPool::attach: ") + to_string(pool.error()));
    return std::move(pool).value();
}

GrantMapping map_or_fail(GrantMapper& mapper, GrantRef ref, GrantAccess access) {
    auto m = mapper.map(ref, access);
    if (!m)
        fail(std::string("map: ") + to_string(m.error()));
    return std::move(m).value();
}

template <class Slot>
BackRing<Slot> attach_ring(const GrantMapping& page) {
    auto ring = BackRing<Slot>::attach(std::span(page.payload_ptr(), PVKIT_PAGE_SIZE));
    if (!ring)
        fail("BackRing::attach failed");
    return std::move(ring).value();
}

// The backend side that every backend mode starts with: the pool, a
// writable mapping of the ring page, the ring, and the event channel.
struct Backend {
    BackendSetup setup;
    GrantPool pool;
    GrantMapper mapper;
    GrantMapping ring_page;
    BackRing<EchoSlot> ring;
    EventChannel channel;

    // Never moved: the mapper points at `pool` and the mapping at `mapper`.
    // receive() returns a prvalue, which C++17 constructs in place.
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;
    Backend(Backend&&) = delete;
    Backend& operator=(Backend&&) = delete;
    ~Backend() = default;

    static Backend receive(int sock) {
        std::vector<UniqueFd> fds;
        auto setup = receive_setup<BackendSetup>(sock, 3, fds);
        return Backend(setup, std::move(fds));
    }

private:
    Backend(const BackendSetup& s, std::vector<UniqueFd> fds)
        : setup(s), pool(attach_pool(std::move(fds[0]))), mapper(pool, s.backend_domid),
          ring_page(map_or_fail(mapper, s.ring_ref, GrantAccess::kReadWrite)),
          ring(attach_ring<EchoSlot>(ring_page)),
          // The backend waits on to_backend and kicks through to_frontend.
          channel(std::move(fds[1]), std::move(fds[2])) {}
};

std::uint32_t wait_for_requests(BackRing<EchoSlot>& ring, EventChannel& channel) {
    auto n = wait_for_ring(ring, channel, 0ns, kWaitTimeout);
    if (!n)
        fail(std::string("waiting for requests: ") + to_string(n.error()));
    return *n;
}

int echo_backend(int sock) {
    Backend b = Backend::receive(sock);
    EchoReport report{};

    // The data page: check what the frontend put there, answer next to it.
    {
        GrantMapping data = map_or_fail(b.mapper, b.setup.data_ref, GrantAccess::kReadWrite);
        std::uint8_t seed[kDataBytes];
        std::uint8_t reply[kDataBytes];
        if (!data.copy_out(0, std::as_writable_bytes(std::span(seed))))
            fail("copy_out of the data page");
        report.seed_ok = 1;
        for (std::uint32_t i = 0; i < kDataBytes; ++i) {
            if (seed[i] != data_byte(kFrontendSeed, i))
                report.seed_ok = 0;
            reply[i] = data_byte(kBackendSeed, i);
        }
        if (!data.copy_in(kDataReplyOffset, std::as_bytes(std::span(reply))))
            fail("copy_in to the data page");
    } // unmapped here: the frontend may end the grant

    while (report.answered < b.setup.nr_requests) {
        wait_for_requests(b.ring, b.channel);
        auto n = b.ring.consume([&](const EchoSlot& slot) {
            // Only the private copy is used; the id is echoed unchanged.
            const EchoRequest req = slot.req;
            if (!b.ring.put_response(EchoResponse{req.id, req.value, echo_result(req.value)}))
                fail("put_response failed");
        });
        if (!n)
            fail(std::string("consume: ") + to_string(n.error()));
        report.answered += *n;
        if (b.ring.push())
            b.channel.notify();
    }
    report.maps = b.mapper.counters().maps;
    report.rejected = b.mapper.counters().rejected;
    // Unmap the ring before reporting, so the frontend may end its grant.
    b.ring_page.release();
    send_report(sock, report);
    return kExitOk;
}

int hostile_backend_jump(int sock) {
    Backend b = Backend::receive(sock);
    HostileReport report{};
    report.requests_seen = wait_for_requests(b.ring, b.channel);
    auto consumed = b.ring.consume([](const EchoSlot&) {});
    expect(consumed.ok() && *consumed == report.requests_seen, "consume");
    // Claim far more responses than there are requests, without writing any.
    report.published_rsp_prod = b.ring.raw().req_cons + kJumpAhead;
    // Release: a real backend's rsp_prod store; here it publishes a lie.
    __atomic_store_n(&b.ring.raw().sring->rsp_prod, report.published_rsp_prod, __ATOMIC_RELEASE);
    b.channel.notify();
    b.ring_page.release();
    send_report(sock, report);
    return kExitOk;
}

int hostile_backend_unknown_id(int sock) {
    Backend b = Backend::receive(sock);
    HostileReport report{};
    report.requests_seen = wait_for_requests(b.ring, b.channel);
    std::uint64_t i = 0;
    auto n = b.ring.consume([&](const EchoSlot& slot) {
        // Well-formed responses, except that no request ever had these ids.
        const EchoRequest req = slot.req;
        if (!b.ring.put_response(EchoResponse{kMadeUpIdBase | i++, req.value, echo_result(req.value)}))
            fail("put_response failed");
    });
    expect(n.ok() && *n == report.requests_seen, "consume");
    (void)b.ring.push();
    b.channel.notify();
    report.published_rsp_prod = b.ring.raw().rsp_prod_pvt;
    b.ring_page.release();
    send_report(sock, report);
    return kExitOk;
}

FrontRing<EchoSlot> init_front(std::span<std::byte> page) {
    auto r = FrontRing<EchoSlot>::init(page);
    if (!r)
        fail("FrontRing::init failed");
    return std::move(r).value();
}

int hostile_frontend(int sock) {
    constexpr pvkit_domid_t kSelf = 1;
    constexpr pvkit_domid_t kBackend = 0;
    GrantPool pool = GrantPool::create(kSelf, 2, 16);
    GrantTable table(pool);
    const std::uint32_t frame_a = pool.layout().data_first;
    const std::uint32_t frame_b = frame_a + 1;
    auto ref_a = table.grant(kBackend, frame_a, GrantAccess::kReadWrite);
    auto ref_b = table.grant(kBackend, frame_b, GrantAccess::kReadWrite);
    expect(ref_a.ok() && ref_b.ok(), "grant ring pages");
    FrontRing<EchoSlot> ring_a = init_front(pool.data_frame(frame_a));
    FrontRing<EchoSlot> ring_b = init_front(pool.data_frame(frame_b));
    EventChannelFds fds_a = make_event_channel_fds();
    EventChannelFds fds_b = make_event_channel_fds();

    FrontendSetup setup{};
    setup.bad_ring_ref = *ref_a;
    setup.good_ring_ref = *ref_b;
    setup.legit_requests = 3;
    setup.bad_req_prod = setup.legit_requests + 5000;
    setup.nr_requests = 300;
    setup.backend_domid = kBackend;
    const int passed[] = {pool.fd(), fds_a.to_backend.get(), fds_a.to_frontend.get(),
                          fds_b.to_backend.get(), fds_b.to_frontend.get()};
    send_fds(sock, pvkit::test::bytes_of(setup), passed);
    EventChannel chan_a = EventChannel::frontend_end(fds_a);
    EventChannel chan_b = EventChannel::frontend_end(fds_b);

    // Ring A: a few real requests, then req_prod far past anything the ring
    // can hold, and a kick so the backend looks.
    for (std::uint32_t i = 0; i < setup.legit_requests; ++i)
        expect(ring_a.put(EchoRequest{i + 1, i}).ok(), "put on ring A");
    if (ring_a.push())
        chan_a.notify();
    __atomic_store_n(&ring_a.raw().sring->req_prod, setup.bad_req_prod, __ATOMIC_RELEASE);
    chan_a.notify();

    // Ring B: an honest frontend; the backend must still serve it.
    InFlightTable<std::uint64_t> in_flight(ring_b.nr_ents());
    FrontendReport report{};
    std::uint32_t sent = 0;
    while (report.answered < setup.nr_requests) {
        while (sent < setup.nr_requests && ring_b.free_slots() > 0) {
            auto id = in_flight.insert(sent);
            expect(id.has_value(), "in-flight table full");
            expect(ring_b.put(EchoRequest{*id, sent}).ok(), "put on ring B");
            ++sent;
        }
        if (ring_b.push())
            chan_b.notify();
        auto ready = wait_for_ring(ring_b, chan_b, 0ns, kWaitTimeout);
        if (!ready)
            fail(std::string("waiting for ring B: ") + to_string(ready.error()));
        auto n = ring_b.consume<EchoResponse>([&](const EchoResponse& rsp) {
            auto value = in_flight.take(rsp.id);
            return value.has_value() && rsp.value == *value && rsp.result == echo_result(*value);
        });
        if (!n)
            fail(std::string("ring B response rejected: ") + to_string(n.error()));
        report.answered += *n;
    }
    send_report(sock, report);
    return kExitOk;
}

std::int32_t code(const Result<void, GrantError>& r) {
    return r.ok() ? kGrantOk : static_cast<std::int32_t>(r.error());
}
std::int32_t code(const Result<GrantMapping, GrantError>& r) {
    return r.ok() ? kGrantOk : static_cast<std::int32_t>(r.error());
}

int grant_backend(int sock) {
    std::vector<UniqueFd> fds;
    auto setup = receive_setup<GrantCheckSetup>(sock, 1, fds);
    GrantPool pool = attach_pool(std::move(fds[0]));
    GrantMapper mapper(pool, setup.backend_domid);
    GrantCheckReport report{};

    report.rw_map_of_ro = code(mapper.map(setup.ro_ref, GrantAccess::kReadWrite));
    auto ro = mapper.map(setup.ro_ref, GrantAccess::kReadOnly);
    report.ro_map_of_ro = code(ro);
    if (ro.ok()) {
        if (!ro->copy_out(0, std::as_writable_bytes(std::span(report.first_bytes))))
            fail("copy_out through the read-only mapping");
        const std::uint32_t scribble = 0xdeadbeef;
        report.write_through_ro = code(ro->write(0, scribble));
    }
    report.ro_map_of_foreign = code(mapper.map(setup.foreign_ref, GrantAccess::kReadOnly));
    report.rw_map_of_foreign = code(mapper.map(setup.foreign_ref, GrantAccess::kReadWrite));
    send_report(sock, report);

    // Hold the read-only mapping (its in-use bit set) until told to let go.
    ReceivedFds cmd = recv_fds(sock, 1, 0);
    expect(cmd.payload.size() == 1 && static_cast<char>(cmd.payload[0]) == kReleaseCommand,
           "expected the release command");
    if (ro.ok())
        ro->release();
    const char reply = kReleasedReply;
    send_report(sock, reply);
    return kExitOk;
}

int event_pong(int sock) {
    std::vector<UniqueFd> fds;
    auto setup = receive_setup<PongSetup>(sock, 2, fds);
    EventChannel channel(std::move(fds[0]), std::move(fds[1]));
    for (std::uint32_t i = 0; i < setup.rounds; ++i) {
        if (!channel.wait(0ns, kWaitTimeout))
            fail("no kick in round " + std::to_string(i));
        channel.notify();
    }
    return kExitOk;
}

int parse_fd(const char* text) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0 || v > 1 << 20)
        return -1;
    int fd = static_cast<int>(v);
    return ::fcntl(fd, F_GETFD) < 0 ? -1 : fd;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: pvkit-test-ring-peer <mode> <socket fd>\n");
        return kExitUsage;
    }
    const std::string_view mode = argv[1];
    const int sock = parse_fd(argv[2]);
    if (sock < 0) {
        std::fprintf(stderr, "pvkit-test-ring-peer: bad socket fd '%s'\n", argv[2]);
        return kExitUsage;
    }
    // The inherited socket must not reach anything this process might exec.
    (void)::fcntl(sock, F_SETFD, FD_CLOEXEC);
    try {
        pvkit::test::set_receive_timeout(sock, kWaitTimeout);
        int status = kExitUsage;
        if (mode == "echo-backend")
            status = echo_backend(sock);
        else if (mode == "hostile-backend-jump")
            status = hostile_backend_jump(sock);
        else if (mode == "hostile-backend-unknown-id")
            status = hostile_backend_unknown_id(sock);
        else if (mode == "hostile-frontend")
            status = hostile_frontend(sock);
        else if (mode == "grant-backend")
            status = grant_backend(sock);
        else if (mode == "event-pong")
            status = event_pong(sock);
        else
            std::fprintf(stderr, "pvkit-test-ring-peer: unknown mode '%s'\n", argv[1]);
        ::close(sock);
        return status;
    } catch (const PeerFailure& f) {
        std::fprintf(stderr, "pvkit-test-ring-peer %s: %s\n", argv[1], f.what.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pvkit-test-ring-peer %s: exception: %s\n", argv[1], e.what());
    }
    ::close(sock);
    return kExitFailed;
}
