#include "upool.h"

#include <pvkit/grant.h>
#include <pvkit/start_info.h>

#include "ulib.h"

/* The (flags, domid) word of an entry: flags in the low half, domid in the
 * high half (little-endian struct pvkit_grant_entry). */
static uint32_t* entry_word(const struct upool* pool, pvkit_grant_ref_t ref) {
    return (uint32_t*)(uintptr_t)(pool->base + (uint64_t)pool->table_first * PVKIT_PAGE_SIZE +
                                  (uint64_t)ref * sizeof(struct pvkit_grant_entry));
}

static uint32_t* entry_frame(const struct upool* pool, pvkit_grant_ref_t ref) {
    return entry_word(pool, ref) + 1;
}

int upool_open(uint32_t index, struct upool* pool) {
    const struct pvkit_start_info* si = start_info();
    if (index >= si->nr_devices || index >= PVKIT_START_INFO_MAX_DEVICES)
        return -PVKIT_ENOENT;
    const struct pvkit_start_device* dev = &si->devices[index];
    const volatile struct pvkit_grant_pool_header* hdr =
        (const volatile struct pvkit_grant_pool_header*)(uintptr_t)dev->pool_gpa;
    if (hdr->magic != PVKIT_GRANT_POOL_MAGIC || hdr->version != PVKIT_GRANT_POOL_VERSION ||
        (uint64_t)hdr->nr_frames * PVKIT_PAGE_SIZE != dev->pool_size ||
        hdr->data_first > hdr->nr_frames || hdr->nr_grants < 2 ||
        hdr->nr_grants > hdr->table_nr * PVKIT_GRANT_ENTRIES_PER_PAGE)
        return -PVKIT_EINVAL;
    pool->base = dev->pool_gpa;
    pool->nr_frames = hdr->nr_frames;
    pool->table_first = hdr->table_first;
    pool->nr_grants = hdr->nr_grants;
    pool->data_first = hdr->data_first;
    const uint32_t data = hdr->nr_frames - hdr->data_first;
    pool->nr_data = data < UPOOL_MAX_DATA_FRAMES ? data : UPOOL_MAX_DATA_FRAMES;
    pool->owner = hdr->owner;
    pool->pad = 0;
    pool->nr_used = 0;
    pool->pad2 = 0;
    for (uint32_t i = 0; i < UPOOL_MAX_DATA_FRAMES / 64; ++i)
        pool->used[i] = 0;
    return 0;
}

static int frame_used(const struct upool* pool, uint32_t i) {
    return (int)((pool->used[i / 64] >> (i % 64)) & 1u);
}

static void set_used(struct upool* pool, uint32_t i, int used) {
    if (used)
        pool->used[i / 64] |= 1ull << (i % 64);
    else
        pool->used[i / 64] &= ~(1ull << (i % 64));
}

volatile void* upool_frame(const struct upool* pool, uint32_t frame) {
    if (frame >= pool->nr_frames)
        return NULL;
    return (volatile void*)(uintptr_t)(pool->base + (uint64_t)frame * PVKIT_PAGE_SIZE);
}

int upool_alloc_frames(struct upool* pool, uint32_t count, uint32_t* first) {
    if (count == 0 || count > pool->nr_data - pool->nr_used)
        return -PVKIT_ENOSPC;
    uint32_t run = 0;
    for (uint32_t i = 0; i < pool->nr_data; ++i) {
        if (frame_used(pool, i)) {
            run = 0;
            continue;
        }
        if (++run == count) {
            const uint32_t start = i + 1 - count;
            for (uint32_t j = start; j <= i; ++j)
                set_used(pool, j, 1);
            pool->nr_used += count;
            *first = pool->data_first + start;
            return 0;
        }
    }
    return -PVKIT_ENOSPC;
}

int upool_free_frames(struct upool* pool, uint32_t first, uint32_t count) {
    if (first < pool->data_first || count > pool->nr_data ||
        first - pool->data_first > pool->nr_data - count)
        return -PVKIT_EINVAL;
    const uint32_t start = first - pool->data_first;
    for (uint32_t i = start; i < start + count; ++i)
        if (!frame_used(pool, i))
            return -PVKIT_EINVAL;
    for (uint32_t i = start; i < start + count; ++i)
        set_used(pool, i, 0);
    pool->nr_used -= count;
    return 0;
}

int upool_grant(struct upool* pool, pvkit_domid_t domid, uint32_t frame, int readonly,
                pvkit_grant_ref_t* ref) {
    if (frame < pool->data_first || frame >= pool->nr_frames)
        return -PVKIT_EINVAL;
    /* Reference 0 is reserved (abi.h): zero-filled requests name no grant. */
    for (pvkit_grant_ref_t r = 1; r < pool->nr_grants; ++r) {
        uint32_t* word = entry_word(pool, r);
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != 0)
            continue;
        __atomic_store_n(entry_frame(pool, r), frame, __ATOMIC_RELAXED);
        const uint32_t flags = PVKIT_GTF_PERMIT_ACCESS | (readonly ? PVKIT_GTF_READONLY : 0u);
        /* Release: the frame is visible before the entry becomes valid. */
        __atomic_store_n(word, flags | ((uint32_t)domid << 16), __ATOMIC_RELEASE);
        *ref = r;
        return 0;
    }
    return -PVKIT_ENOSPC;
}

int upool_end_grant(struct upool* pool, pvkit_grant_ref_t ref) {
    if (ref == 0 || ref >= pool->nr_grants)
        return -PVKIT_EINVAL;
    uint32_t* word = entry_word(pool, ref);
    uint32_t old = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if ((old & PVKIT_GTF_TYPE_MASK) != PVKIT_GTF_PERMIT_ACCESS)
        return -PVKIT_EINVAL;
    if ((old & PVKIT_GTF_IN_USE) != 0)
        return -PVKIT_EBUSY;
    /* Fails if the backend set an in-use bit since the load: the grant
     * stays, and the caller retries later. */
    if (!__atomic_compare_exchange_n(word, &old, 0u, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return -PVKIT_EBUSY;
    return 0;
}
