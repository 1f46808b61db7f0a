// GuestMemory: the guest's RAM, a private memfd mapped into this process
// and registered with KVM.
//
// The guest writes this memory at any time, so everything the VMM reads
// from it is untrusted input. Access goes through copies only: read_bytes,
// read<T> and their write counterparts check that the whole range lies in
// RAM, with overflow-checked arithmetic on the address and length the
// guest supplied, and then memcpy. No raw pointer into guest memory is
// handed to code that parses guest data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::vmm {

enum class MemError {
    kOverflow,   // address + length wraps around 2^64
    kOutOfRange, // the range does not lie wholly inside guest RAM
};
const char* to_string(MemError error);

class GuestMemory {
public:
    // Creates `bytes` of zero-filled RAM (a positive multiple of the page
    // size) in a close-on-exec memfd named `name`. Throws
    // std::invalid_argument or std::system_error.
    static GuestMemory create(std::uint64_t bytes, std::string_view name = "pvkit-guest-ram");

    GuestMemory(GuestMemory&& other) noexcept;
    GuestMemory& operator=(GuestMemory&&) = delete;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    [[nodiscard]] std::uint64_t size() const { return m_size; }
    [[nodiscard]] int fd() const { return m_fd.get(); }

    // Whether [gpa, gpa + len) lies in RAM. An empty range is inside RAM if
    // its address is at most size(). Never overflows.
    [[nodiscard]] bool contains(std::uint64_t gpa, std::uint64_t len) const {
        return check(gpa, len).ok();
    }
    // The reason [gpa, gpa + len) is not in RAM, if it is not.
    [[nodiscard]] Result<void, MemError> check(std::uint64_t gpa, std::uint64_t len) const;

    Result<void, MemError> read_bytes(std::uint64_t gpa, std::span<std::byte> out) const;
    Result<void, MemError> write_bytes(std::uint64_t gpa, std::span<const std::byte> in);
    Result<void, MemError> fill(std::uint64_t gpa, std::uint64_t len, std::byte value);

    // A copy of the T at `gpa`. The guest may change the memory right after;
    // the copy is what gets validated and used.
    template <class T> Result<T, MemError> read(std::uint64_t gpa) const {
        static_assert(std::is_trivially_copyable_v<T>, "only plain data crosses into guest memory");
        T value;
        if (auto r = read_bytes(gpa, std::as_writable_bytes(std::span(&value, 1))); !r)
            return Unexpected{r.error()};
        return value;
    }

    // Writes `value`. Types with padding are refused at compile time: their
    // holes would leak bytes of this process's stack into the guest.
    template <class T> Result<void, MemError> write(std::uint64_t gpa, const T& value) {
        static_assert(std::is_trivially_copyable_v<T>, "only plain data crosses into guest memory");
        static_assert(std::has_unique_object_representations_v<T>,
                      "a type with padding would leak host bytes into the guest");
        return write_bytes(gpa, std::as_bytes(std::span(&value, 1)));
    }

    // The host address KVM_SET_USER_MEMORY_REGION needs. It is an integer on
    // purpose: nothing that parses guest data gets a pointer.
    [[nodiscard]] std::uint64_t kvm_userspace_addr() const;

private:
    GuestMemory(UniqueFd fd, std::byte* base, std::uint64_t size)
        : m_fd(std::move(fd)), m_base(base), m_size(size) {}

    UniqueFd m_fd;
    std::byte* m_base;
    std::uint64_t m_size;
};

} // namespace pvkit::vmm
