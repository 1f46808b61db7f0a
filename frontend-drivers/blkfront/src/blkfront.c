/*
 * pvkit blkfront protocol core. See include/pvkit/blkfront.h for the
 * contract and docs/blkfront.md for the design; docs/handshake.md is the
 * protocol this follows step by step.
 *
 * Freestanding C11: no library calls. The only helpers are the small
 * string and number routines below.
 */
#include "pvkit/blkfront.h"

/* I/O life cycle (io->priv_state). */
#define IO_QUEUED 0u  /* waiting for (more of) its ring requests to be issued */
#define IO_ISSUED 1u  /* every ring request is on the ring */
#define IO_ENDING 2u  /* every response is in; waiting for grant ends */

/* seg->priv_flags */
#define SEG_DEFERRED 0x1u /* its grant's end failed; retried */

#define NO_INDIRECT 0xffffu

/* UINT64_MAX is not in the Linux kernel's headers; the core must build there. */
#define U64_ALL_ONES (~PVKIT_CAST(uint64_t, 0))

/* ---- Small freestanding helpers ----------------------------------------- */

static uint32_t str_len(const char *s)
{
    uint32_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

static int str_eq(const char *a, const char *b)
{
    uint32_t i = 0;
    while (a[i] != '\0' && a[i] == b[i])
        i++;
    return a[i] == b[i];
}

/* Copies src into dst (size bytes); -PVKIT_E2BIG if it does not fit. */
static int str_copy(char *dst, uint32_t size, const char *src)
{
    uint32_t n = str_len(src);
    uint32_t i;
    if (n + 1 > size)
        return -PVKIT_E2BIG;
    for (i = 0; i <= n; i++)
        dst[i] = src[i];
    return 0;
}

/* dst = a "/" b */
static int path_join(char *dst, uint32_t size, const char *a, const char *b)
{
    uint32_t la = str_len(a), lb = str_len(b), i;
    if (la + 1 + lb + 1 > size)
        return -PVKIT_E2BIG;
    for (i = 0; i < la; i++)
        dst[i] = a[i];
    dst[la] = '/';
    for (i = 0; i <= lb; i++)
        dst[la + 1 + i] = b[i];
    return 0;
}

/* Decimal form of v into buf (at least 21 bytes). */
static void u64_to_dec(char *buf, uint64_t v)
{
    char tmp[21];
    uint32_t n = 0, i;
    do {
        tmp[n++] = PVKIT_CAST(char, '0' + PVKIT_CAST(int, v % 10u));
        v /= 10u;
    } while (v != 0);
    for (i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}

/*
 * docs/handshake.md "Number format": plain ASCII decimal, no sign, no
 * leading zeros except "0" itself, no spaces or newline, fits in u64.
 */
static int parse_u64(const char *s, uint32_t len, uint64_t *out)
{
    uint64_t v = 0;
    uint32_t i;
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return -PVKIT_EINVAL;
    for (i = 0; i < len; i++) {
        uint64_t d;
        if (s[i] < '0' || s[i] > '9')
            return -PVKIT_EINVAL;
        d = PVKIT_CAST(uint64_t, s[i] - '0');
        if (v > (U64_ALL_ONES - d) / 10u)
            return -PVKIT_EINVAL;
        v = v * 10u + d;
    }
    *out = v;
    return 0;
}

static void zero(void *p, uint32_t n)
{
    __builtin_memset(p, 0, n);
}

/* ---- Store access --------------------------------------------------------- */

/* Reads <dir>/<leaf> into buf (NUL-terminated). Length or negative error. */
static int read_node(struct pvkit_blkfront *fe, uint32_t tx, const char *dir, const char *leaf,
                     char *buf, uint32_t size)
{
    char path[PVKIT_BLKFRONT_PATH_MAX];
    int r = path_join(path, sizeof path, dir, leaf);
    if (r < 0)
        return r;
    r = fe->env->store_read(fe->env->ctx, tx, path, buf, size - 1);
    if (r < 0)
        return r;
    if (PVKIT_CAST(uint32_t, r) > size - 1)
        return -PVKIT_E2BIG;
    buf[r] = '\0';
    return r;
}

static int write_node(struct pvkit_blkfront *fe, uint32_t tx, const char *dir, const char *leaf,
                      const char *value)
{
    char path[PVKIT_BLKFRONT_PATH_MAX];
    int r = path_join(path, sizeof path, dir, leaf);
    if (r < 0)
        return r;
    return fe->env->store_write(fe->env->ctx, tx, path, value);
}

static int write_node_u64(struct pvkit_blkfront *fe, uint32_t tx, const char *dir,
                          const char *leaf, uint64_t v)
{
    char num[24];
    u64_to_dec(num, v);
    return write_node(fe, tx, dir, leaf, num);
}

static int rm_node(struct pvkit_blkfront *fe, uint32_t tx, const char *dir, const char *leaf)
{
    char path[PVKIT_BLKFRONT_PATH_MAX];
    int r = path_join(path, sizeof path, dir, leaf);
    if (r < 0)
        return r;
    return fe->env->store_rm(fe->env->ctx, tx, path);
}

static void set_reason(struct pvkit_blkfront *fe, enum pvkit_blkfront_reason reason,
                       const char *node, int err)
{
    if (fe->reason != PVKIT_BLKFRONT_REASON_NONE)
        return;
    fe->reason = reason;
    fe->last_error = err;
    fe->reason_node[0] = '\0';
    if (node != 0 && str_copy(fe->reason_node, sizeof fe->reason_node, node) < 0)
        fe->reason_node[0] = '\0';
}

/* Writes our state node. A failure is remembered; the local state moves
 * on regardless, so a broken store cannot make the machine loop. */
static void write_state(struct pvkit_blkfront *fe, uint8_t state)
{
    int r = write_node_u64(fe, 0, fe->front_path, "state", state);
    if (r < 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_STORE, "state", r);
        fe->last_error = r;
    }
    fe->state = state;
}

/*
 * Reads one backend number. Absent: *out = dflt (and 0 returned) when
 * `required` is 0. Anything that is not a plain decimal is an error that
 * names the node.
 */
static int read_backend_u64(struct pvkit_blkfront *fe, const char *leaf, int required,
                            uint64_t dflt, uint64_t *out)
{
    char buf[32];
    int r = read_node(fe, 0, fe->back_path, leaf, buf, sizeof buf);
    if (r == -PVKIT_ENOENT && !required) {
        *out = dflt;
        return 0;
    }
    if (r < 0 || parse_u64(buf, PVKIT_CAST(uint32_t, r), out) < 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, leaf, r < 0 ? r : -PVKIT_EINVAL);
        return r < 0 ? r : -PVKIT_EINVAL;
    }
    return 0;
}

static int read_backend_flag(struct pvkit_blkfront *fe, const char *leaf, uint8_t *out)
{
    uint64_t v;
    int r = read_backend_u64(fe, leaf, 0, 0, &v);
    if (r < 0)
        return r;
    if (v > 1) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, leaf, -PVKIT_EINVAL);
        return -PVKIT_EINVAL;
    }
    *out = PVKIT_CAST(uint8_t, v);
    return 0;
}

/*
 * The backend's InitWait values, read once and validated as
 * docs/handshake.md "A frontend checks the backend's nodes" says. Limits
 * are clamped, malformed values refused.
 */
static int read_backend_info(struct pvkit_blkfront *fe, struct pvkit_blkfront_info *info)
{
    uint64_t v;
    int r;
    zero(info, sizeof *info);

    if ((r = read_backend_u64(fe, "sector-size", 1, 0, &v)) < 0)
        return r;
    if (v != 512u && v != 4096u) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, "sector-size", -PVKIT_EINVAL);
        return -PVKIT_EINVAL;
    }
    info->sector_size = PVKIT_CAST(uint32_t, v);

    if ((r = read_backend_u64(fe, "sectors", 1, 0, &v)) < 0)
        return r;
    /* sectors * 512 must fit in 64 bits; a whole number of logical sectors. */
    if (v > U64_ALL_ONES / PVKIT_BLKIF_SECTOR_SIZE || v % (info->sector_size / 512u) != 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, "sectors", -PVKIT_EINVAL);
        return -PVKIT_EINVAL;
    }
    info->sectors = v;

    if ((r = read_backend_u64(fe, "info", 0, 0, &v)) < 0)
        return r;
    if ((v & ~PVKIT_CAST(uint64_t, PVKIT_VDISK_CDROM | PVKIT_VDISK_REMOVABLE |
                                           PVKIT_VDISK_READONLY)) != 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, "info", -PVKIT_EINVAL);
        return -PVKIT_EINVAL;
    }
    info->vdisk_info = PVKIT_CAST(uint32_t, v);
    info->read_only = (v & PVKIT_VDISK_READONLY) != 0;

    if ((r = read_backend_flag(fe, "feature-flush-cache", &info->flush)) < 0)
        return r;
    if ((r = read_backend_flag(fe, "feature-discard", &info->discard)) < 0)
        return r;
    if (info->discard) {
        if ((r = read_backend_flag(fe, "discard-secure", &info->discard_secure)) < 0)
            return r;
        if ((r = read_backend_u64(fe, "discard-granularity", 0, info->sector_size, &v)) < 0)
            return r;
        /* A power of two and a multiple of the sector size. */
        if (v == 0 || v > 0x80000000u || (v & (v - 1u)) != 0 || v % info->sector_size != 0) {
            set_reason(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, "discard-granularity", -PVKIT_EINVAL);
            return -PVKIT_EINVAL;
        }
        info->discard_granularity = PVKIT_CAST(uint32_t, v);
    }

    /* Upper bounds: clamp what exceeds the protocol, refuse what is not a number. */
    if ((r = read_backend_u64(fe, "feature-max-indirect-segments", 0, 0, &v)) < 0)
        return r;
    info->max_indirect_segs =
        v > PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS ? PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS : PVKIT_CAST(uint32_t, v);
    if ((r = read_backend_u64(fe, "max-ring-page-order", 0, 0, &v)) < 0)
        return r;
    info->max_ring_page_order =
        v > PVKIT_RING_MAX_PAGE_ORDER ? PVKIT_RING_MAX_PAGE_ORDER : PVKIT_CAST(uint32_t, v);
    return 0;
}

/* ---- Grants and frames ---------------------------------------------------- */

static int end_grant(struct pvkit_blkfront *fe, pvkit_grant_ref_t ref)
{
    return fe->env->end_grant(fe->env->ctx, ref);
}

/* A core-owned frame whose grant the backend still holds: keep the frame
 * out of use until the grant ends. */
static void quarantine(struct pvkit_blkfront *fe, pvkit_grant_ref_t gref, uint32_t frame)
{
    fe->counters.grants_deferred++;
    if (fe->nr_quarantine == PVKIT_BLKFRONT_QUARANTINE_MAX) {
        /* Never freed, never reused: safe, only wasteful. */
        fe->counters.frames_leaked++;
        return;
    }
    fe->quarantine[fe->nr_quarantine].gref = gref;
    fe->quarantine[fe->nr_quarantine].frame = frame;
    fe->nr_quarantine++;
    fe->deferred++;
}

/* Ends a data segment's grant; a failure keeps it (deferred) and counts
 * it against the I/O, which cannot finish until it is ended. */
static void end_seg_grant(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io,
                          struct pvkit_blkfront_seg *seg)
{
    if (seg->priv_gref == 0 || (seg->priv_flags & SEG_DEFERRED) != 0)
        return;
    if (end_grant(fe, seg->priv_gref) == 0) {
        seg->priv_gref = 0;
        return;
    }
    seg->priv_flags |= SEG_DEFERRED;
    io->priv_grants_held++;
    fe->deferred++;
    fe->counters.grants_deferred++;
}

static void end_indirect_grant(struct pvkit_blkfront *fe, uint16_t slot)
{
    struct pvkit_blkfront_indirect_ *ind = &fe->indirect[slot];
    if (ind->gref != 0 && end_grant(fe, ind->gref) != 0) {
        ind->deferred = 1;
        fe->deferred++;
        fe->counters.grants_deferred++;
        return;
    }
    ind->gref = 0;
    fe->indirect_free[fe->nr_indirect_free++] = slot;
}

/* ---- I/O list --------------------------------------------------------------- */

static void list_append(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io)
{
    io->priv_next = 0;
    io->priv_prev = fe->tail;
    if (fe->tail != 0)
        fe->tail->priv_next = io;
    else
        fe->head = io;
    fe->tail = io;
    if (fe->cursor == 0)
        fe->cursor = io;
    fe->nr_ios++;
}

static void list_remove(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io)
{
    if (fe->cursor == io)
        fe->cursor = io->priv_next;
    if (io->priv_prev != 0)
        io->priv_prev->priv_next = io->priv_next;
    else
        fe->head = io->priv_next;
    if (io->priv_next != 0)
        io->priv_next->priv_prev = io->priv_prev;
    else
        fe->tail = io->priv_prev;
    io->priv_prev = io->priv_next = 0;
    fe->nr_ios--;
}

/* Hands a finished I/O back, once every grant of it has been ended. */
static void try_finish(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io)
{
    uint8_t saved;
    if (io->priv_state != IO_ENDING || io->priv_grants_held != 0)
        return;
    list_remove(fe, io);
    io->status = io->priv_status;
    if (io->status == 0) {
        uint64_t bytes = PVKIT_CAST(uint64_t, io->priv_total_sectors) * PVKIT_BLKIF_SECTOR_SIZE;
        fe->counters.ios_completed++;
        if (io->op == PVKIT_BLKFRONT_OP_READ)
            fe->counters.bytes_read += bytes;
        else if (io->op == PVKIT_BLKFRONT_OP_WRITE)
            fe->counters.bytes_written += bytes;
    } else {
        fe->counters.ios_failed++;
    }
    /* The callback may submit (which then only queues); see env->complete. */
    saved = fe->in_callback;
    fe->in_callback = 1;
    fe->env->complete(fe->env->ctx, io);
    fe->in_callback = saved;
}

/* Finishes an I/O with an error without issuing (more of) it. */
static void fail_io(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io, int err)
{
    if (io->priv_status == 0)
        io->priv_status = err;
    io->priv_state = IO_ENDING;
    try_finish(fe, io);
}

/* Fails every I/O that has not been answered. Those with grants still
 * held finish when the grants end (or at a forced destroy). */
static void fail_all(struct pvkit_blkfront *fe, int err)
{
    struct pvkit_blkfront_io *io = fe->head;
    /* I/O submitted from a completion callback during this walk is not
     * part of it. */
    struct pvkit_blkfront_io *last = fe->tail;
    while (io != 0) {
        struct pvkit_blkfront_io *next = io->priv_next;
        const int was_last = io == last;
        /* Answered I/O keeps its status; it only waits for grant ends. */
        if (io->priv_state != IO_ENDING && io->priv_parts_out == 0)
            fail_io(fe, io, err);
        if (was_last)
            break;
        io = next;
    }
}

/* ---- Validation of I/O ------------------------------------------------------ */

static int check_structure(struct pvkit_blkfront_io *io)
{
    uint32_t i, total = 0;
    switch (io->op) {
    case PVKIT_BLKFRONT_OP_READ:
    case PVKIT_BLKFRONT_OP_WRITE:
        if (io->nr_segs == 0 || io->nr_segs > PVKIT_BLKFRONT_MAX_IO_SEGS || io->segs == 0)
            return -PVKIT_EINVAL;
        for (i = 0; i < io->nr_segs; i++) {
            struct pvkit_blkfront_seg *s = &io->segs[i];
            if (s->first_sect > s->last_sect || s->last_sect >= PVKIT_BLKIF_SECTORS_PER_PAGE)
                return -PVKIT_EINVAL;
            total += PVKIT_CAST(uint32_t, s->last_sect - s->first_sect) + 1u;
        }
        break;
    case PVKIT_BLKFRONT_OP_FLUSH:
        if (io->nr_segs != 0)
            return -PVKIT_EINVAL;
        break;
    case PVKIT_BLKFRONT_OP_DISCARD:
        if (io->nr_segs != 0 || io->nr_sectors == 0)
            return -PVKIT_EINVAL;
        break;
    default:
        return -PVKIT_EINVAL;
    }
    io->priv_total_sectors = total;
    return 0;
}

/* The checks that need the backend's limits. */
static int check_against_info(const struct pvkit_blkfront_info *info,
                              const struct pvkit_blkfront_io *io)
{
    const uint64_t per = info->sector_size / PVKIT_BLKIF_SECTOR_SIZE;
    uint64_t len = 0;
    uint32_t i;
    switch (io->op) {
    case PVKIT_BLKFRONT_OP_READ:
        len = io->priv_total_sectors;
        break;
    case PVKIT_BLKFRONT_OP_WRITE:
        if (info->read_only)
            return -PVKIT_EROFS;
        len = io->priv_total_sectors;
        break;
    case PVKIT_BLKFRONT_OP_FLUSH:
        return info->flush ? 0 : -PVKIT_EOPNOTSUPP;
    case PVKIT_BLKFRONT_OP_DISCARD:
        if (info->read_only)
            return -PVKIT_EROFS;
        if (!info->discard || (io->discard_secure && !info->discard_secure))
            return -PVKIT_EOPNOTSUPP;
        len = io->nr_sectors;
        break;
    default:
        return -PVKIT_EINVAL;
    }
    /* Overflow-safe: sector + len <= sectors. */
    if (len > info->sectors || io->sector > info->sectors - len)
        return -PVKIT_ERANGE;
    if (per > 1) {
        if (io->sector % per != 0 || len % per != 0)
            return -PVKIT_EINVAL;
        /* Within a page, only the whole page is aligned to 4096. */
        for (i = 0; i < io->nr_segs; i++) {
            if (io->segs[i].first_sect != 0 || io->segs[i].last_sect != PVKIT_BLKIF_SECTORS_PER_PAGE - 1)
                return -PVKIT_EINVAL;
        }
    }
    return 0;
}

/* ---- Issuing ------------------------------------------------------------------ */

/*
 * Puts the next ring request of `io` on the ring. Returns 1 if one was
 * put, 0 if something ran out (ring slot, grant reference): try again
 * after the next completion.
 */
static int issue_part(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io)
{
    union pvkit_blkif_sring_entry req;
    struct pvkit_blkfront_shadow_ *sh;
    uint16_t idx;
    uint16_t first = io->priv_issued_segs;
    uint16_t n = 0, i;
    uint16_t slot = NO_INDIRECT;
    uint8_t wire_op = io->op;
    uint32_t sectors = 0;
    uint64_t id;

    if (pvkit_front_ring_free(&fe->ring) == 0 || fe->nr_shadow_free == 0)
        return 0;
    idx = fe->shadow_free[fe->nr_shadow_free - 1];
    sh = &fe->shadows[idx];
    zero(&req, sizeof req);

    if (io->op == PVKIT_BLKFRONT_OP_READ || io->op == PVKIT_BLKFRONT_OP_WRITE) {
        uint16_t remaining = PVKIT_CAST(uint16_t, io->nr_segs - first);
        const int readonly = io->op == PVKIT_BLKFRONT_OP_WRITE;
        if (remaining > PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST && fe->use_indirect &&
            fe->nr_indirect_free > 0) {
            slot = fe->indirect_free[fe->nr_indirect_free - 1];
            n = remaining < fe->info.max_indirect_segs ? remaining
                                                       : PVKIT_CAST(uint16_t, fe->info.max_indirect_segs);
        } else {
            n = remaining < PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST
                    ? remaining
                    : PVKIT_CAST(uint16_t, PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST);
        }
        for (i = 0; i < n; i++) {
            struct pvkit_blkfront_seg *s = &io->segs[first + i];
            if (fe->env->grant(fe->env->ctx, fe->backend_id, s->frame, readonly, &s->priv_gref) < 0) {
                /* Out of references: undo; these grants were never published. */
                s->priv_gref = 0;
                while (i > 0) {
                    i--;
                    s = &io->segs[first + i];
                    if (end_grant(fe, s->priv_gref) == 0)
                        s->priv_gref = 0;
                    else
                        end_seg_grant(fe, io, s);
                }
                return 0;
            }
            sectors += PVKIT_CAST(uint32_t, s->last_sect - s->first_sect) + 1u;
        }
        if (slot != NO_INDIRECT) {
            struct pvkit_blkfront_indirect_ *ind = &fe->indirect[slot];
            struct pvkit_blkif_segment *table = PVKIT_CAST(struct pvkit_blkif_segment *, ind->mem);
            for (i = 0; i < n; i++) {
                struct pvkit_blkif_segment seg;
                zero(&seg, sizeof seg);
                seg.gref = io->segs[first + i].priv_gref;
                seg.first_sect = io->segs[first + i].first_sect;
                seg.last_sect = io->segs[first + i].last_sect;
                table[i] = seg;
            }
            /* The rest of the page is ours, but give the peer nothing stale. */
            zero(&table[n], PVKIT_CAST(uint32_t, (PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME - n) *
                                                     sizeof(struct pvkit_blkif_segment)));
            if (fe->env->grant(fe->env->ctx, fe->backend_id, ind->frame, 1, &ind->gref) < 0) {
                ind->gref = 0;
                for (i = 0; i < n; i++) {
                    struct pvkit_blkfront_seg *s = &io->segs[first + i];
                    if (end_grant(fe, s->priv_gref) == 0)
                        s->priv_gref = 0;
                    else
                        end_seg_grant(fe, io, s);
                }
                return 0;
            }
            fe->nr_indirect_free--;
            wire_op = PVKIT_BLKIF_OP_INDIRECT;
            req.indirect.operation = PVKIT_BLKIF_OP_INDIRECT;
            req.indirect.indirect_op = io->op;
            req.indirect.nr_segments = n;
            req.indirect.sector_number = io->priv_next_sector;
            req.indirect.handle = fe->handle;
            req.indirect.indirect_grefs[0] = ind->gref;
        } else {
            req.req.operation = io->op;
            req.req.nr_segments = PVKIT_CAST(uint8_t, n);
            req.req.handle = fe->handle;
            req.req.sector_number = io->priv_next_sector;
            for (i = 0; i < n; i++) {
                req.req.seg[i].gref = io->segs[first + i].priv_gref;
                req.req.seg[i].first_sect = io->segs[first + i].first_sect;
                req.req.seg[i].last_sect = io->segs[first + i].last_sect;
            }
        }
    } else if (io->op == PVKIT_BLKFRONT_OP_FLUSH) {
        req.req.operation = PVKIT_BLKIF_OP_FLUSH_DISKCACHE;
        req.req.nr_segments = 0;
        req.req.handle = fe->handle;
    } else {
        req.discard.operation = PVKIT_BLKIF_OP_DISCARD;
        req.discard.flag = io->discard_secure ? PVKIT_CAST(uint8_t, PVKIT_BLKIF_DISCARD_SECURE) : 0;
        req.discard.handle = fe->handle;
        req.discard.sector_number = io->sector;
        req.discard.nr_sectors = io->nr_sectors;
    }

    fe->nr_shadow_free--;
    sh->generation++;
    sh->io = io;
    sh->first_seg = first;
    sh->nr_segs = n;
    sh->indirect = slot;
    sh->wire_op = wire_op;
    sh->busy = 1;
    /* The id names the shadow slot and its generation: never a pointer. */
    id = (PVKIT_CAST(uint64_t, sh->generation) << 32) | idx;
    /* The id sits at the same offset in every request layout. */
    req.req.id = id;
    /* Cannot fail: a free slot was checked above. */
    (void)pvkit_front_ring_put_request(&fe->ring, &req, sizeof req);

    io->priv_issued_segs = PVKIT_CAST(uint16_t, first + n);
    io->priv_next_sector += sectors;
    io->priv_parts_out++;
    if (io->op == PVKIT_BLKFRONT_OP_FLUSH || io->op == PVKIT_BLKFRONT_OP_DISCARD ||
        io->priv_issued_segs == io->nr_segs) {
        io->priv_issued = 1;
        io->priv_state = IO_ISSUED;
    }
    fe->counters.ring_requests++;
    if (wire_op == PVKIT_BLKIF_OP_INDIRECT)
        fe->counters.indirect_requests++;
    return 1;
}

/* Issues queued I/O in submission order while the ring has room. */
static void issue_pending(struct pvkit_blkfront *fe)
{
    int produced = 0;
    if (fe->state != PVKIT_XENBUS_CONNECTED || !fe->ring_live || fe->halted || fe->in_callback)
        return;
    while (fe->cursor != 0) {
        struct pvkit_blkfront_io *io = fe->cursor;
        if (io->priv_state != IO_QUEUED) {
            fe->cursor = io->priv_next;
            continue;
        }
        if (io->priv_issued_segs == 0 && !io->priv_issued) {
            /* Old grants from a dead connection must end first: a request is
             * never re-issued while the old backend may hold its pages, and
             * later I/O waits behind it to keep the order. */
            if (io->priv_grants_held != 0)
                break;
            int err = check_against_info(&fe->info, io);
            if (err != 0) {
                /* Removing it moves the cursor on (and a submit from the
                 * completion callback may set it): do not touch it here. */
                fail_io(fe, io, err);
                continue;
            }
        }
        while (io->priv_state == IO_QUEUED) {
            if (!issue_part(fe, io))
                goto out;
            produced = 1;
        }
        fe->cursor = io->priv_next;
    }
out:
    if (produced && pvkit_front_ring_push_requests(&fe->ring)) {
        fe->env->notify(fe->env->ctx, fe->port);
        fe->counters.notifications_sent++;
    }
}

/* ---- Responses ---------------------------------------------------------------- */

static void go_closing(struct pvkit_blkfront *fe, enum pvkit_blkfront_reason reason, int reconnect);
static void advance(struct pvkit_blkfront *fe);

/* A peer broke the ring protocol: stop using the ring; the device closes
 * and (with online = 1) reconnects. Nothing else is touched. */
static void halt(struct pvkit_blkfront *fe, enum pvkit_blkfront_reason reason)
{
    fe->halted = 1;
    fe->counters.responses_rejected++;
    set_reason(fe, reason, 0, -PVKIT_EPROTO);
    go_closing(fe, reason, 1);
}

static int status_to_errno(int16_t status)
{
    if (status == PVKIT_BLKIF_RSP_OKAY)
        return 0;
    if (status == PVKIT_BLKIF_RSP_EOPNOTSUPP)
        return -PVKIT_EOPNOTSUPP;
    return -PVKIT_EIO;
}

static void complete_part(struct pvkit_blkfront *fe, uint16_t idx, int16_t status)
{
    struct pvkit_blkfront_shadow_ *sh = &fe->shadows[idx];
    struct pvkit_blkfront_io *io = sh->io;
    uint16_t i;
    int err = status_to_errno(status);

    for (i = 0; i < sh->nr_segs; i++)
        end_seg_grant(fe, io, &io->segs[sh->first_seg + i]);
    if (sh->indirect != NO_INDIRECT)
        end_indirect_grant(fe, sh->indirect);
    sh->busy = 0;
    sh->io = 0;
    fe->shadow_free[fe->nr_shadow_free++] = idx;

    if (err != 0 && io->priv_status == 0)
        io->priv_status = err;
    io->priv_parts_out--;
    if (io->priv_state == IO_ISSUED && io->priv_parts_out == 0) {
        io->priv_state = IO_ENDING;
        try_finish(fe, io);
    }
}

/* Stops consuming: through halt() normally; when `quiet` (the connection
 * is being dropped anyway) only the ring stops, the state is left alone. */
static void reject(struct pvkit_blkfront *fe, enum pvkit_blkfront_reason reason, int quiet)
{
    if (!quiet) {
        halt(fe, reason);
        return;
    }
    fe->halted = 1;
    fe->counters.responses_rejected++;
}

/* F3: rsp_prod read once and checked, each response copied once, the copy
 * checked, and only then acted on. */
static int consume(struct pvkit_blkfront *fe, int quiet)
{
    int ready, n;
    ready = pvkit_front_ring_responses(&fe->ring);
    if (ready < 0) {
        reject(fe, PVKIT_BLKFRONT_REASON_RSP_INDEX, quiet);
        return 0;
    }
    for (n = 0; n < ready; n++) {
        struct pvkit_blkif_response rsp;
        uint64_t index;
        uint32_t generation;
        struct pvkit_blkfront_shadow_ *sh;
        pvkit_front_ring_take_response(&fe->ring, &rsp, sizeof rsp);
        index = rsp.id & 0xffffffffu;
        generation = PVKIT_CAST(uint32_t, rsp.id >> 32);
        if (index >= fe->nr_shadows || !fe->shadows[index].busy ||
            fe->shadows[index].generation != generation) {
            reject(fe, PVKIT_BLKFRONT_REASON_RSP_UNKNOWN_ID, quiet);
            return n;
        }
        sh = &fe->shadows[index];
        if (rsp.operation != sh->wire_op) {
            reject(fe, PVKIT_BLKFRONT_REASON_RSP_WRONG_OP, quiet);
            return n;
        }
        if (rsp.status != PVKIT_BLKIF_RSP_OKAY && rsp.status != PVKIT_BLKIF_RSP_ERROR &&
            rsp.status != PVKIT_BLKIF_RSP_EOPNOTSUPP) {
            reject(fe, PVKIT_BLKFRONT_REASON_RSP_BAD_STATUS, quiet);
            return n;
        }
        fe->counters.responses++;
        complete_part(fe, PVKIT_CAST(uint16_t, index), rsp.status);
    }
    return n;
}

/* Retries grant ends that failed because the backend still held them. */
static void retry_deferred(struct pvkit_blkfront *fe)
{
    struct pvkit_blkfront_io *io;
    uint32_t i;

    io = fe->head;
    while (io != 0 && fe->deferred != 0) {
        struct pvkit_blkfront_io *next = io->priv_next;
        if (io->priv_grants_held != 0) {
            for (i = 0; i < io->nr_segs; i++) {
                struct pvkit_blkfront_seg *s = &io->segs[i];
                if ((s->priv_flags & SEG_DEFERRED) == 0)
                    continue;
                if (end_grant(fe, s->priv_gref) == 0) {
                    s->priv_gref = 0;
                    s->priv_flags = PVKIT_CAST(uint16_t, s->priv_flags & ~SEG_DEFERRED);
                    io->priv_grants_held--;
                    fe->deferred--;
                }
            }
            try_finish(fe, io);
        }
        io = next;
    }
    for (i = 0; i < fe->nr_indirect && fe->deferred != 0; i++) {
        struct pvkit_blkfront_indirect_ *ind = &fe->indirect[i];
        if (!ind->deferred)
            continue;
        if (end_grant(fe, ind->gref) == 0) {
            ind->deferred = 0;
            ind->gref = 0;
            fe->deferred--;
            fe->indirect_free[fe->nr_indirect_free++] = PVKIT_CAST(uint16_t, i);
        }
    }
    i = 0;
    while (i < fe->nr_quarantine) {
        if (end_grant(fe, fe->quarantine[i].gref) == 0) {
            fe->env->free_frames(fe->env->ctx, fe->quarantine[i].frame, 1);
            fe->quarantine[i] = fe->quarantine[fe->nr_quarantine - 1];
            fe->nr_quarantine--;
            fe->deferred--;
        } else {
            i++;
        }
    }
}

/* ---- Connection resources ----------------------------------------------------- */

/*
 * Lets go of the connection: the old ring's grants and pages, the event
 * channel, and the grants of every request that was on the ring. Requests
 * not answered go back in the queue, in submission order, to be issued
 * again on the next connection. Called only once the backend holds
 * nothing of this connection (or is gone), so the ends normally succeed;
 * those that fail are deferred.
 */
static void release_connection(struct pvkit_blkfront *fe)
{
    uint32_t i;
    struct pvkit_blkfront_io *io;

    for (i = 0; i < fe->nr_shadows; i++) {
        struct pvkit_blkfront_shadow_ *sh = &fe->shadows[i];
        uint16_t k;
        if (!sh->busy)
            continue;
        for (k = 0; k < sh->nr_segs; k++)
            end_seg_grant(fe, sh->io, &sh->io->segs[sh->first_seg + k]);
        if (sh->indirect != NO_INDIRECT)
            end_indirect_grant(fe, sh->indirect);
        sh->io->priv_parts_out--;
        sh->busy = 0;
        sh->io = 0;
    }
    fe->nr_shadows = 0;
    fe->nr_shadow_free = 0;

    /* Everything not fully answered is issued again from its start. */
    for (io = fe->head; io != 0; io = io->priv_next) {
        if (io->priv_state == IO_ENDING)
            continue;
        if (io->priv_issued_segs != 0 || io->priv_issued) {
            fe->counters.ios_reissued++;
            /* The new backend answers afresh; an old error does not stick. */
            io->priv_status = 0;
        }
        io->priv_issued_segs = 0;
        io->priv_issued = 0;
        io->priv_parts_out = 0;
        io->priv_next_sector = io->sector;
        io->priv_state = IO_QUEUED;
    }
    fe->cursor = fe->head;

    if (fe->ring_nr_frames != 0) {
        for (i = 0; i < fe->ring_nr_frames; i++) {
            pvkit_grant_ref_t ref = fe->ring_refs[i];
            if (ref != 0 && end_grant(fe, ref) != 0)
                quarantine(fe, ref, fe->ring_first_frame + i);
            else
                fe->env->free_frames(fe->env->ctx, fe->ring_first_frame + i, 1);
            fe->ring_refs[i] = 0;
        }
        fe->ring_nr_frames = 0;
    }
    zero(&fe->ring, sizeof fe->ring);
    fe->ring_live = 0;
    if (fe->port_valid) {
        fe->env->evtchn_free(fe->env->ctx, fe->port);
        fe->port_valid = 0;
        fe->port = 0;
    }
    fe->halted = 0;
    fe->abandoned = 0;
}

/* Indirect pages for a ring of `want` slots (as many as frames allow). */
static void ensure_indirect(struct pvkit_blkfront *fe, uint32_t want)
{
    while (fe->nr_indirect < want) {
        uint32_t frame;
        void *mem;
        if (fe->env->alloc_frames(fe->env->ctx, 1, &frame, &mem) < 0)
            return;
        fe->indirect[fe->nr_indirect].mem = mem;
        fe->indirect[fe->nr_indirect].frame = frame;
        fe->indirect[fe->nr_indirect].gref = 0;
        fe->indirect[fe->nr_indirect].deferred = 0;
        fe->indirect_free[fe->nr_indirect_free++] = PVKIT_CAST(uint16_t, fe->nr_indirect);
        fe->nr_indirect++;
    }
}

/* Our half of a connection: ring keys, event channel and protocol,
 * published with state Initialised in one transaction. */
static int publish_initialised(struct pvkit_blkfront *fe, uint32_t order)
{
    uint32_t attempt, i;
    char leaf[16];
    int r = 0;
    for (attempt = 0; attempt < PVKIT_BLKFRONT_TX_RETRIES; attempt++) {
        uint32_t tx = 0;
        r = fe->env->store_tx_start(fe->env->ctx, &tx);
        if (r < 0)
            return r;
        /* Keys of another ring order (an earlier connection) would
         * contradict this one: the backend insists on exactly one form. */
        if (order == 0) {
            r = rm_node(fe, tx, fe->front_path, "ring-page-order");
            for (i = 0; r >= 0 && i < PVKIT_BLKFRONT_MAX_RING_PAGES; i++) {
                str_copy(leaf, sizeof leaf, "ring-ref");
                u64_to_dec(leaf + 8, i);
                r = rm_node(fe, tx, fe->front_path, leaf);
            }
            if (r >= 0)
                r = write_node_u64(fe, tx, fe->front_path, "ring-ref", fe->ring_refs[0]);
        } else {
            r = rm_node(fe, tx, fe->front_path, "ring-ref");
            for (i = fe->ring_nr_frames; r >= 0 && i < PVKIT_BLKFRONT_MAX_RING_PAGES; i++) {
                str_copy(leaf, sizeof leaf, "ring-ref");
                u64_to_dec(leaf + 8, i);
                r = rm_node(fe, tx, fe->front_path, leaf);
            }
            for (i = 0; r >= 0 && i < fe->ring_nr_frames; i++) {
                str_copy(leaf, sizeof leaf, "ring-ref");
                u64_to_dec(leaf + 8, i);
                r = write_node_u64(fe, tx, fe->front_path, leaf, fe->ring_refs[i]);
            }
            if (r >= 0)
                r = write_node_u64(fe, tx, fe->front_path, "ring-page-order", order);
        }
        if (r >= 0)
            r = write_node_u64(fe, tx, fe->front_path, "event-channel", fe->port);
        if (r >= 0)
            r = write_node(fe, tx, fe->front_path, "protocol", "x86_64-abi");
        if (r >= 0)
            r = write_node_u64(fe, tx, fe->front_path, "state", PVKIT_XENBUS_INITIALISED);
        if (r < 0) {
            (void)fe->env->store_tx_end(fe->env->ctx, tx, 0);
            return r;
        }
        r = fe->env->store_tx_end(fe->env->ctx, tx, 1);
        if (r != -PVKIT_EAGAIN)
            return r;
    }
    return r;
}

/* Initialising and the backend is in InitWait: read its limits, set up a
 * fresh ring and event channel, and publish them. */
static void connect_begin(struct pvkit_blkfront *fe)
{
    struct pvkit_blkfront_info info;
    uint32_t order, i;
    void *mem;
    int r;

    /* A reason from a previous attempt would hide this attempt's. */
    fe->reason = PVKIT_BLKFRONT_REASON_NONE;
    if (read_backend_info(fe, &info) < 0) {
        fe->connect_failures++;
        fe->attempt_failed = 1;
        go_closing(fe, PVKIT_BLKFRONT_REASON_BAD_NODE, 1);
        return;
    }
    if (fe->info_valid && info.sector_size != fe->info.sector_size) {
        /* Not the disk these I/Os were made for (docs/handshake.md). */
        set_reason(fe, PVKIT_BLKFRONT_REASON_SECTOR_SIZE_CHANGED, "sector-size", -PVKIT_EIO);
        fail_all(fe, -PVKIT_EIO);
    }
    order = info.max_ring_page_order < fe->own_max_ring_order ? info.max_ring_page_order
                                                               : fe->own_max_ring_order;
    info.ring_page_order = order;
    info.ring_ents = pvkit_ring_nr_ents(PVKIT_PAGE_SIZE << order,
                                        PVKIT_CAST(uint32_t, sizeof(union pvkit_blkif_sring_entry)));

    /* Fresh ring pages, consecutive frames (map_ring insists). */
    if (fe->env->alloc_frames(fe->env->ctx, 1u << order, &fe->ring_first_frame, &mem) < 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_NO_FRAMES, 0, -PVKIT_ENOMEM);
        fe->connect_failures++;
        fe->attempt_failed = 1;
        go_closing(fe, PVKIT_BLKFRONT_REASON_NO_FRAMES, 1);
        return;
    }
    fe->ring_nr_frames = 1u << order;
    for (i = 0; i < fe->ring_nr_frames; i++)
        fe->ring_refs[i] = 0;
    if (pvkit_front_ring_init(&fe->ring, mem, PVKIT_PAGE_SIZE << order,
                              PVKIT_CAST(uint32_t, sizeof(union pvkit_blkif_sring_entry))) != 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_NO_FRAMES, 0, -PVKIT_EINVAL);
        fe->connect_failures++;
        fe->attempt_failed = 1;
        go_closing(fe, PVKIT_BLKFRONT_REASON_NO_FRAMES, 1);
        return;
    }
    fe->ring_live = 1;
    for (i = 0; i < fe->ring_nr_frames; i++) {
        r = fe->env->grant(fe->env->ctx, fe->backend_id, fe->ring_first_frame + i, 0,
                           &fe->ring_refs[i]);
        if (r < 0) {
            fe->ring_refs[i] = 0;
            set_reason(fe, PVKIT_BLKFRONT_REASON_NO_GRANTS, 0, r);
            fe->connect_failures++;
        fe->attempt_failed = 1;
            go_closing(fe, PVKIT_BLKFRONT_REASON_NO_GRANTS, 1);
            return;
        }
    }

    /* Shadows for this ring; old ids can never match (generations move on). */
    fe->nr_shadows = fe->ring.nr_ents;
    fe->nr_shadow_free = 0;
    for (i = fe->nr_shadows; i > 0; i--)
        fe->shadow_free[fe->nr_shadow_free++] = PVKIT_CAST(uint16_t, i - 1);

    fe->info = info;
    fe->info_valid = 1;
    fe->use_indirect = info.max_indirect_segs > PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST;
    if (fe->use_indirect)
        ensure_indirect(fe, fe->ring.nr_ents);

    r = fe->env->evtchn_alloc(fe->env->ctx, fe->backend_id, &fe->port);
    if (r < 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_EVTCHN, 0, r);
        fe->connect_failures++;
        fe->attempt_failed = 1;
        go_closing(fe, PVKIT_BLKFRONT_REASON_EVTCHN, 1);
        return;
    }
    fe->port_valid = 1;

    if (fe->env->before_initialised != 0) {
        r = fe->env->before_initialised(fe->env->ctx, fe->port);
        if (r < 0) {
            set_reason(fe, PVKIT_BLKFRONT_REASON_CONNECT_HOOK, 0, r);
            fe->connect_failures++;
        fe->attempt_failed = 1;
            go_closing(fe, PVKIT_BLKFRONT_REASON_CONNECT_HOOK, 1);
            return;
        }
    }

    r = publish_initialised(fe, order);
    if (r < 0) {
        set_reason(fe, PVKIT_BLKFRONT_REASON_STORE, "state", r);
        fe->connect_failures++;
        fe->attempt_failed = 1;
        go_closing(fe, PVKIT_BLKFRONT_REASON_STORE, 1);
        return;
    }
    fe->state = PVKIT_XENBUS_INITIALISED;
}

/* ---- The state machine ------------------------------------------------------- */

static void go_closing(struct pvkit_blkfront *fe, enum pvkit_blkfront_reason reason, int reconnect)
{
    if (fe->state == PVKIT_XENBUS_CLOSING || fe->state == PVKIT_XENBUS_CLOSED)
        return;
    set_reason(fe, reason, 0, 0);
    fe->want_reconnect = PVKIT_CAST(uint8_t, reconnect && !fe->user_closed);
    write_state(fe, PVKIT_XENBUS_CLOSING);
}

/* The backend holds nothing of the old connection in these states. */
static int backend_released(uint8_t b)
{
    return b == PVKIT_XENBUS_CLOSED || b == PVKIT_XENBUS_INITWAIT ||
           b == PVKIT_XENBUS_INITIALISING || b == PVKIT_XENBUS_UNKNOWN;
}

/* Closing may become Closed once nothing more can come from the ring. */
static int closing_done(const struct pvkit_blkfront *fe)
{
    uint8_t b = fe->backend_state;
    if (!fe->ring_live || fe->halted || fe->abandoned || backend_released(b))
        return 1;
    if (pvkit_blkfront_outstanding(fe) == 0)
        return b != PVKIT_XENBUS_CONNECTED; /* let the backend see Closing first */
    /* A backend that halted its ring writes `error` and answers nothing. */
    return b == PVKIT_XENBUS_CLOSING && fe->backend_error;
}

static void become_gone(struct pvkit_blkfront *fe)
{
    set_reason(fe, PVKIT_BLKFRONT_REASON_BACKEND_GONE, 0, -PVKIT_ENOTCONN);
    release_connection(fe);
    fe->gone = 1;
    fe->final = 1;
    if (fe->state != PVKIT_XENBUS_CLOSED)
        write_state(fe, PVKIT_XENBUS_CLOSED);
    fail_all(fe, -PVKIT_ENOTCONN);
}

/* The backend went away and we start over (docs/handshake.md "Reconnecting
 * after a backend restart"). */
static void restart(struct pvkit_blkfront *fe)
{
    set_reason(fe, PVKIT_BLKFRONT_REASON_BACKEND_RESTART, 0, 0);
    /* What the old instance answered before it went is in our memory and
     * as good as ever: collect it (checked as always) rather than issue
     * it again. A garbled ring just ends the collection. */
    if (fe->ring_live && !fe->halted && !fe->abandoned && !fe->in_callback)
        (void)consume(fe, 1);
    release_connection(fe);
    fe->counters.reconnects++;
    write_state(fe, PVKIT_XENBUS_INITIALISING);
}

/* Runs transitions on the cached backend state until nothing changes. */
static void advance(struct pvkit_blkfront *fe)
{
    uint32_t step;
    for (step = 0; step < 8 && !fe->final; step++) {
        const uint8_t b = fe->backend_state;
        const uint8_t before = fe->state;
        switch (fe->state) {
        case PVKIT_XENBUS_INITIALISING:
            if (b == PVKIT_XENBUS_UNKNOWN)
                become_gone(fe);
            else if (fe->user_closed)
                go_closing(fe, PVKIT_BLKFRONT_REASON_USER_CLOSE, 0);
            else if (b == PVKIT_XENBUS_INITWAIT)
                connect_begin(fe);
            else if (b == PVKIT_XENBUS_CLOSING || (b == PVKIT_XENBUS_CLOSED && !fe->backend_online))
                go_closing(fe, PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, fe->backend_online);
            break;
        case PVKIT_XENBUS_INITIALISED:
            if (b == PVKIT_XENBUS_UNKNOWN) {
                become_gone(fe);
            } else if (b == PVKIT_XENBUS_CONNECTED) {
                write_state(fe, PVKIT_XENBUS_CONNECTED);
                fe->counters.connects++;
                fe->connect_failures = 0;
                fe->reason = PVKIT_BLKFRONT_REASON_NONE;
                issue_pending(fe);
            } else if (b == PVKIT_XENBUS_CLOSING) {
                go_closing(fe, PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, fe->backend_online);
            } else if (b == PVKIT_XENBUS_CLOSED || b == PVKIT_XENBUS_INITIALISING) {
                if (fe->backend_online)
                    restart(fe);
                else
                    go_closing(fe, PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, 0);
            }
            /* InitWait: the backend has not seen our Initialised yet. */
            break;
        case PVKIT_XENBUS_CONNECTED:
            if (b == PVKIT_XENBUS_UNKNOWN)
                become_gone(fe);
            else if (b == PVKIT_XENBUS_CLOSING)
                go_closing(fe, PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, fe->backend_online);
            else if (b == PVKIT_XENBUS_CLOSED && !fe->backend_online)
                go_closing(fe, PVKIT_BLKFRONT_REASON_BACKEND_CLOSING, 0);
            else if (b == PVKIT_XENBUS_CLOSED || b == PVKIT_XENBUS_INITWAIT ||
                     b == PVKIT_XENBUS_INITIALISING)
                /* Closed with online = 1, or back in InitWait after events
                 * merged the Closed away: the backend restarted. */
                restart(fe);
            break;
        case PVKIT_XENBUS_CLOSING:
            if (closing_done(fe))
                write_state(fe, PVKIT_XENBUS_CLOSED);
            break;
        case PVKIT_XENBUS_CLOSED:
            if (!backend_released(b))
                break;
            release_connection(fe);
            if (b != PVKIT_XENBUS_INITWAIT)
                fe->attempt_failed = 0;
            if (b == PVKIT_XENBUS_UNKNOWN) {
                become_gone(fe);
            } else if (fe->attempt_failed && fe->backend_online && fe->want_reconnect &&
                       !fe->user_closed) {
                /* Our own attempt failed while the backend waited in
                 * InitWait: let it see Closing and answer (Closing, Closed)
                 * before trying again, so every retry is a round trip with
                 * the backend, never a loop on our own. */
            } else if (fe->backend_online && fe->want_reconnect && !fe->user_closed &&
                       fe->connect_failures < PVKIT_BLKFRONT_MAX_CONNECT_FAILURES) {
                /* Reopen (docs/handshake.md: Closed -> Initialising while
                 * online = 1); the backend answers with InitWait. */
                fe->counters.reconnects++;
                write_state(fe, PVKIT_XENBUS_INITIALISING);
            } else {
                fe->final = 1;
                fail_all(fe, -PVKIT_ENOTCONN);
            }
            break;
        default:
            return;
        }
        if (fe->state == before)
            break;
    }
}

/* ---- API ------------------------------------------------------------------------ */

static const char *const k_reasons[PVKIT_BLKFRONT_REASON_COUNT] = {
    "none",
    "backend published an impossible rsp_prod",
    "response with an id not in flight (unknown, stale or duplicate)",
    "response operation differs from the request's",
    "response status is not OKAY, ERROR or EOPNOTSUPP",
    "backend node failed validation",
    "backend is closing",
    "backend directory disappeared",
    "backend went away; reconnecting",
    "no frames for the ring or indirect pages",
    "granting the ring failed",
    "no event channel",
    "connection hook failed",
    "store operation failed",
    "closed by the frontend",
    "gave up waiting for responses",
    "backend sector-size changed",
};

const char *pvkit_blkfront_reason_string(enum pvkit_blkfront_reason reason)
{
    if (PVKIT_CAST(uint32_t, reason) >= PVKIT_BLKFRONT_REASON_COUNT)
        return "unknown";
    return k_reasons[reason];
}

int pvkit_blkfront_init(struct pvkit_blkfront *fe, const struct pvkit_blkfront_env *env,
                        const char *frontend_path, uint16_t handle, uint32_t max_ring_page_order)
{
    char buf[32];
    uint64_t id;
    int r;

    zero(fe, sizeof *fe);
    fe->env = env;
    fe->handle = handle;
    fe->own_max_ring_order =
        max_ring_page_order > PVKIT_RING_MAX_PAGE_ORDER ? PVKIT_RING_MAX_PAGE_ORDER : max_ring_page_order;
    if ((r = str_copy(fe->front_path, sizeof fe->front_path, frontend_path)) < 0)
        return r;

    /* Where the backend is: written by the toolstack, still checked. */
    r = read_node(fe, 0, fe->front_path, "backend", fe->back_path, sizeof fe->back_path);
    if (r < 0)
        return r;
    if (r == 0 || fe->back_path[0] != '/')
        return -PVKIT_EINVAL;
    r = read_node(fe, 0, fe->front_path, "backend-id", buf, sizeof buf);
    if (r < 0)
        return r;
    if (parse_u64(buf, PVKIT_CAST(uint32_t, r), &id) < 0 || id > PVKIT_DOMID_MAX)
        return -PVKIT_EINVAL;
    fe->backend_id = PVKIT_CAST(pvkit_domid_t, id);
    fe->backend_state = PVKIT_XENBUS_INITIALISING;
    fe->backend_online = 1;
    fe->want_reconnect = 1;

    /* Start over: whatever a previous instance left in our state node. */
    r = write_node_u64(fe, 0, fe->front_path, "state", PVKIT_XENBUS_INITIALISING);
    if (r < 0)
        return r;
    fe->state = PVKIT_XENBUS_INITIALISING;
    return 0;
}

const char *pvkit_blkfront_backend_path(const struct pvkit_blkfront *fe) { return fe->back_path; }

int pvkit_blkfront_backend_state_path(const struct pvkit_blkfront *fe, char *buf, uint32_t size)
{
    return path_join(buf, size, fe->back_path, "state");
}

int pvkit_blkfront_store_changed(struct pvkit_blkfront *fe)
{
    char buf[8];
    int r;
    if (fe->final)
        return 0;
    /* Rule 2: a watch event only says "look at state"; read it now. */
    r = read_node(fe, 0, fe->back_path, "state", buf, sizeof buf);
    if (r == -PVKIT_ENOENT || r == -PVKIT_EACCES) {
        fe->backend_state = PVKIT_XENBUS_UNKNOWN;
    } else if (r < 0 && r != -PVKIT_E2BIG) {
        fe->last_error = r;
        return r;
    } else if (r == 1 && buf[0] >= '0' && buf[0] <= '8') {
        fe->backend_state = PVKIT_CAST(uint8_t, buf[0] - '0');
    } else {
        /* Not one digit 0..8: Unknown, and the peer counts as gone
         * (docs/handshake.md "Number format"). */
        fe->backend_state = PVKIT_XENBUS_UNKNOWN;
    }
    if (fe->backend_state != PVKIT_XENBUS_UNKNOWN) {
        /* The toolstack's online: "1" keeps reconnecting, anything else is teardown. */
        r = read_node(fe, 0, fe->back_path, "online", buf, sizeof buf);
        fe->backend_online = PVKIT_CAST(uint8_t, r == 1 && str_eq(buf, "1"));
        fe->backend_error = 0;
        if (fe->backend_state == PVKIT_XENBUS_CLOSING) {
            r = read_node(fe, 0, fe->back_path, "error", buf, sizeof buf);
            fe->backend_error = PVKIT_CAST(uint8_t, r >= 0 || r == -PVKIT_E2BIG);
        }
    }
    advance(fe);
    issue_pending(fe);
    return 0;
}

int pvkit_blkfront_submit(struct pvkit_blkfront *fe, struct pvkit_blkfront_io *io)
{
    uint32_t i;
    int r;
    if (fe->final || fe->user_closed)
        return -PVKIT_ENOTCONN;
    r = check_structure(io);
    if (r < 0)
        return r;
    if (fe->info_valid) {
        r = check_against_info(&fe->info, io);
        if (r < 0)
            return r;
    }
    for (i = 0; i < io->nr_segs; i++) {
        io->segs[i].priv_flags = 0;
        io->segs[i].priv_gref = 0;
    }
    io->status = 0;
    io->priv_status = 0;
    io->priv_next_sector = io->sector;
    io->priv_grants_held = 0;
    io->priv_issued_segs = 0;
    io->priv_parts_out = 0;
    io->priv_state = IO_QUEUED;
    io->priv_issued = 0;
    list_append(fe, io);
    fe->counters.ios_submitted++;
    issue_pending(fe);
    return 0;
}

int pvkit_blkfront_poll(struct pvkit_blkfront *fe)
{
    int n = 0;
    if (fe->deferred != 0)
        retry_deferred(fe);
    if ((fe->state == PVKIT_XENBUS_CONNECTED || fe->state == PVKIT_XENBUS_CLOSING) &&
        fe->ring_live && !fe->halted && !fe->abandoned)
        n = consume(fe, 0);
    if (fe->state == PVKIT_XENBUS_CLOSING || fe->state == PVKIT_XENBUS_CLOSED)
        advance(fe);
    issue_pending(fe);
    return n;
}

int pvkit_blkfront_responses_ready(const struct pvkit_blkfront *fe)
{
    if (!fe->ring_live || fe->halted || fe->abandoned)
        return 0;
    return pvkit_front_ring_responses(&fe->ring);
}

int pvkit_blkfront_final_check(struct pvkit_blkfront *fe)
{
    if (!fe->ring_live || fe->halted || fe->abandoned)
        return 0;
    /* Hold-off ends here: ask for a kick, then look once more. */
    return pvkit_front_ring_final_check(&fe->ring);
}

void pvkit_blkfront_close(struct pvkit_blkfront *fe)
{
    if (fe->final)
        return;
    fe->user_closed = 1;
    fe->want_reconnect = 0;
    if (fe->state != PVKIT_XENBUS_CLOSING && fe->state != PVKIT_XENBUS_CLOSED) {
        go_closing(fe, PVKIT_BLKFRONT_REASON_USER_CLOSE, 0);
    }
    pvkit_blkfront_poll(fe);
    advance(fe);
}

void pvkit_blkfront_abandon_ring(struct pvkit_blkfront *fe)
{
    if (!fe->ring_live)
        return;
    fe->abandoned = 1;
    set_reason(fe, PVKIT_BLKFRONT_REASON_ABANDONED, 0, -PVKIT_ENOTCONN);
    if (fe->state == PVKIT_XENBUS_CONNECTED || fe->state == PVKIT_XENBUS_INITIALISED)
        go_closing(fe, PVKIT_BLKFRONT_REASON_ABANDONED, 1);
    advance(fe);
}

int pvkit_blkfront_destroy(struct pvkit_blkfront *fe, int force)
{
    struct pvkit_blkfront_io *io;
    uint32_t i;
    if (fe->deferred != 0)
        retry_deferred(fe);
    if (!force && (fe->nr_ios != 0 || fe->deferred != 0 || fe->ring_live))
        return -PVKIT_EBUSY;
    if (fe->ring_live || fe->port_valid)
        release_connection(fe);
    /* Forced: whatever is left completes now; grants still held stay granted. */
    while ((io = fe->head) != 0) {
        uint32_t k;
        for (k = 0; k < io->nr_segs; k++) {
            io->segs[k].priv_flags = 0;
            io->segs[k].priv_gref = 0;
        }
        io->priv_grants_held = 0;
        io->priv_parts_out = 0;
        if (io->priv_status == 0)
            io->priv_status = -PVKIT_ENOTCONN;
        io->priv_state = IO_ENDING;
        try_finish(fe, io);
    }
    for (i = 0; i < fe->nr_indirect; i++) {
        if (fe->indirect[i].gref == 0)
            fe->env->free_frames(fe->env->ctx, fe->indirect[i].frame, 1);
        else
            fe->counters.frames_leaked++;
    }
    fe->nr_indirect = 0;
    fe->nr_indirect_free = 0;
    fe->counters.frames_leaked += fe->nr_quarantine;
    fe->nr_quarantine = 0;
    fe->deferred = 0;
    fe->final = 1;
    return 0;
}
