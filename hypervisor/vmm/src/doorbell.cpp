#include "pvkit/vmm/doorbell.hpp"

#include <pvkit/evtchn.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace pvkit::vmm {

namespace {

// The local APIC's MSI window; destination APIC id 0 in bits 19..12.
constexpr std::uint32_t kMsiAddress = 0xfee00000u;

// A KVM call that failed while the guest asked for something: the guest
// gets a number it can act on, the details stay in the VMM.
Errno guest_errno(const KvmError& e) {
    switch (e.err) {
    case ENOMEM:
        return PVKIT_ENOMEM;
    case ENOSPC:
        return PVKIT_ENOSPC;
    default:
        return PVKIT_EIO;
    }
}

} // namespace

void Doorbell::access(const IoRequest& request, ExitContext& /*context*/) {
    if (!request.write) {
        ++m_counters.reads;
        std::fill(request.data.begin(), request.data.end(), std::byte{0});
        return;
    }
    std::uint64_t value = 0;
    std::memcpy(&value, request.data.data(), std::min<std::size_t>(request.data.size(), 8));
    m_counters.last_dropped_value = value;
    if (request.offset == PVKIT_DOORBELL_NOTIFY && request.size == 4)
        ++m_counters.dropped_unbound;
    else
        ++m_counters.dropped_malformed;
}

nlohmann::json Doorbell::stats() const {
    return nlohmann::json{
        {"dropped_unbound", m_counters.dropped_unbound},
        {"dropped_malformed", m_counters.dropped_malformed},
        {"reads", m_counters.reads},
        {"last_dropped_value", m_counters.last_dropped_value},
    };
}

Result<void, Errno> KvmEvtchnWiring::set_routes(std::span<const Route> routes) {
    std::vector<kvm_irq_routing_entry> entries;
    entries.reserve(routes.size());
    for (const Route& r : routes) {
        kvm_irq_routing_entry e{};
        e.gsi = r.gsi;
        e.type = KVM_IRQ_ROUTING_MSI;
        e.u.msi.address_lo = kMsiAddress;
        e.u.msi.address_hi = 0;
        e.u.msi.data = r.vector; // fixed delivery, edge triggered
        entries.push_back(e);
    }
    if (auto r = m_vm.set_gsi_routing(entries); !r)
        return Unexpected{guest_errno(r.error())};
    return {};
}

Result<void, Errno> KvmEvtchnWiring::kick(pvkit_evtchn_port_t port, int fd, bool assign) {
    kvm_ioeventfd req{};
    req.datamatch = port;
    req.addr = m_doorbell + PVKIT_DOORBELL_NOTIFY;
    req.len = 4;
    req.fd = fd;
    req.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0u : KVM_IOEVENTFD_FLAG_DEASSIGN);
    if (auto r = m_vm.ioeventfd(req); !r)
        return Unexpected{guest_errno(r.error())};
    return {};
}

Result<void, Errno> KvmEvtchnWiring::irq(std::uint32_t gsi, int fd, bool assign) {
    kvm_irqfd req{};
    req.fd = static_cast<std::uint32_t>(fd);
    req.gsi = gsi;
    req.flags = assign ? 0u : KVM_IRQFD_FLAG_DEASSIGN;
    if (auto r = m_vm.irqfd(req); !r)
        return Unexpected{guest_errno(r.error())};
    return {};
}

} // namespace pvkit::vmm
