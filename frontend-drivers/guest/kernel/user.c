/*
 * User mode: the user image's header, the page-table bits that open the
 * user region to CPL3, and the switch into a program.
 */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/mem.h"
#include "pvkit_guest/user_image.h"

#define PTE_PRESENT 0x1ull
#define PTE_USER 0x4ull
#define PTE_LARGE 0x80ull
#define PTE_ADDR 0x000ffffffffff000ull
#define LARGE_PAGE 0x200000ull
#define SMALL_PAGE 0x1000ull

/* Placed by kernel.ld: the embedded user image and the user stack. */
extern const struct pvkit_user_image __user_image;
extern char __user_stack_top[];

const char* g_current_program = "(kernel)";
uint32_t g_current_flags;

int user_image_check(void) {
    const struct pvkit_user_image* img = &__user_image;
    if (img->magic != PVKIT_USER_IMAGE_MAGIC || img->base != (uint64_t)(uintptr_t)img ||
        img->end > (uint64_t)(uintptr_t)__user_stack_top || img->start < img->base ||
        img->start >= img->end || img->nr_programs > PVKIT_USER_MAX_PROGRAMS) {
        kputs("pvkit-mini: the embedded user image is malformed\n");
        return -1;
    }
    /* Each program entry is checked when it is chosen (run_user_program),
     * not here: every loop at CPL0 costs. */
    return 0;
}

static uint64_t* table_at(uint64_t entry) {
    return (uint64_t*)(uintptr_t)(entry & PTE_ADDR);
}

/*
 * Sets the user bit on every level that maps [PVKIT_GUEST_USER_BASE,
 * PVKIT_GUEST_USER_END). The VMM maps RAM supervisor-only; which pages a
 * program may touch is the kernel's decision. A leaf that would also
 * expose memory outside the region is refused.
 */
uint64_t* page_table_leaf(uint64_t va, uint64_t* page_size) {
    uint64_t* entry = &table_at(read_cr3())[(va >> 39) & 0x1ff];
    for (int level = 3; level >= 1; --level) {
        if ((*entry & PTE_PRESENT) == 0 || (*entry & PTE_LARGE) != 0)
            return NULL;
        entry = &table_at(*entry)[(va >> (12 + 9 * (level - 1))) & 0x1ff];
        if (level == 2 && (*entry & PTE_LARGE) != 0) {
            *page_size = LARGE_PAGE;
            return entry;
        }
    }
    *page_size = SMALL_PAGE;
    return (*entry & PTE_PRESENT) != 0 ? entry : NULL;
}

int user_region_init(void) {
    const uint64_t start = PVKIT_GUEST_USER_BASE;
    const uint64_t end = PVKIT_GUEST_USER_END;
    if (g_boot.ram_bytes < end) {
        kputs("pvkit-mini: the user region needs at least 4 MiB of RAM\n");
        return -1;
    }
    uint64_t cr3 = read_cr3();
    for (uint64_t va = start; va < end;) {
        uint64_t* entry = &table_at(cr3)[(va >> 39) & 0x1ff];
        for (int level = 3; level >= 1; --level) {
            if ((*entry & PTE_PRESENT) == 0)
                goto unmapped;
            if ((*entry & PTE_LARGE) != 0) { /* a 1 GiB leaf would expose the kernel */
                kputs("pvkit-mini: the user region is inside a 1 GiB page\n");
                return -1;
            }
            *entry |= PTE_USER;
            entry = &table_at(*entry)[(va >> (12 + 9 * (level - 1))) & 0x1ff];
            if (level == 2 && (*entry & PTE_LARGE) != 0)
                break; /* a 2 MiB leaf in the PD */
        }
        if ((*entry & PTE_PRESENT) == 0)
            goto unmapped;
        uint64_t size = (*entry & PTE_LARGE) != 0 ? LARGE_PAGE : SMALL_PAGE;
        if ((va & (size - 1)) != 0 || end - va < size) {
            kputs("pvkit-mini: a page of the user region also maps kernel memory\n");
            return -1;
        }
        *entry |= PTE_USER;
        va += size;
    }
    write_cr3(cr3);
    return 0;
unmapped:
    kputs("pvkit-mini: the user region is not mapped\n");
    return -1;
}

int run_user_program(const char* name) {
    const struct pvkit_user_image* img = &__user_image;
    const size_t name_len = strlen(name);
    for (uint32_t i = 0; i < img->nr_programs; ++i) {
        const struct pvkit_user_program* p = &img->programs[i];
        if (name_len >= PVKIT_USER_NAME_MAX || memcmp(p->name, name, name_len + 1) != 0)
            continue;
        if (p->main < img->base || p->main >= img->end) {
            kprintf("pvkit-mini: user program '%s' has a bad entry point\n", name);
            return -1;
        }
        g_current_program = p->name;
        g_current_flags = p->flags;
        static const char k_running[] = "pvkit-mini: running '";
        console_write(k_running, sizeof k_running - 1);
        console_write(name, name_len);
        static const char k_mode[] = "' in user mode\n";
        console_write(k_mode, sizeof k_mode - 1);
        outb(0x80, POST_ENTER_USER);
        enter_user(img->start, p->main, (uint64_t)(uintptr_t)__user_stack_top);
    }
    return -1;
}

void list_user_programs(void) {
    const struct pvkit_user_image* img = &__user_image;
    for (uint32_t i = 0; i < img->nr_programs; ++i) {
        if (strnlen(img->programs[i].name, PVKIT_USER_NAME_MAX) < PVKIT_USER_NAME_MAX)
            kprintf(" %s", img->programs[i].name);
    }
}

void program_exit(long status) {
    kprintf("pvkit-mini: program '%s' exited with status %ld\n", g_current_program, status);
    shutdown(status == 0 ? PVKIT_SHUTDOWN_POWEROFF : PVKIT_SHUTDOWN_CRASH);
}
