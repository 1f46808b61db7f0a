/* The user-mode side of the mini guest's system calls, and printing. */
#ifndef PVKIT_MINI_ULIB_H
#define PVKIT_MINI_ULIB_H

#include <pvkit/start_info.h>
#include <stddef.h>
#include <stdint.h>

#include "pvkit_guest/events.h"
#include "pvkit_guest/syscall.h"

long sys_call5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
long sys_write(const void* buf, size_t len);
long sys_info(unsigned key);
void sys_yield(void);
long sys_hypercall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4);

int uprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- event channels and devices ---- */
long sys_evtchn_alloc(uint16_t remote_dom);
long sys_evtchn_bind_loopback(uint32_t remote_port);
long sys_evtchn_close(uint32_t port);
/* 1 when `port` (0: any) is pending, 0 after timeout_us (0: none). */
long sys_evtchn_wait(uint32_t port, uint64_t timeout_us);
long sys_device_connect(uint32_t pool_index, uint32_t port);
void sys_post(uint8_t code);

/* The start-info page, which the kernel maps readable for programs. */
const struct pvkit_start_info* start_info(void);
/* Kicks `port`: one 32-bit MMIO write to the doorbell, from user mode. */
void evtchn_notify(uint32_t port);
int evtchn_pending(uint32_t port);
/* Clears the pending bit; returns whether it was set. */
int evtchn_test_and_clear(uint32_t port);
volatile struct pvkit_guest_events* guest_events(void);

/* The value of `key=value` on the kernel command line (space-separated
 * words), NUL-terminated in buf: its length, -PVKIT_ENOENT if the key is
 * absent, -PVKIT_E2BIG if buf cannot hold it. */
int cmdline_value(const char* key, char* buf, uint32_t size);
/* A decimal value: 1 and *value, 0 if the key is absent, -PVKIT_EINVAL if
 * it is not a number below 2^63. */
int cmdline_u64(const char* key, uint64_t* value);

/* Checks for test programs: one line per check, a summary at the end. */
void check(const char* what, int ok, long got);
void check_eq(const char* what, long got, long want);
/* Like check_eq, but prints only a failure (checks repeated in loops). */
void check_quiet(const char* what, long got, long want);
/* 0 if every check passed, else 1; prints "<name>: N passed, M failed". */
int check_summary(const char* name);

/* The privilege level this code runs at (CS.RPL). */
unsigned current_cpl(void);

#endif /* PVKIT_MINI_ULIB_H */
