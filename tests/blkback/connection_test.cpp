// One blkback Connection driven step by step in one process, without the
// daemon: a frontend ring over a real grant pool, the backend's attached
// view of the same pool, a real image file and io_uring. Each step of the
// event loop is called explicitly, so the notification behaviour can be
// checked exactly, without any timing.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/blkback/connection.hpp"
#include "pvkit/blkback/io_ring.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/ring.hpp"

using namespace pvkit;
using namespace pvkit::blkback;

namespace {

constexpr pvkit_domid_t kDomid = 7;
constexpr std::uint64_t kImageBytes = 1u << 20;

UniqueFd dup_of(int fd) {
    UniqueFd d(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    REQUIRE(d.valid());
    return d;
}

struct Harness {
    std::string image_path;
    UniqueFd image;
    GrantPool front_pool = GrantPool::create(kDomid, 64, 128);
    GrantTable table{front_pool};
    std::optional<FrontRing<pvkit_blkif_sring_entry>> ring;
    EventChannel front_channel;
    DeviceCounters counters;
    std::unique_ptr<IoRing> io;
    std::unique_ptr<Connection> conn;
    std::uint32_t next_frame = 0;

    explicit Harness(ConnectionOptions options) {
        char tmpl[] = "/tmp/pvkit-blkback-conn-XXXXXX";
        int fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        image_path = tmpl;
        image.reset(fd);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(kImageBytes)) == 0);

        const std::uint32_t ring_frame = front_pool.layout().data_first;
        next_frame = ring_frame + 1;
        auto r = FrontRing<pvkit_blkif_sring_entry>::init(
            std::span(front_pool.frame_ptr(ring_frame), std::size_t{PVKIT_PAGE_SIZE}));
        REQUIRE(r.ok());
        ring.emplace(std::move(r.value()));
        auto ref = table.grant(PVKIT_DOMID_HOST, ring_frame, GrantAccess::kReadWrite);
        REQUIRE(ref.ok());

        EventChannelFds fds = make_event_channel_fds();
        EventChannelFds back_fds{dup_of(fds.to_backend.get()), dup_of(fds.to_frontend.get())};
        front_channel = EventChannel::frontend_end(fds);
        auto back_pool = GrantPool::attach(dup_of(front_pool.fd()));
        REQUIRE(back_pool.ok());

        DeviceLimits limits;
        limits.sectors = kImageBytes / 512;
        limits.flush = true;
        limits.discard = true;
        auto io_ring = IoRing::create(32, 64);
        REQUIRE(io_ring.ok());
        io = std::move(io_ring.value());
        const GrantRef refs[] = {*ref};
        auto c = Connection::create(std::make_unique<GrantPool>(std::move(back_pool.value())),
                                    EventChannel::backend_end(back_fds), refs, limits, image.get(),
                                    1, counters, options);
        REQUIRE(c.ok());
        conn = std::move(c.value());
    }
    ~Harness() { ::unlink(image_path.c_str()); }

    // Puts a request and publishes it; returns what push() said: whether
    // the backend asked to be kicked.
    bool publish(const pvkit_blkif_request& req) {
        REQUIRE(ring->put(req).ok());
        return ring->push();
    }
    pvkit_blkif_request flush(std::uint64_t id) {
        pvkit_blkif_request r{};
        r.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
        r.id = id;
        return r;
    }
    pvkit_blkif_request write(std::uint64_t id, std::uint64_t sector, std::byte fill) {
        const std::uint32_t frame = next_frame++;
        auto data = front_pool.data_frame(frame);
        std::memset(data.data(), static_cast<int>(fill), data.size());
        auto ref = table.grant(PVKIT_DOMID_HOST, frame, GrantAccess::kReadOnly);
        REQUIRE(ref.ok());
        pvkit_blkif_request r{};
        r.operation = PVKIT_BLKIF_OP_WRITE;
        r.id = id;
        r.sector_number = sector;
        r.nr_segments = 1;
        r.seg[0] = pvkit_blkif_segment{*ref, 0, 7, 0};
        return r;
    }
    // The daemon's completion step: wait for one completion, hand it over.
    void complete_one() {
        REQUIRE(io->submit() >= 0);
        REQUIRE(io->wait() == 0);
        io_uring_cqe* cqe = io->peek();
        REQUIRE(cqe != nullptr);
        const std::uint64_t data = io_uring_cqe_get_data64(cqe);
        const std::int32_t res = cqe->res;
        io->seen(cqe);
        REQUIRE((data >> 32) == 1u);
        conn->complete(static_cast<std::uint32_t>(data & 0xffffffffu), res, *io);
        conn->flush_responses();
    }
    std::vector<pvkit_blkif_response> responses() {
        std::vector<pvkit_blkif_response> out;
        auto n = ring->consume<pvkit_blkif_response>([&](const pvkit_blkif_response& r) {
            out.push_back(r);
            return true;
        });
        REQUIRE(n.ok());
        return out;
    }
};

} // namespace

TEST_CASE("req_event is armed only before sleeping: an awake backend is not kicked",
          "[connection]") {
    Harness h(ConnectionOptions{true, false});
    // Sleeping: final_check arms req_event, so the first request kicks.
    CHECK(h.conn->final_check() == 0);
    CHECK(h.publish(h.flush(1)));
    // Woken by the kick: disarm, consume, and while the flush is in flight
    // the backend is still awake.
    h.conn->disarm();
    CHECK(h.conn->service(*h.io, 32) == 1);
    h.complete_one();
    REQUIRE(h.responses().size() == 1);

    // The backend goes to sleep again with nothing pending (req_event =
    // req_cons + 1), is woken by something other than a kick (an I/O
    // completion, a store event) and disarms: the next request, which lands
    // exactly on the old req_event, must not kick.
    CHECK(h.conn->final_check() == 0);
    h.conn->disarm();
    CHECK_FALSE(h.publish(h.flush(2)));
    CHECK(h.conn->pending() == 1); // nothing is lost: the poll sees it
    CHECK(h.conn->service(*h.io, 32) == 1);
    CHECK_FALSE(h.publish(h.flush(3))); // still awake: no kick for later ones either
    CHECK(h.conn->service(*h.io, 32) == 1);
    h.complete_one();
    h.complete_one();
    CHECK(h.responses().size() == 2);

    // Before sleeping again: armed, and the next request kicks.
    CHECK(h.conn->final_check() == 0);
    CHECK(h.publish(h.flush(4)));
    // A request published between the last poll and final_check is found
    // by final_check itself (no sleep, no kick needed).
    h.conn->disarm();
    CHECK(h.conn->service(*h.io, 32) == 1);
    h.complete_one();
    CHECK_FALSE(h.publish(h.flush(5)));
    CHECK(h.conn->final_check() == 1);
    CHECK(h.conn->service(*h.io, 32) == 1);
    h.complete_one();
    CHECK(h.responses().size() == 2);
    CHECK(h.counters.requests_flush == 5);
}

TEST_CASE("inline writes are in the image and answered before service() returns", "[connection]") {
    for (bool inline_writes : {true, false}) {
        CAPTURE(inline_writes);
        Harness h(ConnectionOptions{inline_writes, false});
        h.conn->disarm();
        (void)h.publish(h.write(10, 8, std::byte{0x5A}));
        (void)h.publish(h.write(11, 24, std::byte{0xA5}));
        CHECK(h.conn->service(*h.io, 32) == 2);
        if (inline_writes) {
            CHECK(h.io->queued() == 0);          // nothing went to io_uring
            CHECK(h.conn->ops_in_flight() == 0); // both done
            CHECK(h.conn->mapped_grants() == 1); // only the ring page stays mapped
        } else {
            h.complete_one();
            h.complete_one();
        }
        auto rsp = h.responses();
        REQUIRE(rsp.size() == 2);
        for (const auto& r : rsp)
            CHECK(r.status == PVKIT_BLKIF_RSP_OKAY);
        std::vector<std::byte> back(4096);
        REQUIRE(::pread(h.image.get(), back.data(), back.size(), 8 * 512) == 4096);
        CHECK(std::all_of(back.begin(), back.end(),
                          [](std::byte b) { return b == std::byte{0x5A}; }));
        REQUIRE(::pread(h.image.get(), back.data(), back.size(), 24 * 512) == 4096);
        CHECK(std::all_of(back.begin(), back.end(),
                          [](std::byte b) { return b == std::byte{0xA5}; }));
        CHECK(h.counters.bytes_written == 8192);
    }
}

TEST_CASE("inline reads serve the page cache at once and leave the rest to io_uring",
          "[connection]") {
    Harness h(ConnectionOptions{false, true});
    std::vector<std::byte> fill(8192, std::byte{0x3C});
    REQUIRE(::pwrite(h.image.get(), fill.data(), fill.size(), 64 * 512) ==
            8192); // in the page cache now
    h.conn->disarm();
    auto req =
        h.write(20, 64, std::byte{0}); // a frame granted read-only: not good enough for a READ
    req.operation = PVKIT_BLKIF_OP_READ;
    (void)h.publish(req);
    CHECK(h.conn->service(*h.io, 32) == 1);
    h.conn->flush_responses(); // the loop publishes rejections after the pass
    auto rsp = h.responses();
    REQUIRE(rsp.size() == 1);
    CHECK(rsp[0].status == PVKIT_BLKIF_RSP_ERROR); // validated before any I/O
    CHECK(h.counters.total_errors() == 1);

    // A writable grant: the READ is answered before service() returns.
    const std::uint32_t frame = h.next_frame++;
    auto ref = h.table.grant(PVKIT_DOMID_HOST, frame, GrantAccess::kReadWrite);
    REQUIRE(ref.ok());
    req.id = 21;
    req.seg[0] = pvkit_blkif_segment{*ref, 0, 7, 0};
    (void)h.publish(req);
    CHECK(h.conn->service(*h.io, 32) == 1);
    CHECK(h.io->queued() == 0);
    CHECK(h.conn->ops_in_flight() == 0);
    rsp = h.responses();
    REQUIRE(rsp.size() == 1);
    CHECK(rsp[0].id == 21);
    CHECK(rsp[0].status == PVKIT_BLKIF_RSP_OKAY);
    auto data = h.front_pool.data_frame(frame);
    CHECK(std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0x3C}; }));
    CHECK(h.counters.bytes_read == 4096);
}
