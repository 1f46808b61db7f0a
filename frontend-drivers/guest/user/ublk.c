#include "ublk.h"

#include <pvkit/evtchn.h>
#include <pvkit/start_info.h>

#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"
#include "ulib.h"
#include "ustore.h"

/* Spin iterations (each a few loads and a pause, native speed) before the
 * driver sleeps. A sleep costs two system calls and a BLOCK hypercall (all
 * emulated CPL0 work and VMM exits on the development hosts), a response
 * from a backend serving the page cache takes a few microseconds: spin
 * long enough to cover that. */
#define UBLK_SPIN_LOOPS 200000u
#define UBLK_WATCH_TOKEN "ublk"

static struct ublk* blk_of(void* ctx) {
    return (struct ublk*)ctx;
}

/* ---- the environment ---------------------------------------------------- */

static int env_store_read(void* ctx, uint32_t tx, const char* path, char* buf, uint32_t size) {
    (void)ctx;
    return xs_read(tx, path, buf, size);
}

static int env_store_write(void* ctx, uint32_t tx, const char* path, const char* value) {
    (void)ctx;
    return xs_write(tx, path, value);
}

static int env_store_rm(void* ctx, uint32_t tx, const char* path) {
    (void)ctx;
    const int r = xs_rm(tx, path);
    return r == -PVKIT_ENOENT ? 0 : r;
}

static int env_tx_start(void* ctx, uint32_t* tx) {
    (void)ctx;
    return xs_tx_start(tx);
}

static int env_tx_end(void* ctx, uint32_t tx, int commit) {
    (void)ctx;
    return xs_tx_end(tx, commit);
}

static int env_alloc_frames(void* ctx, uint32_t count, uint32_t* first_frame, void** mem) {
    struct ublk* blk = blk_of(ctx);
    const int r = upool_alloc_frames(&blk->pool, count, first_frame);
    if (r != 0)
        return r;
    /* The pool is identity mapped for the program and private to this
     * driver except for the frames it grants; the core accesses the ring
     * through ring.h's atomics. */
    *mem = (void*)(uintptr_t)upool_frame(&blk->pool, *first_frame);
    return 0;
}

static void env_free_frames(void* ctx, uint32_t first_frame, uint32_t count) {
    /* The core only gives back what it got; a refusal would be a core bug
     * and leaves the frames allocated, which is safe. */
    (void)upool_free_frames(&blk_of(ctx)->pool, first_frame, count);
}

static int env_grant(void* ctx, pvkit_domid_t domid, uint32_t frame, int readonly,
                     pvkit_grant_ref_t* ref) {
    return upool_grant(&blk_of(ctx)->pool, domid, frame, readonly, ref);
}

static int env_end_grant(void* ctx, pvkit_grant_ref_t ref) {
    return upool_end_grant(&blk_of(ctx)->pool, ref);
}

static int env_evtchn_alloc(void* ctx, pvkit_domid_t remote, pvkit_evtchn_port_t* port) {
    const long r = sys_evtchn_alloc(remote);
    if (r < 0)
        return (int)r;
    *port = (pvkit_evtchn_port_t)r;
    blk_of(ctx)->port = (uint32_t)r;
    return 0;
}

static void env_evtchn_free(void* ctx, pvkit_evtchn_port_t port) {
    struct ublk* blk = blk_of(ctx);
    /* Closing a port the kernel knows cannot fail; its pending bit goes
     * with it so that a late interrupt does not look like a new event. */
    (void)sys_evtchn_close(port);
    (void)evtchn_test_and_clear(port);
    if (blk->port == port)
        blk->port = 0;
}

static void env_notify(void* ctx, pvkit_evtchn_port_t port) {
    (void)ctx;
    evtchn_notify(port);
}

static int env_before_initialised(void* ctx, pvkit_evtchn_port_t port) {
    struct ublk* blk = blk_of(ctx);
    ++blk->counters.device_connects;
    const long r = sys_device_connect(blk->pool_index, port);
    if (r != 0) {
        ++blk->counters.connect_failures;
        blk->counters.last_connect_error = (int)r;
        uprintf("ublk: device_connect(%u, port %u) = %ld\n", blk->pool_index, port, r);
    }
    return (int)r;
}

static void env_complete(void* ctx, struct pvkit_blkfront_io* io) {
    struct ublk* blk = blk_of(ctx);
    if (blk->complete != NULL)
        blk->complete(blk, io);
}

/* ---- the driver loop ---------------------------------------------------- */

int ublk_open(struct ublk* blk, uint32_t nth, ublk_complete_fn complete, void* user) {
    const struct pvkit_start_info* si = start_info();
    uint32_t index = PVKIT_START_INFO_MAX_DEVICES;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < si->nr_devices && i < PVKIT_START_INFO_MAX_DEVICES; ++i) {
        if (si->devices[i].type != PVKIT_DEV_BLK)
            continue;
        if (seen++ == nth) {
            index = i;
            break;
        }
    }
    if (index == PVKIT_START_INFO_MAX_DEVICES)
        return -PVKIT_ENOENT;
    int r = xs_init();
    if (r != 0)
        return r;
    memset(blk, 0, sizeof *blk);
    blk->pool_index = index;
    blk->devid = si->devices[index].devid;
    blk->complete = complete;
    blk->user = user;
    r = upool_open(index, &blk->pool);
    if (r != 0)
        return r;

    struct pvkit_blkfront_env* env = &blk->env;
    env->ctx = blk;
    env->store_read = env_store_read;
    env->store_write = env_store_write;
    env->store_rm = env_store_rm;
    env->store_tx_start = env_tx_start;
    env->store_tx_end = env_tx_end;
    env->alloc_frames = env_alloc_frames;
    env->free_frames = env_free_frames;
    env->grant = env_grant;
    env->end_grant = env_end_grant;
    env->evtchn_alloc = env_evtchn_alloc;
    env->evtchn_free = env_evtchn_free;
    env->notify = env_notify;
    env->before_initialised = env_before_initialised;
    env->complete = env_complete;

    char front[PVKIT_BLKFRONT_PATH_MAX];
    fmt_format(front, sizeof front, "/local/domain/%u/device/%s/%u",
               (unsigned)sys_info(SYS_INFO_DOMID), PVKIT_DEV_BLK_NAME, blk->devid);
    /* The devid is 16 bits in the store layout and in every request. */
    if (blk->devid > 0xffffu)
        return -PVKIT_EINVAL;
    r = pvkit_blkfront_init(&blk->fe, env, front, (uint16_t)blk->devid, 2);
    if (r != 0)
        return r;
    r = pvkit_blkfront_backend_state_path(&blk->fe, blk->state_path, sizeof blk->state_path);
    if (r != 0)
        return r;
    r = xs_watch(blk->state_path, UBLK_WATCH_TOKEN);
    if (r != 0)
        return r;
    return pvkit_blkfront_store_changed(&blk->fe);
}

/* Runs the state machine for every queued watch event (and a store port
 * kick). Returns how many there were, or a store error. */
static int take_store_events(struct ublk* blk) {
    char path[PVKIT_BLKFRONT_PATH_MAX + 16];
    char token[16];
    int n = 0;
    (void)evtchn_test_and_clear(xs_port());
    for (;;) {
        const int r = xs_wait_event(path, sizeof path, token, sizeof token, 0);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        ++n;
    }
    if (n > 0) {
        /* Any event may be the backend's state: the core rereads it. */
        blk->counters.store_events += (uint64_t)n;
        const int r = pvkit_blkfront_store_changed(&blk->fe);
        if (r < 0)
            return r;
    }
    return n;
}

static int work_visible(struct ublk* blk) {
    return pvkit_blkfront_responses_ready(&blk->fe) != 0 ||
           (blk->port != 0 && evtchn_pending(blk->port)) || evtchn_pending(xs_port());
}

int ublk_step(struct ublk* blk, uint64_t sleep_us) {
    if (blk->port != 0 && evtchn_test_and_clear(blk->port))
        ++blk->counters.events;
    int progress = pvkit_blkfront_poll(&blk->fe);
    const int events = take_store_events(blk);
    if (events < 0)
        return events;
    if (events > 0)
        progress += events + pvkit_blkfront_poll(&blk->fe);
    if (progress > 0)
        return 1;
    for (uint32_t i = 0; i < UBLK_SPIN_LOOPS; ++i) {
        if (work_visible(blk))
            return 1;
        __builtin_ia32_pause();
    }
    /* Nothing within the spin: arm rsp_event and look once more (ring.h's
     * final check), then sleep until the port or the store fires. */
    if (pvkit_blkfront_final_check(&blk->fe) != 0 || work_visible(blk))
        return 1;
    ++blk->counters.sleeps;
    return sys_evtchn_wait(0, sleep_us) > 0 ? 1 : 0;
}

int ublk_run_until(struct ublk* blk, int (*done)(struct ublk* blk, void* arg), void* arg,
                   uint64_t idle_us) {
    const uint64_t slice = 100000;
    uint64_t idle = 0;
    while (!done(blk, arg)) {
        const int r = ublk_step(blk, slice);
        if (r < 0)
            return r;
        if (r > 0) {
            idle = 0;
        } else {
            idle += slice;
            if (idle >= idle_us)
                return -PVKIT_EIO;
        }
    }
    return 0;
}

static int connected_or_final(struct ublk* blk, void* arg) {
    (void)arg;
    return pvkit_blkfront_connected(&blk->fe) || pvkit_blkfront_finished(&blk->fe);
}

int ublk_wait_connected(struct ublk* blk, uint64_t idle_us) {
    const int r = ublk_run_until(blk, connected_or_final, NULL, idle_us);
    if (r != 0)
        return r;
    return pvkit_blkfront_connected(&blk->fe) ? 0 : -PVKIT_ENOTCONN;
}

static int closed_and_clean(struct ublk* blk, void* arg) {
    (void)arg;
    return pvkit_blkfront_finished(&blk->fe) && pvkit_blkfront_ios(&blk->fe) == 0 &&
           pvkit_blkfront_deferred(&blk->fe) == 0;
}

int ublk_close(struct ublk* blk, uint64_t idle_us) {
    pvkit_blkfront_close(&blk->fe);
    const int r = ublk_run_until(blk, closed_and_clean, NULL, idle_us);
    (void)xs_unwatch(blk->state_path, UBLK_WATCH_TOKEN);
    return r;
}

int ublk_alloc_buffer(struct ublk* blk, uint32_t frames, uint32_t* first, volatile uint8_t** mem) {
    const int r = upool_alloc_frames(&blk->pool, frames, first);
    if (r != 0)
        return r;
    *mem = (volatile uint8_t*)upool_frame(&blk->pool, *first);
    return 0;
}

uint64_t ublk_rdtsc(void) {
    uint32_t lo;
    uint32_t hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

uint64_t ublk_tsc_per_us(void) {
    /* A port no one allocates: the waits end on their timeout. */
    const uint32_t quiet = PVKIT_EVTCHN_MAX_PORT;
    const uint64_t short_us = 20000;
    const uint64_t long_us = 100000;
    uint64_t t0 = ublk_rdtsc();
    (void)sys_evtchn_wait(quiet, short_us);
    uint64_t t1 = ublk_rdtsc();
    (void)sys_evtchn_wait(quiet, long_us);
    uint64_t t2 = ublk_rdtsc();
    const uint64_t a = t1 - t0;
    const uint64_t b = t2 - t1;
    if (b <= a)
        return 0;
    return (b - a) / (long_us - short_us);
}
