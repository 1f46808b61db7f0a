// Loads a static ELF64 x86-64 executable (the guest kernel) into guest RAM.
//
// The file is untrusted input: every header field is checked, every file
// range and every guest-physical range is computed with overflow checks,
// and headers are copied out of the file before they are looked at. The
// loader validates the whole file first and writes guest memory only when
// every segment has passed, so a rejected image leaves RAM untouched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pvkit/transport/result.hpp"
#include "pvkit/vmm/guest_memory.hpp"

namespace pvkit::vmm {

enum class ElfError {
    kTruncatedHeader,   // the file is shorter than an ELF64 header
    kBadMagic,          // not "\x7fELF"
    kNotElf64,          // EI_CLASS is not ELFCLASS64
    kNotLittleEndian,   // EI_DATA is not ELFDATA2LSB
    kBadVersion,        // EI_VERSION or e_version is not EV_CURRENT
    kNotExecutable,     // e_type is not ET_EXEC (relocatable, shared, core)
    kWrongMachine,      // e_machine is not EM_X86_64
    kBadHeaderSize,     // e_ehsize or e_phentsize is not the ELF64 size
    kBadProgramHeaders, // no program headers, too many, or outside the file
    kDynamic,           // PT_INTERP or PT_DYNAMIC: only static images are loaded
    kBadSegment,        // filesz > memsz, file range outside the file, vaddr != paddr, bad align
    kSegmentOutsideRam, // [paddr, paddr + memsz) is not inside guest RAM
    kSegmentInReserved, // the segment overlaps the VMM's pages (below layout::kKernelMin)
    kSegmentOverlap,    // two PT_LOAD segments overlap
    kNoLoadableSegment, // no PT_LOAD segment with memory
    kBadEntry,          // e_entry is not inside an executable PT_LOAD segment
    kTooLarge,          // the file is larger than guest RAM
};
const char* to_string(ElfError error);

struct ElfFailure {
    ElfError error;
    std::string detail; // names the header field or segment and the numbers
};

struct ElfSegment {
    std::uint64_t gpa = 0;
    std::uint64_t mem_size = 0;
    std::uint64_t file_offset = 0;
    std::uint64_t file_size = 0;
    std::uint32_t flags = 0; // PF_R | PF_W | PF_X
};

struct ElfImage {
    std::uint64_t entry = 0;
    std::vector<ElfSegment> segments; // PT_LOAD segments with memory, in file order
    std::uint64_t lowest = 0;         // lowest loaded address
    std::uint64_t end = 0;            // one past the highest loaded byte
};

// Where segments may go: [min_gpa, end_gpa).
struct ElfLoadLimits {
    std::uint64_t min_gpa = 0;
    std::uint64_t end_gpa = 0;
};

// At most this many program headers; a kernel has a handful.
inline constexpr std::uint16_t kElfMaxProgramHeaders = 64;

// Validates `file` against `limits` without touching guest memory.
Result<ElfImage, ElfFailure> parse_elf(std::span<const std::byte> file,
                                       const ElfLoadLimits& limits);

// parse_elf, then copies each segment and zero-fills its tail (.bss).
Result<ElfImage, ElfFailure> load_elf(std::span<const std::byte> file, GuestMemory& memory,
                                      const ElfLoadLimits& limits);

// Reads a whole kernel file of at most `max_bytes`. Throws
// std::runtime_error naming the path.
std::vector<std::byte> read_kernel_file(const std::string& path, std::uint64_t max_bytes);

} // namespace pvkit::vmm
