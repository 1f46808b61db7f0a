/*
 * The user image: the programs that run in guest user mode, linked on
 * their own at PVKIT_GUEST_USER_BASE (so they share no code with the
 * kernel, not even memcpy) and embedded in the kernel ELF at that address.
 * It starts with this header, which the kernel validates before it uses
 * any field.
 */
#ifndef PVKIT_GUEST_USER_IMAGE_H
#define PVKIT_GUEST_USER_IMAGE_H

#include <stdint.h>

/* The user region is the 2 MiB page [2 MiB, 4 MiB): image, then stack. */
#define PVKIT_GUEST_USER_BASE 0x200000ull
#define PVKIT_GUEST_USER_END 0x400000ull

#define PVKIT_USER_IMAGE_MAGIC 0x31474d494b565550ull /* "PUVKIMG1" */
#define PVKIT_USER_MAX_PROGRAMS 16u
#define PVKIT_USER_NAME_MAX 24u

/* The program may use SYS_HYPERCALL. */
#define PVKIT_USER_RAW_HYPERCALLS 0x1u

struct pvkit_user_program {
    char name[PVKIT_USER_NAME_MAX]; /* NUL-terminated */
    uint64_t main;                  /* int main(void), called by the start routine */
    uint32_t flags;                 /* PVKIT_USER_* */
    uint32_t pad;
};

struct pvkit_user_image {
    uint64_t magic; /* PVKIT_USER_IMAGE_MAGIC */
    uint64_t base;  /* address the image was linked at */
    uint64_t end;   /* one past its last byte */
    uint64_t start; /* start routine: calls main(RDI), then SYS_EXIT with its result */
    uint32_t nr_programs;
    uint32_t pad;
    struct pvkit_user_program programs[PVKIT_USER_MAX_PROGRAMS];
};

#endif /* PVKIT_GUEST_USER_IMAGE_H */
