#include "pvkit/vmm/exit_status.hpp"

namespace pvkit::vmm {

const char* to_string(ExitStatus status) {
    switch (status) {
    case ExitStatus::kPoweroff:
        return "poweroff";
    case ExitStatus::kStartupError:
        return "startup-error";
    case ExitStatus::kGuestCrash:
        return "crash";
    case ExitStatus::kGuestReboot:
        return "reboot";
    case ExitStatus::kTripleFault:
        return "triple-fault";
    case ExitStatus::kInternalError:
        return "internal-error";
    case ExitStatus::kFailEntry:
        return "fail-entry";
    case ExitStatus::kUnhandledIo:
        return "unhandled-io";
    case ExitStatus::kTimeout:
        return "timeout";
    case ExitStatus::kTerminated:
        return "terminated";
    case ExitStatus::kVmmError:
        return "vmm-error";
    }
    return "unknown";
}

} // namespace pvkit::vmm
