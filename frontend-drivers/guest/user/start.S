/*
 * The user image's start routine: the kernel enters user mode here with
 * RDI = the program's main and RSP = the top of the user stack (16-byte
 * aligned). main's return value becomes the SYS_EXIT status.
 */
    .text
    .globl user_start
user_start:
    xor %ebp, %ebp
    call *%rdi
    mov %eax, %edi
    movslq %edi, %rdi
    xor %eax, %eax          /* SYS_EXIT */
    int $0x80
1:  jmp 1b                  /* SYS_EXIT does not return */

    .section .note.GNU-stack, "", @progbits
