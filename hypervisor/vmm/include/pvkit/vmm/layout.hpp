// Where pvkit-vmm puts things in guest-physical memory (docs/vmm.md has the
// same table). Everything below kKernelMin is the VMM's: the ELF loader
// refuses segments there, and the start-info memory map marks it reserved.
// Guest-physical and guest-virtual addresses are equal at entry: the VMM's
// page tables map RAM one to one.
#pragma once

#include <cstdint>

namespace pvkit::vmm::layout {

inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::uint64_t kLargePageSize = 2ull << 20; // 2 MiB
inline constexpr std::uint64_t kGiB = 1ull << 30;

// Page 0 stays unmapped so that a null pointer faults in the guest.
inline constexpr std::uint64_t kGdt = 0x1000;           // GDT (one page)
inline constexpr std::uint64_t kTss = 0x2000;           // 64-bit TSS (one page)
inline constexpr std::uint64_t kStartInfo = 0x3000;     // struct pvkit_start_info, read-only
inline constexpr std::uint64_t kHypercallPage = 0x4000; // stubs, read-only + executable
inline constexpr std::uint64_t kIstStack = 0x5000;      // IST1 stack for #DF/NMI/#MC: 8 KiB
inline constexpr std::uint64_t kIstStackTop = 0x7000;
inline constexpr std::uint64_t kStackGuard = 0x7000;    // not present: kernel stack overflow faults
inline constexpr std::uint64_t kBootStack = 0x8000;     // kernel stack: 32 KiB
inline constexpr std::uint64_t kBootStackTop = 0x10000; // initial RSP and TSS.RSP0
inline constexpr std::uint64_t kPageTables = 0x10000;   // PML4, PDPT, then PDs and PTs
inline constexpr std::uint64_t kPageTablesEnd = 0x100000;
inline constexpr std::uint64_t kKernelMin = 0x100000; // lowest address an ELF segment may use

// The 1 GiB starting at the first GiB boundary at or above the end of RAM
// is the device window: mapped by the VMM's page tables but not RAM. Its
// first 2 MiB hold pvkit's own pages, mapped with 4 KiB pages so that a
// guest kernel can open single pages to user mode:
//
//   +0x000000  doorbell page (MMIO: KVM_IOEVENTFD per port; uncached)
//   +0x001000  store ring page (struct pvkit_store_ring; its own memory slot)
//   +0x002000  reserved for emulated device registers (MMIO; uncached)
//   +0x200000  grant pools, one per device, each at a 2 MiB boundary
//              (memory slots; cached, so the guest can use them as RAM)
//
// Everything in the window not listed here is unclaimed MMIO: an access
// stops the guest with "unhandled MMIO".
inline constexpr std::uint64_t kDeviceWindowSize = kGiB;
inline constexpr std::uint64_t kDoorbellOffset = 0;
inline constexpr std::uint64_t kStoreRingOffset = 0x1000;
inline constexpr std::uint64_t kDeviceMmioOffset = 0x2000;
inline constexpr std::uint64_t kPoolsOffset = kLargePageSize;
// Grant pools start at 2 MiB boundaries: the guest maps them with 2 MiB
// pages where the size allows, and no other device shares those pages.
inline constexpr std::uint64_t kPoolAlignment = kLargePageSize;

// KVM memory slots.
inline constexpr std::uint32_t kRamSlot = 0;
inline constexpr std::uint32_t kStoreRingSlot = 1;
inline constexpr std::uint32_t kFirstPoolSlot = 2;

// Guest RAM bounds accepted by the VMM.
inline constexpr std::uint64_t kMinRam = 4ull << 20;
inline constexpr std::uint64_t kMaxRam = 64ull << 30;

// GDT selectors. The order (kernel code, kernel data, user data, user
// code) is the one SYSCALL/SYSRET need, should a guest use them on a host
// where they work.
inline constexpr std::uint16_t kKernelCs = 0x08;
inline constexpr std::uint16_t kKernelDs = 0x10;
inline constexpr std::uint16_t kUserDs = 0x18;      // used with RPL 3: 0x1b
inline constexpr std::uint16_t kUserCs = 0x20;      // used with RPL 3: 0x23
inline constexpr std::uint16_t kTssSelector = 0x28; // 16-byte descriptor
inline constexpr std::uint16_t kGdtEntries = 7;

// Where the device window starts for a given amount of RAM.
[[nodiscard]] constexpr std::uint64_t device_window_base(std::uint64_t ram_bytes) {
    return (ram_bytes + kGiB - 1) / kGiB * kGiB;
}

} // namespace pvkit::vmm::layout
