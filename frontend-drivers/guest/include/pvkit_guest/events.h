/*
 * The mini guest's event page: how the kernel tells user programs which
 * event-channel ports fired. Guest-private, not part of the pvkit ABI.
 *
 * Each port's interrupt vector lands in a tiny assembly handler (entry.S)
 * that sets the port's bit in `pending` with a locked instruction, counts
 * the interrupt and acknowledges the local APIC: about a dozen emulated
 * instructions, no C. Programs test and clear bits themselves (the page is
 * theirs to write, at native speed), and sleep in SYS_EVTCHN_WAIT when
 * there is nothing to do. The page is the last page of the user region.
 */
#ifndef PVKIT_GUEST_EVENTS_H
#define PVKIT_GUEST_EVENTS_H

#include <stdint.h>

#include "pvkit_guest/user_image.h"

#define PVKIT_GUEST_EVENTS_VA (PVKIT_GUEST_USER_END - 0x1000ull)

/* Vectors the kernel gives out: PVKIT_EVTCHN_VECTOR_MIN..MAX except the
 * system-call vector 0x80; the APIC timer and the spurious vector lie
 * above the event range. */
#define PVKIT_GUEST_TIMER_VECTOR 0xf0u
#define PVKIT_GUEST_SPURIOUS_VECTOR 0xffu

struct pvkit_guest_events {
    uint64_t pending[16]; /* bit p: port p fired (set by the kernel, cleared by the program) */
    uint64_t interrupts;  /* event-channel interrupts taken (offset 128) */
    uint64_t timer_fired; /* APIC timer interrupts taken (offset 136) */
    uint64_t reserved[494];
};

_Static_assert(sizeof(struct pvkit_guest_events) == 4096, "one page");
_Static_assert(__builtin_offsetof(struct pvkit_guest_events, interrupts) == 128,
               "entry.S uses the offset");
_Static_assert(__builtin_offsetof(struct pvkit_guest_events, timer_fired) == 136,
               "entry.S uses the offset");

#endif /* PVKIT_GUEST_EVENTS_H */
