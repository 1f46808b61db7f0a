// The hypercall dispatcher: pvkit's hypercall ABI (pvkit/hypercall.h) on
// the VMM side.
//
// A guest calls a stub in the hypercall page; the stub's `out` to
// PVKIT_HYPERCALL_PORT exits to the VMM. HypercallPort reads the registers
// (number in RAX, arguments in RDI, RSI, RDX, R10, R8), hands them to
// HypercallDispatcher and writes the result into RAX. The dispatcher knows
// nothing about KVM, so tests drive it with plain numbers.
//
// Every argument is untrusted. Guest-physical ranges are checked against
// RAM with overflow-checked arithmetic (GuestMemory) and copied before
// use; lengths are checked against their limits before the range is.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/guest_memory.hpp"
#include "pvkit/vmm/io_bus.hpp"

namespace pvkit::vmm {

class ExitStats;

// "console_write" for PVKIT_HC_CONSOLE_WRITE; "unknown" outside the table.
const char* hypercall_name(std::uint64_t nr);

// What SCHED_OP needs from the run loop.
class SchedulerHooks {
public:
    // Give up the host CPU once.
    virtual void yield() = 0;
    // Return when the vCPU has an interrupt pending (at once if it already
    // has one) or the run loop has to stop (timeout, SIGTERM).
    virtual void block() = 0;

protected:
    ~SchedulerHooks() = default;
};

struct HypercallConfig {
    std::uint64_t features = 0;       // PVKIT_FEAT_* this VMM offers
    std::uint64_t start_info_gpa = 0; // PVKIT_HC_START_INFO's answer
};

struct HypercallResult {
    std::int64_t value = 0;         // goes to RAX: >= 0 or -PVKIT_E*
    std::optional<RunOutcome> stop; // the guest asked to stop (SHUTDOWN)
};

using HypercallArgs = std::array<std::uint64_t, 5>; // RDI, RSI, RDX, R10, R8

class HypercallDispatcher {
public:
    HypercallDispatcher(GuestMemory& memory, ConsoleSink& console, SchedulerHooks& scheduler,
                        HypercallConfig config)
        : m_memory(memory), m_console(console), m_scheduler(scheduler), m_config(config) {}

    HypercallResult dispatch(std::uint64_t nr, const HypercallArgs& args);

private:
    HypercallResult console_write(std::uint64_t gpa, std::uint64_t len);
    HypercallResult sched_op(std::uint64_t command, std::uint64_t arg);

    GuestMemory& m_memory;
    ConsoleSink& m_console;
    SchedulerHooks& m_scheduler;
    HypercallConfig m_config;
    std::array<std::byte, 4096> m_console_buffer{}; // PVKIT_CONSOLE_WRITE_MAX
};

// The device on PVKIT_HYPERCALL_PORT.
class HypercallPort final : public IoHandler {
public:
    HypercallPort(HypercallDispatcher& dispatcher, ExitStats& stats)
        : m_dispatcher(dispatcher), m_stats(stats) {}

    void access(const IoRequest& request, ExitContext& context) override;

private:
    HypercallDispatcher& m_dispatcher;
    ExitStats& m_stats;
};

} // namespace pvkit::vmm
