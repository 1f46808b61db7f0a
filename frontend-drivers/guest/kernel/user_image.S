/*
 * The user image (built separately, see CMakeLists.txt), embedded at the
 * start of the user region. PVKIT_USER_IMAGE_BIN is its path.
 */
    .section .user_image, "awx"
    .globl __user_image
__user_image:
    .incbin PVKIT_USER_IMAGE_BIN

    .section .note.GNU-stack, "", @progbits
