#include "pvkit/transport/grant_pool.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace pvkit {

namespace bip = boost::interprocess;

const char* to_string(PoolError e) {
    switch (e) {
    case PoolError::kNotSealed:
        return "grant pool memfd is not sealed against shrinking and growing";
    case PoolError::kBadSize:
        return "grant pool size is not a page multiple within limits";
    case PoolError::kBadHeader:
        return "grant pool header has a wrong magic, version or page size";
    case PoolError::kBadLayout:
        return "grant pool header layout does not fit the pool size";
    case PoolError::kSystem:
        return "grant pool system call failed";
    }
    return "unknown grant pool error";
}

namespace {

// Boost.Interprocess maps anything that exposes a mapping handle; a memfd
// received over a socket is such a thing.
struct FdMappable {
    int fd;
    [[nodiscard]] bip::mapping_handle_t get_mapping_handle() const {
        return bip::ipcdetail::mapping_handle_from_file_handle(fd);
    }
};

bip::mapped_region map_fd(int fd, std::size_t bytes) {
    return bip::mapped_region(FdMappable{fd}, bip::read_write, 0, bytes);
}

constexpr std::uint32_t kTableFirst = 1;

} // namespace

GrantPool GrantPool::create(pvkit_domid_t owner, std::uint32_t nr_data_frames,
                            std::uint32_t nr_grants, std::string_view name) {
    if (nr_data_frames == 0 || nr_grants < 2)
        throw std::invalid_argument("grant pool needs at least one data frame and two grants");
    // 64-bit sums: a huge nr_grants must fail the limit, not wrap to a tiny table.
    std::uint64_t table_frames =
        (std::uint64_t{nr_grants} + PVKIT_GRANT_ENTRIES_PER_PAGE - 1) / PVKIT_GRANT_ENTRIES_PER_PAGE;
    std::uint64_t total = std::uint64_t{kTableFirst} + table_frames + nr_data_frames;
    if (total > PVKIT_GRANT_POOL_MAX_FRAMES)
        throw std::invalid_argument("grant pool larger than PVKIT_GRANT_POOL_MAX_FRAMES");
    auto table_nr = static_cast<std::uint32_t>(table_frames);

    std::string cname(name);
    UniqueFd fd(::memfd_create(cname.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid())
        throw_errno("memfd_create");
    auto bytes = static_cast<off_t>(total * PVKIT_PAGE_SIZE);
    if (::ftruncate(fd.get(), bytes) != 0)
        throw_errno("ftruncate grant pool");
    // Backends refuse pools that can change size: a shrink would turn their
    // accesses into SIGBUS.
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        throw_errno("seal grant pool");

    PoolLayout layout;
    layout.nr_frames = static_cast<std::uint32_t>(total);
    layout.table_first = kTableFirst;
    layout.table_nr = table_nr;
    layout.nr_grants = nr_grants;
    layout.data_first = kTableFirst + table_nr;
    layout.owner = owner;

    bip::mapped_region region = map_fd(fd.get(), static_cast<std::size_t>(bytes));
    pvkit_grant_pool_header hdr{};
    hdr.magic = PVKIT_GRANT_POOL_MAGIC;
    hdr.version = PVKIT_GRANT_POOL_VERSION;
    hdr.page_size = PVKIT_PAGE_SIZE;
    hdr.nr_frames = layout.nr_frames;
    hdr.table_first = layout.table_first;
    hdr.table_nr = layout.table_nr;
    hdr.nr_grants = layout.nr_grants;
    hdr.data_first = layout.data_first;
    hdr.owner = owner;
    std::memcpy(region.get_address(), &hdr, sizeof hdr);
    return GrantPool(std::move(fd), std::move(region), layout);
}

Result<GrantPool, PoolError> GrantPool::attach(UniqueFd fd) {
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0)
        return Unexpected{PoolError::kNotSealed};
    if ((seals & F_SEAL_SHRINK) == 0 || (seals & F_SEAL_GROW) == 0)
        return Unexpected{PoolError::kNotSealed};
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return Unexpected{PoolError::kSystem};
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size == 0 || size % PVKIT_PAGE_SIZE != 0 ||
        size / PVKIT_PAGE_SIZE > PVKIT_GRANT_POOL_MAX_FRAMES)
        return Unexpected{PoolError::kBadSize};

    bip::mapped_region region;
    try {
        region = map_fd(fd.get(), static_cast<std::size_t>(size));
    } catch (const bip::interprocess_exception&) {
        return Unexpected{PoolError::kSystem};
    }
    // Single copy of the peer-written header; only the copy is checked and used.
    pvkit_grant_pool_header hdr;
    std::memcpy(&hdr, region.get_address(), sizeof hdr);
    if (hdr.magic != PVKIT_GRANT_POOL_MAGIC || hdr.version != PVKIT_GRANT_POOL_VERSION ||
        hdr.page_size != PVKIT_PAGE_SIZE)
        return Unexpected{PoolError::kBadHeader};
    std::uint64_t frames = size / PVKIT_PAGE_SIZE;
    // 64-bit sums: a header with huge fields cannot wrap around the checks.
    std::uint64_t table_end = std::uint64_t{hdr.table_first} + hdr.table_nr;
    if (hdr.nr_frames != frames || hdr.table_first == 0 || hdr.table_nr == 0 ||
        table_end > frames || hdr.data_first != table_end || hdr.data_first >= frames ||
        hdr.nr_grants == 0 ||
        hdr.nr_grants > std::uint64_t{hdr.table_nr} * PVKIT_GRANT_ENTRIES_PER_PAGE)
        return Unexpected{PoolError::kBadLayout};

    PoolLayout layout;
    layout.nr_frames = hdr.nr_frames;
    layout.table_first = hdr.table_first;
    layout.table_nr = hdr.table_nr;
    layout.nr_grants = hdr.nr_grants;
    layout.data_first = hdr.data_first;
    layout.owner = hdr.owner;
    return GrantPool(std::move(fd), std::move(region), layout);
}

std::byte* GrantPool::frame_ptr(std::uint32_t frame) const {
    if (frame >= m_layout.nr_frames)
        return nullptr;
    return static_cast<std::byte*>(m_region.get_address()) +
           std::size_t{frame} * PVKIT_PAGE_SIZE;
}

std::span<std::byte> GrantPool::data_frame(std::uint32_t frame) const {
    if (frame < m_layout.data_first || frame >= m_layout.nr_frames)
        return {};
    return {frame_ptr(frame), PVKIT_PAGE_SIZE};
}

} // namespace pvkit
