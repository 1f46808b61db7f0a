/*
 * pvkit hypercall ABI: discovery, calling convention, hypercall numbers.
 *
 * Discovery. CPUID leaf PVKIT_CPUID_BASE returns the highest pvkit leaf in
 * EAX and the 12-byte signature "pvkitpvkitpv" in EBX, ECX, EDX (in that
 * order). Leaf PVKIT_CPUID_INFO returns:
 *   EAX  PVKIT_ABI_VERSION
 *   EBX  low 32 bits of the feature mask (PVKIT_FEAT_*)
 *   ECX  guest frame number of the hypercall page (GPA >> 12)
 *   EDX  guest frame number of the start-info page (GPA >> 12)
 *
 * Calling convention. The hypercall number goes in RAX, up to five
 * arguments in RDI, RSI, RDX, R10, R8 (the x86-64 syscall order), and the
 * result comes back in RAX: >= 0 on success, a negated PVKIT_E* number on
 * failure. All other registers are preserved. Guests call
 * `hypercall_page + nr * PVKIT_HYPERCALL_STUB_SIZE` and never issue the exit
 * instruction themselves, so the VMM can change the mechanism without
 * changing guests.
 *
 * Mechanism (version 1). The VMM fills each stub with
 *     mov $nr, %eax ; out %al, $PVKIT_HYPERCALL_PORT ; ret
 * The port write exits to the VMM, which reads the registers, runs the call
 * and writes RAX before resuming. vmcall/vmmcall are not used: on the hosts
 * pvkit is developed on they livelock (CPL0) or fail with -EPERM (CPL3).
 * Hypercalls are only valid from guest CPL0; a guest user-mode program
 * asks its kernel through a system call.
 *
 * Pointer arguments are guest-physical addresses. The VMM validates that the
 * whole range lies in guest RAM and copies the structure in before it looks
 * at any field, and copies results out only after the call succeeded.
 *
 * Errors every hypercall may return: -PVKIT_ENOSYS (unknown number),
 * -PVKIT_EFAULT (an address range not wholly in guest RAM), -PVKIT_EINVAL
 * (an unknown sub-operation, a bad port or vector, reserved fields not
 * zero), -PVKIT_E2BIG (a length over its limit), -PVKIT_ENOENT (an unknown
 * pool index or port). A result in [-4095, -1] is an error; every other
 * value is a success.
 */
#ifndef PVKIT_HYPERCALL_H
#define PVKIT_HYPERCALL_H

#include "abi.h"

#define PVKIT_CPUID_BASE 0x40000000u
#define PVKIT_CPUID_INFO 0x40000001u
#define PVKIT_CPUID_MAX PVKIT_CPUID_INFO
/* "pvkitpvkitpv" as the three little-endian registers EBX, ECX, EDX. */
#define PVKIT_CPUID_SIG_EBX 0x696b7670u /* "pvki" */
#define PVKIT_CPUID_SIG_ECX 0x6b767074u /* "tpvk" */
#define PVKIT_CPUID_SIG_EDX 0x76707469u /* "itpv" */

#define PVKIT_HYPERCALL_PORT 0x99u
#define PVKIT_HYPERCALL_STUB_SIZE 32u
#define PVKIT_HYPERCALL_MAX_STUBS (PVKIT_PAGE_SIZE / PVKIT_HYPERCALL_STUB_SIZE)

/*
 * Hypercall numbers. Append-only; an unknown number returns -PVKIT_ENOSYS.
 */
/* () -> PVKIT_ABI_VERSION of the VMM. */
#define PVKIT_HC_VERSION 0u
/* () -> the 64-bit PVKIT_FEAT_* mask. */
#define PVKIT_HC_FEATURES 1u
/* (gpa, len) -> bytes written. len <= PVKIT_CONSOLE_WRITE_MAX. */
#define PVKIT_HC_CONSOLE_WRITE 2u
/* (PVKIT_SCHEDOP_*, arg) -> 0; see below. */
#define PVKIT_HC_SCHED_OP 3u
/* (PVKIT_EVTCHNOP_*, gpa of the operation's structure) -> 0; evtchn.h. */
#define PVKIT_HC_EVTCHN_OP 4u
/* (pool index, gpa of struct pvkit_grant_pool_info) -> 0; grant.h. */
#define PVKIT_HC_GRANT_POOL_QUERY 5u
/* (gpa of struct pvkit_store_ring_info) -> 0; store.h. */
#define PVKIT_HC_STORE_RING_INFO 6u
/* () -> guest-physical address of the start-info page; start_info.h. */
#define PVKIT_HC_START_INFO 7u
/* (gpa of struct pvkit_device_connect) -> 0; see below. */
#define PVKIT_HC_DEVICE_CONNECT 8u
#define PVKIT_HC_COUNT 9u

#define PVKIT_CONSOLE_WRITE_MAX 4096u

/* PVKIT_HC_SCHED_OP commands. */
/* Give up the vCPU once; arg ignored. */
#define PVKIT_SCHEDOP_YIELD 0u
/*
 * Sleep until an interrupt arrives (event-channel upcall or timer). The
 * guest calls it with interrupts disabled, after its last check for work;
 * an interrupt that became pending in between ends the sleep at once, so no
 * wakeup is lost. The interrupt may be delivered before the call returns
 * (pvkit-vmm resumes the vCPU in a `sti; hlt; cli` helper, as Xen does), so
 * the caller must not hold locks its interrupt handlers need.
 */
#define PVKIT_SCHEDOP_BLOCK 1u
/* Stop the domain; arg is a PVKIT_SHUTDOWN_* reason. Does not return. */
#define PVKIT_SCHEDOP_SHUTDOWN 2u

/* Shutdown reasons; the VMM's exit status is derived from them. */
#define PVKIT_SHUTDOWN_POWEROFF 0u /* success: VMM exits 0 */
#define PVKIT_SHUTDOWN_REBOOT 1u   /* the toolstack decides whether to restart */
/* 2 is reserved (Xen's suspend). */
#define PVKIT_SHUTDOWN_CRASH 3u /* guest-detected failure: VMM exits non-zero */

/*
 * PVKIT_HC_DEVICE_CONNECT (feature PVKIT_FEAT_DEVICE_CONNECT): a guest's
 * frontend asks its VMM to hand the device's grant pool and the eventfds of
 * its event-channel ports to the backend daemon that serves the device.
 *
 * A host backend binds no port by hypercall: it receives the pool memfd and
 * the two eventfds of each port from the VMM over its hand-off socket,
 * which only the VMM can do, because only the VMM holds them. The frontend
 * publishes Initialised only after that hand-off succeeded
 * (docs/handshake.md), so the guest must be able to ask for it and learn
 * the outcome. The call blocks until the backend answered (bounded by the
 * VMM).
 *
 * The VMM checks, in order: the structure lies in RAM (-EFAULT); reserved
 * fields are zero, 1 <= nr_queues <= PVKIT_DEVICE_CONNECT_MAX_QUEUES, unused
 * port slots are zero, every used port is in 1..PVKIT_EVTCHN_MAX_PORT and
 * appears once (-EINVAL); the pool index names a device (-ENOENT); each port
 * is allocated (-ENOENT), unbound (-EISCONN if it is already connected),
 * allocated for the device's backend domain (-EINVAL) and not the VMM's own
 * (-EPERM); the VMM has a store connection (-ENOTCONN); the device's
 * backend directory (computed by the VMM from the domain's config, never
 * read from a frontend-written node) shows state InitWait and a
 * handoff-socket node (-EAGAIN). It then hands off and returns the
 * backend's answer: 0, or -EPERM, -EAGAIN, -EBUSY, -EINVAL as the backend
 * gave them; any other refusal, an unreachable socket or no answer within
 * the VMM's bound is -EIO. On success the ports become INTERDOMAIN with the
 * backend's domain (EVTCHNOP_STATUS reports remote_port = the port itself:
 * a host backend knows the channel by the number in the store).
 *
 * Reconnect. A port is handed off once. When the backend goes away and a
 * new instance takes the device over, the frontend starts over with a
 * fresh ring and a fresh port (docs/handshake.md, "Reconnecting after a
 * backend restart"): it closes the old port (EVTCHNOP_CLOSE works on a
 * connected port) and calls DEVICE_CONNECT again for the same device with
 * the new one, once the new backend shows InitWait. The VMM hands the same
 * pool and the new port's eventfds to the backend the store names then. A
 * port that is still connected is refused with -EISCONN.
 */
#define PVKIT_DEVICE_CONNECT_MAX_QUEUES 8u

struct pvkit_device_connect {
    uint32_t pool_index; /* IN (guest): the device, as in start info devices[] */
    uint32_t nr_queues;  /* IN (guest): ports used, 1..PVKIT_DEVICE_CONNECT_MAX_QUEUES */
    /* IN (guest): one unbound port per queue, allocated for the device's
     * backend domain; slots from nr_queues on are zero. */
    pvkit_evtchn_port_t ports[PVKIT_DEVICE_CONNECT_MAX_QUEUES];
    uint32_t reserved[2]; /* IN (guest): zero */
};
PVKIT_ABI_SIZE(struct pvkit_device_connect, 48);
PVKIT_ABI_OFFSET(struct pvkit_device_connect, ports, 8);
PVKIT_ABI_OFFSET(struct pvkit_device_connect, reserved, 40);

#endif /* PVKIT_HYPERCALL_H */
