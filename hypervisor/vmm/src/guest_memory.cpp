#include "pvkit/vmm/guest_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <utility>

#include <pvkit/abi.h>

namespace pvkit::vmm {

const char* to_string(MemError error) {
    switch (error) {
    case MemError::kOverflow:
        return "address range wraps around";
    case MemError::kOutOfRange:
        return "address range is not inside guest RAM";
    }
    return "unknown memory error";
}

GuestMemory GuestMemory::create(std::uint64_t bytes, std::string_view name) {
    if (bytes == 0 || bytes % PVKIT_PAGE_SIZE != 0)
        throw std::invalid_argument("guest RAM size must be a positive multiple of 4096 bytes");
    const std::string memfd_name(name);
    UniqueFd fd(::memfd_create(memfd_name.c_str(), MFD_CLOEXEC));
    if (!fd.valid())
        throw_errno("memfd_create for guest RAM");
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) < 0)
        throw_errno("ftruncate of guest RAM");
    // MAP_NORESERVE: a large guest touches only what it uses.
    void* base =
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
    if (base == MAP_FAILED)
        throw_errno("mmap of guest RAM");
    return GuestMemory(std::move(fd), static_cast<std::byte*>(base), bytes);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : m_fd(std::move(other.m_fd)), m_base(std::exchange(other.m_base, nullptr)),
      m_size(std::exchange(other.m_size, 0)) {}

GuestMemory::~GuestMemory() {
    if (m_base != nullptr)
        ::munmap(m_base, m_size);
}

Result<void, MemError> GuestMemory::check(std::uint64_t gpa, std::uint64_t len) const {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(gpa, len, &end))
        return Unexpected{MemError::kOverflow};
    if (end > m_size)
        return Unexpected{MemError::kOutOfRange};
    return {};
}

Result<void, MemError> GuestMemory::read_bytes(std::uint64_t gpa, std::span<std::byte> out) const {
    if (auto r = check(gpa, out.size()); !r)
        return r;
    if (!out.empty())
        std::memcpy(out.data(), m_base + gpa, out.size());
    return {};
}

Result<void, MemError> GuestMemory::write_bytes(std::uint64_t gpa, std::span<const std::byte> in) {
    if (auto r = check(gpa, in.size()); !r)
        return r;
    if (!in.empty())
        std::memcpy(m_base + gpa, in.data(), in.size());
    return {};
}

Result<void, MemError> GuestMemory::fill(std::uint64_t gpa, std::uint64_t len, std::byte value) {
    if (auto r = check(gpa, len); !r)
        return r;
    if (len != 0)
        std::memset(m_base + gpa, std::to_integer<int>(value), len);
    return {};
}

std::uint64_t GuestMemory::kvm_userspace_addr() const {
    // An integer for the ioctl; see the header.
    return reinterpret_cast<std::uintptr_t>(m_base);
}

} // namespace pvkit::vmm
