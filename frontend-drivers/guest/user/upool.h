/*
 * A device's grant pool from guest user mode (pvkit/grant.h): its layout,
 * a frame allocator and the frontend's half of the grant table. What a
 * frontend core's environment needs (blkfront's alloc_frames, grant,
 * end_grant), at native speed: the kernel mapped the pool for the program.
 *
 * The header is the guest's own memory, written by its VMM, and trusted
 * here; the grant table is shared with the backend, which sets and clears
 * the in-use bits, so entries change only by atomic operations.
 */
#ifndef PVKIT_MINI_UPOOL_H
#define PVKIT_MINI_UPOOL_H

#include <pvkit/abi.h>
#include <stdint.h>

/* Data frames the allocator manages (from data_first on): 32 MiB, more
 * than any mini-guest program needs; frames beyond are never handed out. */
#define UPOOL_MAX_DATA_FRAMES 8192u

struct upool {
    uint64_t base; /* guest address (= GPA) of frame 0 */
    uint32_t nr_frames;
    uint32_t table_first;
    uint32_t nr_grants;
    uint32_t data_first;
    uint32_t nr_data; /* data frames managed: min(pool's, UPOOL_MAX_DATA_FRAMES) */
    pvkit_domid_t owner;
    uint16_t pad;
    uint32_t nr_used; /* data frames handed out and not freed */
    uint32_t pad2;
    /* Bit i: data frame data_first + i is handed out. First fit, so a
     * fresh pool hands out frames in order from data_first. */
    uint64_t used[UPOOL_MAX_DATA_FRAMES / 64];
};

/* The pool of start-info device `index`: 0, or -PVKIT_ENOENT/-PVKIT_EINVAL. */
int upool_open(uint32_t index, struct upool* pool);
/* Address of a frame; NULL outside the pool. */
volatile void* upool_frame(const struct upool* pool, uint32_t frame);
/* `count` consecutive data frames: 0 and *first, or -PVKIT_ENOSPC. */
int upool_alloc_frames(struct upool* pool, uint32_t count, uint32_t* first);
/* Gives back frames [first, first + count) (any subrange of what
 * upool_alloc_frames returned): 0, or -PVKIT_EINVAL if one of them is not
 * a handed-out data frame (nothing is freed then). */
int upool_free_frames(struct upool* pool, uint32_t first, uint32_t count);
/* Grants data frame `frame` to `domid`: 0 and *ref (never 0), -PVKIT_EINVAL
 * for a frame that is not a data frame, -PVKIT_ENOSPC without a free entry. */
int upool_grant(struct upool* pool, pvkit_domid_t domid, uint32_t frame, int readonly,
                pvkit_grant_ref_t* ref);
/* Ends a grant: 0, or -PVKIT_EBUSY while the grantee has it mapped (retry
 * later), -PVKIT_EINVAL for a bad or unused reference. */
int upool_end_grant(struct upool* pool, pvkit_grant_ref_t ref);

#endif /* PVKIT_MINI_UPOOL_H */
