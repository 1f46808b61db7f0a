/*
 * Kernel-mode test programs: each makes the guest fail in one way the VMM
 * must report cleanly (tests/vmm). They run at CPL0 because user mode
 * cannot reach ports, and because a triple fault needs the kernel's IDT.
 */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/mem.h"

/* Where the VMM's device window starts: the first GiB boundary at or above
 * the end of RAM (docs/vmm.md). Its first page is the doorbell; 1 MiB in,
 * among the (future) emulated device registers, nothing answers. */
static uint64_t device_window(void) {
    const uint64_t gib = 1ull << 30;
    return (g_boot.ram_bytes + gib - 1) / gib * gib;
}

static void triple_fault(void) {
    /* An empty IDT: the #UD cannot be delivered, nor the #GP that follows,
     * nor the #DF: the CPU shuts down (KVM_EXIT_SHUTDOWN). */
    const struct descriptor_table_pointer empty = {0, 0};
    lidt(&empty);
    __asm__ volatile("ud2");
}

static void bad_port(void) {
    outb(0x404, 'x');
}

static void bad_mmio(void) {
    volatile uint32_t* reg = (volatile uint32_t*)(uintptr_t)(device_window() + 0x100000);
    *reg = 0x1234abcd;
}

static void exec_mmio(void) {
    /* Fetching an instruction from a device address: there is no memory
     * to fetch from, so KVM cannot emulate it. The VMM maps the window
     * non-executable; the kernel lifts that for this one test. */
    uint64_t window = device_window();
    uint64_t size = 0;
    uint64_t* leaf = page_table_leaf(window, &size);
    if (leaf == NULL) {
        kputs("pvkit-mini: the device window is not mapped\n");
        return;
    }
    *leaf &= ~(1ull << 63); /* NX */
    write_cr3(read_cr3());
    void (*fn)(void) = (void (*)(void))(uintptr_t)window;
    fn();
}

struct kernel_program {
    const char* name;
    void (*run)(void);
};

static const struct kernel_program k_programs[] = {
    {"triple-fault", triple_fault},
    {"bad-port", bad_port},
    {"bad-mmio", bad_mmio},
    {"exec-mmio", exec_mmio},
};

int run_kernel_program(const char* name) {
    for (size_t i = 0; i < sizeof k_programs / sizeof k_programs[0]; ++i) {
        if (strcmp(k_programs[i].name, name) != 0)
            continue;
        g_current_program = k_programs[i].name;
        kprintf("pvkit-mini: running '%s' in kernel mode\n", name);
        k_programs[i].run();
        /* The VMM should have stopped the guest. */
        kprintf("pvkit-mini: '%s' returned; the VMM did not stop the guest\n", name);
        shutdown(PVKIT_SHUTDOWN_CRASH);
    }
    return -1;
}

void list_kernel_programs(void) {
    for (size_t i = 0; i < sizeof k_programs / sizeof k_programs[0]; ++i)
        kprintf(" %s", k_programs[i].name);
}
