// The blkfront C core against an in-process fake backend (fake_env.hpp):
// the handshake and its validation of the backend's nodes, request
// building (segment splitting, indirect requests, a full ring), response
// validation (one test per rejection), deferred grants, reconnect with
// re-issue, and teardown.
#include <catch2/catch.hpp>

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fake_env.hpp"
#include "pvkit/front/pattern.hpp"

using namespace pvkit;
using namespace pvkit::blkfront::test;

namespace {

constexpr std::uint64_t kDiskBytes = 4 * 1024 * 1024;

// One I/O and its buffer pages.
struct Io {
    pvkit_blkfront_io io{};
    std::vector<pvkit_blkfront_seg> segs;
    std::uint32_t first_frame = 0;
    std::uint32_t pages = 0;
};

struct Rig {
    explicit Rig(std::uint32_t own_order = 4) : be(env, kDiskBytes) {
        env.toolstack_attach();
        fe = std::make_unique<pvkit_blkfront>();
        const int r = pvkit_blkfront_init(fe.get(), env.env(), kFrontDir.c_str(),
                                          static_cast<std::uint16_t>(kDevid), own_order);
        if (r != 0)
            throw std::runtime_error("init failed: " + std::to_string(r));
    }

    // Through the handshake to Connected on both ends.
    void connect(const Features& f = {}) {
        REQUIRE(store_changed(fe.get()) == 0);
        be.initwait(f);
        REQUIRE(store_changed(fe.get()) == 0);
        REQUIRE(env.store().get(kFrontDir + "/state") == "3");
        REQUIRE(be.connect());
        REQUIRE(store_changed(fe.get()) == 0);
        REQUIRE(pvkit_blkfront_connected(fe.get()));
    }

    // The backend restarted: a new instance (mappings gone), Closed with
    // online = 1, then InitWait once the frontend is Initialising, then
    // Connected.
    void restart_backend(const Features& f = {}) {
        be.crash();
        be.set_state(PVKIT_XENBUS_CLOSED);
        REQUIRE(store_changed(fe.get()) == 0);
        REQUIRE(env.store().get(kFrontDir + "/state") == "1");
        be.initwait(f);
        REQUIRE(store_changed(fe.get()) == 0);
        REQUIRE(be.connect());
        REQUIRE(store_changed(fe.get()) == 0);
        REQUIRE(pvkit_blkfront_connected(fe.get()));
    }

    // A read or write of `pages` pages at `sector`; the last page holds
    // `last_sectors` sectors.
    std::unique_ptr<Io> rw(std::uint8_t op, std::uint64_t sector, std::uint32_t pages,
                           std::uint8_t last_sectors = 8) {
        auto io = std::make_unique<Io>();
        io->pages = pages;
        io->first_frame = env.alloc_frames(pages);
        io->segs.resize(pages);
        for (std::uint32_t i = 0; i < pages; ++i) {
            io->segs[i].frame = io->first_frame + i;
            io->segs[i].first_sect = 0;
            io->segs[i].last_sect = static_cast<std::uint8_t>(i + 1 == pages ? last_sectors - 1 : 7);
        }
        io->io.op = op;
        io->io.sector = sector;
        io->io.nr_segs = static_cast<std::uint16_t>(pages);
        io->io.segs = io->segs.data();
        io->io.cookie = io.get();
        return io;
    }

    std::unique_ptr<Io> simple(std::uint8_t op, std::uint64_t sector = 0, std::uint64_t nr = 0) {
        auto io = std::make_unique<Io>();
        io->io.op = op;
        io->io.sector = sector;
        io->io.nr_sectors = nr;
        io->io.cookie = io.get();
        return io;
    }

    std::span<std::byte> buffer(const Io& io) {
        return {env.frame(io.first_frame), std::size_t{io.pages} * PVKIT_PAGE_SIZE};
    }

    int submit(Io& io) { return pvkit_blkfront_submit(fe.get(), &io.io); }
    int poll() { return pvkit_blkfront_poll(fe.get()); }
    const pvkit_blkfront_counters& counters() const { return *pvkit_blkfront_get_counters(fe.get()); }
    std::vector<std::string> states() const { return env.store().history(kFrontDir + "/state"); }

    FakeEnv env;
    FakeBackend be;
    std::unique_ptr<pvkit_blkfront> fe;
};

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// A bad response was seen: the ring is halted, the device left Connected
// through Closing, nothing was completed, and we are still here to check.
void expect_halted(Rig& rig, pvkit_blkfront_reason reason) {
    CHECK(pvkit_blkfront_halted(rig.fe.get()));
    CHECK(rig.fe->reason == reason);
    CHECK(contains(rig.states(), "5"));
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
    CHECK(rig.counters().responses_rejected == 1);
    CHECK(!pvkit_blkfront_connected(rig.fe.get()));
}

} // namespace

// ---- Handshake ---------------------------------------------------------------

TEST_CASE("init reads the backend's location and writes Initialising", "[blkfront][handshake]") {
    Rig rig;
    CHECK(std::string(pvkit_blkfront_backend_path(rig.fe.get())) == kBackDir);
    CHECK(rig.fe->backend_id == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "1");
    // Nothing is published while the backend is still Initialising.
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(!rig.env.store().get(kFrontDir + "/ring-ref"));
    CHECK(pvkit_blkfront_state(rig.fe.get()) == PVKIT_XENBUS_INITIALISING);
}

TEST_CASE("init refuses a frontend directory without a usable backend node", "[blkfront][handshake]") {
    FakeEnv env;
    env.toolstack_attach();
    auto fe = std::make_unique<pvkit_blkfront>();
    SECTION("relative backend path") {
        env.store().put(kFrontDir + "/backend", "local/domain/0");
        CHECK(pvkit_blkfront_init(fe.get(), env.env(), kFrontDir.c_str(), 1, 0) == -PVKIT_EINVAL);
    }
    SECTION("backend-id not a domid") {
        env.store().put(kFrontDir + "/backend-id", "00");
        CHECK(pvkit_blkfront_init(fe.get(), env.env(), kFrontDir.c_str(), 1, 0) == -PVKIT_EINVAL);
    }
    SECTION("no backend node") {
        env.store().remove_tree(kFrontDir + "/backend");
        CHECK(pvkit_blkfront_init(fe.get(), env.env(), kFrontDir.c_str(), 1, 0) == -PVKIT_ENOENT);
    }
}

TEST_CASE("Initialised publishes ring-ref, event-channel and protocol together", "[blkfront][handshake]") {
    Rig rig;
    Features f;
    f.sectors = 2048;
    f.flush = true;
    f.discard = false;
    rig.connect(f);
    FakeStore& s = rig.env.store();
    CHECK(s.get(kFrontDir + "/ring-ref"));
    CHECK(s.get(kFrontDir + "/ring-ref") != "0");
    CHECK(!s.get(kFrontDir + "/ring-page-order"));
    CHECK(s.get(kFrontDir + "/event-channel") == "1");
    CHECK(s.get(kFrontDir + "/protocol") == "x86_64-abi");
    CHECK(rig.states() == std::vector<std::string>{"1", "3", "4"});
    CHECK(rig.env.hook_calls == 1);
    const pvkit_blkfront_info* info = pvkit_blkfront_get_info(rig.fe.get());
    REQUIRE(info != nullptr);
    CHECK(info->sectors == 2048);
    CHECK(info->sector_size == 512);
    CHECK(info->flush == 1);
    CHECK(info->discard == 0);
    CHECK(info->ring_page_order == 0);
    CHECK(info->ring_ents == 32);
    CHECK(rig.counters().connects == 1);
}

TEST_CASE("the ring order is the smaller of both limits", "[blkfront][handshake]") {
    SECTION("backend offers 2, frontend allows 4") {
        Rig rig(4);
        Features f;
        f.max_ring_order = 2;
        rig.connect(f);
        FakeStore& s = rig.env.store();
        CHECK(s.get(kFrontDir + "/ring-page-order") == "2");
        for (int i = 0; i < 4; ++i)
            CHECK(s.get(kFrontDir + "/ring-ref" + std::to_string(i)));
        CHECK(!s.get(kFrontDir + "/ring-ref"));
        CHECK(rig.be.ring_entries() == 128);
    }
    SECTION("backend offers 4, frontend allows 1") {
        Rig rig(1);
        Features f;
        f.max_ring_order = 4;
        rig.connect(f);
        CHECK(rig.env.store().get(kFrontDir + "/ring-page-order") == "1");
        CHECK(rig.be.ring_entries() == 64);
    }
    SECTION("offers beyond the protocol are clamped, not refused") {
        Rig rig(4);
        Features f;
        f.overrides["max-ring-page-order"] = "9";
        f.overrides["feature-max-indirect-segments"] = "100000";
        rig.connect(f);
        const pvkit_blkfront_info* info = pvkit_blkfront_get_info(rig.fe.get());
        CHECK(info->ring_page_order == 4);
        CHECK(info->ring_ents == 512);
        CHECK(info->max_indirect_segs == 256);
    }
}

TEST_CASE("ring keys of another order left by an earlier connection are removed", "[blkfront][handshake]") {
    Rig rig;
    FakeStore& s = rig.env.store();
    s.put(kFrontDir + "/ring-page-order", "2");
    for (int i = 0; i < 4; ++i)
        s.put(kFrontDir + "/ring-ref" + std::to_string(i), "77");
    rig.connect(); // order 0: the backend refuses to connect if both forms exist
    CHECK(!s.get(kFrontDir + "/ring-page-order"));
    CHECK(!s.get(kFrontDir + "/ring-ref0"));
}

TEST_CASE("the Initialised transaction is retried on EAGAIN", "[blkfront][handshake]") {
    Rig rig;
    rig.env.store().fail_commits(3);
    rig.connect();
    CHECK(rig.states() == std::vector<std::string>{"1", "3", "4"});
}

TEST_CASE("backend values that fail validation make the frontend close", "[blkfront][handshake]") {
    const auto bad = GENERATE(as<std::pair<std::string, std::string>>{},
                              std::pair{"sector-size", "1024"}, std::pair{"sector-size", "0512"},
                              std::pair{"sector-size", ""}, std::pair{"sectors", "abc"},
                              std::pair{"sectors", "-5"}, std::pair{"sectors", "36028797018963968"},
                              std::pair{"sectors", "18446744073709551616"}, std::pair{"info", "8"},
                              std::pair{"feature-discard", "2"}, std::pair{"feature-flush-cache", " 1"},
                              std::pair{"discard-granularity", "1000"},
                              std::pair{"discard-granularity", "256"},
                              std::pair{"max-ring-page-order", "-1"},
                              std::pair{"feature-max-indirect-segments", "1e3"});
    INFO(bad.first << " = '" << bad.second << "'");
    Rig rig;
    REQUIRE(store_changed(rig.fe.get()) == 0);
    Features f;
    f.overrides[bad.first] = bad.second;
    rig.be.initwait(f);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(!contains(rig.states(), "3"));
    CHECK(contains(rig.states(), "5"));
    CHECK(rig.fe->reason == PVKIT_BLKFRONT_REASON_BAD_NODE);
    CHECK(std::string(rig.fe->reason_node) == bad.first);
    // Nothing of the failed attempt stays granted or allocated.
    CHECK(rig.env.table().active() == 0);
    CHECK(rig.env.live_ports.empty());
}

TEST_CASE("sectors must be a whole number of 4096-byte sectors", "[blkfront][handshake]") {
    Rig rig;
    REQUIRE(store_changed(rig.fe.get()) == 0);
    Features f;
    f.sector_size = 4096;
    f.sectors = 8 * 100 + 3;
    rig.be.initwait(f);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(contains(rig.states(), "5"));
    CHECK(std::string(rig.fe->reason_node) == "sectors");
}

TEST_CASE("a failing connection hook fails the attempt", "[blkfront][handshake]") {
    Rig rig;
    rig.env.hook_result = -PVKIT_EIO;
    REQUIRE(store_changed(rig.fe.get()) == 0);
    rig.be.initwait({});
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(!contains(rig.states(), "3"));
    CHECK(contains(rig.states(), "5"));
    CHECK(rig.fe->reason == PVKIT_BLKFRONT_REASON_CONNECT_HOOK);
    CHECK(rig.env.table().active() == 0);
}

TEST_CASE("repeated failed attempts stop after a bound", "[blkfront][handshake]") {
    Rig rig;
    rig.env.hook_result = -PVKIT_EIO;
    REQUIRE(store_changed(rig.fe.get()) == 0);
    rig.be.initwait({});
    // The backend answers every Closing with Closed, every reopen with InitWait.
    for (int round = 0; round < 40 && !pvkit_blkfront_finished(rig.fe.get()); ++round) {
        REQUIRE(store_changed(rig.fe.get()) == 0);
        const auto st = rig.env.store().get(kFrontDir + "/state");
        if (st == "5" || st == "6")
            rig.be.set_state(PVKIT_XENBUS_CLOSED);
        else if (st == "1")
            rig.be.set_state(PVKIT_XENBUS_INITWAIT);
    }
    CHECK(pvkit_blkfront_finished(rig.fe.get()));
    CHECK(rig.env.hook_calls == static_cast<int>(PVKIT_BLKFRONT_MAX_CONNECT_FAILURES));
}

// ---- I/O -------------------------------------------------------------------------

TEST_CASE("a write and a read go through the ring", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    auto w = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 16, 2);
    front::fill_pattern(rig.buffer(*w), 7, 16 * 512);
    REQUIRE(rig.submit(*w) == 0);
    CHECK(rig.env.notifications == 1);
    CHECK(rig.be.serve() == 1);
    CHECK(rig.poll() == 1);
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].io == &w->io);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(!front::find_pattern_mismatch(std::span(rig.be.disk).subspan(16 * 512, 8192), 7, 16 * 512));

    auto r = rig.rw(PVKIT_BLKFRONT_OP_READ, 16, 2);
    REQUIRE(rig.submit(*r) == 0);
    rig.be.serve();
    rig.poll();
    REQUIRE(rig.env.completed.size() == 2);
    CHECK(rig.env.completed[1].status == 0);
    CHECK(!front::find_pattern_mismatch(rig.buffer(*r), 7, 16 * 512));
    CHECK(rig.counters().bytes_written == 8192);
    CHECK(rig.counters().bytes_read == 8192);
    // Every data grant was ended at completion; only the ring's stays.
    CHECK(rig.env.table().active() == 1);
}

TEST_CASE("partial pages move exactly their sectors", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    auto w = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 3, 1);
    w->segs[0].first_sect = 2;
    w->segs[0].last_sect = 4; // 3 sectors from byte 1024 of the page
    front::fill_pattern(rig.buffer(*w), 9, 0);
    REQUIRE(rig.submit(*w) == 0);
    rig.be.serve();
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
    std::vector<std::byte> expect(3 * 512);
    front::fill_pattern(expect, 9, 1024);
    CHECK(std::memcmp(rig.be.disk.data() + 3 * 512, expect.data(), expect.size()) == 0);
    CHECK(rig.be.disk[3 * 512 - 1] == std::byte{0});
    CHECK(rig.be.disk[6 * 512] == std::byte{0});
}

TEST_CASE("without indirect segments a large request is split into 11-segment requests",
          "[blkfront][io]") {
    Rig rig;
    rig.connect(); // max_indirect = 0
    auto w = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 8, 30);
    front::fill_pattern(rig.buffer(*w), 3, 8 * 512);
    REQUIRE(rig.submit(*w) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[0].req.operation == PVKIT_BLKIF_OP_WRITE);
    CHECK(reqs[0].req.nr_segments == 11);
    CHECK(reqs[1].req.nr_segments == 11);
    CHECK(reqs[2].req.nr_segments == 8);
    CHECK(reqs[0].req.sector_number == 8);
    CHECK(reqs[1].req.sector_number == 8 + 88);
    CHECK(reqs[2].req.sector_number == 8 + 176);
    for (const Slot& s : reqs)
        rig.be.answer(s);
    rig.poll();
    // One I/O, one completion, after its last piece.
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(!front::find_pattern_mismatch(std::span(rig.be.disk).subspan(8 * 512, 30 * 4096), 3, 8 * 512));
    CHECK(rig.counters().ring_requests == 3);
    CHECK(rig.counters().indirect_requests == 0);
}

TEST_CASE("indirect requests carry large I/O when the backend offers them", "[blkfront][io]") {
    SECTION("one indirect request for 30 segments") {
        Rig rig;
        Features f;
        f.max_indirect = 256;
        rig.connect(f);
        auto w = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 0, 30);
        front::fill_pattern(rig.buffer(*w), 5, 0);
        REQUIRE(rig.submit(*w) == 0);
        std::vector<Slot> reqs = rig.be.take_requests();
        REQUIRE(reqs.size() == 1);
        CHECK(reqs[0].indirect.operation == PVKIT_BLKIF_OP_INDIRECT);
        CHECK(reqs[0].indirect.indirect_op == PVKIT_BLKIF_OP_WRITE);
        CHECK(reqs[0].indirect.nr_segments == 30);
        CHECK(reqs[0].indirect.handle == kDevid);
        CHECK(reqs[0].indirect.indirect_grefs[1] == 0);
        rig.be.answer(reqs[0]);
        rig.poll();
        REQUIRE(rig.env.completed.size() == 1);
        CHECK(rig.env.completed[0].status == 0);
        CHECK(!front::find_pattern_mismatch(std::span(rig.be.disk).subspan(0, 30 * 4096), 5, 0));

        auto r = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 256);
        REQUIRE(rig.submit(*r) == 0);
        CHECK(rig.be.serve() == 1);
        rig.poll();
        REQUIRE(rig.env.completed.size() == 2);
        CHECK(!front::find_pattern_mismatch(rig.buffer(*r).subspan(0, 30 * 4096), 5, 0));
        CHECK(rig.counters().indirect_requests == 2);
        CHECK(rig.env.table().active() == 1);
    }
    SECTION("a small max-indirect-segments splits into several indirect requests") {
        Rig rig;
        Features f;
        f.max_indirect = 16;
        rig.connect(f);
        auto w = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 30);
        REQUIRE(rig.submit(*w) == 0);
        std::vector<Slot> reqs = rig.be.take_requests();
        REQUIRE(reqs.size() == 2);
        CHECK(reqs[0].indirect.nr_segments == 16);
        CHECK(reqs[1].indirect.nr_segments == 14);
        CHECK(reqs[1].indirect.sector_number == 16 * 8);
    }
    SECTION("11 or fewer indirect segments are not worth it: direct requests") {
        Rig rig;
        Features f;
        f.max_indirect = 8;
        rig.connect(f);
        auto w = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 20);
        REQUIRE(rig.submit(*w) == 0);
        std::vector<Slot> reqs = rig.be.take_requests();
        REQUIRE(reqs.size() == 2);
        CHECK(reqs[0].req.operation == PVKIT_BLKIF_OP_READ);
        CHECK(reqs[0].req.nr_segments == 11);
    }
}

TEST_CASE("a full ring holds the rest back, in submission order", "[blkfront][io]") {
    Rig rig;
    rig.connect(); // 32 slots
    std::vector<std::unique_ptr<Io>> ios;
    for (std::uint64_t i = 0; i < 40; ++i) {
        ios.push_back(rig.rw(PVKIT_BLKFRONT_OP_WRITE, i * 8, 1));
        REQUIRE(rig.submit(*ios.back()) == 0);
    }
    CHECK(pvkit_blkfront_outstanding(rig.fe.get()) == 32);
    CHECK(pvkit_blkfront_ios(rig.fe.get()) == 40);
    std::vector<Slot> first = rig.be.take_requests();
    REQUIRE(first.size() == 32);
    for (std::size_t i = 0; i < first.size(); ++i)
        CHECK(first[i].req.sector_number == i * 8);
    for (const Slot& s : first)
        rig.be.answer(s);
    rig.poll();
    CHECK(rig.env.completed.size() == 32);
    std::vector<Slot> rest = rig.be.take_requests();
    REQUIRE(rest.size() == 8);
    for (std::size_t i = 0; i < rest.size(); ++i)
        CHECK(rest[i].req.sector_number == (32 + i) * 8);
    for (const Slot& s : rest)
        rig.be.answer(s);
    rig.poll();
    CHECK(rig.env.completed.size() == 40);
    CHECK(pvkit_blkfront_ios(rig.fe.get()) == 0);
}

TEST_CASE("ids are a slot index and a generation, never pointers", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    std::vector<std::uint64_t> ids;
    for (int round = 0; round < 3; ++round) {
        auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
        REQUIRE(rig.submit(*io) == 0);
        std::vector<Slot> reqs = rig.be.take_requests();
        REQUIRE(reqs.size() == 1);
        ids.push_back(reqs[0].req.id);
        rig.be.answer(reqs[0]);
        rig.poll();
    }
    for (std::uint64_t id : ids)
        CHECK((id & 0xffffffffu) < 32);
    // The same slot comes back with a new generation each time.
    CHECK(ids[0] != ids[1]);
    CHECK(ids[1] != ids[2]);
    CHECK((ids[0] & 0xffffffffu) == (ids[1] & 0xffffffffu));
}

TEST_CASE("running out of grant references waits instead of failing", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    rig.env.grant_failures_after = 6;
    auto a = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 0, 4);
    auto b = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 64, 4);
    REQUIRE(rig.submit(*a) == 0);
    REQUIRE(rig.submit(*b) == 0);
    CHECK(rig.be.take_requests().size() == 1); // b's grants ran out halfway and were undone
    CHECK(rig.env.table().active() == 1 + 4);
    rig.env.grant_failures_after = -1;
    rig.poll();
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].req.sector_number == 64);
}

TEST_CASE("submit checks an I/O against the device before queueing it", "[blkfront][io]") {
    Rig rig;
    Features f;
    f.sectors = 1024;
    f.flush = false;
    f.discard = false;
    rig.connect(f);
    SECTION("beyond the end") {
        auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 1020, 1);
        CHECK(rig.submit(*io) == -PVKIT_ERANGE);
        auto huge = rig.rw(PVKIT_BLKFRONT_OP_READ, UINT64_MAX - 2, 1);
        CHECK(rig.submit(*huge) == -PVKIT_ERANGE);
    }
    SECTION("flush and discard not offered") {
        auto fl = rig.simple(PVKIT_BLKFRONT_OP_FLUSH);
        CHECK(rig.submit(*fl) == -PVKIT_EOPNOTSUPP);
        auto d = rig.simple(PVKIT_BLKFRONT_OP_DISCARD, 0, 8);
        CHECK(rig.submit(*d) == -PVKIT_EOPNOTSUPP);
    }
    SECTION("malformed") {
        auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
        io->segs[0].first_sect = 5;
        io->segs[0].last_sect = 4;
        CHECK(rig.submit(*io) == -PVKIT_EINVAL);
        io->segs[0].first_sect = 0;
        io->segs[0].last_sect = 8;
        CHECK(rig.submit(*io) == -PVKIT_EINVAL);
        io->io.nr_segs = 0;
        CHECK(rig.submit(*io) == -PVKIT_EINVAL);
        io->io.nr_segs = PVKIT_BLKFRONT_MAX_IO_SEGS + 1;
        CHECK(rig.submit(*io) == -PVKIT_EINVAL);
        auto bad = rig.simple(7);
        CHECK(rig.submit(*bad) == -PVKIT_EINVAL);
        auto d = rig.simple(PVKIT_BLKFRONT_OP_DISCARD, 0, 0);
        CHECK(rig.submit(*d) == -PVKIT_EINVAL);
    }
    CHECK(pvkit_blkfront_ios(rig.fe.get()) == 0);
    CHECK(rig.be.take_requests().empty());
}

TEST_CASE("a read-only device refuses writes and discards", "[blkfront][io]") {
    Rig rig;
    Features f;
    f.info = PVKIT_VDISK_READONLY;
    rig.connect(f);
    auto w = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 0, 1);
    CHECK(rig.submit(*w) == -PVKIT_EROFS);
    auto d = rig.simple(PVKIT_BLKFRONT_OP_DISCARD, 0, 8);
    CHECK(rig.submit(*d) == -PVKIT_EROFS);
    auto r = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    CHECK(rig.submit(*r) == 0);
}

TEST_CASE("4096-byte sectors need whole, aligned pages", "[blkfront][io]") {
    Rig rig;
    Features f;
    f.sector_size = 4096;
    rig.connect(f);
    auto a = rig.rw(PVKIT_BLKFRONT_OP_READ, 4, 1);
    CHECK(rig.submit(*a) == -PVKIT_EINVAL);
    auto b = rig.rw(PVKIT_BLKFRONT_OP_READ, 8, 1, 4);
    CHECK(rig.submit(*b) == -PVKIT_EINVAL);
    auto d = rig.simple(PVKIT_BLKFRONT_OP_DISCARD, 8, 4);
    CHECK(rig.submit(*d) == -PVKIT_EINVAL);
    auto ok = rig.rw(PVKIT_BLKFRONT_OP_READ, 8, 2);
    CHECK(rig.submit(*ok) == 0);
}

TEST_CASE("flush and discard go out as their own operations", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    std::memset(rig.be.disk.data(), 0xab, 64 * 512);
    auto d = rig.simple(PVKIT_BLKFRONT_OP_DISCARD, 8, 16);
    auto fl = rig.simple(PVKIT_BLKFRONT_OP_FLUSH);
    REQUIRE(rig.submit(*d) == 0);
    REQUIRE(rig.submit(*fl) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].discard.operation == PVKIT_BLKIF_OP_DISCARD);
    CHECK(reqs[0].discard.sector_number == 8);
    CHECK(reqs[0].discard.nr_sectors == 16);
    CHECK(reqs[1].req.operation == PVKIT_BLKIF_OP_FLUSH_DISKCACHE);
    CHECK(reqs[1].req.nr_segments == 0);
    for (const Slot& s : reqs)
        rig.be.answer(s);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 2);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(rig.env.completed[1].status == 0);
    CHECK(rig.be.disk[8 * 512] == std::byte{0});
    CHECK(rig.be.disk[24 * 512 - 1] == std::byte{0});
    CHECK(rig.be.disk[24 * 512] == std::byte{0xab});
}

TEST_CASE("backend error statuses fail the I/O, not the device", "[blkfront][io]") {
    Rig rig;
    rig.connect();
    auto a = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    auto b = rig.rw(PVKIT_BLKFRONT_OP_READ, 8, 12); // two ring requests
    REQUIRE(rig.submit(*a) == 0);
    REQUIRE(rig.submit(*b) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 3);
    rig.be.answer(reqs[0], PVKIT_BLKIF_RSP_ERROR);
    rig.be.answer(reqs[1], PVKIT_BLKIF_RSP_EOPNOTSUPP);
    rig.be.answer(reqs[2]);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 2);
    CHECK(rig.env.completed[0].status == -PVKIT_EIO);
    CHECK(rig.env.completed[1].status == -PVKIT_EOPNOTSUPP);
    CHECK(pvkit_blkfront_connected(rig.fe.get()));
    CHECK(rig.counters().ios_failed == 2);
}

TEST_CASE("a grant the backend still holds is deferred; the I/O completes once it ends",
          "[blkfront][grants]") {
    Rig rig;
    rig.connect();
    auto r = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 3);
    REQUIRE(rig.submit(*r) == 0);
    rig.be.hold_next_grants();
    rig.be.serve();
    rig.poll();
    // Answered, but the backend still maps its pages: not handed back yet.
    CHECK(rig.env.completed.empty());
    CHECK(pvkit_blkfront_deferred(rig.fe.get()) == 3);
    CHECK(rig.counters().grants_deferred == 3);
    rig.poll();
    CHECK(rig.env.completed.empty());
    rig.be.release_held();
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(pvkit_blkfront_deferred(rig.fe.get()) == 0);
    CHECK(rig.env.table().active() == 1);
}

// ---- Hostile responses: one test per rejection ------------------------------------

TEST_CASE("a response with an unknown id halts the ring", "[blkfront][hostile]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    pvkit_blkif_response rsp{};
    rsp.id = 0xdeadbeef00000007ull;
    rsp.operation = PVKIT_BLKIF_OP_READ;
    rig.be.respond_raw(rsp);
    CHECK(rig.poll() == 0);
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID);
    CHECK(rig.env.completed.empty());
}

TEST_CASE("a response with an index beyond the ring halts the ring", "[blkfront][hostile]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    pvkit_blkif_response rsp{};
    rsp.id = (reqs[0].req.id & ~0xffffffffull) | 40; // slot 40 of a 32-slot ring
    rsp.operation = PVKIT_BLKIF_OP_READ;
    rig.be.respond_raw(rsp);
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID);
}

TEST_CASE("a response with a stale generation halts the ring", "[blkfront][hostile]") {
    Rig rig;
    rig.connect();
    auto a = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*a) == 0);
    Slot old = rig.be.take_requests().at(0);
    rig.be.answer(old);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    auto b = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*b) == 0);
    (void)rig.be.take_requests();
    pvkit_blkif_response rsp{};
    rsp.id = old.req.id; // the same slot, one generation ago
    rsp.operation = PVKIT_BLKIF_OP_READ;
    rig.be.respond_raw(rsp);
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID);
    CHECK(rig.env.completed.size() == 1);
}

TEST_CASE("a duplicate response halts the ring", "[blkfront][hostile]") {
    Rig rig;
    rig.connect();
    auto a = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    auto b = rig.rw(PVKIT_BLKFRONT_OP_READ, 8, 1);
    REQUIRE(rig.submit(*a) == 0);
    REQUIRE(rig.submit(*b) == 0);
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 2);
    rig.be.answer(reqs[0]);
    pvkit_blkif_response dup{};
    dup.id = reqs[0].req.id;
    dup.operation = PVKIT_BLKIF_OP_READ;
    rig.be.respond_raw(dup);
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID);
    // The first (genuine) response completed its I/O; b waits for a reconnect.
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].io == &a->io);
    CHECK(pvkit_blkfront_ios(rig.fe.get()) == 1);
}

TEST_CASE("a response with the wrong operation halts the ring", "[blkfront][hostile]") {
    Rig rig;
    Features f;
    f.max_indirect = 32;
    rig.connect(f);
    SECTION("write answered as read") {
        auto io = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 0, 1);
        REQUIRE(rig.submit(*io) == 0);
        Slot req = rig.be.take_requests().at(0);
        pvkit_blkif_response rsp{};
        rsp.id = req.req.id;
        rsp.operation = PVKIT_BLKIF_OP_READ;
        rig.be.respond_raw(rsp);
    }
    SECTION("indirect answered as its inner operation") {
        auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 20);
        REQUIRE(rig.submit(*io) == 0);
        Slot req = rig.be.take_requests().at(0);
        REQUIRE(req.indirect.operation == PVKIT_BLKIF_OP_INDIRECT);
        pvkit_blkif_response rsp{};
        rsp.id = req.indirect.id;
        rsp.operation = PVKIT_BLKIF_OP_READ;
        rig.be.respond_raw(rsp);
    }
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_WRONG_OP);
    CHECK(rig.env.completed.empty());
}

TEST_CASE("a response with an invalid status halts the ring", "[blkfront][hostile]") {
    const std::int16_t status = GENERATE(as<std::int16_t>{}, 1, -3, 0x7fff, -32768);
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    Slot req = rig.be.take_requests().at(0);
    pvkit_blkif_response rsp{};
    rsp.id = req.req.id;
    rsp.operation = PVKIT_BLKIF_OP_READ;
    rsp.status = status;
    rig.be.respond_raw(rsp);
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_BAD_STATUS);
}

TEST_CASE("an rsp_prod that jumps past the requests halts the ring", "[blkfront][hostile]") {
    const std::uint32_t jump = GENERATE(as<std::uint32_t>{}, 2, 33, 0x80000000u, 0xffffffffu);
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.be.set_rsp_prod(jump);
    CHECK(pvkit_blkfront_responses_ready(rig.fe.get()) < 0);
    rig.poll();
    expect_halted(rig, PVKIT_BLKFRONT_REASON_RSP_INDEX);
    CHECK(rig.env.completed.empty());
    // Later polls touch nothing on the halted ring.
    CHECK(rig.poll() == 0);
    CHECK(pvkit_blkfront_final_check(rig.fe.get()) == 0);
}

TEST_CASE("after a halt the device reconnects and the I/O completes", "[blkfront][hostile][reconnect]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 40, 2);
    front::fill_pattern(rig.buffer(*io), 11, 40 * 512);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.be.set_rsp_prod(7);
    rig.poll();
    REQUIRE(pvkit_blkfront_halted(rig.fe.get()));
    // The backend follows the frontend's Closed, then reopens.
    rig.restart_backend();
    CHECK(!pvkit_blkfront_halted(rig.fe.get()));
    CHECK(rig.be.serve() == 1);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(!front::find_pattern_mismatch(std::span(rig.be.disk).subspan(40 * 512, 8192), 11, 40 * 512));
    CHECK(rig.counters().ios_reissued == 1);
}

// ---- Reconnect -------------------------------------------------------------------

TEST_CASE("after a backend restart unfinished I/O is re-issued in order on a fresh ring",
          "[blkfront][reconnect]") {
    Rig rig;
    rig.connect();
    const std::string old_ring = *rig.env.store().get(kFrontDir + "/ring-ref");
    std::vector<std::unique_ptr<Io>> ios;
    for (std::uint64_t i = 0; i < 10; ++i) {
        ios.push_back(rig.rw(PVKIT_BLKFRONT_OP_WRITE, i * 8, 1));
        front::fill_pattern(rig.buffer(*ios.back()), 21, i * 4096);
        REQUIRE(rig.submit(*ios.back()) == 0);
    }
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 10);
    for (int i = 0; i < 3; ++i)
        rig.be.answer(reqs[static_cast<std::size_t>(i)]);
    rig.poll();
    CHECK(rig.env.completed.size() == 3);

    // A new backend instance: mappings gone, Closed with online = 1.
    rig.be.crash();
    rig.be.set_state(PVKIT_XENBUS_CLOSED);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "1");
    CHECK(rig.env.table().active() == 0); // old ring and buffer grants ended
    CHECK(rig.env.live_ports.empty());

    // A request submitted while disconnected queues behind the old ones.
    auto late = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 200 * 8, 1);
    front::fill_pattern(rig.buffer(*late), 21, 200 * 4096);
    REQUIRE(rig.submit(*late) == 0);

    rig.be.initwait({});
    REQUIRE(store_changed(rig.fe.get()) == 0);
    REQUIRE(rig.be.connect());
    REQUIRE(store_changed(rig.fe.get()) == 0);
    REQUIRE(pvkit_blkfront_connected(rig.fe.get()));
    CHECK(rig.env.live_ports.size() == 1);
    CHECK(rig.env.store().get(kFrontDir + "/event-channel") != "1"); // a fresh port

    std::vector<Slot> again = rig.be.take_requests();
    REQUIRE(again.size() == 8);
    for (std::size_t i = 0; i < 7; ++i)
        CHECK(again[i].req.sector_number == (3 + i) * 8);
    CHECK(again[7].req.sector_number == 200 * 8);
    for (const Slot& s : again)
        rig.be.answer(s);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 11);
    for (const auto& d : rig.env.completed)
        CHECK(d.status == 0);
    for (std::uint64_t i = 0; i < 10; ++i)
        CHECK(!front::find_pattern_mismatch(std::span(rig.be.disk).subspan(i * 4096, 4096), 21, i * 4096));
    CHECK(rig.counters().reconnects == 1);
    CHECK(rig.counters().ios_reissued == 7);
    (void)old_ring;
}

TEST_CASE("responses the old backend left on the ring are collected, not re-issued",
          "[blkfront][reconnect]") {
    Rig rig;
    rig.connect();
    std::vector<std::unique_ptr<Io>> ios;
    for (std::uint64_t i = 0; i < 4; ++i) {
        ios.push_back(rig.rw(PVKIT_BLKFRONT_OP_WRITE, i * 8, 1));
        REQUIRE(rig.submit(*ios.back()) == 0);
    }
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 4);
    // Answered just before the crash, never collected by the frontend.
    rig.be.answer(reqs[0]);
    rig.be.answer(reqs[1], PVKIT_BLKIF_RSP_ERROR);
    rig.restart_backend();
    REQUIRE(rig.env.completed.size() == 2);
    CHECK(rig.env.completed[0].status == 0);
    CHECK(rig.env.completed[1].status == -PVKIT_EIO);
    std::vector<Slot> again = rig.be.take_requests();
    REQUIRE(again.size() == 2);
    CHECK(again[0].req.sector_number == 16);
    CHECK(again[1].req.sector_number == 24);
    CHECK(rig.counters().ios_reissued == 2);
}

TEST_CASE("a garbled ring left by a dead backend only ends the collection", "[blkfront][reconnect]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.be.set_rsp_prod(1000);
    rig.restart_backend();
    CHECK(rig.be.serve() == 1);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
}

TEST_CASE("a backend seen back in InitWait (Closed merged away) is a restart", "[blkfront][reconnect]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.be.crash();
    rig.be.initwait({}); // straight from Connected to InitWait
    REQUIRE(store_changed(rig.fe.get()) == 0);
    // Started over and, the backend being in InitWait, published again.
    CHECK(rig.states() == std::vector<std::string>{"1", "3", "4", "1", "3"});
    REQUIRE(rig.be.connect());
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.be.serve() == 1);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
}

TEST_CASE("a request is not re-issued while the old backend may still map its pages",
          "[blkfront][reconnect][grants]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_WRITE, 0, 2);
    REQUIRE(rig.submit(*io) == 0);
    Slot req = rig.be.take_requests().at(0);
    // Something of the old instance still maps one data page.
    auto pool = GrantPool::attach(UniqueFd(::fcntl(rig.env.pool().fd(), F_DUPFD_CLOEXEC, 0)));
    REQUIRE(pool);
    GrantMapper old_mapper(*pool, PVKIT_DOMID_HOST);
    auto held = old_mapper.map(req.req.seg[0].gref, GrantAccess::kReadOnly);
    REQUIRE(held);

    rig.restart_backend();
    CHECK(pvkit_blkfront_deferred(rig.fe.get()) == 1);
    CHECK(rig.be.take_requests().empty()); // waits for the old grant to end
    rig.poll();
    CHECK(rig.be.take_requests().empty());
    held->release();
    rig.poll();
    std::vector<Slot> again = rig.be.take_requests();
    REQUIRE(again.size() == 1);
    CHECK(again[0].req.seg[0].gref != 0);
    rig.be.answer(again[0]);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
}

TEST_CASE("old ring pages still mapped are quarantined, then freed", "[blkfront][reconnect][grants]") {
    Rig rig;
    rig.connect();
    const auto ref = static_cast<GrantRef>(std::stoul(*rig.env.store().get(kFrontDir + "/ring-ref")));
    const std::uint32_t frames_before = rig.env.frames_in_use();
    // The old instance's ring mapping survives its successor's clean-up.
    rig.be.crash();
    auto pool = GrantPool::attach(UniqueFd(::fcntl(rig.env.pool().fd(), F_DUPFD_CLOEXEC, 0)));
    REQUIRE(pool);
    GrantMapper old_mapper(*pool, PVKIT_DOMID_HOST);
    auto held = old_mapper.map(ref, GrantAccess::kReadWrite);
    REQUIRE(held);
    rig.restart_backend();
    CHECK(rig.fe->nr_quarantine == 1);
    // A fresh ring page was taken; the old one is not reused.
    CHECK(rig.env.frames_in_use() == frames_before + 1);
    held->release();
    rig.poll();
    CHECK(rig.fe->nr_quarantine == 0);
    CHECK(rig.env.frames_in_use() == frames_before);
}

TEST_CASE("a changed sector-size fails the I/O made for the old disk", "[blkfront][reconnect]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    Features f;
    f.sector_size = 4096;
    rig.restart_backend(f);
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == -PVKIT_EIO);
    CHECK(rig.be.take_requests().empty());
}

// ---- Closing ---------------------------------------------------------------------

TEST_CASE("toolstack teardown: collect what is on the ring, close, fail the rest",
          "[blkfront][close]") {
    Rig rig;
    rig.connect();
    std::vector<std::unique_ptr<Io>> ios;
    for (std::uint64_t i = 0; i < 34; ++i) {
        ios.push_back(rig.rw(PVKIT_BLKFRONT_OP_READ, i * 8, 1));
        REQUIRE(rig.submit(*ios.back()) == 0);
    }
    std::vector<Slot> reqs = rig.be.take_requests();
    REQUIRE(reqs.size() == 32);
    // device_close_ops: online = 0, backend Closing.
    rig.be.set_online(false);
    rig.be.set_state(PVKIT_XENBUS_CLOSING);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "5");
    // The backend answers what it has; nothing new is issued.
    for (const Slot& s : reqs)
        rig.be.answer(s);
    rig.poll();
    CHECK(rig.be.take_requests().empty());
    CHECK(rig.env.completed.size() == 32);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
    // The backend unmaps and goes Closed: the frontend lets go of everything.
    rig.be.crash();
    rig.be.set_state(PVKIT_XENBUS_CLOSED);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(pvkit_blkfront_finished(rig.fe.get()));
    REQUIRE(rig.env.completed.size() == 34);
    CHECK(rig.env.completed[32].status == -PVKIT_ENOTCONN);
    CHECK(rig.env.completed[33].status == -PVKIT_ENOTCONN);
    CHECK(rig.env.table().active() == 0);
    CHECK(rig.env.live_ports.empty());
    auto more = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    CHECK(rig.submit(*more) == -PVKIT_ENOTCONN);
    CHECK(pvkit_blkfront_destroy(rig.fe.get(), 0) == 0);
}

TEST_CASE("frontend-initiated close waits for the backend at each step", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    pvkit_blkfront_close(rig.fe.get());
    CHECK(rig.env.store().get(kFrontDir + "/state") == "5");
    // Nothing in flight, but the backend has not seen Closing yet.
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "5");
    rig.be.set_state(PVKIT_XENBUS_CLOSING);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
    CHECK(!pvkit_blkfront_finished(rig.fe.get()));
    rig.be.crash();
    rig.be.set_state(PVKIT_XENBUS_CLOSED);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(pvkit_blkfront_finished(rig.fe.get()));
    // online is still 1, but a closed frontend stays closed.
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
}

TEST_CASE("a Closing backend that halted its ring is not waited for", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.env.store().put(kBackDir + "/error", "bad request");
    rig.be.set_state(PVKIT_XENBUS_CLOSING);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
    // online = 1: after the backend's Closed the device reopens and the
    // I/O is issued again.
    rig.env.store().remove_tree(kBackDir + "/error");
    rig.be.crash();
    rig.be.set_state(PVKIT_XENBUS_CLOSED);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "1");
    rig.be.initwait({});
    REQUIRE(store_changed(rig.fe.get()) == 0);
    REQUIRE(rig.be.connect());
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.be.serve() == 1);
    rig.poll();
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == 0);
}

TEST_CASE("abandoning the ring lets a close finish without the backend's answers", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    pvkit_blkfront_close(rig.fe.get());
    rig.be.set_state(PVKIT_XENBUS_CLOSING);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(rig.env.store().get(kFrontDir + "/state") == "5"); // still collecting
    pvkit_blkfront_abandon_ring(rig.fe.get());
    CHECK(rig.env.store().get(kFrontDir + "/state") == "6");
}

TEST_CASE("a removed backend directory ends the device", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    (void)rig.be.take_requests();
    rig.be.crash();
    rig.env.store().remove_tree(kBackDir);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(pvkit_blkfront_finished(rig.fe.get()));
    CHECK(rig.fe->gone);
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == -PVKIT_ENOTCONN);
    CHECK(rig.env.table().active() == 0);
}

TEST_CASE("a garbled backend state counts as gone", "[blkfront][close]") {
    const std::string garbage = GENERATE(as<std::string>{}, "9", "44", "x", "", " 4");
    Rig rig;
    rig.connect();
    rig.env.store().put(kBackDir + "/state", garbage);
    REQUIRE(store_changed(rig.fe.get()) == 0);
    CHECK(pvkit_blkfront_finished(rig.fe.get()));
}

TEST_CASE("a store that cannot be read changes nothing", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    rig.env.store().fail_reads(kBackDir, 110);
    CHECK(store_changed(rig.fe.get()) == -110);
    CHECK(pvkit_blkfront_connected(rig.fe.get()));
}

TEST_CASE("destroy refuses while busy unless forced", "[blkfront][close]") {
    Rig rig;
    rig.connect();
    auto io = rig.rw(PVKIT_BLKFRONT_OP_READ, 0, 1);
    REQUIRE(rig.submit(*io) == 0);
    CHECK(pvkit_blkfront_destroy(rig.fe.get(), 0) == -PVKIT_EBUSY);
    CHECK(pvkit_blkfront_destroy(rig.fe.get(), 1) == 0);
    REQUIRE(rig.env.completed.size() == 1);
    CHECK(rig.env.completed[0].status == -PVKIT_ENOTCONN);
    CHECK(rig.env.live_ports.empty());
}

TEST_CASE("reason strings exist for every reason", "[blkfront]") {
    for (int r = 0; r < PVKIT_BLKFRONT_REASON_COUNT; ++r)
        CHECK(std::string(pvkit_blkfront_reason_string(static_cast<pvkit_blkfront_reason>(r))) != "unknown");
    CHECK(std::string(pvkit_blkfront_reason_string(PVKIT_BLKFRONT_REASON_COUNT)) == "unknown");
}
