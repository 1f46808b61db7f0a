#include "pvkit/transport/grant_table.hpp"

#include <limits>
#include <stdexcept>

namespace pvkit {

const char* to_string(GrantError e) {
    switch (e) {
    case GrantError::kNoFreeRefs:
        return "no free grant references";
    case GrantError::kBadFrame:
        return "frame is not a data frame of the pool";
    case GrantError::kBadRef:
        return "grant reference out of range";
    case GrantError::kNotGranted:
        return "grant entry does not permit access";
    case GrantError::kWrongDomain:
        return "grant entry is for another domain";
    case GrantError::kReadOnly:
        return "write access to a read-only grant";
    case GrantError::kInUse:
        return "grant is in use by the grantee";
    case GrantError::kChanged:
        return "grant entry changed while it was being mapped";
    case GrantError::kNotMapped:
        return "grant is not mapped";
    case GrantError::kOutOfRange:
        return "access outside the granted page";
    case GrantError::kNotContiguous:
        return "ring pages are not consecutive frames";
    }
    return "unknown grant error";
}

// The table is plain bytes in a shared mapping. Entries are 8-byte aligned
// (the table starts on a page), so the word pointers below are aligned for
// the atomic builtins, which are the only way these words are accessed.
std::uint32_t* GrantEntryWord::word_ptr(GrantRef ref) const {
    return reinterpret_cast<std::uint32_t*>(m_table + std::size_t{ref} * sizeof(pvkit_grant_entry));
}

std::uint32_t* GrantEntryWord::frame_ptr(GrantRef ref) const {
    return reinterpret_cast<std::uint32_t*>(m_table + std::size_t{ref} * sizeof(pvkit_grant_entry) +
                                            offsetof(pvkit_grant_entry, frame));
}

GrantEntrySnapshot GrantEntryWord::load(GrantRef ref) const {
    // Acquire on the flags word pairs with the release in publish(): a
    // PERMIT_ACCESS flag implies the frame written before it is visible.
    std::uint32_t word = __atomic_load_n(word_ptr(ref), __ATOMIC_ACQUIRE);
    std::uint32_t frame = __atomic_load_n(frame_ptr(ref), __ATOMIC_RELAXED);
    GrantEntrySnapshot s;
    s.flags = static_cast<std::uint16_t>(word & 0xffffu);
    s.domid = static_cast<pvkit_domid_t>(word >> 16);
    s.frame = frame;
    return s;
}

std::uint32_t GrantEntryWord::load_frame(GrantRef ref) const {
    // Acquire so that the load cannot be hoisted above a preceding exchange
    // (which is acq_rel already; this states the intent where it matters).
    return __atomic_load_n(frame_ptr(ref), __ATOMIC_ACQUIRE);
}

void GrantEntryWord::publish(GrantRef ref, pvkit_domid_t domid, std::uint32_t frame,
                             std::uint16_t flags) const {
    __atomic_store_n(frame_ptr(ref), frame, __ATOMIC_RELAXED);
    // Domid goes with the flags in one word; the release orders the frame
    // store before the entry becomes valid.
    std::uint32_t word = flags | (std::uint32_t{domid} << 16);
    __atomic_store_n(word_ptr(ref), word, __ATOMIC_RELEASE);
}

bool GrantEntryWord::exchange(GrantRef ref, std::uint32_t expected, std::uint32_t desired) const {
    return __atomic_compare_exchange_n(word_ptr(ref), &expected, desired, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

void GrantEntryWord::clear_flags(GrantRef ref, std::uint16_t bits) const {
    __atomic_fetch_and(word_ptr(ref), ~std::uint32_t{bits}, __ATOMIC_RELEASE);
}

GrantTable::GrantTable(GrantPool& pool)
    : m_pool(&pool), m_entries(pool.table_base(), pool.layout().nr_grants),
      m_granted(pool.layout().nr_grants, false) {
    const std::uint32_t n = pool.layout().nr_grants;
    if (n < 2)
        throw std::invalid_argument("grant table needs at least two entries");
    m_free.reserve(n - 1);
    // Hand out low references first (stack order), skipping reserved ref 0.
    for (std::uint32_t ref = n - 1; ref >= 1; --ref)
        m_free.push_back(ref);
}

Result<GrantRef, GrantError> GrantTable::grant(pvkit_domid_t domid, std::uint32_t frame,
                                               GrantAccess access) {
    const PoolLayout& l = m_pool->layout();
    if (frame < l.data_first || frame >= l.nr_frames)
        return Unexpected{GrantError::kBadFrame};
    if (m_free.empty())
        return Unexpected{GrantError::kNoFreeRefs};
    GrantRef ref = m_free.back();
    m_free.pop_back();
    std::uint16_t flags = PVKIT_GTF_PERMIT_ACCESS;
    if (access == GrantAccess::kReadOnly)
        flags |= PVKIT_GTF_READONLY;
    m_entries.publish(ref, domid, frame, flags);
    m_granted[ref] = true;
    ++m_active;
    return ref;
}

Result<void, GrantError> GrantTable::end(GrantRef ref) {
    if (ref == 0 || ref >= m_entries.nr_grants() || !m_granted[ref])
        return Unexpected{GrantError::kBadRef};
    // Only succeed from a state without READING/WRITING: the exchange fails
    // if the backend set an in-use bit since we looked.
    GrantEntrySnapshot s = m_entries.load(ref);
    if ((s.flags & PVKIT_GTF_IN_USE) != 0)
        return Unexpected{GrantError::kInUse};
    if (!m_entries.exchange(ref, s.word(), 0))
        return Unexpected{GrantError::kInUse};
    m_granted[ref] = false;
    m_free.push_back(ref);
    --m_active;
    return {};
}

} // namespace pvkit
