// A hostile frontend against pvkit-blkback: garbage requests, bad grants,
// grants of frames outside the data area, impossible ring indices, bad
// ring nodes. Each time blkback answers or halts that one device, stays up,
// and another device on the same daemon keeps working.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "blkback_test_support.hpp"

using namespace pvkit::blkback::test;
using pvkit::GrantAccess;
using pvkit::GrantRef;
using pvkit::toolstack::XenbusState;

namespace {

constexpr std::uint64_t kImageBytes = 4ull << 20;

struct Pair {
    Bench bench;
    StoreClient dom0;
    DiskSpec hostile_spec;
    DiskSpec bystander_spec;
    std::unique_ptr<TestFrontend> hostile;
    std::unique_ptr<TestFrontend> bystander;

    Pair() : dom0(bench.store.client()) {
        hostile_spec.domid = 1;
        hostile_spec.image = bench.image("hostile.img");
        bystander_spec.domid = 2;
        bystander_spec.image = bench.image("bystander.img");
        make_image(hostile_spec.image, kImageBytes);
        make_image(bystander_spec.image, kImageBytes);
        attach_disk(dom0, hostile_spec, ::getpid());
        attach_disk(dom0, bystander_spec, ::getpid());
        hostile = std::make_unique<TestFrontend>(bench.store.socket(), hostile_spec);
        bystander = std::make_unique<TestFrontend>(bench.store.socket(), bystander_spec);
        hostile->connect();
        bystander->connect();
    }

    // The other device and the daemon are fine.
    void check_bystander(std::uint64_t version) {
        CHECK(bench.blkback.alive());
        auto data = pattern_block(7, version);
        CHECK(bystander->write_sync(56, data) == PVKIT_BLKIF_RSP_OKAY);
        std::vector<std::byte> back;
        CHECK(bystander->read_sync(56, 8, back) == PVKIT_BLKIF_RSP_OKAY);
        CHECK(back == data);
    }

    // The counter's value once it reads `want`, or its last value at the deadline.
    std::string stat(const std::string& name, const std::string& want) {
        // Statistics are published at most once per second: wait for them.
        const std::string path = backend_dir(hostile_spec.domid, hostile_spec.devid) + "/statistics/" + name;
        auto deadline = std::chrono::steady_clock::now() + kWait;
        (void)dom0.watch(path, "stat");
        std::string last;
        while (std::chrono::steady_clock::now() < deadline) {
            auto v = dom0.read(path);
            if (v)
                last = *v;
            if (last == want)
                return last;
            (void)dom0.wait_for_event(std::chrono::milliseconds(200));
        }
        return last;
    }
};

pvkit_blkif_request read_req(std::uint64_t id, std::uint64_t sector, GrantRef gref, std::uint8_t first = 0,
                             std::uint8_t last = 7) {
    pvkit_blkif_request r{};
    r.operation = PVKIT_BLKIF_OP_READ;
    r.nr_segments = 1;
    r.id = id;
    r.sector_number = sector;
    r.seg[0] = pvkit_blkif_segment{gref, first, last, 0};
    return r;
}

// A whole slot of arbitrary bytes.
struct RawSlot {
    std::uint64_t words[sizeof(pvkit_blkif_sring_entry) / 8];
};

std::uint32_t grants_in_use(pvkit::GrantPool& pool) {
    pvkit::GrantEntryWord entries(pool.table_base(), pool.layout().nr_grants);
    std::uint32_t n = 0;
    for (GrantRef ref = 1; ref < entries.nr_grants(); ++ref)
        n += (entries.load(ref).flags & PVKIT_GTF_IN_USE) != 0 ? 1u : 0u;
    return n;
}

// Sends one request and returns its response, checking the echoed id.
pvkit_blkif_response one(TestFrontend& f, const auto& req) {
    f.put_raw(req);
    auto rsp = f.collect(1);
    REQUIRE(rsp.size() == 1);
    CHECK(rsp[0].id == req.id);
    CHECK(rsp[0].operation == req.operation);
    return rsp[0];
}

} // namespace

TEST_CASE("garbage requests are answered one by one and the device keeps working", "[hostile]") {
    Pair p;
    std::mt19937_64 rng(12345);
    std::size_t answered = 0;
    std::size_t refused = 0;
    for (int batch = 0; batch < 16; ++batch) {
        // A full ring of random slots.
        const std::uint32_t n = p.hostile->ring().nr_ents();
        for (std::uint32_t i = 0; i < n; ++i) {
            RawSlot slot;
            for (std::uint64_t& w : slot.words)
                w = rng();
            // Mostly plausible operations, so the deeper checks get exercised too.
            if (i % 2 == 0)
                slot.words[0] = (slot.words[0] & ~std::uint64_t{0xff}) | (rng() % 7);
            REQUIRE(p.hostile->ring().put(slot));
        }
        if (p.hostile->ring().push())
            p.hostile->channel().notify();
        auto rsp = p.hostile->collect(n);
        for (const auto& r : rsp) {
            // Nothing random names a valid grant of ours (none is granted);
            // only a flush that happens to carry 0 segments is a real request.
            if (r.operation != PVKIT_BLKIF_OP_FLUSH_DISKCACHE)
                CHECK(r.status != PVKIT_BLKIF_RSP_OKAY);
            if (r.status != PVKIT_BLKIF_RSP_OKAY)
                ++refused;
        }
        answered += rsp.size();
    }
    CHECK(answered == 16u * p.hostile->ring().nr_ents());
    CHECK(p.hostile->backend_state() == XenbusState::kConnected);
    CHECK(p.hostile->write_sync(0, pattern_block(0, 1)) == PVKIT_BLKIF_RSP_OKAY);
    CHECK(read_image(p.hostile_spec.image, 0, 4096) == pattern_block(0, 1));
    CHECK(p.stat("errors-total", std::to_string(refused)) == std::to_string(refused));
    p.check_bystander(1);
}

TEST_CASE("bad grant references are refused per request, by reason", "[hostile]") {
    Pair p;
    TestFrontend& f = *p.hostile;
    const std::uint32_t nr_grants = f.pool().layout().nr_grants;
    std::uint32_t frame = f.alloc_frame();

    // Reference 0, beyond the table, never granted.
    CHECK(one(f, read_req(1, 0, 0)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(2, 0, nr_grants)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(3, 0, 0xFFFFFFFFu)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(4, 0, nr_grants - 1)).status == PVKIT_BLKIF_RSP_ERROR);
    // Granted to another domain.
    auto other = f.table().grant(7, frame, GrantAccess::kReadWrite);
    REQUIRE(other);
    CHECK(one(f, read_req(5, 0, *other)).status == PVKIT_BLKIF_RSP_ERROR);
    // A READ needs a writable grant; a read-only one is refused.
    auto ro = f.table().grant(PVKIT_DOMID_HOST, frame, GrantAccess::kReadOnly);
    REQUIRE(ro);
    CHECK(one(f, read_req(6, 0, *ro)).status == PVKIT_BLKIF_RSP_ERROR);
    // ...but a WRITE from a read-only grant is fine.
    pvkit_blkif_request w = read_req(7, 0, *ro);
    w.operation = PVKIT_BLKIF_OP_WRITE;
    CHECK(one(f, w).status == PVKIT_BLKIF_RSP_OKAY);
    // A valid segment followed by a bad one: the whole request fails and
    // the valid one is released again (the grant can be ended).
    auto rw = f.table().grant(PVKIT_DOMID_HOST, frame, GrantAccess::kReadWrite);
    REQUIRE(rw);
    pvkit_blkif_request two = read_req(8, 0, *rw);
    two.nr_segments = 2;
    two.seg[1] = pvkit_blkif_segment{*other, 0, 7, 0};
    CHECK(one(f, two).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(f.table().end(*rw).ok());
    CHECK(f.table().end(*ro).ok());
    CHECK(f.table().end(*other).ok());

    CHECK(p.stat("errors/grant-bad-ref", "3") == "3");
    CHECK(p.stat("errors/grant-not-granted", "1") == "1");
    CHECK(p.stat("errors/grant-wrong-domain", "2") == "2");
    CHECK(p.stat("errors/grant-read-only", "1") == "1");
    CHECK(f.backend_state() == XenbusState::kConnected);
    p.check_bystander(2);
}

TEST_CASE("malformed segments and ranges are refused per request", "[hostile]") {
    Pair p;
    TestFrontend& f = *p.hostile;
    std::uint32_t frame = f.alloc_frame();
    auto g = f.table().grant(PVKIT_DOMID_HOST, frame, GrantAccess::kReadWrite);
    REQUIRE(g);
    const std::uint64_t sectors = kImageBytes / 512;

    pvkit_blkif_request r = read_req(1, 0, *g);
    r.nr_segments = 12;
    CHECK(one(f, r).status == PVKIT_BLKIF_RSP_ERROR); // over 11 segments
    r = read_req(2, 0, *g);
    r.nr_segments = 0;
    CHECK(one(f, r).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(3, 0, *g, 6, 2)).status == PVKIT_BLKIF_RSP_ERROR); // first > last
    CHECK(one(f, read_req(4, 0, *g, 0, 8)).status == PVKIT_BLKIF_RSP_ERROR); // last > 7
    CHECK(one(f, read_req(5, sectors, *g, 0, 0)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(6, sectors - 4, *g)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(7, ~std::uint64_t{0} - 2, *g)).status == PVKIT_BLKIF_RSP_ERROR);
    CHECK(one(f, read_req(8, sectors - 8, *g)).status == PVKIT_BLKIF_RSP_OKAY);

    pvkit_blkif_request flush{};
    flush.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
    flush.nr_segments = 3;
    flush.id = 9;
    CHECK(one(f, flush).status == PVKIT_BLKIF_RSP_ERROR);

    pvkit_blkif_request_discard d{};
    d.operation = PVKIT_BLKIF_OP_DISCARD;
    d.id = 10;
    d.sector_number = sectors - 8;
    d.nr_sectors = 16;
    CHECK(one(f, d).status == PVKIT_BLKIF_RSP_ERROR);

    // Indirect: too many segments, bad op, unused page refs, a bad page grant,
    // and a page whose segments name bad grants.
    pvkit_blkif_request_indirect in{};
    in.operation = PVKIT_BLKIF_OP_INDIRECT;
    in.indirect_op = PVKIT_BLKIF_OP_READ;
    in.nr_segments = 257;
    in.id = 11;
    in.indirect_grefs[0] = *g;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);
    in.nr_segments = 1;
    in.indirect_op = PVKIT_BLKIF_OP_DISCARD;
    in.id = 12;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);
    in.indirect_op = PVKIT_BLKIF_OP_READ;
    in.indirect_grefs[3] = 99;
    in.id = 13;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);
    in.indirect_grefs[3] = 0;
    in.indirect_grefs[0] = 0;
    in.id = 14;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);
    std::uint32_t page = f.alloc_frame();
    auto pg = f.table().grant(PVKIT_DOMID_HOST, page, GrantAccess::kReadOnly);
    REQUIRE(pg);
    pvkit_blkif_segment bad_segs[2] = {{*g, 0, 7, 0}, {0, 0, 7, 0}};
    std::memcpy(f.frame(page).data(), bad_segs, sizeof bad_segs);
    in.indirect_grefs[0] = *pg;
    in.nr_segments = 2;
    in.id = 15;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);
    bad_segs[1] = {*g, 4, 2, 0};
    std::memcpy(f.frame(page).data(), bad_segs, sizeof bad_segs);
    in.id = 16;
    CHECK(one(f, in).status == PVKIT_BLKIF_RSP_ERROR);

    CHECK(p.stat("errors/too-many-segments", "1") == "1");
    CHECK(p.stat("errors/first-after-last", "2") == "2");
    CHECK(p.stat("errors/past-end", "4") == "4");
    CHECK(p.stat("errors/indirect-too-many-segments", "1") == "1");
    CHECK(p.stat("errors/indirect-page-grant", "1") == "1");
    CHECK(f.backend_state() == XenbusState::kConnected);
    // Every grant can be ended: nothing was left mapped by a refused request.
    CHECK(f.table().end(*g).ok());
    CHECK(f.table().end(*pg).ok());
    p.check_bystander(3);
}

TEST_CASE("blkback only ever touches the frames that were granted", "[hostile]") {
    Pair p;
    TestFrontend& f = *p.hostile;
    pvkit::GrantPool& pool = f.pool();
    const auto& layout = pool.layout();
    // Known content in the image, so a stray read would show it.
    {
        std::vector<std::byte> fill(64 * 1024, std::byte{0xC3});
        pvkit::UniqueFd fd(::open(p.hostile_spec.image.c_str(), O_WRONLY | O_CLOEXEC));
        REQUIRE(::pwrite(fd.get(), fill.data(), fill.size(), 0) == static_cast<ssize_t>(fill.size()));
    }
    // Every free data frame gets a pattern; none of them is granted.
    std::vector<std::uint32_t> watched;
    for (int i = 0; i < 64; ++i) {
        std::uint32_t fr = f.alloc_frame();
        std::memset(f.frame(fr).data(), 0x11 + i, PVKIT_PAGE_SIZE);
        watched.push_back(fr);
    }
    std::vector<std::byte> header(pool.frame_ptr(0), pool.frame_ptr(0) + PVKIT_PAGE_SIZE);

    // Entries that name the header, the table, or a frame past the pool.
    pvkit::GrantEntryWord entries(pool.table_base(), layout.nr_grants);
    const GrantRef base = layout.nr_grants - 10;
    const std::uint32_t bad_frames[] = {0, layout.table_first, layout.data_first - 1, layout.nr_frames,
                                        layout.nr_frames + 100, 0xFFFFFFFFu};
    std::uint64_t id = 100;
    for (std::size_t i = 0; i < std::size(bad_frames); ++i) {
        GrantRef ref = base + static_cast<GrantRef>(i);
        entries.publish(ref, PVKIT_DOMID_HOST, bad_frames[i], PVKIT_GTF_PERMIT_ACCESS);
        CHECK(one(f, read_req(id++, 0, ref)).status == PVKIT_BLKIF_RSP_ERROR);
        pvkit_blkif_request w = read_req(id++, 0, ref);
        w.operation = PVKIT_BLKIF_OP_WRITE;
        CHECK(one(f, w).status == PVKIT_BLKIF_RSP_ERROR);
    }
    CHECK(p.stat("errors/grant-bad-frame", std::to_string(2 * std::size(bad_frames))) == std::to_string(2 * std::size(bad_frames)));
    // The header, with its grant table's first frame, is unchanged.
    CHECK(std::equal(header.begin(), header.end(), pool.frame_ptr(0)));

    // A read into sectors 2..4 of one granted frame writes exactly those bytes.
    std::uint32_t target = watched[10];
    auto g = f.table().grant(PVKIT_DOMID_HOST, target, GrantAccess::kReadWrite);
    REQUIRE(g);
    CHECK(one(f, read_req(id++, 0, *g, 2, 4)).status == PVKIT_BLKIF_RSP_OKAY);
    REQUIRE(f.table().end(*g).ok());
    for (std::size_t i = 0; i < watched.size(); ++i) {
        auto page = f.frame(watched[i]);
        for (std::size_t b = 0; b < PVKIT_PAGE_SIZE; ++b) {
            const bool read_here = watched[i] == target && b >= 2 * 512 && b < 5 * 512;
            const std::byte want = read_here ? std::byte{0xC3} : static_cast<std::byte>(0x11 + i);
            if (page[b] != want) {
                FAIL("frame " << watched[i] << " byte " << b << " changed");
            }
        }
    }
    CHECK(f.backend_state() == XenbusState::kConnected);
    p.check_bystander(4);
}

TEST_CASE("an impossible ring index halts that device only", "[hostile]") {
    Pair p;
    TestFrontend& f = *p.hostile;
    REQUIRE(f.write_sync(0, pattern_block(0, 5)) == PVKIT_BLKIF_RSP_OKAY);
    // req_prod jumps far ahead: more requests than the ring can hold.
    pvkit_front_ring& raw = f.ring().raw();
    __atomic_store_n(&raw.sring->req_prod, raw.req_prod_pvt + 1000, __ATOMIC_RELEASE);
    f.channel().notify();
    REQUIRE(f.wait_backend_state(XenbusState::kClosing));
    auto err = f.backend_node("error");
    REQUIRE(err.has_value());
    CHECK(err->find("ring halted") != std::string::npos);
    CHECK(p.stat("ring-halts", "1") == "1");
    p.check_bystander(5);
    // The frontend closes; the backend unmaps everything and is Closed.
    f.set_state(XenbusState::kClosed);
    REQUIRE(f.wait_backend_state(XenbusState::kClosed));
    // The backend holds no grant of this pool any more.
    CHECK(grants_in_use(f.pool()) == 0);

    // An index that goes backwards is as impossible; this time the
    // frontend says nothing and the backend closes on its own timeout.
    f.set_state(XenbusState::kInitialising);
    f.connect();
    REQUIRE(f.write_sync(8, pattern_block(1, 5)) == PVKIT_BLKIF_RSP_OKAY);
    pvkit_front_ring& raw2 = f.ring().raw();
    __atomic_store_n(&raw2.sring->req_prod, raw2.req_prod_pvt - 5, __ATOMIC_RELEASE);
    f.channel().notify();
    REQUIRE(f.wait_backend_state(XenbusState::kClosing));
    REQUIRE(f.wait_backend_state(XenbusState::kClosed));
    CHECK(read_image(p.hostile_spec.image, 4096, 4096) == pattern_block(1, 5));
    p.check_bystander(6);
}

TEST_CASE("bad ring nodes from the frontend make the backend refuse to connect", "[hostile]") {
    Pair p;
    TestFrontend& f = *p.hostile;
    f.close();
    struct Case {
        const char* node;
        const char* value;
    };
    const Case cases[] = {
        {"protocol", "x86_32-abi"}, {"ring-ref", "0"},          {"ring-ref", "007"},
        {"event-channel", "1024"},  {"ring-page-order", "5"},   {"ring-ref", "4000000000"},
    };
    for (const Case& k : cases) {
        INFO(k.node << " = " << k.value);
        f.set_state(XenbusState::kInitialising);
        REQUIRE(f.prepare_and_handoff() == 0);
        REQUIRE(p.dom0.write(frontend_dir(1, 51712) + "/" + k.node, k.value));
        f.set_state(XenbusState::kInitialised);
        REQUIRE(f.wait_backend_state(XenbusState::kClosing));
        CHECK(f.backend_node("error").has_value());
        f.set_state(XenbusState::kClosed);
        REQUIRE(f.wait_backend_state(XenbusState::kClosed));
        (void)p.dom0.rm(frontend_dir(1, 51712) + "/ring-page-order");
        CHECK(grants_in_use(f.pool()) == 0);
    }
    p.check_bystander(7);
}
