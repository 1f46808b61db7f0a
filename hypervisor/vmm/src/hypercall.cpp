#include "pvkit/vmm/hypercall.hpp"

#include <pvkit/hypercall.h>

#include "pvkit/vmm/exit_stats.hpp"

namespace pvkit::vmm {

static_assert(PVKIT_CONSOLE_WRITE_MAX == 4096, "m_console_buffer has the console limit's size");

namespace {

HypercallResult error(int err) {
    return HypercallResult{-static_cast<std::int64_t>(err), {}};
}

} // namespace

const char* hypercall_name(std::uint64_t nr) {
    switch (nr) {
    case PVKIT_HC_VERSION:
        return "version";
    case PVKIT_HC_FEATURES:
        return "features";
    case PVKIT_HC_CONSOLE_WRITE:
        return "console_write";
    case PVKIT_HC_SCHED_OP:
        return "sched_op";
    case PVKIT_HC_EVTCHN_OP:
        return "evtchn_op";
    case PVKIT_HC_GRANT_POOL_QUERY:
        return "grant_pool_query";
    case PVKIT_HC_STORE_RING_INFO:
        return "store_ring_info";
    case PVKIT_HC_START_INFO:
        return "start_info";
    default:
        return "unknown";
    }
}

HypercallResult HypercallDispatcher::dispatch(std::uint64_t nr, const HypercallArgs& args) {
    switch (nr) {
    case PVKIT_HC_VERSION:
        return HypercallResult{PVKIT_ABI_VERSION, {}};
    case PVKIT_HC_FEATURES:
        // Bit 63 is never set (abi.h), so the mask is never negative.
        return HypercallResult{static_cast<std::int64_t>(m_config.features & ~(1ull << 63)), {}};
    case PVKIT_HC_CONSOLE_WRITE:
        return console_write(args[0], args[1]);
    case PVKIT_HC_SCHED_OP:
        return sched_op(args[0], args[1]);
    case PVKIT_HC_START_INFO:
        return HypercallResult{static_cast<std::int64_t>(m_config.start_info_gpa), {}};
    // Event channels, grant pools and the store ring are the next step
    // (docs/vmm.md, "What is left"). Their feature bits are not offered,
    // so a conforming guest does not call them yet.
    case PVKIT_HC_EVTCHN_OP:
    case PVKIT_HC_GRANT_POOL_QUERY:
    case PVKIT_HC_STORE_RING_INFO:
    default:
        return error(PVKIT_ENOSYS);
    }
}

HypercallResult HypercallDispatcher::console_write(std::uint64_t gpa, std::uint64_t len) {
    if ((m_config.features & PVKIT_FEAT_CONSOLE_HC) == 0)
        return error(PVKIT_ENOSYS);
    if (len > PVKIT_CONSOLE_WRITE_MAX)
        return error(PVKIT_E2BIG);
    // Copy first, then write: the guest may change the bytes meanwhile and
    // the console gets one consistent snapshot.
    const std::span<std::byte> buffer(m_console_buffer.data(), static_cast<std::size_t>(len));
    if (!m_memory.read_bytes(gpa, buffer))
        return error(PVKIT_EFAULT);
    m_console.write(buffer);
    return HypercallResult{static_cast<std::int64_t>(len), {}};
}

HypercallResult HypercallDispatcher::sched_op(std::uint64_t command, std::uint64_t arg) {
    switch (command) {
    case PVKIT_SCHEDOP_YIELD:
        m_scheduler.yield();
        return {};
    case PVKIT_SCHEDOP_BLOCK:
        m_scheduler.block();
        return {};
    case PVKIT_SCHEDOP_SHUTDOWN:
        switch (arg) {
        case PVKIT_SHUTDOWN_POWEROFF:
            return HypercallResult{0, RunOutcome{ExitStatus::kPoweroff, "guest powered off"}};
        case PVKIT_SHUTDOWN_REBOOT:
            return HypercallResult{
                0, RunOutcome{ExitStatus::kGuestReboot, "guest asked for a reboot"}};
        case PVKIT_SHUTDOWN_CRASH:
            return HypercallResult{
                0, RunOutcome{ExitStatus::kGuestCrash, "guest shut down with reason crash"}};
        default: // 2 is reserved (Xen's suspend); everything else is unknown
            return error(PVKIT_EINVAL);
        }
    default:
        return error(PVKIT_EINVAL);
    }
}

void HypercallPort::access(const IoRequest& request, ExitContext& context) {
    if (!request.write) {
        // Nothing to read here; floating-bus value, like an empty ISA port.
        for (std::byte& b : request.data)
            b = std::byte{0xff};
        return;
    }
    auto regs = context.regs();
    if (!regs) {
        context.request_stop(
            RunOutcome{ExitStatus::kVmmError, "hypercall: " + to_string(regs.error())});
        return;
    }
    kvm_regs r = regs.value();
    // The number is RAX, not the byte written: the stub loads all of EAX.
    const std::uint64_t nr = r.rax;
    const HypercallResult result = m_dispatcher.dispatch(nr, {r.rdi, r.rsi, r.rdx, r.r10, r.r8});
    m_stats.count_hypercall(nr, result.value);
    if (result.stop) {
        context.request_stop(*result.stop);
        return;
    }
    r.rax = static_cast<std::uint64_t>(result.value);
    if (auto set = context.set_regs(r); !set)
        context.request_stop(
            RunOutcome{ExitStatus::kVmmError, "hypercall: " + to_string(set.error())});
}

} // namespace pvkit::vmm
