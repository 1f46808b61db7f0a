/*
 * evtchn-test: event channels from guest user mode.
 *
 * Part 1 passes bad arguments to every event-channel, grant-pool,
 * store-ring and device-connect hypercall (raw, through SYS_HYPERCALL;
 * the structures live in user memory, whose virtual addresses are their
 * guest-physical ones) and checks each -PVKIT_E* result.
 *
 * Part 2 uses the system calls: a loopback pair of ports, kicked through
 * the doorbell from CPL3, raises the other port's interrupt without the
 * VMM; the APIC timer ends a wait with nothing pending; doorbell writes of
 * an unbound port and of the wrong size are dropped by the VMM (the test
 * checks its counters: two of each kind).
 *
 * Part 3 marks a burst of 100000 doorbell kicks of a port nobody listens
 * to with POST codes 0x10 and 0x11, then 1000 writes of an unbound port
 * (each a full exit to the VMM, which drops it) up to POST code 0x12: the
 * VMM records the times, which give the cost of each kind of write from
 * user mode.
 */
#include <pvkit/evtchn.h>
#include <pvkit/grant.h>
#include <pvkit/hypercall.h>
#include <pvkit/store.h>

#include "programs.h"
#include "ulib.h"

#define KICK_BURST 100000u
#define UNBOUND_BURST 1000u

static struct pvkit_evtchn_alloc_unbound g_alloc;
static struct pvkit_evtchn_bind_interdomain g_bind;
static struct pvkit_evtchn_close g_close;
static struct pvkit_evtchn_status g_status;
static struct pvkit_grant_pool_info g_pool;
static struct pvkit_store_ring_info g_ring_info;
static struct pvkit_device_connect g_connect;

static uint64_t va(const void* p) {
    return (uint64_t)(uintptr_t)p; /* identity mapped: also the GPA */
}

static long evtchn_op(uint64_t cmd, const void* arg) {
    return sys_hypercall(PVKIT_HC_EVTCHN_OP, cmd, va(arg), 0, 0);
}

static long alloc_raw(uint16_t remote, uint32_t vector) {
    g_alloc = (struct pvkit_evtchn_alloc_unbound){0};
    g_alloc.remote_dom = remote;
    g_alloc.vector = vector;
    return evtchn_op(PVKIT_EVTCHNOP_ALLOC_UNBOUND, &g_alloc);
}

static long close_raw(uint32_t port) {
    g_close = (struct pvkit_evtchn_close){0};
    g_close.port = port;
    return evtchn_op(PVKIT_EVTCHNOP_CLOSE, &g_close);
}

static long status_raw(uint32_t port) {
    g_status = (struct pvkit_evtchn_status){0};
    g_status.port = port;
    return evtchn_op(PVKIT_EVTCHNOP_STATUS, &g_status);
}

static long bind_raw(uint16_t remote, uint32_t remote_port, uint32_t vector) {
    g_bind = (struct pvkit_evtchn_bind_interdomain){0};
    g_bind.remote_dom = remote;
    g_bind.remote_port = remote_port;
    g_bind.vector = vector;
    return evtchn_op(PVKIT_EVTCHNOP_BIND_INTERDOMAIN, &g_bind);
}

static long connect_raw(void) {
    return sys_hypercall(PVKIT_HC_DEVICE_CONNECT, va(&g_connect), 0, 0, 0);
}

static void connect_reset(uint32_t pool, uint32_t port) {
    g_connect = (struct pvkit_device_connect){0};
    g_connect.pool_index = pool;
    g_connect.nr_queues = 1;
    g_connect.ports[0] = port;
}

static void bad_arguments(void) {
    const struct pvkit_start_info* si = start_info();
    const uint64_t ram = (uint64_t)sys_info(SYS_INFO_RAM_BYTES);
    const uint16_t self = (uint16_t)sys_info(SYS_INFO_DOMID);
    uprintf("evtchn-test: bad arguments\n");

    check_eq("evtchn_op(unknown command 4)", evtchn_op(4, &g_alloc), -PVKIT_EINVAL);
    check_eq("evtchn_op(command 2^32)", evtchn_op(1ull << 32, &g_alloc), -PVKIT_EINVAL);
    check_eq("alloc_unbound(gpa = end of RAM)",
             sys_hypercall(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, ram, 0, 0),
             -PVKIT_EFAULT);
    check_eq("alloc_unbound(gpa wraps)",
             sys_hypercall(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, ~0ull - 3, 0, 0),
             -PVKIT_EFAULT);
    check_eq("alloc_unbound(vector 0x2f)", alloc_raw(0, 0x2f), -PVKIT_EINVAL);
    check_eq("alloc_unbound(vector 0xf0)", alloc_raw(0, 0xf0), -PVKIT_EINVAL);
    check_eq("alloc_unbound(remote 0x7ff5)", alloc_raw(0x7ff5, 0x40), -PVKIT_EINVAL);
    g_alloc = (struct pvkit_evtchn_alloc_unbound){0};
    g_alloc.vector = 0x40;
    g_alloc.pad = 1;
    check_eq("alloc_unbound(pad != 0)", evtchn_op(PVKIT_EVTCHNOP_ALLOC_UNBOUND, &g_alloc),
             -PVKIT_EINVAL);
    g_alloc.pad = 0;
    g_alloc.pad2 = 1;
    check_eq("alloc_unbound(pad2 != 0)", evtchn_op(PVKIT_EVTCHNOP_ALLOC_UNBOUND, &g_alloc),
             -PVKIT_EINVAL);
    check_eq("alloc_unbound(untouched on failure)", g_alloc.port, 0);

    /* A good one, then its life cycle. The kernel's vector table does not
     * know this port: its interrupts (none come) would be counted only. */
    check_eq("alloc_unbound(dom 0, vector 0x40)", alloc_raw(0, 0x40), 0);
    const uint32_t port = g_alloc.port;
    check("alloc_unbound returned a port in range", port >= 1 && port <= PVKIT_EVTCHN_MAX_PORT,
          (long)port);
    check_eq("status(port)", status_raw(port), 0);
    check_eq("status(port).status", g_status.status, PVKIT_EVTCHNSTAT_UNBOUND);
    check_eq("status(port).remote_dom", g_status.remote_dom, 0);
    check_eq("status(port).vector", g_status.vector, 0x40);
    check_eq("bind_interdomain(to a port waiting for dom 0)", bind_raw(self, port, 0x41),
             -PVKIT_EINVAL);
    check_eq("close(port)", close_raw(port), 0);
    check_eq("close(port) again", close_raw(port), -PVKIT_ENOENT);
    check_eq("status(closed port)", status_raw(port), 0);
    check_eq("status(closed port).status", g_status.status, PVKIT_EVTCHNSTAT_CLOSED);

    check_eq("close(port 0)", close_raw(0), -PVKIT_EINVAL);
    check_eq("close(port 1024)", close_raw(PVKIT_EVTCHN_MAX_PORT + 1), -PVKIT_EINVAL);
    g_close = (struct pvkit_evtchn_close){1, 1};
    check_eq("close(pad != 0)", evtchn_op(PVKIT_EVTCHNOP_CLOSE, &g_close), -PVKIT_EINVAL);
    check_eq("status(port 0)", status_raw(0), -PVKIT_EINVAL);
    check_eq("status(port 1024)", status_raw(1024), -PVKIT_EINVAL);
    g_status = (struct pvkit_evtchn_status){0};
    g_status.port = 1;
    g_status.pad2 = 7;
    check_eq("status(pad2 != 0)", evtchn_op(PVKIT_EVTCHNOP_STATUS, &g_status), -PVKIT_EINVAL);

    check_eq("bind_interdomain(remote dom 0)", bind_raw(0, 1, 0x41), -PVKIT_EOPNOTSUPP);
    check_eq("bind_interdomain(remote dom 0x7ff5)", bind_raw(0x7ff5, 1, 0x41), -PVKIT_EINVAL);
    check_eq("bind_interdomain(self, port 0)", bind_raw(PVKIT_DOMID_SELF, 0, 0x41), -PVKIT_EINVAL);
    check_eq("bind_interdomain(self, closed port)", bind_raw(PVKIT_DOMID_SELF, port, 0x41),
             -PVKIT_ENOENT);
    check_eq("bind_interdomain(self, bad vector)", bind_raw(PVKIT_DOMID_SELF, port, 0x10),
             -PVKIT_EINVAL);

    if ((si->features & PVKIT_FEAT_STORE_RING) != 0) {
        const uint32_t store = si->store_evtchn;
        check_eq("status(store port)", status_raw(store), 0);
        check_eq("status(store port).status", g_status.status, PVKIT_EVTCHNSTAT_INTERDOMAIN);
        check_eq("close(store port)", close_raw(store), -PVKIT_EPERM);
        check_eq("store_ring_info",
                 sys_hypercall(PVKIT_HC_STORE_RING_INFO, va(&g_ring_info), 0, 0, 0), 0);
        check_eq("store_ring_info.ring_gpa", (long)g_ring_info.ring_gpa, (long)si->store_ring_gpa);
        check_eq("store_ring_info.evtchn", g_ring_info.evtchn, store);
        check_eq("store_ring_info.domid", g_ring_info.domid, self);
        check_eq("store_ring_info(bad gpa)", sys_hypercall(PVKIT_HC_STORE_RING_INFO, ram, 0, 0, 0),
                 -PVKIT_EFAULT);
        connect_reset(0, store);
        check_eq("device_connect(store port)", connect_raw(),
                 si->nr_devices > 0 ? -PVKIT_EPERM : -PVKIT_ENOENT);
    } else {
        check_eq("store_ring_info without a store",
                 sys_hypercall(PVKIT_HC_STORE_RING_INFO, va(&g_ring_info), 0, 0, 0), -PVKIT_ENOSYS);
        check_eq("device_connect without a store", connect_raw(), -PVKIT_ENOSYS);
    }

    check_eq("grant_pool_query(index 99)",
             sys_hypercall(PVKIT_HC_GRANT_POOL_QUERY, 99, va(&g_pool), 0, 0), -PVKIT_ENOENT);
    if (si->nr_devices > 0) {
        check_eq("grant_pool_query(0, bad gpa)",
                 sys_hypercall(PVKIT_HC_GRANT_POOL_QUERY, 0, ram, 0, 0), -PVKIT_EFAULT);
        check_eq("grant_pool_query(0)",
                 sys_hypercall(PVKIT_HC_GRANT_POOL_QUERY, 0, va(&g_pool), 0, 0), 0);
        check_eq("grant_pool_query(0).gpa", (long)g_pool.gpa, (long)si->devices[0].pool_gpa);
        check_eq("grant_pool_query(0).nr_frames * 4096", (long)g_pool.nr_frames * 4096,
                 (long)si->devices[0].pool_size);
        check_eq("grant_pool_query(0).devid", g_pool.devid, si->devices[0].devid);
    }

    if ((si->features & PVKIT_FEAT_DEVICE_CONNECT) != 0) {
        check_eq("device_connect(gpa = end of RAM)",
                 sys_hypercall(PVKIT_HC_DEVICE_CONNECT, ram, 0, 0, 0), -PVKIT_EFAULT);
        connect_reset(0, 5);
        g_connect.nr_queues = 0;
        check_eq("device_connect(0 queues)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 5);
        g_connect.nr_queues = 9;
        check_eq("device_connect(9 queues)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 5);
        g_connect.reserved[1] = 1;
        check_eq("device_connect(reserved != 0)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 0);
        check_eq("device_connect(port 0)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 1024);
        check_eq("device_connect(port 1024)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 5);
        g_connect.nr_queues = 2;
        g_connect.ports[1] = 5;
        check_eq("device_connect(a port twice)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(0, 5);
        g_connect.ports[3] = 6;
        check_eq("device_connect(unused slot != 0)", connect_raw(), -PVKIT_EINVAL);
        connect_reset(99, 5);
        check_eq("device_connect(pool 99)", connect_raw(), -PVKIT_ENOENT);
        if (si->nr_devices > 0) {
            connect_reset(0, 1000);
            check_eq("device_connect(unallocated port)", connect_raw(), -PVKIT_ENOENT);
        }
    }
}

/* Waits for `port` with a generous bound; the VMM's --timeout bounds the
 * whole run anyway. */
static long wait_for(uint32_t port) {
    for (int i = 0; i < 50; ++i) {
        long r = sys_evtchn_wait(port, 100000);
        if (r != 0)
            return r;
    }
    return 0;
}

static void loopback(void) {
    uprintf("evtchn-test: loopback pair, kicked from user mode\n");
    const uint16_t self = (uint16_t)sys_info(SYS_INFO_DOMID);
    const long a = sys_evtchn_alloc(self);
    check("alloc(self)", a > 0, a);
    const long b = sys_evtchn_bind_loopback((uint32_t)a);
    check("bind_loopback(a)", b > 0 && b != a, b);
    if (a <= 0 || b <= 0)
        return;
    check_eq("status(a)", status_raw((uint32_t)a), 0);
    check_eq("status(a).status", g_status.status, PVKIT_EVTCHNSTAT_INTERDOMAIN);
    check_eq("status(a).remote_port", g_status.remote_port, b);
    check_eq("bind_loopback(a) again", sys_evtchn_bind_loopback((uint32_t)a), -PVKIT_EINVAL);

    const uint64_t irqs = guest_events()->interrupts;
    check("a is not pending", !evtchn_pending((uint32_t)a), 0);
    evtchn_notify((uint32_t)b); /* b's kick is a's interrupt */
    check_eq("wait(a) after kicking b", wait_for((uint32_t)a), 1);
    check("a pending, b not", evtchn_test_and_clear((uint32_t)a) && !evtchn_pending((uint32_t)b),
          0);
    evtchn_notify((uint32_t)a);
    check_eq("wait(b) after kicking a", wait_for((uint32_t)b), 1);
    check("b pending", evtchn_test_and_clear((uint32_t)b), 0);
    check("two interrupts taken", guest_events()->interrupts - irqs >= 2,
          (long)(guest_events()->interrupts - irqs));

    /* The APIC timer ends a wait that nothing else ends. */
    const uint64_t fired = guest_events()->timer_fired;
    check_eq("wait(a, 2 ms) with nothing pending", sys_evtchn_wait((uint32_t)a, 2000), 0);
    check("the timer fired", guest_events()->timer_fired != fired,
          (long)(guest_events()->timer_fired - fired));

    /* Writes nobody can receive: the VMM drops and counts them. */
    evtchn_notify(1000);
    evtchn_notify(1001);
    *(volatile uint16_t*)(uintptr_t)start_info()->doorbell_gpa = (uint16_t)a;
    *(volatile uint32_t*)(uintptr_t)(start_info()->doorbell_gpa + 8) = (uint32_t)a;
    check("a not pending after the dropped writes", !evtchn_pending((uint32_t)a), 0);

    check_eq("close(b)", sys_evtchn_close((uint32_t)b), 0);
    check_eq("status(a) after closing b", status_raw((uint32_t)a), 0);
    check_eq("status(a).status", g_status.status, PVKIT_EVTCHNSTAT_UNBOUND);
    check_eq("close(a)", sys_evtchn_close((uint32_t)a), 0);
}

static void kick_burst(void) {
    const long port = sys_evtchn_alloc(0);
    check("alloc(dom 0) for the burst", port > 0, port);
    if (port <= 0)
        return;
    sys_post(0x10);
    for (uint32_t i = 0; i < KICK_BURST; ++i)
        evtchn_notify((uint32_t)port);
    sys_post(0x11);
    for (uint32_t i = 0; i < UNBOUND_BURST; ++i)
        evtchn_notify(1002);
    sys_post(0x12);
    uprintf("evtchn-test: %u kicks of port %ld between POST codes 0x10 and 0x11, %u writes of "
            "unbound port 1002 up to 0x12\n",
            KICK_BURST, port, UNBOUND_BURST);
    check_eq("close(burst port)", sys_evtchn_close((uint32_t)port), 0);
}

int evtchn_test_main(void) {
    bad_arguments();
    loopback();
    kick_burst();
    return check_summary("evtchn-test");
}
