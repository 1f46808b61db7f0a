/*
 * pool-test: the grant pool of device 0, as the guest sees it at the
 * address the start-info page gives. The VMM wrote the pool's header; the
 * host (tests/vmm) wrote a pattern into the first data frame through the
 * pool's memfd before the guest started. The program checks both, then
 * writes its own pattern into the second data frame for the host to read.
 */
#include <pvkit/grant.h>

#include "programs.h"
#include "pvkit_guest/pool_pattern.h"
#include "ulib.h"

int pool_test_main(void) {
    const struct pvkit_start_info* si = start_info();
    check("the VMM lists a device", si->nr_devices >= 1, (long)si->nr_devices);
    if (si->nr_devices < 1)
        return check_summary("pool-test");
    const struct pvkit_start_device* dev = &si->devices[0];
    uprintf("pool-test: device type %u devid %u, pool at 0x%lx, %lu bytes\n", dev->type, dev->devid,
            dev->pool_gpa, dev->pool_size);
    const volatile struct pvkit_grant_pool_header* hdr =
        (const volatile struct pvkit_grant_pool_header*)(uintptr_t)dev->pool_gpa;
    check("header magic", hdr->magic == PVKIT_GRANT_POOL_MAGIC, (long)hdr->magic);
    check_eq("header owner = this domain", hdr->owner, sys_info(SYS_INFO_DOMID));
    check_eq("header nr_frames * 4096 = pool size", (long)hdr->nr_frames * 4096,
             (long)dev->pool_size);
    const uint32_t first = hdr->data_first;
    check("two data frames", first >= 1 && first + 2 <= hdr->nr_frames, (long)first);
    if (first < 1 || first + 2 > hdr->nr_frames)
        return check_summary("pool-test");

    const volatile uint8_t* in =
        (const volatile uint8_t*)(uintptr_t)(dev->pool_gpa + first * 4096ull);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < 4096; ++i) {
        if (in[i] != pool_host_byte(i))
            ++bad;
    }
    check_eq("bytes of the host's pattern that differ", bad, 0);
    volatile uint8_t* out = (volatile uint8_t*)(uintptr_t)(dev->pool_gpa + (first + 1) * 4096ull);
    for (uint32_t i = 0; i < 4096; ++i)
        out[i] = pool_guest_byte(i);
    uprintf("pool-test: wrote the guest pattern into data frame %u\n", first + 1);
    return check_summary("pool-test");
}
