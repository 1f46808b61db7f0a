// GrantMapping::copy_out / copy_in with an empty span that has no data
// pointer (a default-constructed std::span, or an empty vector's).
//
// Kept out of grant_test on purpose: until grant_mapper.cpp returns early
// for empty copies, it passes that null pointer to memcpy, which is
// undefined behaviour. The sanitizer build (-fsanitize=undefined
// -fno-sanitize-recover) aborts the whole binary on it, and grant_test's
// other cases should not go down with it. Fails under PVKIT_SANITIZE until
// fixed; passes in the plain build, where the library happens to get away
// with it.
#include <catch2/catch.hpp>

#include <vector>

#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "test_support.hpp"

namespace {

using pvkit::GrantAccess;

TEST_CASE("GrantMapping copies of an empty span without storage are no-ops", "[grant][map]") {
    pvkit::GrantPool front = pvkit::GrantPool::create(1, 1, 4);
    pvkit::GrantTable table(front);
    auto back = pvkit::GrantPool::attach(pvkit::test::dup_fd(front.fd()));
    REQUIRE(back.ok());
    pvkit::GrantMapper mapper(back.value(), 0);
    auto ref = table.grant(0, front.layout().data_first, GrantAccess::kReadWrite);
    REQUIRE(ref.ok());
    auto m = mapper.map(ref.value(), GrantAccess::kReadWrite);
    REQUIRE(m.ok());

    std::vector<std::byte> empty;
    CHECK(m->copy_out(0, std::span<std::byte>{}).ok());
    CHECK(m->copy_out(PVKIT_PAGE_SIZE, empty).ok());
    CHECK(m->copy_in(0, std::span<const std::byte>{}).ok());
    CHECK(m->copy_in(PVKIT_PAGE_SIZE, empty).ok());
    // Still bounded: an empty copy past the page is out of range.
    CHECK(m->copy_out(PVKIT_PAGE_SIZE + 1, std::span<std::byte>{}).error() ==
          pvkit::GrantError::kOutOfRange);
}

} // namespace
