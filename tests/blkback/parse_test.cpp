// blkback's parsers on their own: every rejection reason of a request,
// and strict parsing of the toolstack's config nodes.
#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "pvkit/blkback/config.hpp"
#include "pvkit/blkback/counters.hpp"
#include "pvkit/blkback/request.hpp"

using namespace pvkit::blkback;

namespace {

DeviceLimits limits() {
    DeviceLimits l;
    l.sectors = 1024;
    l.sector_size = 512;
    l.flush = true;
    l.discard = true;
    l.max_indirect_segments = 256;
    return l;
}

pvkit_blkif_sring_entry rw(std::uint8_t op, std::uint64_t sector, std::uint8_t nr, std::uint8_t first = 0,
                           std::uint8_t last = 7) {
    pvkit_blkif_sring_entry e{};
    e.req.operation = op;
    e.req.nr_segments = nr;
    e.req.id = 0x1234;
    e.req.sector_number = sector;
    for (std::uint8_t i = 0; i < nr && i < PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST; ++i)
        e.req.seg[i] = pvkit_blkif_segment{static_cast<pvkit_grant_ref_t>(10 + i), first, last, 0};
    return e;
}

pvkit_blkif_sring_entry discard(std::uint64_t sector, std::uint64_t nr, std::uint8_t flag = 0) {
    pvkit_blkif_sring_entry e{};
    e.discard.operation = PVKIT_BLKIF_OP_DISCARD;
    e.discard.flag = flag;
    e.discard.id = 7;
    e.discard.sector_number = sector;
    e.discard.nr_sectors = nr;
    return e;
}

pvkit_blkif_sring_entry indirect(std::uint8_t op, std::uint16_t nr, std::uint64_t sector = 0) {
    pvkit_blkif_sring_entry e{};
    e.indirect.operation = PVKIT_BLKIF_OP_INDIRECT;
    e.indirect.indirect_op = op;
    e.indirect.nr_segments = nr;
    e.indirect.id = 9;
    e.indirect.sector_number = sector;
    e.indirect.indirect_grefs[0] = 5;
    return e;
}

RequestError rejection(const pvkit_blkif_sring_entry& e, const DeviceLimits& l = limits()) {
    auto r = parse_request(e, l);
    REQUIRE_FALSE(r.ok());
    return r.error();
}

} // namespace

TEST_CASE("valid read, write, flush, discard and indirect requests parse", "[parse]") {
    auto r = parse_request(rw(PVKIT_BLKIF_OP_READ, 8, 3, 0, 7), limits());
    REQUIRE(r.ok());
    CHECK(r->op == BlkOp::kRead);
    CHECK(r->nr_sectors == 24);
    CHECK(r->id == 0x1234);
    CHECK(r->segs[2].gref == 12);

    auto w = parse_request(rw(PVKIT_BLKIF_OP_WRITE, 1024 - 11 * 8, 11), limits());
    REQUIRE(w.ok()); // ends exactly at the last sector
    CHECK(w->nr_sectors == 88);

    pvkit_blkif_sring_entry f{};
    f.req.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
    REQUIRE(parse_request(f, limits()).ok());

    auto d = parse_request(discard(0, 1024), limits());
    REQUIRE(d.ok());
    CHECK(d->op == BlkOp::kDiscard);

    auto i = parse_request(indirect(PVKIT_BLKIF_OP_WRITE, 256), limits());
    REQUIRE(i.ok());
    CHECK(i->indirect);
    CHECK(i->nr_indirect_pages == 1);
}

TEST_CASE("unknown operations are refused with EOPNOTSUPP", "[parse]") {
    for (std::uint8_t op : {std::uint8_t{2}, std::uint8_t{4}, std::uint8_t{7}, std::uint8_t{255}}) {
        pvkit_blkif_sring_entry e = rw(op, 0, 1);
        CHECK(rejection(e) == RequestError::kUnknownOperation);
    }
    CHECK(response_status(RequestError::kUnknownOperation) == PVKIT_BLKIF_RSP_EOPNOTSUPP);
}

TEST_CASE("segment counts are checked", "[parse]") {
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 0, 0)) == RequestError::kNoSegments);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_WRITE, 0, 12)) == RequestError::kTooManySegments);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_WRITE, 0, 255)) == RequestError::kTooManySegments);
    pvkit_blkif_sring_entry f{};
    f.req.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
    f.req.nr_segments = 1;
    CHECK(rejection(f) == RequestError::kSegmentsOnFlush);
}

TEST_CASE("segment sector ranges are checked", "[parse]") {
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 0, 1, 5, 4)) == RequestError::kFirstAfterLast);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 0, 1, 0, 8)) == RequestError::kSectorOutsidePage);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 0, 1, 255, 255)) == RequestError::kSectorOutsidePage);
}

TEST_CASE("ranges past the end are refused, also when the sum would wrap", "[parse]") {
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 1024, 1, 0, 0)) == RequestError::kPastEnd);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 1020, 1, 0, 7)) == RequestError::kPastEnd);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, ~std::uint64_t{0} - 3, 1, 0, 7)) == RequestError::kPastEnd);
    CHECK(rejection(discard(1000, 25)) == RequestError::kPastEnd);
    CHECK(rejection(discard(8, ~std::uint64_t{0})) == RequestError::kPastEnd);
}

TEST_CASE("4096-byte sectors need aligned starts, lengths and segments", "[parse]") {
    DeviceLimits l = limits();
    l.sector_size = 4096;
    CHECK(parse_request(rw(PVKIT_BLKIF_OP_READ, 8, 2, 0, 7), l).ok());
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 4, 1, 0, 7), l) == RequestError::kMisaligned);
    CHECK(rejection(rw(PVKIT_BLKIF_OP_READ, 8, 1, 0, 3), l) == RequestError::kMisaligned);
    CHECK(rejection(discard(8, 4), l) == RequestError::kMisaligned);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_READ, 1, 3), l) == RequestError::kMisaligned);
}

TEST_CASE("writes and discards on a read-only device are refused", "[parse]") {
    DeviceLimits l = limits();
    l.read_only = true;
    CHECK(parse_request(rw(PVKIT_BLKIF_OP_READ, 0, 1), l).ok());
    CHECK(rejection(rw(PVKIT_BLKIF_OP_WRITE, 0, 1), l) == RequestError::kReadOnlyDevice);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_WRITE, 1), l) == RequestError::kReadOnlyDevice);
    CHECK(rejection(discard(0, 8), l) == RequestError::kReadOnlyDevice);
}

TEST_CASE("operations that were not offered get EOPNOTSUPP", "[parse]") {
    DeviceLimits l = limits();
    l.flush = false;
    l.discard = false;
    l.max_indirect_segments = 0;
    pvkit_blkif_sring_entry f{};
    f.req.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
    CHECK(rejection(f, l) == RequestError::kFlushNotOffered);
    CHECK(rejection(discard(0, 8), l) == RequestError::kDiscardNotOffered);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_READ, 1), l) == RequestError::kIndirectNotOffered);
    for (auto e : {RequestError::kFlushNotOffered, RequestError::kDiscardNotOffered, RequestError::kIndirectNotOffered,
                   RequestError::kSecureDiscardUnsupported})
        CHECK(response_status(e) == PVKIT_BLKIF_RSP_EOPNOTSUPP);
}

TEST_CASE("discard flags and empty discards are checked", "[parse]") {
    CHECK(rejection(discard(0, 0)) == RequestError::kDiscardEmpty);
    CHECK(rejection(discard(0, 8, 0x2)) == RequestError::kDiscardBadFlags);
    CHECK(rejection(discard(0, 8, PVKIT_BLKIF_DISCARD_SECURE)) == RequestError::kSecureDiscardUnsupported);
}

TEST_CASE("indirect headers are checked", "[parse]") {
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_FLUSH_DISKCACHE, 1)) == RequestError::kIndirectBadOperation);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_INDIRECT, 1)) == RequestError::kIndirectBadOperation);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_READ, 0)) == RequestError::kIndirectNoSegments);
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_READ, 257)) == RequestError::kIndirectTooManySegments);
    DeviceLimits l = limits();
    l.max_indirect_segments = 32;
    CHECK(rejection(indirect(PVKIT_BLKIF_OP_READ, 33), l) == RequestError::kIndirectTooManySegments);
    auto e = indirect(PVKIT_BLKIF_OP_READ, 8);
    e.indirect.indirect_grefs[1] = 77;
    CHECK(rejection(e) == RequestError::kIndirectBadPageRefs);
}

TEST_CASE("indirect segments are checked after the copy", "[parse]") {
    std::vector<pvkit_blkif_segment> segs(4, pvkit_blkif_segment{3, 0, 7, 0});
    auto ok = check_segments(segs, 0, limits());
    REQUIRE(ok.ok());
    CHECK(*ok == 32);
    segs[2].first_sect = 6;
    segs[2].last_sect = 2;
    CHECK(check_segments(segs, 0, limits()).error() == RequestError::kFirstAfterLast);
    segs[2] = pvkit_blkif_segment{3, 0, 9, 0};
    CHECK(check_segments(segs, 0, limits()).error() == RequestError::kSectorOutsidePage);
    segs[2] = pvkit_blkif_segment{3, 0, 7, 0};
    CHECK(check_segments(segs, 1000, limits()).error() == RequestError::kPastEnd);
}

TEST_CASE("the tag of any slot, even garbage, is its id and operation", "[parse]") {
    pvkit_blkif_sring_entry e;
    std::memset(&e, 0xA5, sizeof e);
    RequestTag t = request_tag(e);
    CHECK(t.id == 0xA5A5A5A5A5A5A5A5ull);
    CHECK(t.operation == 0xA5);
}

TEST_CASE("every rejection reason has a distinct counter name", "[parse]") {
    std::set<std::string> names;
    for (std::size_t i = 0; i < kRequestErrorCount; ++i)
        names.insert(counter_name(static_cast<RequestError>(i)));
    CHECK(names.size() == kRequestErrorCount);
    DeviceCounters c;
    c.count_error(RequestError::kPastEnd);
    bool found = false;
    for (const auto& [name, value] : c.items())
        found = found || (name == "errors/past-end" && value == 1);
    CHECK(found);
}

TEST_CASE("grant mapping errors map to their own reasons", "[parse]") {
    CHECK(from_grant_error(pvkit::GrantError::kBadRef) == RequestError::kGrantBadRef);
    CHECK(from_grant_error(pvkit::GrantError::kWrongDomain) == RequestError::kGrantWrongDomain);
    CHECK(from_grant_error(pvkit::GrantError::kReadOnly) == RequestError::kGrantReadOnly);
    CHECK(from_grant_error(pvkit::GrantError::kBadFrame) == RequestError::kGrantBadFrame);
    CHECK(from_grant_error(pvkit::GrantError::kNotGranted) == RequestError::kGrantNotGranted);
    CHECK(from_grant_error(pvkit::GrantError::kChanged) == RequestError::kGrantChanged);
}

// ---- config -------------------------------------------------------------------

namespace {
std::map<std::string, std::string> good_nodes() {
    return {{"params", "/var/tmp/x.img"},
            {"mode", "w"},
            {"type", "raw"},
            {"frontend", "/local/domain/5/device/vbd/51712"},
            {"frontend-id", "5"},
            {"config-sector-size", "4096"},
            {"config-max-ring-page-order", "2"},
            {"config-max-indirect-segments", "64"},
            {"config-feature-flush-cache", "1"},
            {"config-feature-discard", "0"}};
}
} // namespace

TEST_CASE("strict decimal parsing", "[config]") {
    CHECK(parse_decimal("0", 10) == 0u);
    CHECK(parse_decimal("10", 10) == 10u);
    CHECK_FALSE(parse_decimal("11", 10));
    CHECK_FALSE(parse_decimal("5", 4));
    CHECK_FALSE(parse_decimal("9", 0));
    CHECK_FALSE(parse_decimal("", 10));
    CHECK_FALSE(parse_decimal("01", 10));
    CHECK_FALSE(parse_decimal("+1", 10));
    CHECK_FALSE(parse_decimal("1 ", 10));
    CHECK_FALSE(parse_decimal("1\n", 10));
    CHECK(parse_decimal("18446744073709551615", UINT64_MAX) == UINT64_MAX);
    CHECK_FALSE(parse_decimal("18446744073709551616", UINT64_MAX));
    CHECK(parse_flag("1") == true);
    CHECK_FALSE(parse_flag("yes"));
}

TEST_CASE("a good config parses, capped by the daemon", "[config]") {
    DaemonCaps caps;
    caps.max_ring_page_order = 1;
    auto c = parse_device_config(good_nodes(), 5, 51712, caps);
    REQUIRE(c.ok());
    CHECK(c->sector_size == 4096);
    CHECK(c->max_ring_page_order == 1);
    CHECK(c->max_indirect_segments == 64);
    CHECK(c->feature_flush);
    CHECK_FALSE(c->feature_discard);
    CHECK_FALSE(c->read_only);
}

TEST_CASE("each bad config node names itself", "[config]") {
    struct Case {
        const char* node;
        const char* value;
        ConfigError error;
    };
    const Case cases[] = {
        {"params", "relative.img", ConfigError::kBadParams},
        {"mode", "rw", ConfigError::kBadMode},
        {"type", "qcow2", ConfigError::kBadType},
        {"frontend", "/local/domain/6/device/vbd/51712", ConfigError::kBadFrontend},
        {"frontend-id", "05", ConfigError::kBadFrontendId},
        {"config-sector-size", "1024", ConfigError::kBadSectorSize},
        {"config-max-ring-page-order", "5", ConfigError::kBadRingOrder},
        {"config-max-indirect-segments", "257", ConfigError::kBadIndirectSegments},
        {"config-feature-flush-cache", "2", ConfigError::kBadFlag},
        {"config-feature-discard", "true", ConfigError::kBadFlag},
    };
    for (const Case& k : cases) {
        auto nodes = good_nodes();
        nodes[k.node] = k.value;
        auto c = parse_device_config(nodes, 5, 51712, DaemonCaps{});
        INFO(k.node);
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().error == k.error);
        CHECK(c.error().node == k.node);
    }
    for (const char* missing : {"params", "mode", "frontend", "frontend-id"}) {
        auto nodes = good_nodes();
        nodes.erase(missing);
        auto c = parse_device_config(nodes, 5, 51712, DaemonCaps{});
        INFO(missing);
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().error == ConfigError::kMissingNode);
    }
}
