// Parsing blkif requests into validated types.
//
// The input is always the backend's private copy of a ring slot (BackRing
// hands out copies, never pointers into the ring), so nothing here can be
// changed by the frontend while it is checked. Every rejection has its own
// RequestError, counted per device; the device logic only ever sees a
// BlkRequest that passed every check.
#pragma once

#include <pvkit/blkif.h>

#include <array>
#include <cstdint>
#include <span>

#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit::blkback {

enum class RequestError : std::uint8_t {
    kUnknownOperation,        // operation not READ/WRITE/FLUSH/DISCARD/INDIRECT (EOPNOTSUPP)
    kNoSegments,              // READ/WRITE with nr_segments 0
    kTooManySegments,         // READ/WRITE with nr_segments > 11
    kSegmentsOnFlush,         // FLUSH with nr_segments != 0
    kFirstAfterLast,          // a segment with first_sect > last_sect
    kSectorOutsidePage,       // a segment with last_sect > 7
    kPastEnd,                 // the sector range ends beyond the device (overflow-checked)
    kMisaligned,              // start, length or a segment not aligned to sector-size
    kReadOnlyDevice,          // WRITE or DISCARD on a device opened read-only
    kFlushNotOffered,         // FLUSH without feature-flush-cache (EOPNOTSUPP)
    kDiscardNotOffered,       // DISCARD without feature-discard (EOPNOTSUPP)
    kDiscardEmpty,            // DISCARD of 0 sectors
    kDiscardBadFlags,         // DISCARD flag bits other than SECURE
    kSecureDiscardUnsupported, // DISCARD with the SECURE flag: discard-secure is 0 (EOPNOTSUPP)
    kIndirectNotOffered,      // INDIRECT without feature-max-indirect-segments (EOPNOTSUPP)
    kIndirectBadOperation,    // indirect_op not READ or WRITE
    kIndirectNoSegments,      // INDIRECT with nr_segments 0
    kIndirectTooManySegments, // INDIRECT with nr_segments above what we offered
    kIndirectBadPageRefs,     // an unused indirect_grefs entry that is not 0
    kIndirectPageGrant,       // an indirect page's grant could not be mapped
    kGrantBadRef,             // a segment's gref is 0 or beyond the table
    kGrantNotGranted,         // the entry is not PERMIT_ACCESS
    kGrantWrongDomain,        // the entry grants another domain
    kGrantReadOnly,           // a READ into a frame granted read-only
    kGrantBadFrame,           // the entry names a header/table frame or one outside the pool
    kGrantChanged,            // the entry changed while we mapped it
    kGrantBusy,               // the grant is mapped too often at once
    kIoError,                 // the image I/O failed (not a validation error)
    kCount,
};
inline constexpr std::size_t kRequestErrorCount = static_cast<std::size_t>(RequestError::kCount);
const char* to_string(RequestError e);
// Short machine name for counters and JSON: "unknown-operation", ...
const char* counter_name(RequestError e);
// The response status a rejection gets.
std::int16_t response_status(RequestError e);
// The RequestError for a failed segment mapping.
RequestError from_grant_error(GrantError e);

// The limits of one device, as published to the frontend.
struct DeviceLimits {
    std::uint64_t sectors = 0;     // device size in 512-byte sectors
    std::uint32_t sector_size = 512;
    bool read_only = false;
    bool flush = false;
    bool discard = false;
    std::uint32_t max_indirect_segments = 0; // 0: indirect not offered
};

enum class BlkOp : std::uint8_t { kRead, kWrite, kFlush, kDiscard };

struct Segment {
    GrantRef gref = 0;
    std::uint8_t first_sect = 0;
    std::uint8_t last_sect = 0;
    [[nodiscard]] std::uint32_t bytes() const {
        return (std::uint32_t{last_sect} - first_sect + 1) * PVKIT_BLKIF_SECTOR_SIZE;
    }
};

// A request after the header checks. For a direct READ/WRITE the segments
// are checked too (nr_sectors is their total); an indirect one still needs
// its segment pages copied and checked with check_segments().
struct BlkRequest {
    std::uint64_t id = 0;
    std::uint8_t operation = 0; // the wire operation, echoed in the response
    BlkOp op = BlkOp::kRead;
    std::uint64_t sector = 0;
    std::uint64_t nr_sectors = 0; // data ops and discard; 0 for flush
    bool secure = false;
    bool indirect = false;
    std::uint16_t nr_segments = 0;
    std::array<Segment, PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST> segs{}; // direct only
    std::uint32_t nr_indirect_pages = 0;
    std::array<GrantRef, PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST> indirect_pages{};
};

// The (id, operation) every response echoes, read from the slot copy; valid
// for any slot content, including garbage.
struct RequestTag {
    std::uint64_t id = 0;
    std::uint8_t operation = 0;
};
RequestTag request_tag(const pvkit_blkif_sring_entry& slot);

// Checks the header of a slot copy.
Result<BlkRequest, RequestError> parse_request(const pvkit_blkif_sring_entry& slot,
                                               const DeviceLimits& limits);

// Checks segments (direct or copied out of indirect pages) against the
// request's start sector and the device: each segment's sector range and
// alignment, and that the whole run ends inside the device. Returns the
// run's length in 512-byte sectors.
Result<std::uint64_t, RequestError> check_segments(std::span<const pvkit_blkif_segment> segs,
                                                   std::uint64_t sector, const DeviceLimits& limits);

} // namespace pvkit::blkback
