/*
 * The pvkit wire ABI as data: every wire structure's size and every field's
 * offset and size, and every numeric constant that is part of the ABI.
 *
 * This is the executable form of the spec. It is written out by hand from
 * the protocol (not generated from the headers) so that a header edit that
 * moves a field or renumbers a constant fails a test. It is an X-macro list
 * so that the same table is measured twice: by the C++ compiler in
 * abi_layout_test.cpp and by the C compiler in abi_layout_c.c, which catches
 * a header that lays a structure out differently in C and C++.
 *
 * Each PVKIT_SPEC_<HEADER>(STRUCT, UNION, FIELD, MEMBER) expands, per
 * wire type in declaration order, to
 *   STRUCT(type, size) or UNION(type, size), then
 *   FIELD(type, field, offset, size)   for every direct member, in order;
 *   MEMBER(type, path, offset, size)   for members of nested unions, which
 *                                      overlap and so are not part of the
 *                                      "fields tile the struct" check.
 * Listing every direct field matters: the tests check that the fields of
 * each struct tile it with no gap, so a field missing from this list (or
 * hidden compiler padding in the header) shows up as a hole.
 *
 * Plain C11, included by both languages.
 */
#ifndef PVKIT_TEST_ABI_LAYOUT_SPEC_H
#define PVKIT_TEST_ABI_LAYOUT_SPEC_H

#include <pvkit/abi.h>
#include <pvkit/blkif.h>
#include <pvkit/evtchn.h>
#include <pvkit/grant.h>
#include <pvkit/hypercall.h>
#include <pvkit/netif.h>
#include <pvkit/ring.h>
#include <pvkit/start_info.h>
#include <pvkit/store.h>

/* abi.h: the scalar wire types, as one-field "structs" would be pointless. */
#define PVKIT_SPEC_SCALARS(SCALAR)    \
    SCALAR(pvkit_domid_t, 2)          \
    SCALAR(pvkit_evtchn_port_t, 4)    \
    SCALAR(pvkit_grant_ref_t, 4)      \
    SCALAR(pvkit_blkif_sector_t, 8)

/* start_info.h */
#define PVKIT_SPEC_START_INFO(STRUCT, UNION, FIELD, MEMBER)      \
    STRUCT(struct pvkit_memmap_entry, 24)                        \
    FIELD(struct pvkit_memmap_entry, addr, 0, 8)                 \
    FIELD(struct pvkit_memmap_entry, size, 8, 8)                 \
    FIELD(struct pvkit_memmap_entry, type, 16, 4)                \
    FIELD(struct pvkit_memmap_entry, pad, 20, 4)                 \
    STRUCT(struct pvkit_start_device, 32)                        \
    FIELD(struct pvkit_start_device, type, 0, 4)                 \
    FIELD(struct pvkit_start_device, devid, 4, 4)                \
    FIELD(struct pvkit_start_device, pool_index, 8, 4)           \
    FIELD(struct pvkit_start_device, pad, 12, 4)                 \
    FIELD(struct pvkit_start_device, pool_gpa, 16, 8)            \
    FIELD(struct pvkit_start_device, pool_size, 24, 8)           \
    STRUCT(struct pvkit_start_info, 4096)                        \
    FIELD(struct pvkit_start_info, magic, 0, 8)                  \
    FIELD(struct pvkit_start_info, abi_version, 8, 4)            \
    FIELD(struct pvkit_start_info, domid, 12, 2)                 \
    FIELD(struct pvkit_start_info, pad0, 14, 2)                  \
    FIELD(struct pvkit_start_info, features, 16, 8)              \
    FIELD(struct pvkit_start_info, nr_ram_pages, 24, 8)          \
    FIELD(struct pvkit_start_info, hypercall_page_gpa, 32, 8)    \
    FIELD(struct pvkit_start_info, doorbell_gpa, 40, 8)          \
    FIELD(struct pvkit_start_info, store_ring_gpa, 48, 8)        \
    FIELD(struct pvkit_start_info, store_evtchn, 56, 4)          \
    FIELD(struct pvkit_start_info, console_flags, 60, 4)         \
    FIELD(struct pvkit_start_info, nr_memmap, 64, 4)             \
    FIELD(struct pvkit_start_info, nr_devices, 68, 4)            \
    FIELD(struct pvkit_start_info, cmdline_len, 72, 4)           \
    FIELD(struct pvkit_start_info, pad1, 76, 4)                  \
    FIELD(struct pvkit_start_info, memmap, 80, 768)              \
    FIELD(struct pvkit_start_info, devices, 848, 512)            \
    FIELD(struct pvkit_start_info, cmdline, 1360, 1024)          \
    FIELD(struct pvkit_start_info, reserved, 2384, 1712)

/* hypercall.h */
#define PVKIT_SPEC_HYPERCALL(STRUCT, UNION, FIELD, MEMBER)          \
    STRUCT(struct pvkit_device_connect, 48)                         \
    FIELD(struct pvkit_device_connect, pool_index, 0, 4)            \
    FIELD(struct pvkit_device_connect, nr_queues, 4, 4)             \
    FIELD(struct pvkit_device_connect, ports, 8, 32)                \
    FIELD(struct pvkit_device_connect, reserved, 40, 8)

/* grant.h */
#define PVKIT_SPEC_GRANT(STRUCT, UNION, FIELD, MEMBER)           \
    STRUCT(struct pvkit_grant_entry, 8)                          \
    FIELD(struct pvkit_grant_entry, flags, 0, 2)                 \
    FIELD(struct pvkit_grant_entry, domid, 2, 2)                 \
    FIELD(struct pvkit_grant_entry, frame, 4, 4)                 \
    STRUCT(struct pvkit_grant_pool_header, 72)                   \
    FIELD(struct pvkit_grant_pool_header, magic, 0, 8)           \
    FIELD(struct pvkit_grant_pool_header, version, 8, 4)         \
    FIELD(struct pvkit_grant_pool_header, page_size, 12, 4)      \
    FIELD(struct pvkit_grant_pool_header, nr_frames, 16, 4)      \
    FIELD(struct pvkit_grant_pool_header, table_first, 20, 4)    \
    FIELD(struct pvkit_grant_pool_header, table_nr, 24, 4)       \
    FIELD(struct pvkit_grant_pool_header, nr_grants, 28, 4)      \
    FIELD(struct pvkit_grant_pool_header, data_first, 32, 4)     \
    FIELD(struct pvkit_grant_pool_header, owner, 36, 2)          \
    FIELD(struct pvkit_grant_pool_header, pad0, 38, 2)           \
    FIELD(struct pvkit_grant_pool_header, reserved, 40, 32)      \
    STRUCT(struct pvkit_grant_pool_info, 24)                     \
    FIELD(struct pvkit_grant_pool_info, gpa, 0, 8)               \
    FIELD(struct pvkit_grant_pool_info, nr_frames, 8, 4)         \
    FIELD(struct pvkit_grant_pool_info, dev_type, 12, 4)         \
    FIELD(struct pvkit_grant_pool_info, devid, 16, 4)            \
    FIELD(struct pvkit_grant_pool_info, backend_domid, 20, 2)    \
    FIELD(struct pvkit_grant_pool_info, pad, 22, 2)

/* evtchn.h */
#define PVKIT_SPEC_EVTCHN(STRUCT, UNION, FIELD, MEMBER)                 \
    STRUCT(struct pvkit_evtchn_alloc_unbound, 16)                       \
    FIELD(struct pvkit_evtchn_alloc_unbound, remote_dom, 0, 2)          \
    FIELD(struct pvkit_evtchn_alloc_unbound, pad, 2, 2)                 \
    FIELD(struct pvkit_evtchn_alloc_unbound, vector, 4, 4)              \
    FIELD(struct pvkit_evtchn_alloc_unbound, port, 8, 4)                \
    FIELD(struct pvkit_evtchn_alloc_unbound, pad2, 12, 4)               \
    STRUCT(struct pvkit_evtchn_bind_interdomain, 16)                    \
    FIELD(struct pvkit_evtchn_bind_interdomain, remote_dom, 0, 2)       \
    FIELD(struct pvkit_evtchn_bind_interdomain, pad, 2, 2)              \
    FIELD(struct pvkit_evtchn_bind_interdomain, remote_port, 4, 4)      \
    FIELD(struct pvkit_evtchn_bind_interdomain, vector, 8, 4)           \
    FIELD(struct pvkit_evtchn_bind_interdomain, local_port, 12, 4)      \
    STRUCT(struct pvkit_evtchn_close, 8)                                \
    FIELD(struct pvkit_evtchn_close, port, 0, 4)                        \
    FIELD(struct pvkit_evtchn_close, pad, 4, 4)                         \
    STRUCT(struct pvkit_evtchn_status, 24)                              \
    FIELD(struct pvkit_evtchn_status, port, 0, 4)                       \
    FIELD(struct pvkit_evtchn_status, status, 4, 4)                     \
    FIELD(struct pvkit_evtchn_status, remote_dom, 8, 2)                 \
    FIELD(struct pvkit_evtchn_status, pad, 10, 2)                       \
    FIELD(struct pvkit_evtchn_status, remote_port, 12, 4)               \
    FIELD(struct pvkit_evtchn_status, vector, 16, 4)                    \
    FIELD(struct pvkit_evtchn_status, pad2, 20, 4)

/*
 * ring.h. struct pvkit_front_ring / pvkit_back_ring are each end's private
 * state (they hold pointers) and never cross a boundary, so they are not
 * part of the wire ABI and not listed.
 */
#define PVKIT_SPEC_RING(STRUCT, UNION, FIELD, MEMBER)   \
    STRUCT(struct pvkit_sring_hdr, 64)                  \
    FIELD(struct pvkit_sring_hdr, req_prod, 0, 4)       \
    FIELD(struct pvkit_sring_hdr, req_event, 4, 4)      \
    FIELD(struct pvkit_sring_hdr, rsp_prod, 8, 4)       \
    FIELD(struct pvkit_sring_hdr, rsp_event, 12, 4)     \
    FIELD(struct pvkit_sring_hdr, pad, 16, 48)

/* blkif.h */
#define PVKIT_SPEC_BLKIF(STRUCT, UNION, FIELD, MEMBER)                       \
    STRUCT(struct pvkit_blkif_segment, 8)                                    \
    FIELD(struct pvkit_blkif_segment, gref, 0, 4)                            \
    FIELD(struct pvkit_blkif_segment, first_sect, 4, 1)                      \
    FIELD(struct pvkit_blkif_segment, last_sect, 5, 1)                       \
    FIELD(struct pvkit_blkif_segment, pad, 6, 2)                             \
    STRUCT(struct pvkit_blkif_request, 112)                                  \
    FIELD(struct pvkit_blkif_request, operation, 0, 1)                       \
    FIELD(struct pvkit_blkif_request, nr_segments, 1, 1)                     \
    FIELD(struct pvkit_blkif_request, handle, 2, 2)                          \
    FIELD(struct pvkit_blkif_request, pad, 4, 4)                             \
    FIELD(struct pvkit_blkif_request, id, 8, 8)                              \
    FIELD(struct pvkit_blkif_request, sector_number, 16, 8)                  \
    FIELD(struct pvkit_blkif_request, seg, 24, 88)                           \
    STRUCT(struct pvkit_blkif_request_discard, 112)                          \
    FIELD(struct pvkit_blkif_request_discard, operation, 0, 1)               \
    FIELD(struct pvkit_blkif_request_discard, flag, 1, 1)                    \
    FIELD(struct pvkit_blkif_request_discard, handle, 2, 2)                  \
    FIELD(struct pvkit_blkif_request_discard, pad, 4, 4)                     \
    FIELD(struct pvkit_blkif_request_discard, id, 8, 8)                      \
    FIELD(struct pvkit_blkif_request_discard, sector_number, 16, 8)          \
    FIELD(struct pvkit_blkif_request_discard, nr_sectors, 24, 8)             \
    FIELD(struct pvkit_blkif_request_discard, pad2, 32, 80)                  \
    STRUCT(struct pvkit_blkif_request_indirect, 112)                         \
    FIELD(struct pvkit_blkif_request_indirect, operation, 0, 1)              \
    FIELD(struct pvkit_blkif_request_indirect, indirect_op, 1, 1)            \
    FIELD(struct pvkit_blkif_request_indirect, nr_segments, 2, 2)            \
    FIELD(struct pvkit_blkif_request_indirect, pad, 4, 4)                    \
    FIELD(struct pvkit_blkif_request_indirect, id, 8, 8)                     \
    FIELD(struct pvkit_blkif_request_indirect, sector_number, 16, 8)         \
    FIELD(struct pvkit_blkif_request_indirect, handle, 24, 2)                \
    FIELD(struct pvkit_blkif_request_indirect, pad2, 26, 2)                  \
    FIELD(struct pvkit_blkif_request_indirect, indirect_grefs, 28, 32)       \
    FIELD(struct pvkit_blkif_request_indirect, pad3, 60, 52)                 \
    STRUCT(struct pvkit_blkif_response, 16)                                  \
    FIELD(struct pvkit_blkif_response, id, 0, 8)                             \
    FIELD(struct pvkit_blkif_response, operation, 8, 1)                      \
    FIELD(struct pvkit_blkif_response, pad, 9, 1)                            \
    FIELD(struct pvkit_blkif_response, status, 10, 2)                        \
    FIELD(struct pvkit_blkif_response, pad2, 12, 4)                          \
    UNION(union pvkit_blkif_sring_entry, 112)                                \
    FIELD(union pvkit_blkif_sring_entry, req, 0, 112)                        \
    FIELD(union pvkit_blkif_sring_entry, discard, 0, 112)                    \
    FIELD(union pvkit_blkif_sring_entry, indirect, 0, 112)                   \
    FIELD(union pvkit_blkif_sring_entry, rsp, 0, 16)

/* netif.h */
#define PVKIT_SPEC_NETIF(STRUCT, UNION, FIELD, MEMBER)                   \
    STRUCT(struct pvkit_netif_tx_request, 12)                            \
    FIELD(struct pvkit_netif_tx_request, gref, 0, 4)                     \
    FIELD(struct pvkit_netif_tx_request, offset, 4, 2)                   \
    FIELD(struct pvkit_netif_tx_request, flags, 6, 2)                    \
    FIELD(struct pvkit_netif_tx_request, id, 8, 2)                       \
    FIELD(struct pvkit_netif_tx_request, size, 10, 2)                    \
    STRUCT(struct pvkit_netif_tx_response, 4)                            \
    FIELD(struct pvkit_netif_tx_response, id, 0, 2)                      \
    FIELD(struct pvkit_netif_tx_response, status, 2, 2)                  \
    STRUCT(struct pvkit_netif_extra_gso, 6)                              \
    FIELD(struct pvkit_netif_extra_gso, size, 0, 2)                      \
    FIELD(struct pvkit_netif_extra_gso, type, 2, 1)                      \
    FIELD(struct pvkit_netif_extra_gso, pad, 3, 1)                       \
    FIELD(struct pvkit_netif_extra_gso, features, 4, 2)                  \
    STRUCT(struct pvkit_netif_extra_mcast, 6)                            \
    FIELD(struct pvkit_netif_extra_mcast, addr, 0, 6)                    \
    STRUCT(struct pvkit_netif_extra_info, 8)                             \
    FIELD(struct pvkit_netif_extra_info, type, 0, 1)                     \
    FIELD(struct pvkit_netif_extra_info, flags, 1, 1)                    \
    FIELD(struct pvkit_netif_extra_info, u, 2, 6)                        \
    MEMBER(struct pvkit_netif_extra_info, u.gso, 2, 6)                   \
    MEMBER(struct pvkit_netif_extra_info, u.mcast, 2, 6)                 \
    MEMBER(struct pvkit_netif_extra_info, u.pad, 2, 6)                   \
    STRUCT(struct pvkit_netif_rx_request, 8)                             \
    FIELD(struct pvkit_netif_rx_request, id, 0, 2)                       \
    FIELD(struct pvkit_netif_rx_request, pad, 2, 2)                      \
    FIELD(struct pvkit_netif_rx_request, gref, 4, 4)                     \
    STRUCT(struct pvkit_netif_rx_response, 8)                            \
    FIELD(struct pvkit_netif_rx_response, id, 0, 2)                      \
    FIELD(struct pvkit_netif_rx_response, offset, 2, 2)                  \
    FIELD(struct pvkit_netif_rx_response, flags, 4, 2)                   \
    FIELD(struct pvkit_netif_rx_response, status, 6, 2)                  \
    UNION(union pvkit_netif_tx_sring_entry, 12)                          \
    FIELD(union pvkit_netif_tx_sring_entry, req, 0, 12)                  \
    FIELD(union pvkit_netif_tx_sring_entry, extra, 0, 8)                 \
    FIELD(union pvkit_netif_tx_sring_entry, rsp, 0, 4)                   \
    UNION(union pvkit_netif_rx_sring_entry, 8)                           \
    FIELD(union pvkit_netif_rx_sring_entry, req, 0, 8)                   \
    FIELD(union pvkit_netif_rx_sring_entry, extra, 0, 8)                 \
    FIELD(union pvkit_netif_rx_sring_entry, rsp, 0, 8)

/*
 * store.h. struct pvkit_store_errname (int + pointer) is a compile-time
 * table for both ends, never sent, so it is not listed; its contents are
 * checked in abi_layout_test.cpp.
 */
#define PVKIT_SPEC_STORE(STRUCT, UNION, FIELD, MEMBER)                   \
    STRUCT(struct pvkit_store_msg_header, 16)                            \
    FIELD(struct pvkit_store_msg_header, type, 0, 4)                     \
    FIELD(struct pvkit_store_msg_header, req_id, 4, 4)                   \
    FIELD(struct pvkit_store_msg_header, tx_id, 8, 4)                    \
    FIELD(struct pvkit_store_msg_header, len, 12, 4)                     \
    STRUCT(struct pvkit_store_ring, 2080)                                \
    FIELD(struct pvkit_store_ring, req, 0, 1024)                         \
    FIELD(struct pvkit_store_ring, rsp, 1024, 1024)                      \
    FIELD(struct pvkit_store_ring, req_cons, 2048, 4)                    \
    FIELD(struct pvkit_store_ring, req_prod, 2052, 4)                    \
    FIELD(struct pvkit_store_ring, rsp_cons, 2056, 4)                    \
    FIELD(struct pvkit_store_ring, rsp_prod, 2060, 4)                    \
    FIELD(struct pvkit_store_ring, server_features, 2064, 4)             \
    FIELD(struct pvkit_store_ring, connection, 2068, 4)                  \
    FIELD(struct pvkit_store_ring, error, 2072, 4)                       \
    FIELD(struct pvkit_store_ring, pad, 2076, 4)                         \
    STRUCT(struct pvkit_store_ring_info, 16)                             \
    FIELD(struct pvkit_store_ring_info, ring_gpa, 0, 8)                  \
    FIELD(struct pvkit_store_ring_info, evtchn, 8, 4)                    \
    FIELD(struct pvkit_store_ring_info, domid, 12, 2)                    \
    FIELD(struct pvkit_store_ring_info, pad, 14, 2)

#define PVKIT_SPEC_ALL_LAYOUTS(STRUCT, UNION, FIELD, MEMBER) \
    PVKIT_SPEC_HYPERCALL(STRUCT, UNION, FIELD, MEMBER)       \
    PVKIT_SPEC_START_INFO(STRUCT, UNION, FIELD, MEMBER)      \
    PVKIT_SPEC_GRANT(STRUCT, UNION, FIELD, MEMBER)           \
    PVKIT_SPEC_EVTCHN(STRUCT, UNION, FIELD, MEMBER)          \
    PVKIT_SPEC_RING(STRUCT, UNION, FIELD, MEMBER)            \
    PVKIT_SPEC_BLKIF(STRUCT, UNION, FIELD, MEMBER)           \
    PVKIT_SPEC_NETIF(STRUCT, UNION, FIELD, MEMBER)           \
    PVKIT_SPEC_STORE(STRUCT, UNION, FIELD, MEMBER)

/*
 * Numeric constants that are ABI: CONSTANT(name, value). Numbers are
 * append-only and never reused, so every one of them is pinned.
 */
#define PVKIT_SPEC_CONSTANTS(CONSTANT)                         \
    /* abi.h */                                                \
    CONSTANT(PVKIT_ABI_VERSION_MAJOR, 1)                       \
    CONSTANT(PVKIT_ABI_VERSION_MINOR, 1)                       \
    CONSTANT(PVKIT_ABI_VERSION, 0x10001)                       \
    CONSTANT(PVKIT_FEAT_CONSOLE_HC, 0x1)                       \
    CONSTANT(PVKIT_FEAT_EVTCHN_DOORBELL, 0x2)                  \
    CONSTANT(PVKIT_FEAT_EVTCHN_IRQ, 0x4)                       \
    CONSTANT(PVKIT_FEAT_GRANT_POOLS, 0x8)                      \
    CONSTANT(PVKIT_FEAT_STORE_RING, 0x10)                      \
    CONSTANT(PVKIT_FEAT_MULTI_PAGE_RING, 0x20)                 \
    CONSTANT(PVKIT_FEAT_DEVICE_CONNECT, 0x40)                  \
    CONSTANT(PVKIT_DOMID_HOST, 0)                              \
    CONSTANT(PVKIT_DOMID_SELF, 0x7FF0)                         \
    CONSTANT(PVKIT_DOMID_INVALID, 0x7FF4)                      \
    CONSTANT(PVKIT_DOMID_MAX, 0x7FEF)                          \
    CONSTANT(PVKIT_PAGE_SHIFT, 12)                             \
    CONSTANT(PVKIT_PAGE_SIZE, 4096)                            \
    CONSTANT(PVKIT_EPERM, 1)                                   \
    CONSTANT(PVKIT_ENOENT, 2)                                  \
    CONSTANT(PVKIT_EIO, 5)                                     \
    CONSTANT(PVKIT_E2BIG, 7)                                   \
    CONSTANT(PVKIT_EBADF, 9)                                   \
    CONSTANT(PVKIT_EAGAIN, 11)                                 \
    CONSTANT(PVKIT_ENOMEM, 12)                                 \
    CONSTANT(PVKIT_EACCES, 13)                                 \
    CONSTANT(PVKIT_EFAULT, 14)                                 \
    CONSTANT(PVKIT_EBUSY, 16)                                  \
    CONSTANT(PVKIT_EEXIST, 17)                                 \
    CONSTANT(PVKIT_EISDIR, 21)                                 \
    CONSTANT(PVKIT_EINVAL, 22)                                 \
    CONSTANT(PVKIT_ENOSPC, 28)                                 \
    CONSTANT(PVKIT_EROFS, 30)                                  \
    CONSTANT(PVKIT_ERANGE, 34)                                 \
    CONSTANT(PVKIT_ENOSYS, 38)                                 \
    CONSTANT(PVKIT_ENOTEMPTY, 39)                              \
    CONSTANT(PVKIT_EPROTO, 71)                                 \
    CONSTANT(PVKIT_EOPNOTSUPP, 95)                             \
    CONSTANT(PVKIT_EISCONN, 106)                               \
    CONSTANT(PVKIT_ENOTCONN, 107)                              \
    CONSTANT(PVKIT_EDQUOT, 122)                                \
    /* hypercall.h */                                          \
    CONSTANT(PVKIT_CPUID_BASE, 0x40000000)                     \
    CONSTANT(PVKIT_CPUID_INFO, 0x40000001)                     \
    CONSTANT(PVKIT_CPUID_MAX, 0x40000001)                      \
    CONSTANT(PVKIT_CPUID_SIG_EBX, 0x696b7670)                  \
    CONSTANT(PVKIT_CPUID_SIG_ECX, 0x6b767074)                  \
    CONSTANT(PVKIT_CPUID_SIG_EDX, 0x76707469)                  \
    CONSTANT(PVKIT_HYPERCALL_PORT, 0x99)                       \
    CONSTANT(PVKIT_HYPERCALL_STUB_SIZE, 32)                    \
    CONSTANT(PVKIT_HYPERCALL_MAX_STUBS, 128)                   \
    CONSTANT(PVKIT_HC_VERSION, 0)                              \
    CONSTANT(PVKIT_HC_FEATURES, 1)                             \
    CONSTANT(PVKIT_HC_CONSOLE_WRITE, 2)                        \
    CONSTANT(PVKIT_HC_SCHED_OP, 3)                             \
    CONSTANT(PVKIT_HC_EVTCHN_OP, 4)                            \
    CONSTANT(PVKIT_HC_GRANT_POOL_QUERY, 5)                     \
    CONSTANT(PVKIT_HC_STORE_RING_INFO, 6)                      \
    CONSTANT(PVKIT_HC_START_INFO, 7)                           \
    CONSTANT(PVKIT_HC_DEVICE_CONNECT, 8)                       \
    CONSTANT(PVKIT_HC_COUNT, 9)                                \
    CONSTANT(PVKIT_DEVICE_CONNECT_MAX_QUEUES, 8)               \
    CONSTANT(PVKIT_CONSOLE_WRITE_MAX, 4096)                    \
    CONSTANT(PVKIT_SCHEDOP_YIELD, 0)                           \
    CONSTANT(PVKIT_SCHEDOP_BLOCK, 1)                           \
    CONSTANT(PVKIT_SCHEDOP_SHUTDOWN, 2)                        \
    CONSTANT(PVKIT_SHUTDOWN_POWEROFF, 0)                       \
    CONSTANT(PVKIT_SHUTDOWN_REBOOT, 1)                         \
    CONSTANT(PVKIT_SHUTDOWN_CRASH, 3)                          \
    /* start_info.h */                                         \
    CONSTANT(PVKIT_START_INFO_MAGIC, 0x314f464e49534b50)       \
    CONSTANT(PVKIT_MEM_RAM, 1)                                 \
    CONSTANT(PVKIT_MEM_RESERVED, 2)                            \
    CONSTANT(PVKIT_MEM_GRANT_POOL, 3)                          \
    CONSTANT(PVKIT_MEM_MMIO, 4)                                \
    CONSTANT(PVKIT_DEV_BLK, 1)                                 \
    CONSTANT(PVKIT_DEV_NET, 2)                                 \
    CONSTANT(PVKIT_DEVID_MAX, 0xffff)                          \
    CONSTANT(PVKIT_START_INFO_MAX_MEMMAP, 32)                  \
    CONSTANT(PVKIT_START_INFO_MAX_DEVICES, 16)                 \
    CONSTANT(PVKIT_START_INFO_CMDLINE_MAX, 1024)               \
    /* grant.h */                                              \
    CONSTANT(PVKIT_GTF_INVALID, 0x0)                           \
    CONSTANT(PVKIT_GTF_PERMIT_ACCESS, 0x1)                     \
    CONSTANT(PVKIT_GTF_TYPE_MASK, 0x3)                         \
    CONSTANT(PVKIT_GTF_READONLY, 0x4)                          \
    CONSTANT(PVKIT_GTF_READING, 0x8)                           \
    CONSTANT(PVKIT_GTF_WRITING, 0x10)                          \
    CONSTANT(PVKIT_GTF_IN_USE, 0x18)                           \
    CONSTANT(PVKIT_GRANT_ENTRIES_PER_PAGE, 512)                \
    CONSTANT(PVKIT_GRANT_POOL_MAGIC, 0x31504752474b5650)       \
    CONSTANT(PVKIT_GRANT_POOL_VERSION, 1)                      \
    CONSTANT(PVKIT_GRANT_POOL_MAX_FRAMES, 262144)              \
    /* evtchn.h */                                             \
    CONSTANT(PVKIT_DOORBELL_NOTIFY, 0)                         \
    CONSTANT(PVKIT_EVTCHN_VECTOR_MIN, 0x30)                    \
    CONSTANT(PVKIT_EVTCHN_VECTOR_MAX, 0xef)                    \
    CONSTANT(PVKIT_EVTCHN_MAX_PORT, 1023)                      \
    CONSTANT(PVKIT_EVTCHNOP_ALLOC_UNBOUND, 0)                  \
    CONSTANT(PVKIT_EVTCHNOP_BIND_INTERDOMAIN, 1)               \
    CONSTANT(PVKIT_EVTCHNOP_CLOSE, 2)                          \
    CONSTANT(PVKIT_EVTCHNOP_STATUS, 3)                         \
    CONSTANT(PVKIT_EVTCHNSTAT_CLOSED, 0)                       \
    CONSTANT(PVKIT_EVTCHNSTAT_UNBOUND, 1)                      \
    CONSTANT(PVKIT_EVTCHNSTAT_INTERDOMAIN, 2)                  \
    /* ring.h */                                               \
    CONSTANT(PVKIT_RING_HDR_SIZE, 64)                          \
    CONSTANT(PVKIT_RING_MAX_PAGE_ORDER, 4)                     \
    CONSTANT(PVKIT_RING_EPROTO, -71)                           \
    CONSTANT(PVKIT_RING_EFULL, -28)                            \
    /* blkif.h */                                              \
    CONSTANT(PVKIT_BLKIF_OP_READ, 0)                           \
    CONSTANT(PVKIT_BLKIF_OP_WRITE, 1)                          \
    CONSTANT(PVKIT_BLKIF_OP_FLUSH_DISKCACHE, 3)                \
    CONSTANT(PVKIT_BLKIF_OP_DISCARD, 5)                        \
    CONSTANT(PVKIT_BLKIF_OP_INDIRECT, 6)                       \
    CONSTANT(PVKIT_BLKIF_SECTOR_SIZE, 512)                     \
    CONSTANT(PVKIT_BLKIF_SECTORS_PER_PAGE, 8)                  \
    CONSTANT(PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST, 11)         \
    CONSTANT(PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, 8)    \
    CONSTANT(PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME, 512)         \
    CONSTANT(PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS, 256)           \
    CONSTANT(PVKIT_BLKIF_RSP_EOPNOTSUPP, -2)                   \
    CONSTANT(PVKIT_BLKIF_RSP_ERROR, -1)                        \
    CONSTANT(PVKIT_BLKIF_RSP_OKAY, 0)                          \
    CONSTANT(PVKIT_VDISK_CDROM, 0x1)                           \
    CONSTANT(PVKIT_VDISK_REMOVABLE, 0x2)                       \
    CONSTANT(PVKIT_VDISK_READONLY, 0x4)                        \
    CONSTANT(PVKIT_BLKIF_DISCARD_SECURE, 0x1)                  \
    /* netif.h */                                              \
    CONSTANT(PVKIT_NETTXF_CSUM_BLANK, 0x1)                     \
    CONSTANT(PVKIT_NETTXF_DATA_VALIDATED, 0x2)                 \
    CONSTANT(PVKIT_NETTXF_MORE_DATA, 0x4)                      \
    CONSTANT(PVKIT_NETTXF_EXTRA_INFO, 0x8)                     \
    CONSTANT(PVKIT_NETRXF_DATA_VALIDATED, 0x1)                 \
    CONSTANT(PVKIT_NETRXF_CSUM_BLANK, 0x2)                     \
    CONSTANT(PVKIT_NETRXF_MORE_DATA, 0x4)                      \
    CONSTANT(PVKIT_NETRXF_EXTRA_INFO, 0x8)                     \
    CONSTANT(PVKIT_NETIF_RSP_DROPPED, -2)                      \
    CONSTANT(PVKIT_NETIF_RSP_ERROR, -1)                        \
    CONSTANT(PVKIT_NETIF_RSP_OKAY, 0)                          \
    CONSTANT(PVKIT_NETIF_RSP_NULL, 1)                          \
    CONSTANT(PVKIT_NETIF_MAX_PACKET, 65535)                    \
    CONSTANT(PVKIT_NETIF_MAX_TX_FRAGS, 18)                     \
    CONSTANT(PVKIT_NETIF_EXTRA_TYPE_NONE, 0)                   \
    CONSTANT(PVKIT_NETIF_EXTRA_TYPE_GSO, 1)                    \
    CONSTANT(PVKIT_NETIF_EXTRA_TYPE_MCAST_ADD, 2)              \
    CONSTANT(PVKIT_NETIF_EXTRA_TYPE_MCAST_DEL, 3)              \
    CONSTANT(PVKIT_NETIF_EXTRA_TYPE_MAX, 4)                    \
    CONSTANT(PVKIT_NETIF_EXTRA_FLAG_MORE, 0x1)                 \
    CONSTANT(PVKIT_NETIF_GSO_TYPE_NONE, 0)                     \
    CONSTANT(PVKIT_NETIF_GSO_TYPE_TCPV4, 1)                    \
    CONSTANT(PVKIT_NETIF_GSO_TYPE_TCPV6, 2)                    \
    /* store.h */                                              \
    CONSTANT(PVKIT_STORE_CONTROL, 0)                           \
    CONSTANT(PVKIT_STORE_DIRECTORY, 1)                         \
    CONSTANT(PVKIT_STORE_READ, 2)                              \
    CONSTANT(PVKIT_STORE_GET_PERMS, 3)                         \
    CONSTANT(PVKIT_STORE_WATCH, 4)                             \
    CONSTANT(PVKIT_STORE_UNWATCH, 5)                           \
    CONSTANT(PVKIT_STORE_TRANSACTION_START, 6)                 \
    CONSTANT(PVKIT_STORE_TRANSACTION_END, 7)                   \
    CONSTANT(PVKIT_STORE_INTRODUCE, 8)                         \
    CONSTANT(PVKIT_STORE_RELEASE, 9)                           \
    CONSTANT(PVKIT_STORE_GET_DOMAIN_PATH, 10)                  \
    CONSTANT(PVKIT_STORE_WRITE, 11)                            \
    CONSTANT(PVKIT_STORE_MKDIR, 12)                            \
    CONSTANT(PVKIT_STORE_RM, 13)                               \
    CONSTANT(PVKIT_STORE_SET_PERMS, 14)                        \
    CONSTANT(PVKIT_STORE_WATCH_EVENT, 15)                      \
    CONSTANT(PVKIT_STORE_ERROR, 16)                            \
    CONSTANT(PVKIT_STORE_IS_DOMAIN_INTRODUCED, 17)             \
    CONSTANT(PVKIT_STORE_RESUME, 18)                           \
    CONSTANT(PVKIT_STORE_SET_TARGET, 19)                       \
    CONSTANT(PVKIT_STORE_RESET_WATCHES, 21)                    \
    CONSTANT(PVKIT_STORE_DIRECTORY_PART, 22)                   \
    CONSTANT(PVKIT_STORE_OP_COUNT, 23)                         \
    CONSTANT(PVKIT_STORE_PAYLOAD_MAX, 4096)                    \
    CONSTANT(PVKIT_STORE_ABS_PATH_MAX, 3072)                   \
    CONSTANT(PVKIT_STORE_REL_PATH_MAX, 2048)                   \
    CONSTANT(PVKIT_STORE_RING_SIZE, 1024)                      \
    CONSTANT(PVKIT_STORE_RING_CONNECTED, 0)                    \
    CONSTANT(PVKIT_STORE_RING_DISCONNECTED, 1)                 \
    CONSTANT(PVKIT_STORE_RING_ERR_NONE, 0)                     \
    CONSTANT(PVKIT_STORE_RING_ERR_PROTO, 1)

/*
 * What abi_layout_c.c reports: one row per measured quantity, named so a
 * mismatch says exactly which field or constant differs.
 */
enum pvkit_test_layout_kind {
    PVKIT_TEST_SIZEOF = 0,      /* sizeof(type) */
    PVKIT_TEST_OFFSETOF = 1,    /* offsetof(type, field) */
    PVKIT_TEST_FIELD_SIZE = 2,  /* sizeof(((type *)0)->field) */
    PVKIT_TEST_CONSTANT = 3     /* the value of a #define */
};

struct pvkit_test_layout_row {
    int kind;          /* enum pvkit_test_layout_kind */
    const char *type;  /* type name, or the constant's name */
    const char *field; /* field path, or "" */
    long long value;   /* as measured by the C compiler */
};

#ifdef __cplusplus
extern "C" {
#endif
/* Defined in abi_layout_c.c, compiled as C11. Returns the row count. */
unsigned pvkit_test_abi_layout_from_c(const struct pvkit_test_layout_row **rows);
#ifdef __cplusplus
}
#endif

#endif /* PVKIT_TEST_ABI_LAYOUT_SPEC_H */
