/*
 * Console output. Before the hypercall page is known (and if the VMM does
 * not offer the console hypercall) bytes go to the 16550 at 0x3f8, one
 * port exit per byte plus one per status poll; after that, each message
 * is a single PVKIT_HC_CONSOLE_WRITE.
 */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"

#define COM1 0x3f8u
#define UART_LSR 5u
#define UART_LSR_THR_EMPTY 0x20u

static int g_console_hc; /* the console hypercall may be used */

void early_putc(char c) {
    /* Bounded: a UART that never drains must not hang the kernel. */
    for (int tries = 0; tries < 1000; ++tries) {
        if ((inb(COM1 + UART_LSR) & UART_LSR_THR_EMPTY) != 0)
            break;
    }
    outb(COM1, (uint8_t)c);
}

void early_puts(const char* s) {
    while (*s != '\0')
        early_putc(*s++);
}

void console_enable_hypercall(void);
void console_enable_hypercall(void) {
    g_console_hc = 1;
}

void console_write(const char* s, size_t len) {
    if (!g_console_hc) {
        for (size_t i = 0; i < len; ++i)
            early_putc(s[i]);
        return;
    }
    while (len > 0) {
        size_t chunk = len < PVKIT_CONSOLE_WRITE_MAX ? len : PVKIT_CONSOLE_WRITE_MAX;
        /* Identity mapping: the kernel's virtual address is the GPA. */
        long r = hypercall5(PVKIT_HC_CONSOLE_WRITE, (uint64_t)(uintptr_t)s, chunk, 0, 0, 0);
        if (r <= 0)
            return;
        s += r;
        len -= (size_t)r;
    }
}

void kputs(const char* s) {
    console_write(s, strlen(s));
}

void kprintf(const char* fmt, ...) {
    static char buf[256]; /* one vCPU, and traps do not nest into kprintf */
    va_list ap;
    va_start(ap, fmt);
    size_t n = fmt_vformat(buf, sizeof buf, fmt, ap);
    va_end(ap);
    console_write(buf, n);
}
