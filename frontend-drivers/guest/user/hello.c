/* hello: prints from user mode and does a little work at native speed. */
#include "programs.h"
#include "ulib.h"

int hello_main(void) {
    uprintf("Hello from pvkit guest user mode (CPL %u)!\n", current_cpl());
    uprintf("hello: domain %ld, %ld MiB of RAM\n", sys_info(SYS_INFO_DOMID),
            sys_info(SYS_INFO_RAM_BYTES) >> 20);
    /* Ten million iterations: milliseconds at CPL3, minutes if this ran
     * through the CPL0 emulator. */
    uint64_t sum = 0;
    for (uint64_t i = 0; i < 10000000; ++i) {
        sum += i * i;
        __asm__ volatile("" : "+r"(sum)); /* keep the loop */
    }
    uprintf("hello: sum of squares below 10^7 is %lu\n", sum);
    return current_cpl() == 3 ? 0 : 1;
}
