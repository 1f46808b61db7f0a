/*
 * blk-selftest: the guest block path end to end. The first PV disk is
 * driven by the blkfront core in user mode (ublk.c) against the backend
 * that serves it (pvkit-blkback, handed the device by the VMM):
 *
 *  1. Connect (handshake, hand-off) and check the disk is big enough.
 *  2. Write the extents of pvkit_guest/blk_pattern.h, all in flight at
 *     once: a single sector, partial pages, whole pages, 11 segments (one
 *     full ring request), 26 and 64 pages (several ring requests or
 *     indirect ones), the last page of the disk.
 *  3. Flush (when offered), read every extent back into zeroed buffers
 *     and compare byte for byte.
 *  4. The core's own checks: a read past the end is refused.
 *  5. Close the device cleanly.
 *
 * The exit status (0 only if every check passed) becomes the guest's
 * shutdown reason, so pvkit-vmm exits 0 only on success. tests/vmm then
 * checks the pattern in the image file from the host.
 *
 * With `blk.rounds=N` on the command line the write/read/verify part runs
 * N times. With `blk.until_reconnects=K` it keeps running rounds until the
 * core reconnected K times and one whole round ran after that: the
 * backend-restart test kills blkback while the guest is busy, and the
 * guest's run cannot end before the restart was lived through.
 */
#include <pvkit/blkif.h>

#include "programs.h"
#include "pvkit_guest/blk_pattern.h"
#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"
#include "ublk.h"
#include "ulib.h"

#define IDLE_US 30000000ull /* a backend restart must finish within this */
#define MAX_ROUNDS 100000u
#define SECTOR PVKIT_BLKIF_SECTOR_SIZE

static struct ublk g_blk;

struct extent_io {
    struct pvkit_blkfront_io io;
    struct pvkit_blkfront_seg segs[PVKIT_BLKFRONT_MAX_IO_SEGS];
    uint64_t start;    /* first sector */
    uint32_t nr_pages; /* buffer pages */
    uint32_t first_frame;
    volatile uint8_t* buf; /* buffer; the data starts first_sect sectors in */
    int done;
};

static struct extent_io g_ext[BLK_PATTERN_NR_EXTENTS];
static struct pvkit_blkfront_io g_flush;
static int g_flush_done;
static uint32_t g_outstanding;

static void on_complete(struct ublk* blk, struct pvkit_blkfront_io* io) {
    (void)blk;
    if (io == &g_flush)
        g_flush_done = 1;
    else
        ((struct extent_io*)io->cookie)->done = 1;
    --g_outstanding;
}

static int all_done(struct ublk* blk, void* arg) {
    (void)blk;
    (void)arg;
    return g_outstanding == 0;
}

/* Pages an extent spans when it starts first_sect sectors into a page. */
static uint32_t pages_of(const struct blk_pattern_extent* e) {
    return (e->first_sect + e->nr_sectors + 7u) / 8u;
}

static void prepare(struct extent_io* x, const struct blk_pattern_extent* e, uint8_t op) {
    struct pvkit_blkfront_io* io = &x->io;
    memset(io, 0, sizeof *io);
    io->op = op;
    io->sector = x->start;
    io->nr_segs = (uint16_t)x->nr_pages;
    io->segs = x->segs;
    io->cookie = x;
    uint32_t left = e->nr_sectors;
    for (uint32_t p = 0; p < x->nr_pages; ++p) {
        const uint32_t first = p == 0 ? e->first_sect : 0u;
        const uint32_t n = 8u - first < left ? 8u - first : left;
        x->segs[p].frame = x->first_frame + p;
        x->segs[p].first_sect = (uint8_t)first;
        x->segs[p].last_sect = (uint8_t)(first + n - 1u);
        x->segs[p].priv_flags = 0;
        x->segs[p].priv_gref = 0;
        left -= n;
    }
    x->done = 0;
}

static volatile uint8_t* data_of(struct extent_io* x, const struct blk_pattern_extent* e) {
    return x->buf + (uint32_t)e->first_sect * SECTOR;
}

static int submit_all(uint8_t op) {
    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i) {
        prepare(&g_ext[i], &k_blk_pattern_extents[i], op);
        const int r = pvkit_blkfront_submit(&g_blk.fe, &g_ext[i].io);
        check_quiet(op == PVKIT_BLKFRONT_OP_WRITE ? "submit write" : "submit read", r, 0);
        if (r == 0)
            ++g_outstanding;
    }
    return ublk_run_until(&g_blk, all_done, NULL, IDLE_US);
}

static uint32_t rounds_from_cmdline(void) {
    uint64_t v = 1;
    if (cmdline_u64("blk.rounds", &v) != 1 || v == 0 || v > 1000)
        return 1;
    return (uint32_t)v;
}

static int one_round(uint32_t round, uint64_t disk_sectors) {
    /* Fill the buffers with the pattern (and garbage in the unused parts
     * of partial pages, which must not reach the disk). */
    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i) {
        const struct blk_pattern_extent* e = &k_blk_pattern_extents[i];
        struct extent_io* x = &g_ext[i];
        x->start = blk_pattern_start(e, disk_sectors);
        for (uint32_t b = 0; b < x->nr_pages * 4096u; ++b)
            x->buf[b] = (uint8_t)(0xee ^ round);
        volatile uint8_t* d = data_of(x, e);
        for (uint32_t b = 0; b < e->nr_sectors * SECTOR; ++b)
            d[b] = blk_pattern_byte(x->start * SECTOR + b);
    }
    int r = submit_all(PVKIT_BLKFRONT_OP_WRITE);
    check_quiet("writes complete", r, 0);
    if (r != 0)
        return r;
    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i)
        check_quiet("write status", g_ext[i].io.status, 0);

    const struct pvkit_blkfront_info* info = pvkit_blkfront_get_info(&g_blk.fe);
    if (info != NULL && info->flush) {
        memset(&g_flush, 0, sizeof g_flush);
        g_flush.op = PVKIT_BLKFRONT_OP_FLUSH;
        g_flush_done = 0;
        r = pvkit_blkfront_submit(&g_blk.fe, &g_flush);
        check_quiet("submit flush", r, 0);
        if (r == 0) {
            ++g_outstanding;
            r = ublk_run_until(&g_blk, all_done, NULL, IDLE_US);
            check_quiet("flush completes", r, 0);
            check_quiet("flush status", g_flush.status, 0);
        }
    }

    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i)
        for (uint32_t b = 0; b < g_ext[i].nr_pages * 4096u; ++b)
            g_ext[i].buf[b] = 0;
    r = submit_all(PVKIT_BLKFRONT_OP_READ);
    check_quiet("reads complete", r, 0);
    if (r != 0)
        return r;
    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i) {
        const struct blk_pattern_extent* e = &k_blk_pattern_extents[i];
        struct extent_io* x = &g_ext[i];
        check_quiet("read status", x->io.status, 0);
        volatile uint8_t* d = data_of(x, e);
        uint32_t bad = 0;
        for (uint32_t b = 0; b < e->nr_sectors * SECTOR; ++b)
            bad += d[b] != blk_pattern_byte(x->start * SECTOR + b);
        /* Sectors of a partial page outside the extent are not read. */
        uint32_t touched = 0;
        for (uint32_t b = 0; b < (uint32_t)e->first_sect * SECTOR; ++b)
            touched += x->buf[b] != 0;
        char what[64];
        fmt_format(what, sizeof what, "extent %u (sector %lu, %u sectors) bytes differing", i,
                   x->start, e->nr_sectors);
        check_quiet(what, bad, 0);
        check_quiet("bytes before a partial first page touched by the read", touched, 0);
    }
    return 0;
}

int blk_selftest_main(void) {
    int r = ublk_open(&g_blk, 0, on_complete, NULL);
    check_eq("ublk_open(first disk)", r, 0);
    if (r != 0)
        return check_summary("blk-selftest");
    r = ublk_wait_connected(&g_blk, IDLE_US);
    check_eq("the disk connects", r, 0);
    if (r != 0)
        return check_summary("blk-selftest");
    const struct pvkit_blkfront_info* info = pvkit_blkfront_get_info(&g_blk.fe);
    const uint64_t disk_sectors = info->sectors;
    uprintf(
        "blk-selftest: disk %u: %lu sectors of %u bytes, ring %u slots, indirect %u, flush %u\n",
        g_blk.devid, disk_sectors, info->sector_size, info->ring_ents, info->max_indirect_segs,
        (unsigned)info->flush);
    check("the disk holds the pattern's extents", disk_sectors >= BLK_PATTERN_MIN_SECTORS,
          (long)disk_sectors);
    check_eq("512-byte sectors", info->sector_size, SECTOR);
    check_eq("writable", info->read_only, 0);
    if (disk_sectors < BLK_PATTERN_MIN_SECTORS || info->sector_size != SECTOR || info->read_only)
        return check_summary("blk-selftest");

    for (uint32_t i = 0; i < BLK_PATTERN_NR_EXTENTS; ++i) {
        struct extent_io* x = &g_ext[i];
        x->nr_pages = pages_of(&k_blk_pattern_extents[i]);
        r = ublk_alloc_buffer(&g_blk, x->nr_pages, &x->first_frame, &x->buf);
        check_eq("buffer frames", r, 0);
        if (r != 0)
            return check_summary("blk-selftest");
    }

    const uint32_t min_rounds = rounds_from_cmdline();
    uint64_t want_reconnects = 0;
    if (cmdline_u64("blk.until_reconnects", &want_reconnects) < 0)
        want_reconnects = 0;
    const struct pvkit_blkfront_counters* c = pvkit_blkfront_get_counters(&g_blk.fe);
    uint32_t rounds = 0;
    for (;;) {
        const uint64_t reconnects_before = c->reconnects;
        if (one_round(rounds, disk_sectors) != 0)
            break;
        ++rounds;
        if (rounds >= min_rounds && reconnects_before >= want_reconnects)
            break;
        if (rounds == MAX_ROUNDS) {
            check("the backend restarted within the rounds", 0, (long)c->reconnects);
            break;
        }
    }

    /* A read past the end is refused by the core before it reaches the ring. */
    struct extent_io* x = &g_ext[0];
    prepare(x, &k_blk_pattern_extents[0], PVKIT_BLKFRONT_OP_READ);
    x->io.sector = disk_sectors;
    check_eq("read past the end", pvkit_blkfront_submit(&g_blk.fe, &x->io), -PVKIT_ERANGE);

    uprintf("blk-selftest: %u rounds, %lu I/Os, %lu ring requests (%lu indirect), %lu "
            "notifications sent, %lu received, %lu sleeps, %lu connects, %lu reconnects, %lu "
            "re-issued\n",
            rounds, c->ios_completed, c->ring_requests, c->indirect_requests, c->notifications_sent,
            g_blk.counters.events, g_blk.counters.sleeps, c->connects, c->reconnects,
            c->ios_reissued);
    check_eq("I/Os that failed", (long)c->ios_failed, 0);

    r = ublk_close(&g_blk, IDLE_US);
    check_eq("close: Closed with every grant ended", r, 0);
    return check_summary("blk-selftest");
}
