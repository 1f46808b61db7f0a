/*
 * pvkit hypercall ABI: event channels.
 *
 * An event channel connects a port in one domain with a port in another.
 * The frontend allocates an unbound port for its backend's domain and
 * publishes the number in the store; the backend binds to it. A guest does
 * this with the hypercalls below. A host backend (domain 0) makes no
 * hypercalls: it reads the port from the store and receives that port's
 * two eventfds from the guest's VMM over a Unix socket (SCM_RIGHTS), which
 * is what binding means for it.
 *
 * Sending. A guest notifies the remote end of port P by writing P as a
 * 32-bit value to offset PVKIT_DOORBELL_NOTIFY of the doorbell page (an
 * MMIO page whose address is in the start info). The VMM registers each
 * bound port with KVM_IOEVENTFD (datamatch = P), so the write reaches the
 * backend's eventfd inside the kernel: the VMM is not on the data path, and
 * guest user mode can kick as well (port I/O faults at CPL3 on these hosts,
 * MMIO does not). A write of an unbound port number exits to the VMM, which
 * counts and drops it.
 *
 * Receiving. The backend signals an eventfd that the VMM registered with
 * KVM_IRQFD; KVM injects the vector the guest chose for the port when it
 * allocated or bound it. Host-process frontends use plain eventfds in both
 * directions; a backend cannot tell the two kinds of frontend apart.
 *
 * Notifications carry no data and may be merged: after a kick the receiver
 * must look at the shared state (ring indices) again, nothing more.
 */
#ifndef PVKIT_EVTCHN_H
#define PVKIT_EVTCHN_H

#include "abi.h"

/* Offset in the doorbell page that guests write port numbers to. */
#define PVKIT_DOORBELL_NOTIFY 0u

/* Interrupt vectors a guest may ask for: [0x30, 0xef]. */
#define PVKIT_EVTCHN_VECTOR_MIN 0x30u
#define PVKIT_EVTCHN_VECTOR_MAX 0xefu
/* Highest port number a domain may have; ports start at 1. */
#define PVKIT_EVTCHN_MAX_PORT 1023u

/* PVKIT_HC_EVTCHN_OP commands. */
#define PVKIT_EVTCHNOP_ALLOC_UNBOUND 0u
#define PVKIT_EVTCHNOP_BIND_INTERDOMAIN 1u
#define PVKIT_EVTCHNOP_CLOSE 2u
#define PVKIT_EVTCHNOP_STATUS 3u

/* Allocate a port that remote_dom may later bind to. */
struct pvkit_evtchn_alloc_unbound {
    pvkit_domid_t remote_dom; /* IN (guest): domain allowed to bind */
    uint16_t pad;
    uint32_t vector;            /* IN (guest): interrupt vector for incoming events */
    pvkit_evtchn_port_t port;   /* OUT (VMM): the new local port */
    uint32_t pad2;
};
PVKIT_ABI_SIZE(struct pvkit_evtchn_alloc_unbound, 16);
PVKIT_ABI_OFFSET(struct pvkit_evtchn_alloc_unbound, port, 8);

/* Bind a new local port to an unbound port of remote_dom. */
struct pvkit_evtchn_bind_interdomain {
    pvkit_domid_t remote_dom; /* IN (guest) */
    uint16_t pad;
    pvkit_evtchn_port_t remote_port; /* IN (guest) */
    uint32_t vector;                 /* IN (guest) */
    pvkit_evtchn_port_t local_port;  /* OUT (VMM) */
};
PVKIT_ABI_SIZE(struct pvkit_evtchn_bind_interdomain, 16);
PVKIT_ABI_OFFSET(struct pvkit_evtchn_bind_interdomain, local_port, 12);

/* Close a local port; the remote end sees its port become unbound. */
struct pvkit_evtchn_close {
    pvkit_evtchn_port_t port; /* IN (guest) */
    uint32_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_evtchn_close, 8);

#define PVKIT_EVTCHNSTAT_CLOSED 0u      /* port not in use */
#define PVKIT_EVTCHNSTAT_UNBOUND 1u     /* allocated, waiting for remote_dom */
#define PVKIT_EVTCHNSTAT_INTERDOMAIN 2u /* connected to remote_dom:remote_port */

struct pvkit_evtchn_status {
    pvkit_evtchn_port_t port; /* IN (guest) */
    uint32_t status;          /* OUT (VMM): PVKIT_EVTCHNSTAT_* */
    pvkit_domid_t remote_dom; /* OUT (VMM) */
    uint16_t pad;
    pvkit_evtchn_port_t remote_port; /* OUT (VMM), 0 unless INTERDOMAIN */
    uint32_t vector;                 /* OUT (VMM) */
    uint32_t pad2;
};
PVKIT_ABI_SIZE(struct pvkit_evtchn_status, 24);
PVKIT_ABI_OFFSET(struct pvkit_evtchn_status, remote_port, 12);

#endif /* PVKIT_EVTCHN_H */
