/*
 * store-hostile-index and store-hostile-header: a guest that breaks the
 * store ring protocol. After one good request, the first moves req_prod
 * 5000 bytes ahead (more than the ring holds), the second sends a header
 * announcing a 5000-byte payload (more than a message may carry). Either
 * way the VMM must disconnect this guest's store connection (connection
 * DISCONNECTED, error PROTO) and keep the guest running: the program sees
 * both fields, finds later requests refused with ENOTCONN, and exits 0.
 */
#include <pvkit/store.h>

#include "programs.h"
#include "ulib.h"
#include "ustore.h"

static char g_buf[256];

static int hostile(int header) {
    check_eq("xs_init", xs_init(), 0);
    int r = xs_read(0, "name", g_buf, sizeof g_buf);
    check("a good read first", r > 0, r);
    struct pvkit_store_ring* ring =
        (struct pvkit_store_ring*)(uintptr_t)start_info()->store_ring_gpa;
    const uint32_t prod = __atomic_load_n(&ring->req_prod, __ATOMIC_ACQUIRE);
    if (header) {
        const struct pvkit_store_msg_header h = {PVKIT_STORE_READ, 77, 0, 5000};
        const char* bytes = (const char*)&h;
        for (uint32_t i = 0; i < sizeof h; ++i)
            ring->req[(prod + i) & (PVKIT_STORE_RING_SIZE - 1)] = bytes[i];
        __atomic_store_n(&ring->req_prod, prod + (uint32_t)sizeof h, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&ring->req_prod, prod + 5000, __ATOMIC_RELEASE);
    }
    evtchn_notify(xs_port());
    uint32_t conn = PVKIT_STORE_RING_CONNECTED;
    for (int i = 0; i < 100 && conn == PVKIT_STORE_RING_CONNECTED; ++i) {
        conn = __atomic_load_n(&ring->connection, __ATOMIC_ACQUIRE);
        if (conn == PVKIT_STORE_RING_CONNECTED)
            sys_evtchn_wait(xs_port(), 100000);
    }
    check_eq("connection", conn, PVKIT_STORE_RING_DISCONNECTED);
    check_eq("error", __atomic_load_n(&ring->error, __ATOMIC_ACQUIRE), PVKIT_STORE_RING_ERR_PROTO);
    check_eq("a read afterwards", xs_read(0, "name", g_buf, sizeof g_buf), -PVKIT_ENOTCONN);
    uprintf("store-hostile: the guest is still running\n");
    return check_summary(header ? "store-hostile-header" : "store-hostile-index");
}

int store_hostile_index_main(void) {
    return hostile(0);
}

int store_hostile_header_main(void) {
    return hostile(1);
}
