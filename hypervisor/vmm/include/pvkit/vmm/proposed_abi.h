/*
 * Proposed additions to the pvkit hypercall ABI, used by pvkit-vmm and the
 * pvkit mini guest until they move into hypercall-abi/ (which only its
 * owners edit). Same rules as the ABI headers: C11, freestanding, fixed
 * layout, append-only numbers. Both sides include this one file, so the
 * VMM and the guest cannot disagree about it. docs/vmm.md, "Device
 * hand-off", explains why the ABI needs it.
 *
 * Device connect: a guest's frontend asks its VMM to hand the device's
 * grant pool and the eventfds of its event-channel ports to the backend
 * daemon that serves the device.
 *
 * A host backend binds no port by hypercall: it receives the pool memfd
 * and the two eventfds of each port from the VMM over its hand-off socket
 * (pvkit/transport/handoff.hpp), which only the VMM can do, because only
 * the VMM holds them. The frontend protocol (docs/handshake.md) publishes
 * Initialised only after that hand-off succeeded, so the guest must be
 * able to ask for it and learn the outcome. This hypercall is that
 * request; it blocks until the backend answered (bounded by the VMM).
 *
 * The VMM checks, in order: the structure lies in RAM (-EFAULT); reserved
 * fields are zero, 1 <= nr_queues <= PVKIT_DEVICE_CONNECT_MAX_QUEUES,
 * unused port slots are zero, every used port is in 1..PVKIT_EVTCHN_MAX_PORT
 * and appears once (-EINVAL); the pool index names a device (-ENOENT);
 * each port is allocated (-ENOENT), unbound (-EISCONN if it is already
 * connected), allocated for the device's backend domain (-EINVAL) and
 * not the VMM's own (-EPERM); the VMM has a store connection (-ENOTCONN);
 * the device's backend directory (computed by the VMM from the domain's
 * config, never read from a frontend-written node) shows state InitWait
 * and a handoff-socket node (-EAGAIN). It then hands off and returns the
 * backend's answer: 0, or -EPERM, -EAGAIN, -EBUSY, -EINVAL as the backend
 * gave them; any other refusal, an unreachable socket or no answer within
 * the VMM's bound is -EIO. On success the ports become INTERDOMAIN with
 * the backend's domain (EVTCHNOP_STATUS reports remote_port = the port
 * itself: a host backend knows the channel by the number in the store).
 */
#ifndef PVKIT_VMM_PROPOSED_ABI_H
#define PVKIT_VMM_PROPOSED_ABI_H

#include <pvkit/abi.h>

/* PVKIT_HC_DEVICE_CONNECT is available. */
#define PVKIT_FEAT_DEVICE_CONNECT (1ull << 6)

/* (gpa of struct pvkit_device_connect) -> 0 or -PVKIT_E*. */
#define PVKIT_HC_DEVICE_CONNECT 8u

#define PVKIT_DEVICE_CONNECT_MAX_QUEUES 8u

struct pvkit_device_connect {
    uint32_t pool_index; /* IN (guest): the device, as in start info devices[] */
    uint32_t nr_queues;  /* IN (guest): ports used, 1..PVKIT_DEVICE_CONNECT_MAX_QUEUES */
    /* IN (guest): one unbound port per queue, allocated for the device's
     * backend domain; slots from nr_queues on are zero. */
    pvkit_evtchn_port_t ports[PVKIT_DEVICE_CONNECT_MAX_QUEUES];
    uint32_t reserved[2]; /* zero */
};
PVKIT_ABI_SIZE(struct pvkit_device_connect, 48);
PVKIT_ABI_OFFSET(struct pvkit_device_connect, ports, 8);

#endif /* PVKIT_VMM_PROPOSED_ABI_H */
