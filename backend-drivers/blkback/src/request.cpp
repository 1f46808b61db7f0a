#include "pvkit/blkback/request.hpp"

#include <cstring>

namespace pvkit::blkback {

namespace {

struct ErrorInfo {
    const char* text;
    const char* name;
    std::int16_t status;
};

constexpr std::array<ErrorInfo, kRequestErrorCount> kErrors{{
    {"unknown operation", "unknown-operation", PVKIT_BLKIF_RSP_EOPNOTSUPP},
    {"read/write without segments", "no-segments", PVKIT_BLKIF_RSP_ERROR},
    {"more than 11 segments", "too-many-segments", PVKIT_BLKIF_RSP_ERROR},
    {"flush with segments", "segments-on-flush", PVKIT_BLKIF_RSP_ERROR},
    {"segment first_sect > last_sect", "first-after-last", PVKIT_BLKIF_RSP_ERROR},
    {"segment last_sect > 7", "sector-outside-page", PVKIT_BLKIF_RSP_ERROR},
    {"sector range past the end of the device", "past-end", PVKIT_BLKIF_RSP_ERROR},
    {"not aligned to sector-size", "misaligned", PVKIT_BLKIF_RSP_ERROR},
    {"write to a read-only device", "read-only-device", PVKIT_BLKIF_RSP_ERROR},
    {"flush not offered", "flush-not-offered", PVKIT_BLKIF_RSP_EOPNOTSUPP},
    {"discard not offered", "discard-not-offered", PVKIT_BLKIF_RSP_EOPNOTSUPP},
    {"discard of zero sectors", "discard-empty", PVKIT_BLKIF_RSP_ERROR},
    {"discard with unknown flags", "discard-bad-flags", PVKIT_BLKIF_RSP_ERROR},
    {"secure discard not offered", "secure-discard-unsupported", PVKIT_BLKIF_RSP_EOPNOTSUPP},
    {"indirect requests not offered", "indirect-not-offered", PVKIT_BLKIF_RSP_EOPNOTSUPP},
    {"indirect_op not read or write", "indirect-bad-operation", PVKIT_BLKIF_RSP_ERROR},
    {"indirect request without segments", "indirect-no-segments", PVKIT_BLKIF_RSP_ERROR},
    {"indirect segments above the offered maximum", "indirect-too-many-segments",
     PVKIT_BLKIF_RSP_ERROR},
    {"unused indirect page reference not 0", "indirect-bad-page-refs", PVKIT_BLKIF_RSP_ERROR},
    {"indirect page grant refused", "indirect-page-grant", PVKIT_BLKIF_RSP_ERROR},
    {"grant reference 0 or beyond the table", "grant-bad-ref", PVKIT_BLKIF_RSP_ERROR},
    {"grant entry not PERMIT_ACCESS", "grant-not-granted", PVKIT_BLKIF_RSP_ERROR},
    {"grant for another domain", "grant-wrong-domain", PVKIT_BLKIF_RSP_ERROR},
    {"read into a read-only grant", "grant-read-only", PVKIT_BLKIF_RSP_ERROR},
    {"grant names a frame that is not a data frame", "grant-bad-frame", PVKIT_BLKIF_RSP_ERROR},
    {"grant entry changed while mapping", "grant-changed", PVKIT_BLKIF_RSP_ERROR},
    {"grant mapped too often", "grant-busy", PVKIT_BLKIF_RSP_ERROR},
    {"image I/O failed", "io-error", PVKIT_BLKIF_RSP_ERROR},
}};

const ErrorInfo& info(RequestError e) {
    auto i = static_cast<std::size_t>(e);
    return kErrors[i < kErrors.size() ? i : kErrors.size() - 1];
}

// 512-byte sectors per logical sector.
std::uint64_t sector_ratio(const DeviceLimits& limits) {
    return limits.sector_size / PVKIT_BLKIF_SECTOR_SIZE;
}

// start + count must stay within the device; computed so it cannot wrap.
bool in_device(std::uint64_t start, std::uint64_t count, const DeviceLimits& limits) {
    return start <= limits.sectors && count <= limits.sectors - start;
}

} // namespace

const char* to_string(RequestError e) { return info(e).text; }
const char* counter_name(RequestError e) { return info(e).name; }
std::int16_t response_status(RequestError e) { return info(e).status; }

RequestError from_grant_error(GrantError e) {
    switch (e) {
    case GrantError::kBadRef:
        return RequestError::kGrantBadRef;
    case GrantError::kNotGranted:
        return RequestError::kGrantNotGranted;
    case GrantError::kWrongDomain:
        return RequestError::kGrantWrongDomain;
    case GrantError::kReadOnly:
        return RequestError::kGrantReadOnly;
    case GrantError::kBadFrame:
        return RequestError::kGrantBadFrame;
    case GrantError::kChanged:
        return RequestError::kGrantChanged;
    case GrantError::kInUse:
    case GrantError::kNoFreeRefs:
    case GrantError::kNotMapped:
    case GrantError::kOutOfRange:
    case GrantError::kNotContiguous:
        break;
    }
    return RequestError::kGrantBusy;
}

RequestTag request_tag(const pvkit_blkif_sring_entry& slot) {
    // id and operation sit at the same offsets in every request layout.
    return RequestTag{slot.req.id, slot.req.operation};
}

Result<std::uint64_t, RequestError> check_segments(std::span<const pvkit_blkif_segment> segs,
                                                   std::uint64_t sector,
                                                   const DeviceLimits& limits) {
    const std::uint64_t ratio = sector_ratio(limits);
    std::uint64_t total = 0;
    for (const pvkit_blkif_segment& s : segs) {
        if (s.first_sect > s.last_sect)
            return Unexpected{RequestError::kFirstAfterLast};
        if (s.last_sect >= PVKIT_BLKIF_SECTORS_PER_PAGE)
            return Unexpected{RequestError::kSectorOutsidePage};
        // With 4096-byte sectors every segment must cover whole logical
        // sectors, so the I/O never splits one (and stays O_DIRECT-aligned).
        if (s.first_sect % ratio != 0 || (std::uint64_t{s.last_sect} + 1) % ratio != 0)
            return Unexpected{RequestError::kMisaligned};
        // At most 256 * 8 sectors in total: no overflow possible here.
        total += std::uint64_t{s.last_sect} - s.first_sect + 1;
    }
    if (!in_device(sector, total, limits))
        return Unexpected{RequestError::kPastEnd};
    return total;
}

Result<BlkRequest, RequestError> parse_request(const pvkit_blkif_sring_entry& slot,
                                               const DeviceLimits& limits) {
    BlkRequest r;
    const RequestTag tag = request_tag(slot);
    r.id = tag.id;
    r.operation = tag.operation;
    const std::uint64_t ratio = sector_ratio(limits);

    switch (tag.operation) {
    case PVKIT_BLKIF_OP_READ:
    case PVKIT_BLKIF_OP_WRITE: {
        const pvkit_blkif_request& q = slot.req;
        r.op = tag.operation == PVKIT_BLKIF_OP_READ ? BlkOp::kRead : BlkOp::kWrite;
        if (r.op == BlkOp::kWrite && limits.read_only)
            return Unexpected{RequestError::kReadOnlyDevice};
        if (q.nr_segments == 0)
            return Unexpected{RequestError::kNoSegments};
        if (q.nr_segments > PVKIT_BLKIF_MAX_SEGMENTS_PER_REQUEST)
            return Unexpected{RequestError::kTooManySegments};
        if (q.sector_number % ratio != 0)
            return Unexpected{RequestError::kMisaligned};
        r.sector = q.sector_number;
        r.nr_segments = q.nr_segments;
        auto total = check_segments(std::span(q.seg, q.nr_segments), q.sector_number, limits);
        if (!total)
            return Unexpected{total.error()};
        r.nr_sectors = *total;
        for (std::size_t i = 0; i < q.nr_segments; ++i)
            r.segs[i] = Segment{q.seg[i].gref, q.seg[i].first_sect, q.seg[i].last_sect};
        return r;
    }
    case PVKIT_BLKIF_OP_FLUSH_DISKCACHE:
        if (!limits.flush)
            return Unexpected{RequestError::kFlushNotOffered};
        if (slot.req.nr_segments != 0)
            return Unexpected{RequestError::kSegmentsOnFlush};
        r.op = BlkOp::kFlush;
        return r;
    case PVKIT_BLKIF_OP_DISCARD: {
        const pvkit_blkif_request_discard& d = slot.discard;
        if (!limits.discard)
            return Unexpected{RequestError::kDiscardNotOffered};
        if (limits.read_only)
            return Unexpected{RequestError::kReadOnlyDevice};
        if ((d.flag & ~PVKIT_BLKIF_DISCARD_SECURE) != 0)
            return Unexpected{RequestError::kDiscardBadFlags};
        if ((d.flag & PVKIT_BLKIF_DISCARD_SECURE) != 0)
            return Unexpected{RequestError::kSecureDiscardUnsupported};
        if (d.nr_sectors == 0)
            return Unexpected{RequestError::kDiscardEmpty};
        if (d.sector_number % ratio != 0 || d.nr_sectors % ratio != 0)
            return Unexpected{RequestError::kMisaligned};
        if (!in_device(d.sector_number, d.nr_sectors, limits))
            return Unexpected{RequestError::kPastEnd};
        r.op = BlkOp::kDiscard;
        r.sector = d.sector_number;
        r.nr_sectors = d.nr_sectors;
        return r;
    }
    case PVKIT_BLKIF_OP_INDIRECT: {
        const pvkit_blkif_request_indirect& n = slot.indirect;
        if (limits.max_indirect_segments == 0)
            return Unexpected{RequestError::kIndirectNotOffered};
        if (n.indirect_op != PVKIT_BLKIF_OP_READ && n.indirect_op != PVKIT_BLKIF_OP_WRITE)
            return Unexpected{RequestError::kIndirectBadOperation};
        r.op = n.indirect_op == PVKIT_BLKIF_OP_READ ? BlkOp::kRead : BlkOp::kWrite;
        if (r.op == BlkOp::kWrite && limits.read_only)
            return Unexpected{RequestError::kReadOnlyDevice};
        if (n.nr_segments == 0)
            return Unexpected{RequestError::kIndirectNoSegments};
        if (n.nr_segments > limits.max_indirect_segments)
            return Unexpected{RequestError::kIndirectTooManySegments};
        const std::uint32_t pages =
            (n.nr_segments + PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME - 1) / PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME;
        // blkif.h: the entries past the used pages are 0. Holding the
        // frontend to it catches requests built for another layout.
        for (std::uint32_t i = pages; i < PVKIT_BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; ++i) {
            if (n.indirect_grefs[i] != 0)
                return Unexpected{RequestError::kIndirectBadPageRefs};
        }
        if (n.sector_number % ratio != 0)
            return Unexpected{RequestError::kMisaligned};
        r.indirect = true;
        r.sector = n.sector_number;
        r.nr_segments = n.nr_segments;
        r.nr_indirect_pages = pages;
        for (std::uint32_t i = 0; i < pages; ++i)
            r.indirect_pages[i] = n.indirect_grefs[i];
        return r;
    }
    default:
        return Unexpected{RequestError::kUnknownOperation};
    }
}

} // namespace pvkit::blkback
