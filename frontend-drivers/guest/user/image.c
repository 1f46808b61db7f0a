/* The user image's header: the programs the kernel can run by name. */
#include "pvkit_guest/user_image.h"

#include "programs.h"

extern char __user_image_base[];
extern char __user_image_end[];
void user_start(void);

#define PROGRAM(n, fn, f)                                                                          \
    { .name = n, .main = (uint64_t)(uintptr_t)(fn), .flags = (f) }

__attribute__((section(".user_header"), used)) const struct pvkit_user_image g_user_image = {
    .magic = PVKIT_USER_IMAGE_MAGIC,
    .base = (uint64_t)(uintptr_t)__user_image_base,
    .end = (uint64_t)(uintptr_t)__user_image_end,
    .start = (uint64_t)(uintptr_t)user_start,
    .nr_programs = 14,
    .programs =
        {
            PROGRAM("hello", hello_main, 0),
            PROGRAM("hypercall-test", hypercall_test_main, PVKIT_USER_RAW_HYPERCALLS),
            PROGRAM("fault", fault_main, 0),
            PROGRAM("spin", spin_main, 0),
            PROGRAM("idle", idle_main, 0),
            PROGRAM("evtchn-test", evtchn_test_main, PVKIT_USER_RAW_HYPERCALLS),
            PROGRAM("pool-test", pool_test_main, 0),
            PROGRAM("store-test", store_test_main, 0),
            PROGRAM("store-hostile-index", store_hostile_index_main, 0),
            PROGRAM("store-hostile-header", store_hostile_header_main, 0),
            PROGRAM("handoff-test", handoff_test_main, 0),
            PROGRAM("blk-selftest", blk_selftest_main, 0),
            PROGRAM("blk-bench", blk_bench_main, 0),
            PROGRAM("blk-hostile", blk_hostile_main, 0),
        },
};
