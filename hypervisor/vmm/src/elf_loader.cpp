#include "pvkit/vmm/elf_loader.hpp"

#include <elf.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace pvkit::vmm {

namespace {

std::string hex(std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

Unexpected<ElfFailure> fail(ElfError error, std::string detail) {
    return Unexpected{ElfFailure{error, std::move(detail)}};
}

// A copy of the T at `offset` in the file, or nothing if it does not fit.
template <class T> bool copy_from(std::span<const std::byte> file, std::uint64_t offset, T& out) {
    std::uint64_t end = 0;
    if (__builtin_add_overflow(offset, sizeof(T), &end) || end > file.size())
        return false;
    std::memcpy(&out, file.data() + offset, sizeof(T));
    return true;
}

bool is_power_of_two(std::uint64_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}

Result<void, ElfFailure> check_header(std::span<const std::byte> file, const Elf64_Ehdr& eh) {
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return fail(ElfError::kBadMagic, "the file does not start with \\x7fELF");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        return fail(ElfError::kNotElf64, "EI_CLASS is " + std::to_string(eh.e_ident[EI_CLASS]) +
                                             ", expected ELFCLASS64 (2)");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return fail(ElfError::kNotLittleEndian, "EI_DATA is " +
                                                    std::to_string(eh.e_ident[EI_DATA]) +
                                                    ", expected ELFDATA2LSB (1)");
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
        return fail(ElfError::kBadVersion, "EI_VERSION/e_version is not EV_CURRENT (1)");
    if (eh.e_type != ET_EXEC)
        return fail(ElfError::kNotExecutable,
                    "e_type is " + std::to_string(eh.e_type) +
                        ", expected ET_EXEC (2): link the kernel statically, without -pie");
    if (eh.e_machine != EM_X86_64)
        return fail(ElfError::kWrongMachine,
                    "e_machine is " + std::to_string(eh.e_machine) + ", expected EM_X86_64 (62)");
    if (eh.e_ehsize != sizeof(Elf64_Ehdr))
        return fail(ElfError::kBadHeaderSize, "e_ehsize is " + std::to_string(eh.e_ehsize) +
                                                  ", expected " +
                                                  std::to_string(sizeof(Elf64_Ehdr)));
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return fail(ElfError::kBadHeaderSize, "e_phentsize is " + std::to_string(eh.e_phentsize) +
                                                  ", expected " +
                                                  std::to_string(sizeof(Elf64_Phdr)));
    if (eh.e_phnum == 0 || eh.e_phnum > kElfMaxProgramHeaders)
        return fail(ElfError::kBadProgramHeaders, "e_phnum is " + std::to_string(eh.e_phnum) +
                                                      ", expected 1 to " +
                                                      std::to_string(kElfMaxProgramHeaders));
    std::uint64_t table_bytes = std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
    std::uint64_t table_end = 0;
    if (__builtin_add_overflow(eh.e_phoff, table_bytes, &table_end) || table_end > file.size())
        return fail(ElfError::kBadProgramHeaders, "program headers at e_phoff " + hex(eh.e_phoff) +
                                                      " (" + std::to_string(eh.e_phnum) +
                                                      " entries) extend past the end of the " +
                                                      std::to_string(file.size()) + "-byte file");
    return {};
}

Result<ElfSegment, ElfFailure> check_load_segment(std::span<const std::byte> file,
                                                  const Elf64_Phdr& ph, std::size_t index,
                                                  const ElfLoadLimits& limits) {
    const std::string name = "segment " + std::to_string(index);
    if (ph.p_filesz > ph.p_memsz)
        return fail(ElfError::kBadSegment, name + ": p_filesz " + hex(ph.p_filesz) +
                                               " is larger than p_memsz " + hex(ph.p_memsz));
    std::uint64_t file_end = 0;
    if (__builtin_add_overflow(ph.p_offset, ph.p_filesz, &file_end) || file_end > file.size())
        return fail(ElfError::kBadSegment, name + ": file bytes [" + hex(ph.p_offset) + ", +" +
                                               hex(ph.p_filesz) + ") extend past the end of the " +
                                               std::to_string(file.size()) + "-byte file");
    if (ph.p_vaddr != ph.p_paddr)
        return fail(ElfError::kBadSegment, name + ": p_vaddr " + hex(ph.p_vaddr) +
                                               " differs from p_paddr " + hex(ph.p_paddr) +
                                               "; the guest starts with an identity mapping");
    if (ph.p_align > 1) {
        if (!is_power_of_two(ph.p_align) || (ph.p_vaddr - ph.p_offset) % ph.p_align != 0)
            return fail(ElfError::kBadSegment, name + ": p_align " + hex(ph.p_align) +
                                                   " is not a power of two that p_vaddr and "
                                                   "p_offset agree on");
    }
    if (ph.p_memsz == 0) // occupies no memory: where it claims to be does not matter
        return ElfSegment{ph.p_paddr, 0, ph.p_offset, 0, ph.p_flags};
    std::uint64_t mem_end = 0;
    if (__builtin_add_overflow(ph.p_paddr, ph.p_memsz, &mem_end))
        return fail(ElfError::kSegmentOutsideRam, name + ": [" + hex(ph.p_paddr) + ", +" +
                                                      hex(ph.p_memsz) +
                                                      ") wraps around the address space");
    if (ph.p_paddr < limits.min_gpa)
        return fail(ElfError::kSegmentInReserved,
                    name + ": [" + hex(ph.p_paddr) + ", " + hex(mem_end) +
                        ") overlaps the VMM's reserved pages below " + hex(limits.min_gpa));
    if (mem_end > limits.end_gpa)
        return fail(ElfError::kSegmentOutsideRam,
                    name + ": [" + hex(ph.p_paddr) + ", " + hex(mem_end) +
                        ") does not fit in guest RAM, which ends at " + hex(limits.end_gpa));
    return ElfSegment{ph.p_paddr, ph.p_memsz, ph.p_offset, ph.p_filesz, ph.p_flags};
}

} // namespace

const char* to_string(ElfError error) {
    switch (error) {
    case ElfError::kTruncatedHeader:
        return "truncated ELF header";
    case ElfError::kBadMagic:
        return "bad ELF magic";
    case ElfError::kNotElf64:
        return "not a 64-bit ELF file";
    case ElfError::kNotLittleEndian:
        return "not a little-endian ELF file";
    case ElfError::kBadVersion:
        return "bad ELF version";
    case ElfError::kNotExecutable:
        return "not an executable ELF file";
    case ElfError::kWrongMachine:
        return "not an x86-64 ELF file";
    case ElfError::kBadHeaderSize:
        return "bad ELF header size";
    case ElfError::kBadProgramHeaders:
        return "bad program header table";
    case ElfError::kDynamic:
        return "dynamically linked ELF file";
    case ElfError::kBadSegment:
        return "malformed segment";
    case ElfError::kSegmentOutsideRam:
        return "segment outside guest RAM";
    case ElfError::kSegmentInReserved:
        return "segment overlaps the VMM's reserved pages";
    case ElfError::kSegmentOverlap:
        return "overlapping segments";
    case ElfError::kNoLoadableSegment:
        return "no loadable segment";
    case ElfError::kBadEntry:
        return "entry point outside executable segments";
    case ElfError::kTooLarge:
        return "ELF file larger than guest RAM";
    }
    return "unknown ELF error";
}

Result<ElfImage, ElfFailure> parse_elf(std::span<const std::byte> file,
                                       const ElfLoadLimits& limits) {
    if (file.size() > limits.end_gpa)
        return fail(ElfError::kTooLarge, "the file has " + std::to_string(file.size()) +
                                             " bytes; guest RAM ends at " + hex(limits.end_gpa));
    Elf64_Ehdr eh{};
    if (!copy_from(file, 0, eh))
        return fail(ElfError::kTruncatedHeader, "the file has " + std::to_string(file.size()) +
                                                    " bytes, an ELF64 header needs " +
                                                    std::to_string(sizeof(Elf64_Ehdr)));
    if (auto r = check_header(file, eh); !r)
        return Unexpected{r.error()};

    ElfImage image;
    image.entry = eh.e_entry;
    image.lowest = UINT64_MAX;
    for (std::size_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        // In range: check_header bounded the whole table.
        (void)copy_from(file, eh.e_phoff + i * sizeof(Elf64_Phdr), ph);
        if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
            return fail(ElfError::kDynamic, "segment " + std::to_string(i) +
                                                " is PT_INTERP or PT_DYNAMIC; link with "
                                                "-static -nostdlib");
        if (ph.p_type != PT_LOAD)
            continue;
        auto seg = check_load_segment(file, ph, i, limits);
        if (!seg)
            return Unexpected{seg.error()};
        if (ph.p_memsz == 0)
            continue; // valid and empty: nothing to load
        const ElfSegment& s = seg.value();
        for (const ElfSegment& other : image.segments) {
            if (s.gpa < other.gpa + other.mem_size && other.gpa < s.gpa + s.mem_size)
                return fail(ElfError::kSegmentOverlap,
                            "segment " + std::to_string(i) + " at " + hex(s.gpa) +
                                " overlaps the segment at " + hex(other.gpa));
        }
        image.segments.push_back(s);
        image.lowest = std::min(image.lowest, s.gpa);
        image.end = std::max(image.end, s.gpa + s.mem_size);
    }
    if (image.segments.empty())
        return fail(ElfError::kNoLoadableSegment, "no PT_LOAD segment with p_memsz > 0");
    bool entry_ok = false;
    for (const ElfSegment& s : image.segments) {
        if ((s.flags & PF_X) != 0 && image.entry >= s.gpa && image.entry - s.gpa < s.mem_size)
            entry_ok = true;
    }
    if (!entry_ok)
        return fail(ElfError::kBadEntry,
                    "e_entry " + hex(image.entry) + " is not inside an executable PT_LOAD segment");
    return image;
}

Result<ElfImage, ElfFailure> load_elf(std::span<const std::byte> file, GuestMemory& memory,
                                      const ElfLoadLimits& limits) {
    ElfLoadLimits clamped = limits;
    clamped.end_gpa = std::min(limits.end_gpa, memory.size());
    auto image = parse_elf(file, clamped);
    if (!image)
        return image;
    for (const ElfSegment& s : image->segments) {
        // Ranges were checked against the file and RAM by parse_elf; a
        // failure here would be a loader bug, reported rather than ignored.
        auto wrote = memory.write_bytes(s.gpa, file.subspan(s.file_offset, s.file_size));
        auto zeroed = memory.fill(s.gpa + s.file_size, s.mem_size - s.file_size, std::byte{0});
        if (!wrote || !zeroed)
            return fail(ElfError::kSegmentOutsideRam,
                        "segment at " + hex(s.gpa) + " could not be written to guest RAM");
    }
    return image;
}

std::vector<std::byte> read_kernel_file(const std::string& path, std::uint64_t max_bytes) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in)
        throw std::runtime_error("cannot open kernel " + path + ": " + std::strerror(errno));
    const std::streamoff size = in.tellg();
    if (size < 0)
        throw std::runtime_error("cannot read kernel " + path);
    if (static_cast<std::uint64_t>(size) > max_bytes)
        throw std::runtime_error("kernel " + path + " has " + std::to_string(size) +
                                 " bytes, more than guest RAM (" + std::to_string(max_bytes) + ")");
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), size))
        throw std::runtime_error("cannot read kernel " + path);
    return bytes;
}

} // namespace pvkit::vmm
