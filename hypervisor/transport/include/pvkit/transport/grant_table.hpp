// Grant table access for both ends of a grant pool.
//
// The table lives in the pool, which both ends can write. Every access goes
// through GrantEntryWord, which reads or exchanges the (flags, domid) word
// and the frame with single atomic operations, so no code ever holds a
// reference into an entry a peer can rewrite.
#pragma once

#include <pvkit/grant.h>

#include <cstdint>
#include <vector>

#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit {

using GrantRef = pvkit_grant_ref_t;

enum class GrantAccess : std::uint8_t { kReadOnly, kReadWrite };

enum class GrantError {
    kNoFreeRefs,   // frontend: every grant reference is in use
    kBadFrame,     // frame outside the pool's data frames
    kBadRef,       // reference outside the table (or the reserved ref 0)
    kNotGranted,   // entry type is not PERMIT_ACCESS
    kWrongDomain,  // entry grants another domain
    kReadOnly,     // write access asked for a read-only grant
    kInUse,        // frontend: the backend still has the grant mapped
    kChanged,      // backend: the entry changed while it was being mapped
    kNotMapped,    // backend: release of a grant that is not mapped
    kOutOfRange,   // access beyond the granted page
    kNotContiguous, // a multi-page ring's grants are not consecutive frames
};
const char* to_string(GrantError e);

// A copy of one grant entry, taken with one read of each word.
struct GrantEntrySnapshot {
    std::uint16_t flags = 0;
    pvkit_domid_t domid = 0;
    std::uint32_t frame = 0;
    [[nodiscard]] std::uint32_t word() const { return flags | (std::uint32_t{domid} << 16); }
};

// Atomic access to the entries of a table in shared memory.
class GrantEntryWord {
public:
    GrantEntryWord(std::byte* table, std::uint32_t nr_grants)
        : m_table(table), m_nr_grants(nr_grants) {}

    [[nodiscard]] std::uint32_t nr_grants() const { return m_nr_grants; }
    [[nodiscard]] GrantEntrySnapshot load(GrantRef ref) const;
    // The frame alone, read once. A backend reads it only after its
    // exchange set the in-use bit (grant.h, life cycle step 2).
    [[nodiscard]] std::uint32_t load_frame(GrantRef ref) const;
    // Frontend publish order: frame and domid, release barrier, flags.
    void publish(GrantRef ref, pvkit_domid_t domid, std::uint32_t frame, std::uint16_t flags) const;
    // Compare-and-exchange of the (flags, domid) word; true on success.
    [[nodiscard]] bool exchange(GrantRef ref, std::uint32_t expected, std::uint32_t desired) const;
    void clear_flags(GrantRef ref, std::uint16_t bits) const;

private:
    [[nodiscard]] std::uint32_t* word_ptr(GrantRef ref) const;
    [[nodiscard]] std::uint32_t* frame_ptr(GrantRef ref) const;

    std::byte* m_table;
    std::uint32_t m_nr_grants;
};

// Frontend side: hands out grant references to its own pool's data frames.
// Reference 0 is reserved and never granted, so a zero-filled request can
// never name a valid grant by accident.
class GrantTable {
public:
    explicit GrantTable(GrantPool& pool);
    // Holds a pointer to its pool; neither copied nor moved.
    GrantTable(const GrantTable&) = delete;
    GrantTable& operator=(const GrantTable&) = delete;
    GrantTable(GrantTable&&) = delete;
    GrantTable& operator=(GrantTable&&) = delete;
    ~GrantTable() = default;

    // Grants `frame` (a data frame of the pool) to `domid`.
    Result<GrantRef, GrantError> grant(pvkit_domid_t domid, std::uint32_t frame, GrantAccess access);
    // Ends a grant. Fails with kInUse while the grantee has it mapped; the
    // caller keeps the reference and tries again later.
    Result<void, GrantError> end(GrantRef ref);

    [[nodiscard]] std::uint32_t active() const { return m_active; }
    // Usable references (the table size less the reserved ref 0).
    [[nodiscard]] std::uint32_t capacity() const { return m_entries.nr_grants() - 1; }

private:
    GrantPool* m_pool;
    GrantEntryWord m_entries;
    std::vector<GrantRef> m_free;
    std::vector<bool> m_granted;
    std::uint32_t m_active = 0;
};

} // namespace pvkit
