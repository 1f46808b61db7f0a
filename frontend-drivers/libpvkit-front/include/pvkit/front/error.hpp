// Errors of libpvkit-front.
//
// Start-up and teardown (creating a domain, attaching and connecting a
// device) are process edges: they throw FrontError with one line that says
// what failed. The I/O path returns Result<T, BlkError>.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "pvkit/transport/result.hpp"

namespace pvkit::front {

class FrontError : public std::runtime_error {
public:
    explicit FrontError(const std::string& what) : std::runtime_error(what) {}
};

enum class BlkError : std::uint8_t {
    kInvalid,      // offset, length or buffer not usable (alignment, size, too large)
    kReadOnly,     // write or discard on a read-only device
    kNotSupported, // flush or discard not offered by the backend (or it answered EOPNOTSUPP)
    kOutOfRange,   // beyond the end of the device
    kIo,           // the backend answered PVKIT_BLKIF_RSP_ERROR
    kBusy,         // queue_depth I/Os in flight already, or no pool pages for a copy buffer
    kNoBuffer,     // alloc_buffer: the pool has no room for a buffer that large
    kTimeout,      // a synchronous call or wait passed its timeout
    kClosed,       // the device is closed, detached or its backend is gone
};
const char* to_string(BlkError e);

// The BlkError for a negative PVKIT_E* status from the blkfront core.
BlkError blk_error_from_status(int status);

} // namespace pvkit::front
