#include "pvkit/vmm/hypercall.hpp"

#include <pvkit/grant.h>
#include <pvkit/hypercall.h>

#include <algorithm>

#include "pvkit/vmm/exit_stats.hpp"

namespace pvkit::vmm {

static_assert(PVKIT_CONSOLE_WRITE_MAX == 4096, "m_console_buffer has the console limit's size");

namespace {

HypercallResult error(int err) {
    return HypercallResult{-static_cast<std::int64_t>(err), {}};
}

HypercallResult success() {
    return HypercallResult{0, {}};
}

constexpr std::uint64_t kRflagsIf = 1ull << 9;

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
    case PVKIT_HC_DEVICE_CONNECT:
        return "device_connect";
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
    case PVKIT_HC_EVTCHN_OP:
        return evtchn_op(args[0], args[1]);
    case PVKIT_HC_GRANT_POOL_QUERY:
        return grant_pool_query(args[0], args[1]);
    case PVKIT_HC_STORE_RING_INFO:
        return store_ring_info(args[0]);
    case PVKIT_HC_DEVICE_CONNECT:
        return device_connect(args[0]);
    default:
        return error(PVKIT_ENOSYS);
    }
}

// Each operation copies its structure in once, checks the copy (reserved
// fields zero, numbers in range), acts on the copy, and writes the whole
// structure back only on success: a failed call leaves guest memory alone.
HypercallResult HypercallDispatcher::evtchn_op(std::uint64_t command, std::uint64_t gpa) {
    EventChannelTable* table = m_services.evtchn;
    if (table == nullptr)
        return error(PVKIT_ENOSYS);
    switch (command) {
    case PVKIT_EVTCHNOP_ALLOC_UNBOUND: {
        auto in = m_memory.read<pvkit_evtchn_alloc_unbound>(gpa);
        if (!in)
            return error(PVKIT_EFAULT);
        if (in->pad != 0 || in->pad2 != 0)
            return error(PVKIT_EINVAL);
        auto port = table->alloc_unbound(in->remote_dom, in->vector);
        if (!port)
            return error(port.error());
        pvkit_evtchn_alloc_unbound out = in.value();
        out.port = port.value();
        // The range was readable a moment ago, so it is writable; should
        // that ever change, the port must not leak.
        if (!m_memory.write(gpa, out)) {
            (void)table->close(port.value());
            return error(PVKIT_EFAULT);
        }
        return success();
    }
    case PVKIT_EVTCHNOP_BIND_INTERDOMAIN: {
        auto in = m_memory.read<pvkit_evtchn_bind_interdomain>(gpa);
        if (!in)
            return error(PVKIT_EFAULT);
        if (in->pad != 0)
            return error(PVKIT_EINVAL);
        auto port = table->bind_interdomain(in->remote_dom, in->remote_port, in->vector);
        if (!port)
            return error(port.error());
        pvkit_evtchn_bind_interdomain out = in.value();
        out.local_port = port.value();
        if (!m_memory.write(gpa, out)) {
            (void)table->close(port.value());
            return error(PVKIT_EFAULT);
        }
        return success();
    }
    case PVKIT_EVTCHNOP_CLOSE: {
        auto in = m_memory.read<pvkit_evtchn_close>(gpa);
        if (!in)
            return error(PVKIT_EFAULT);
        if (in->pad != 0)
            return error(PVKIT_EINVAL);
        if (auto r = table->close(in->port); !r)
            return error(r.error());
        return success();
    }
    case PVKIT_EVTCHNOP_STATUS: {
        auto in = m_memory.read<pvkit_evtchn_status>(gpa);
        if (!in)
            return error(PVKIT_EFAULT);
        if (in->pad != 0 || in->pad2 != 0)
            return error(PVKIT_EINVAL);
        auto st = table->status(in->port);
        if (!st)
            return error(st.error());
        if (!m_memory.write(gpa, st.value()))
            return error(PVKIT_EFAULT);
        return success();
    }
    default:
        return error(PVKIT_EINVAL);
    }
}

HypercallResult HypercallDispatcher::grant_pool_query(std::uint64_t index, std::uint64_t gpa) {
    if ((m_config.features & PVKIT_FEAT_GRANT_POOLS) == 0)
        return error(PVKIT_ENOSYS);
    if (index >= m_services.pools.size())
        return error(PVKIT_ENOENT);
    const GrantPoolPlacement& p = m_services.pools[static_cast<std::size_t>(index)];
    pvkit_grant_pool_info info{};
    info.gpa = p.gpa;
    info.nr_frames = p.nr_frames;
    info.dev_type = p.dev_type;
    info.devid = p.devid;
    info.backend_domid = p.backend_domid;
    if (!m_memory.write(gpa, info))
        return error(PVKIT_EFAULT);
    return success();
}

HypercallResult HypercallDispatcher::store_ring_info(std::uint64_t gpa) {
    if (!m_services.store || (m_config.features & PVKIT_FEAT_STORE_RING) == 0)
        return error(PVKIT_ENOSYS);
    if (!m_memory.write(gpa, *m_services.store))
        return error(PVKIT_EFAULT);
    return success();
}

HypercallResult HypercallDispatcher::device_connect(std::uint64_t gpa) {
    if (m_services.connector == nullptr || (m_config.features & PVKIT_FEAT_DEVICE_CONNECT) == 0)
        return error(PVKIT_ENOSYS);
    auto in = m_memory.read<pvkit_device_connect>(gpa);
    if (!in)
        return error(PVKIT_EFAULT);
    const pvkit_device_connect& req = in.value();
    if (req.reserved[0] != 0 || req.reserved[1] != 0 || req.nr_queues == 0 ||
        req.nr_queues > PVKIT_DEVICE_CONNECT_MAX_QUEUES)
        return error(PVKIT_EINVAL);
    const std::span<const pvkit_evtchn_port_t> ports(req.ports, req.nr_queues);
    for (std::size_t i = 0; i < PVKIT_DEVICE_CONNECT_MAX_QUEUES; ++i) {
        const pvkit_evtchn_port_t p = req.ports[i];
        if (i >= req.nr_queues) {
            if (p != 0)
                return error(PVKIT_EINVAL);
            continue;
        }
        if (p == 0 || p > PVKIT_EVTCHN_MAX_PORT || std::count(ports.begin(), ports.end(), p) != 1)
            return error(PVKIT_EINVAL);
    }
    if (req.pool_index >= m_services.pools.size())
        return error(PVKIT_ENOENT);
    if (const Errno e = m_services.connector->connect(req.pool_index, ports); e != 0)
        return error(e);
    return success();
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
    case PVKIT_SCHEDOP_BLOCK: {
        // HypercallPort decides with the caller's RFLAGS.IF (see there).
        HypercallResult r = success();
        r.block = true;
        return r;
    }
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
    // BLOCK: the ABI asks the guest to call with interrupts off, after its
    // last check for work. The vCPU then resumes in the block helper
    // instead of at the stub's ret: `sti; hlt` lets KVM halt it in the
    // kernel (no exit to this process) until an interrupt arrives; the
    // interrupt is delivered right after the hlt (the STI shadow covers
    // the hlt, so a wakeup that arrived before it is not lost), then `cli;
    // ret` returns to the caller with interrupts off again. A caller with
    // interrupts on could take its wakeup before the hlt and then sleep
    // until the next one, so it gets an immediate return instead.
    if (result.block && (r.rflags & kRflagsIf) == 0)
        r.rip = m_block_helper;
    if (auto set = context.set_regs(r); !set)
        context.request_stop(
            RunOutcome{ExitStatus::kVmmError, "hypercall: " + to_string(set.error())});
}

} // namespace pvkit::vmm
