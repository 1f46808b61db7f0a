// The data path of one connected vbd: its grant pool, ring, event channel
// and the I/O it has in flight.
//
// A Connection exists from the moment the ring is mapped (backend state
// Connected) until the device is torn down. It never touches frontend
// memory except through GrantMapper: ring pages via map_ring, indirect
// pages through GrantMapping::copy_out, data pages as opaque io_uring
// buffers through GrantMapping::payload_ptr(), each mapped only while its
// I/O is in flight.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "pvkit/blkback/counters.hpp"
#include "pvkit/blkback/io_ring.hpp"
#include "pvkit/blkback/request.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/ring.hpp"

namespace pvkit::blkback {

using BlkBackRing = BackRing<pvkit_blkif_sring_entry>;

enum class ConnectError : std::uint8_t {
    kRingGrant,    // a ring reference could not be mapped (see the GrantError)
    kRingGeometry, // the mapped ring has no room for a slot
};
const char* to_string(ConnectError e);

struct ConnectFailure {
    ConnectError error = ConnectError::kRingGrant;
    GrantError grant_error = GrantError::kBadRef;
};

// How a connection does its I/O (docs/blkback.md, "Performance").
struct ConnectionOptions {
    // Buffered image: WRITE with pwritev in the calling thread instead of
    // io_uring (ext4 hands buffered io_uring writes to a worker thread).
    bool inline_writes = false;
    // Buffered image: READ with preadv2(RWF_NOWAIT) in the calling thread
    // first; what is not in the page cache goes to io_uring.
    bool inline_reads = false;
};

class Connection {
public:
    // Maps the ring through a GrantMapper for domain 0 over `pool` and
    // attaches the back ring. `serial` names this connection in io_uring
    // user_data; it must be unique within the daemon.
    static Result<std::unique_ptr<Connection>, ConnectFailure>
    create(std::unique_ptr<GrantPool> pool, EventChannel channel,
           std::span<const GrantRef> ring_refs, const DeviceLimits& limits, int image_fd,
           std::uint32_t serial, DeviceCounters& counters, ConnectionOptions options = {});

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    [[nodiscard]] int wait_fd() const { return m_channel.wait_fd(); }
    [[nodiscard]] std::uint32_t serial() const { return m_serial; }
    [[nodiscard]] std::uint32_t nr_ents() const { return m_ring.nr_ents(); }

    // Reads the frontend's kicks off the eventfd (counted).
    void drain_kicks();

    // Consumes up to `budget` requests (one ring read of req_prod), answers
    // invalid ones at once and queues I/O for the rest on `io`. Returns the
    // number of requests consumed; a protocol violation halts the ring.
    std::uint32_t service(IoRing& io, std::uint32_t budget);

    // Requests waiting on the ring (req_prod read once); 0 when not
    // consuming or halted.
    [[nodiscard]] std::uint32_t pending();
    // Arms req_event and looks once more: the final check before sleeping.
    [[nodiscard]] std::uint32_t final_check();
    // Disarms req_event (sets it to req_cons, which the frontend's
    // "notify iff req_event in (old, new]" check can never hit): called once
    // the backend is awake again, so a frontend publishing while the backend
    // polls does not kick it. final_check() arms it again before sleeping.
    void disarm();

    // One completion for op `slot` with result `res`; may resubmit the rest
    // of a short transfer on `io`.
    void complete(std::uint32_t slot, std::int32_t res, IoRing& io);

    // Publishes the responses written since the last call, and kicks the
    // frontend only if the ring says it is waiting (notification hold-off).
    void flush_responses();

    [[nodiscard]] std::uint32_t ops_in_flight() const { return m_ops_in_flight; }
    [[nodiscard]] bool halted() const { return m_ring.halted(); }
    [[nodiscard]] const std::optional<RingHalt>& halt() const { return m_ring.halt(); }
    // Stops taking new requests; I/O in flight still completes and is answered.
    void stop() { m_consuming = false; }
    [[nodiscard]] bool consuming() const { return m_consuming && !m_ring.halted(); }

    // Grants this connection holds mapped right now (ring pages included).
    [[nodiscard]] std::uint32_t mapped_grants() const { return m_mapper->mapped(); }

private:
    struct IoOp {
        bool busy = false;
        std::uint64_t id = 0;
        std::uint8_t operation = 0;
        BlkOp op = BlkOp::kRead;
        bool indirect = false;
        std::vector<GrantMapping> maps; // data pages, mapped for the I/O's duration
        std::vector<iovec> iov;
        std::uint32_t first_iov = 0; // where a resubmitted short transfer resumes
        std::uint64_t offset = 0;    // byte offset in the image
        std::uint64_t length = 0;    // bytes to transfer (or to discard)
        std::uint64_t done = 0;
        std::uint32_t resubmits = 0;
    };

    Connection(std::unique_ptr<GrantPool> pool, std::unique_ptr<GrantMapper> mapper,
               RingMapping ring_mapping, BlkBackRing ring, EventChannel channel,
               const DeviceLimits& limits, int image_fd, std::uint32_t serial,
               DeviceCounters& counters, ConnectionOptions options);

    void handle_slot(const pvkit_blkif_sring_entry& slot, IoRing& io);
    // Maps the request's data pages into `op`; on failure nothing stays mapped.
    Result<void, RequestError> map_segments(const BlkRequest& req, IoOp& op);
    Result<void, RequestError> load_indirect_segments(const BlkRequest& req);
    void queue_op(std::uint32_t slot, IoRing& io);
    // Does the WRITE in `slot` with pwritev now and answers it.
    void write_inline(std::uint32_t slot);
    // Tries the READ in `slot` with preadv2(RWF_NOWAIT); what would block
    // (or is left of a short read) goes to `io`.
    void read_inline(std::uint32_t slot, IoRing& io);
    // Applies `res` bytes (or -errno) to `slot`; true when the op is finished
    // (answered), false when a short transfer must be resumed.
    bool account(std::uint32_t slot, std::int64_t res);
    void finish(std::uint32_t slot, std::int16_t status);
    void respond(std::uint64_t id, std::uint8_t operation, std::int16_t status);
    void reject(std::uint64_t id, std::uint8_t operation, RequestError e);

    // Destroyed in reverse order: ops (data mappings), ring, ring pages,
    // mapper, pool; a mapping never outlives the mapper or the pool.
    std::unique_ptr<GrantPool> m_pool;
    std::unique_ptr<GrantMapper> m_mapper;
    RingMapping m_ring_mapping;
    BlkBackRing m_ring;
    EventChannel m_channel;
    DeviceLimits m_limits;
    int m_image_fd;
    std::uint32_t m_serial;
    DeviceCounters& m_counters;
    std::vector<IoOp> m_ops;
    std::vector<std::uint32_t> m_free_ops;
    std::uint32_t m_ops_in_flight = 0;
    std::vector<pvkit_blkif_segment> m_indirect_segs; // private copy of indirect pages
    bool m_consuming = true;
    bool m_responses_dirty = false;
    ConnectionOptions m_options;
};

} // namespace pvkit::blkback
