/*
 * The pvkit mini guest's system calls: the interface between its kernel
 * (CPL0) and its programs (CPL3). Guest-private, not part of the pvkit ABI.
 *
 * A program loads the number into RAX and up to five arguments into RDI,
 * RSI, RDX, R10, R8 (the hypercall order), executes `int $0x80`, and gets
 * the result in RAX: >= 0 on success, -PVKIT_E* on failure. All other
 * registers are preserved.
 *
 * Why `int $0x80` and not `syscall`: on the hosts pvkit is developed on,
 * `syscall` from CPL3 jumps to LSTAR without switching to CPL0 (the first
 * privileged instruction there faults with CS still 0x23), and `int $0x80`
 * from CPL3 raises #UD at the int instruction instead of going through the
 * IDT gate. The kernel installs the DPL3 gate for vector 0x80 (real KVM
 * hosts use it) and also treats a #UD from user mode on the bytes `cd 80`
 * as the same system call (these hosts), so one binary works on both.
 */
#ifndef PVKIT_GUEST_SYSCALL_H
#define PVKIT_GUEST_SYSCALL_H

#define PVKIT_GUEST_SYSCALL_VECTOR 0x80u

/* (status) -> does not return. Status 0 powers the guest off, anything
 * else shuts it down with reason crash. */
#define SYS_EXIT 0u
/* (buffer, length) -> bytes written. The buffer must be user memory. */
#define SYS_WRITE 1u
/* () -> 0. Gives up the vCPU once (PVKIT_SCHEDOP_YIELD). */
#define SYS_YIELD 2u
/* (hypercall nr, arg1..arg4) -> the hypercall's result. Only for programs
 * the kernel marks as hypercall testers: arguments go to the VMM
 * unchanged, which is the point of the test and a hole for anything else.
 * Numbers without a stub (>= PVKIT_HYPERCALL_MAX_STUBS) return
 * -PVKIT_ENOSYS. Other programs get -PVKIT_EPERM. */
#define SYS_HYPERCALL 3u
/* (SYS_INFO_*) -> a value the kernel knows. */
#define SYS_INFO 4u

/*
 * Event channels (pvkit_guest/events.h says how events reach programs).
 * Programs kick a port themselves by writing its number to the doorbell
 * page, which the kernel maps for them; these calls are for what needs
 * the kernel: allocating and closing ports, and sleeping.
 */
/* (remote domid) -> a new unbound port for that domain, with a vector. */
#define SYS_EVTCHN_ALLOC 5u
/* (remote port) -> a local port bound to that port of this domain
 * (loopback: kicking one raises the other's interrupt). */
#define SYS_EVTCHN_BIND_LOOPBACK 6u
/* (port) -> 0. */
#define SYS_EVTCHN_CLOSE 7u
/* (port or 0 for any, timeout in us or 0 for none, at most 4 s) -> 1 when
 * the port's pending bit is set, 0 on timeout. Does not clear the bit. */
#define SYS_EVTCHN_WAIT 8u
/* (pool index, port) -> 0 once the device's backend holds the pool and
 * the port's eventfds (PVKIT_HC_DEVICE_CONNECT), or -PVKIT_E*. */
#define SYS_DEVICE_CONNECT 9u
/* (code) -> 0: writes the byte to the POST-code port, which the VMM
 * records with its time (benchmark markers). */
#define SYS_POST 10u

#define SYS_INFO_RAM_BYTES 0u      /* guest RAM size */
#define SYS_INFO_START_INFO_GPA 1u /* where the start-info page is (RSI at entry); user-readable   \
                                    */
#define SYS_INFO_HYPERCALL_GPA 2u  /* where the hypercall page is */
#define SYS_INFO_DOMID 3u          /* this guest's domain id */

#endif /* PVKIT_GUEST_SYSCALL_H */
