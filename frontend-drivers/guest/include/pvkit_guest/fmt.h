/*
 * A small printf-style formatter, compiled separately into the kernel and
 * into the user image. Conversions: %s %c %d %i %u %x %p %%, with the
 * length modifiers l, ll and z, a field width and the 0 flag.
 */
#ifndef PVKIT_GUEST_FMT_H
#define PVKIT_GUEST_FMT_H

#include <stdarg.h>
#include <stddef.h>

/* Like vsnprintf: always NUL-terminates (size > 0) and returns the number
 * of bytes written, without the NUL (never more than size - 1). */
size_t fmt_vformat(char* buf, size_t size, const char* fmt, va_list ap);
size_t fmt_format(char* buf, size_t size, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* PVKIT_GUEST_FMT_H */
