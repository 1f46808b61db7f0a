// GrantPool: the shared-memory region of one PV device (see pvkit/grant.h).
//
// The creator (a frontend, or the VMM on a guest's behalf) makes a sealed
// memfd, lays out header, grant table and data frames, and maps it. The
// backend receives the memfd over a Unix socket and attaches: it checks the
// seals (so the pool can never shrink under it and fault), copies the header
// once, validates it against the memfd's real size, and from then on uses
// only that private copy of the layout.
#pragma once

#include <pvkit/grant.h>

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit {

enum class PoolError {
    kNotSealed,    // the memfd can still shrink or grow: a peer could make us fault
    kBadSize,      // the memfd's size is not a page multiple or out of bounds
    kBadHeader,    // magic, version or page size wrong
    kBadLayout,    // table or data frames inconsistent with the size
    kSystem,       // fstat/fcntl/mmap failed
};
const char* to_string(PoolError e);

struct PoolLayout {
    std::uint32_t nr_frames = 0;
    std::uint32_t table_first = 0;
    std::uint32_t table_nr = 0;
    std::uint32_t nr_grants = 0;
    std::uint32_t data_first = 0;
    pvkit_domid_t owner = 0;

    [[nodiscard]] std::uint32_t nr_data_frames() const { return nr_frames - data_first; }
};

class GrantPool {
public:
    // Creates a pool with `nr_data_frames` grantable frames and room for
    // `nr_grants` grant entries, owned by domain `owner`. Throws
    // std::system_error or std::invalid_argument (a start-up error).
    static GrantPool create(pvkit_domid_t owner, std::uint32_t nr_data_frames,
                            std::uint32_t nr_grants, std::string_view name = "pvkit-grant-pool");

    // Attaches to a pool created elsewhere; never trusts its header.
    static Result<GrantPool, PoolError> attach(UniqueFd fd);

    GrantPool(GrantPool&&) noexcept = default;
    GrantPool& operator=(GrantPool&&) noexcept = default;
    GrantPool(const GrantPool&) = delete;
    GrantPool& operator=(const GrantPool&) = delete;
    ~GrantPool() = default;

    [[nodiscard]] int fd() const { return m_fd.get(); }
    [[nodiscard]] const PoolLayout& layout() const { return m_layout; }
    [[nodiscard]] std::size_t size_bytes() const { return m_region.get_size(); }

    // Byte address of `frame` (any frame, header and table included) or
    // nullptr when out of range. Callers that hand out access to a peer's
    // pool go through GrantMapper instead.
    [[nodiscard]] std::byte* frame_ptr(std::uint32_t frame) const;
    // The data frames, for the pool's owner.
    [[nodiscard]] std::span<std::byte> data_frame(std::uint32_t frame) const;
    // Raw grant table of nr_grants entries. Peer-writable: access only
    // through the atomic helpers in grant_table.hpp.
    [[nodiscard]] std::byte* table_base() const { return frame_ptr(m_layout.table_first); }

private:
    GrantPool(UniqueFd fd, boost::interprocess::mapped_region region, PoolLayout layout)
        : m_fd(std::move(fd)), m_region(std::move(region)), m_layout(layout) {}

    UniqueFd m_fd;
    boost::interprocess::mapped_region m_region;
    PoolLayout m_layout;
};

} // namespace pvkit
