// The doorbell page (pvkit/evtchn.h) and the KVM side of event channels.
//
// A guest notifies port P by writing P, 4 bytes, at PVKIT_DOORBELL_NOTIFY.
// Every allocated port has a KVM_IOEVENTFD with datamatch P there, so
// those writes never leave the kernel. Whatever still exits to the VMM is
// a write nobody can receive (an unallocated port, or the wrong size or
// offset) or a read: `Doorbell` counts it and drops it; the guest goes on.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "pvkit/vmm/event_channels.hpp"
#include "pvkit/vmm/io_bus.hpp"
#include "pvkit/vmm/kvm.hpp"

namespace pvkit::vmm {

struct DoorbellCounters {
    std::uint64_t dropped_unbound = 0;   // 4-byte writes of a port no ioeventfd matched
    std::uint64_t dropped_malformed = 0; // writes of another size or at another offset
    std::uint64_t reads = 0;             // reads return 0
    std::uint64_t last_dropped_value = 0;
};

class Doorbell final : public IoHandler {
public:
    void access(const IoRequest& request, ExitContext& context) override;

    [[nodiscard]] const DoorbellCounters& counters() const { return m_counters; }
    [[nodiscard]] nlohmann::json stats() const;

private:
    DoorbellCounters m_counters;
};

// EvtchnWiring on a real VM: MSI routes to the local APIC (destination
// APIC id 0, fixed delivery, edge), irqfds on those GSIs, and ioeventfds
// on the doorbell with datamatch = port.
class KvmEvtchnWiring final : public EvtchnWiring {
public:
    KvmEvtchnWiring(Vm& vm, std::uint64_t doorbell_gpa) : m_vm(vm), m_doorbell(doorbell_gpa) {}

    Result<void, Errno> set_routes(std::span<const Route> routes) override;
    Result<void, Errno> kick(pvkit_evtchn_port_t port, int fd, bool assign) override;
    Result<void, Errno> irq(std::uint32_t gsi, int fd, bool assign) override;

private:
    Vm& m_vm;
    std::uint64_t m_doorbell;
};

} // namespace pvkit::vmm
