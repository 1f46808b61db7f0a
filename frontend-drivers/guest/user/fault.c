/* fault: reads the null page from user mode; the kernel reports the #PF. */
#include "programs.h"
#include "ulib.h"

int fault_main(void) {
    uprintf("fault: reading address 0x8 from user mode\n");
    uint64_t value;
    /* Inline assembly: a C null dereference is undefined, and GCC would
     * turn it into ud2 instead of a load. */
    __asm__ volatile("movq 0x8, %0" : "=r"(value) : : "memory");
    uprintf("fault: read 0x%lx, but the page should be unmapped\n", value);
    return 1;
}
