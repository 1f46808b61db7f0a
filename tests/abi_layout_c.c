/*
 * The ABI spec table measured by the C compiler. This file is compiled as
 * C11 (not C++), with the same headers the guests include, so that
 * abi_layout_test.cpp can compare what C and C++ make of every structure
 * and constant: a header that relied on a C++-only rule (or a C-only one)
 * would otherwise go unnoticed until a guest and a backend disagreed.
 */
#include "abi_layout_spec.h"

#define PVKIT_C_ROW_SCALAR(type, size) {PVKIT_TEST_SIZEOF, #type, "", (long long)sizeof(type)},
#define PVKIT_C_ROW_TYPE(type, size) {PVKIT_TEST_SIZEOF, #type, "", (long long)sizeof(type)},
/* sizeof on a member of a null pointer is the portable C spelling of
 * "size of this field"; it is never evaluated. */
#define PVKIT_C_ROW_FIELD(type, field, off, size)                          \
    {PVKIT_TEST_OFFSETOF, #type, #field, (long long)offsetof(type, field)}, \
    {PVKIT_TEST_FIELD_SIZE, #type, #field, (long long)sizeof(((type *)0)->field)},
#define PVKIT_C_ROW_CONSTANT(name, value) {PVKIT_TEST_CONSTANT, #name, "", (long long)(name)},

static const struct pvkit_test_layout_row pvkit_c_rows[] = {
    PVKIT_SPEC_SCALARS(PVKIT_C_ROW_SCALAR)
    PVKIT_SPEC_ALL_LAYOUTS(PVKIT_C_ROW_TYPE, PVKIT_C_ROW_TYPE, PVKIT_C_ROW_FIELD, PVKIT_C_ROW_FIELD)
    PVKIT_SPEC_CONSTANTS(PVKIT_C_ROW_CONSTANT)
};

unsigned pvkit_test_abi_layout_from_c(const struct pvkit_test_layout_row **rows)
{
    *rows = pvkit_c_rows;
    return (unsigned)(sizeof pvkit_c_rows / sizeof pvkit_c_rows[0]);
}
