/*
 * blk-hostile: a guest that attacks the backend of its first disk through a
 * ring it set up honestly, and then uses its second disk as a normal guest
 * would. The backend must contain every attack at the request (an error
 * response) or at the ring (the device goes Closing), never in the
 * process: the second disk, served by the same pvkit-blkback, keeps
 * working, and tests/vmm then serves another guest with it.
 *
 * On disk 0, after the core connected it (handshake, hand-off), the
 * program stops using the core and writes raw requests on its ring:
 *   1. a grant reference that was never granted          -> ERROR
 *   2. a grant to another domain (domid 7)               -> ERROR
 *   3. 12 segments in a direct request (the limit is 11) -> ERROR
 *   4. a valid read, on the same ring                    -> OKAY
 *   5. req_prod jumped far beyond the ring               -> the backend
 *      halts the ring: its state goes Closing (or Closed)
 * Then disk 1: write a page, flush, read it back, compare.
 */
#include <pvkit/blkif.h>
#include <pvkit/ring.h>

#include "programs.h"
#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"
#include "ublk.h"
#include "ulib.h"
#include "ustore.h"

#define IDLE_US 30000000ull
#define FOREIGN_DOMID 7u

static struct ublk g_blk;
static struct ublk g_good;
static int g_good_done;

/* Waits for the next response on the raw ring: spin, then sleep with
 * rsp_event armed. 1 and *rsp, or 0 after ~10 s, or -1 if rsp_prod is
 * impossible. */
static int next_response(struct pvkit_front_ring* fr, uint32_t port,
                         struct pvkit_blkif_response* rsp) {
    for (uint32_t round = 0; round < 100; ++round) {
        for (uint32_t i = 0; i < 200000u; ++i) {
            const int n = pvkit_front_ring_responses(fr);
            if (n < 0)
                return -1;
            if (n > 0) {
                union pvkit_blkif_sring_entry slot;
                pvkit_front_ring_take_response(fr, &slot, sizeof slot);
                *rsp = slot.rsp;
                return 1;
            }
            __builtin_ia32_pause();
        }
        (void)evtchn_test_and_clear(port);
        if (pvkit_front_ring_final_check(fr) == 0)
            (void)sys_evtchn_wait(port, 100000);
    }
    return 0;
}

static void put(struct pvkit_front_ring* fr, const struct pvkit_blkif_request* req, uint32_t port) {
    union pvkit_blkif_sring_entry slot;
    memset(&slot, 0, sizeof slot);
    slot.req = *req;
    check_eq("put a request on the ring", pvkit_front_ring_put_request(fr, &slot, sizeof slot), 0);
    if (pvkit_front_ring_push_requests(fr))
        evtchn_notify(port);
}

static void expect_status(struct pvkit_front_ring* fr, uint32_t port, uint64_t id, int16_t status,
                          const char* what) {
    struct pvkit_blkif_response rsp;
    memset(&rsp, 0, sizeof rsp);
    const int r = next_response(fr, port, &rsp);
    char line[96];
    fmt_format(line, sizeof line, "%s: a response", what);
    check_eq(line, r, 1);
    if (r != 1)
        return;
    fmt_format(line, sizeof line, "%s: its id", what);
    check_eq(line, (long)rsp.id, (long)id);
    fmt_format(line, sizeof line, "%s: its status", what);
    check_eq(line, rsp.status, status);
}

static void on_good_complete(struct ublk* blk, struct pvkit_blkfront_io* io) {
    (void)blk;
    (void)io;
    g_good_done = 1;
}

static int good_done(struct ublk* blk, void* arg) {
    (void)blk;
    (void)arg;
    return g_good_done;
}

/* Reads the backend's state of disk 0 until it is `a` or `b`. */
static int backend_state_becomes(char a, char b) {
    char v[8];
    char path[160];
    char token[16];
    for (int i = 0; i < 100; ++i) {
        const int r = xs_read(0, g_blk.state_path, v, sizeof v);
        if (r == 1 && (v[0] == a || v[0] == b))
            return 1;
        (void)xs_wait_event(path, sizeof path, token, sizeof token, 100000);
    }
    return 0;
}

static void good_disk(void) {
    int r = ublk_open(&g_good, 1, on_good_complete, NULL);
    check_eq("second disk: open", r, 0);
    if (r == 0)
        r = ublk_wait_connected(&g_good, IDLE_US);
    check_eq("second disk: connected", r, 0);
    if (r != 0)
        return;
    uint32_t frame = 0;
    volatile uint8_t* buf = NULL;
    check_eq("second disk: a buffer", ublk_alloc_buffer(&g_good, 1, &frame, &buf), 0);
    static const uint8_t ops[2] = {PVKIT_BLKFRONT_OP_WRITE, PVKIT_BLKFRONT_OP_READ};
    for (uint32_t k = 0; k < 2; ++k) {
        for (uint32_t b = 0; b < 4096; ++b)
            buf[b] = k == 0 ? (uint8_t)(b * 11u + 5u) : 0;
        struct pvkit_blkfront_seg seg = {frame, 0, 7, 0, 0};
        struct pvkit_blkfront_io io;
        memset(&io, 0, sizeof io);
        io.op = ops[k];
        io.sector = 64;
        io.nr_segs = 1;
        io.segs = &seg;
        g_good_done = 0;
        check_eq("second disk: submit", pvkit_blkfront_submit(&g_good.fe, &io), 0);
        check_eq("second disk: completes", ublk_run_until(&g_good, good_done, NULL, IDLE_US), 0);
        check_eq("second disk: status", io.status, 0);
    }
    uint32_t bad = 0;
    for (uint32_t b = 0; b < 4096; ++b)
        bad += buf[b] != (uint8_t)(b * 11u + 5u);
    check_eq("second disk: bytes read back differing", bad, 0);
    check_eq("second disk: close", ublk_close(&g_good, IDLE_US), 0);
}

int blk_hostile_main(void) {
    int r = ublk_open(&g_blk, 0, NULL, NULL);
    check_eq("first disk: open", r, 0);
    if (r == 0)
        r = ublk_wait_connected(&g_blk, IDLE_US);
    check_eq("first disk: connected", r, 0);
    if (r != 0)
        return check_summary("blk-hostile");

    /* From here on the core is left alone: its ring is ours to abuse. */
    struct pvkit_front_ring* fr = &g_blk.fe.ring;
    const uint32_t port = g_blk.port;
    const uint16_t handle = (uint16_t)g_blk.devid;
    uint32_t frame = 0;
    volatile uint8_t* buf = NULL;
    check_eq("a data frame", ublk_alloc_buffer(&g_blk, 1, &frame, &buf), 0);
    pvkit_grant_ref_t good = 0;
    check_eq("grant it to the backend",
             upool_grant(&g_blk.pool, g_blk.fe.backend_id, frame, 0, &good), 0);
    pvkit_grant_ref_t foreign = 0;
    check_eq("grant it to another domain",
             upool_grant(&g_blk.pool, FOREIGN_DOMID, frame, 0, &foreign), 0);

    struct pvkit_blkif_request req;
    memset(&req, 0, sizeof req);
    req.operation = PVKIT_BLKIF_OP_WRITE;
    req.handle = handle;
    req.nr_segments = 1;
    req.sector_number = 0;
    req.id = 0x1001;
    req.seg[0].gref = g_blk.pool.nr_grants - 1; /* never granted */
    req.seg[0].first_sect = 0;
    req.seg[0].last_sect = 7;
    put(fr, &req, port);
    expect_status(fr, port, 0x1001, PVKIT_BLKIF_RSP_ERROR, "a grant never made");

    req.operation = PVKIT_BLKIF_OP_READ;
    req.id = 0x1002;
    req.seg[0].gref = foreign;
    put(fr, &req, port);
    expect_status(fr, port, 0x1002, PVKIT_BLKIF_RSP_ERROR, "a grant to another domain");

    req.id = 0x1003;
    req.nr_segments = PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST + 1;
    put(fr, &req, port);
    expect_status(fr, port, 0x1003, PVKIT_BLKIF_RSP_ERROR, "12 direct segments");

    req.id = 0x1004;
    req.nr_segments = 1;
    req.seg[0].gref = good;
    put(fr, &req, port);
    expect_status(fr, port, 0x1004, PVKIT_BLKIF_RSP_OKAY, "a valid read after them");

    /* The producer index jumps a whole ring and more past the consumer:
     * the backend must halt this ring and close the device. */
    __atomic_store_n(&fr->sring->req_prod, fr->req_prod_pvt + 5u * fr->nr_ents, __ATOMIC_RELEASE);
    evtchn_notify(port);
    check("an impossible req_prod closes the device (backend Closing or Closed)",
          backend_state_becomes('5', '6'), 0);

    good_disk();
    return check_summary("blk-hostile");
}
