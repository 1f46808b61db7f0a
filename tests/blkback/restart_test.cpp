// Restarting pvkit-blkback: a new instance takes over the devices in the
// store, the frontend reconnects and re-issues what was in flight, and no
// acknowledged write is lost, also after kill -9 in the middle of a
// write/verify workload.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <map>
#include <memory>
#include <vector>
#include <random>
#include <set>

#include "blkback_test_support.hpp"

using namespace pvkit::blkback::test;
using pvkit::toolstack::XenbusState;

namespace {
constexpr std::uint64_t kBlocks = 256;
}

TEST_CASE("kill -9 under a write/verify workload loses no acknowledged write", "[restart]") {
    Bench b;
    StoreClient dom0 = b.store.client();
    DiskSpec s;
    s.domid = 4;
    s.image = b.image("crash.img");
    make_image(s.image, kBlocks * 4096);
    attach_disk(dom0, s, ::getpid());
    TestFrontend::Options o;
    o.ring_order = 1; // 64 slots
    TestFrontend f(b.store.socket(), s, o);
    f.connect();

    std::mt19937_64 rng(777);
    std::map<std::uint64_t, std::uint64_t> acked;  // block -> version the file must hold
    std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> pending; // tag -> (block, version)
    std::set<std::uint64_t> busy_blocks;            // blocks with a write in flight
    std::map<std::uint64_t, std::uint64_t> reads;   // tag -> block of a read in flight
    std::uint64_t next_tag = 1;
    std::uint64_t version = 0;
    std::uint64_t acks = 0;
    std::uint64_t verified_reads = 0;
    int crashes = 0;
    const int kCrashes = 3;
    const std::uint64_t kAcksPerPhase = 300;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);

    // Keeps 24 requests in flight while the workload runs.
    auto top_up = [&] {
        while (crashes < kCrashes && pending.size() + reads.size() < 24) {
            std::uint64_t block = rng() % kBlocks;
            if (busy_blocks.count(block) != 0)
                continue;
            std::uint64_t tag = next_tag++;
            if (rng() % 4 == 0 && acked.count(block) != 0) {
                if (!f.submit_read(tag, block * 8, 8))
                    break;
                reads[tag] = block;
            } else {
                ++version;
                if (!f.submit_write(tag, block * 8, pattern_block(block, version)))
                    break;
                pending[tag] = {block, version};
            }
            busy_blocks.insert(block);
        }
    };

    while (crashes < kCrashes || !pending.empty() || !reads.empty()) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        top_up();
        auto done = f.wait_completions(std::chrono::milliseconds(200));
        for (auto& c : done) {
            REQUIRE(c.status == PVKIT_BLKIF_RSP_OKAY);
            if (auto it = pending.find(c.tag); it != pending.end()) {
                acked[it->second.first] = it->second.second;
                busy_blocks.erase(it->second.first);
                pending.erase(it);
                ++acks;
            } else if (auto r = reads.find(c.tag); r != reads.end()) {
                // A block with no write in flight reads back its last acknowledged version.
                CHECK(c.data == pattern_block(r->second, acked[r->second]));
                busy_blocks.erase(r->second);
                reads.erase(r);
                ++verified_reads;
            }
        }
        if (crashes < kCrashes && acks >= kAcksPerPhase * static_cast<std::uint64_t>(crashes + 1) &&
            b.blkback.alive()) {
            // Crash with requests in flight: freeze the daemon, fill the
            // ring, then kill it and start a new instance.
            b.blkback.pause();
            top_up();
            REQUIRE(f.in_flight() > 0);
            b.blkback.kill9();
            ++crashes;
            b.blkback.start();
        }
        if (f.backend_went_away())
            f.reconnect();
    }
    CHECK(f.reissued() > 0);
    CHECK(verified_reads > 0);
    CHECK(f.quarantined() == 0);
    // Every acknowledged write is in the file, checked on the host.
    for (std::uint64_t block = 0; block < kBlocks; ++block) {
        INFO("block " << block);
        auto it = acked.find(block);
        auto want = it == acked.end() ? std::vector<std::byte>(4096) : pattern_block(block, it->second);
        CHECK(read_image(s.image, block * 4096, 4096) == want);
    }
    f.close();
}

TEST_CASE("a clean restart takes the devices over and the frontends reconnect", "[restart]") {
    Bench b;
    StoreClient dom0 = b.store.client();
    std::vector<DiskSpec> specs;
    std::vector<std::unique_ptr<TestFrontend>> fronts;
    for (pvkit_domid_t d = 5; d <= 6; ++d) {
        DiskSpec s;
        s.domid = d;
        s.image = b.image("r" + std::to_string(d) + ".img");
        make_image(s.image, kBlocks * 4096);
        attach_disk(dom0, s, ::getpid());
        specs.push_back(s);
        fronts.push_back(std::make_unique<TestFrontend>(b.store.socket(), s));
        fronts.back()->connect();
        REQUIRE(fronts.back()->write_sync(0, pattern_block(0, d)) == PVKIT_BLKIF_RSP_OKAY);
    }
    // SIGTERM: in-flight I/O is answered, the store keeps the states.
    CHECK(b.blkback.stop() == 0);
    b.blkback.start();
    for (std::size_t i = 0; i < fronts.size(); ++i) {
        TestFrontend& f = *fronts[i];
        auto deadline = std::chrono::steady_clock::now() + kWait;
        while (!f.backend_went_away())
            REQUIRE(std::chrono::steady_clock::now() < deadline);
        f.reconnect();
        std::vector<std::byte> back;
        REQUIRE(f.read_sync(0, 8, back) == PVKIT_BLKIF_RSP_OKAY);
        CHECK(back == pattern_block(0, specs[i].domid));
        CHECK(f.write_sync(8, pattern_block(1, specs[i].domid)) == PVKIT_BLKIF_RSP_OKAY);
        CHECK(read_image(specs[i].image, 4096, 4096) == pattern_block(1, specs[i].domid));
    }
}
