/* Hypercalls through the page of stubs the VMM wrote (pvkit/hypercall.h). */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"

static uint64_t g_hypercall_page;

void hypercall_init(uint64_t page_gpa) {
    g_hypercall_page = page_gpa;
}

long hypercall5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
    if (g_hypercall_page == 0 || nr >= PVKIT_HYPERCALL_MAX_STUBS)
        return -PVKIT_ENOSYS;
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    long ret;
    /* The stub preserves every register but RAX; "memory" because the VMM
     * may write guest memory (OUT structures). */
    __asm__ volatile("call *%[stub]"
                     : "=a"(ret)
                     : [stub] "r"(g_hypercall_page + nr * PVKIT_HYPERCALL_STUB_SIZE), "D"(a1),
                       "S"(a2), "d"(a3), "r"(r10), "r"(r8)
                     : "memory", "cc");
    return ret;
}

void shutdown(unsigned reason) {
    hypercall5(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, reason, 0, 0, 0);
    /* Only if the VMM refused: stop here rather than run on. */
    halt_forever();
}
