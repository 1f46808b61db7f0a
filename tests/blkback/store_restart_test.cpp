// pvkit-stored restarting under a running pvkit-blkback: connected devices
// keep serving I/O while the store is away, blkback reconnects when it is
// back (same process), publishes what it could not write meanwhile, and
// picks up devices added and drops devices removed in between.
//
// The frontend is the test's own (blkback_test_support): once connected its
// data path is the ring and the eventfds only, so it does I/O while no
// store runs. Its store connection dies with the store; after the restart
// the test reads the store through a new dom0 client.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "blkback_test_support.hpp"

using namespace pvkit::blkback::test;
using pvkit::toolstack::XenbusState;

namespace {

constexpr std::uint64_t kImageBytes = 4ull << 20;

// Writes block `block` (8 sectors) with `version`, reads it back through
// the ring and checks it; returns false on any mismatch.
bool write_and_verify(TestFrontend& f, std::uint64_t block, std::uint64_t version) {
    auto data = pattern_block(block, version);
    if (f.write_sync(block * 8, data) != PVKIT_BLKIF_RSP_OKAY)
        return false;
    std::vector<std::byte> back;
    if (f.read_sync(block * 8, 8, back) != PVKIT_BLKIF_RSP_OKAY)
        return false;
    return back == data;
}

// Waits (bounded) until `path` is gone.
bool wait_gone(StoreClient& c, const std::string& path) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
        auto v = c.read(path);
        if (!v && v.error() == pvkit::store::StoreError::kNoEnt)
            return true;
        (void)c.wait_for_event(std::chrono::milliseconds(100));
    }
    return false;
}

} // namespace

TEST_CASE("blkback keeps serving through a store kill -9 and reconnects after its restart",
          "[store-restart]") {
    Bench b;
    StoreClient dom0 = b.store.client();
    const pid_t blkback_pid = b.blkback.pid();

    // A: connected, does I/O throughout. B: connected, removed while
    // blkback has no store connection.
    DiskSpec sa = image_disk(b, 1, "a.img", kImageBytes);
    DiskSpec sb = image_disk(b, 2, "b.img", kImageBytes);
    attach_disk(dom0, sa, ::getpid());
    attach_disk(dom0, sb, ::getpid());
    TestFrontend fa(b.store.socket(), sa);
    TestFrontend fb(b.store.socket(), sb);
    fa.connect();
    fb.connect();

    std::uint64_t writes_a = 0;
    for (std::uint64_t block = 0; block < 8; ++block, ++writes_a)
        REQUIRE(write_and_verify(fa, block, 1));
    REQUIRE(write_and_verify(fb, 0, 1));

    b.store.kill9();

    // The store is gone: both connected devices still serve, and blkback
    // is still running.
    for (std::uint64_t block = 8; block < 40; ++block, ++writes_a)
        REQUIRE(write_and_verify(fa, block, 2));
    for (std::uint64_t block = 0; block < 8; ++block, ++writes_a)
        REQUIRE(write_and_verify(fa, block, 3)); // overwrite what was written before the kill
    REQUIRE(write_and_verify(fb, 1, 2));
    REQUIRE(b.blkback.alive());
    // The host's own view of the image agrees: the writes are in the file.
    for (std::uint64_t block = 0; block < 40; ++block) {
        auto want = pattern_block(block, block < 8 ? 3 : 2);
        CHECK(read_image(sa.image, block * 4096, 4096) == want);
    }

    // Back on the same socket and data directory. The toolstack removes B
    // and adds C before (or while) blkback reconnects.
    b.store.start();
    dom0 = b.store.client();
    REQUIRE(dom0.rm(backend_dir(sb.domid, sb.devid)));
    REQUIRE(dom0.rm(frontend_dir(sb.domid, sb.devid)));
    DiskSpec sc = image_disk(b, 3, "c.img", kImageBytes);
    attach_disk(dom0, sc, ::getpid());

    // The new device connects through the same blkback process and does I/O.
    TestFrontend fc(b.store.socket(), sc);
    fc.connect();
    for (std::uint64_t block = 0; block < 8; ++block)
        REQUIRE(write_and_verify(fc, block, 7));
    CHECK(b.blkback.alive());
    CHECK(b.blkback.pid() == blkback_pid);

    // A is still Connected in the store and serving; the statistics it
    // could not publish while the store was away are there now, counting
    // the writes made during the outage.
    CHECK(wait_node(dom0, backend_dir(sa.domid, sa.devid) + "/state",
                    pvkit::toolstack::format_xenbus_state(XenbusState::kConnected)));
    CHECK(wait_node(dom0, backend_dir(sa.domid, sa.devid) + "/statistics/requests-write",
                    std::to_string(writes_a)));
    CHECK(wait_node(dom0, backend_dir(sa.domid, sa.devid) + "/statistics/bytes-written",
                    std::to_string(writes_a * 4096)));
    for (std::uint64_t block = 40; block < 48; ++block)
        REQUIRE(write_and_verify(fa, block, 4));

    // B was dropped, not brought back: blkback wrote nothing into its
    // removed directory (no statistics, no state).
    CHECK(wait_gone(dom0, backend_dir(sb.domid, sb.devid)));
    CHECK(!dom0.read(backend_dir(sb.domid, sb.devid) + "/state"));

    // A clean stop still works and exits 0.
    int status = b.blkback.stop();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("blkback survives a store that stays away for a while, then restarts twice",
          "[store-restart]") {
    Bench b;
    StoreClient dom0 = b.store.client();
    const pid_t blkback_pid = b.blkback.pid();
    DiskSpec sa = image_disk(b, 1, "a.img", kImageBytes);
    attach_disk(dom0, sa, ::getpid());
    TestFrontend fa(b.store.socket(), sa);
    fa.connect();

    std::uint64_t version = 1;
    for (int round = 0; round < 2; ++round) {
        b.store.kill9();
        // Long enough for several failed dials (the backoff grows); the
        // device serves all along.
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
        std::uint64_t block = 0;
        while (std::chrono::steady_clock::now() < until) {
            REQUIRE(write_and_verify(fa, block % 64, version));
            ++block;
        }
        ++version;
        REQUIRE(b.blkback.alive());
        b.store.start();
        dom0 = b.store.client();
        // A device attached after this restart connects.
        DiskSpec sn = image_disk(b, static_cast<pvkit_domid_t>(10 + round),
                                 "n" + std::to_string(round) + ".img", kImageBytes);
        attach_disk(dom0, sn, ::getpid());
        TestFrontend fn(b.store.socket(), sn);
        fn.connect();
        REQUIRE(write_and_verify(fn, 3, 9));
        fn.close();
    }
    CHECK(b.blkback.pid() == blkback_pid);
    CHECK(b.blkback.alive());
    REQUIRE(write_and_verify(fa, 100, 5));
}
