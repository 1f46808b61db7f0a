/*
 * kmain: check the start-info page, find the hypercall page, install the
 * IDT, open the user region, and run the program the command line names
 * (`run=<program>`, default `hello`).
 */
#include <pvkit/hypercall.h>
#include <pvkit/start_info.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/mem.h"

struct boot_info g_boot;

void console_enable_hypercall(void);
void kmain(uint64_t start_info_gpa);

/* Discovery by CPUID (pvkit/hypercall.h): all three signature registers
 * must match before any other pvkit leaf is believed. */
static int cpuid_find_pvkit(uint64_t* hypercall_gpa, uint64_t* start_info_gpa) {
    struct cpuid_regs base = cpuid(PVKIT_CPUID_BASE);
    if (base.ebx != PVKIT_CPUID_SIG_EBX || base.ecx != PVKIT_CPUID_SIG_ECX ||
        base.edx != PVKIT_CPUID_SIG_EDX || base.eax < PVKIT_CPUID_INFO)
        return 0;
    struct cpuid_regs info = cpuid(PVKIT_CPUID_INFO);
    *hypercall_gpa = (uint64_t)info.ecx << PVKIT_PAGE_SHIFT;
    *start_info_gpa = (uint64_t)info.edx << PVKIT_PAGE_SHIFT;
    return 1;
}

/* The value of `key=` in the command line, or NULL; *len gets its length. */
static const char* cmdline_value(const char* cmdline, const char* key, size_t* len) {
    size_t key_len = strlen(key);
    const char* p = cmdline;
    while (*p != '\0') {
        while (*p == ' ')
            ++p;
        const char* word = p;
        while (*p != '\0' && *p != ' ')
            ++p;
        if ((size_t)(p - word) > key_len && memcmp(word, key, key_len) == 0 &&
            word[key_len] == '=') {
            *len = (size_t)(p - word) - key_len - 1;
            return word + key_len + 1;
        }
    }
    return NULL;
}

static __attribute__((noreturn)) void panic_early(const char* why) {
    early_puts("pvkit-mini: ");
    early_puts(why);
    early_puts("\n");
    shutdown(PVKIT_SHUTDOWN_CRASH); /* works once the hypercall page is known */
}

void kmain(uint64_t start_info_gpa) {
    outb(0x80, POST_KERNEL_ENTRY);
    early_puts("pvkit-mini\n");

    uint64_t cpuid_hypercall = 0;
    uint64_t cpuid_start_info = 0;
    if (!cpuid_find_pvkit(&cpuid_hypercall, &cpuid_start_info))
        panic_early("no pvkit signature in CPUID leaf 0x40000000");
    hypercall_init(cpuid_hypercall);
    if (cpuid_start_info != start_info_gpa)
        panic_early("start info in RSI and CPUID disagree");

    /* Identity mapped, and the VMM mapped the page read-only. */
    const struct pvkit_start_info* si = (const struct pvkit_start_info*)(uintptr_t)start_info_gpa;
    if (si->magic != PVKIT_START_INFO_MAGIC)
        panic_early("bad start-info magic");
    if ((si->abi_version >> 16) != PVKIT_ABI_VERSION_MAJOR)
        panic_early("unsupported ABI major version");
    if (si->hypercall_page_gpa != cpuid_hypercall)
        panic_early("hypercall page in start info and CPUID disagree");
    if (si->cmdline_len >= PVKIT_START_INFO_CMDLINE_MAX || si->cmdline[si->cmdline_len] != '\0')
        panic_early("malformed command line in start info");
    g_boot.start_info = si;
    g_boot.start_info_gpa = start_info_gpa;
    g_boot.hypercall_gpa = cpuid_hypercall;
    g_boot.ram_bytes = si->nr_ram_pages * PVKIT_PAGE_SIZE;
    if ((si->features & PVKIT_FEAT_CONSOLE_HC) != 0)
        console_enable_hypercall();

    idt_init();
    /* Pieces instead of kprintf: formatting costs ~10 instructions per
     * character at CPL0, an extra console write costs one exit. */
    static const char k_cmdline[] = "pvkit-mini: cmdline \"";
    console_write(k_cmdline, sizeof k_cmdline - 1);
    console_write(si->cmdline, si->cmdline_len);
    console_write("\"\n", 2);

    size_t len = 0;
    const char* value = cmdline_value(si->cmdline, "run", &len);
    char name[32];
    if (value == NULL) {
        value = "hello";
        len = 5;
    }
    if (len >= sizeof name) {
        kputs("pvkit-mini: program name too long\n");
        shutdown(PVKIT_SHUTDOWN_CRASH);
    }
    memcpy(name, value, len);
    name[len] = '\0';

    run_kernel_program(name); /* returns if `name` is not a kernel program */
    if (user_image_check() != 0 || user_region_init() != 0 || pv_init() != 0)
        shutdown(PVKIT_SHUTDOWN_CRASH);
    run_user_program(name); /* returns if there is no such program */
    kprintf("pvkit-mini: unknown program '%s'; programs:", name);
    list_user_programs();
    list_kernel_programs();
    kputs("\n");
    shutdown(PVKIT_SHUTDOWN_CRASH);
}
