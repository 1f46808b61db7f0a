/*
 * pvkit hypercall ABI: the network device protocol (netif).
 *
 * Modelled on Xen's io/netif.h. Two rings per queue: tx (guest to backend)
 * and rx (backend to guest), each a pvkit shared ring (ring.h).
 *
 * Transmit: a packet is one or more tx requests. The first carries the
 * total packet size in `size`, later ones their own fragment size;
 * PVKIT_NETTXF_MORE_DATA marks every request but the last. Only the first
 * request of a packet may carry PVKIT_NETTXF_EXTRA_INFO; then the next
 * slot is a struct pvkit_netif_extra_info (GSO parameters and the like)
 * instead of a request. Each request gets one response with its id; an
 * extra-info slot gets a PVKIT_NETIF_RSP_NULL response carrying the id of
 * the request before it, which frontends skip without an id check.
 *
 * Receive: the frontend posts empty granted (writable) pages as rx
 * requests; the backend copies a packet into them and answers with offset,
 * flags and status: > 0 is the byte count, < 0 a PVKIT_NETIF_RSP_* error;
 * 0 is never sent on rx.
 *
 * Store keys. Backend writes: feature-sg, feature-gso-tcpv4,
 * feature-gso-tcpv6, feature-no-csum-offload, feature-rx-copy,
 * multi-queue-max-queues, mac (from the toolstack). Frontend writes:
 * tx-ring-ref, rx-ring-ref, event-channel (or event-channel-tx/-rx),
 * request-rx-copy = 1, multi-queue-num-queues; with more than one queue
 * the ring and channel keys move to queue-<n>/ subdirectories.
 */
#ifndef PVKIT_NETIF_H
#define PVKIT_NETIF_H

#include "abi.h"

/* tx request flags. */
#define PVKIT_NETTXF_CSUM_BLANK (1u << 0)     /* checksum not yet computed */
#define PVKIT_NETTXF_DATA_VALIDATED (1u << 1) /* checksum known good */
#define PVKIT_NETTXF_MORE_DATA (1u << 2)      /* another fragment follows */
#define PVKIT_NETTXF_EXTRA_INFO (1u << 3)     /* an extra-info slot follows */

/* rx response flags. */
#define PVKIT_NETRXF_DATA_VALIDATED (1u << 0)
#define PVKIT_NETRXF_CSUM_BLANK (1u << 1)
#define PVKIT_NETRXF_MORE_DATA (1u << 2)
#define PVKIT_NETRXF_EXTRA_INFO (1u << 3)

/* Response status; >= 0 on rx is the fragment's byte count. */
#define PVKIT_NETIF_RSP_DROPPED (-2)
#define PVKIT_NETIF_RSP_ERROR (-1)
#define PVKIT_NETIF_RSP_OKAY 0
#define PVKIT_NETIF_RSP_NULL 1 /* answer to an extra-info slot */

/* A packet is at most 64 KiB and 18 fragments (Xen's XEN_NETBK_LEGACY_SLOTS_MAX). */
#define PVKIT_NETIF_MAX_PACKET 65535u
#define PVKIT_NETIF_MAX_TX_FRAGS 18u

/* Written by: frontend. */
struct pvkit_netif_tx_request {
    pvkit_grant_ref_t gref; /* frame holding this fragment */
    uint16_t offset;        /* start of the fragment inside the frame */
    uint16_t flags;         /* PVKIT_NETTXF_* */
    uint16_t id;            /* echoed in the response */
    uint16_t size;          /* first request: packet size; others: fragment size */
};
PVKIT_ABI_SIZE(struct pvkit_netif_tx_request, 12);
PVKIT_ABI_OFFSET(struct pvkit_netif_tx_request, id, 8);

/* Written by: backend, into a zeroed slot. */
struct pvkit_netif_tx_response {
    uint16_t id;
    int16_t status; /* PVKIT_NETIF_RSP_* */
};
PVKIT_ABI_SIZE(struct pvkit_netif_tx_response, 4);

/* Extra-info types. */
#define PVKIT_NETIF_EXTRA_TYPE_NONE 0u
#define PVKIT_NETIF_EXTRA_TYPE_GSO 1u
#define PVKIT_NETIF_EXTRA_TYPE_MCAST_ADD 2u
#define PVKIT_NETIF_EXTRA_TYPE_MCAST_DEL 3u
#define PVKIT_NETIF_EXTRA_TYPE_MAX 4u
/* Another extra-info slot follows this one. */
#define PVKIT_NETIF_EXTRA_FLAG_MORE (1u << 0)

#define PVKIT_NETIF_GSO_TYPE_NONE 0u
#define PVKIT_NETIF_GSO_TYPE_TCPV4 1u
#define PVKIT_NETIF_GSO_TYPE_TCPV6 2u

struct pvkit_netif_extra_gso {
    uint16_t size; /* maximum segment size */
    uint8_t type;  /* PVKIT_NETIF_GSO_TYPE_* */
    uint8_t pad;
    uint16_t features; /* reserved, 0 */
};

struct pvkit_netif_extra_mcast {
    uint8_t addr[6];
};

/* Occupies a whole tx (or rx) slot. Written by: the packet's sender. */
struct pvkit_netif_extra_info {
    uint8_t type;  /* PVKIT_NETIF_EXTRA_TYPE_* */
    uint8_t flags; /* PVKIT_NETIF_EXTRA_FLAG_* */
    union {
        struct pvkit_netif_extra_gso gso;
        struct pvkit_netif_extra_mcast mcast;
        uint16_t pad[3];
    } u;
};
PVKIT_ABI_SIZE(struct pvkit_netif_extra_info, 8);
PVKIT_ABI_OFFSET(struct pvkit_netif_extra_info, u, 2);

/* Written by: frontend. Posts one empty writable frame. */
struct pvkit_netif_rx_request {
    uint16_t id;
    uint16_t pad;
    pvkit_grant_ref_t gref;
};
PVKIT_ABI_SIZE(struct pvkit_netif_rx_request, 8);

/* Written by: backend, into a zeroed slot. */
struct pvkit_netif_rx_response {
    uint16_t id;
    uint16_t offset; /* where the data starts in the frame */
    uint16_t flags;  /* PVKIT_NETRXF_* */
    int16_t status;  /* bytes received (> 0) or PVKIT_NETIF_RSP_* (< 0); never 0 */
};
PVKIT_ABI_SIZE(struct pvkit_netif_rx_response, 8);

union pvkit_netif_tx_sring_entry {
    struct pvkit_netif_tx_request req;
    struct pvkit_netif_extra_info extra;
    struct pvkit_netif_tx_response rsp;
};
PVKIT_ABI_SIZE(union pvkit_netif_tx_sring_entry, 12);

union pvkit_netif_rx_sring_entry {
    struct pvkit_netif_rx_request req;
    struct pvkit_netif_extra_info extra;
    struct pvkit_netif_rx_response rsp;
};
PVKIT_ABI_SIZE(union pvkit_netif_rx_sring_entry, 8);

#endif /* PVKIT_NETIF_H */
