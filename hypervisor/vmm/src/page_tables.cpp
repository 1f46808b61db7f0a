#include "pvkit/vmm/page_tables.hpp"

#include "pvkit/vmm/layout.hpp"

namespace pvkit::vmm {

namespace {

constexpr std::uint64_t kTableLinks = pte::kPresent | pte::kWritable | pte::kUser;

unsigned index_at(std::uint64_t va, unsigned level) {
    // level 4 = PML4 (bits 47..39) down to level 1 = PT (bits 20..12).
    return static_cast<unsigned>((va >> (12 + 9 * (level - 1))) & 0x1ff);
}

} // namespace

const char* to_string(PageTableError error) {
    switch (error) {
    case PageTableError::kMisaligned:
        return "range is not 4 KiB aligned";
    case PageTableError::kOverlap:
        return "range is already mapped";
    case PageTableError::kOutOfTables:
        return "page-table area is full";
    case PageTableError::kMemory:
        return "page table outside guest RAM";
    }
    return "unknown page-table error";
}

const char* to_string(WalkError error) {
    switch (error) {
    case WalkError::kNonCanonical:
        return "non-canonical address";
    case WalkError::kNotPresent:
        return "not mapped";
    case WalkError::kMemory:
        return "page table outside guest RAM";
    }
    return "unknown walk error";
}

PageTableBuilder::PageTableBuilder(GuestMemory& memory, std::uint64_t area_begin,
                                   std::uint64_t area_end, bool nx)
    : m_memory(memory), m_area_begin(area_begin), m_area_end(area_end), m_next(area_begin),
      m_nx(nx) {
    auto pml4 = allocate_table();
    if (pml4)
        m_pml4 = pml4.value();
    else
        m_failed_init = true;
}

Result<std::uint64_t, PageTableError> PageTableBuilder::allocate_table() {
    if (m_next + layout::kPageSize > m_area_end)
        return Unexpected{PageTableError::kOutOfTables};
    const std::uint64_t table = m_next;
    if (!m_memory.fill(table, layout::kPageSize, std::byte{0}))
        return Unexpected{PageTableError::kMemory};
    m_next += layout::kPageSize;
    return table;
}

Result<std::uint64_t, PageTableError> PageTableBuilder::next_table(std::uint64_t table,
                                                                   unsigned index) {
    const std::uint64_t slot = table + index * sizeof(std::uint64_t);
    auto entry = m_memory.read<std::uint64_t>(slot);
    if (!entry)
        return Unexpected{PageTableError::kMemory};
    if ((entry.value() & pte::kPresent) != 0) {
        if ((entry.value() & pte::kLarge) != 0)
            return Unexpected{PageTableError::kOverlap};
        return entry.value() & pte::kAddressMask;
    }
    auto fresh = allocate_table();
    if (!fresh)
        return fresh;
    if (!m_memory.write<std::uint64_t>(slot, fresh.value() | kTableLinks))
        return Unexpected{PageTableError::kMemory};
    return fresh;
}

std::uint64_t PageTableBuilder::leaf_flags(PageAccess access) const {
    // Accessed and dirty are preset so the CPU never has to write them back
    // (each such write is an emulated access on the hosts pvkit runs on).
    std::uint64_t flags = pte::kPresent | pte::kAccessed | pte::kDirty;
    if (access.writable)
        flags |= pte::kWritable;
    if (!access.executable && m_nx)
        flags |= pte::kNoExecute;
    if (access.uncached)
        flags |= pte::kCacheDisable | pte::kWriteThrough;
    return flags;
}

Result<void, PageTableError> PageTableBuilder::map(std::uint64_t base, std::uint64_t size,
                                                   PageAccess access) {
    if (m_failed_init)
        return Unexpected{PageTableError::kOutOfTables};
    if (base % layout::kPageSize != 0 || size % layout::kPageSize != 0)
        return Unexpected{PageTableError::kMisaligned};
    std::uint64_t end = 0;
    if (__builtin_add_overflow(base, size, &end) || end > (1ull << 47))
        return Unexpected{PageTableError::kMisaligned};
    const std::uint64_t flags = leaf_flags(access);
    std::uint64_t va = base;
    while (va < end) {
        auto pdpt = next_table(m_pml4, index_at(va, 4));
        if (!pdpt)
            return Unexpected{pdpt.error()};
        auto pd = next_table(pdpt.value(), index_at(va, 3));
        if (!pd)
            return Unexpected{pd.error()};
        const std::uint64_t pde_slot = pd.value() + index_at(va, 2) * sizeof(std::uint64_t);
        auto pde = m_memory.read<std::uint64_t>(pde_slot);
        if (!pde)
            return Unexpected{PageTableError::kMemory};
        if (va % layout::kLargePageSize == 0 && end - va >= layout::kLargePageSize &&
            (pde.value() & pte::kPresent) == 0) {
            if (!m_memory.write<std::uint64_t>(pde_slot, va | flags | pte::kLarge))
                return Unexpected{PageTableError::kMemory};
            va += layout::kLargePageSize;
            continue;
        }
        auto pt = next_table(pd.value(), index_at(va, 2));
        if (!pt)
            return Unexpected{pt.error()};
        const std::uint64_t pte_slot = pt.value() + index_at(va, 1) * sizeof(std::uint64_t);
        auto old = m_memory.read<std::uint64_t>(pte_slot);
        if (!old)
            return Unexpected{PageTableError::kMemory};
        if ((old.value() & pte::kPresent) != 0)
            return Unexpected{PageTableError::kOverlap};
        if (!m_memory.write<std::uint64_t>(pte_slot, va | flags))
            return Unexpected{PageTableError::kMemory};
        va += layout::kPageSize;
    }
    return {};
}

Result<Translation, WalkError> translate(const GuestMemory& memory, std::uint64_t cr3,
                                         std::uint64_t gva) {
    // Canonical: bits 63..47 all equal.
    const std::uint64_t top = gva >> 47;
    if (top != 0 && top != 0x1ffff)
        return Unexpected{WalkError::kNonCanonical};
    std::uint64_t table = cr3 & pte::kAddressMask;
    for (unsigned level = 4; level >= 1; --level) {
        auto entry = memory.read<std::uint64_t>(table + index_at(gva, level) * 8);
        if (!entry)
            return Unexpected{WalkError::kMemory};
        const std::uint64_t e = entry.value();
        if ((e & pte::kPresent) == 0)
            return Unexpected{WalkError::kNotPresent};
        const bool leaf = level == 1 || ((level == 2 || level == 3) && (e & pte::kLarge) != 0);
        if (leaf) {
            const std::uint64_t page_size = 1ull << (12 + 9 * (level - 1));
            const std::uint64_t frame = e & pte::kAddressMask & ~(page_size - 1);
            return Translation{frame | (gva & (page_size - 1)), e, page_size};
        }
        table = e & pte::kAddressMask;
    }
    return Unexpected{WalkError::kNotPresent}; // not reached: level 1 is always a leaf
}

} // namespace pvkit::vmm
