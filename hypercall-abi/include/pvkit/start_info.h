/*
 * pvkit hypercall ABI: the start-info page.
 *
 * The VMM writes one page of start information before the first vCPU runs
 * and passes its guest-physical address in RSI at entry (and through CPUID
 * leaf PVKIT_CPUID_INFO and PVKIT_HC_START_INFO). Every address in it is a
 * guest-physical address inside guest RAM or a pvkit region described by
 * the memory map. The guest treats the page as read-only input.
 */
#ifndef PVKIT_START_INFO_H
#define PVKIT_START_INFO_H

#include "abi.h"

#define PVKIT_START_INFO_MAGIC 0x314f464e49534b50ull /* "PKSINFO1" */

/* Memory-map entry types. */
#define PVKIT_MEM_RAM 1u        /* ordinary RAM the guest may use */
#define PVKIT_MEM_RESERVED 2u   /* start info, page tables, hypercall page */
#define PVKIT_MEM_GRANT_POOL 3u /* a device's grant pool (shared with a backend) */
#define PVKIT_MEM_MMIO 4u       /* doorbell page, emulated device registers */

/* Written by: VMM. */
struct pvkit_memmap_entry {
    uint64_t addr; /* guest-physical base, page aligned */
    uint64_t size; /* bytes, multiple of PVKIT_PAGE_SIZE */
    uint32_t type; /* PVKIT_MEM_* */
    uint32_t pad;
};
PVKIT_ABI_SIZE(struct pvkit_memmap_entry, 24);
PVKIT_ABI_OFFSET(struct pvkit_memmap_entry, type, 16);

/* Device types and the names of their store directories (device/<name>). */
#define PVKIT_DEV_BLK 1u
#define PVKIT_DEV_NET 2u
#define PVKIT_DEV_BLK_NAME "vbd"
#define PVKIT_DEV_NET_NAME "vif"
/* Device ids fit the 16-bit handle of blkif requests. */
#define PVKIT_DEVID_MAX 0xffffu

/*
 * One PV device the toolstack configured. The store holds the rest (backend
 * domain, features); this entry only tells the guest where the device's
 * grant pool lives so it does not need a hypercall before its first store
 * access. Written by: VMM.
 */
struct pvkit_start_device {
    uint32_t type;       /* PVKIT_DEV_* */
    uint32_t devid;      /* the <devid> in the device's store path */
    uint32_t pool_index; /* argument for PVKIT_HC_GRANT_POOL_QUERY */
    uint32_t pad;
    uint64_t pool_gpa;  /* guest-physical base of the grant pool */
    uint64_t pool_size; /* bytes */
};
PVKIT_ABI_SIZE(struct pvkit_start_device, 32);
PVKIT_ABI_OFFSET(struct pvkit_start_device, pool_gpa, 16);

#define PVKIT_START_INFO_MAX_MEMMAP 32u
#define PVKIT_START_INFO_MAX_DEVICES 16u
#define PVKIT_START_INFO_CMDLINE_MAX 1024u

/* Written by: VMM. Exactly one page. */
struct pvkit_start_info {
    uint64_t magic;       /* PVKIT_START_INFO_MAGIC */
    uint32_t abi_version; /* PVKIT_ABI_VERSION */
    pvkit_domid_t domid;  /* this guest's domain id */
    uint16_t pad0;
    uint64_t features;           /* PVKIT_FEAT_* */
    uint64_t nr_ram_pages;       /* guest RAM, in pages */
    uint64_t hypercall_page_gpa; /* page of hypercall stubs */
    uint64_t doorbell_gpa;       /* MMIO doorbell page, see evtchn.h */
    uint64_t store_ring_gpa;     /* struct pvkit_store_ring page */
    uint32_t store_evtchn;       /* port the VMM relays the store ring on */
    uint32_t console_flags;      /* reserved, 0 */
    uint32_t nr_memmap;          /* valid entries in memmap[] */
    uint32_t nr_devices;         /* valid entries in devices[] */
    uint32_t cmdline_len;        /* bytes in cmdline, without a NUL */
    uint32_t pad1;
    struct pvkit_memmap_entry memmap[PVKIT_START_INFO_MAX_MEMMAP];
    struct pvkit_start_device devices[PVKIT_START_INFO_MAX_DEVICES];
    char cmdline[PVKIT_START_INFO_CMDLINE_MAX]; /* NUL terminated as well */
    uint8_t reserved[PVKIT_PAGE_SIZE - 80 - 24 * PVKIT_START_INFO_MAX_MEMMAP -
                     32 * PVKIT_START_INFO_MAX_DEVICES - PVKIT_START_INFO_CMDLINE_MAX];
};
PVKIT_ABI_SIZE(struct pvkit_start_info, PVKIT_PAGE_SIZE);
PVKIT_ABI_OFFSET(struct pvkit_start_info, features, 16);
PVKIT_ABI_OFFSET(struct pvkit_start_info, store_evtchn, 56);
PVKIT_ABI_OFFSET(struct pvkit_start_info, memmap, 80);
PVKIT_ABI_OFFSET(struct pvkit_start_info, devices, 848);
PVKIT_ABI_OFFSET(struct pvkit_start_info, cmdline, 1360);

#endif /* PVKIT_START_INFO_H */
