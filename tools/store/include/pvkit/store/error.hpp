// Store errors: the errno names of the wire protocol (store.h) plus the few
// that only a client can see (no connection, a timeout, a garbled reply).
#pragma once

#include <pvkit/abi.h>

#include <optional>
#include <string_view>

#include "pvkit/transport/result.hpp"

namespace pvkit::store {

// Values equal the PVKIT_E* numbers so that an error can be handed to a
// Linux guest unchanged. The daemon only ever sends names from
// PVKIT_STORE_ERRORS_INIT; kNotConn, kTimedOut and kProtocol are produced by
// the client library itself.
enum class StoreError : int {
    kPerm = PVKIT_EPERM,
    kNoEnt = PVKIT_ENOENT,
    kIo = PVKIT_EIO,
    kTooBig = PVKIT_E2BIG,
    kAgain = PVKIT_EAGAIN,
    kNoMem = PVKIT_ENOMEM,
    kAccess = PVKIT_EACCES,
    kBusy = PVKIT_EBUSY,
    kExist = PVKIT_EEXIST,
    kIsDir = PVKIT_EISDIR,
    kInval = PVKIT_EINVAL,
    kNoSpc = PVKIT_ENOSPC,
    kRoFs = PVKIT_EROFS,
    kNoSys = PVKIT_ENOSYS,
    kNotEmpty = PVKIT_ENOTEMPTY,
    kIsConn = PVKIT_EISCONN,
    kQuota = PVKIT_EDQUOT,
    // Client side only: never on the wire.
    kProtocol = 71,  // EPROTO: the daemon sent something the client cannot parse
    kNotConn = PVKIT_ENOTCONN,
    kTimedOut = 110, // ETIMEDOUT: no reply (or no connection) within the timeout
};

// "ENOENT", "EQUOTA", ...: the name the wire protocol uses.
[[nodiscard]] std::string_view to_string(StoreError error);

// The error a wire name stands for; nullopt for a name store.h does not
// list (the client reports those as kProtocol).
[[nodiscard]] std::optional<StoreError> error_from_name(std::string_view name);

template <class T>
using StoreResult = Result<T, StoreError>;

} // namespace pvkit::store
