/*
 * pvkit hypercall ABI: the block device protocol (blkif).
 *
 * Modelled on Xen's io/blkif.h, x86-64 layout. Requests and responses travel
 * over a pvkit shared ring (ring.h) whose slots are union
 * pvkit_blkif_sring_entry. Sectors are always 512 bytes in the protocol
 * (sector_number, first_sect, last_sect), whatever the device's
 * sector-size; the backend rejects requests not aligned to sector-size.
 *
 * Data moves through grant references: each segment names a granted frame
 * and the inclusive range of 512-byte sectors [first_sect, last_sect]
 * inside it (first_sect <= last_sect <= 7). For a write the frame may be
 * granted read-only; for a read it must be granted writable.
 *
 * Store keys (see docs/handshake.md): the backend publishes sectors (the
 * size in 512-byte sectors, whatever sector-size is), sector-size, info
 * (PVKIT_VDISK_*), feature-flush-cache, feature-discard, discard-secure,
 * discard-granularity, feature-max-indirect-segments, max-ring-page-order;
 * the frontend publishes ring-ref (or ring-page-order and ring-ref0 ..
 * ring-ref<2^order - 1> for multi-page rings), event-channel and
 * protocol = "x86_64-abi".
 */
#ifndef PVKIT_BLKIF_H
#define PVKIT_BLKIF_H

#include "abi.h"

#define PVKIT_BLKIF_OP_READ 0u
#define PVKIT_BLKIF_OP_WRITE 1u
/* 2 (write barrier) is reserved and never used: flush replaces it. */
#define PVKIT_BLKIF_OP_FLUSH_DISKCACHE 3u
/* 4 is reserved. */
#define PVKIT_BLKIF_OP_DISCARD 5u
#define PVKIT_BLKIF_OP_INDIRECT 6u

#define PVKIT_BLKIF_SECTOR_SIZE 512u
#define PVKIT_BLKIF_SECTORS_PER_PAGE (PVKIT_PAGE_SIZE / PVKIT_BLKIF_SECTOR_SIZE)
/* Segments carried directly in a request. */
#define PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST 11u
/* Indirect requests: up to 8 pages of segment descriptors. */
#define PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST 8u
#define PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME (PVKIT_PAGE_SIZE / 8u)
/* What a pvkit backend offers at most as feature-max-indirect-segments. */
#define PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS 256u

/* Status values in responses. */
#define PVKIT_BLKIF_RSP_EOPNOTSUPP (-2)
#define PVKIT_BLKIF_RSP_ERROR (-1)
#define PVKIT_BLKIF_RSP_OKAY 0

/* "info" bits published by the backend. */
#define PVKIT_VDISK_CDROM 0x1u
#define PVKIT_VDISK_REMOVABLE 0x2u
#define PVKIT_VDISK_READONLY 0x4u

typedef uint64_t pvkit_blkif_sector_t;

/* One data segment. Written by: frontend. Also the entry of indirect pages. */
struct pvkit_blkif_segment {
    pvkit_grant_ref_t gref; /* granted data frame */
    uint8_t first_sect;     /* first 512-byte sector in the frame, 0..7 */
    uint8_t last_sect;      /* last sector, first_sect..7 (inclusive) */
    uint16_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_blkif_segment, 8);
PVKIT_ABI_OFFSET(struct pvkit_blkif_segment, first_sect, 4);

/* READ, WRITE, FLUSH_DISKCACHE. Written by: frontend. */
struct pvkit_blkif_request {
    uint8_t operation;   /* PVKIT_BLKIF_OP_* */
    uint8_t nr_segments; /* 1..11 for READ/WRITE; must be 0 for FLUSH */
    uint16_t handle;     /* device handle, the devid */
    uint32_t pad;
    uint64_t id;                        /* echoed in the response; the frontend's tag */
    pvkit_blkif_sector_t sector_number; /* start, in 512-byte sectors */
    struct pvkit_blkif_segment seg[PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST];
};
PVKIT_ABI_SIZE(struct pvkit_blkif_request, 112);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request, id, 8);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request, sector_number, 16);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request, seg, 24);

/* DISCARD. Written by: frontend. */
#define PVKIT_BLKIF_DISCARD_SECURE 0x1u
struct pvkit_blkif_request_discard {
    uint8_t operation; /* PVKIT_BLKIF_OP_DISCARD */
    uint8_t flag;      /* PVKIT_BLKIF_DISCARD_* */
    uint16_t handle;
    uint32_t pad;
    uint64_t id;
    pvkit_blkif_sector_t sector_number;
    uint64_t nr_sectors;
    uint8_t pad2[80];
};
PVKIT_ABI_SIZE(struct pvkit_blkif_request_discard, 112);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request_discard, nr_sectors, 24);

/*
 * INDIRECT: the segments live in up to 8 granted pages of struct
 * pvkit_blkif_segment (512 per page). The first
 * ceil(nr_segments / 512) entries of indirect_grefs are used, the rest are
 * 0. Indirect pages may be granted read-only; the backend copies them once
 * and checks the copy. Written by: frontend.
 */
struct pvkit_blkif_request_indirect {
    uint8_t operation;    /* PVKIT_BLKIF_OP_INDIRECT */
    uint8_t indirect_op;  /* PVKIT_BLKIF_OP_READ or _WRITE */
    uint16_t nr_segments; /* 1..feature-max-indirect-segments */
    uint32_t pad;
    uint64_t id;
    pvkit_blkif_sector_t sector_number;
    uint16_t handle;
    uint16_t pad2;
    pvkit_grant_ref_t indirect_grefs[PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    uint8_t pad3[52];
};
PVKIT_ABI_SIZE(struct pvkit_blkif_request_indirect, 112);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request_indirect, handle, 24);
PVKIT_ABI_OFFSET(struct pvkit_blkif_request_indirect, indirect_grefs, 28);

/* Written by: backend, into a zeroed slot. */
struct pvkit_blkif_response {
    uint64_t id;       /* copied from the request */
    uint8_t operation; /* copied from the request */
    uint8_t pad;
    int16_t status; /* PVKIT_BLKIF_RSP_* */
    uint32_t pad2;
};
PVKIT_ABI_SIZE(struct pvkit_blkif_response, 16);
PVKIT_ABI_OFFSET(struct pvkit_blkif_response, status, 10);

/* One ring slot. */
union pvkit_blkif_sring_entry {
    struct pvkit_blkif_request req;
    struct pvkit_blkif_request_discard discard;
    struct pvkit_blkif_request_indirect indirect;
    struct pvkit_blkif_response rsp;
};
PVKIT_ABI_SIZE(union pvkit_blkif_sring_entry, 112);

#endif /* PVKIT_BLKIF_H */
