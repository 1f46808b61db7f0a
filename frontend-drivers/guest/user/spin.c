/* spin: never returns, at native speed; for the VMM's --timeout. */
#include "programs.h"
#include "ulib.h"

int spin_main(void) {
    uprintf("spin: looping forever in user mode\n");
    for (;;)
        __asm__ volatile("pause");
}
