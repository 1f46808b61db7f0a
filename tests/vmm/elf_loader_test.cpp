// The ELF loader takes a file nobody vouches for: one test per rejection.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>

#include "pvkit/vmm/elf_loader.hpp"
#include "pvkit/vmm/guest_memory.hpp"
#include "pvkit/vmm/layout.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::ElfBuilder;
using pvkit::vmm::ElfError;
using pvkit::vmm::ElfLoadLimits;
using pvkit::vmm::GuestMemory;
namespace layout = pvkit::vmm::layout;

namespace {

constexpr std::uint64_t kRam = layout::kMinRam;
constexpr std::uint64_t kLoad = layout::kKernelMin;
const ElfLoadLimits kLimits{layout::kKernelMin, kRam};

ElfBuilder valid() {
    return ElfBuilder(kLoad, 16, 0x1000);
}

// The error parse_elf reports for `file`; fails the test if it accepts it.
ElfError rejection(const std::vector<std::byte>& file) {
    auto r = pvkit::vmm::parse_elf(file, kLimits);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().detail);
    CHECK_FALSE(r.error().detail.empty());
    return r.error().error;
}

} // namespace

TEST_CASE("ELF loader loads a valid image and zero-fills its bss", "[vmm][elf]") {
    GuestMemory mem = GuestMemory::create(kRam);
    // Dirty the bss area first: the loader must clear it, not rely on RAM being fresh.
    REQUIRE(mem.fill(kLoad, 0x2000, std::byte{0xaa}).ok());
    ElfBuilder b = valid();
    auto image = pvkit::vmm::load_elf(b.build(), mem, kLimits);
    REQUIRE(image.ok());
    CHECK(image->entry == kLoad);
    REQUIRE(image->segments.size() == 1);
    CHECK(image->lowest == kLoad);
    CHECK(image->end == kLoad + 16 + 0x1000);
    CHECK(mem.read<std::uint8_t>(kLoad).value() == 0x90);
    CHECK(mem.read<std::uint8_t>(kLoad + 15).value() == 0x90);
    CHECK(mem.read<std::uint8_t>(kLoad + 16).value() == 0);
    CHECK(mem.read<std::uint8_t>(kLoad + 16 + 0xfff).value() == 0);
    CHECK(mem.read<std::uint8_t>(kLoad + 16 + 0x1000).value() == 0xaa); // past memsz: untouched
}

TEST_CASE("ELF loader loads the mini guest kernel", "[vmm][elf]") {
    GuestMemory mem = GuestMemory::create(kRam);
    auto file = pvkit::test::read_binary_file(PVKIT_GUEST_KERNEL);
    auto image = pvkit::vmm::load_elf(file, mem, kLimits);
    REQUIRE(image.ok());
    CHECK(image->entry == kLoad);
    CHECK(image->lowest >= layout::kKernelMin);
    CHECK(image->end <= 0x400000);
}

TEST_CASE("ELF loader rejects files too short for a header", "[vmm][elf]") {
    auto file = valid().build();
    CHECK(rejection({}) == ElfError::kTruncatedHeader);
    file.resize(sizeof(Elf64_Ehdr) - 1);
    CHECK(rejection(file) == ElfError::kTruncatedHeader);
}

TEST_CASE("ELF loader rejects bad magic", "[vmm][elf]") {
    auto file = valid().build();
    file[1] = std::byte{'X'};
    CHECK(rejection(file) == ElfError::kBadMagic);
    std::vector<std::byte> text(200, std::byte{'#'});
    CHECK(rejection(text) == ElfError::kBadMagic);
}

TEST_CASE("ELF loader rejects other classes, byte orders and versions", "[vmm][elf]") {
    ElfBuilder b = valid();
    b.header.e_ident[EI_CLASS] = ELFCLASS32;
    CHECK(rejection(b.build()) == ElfError::kNotElf64);
    b = valid();
    b.header.e_ident[EI_DATA] = ELFDATA2MSB;
    CHECK(rejection(b.build()) == ElfError::kNotLittleEndian);
    b = valid();
    b.header.e_ident[EI_VERSION] = 2;
    CHECK(rejection(b.build()) == ElfError::kBadVersion);
    b = valid();
    b.header.e_version = 0;
    CHECK(rejection(b.build()) == ElfError::kBadVersion);
}

TEST_CASE("ELF loader rejects non-executables and other machines", "[vmm][elf]") {
    ElfBuilder b = valid();
    b.header.e_type = ET_DYN; // a PIE
    CHECK(rejection(b.build()) == ElfError::kNotExecutable);
    b.header.e_type = ET_REL;
    CHECK(rejection(b.build()) == ElfError::kNotExecutable);
    b = valid();
    b.header.e_machine = EM_386;
    CHECK(rejection(b.build()) == ElfError::kWrongMachine);
}

TEST_CASE("ELF loader rejects wrong header and entry sizes", "[vmm][elf]") {
    ElfBuilder b = valid();
    b.header.e_ehsize = 52;
    CHECK(rejection(b.build()) == ElfError::kBadHeaderSize);
    b = valid();
    b.header.e_phentsize = 32;
    CHECK(rejection(b.build()) == ElfError::kBadHeaderSize);
}

TEST_CASE("ELF loader rejects a program header table that is empty, huge or outside the file",
          "[vmm][elf]") {
    ElfBuilder b = valid();
    b.header.e_phnum = 0;
    b.segments.clear();
    CHECK(rejection(b.build()) == ElfError::kBadProgramHeaders);
    b = valid();
    b.header.e_phnum = pvkit::vmm::kElfMaxProgramHeaders + 1;
    CHECK(rejection(b.build()) == ElfError::kBadProgramHeaders);
    b = valid();
    b.header.e_phnum = 0xffff; // PN_XNUM: extended numbering is not supported
    CHECK(rejection(b.build()) == ElfError::kBadProgramHeaders);
    b = valid();
    b.header.e_phoff = 1 << 20;
    CHECK(rejection(b.build()) == ElfError::kBadProgramHeaders);
    b = valid();
    b.header.e_phoff = std::numeric_limits<std::uint64_t>::max() - 8; // offset + size wraps
    CHECK(rejection(b.build()) == ElfError::kBadProgramHeaders);
    // Truncated in the middle of the table.
    auto file = valid().build();
    file.resize(sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) / 2);
    CHECK(rejection(file) == ElfError::kBadProgramHeaders);
}

TEST_CASE("ELF loader rejects dynamically linked images", "[vmm][elf]") {
    ElfBuilder b = valid();
    Elf64_Phdr& interp = b.add_segment(kLoad + 0x10000, {}, 0, PF_R);
    interp.p_type = PT_INTERP;
    CHECK(rejection(b.build()) == ElfError::kDynamic);
}

TEST_CASE("ELF loader rejects malformed segments", "[vmm][elf]") {
    SECTION("file size larger than memory size") {
        ElfBuilder b = valid();
        b.segments[0].p_memsz = 8;
        CHECK(rejection(b.build()) == ElfError::kBadSegment);
    }
    SECTION("file bytes past the end of the file") {
        ElfBuilder b = valid();
        b.segments[0].p_filesz = 4096;
        b.segments[0].p_memsz = 8192;
        CHECK(rejection(b.build()) == ElfError::kBadSegment);
    }
    SECTION("file offset plus size wraps") {
        ElfBuilder b = valid();
        b.segments[0].p_offset = std::numeric_limits<std::uint64_t>::max() - 200;
        CHECK(rejection(b.build()) == ElfError::kBadSegment);
    }
    SECTION("virtual and physical addresses differ") {
        ElfBuilder b = valid();
        b.segments[0].p_vaddr = 0xffffffff80000000ull;
        CHECK(rejection(b.build()) == ElfError::kBadSegment);
    }
    SECTION("alignment not a power of two") {
        ElfBuilder b = valid();
        b.segments[0].p_align = 3;
        CHECK(rejection(b.build()) == ElfError::kBadSegment);
    }
}

TEST_CASE("ELF loader rejects segments outside guest RAM", "[vmm][elf]") {
    SECTION("wholly past the end") {
        ElfBuilder b(kRam, 16, 0);
        CHECK(rejection(b.build()) == ElfError::kSegmentOutsideRam);
    }
    SECTION("crossing the end") {
        ElfBuilder b(kRam - 8, 16, 0);
        CHECK(rejection(b.build()) == ElfError::kSegmentOutsideRam);
    }
    SECTION("bss crossing the end") {
        ElfBuilder b(kLoad, 16, kRam);
        CHECK(rejection(b.build()) == ElfError::kSegmentOutsideRam);
    }
    SECTION("address plus size wraps") {
        ElfBuilder b(0xfffffffffffff000ull, 16, 0x10000);
        CHECK(rejection(b.build()) == ElfError::kSegmentOutsideRam);
    }
}

TEST_CASE("ELF loader rejects segments that overlap the VMM's reserved pages", "[vmm][elf]") {
    SECTION("over the page tables") {
        ElfBuilder b(layout::kPageTables, 16, 0);
        CHECK(rejection(b.build()) == ElfError::kSegmentInReserved);
    }
    SECTION("at address zero") {
        ElfBuilder b(0, 16, 0);
        CHECK(rejection(b.build()) == ElfError::kSegmentInReserved);
    }
    SECTION("straddling the start of the kernel area") {
        ElfBuilder b(layout::kKernelMin - 8, 16, 0);
        CHECK(rejection(b.build()) == ElfError::kSegmentInReserved);
    }
}

TEST_CASE("ELF loader rejects overlapping segments", "[vmm][elf]") {
    ElfBuilder b = valid(); // [kLoad, kLoad + 0x1010)
    b.add_segment(kLoad + 0x1000, std::vector<std::byte>(8), 8, PF_R | PF_W);
    CHECK(rejection(b.build()) == ElfError::kSegmentOverlap);
}

TEST_CASE("ELF loader rejects images with nothing to load", "[vmm][elf]") {
    ElfBuilder b = valid();
    b.segments[0].p_type = PT_NOTE;
    CHECK(rejection(b.build()) == ElfError::kNoLoadableSegment);
}

TEST_CASE("ELF loader rejects an entry point outside executable segments", "[vmm][elf]") {
    ElfBuilder b = valid();
    b.header.e_entry = kLoad + 0x100000;
    CHECK(rejection(b.build()) == ElfError::kBadEntry);
    b = valid();
    b.segments[0].p_flags = PF_R | PF_W; // entry in data
    CHECK(rejection(b.build()) == ElfError::kBadEntry);
}

TEST_CASE("ELF loader rejects a file larger than guest RAM", "[vmm][elf]") {
    ElfBuilder b = valid();
    auto file = b.build();
    file.resize(kRam + 1);
    CHECK(rejection(file) == ElfError::kTooLarge);
}

TEST_CASE("A rejected image leaves guest RAM untouched", "[vmm][elf]") {
    GuestMemory mem = GuestMemory::create(kRam);
    ElfBuilder b = valid();
    // The second segment is bad; the first must not have been written.
    b.add_segment(kRam - 4, std::vector<std::byte>(8, std::byte{1}), 8, PF_R);
    auto r = pvkit::vmm::load_elf(b.build(), mem, kLimits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().error == ElfError::kSegmentOutsideRam);
    CHECK(mem.read<std::uint64_t>(kLoad).value() == 0);
}

TEST_CASE("ELF loader ignores empty PT_LOAD segments but still checks their file range",
          "[vmm][elf]") {
    ElfBuilder b = valid();
    b.add_segment(0, {}, 0, PF_R); // at 0, which is reserved, but it takes no memory
    auto r = pvkit::vmm::parse_elf(b.build(), kLimits);
    REQUIRE(r.ok());
    CHECK(r->segments.size() == 1);
    b.segments.back().p_filesz = 8; // claims bytes with no memory to hold them
    CHECK(rejection(b.build()) == ElfError::kBadSegment);
}
