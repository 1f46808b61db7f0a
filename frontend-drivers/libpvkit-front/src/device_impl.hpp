// The implementation behind BlkDevice: the blkfront core, its environment
// (store, pool, grants, event channel, hand-off) and the I/O slots.
#pragma once

#include <pvkit/blkfront.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "detail.hpp"
#include "pvkit/front/blk_device.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::front::detail {

// One I/O the device can have in flight: the core's descriptor and its
// segments, plus what the library needs at completion.
struct IoSlot {
    pvkit_blkfront_io io{};
    std::vector<pvkit_blkfront_seg> segs;
    std::uint64_t tag = 0;
    std::uint64_t bytes = 0;
    std::byte* copy_out = nullptr;  // copying read: the caller's memory
    std::uint32_t bounce_first = 0; // copy buffer frames (ours), if any
    std::uint32_t bounce_count = 0;
    int status = 0;
    bool busy = false;
    bool sync = false;     // a synchronous call waits for `done`
    bool done = false;
    bool orphaned = false; // its synchronous caller timed out and left
};

class DeviceImpl {
public:
    DeviceImpl(DomainImpl& domain, const BlkDeviceOptions& options);
    DeviceImpl(const DeviceImpl&) = delete;
    DeviceImpl& operator=(const DeviceImpl&) = delete;
    ~DeviceImpl();

    // Attaches (if asked), runs the handshake, waits for Connected. Throws.
    void connect();
    // A store watch event for this device.
    void on_store_event();

    const BlkInfo& info() const { return m_info; }
    std::uint32_t devid() const { return m_options.devid; }
    bool connected() const { return m_core && pvkit_blkfront_connected(m_core.get()); }
    toolstack::DeviceRef device_ref() const {
        return {toolstack::DeviceKind::kVbd, m_options.devid, PVKIT_DOMID_HOST};
    }

    // What one I/O asks for. Exactly one of out/in/buf is set for a read
    // or write (out: copying read, in: copying write, buf: zero-copy).
    struct Request {
        std::uint8_t op = PVKIT_BLKFRONT_OP_READ;
        std::uint64_t offset = 0;
        std::uint64_t length = 0;
        std::byte* out = nullptr;
        const std::byte* in = nullptr;
        const PoolBuffer* buf = nullptr;
    };

    // Synchronous: waits for room and for completion (io_timeout).
    // Copying reads and writes of any length are split into max_io_bytes
    // pieces, pipelined up to the queue depth.
    Result<void, BlkError> run_sync(const Request& rq);
    Result<void, BlkError> run_sync_copy(const Request& rq);
    // Asynchronous: kBusy when the queue (or the copy buffers) are full.
    Result<void, BlkError> submit(const Request& rq, std::uint64_t tag);

    Result<PoolBuffer, BlkError> alloc_buffer(std::size_t bytes);

    std::size_t poll(std::vector<Completion>& out);
    Result<std::size_t, BlkError> wait(std::vector<Completion>& out, std::size_t min,
                                       std::chrono::milliseconds timeout);
    std::uint32_t in_flight() const {
        return m_async_in_flight + static_cast<std::uint32_t>(m_ready.size());
    }

    void close();
    void detach();

    BlkCounters counters() const;
    unsigned state() const;
    std::string reason() const;

private:
    using Clock = std::chrono::steady_clock;

    // The environment the core calls (ctx is this device).
    static int env_store_read(void* ctx, std::uint32_t tx, const char* path, char* buf,
                              std::uint32_t size);
    static int env_store_write(void* ctx, std::uint32_t tx, const char* path, const char* value);
    static int env_store_rm(void* ctx, std::uint32_t tx, const char* path);
    static int env_tx_start(void* ctx, std::uint32_t* tx);
    static int env_tx_end(void* ctx, std::uint32_t tx, int commit);
    static int env_alloc_frames(void* ctx, std::uint32_t count, std::uint32_t* first, void** mem);
    static void env_free_frames(void* ctx, std::uint32_t first, std::uint32_t count);
    static int env_grant(void* ctx, pvkit_domid_t domid, std::uint32_t frame, int readonly,
                         pvkit_grant_ref_t* ref);
    static int env_end_grant(void* ctx, pvkit_grant_ref_t ref);
    static int env_evtchn_alloc(void* ctx, pvkit_domid_t remote, pvkit_evtchn_port_t* port);
    static void env_evtchn_free(void* ctx, pvkit_evtchn_port_t port);
    static void env_notify(void* ctx, pvkit_evtchn_port_t port);
    static int env_before_initialised(void* ctx, pvkit_evtchn_port_t port);
    static void env_complete(void* ctx, pvkit_blkfront_io* io);

    void attach_in_store();
    // m_info from the core's view of the backend (after each connection).
    void refresh_info();
    void remove_from_store();
    // One round of progress: store events, responses, then (if nothing
    // happened) spin, final check and sleep until a kick, a store event or
    // `deadline`. False once the deadline has passed.
    bool progress(Clock::time_point deadline);
    // The domain's store events, at most every kStorePumpInterval.
    std::size_t pump_events_now_and_then();
    // Waits until the core is finished (closed for good), bounded.
    void wait_finished(std::chrono::milliseconds timeout);
    void teardown_local();

    Result<IoSlot*, BlkError> take_slot();
    void release_slot(IoSlot* slot);
    void fill_segments(IoSlot& slot, std::uint32_t first_frame, std::size_t length);
    Result<void, BlkError> check(const Request& rq) const;
    // Validates, takes a slot (and copy buffer), submits to the core.
    Result<IoSlot*, BlkError> try_start(const Request& rq, bool sync, std::uint64_t tag);
    Result<void, BlkError> wait_sync(IoSlot* slot, Clock::time_point deadline);

    DomainImpl& m_domain;
    BlkDeviceOptions m_options;
    std::string m_front_path;
    std::string m_back_path;
    std::string m_state_watch;
    std::string m_token;
    bool m_attached_by_us = false;
    bool m_registered = false;
    bool m_detached = false;
    bool m_closed = false;

    std::shared_ptr<PoolMemory> m_pool;
    pvkit_blkfront_env m_env{};
    std::unique_ptr<pvkit_blkfront> m_core;

    EventChannel m_channel;
    bool m_channel_live = false;
    pvkit_evtchn_port_t m_port = 0;
    UniqueFd m_handoff_wait;   // the backend's copies, sent at hand-off
    UniqueFd m_handoff_notify;
    std::string m_hook_error;

    std::vector<IoSlot> m_slots;
    std::vector<IoSlot*> m_free_slots;
    std::deque<Completion> m_ready;
    std::uint32_t m_async_in_flight = 0;
    std::uint32_t m_pages_per_io = 0;

    BlkInfo m_info;
    std::uint64_t m_notifications_received = 0;
    std::uint64_t m_sleeps = 0;
    Clock::time_point m_last_pump{};
    // Counters survive the core (read after detach).
    mutable BlkCounters m_last_counters;
};

} // namespace pvkit::front::detail
