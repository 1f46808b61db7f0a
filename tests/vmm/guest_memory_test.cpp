// GuestMemory: every access is a checked copy; ranges the guest names are
// checked with overflow-safe arithmetic.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include "pvkit/vmm/guest_memory.hpp"
#include "test_support.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::error_of;
using pvkit::vmm::GuestMemory;
using pvkit::vmm::MemError;

namespace {
constexpr std::uint64_t kRam = 1 << 20;
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
} // namespace

TEST_CASE("GuestMemory refuses sizes that are zero or not page multiples", "[vmm][memory]") {
    CHECK_THROWS_AS(GuestMemory::create(0), std::invalid_argument);
    CHECK_THROWS_AS(GuestMemory::create(4097), std::invalid_argument);
}

TEST_CASE("GuestMemory starts zeroed, in a close-on-exec memfd", "[vmm][memory]") {
    GuestMemory mem = GuestMemory::create(kRam);
    CHECK(mem.size() == kRam);
    CHECK(pvkit::test::has_cloexec(mem.fd()));
    auto last = mem.read<std::uint64_t>(kRam - 8);
    REQUIRE(last.ok());
    CHECK(last.value() == 0);
}

TEST_CASE("GuestMemory copies objects in and out", "[vmm][memory]") {
    GuestMemory mem = GuestMemory::create(kRam);
    REQUIRE(mem.write<std::uint64_t>(0x1000, 0x1122334455667788ull).ok());
    auto value = mem.read<std::uint64_t>(0x1000);
    REQUIRE(value.ok());
    CHECK(value.value() == 0x1122334455667788ull);
    auto byte = mem.read<std::uint8_t>(0x1000);
    REQUIRE(byte.ok());
    CHECK(byte.value() == 0x88); // little-endian

    std::array<std::byte, 3> out{};
    REQUIRE(mem.read_bytes(0x1005, out).ok());
    CHECK(out == std::array{std::byte{0x33}, std::byte{0x22}, std::byte{0x11}});

    REQUIRE(mem.fill(0x1000, 4, std::byte{0xff}).ok());
    CHECK(mem.read<std::uint64_t>(0x1000).value() == 0x11223344ffffffffull);
}

TEST_CASE("GuestMemory accepts ranges that end exactly at the end of RAM", "[vmm][memory]") {
    GuestMemory mem = GuestMemory::create(kRam);
    CHECK(mem.contains(0, kRam));
    CHECK(mem.contains(kRam - 1, 1));
    CHECK(mem.contains(kRam, 0)); // empty range at the end
    CHECK(mem.read<std::uint32_t>(kRam - 4).ok());
    std::array<std::byte, 0> none{};
    CHECK(mem.read_bytes(kRam, none).ok());
}

TEST_CASE("GuestMemory rejects ranges past the end of RAM", "[vmm][memory]") {
    GuestMemory mem = GuestMemory::create(kRam);
    CHECK(error_of(mem.check(kRam, 1)) == MemError::kOutOfRange);
    CHECK(error_of(mem.check(kRam - 4, 8)) == MemError::kOutOfRange);
    CHECK(error_of(mem.check(kRam + 1, 0)) == MemError::kOutOfRange);
    CHECK(error_of(mem.check(0, kRam + 1)) == MemError::kOutOfRange);
    CHECK(error_of(mem.read<std::uint64_t>(kRam - 4)) == MemError::kOutOfRange);
    CHECK(error_of(mem.write<std::uint64_t>(kRam - 4, 1)) == MemError::kOutOfRange);
    CHECK(error_of(mem.fill(kRam - 4, 8, std::byte{1})) == MemError::kOutOfRange);
    // A refused write writes nothing, not even the part inside RAM.
    CHECK(mem.read<std::uint32_t>(kRam - 4).value() == 0);
}

TEST_CASE("GuestMemory rejects ranges whose end overflows 64 bits", "[vmm][memory]") {
    GuestMemory mem = GuestMemory::create(kRam);
    CHECK(error_of(mem.check(kMax, 1)) == MemError::kOverflow);
    CHECK(error_of(mem.check(1, kMax)) == MemError::kOverflow);
    CHECK(error_of(mem.check(0xfffffffffffff000ull, 0x1000)) == MemError::kOverflow);
    CHECK(error_of(mem.check(kMax, 0)) == MemError::kOutOfRange); // no wrap, just far away
    CHECK(error_of(mem.read<std::uint64_t>(kMax - 3)) == MemError::kOverflow);
    CHECK_FALSE(mem.contains(kMax - 3, 8));
    std::array<std::byte, 16> buf{};
    CHECK(error_of(mem.read_bytes(kMax - 7, buf)) == MemError::kOverflow);
    CHECK(error_of(mem.write_bytes(kMax - 7, buf)) == MemError::kOverflow);
}
