// The KVM userspace API, included the one way that gives C++ the right
// ioctl numbers.
//
// Debian 12's <linux/stddef.h> declares flexible arrays as an empty struct
// followed by `T name[]`. An empty struct has size 1 in C++ (0 in C), so
// every struct holding one (kvm_cpuid2, kvm_msrs, kvm_irq_routing,
// kvm_signal_mask) is 8 bytes too large in C++, and the ioctl numbers built
// from those sizes (KVM_SET_CPUID2, KVM_GET_MSRS, ...) are ones the kernel
// does not know: it answers EINVAL or ENOTTY. Declaring the member as
// `T name[0]` restores the C layout. Every pvkit file reaches <linux/kvm.h>
// through this header, and the static_asserts below catch a translation
// unit that included it some other way first.
#pragma once

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8, "kvm_cpuid2 has its C size (see kvm_uapi.hpp)");
static_assert(sizeof(kvm_msrs) == 8, "kvm_msrs has its C size (see kvm_uapi.hpp)");
static_assert(sizeof(kvm_irq_routing) == 8, "kvm_irq_routing has its C size (see kvm_uapi.hpp)");
