#include "pvkit/vmm/io_bus.hpp"

namespace pvkit::vmm {

const char* to_string(BusError error) {
    switch (error) {
    case BusError::kEmpty:
        return "empty range";
    case BusError::kOverflow:
        return "range wraps around";
    case BusError::kOverlap:
        return "range overlaps a registered device";
    }
    return "unknown bus error";
}

Result<void, BusError> IoBus::add(std::uint64_t base, std::uint64_t length, std::string name,
                                  IoHandler& handler) {
    if (length == 0)
        return Unexpected{BusError::kEmpty};
    std::uint64_t end = 0;
    if (__builtin_add_overflow(base, length, &end))
        return Unexpected{BusError::kOverflow};
    // Ranges do not overlap, so only the neighbours can intersect.
    auto next = m_ranges.lower_bound(base);
    if (next != m_ranges.end() && next->second.base < end)
        return Unexpected{BusError::kOverlap};
    if (next != m_ranges.begin()) {
        const Range& prev = std::prev(next)->second;
        if (prev.base + prev.length > base)
            return Unexpected{BusError::kOverlap};
    }
    m_ranges.emplace(base, Range{base, length, std::move(name), &handler});
    return {};
}

const IoBus::Range* IoBus::find(std::uint64_t address, std::uint64_t size) const {
    std::uint64_t end = 0;
    if (size == 0 || __builtin_add_overflow(address, size, &end))
        return nullptr;
    auto it = m_ranges.upper_bound(address);
    if (it == m_ranges.begin())
        return nullptr;
    const Range& range = std::prev(it)->second;
    if (end - range.base > range.length)
        return nullptr;
    return &range;
}

} // namespace pvkit::vmm
