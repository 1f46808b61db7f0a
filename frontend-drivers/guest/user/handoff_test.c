/*
 * handoff-test: device 0 handed to its backend, then exercised from user
 * mode. tests/vmm plays the backend (a process with a hand-off socket
 * that publishes InitWait as domain 0 would).
 *
 *  1. Find the device's backend through the store, watch its state until
 *     InitWait, allocate a port for the backend's domain and ask the VMM
 *     to hand off (SYS_DEVICE_CONNECT); a second request for the same
 *     port is refused (EISCONN).
 *  2. The backend writes a pattern into the pool and signals its irqfd:
 *     the guest checks the pattern, writes its own, kicks the doorbell
 *     and waits for the backend's acknowledgement. Then the guest grants a third frame to the backend's domain from
 *     user mode (upool.c) and publishes the reference as ring-ref; the
 *     backend maps it with the transport library's GrantMapper, writes
 *     into it and keeps it mapped: ending the grant fails (EBUSY) until
 *     the backend lets go.
 *  3. PINGS round trips: the backend signals, the guest spins on the
 *     event page in user mode, clears, kicks. The backend times them.
 *  4. BURST doorbell kicks between POST codes 0x12 and 0x13 (the backend
 *     counts them on its eventfd), then one last signal ends the run.
 */
#include <pvkit/evtchn.h>
#include <pvkit/grant.h>

#include "programs.h"
#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"
#include "pvkit_guest/pool_pattern.h"
#include "ulib.h"
#include "upool.h"
#include "ustore.h"

#define PINGS 1000u
#define BURST 100000u
#define SPINS 2000000u

static char g_buf[256];

/* Waits for the port's next event: spin (native speed), then sleep. */
static int next_event(uint32_t port) {
    for (uint32_t i = 0; i < SPINS; ++i) {
        if (evtchn_test_and_clear(port))
            return 1;
        __builtin_ia32_pause();
    }
    for (int i = 0; i < 300; ++i) {
        if (evtchn_test_and_clear(port))
            return 1;
        sys_evtchn_wait(port, 100000);
    }
    return evtchn_test_and_clear(port);
}

static int backend_ready(const char* state_path) {
    char ev_path[160];
    char ev_token[16];
    if (xs_watch(state_path, "be") != 0)
        return 0;
    for (int i = 0; i < 300; ++i) {
        int r = xs_read(0, state_path, g_buf, sizeof g_buf);
        if (r == 1 && g_buf[0] == '2')
            return 1;
        (void)xs_wait_event(ev_path, sizeof ev_path, ev_token, sizeof ev_token, 100000);
    }
    return 0;
}

int handoff_test_main(void) {
    const struct pvkit_start_info* si = start_info();
    check_eq("xs_init", xs_init(), 0);
    check("a device", si->nr_devices >= 1, (long)si->nr_devices);
    if (si->nr_devices < 1)
        return check_summary("handoff-test");
    const struct pvkit_start_device* dev = &si->devices[0];
    char front[64];
    fmt_format(front, sizeof front, "device/%s/%u/backend",
               dev->type == PVKIT_DEV_NET ? PVKIT_DEV_NET_NAME : PVKIT_DEV_BLK_NAME, dev->devid);
    char backend[128];
    int r = xs_read(0, front, backend, sizeof backend);
    check("read the frontend's backend node", r > 0, r);
    fmt_format(front, sizeof front, "device/%s/%u/backend-id",
               dev->type == PVKIT_DEV_NET ? PVKIT_DEV_NET_NAME : PVKIT_DEV_BLK_NAME, dev->devid);
    r = xs_read(0, front, g_buf, sizeof g_buf);
    check("read backend-id", r > 0, r);
    const uint16_t backend_id = (uint16_t)(r > 0 ? g_buf[0] - '0' : 0); /* domain 0 here */
    char state[160];
    fmt_format(state, sizeof state, "%s/state", backend);
    check("the backend reaches InitWait", backend_ready(state), 0);

    const long port = sys_evtchn_alloc(backend_id);
    check("alloc a port for the backend", port > 0, port);
    if (port <= 0)
        return check_summary("handoff-test");
    const long connected = sys_device_connect(0, (uint32_t)port);
    check_eq("device_connect(0, port)", connected, 0);
    if (connected != 0)
        return check_summary("handoff-test");
    check_eq("device_connect(0, port) again", sys_device_connect(0, (uint32_t)port),
             -PVKIT_EISCONN);
    uprintf("handoff-test: port %ld handed to the backend\n", port);

    /* 2: the pool. */
    check("the backend's first signal", next_event((uint32_t)port), 0);
    const volatile struct pvkit_grant_pool_header* hdr =
        (const volatile struct pvkit_grant_pool_header*)(uintptr_t)dev->pool_gpa;
    const uint32_t first = hdr->data_first;
    const volatile uint8_t* in =
        (const volatile uint8_t*)(uintptr_t)(dev->pool_gpa + first * 4096ull);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < 4096; ++i)
        bad += in[i] != pool_host_byte(i);
    check_eq("bytes of the backend's pattern that differ", bad, 0);
    volatile uint8_t* out = (volatile uint8_t*)(uintptr_t)(dev->pool_gpa + (first + 1) * 4096ull);
    for (uint32_t i = 0; i < 4096; ++i)
        out[i] = pool_guest_byte(i);
    evtchn_notify((uint32_t)port);
    /* The backend acknowledges before the next kick: two kicks in flight
     * at once would coalesce in its eventfd counter. */
    check("the backend checked our pattern", next_event((uint32_t)port), 0);

    /* 2b: a grant from user mode, mapped by the backend. */
    struct upool pool;
    check_eq("upool_open(0)", upool_open(0, &pool), 0);
    uint32_t frames = 0;
    check_eq("allocate three frames", upool_alloc_frames(&pool, 3, &frames), 0);
    check_eq("they start at data_first", frames, first);
    volatile char* page = (volatile char*)upool_frame(&pool, frames + 2);
    static const char k_granted[] = "granted by the guest";
    for (uint32_t i = 0; i < sizeof k_granted; ++i)
        page[i] = k_granted[i];
    pvkit_grant_ref_t ref = 0;
    check_eq("grant the frame read-write", upool_grant(&pool, backend_id, frames + 2, 0, &ref), 0);
    char node[64];
    char value[16];
    fmt_format(node, sizeof node, "device/%s/%u/ring-ref",
               dev->type == PVKIT_DEV_NET ? PVKIT_DEV_NET_NAME : PVKIT_DEV_BLK_NAME, dev->devid);
    fmt_format(value, sizeof value, "%u", ref);
    check_eq("publish ring-ref", xs_write(0, node, value), 0);
    evtchn_notify((uint32_t)port);
    check("the backend mapped it", next_event((uint32_t)port), 0);
    check_eq("end_grant while mapped", upool_end_grant(&pool, ref), -PVKIT_EBUSY);
    evtchn_notify((uint32_t)port);
    check("the backend unmapped it", next_event((uint32_t)port), 0);
    check_eq("end_grant after the unmap", upool_end_grant(&pool, ref), 0);
    static const char k_mapped[] = "written by the backend";
    int same = 1;
    for (uint32_t i = 0; i < sizeof k_mapped; ++i)
        same &= page[1024 + i] == k_mapped[i];
    check("the backend's words in the frame", same, 0);
    check_eq("end_grant again", upool_end_grant(&pool, ref), -PVKIT_EINVAL);
    evtchn_notify((uint32_t)port);

    /* 3: round trips. */
    uint32_t missed = 0;
    for (uint32_t i = 0; i < PINGS; ++i) {
        if (!next_event((uint32_t)port))
            ++missed;
        evtchn_notify((uint32_t)port);
    }
    check_eq("pings that never came", missed, 0);

    /* 4: a burst of kicks. */
    check("the backend's go for the burst", next_event((uint32_t)port), 0);
    sys_post(0x12);
    for (uint32_t i = 0; i < BURST; ++i)
        evtchn_notify((uint32_t)port);
    sys_post(0x13);
    check("the backend's last signal", next_event((uint32_t)port), 0);
    return check_summary("handoff-test");
}
