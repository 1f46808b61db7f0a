// Everything the VMM writes before the guest's first instruction: page
// tables, GDT and TSS, the start-info page, the hypercall page, the CPUID
// table, and the register state that starts the vCPU in 64-bit long mode
// at the kernel's entry point. layout.hpp says where each piece lives.
#pragma once

#include <pvkit/abi.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/transport/result.hpp"
#include "pvkit/vmm/elf_loader.hpp"
#include "pvkit/vmm/guest_memory.hpp"
#include "pvkit/vmm/kvm_uapi.hpp"

namespace pvkit::vmm {

// A PV device whose grant pool the VMM maps into the device window.
struct BootDevice {
    std::uint32_t type = 0;       // PVKIT_DEV_*
    std::uint32_t devid = 0;      // the <devid> of its store paths
    std::uint64_t pool_bytes = 0; // a positive multiple of 4 KiB
};

struct BootParams {
    std::string_view cmdline;
    pvkit_domid_t domid = 1;
    std::uint64_t features = 0; // PVKIT_FEAT_*
    bool nx = false;            // the CPU has NX: EFER.NXE is set and data pages are NX
    // Devices in pool-index order (start info devices[], GRANT_POOL_QUERY).
    std::vector<BootDevice> devices;
    bool store_ring = false;        // a store ring page exists
    std::uint32_t store_evtchn = 0; // its port, when it exists
};

struct BootState {
    std::uint64_t entry = 0;
    std::uint64_t cr3 = 0;
    std::uint64_t start_info_gpa = 0;
    std::uint64_t hypercall_page_gpa = 0;
    std::uint64_t block_helper_gpa = 0; // SCHED_OP BLOCK's `sti; hlt; cli; ret`
    std::uint64_t stack_top = 0;
    std::uint64_t device_window = 0; // first byte of the device window
    std::uint64_t doorbell_gpa = 0;
    std::uint64_t store_ring_gpa = 0;     // 0 without a store ring
    std::vector<std::uint64_t> pool_gpas; // one per BootParams::devices entry
    std::uint64_t page_table_bytes = 0;
    bool nx = false;
};

enum class BootError {
    kCmdlineTooLong, // more than PVKIT_START_INFO_CMDLINE_MAX - 1 bytes
    kCmdlineHasNul,  // a NUL inside the command line
    kRamSize,        // RAM outside [layout::kMinRam, layout::kMaxRam] or not page sized
    kPageTables,     // the page-table area cannot hold the mappings
    kMemory,         // a boot structure could not be written (a VMM bug)
    kTooManyDevices, // more than PVKIT_START_INFO_MAX_DEVICES devices
    kPoolSize,       // a pool of 0 bytes or not page sized
    kWindowFull,     // the grant pools do not fit the device window
};
const char* to_string(BootError error);

// Writes page tables, GDT, TSS, start info and hypercall page for a kernel
// already loaded as `kernel`.
Result<BootState, BootError> write_boot_structures(GuestMemory& memory, const ElfImage& kernel,
                                                   const BootParams& params);

// Where each device's pool goes in the device window starting at
// `window`: one after the other from layout::kPoolsOffset, each at a
// 2 MiB boundary. kWindowFull if they do not fit.
Result<std::vector<std::uint64_t>, BootError> place_pools(std::uint64_t window,
                                                          const std::vector<BootDevice>& devices);

// The hypercall page: PVKIT_HYPERCALL_MAX_STUBS stubs of
// `mov $nr, %eax; out %al, $PVKIT_HYPERCALL_PORT; ret`, padded with ud2,
// and the block helper `sti; hlt; cli; ret` in the padding of the
// SCHED_OP stub, at kBlockHelperOffset.
std::vector<std::uint8_t> make_hypercall_page();
inline constexpr std::uint64_t kBlockHelperOffset = 3 * 32 + 8; // PVKIT_HC_SCHED_OP's stub + 8

// Special registers for 64-bit long mode with paging, starting from the
// vCPU's current `base` (which keeps KVM's APIC base and similar).
kvm_sregs long_mode_sregs(const kvm_sregs& base, const BootState& boot);
// RIP = entry, RSI = start info, RSP = boot stack, interrupts off.
kvm_regs entry_regs(const BootState& boot);

// The CPUID table the guest sees: what KVM supports, with the hypervisor
// bit set, KVM's own paravirtual leaves removed and pvkit's leaves added.
std::vector<kvm_cpuid_entry2> make_guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                               std::uint64_t features,
                                               std::uint64_t hypercall_page_gpa,
                                               std::uint64_t start_info_gpa);
// Whether `supported` reports NX (CPUID 0x80000001 EDX bit 20).
bool cpuid_has_nx(const std::vector<kvm_cpuid_entry2>& supported);

} // namespace pvkit::vmm
