// Why a guest stopped, and the pvkit-vmm exit status that says so.
// docs/vmm.md has the same table; scripts and the toolstack rely on it.
#pragma once

#include <string>

namespace pvkit::vmm {

enum class ExitStatus : int {
    kPoweroff = 0,      // PVKIT_SCHEDOP_SHUTDOWN(PVKIT_SHUTDOWN_POWEROFF)
    kStartupError = 1,  // bad command line, unreadable or rejected kernel, KVM unusable
    kGuestCrash = 2,    // PVKIT_SCHEDOP_SHUTDOWN(PVKIT_SHUTDOWN_CRASH)
    kGuestReboot = 3,   // PVKIT_SCHEDOP_SHUTDOWN(PVKIT_SHUTDOWN_REBOOT): the toolstack decides
    kTripleFault = 4,   // KVM_EXIT_SHUTDOWN
    kInternalError = 5, // KVM_EXIT_INTERNAL_ERROR (e.g. an instruction KVM cannot emulate)
    kFailEntry = 6,     // KVM_EXIT_FAIL_ENTRY: the vCPU state was refused by the hardware
    kUnhandledIo = 7,   // a port or MMIO access no device claims
    kTimeout = 8,       // --timeout expired
    kTerminated = 9,    // SIGTERM or SIGINT
    kVmmError = 10,     // a KVM call failed or KVM reported an exit pvkit does not know
};

// Short machine-readable name: "poweroff", "crash", "triple-fault", ...
const char* to_string(ExitStatus status);

struct RunOutcome {
    ExitStatus status = ExitStatus::kVmmError;
    std::string message; // one line for a human, without a trailing newline
};

} // namespace pvkit::vmm
