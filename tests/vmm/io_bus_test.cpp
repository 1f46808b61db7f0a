// IoBus: the exit dispatcher's address-range registry.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

#include "pvkit/vmm/io_bus.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::error_of;
using pvkit::vmm::BusError;
using pvkit::vmm::ExitContext;
using pvkit::vmm::IoBus;
using pvkit::vmm::IoHandler;
using pvkit::vmm::IoRequest;

namespace {
class NullDevice final : public IoHandler {
public:
    void access(const IoRequest& /*request*/, ExitContext& /*context*/) override {}
};
} // namespace

TEST_CASE("IoBus finds the range that holds a whole access", "[vmm][bus]") {
    IoBus bus;
    NullDevice a;
    NullDevice b;
    REQUIRE(bus.add(0x3f8, 8, "serial", a).ok());
    REQUIRE(bus.add(0x400, 4, "other", b).ok());
    const IoBus::Range* r = bus.find(0x3fd, 1);
    REQUIRE(r != nullptr);
    CHECK(r->name == "serial");
    CHECK(r->handler == &a);
    CHECK(bus.find(0x3f8, 8) == r);
    CHECK(bus.find(0x400, 4)->handler == &b);
}

TEST_CASE("IoBus matches nothing outside, across or past a range", "[vmm][bus]") {
    IoBus bus;
    NullDevice a;
    REQUIRE(bus.add(0x3f8, 8, "serial", a).ok());
    CHECK(bus.find(0x3f7, 1) == nullptr);
    CHECK(bus.find(0x400, 1) == nullptr);
    CHECK(bus.find(0x3ff, 2) == nullptr); // straddles the end
    CHECK(bus.find(0x3f7, 2) == nullptr); // straddles the start
    CHECK(bus.find(0x3f8, 0) == nullptr);
    CHECK(bus.find(std::numeric_limits<std::uint64_t>::max(), 2) == nullptr);
}

TEST_CASE("IoBus rejects empty, wrapping and overlapping ranges", "[vmm][bus]") {
    IoBus bus;
    NullDevice a;
    REQUIRE(bus.add(0x1000, 0x100, "a", a).ok());
    CHECK(error_of(bus.add(0x2000, 0, "empty", a)) == BusError::kEmpty);
    CHECK(error_of(bus.add(std::numeric_limits<std::uint64_t>::max(), 2, "wrap", a)) ==
          BusError::kOverflow);
    CHECK(error_of(bus.add(0x10ff, 1, "tail", a)) == BusError::kOverlap);
    CHECK(error_of(bus.add(0xfff, 2, "head", a)) == BusError::kOverlap);
    CHECK(error_of(bus.add(0x800, 0x1000, "around", a)) == BusError::kOverlap);
    CHECK(error_of(bus.add(0x1080, 1, "inside", a)) == BusError::kOverlap);
    // Adjacent ranges are fine.
    CHECK(bus.add(0x1100, 1, "after", a).ok());
    CHECK(bus.add(0xfff, 1, "before", a).ok());
    CHECK(bus.ranges().size() == 3);
}
