/* System calls from user programs (pvkit_guest/syscall.h). */
#include <pvkit/hypercall.h>

#include "arch.h"
#include "kernel.h"
#include "pvkit_guest/syscall.h"
#include "pvkit_guest/user_image.h"

/* Whether [addr, addr + len) lies in the user region, without overflow. */
static int user_range_ok(uint64_t addr, uint64_t len) {
    return addr >= PVKIT_GUEST_USER_BASE && addr <= PVKIT_GUEST_USER_END &&
           len <= PVKIT_GUEST_USER_END - addr;
}

static long sys_write(uint64_t buf, uint64_t len) {
    if (!user_range_ok(buf, len))
        return -PVKIT_EFAULT;
    /* The buffer is handed to the VMM by address (identity mapping); the
     * VMM copies it before it looks at it. */
    uint64_t done = 0;
    while (done < len) {
        uint64_t chunk = len - done;
        if (chunk > PVKIT_CONSOLE_WRITE_MAX)
            chunk = PVKIT_CONSOLE_WRITE_MAX;
        long r = hypercall5(PVKIT_HC_CONSOLE_WRITE, buf + done, chunk, 0, 0, 0);
        if (r < 0)
            return done > 0 ? (long)done : r;
        if (r == 0)
            break;
        done += (uint64_t)r;
    }
    return (long)done;
}

static long sys_info(uint64_t key) {
    switch (key) {
    case SYS_INFO_RAM_BYTES:
        return (long)g_boot.ram_bytes;
    case SYS_INFO_START_INFO_GPA:
        return (long)g_boot.start_info_gpa;
    case SYS_INFO_HYPERCALL_GPA:
        return (long)g_boot.hypercall_gpa;
    case SYS_INFO_DOMID:
        return (long)g_boot.start_info->domid;
    default:
        return -PVKIT_EINVAL;
    }
}

void syscall_dispatch(struct trap_frame* f) {
    long ret;
    switch (f->rax) {
    case SYS_EXIT:
        program_exit((long)f->rdi);
    case SYS_WRITE:
        ret = sys_write(f->rdi, f->rsi);
        break;
    case SYS_YIELD:
        ret = hypercall5(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_YIELD, 0, 0, 0, 0);
        break;
    case SYS_HYPERCALL:
        if ((g_current_flags & PVKIT_USER_RAW_HYPERCALLS) == 0)
            ret = -PVKIT_EPERM;
        else
            ret = hypercall5(f->rdi, f->rsi, f->rdx, f->r10, f->r8, 0);
        break;
    case SYS_INFO:
        ret = sys_info(f->rdi);
        break;
    case SYS_EVTCHN_ALLOC:
        ret = sys_evtchn_alloc(f->rdi);
        break;
    case SYS_EVTCHN_BIND_LOOPBACK:
        ret = sys_evtchn_bind_loopback(f->rdi);
        break;
    case SYS_EVTCHN_CLOSE:
        ret = sys_evtchn_close(f->rdi);
        break;
    case SYS_EVTCHN_WAIT:
        ret = sys_evtchn_wait(f->rdi, f->rsi);
        break;
    case SYS_DEVICE_CONNECT:
        ret = sys_device_connect(f->rdi, f->rsi);
        break;
    case SYS_POST:
        outb(0x80, (uint8_t)f->rdi);
        ret = 0;
        break;
    default:
        ret = -PVKIT_ENOSYS;
        break;
    }
    f->rax = (uint64_t)ret;
}
