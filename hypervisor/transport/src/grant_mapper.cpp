#include "pvkit/transport/grant_mapper.hpp"

#include <pvkit/ring.h>

#include <limits>
#include <utility>

namespace pvkit {

GrantMapping::GrantMapping(GrantMapping&& other) noexcept
    : m_mapper(std::exchange(other.m_mapper, nullptr)), m_ref(other.m_ref), m_frame(other.m_frame),
      m_access(other.m_access), m_page(std::exchange(other.m_page, nullptr)) {}

GrantMapping& GrantMapping::operator=(GrantMapping&& other) noexcept {
    if (this != &other) {
        release();
        m_mapper = std::exchange(other.m_mapper, nullptr);
        m_ref = other.m_ref;
        m_frame = other.m_frame;
        m_access = other.m_access;
        m_page = std::exchange(other.m_page, nullptr);
    }
    return *this;
}

void GrantMapping::release() {
    if (m_mapper != nullptr) {
        m_mapper->unmap(m_ref, m_access);
        m_mapper = nullptr;
        m_page = nullptr;
    }
}

Result<void, GrantError> GrantMapping::copy_out(std::size_t offset, std::span<std::byte> dst) const {
    if (m_mapper == nullptr)
        return Unexpected{GrantError::kNotMapped};
    if (offset > PVKIT_PAGE_SIZE || dst.size() > PVKIT_PAGE_SIZE - offset)
        return Unexpected{GrantError::kOutOfRange};
    if (!dst.empty()) // an empty span may have no storage; memcpy(nullptr) is UB
        std::memcpy(dst.data(), m_page + offset, dst.size());
    return {};
}

Result<void, GrantError> GrantMapping::copy_in(std::size_t offset,
                                              std::span<const std::byte> src) const {
    if (m_mapper == nullptr)
        return Unexpected{GrantError::kNotMapped};
    if (m_access != GrantAccess::kReadWrite)
        return Unexpected{GrantError::kReadOnly};
    if (offset > PVKIT_PAGE_SIZE || src.size() > PVKIT_PAGE_SIZE - offset)
        return Unexpected{GrantError::kOutOfRange};
    if (!src.empty())
        std::memcpy(m_page + offset, src.data(), src.size());
    return {};
}

GrantMapper::GrantMapper(const GrantPool& pool, pvkit_domid_t self)
    : m_pool(&pool), m_self(self), m_entries(pool.table_base(), pool.layout().nr_grants),
      m_pins(pool.layout().nr_grants) {}

Result<GrantMapping, GrantError> GrantMapper::map(GrantRef ref, GrantAccess access) {
    auto reject = [this](GrantError e) -> Result<GrantMapping, GrantError> {
        ++m_counters.rejected;
        return Unexpected{e};
    };
    // Ref 0 is reserved by every pvkit frontend; refusing it also catches
    // zero-filled requests.
    if (ref == 0 || ref >= m_entries.nr_grants())
        return reject(GrantError::kBadRef);
    Pins& pins = m_pins[ref];
    std::uint16_t& count = access == GrantAccess::kReadWrite ? pins.writers : pins.readers;
    if (count == std::numeric_limits<std::uint16_t>::max())
        return reject(GrantError::kInUse);

    // One copy of the (flags, domid) word; the checks below look only at it.
    const GrantEntrySnapshot e = m_entries.load(ref);
    if ((e.flags & PVKIT_GTF_TYPE_MASK) != PVKIT_GTF_PERMIT_ACCESS)
        return reject(GrantError::kNotGranted);
    if (e.domid != m_self)
        return reject(GrantError::kWrongDomain);
    if (access == GrantAccess::kReadWrite && (e.flags & PVKIT_GTF_READONLY) != 0)
        return reject(GrantError::kReadOnly);

    const std::uint16_t bit =
        access == GrantAccess::kReadWrite ? PVKIT_GTF_WRITING : PVKIT_GTF_READING;
    // Set the in-use bit only if the word still holds what we validated; a
    // frontend racing to change domid or flags makes the exchange fail.
    if (!m_entries.exchange(ref, e.word(), e.word() | bit))
        return reject(GrantError::kChanged);
    // The frame is read only now, as Xen does: with the bit set, an honest
    // frontend can no longer end the grant and reuse the reference for
    // another frame. Read before the exchange, the frame could belong to an
    // earlier grant of the same reference (end + grant again with an equal
    // word, so the exchange cannot tell). A hostile frontend may still
    // rewrite it at any time; this checked copy is the only frame used.
    const std::uint32_t frame = m_entries.load_frame(ref);
    const PoolLayout& l = m_pool->layout();
    if (frame < l.data_first || frame >= l.nr_frames) {
        if (count == 0) // the bit is ours alone: take it back
            m_entries.clear_flags(ref, bit);
        return reject(GrantError::kBadFrame);
    }
    ++count;
    ++m_mapped;
    ++m_counters.maps;
    return GrantMapping(this, ref, frame, access, m_pool->frame_ptr(frame));
}

void GrantMapper::unmap(GrantRef ref, GrantAccess access) {
    Pins& pins = m_pins[ref];
    std::uint16_t& count = access == GrantAccess::kReadWrite ? pins.writers : pins.readers;
    --count;
    --m_mapped;
    if (count == 0)
        m_entries.clear_flags(ref, access == GrantAccess::kReadWrite ? PVKIT_GTF_WRITING
                                                                     : PVKIT_GTF_READING);
}

Result<RingMapping, GrantError> map_ring(GrantMapper& mapper, std::span<const GrantRef> refs) {
    if (refs.empty() || refs.size() > (std::size_t{1} << PVKIT_RING_MAX_PAGE_ORDER))
        return Unexpected{GrantError::kOutOfRange};
    RingMapping ring;
    ring.pages.reserve(refs.size());
    for (GrantRef ref : refs) {
        auto m = mapper.map(ref, GrantAccess::kReadWrite);
        if (!m)
            return Unexpected{m.error()}; // pages mapped so far are released by ~RingMapping
        if (!ring.pages.empty() && m->frame() != ring.pages.back().frame() + 1)
            return Unexpected{GrantError::kNotContiguous};
        ring.pages.push_back(std::move(m.value()));
    }
    ring.bytes = {ring.pages.front().payload_ptr(), refs.size() * PVKIT_PAGE_SIZE};
    return ring;
}

} // namespace pvkit
