/*
 * blk-bench: a fixed block workload over the first PV disk, from guest user
 * mode, reported as one machine-readable line.
 *
 * Workload (command-line keys, defaults in brackets): `bench.ops` I/Os
 * [2000] of `bench.pages` 4 KiB pages each [1] at random page-aligned
 * offsets within the first `bench.span_mb` MiB of the disk [64, clamped to
 * the disk], `bench.qd` of them in flight [16], `bench.rw` = randread,
 * randwrite or randrw (half and half) [randrw], `bench.seed` [1].
 *
 * POST code 0x30 marks the start of the timed part and 0x31 its end, so the
 * VMM's --stats-json tells how many exits the workload took. The guest's
 * own figures come from the TSC, calibrated against the APIC timer.
 *
 * The line (one JSON object after the prefix; docs/vmm.md, "The guest
 * block path"):
 *   blk-bench-result {"rw":"randrw","ops":2000,"qd":16,"bs":4096,
 *     "requests":2000,"reads":1000,"writes":1000,"bytes":8192000,
 *     "errors":0,"elapsed_ns":...,"tsc_per_us":...,"ring_requests":2000,
 *     "notifications_sent":...,"notifications_received":...,"sleeps":...}
 * Exit status 0 when every I/O succeeded.
 */
#include <pvkit/blkif.h>

#include "programs.h"
#include "pvkit_guest/mem.h"
#include "ublk.h"
#include "ulib.h"

#define IDLE_US 30000000ull
#define MAX_QD 128u
#define MAX_PAGES 64u
#define POST_BENCH_START 0x30u
#define POST_BENCH_END 0x31u

enum rw_mode { RW_READ, RW_WRITE, RW_MIXED };

struct slot {
    struct pvkit_blkfront_io io;
    struct pvkit_blkfront_seg segs[MAX_PAGES];
    uint32_t first_frame;
    volatile uint8_t* buf;
};

static struct ublk g_blk;
static struct slot g_slots[MAX_QD];
static uint64_t g_rng;
static uint64_t g_issued;
static uint64_t g_completed;
static uint64_t g_errors;
static uint64_t g_reads;
static uint64_t g_writes;
static uint32_t g_free[MAX_QD];
static uint32_t g_nr_free;

static uint64_t next_random(void) {
    /* xorshift64: deterministic for a seed, cheap, good enough for offsets. */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void on_complete(struct ublk* blk, struct pvkit_blkfront_io* io) {
    (void)blk;
    struct slot* s = (struct slot*)io->cookie;
    if (io->status != 0)
        ++g_errors;
    ++g_completed;
    g_free[g_nr_free++] = (uint32_t)(s - g_slots);
}

static int all_completed(struct ublk* blk, void* arg) {
    (void)blk;
    (void)arg;
    return g_completed == g_issued;
}

static uint64_t param(const char* key, uint64_t fallback, uint64_t lo, uint64_t hi) {
    uint64_t v = fallback;
    if (cmdline_u64(key, &v) != 1 || v < lo || v > hi)
        return fallback;
    return v;
}

int blk_bench_main(void) {
    const uint64_t ops = param("bench.ops", 2000, 1, 100000000);
    const uint32_t qd = (uint32_t)param("bench.qd", 16, 1, MAX_QD);
    const uint32_t pages = (uint32_t)param("bench.pages", 1, 1, MAX_PAGES);
    const uint64_t span_mb = param("bench.span_mb", 64, 1, 1u << 20);
    g_rng = param("bench.seed", 1, 1, ~0ull >> 1);
    char rw_name[16] = "randrw";
    (void)cmdline_value("bench.rw", rw_name, sizeof rw_name);
    enum rw_mode mode = RW_MIXED;
    if (strcmp(rw_name, "randread") == 0)
        mode = RW_READ;
    else if (strcmp(rw_name, "randwrite") == 0)
        mode = RW_WRITE;
    else if (strcmp(rw_name, "randrw") != 0) {
        uprintf("blk-bench: bench.rw must be randread, randwrite or randrw\n");
        return 2;
    }

    int r = ublk_open(&g_blk, 0, on_complete, NULL);
    if (r == 0)
        r = ublk_wait_connected(&g_blk, IDLE_US);
    if (r != 0) {
        uprintf("blk-bench: the disk did not connect: %d\n", r);
        return 1;
    }
    const struct pvkit_blkfront_info* info = pvkit_blkfront_get_info(&g_blk.fe);
    if (mode != RW_READ && info->read_only) {
        uprintf("blk-bench: the disk is read-only\n");
        return 1;
    }
    const uint64_t bytes_per_io = (uint64_t)pages * 4096u;
    uint64_t span = span_mb << 20;
    if (span > info->sectors * PVKIT_BLKIF_SECTOR_SIZE)
        span = info->sectors * PVKIT_BLKIF_SECTOR_SIZE;
    if (span < bytes_per_io) {
        uprintf("blk-bench: the disk is smaller than one I/O\n");
        return 1;
    }
    const uint64_t positions = (span - bytes_per_io) / 4096u + 1u;

    for (uint32_t i = 0; i < qd; ++i) {
        struct slot* s = &g_slots[i];
        r = ublk_alloc_buffer(&g_blk, pages, &s->first_frame, &s->buf);
        if (r != 0) {
            uprintf("blk-bench: no pool frames for %u x %u pages\n", qd, pages);
            return 1;
        }
        for (uint32_t b = 0; b < pages * 4096u; ++b)
            s->buf[b] = (uint8_t)(b * 7u + i);
        g_free[g_nr_free++] = i;
    }

    const uint64_t tsc_per_us = ublk_tsc_per_us();
    const struct pvkit_blkfront_counters* c = pvkit_blkfront_get_counters(&g_blk.fe);
    const uint64_t sent0 = c->notifications_sent;
    const uint64_t ring0 = c->ring_requests;
    const uint64_t events0 = g_blk.counters.events;
    const uint64_t sleeps0 = g_blk.counters.sleeps;

    sys_post(POST_BENCH_START);
    const uint64_t t0 = ublk_rdtsc();
    while (g_completed < ops) {
        /* Keep the queue full, then let the driver loop collect. */
        while (g_issued < ops && g_nr_free > 0) {
            struct slot* s = &g_slots[g_free[--g_nr_free]];
            struct pvkit_blkfront_io* io = &s->io;
            memset(io, 0, sizeof *io);
            const uint64_t rnd = next_random();
            const int write = mode == RW_WRITE || (mode == RW_MIXED && (rnd >> 63) != 0);
            io->op = write ? PVKIT_BLKFRONT_OP_WRITE : PVKIT_BLKFRONT_OP_READ;
            io->sector = (rnd % positions) * 8u;
            io->nr_segs = (uint16_t)pages;
            io->segs = s->segs;
            io->cookie = s;
            for (uint32_t p = 0; p < pages; ++p) {
                s->segs[p].frame = s->first_frame + p;
                s->segs[p].first_sect = 0;
                s->segs[p].last_sect = 7;
                s->segs[p].priv_flags = 0;
                s->segs[p].priv_gref = 0;
            }
            r = pvkit_blkfront_submit(&g_blk.fe, io);
            if (r != 0) {
                uprintf("blk-bench: submit: %d\n", r);
                return 1;
            }
            ++g_issued;
            if (write)
                ++g_writes;
            else
                ++g_reads;
        }
        r = ublk_step(&g_blk, 100000);
        if (r < 0) {
            uprintf("blk-bench: driver loop: %d\n", r);
            return 1;
        }
    }
    r = ublk_run_until(&g_blk, all_completed, NULL, IDLE_US);
    const uint64_t t1 = ublk_rdtsc();
    sys_post(POST_BENCH_END);
    if (r != 0) {
        uprintf("blk-bench: I/O did not complete: %d\n", r);
        return 1;
    }
    const uint64_t elapsed_ns = tsc_per_us != 0 ? (t1 - t0) * 1000u / tsc_per_us : 0;
    uprintf("blk-bench-result {\"rw\":\"%s\",\"ops\":%lu,\"qd\":%u,\"bs\":%lu,\"requests\":%lu,"
            "\"reads\":%lu,\"writes\":%lu,\"bytes\":%lu,\"errors\":%lu,\"elapsed_ns\":%lu,"
            "\"tsc_per_us\":%lu,\"ring_requests\":%lu,\"notifications_sent\":%lu,"
            "\"notifications_received\":%lu,\"sleeps\":%lu}\n",
            rw_name, ops, qd, bytes_per_io, g_completed, g_reads, g_writes,
            g_completed * bytes_per_io, g_errors, elapsed_ns, tsc_per_us, c->ring_requests - ring0,
            c->notifications_sent - sent0, g_blk.counters.events - events0,
            g_blk.counters.sleeps - sleeps0);
    (void)ublk_close(&g_blk, IDLE_US);
    return g_errors == 0 ? 0 : 1;
}
