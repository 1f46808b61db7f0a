/*
 * The memory and string functions the guest needs (the compiler also emits
 * calls to memcpy and memset on its own). Compiled separately into the
 * kernel and into the user image.
 */
#ifndef PVKIT_GUEST_MEM_H
#define PVKIT_GUEST_MEM_H

#include <stddef.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
size_t strnlen(const char* s, size_t max);
int strcmp(const char* a, const char* b);

#endif /* PVKIT_GUEST_MEM_H */
