/* spin: never returns, at native speed; for the VMM's --timeout. */
#include "programs.h"
#include "ulib.h"
#include "ustore.h"

int spin_main(void) {
    uprintf("spin: looping forever in user mode\n");
    for (;;)
        __asm__ volatile("pause");
}

/* idle: sleeps until an event that never comes; for --timeout and SIGTERM
 * with a halted vCPU (SCHED_OP BLOCK lets KVM halt it in the kernel). */
int idle_main(void) {
    /* With a store, say so there: tests wait for it before they signal. */
    if (xs_init() == 0)
        (void)xs_write(0, "data/idle", "1");
    uprintf("idle: waiting for an event that never comes\n");
    for (;;)
        sys_evtchn_wait(0, 0);
}
