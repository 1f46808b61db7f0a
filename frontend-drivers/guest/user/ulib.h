/* The user-mode side of the mini guest's system calls, and printing. */
#ifndef PVKIT_MINI_ULIB_H
#define PVKIT_MINI_ULIB_H

#include <stddef.h>
#include <stdint.h>

#include "pvkit_guest/syscall.h"

long sys_call5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
long sys_write(const void* buf, size_t len);
long sys_info(unsigned key);
void sys_yield(void);
long sys_hypercall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4);

int uprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* The privilege level this code runs at (CS.RPL). */
unsigned current_cpl(void);

#endif /* PVKIT_MINI_ULIB_H */
