/*
 * pvkit hypercall ABI: the store wire protocol.
 *
 * XenStore's protocol (xen/include/public/io/xs_wire.h). The same messages
 * flow over pvkit-stored's Unix socket (host processes and the toolstack)
 * and over a guest's store ring page (relayed by its VMM), so one client
 * library serves both.
 *
 * A message is a struct pvkit_store_msg_header followed by `len` payload
 * bytes (len <= PVKIT_STORE_PAYLOAD_MAX). Strings in payloads are NUL
 * terminated; operations with several arguments separate them with NULs:
 *
 *   READ        path\0                    -> value (no NUL)
 *   WRITE       path\0 value              -> "OK\0"
 *   MKDIR       path\0                    -> "OK\0"
 *   RM          path\0                    -> "OK\0"
 *   DIRECTORY   path\0                    -> child\0 child\0 ...
 *   GET_PERMS   path\0                    -> perm\0 perm\0 ...
 *   SET_PERMS   path\0 perm\0 perm\0 ...  -> "OK\0"
 *   WATCH       path\0 token\0            -> "OK\0", then WATCH_EVENTs
 *   UNWATCH     path\0 token\0            -> "OK\0"
 *   WATCH_EVENT (daemon to client)        path\0 token\0
 *   TRANSACTION_START  "\0"               -> tx id as decimal string\0
 *   TRANSACTION_END    "T\0" or "F\0"     -> "OK\0" (commit / abort)
 *   GET_DOMAIN_PATH    domid\0            -> "/local/domain/<domid>\0"
 *   CONTROL     "restrict\0" domid\0      -> "OK\0"; the connection acts as
 *                                          domid from now on, irreversibly
 *                                          (how a VMM relays a guest and how a
 *                                          host-process frontend drops dom0)
 *   RESET_WATCHES      "\0"               -> "OK\0"; drops this connection's watches
 *   INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET,
 *   DIRECTORY_PART: reserved for Xen compatibility; pvkit-stored answers
 *   ENOSYS.
 *
 * A permission is a letter followed by a domid: 'n' none, 'r' read, 'w'
 * write, 'b' both. The first entry names the owner and the access everyone
 * else gets; later entries grant specific domains more (or less).
 *
 * Errors come back as type PVKIT_STORE_ERROR with one of the names below
 * ("ENOENT\0", ...) as payload, with the request's req_id and tx_id.
 * req_id is chosen by the client and echoed unchanged; tx_id is 0 outside a
 * transaction. WATCH_EVENT messages have req_id 0.
 */
#ifndef PVKIT_STORE_H
#define PVKIT_STORE_H

#include "abi.h"

#define PVKIT_STORE_CONTROL 0u
#define PVKIT_STORE_DIRECTORY 1u
#define PVKIT_STORE_READ 2u
#define PVKIT_STORE_GET_PERMS 3u
#define PVKIT_STORE_WATCH 4u
#define PVKIT_STORE_UNWATCH 5u
#define PVKIT_STORE_TRANSACTION_START 6u
#define PVKIT_STORE_TRANSACTION_END 7u
#define PVKIT_STORE_INTRODUCE 8u
#define PVKIT_STORE_RELEASE 9u
#define PVKIT_STORE_GET_DOMAIN_PATH 10u
#define PVKIT_STORE_WRITE 11u
#define PVKIT_STORE_MKDIR 12u
#define PVKIT_STORE_RM 13u
#define PVKIT_STORE_SET_PERMS 14u
#define PVKIT_STORE_WATCH_EVENT 15u
#define PVKIT_STORE_ERROR 16u
#define PVKIT_STORE_IS_DOMAIN_INTRODUCED 17u
#define PVKIT_STORE_RESUME 18u
#define PVKIT_STORE_SET_TARGET 19u
/* 20 is reserved (XS_RESTRICT in old Xen). */
#define PVKIT_STORE_RESET_WATCHES 21u
#define PVKIT_STORE_DIRECTORY_PART 22u
#define PVKIT_STORE_OP_COUNT 23u

/* Written by: the sender of the message (client or daemon). */
struct pvkit_store_msg_header {
    uint32_t type;   /* PVKIT_STORE_* */
    uint32_t req_id; /* client's request id, echoed in the reply */
    uint32_t tx_id;  /* transaction id, 0 for none */
    uint32_t len;    /* payload bytes that follow */
};
PVKIT_ABI_SIZE(struct pvkit_store_msg_header, 16);
PVKIT_ABI_OFFSET(struct pvkit_store_msg_header, len, 12);

#define PVKIT_STORE_PAYLOAD_MAX 4096u
#define PVKIT_STORE_ABS_PATH_MAX 3072u
#define PVKIT_STORE_REL_PATH_MAX 2048u

/* Error names carried in PVKIT_STORE_ERROR payloads, with their numbers. */
struct pvkit_store_errname {
    int errnum;
    const char *name;
};

#define PVKIT_STORE_ERRORS_INIT                                                   \
    {                                                                             \
        {PVKIT_EINVAL, "EINVAL"}, {PVKIT_EACCES, "EACCES"}, {PVKIT_EEXIST, "EEXIST"}, \
        {PVKIT_EISDIR, "EISDIR"}, {PVKIT_ENOENT, "ENOENT"}, {PVKIT_ENOMEM, "ENOMEM"}, \
        {PVKIT_ENOSPC, "ENOSPC"}, {PVKIT_EIO, "EIO"}, {PVKIT_ENOTEMPTY, "ENOTEMPTY"}, \
        {PVKIT_ENOSYS, "ENOSYS"}, {PVKIT_EROFS, "EROFS"}, {PVKIT_EBUSY, "EBUSY"},     \
        {PVKIT_EAGAIN, "EAGAIN"}, {PVKIT_EISCONN, "EISCONN"}, {PVKIT_E2BIG, "E2BIG"}, \
        {PVKIT_EPERM, "EPERM"}, {PVKIT_EDQUOT, "EQUOTA"},                           \
    }

/*
 * A guest's store ring: one page, two byte rings (Xen's
 * xenstore_domain_interface). The guest writes requests into req and reads
 * replies and watch events from rsp; the VMM relays both to pvkit-stored.
 * Indices are free-running; offset = index & (PVKIT_STORE_RING_SIZE - 1).
 * The same single-read-then-check rules as ring.h apply: a producer index
 * more than PVKIT_STORE_RING_SIZE ahead of the consumer disconnects the
 * guest's store connection (connection = PVKIT_STORE_RING_DISCONNECTED,
 * error = PVKIT_STORE_RING_ERR_PROTO).
 *
 * Ordering, as in ring.h: a producer writes bytes, release barrier, then
 * its prod index; a consumer reads the prod index (acquire), copies bytes,
 * then publishes its cons index with a release store. Either side kicks
 * the store event channel after publishing an index (prod or cons), so a
 * producer waiting for space is woken too.
 */
#define PVKIT_STORE_RING_CONNECTED 0u
#define PVKIT_STORE_RING_DISCONNECTED 1u
#define PVKIT_STORE_RING_ERR_NONE 0u
#define PVKIT_STORE_RING_ERR_PROTO 1u /* an impossible index or message */
#define PVKIT_STORE_RING_SIZE 1024u
struct pvkit_store_ring {
    char req[PVKIT_STORE_RING_SIZE]; /* written by: guest */
    char rsp[PVKIT_STORE_RING_SIZE]; /* written by: VMM */
    uint32_t req_cons;               /* written by: VMM */
    uint32_t req_prod;               /* written by: guest */
    uint32_t rsp_cons;               /* written by: guest */
    uint32_t rsp_prod;               /* written by: VMM */
    uint32_t server_features;        /* written by: VMM, reserved 0 */
    uint32_t connection;             /* written by: VMM, PVKIT_STORE_RING_* */
    uint32_t error;                  /* written by: VMM, PVKIT_STORE_RING_ERR_* */
    uint32_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_store_ring, 2080);
PVKIT_ABI_OFFSET(struct pvkit_store_ring, req_cons, 2048);
PVKIT_ABI_OFFSET(struct pvkit_store_ring, rsp_prod, 2060);

/* Result of PVKIT_HC_STORE_RING_INFO. Written by: VMM. */
struct pvkit_store_ring_info {
    uint64_t ring_gpa;             /* page holding struct pvkit_store_ring */
    pvkit_evtchn_port_t evtchn;    /* port to kick after writing req */
    pvkit_domid_t domid;           /* this guest's domid */
    uint16_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_store_ring_info, 16);

#endif /* PVKIT_STORE_H */
