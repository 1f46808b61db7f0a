// Diagnostics for a guest that stopped abnormally: where its vCPU was, in
// which privilege level, and the instruction bytes there, read through the
// guest's own page tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pvkit/vmm/guest_memory.hpp"
#include "pvkit/vmm/kvm.hpp"

namespace pvkit::vmm {

struct GuestBytes {
    std::vector<std::uint8_t> bytes;
    std::string stopped; // why fewer bytes than asked for came back; "" if all did
};

// Up to `max` bytes at guest-virtual `gva`. With paging off, gva is a GPA.
GuestBytes read_guest_virtual(const GuestMemory& memory, const kvm_sregs& sregs, std::uint64_t gva,
                              std::size_t max);

// "0f 0b 90"
std::string format_bytes(std::span<const std::uint8_t> bytes);

// "rip 0x100123 (cpl 0), instruction bytes 0f 0b 90 ..." for the vCPU as it
// is now; says so if its registers cannot be read.
std::string describe_vcpu(const GuestMemory& memory, const Vcpu& vcpu);

} // namespace pvkit::vmm
