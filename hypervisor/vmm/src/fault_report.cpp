#include "pvkit/vmm/fault_report.hpp"

#include <cstdio>

#include "pvkit/vmm/page_tables.hpp"

namespace pvkit::vmm {

namespace {

constexpr std::uint64_t kCr0Pg = 1ull << 31;
constexpr std::size_t kMaxInstructionBytes = 15; // longest x86 instruction

std::string hex(std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

} // namespace

GuestBytes read_guest_virtual(const GuestMemory& memory, const kvm_sregs& sregs, std::uint64_t gva,
                              std::size_t max) {
    GuestBytes out;
    const bool paging = (sregs.cr0 & kCr0Pg) != 0;
    std::uint64_t va = gva;
    // Byte by byte keeps page crossings trivial; max is tiny.
    for (std::size_t i = 0; i < max; ++i, ++va) {
        std::uint64_t gpa = va;
        if (paging) {
            auto t = translate(memory, sregs.cr3, va);
            if (!t) {
                out.stopped = hex(va) + " is " + to_string(t.error());
                break;
            }
            gpa = t->gpa;
        }
        auto byte = memory.read<std::uint8_t>(gpa);
        if (!byte) {
            out.stopped = hex(va) + " maps to " + hex(gpa) + ", which is not guest RAM";
            break;
        }
        out.bytes.push_back(byte.value());
    }
    return out;
}

std::string format_bytes(std::span<const std::uint8_t> bytes) {
    std::string out;
    char buf[4];
    for (std::uint8_t b : bytes) {
        std::snprintf(buf, sizeof buf, "%02x", b);
        if (!out.empty())
            out += ' ';
        out += buf;
    }
    return out;
}

std::string describe_vcpu(const GuestMemory& memory, const Vcpu& vcpu) {
    auto regs = vcpu.regs();
    auto sregs = vcpu.sregs();
    if (!regs || !sregs)
        return "vCPU registers unreadable (" + to_string(!regs ? regs.error() : sregs.error()) +
               ")";
    const unsigned cpl = sregs->cs.selector & 3u;
    std::string out = "rip " + hex(regs->rip) + " (cpl " + std::to_string(cpl) + ", rsp " +
                      hex(regs->rsp) + ", cr2 " + hex(sregs->cr2) + ")";
    const GuestBytes insn =
        read_guest_virtual(memory, sregs.value(), regs->rip, kMaxInstructionBytes);
    if (!insn.bytes.empty())
        out += ", instruction bytes " + format_bytes(insn.bytes);
    if (!insn.stopped.empty())
        out += insn.bytes.empty() ? ", instruction bytes unreadable: " + insn.stopped
                                  : " (then " + insn.stopped + ")";
    return out;
}

} // namespace pvkit::vmm
