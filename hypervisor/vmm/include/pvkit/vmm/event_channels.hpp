// The guest's event channels (pvkit/evtchn.h): which ports exist, what
// they are connected to, and the two eventfds behind each.
//
// Every allocated port P has two eventfds:
//   kick  registered with KVM_IOEVENTFD on the doorbell (4-byte write of P
//         at PVKIT_DOORBELL_NOTIFY): the guest's notification, which KVM
//         turns into an eventfd signal without leaving the kernel;
//   irq   registered with KVM_IRQFD on GSI P, whose route is an MSI to the
//         local APIC with the vector the guest chose: a signal on it
//         interrupts the guest, again without the VMM.
// The backend of a device receives both (the VMM hands them off), so the
// VMM process is on neither data path. A loopback pair (BIND_INTERDOMAIN
// to a port of the same domain) crosses them: each port's kick eventfd is
// the other's irq eventfd, and the guest notifies itself in the kernel.
//
// The table decides and keeps state; `EvtchnWiring` performs the KVM calls,
// so tests drive the table with a fake. Errors are positive PVKIT_E*
// numbers (the hypercall layer negates them).
#pragma once

#include <pvkit/abi.h>
#include <pvkit/evtchn.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::vmm {

// Positive PVKIT_E* number.
using Errno = int;

class EvtchnWiring {
public:
    struct Route {
        std::uint32_t gsi = 0;
        std::uint32_t vector = 0;
    };
    // Replaces the set of event-channel interrupt routes (an MSI to the
    // local APIC with `vector` for each `gsi`).
    virtual Result<void, Errno> set_routes(std::span<const Route> routes) = 0;
    // Assigns (or removes) `fd` as the eventfd signalled by a doorbell
    // write of `port`.
    virtual Result<void, Errno> kick(pvkit_evtchn_port_t port, int fd, bool assign) = 0;
    // Assigns (or removes) `fd` as the eventfd that raises `gsi`.
    virtual Result<void, Errno> irq(std::uint32_t gsi, int fd, bool assign) = 0;

protected:
    ~EvtchnWiring() = default;
};

// Duplicates of a port's eventfds, for a hand-off to its backend.
struct PortFds {
    UniqueFd kick; // the guest signals it (doorbell); the backend waits on it
    UniqueFd irq;  // the backend signals it; the guest gets the port's vector
};

struct EvtchnCounters {
    std::uint64_t allocated = 0; // ALLOC_UNBOUND, BIND_INTERDOMAIN and VMM ports
    std::uint64_t closed = 0;
    std::uint64_t refused = 0;   // operations that returned an error
    std::uint64_t connected = 0; // ports handed to a backend
};

class EventChannelTable {
public:
    // `self` is the guest's domid (PVKIT_DOMID_SELF names it too).
    EventChannelTable(EvtchnWiring& wiring, pvkit_domid_t self);

    // The guest's operations, arguments already copied out of guest memory.
    Result<pvkit_evtchn_port_t, Errno> alloc_unbound(pvkit_domid_t remote, std::uint32_t vector);
    // Only loopback binding (remote = self) is possible: a port of another
    // domain lives in another VMM, and a host backend binds by hand-off.
    Result<pvkit_evtchn_port_t, Errno>
    bind_interdomain(pvkit_domid_t remote, pvkit_evtchn_port_t remote_port, std::uint32_t vector);
    Result<void, Errno> close(pvkit_evtchn_port_t port);
    [[nodiscard]] Result<pvkit_evtchn_status, Errno> status(pvkit_evtchn_port_t port) const;

    // The VMM's own port (the store ring's): connected to `remote` from the
    // start, reported INTERDOMAIN, and the guest may not close or hand it off.
    Result<pvkit_evtchn_port_t, Errno> alloc_vmm_port(pvkit_domid_t remote, std::uint32_t vector);

    // For a hand-off: checks that `port` is the guest's, unbound, and
    // allocated for `remote` (the errors of PVKIT_HC_DEVICE_CONNECT).
    [[nodiscard]] Result<void, Errno> check_connectable(pvkit_evtchn_port_t port,
                                                        pvkit_domid_t remote) const;
    // Duplicates of the port's eventfds (close-on-exec).
    [[nodiscard]] Result<PortFds, Errno> fds(pvkit_evtchn_port_t port) const;
    // The hand-off succeeded: the port is INTERDOMAIN with `remote`.
    void mark_connected(pvkit_evtchn_port_t port, pvkit_domid_t remote);

    [[nodiscard]] bool allocated(pvkit_evtchn_port_t port) const;
    [[nodiscard]] const EvtchnCounters& counters() const { return m_counters; }

private:
    struct Port {
        std::uint32_t state = PVKIT_EVTCHNSTAT_CLOSED;
        pvkit_domid_t remote = 0;
        pvkit_evtchn_port_t remote_port = 0;
        std::uint32_t vector = 0;
        bool vmm_owned = false;
        // Shared: a loopback pair uses each other's eventfds.
        std::shared_ptr<UniqueFd> kick;
        std::shared_ptr<UniqueFd> irq;
    };

    [[nodiscard]] Result<pvkit_evtchn_port_t, Errno> free_port() const;
    [[nodiscard]] std::vector<EvtchnWiring::Route> routes_with(pvkit_evtchn_port_t extra,
                                                               std::uint32_t vector) const;
    // Routes, irqfd and ioeventfd for a new port; undone on failure.
    Result<void, Errno> wire(pvkit_evtchn_port_t port, std::uint32_t vector,
                             const std::shared_ptr<UniqueFd>& kick,
                             const std::shared_ptr<UniqueFd>& irq);
    Result<pvkit_evtchn_port_t, Errno> refuse(Errno err);
    [[nodiscard]] bool valid_port(pvkit_evtchn_port_t port) const {
        return port >= 1 && port <= PVKIT_EVTCHN_MAX_PORT;
    }

    EvtchnWiring& m_wiring;
    pvkit_domid_t m_self;
    std::array<Port, PVKIT_EVTCHN_MAX_PORT + 1> m_ports{};
    EvtchnCounters m_counters;
};

// A fresh non-blocking, close-on-exec eventfd. Throws std::system_error.
UniqueFd make_eventfd();

} // namespace pvkit::vmm
