#include "pvkit_guest/fmt.h"

#include <stdint.h>

/*
 * Written for the CPL0 emulator as much as for the compiler: the output
 * position and limit stay in locals (registers), so a literal character
 * costs a load, a compare and a store. An earlier version that passed an
 * output struct by pointer kept them in memory and cost about 10 us per
 * character at CPL0 on the development hosts.
 */
size_t fmt_vformat(char* buf, size_t size, const char* fmt, va_list ap) {
    if (size == 0)
        return 0;
    const size_t cap = size - 1;
    size_t len = 0;
    for (const char* p = fmt; *p != '\0'; ++p) {
        if (*p != '%') {
            if (len < cap)
                buf[len++] = *p;
            continue;
        }
        ++p;
        char pad = ' ';
        size_t width = 0;
        int longs = 0;
        if (*p == '0') {
            pad = '0';
            ++p;
        }
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (size_t)(*p++ - '0');
        while (*p == 'l' || *p == 'z') {
            ++longs;
            ++p;
        }
        /* Each conversion produces [text, text + n), then pads to width. */
        char digits[24];
        const char* text = digits;
        size_t n = 0;
        int negative = 0;
        uint64_t value = 0;
        unsigned base = 0;
        switch (*p) {
        case 's':
            text = va_arg(ap, const char*);
            if (text == NULL)
                text = "(null)";
            while (text[n] != '\0')
                ++n;
            break;
        case 'c':
            digits[0] = (char)va_arg(ap, int);
            n = 1;
            break;
        case 'd':
        case 'i': {
            int64_t v = longs > 0 ? va_arg(ap, int64_t) : va_arg(ap, int);
            value = (uint64_t)v;
            if (v < 0) {
                negative = 1;
                value = 0 - value;
            }
            base = 10;
            break;
        }
        case 'u':
            value = longs > 0 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            base = 10;
            break;
        case 'x':
            value = longs > 0 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            base = 16;
            break;
        case 'p':
            value = (uint64_t)(uintptr_t)va_arg(ap, void*);
            base = 16;
            if (len + 2 <= cap) {
                buf[len++] = '0';
                buf[len++] = 'x';
            }
            break;
        case '%':
            digits[0] = '%';
            n = 1;
            break;
        case '\0':
            --p; /* a lone % at the end: stop at the NUL */
            continue;
        default:
            digits[0] = '%';
            digits[1] = *p;
            n = 2;
            break;
        }
        if (base != 0) {
            /* Digits are produced backwards into the end of the array. */
            size_t at = sizeof digits;
            do {
                unsigned d = (unsigned)(value % base);
                digits[--at] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
                value /= base;
            } while (value != 0);
            if (negative)
                digits[--at] = '-';
            text = digits + at;
            n = sizeof digits - at;
        }
        for (; width > n && len < cap; --width)
            buf[len++] = pad;
        for (size_t i = 0; i < n && len < cap; ++i)
            buf[len++] = text[i];
    }
    buf[len] = '\0';
    return len;
}

size_t fmt_format(char* buf, size_t size, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = fmt_vformat(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
