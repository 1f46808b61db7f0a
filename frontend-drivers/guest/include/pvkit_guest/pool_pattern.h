/*
 * The byte patterns tests/vmm and the mini guest's pool-test and
 * handoff-test exchange through a grant pool (host first, then guest).
 * Plain C, included by the guest and by the host tests.
 */
#ifndef PVKIT_GUEST_POOL_PATTERN_H
#define PVKIT_GUEST_POOL_PATTERN_H

#include <stdint.h>

#ifdef __cplusplus
#define PVKIT_POOL_BYTE(v) static_cast<uint8_t>(v)
#else
#define PVKIT_POOL_BYTE(v) ((uint8_t)(v))
#endif

static inline uint8_t pool_host_byte(uint32_t i) {
    return PVKIT_POOL_BYTE(i * 7u + 3u);
}

static inline uint8_t pool_guest_byte(uint32_t i) {
    return PVKIT_POOL_BYTE(0xa5u ^ (i * 13u + 1u));
}

#endif /* PVKIT_GUEST_POOL_PATTERN_H */
