/*
 * What blk-selftest writes, where: the extents and the byte pattern, so that
 * tests/vmm can check the image file from the host after the guest ran,
 * independently of the guest's own read-back. Plain C, included by the
 * guest and by the host tests.
 *
 * Extents are in 512-byte sectors. Each is written with one I/O whose
 * segments start `first_sect` sectors into their first page, so partial
 * pages, page-aligned runs, runs of more than 11 segments (several ring
 * requests, or indirect ones) and the last sectors of the disk are all
 * covered. `from_end` extents are placed relative to the disk's end.
 */
#ifndef PVKIT_GUEST_BLK_PATTERN_H
#define PVKIT_GUEST_BLK_PATTERN_H

#include <stdint.h>

#ifdef __cplusplus
#define PVKIT_BLK_BYTE(v) static_cast<uint8_t>(v)
#else
#define PVKIT_BLK_BYTE(v) ((uint8_t)(v))
#endif

struct blk_pattern_extent {
    uint64_t sector;     /* first sector (from the end when from_end) */
    uint32_t nr_sectors; /* length */
    uint8_t first_sect;  /* sector offset into the first page, 0..7 */
    uint8_t from_end;    /* sector counts back from the disk's end */
    uint16_t pad;
};

/* Disks blk-selftest runs on must have at least this many sectors. */
#define BLK_PATTERN_MIN_SECTORS 16384u /* 8 MiB */
#define BLK_PATTERN_NR_EXTENTS 8u

static const struct blk_pattern_extent k_blk_pattern_extents[BLK_PATTERN_NR_EXTENTS] = {
    {0, 1, 0, 0, 0},      /* one sector at the start */
    {9, 3, 1, 0, 0},      /* a partial page, unaligned on both ends */
    {64, 8, 0, 0, 0},     /* one whole page */
    {203, 29, 3, 0, 0},   /* five pages, partial at both ends */
    {1024, 88, 0, 0, 0},  /* 11 pages: one full ring request */
    {2050, 200, 2, 0, 0}, /* 26 pages: split or indirect */
    {8192, 512, 0, 0, 0}, /* 64 pages (256 KiB) */
    {8, 8, 0, 1, 0},      /* the disk's last page */
};

/* The byte at disk offset `offset` (bytes) after blk-selftest's run. */
static inline uint8_t blk_pattern_byte(uint64_t offset) {
    const uint64_t sector = offset >> 9;
    return PVKIT_BLK_BYTE((offset * 131u) ^ (sector * 0x9du) ^ (offset >> 13) ^ 0x5au);
}

/* An extent's first sector on a disk of `disk_sectors` sectors. */
static inline uint64_t blk_pattern_start(const struct blk_pattern_extent* e,
                                         uint64_t disk_sectors) {
    return e->from_end ? disk_sectors - e->sector : e->sector;
}

#endif /* PVKIT_GUEST_BLK_PATTERN_H */
