// BlkDevice: a PV disk in a host process, served by pvkit-blkback.
//
// attach() writes the disk into the store the way `pvkit block-attach`
// does (disk_attach_ops over the domain-0 connection, one transaction), or
// uses a device the toolstack created already. It then creates the
// device's grant pool (ring frames, indirect pages and data frames for
// queue_depth requests of max_io_bytes), runs the blkfront core's
// handshake over the domain's restricted store connection, and hands the
// pool fd and the event-channel eventfds to pvkit-blkback (handoff_device
// on the backend's `handoff-socket`) before publishing Initialised. It
// returns once the device is Connected.
//
// I/O comes in two styles:
//  - copying: read/write take ordinary memory; the library copies through
//    pool pages (its own bounce buffers);
//  - zero-copy: alloc_buffer() hands out pool pages (a PoolBuffer) that the
//    backend reads or writes directly.
// Each style is synchronous (read, write, flush, discard) or asynchronous
// (submit_*, then poll or wait for Completions carrying the caller's tag).
//
// Waiting spins briefly on the ring (no system calls while the backend
// answers quickly), then arms the ring's event index and sleeps on the
// eventfd and the store socket: the backend kicks only a sleeper.
//
// Reconnects are transparent: if pvkit-blkback dies and comes back, the
// device reconnects on its own and re-issues every unfinished request, in
// order; callers only see the delay. While the backend is away, requests
// queue up to queue_depth; beyond that submit_* answers kBusy and the
// synchronous calls wait.
//
// detach() runs the teardown of docs/handshake.md (online = 0 and Closing,
// collect what is on the ring, Closed on both ends, remove the device's
// directories). The destructor detaches if that was not done.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pvkit/front/error.hpp"
#include "pvkit/front/host_domain.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit::front {

namespace detail {
class DeviceImpl;
struct PoolMemory;
} // namespace detail

struct BlkDeviceOptions {
    // The device's devid (its store <devid> and blkif handle); 51712 is xvda.
    std::uint32_t devid = 51712;
    // Attach this image (absolute or relative to the current directory).
    // Empty: use a device the toolstack already wrote for this domain.
    std::filesystem::path image;
    bool read_only = false;
    std::uint32_t sector_size = 512; // 512 or 4096
    // The disk's max_ring_page_order for the backend (config-max-ring-page-order).
    std::optional<std::uint32_t> backend_max_ring_page_order;
    // config-* nodes for pvkit-blkback (indirect segments, flush, discard).
    toolstack::BlkbackOptions backend{};

    // The frontend's own ring limit, 0..4 (32..512 slots).
    std::uint32_t max_ring_page_order = 4;
    // I/Os in flight at once; 0: the ring's slots at max_ring_page_order.
    std::uint32_t queue_depth = 0;
    // Largest single read or write, a multiple of 4096, at most 1 MiB.
    // Synchronous calls split longer ones.
    std::uint32_t max_io_bytes = 128 * 1024;
    // Pool bytes for data (copy buffers and alloc_buffer); 0: queue_depth *
    // max_io_bytes.
    std::size_t buffer_bytes = 0;
    // How long a waiter looks at the ring before it sleeps. 20 us covers a
    // page-cache read through pvkit-blkback and most of a backend's batch
    // of 32; a sleep costs a ~40 us wakeup here (docs/benchmarks.md,
    // `bench blk`).
    std::chrono::nanoseconds spin{std::chrono::microseconds(20)};
    // If set, after this much of `spin` each look yields the CPU first
    // (sched_yield), so the backend or the kernel worker doing the I/O can
    // use this core. It helped writes on an idle 2-core machine, but under
    // load a yield can cost a whole time slice, so it is off by default.
    std::optional<std::chrono::nanoseconds> spin_yield_after;
    // Bound on reaching Connected at attach, and on closing at detach.
    std::chrono::milliseconds connect_timeout{10000};
    // Bound on each synchronous call (it covers a backend restart).
    std::chrono::milliseconds io_timeout{60000};
};

// What the backend offers, after validation.
struct BlkInfo {
    std::uint64_t sectors = 0; // 512-byte sectors
    std::uint64_t size_bytes = 0;
    std::uint32_t sector_size = 512;
    bool read_only = false;
    bool flush = false;
    bool discard = false;
    std::uint32_t discard_granularity = 0;
    std::uint32_t max_indirect_segments = 0;
    std::uint32_t ring_page_order = 0;
    std::uint32_t ring_entries = 0;
    std::uint32_t queue_depth = 0;  // I/Os in flight this device allows
    std::uint32_t max_io_bytes = 0;
};

struct BlkCounters {
    std::uint64_t requests = 0;           // I/Os completed (any status)
    std::uint64_t errors = 0;             // of those, failed
    std::uint64_t ring_requests = 0;      // blkif requests put on rings (an I/O may take several)
    std::uint64_t indirect_requests = 0;
    std::uint64_t bytes_read = 0;
    std::uint64_t bytes_written = 0;
    std::uint64_t notifications_sent = 0;     // kicks to the backend
    std::uint64_t notifications_received = 0; // kicks from the backend (eventfd reads)
    std::uint64_t sleeps = 0;                 // waits that went to sleep in poll(2)
    std::uint64_t reconnects = 0;
    std::uint64_t ios_reissued = 0;
    std::uint64_t responses_rejected = 0;
    std::uint64_t grants_deferred = 0;
};

struct Completion {
    std::uint64_t tag = 0;
    std::optional<BlkError> error; // nullopt: success
    std::uint64_t bytes = 0;       // bytes moved (read/write)
};

// Pages of the device's grant pool, handed to the caller for zero-copy
// I/O. Contiguous, page-aligned. Keeps the pool mapped while it lives.
class PoolBuffer {
public:
    PoolBuffer() = default;
    PoolBuffer(PoolBuffer&& other) noexcept;
    PoolBuffer& operator=(PoolBuffer&& other) noexcept;
    PoolBuffer(const PoolBuffer&) = delete;
    PoolBuffer& operator=(const PoolBuffer&) = delete;
    ~PoolBuffer();

    [[nodiscard]] std::span<std::byte> bytes() const { return {m_data, m_size}; }
    [[nodiscard]] std::byte* data() const { return m_data; }
    [[nodiscard]] std::size_t size() const { return m_size; }
    [[nodiscard]] std::uint32_t first_frame() const { return m_first_frame; }
    [[nodiscard]] bool valid() const { return m_data != nullptr; }

private:
    friend class detail::DeviceImpl;
    PoolBuffer(std::shared_ptr<detail::PoolMemory> pool, std::uint32_t first_frame,
               std::uint32_t nr_frames, std::byte* data, std::size_t size)
        : m_pool(std::move(pool)), m_first_frame(first_frame), m_nr_frames(nr_frames),
          m_data(data), m_size(size) {}
    void reset();

    std::shared_ptr<detail::PoolMemory> m_pool;
    std::uint32_t m_first_frame = 0;
    std::uint32_t m_nr_frames = 0;
    std::byte* m_data = nullptr;
    std::size_t m_size = 0;
};

class BlkDevice {
public:
    // Attaches and connects. Throws FrontError (with the reason, e.g. no
    // backend answered within connect_timeout, or the backend's values
    // failed validation).
    static BlkDevice attach(HostDomain& domain, const BlkDeviceOptions& options);

    BlkDevice(BlkDevice&&) noexcept;
    BlkDevice& operator=(BlkDevice&&) noexcept;
    BlkDevice(const BlkDevice&) = delete;
    BlkDevice& operator=(const BlkDevice&) = delete;
    ~BlkDevice();

    [[nodiscard]] const BlkInfo& info() const;
    [[nodiscard]] std::uint32_t devid() const;
    [[nodiscard]] bool connected() const;

    // ---- Synchronous. Offsets and lengths are multiples of sector_size.
    Result<void, BlkError> read(std::uint64_t offset, std::span<std::byte> out);
    Result<void, BlkError> write(std::uint64_t offset, std::span<const std::byte> data);
    // Zero-copy: bytes [0, length) of `buf`; length <= max_io_bytes.
    Result<void, BlkError> read(std::uint64_t offset, PoolBuffer& buf, std::size_t length);
    Result<void, BlkError> write(std::uint64_t offset, const PoolBuffer& buf, std::size_t length);
    Result<void, BlkError> flush();
    Result<void, BlkError> discard(std::uint64_t offset, std::uint64_t length);

    // Pool pages for zero-copy I/O (rounded up to whole pages).
    Result<PoolBuffer, BlkError> alloc_buffer(std::size_t bytes);

    // ---- Asynchronous. kBusy when queue_depth I/Os are in flight. A
    // copying read writes into `out` when it completes: keep it alive until
    // its Completion. A copying write copies `data` at once. Lengths are at
    // most max_io_bytes.
    Result<void, BlkError> submit_read(std::uint64_t offset, std::span<std::byte> out,
                                       std::uint64_t tag);
    Result<void, BlkError> submit_write(std::uint64_t offset, std::span<const std::byte> data,
                                        std::uint64_t tag);
    Result<void, BlkError> submit_read(std::uint64_t offset, PoolBuffer& buf, std::size_t length,
                                       std::uint64_t tag);
    Result<void, BlkError> submit_write(std::uint64_t offset, const PoolBuffer& buf,
                                        std::size_t length, std::uint64_t tag);
    Result<void, BlkError> submit_flush(std::uint64_t tag);
    Result<void, BlkError> submit_discard(std::uint64_t offset, std::uint64_t length,
                                          std::uint64_t tag);

    // Appends the completions available now (never blocks; handles pending
    // store events and kicks).
    std::size_t poll(std::vector<Completion>& out);
    // Appends completions until at least `min` were appended or `timeout`
    // passed (kTimeout; what arrived is appended anyway).
    Result<std::size_t, BlkError> wait(std::vector<Completion>& out, std::size_t min,
                                       std::chrono::milliseconds timeout);
    // Asynchronous I/Os submitted and not yet returned by poll/wait.
    [[nodiscard]] std::uint32_t in_flight() const;

    // Frontend-initiated close: finishes what is on the ring, then both ends
    // go Closed. The device stays in the store. Throws FrontError.
    void close();
    // Teardown and removal from the store. Throws FrontError.
    void detach();

    [[nodiscard]] BlkCounters counters() const;
    // The frontend's XenBus state number (1..6) and, when not connected,
    // why (for messages).
    [[nodiscard]] unsigned state() const;
    [[nodiscard]] std::string reason() const;

private:
    explicit BlkDevice(std::unique_ptr<detail::DeviceImpl> impl);
    std::unique_ptr<detail::DeviceImpl> m_impl;
};

} // namespace pvkit::front
