#include "ulib.h"

#include <stdarg.h>

#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"

long sys_call5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
                     : "memory", "cc");
    return ret;
}

long sys_write(const void* buf, size_t len) {
    return sys_call5(SYS_WRITE, (uint64_t)(uintptr_t)buf, len, 0, 0, 0);
}

long sys_info(unsigned key) {
    return sys_call5(SYS_INFO, key, 0, 0, 0, 0);
}

void sys_yield(void) {
    (void)sys_call5(SYS_YIELD, 0, 0, 0, 0, 0);
}

long sys_hypercall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4) {
    return sys_call5(SYS_HYPERCALL, nr, a1, a2, a3, a4);
}

int uprintf(const char* fmt, ...) {
    /* Formatting runs at native speed here; the kernel sees one write. */
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = fmt_vformat(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return (int)sys_write(buf, n);
}

unsigned current_cpl(void) {
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3u;
}
