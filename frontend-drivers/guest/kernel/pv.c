/*
 * The guest's side of pvkit's PV facilities: the local APIC that receives
 * event-channel interrupts, the table of which vector belongs to which
 * port, the event-channel system calls, sleeping until an event, and the
 * user mappings of the pages user-mode drivers work on.
 *
 * Design (docs/vmm.md, "Event channels"): drivers run in user mode and
 * touch their grant pools, rings and the doorbell directly; the kernel
 * only allocates ports (a hypercall), takes their interrupts (entry.S
 * sets a bit in the event page) and puts the vCPU to sleep when a program
 * waits (SCHED_OP BLOCK). Every instruction here costs ~0.7 us on the
 * development hosts, so this code does as little as it can.
 */
#include <pvkit/evtchn.h>
#include <pvkit/hypercall.h>
#include <pvkit/start_info.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/events.h"
#include "pvkit_guest/mem.h"

#define MSR_APIC_BASE 0x1bu
#define APIC_BASE_ENABLE (1ull << 11)
#define APIC_BASE_X2APIC (1ull << 10)
#define X2APIC_TPR 0x808u
#define X2APIC_SVR 0x80fu
#define X2APIC_LVT_TIMER 0x832u
#define X2APIC_TIMER_INITIAL 0x838u
#define X2APIC_TIMER_DIVIDE 0x83eu
#define APIC_SVR_ENABLE 0x100u
#define APIC_LVT_MASKED (1u << 16)
#define APIC_DIVIDE_BY_1 0xbu
/* KVM's local APIC timer counts at 1 GHz (APIC_BUS_CYCLE_NS = 1), so with
 * divide-by-1 the initial count is a number of nanoseconds. */
#define APIC_TIMER_MAX_US 4000000ull

#define CPUID_X2APIC (1u << 21)

#define FIRST_VECTOR PVKIT_EVTCHN_VECTOR_MIN
#define NR_VECTORS (PVKIT_EVTCHN_VECTOR_MAX - PVKIT_EVTCHN_VECTOR_MIN + 1)
_Static_assert(NR_VECTORS == 192, "entry.S has 192 stubs");

uint16_t evtchn_vector_port[192];
static int g_apic_ready;

static volatile struct pvkit_guest_events* events(void) {
    return (volatile struct pvkit_guest_events*)(uintptr_t)PVKIT_GUEST_EVENTS_VA;
}

/* ---- user mappings -------------------------------------------------------------- */

#define PTE_PRESENT 0x1ull
#define PTE_USER 0x4ull

int open_to_user(uint64_t start, uint64_t end) {
    for (uint64_t va = start; va < end;) {
        uint64_t size = 0;
        uint64_t* leaf = page_table_leaf(va, &size);
        if (leaf == NULL || (va & (size - 1)) != 0 || end - va < size)
            return -1;
        *leaf |= PTE_USER;
        va += size;
    }
    write_cr3(read_cr3());
    return 0;
}

static int open_or_say(const char* what, uint64_t start, uint64_t size) {
    if (open_to_user(start, start + size) == 0)
        return 0;
    kprintf("pvkit-mini: cannot open the %s at 0x%lx to user mode\n", what, start);
    return -1;
}

/* ---- local APIC ------------------------------------------------------------------ */

/* x2APIC: every register is an MSR, so nothing has to be mapped at the
 * xAPIC's 0xfee00000, which RAM may cover in a large guest. */
static int apic_init(void) {
    if ((cpuid(1).ecx & CPUID_X2APIC) == 0) {
        kputs("pvkit-mini: no x2APIC in CPUID; event channels need it\n");
        return -1;
    }
    wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
    wrmsr(X2APIC_TPR, 0);
    wrmsr(X2APIC_LVT_TIMER, APIC_LVT_MASKED | PVKIT_GUEST_TIMER_VECTOR);
    wrmsr(X2APIC_TIMER_DIVIDE, APIC_DIVIDE_BY_1);
    wrmsr(X2APIC_SVR, APIC_SVR_ENABLE | PVKIT_GUEST_SPURIOUS_VECTOR);
    g_apic_ready = 1;
    return 0;
}

static void timer_arm(uint64_t us) {
    if (us > APIC_TIMER_MAX_US)
        us = APIC_TIMER_MAX_US;
    wrmsr(X2APIC_LVT_TIMER, PVKIT_GUEST_TIMER_VECTOR); /* one-shot, unmasked */
    wrmsr(X2APIC_TIMER_INITIAL, us * 1000);
}

static void timer_disarm(void) {
    wrmsr(X2APIC_TIMER_INITIAL, 0);
}

/* ---- vectors ---------------------------------------------------------------------- */

static long vector_alloc(void) {
    for (uint32_t i = 0; i < NR_VECTORS; ++i) {
        if (FIRST_VECTOR + i == 0x80) /* the system-call gate */
            continue;
        if (evtchn_vector_port[i] == 0)
            return (long)(FIRST_VECTOR + i);
    }
    return -PVKIT_ENOSPC;
}

static void vector_bind(uint32_t vector, uint32_t port) {
    evtchn_vector_port[vector - FIRST_VECTOR] = (uint16_t)port;
}

static void vector_release_port(uint32_t port) {
    for (uint32_t i = 0; i < NR_VECTORS; ++i) {
        if (evtchn_vector_port[i] == port)
            evtchn_vector_port[i] = 0;
    }
}

static void pending_clear(uint32_t port) {
    __atomic_and_fetch(&events()->pending[port / 64], ~(1ull << (port % 64)), __ATOMIC_SEQ_CST);
}

static int pending(uint32_t port) {
    if (port != 0)
        return (events()->pending[port / 64] >> (port % 64)) & 1;
    for (uint32_t i = 0; i < 16; ++i) {
        if (events()->pending[i] != 0)
            return 1;
    }
    return 0;
}

/* ---- system calls ------------------------------------------------------------------ */

long sys_evtchn_alloc(uint64_t remote_dom) {
    if (!g_apic_ready)
        return -PVKIT_ENOSYS;
    if (remote_dom > 0xffff)
        return -PVKIT_EINVAL;
    long vector = vector_alloc();
    if (vector < 0)
        return vector;
    struct pvkit_evtchn_alloc_unbound op = {0};
    op.remote_dom = (pvkit_domid_t)remote_dom;
    op.vector = (uint32_t)vector;
    /* Interrupts stay off until the return to user mode, so the vector is
     * bound before the port's first interrupt can arrive. */
    long r = hypercall5(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, (uint64_t)(uintptr_t)&op,
                        0, 0, 0);
    if (r < 0)
        return r;
    pending_clear(op.port);
    vector_bind((uint32_t)vector, op.port);
    return (long)op.port;
}

long sys_evtchn_bind_loopback(uint64_t remote_port) {
    if (!g_apic_ready)
        return -PVKIT_ENOSYS;
    long vector = vector_alloc();
    if (vector < 0)
        return vector;
    struct pvkit_evtchn_bind_interdomain op = {0};
    op.remote_dom = PVKIT_DOMID_SELF;
    op.remote_port = (uint32_t)remote_port;
    op.vector = (uint32_t)vector;
    long r = hypercall5(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_BIND_INTERDOMAIN,
                        (uint64_t)(uintptr_t)&op, 0, 0, 0);
    if (r < 0)
        return r;
    pending_clear(op.local_port);
    vector_bind((uint32_t)vector, op.local_port);
    return (long)op.local_port;
}

long sys_evtchn_close(uint64_t port) {
    struct pvkit_evtchn_close op = {0};
    op.port = (uint32_t)port;
    if (port > PVKIT_EVTCHN_MAX_PORT)
        return -PVKIT_EINVAL;
    long r =
        hypercall5(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_CLOSE, (uint64_t)(uintptr_t)&op, 0, 0, 0);
    if (r < 0)
        return r;
    vector_release_port((uint32_t)port);
    pending_clear((uint32_t)port);
    return 0;
}

/*
 * Sleeps until `port` (any port if 0) is pending or `timeout_us` passes
 * (0: no timeout; at most 4 s per call). Returns 1 if pending, 0 on
 * timeout. Interrupts are off in the kernel; BLOCK returns after the
 * interrupt that woke it was handled, so the loop just looks again.
 */
long sys_evtchn_wait(uint64_t port, uint64_t timeout_us) {
    if (port > PVKIT_EVTCHN_MAX_PORT)
        return -PVKIT_EINVAL;
    if (!g_apic_ready)
        return -PVKIT_ENOSYS;
    const uint64_t fired = events()->timer_fired;
    if (timeout_us != 0)
        timer_arm(timeout_us);
    for (;;) {
        if (pending((uint32_t)port)) {
            if (timeout_us != 0)
                timer_disarm();
            return 1;
        }
        if (timeout_us != 0 && events()->timer_fired != fired)
            return 0;
        hypercall5(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_BLOCK, 0, 0, 0, 0);
    }
}

long sys_device_connect(uint64_t pool_index, uint64_t port) {
    if ((g_boot.start_info->features & PVKIT_FEAT_DEVICE_CONNECT) == 0)
        return -PVKIT_ENOSYS;
    struct pvkit_device_connect op = {0};
    op.pool_index = (uint32_t)pool_index;
    op.nr_queues = 1;
    op.ports[0] = (uint32_t)port;
    if (pool_index > 0xffffffffull || port > 0xffffffffull)
        return -PVKIT_EINVAL;
    return hypercall5(PVKIT_HC_DEVICE_CONNECT, (uint64_t)(uintptr_t)&op, 0, 0, 0, 0);
}

/* ---- set-up --------------------------------------------------------------------------- */

int pv_init(void) {
    const struct pvkit_start_info* si = g_boot.start_info;
    /* Programs read their devices and the PV addresses from here. */
    if (open_or_say("start-info page", g_boot.start_info_gpa, PVKIT_PAGE_SIZE) != 0)
        return -1;
    if ((si->features & PVKIT_FEAT_EVTCHN_IRQ) != 0 && apic_init() != 0)
        return -1;
    if ((si->features & PVKIT_FEAT_EVTCHN_DOORBELL) != 0 && si->doorbell_gpa != 0 &&
        open_or_say("doorbell page", si->doorbell_gpa, PVKIT_PAGE_SIZE) != 0)
        return -1;
    if ((si->features & PVKIT_FEAT_STORE_RING) != 0 && si->store_ring_gpa != 0) {
        if (open_or_say("store ring", si->store_ring_gpa, PVKIT_PAGE_SIZE) != 0)
            return -1;
        /* The VMM chose the store port's vector; ask which. */
        struct pvkit_evtchn_status st = {0};
        st.port = si->store_evtchn;
        if (g_apic_ready &&
            hypercall5(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_STATUS, (uint64_t)(uintptr_t)&st, 0, 0,
                       0) == 0 &&
            st.vector >= FIRST_VECTOR && st.vector <= PVKIT_EVTCHN_VECTOR_MAX && st.vector != 0x80)
            vector_bind(st.vector, st.port);
        else
            kputs("pvkit-mini: the store port has no usable vector\n");
    }
    if ((si->features & PVKIT_FEAT_GRANT_POOLS) != 0) {
        const uint32_t n = si->nr_devices < PVKIT_START_INFO_MAX_DEVICES
                               ? si->nr_devices
                               : PVKIT_START_INFO_MAX_DEVICES;
        for (uint32_t i = 0; i < n; ++i) {
            if (open_or_say("grant pool", si->devices[i].pool_gpa, si->devices[i].pool_size) != 0)
                return -1;
        }
    }
    return 0;
}
