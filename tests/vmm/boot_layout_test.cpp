// What the VMM writes before the first guest instruction: page tables,
// GDT/TSS, start info, hypercall page, CPUID, and the entry registers.
#include <catch2/catch.hpp>

#include <pvkit/hypercall.h>
#include <pvkit/start_info.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "pvkit/vmm/boot.hpp"
#include "pvkit/vmm/kvm.hpp"
#include "pvkit/vmm/layout.hpp"
#include "pvkit/vmm/page_tables.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::error_of;
using pvkit::vmm::BootError;
using pvkit::vmm::BootParams;
using pvkit::vmm::ElfImage;
using pvkit::vmm::GuestMemory;
using pvkit::vmm::PageAccess;
using pvkit::vmm::PageTableBuilder;
using pvkit::vmm::PageTableError;
using pvkit::vmm::WalkError;
namespace layout = pvkit::vmm::layout;
namespace pte = pvkit::vmm::pte;

namespace {

constexpr std::uint64_t kRam = 64ull << 20;

ElfImage kernel_at_1mib() {
    ElfImage image;
    image.entry = layout::kKernelMin;
    return image;
}

struct Booted {
    GuestMemory memory = GuestMemory::create(kRam);
    pvkit::vmm::BootState state;
};

Booted boot(const std::string& cmdline = "run=hello", bool nx = true) {
    Booted b;
    BootParams params;
    params.cmdline = cmdline;
    params.domid = 7;
    params.features = PVKIT_FEAT_CONSOLE_HC;
    params.nx = nx;
    auto state = pvkit::vmm::write_boot_structures(b.memory, kernel_at_1mib(), params);
    REQUIRE(state.ok());
    b.state = state.value();
    return b;
}

std::uint64_t flags_at(const Booted& b, std::uint64_t va) {
    auto t = pvkit::vmm::translate(b.memory, b.state.cr3, va);
    REQUIRE(t.ok());
    CHECK(t->gpa == va); // identity mapping
    return t->leaf_entry;
}

} // namespace

TEST_CASE("Boot page tables map RAM one to one, 2 MiB pages above 2 MiB", "[vmm][boot]") {
    Booted b = boot();
    CHECK(b.state.cr3 == layout::kPageTables);
    for (std::uint64_t va : {layout::kKernelMin, std::uint64_t{0x1ff000}, std::uint64_t{0x200000},
                             kRam - 1, kRam / 2 + 123}) {
        INFO("va " << va);
        const std::uint64_t e = flags_at(b, va);
        CHECK((e & pte::kWritable) != 0);
        CHECK((e & pte::kNoExecute) == 0);
        CHECK((e & pte::kUser) == 0); // the guest kernel opens pages to user mode itself
    }
    CHECK(pvkit::vmm::translate(b.memory, b.state.cr3, 0x200000)->page_size ==
          layout::kLargePageSize);
    CHECK(pvkit::vmm::translate(b.memory, b.state.cr3, 0x100000)->page_size == layout::kPageSize);
}

TEST_CASE("Boot page tables leave the null page and the stack guard unmapped", "[vmm][boot]") {
    Booted b = boot();
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, 0)) == WalkError::kNotPresent);
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, 0xfff)) == WalkError::kNotPresent);
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, layout::kStackGuard)) ==
          WalkError::kNotPresent);
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, 1ull << 40)) ==
          WalkError::kNotPresent);
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, 0x0000800000000000ull)) ==
          WalkError::kNonCanonical);
}

TEST_CASE("Boot page tables protect the VMM's pages", "[vmm][boot]") {
    Booted b = boot();
    const std::uint64_t start_info = flags_at(b, layout::kStartInfo);
    CHECK((start_info & pte::kWritable) == 0);
    CHECK((start_info & pte::kNoExecute) != 0);
    const std::uint64_t hypercalls = flags_at(b, layout::kHypercallPage);
    CHECK((hypercalls & pte::kWritable) == 0);
    CHECK((hypercalls & pte::kNoExecute) == 0);
    const std::uint64_t stack = flags_at(b, layout::kBootStackTop - 8);
    CHECK((stack & pte::kWritable) != 0);
    CHECK((stack & pte::kNoExecute) != 0);
    // Without NX support the bit must not be set: it would be a reserved-bit fault.
    Booted plain = boot("", false);
    CHECK((flags_at(plain, layout::kStartInfo) & pte::kNoExecute) == 0);
}

TEST_CASE("Boot page tables map the device window above RAM, uncached", "[vmm][boot]") {
    Booted b = boot();
    CHECK(b.state.device_window == layout::kGiB);
    CHECK(b.state.doorbell_gpa == layout::kGiB);
    // The doorbell: a 4 KiB page of device memory, supervisor only.
    auto doorbell = pvkit::vmm::translate(b.memory, b.state.cr3, layout::kGiB);
    REQUIRE(doorbell.ok());
    CHECK(doorbell->page_size == layout::kPageSize);
    CHECK((doorbell->leaf_entry & pte::kCacheDisable) != 0);
    CHECK((doorbell->leaf_entry & pte::kNoExecute) != 0);
    CHECK((doorbell->leaf_entry & pte::kUser) == 0);
    // Emulated device registers after pvkit's pages, and the window's end.
    for (std::uint64_t va :
         {layout::kGiB + 0x2000, layout::kGiB + 0x1ff000, 2 * layout::kGiB - layout::kPageSize}) {
        const std::uint64_t e = flags_at(b, va);
        CHECK((e & pte::kCacheDisable) != 0);
        CHECK((e & pte::kNoExecute) != 0);
    }
    // Without a store there is no store ring page.
    CHECK(b.state.store_ring_gpa == 0);
    CHECK(error_of(pvkit::vmm::translate(b.memory, b.state.cr3, layout::kGiB + 0x1000)) ==
          WalkError::kNotPresent);
    CHECK(layout::device_window_base(layout::kGiB) == layout::kGiB);
    CHECK(layout::device_window_base(layout::kGiB + 4096) == 2 * layout::kGiB);
}

TEST_CASE("Boot places the store ring and grant pools in the device window", "[vmm][boot]") {
    Booted b;
    BootParams params;
    params.domid = 7;
    params.nx = true;
    params.store_ring = true;
    params.store_evtchn = 1;
    params.devices = {{PVKIT_DEV_BLK, 51712, 4ull << 20}, {PVKIT_DEV_NET, 0, 12 * 4096}};
    auto state = pvkit::vmm::write_boot_structures(b.memory, kernel_at_1mib(), params);
    REQUIRE(state.ok());
    b.state = state.value();
    const std::uint64_t w = layout::kGiB;
    CHECK(b.state.store_ring_gpa == w + layout::kStoreRingOffset);
    REQUIRE(b.state.pool_gpas.size() == 2);
    CHECK(b.state.pool_gpas[0] == w + layout::kPoolsOffset);
    CHECK(b.state.pool_gpas[1] == w + layout::kPoolsOffset + (4ull << 20));

    // The store ring: one cached 4 KiB page; pools cached, 2 MiB leaves
    // where they fit, and nothing mapped past a pool's end.
    auto ring = pvkit::vmm::translate(b.memory, b.state.cr3, b.state.store_ring_gpa);
    REQUIRE(ring.ok());
    CHECK(ring->page_size == layout::kPageSize);
    CHECK((ring->leaf_entry & pte::kCacheDisable) == 0);
    CHECK((ring->leaf_entry & pte::kWritable) != 0);
    auto pool = pvkit::vmm::translate(b.memory, b.state.cr3, b.state.pool_gpas[0] + 0x300000);
    REQUIRE(pool.ok());
    CHECK(pool->page_size == layout::kLargePageSize);
    CHECK((pool->leaf_entry & pte::kCacheDisable) == 0);
    CHECK((pool->leaf_entry & pte::kNoExecute) != 0);
    auto small = pvkit::vmm::translate(b.memory, b.state.cr3, b.state.pool_gpas[1] + 11 * 4096);
    REQUIRE(small.ok());
    CHECK(small->page_size == layout::kPageSize);
    CHECK(error_of(pvkit::vmm::translate(
              b.memory, b.state.cr3, b.state.pool_gpas[1] + 12 * 4096)) == WalkError::kNotPresent);

    auto info = b.memory.read<pvkit_start_info>(b.state.start_info_gpa);
    REQUIRE(info.ok());
    CHECK(info->doorbell_gpa == w);
    CHECK(info->store_ring_gpa == w + layout::kStoreRingOffset);
    CHECK(info->store_evtchn == 1);
    REQUIRE(info->nr_memmap == 6);
    CHECK(info->memmap[2].addr == w);
    CHECK(info->memmap[2].type == PVKIT_MEM_MMIO);
    CHECK(info->memmap[3].addr == w + layout::kStoreRingOffset);
    CHECK(info->memmap[3].type == PVKIT_MEM_RESERVED);
    CHECK(info->memmap[4].addr == b.state.pool_gpas[0]);
    CHECK(info->memmap[4].size == 4ull << 20);
    CHECK(info->memmap[4].type == PVKIT_MEM_GRANT_POOL);
    CHECK(info->memmap[5].type == PVKIT_MEM_GRANT_POOL);
    REQUIRE(info->nr_devices == 2);
    CHECK(info->devices[0].type == PVKIT_DEV_BLK);
    CHECK(info->devices[0].devid == 51712);
    CHECK(info->devices[0].pool_index == 0);
    CHECK(info->devices[0].pool_gpa == b.state.pool_gpas[0]);
    CHECK(info->devices[0].pool_size == 4ull << 20);
    CHECK(info->devices[1].type == PVKIT_DEV_NET);
    CHECK(info->devices[1].pool_index == 1);
    CHECK(info->devices[1].pool_size == 12 * 4096);
}

TEST_CASE("Boot refuses devices that do not fit", "[vmm][boot]") {
    using pvkit::vmm::BootDevice;
    const std::uint64_t w = layout::kGiB;
    std::vector<BootDevice> seventeen(17, BootDevice{PVKIT_DEV_BLK, 0, 4096});
    CHECK(error_of(pvkit::vmm::place_pools(w, seventeen)) == BootError::kTooManyDevices);
    CHECK(error_of(pvkit::vmm::place_pools(w, {{PVKIT_DEV_BLK, 0, 0}})) == BootError::kPoolSize);
    CHECK(error_of(pvkit::vmm::place_pools(w, {{PVKIT_DEV_BLK, 0, 4097}})) == BootError::kPoolSize);
    // The window is 1 GiB; its first 2 MiB are pvkit's pages.
    CHECK(error_of(pvkit::vmm::place_pools(w, {{PVKIT_DEV_BLK, 0, layout::kGiB}})) ==
          BootError::kWindowFull);
    auto fits =
        pvkit::vmm::place_pools(w, {{PVKIT_DEV_BLK, 0, layout::kGiB - layout::kPoolsOffset}});
    REQUIRE(fits.ok());
    CHECK(fits.value() == std::vector<std::uint64_t>{w + layout::kPoolsOffset});
    CHECK(error_of(pvkit::vmm::place_pools(
              w, {{PVKIT_DEV_BLK, 0, 512ull << 20}, {PVKIT_DEV_BLK, 1, 511ull << 20}})) ==
          BootError::kWindowFull);
}

TEST_CASE("Page-table builder rejects misaligned and overlapping ranges", "[vmm][boot]") {
    GuestMemory mem = GuestMemory::create(4ull << 20);
    PageTableBuilder tables(mem, layout::kPageTables, layout::kPageTablesEnd, true);
    CHECK(error_of(tables.map(0x1001, 0x1000, PageAccess{})) == PageTableError::kMisaligned);
    CHECK(error_of(tables.map(0x1000, 0x800, PageAccess{})) == PageTableError::kMisaligned);
    REQUIRE(tables.map(0x200000, 0x200000, PageAccess{}).ok()); // one 2 MiB leaf
    CHECK(error_of(tables.map(0x300000, 0x1000, PageAccess{})) == PageTableError::kOverlap);
    REQUIRE(tables.map(0x1000, 0x1000, PageAccess{}).ok());
    CHECK(error_of(tables.map(0x1000, 0x1000, PageAccess{})) == PageTableError::kOverlap);
}

TEST_CASE("Page-table builder reports a full table area", "[vmm][boot]") {
    GuestMemory mem = GuestMemory::create(4ull << 20);
    // Room for the PML4 and two more tables: not enough for PDPT + PD + PT.
    PageTableBuilder tables(mem, 0x10000, 0x13000, true);
    CHECK(error_of(tables.map(0x1000, 0x1000, PageAccess{})) == PageTableError::kOutOfTables);
}

TEST_CASE("Start info describes the guest", "[vmm][boot]") {
    Booted b = boot("run=hello console=hvc0");
    auto info = b.memory.read<pvkit_start_info>(b.state.start_info_gpa);
    REQUIRE(info.ok());
    CHECK(info->magic == PVKIT_START_INFO_MAGIC);
    CHECK(info->abi_version == PVKIT_ABI_VERSION);
    CHECK(info->domid == 7);
    CHECK(info->features == PVKIT_FEAT_CONSOLE_HC);
    CHECK(info->nr_ram_pages == kRam / 4096);
    CHECK(info->hypercall_page_gpa == layout::kHypercallPage);
    CHECK(info->cmdline_len == 22);
    CHECK(std::string(info->cmdline) == "run=hello console=hvc0");
    REQUIRE(info->nr_memmap == 3);
    CHECK(info->memmap[0].addr == 0);
    CHECK(info->memmap[0].size == layout::kKernelMin);
    CHECK(info->memmap[0].type == PVKIT_MEM_RESERVED);
    CHECK(info->memmap[1].addr == layout::kKernelMin);
    CHECK(info->memmap[1].size == kRam - layout::kKernelMin);
    CHECK(info->memmap[1].type == PVKIT_MEM_RAM);
    CHECK(info->memmap[2].addr == b.state.doorbell_gpa);
    CHECK(info->memmap[2].size == 4096);
    CHECK(info->memmap[2].type == PVKIT_MEM_MMIO);
    CHECK(info->doorbell_gpa == b.state.doorbell_gpa);
    CHECK(info->store_ring_gpa == 0);
    CHECK(info->store_evtchn == 0);
    CHECK(info->nr_devices == 0);
}

TEST_CASE("Boot refuses a command line that is too long or holds a NUL", "[vmm][boot]") {
    GuestMemory mem = GuestMemory::create(kRam);
    BootParams params;
    const std::string longest(PVKIT_START_INFO_CMDLINE_MAX - 1, 'x');
    params.cmdline = longest;
    CHECK(pvkit::vmm::write_boot_structures(mem, kernel_at_1mib(), params).ok());
    const std::string too_long(PVKIT_START_INFO_CMDLINE_MAX, 'x');
    params.cmdline = too_long;
    CHECK(error_of(pvkit::vmm::write_boot_structures(mem, kernel_at_1mib(), params)) ==
          BootError::kCmdlineTooLong);
    const std::string with_nul("run=hello\0x", 11);
    params.cmdline = with_nul;
    CHECK(error_of(pvkit::vmm::write_boot_structures(mem, kernel_at_1mib(), params)) ==
          BootError::kCmdlineHasNul);
}

TEST_CASE("Hypercall page holds one stub per number", "[vmm][boot]") {
    const auto page = pvkit::vmm::make_hypercall_page();
    REQUIRE(page.size() == PVKIT_PAGE_SIZE);
    for (std::uint32_t nr : {0u, 2u, 7u, 127u}) {
        const std::uint8_t* stub = &page[nr * PVKIT_HYPERCALL_STUB_SIZE];
        CHECK(stub[0] == 0xb8); // mov $nr, %eax
        std::uint32_t imm = 0;
        std::memcpy(&imm, stub + 1, 4);
        CHECK(imm == nr);
        CHECK(stub[5] == 0xe6); // out %al, $imm8
        CHECK(stub[6] == PVKIT_HYPERCALL_PORT);
        CHECK(stub[7] == 0xc3); // ret
        CHECK(stub[8] == 0x0f); // ud2 padding
        CHECK(stub[9] == 0x0b);
    }
    // SCHED_OP's stub carries the block helper in its padding.
    const std::uint8_t* helper = &page[pvkit::vmm::kBlockHelperOffset];
    CHECK(pvkit::vmm::kBlockHelperOffset == PVKIT_HC_SCHED_OP * PVKIT_HYPERCALL_STUB_SIZE + 8);
    CHECK(helper[0] == 0xfb); // sti
    CHECK(helper[1] == 0xf4); // hlt
    CHECK(helper[2] == 0xfa); // cli
    CHECK(helper[3] == 0xc3); // ret
    CHECK(helper[4] == 0x0f); // then ud2 again
    CHECK(helper[5] == 0x0b);
}

TEST_CASE("Guest CPUID carries pvkit's leaves instead of KVM's", "[vmm][boot]") {
    std::vector<kvm_cpuid_entry2> supported(3);
    supported[0].function = 1;
    supported[0].ebx = 0x05000800;      // APIC id 5
    supported[1].function = 0x40000000; // KVM's signature leaf
    supported[2].function = 0x40000001;
    const auto cpuid =
        pvkit::vmm::make_guest_cpuid(supported, PVKIT_FEAT_CONSOLE_HC, 0x4000, 0x3000);
    int base = 0;
    int info = 0;
    for (const kvm_cpuid_entry2& e : cpuid) {
        if (e.function == 1) {
            CHECK((e.ecx & (1u << 31)) != 0); // hypervisor present
            CHECK((e.ebx >> 24) == 0);
        }
        if (e.function == PVKIT_CPUID_BASE) {
            ++base;
            CHECK(e.eax == PVKIT_CPUID_MAX);
            char sig[13] = {};
            std::memcpy(sig, &e.ebx, 4);
            std::memcpy(sig + 4, &e.ecx, 4);
            std::memcpy(sig + 8, &e.edx, 4);
            CHECK(std::string(sig) == "pvkitpvkitpv");
        }
        if (e.function == PVKIT_CPUID_INFO) {
            ++info;
            CHECK(e.eax == PVKIT_ABI_VERSION);
            CHECK(e.ebx == PVKIT_FEAT_CONSOLE_HC);
            CHECK(e.ecx == 4);
            CHECK(e.edx == 3);
        }
    }
    CHECK(base == 1);
    CHECK(info == 1);
}

TEST_CASE("Entry state is 64-bit long mode at the kernel entry", "[vmm][boot]") {
    Booted b = boot();
    const kvm_sregs s = pvkit::vmm::long_mode_sregs(kvm_sregs{}, b.state);
    CHECK(s.cs.l == 1);
    CHECK(s.cs.dpl == 0);
    CHECK(s.cs.selector == layout::kKernelCs);
    CHECK((s.cr0 & 0x80000001u) == 0x80000001u); // PG | PE
    CHECK((s.cr4 & (1u << 5)) != 0);             // PAE
    CHECK((s.efer & 0x500u) == 0x500u);          // LME | LMA
    CHECK((s.efer & (1u << 11)) != 0);           // NXE, asked for
    CHECK(s.cr3 == b.state.cr3);
    CHECK(s.tr.selector == layout::kTssSelector);
    CHECK(s.tr.base == layout::kTss);
    const kvm_regs r = pvkit::vmm::entry_regs(b.state);
    CHECK(r.rip == layout::kKernelMin);
    CHECK(r.rsi == layout::kStartInfo);
    CHECK(r.rsp == layout::kBootStackTop);
    CHECK(r.rflags == 2);
    // TSS.RSP0 is the boot stack: entries from user mode land there.
    std::uint64_t rsp0 = 0;
    REQUIRE(
        b.memory.read_bytes(layout::kTss + 4, std::as_writable_bytes(std::span(&rsp0, 1))).ok());
    CHECK(rsp0 == layout::kBootStackTop);
}

TEST_CASE("pvkit-vmm requires the capabilities the design depends on", "[vmm][kvm]") {
    std::vector<std::string> names;
    for (const auto& cap : pvkit::vmm::required_capabilities()) {
        names.emplace_back(cap.name);
        CHECK(std::string(cap.why).size() > 10); // every one says why
    }
    for (const char* needed : {"KVM_CAP_IRQCHIP", "KVM_CAP_IOEVENTFD", "KVM_CAP_IRQFD",
                               "KVM_CAP_USER_MEMORY", "KVM_CAP_IRQ_ROUTING"})
        CHECK(std::find(names.begin(), names.end(), needed) != names.end());
}
