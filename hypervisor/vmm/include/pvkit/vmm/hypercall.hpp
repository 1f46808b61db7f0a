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

#include <pvkit/evtchn.h>
#include <pvkit/store.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/event_channels.hpp"
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

protected:
    ~SchedulerHooks() = default;
};

// Where the VMM mapped one device's grant pool (PVKIT_HC_GRANT_POOL_QUERY).
struct GrantPoolPlacement {
    std::uint64_t gpa = 0;
    std::uint32_t nr_frames = 0;
    std::uint32_t dev_type = 0; // PVKIT_DEV_*
    std::uint32_t devid = 0;
    pvkit_domid_t backend_domid = 0;
};

// Hands a device's pool and its ports' eventfds to the device's backend
// (PVKIT_HC_DEVICE_CONNECT, pvkit/hypercall.h). The ports are validated
// numbers; everything else (are they the guest's, unbound, for the right
// domain; is the backend ready) is the connector's to check.
class DeviceConnector {
public:
    // 0, or a positive PVKIT_E* number.
    virtual Errno connect(std::uint32_t pool_index, std::span<const pvkit_evtchn_port_t> ports) = 0;

protected:
    ~DeviceConnector() = default;
};

struct HypercallConfig {
    std::uint64_t features = 0;       // PVKIT_FEAT_* this VMM offers
    std::uint64_t start_info_gpa = 0; // PVKIT_HC_START_INFO's answer
};

// The PV facilities behind hypercalls 4 to 6 and 8. A facility that is
// absent answers -PVKIT_ENOSYS, whatever the feature mask says.
struct HypercallServices {
    EventChannelTable* evtchn = nullptr;
    std::vector<GrantPoolPlacement> pools;
    std::optional<pvkit_store_ring_info> store;
    DeviceConnector* connector = nullptr;
};

struct HypercallResult {
    std::int64_t value = 0;         // goes to RAX: >= 0 or -PVKIT_E*
    std::optional<RunOutcome> stop; // the guest asked to stop (SHUTDOWN)
    // SCHED_OP BLOCK with nothing to return at once: the vCPU continues in
    // the hypercall page's block helper (sti; hlt; cli; ret), so KVM halts
    // it in the kernel until an interrupt arrives.
    bool block = false;
};

using HypercallArgs = std::array<std::uint64_t, 5>; // RDI, RSI, RDX, R10, R8

class HypercallDispatcher {
public:
    HypercallDispatcher(GuestMemory& memory, ConsoleSink& console, SchedulerHooks& scheduler,
                        HypercallConfig config, HypercallServices services = {})
        : m_memory(memory), m_console(console), m_scheduler(scheduler), m_config(config),
          m_services(std::move(services)) {}

    HypercallResult dispatch(std::uint64_t nr, const HypercallArgs& args);

    // For set-up after construction (the store port is allocated later).
    HypercallServices& services() { return m_services; }

private:
    HypercallResult console_write(std::uint64_t gpa, std::uint64_t len);
    HypercallResult sched_op(std::uint64_t command, std::uint64_t arg);
    HypercallResult evtchn_op(std::uint64_t command, std::uint64_t gpa);
    HypercallResult grant_pool_query(std::uint64_t index, std::uint64_t gpa);
    HypercallResult store_ring_info(std::uint64_t gpa);
    HypercallResult device_connect(std::uint64_t gpa);

    GuestMemory& m_memory;
    ConsoleSink& m_console;
    SchedulerHooks& m_scheduler;
    HypercallConfig m_config;
    HypercallServices m_services;
    std::array<std::byte, 4096> m_console_buffer{}; // PVKIT_CONSOLE_WRITE_MAX
};

// The device on PVKIT_HYPERCALL_PORT. `block_helper_gpa` is where the
// hypercall page keeps `sti; hlt; cli; ret` (boot.hpp).
class HypercallPort final : public IoHandler {
public:
    HypercallPort(HypercallDispatcher& dispatcher, ExitStats& stats, std::uint64_t block_helper_gpa)
        : m_dispatcher(dispatcher), m_stats(stats), m_block_helper(block_helper_gpa) {}

    void access(const IoRequest& request, ExitContext& context) override;

private:
    HypercallDispatcher& m_dispatcher;
    ExitStats& m_stats;
    std::uint64_t m_block_helper;
};

} // namespace pvkit::vmm
