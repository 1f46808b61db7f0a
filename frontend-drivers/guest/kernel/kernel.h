/*
 * The pvkit mini guest kernel: what its parts share.
 *
 * Everything here runs at CPL0, which on the development hosts goes
 * through an instruction emulator at about 0.6 us per instruction. The
 * kernel therefore does as little as it can: set-up, exceptions, system
 * calls and hypercalls. Programs run in user mode at native speed.
 */
#ifndef PVKIT_MINI_KERNEL_H
#define PVKIT_MINI_KERNEL_H

#include <pvkit/start_info.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* POST codes written to port 0x80 at boot milestones; pvkit-vmm records
 * them with the time and exit count (docs/vmm.md). */
#define POST_KERNEL_ENTRY 0x01u
#define POST_ENTER_USER 0x02u

/* ---- boot state (main.c) ---- */
struct boot_info {
    const struct pvkit_start_info* start_info; /* from RSI; identity mapped */
    uint64_t start_info_gpa;
    uint64_t hypercall_gpa;
    uint64_t ram_bytes;
};
extern struct boot_info g_boot;

/* ---- console (console.c) ---- */
void early_putc(char c); /* 16550 at 0x3f8, polled */
void early_puts(const char* s);
void console_write(const char* s, size_t len); /* hypercall, or the UART before it is known */
void kputs(const char* s);
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- hypercalls (hypercall.c) ---- */
void hypercall_init(uint64_t page_gpa);
long hypercall5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
__attribute__((noreturn)) void shutdown(unsigned reason);

/* ---- traps (trap.c, entry.S) ---- */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};
void idt_init(void);
void trap_dispatch(struct trap_frame* frame);

/* ---- user mode (user.c, syscall.c) ---- */
int user_region_init(void);
/* The page-table entry that maps `va` (2 MiB or 4 KiB leaf), or NULL. */
uint64_t* page_table_leaf(uint64_t va, uint64_t* page_size);
int user_image_check(void);
int run_user_program(const char* name); /* returns only if there is no such program */
void list_user_programs(void);
void syscall_dispatch(struct trap_frame* frame);
__attribute__((noreturn)) void enter_user(uint64_t entry, uint64_t arg, uint64_t stack);
__attribute__((noreturn)) void program_exit(long status);
extern const char* g_current_program;
extern uint32_t g_current_flags;

/* ---- PV devices: local APIC, event channels, device pages (pv.c) ---- */
/* Sets up what the VMM offers: the x2APIC, the store port's vector, and
 * the user mappings of the start-info page, doorbell, store ring and grant
 * pools. Returns 0, or -1 after a message. */
int pv_init(void);
/* Sets the user bit on the leaves that map exactly [start, end), refusing
 * a leaf that would expose anything outside. Flushes the TLB. */
int open_to_user(uint64_t start, uint64_t end);
long sys_evtchn_alloc(uint64_t remote_dom);
long sys_evtchn_bind_loopback(uint64_t remote_port);
long sys_evtchn_close(uint64_t port);
long sys_evtchn_wait(uint64_t port, uint64_t timeout_us);
long sys_device_connect(uint64_t pool_index, uint64_t port);
extern uint16_t evtchn_vector_port[192]; /* entry.S reads it: port of vector 0x30 + i */

/* ---- kernel-mode test programs (ktests.c) ---- */
int run_kernel_program(const char* name); /* returns only if there is no such program */
void list_kernel_programs(void);

#endif /* PVKIT_MINI_KERNEL_H */
