/*
 * The block frontend in guest user mode: the blkfront protocol core
 * (frontend-drivers/blkfront, compiled unchanged into the user image) with
 * an environment over what a mini-guest program has at native speed:
 *
 *   grants and ring/indirect frames   upool.c (the device's pool, mapped)
 *   store, transactions and watches   ustore.c (the store ring, mapped)
 *   notify                            one MMIO write to the doorbell page
 *                                     (KVM_IOEVENTFD: the backend's eventfd
 *                                     fires in the host kernel, no VMM exit)
 *   responses                         read from the ring page; the
 *                                     backend's irqfd sets the port's bit
 *                                     on the event page only when the core
 *                                     armed rsp_event before sleeping
 *   hand-off (before Initialised)     SYS_DEVICE_CONNECT -> the VMM's
 *                                     PVKIT_HC_DEVICE_CONNECT
 *
 * The data path costs no system call and no VMM exit: a program spins on
 * the ring (and the event page) for a while, and only when nothing came
 * runs the core's final check and sleeps in SYS_EVTCHN_WAIT (which the
 * kernel turns into SCHEDOP_BLOCK). A backend restart is followed like any
 * store change: the core starts over with a fresh ring and a fresh port,
 * and DEVICE_CONNECT hands the device to the new backend instance.
 */
#ifndef PVKIT_MINI_UBLK_H
#define PVKIT_MINI_UBLK_H

#include <pvkit/blkfront.h>
#include <stdint.h>

#include "upool.h"

struct ublk;
typedef void (*ublk_complete_fn)(struct ublk* blk, struct pvkit_blkfront_io* io);

struct ublk_counters {
    uint64_t events;           /* backend notifications taken from the event page */
    uint64_t store_events;     /* watch events that ran the state machine */
    uint64_t sleeps;           /* SYS_EVTCHN_WAIT calls */
    uint64_t device_connects;  /* SYS_DEVICE_CONNECT calls */
    uint64_t connect_failures; /* of those, refused */
    int last_connect_error;
    int pad;
};

struct ublk {
    struct pvkit_blkfront fe;
    struct pvkit_blkfront_env env;
    struct upool pool;
    uint32_t pool_index; /* start-info device index */
    uint32_t devid;
    uint32_t port; /* the connection's port, 0 when none */
    uint32_t pad;
    char state_path[PVKIT_BLKFRONT_PATH_MAX + 8];
    ublk_complete_fn complete;
    void* user;
    struct ublk_counters counters;
};

/* Sets up the blkfront core for the nth PVKIT_DEV_BLK device of the start
 * info and watches its backend. 0 or -PVKIT_E*. */
int ublk_open(struct ublk* blk, uint32_t nth, ublk_complete_fn complete, void* user);

/*
 * One round of the driver loop: collect responses and issue queued I/O,
 * follow store changes; if nothing happened, spin on the ring, the port and
 * the store for a short while, and if still nothing, arm the ring's event
 * index and sleep up to sleep_us. Returns 1 if there was progress (a
 * response or a store event), 0 if it slept without, or a negative error
 * of the store client.
 */
int ublk_step(struct ublk* blk, uint64_t sleep_us);

/* Runs ublk_step until done(arg) is true: 0, or -PVKIT_EIO after
 * idle_us without progress (the backend is gone for good). */
int ublk_run_until(struct ublk* blk, int (*done)(struct ublk* blk, void* arg), void* arg,
                   uint64_t idle_us);

/* Until the device is Connected: 0, or -PVKIT_EIO after idle_us without
 * progress, -PVKIT_ENOTCONN if it closed for good. */
int ublk_wait_connected(struct ublk* blk, uint64_t idle_us);

/* Closes the device (frontend close) and waits until it is Closed and
 * every grant is ended: 0 or -PVKIT_EIO. */
int ublk_close(struct ublk* blk, uint64_t idle_us);

/* Data frames for I/O buffers, from the same pool; *mem is their address. */
int ublk_alloc_buffer(struct ublk* blk, uint32_t frames, uint32_t* first, volatile uint8_t** mem);

/* The time-stamp counter (rdtsc runs natively in user mode). */
uint64_t ublk_rdtsc(void);
/* TSC ticks per microsecond, measured against the kernel's APIC timer
 * (1 GHz on KVM) with two sleeps of different length, so the fixed cost of
 * a system call cancels out. Takes about 120 ms. */
uint64_t ublk_tsc_per_us(void);

#endif /* PVKIT_MINI_UBLK_H */
