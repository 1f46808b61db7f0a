#include "pvkit/store/error.hpp"

#include <pvkit/store.h>

#include <array>
#include <cstddef>

namespace pvkit::store {

namespace {

// The table comes from the ABI header itself, so a name added there can
// never be missing here.
constexpr pvkit_store_errname kWireErrors[] = PVKIT_STORE_ERRORS_INIT;

} // namespace

std::string_view to_string(StoreError error) {
    switch (error) {
    case StoreError::kProtocol:
        return "EPROTO";
    case StoreError::kNotConn:
        return "ENOTCONN";
    case StoreError::kTimedOut:
        return "ETIMEDOUT";
    default:
        break;
    }
    for (const pvkit_store_errname& e : kWireErrors) {
        if (e.errnum == static_cast<int>(error))
            return e.name;
    }
    return "EIO";
}

std::optional<StoreError> error_from_name(std::string_view name) {
    for (const pvkit_store_errname& e : kWireErrors) {
        if (name == e.name)
            return static_cast<StoreError>(e.errnum);
    }
    return std::nullopt;
}

} // namespace pvkit::store
