/*
 * Every ABI header included together into one translation unit, as a guest
 * that drives a block device, a network device and the store ring does.
 * The build's self-check compiles each header on its own, which cannot see
 * two headers defining the same name. ctest compiles this file as C11 and
 * as C++20 with warnings as errors (see CMakeLists.txt); it must compile.
 */
#include <pvkit/abi.h>
#include <pvkit/blkif.h>
#include <pvkit/evtchn.h>
#include <pvkit/grant.h>
#include <pvkit/hypercall.h>
#include <pvkit/netif.h>
#include <pvkit/ring.h>
#include <pvkit/start_info.h>
#include <pvkit/store.h>

/* The store's RELEASE operation number and the ring's functions both in use. */
int pvkit_abi_headers_together(struct pvkit_back_ring *br);
int pvkit_abi_headers_together(struct pvkit_back_ring *br)
{
    return pvkit_back_ring_push_responses(br) + PVKIT_CAST(int, PVKIT_STORE_RELEASE);
}
