/*
 * pvkit blkfront: the block frontend's protocol core, in plain C11.
 *
 * One source serves every place a block frontend runs: the pvkit mini guest
 * (freestanding, guest user mode), a Linux port, and host processes through
 * libpvkit-front. The core therefore owns no memory, makes no system call
 * and knows no clock. Everything it needs from the world comes through an
 * environment table (struct pvkit_blkfront_env), and the world drives it by
 * calling in:
 *
 *   pvkit_blkfront_store_changed()  a watch on the backend's state fired
 *                                   (or might have: spurious calls are fine)
 *   pvkit_blkfront_poll()           the event channel kicked (or the caller
 *                                   is polling): collect responses, issue
 *                                   queued requests, retry deferred grants
 *   pvkit_blkfront_submit()         a new I/O
 *   pvkit_blkfront_close()          the driver wants the device closed
 *
 * and it calls back through env->complete() once per I/O. Nothing is done
 * behind the caller's back: no threads, no timers. A caller that wants to
 * sleep calls pvkit_blkfront_final_check() first (ring.h's "final check")
 * and sleeps only if it returns 0.
 *
 * What the core implements (docs/handshake.md and docs/blkfront.md):
 *
 *  - The handshake: reads and validates the backend's sectors, sector-size,
 *    info, feature-flush-cache, feature-discard, discard-granularity,
 *    discard-secure, feature-max-indirect-segments and max-ring-page-order
 *    once per connection; publishes ring-ref (or ring-page-order and
 *    ring-ref0..N), event-channel and protocol "x86_64-abi" together with
 *    state Initialised in one transaction; goes Connected when the backend
 *    is Connected.
 *  - I/O: read, write, flush and discard. A read or write of up to
 *    PVKIT_BLKFRONT_MAX_IO_SEGS pages is split into ring requests of up to
 *    11 segments, or carried in indirect requests when the backend offers
 *    more than 11 indirect segments. As many ring requests are in flight as
 *    the ring has slots; the rest wait in submission order.
 *  - Ids on the ring are (generation << 32 | shadow index), never pointers.
 *    Every response is copied once (pvkit_front_ring_take_response) and
 *    checked (id in flight, operation as requested, status valid) before it
 *    completes anything. A bad response or an impossible rsp_prod halts the
 *    ring and the device goes Closing; nothing else is affected.
 *  - Reconnect: when the backend goes away (Closed or InitWait again with
 *    online = 1, or a halted ring) the core ends the old grants, starts
 *    over from Initialising with fresh ring pages, grants and event
 *    channel, and re-issues every unfinished I/O in submission order
 *    before any new one.
 *  - Grants are ended when a request completes. A grant still in use by the
 *    backend is deferred: its I/O completes only once every grant of it has
 *    been ended, and core-owned frames (ring, indirect pages) whose grant
 *    cannot be ended are quarantined and not reused until it can.
 *
 * Memory: struct pvkit_blkfront is self-contained (about 40 KiB); the
 * environment allocates it. I/O descriptors and their segment arrays are
 * owned by the caller and lent to the core from submit until complete.
 *
 * Freestanding: the core includes only the pvkit ABI headers
 * (<stddef.h>/<stdint.h>) and calls no library function. The compiler may
 * emit calls to memcpy and memset (ring.h copies slots with
 * __builtin_memcpy); the environment links those two. The build compiles
 * this file with -ffreestanding -mgeneral-regs-only -mno-red-zone and
 * checks that nothing else is referenced.
 *
 * Concurrency: a struct pvkit_blkfront is used by one thread at a time.
 */
#ifndef PVKIT_BLKFRONT_H
#define PVKIT_BLKFRONT_H

#include <pvkit/abi.h>
#include <pvkit/blkif.h>
#include <pvkit/ring.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest ring: blkif slots at PVKIT_RING_MAX_PAGE_ORDER. */
#define PVKIT_BLKFRONT_MAX_RING_PAGES (1u << PVKIT_RING_MAX_PAGE_ORDER)
#define PVKIT_BLKFRONT_MAX_RING_ENTS 512u
/* Largest read or write: 256 page segments (1 MiB of full pages). */
#define PVKIT_BLKFRONT_MAX_IO_SEGS 256u
/* Store paths the core builds: device directories are short. */
#define PVKIT_BLKFRONT_PATH_MAX 128u
/* Old ring pages whose grant the backend still held at disconnect. */
#define PVKIT_BLKFRONT_QUARANTINE_MAX 64u
/* Connection attempts that fail in a row before the core stops reopening. */
#define PVKIT_BLKFRONT_MAX_CONNECT_FAILURES 8u
/* EAGAIN retries of the Initialised transaction (docs/handshake.md rule 3). */
#define PVKIT_BLKFRONT_TX_RETRIES 16u

/* XenBus states, as the store holds them (Xen's numbers). */
#define PVKIT_XENBUS_UNKNOWN 0u
#define PVKIT_XENBUS_INITIALISING 1u
#define PVKIT_XENBUS_INITWAIT 2u
#define PVKIT_XENBUS_INITIALISED 3u
#define PVKIT_XENBUS_CONNECTED 4u
#define PVKIT_XENBUS_CLOSING 5u
#define PVKIT_XENBUS_CLOSED 6u

/* I/O operations: the blkif operation numbers. */
#define PVKIT_BLKFRONT_OP_READ PVKIT_BLKIF_OP_READ
#define PVKIT_BLKFRONT_OP_WRITE PVKIT_BLKIF_OP_WRITE
#define PVKIT_BLKFRONT_OP_FLUSH PVKIT_BLKIF_OP_FLUSH_DISKCACHE
#define PVKIT_BLKFRONT_OP_DISCARD PVKIT_BLKIF_OP_DISCARD

/*
 * Why the device left Connected (or never got there). The first reason
 * sticks until the next successful connection.
 */
enum pvkit_blkfront_reason {
    PVKIT_BLKFRONT_REASON_NONE = 0,
    PVKIT_BLKFRONT_REASON_RSP_INDEX,      /* rsp_prod claimed more responses than requests */
    PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID, /* id not in flight: unknown, stale or duplicate */
    PVKIT_BLKFRONT_REASON_RSP_WRONG_OP,   /* operation differs from the request's */
    PVKIT_BLKFRONT_REASON_RSP_BAD_STATUS, /* status not OKAY, ERROR or EOPNOTSUPP */
    PVKIT_BLKFRONT_REASON_BAD_NODE,       /* a backend node failed validation (see reason_node) */
    PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, /* the backend (or the toolstack) closed */
    PVKIT_BLKFRONT_REASON_BACKEND_GONE,   /* the backend directory disappeared */
    PVKIT_BLKFRONT_REASON_BACKEND_RESTART, /* the backend went Closed/InitWait: reconnect */
    PVKIT_BLKFRONT_REASON_NO_FRAMES,      /* the environment had no ring or indirect frames */
    PVKIT_BLKFRONT_REASON_NO_GRANTS,      /* granting the ring failed */
    PVKIT_BLKFRONT_REASON_EVTCHN,         /* no event channel */
    PVKIT_BLKFRONT_REASON_CONNECT_HOOK,   /* env->before_initialised failed */
    PVKIT_BLKFRONT_REASON_STORE,          /* a store operation failed */
    PVKIT_BLKFRONT_REASON_USER_CLOSE,     /* pvkit_blkfront_close */
    PVKIT_BLKFRONT_REASON_ABANDONED,      /* pvkit_blkfront_abandon_ring: gave up waiting */
    PVKIT_BLKFRONT_REASON_SECTOR_SIZE_CHANGED, /* the backend now has another sector-size */
    PVKIT_BLKFRONT_REASON_COUNT
};
const char *pvkit_blkfront_reason_string(enum pvkit_blkfront_reason reason);

/*
 * One data page of a read or write. Written by the caller; the core fills
 * in the private fields. For a device with sector-size 4096 every segment
 * must be a whole page (first_sect 0, last_sect 7).
 */
struct pvkit_blkfront_seg {
    uint32_t frame;     /* data frame of the device's grant pool */
    uint8_t first_sect; /* first 512-byte sector in the frame, 0..7 */
    uint8_t last_sect;  /* last sector, first_sect..7 (inclusive) */
    /* Private to the core from submit until complete. */
    uint16_t priv_flags;
    pvkit_grant_ref_t priv_gref;
};

/*
 * One I/O. The caller fills the "in" fields, submits, and must leave the
 * descriptor and its segments alone until env->complete() hands it back.
 */
struct pvkit_blkfront_io {
    /* In. */
    uint8_t op;             /* PVKIT_BLKFRONT_OP_* */
    uint8_t discard_secure; /* DISCARD: ask for a secure discard (needs discard-secure) */
    uint16_t nr_segs;       /* READ/WRITE: 1..PVKIT_BLKFRONT_MAX_IO_SEGS; others 0 */
    uint32_t pad_;
    uint64_t sector;        /* start, in 512-byte sectors (ignored by FLUSH) */
    uint64_t nr_sectors;    /* DISCARD only: length in 512-byte sectors */
    struct pvkit_blkfront_seg *segs;
    void *cookie;           /* the caller's, untouched */
    /* Out: 0 or a negative PVKIT_E* number, valid in env->complete(). */
    int status;
    /* Private to the core. */
    int priv_status;
    struct pvkit_blkfront_io *priv_prev;
    struct pvkit_blkfront_io *priv_next;
    uint64_t priv_next_sector;
    uint32_t priv_total_sectors;
    uint32_t priv_grants_held;
    uint16_t priv_issued_segs;
    uint16_t priv_parts_out;
    uint8_t priv_state;
    uint8_t priv_issued;
    uint16_t priv_pad;
};

/*
 * The environment. Every callback gets `ctx`. Numbers returned are 0 (or a
 * length) on success and a negative PVKIT_E* number on failure.
 */
struct pvkit_blkfront_env {
    void *ctx;

    /* Store. `tx` is 0 outside a transaction. Paths are absolute. */
    /* Reads a value into buf (not NUL-terminated by the env; the core
     * terminates it): returns its length, -PVKIT_ENOENT if absent (also
     * -PVKIT_EACCES when unreadable), -PVKIT_E2BIG if longer than size. */
    int (*store_read)(void *ctx, uint32_t tx, const char *path, char *buf, uint32_t size);
    int (*store_write)(void *ctx, uint32_t tx, const char *path, const char *value);
    /* Removing a missing node succeeds. */
    int (*store_rm)(void *ctx, uint32_t tx, const char *path);
    int (*store_tx_start)(void *ctx, uint32_t *tx);
    /* commit != 0 commits; -PVKIT_EAGAIN on conflict (the core retries). */
    int (*store_tx_end)(void *ctx, uint32_t tx, int commit);

    /* Pool frames for rings and indirect pages: `count` consecutive data
     * frames; *mem is where the first one is mapped. free_frames may be
     * given any subrange of what alloc_frames returned. */
    int (*alloc_frames)(void *ctx, uint32_t count, uint32_t *first_frame, void **mem);
    void (*free_frames)(void *ctx, uint32_t first_frame, uint32_t count);

    /* Grants a data frame of the pool to `domid`; -PVKIT_ENOSPC when no
     * reference is free. end_grant returns -PVKIT_EBUSY while the grantee
     * has the grant mapped. */
    int (*grant)(void *ctx, pvkit_domid_t domid, uint32_t frame, int readonly,
                 pvkit_grant_ref_t *ref);
    int (*end_grant)(void *ctx, pvkit_grant_ref_t ref);

    /* Event channel for the backend: a fresh port per connection. */
    int (*evtchn_alloc)(void *ctx, pvkit_domid_t remote, pvkit_evtchn_port_t *port);
    void (*evtchn_free)(void *ctx, pvkit_evtchn_port_t port);
    void (*notify)(void *ctx, pvkit_evtchn_port_t port);

    /* Optional (may be NULL): runs once the ring is granted and the port
     * allocated, before Initialised is published. A host process hands its
     * pool and eventfds to the backend here. Failure fails the attempt. */
    int (*before_initialised)(void *ctx, pvkit_evtchn_port_t port);

    /* An I/O is finished: io->status says how. The callback may submit new
     * I/O and may free `io`; it must not call any other core function. */
    void (*complete)(void *ctx, struct pvkit_blkfront_io *io);
};

/* The backend's limits as the core validated and clamped them. */
struct pvkit_blkfront_info {
    uint64_t sectors;              /* size in 512-byte sectors */
    uint32_t sector_size;          /* 512 or 4096 */
    uint32_t vdisk_info;           /* PVKIT_VDISK_* */
    uint32_t discard_granularity;  /* bytes, when discard */
    uint32_t max_indirect_segs;    /* min(offer, 256); 0: none */
    uint32_t max_ring_page_order;  /* the backend's offer, clamped to 4 */
    uint32_t ring_page_order;      /* in use */
    uint32_t ring_ents;            /* slots of the ring in use */
    uint8_t read_only;
    uint8_t flush;
    uint8_t discard;
    uint8_t discard_secure;
};

struct pvkit_blkfront_counters {
    uint64_t ios_submitted;
    uint64_t ios_completed;     /* with status 0 */
    uint64_t ios_failed;        /* with an error status */
    uint64_t ring_requests;     /* requests put on a ring */
    uint64_t indirect_requests; /* of those, indirect */
    uint64_t responses;         /* accepted responses */
    uint64_t responses_rejected; /* responses (or indices) that halted a ring */
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t notifications_sent;
    uint64_t connects;          /* times the device reached Connected */
    uint64_t reconnects;        /* times it started over after the backend went away */
    uint64_t ios_reissued;      /* I/Os put back for re-issue by a reconnect */
    uint64_t grants_deferred;   /* grant ends that failed (in use) and were retried */
    uint64_t frames_leaked;     /* quarantine full: a frame that is never reused */
};

/* Private bookkeeping; the fields are not part of the API. */
struct pvkit_blkfront_shadow_ {
    struct pvkit_blkfront_io *io;
    uint32_t generation;
    uint16_t first_seg;
    uint16_t nr_segs;
    uint16_t indirect; /* indirect slot, or 0xffff */
    uint8_t wire_op;
    uint8_t busy;
};

struct pvkit_blkfront_indirect_ {
    void *mem;
    uint32_t frame;
    pvkit_grant_ref_t gref; /* non-zero while granted */
    uint8_t deferred;       /* end failed; retried */
    uint8_t pad_[3];
};

struct pvkit_blkfront_quarantine_ {
    pvkit_grant_ref_t gref;
    uint32_t frame;
};

struct pvkit_blkfront {
    const struct pvkit_blkfront_env *env;
    char front_path[PVKIT_BLKFRONT_PATH_MAX];
    char back_path[PVKIT_BLKFRONT_PATH_MAX];
    pvkit_domid_t backend_id;
    uint16_t handle;
    uint32_t own_max_ring_order;

    /* Handshake. */
    uint8_t state;         /* our XenBus state, as last written */
    uint8_t backend_state; /* the backend's, as last read */
    uint8_t backend_online;
    uint8_t backend_error; /* the backend wrote `error` */
    uint8_t want_reconnect;
    uint8_t user_closed;
    uint8_t final;         /* closed for good: no reopen */
    uint8_t gone;          /* the backend directory disappeared */
    uint8_t halted;
    uint8_t abandoned;
    uint8_t in_callback;
    uint8_t info_valid;
    uint8_t attempt_failed; /* our last attempt failed: wait for the backend to follow */
    uint8_t pad2_[3];
    uint32_t connect_failures;
    enum pvkit_blkfront_reason reason;
    int last_error;
    char reason_node[32];
    struct pvkit_blkfront_info info;

    /* The connection's ring and event channel. */
    uint8_t ring_live;
    uint8_t port_valid;
    uint8_t use_indirect;
    uint8_t pad_;
    struct pvkit_front_ring ring;
    uint32_t ring_first_frame;
    uint32_t ring_nr_frames;
    pvkit_grant_ref_t ring_refs[PVKIT_BLKFRONT_MAX_RING_PAGES];
    pvkit_evtchn_port_t port;

    /* Requests on the ring. */
    uint32_t nr_shadows;
    uint32_t nr_shadow_free;
    struct pvkit_blkfront_shadow_ shadows[PVKIT_BLKFRONT_MAX_RING_ENTS];
    uint16_t shadow_free[PVKIT_BLKFRONT_MAX_RING_ENTS];

    /* Indirect pages: allocated once, granted per request. */
    uint32_t nr_indirect;
    uint32_t nr_indirect_free;
    struct pvkit_blkfront_indirect_ indirect[PVKIT_BLKFRONT_MAX_RING_ENTS];
    uint16_t indirect_free[PVKIT_BLKFRONT_MAX_RING_ENTS];

    uint32_t nr_quarantine;
    struct pvkit_blkfront_quarantine_ quarantine[PVKIT_BLKFRONT_QUARANTINE_MAX];
    uint32_t deferred; /* deferred data grants + deferred indirect + quarantine */

    /* I/Os in submission order; `cursor` is the first not fully issued. */
    struct pvkit_blkfront_io *head;
    struct pvkit_blkfront_io *tail;
    struct pvkit_blkfront_io *cursor;
    uint32_t nr_ios;

    struct pvkit_blkfront_counters counters;
};

/*
 * Sets up `fe` for the device whose frontend directory is frontend_path
 * (e.g. "/local/domain/5/device/vbd/51712"). Reads `backend` and
 * `backend-id` there (the toolstack wrote them), and writes state
 * Initialising. `handle` goes into every request (the devid);
 * max_ring_page_order is the frontend's own limit (0..4). Returns 0 or a
 * negative PVKIT_E* number. Afterwards the caller watches
 * pvkit_blkfront_backend_state_path() and calls
 * pvkit_blkfront_store_changed() once and on every event.
 */
int pvkit_blkfront_init(struct pvkit_blkfront *fe, const struct pvkit_blkfront_env *env,
                        const char *frontend_path, uint16_t handle, uint32_t max_ring_page_order);

const char *pvkit_blkfront_backend_path(const struct pvkit_blkfront *fe);
/* Writes "<backend>/state" into buf; returns 0 or -PVKIT_E2BIG. */
int pvkit_blkfront_backend_state_path(const struct pvkit_blkfront *fe, char *buf, uint32_t size);

/* Reads the backend's state (and online) and runs the state machine.
 * Returns 0, or the store error that kept it from reading the state. */
int pvkit_blkfront_store_changed(struct pvkit_blkfront *fe);

/*
 * Queues an I/O. Returns 0 (env->complete() will follow exactly once), or
 * an error and the I/O is not taken: -PVKIT_EINVAL (malformed, or
 * misaligned for the device's sector size), -PVKIT_EROFS (write or discard
 * on a read-only device), -PVKIT_EOPNOTSUPP (flush/discard not offered),
 * -PVKIT_ERANGE (beyond the end of the device), -PVKIT_ENOTCONN (the device
 * is closed for good). Checks against the backend's limits use the last
 * connection's values; an I/O queued before the first connection is
 * checked when it is issued and fails then.
 */
int pvkit_blkfront_submit(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io);

/* Collects responses, retries deferred grant ends, issues queued I/O.
 * Returns the number of responses accepted. */
int pvkit_blkfront_poll(struct pvkit_blkfront *fe);

/* Responses ready now, without consuming them (for spinning); 0 when
 * there is no live ring; negative if rsp_prod is impossible (the next
 * poll halts the ring). */
int pvkit_blkfront_responses_ready(const struct pvkit_blkfront *fe);

/* Before sleeping: arms rsp_event and looks once more. 0 means safe to
 * sleep until the event channel (or a store watch) fires. */
int pvkit_blkfront_final_check(struct pvkit_blkfront *fe);

/* Closes the device for good (frontend-initiated close): no new I/O is
 * issued, what is on the ring is collected, queued I/O fails with
 * -PVKIT_ENOTCONN once the device is Closed. */
void pvkit_blkfront_close(struct pvkit_blkfront *fe);

/* Stop waiting for responses that will not come (a Closing backend that
 * halted its ring, a timeout chosen by the environment): the ring is
 * dropped as if halted, the I/O on it kept for re-issue. */
void pvkit_blkfront_abandon_ring(struct pvkit_blkfront *fe);

/*
 * Releases everything. Without `force` it fails with -PVKIT_EBUSY while
 * any I/O is unfinished or any grant could not be ended. With `force`
 * every unfinished I/O completes with -PVKIT_ENOTCONN and grants still in
 * use are left granted: the environment must then never reuse their
 * frames (a host process unmaps the whole pool).
 */
int pvkit_blkfront_destroy(struct pvkit_blkfront *fe, int force);

/* State for the environment and for tests. */
static inline uint8_t pvkit_blkfront_state(const struct pvkit_blkfront *fe) { return fe->state; }
static inline int pvkit_blkfront_connected(const struct pvkit_blkfront *fe)
{
    return fe->state == PVKIT_XENBUS_CONNECTED;
}
/* Closed for good (user close, teardown, or too many failed attempts). */
static inline int pvkit_blkfront_finished(const struct pvkit_blkfront *fe) { return fe->final; }
static inline int pvkit_blkfront_halted(const struct pvkit_blkfront *fe) { return fe->halted; }
static inline const struct pvkit_blkfront_info *pvkit_blkfront_get_info(const struct pvkit_blkfront *fe)
{
    return fe->info_valid ? &fe->info : PVKIT_CAST(const struct pvkit_blkfront_info *, 0);
}
static inline const struct pvkit_blkfront_counters *
pvkit_blkfront_get_counters(const struct pvkit_blkfront *fe)
{
    return &fe->counters;
}
/* I/Os submitted and not yet completed. */
static inline uint32_t pvkit_blkfront_ios(const struct pvkit_blkfront *fe) { return fe->nr_ios; }
/* Ring requests published and not yet answered. */
static inline uint32_t pvkit_blkfront_outstanding(const struct pvkit_blkfront *fe)
{
    return fe->ring_live ? fe->ring.req_prod_pvt - fe->ring.rsp_cons : 0u;
}
/* Grant ends waiting for the backend to let go. */
static inline uint32_t pvkit_blkfront_deferred(const struct pvkit_blkfront *fe) { return fe->deferred; }

#ifdef __cplusplus
}
#endif

#endif /* PVKIT_BLKFRONT_H */
