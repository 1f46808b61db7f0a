/*
 * The mini guest's store client: pvkit-stored's protocol (pvkit/store.h)
 * over the guest's store ring, from user mode.
 *
 * The ring page and the doorbell are mapped into user mode, so a request
 * costs no system call: the program copies the message into the ring,
 * kicks the store port with one MMIO write (KVM signals the VMM's relay
 * thread through an ioeventfd), and spins on the ring for the reply; only
 * if none comes within the spin does it sleep in SYS_EVTCHN_WAIT until
 * the relay's interrupt. One request at a time; watch events that arrive
 * meanwhile are queued (at most XS_EVENT_QUEUE, older ones win; the rest
 * are counted as dropped).
 *
 * Every function returns 0 (or a length) on success and a negative
 * PVKIT_E* number on failure: the daemon's error names mapped back to
 * numbers, -PVKIT_ENOTCONN when the VMM disconnected the ring,
 * -PVKIT_EIO when no reply came within XS_REPLY_TIMEOUT_US, -PVKIT_EPROTO
 * for a malformed reply. `tx` is 0 outside a transaction.
 */
#ifndef PVKIT_MINI_USTORE_H
#define PVKIT_MINI_USTORE_H

#include <stdint.h>

#define XS_EVENT_QUEUE 8u
#define XS_EVENT_MAX 512u
#define XS_REPLY_TIMEOUT_US 10000000ull

/* 0, or -PVKIT_ENOSYS when the VMM offers no store ring. */
int xs_init(void);
uint32_t xs_port(void);

/* The value, NUL-terminated when it fits: returns its length; -PVKIT_E2BIG
 * if `size` cannot hold it. */
int xs_read(uint32_t tx, const char* path, char* buf, uint32_t size);
int xs_write(uint32_t tx, const char* path, const char* value);
int xs_write_bytes(uint32_t tx, const char* path, const void* value, uint32_t len);
int xs_mkdir(uint32_t tx, const char* path);
int xs_rm(uint32_t tx, const char* path);
/* Children as NUL-terminated names one after the other; returns the bytes. */
int xs_directory(uint32_t tx, const char* path, char* buf, uint32_t size);
/* Permissions as NUL-terminated entries ("n5", "r0"); returns the bytes. */
int xs_get_perms(const char* path, char* buf, uint32_t size);
int xs_watch(const char* path, const char* token);
int xs_unwatch(const char* path, const char* token);
int xs_tx_start(uint32_t* tx);
/* commit != 0 commits (-PVKIT_EAGAIN on conflict); 0 aborts. */
int xs_tx_end(uint32_t tx, int commit);
/* The next watch event: 1 with path and token filled in, 0 if none came
 * within timeout_us. */
int xs_wait_event(char* path, uint32_t path_size, char* token, uint32_t token_size,
                  uint64_t timeout_us);

struct xs_counters {
    uint64_t requests;
    uint64_t kicks;
    uint64_t sleeps;         /* SYS_EVTCHN_WAIT calls */
    uint64_t events_dropped; /* watch events lost to a full queue */
};
const struct xs_counters* xs_counters(void);

#endif /* PVKIT_MINI_USTORE_H */
