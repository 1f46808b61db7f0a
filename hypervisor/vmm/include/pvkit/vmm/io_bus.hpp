// The exit dispatcher's address spaces: port I/O and MMIO ranges mapped to
// device handlers. The run loop looks up each KVM_EXIT_IO and
// KVM_EXIT_MMIO here; the hypercall port, the serial console, the POST-code
// port and the doorbell register today, emulated disks and NICs later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>

#include "pvkit/transport/result.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/kvm.hpp"

namespace pvkit::vmm {

enum class IoSpace { kPort, kMmio };

// One access, already checked to lie wholly inside the handler's range.
struct IoRequest {
    IoSpace space = IoSpace::kPort;
    std::uint64_t address = 0; // port number or guest-physical address
    std::uint64_t offset = 0;  // address minus the base the handler registered
    std::uint32_t size = 0;    // bytes: 1, 2, 4 (ports) or up to 8 (MMIO)
    bool write = false;
    // `size` bytes: the value written, or where a read leaves its result.
    // Reads start zero-filled.
    std::span<std::byte> data;
};

// What a handler may do with the vCPU whose exit it is serving. The run
// loop implements it; tests fake it.
class ExitContext {
public:
    virtual Result<kvm_regs, KvmError> regs() = 0;
    virtual Result<void, KvmError> set_regs(const kvm_regs& regs) = 0;
    // Stops the run loop after this exit with `outcome` (first request wins).
    virtual void request_stop(RunOutcome outcome) = 0;

protected:
    ~ExitContext() = default;
};

class IoHandler {
public:
    virtual ~IoHandler() = default;
    virtual void access(const IoRequest& request, ExitContext& context) = 0;
};

enum class BusError {
    kEmpty,    // length 0
    kOverflow, // base + length wraps around
    kOverlap,  // intersects a registered range
};
const char* to_string(BusError error);

class IoBus {
public:
    struct Range {
        std::uint64_t base = 0;
        std::uint64_t length = 0;
        std::string name;
        IoHandler* handler = nullptr;
    };

    // Registers [base, base + length) for `handler`, which must outlive the
    // bus. `name` appears in statistics and diagnostics.
    Result<void, BusError> add(std::uint64_t base, std::uint64_t length, std::string name,
                               IoHandler& handler);

    // The range holding all of [address, address + size), if any. An access
    // that straddles two ranges or a range's end matches nothing.
    [[nodiscard]] const Range* find(std::uint64_t address, std::uint64_t size) const;

    [[nodiscard]] const std::map<std::uint64_t, Range>& ranges() const { return m_ranges; }

private:
    std::map<std::uint64_t, Range> m_ranges; // by base
};

} // namespace pvkit::vmm
