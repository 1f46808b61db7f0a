#include "pvkit/vmm/boot.hpp"

#include <pvkit/hypercall.h>
#include <pvkit/start_info.h>

#include <array>
#include <cstring>

#include "pvkit/vmm/layout.hpp"
#include "pvkit/vmm/page_tables.hpp"

namespace pvkit::vmm {

namespace {

// Segment descriptors (Intel SDM vol. 3, 3.4.5). Accessed bits are preset
// so the CPU never writes the GDT.
constexpr std::uint64_t kKernelCode = 0x00af9b000000ffffull; // L=1, DPL0, execute/read
constexpr std::uint64_t kKernelData = 0x00cf93000000ffffull; // DPL0, read/write
constexpr std::uint64_t kUserData = 0x00cff3000000ffffull;   // DPL3, read/write
constexpr std::uint64_t kUserCode = 0x00affb000000ffffull;   // L=1, DPL3, execute/read

constexpr std::uint32_t kTssSize = 104;   // the 64-bit TSS without an I/O bitmap
constexpr std::uint8_t kTssBusy64 = 0x8b; // present, type 11 (busy 64-bit TSS)

constexpr std::uint64_t kCr0Pe = 1ull << 0;
constexpr std::uint64_t kCr0Mp = 1ull << 1;
constexpr std::uint64_t kCr0Em = 1ull << 2;
constexpr std::uint64_t kCr0Et = 1ull << 4;
constexpr std::uint64_t kCr0Ne = 1ull << 5;
constexpr std::uint64_t kCr0Wp = 1ull << 16;
constexpr std::uint64_t kCr0Pg = 1ull << 31;
constexpr std::uint64_t kCr4Pae = 1ull << 5;
constexpr std::uint64_t kEferLme = 1ull << 8;
constexpr std::uint64_t kEferLma = 1ull << 10;
constexpr std::uint64_t kEferNxe = 1ull << 11;

constexpr std::uint32_t kCpuidHypervisorBit = 1u << 31; // leaf 1 ECX
constexpr std::uint32_t kCpuidNxBit = 1u << 20;         // leaf 0x80000001 EDX

std::array<std::uint64_t, layout::kGdtEntries> make_gdt() {
    const std::uint64_t base = layout::kTss;
    const std::uint64_t limit = kTssSize - 1;
    const std::uint64_t tss_low = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                                  (std::uint64_t{kTssBusy64} << 40) |
                                  (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    const std::uint64_t tss_high = base >> 32;
    return {0, kKernelCode, kKernelData, kUserData, kUserCode, tss_low, tss_high};
}

std::array<std::byte, kTssSize> make_tss() {
    std::array<std::byte, kTssSize> tss{};
    auto put64 = [&](std::size_t offset, std::uint64_t v) { std::memcpy(&tss[offset], &v, 8); };
    put64(4, layout::kBootStackTop); // RSP0: stack for entries from user mode
    put64(36, layout::kIstStackTop); // IST1: for #DF, NMI, #MC
    // No I/O permission bitmap: the base points past the limit, so every
    // port access from CPL3 faults (IOPL is 0), whatever the guest does.
    const std::uint16_t iomap = kTssSize;
    std::memcpy(&tss[102], &iomap, 2);
    return tss;
}

kvm_segment code_segment(std::uint16_t selector) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = selector;
    s.type = 11; // execute/read, accessed
    s.present = 1;
    s.dpl = 0;
    s.db = 0;
    s.s = 1;
    s.l = 1;
    s.g = 1;
    return s;
}

kvm_segment data_segment(std::uint16_t selector) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = selector;
    s.type = 3; // read/write, accessed
    s.present = 1;
    s.dpl = 0;
    s.db = 1;
    s.s = 1;
    s.l = 0;
    s.g = 1;
    return s;
}

Result<std::uint64_t, BootError> write_page_tables(GuestMemory& memory, const BootState& boot,
                                                   const BootParams& params) {
    const std::uint64_t window = boot.device_window;
    const bool nx = params.nx;
    PageTableBuilder tables(memory, layout::kPageTables, layout::kPageTablesEnd, nx);
    struct Region {
        std::uint64_t base;
        std::uint64_t size;
        PageAccess access;
    };
    const PageAccess data{.writable = true, .executable = false};
    const PageAccess read_only{.writable = false, .executable = false};
    const std::uint64_t ram = memory.size();
    // Page 0 and the stack guard page stay unmapped on purpose.
    const std::array regions{
        Region{layout::kGdt, layout::kPageSize, data},
        Region{layout::kTss, layout::kPageSize, data},
        Region{layout::kStartInfo, layout::kPageSize, read_only},
        Region{layout::kHypercallPage, layout::kPageSize, {.writable = false, .executable = true}},
        Region{layout::kIstStack, layout::kIstStackTop - layout::kIstStack, data},
        Region{layout::kBootStack, layout::kBootStackTop - layout::kBootStack, data},
        Region{layout::kPageTables, layout::kPageTablesEnd - layout::kPageTables, data},
        // The kernel's own RAM: the guest sets finer permissions if it wants.
        Region{
            layout::kKernelMin, ram - layout::kKernelMin, {.writable = true, .executable = true}},
    };
    for (const Region& r : regions) {
        if (!tables.map(r.base, r.size, r.access))
            return Unexpected{BootError::kPageTables};
    }
    // The device window (layout.hpp). Supervisor only, like RAM: the guest
    // kernel opens the pages its programs may use. pvkit's own pages come
    // as 4 KiB pages so that they can be opened one by one.
    const PageAccess device{.writable = true, .uncached = true};
    const PageAccess shared_memory{.writable = true};
    std::vector<Region> window_regions{
        Region{window + layout::kDoorbellOffset, layout::kPageSize, device},
        Region{window + layout::kDeviceMmioOffset, layout::kPoolsOffset - layout::kDeviceMmioOffset,
               device},
    };
    if (params.store_ring)
        window_regions.push_back(
            Region{window + layout::kStoreRingOffset, layout::kPageSize, shared_memory});
    std::uint64_t end = window + layout::kPoolsOffset;
    for (std::size_t i = 0; i < params.devices.size(); ++i) {
        // The pool itself is mapped cached (it is memory, shared with a
        // backend); the rest of its last 2 MiB stays unmapped, so a stray
        // access past the pool faults in the guest.
        window_regions.push_back(
            Region{boot.pool_gpas[i], params.devices[i].pool_bytes, shared_memory});
        end = boot.pool_gpas[i] + (params.devices[i].pool_bytes + layout::kPoolAlignment - 1) /
                                      layout::kPoolAlignment * layout::kPoolAlignment;
    }
    // Whatever is left of the window: unclaimed device space.
    if (end < window + layout::kDeviceWindowSize)
        window_regions.push_back(Region{end, window + layout::kDeviceWindowSize - end, device});
    for (const Region& r : window_regions) {
        if (!tables.map(r.base, r.size, r.access))
            return Unexpected{BootError::kPageTables};
    }
    return tables.cr3();
}

pvkit_start_info make_start_info(const GuestMemory& memory, const BootParams& params,
                                 const BootState& boot) {
    pvkit_start_info info{};
    info.magic = PVKIT_START_INFO_MAGIC;
    info.abi_version = PVKIT_ABI_VERSION;
    info.domid = params.domid;
    info.features = params.features;
    info.nr_ram_pages = memory.size() / PVKIT_PAGE_SIZE;
    info.hypercall_page_gpa = layout::kHypercallPage;
    info.doorbell_gpa = boot.doorbell_gpa;
    info.store_ring_gpa = boot.store_ring_gpa;
    info.store_evtchn = params.store_ring ? params.store_evtchn : 0;
    std::uint32_t n = 0;
    info.memmap[n++] = pvkit_memmap_entry{0, layout::kKernelMin, PVKIT_MEM_RESERVED, 0};
    info.memmap[n++] = pvkit_memmap_entry{layout::kKernelMin, memory.size() - layout::kKernelMin,
                                          PVKIT_MEM_RAM, 0};
    info.memmap[n++] = pvkit_memmap_entry{boot.doorbell_gpa, layout::kPageSize, PVKIT_MEM_MMIO, 0};
    if (params.store_ring)
        info.memmap[n++] =
            pvkit_memmap_entry{boot.store_ring_gpa, layout::kPageSize, PVKIT_MEM_RESERVED, 0};
    // At most PVKIT_START_INFO_MAX_DEVICES (16) pools: 20 entries of 32.
    for (std::size_t i = 0; i < params.devices.size(); ++i) {
        const BootDevice& d = params.devices[i];
        info.memmap[n++] =
            pvkit_memmap_entry{boot.pool_gpas[i], d.pool_bytes, PVKIT_MEM_GRANT_POOL, 0};
        pvkit_start_device& dev = info.devices[i];
        dev.type = d.type;
        dev.devid = d.devid;
        dev.pool_index = static_cast<std::uint32_t>(i);
        dev.pool_gpa = boot.pool_gpas[i];
        dev.pool_size = d.pool_bytes;
    }
    info.nr_memmap = n;
    info.nr_devices = static_cast<std::uint32_t>(params.devices.size());
    info.cmdline_len = static_cast<std::uint32_t>(params.cmdline.size());
    if (!params.cmdline.empty()) // an empty view may have no data pointer at all
        std::memcpy(info.cmdline, params.cmdline.data(), params.cmdline.size());
    return info;
}

} // namespace

const char* to_string(BootError error) {
    switch (error) {
    case BootError::kCmdlineTooLong:
        return "command line longer than 1023 bytes";
    case BootError::kCmdlineHasNul:
        return "command line contains a NUL byte";
    case BootError::kRamSize:
        return "guest RAM size out of range";
    case BootError::kPageTables:
        return "page tables do not fit their area";
    case BootError::kMemory:
        return "boot structure outside guest RAM";
    case BootError::kTooManyDevices:
        return "more than 16 PV devices";
    case BootError::kPoolSize:
        return "grant pool size is zero or not a multiple of 4 KiB";
    case BootError::kWindowFull:
        return "the grant pools do not fit the 1 GiB device window";
    }
    return "unknown boot error";
}

Result<std::vector<std::uint64_t>, BootError> place_pools(std::uint64_t window,
                                                          const std::vector<BootDevice>& devices) {
    if (devices.size() > PVKIT_START_INFO_MAX_DEVICES)
        return Unexpected{BootError::kTooManyDevices};
    std::vector<std::uint64_t> gpas;
    std::uint64_t offset = layout::kPoolsOffset;
    for (const BootDevice& d : devices) {
        if (d.pool_bytes == 0 || d.pool_bytes % layout::kPageSize != 0 ||
            d.pool_bytes > layout::kDeviceWindowSize)
            return Unexpected{BootError::kPoolSize};
        const std::uint64_t span = (d.pool_bytes + layout::kPoolAlignment - 1) /
                                   layout::kPoolAlignment * layout::kPoolAlignment;
        if (span > layout::kDeviceWindowSize - offset)
            return Unexpected{BootError::kWindowFull};
        gpas.push_back(window + offset);
        offset += span;
    }
    return gpas;
}

std::vector<std::uint8_t> make_hypercall_page() {
    std::vector<std::uint8_t> page(PVKIT_PAGE_SIZE);
    for (std::size_t i = 0; i < page.size(); i += 2) {
        page[i] = 0x0f; // ud2: a jump into the padding faults at once
        page[i + 1] = 0x0b;
    }
    for (std::uint32_t nr = 0; nr < PVKIT_HYPERCALL_MAX_STUBS; ++nr) {
        const std::size_t at = nr * PVKIT_HYPERCALL_STUB_SIZE;
        const std::array<std::uint8_t, 8> stub{
            0xb8, // mov $nr, %eax
            static_cast<std::uint8_t>(nr),
            static_cast<std::uint8_t>(nr >> 8),
            static_cast<std::uint8_t>(nr >> 16),
            static_cast<std::uint8_t>(nr >> 24),
            0xe6, // out %al, $imm8
            static_cast<std::uint8_t>(PVKIT_HYPERCALL_PORT),
            0xc3, // ret
        };
        std::memcpy(&page[at], stub.data(), stub.size());
    }
    // SCHED_OP BLOCK resumes the vCPU here (hypercall.cpp explains why).
    static_assert(kBlockHelperOffset == PVKIT_HC_SCHED_OP * PVKIT_HYPERCALL_STUB_SIZE + 8);
    const std::array<std::uint8_t, 4> block_helper{0xfb, 0xf4, 0xfa, 0xc3}; // sti; hlt; cli; ret
    std::memcpy(&page[kBlockHelperOffset], block_helper.data(), block_helper.size());
    return page;
}

Result<BootState, BootError> write_boot_structures(GuestMemory& memory, const ElfImage& kernel,
                                                   const BootParams& params) {
    if (memory.size() < layout::kMinRam || memory.size() > layout::kMaxRam ||
        memory.size() % layout::kPageSize != 0)
        return Unexpected{BootError::kRamSize};
    if (params.cmdline.size() >= PVKIT_START_INFO_CMDLINE_MAX)
        return Unexpected{BootError::kCmdlineTooLong};
    if (params.cmdline.find('\0') != std::string_view::npos)
        return Unexpected{BootError::kCmdlineHasNul};

    BootState boot;
    boot.entry = kernel.entry;
    boot.start_info_gpa = layout::kStartInfo;
    boot.hypercall_page_gpa = layout::kHypercallPage;
    boot.stack_top = layout::kBootStackTop;
    boot.block_helper_gpa = layout::kHypercallPage + kBlockHelperOffset;
    boot.device_window = layout::device_window_base(memory.size());
    boot.doorbell_gpa = boot.device_window + layout::kDoorbellOffset;
    boot.store_ring_gpa = params.store_ring ? boot.device_window + layout::kStoreRingOffset : 0;
    boot.nx = params.nx;
    auto pools = place_pools(boot.device_window, params.devices);
    if (!pools)
        return Unexpected{pools.error()};
    boot.pool_gpas = std::move(pools.value());

    auto cr3 = write_page_tables(memory, boot, params);
    if (!cr3)
        return Unexpected{cr3.error()};
    boot.cr3 = cr3.value();

    const auto gdt = make_gdt();
    const auto tss = make_tss();
    const auto hypercalls = make_hypercall_page();
    const pvkit_start_info info = make_start_info(memory, params, boot);
    const bool ok =
        memory.write(layout::kGdt, gdt).ok() && memory.write(layout::kTss, tss).ok() &&
        memory.write_bytes(layout::kHypercallPage, std::as_bytes(std::span(hypercalls))).ok() &&
        memory.write(layout::kStartInfo, info).ok();
    if (!ok)
        return Unexpected{BootError::kMemory};
    return boot;
}

kvm_sregs long_mode_sregs(const kvm_sregs& base, const BootState& boot) {
    kvm_sregs s = base;
    s.cs = code_segment(layout::kKernelCs);
    s.ds = s.es = s.fs = s.gs = s.ss = data_segment(layout::kKernelDs);
    s.tr = kvm_segment{};
    s.tr.base = layout::kTss;
    s.tr.limit = kTssSize - 1;
    s.tr.selector = layout::kTssSelector;
    s.tr.type = 11; // busy 64-bit TSS, matching the GDT
    s.tr.present = 1;
    s.gdt.base = layout::kGdt;
    s.gdt.limit = static_cast<std::uint16_t>(layout::kGdtEntries * 8 - 1);
    // No IDT until the guest loads its own: an exception before that is a
    // triple fault, which the VMM reports.
    s.idt.base = 0;
    s.idt.limit = 0;
    // EM with no OSFXSR: x87 and SSE instructions trap, so a stray one in
    // the guest is reported instead of run (DESIGN.md: no SSE/x87 in guests).
    s.cr0 = kCr0Pe | kCr0Mp | kCr0Em | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
    s.cr3 = boot.cr3;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma | (boot.nx ? kEferNxe : 0);
    return s;
}

kvm_regs entry_regs(const BootState& boot) {
    kvm_regs r{};
    r.rip = boot.entry;
    r.rsi = boot.start_info_gpa;
    r.rsp = boot.stack_top;
    r.rflags = 0x2; // bit 1 is always set; IF = 0, IOPL = 0
    return r;
}

bool cpuid_has_nx(const std::vector<kvm_cpuid_entry2>& supported) {
    for (const kvm_cpuid_entry2& e : supported) {
        if (e.function == 0x80000001u)
            return (e.edx & kCpuidNxBit) != 0;
    }
    return false;
}

std::vector<kvm_cpuid_entry2> make_guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                               std::uint64_t features,
                                               std::uint64_t hypercall_page_gpa,
                                               std::uint64_t start_info_gpa) {
    std::vector<kvm_cpuid_entry2> out;
    out.reserve(supported.size() + 2);
    for (kvm_cpuid_entry2 e : supported) {
        // KVM lists its own paravirtual leaves (kvmclock, ...) in the
        // hypervisor range; a pvkit guest must see pvkit's alone there.
        if (e.function >= 0x40000000u && e.function <= 0x4fffffffu)
            continue;
        if (e.function == 1) {
            e.ecx |= kCpuidHypervisorBit;
            e.ebx &= 0x00ffffffu; // initial APIC id 0: the only vCPU
        }
        out.push_back(e);
    }
    kvm_cpuid_entry2 base{};
    base.function = PVKIT_CPUID_BASE;
    base.eax = PVKIT_CPUID_MAX;
    base.ebx = PVKIT_CPUID_SIG_EBX;
    base.ecx = PVKIT_CPUID_SIG_ECX;
    base.edx = PVKIT_CPUID_SIG_EDX;
    out.push_back(base);
    kvm_cpuid_entry2 info{};
    info.function = PVKIT_CPUID_INFO;
    info.eax = PVKIT_ABI_VERSION;
    info.ebx = static_cast<std::uint32_t>(features);
    info.ecx = static_cast<std::uint32_t>(hypercall_page_gpa >> PVKIT_PAGE_SHIFT);
    info.edx = static_cast<std::uint32_t>(start_info_gpa >> PVKIT_PAGE_SHIFT);
    out.push_back(info);
    return out;
}

} // namespace pvkit::vmm
