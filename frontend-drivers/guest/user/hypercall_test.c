/*
 * hypercall-test: calls every hypercall with good and bad arguments
 * through the kernel's SYS_HYPERCALL and checks each result against the
 * ABI (pvkit/hypercall.h). Prints one line per check and a summary; exits
 * 0 only if every check passed.
 */
#include <pvkit/hypercall.h>

#include "programs.h"
#include "ulib.h"

static unsigned g_passed;
static unsigned g_failed;

static void expect(const char* what, long got, long want) {
    if (got == want) {
        ++g_passed;
        uprintf("hypercall-test: ok   %s = %ld\n", what, got);
    } else {
        ++g_failed;
        uprintf("hypercall-test: FAIL %s = %ld, expected %ld\n", what, got, want);
    }
}

static void expect_true(const char* what, int ok, long got) {
    if (ok) {
        ++g_passed;
        uprintf("hypercall-test: ok   %s (0x%lx)\n", what, got);
    } else {
        ++g_failed;
        uprintf("hypercall-test: FAIL %s (0x%lx)\n", what, got);
    }
}

static const char k_message[] = "hypercall-test: console write from user memory\n";

int hypercall_test_main(void) {
    const uint64_t ram = (uint64_t)sys_info(SYS_INFO_RAM_BYTES);
    const uint64_t msg = (uint64_t)(uintptr_t)k_message; /* identity mapped: also the GPA */
    const long msg_len = (long)sizeof k_message - 1;

    expect("version", sys_hypercall(PVKIT_HC_VERSION, 0, 0, 0, 0), PVKIT_ABI_VERSION);
    long features = sys_hypercall(PVKIT_HC_FEATURES, 0, 0, 0, 0);
    expect_true("features has CONSOLE_HC and is not negative",
                features >= 0 && (features & (long)PVKIT_FEAT_CONSOLE_HC) != 0, features);
    const long pv =
        (long)(PVKIT_FEAT_EVTCHN_DOORBELL | PVKIT_FEAT_EVTCHN_IRQ | PVKIT_FEAT_GRANT_POOLS);
    expect_true("features has the doorbell, event interrupts and grant pools",
                (features & pv) == pv, features);
    expect("start_info = RSI at entry", sys_hypercall(PVKIT_HC_START_INFO, 0, 0, 0, 0),
           sys_info(SYS_INFO_START_INFO_GPA));

    expect("console_write(good buffer)",
           sys_hypercall(PVKIT_HC_CONSOLE_WRITE, msg, (uint64_t)msg_len, 0, 0), msg_len);
    expect("console_write(len 0)", sys_hypercall(PVKIT_HC_CONSOLE_WRITE, msg, 0, 0, 0), 0);
    expect("console_write(len max + 1)",
           sys_hypercall(PVKIT_HC_CONSOLE_WRITE, msg, PVKIT_CONSOLE_WRITE_MAX + 1, 0, 0),
           -PVKIT_E2BIG);
    expect("console_write(len 2^63)", sys_hypercall(PVKIT_HC_CONSOLE_WRITE, msg, 1ull << 63, 0, 0),
           -PVKIT_E2BIG);
    expect("console_write(gpa = end of RAM)", sys_hypercall(PVKIT_HC_CONSOLE_WRITE, ram, 1, 0, 0),
           -PVKIT_EFAULT);
    expect("console_write(range crossing the end of RAM)",
           sys_hypercall(PVKIT_HC_CONSOLE_WRITE, ram - 8, 16, 0, 0), -PVKIT_EFAULT);
    expect("console_write(gpa + len wraps around)",
           sys_hypercall(PVKIT_HC_CONSOLE_WRITE, 0xfffffffffffff000ull, 4096, 0, 0), -PVKIT_EFAULT);
    expect("console_write(gpa 2^40)", sys_hypercall(PVKIT_HC_CONSOLE_WRITE, 1ull << 40, 8, 0, 0),
           -PVKIT_EFAULT);

    expect("sched_op(yield)", sys_hypercall(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_YIELD, 0, 0, 0), 0);
    expect("sched_op(unknown command 99)", sys_hypercall(PVKIT_HC_SCHED_OP, 99, 0, 0, 0),
           -PVKIT_EINVAL);
    expect("sched_op(shutdown, reserved reason 2)",
           sys_hypercall(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, 2, 0, 0), -PVKIT_EINVAL);
    expect("sched_op(shutdown, unknown reason 77)",
           sys_hypercall(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, 77, 0, 0), -PVKIT_EINVAL);

    /* The PV hypercalls with whatever is at guest address 0 (zeros):
     * evtchn-test has the thorough checks. This guest has no devices and
     * no store. */
    expect("evtchn_op(alloc, zeros: vector 0)", sys_hypercall(PVKIT_HC_EVTCHN_OP, 0, 0, 0, 0),
           -PVKIT_EINVAL);
    expect("grant_pool_query(0) without devices",
           sys_hypercall(PVKIT_HC_GRANT_POOL_QUERY, 0, 0, 0, 0), -PVKIT_ENOENT);
    expect("store_ring_info without a store", sys_hypercall(PVKIT_HC_STORE_RING_INFO, 0, 0, 0, 0),
           -PVKIT_ENOSYS);

    /* DEVICE_CONNECT needs a store connection to reach a backend. */
    expect("device_connect without a store", sys_hypercall(PVKIT_HC_DEVICE_CONNECT, 0, 0, 0, 0),
           -PVKIT_ENOSYS);
    expect("unknown hypercall PVKIT_HC_COUNT (9)", sys_hypercall(PVKIT_HC_COUNT, 0, 0, 0, 0),
           -PVKIT_ENOSYS);
    expect("unknown hypercall 127 (last stub)", sys_hypercall(127, 0, 0, 0, 0), -PVKIT_ENOSYS);
    expect("hypercall 128 (no stub)", sys_hypercall(128, 0, 0, 0, 0), -PVKIT_ENOSYS);
    expect("hypercall 2^32", sys_hypercall(1ull << 32, 0, 0, 0, 0), -PVKIT_ENOSYS);

    expect("unknown system call", sys_call5(1000, 0, 0, 0, 0, 0), -PVKIT_ENOSYS);
    expect("write(kernel address)", sys_write((const void*)(uintptr_t)0x100000, 8), -PVKIT_EFAULT);

    uprintf("hypercall-test: %u passed, %u failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
