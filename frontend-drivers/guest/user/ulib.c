#include "ulib.h"

#include <pvkit/evtchn.h>

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

long sys_evtchn_alloc(uint16_t remote_dom) {
    return sys_call5(SYS_EVTCHN_ALLOC, remote_dom, 0, 0, 0, 0);
}

long sys_evtchn_bind_loopback(uint32_t remote_port) {
    return sys_call5(SYS_EVTCHN_BIND_LOOPBACK, remote_port, 0, 0, 0, 0);
}

long sys_evtchn_close(uint32_t port) {
    return sys_call5(SYS_EVTCHN_CLOSE, port, 0, 0, 0, 0);
}

long sys_evtchn_wait(uint32_t port, uint64_t timeout_us) {
    return sys_call5(SYS_EVTCHN_WAIT, port, timeout_us, 0, 0, 0);
}

long sys_device_connect(uint32_t pool_index, uint32_t port) {
    return sys_call5(SYS_DEVICE_CONNECT, pool_index, port, 0, 0, 0);
}

void sys_post(uint8_t code) {
    (void)sys_call5(SYS_POST, code, 0, 0, 0, 0);
}

static const struct pvkit_start_info* g_start_info;
static volatile uint32_t* g_doorbell;

const struct pvkit_start_info* start_info(void) {
    /* Identity mapped; the kernel opened the page read-only to user mode.
     * Asked once: a system call costs ~0.2 ms on the development hosts. */
    if (g_start_info == NULL)
        g_start_info = (const struct pvkit_start_info*)(uintptr_t)sys_info(SYS_INFO_START_INFO_GPA);
    return g_start_info;
}

void evtchn_notify(uint32_t port) {
    if (g_doorbell == NULL)
        g_doorbell =
            (volatile uint32_t*)(uintptr_t)(start_info()->doorbell_gpa + PVKIT_DOORBELL_NOTIFY);
    /* volatile: one 32-bit store, never merged or split: KVM's ioeventfd
     * matches exactly this write. */
    *g_doorbell = port;
}

volatile struct pvkit_guest_events* guest_events(void) {
    return (volatile struct pvkit_guest_events*)(uintptr_t)PVKIT_GUEST_EVENTS_VA;
}

int evtchn_pending(uint32_t port) {
    return (int)((guest_events()->pending[port / 64] >> (port % 64)) & 1);
}

int evtchn_test_and_clear(uint32_t port) {
    const uint64_t bit = 1ull << (port % 64);
    uint64_t old = __atomic_fetch_and(&guest_events()->pending[port / 64], ~bit, __ATOMIC_SEQ_CST);
    return (old & bit) != 0;
}

static unsigned g_passed;
static unsigned g_failed;

void check(const char* what, int ok, long got) {
    if (ok)
        ++g_passed;
    else
        ++g_failed;
    uprintf("  %s %s (%ld)\n", ok ? "ok  " : "FAIL", what, got);
}

void check_eq(const char* what, long got, long want) {
    if (got == want) {
        ++g_passed;
        uprintf("  ok   %s = %ld\n", what, got);
    } else {
        ++g_failed;
        uprintf("  FAIL %s = %ld, expected %ld\n", what, got, want);
    }
}

void check_quiet(const char* what, long got, long want) {
    if (got == want) {
        ++g_passed;
        return;
    }
    ++g_failed;
    uprintf("  FAIL %s = %ld, expected %ld\n", what, got, want);
}

int check_summary(const char* name) {
    uprintf("%s: %u passed, %u failed\n", name, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

unsigned current_cpl(void) {
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3u;
}

int cmdline_value(const char* key, char* buf, uint32_t size) {
    const struct pvkit_start_info* si = start_info();
    const uint32_t len = si->cmdline_len < PVKIT_START_INFO_CMDLINE_MAX
                             ? si->cmdline_len
                             : PVKIT_START_INFO_CMDLINE_MAX;
    const uint32_t klen = (uint32_t)strlen(key);
    for (uint32_t i = 0; i + klen + 1 <= len; ++i) {
        if ((i != 0 && si->cmdline[i - 1] != ' ') || memcmp(si->cmdline + i, key, klen) != 0 ||
            si->cmdline[i + klen] != '=')
            continue;
        uint32_t n = 0;
        const uint32_t at = i + klen + 1;
        while (at + n < len && si->cmdline[at + n] != ' ' && si->cmdline[at + n] != '\0')
            ++n;
        if (n + 1 > size)
            return -PVKIT_E2BIG;
        memcpy(buf, si->cmdline + at, n);
        buf[n] = '\0';
        return (int)n;
    }
    return -PVKIT_ENOENT;
}

int cmdline_u64(const char* key, uint64_t* value) {
    char buf[24];
    const int n = cmdline_value(key, buf, sizeof buf);
    if (n == -PVKIT_ENOENT)
        return 0;
    if (n <= 0)
        return -PVKIT_EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) {
        if (buf[i] < '0' || buf[i] > '9' || v > (1ull << 59))
            return -PVKIT_EINVAL;
        v = v * 10u + (uint64_t)(buf[i] - '0');
    }
    *value = v;
    return 1;
}
