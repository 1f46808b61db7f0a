/*
 * The IDT, exception reports and the system-call gate. An exception in a
 * program ends the program; one in the kernel is a kernel bug. Either way
 * the kernel says what happened and where, and shuts down with reason
 * crash, so the VMM exits non-zero.
 */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/syscall.h"
#include "pvkit_guest/user_image.h"

/* Built by the assembler (entry.S). */
extern const char idt_table[];
extern const char idt_table_end[];

void idt_init(void) {
    const struct descriptor_table_pointer idtr = {(uint16_t)(idt_table_end - idt_table - 1),
                                                  (uint64_t)(uintptr_t)idt_table};
    lidt(&idtr);
}

static const char* const k_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE",  "#CP",
    "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

static int from_user(const struct trap_frame* f) {
    return (f->cs & 3u) == 3u;
}

/* On the development hosts `int $0x80` from CPL3 raises #UD at the int
 * instruction (syscall.h says more). The bytes are read only if both lie
 * in the user region, which is mapped and readable here. */
static int is_user_int80(const struct trap_frame* f) {
    if (!from_user(f) || f->rip < PVKIT_GUEST_USER_BASE || f->rip >= PVKIT_GUEST_USER_END - 1)
        return 0;
    const volatile uint8_t* insn = (const volatile uint8_t*)(uintptr_t)f->rip;
    return insn[0] == 0xcd && insn[1] == PVKIT_GUEST_SYSCALL_VECTOR;
}

void trap_dispatch(struct trap_frame* f) {
    if (f->vector == PVKIT_GUEST_SYSCALL_VECTOR) {
        syscall_dispatch(f);
        return;
    }
    if (f->vector == 6 && is_user_int80(f)) {
        f->rip += 2; /* resume after the int, as the gate would have */
        syscall_dispatch(f);
        return;
    }
    const char* name = f->vector < 32 ? k_names[f->vector] : "interrupt";
    kprintf("pvkit-mini: %s (vector %lu, error 0x%lx) at rip 0x%lx in %s mode, rsp 0x%lx", name,
            f->vector, f->error, f->rip, from_user(f) ? "user" : "kernel", f->rsp);
    if (f->vector == 14)
        kprintf(", cr2 0x%lx", read_cr2());
    kputs("\n");
    if (from_user(f))
        kprintf("pvkit-mini: program '%s' killed by %s\n", g_current_program, name);
    else
        kputs("pvkit-mini: kernel fault, shutting down\n");
    shutdown(PVKIT_SHUTDOWN_CRASH);
}
