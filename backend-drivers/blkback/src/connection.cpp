#include "pvkit/blkback/connection.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace pvkit::blkback {

namespace {
// A short transfer is resumed at most this often before the request fails;
// a file that keeps returning less than asked is broken, not slow.
constexpr std::uint32_t kMaxResubmits = 16;
} // namespace

const char* to_string(ConnectError e) {
    switch (e) {
    case ConnectError::kRingGrant:
        return "ring grant refused";
    case ConnectError::kRingGeometry:
        return "ring too small for a blkif slot";
    }
    return "unknown connect error";
}

Result<std::unique_ptr<Connection>, ConnectFailure>
Connection::create(std::unique_ptr<GrantPool> pool, EventChannel channel,
                   std::span<const GrantRef> ring_refs, const DeviceLimits& limits, int image_fd,
                   std::uint32_t serial, DeviceCounters& counters, ConnectionOptions options) {
    auto mapper = std::make_unique<GrantMapper>(*pool, PVKIT_DOMID_HOST);
    auto mapped = map_ring(*mapper, ring_refs);
    if (!mapped)
        return Unexpected{ConnectFailure{ConnectError::kRingGrant, mapped.error()}};
    auto ring = BlkBackRing::attach(mapped->bytes);
    if (!ring)
        return Unexpected{ConnectFailure{ConnectError::kRingGeometry, GrantError::kOutOfRange}};
    return std::unique_ptr<Connection>(new Connection(
        std::move(pool), std::move(mapper), std::move(mapped.value()), std::move(ring.value()),
        std::move(channel), limits, image_fd, serial, counters, options));
}

Connection::Connection(std::unique_ptr<GrantPool> pool, std::unique_ptr<GrantMapper> mapper,
                       RingMapping ring_mapping, BlkBackRing ring, EventChannel channel,
                       const DeviceLimits& limits, int image_fd, std::uint32_t serial,
                       DeviceCounters& counters, ConnectionOptions options)
    : m_pool(std::move(pool)), m_mapper(std::move(mapper)), m_ring_mapping(std::move(ring_mapping)),
      m_ring(std::move(ring)), m_channel(std::move(channel)), m_limits(limits),
      m_image_fd(image_fd), m_serial(serial), m_counters(counters), m_ops(m_ring.nr_ents()),
      m_options(options) {
    m_free_ops.reserve(m_ops.size());
    for (std::size_t i = m_ops.size(); i > 0; --i)
        m_free_ops.push_back(static_cast<std::uint32_t>(i - 1));
}

Connection::~Connection() = default;

void Connection::drain_kicks() {
    while (m_channel.try_consume())
        ++m_counters.notifications_received;
}

std::uint32_t Connection::pending() {
    if (!consuming())
        return 0;
    auto n = m_ring.pending();
    if (!n) {
        // The halt is recorded in the ring; the daemon sees halted().
        return 0;
    }
    return *n;
}

std::uint32_t Connection::final_check() {
    if (!consuming())
        return 0;
    auto n = m_ring.final_check();
    return n ? *n : 0;
}

void Connection::disarm() {
    if (!consuming())
        return;
    pvkit_back_ring& r = m_ring.raw();
    // req_cons <= the frontend's last published req_prod, so req_event =
    // req_cons is never in (old req_prod, new req_prod]: no kick.
    PVKIT_RING_STORE_ONCE(&r.sring->req_event, r.req_cons);
}

std::uint32_t Connection::service(IoRing& io, std::uint32_t budget) {
    if (!consuming())
        return 0;
    const auto free_ops = static_cast<std::uint32_t>(m_free_ops.size());
    const std::uint32_t max = std::min(budget, free_ops);
    if (max == 0)
        return 0;
    auto n = m_ring.consume([&](const pvkit_blkif_sring_entry& slot) { handle_slot(slot, io); }, max);
    // A protocol violation is recorded in the ring (halted()); the daemon
    // closes the device.
    return n ? *n : 0;
}

void Connection::respond(std::uint64_t id, std::uint8_t operation, std::int16_t status) {
    pvkit_blkif_response rsp{};
    rsp.id = id;
    rsp.operation = operation;
    rsp.status = status;
    // kHalted after a protocol violation: the ring is dead, the answer is
    // dropped. kFull cannot happen: each response answers one consumed request.
    if (m_ring.put_response(rsp))
        m_responses_dirty = true;
}

void Connection::reject(std::uint64_t id, std::uint8_t operation, RequestError e) {
    m_counters.count_error(e);
    respond(id, operation, response_status(e));
}

void Connection::flush_responses() {
    if (!m_responses_dirty)
        return;
    m_responses_dirty = false;
    if (m_ring.push()) {
        m_channel.notify();
        ++m_counters.notifications_sent;
    }
}

Result<void, RequestError> Connection::load_indirect_segments(const BlkRequest& req) {
    m_indirect_segs.resize(req.nr_segments);
    std::uint32_t copied = 0;
    for (std::uint32_t page = 0; page < req.nr_indirect_pages; ++page) {
        // Indirect pages are only read, so a read-only grant is enough.
        auto m = m_mapper->map(req.indirect_pages[page], GrantAccess::kReadOnly);
        if (!m)
            return Unexpected{RequestError::kIndirectPageGrant};
        const std::uint32_t here =
            std::min<std::uint32_t>(req.nr_segments - copied, PVKIT_BLKIF_SEGS_PER_INDIRECT_FRAME);
        // One copy out of the shared page; only the copy is checked and used.
        auto r = m->copy_out(0, std::as_writable_bytes(std::span(m_indirect_segs.data() + copied, here)));
        if (!r)
            return Unexpected{RequestError::kIndirectPageGrant};
        copied += here;
    }
    return {};
}

Result<void, RequestError> Connection::map_segments(const BlkRequest& req, IoOp& op) {
    // A READ writes into the frontend's pages, so it needs a writable grant;
    // a WRITE only reads them.
    const GrantAccess access = req.op == BlkOp::kRead ? GrantAccess::kReadWrite : GrantAccess::kReadOnly;
    op.maps.clear();
    op.iov.clear();
    auto add = [&](GrantRef gref, std::uint8_t first, std::uint8_t last) -> Result<void, RequestError> {
        auto m = m_mapper->map(gref, access);
        if (!m)
            return Unexpected{from_grant_error(m.error())};
        const std::size_t offset = std::size_t{first} * PVKIT_BLKIF_SECTOR_SIZE;
        const std::size_t len = (std::size_t{last} - first + 1) * PVKIT_BLKIF_SECTOR_SIZE;
        // The only raw pointer into granted memory: an opaque I/O buffer
        // inside the page the mapping validated (offset + len <= 4096 was
        // checked by check_segments).
        op.iov.push_back(iovec{m->payload_ptr() + offset, len});
        op.maps.push_back(std::move(m.value()));
        return {};
    };
    if (req.indirect) {
        for (const pvkit_blkif_segment& s : m_indirect_segs) {
            auto r = add(s.gref, s.first_sect, s.last_sect);
            if (!r) {
                op.maps.clear();
                return r;
            }
        }
    } else {
        for (std::uint32_t i = 0; i < req.nr_segments; ++i) {
            auto r = add(req.segs[i].gref, req.segs[i].first_sect, req.segs[i].last_sect);
            if (!r) {
                op.maps.clear();
                return r;
            }
        }
    }
    return {};
}

void Connection::handle_slot(const pvkit_blkif_sring_entry& slot, IoRing& io) {
    auto parsed = parse_request(slot, m_limits);
    if (!parsed) {
        const RequestTag tag = request_tag(slot);
        reject(tag.id, tag.operation, parsed.error());
        return;
    }
    BlkRequest& req = parsed.value();
    if (req.indirect) {
        auto loaded = load_indirect_segments(req);
        if (!loaded) {
            reject(req.id, req.operation, loaded.error());
            return;
        }
        auto total = check_segments(m_indirect_segs, req.sector, m_limits);
        if (!total) {
            reject(req.id, req.operation, total.error());
            return;
        }
        req.nr_sectors = *total;
    }

    const std::uint32_t slot_index = m_free_ops.back();
    IoOp& op = m_ops[slot_index];
    if (req.op == BlkOp::kRead || req.op == BlkOp::kWrite) {
        auto mapped = map_segments(req, op);
        if (!mapped) {
            reject(req.id, req.operation, mapped.error());
            return;
        }
    } else {
        op.maps.clear();
        op.iov.clear();
    }
    m_free_ops.pop_back();
    op.busy = true;
    op.id = req.id;
    op.operation = req.operation;
    op.op = req.op;
    op.indirect = req.indirect;
    op.first_iov = 0;
    op.offset = req.sector * PVKIT_BLKIF_SECTOR_SIZE; // sector + nr_sectors <= device: no overflow
    op.length = req.nr_sectors * PVKIT_BLKIF_SECTOR_SIZE;
    op.done = 0;
    op.resubmits = 0;
    switch (req.op) {
    case BlkOp::kRead:
        ++m_counters.requests_read;
        break;
    case BlkOp::kWrite:
        ++m_counters.requests_write;
        break;
    case BlkOp::kFlush:
        ++m_counters.requests_flush;
        break;
    case BlkOp::kDiscard:
        ++m_counters.requests_discard;
        break;
    }
    if (req.indirect)
        ++m_counters.requests_indirect;
    ++m_ops_in_flight;
    if (req.op == BlkOp::kWrite && m_options.inline_writes)
        write_inline(slot_index);
    else if (req.op == BlkOp::kRead && m_options.inline_reads)
        read_inline(slot_index, io);
    else
        queue_op(slot_index, io);
}

void Connection::write_inline(std::uint32_t slot) {
    IoOp& op = m_ops[slot];
    for (;;) {
        const std::uint64_t pos = op.offset + op.done;
        const auto nr_iov = static_cast<int>(op.iov.size() - op.first_iov);
        // A buffered write into the page cache: no worker thread, no
        // completion to wait for. pos < image size, which was an off_t.
        ssize_t r =
            ::pwritev(m_image_fd, op.iov.data() + op.first_iov, nr_iov, static_cast<off_t>(pos));
        if (r < 0 && errno == EINTR)
            continue;
        if (account(slot, r < 0 ? -static_cast<std::int64_t>(errno) : static_cast<std::int64_t>(r)))
            break;
    }
    // Publish at once, so the frontend can refill while the next one is written.
    flush_responses();
}

void Connection::queue_op(std::uint32_t slot, IoRing& io) {
    IoOp& op = m_ops[slot];
    io_uring_sqe* sqe = io.get_sqe();
    if (sqe == nullptr) {
        // The kernel refused to take submissions: fail the request rather
        // than leave it unanswered.
        finish(slot, PVKIT_BLKIF_RSP_ERROR);
        m_counters.count_error(RequestError::kIoError);
        return;
    }
    const std::uint64_t pos = op.offset + op.done;
    const auto nr_iov = static_cast<unsigned>(op.iov.size() - op.first_iov);
    switch (op.op) {
    case BlkOp::kRead:
        io_uring_prep_readv(sqe, m_image_fd, op.iov.data() + op.first_iov, nr_iov, pos);
        break;
    case BlkOp::kWrite:
        io_uring_prep_writev(sqe, m_image_fd, op.iov.data() + op.first_iov, nr_iov, pos);
        break;
    case BlkOp::kFlush:
        io_uring_prep_fsync(sqe, m_image_fd, IORING_FSYNC_DATASYNC);
        break;
    case BlkOp::kDiscard:
        // Punch a hole and keep the size: discarded sectors read back as
        // zeroes and the file system may free the blocks. The casts cannot
        // wrap: the range lies inside the image, whose size was an off_t.
        io_uring_prep_fallocate(sqe, m_image_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
        break;
    }
    io_uring_sqe_set_data64(sqe, (std::uint64_t{m_serial} << 32) | slot);
}

void Connection::read_inline(std::uint32_t slot, IoRing& io) {
    IoOp& op = m_ops[slot];
    ssize_t r;
    do {
        r = ::preadv2(m_image_fd, op.iov.data() + op.first_iov,
                      static_cast<int>(op.iov.size() - op.first_iov),
                      static_cast<off_t>(op.offset + op.done), RWF_NOWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) {
        // Not (all) in the page cache: io_uring waits for it. A file that
        // cannot do RWF_NOWAIT at all is not asked again.
        if (errno == EOPNOTSUPP)
            m_options.inline_reads = false;
        queue_op(slot, io);
        return;
    }
    if (account(slot, r < 0 ? -static_cast<std::int64_t>(errno) : static_cast<std::int64_t>(r)))
        flush_responses();
    else
        queue_op(slot, io); // the rest of a short read
}

void Connection::complete(std::uint32_t slot, std::int32_t res, IoRing& io) {
    if (slot >= m_ops.size() || !m_ops[slot].busy)
        return; // not ours: the kernel echoes user_data, this cannot happen
    if (!account(slot, res))
        queue_op(slot, io);
}

bool Connection::account(std::uint32_t slot, std::int64_t res) {
    IoOp& op = m_ops[slot];
    if (res < 0) {
        m_counters.count_error(RequestError::kIoError);
        finish(slot, PVKIT_BLKIF_RSP_ERROR);
        return true;
    }
    if (op.op == BlkOp::kRead || op.op == BlkOp::kWrite) {
        auto got = static_cast<std::uint64_t>(res);
        if (got > op.length - op.done)
            got = op.length - op.done; // never more than asked; be defensive anyway
        op.done += got;
        if (op.done < op.length) {
            // Short transfer: resume after what was done, unless nothing moved
            // (end of file after a truncate) or it keeps happening.
            if (got == 0 || ++op.resubmits > kMaxResubmits) {
                m_counters.count_error(RequestError::kIoError);
                finish(slot, PVKIT_BLKIF_RSP_ERROR);
                return true;
            }
            while (got > 0 && op.first_iov < op.iov.size()) {
                iovec& v = op.iov[op.first_iov];
                if (got >= v.iov_len) {
                    got -= v.iov_len;
                    ++op.first_iov;
                } else {
                    v.iov_base = static_cast<std::byte*>(v.iov_base) + got;
                    v.iov_len -= got;
                    got = 0;
                }
            }
            return false;
        }
        if (op.op == BlkOp::kRead)
            m_counters.bytes_read += op.length;
        else
            m_counters.bytes_written += op.length;
    }
    finish(slot, PVKIT_BLKIF_RSP_OKAY);
    return true;
}

void Connection::finish(std::uint32_t slot, std::int16_t status) {
    IoOp& op = m_ops[slot];
    // Unmap first: the data pages are released as soon as the I/O is done,
    // before the frontend can see the answer and end the grants.
    op.maps.clear();
    op.iov.clear();
    op.busy = false;
    --m_ops_in_flight;
    m_free_ops.push_back(slot);
    respond(op.id, op.operation, status);
}

} // namespace pvkit::blkback
