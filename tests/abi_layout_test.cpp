// The wire ABI, pinned: every wire structure's size, every field's offset
// and size, every ABI constant. This duplicates the headers'
// _Static_asserts on purpose; the table in abi_layout_spec.h is the spec in
// executable form, and the headers must agree with it, in C++ here and in
// C through abi_layout_c.c.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "abi_layout_spec.h"

namespace {

// ---- Compile-time checks, one TEST_CASE per header -------------------------

#define PVKIT_CHECK_SCALAR(type, size)          \
    STATIC_REQUIRE(sizeof(type) == (size));     \
    STATIC_REQUIRE(std::is_unsigned_v<type>);

// A wire struct must have no hidden padding (every padding byte is an
// explicit, zeroed field), or private memory could leak into shared pages.
#define PVKIT_CHECK_STRUCT(type, size)                                \
    STATIC_REQUIRE(sizeof(type) == (size));                           \
    STATIC_REQUIRE(std::is_trivially_copyable_v<type>);               \
    STATIC_REQUIRE(std::is_standard_layout_v<type>);                  \
    STATIC_REQUIRE(std::has_unique_object_representations_v<type>);

// Union members differ in size, so unions do have "padding"; their members
// are each checked as structs.
#define PVKIT_CHECK_UNION(type, size)               \
    STATIC_REQUIRE(sizeof(type) == (size));         \
    STATIC_REQUIRE(std::is_trivially_copyable_v<type>);

#define PVKIT_CHECK_FIELD(type, field, off, size)                    \
    STATIC_REQUIRE(offsetof(type, field) == (off));                  \
    STATIC_REQUIRE(sizeof(std::declval<type&>().field) == (size));

TEST_CASE("abi.h: scalar wire types have fixed unsigned sizes", "[abi]") {
    PVKIT_SPEC_SCALARS(PVKIT_CHECK_SCALAR)
}

TEST_CASE("hypercall.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_HYPERCALL(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD,
                         PVKIT_CHECK_FIELD)
    // One port slot per queue.
    STATIC_REQUIRE(sizeof(pvkit_device_connect{}.ports) ==
                   PVKIT_DEVICE_CONNECT_MAX_QUEUES * sizeof(pvkit_evtchn_port_t));
}

TEST_CASE("start_info.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_START_INFO(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD,
                          PVKIT_CHECK_FIELD)
}

TEST_CASE("grant.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_GRANT(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
    // Both ends compare-and-exchange (flags, domid) as one 32-bit word.
    STATIC_REQUIRE(alignof(pvkit_grant_entry) >= 4);
}

TEST_CASE("evtchn.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_EVTCHN(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
}

TEST_CASE("ring.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_RING(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
    STATIC_REQUIRE(sizeof(pvkit_sring_hdr) == PVKIT_RING_HDR_SIZE);
    // The indices are accessed with 32-bit atomics.
    STATIC_REQUIRE(alignof(pvkit_sring_hdr) >= 4);
}

TEST_CASE("blkif.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_BLKIF(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
}

TEST_CASE("netif.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_NETIF(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
}

TEST_CASE("store.h: sizes and field offsets of every wire struct", "[abi]") {
    PVKIT_SPEC_STORE(PVKIT_CHECK_STRUCT, PVKIT_CHECK_UNION, PVKIT_CHECK_FIELD, PVKIT_CHECK_FIELD)
    // The store ring is one page in guest memory.
    STATIC_REQUIRE(sizeof(pvkit_store_ring) <= PVKIT_PAGE_SIZE);
}

#define PVKIT_CHECK_CONSTANT(name, value) \
    STATIC_REQUIRE(static_cast<long long>(name) == static_cast<long long>(value));

TEST_CASE("every ABI constant has its pinned value", "[abi]") {
    PVKIT_SPEC_CONSTANTS(PVKIT_CHECK_CONSTANT)
}

// ---- Runtime checks over the whole table ------------------------------------

// One measured quantity, in the same order abi_layout_c.c produces them.
struct Row {
    int kind;
    const char* type;
    const char* field;
    long long measured;
    long long expected;
};

#define PVKIT_ROW_SCALAR(type, size) \
    {PVKIT_TEST_SIZEOF, #type, "", static_cast<long long>(sizeof(type)), size},
#define PVKIT_ROW_TYPE(type, size) \
    {PVKIT_TEST_SIZEOF, #type, "", static_cast<long long>(sizeof(type)), size},
#define PVKIT_ROW_FIELD(type, field, off, size)                                              \
    {PVKIT_TEST_OFFSETOF, #type, #field, static_cast<long long>(offsetof(type, field)), off}, \
        {PVKIT_TEST_FIELD_SIZE, #type, #field,                                               \
         static_cast<long long>(sizeof(std::declval<type&>().field)), size},
#define PVKIT_ROW_CONSTANT(name, value) \
    {PVKIT_TEST_CONSTANT, #name, "", static_cast<long long>(name), static_cast<long long>(value)},

std::vector<Row> cxx_rows() {
    return {
        PVKIT_SPEC_SCALARS(PVKIT_ROW_SCALAR)
        PVKIT_SPEC_ALL_LAYOUTS(PVKIT_ROW_TYPE, PVKIT_ROW_TYPE, PVKIT_ROW_FIELD, PVKIT_ROW_FIELD)
        PVKIT_SPEC_CONSTANTS(PVKIT_ROW_CONSTANT)
    };
}

std::string row_name(int kind, const char* type, const char* field) {
    switch (kind) {
    case PVKIT_TEST_SIZEOF:
        return std::string("sizeof(") + type + ")";
    case PVKIT_TEST_OFFSETOF:
        return std::string("offsetof(") + type + ", " + field + ")";
    case PVKIT_TEST_FIELD_SIZE:
        return std::string("sizeof(") + type + "::" + field + ")";
    default:
        return type;
    }
}

TEST_CASE("the C compiler lays out every wire struct and constant like the C++ compiler",
          "[abi][c]") {
    const pvkit_test_layout_row* c_rows = nullptr;
    const unsigned n = pvkit_test_abi_layout_from_c(&c_rows);
    const std::vector<Row> rows = cxx_rows();
    REQUIRE(n == rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const Row& cxx = rows[i];
        const pvkit_test_layout_row& c = c_rows[i];
        INFO(row_name(cxx.kind, cxx.type, cxx.field));
        // Same table, same order: a mismatch here is a bug in the test.
        REQUIRE(c.kind == cxx.kind);
        REQUIRE(std::string(c.type) == cxx.type);
        REQUIRE(std::string(c.field) == cxx.field);
        CHECK(c.value == cxx.measured);
        CHECK(c.value == cxx.expected);
        CHECK(cxx.measured == cxx.expected);
    }
}

// Field extents of one wire type, gathered from the spec table.
struct TypeLayout {
    std::string name;
    bool is_union = false;
    std::size_t size = 0;
    std::vector<std::pair<std::size_t, std::size_t>> fields; // (offset, size), in order
};

std::vector<TypeLayout> type_layouts() {
    std::vector<TypeLayout> types;
#define PVKIT_TL_STRUCT(type, size) types.push_back(TypeLayout{#type, false, sizeof(type), {}});
#define PVKIT_TL_UNION(type, size) types.push_back(TypeLayout{#type, true, sizeof(type), {}});
#define PVKIT_TL_FIELD(type, field, off, size) \
    types.back().fields.emplace_back(offsetof(type, field), sizeof(std::declval<type&>().field));
#define PVKIT_TL_MEMBER(type, field, off, size)
    PVKIT_SPEC_ALL_LAYOUTS(PVKIT_TL_STRUCT, PVKIT_TL_UNION, PVKIT_TL_FIELD, PVKIT_TL_MEMBER)
#undef PVKIT_TL_STRUCT
#undef PVKIT_TL_UNION
#undef PVKIT_TL_FIELD
#undef PVKIT_TL_MEMBER
    return types;
}

// The spec lists every field; if it missed one, or a header grew hidden
// padding, there would be a gap between two listed fields.
TEST_CASE("the listed fields of every wire struct tile it with no gap or overlap", "[abi]") {
    const std::vector<TypeLayout> types = type_layouts();
    REQUIRE(types.size() == 30);
    for (const TypeLayout& t : types) {
        INFO(t.name);
        REQUIRE_FALSE(t.fields.empty());
        if (t.is_union) {
            std::size_t largest = 0;
            for (auto [off, size] : t.fields) {
                CHECK(off == 0);
                largest = std::max(largest, size);
            }
            CHECK(largest == t.size);
        } else {
            std::size_t next = 0;
            for (auto [off, size] : t.fields) {
                CHECK(off == next);
                next = off + size;
            }
            CHECK(next == t.size);
        }
    }
}

// ---- Constants whose meaning is more than a number ------------------------

// Decodes a register the way a guest compares it: bytes in little-endian order.
std::string le_bytes(std::uint64_t value, int nbytes) {
    std::string s;
    for (int i = 0; i < nbytes; ++i)
        s.push_back(static_cast<char>((value >> (8 * i)) & 0xffu));
    return s;
}

TEST_CASE("the CPUID signature in EBX, ECX, EDX spells pvkitpvkitpv", "[abi]") {
    std::string sig = le_bytes(PVKIT_CPUID_SIG_EBX, 4) + le_bytes(PVKIT_CPUID_SIG_ECX, 4) +
                      le_bytes(PVKIT_CPUID_SIG_EDX, 4);
    REQUIRE(sig == "pvkitpvkitpv");
    // The leaves sit in the hypervisor range and BASE reports the highest.
    STATIC_REQUIRE(PVKIT_CPUID_BASE == 0x40000000u);
    STATIC_REQUIRE(PVKIT_CPUID_MAX >= PVKIT_CPUID_INFO);
}

TEST_CASE("the magic numbers spell their names in memory order", "[abi]") {
    REQUIRE(le_bytes(PVKIT_START_INFO_MAGIC, 8) == "PKSINFO1");
    REQUIRE(le_bytes(PVKIT_GRANT_POOL_MAGIC, 8) == "PVKGRGP1");
}

TEST_CASE("the ABI version is (major << 16) | minor", "[abi]") {
    STATIC_REQUIRE(PVKIT_ABI_VERSION == ((PVKIT_ABI_VERSION_MAJOR << 16) | PVKIT_ABI_VERSION_MINOR));
    STATIC_REQUIRE(PVKIT_ABI_VERSION_MAJOR == 1u);
}

TEST_CASE("every hypercall has a stub in the one hypercall page", "[abi]") {
    STATIC_REQUIRE(PVKIT_HYPERCALL_MAX_STUBS * PVKIT_HYPERCALL_STUB_SIZE == PVKIT_PAGE_SIZE);
    STATIC_REQUIRE(PVKIT_HC_COUNT <= PVKIT_HYPERCALL_MAX_STUBS);
    // The numbers are dense: 0 .. COUNT-1, the last one being DEVICE_CONNECT.
    STATIC_REQUIRE(PVKIT_HC_DEVICE_CONNECT + 1 == PVKIT_HC_COUNT);
    // The stub's `out %al, $port` takes an 8-bit immediate port.
    STATIC_REQUIRE(PVKIT_HYPERCALL_PORT <= 0xffu);
}

TEST_CASE("the domid constants are domids", "[abi]") {
    STATIC_REQUIRE(std::is_same_v<decltype(PVKIT_DOMID_SELF), pvkit_domid_t>);
    STATIC_REQUIRE(std::is_same_v<decltype(PVKIT_DOMID_INVALID), pvkit_domid_t>);
    STATIC_REQUIRE(std::is_same_v<decltype(PVKIT_DOMID_HOST), pvkit_domid_t>);
    STATIC_REQUIRE(std::is_same_v<decltype(PVKIT_DOMID_MAX), pvkit_domid_t>);
    // Guest domids never collide with the special ones.
    STATIC_REQUIRE(PVKIT_DOMID_MAX < PVKIT_DOMID_SELF);
    STATIC_REQUIRE(PVKIT_DOMID_MAX < PVKIT_DOMID_INVALID);
}

TEST_CASE("PVKIT_E* numbers equal Linux's errno values", "[abi]") {
    STATIC_REQUIRE(PVKIT_EPERM == EPERM);
    STATIC_REQUIRE(PVKIT_ENOENT == ENOENT);
    STATIC_REQUIRE(PVKIT_EIO == EIO);
    STATIC_REQUIRE(PVKIT_E2BIG == E2BIG);
    STATIC_REQUIRE(PVKIT_EBADF == EBADF);
    STATIC_REQUIRE(PVKIT_EAGAIN == EAGAIN);
    STATIC_REQUIRE(PVKIT_ENOMEM == ENOMEM);
    STATIC_REQUIRE(PVKIT_EACCES == EACCES);
    STATIC_REQUIRE(PVKIT_EFAULT == EFAULT);
    STATIC_REQUIRE(PVKIT_EBUSY == EBUSY);
    STATIC_REQUIRE(PVKIT_EEXIST == EEXIST);
    STATIC_REQUIRE(PVKIT_EISDIR == EISDIR);
    STATIC_REQUIRE(PVKIT_EINVAL == EINVAL);
    STATIC_REQUIRE(PVKIT_ENOSPC == ENOSPC);
    STATIC_REQUIRE(PVKIT_EROFS == EROFS);
    STATIC_REQUIRE(PVKIT_ERANGE == ERANGE);
    STATIC_REQUIRE(PVKIT_ENOSYS == ENOSYS);
    STATIC_REQUIRE(PVKIT_ENOTEMPTY == ENOTEMPTY);
    STATIC_REQUIRE(PVKIT_EPROTO == EPROTO);
    STATIC_REQUIRE(PVKIT_EOPNOTSUPP == EOPNOTSUPP);
    STATIC_REQUIRE(PVKIT_EISCONN == EISCONN);
    STATIC_REQUIRE(PVKIT_ENOTCONN == ENOTCONN);
    STATIC_REQUIRE(PVKIT_EDQUOT == EDQUOT);
    STATIC_REQUIRE(PVKIT_RING_EPROTO == -EPROTO);
    STATIC_REQUIRE(PVKIT_RING_EFULL == -ENOSPC);
}

TEST_CASE("grant flag bits are distinct and IN_USE is READING|WRITING", "[abi]") {
    STATIC_REQUIRE(PVKIT_GTF_IN_USE == (PVKIT_GTF_READING | PVKIT_GTF_WRITING));
    STATIC_REQUIRE((PVKIT_GTF_TYPE_MASK & (PVKIT_GTF_READONLY | PVKIT_GTF_IN_USE)) == 0);
    STATIC_REQUIRE((PVKIT_GTF_READONLY & PVKIT_GTF_IN_USE) == 0);
    STATIC_REQUIRE(PVKIT_GRANT_ENTRIES_PER_PAGE * sizeof(pvkit_grant_entry) == PVKIT_PAGE_SIZE);
    // Frame numbers of the largest pool fit the 32-bit frame field with room.
    STATIC_REQUIRE(std::uint64_t{PVKIT_GRANT_POOL_MAX_FRAMES} * PVKIT_PAGE_SIZE ==
                   std::uint64_t{1} << 30);
}

TEST_CASE("blkif geometry constants are consistent", "[abi]") {
    STATIC_REQUIRE(PVKIT_BLKIF_SECTORS_PER_PAGE * PVKIT_BLKIF_SECTOR_SIZE == PVKIT_PAGE_SIZE);
    STATIC_REQUIRE(PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME * sizeof(pvkit_blkif_segment) ==
                   PVKIT_PAGE_SIZE);
    STATIC_REQUIRE(sizeof(std::declval<pvkit_blkif_request&>().seg) ==
                   PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST * sizeof(pvkit_blkif_segment));
    STATIC_REQUIRE(sizeof(std::declval<pvkit_blkif_request_indirect&>().indirect_grefs) ==
                   PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * sizeof(pvkit_grant_ref_t));
    // The most segments a backend offers fit in the indirect pages.
    STATIC_REQUIRE(PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS <=
                   PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME);
    // The 2 (write barrier) and 4 slots stay unused.
    std::set<unsigned> ops{PVKIT_BLKIF_OP_READ, PVKIT_BLKIF_OP_WRITE,
                           PVKIT_BLKIF_OP_FLUSH_DISKCACHE, PVKIT_BLKIF_OP_DISCARD,
                           PVKIT_BLKIF_OP_INDIRECT};
    REQUIRE(ops.size() == 5);
    REQUIRE(ops.count(2) == 0);
    REQUIRE(ops.count(4) == 0);
}

TEST_CASE("device type names are the store directory names", "[abi]") {
    // Xen's names, so tools that know XenStore's layout find the devices.
    CHECK(std::string(PVKIT_DEV_BLK_NAME) == "vbd");
    CHECK(std::string(PVKIT_DEV_NET_NAME) == "vif");
    // A devid fits the 16-bit handle of blkif requests.
    STATIC_REQUIRE(PVKIT_DEVID_MAX ==
                   std::numeric_limits<decltype(pvkit_blkif_request::handle)>::max());
}

TEST_CASE("start info fills exactly one page", "[abi]") {
    STATIC_REQUIRE(sizeof(std::declval<pvkit_start_info&>().memmap) ==
                   PVKIT_START_INFO_MAX_MEMMAP * sizeof(pvkit_memmap_entry));
    STATIC_REQUIRE(sizeof(std::declval<pvkit_start_info&>().devices) ==
                   PVKIT_START_INFO_MAX_DEVICES * sizeof(pvkit_start_device));
    STATIC_REQUIRE(sizeof(std::declval<pvkit_start_info&>().cmdline) ==
                   PVKIT_START_INFO_CMDLINE_MAX);
    STATIC_REQUIRE(sizeof(pvkit_start_info) == PVKIT_PAGE_SIZE);
}

TEST_CASE("the store ring is a power-of-two byte ring and store ops are dense", "[abi]") {
    STATIC_REQUIRE((PVKIT_STORE_RING_SIZE & (PVKIT_STORE_RING_SIZE - 1)) == 0);
    STATIC_REQUIRE(PVKIT_STORE_DIRECTORY_PART + 1 == PVKIT_STORE_OP_COUNT);
    STATIC_REQUIRE(PVKIT_STORE_REL_PATH_MAX < PVKIT_STORE_ABS_PATH_MAX);
    STATIC_REQUIRE(PVKIT_STORE_ABS_PATH_MAX < PVKIT_STORE_PAYLOAD_MAX);
}

TEST_CASE("the store error table maps each number to XenStore's error name", "[abi]") {
    const pvkit_store_errname table[] = PVKIT_STORE_ERRORS_INIT;
    // XenStore's xsd_errors, in its order; EDQUOT travels as "EQUOTA".
    const std::vector<std::pair<int, std::string>> expected{
        {EINVAL, "EINVAL"}, {EACCES, "EACCES"},       {EEXIST, "EEXIST"}, {EISDIR, "EISDIR"},
        {ENOENT, "ENOENT"}, {ENOMEM, "ENOMEM"},       {ENOSPC, "ENOSPC"}, {EIO, "EIO"},
        {ENOTEMPTY, "ENOTEMPTY"}, {ENOSYS, "ENOSYS"}, {EROFS, "EROFS"},   {EBUSY, "EBUSY"},
        {EAGAIN, "EAGAIN"}, {EISCONN, "EISCONN"},     {E2BIG, "E2BIG"},   {EPERM, "EPERM"},
        {EDQUOT, "EQUOTA"},
    };
    REQUIRE(std::size(table) == expected.size());
    std::set<int> numbers;
    std::set<std::string> names;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("entry " << i);
        CHECK(table[i].errnum == expected[i].first);
        CHECK(std::string(table[i].name) == expected[i].second);
        numbers.insert(table[i].errnum);
        names.insert(table[i].name);
    }
    // Both directions of the mapping are unambiguous.
    CHECK(numbers.size() == expected.size());
    CHECK(names.size() == expected.size());
}

} // namespace
