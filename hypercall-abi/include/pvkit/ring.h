/*
 * pvkit hypercall ABI: the shared request/response ring.
 *
 * This is Xen's shared-ring protocol (xen/include/public/io/ring.h) written
 * as functions instead of macros, with the hardening Xen added after
 * XSA-155 built in: indices written by the peer are read once and checked,
 * and every slot is copied into private memory before anyone looks at it.
 *
 * Layout of a ring of 2^order pages (order = the device's ring-page-order,
 * 0 unless both ends advertise PVKIT_FEAT_MULTI_PAGE_RING / the device's
 * max-ring-page-order; a multi-page ring occupies consecutive pool frames):
 *
 *   offset 0   struct pvkit_sring_hdr (64 bytes)
 *   offset 64  nr_ents slots of slot_size bytes; nr_ents is the largest
 *              power of two with 64 + nr_ents * slot_size <= ring bytes.
 *
 * Each slot holds a request or a response (a union in the protocol
 * headers): the backend writes response i into the slot request i came in.
 * Indices are free-running 32-bit counters; slot = index & (nr_ents - 1);
 * all comparisons use unsigned differences, so they wrap at 2^32.
 *
 * The protocol, step by step (frontend F, backend B):
 *
 *  F1. F writes requests into slots req_prod_pvt, req_prod_pvt+1, ... while
 *      fewer than nr_ents requests are outstanding (not yet answered).
 *  F2. F publishes: release barrier (slot contents before the index), then
 *      req_prod = req_prod_pvt; full barrier (req_prod before reading
 *      req_event); notify B iff req_event lies in (old req_prod, new].
 *  B1. B reads req_prod once (acquire: the index before the slots it
 *      covers), checks that it does not claim more requests than free
 *      response slots allow, copies each slot out, and only then validates
 *      the copy.
 *  B2. B writes each response into slot rsp_prod_pvt (bytes past the
 *      response zeroed, so no stale data stays in the slot),
 *      publishes rsp_prod like F2, and notifies F iff rsp_event was passed.
 *  B3. Before sleeping, B sets req_event = req_cons + 1, full barrier, and
 *      looks at req_prod once more ("final check"). Only if there is still
 *      nothing does it block on its event channel. F does the same with
 *      rsp_event before it sleeps.
 *
 * Notification hold-off: while a consumer is busy it does not advance its
 * event index, so the producer does not kick it; a kick is only sent when
 * the consumer said it is about to sleep.
 *
 * An impossible index (the peer claims more requests or responses than can
 * exist) is a protocol violation: the functions return PVKIT_RING_EPROTO and
 * the caller halts this ring (device to Closing). Nothing else is harmed.
 */
#ifndef PVKIT_RING_H
#define PVKIT_RING_H

#include "abi.h"

/*
 * Memory-ordering primitives. They default to the GCC/Clang builtins, which
 * work in freestanding C, in C++ and inside the mini guest; the Linux port
 * defines each of them first (smp_load_acquire, smp_store_release,
 * READ_ONCE, WRITE_ONCE, smp_mb, barrier).
 */
#ifndef PVKIT_RING_LOAD_ACQUIRE
/* Peer-written index: read it before anything it publishes. */
#define PVKIT_RING_LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#endif
#ifndef PVKIT_RING_STORE_RELEASE
/* Own index: everything written before becomes visible no later than it. */
#define PVKIT_RING_STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif
#ifndef PVKIT_RING_LOAD_ONCE
/* Single read of a peer-written word with no ordering requirement. */
#define PVKIT_RING_LOAD_ONCE(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#endif
#ifndef PVKIT_RING_STORE_ONCE
#define PVKIT_RING_STORE_ONCE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#endif
#ifndef PVKIT_RING_MB
/* Full barrier: our index store before our read of the peer's event index. */
#define PVKIT_RING_MB() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#ifndef PVKIT_RING_COMPILER_BARRIER
/* Compiler barrier: the compiler may not re-read a slot it already copied. */
#define PVKIT_RING_COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")
#endif

#define PVKIT_RING_HDR_SIZE 64u
/* Bound so that index arithmetic and slot offsets cannot overflow. */
#define PVKIT_RING_MAX_PAGE_ORDER 4u
#define PVKIT_RING_EPROTO (-PVKIT_EPROTO) /* the peer broke the ring protocol */
#define PVKIT_RING_EFULL (-PVKIT_ENOSPC)

struct pvkit_sring_hdr {
    uint32_t req_prod;  /* written by: frontend. Requests published so far. */
    uint32_t req_event; /* written by: backend. Kick me when req_prod passes this. */
    uint32_t rsp_prod;  /* written by: backend. Responses published so far. */
    uint32_t rsp_event; /* written by: frontend. Kick me when rsp_prod passes this. */
    uint8_t pad[48];    /* zero; reserved */
};
PVKIT_ABI_SIZE(struct pvkit_sring_hdr, PVKIT_RING_HDR_SIZE);
PVKIT_ABI_OFFSET(struct pvkit_sring_hdr, req_event, 4);
PVKIT_ABI_OFFSET(struct pvkit_sring_hdr, rsp_prod, 8);
PVKIT_ABI_OFFSET(struct pvkit_sring_hdr, rsp_event, 12);

/*
 * Private state of each end. Never shared; not part of the wire ABI. The
 * *_pushed fields keep what we last published, so that neither the
 * notification decision nor the bound on the peer's index depends on a
 * shared word the peer could rewrite.
 */
struct pvkit_front_ring {
    struct pvkit_sring_hdr *sring;
    uint8_t *slots;
    uint32_t nr_ents;
    uint32_t slot_size;
    uint32_t req_prod_pvt;    /* next request slot to fill */
    uint32_t req_prod_pushed; /* req_prod as we last published it */
    uint32_t rsp_cons;        /* next response to consume */
};

struct pvkit_back_ring {
    struct pvkit_sring_hdr *sring;
    uint8_t *slots;
    uint32_t nr_ents;
    uint32_t slot_size;
    uint32_t rsp_prod_pvt;    /* next response slot to fill */
    uint32_t rsp_prod_pushed; /* rsp_prod as we last published it */
    uint32_t req_cons;        /* next request to consume */
};

/* Largest power of two n with HDR + n * slot_size <= ring_bytes; 0 if none. */
static inline uint32_t pvkit_ring_nr_ents(uint32_t ring_bytes, uint32_t slot_size)
{
    uint32_t n, p = 1;
    if (slot_size == 0 || ring_bytes <= PVKIT_RING_HDR_SIZE)
        return 0;
    n = (ring_bytes - PVKIT_RING_HDR_SIZE) / slot_size;
    if (n == 0)
        return 0;
    while (p <= n / 2)
        p *= 2;
    return p;
}

static inline void pvkit_ring_copy_(void *dst, const void *src, uint32_t len)
{
    __builtin_memcpy(dst, src, len);
}

static inline void pvkit_ring_zero_(void *dst, uint32_t len)
{
    __builtin_memset(dst, 0, len);
}

static inline uint8_t *pvkit_ring_slot_(uint8_t *slots, uint32_t nr_ents, uint32_t slot_size,
                                        uint32_t idx)
{
    return slots + PVKIT_CAST(size_t, idx & (nr_ents - 1)) * slot_size;
}

/*
 * Frontend: set up a fresh ring in `ring` (ring_bytes long) and attach to
 * it. The frontend owns initialisation; the backend only attaches.
 * Returns 0 or -PVKIT_EINVAL (size not a page multiple, order too large,
 * or no slot fits).
 */
static inline int pvkit_front_ring_init(struct pvkit_front_ring *fr, void *ring,
                                        uint32_t ring_bytes, uint32_t slot_size)
{
    struct pvkit_sring_hdr *s = PVKIT_CAST(struct pvkit_sring_hdr *, ring);
    uint32_t n = pvkit_ring_nr_ents(ring_bytes, slot_size);
    if (n == 0 || ring_bytes % PVKIT_PAGE_SIZE != 0 ||
        ring_bytes > (PVKIT_PAGE_SIZE << PVKIT_RING_MAX_PAGE_ORDER))
        return -PVKIT_EINVAL;
    pvkit_ring_zero_(ring, ring_bytes);
    /* Both event indices at 1: the first request and response kick. */
    s->req_event = 1;
    s->rsp_event = 1;
    fr->sring = s;
    fr->slots = PVKIT_CAST(uint8_t *, ring) + PVKIT_RING_HDR_SIZE;
    fr->nr_ents = n;
    fr->slot_size = slot_size;
    fr->req_prod_pvt = 0;
    fr->req_prod_pushed = 0;
    fr->rsp_cons = 0;
    return 0;
}

/* Backend: attach to a ring the frontend initialised. */
static inline int pvkit_back_ring_attach(struct pvkit_back_ring *br, void *ring,
                                         uint32_t ring_bytes, uint32_t slot_size)
{
    uint32_t n = pvkit_ring_nr_ents(ring_bytes, slot_size);
    if (n == 0 || ring_bytes % PVKIT_PAGE_SIZE != 0 ||
        ring_bytes > (PVKIT_PAGE_SIZE << PVKIT_RING_MAX_PAGE_ORDER))
        return -PVKIT_EINVAL;
    br->sring = PVKIT_CAST(struct pvkit_sring_hdr *, ring);
    br->slots = PVKIT_CAST(uint8_t *, ring) + PVKIT_RING_HDR_SIZE;
    br->nr_ents = n;
    br->slot_size = slot_size;
    /* A fresh ring starts at 0; the frontend cannot choose another start. */
    br->rsp_prod_pvt = 0;
    br->rsp_prod_pushed = 0;
    br->req_cons = 0;
    return 0;
}

/* ---- Frontend: requests out ---------------------------------------- */

/* Requests that may still be produced before the ring is full. */
static inline uint32_t pvkit_front_ring_free(const struct pvkit_front_ring *fr)
{
    return fr->nr_ents - (fr->req_prod_pvt - fr->rsp_cons);
}

/*
 * Copy a request of `len` bytes into the next slot; the rest of the slot is
 * zeroed so no stale private data reaches the peer. Not yet visible to the
 * backend: call pvkit_front_ring_push_requests.
 */
static inline int pvkit_front_ring_put_request(struct pvkit_front_ring *fr, const void *req,
                                               uint32_t len)
{
    uint8_t *slot;
    if (len > fr->slot_size)
        return -PVKIT_EINVAL;
    if (pvkit_front_ring_free(fr) == 0)
        return PVKIT_RING_EFULL;
    slot = pvkit_ring_slot_(fr->slots, fr->nr_ents, fr->slot_size, fr->req_prod_pvt);
    pvkit_ring_copy_(slot, req, len);
    pvkit_ring_zero_(slot + len, fr->slot_size - len);
    fr->req_prod_pvt++;
    return 0;
}

/* Publish produced requests. Returns 1 if the backend must be notified. */
static inline int pvkit_front_ring_push_requests(struct pvkit_front_ring *fr)
{
    uint32_t old_prod = fr->req_prod_pushed;
    uint32_t new_prod = fr->req_prod_pvt;
    uint32_t event;
    fr->req_prod_pushed = new_prod;
    /* Release: the slots written above become visible before req_prod. */
    PVKIT_RING_STORE_RELEASE(&fr->sring->req_prod, new_prod);
    /* Full barrier: publish req_prod before reading the backend's req_event. */
    PVKIT_RING_MB();
    event = PVKIT_RING_LOAD_ONCE(&fr->sring->req_event);
    return new_prod - event < new_prod - old_prod;
}

/*
 * Number of responses ready to consume, from a single read of rsp_prod.
 * Returns PVKIT_RING_EPROTO if the backend claims to have answered more
 * requests than we published and it has not answered yet.
 */
static inline int pvkit_front_ring_responses(const struct pvkit_front_ring *fr)
{
    /* Acquire: rsp_prod is read before the slots it covers. */
    uint32_t rp = PVKIT_RING_LOAD_ACQUIRE(&fr->sring->rsp_prod);
    uint32_t avail = rp - fr->rsp_cons;
    uint32_t outstanding = fr->req_prod_pushed - fr->rsp_cons;
    if (avail > outstanding)
        return PVKIT_RING_EPROTO;
    return PVKIT_CAST(int, avail);
}

/*
 * Copy the next response (len <= slot_size bytes) into private memory and
 * consume it. Only call it as many times as pvkit_front_ring_responses said.
 */
static inline void pvkit_front_ring_take_response(struct pvkit_front_ring *fr, void *dst,
                                                  uint32_t len)
{
    const uint8_t *slot = pvkit_ring_slot_(fr->slots, fr->nr_ents, fr->slot_size, fr->rsp_cons);
    pvkit_ring_copy_(dst, slot, len <= fr->slot_size ? len : fr->slot_size);
    /* The copy is final: never re-read the slot instead of `dst`. */
    PVKIT_RING_COMPILER_BARRIER();
    fr->rsp_cons++;
}

/*
 * Before sleeping: ask to be kicked for the next response, then look once
 * more. Returns the number of responses now ready (0: safe to sleep) or
 * PVKIT_RING_EPROTO.
 */
static inline int pvkit_front_ring_final_check(struct pvkit_front_ring *fr)
{
    int n = pvkit_front_ring_responses(fr);
    if (n != 0)
        return n;
    PVKIT_RING_STORE_ONCE(&fr->sring->rsp_event, fr->rsp_cons + 1);
    /* Full barrier: rsp_event is visible before we read rsp_prod again. */
    PVKIT_RING_MB();
    return pvkit_front_ring_responses(fr);
}

/* ---- Backend: requests in, responses out ----------------------------- */

/*
 * Number of requests ready to consume, from a single read of req_prod.
 * Requests consumed but not yet answered still occupy their slots, so the
 * frontend can never have more than nr_ents - in_flight new ones; a larger
 * claim (including an index that moved backwards) is PVKIT_RING_EPROTO.
 */
static inline int pvkit_back_ring_requests(const struct pvkit_back_ring *br)
{
    uint32_t rp = PVKIT_RING_LOAD_ACQUIRE(&br->sring->req_prod);
    uint32_t avail = rp - br->req_cons;
    uint32_t in_flight = br->req_cons - br->rsp_prod_pvt;
    if (avail > br->nr_ents - in_flight)
        return PVKIT_RING_EPROTO;
    return PVKIT_CAST(int, avail);
}

/* Copy the next request into private memory and consume it. */
static inline void pvkit_back_ring_take_request(struct pvkit_back_ring *br, void *dst,
                                                uint32_t len)
{
    const uint8_t *slot = pvkit_ring_slot_(br->slots, br->nr_ents, br->slot_size, br->req_cons);
    pvkit_ring_copy_(dst, slot, len <= br->slot_size ? len : br->slot_size);
    /* The copy is final: never re-read the slot instead of `dst`. */
    PVKIT_RING_COMPILER_BARRIER();
    br->req_cons++;
}

/*
 * Write the next response: `len` bytes are copied in and the rest of the
 * slot is zeroed. Fails with PVKIT_RING_EFULL if every consumed request has
 * already been answered.
 */
static inline int pvkit_back_ring_put_response(struct pvkit_back_ring *br, const void *rsp,
                                               uint32_t len)
{
    uint8_t *slot;
    if (len > br->slot_size)
        return -PVKIT_EINVAL;
    if (br->rsp_prod_pvt == br->req_cons)
        return PVKIT_RING_EFULL;
    slot = pvkit_ring_slot_(br->slots, br->nr_ents, br->slot_size, br->rsp_prod_pvt);
    pvkit_ring_copy_(slot, rsp, len);
    pvkit_ring_zero_(slot + len, br->slot_size - len);
    br->rsp_prod_pvt++;
    return 0;
}

/* Publish produced responses. Returns 1 if the frontend must be notified. */
static inline int pvkit_back_ring_push_responses(struct pvkit_back_ring *br)
{
    uint32_t old_prod = br->rsp_prod_pushed;
    uint32_t new_prod = br->rsp_prod_pvt;
    uint32_t event;
    br->rsp_prod_pushed = new_prod;
    /* Release: the response slots become visible before rsp_prod. */
    PVKIT_RING_STORE_RELEASE(&br->sring->rsp_prod, new_prod);
    /* Full barrier: publish rsp_prod before reading the frontend's rsp_event. */
    PVKIT_RING_MB();
    event = PVKIT_RING_LOAD_ONCE(&br->sring->rsp_event);
    return new_prod - event < new_prod - old_prod;
}

/* Before sleeping: the backend's counterpart of pvkit_front_ring_final_check. */
static inline int pvkit_back_ring_final_check(struct pvkit_back_ring *br)
{
    int n = pvkit_back_ring_requests(br);
    if (n != 0)
        return n;
    PVKIT_RING_STORE_ONCE(&br->sring->req_event, br->req_cons + 1);
    /* Full barrier: req_event is visible before we read req_prod again. */
    PVKIT_RING_MB();
    return pvkit_back_ring_requests(br);
}

#endif /* PVKIT_RING_H */
