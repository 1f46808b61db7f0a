#include "pvkit/vmm/event_channels.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace pvkit::vmm {

namespace {

bool vector_ok(std::uint32_t vector) {
    return vector >= PVKIT_EVTCHN_VECTOR_MIN && vector <= PVKIT_EVTCHN_VECTOR_MAX;
}

UniqueFd dup_fd(const UniqueFd& fd) {
    return UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
}

} // namespace

UniqueFd make_eventfd() {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd.valid())
        throw_errno("eventfd");
    return fd;
}

EventChannelTable::EventChannelTable(EvtchnWiring& wiring, pvkit_domid_t self)
    : m_wiring(wiring), m_self(self) {}

Result<pvkit_evtchn_port_t, Errno> EventChannelTable::refuse(Errno err) {
    ++m_counters.refused;
    return Unexpected{err};
}

bool EventChannelTable::allocated(pvkit_evtchn_port_t port) const {
    return valid_port(port) && m_ports[port].state != PVKIT_EVTCHNSTAT_CLOSED;
}

Result<pvkit_evtchn_port_t, Errno> EventChannelTable::free_port() const {
    // The lowest free port, as Xen allocates: small, predictable numbers.
    for (pvkit_evtchn_port_t p = 1; p <= PVKIT_EVTCHN_MAX_PORT; ++p) {
        if (m_ports[p].state == PVKIT_EVTCHNSTAT_CLOSED)
            return p;
    }
    return Unexpected{PVKIT_ENOSPC};
}

std::vector<EvtchnWiring::Route> EventChannelTable::routes_with(pvkit_evtchn_port_t extra,
                                                                std::uint32_t vector) const {
    // GSI = port: ports are at most 1023 and KVM offers at least 1024 routes
    // (Machine checks KVM_CAP_IRQ_ROUTING).
    std::vector<EvtchnWiring::Route> routes;
    for (pvkit_evtchn_port_t p = 1; p <= PVKIT_EVTCHN_MAX_PORT; ++p) {
        if (m_ports[p].state != PVKIT_EVTCHNSTAT_CLOSED && p != extra)
            routes.push_back({p, m_ports[p].vector});
    }
    if (extra != 0)
        routes.push_back({extra, vector});
    return routes;
}

Result<void, Errno> EventChannelTable::wire(pvkit_evtchn_port_t port, std::uint32_t vector,
                                            const std::shared_ptr<UniqueFd>& kick,
                                            const std::shared_ptr<UniqueFd>& irq) {
    // Route first: an irqfd on a GSI without a route would drop signals.
    if (auto r = m_wiring.set_routes(routes_with(port, vector)); !r)
        return r;
    if (auto r = m_wiring.irq(port, irq->get(), true); !r) {
        (void)m_wiring.set_routes(routes_with(0, 0));
        return r;
    }
    if (auto r = m_wiring.kick(port, kick->get(), true); !r) {
        (void)m_wiring.irq(port, irq->get(), false);
        (void)m_wiring.set_routes(routes_with(0, 0));
        return r;
    }
    return {};
}

Result<pvkit_evtchn_port_t, Errno> EventChannelTable::alloc_unbound(pvkit_domid_t remote,
                                                                    std::uint32_t vector) {
    if (!vector_ok(vector))
        return refuse(PVKIT_EINVAL);
    if (remote == PVKIT_DOMID_SELF)
        remote = m_self;
    else if (remote > PVKIT_DOMID_MAX)
        return refuse(PVKIT_EINVAL);
    auto port = free_port();
    if (!port)
        return refuse(port.error());
    std::shared_ptr<UniqueFd> kick;
    std::shared_ptr<UniqueFd> irq;
    try {
        kick = std::make_shared<UniqueFd>(make_eventfd());
        irq = std::make_shared<UniqueFd>(make_eventfd());
    } catch (const std::system_error&) {
        return refuse(PVKIT_ENOMEM);
    }
    if (auto r = wire(*port, vector, kick, irq); !r)
        return refuse(r.error());
    Port& p = m_ports[*port];
    p = Port{PVKIT_EVTCHNSTAT_UNBOUND, remote, 0, vector, false, std::move(kick), std::move(irq)};
    ++m_counters.allocated;
    return *port;
}

Result<pvkit_evtchn_port_t, Errno>
EventChannelTable::bind_interdomain(pvkit_domid_t remote, pvkit_evtchn_port_t remote_port,
                                    std::uint32_t vector) {
    if (!vector_ok(vector))
        return refuse(PVKIT_EINVAL);
    if (remote == PVKIT_DOMID_SELF)
        remote = m_self;
    if (remote > PVKIT_DOMID_MAX)
        return refuse(PVKIT_EINVAL);
    if (remote != m_self)
        return refuse(PVKIT_EOPNOTSUPP);
    if (!valid_port(remote_port))
        return refuse(PVKIT_EINVAL);
    const Port& peer = m_ports[remote_port];
    if (peer.state == PVKIT_EVTCHNSTAT_CLOSED)
        return refuse(PVKIT_ENOENT);
    // As Xen: the remote port must be unbound and waiting for this domain.
    if (peer.state != PVKIT_EVTCHNSTAT_UNBOUND || peer.remote != m_self || peer.vmm_owned)
        return refuse(PVKIT_EINVAL);
    auto port = free_port();
    if (!port)
        return refuse(port.error());
    // Crossed: our kicks raise the peer's vector and the peer's kicks ours.
    std::shared_ptr<UniqueFd> kick = peer.irq;
    std::shared_ptr<UniqueFd> irq = peer.kick;
    if (auto r = wire(*port, vector, kick, irq); !r)
        return refuse(r.error());
    m_ports[*port] = Port{PVKIT_EVTCHNSTAT_INTERDOMAIN,
                          m_self,
                          remote_port,
                          vector,
                          false,
                          std::move(kick),
                          std::move(irq)};
    Port& bound_peer = m_ports[remote_port];
    bound_peer.state = PVKIT_EVTCHNSTAT_INTERDOMAIN;
    bound_peer.remote_port = *port;
    ++m_counters.allocated;
    return *port;
}

Result<void, Errno> EventChannelTable::close(pvkit_evtchn_port_t port) {
    if (!valid_port(port)) {
        ++m_counters.refused;
        return Unexpected{PVKIT_EINVAL};
    }
    Port& p = m_ports[port];
    if (p.state == PVKIT_EVTCHNSTAT_CLOSED) {
        ++m_counters.refused;
        return Unexpected{PVKIT_ENOENT};
    }
    if (p.vmm_owned) {
        ++m_counters.refused;
        return Unexpected{PVKIT_EPERM};
    }
    // Removing a registration that exists cannot fail short of a VMM bug;
    // the port is closed either way, and a stale ioeventfd would only
    // signal an eventfd nobody waits on.
    (void)m_wiring.kick(port, p.kick->get(), false);
    (void)m_wiring.irq(port, p.irq->get(), false);
    const bool loopback =
        p.state == PVKIT_EVTCHNSTAT_INTERDOMAIN && p.remote == m_self && valid_port(p.remote_port);
    const pvkit_evtchn_port_t peer = p.remote_port;
    p = Port{};
    (void)m_wiring.set_routes(routes_with(0, 0));
    // As in Xen, the other end of a connected pair becomes unbound again
    // (and may be bound anew).
    if (loopback && m_ports[peer].state == PVKIT_EVTCHNSTAT_INTERDOMAIN &&
        m_ports[peer].remote_port == port) {
        m_ports[peer].state = PVKIT_EVTCHNSTAT_UNBOUND;
        m_ports[peer].remote_port = 0;
    }
    ++m_counters.closed;
    return {};
}

Result<pvkit_evtchn_status, Errno> EventChannelTable::status(pvkit_evtchn_port_t port) const {
    if (!valid_port(port))
        return Unexpected{PVKIT_EINVAL};
    const Port& p = m_ports[port];
    pvkit_evtchn_status s{};
    s.port = port;
    s.status = p.state;
    if (p.state != PVKIT_EVTCHNSTAT_CLOSED) {
        s.remote_dom = p.remote;
        s.remote_port = p.state == PVKIT_EVTCHNSTAT_INTERDOMAIN ? p.remote_port : 0;
        s.vector = p.vector;
    }
    return s;
}

Result<pvkit_evtchn_port_t, Errno> EventChannelTable::alloc_vmm_port(pvkit_domid_t remote,
                                                                     std::uint32_t vector) {
    auto port = alloc_unbound(remote, vector);
    if (!port)
        return port;
    Port& p = m_ports[*port];
    p.state = PVKIT_EVTCHNSTAT_INTERDOMAIN;
    p.remote_port = *port;
    p.vmm_owned = true;
    return port;
}

Result<void, Errno> EventChannelTable::check_connectable(pvkit_evtchn_port_t port,
                                                         pvkit_domid_t remote) const {
    if (!valid_port(port))
        return Unexpected{PVKIT_EINVAL};
    const Port& p = m_ports[port];
    if (p.state == PVKIT_EVTCHNSTAT_CLOSED)
        return Unexpected{PVKIT_ENOENT};
    if (p.vmm_owned)
        return Unexpected{PVKIT_EPERM};
    if (p.state != PVKIT_EVTCHNSTAT_UNBOUND)
        return Unexpected{PVKIT_EISCONN};
    if (p.remote != remote)
        return Unexpected{PVKIT_EINVAL};
    return {};
}

Result<PortFds, Errno> EventChannelTable::fds(pvkit_evtchn_port_t port) const {
    if (!allocated(port))
        return Unexpected{PVKIT_ENOENT};
    const Port& p = m_ports[port];
    PortFds out{dup_fd(*p.kick), dup_fd(*p.irq)};
    if (!out.kick.valid() || !out.irq.valid())
        return Unexpected{PVKIT_ENOMEM};
    return out;
}

void EventChannelTable::mark_connected(pvkit_evtchn_port_t port, pvkit_domid_t remote) {
    if (!allocated(port))
        return;
    Port& p = m_ports[port];
    p.state = PVKIT_EVTCHNSTAT_INTERDOMAIN;
    p.remote = remote;
    // A host backend has no port number of its own; it knows the channel
    // by the number the frontend published, which is this one.
    p.remote_port = port;
    ++m_counters.connected;
}

} // namespace pvkit::vmm
