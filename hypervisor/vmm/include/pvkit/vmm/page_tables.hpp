// x86-64 four-level page tables, built by the VMM in guest memory before
// the first instruction runs, and walked again when the VMM needs the
// bytes at a guest virtual address (fault reports).
#pragma once

#include <cstdint>

#include "pvkit/transport/result.hpp"
#include "pvkit/vmm/guest_memory.hpp"

namespace pvkit::vmm {

namespace pte {
inline constexpr std::uint64_t kPresent = 1ull << 0;
inline constexpr std::uint64_t kWritable = 1ull << 1;
inline constexpr std::uint64_t kUser = 1ull << 2;
inline constexpr std::uint64_t kWriteThrough = 1ull << 3;
inline constexpr std::uint64_t kCacheDisable = 1ull << 4;
inline constexpr std::uint64_t kAccessed = 1ull << 5;
inline constexpr std::uint64_t kDirty = 1ull << 6;
inline constexpr std::uint64_t kLarge = 1ull << 7; // PS: 2 MiB (PD) or 1 GiB (PDPT) leaf
inline constexpr std::uint64_t kNoExecute = 1ull << 63;
inline constexpr std::uint64_t kAddressMask = 0x000ffffffffff000ull;
} // namespace pte

// How one identity-mapped range may be used.
struct PageAccess {
    bool writable = false;
    bool executable = false;
    bool uncached = false; // device memory
};

enum class PageTableError {
    kMisaligned,  // base or size not a multiple of 4 KiB
    kOverlap,     // the range was already mapped
    kOutOfTables, // the page-table area is full
    kMemory,      // a table lies outside guest RAM
};
const char* to_string(PageTableError error);

// Builds identity mappings (virtual == physical) into page-table pages
// taken from [area_begin, area_end) of guest RAM. Ranges use 2 MiB pages
// where they are aligned and large enough, 4 KiB pages elsewhere. Upper
// levels allow everything (user, writable, executable); each leaf decides,
// so a guest kernel can open single leaves to user mode later.
class PageTableBuilder {
public:
    // `nx` says whether EFER.NXE will be set; without it the NX bit would
    // be a reserved-bit fault, so non-executable ranges stay executable.
    PageTableBuilder(GuestMemory& memory, std::uint64_t area_begin, std::uint64_t area_end,
                     bool nx);

    Result<void, PageTableError> map(std::uint64_t base, std::uint64_t size, PageAccess access);

    [[nodiscard]] std::uint64_t cr3() const { return m_pml4; }
    // Bytes of the area used so far.
    [[nodiscard]] std::uint64_t used_bytes() const { return m_next - m_area_begin; }

private:
    Result<std::uint64_t, PageTableError> allocate_table();
    // The table an upper-level entry points to, created if absent.
    Result<std::uint64_t, PageTableError> next_table(std::uint64_t table, unsigned index);
    [[nodiscard]] std::uint64_t leaf_flags(PageAccess access) const;

    GuestMemory& m_memory;
    std::uint64_t m_area_begin;
    std::uint64_t m_area_end;
    std::uint64_t m_next;
    std::uint64_t m_pml4 = 0;
    bool m_nx;
    bool m_failed_init = false;
};

enum class WalkError {
    kNonCanonical, // bits 63..48 are not copies of bit 47
    kNotPresent,   // some level has no present entry
    kMemory,       // a table entry lies outside guest RAM
};
const char* to_string(WalkError error);

struct Translation {
    std::uint64_t gpa = 0;
    std::uint64_t leaf_entry = 0; // the entry that mapped it (flags)
    std::uint64_t page_size = 0;  // 4 KiB, 2 MiB or 1 GiB
};

// Walks the guest's own page tables (which the guest may have changed).
// Every entry is copied out of guest memory and checked before use; the
// walk has four steps at most.
Result<Translation, WalkError> translate(const GuestMemory& memory, std::uint64_t cr3,
                                         std::uint64_t gva);

} // namespace pvkit::vmm
