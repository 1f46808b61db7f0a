/*
 * Kernel entry, exception and system-call stubs, and the switch to user
 * mode. pvkit-vmm starts the vCPU here in 64-bit mode: paging on, RIP =
 * _start, RSI = start-info GPA, RSP = top of the boot stack (which is also
 * TSS.RSP0, the stack every entry from user mode starts on), IF = 0.
 */
    .section .text.entry, "ax"
    .globl _start
_start:
    mov %rsi, %rdi          /* kmain(start_info_gpa) */
    xor %ebp, %ebp          /* end of the frame-pointer chain */
    call kmain
1:  cli
    hlt
    jmp 1b

/*
 * One stub per vector, in the same section as _start so that the IDT
 * below can be computed by the assembler. The CPU pushes an error code for some exceptions
 * only; the others push 0 so every frame has the same layout
 * (struct trap_frame in kernel.h).
 */
    .macro TRAP_NOERR vec
    .globl trap_\vec
trap_\vec:
    pushq $0
    pushq $\vec
    jmp trap_common
    .endm

    .macro TRAP_ERR vec
    .globl trap_\vec
trap_\vec:
    pushq $\vec
    jmp trap_common
    .endm

    TRAP_NOERR 0
    TRAP_NOERR 1
    TRAP_NOERR 2
    TRAP_NOERR 3
    TRAP_NOERR 4
    TRAP_NOERR 5
    TRAP_NOERR 6
    TRAP_NOERR 7
    TRAP_ERR   8
    TRAP_NOERR 9
    TRAP_ERR   10
    TRAP_ERR   11
    TRAP_ERR   12
    TRAP_ERR   13
    TRAP_ERR   14
    TRAP_NOERR 15
    TRAP_NOERR 16
    TRAP_ERR   17
    TRAP_NOERR 18
    TRAP_NOERR 19
    TRAP_NOERR 20
    TRAP_ERR   21
    TRAP_NOERR 22
    TRAP_NOERR 23
    TRAP_NOERR 24
    TRAP_NOERR 25
    TRAP_NOERR 26
    TRAP_NOERR 27
    TRAP_NOERR 28
    TRAP_ERR   29
    TRAP_ERR   30
    TRAP_NOERR 31
    TRAP_NOERR 128

/*
 * Interrupts. The local APIC delivers each event-channel port's vector
 * (the VMM routes the port's irqfd there), the APIC timer's and the
 * spurious vector. On the development hosts every instruction here is
 * emulated (~0.7 us each), so the event path is a dozen instructions of
 * assembly and no C: set the port's bit in the event page
 * (pvkit_guest/events.h), count, end of interrupt, return. Whoever waits
 * for the port looks at the bit.
 *
 * One 16-byte stub per vector 0x30..0xef, in order, so the IDT below can
 * compute each address: stub i is at irq_stubs + 16 * i. (0x80 has a stub
 * too but no gate: it is the system-call vector.)
 */
    .set EVENTS_VA, 0x3ff000            /* PVKIT_GUEST_EVENTS_VA */
    .set X2APIC_EOI, 0x80b

    .balign 16
    .globl irq_stubs
irq_stubs:
    .set v, 0x30
    .rept 192
    .balign 16
    push %rax
    mov $(v-0x30), %eax
    jmp evtchn_common
    .set v, v+1
    .endr

    .balign 16
    .globl evtchn_common
evtchn_common:
    push %rcx
    push %rdx
    movzwl evtchn_vector_port(,%rax,2), %eax   /* 0: no port on this vector */
    test %eax, %eax
    jz 1f
    lock btsq %rax, EVENTS_VA                 /* pending bit of the port */
1:  lock incq EVENTS_VA + 128                 /* interrupts */
apic_eoi_return:
    mov $X2APIC_EOI, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .globl irq_timer
irq_timer:
    push %rax
    push %rcx
    push %rdx
    lock incq EVENTS_VA + 136                 /* timer_fired */
    jmp apic_eoi_return

    /* The spurious vector needs no end of interrupt. */
    .globl irq_spurious
irq_spurious:
    iretq

trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld                     /* the C code assumes DF = 0; user mode may have set it */
    mov %rsp, %rdi
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp           /* vector and error code */
    iretq

/*
 * The IDT, complete at build time: no instruction at CPL0 is spent on it
 * (on the development hosts each costs about 0.7 us; filling 33 gates at
 * run time took 0.4 ms). A gate splits its handler's address into 16, 16
 * and 32 bits, which no relocation can express; but _start is at
 * KERNEL_BASE (kernel.ld asserts it), whose low 16 bits are zero, and the
 * stubs lie within 64 KiB of it, so each part is a constant the assembler
 * computes from `trap_N - _start`.
 */
    .set KERNEL_BASE, 0x100000
    .set KERNEL_CS, 0x08
    .set GATE_KERNEL, 0x8e00        /* present, DPL0, 64-bit interrupt gate */
    .set GATE_KERNEL_IST1, 0x8e01   /* the same on TSS.IST1 (set up by the VMM) */
    .set GATE_USER, 0xee00          /* present, DPL3: `int $0x80` from CPL3 */

    .macro GATE vec, flags
    .word (trap_\vec - _start) & 0xffff
    .word KERNEL_CS
    .word \flags
    .word (KERNEL_BASE >> 16) + ((trap_\vec - _start) >> 16)
    .long 0
    .long 0
    .endm

    /* A gate for a handler at offset `off` from _start. */
    .macro GATE_AT off, flags
    .word (\off) & 0xffff
    .word KERNEL_CS
    .word \flags
    .word (KERNEL_BASE >> 16) + ((\off) >> 16)
    .long 0
    .long 0
    .endm

    .section .rodata
    .balign 16
    .globl idt_table
idt_table:
    GATE 0, GATE_KERNEL
    GATE 1, GATE_KERNEL
    GATE 2, GATE_KERNEL_IST1        /* NMI */
    GATE 3, GATE_KERNEL
    GATE 4, GATE_KERNEL
    GATE 5, GATE_KERNEL
    GATE 6, GATE_KERNEL
    GATE 7, GATE_KERNEL
    GATE 8, GATE_KERNEL_IST1        /* #DF: the kernel stack may be what failed */
    GATE 9, GATE_KERNEL
    GATE 10, GATE_KERNEL
    GATE 11, GATE_KERNEL
    GATE 12, GATE_KERNEL
    GATE 13, GATE_KERNEL
    GATE 14, GATE_KERNEL
    GATE 15, GATE_KERNEL
    GATE 16, GATE_KERNEL
    GATE 17, GATE_KERNEL
    GATE 18, GATE_KERNEL_IST1       /* #MC */
    GATE 19, GATE_KERNEL
    GATE 20, GATE_KERNEL
    GATE 21, GATE_KERNEL
    GATE 22, GATE_KERNEL
    GATE 23, GATE_KERNEL
    GATE 24, GATE_KERNEL
    GATE 25, GATE_KERNEL
    GATE 26, GATE_KERNEL
    GATE 27, GATE_KERNEL
    GATE 28, GATE_KERNEL
    GATE 29, GATE_KERNEL
    GATE 30, GATE_KERNEL
    GATE 31, GATE_KERNEL
    /* No gate for 0x20..0x2f: one arriving raises #GP, which is reported. */
    .fill (0x30 - 32) * 16, 1, 0
    /* Event channels, 0x30..0xef around the system-call gate. */
    .set v, 0x30
    .rept 0x80 - 0x30
    GATE_AT (irq_stubs-_start+16*(v-0x30)), GATE_KERNEL
    .set v, v+1
    .endr
    GATE 128, GATE_USER
    .set v, 0x81
    .rept 0xf0 - 0x81
    GATE_AT (irq_stubs-_start+16*(v-0x30)), GATE_KERNEL
    .set v, v+1
    .endr
    GATE_AT (irq_timer-_start), GATE_KERNEL      /* 0xf0 */
    .fill (0xff - 0xf1) * 16, 1, 0
    GATE_AT (irq_spurious-_start), GATE_KERNEL   /* 0xff */
    .globl idt_table_end
idt_table_end:

    .text
/*
 * enter_user(entry, arg, stack): iretq to CPL3 at `entry` with RDI = arg,
 * RSP = stack, IF = 1. Every other register is cleared so no kernel value
 * reaches user mode. Selectors: user data 0x18 | 3, user code 0x20 | 3.
 */
    .globl enter_user
enter_user:
    pushq $0x1b             /* SS */
    pushq %rdx              /* RSP */
    pushq $0x202            /* RFLAGS: IF, reserved bit 1 */
    pushq $0x23             /* CS */
    pushq %rdi              /* RIP */
    mov %rsi, %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

    .section .note.GNU-stack, "", @progbits
