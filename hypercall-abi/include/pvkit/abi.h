/*
 * pvkit hypercall ABI: common definitions.
 *
 * Every header under pvkit/ is C11, freestanding and included unchanged by
 * the pvkit mini guest, the Linux port (guest-kernel-patches), the VMM, the
 * backends and the tests. Rules that hold for every wire structure:
 *
 *  - fields are fixed-size and little-endian (x86-64 is the only target);
 *  - padding is explicit and must be written as zero by whoever writes the
 *    structure; readers ignore it;
 *  - every field is naturally aligned and every size and offset is pinned by
 *    a PVKIT_ABI_ASSERT here and by tests/abi_layout_test.cpp;
 *  - numbers (hypercalls, operations, feature bits) are append-only and are
 *    never reused;
 *  - comments say who writes each field: "guest", "VMM", "frontend",
 *    "backend", "client" or "daemon".
 */
#ifndef PVKIT_ABI_H
#define PVKIT_ABI_H

#if defined(__KERNEL__)
#include <linux/stddef.h>
#include <linux/types.h>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __cplusplus
#define PVKIT_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define PVKIT_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* A cast that is static_cast in C++, so host code builds with -Wold-style-cast. */
#ifdef __cplusplus
#define PVKIT_CAST(type, value) (static_cast<type>(value))
#else
#define PVKIT_CAST(type, value) ((type)(value))
#endif

/* Pins the size of a wire structure; the message names the structure. */
#define PVKIT_ABI_SIZE(type, bytes) PVKIT_ABI_ASSERT(sizeof(type) == (bytes), #type " size")
/* Pins the offset of one field of a wire structure. */
#define PVKIT_ABI_OFFSET(type, field, off) \
    PVKIT_ABI_ASSERT(offsetof(type, field) == (off), #type "." #field " offset")

/*
 * ABI version. The major number changes only when a structure or a meaning
 * changes incompatibly (never planned); the minor number grows when
 * something is appended. PVKIT_HC_VERSION returns (major << 16) | minor.
 */
#define PVKIT_ABI_VERSION_MAJOR 1u
#define PVKIT_ABI_VERSION_MINOR 1u /* 1.1: PVKIT_HC_DEVICE_CONNECT */
#define PVKIT_ABI_VERSION ((PVKIT_ABI_VERSION_MAJOR << 16) | PVKIT_ABI_VERSION_MINOR)

/*
 * Feature bits returned by PVKIT_HC_FEATURES (a 64-bit mask). A guest must
 * test a bit before it relies on the feature. Append-only.
 */
#define PVKIT_FEAT_CONSOLE_HC (1ull << 0)    /* PVKIT_HC_CONSOLE_WRITE */
#define PVKIT_FEAT_EVTCHN_DOORBELL (1ull << 1) /* MMIO doorbell, see evtchn.h */
#define PVKIT_FEAT_EVTCHN_IRQ (1ull << 2)    /* per-port interrupt vectors */
#define PVKIT_FEAT_GRANT_POOLS (1ull << 3)   /* PVKIT_HC_GRANT_POOL_QUERY */
#define PVKIT_FEAT_STORE_RING (1ull << 4)    /* store ring, see store.h */
#define PVKIT_FEAT_MULTI_PAGE_RING (1ull << 5) /* ring-page-order > 0 */
#define PVKIT_FEAT_DEVICE_CONNECT (1ull << 6) /* PVKIT_HC_DEVICE_CONNECT */
/* Bit 63 is reserved and never set, so the mask is never mistaken for a
 * negative error by PVKIT_HC_FEATURES callers. */

/* Domain identifiers, as in Xen: 16 bits, domain 0 is the host. */
typedef uint16_t pvkit_domid_t;
#define PVKIT_DOMID_HOST PVKIT_CAST(pvkit_domid_t, 0)
#define PVKIT_DOMID_SELF PVKIT_CAST(pvkit_domid_t, 0x7FF0)
#define PVKIT_DOMID_INVALID PVKIT_CAST(pvkit_domid_t, 0x7FF4)
/* Guests and host-process frontends get domids in [1, PVKIT_DOMID_MAX]. */
#define PVKIT_DOMID_MAX PVKIT_CAST(pvkit_domid_t, 0x7FEF)

/* Event-channel ports are per domain. Port 0 is never valid. */
typedef uint32_t pvkit_evtchn_port_t;

/* Grant references index a grant pool's table. Reference 0 is reserved:
 * frontends never grant it and backends refuse it, so a zero-filled request
 * can never name a valid grant. */
typedef uint32_t pvkit_grant_ref_t;

/* The page size of every shared structure (grant pools, rings, store ring). */
#define PVKIT_PAGE_SHIFT 12u
#define PVKIT_PAGE_SIZE (1u << PVKIT_PAGE_SHIFT)

/*
 * Error numbers returned (negated) by hypercalls and carried in store error
 * replies. They equal Linux's x86-64 errno values so that a Linux guest can
 * pass them through unchanged; they are spelled out here because the ABI is
 * freestanding and has no <errno.h>.
 */
#define PVKIT_EPERM 1
#define PVKIT_ENOENT 2
#define PVKIT_EIO 5
#define PVKIT_E2BIG 7
#define PVKIT_EBADF 9
#define PVKIT_EAGAIN 11
#define PVKIT_ENOMEM 12
#define PVKIT_EACCES 13
#define PVKIT_EFAULT 14
#define PVKIT_EBUSY 16
#define PVKIT_EEXIST 17
#define PVKIT_EISDIR 21
#define PVKIT_EINVAL 22
#define PVKIT_ENOSPC 28
#define PVKIT_EROFS 30
#define PVKIT_ERANGE 34
#define PVKIT_ENOSYS 38
#define PVKIT_ENOTEMPTY 39
#define PVKIT_EPROTO 71
#define PVKIT_EOPNOTSUPP 95
#define PVKIT_EISCONN 106
#define PVKIT_ENOTCONN 107
#define PVKIT_EDQUOT 122

#endif /* PVKIT_ABI_H */
