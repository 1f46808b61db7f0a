/*
 * pvkit hypercall ABI: grant pools and grant entries.
 *
 * A grant pool is one shared-memory region per PV device: a memfd that the
 * VMM maps into the guest's physical address space (or that a host-process
 * frontend maps directly) and that the device's backend maps as well. The
 * backend never sees any other memory of the frontend.
 *
 * Layout, in PVKIT_PAGE_SIZE pages ("frames", numbered from 0 at the start
 * of the pool):
 *
 *   frame 0                          struct pvkit_grant_pool_header
 *   frames [table_first, +table_nr)  struct pvkit_grant_entry[nr_grants]
 *   frames [data_first, nr_frames)   grantable pages: rings, data buffers
 *
 * Only data frames can be granted. The header and the table are written by
 * the frontend and are therefore untrusted by the backend: it copies the
 * header once when it maps the pool, checks it against the size of the
 * memfd it was given, and from then on uses only its private copy. The
 * memfd must be sealed with F_SEAL_SHRINK and F_SEAL_GROW; a backend
 * refuses any other, since a pool that can shrink under a mapping turns the
 * backend's accesses into SIGBUS.
 *
 * Reference 0 is reserved (see abi.h): nr_grants is at least 2.
 *
 * Grant life cycle (frontend = granter, backend = grantee):
 *
 *  1. grant: the frontend picks a free reference, writes frame, then
 *     writes the (flags, domid) word with one release store, flags =
 *     PVKIT_GTF_PERMIT_ACCESS [| PVKIT_GTF_READONLY] (release: the frame is
 *     visible before the entry becomes valid).
 *  2. map: the backend reads the (flags, domid) word once (acquire), checks
 *     type, grantee domid and access mode, then sets PVKIT_GTF_READING or
 *     PVKIT_GTF_WRITING with a compare and exchange on the word against the
 *     value it checked. If the frontend changed the word in between, the
 *     exchange fails and the map is refused. Only then does it read the
 *     frame, once, and check that it is a data frame (else it clears the bit
 *     again and refuses). Reading the frame after the exchange matters: a
 *     frontend may end a grant and grant the same reference again with an
 *     equal word but another frame, which the exchange cannot see. The
 *     backend uses only its checked copy, whatever the frontend writes later.
 *  3. unmap: the backend counts mappings per reference and access; when
 *     the last one goes it clears the bit it set (atomic and-not).
 *  4. end: the frontend replaces the whole word (flags and domid) with 0 by
 *     compare and exchange from a value without READING/WRITING. While the
 *     backend has the grant in use the exchange fails and the frontend
 *     must defer (-PVKIT_EBUSY).
 */
#ifndef PVKIT_GRANT_H
#define PVKIT_GRANT_H

#include "abi.h"

/*
 * Grant entry, Xen v1 style. flags and domid form one naturally aligned
 * 32-bit word so both sides can compare and exchange them together.
 */
struct pvkit_grant_entry {
    uint16_t flags;      /* PVKIT_GTF_*: type and READONLY by frontend; READING/WRITING by backend */
    pvkit_domid_t domid; /* written by: frontend. The only domain that may map it. */
    uint32_t frame;      /* written by: frontend. Data frame inside this pool. */
};
PVKIT_ABI_SIZE(struct pvkit_grant_entry, 8);
PVKIT_ABI_OFFSET(struct pvkit_grant_entry, domid, 2);
PVKIT_ABI_OFFSET(struct pvkit_grant_entry, frame, 4);

/* Type, bits 0-1 of flags. */
#define PVKIT_GTF_INVALID 0x0u
#define PVKIT_GTF_PERMIT_ACCESS 0x1u
#define PVKIT_GTF_TYPE_MASK 0x3u
/* Set by the frontend: the grantee may only read the frame. */
#define PVKIT_GTF_READONLY (1u << 2)
/* Set and cleared by the backend while it has a read-only mapping. */
#define PVKIT_GTF_READING (1u << 3)
/* Set and cleared by the backend while it has a writable mapping. */
#define PVKIT_GTF_WRITING (1u << 4)
#define PVKIT_GTF_IN_USE (PVKIT_GTF_READING | PVKIT_GTF_WRITING)

#define PVKIT_GRANT_ENTRIES_PER_PAGE (PVKIT_PAGE_SIZE / 8u)

#define PVKIT_GRANT_POOL_MAGIC 0x31504752474b5650ull /* "PVKGRGP1" */
#define PVKIT_GRANT_POOL_VERSION 1u
/* A pool is at most 1 GiB; frames and offsets fit in 32 bits with room. */
#define PVKIT_GRANT_POOL_MAX_FRAMES (1u << 18)

/* Frame 0 of every pool. Written by: the pool's creator (frontend or VMM). */
struct pvkit_grant_pool_header {
    uint64_t magic;         /* PVKIT_GRANT_POOL_MAGIC */
    uint32_t version;       /* PVKIT_GRANT_POOL_VERSION */
    uint32_t page_size;     /* PVKIT_PAGE_SIZE */
    uint32_t nr_frames;     /* total frames, header and table included */
    uint32_t table_first;   /* first frame of the grant table: 1 in version 1 (backends accept >= 1) */
    uint32_t table_nr;      /* frames of grant table */
    uint32_t nr_grants;     /* entries, <= table_nr * PVKIT_GRANT_ENTRIES_PER_PAGE */
    uint32_t data_first;    /* first grantable frame, = table_first + table_nr */
    pvkit_domid_t owner;    /* domain that owns (grants from) this pool */
    uint16_t pad0;
    uint64_t reserved[4];   /* zero */
};
PVKIT_ABI_SIZE(struct pvkit_grant_pool_header, 72);
PVKIT_ABI_OFFSET(struct pvkit_grant_pool_header, nr_frames, 16);
PVKIT_ABI_OFFSET(struct pvkit_grant_pool_header, data_first, 32);
PVKIT_ABI_OFFSET(struct pvkit_grant_pool_header, owner, 36);

/*
 * Result of PVKIT_HC_GRANT_POOL_QUERY(index, gpa): where the VMM mapped the
 * pool with that index. Written by: VMM.
 */
struct pvkit_grant_pool_info {
    uint64_t gpa;      /* guest-physical base of frame 0 */
    uint32_t nr_frames;
    uint32_t dev_type; /* PVKIT_DEV_* (start_info.h) */
    uint32_t devid;
    pvkit_domid_t backend_domid;
    uint16_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_grant_pool_info, 24);

#endif /* PVKIT_GRANT_H */
