// Backend side of grants: map a grant reference of a peer's pool after
// validating it, and release it again.
#pragma once

#include <pvkit/grant.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit {

class GrantMapper;

// A validated, in-use grant. Reads copy out of the page; writes are refused
// on read-only grants; every offset is checked. Releases the grant (clears
// its in-use bit) when destroyed.
class GrantMapping {
public:
    GrantMapping() = default;
    GrantMapping(GrantMapping&& other) noexcept;
    GrantMapping& operator=(GrantMapping&& other) noexcept;
    GrantMapping(const GrantMapping&) = delete;
    GrantMapping& operator=(const GrantMapping&) = delete;
    ~GrantMapping() { release(); }

    [[nodiscard]] bool valid() const { return m_mapper != nullptr; }
    [[nodiscard]] GrantRef ref() const { return m_ref; }
    [[nodiscard]] std::uint32_t frame() const { return m_frame; }
    [[nodiscard]] bool writable() const { return m_access == GrantAccess::kReadWrite; }

    Result<void, GrantError> copy_out(std::size_t offset, std::span<std::byte> dst) const;
    Result<void, GrantError> copy_in(std::size_t offset, std::span<const std::byte> src) const;

    template <class T>
    Result<T, GrantError> read(std::size_t offset) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T value;
        auto r = copy_out(offset, std::as_writable_bytes(std::span(&value, 1)));
        if (!r)
            return Unexpected{r.error()};
        return value;
    }
    template <class T>
    Result<void, GrantError> write(std::size_t offset, const T& value) const {
        static_assert(std::has_unique_object_representations_v<T>, "no hidden padding may leak");
        return copy_in(offset, std::as_bytes(std::span(&value, 1)));
    }

    // Direct page address for bulk I/O (io_uring buffers). The data is
    // peer-writable: use it only as opaque payload, never parse it.
    [[nodiscard]] std::byte* payload_ptr() const { return m_page; }

    void release();

private:
    friend class GrantMapper;
    GrantMapping(GrantMapper* mapper, GrantRef ref, std::uint32_t frame, GrantAccess access,
                 std::byte* page)
        : m_mapper(mapper), m_ref(ref), m_frame(frame), m_access(access), m_page(page) {}

    GrantMapper* m_mapper = nullptr;
    GrantRef m_ref = 0;
    std::uint32_t m_frame = 0;
    GrantAccess m_access = GrantAccess::kReadOnly;
    std::byte* m_page = nullptr;
};

class GrantMapper {
public:
    // `pool` must have come from GrantPool::attach; `self` is the backend's domid.
    GrantMapper(const GrantPool& pool, pvkit_domid_t self);
    // Mappings point back at their mapper; it is neither copied nor moved.
    GrantMapper(const GrantMapper&) = delete;
    GrantMapper& operator=(const GrantMapper&) = delete;
    GrantMapper(GrantMapper&&) = delete;
    GrantMapper& operator=(GrantMapper&&) = delete;
    ~GrantMapper() = default;

    // Copies the entry once, checks type, grantee, access and frame range,
    // and marks it in use with a compare-and-exchange against the checked
    // value. A grant may be mapped several times at once; the in-use bit is
    // cleared when the last mapping of that kind goes.
    Result<GrantMapping, GrantError> map(GrantRef ref, GrantAccess access);

    struct Counters {
        std::uint64_t maps = 0;
        std::uint64_t rejected = 0;
    };
    [[nodiscard]] const Counters& counters() const { return m_counters; }
    [[nodiscard]] std::uint32_t mapped() const { return m_mapped; }

private:
    friend class GrantMapping;
    void unmap(GrantRef ref, GrantAccess access);

    struct Pins {
        std::uint16_t readers = 0;
        std::uint16_t writers = 0;
    };

    const GrantPool* m_pool;
    pvkit_domid_t m_self;
    GrantEntryWord m_entries;
    std::vector<Pins> m_pins;
    std::uint32_t m_mapped = 0;
    Counters m_counters;
};

// A shared ring of one or more pages, each granted read-write, mapped as
// one contiguous byte range. The ring indices in it are peer-writable and
// are only touched through the ring code's single-fetch accessors.
struct RingMapping {
    std::vector<GrantMapping> pages;
    std::span<std::byte> bytes;
};

// Maps the ring pages named by `refs` (ring-ref0, ring-ref1, ...). They must
// grant consecutive data frames, in order, read-write to the mapper's domain.
Result<RingMapping, GrantError> map_ring(GrantMapper& mapper, std::span<const GrantRef> refs);

} // namespace pvkit
