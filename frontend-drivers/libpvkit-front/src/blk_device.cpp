#include "pvkit/front/blk_device.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "device_impl.hpp"
#include "pvkit/transport/handoff.hpp"

namespace pvkit::front {

namespace detail {

namespace {

constexpr std::uint32_t kPage = PVKIT_PAGE_SIZE;
constexpr std::uint32_t kMaxIoBytes = PVKIT_BLKFRONT_MAX_IO_SEGS * PVKIT_PAGE_SIZE;
// While grant ends are deferred (the backend still holds a page), waiters
// wake this often to retry them; otherwise they sleep until an event.
constexpr std::chrono::milliseconds kDeferredTick{10};
constexpr std::chrono::milliseconds kIdleTick{1000};
constexpr std::chrono::milliseconds kStoreDownTick{50};
// How often a waiter looks for store events while responses keep coming.
constexpr std::chrono::microseconds kStorePumpInterval{1000};
// After a teardown wait times out, how long to wait once the ring is dropped.
constexpr std::chrono::milliseconds kAbandonGrace{1000};

std::uint32_t ring_ents(std::uint32_t order) {
    return pvkit_ring_nr_ents(PVKIT_PAGE_SIZE << order,
                              static_cast<std::uint32_t>(sizeof(union pvkit_blkif_sring_entry)));
}

std::uint32_t pages_for(std::size_t bytes) {
    return static_cast<std::uint32_t>((bytes + kPage - 1) / kPage);
}

int store_errno(store::StoreError e) {
    // StoreError values are the PVKIT_E* numbers.
    return -static_cast<int>(e);
}

UniqueFd dup_cloexec(int fd) {
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy.valid())
        throw_errno("dup");
    return copy;
}

} // namespace

// ---- Set-up --------------------------------------------------------------------------

DeviceImpl::DeviceImpl(DomainImpl& domain, const BlkDeviceOptions& options)
    : m_domain(domain), m_options(options) {
    const std::string dev = "device " + std::to_string(options.devid);
    if (options.devid > toolstack::kDevidMax)
        throw FrontError(dev + ": devid above " + std::to_string(toolstack::kDevidMax));
    if (options.max_ring_page_order > PVKIT_RING_MAX_PAGE_ORDER)
        throw FrontError(dev + ": max_ring_page_order above 4");
    if (options.max_io_bytes == 0 || options.max_io_bytes % kPage != 0 ||
        options.max_io_bytes > kMaxIoBytes)
        throw FrontError(dev + ": max_io_bytes must be a multiple of 4096 up to 1 MiB");
    if (options.sector_size != 512 && options.sector_size != 4096)
        throw FrontError(dev + ": sector_size must be 512 or 4096");

    m_front_path = toolstack::frontend_path(domain.domid, toolstack::DeviceKind::kVbd, options.devid);
    m_token = "pvkit-vbd-" + std::to_string(options.devid);

    const std::uint32_t max_ents = ring_ents(options.max_ring_page_order);
    const std::uint32_t depth = options.queue_depth != 0 ? options.queue_depth : max_ents;
    m_pages_per_io = options.max_io_bytes / kPage;
    const std::size_t buffer_bytes = options.buffer_bytes != 0
                                         ? options.buffer_bytes
                                         : std::size_t{depth} * options.max_io_bytes;
    // Ring pages, one indirect page per ring slot, room for old ring pages
    // the core may have to quarantine, and the data buffers.
    const std::uint64_t data_frames = (std::uint64_t{1} << options.max_ring_page_order) + max_ents +
                                      PVKIT_BLKFRONT_QUARANTINE_MAX + pages_for(buffer_bytes);
    // A frame can carry a deferred old grant and a fresh one at once.
    const std::uint64_t nr_grants = 2 * data_frames + 64;
    if (data_frames + nr_grants / PVKIT_GRANT_ENTRIES_PER_PAGE + 2 > PVKIT_GRANT_POOL_MAX_FRAMES)
        throw FrontError(dev + ": queue_depth * max_io_bytes (or buffer_bytes) exceeds a 1 GiB pool");
    try {
        m_pool = std::make_shared<PoolMemory>(
            GrantPool::create(domain.domid, static_cast<std::uint32_t>(data_frames),
                              static_cast<std::uint32_t>(nr_grants), "pvkit-vbd"));
    } catch (const std::exception& e) {
        throw FrontError(dev + ": cannot create its grant pool: " + e.what());
    }

    m_slots = std::vector<IoSlot>(depth);
    m_free_slots.reserve(depth);
    for (std::size_t i = depth; i > 0; --i) {
        IoSlot& s = m_slots[i - 1];
        s.segs.resize(m_pages_per_io);
        m_free_slots.push_back(&s);
    }

    m_env.ctx = this;
    m_env.store_read = &env_store_read;
    m_env.store_write = &env_store_write;
    m_env.store_rm = &env_store_rm;
    m_env.store_tx_start = &env_tx_start;
    m_env.store_tx_end = &env_tx_end;
    m_env.alloc_frames = &env_alloc_frames;
    m_env.free_frames = &env_free_frames;
    m_env.grant = &env_grant;
    m_env.end_grant = &env_end_grant;
    m_env.evtchn_alloc = &env_evtchn_alloc;
    m_env.evtchn_free = &env_evtchn_free;
    m_env.notify = &env_notify;
    m_env.before_initialised = &env_before_initialised;
    m_env.complete = &env_complete;

    m_info.queue_depth = depth;
    m_info.max_io_bytes = options.max_io_bytes;
}

DeviceImpl::~DeviceImpl() {
    if (!m_detached) {
        try {
            detach();
        } catch (const std::exception&) {
            // Nothing to report to from a destructor; the store keeps the
            // device until the toolstack destroys the domain.
        }
    }
    teardown_local();
}

void DeviceImpl::attach_in_store() {
    toolstack::DiskConfig disk;
    disk.devid = m_options.devid;
    std::error_code ec;
    disk.path = std::filesystem::absolute(m_options.image, ec);
    if (ec)
        throw FrontError("device " + std::to_string(m_options.devid) + ": image path " +
                         m_options.image.string() + ": " + ec.message());
    disk.mode = m_options.read_only ? toolstack::DiskMode::kRead : toolstack::DiskMode::kWrite;
    disk.sector_size = m_options.sector_size;
    disk.max_ring_page_order = m_options.backend_max_ring_page_order;
    auto ops = toolstack::disk_attach_ops(m_domain.domid, disk, m_options.backend);
    if (!ops)
        throw FrontError("device " + std::to_string(m_options.devid) + ": " +
                         toolstack::to_string(ops.error()));
    store::StoreClient& ts = m_domain.dom0;
    run_transaction(ts, "attach device " + std::to_string(m_options.devid),
                    [&](store::TxId tx) -> std::optional<store::StoreError> {
                        // docs/handshake.md: block-attach checks that the
                        // frontend directory does not exist yet.
                        auto existing = ts.read(m_front_path, tx);
                        if (existing)
                            throw FrontError("device " + std::to_string(m_options.devid) +
                                             " already exists in domain " +
                                             std::to_string(m_domain.domid));
                        if (existing.error() != store::StoreError::kNoEnt)
                            return existing.error();
                        return apply_ops(ts, *ops, tx);
                    });
    m_attached_by_us = true;
}

void DeviceImpl::remove_from_store() {
    store::StoreClient& ts = m_domain.dom0;
    const auto paths = toolstack::device_remove_paths(m_domain.domid, device_ref());
    run_transaction(ts, "remove device " + std::to_string(m_options.devid),
                    [&](store::TxId tx) -> std::optional<store::StoreError> {
                        for (const std::string& p : paths) {
                            auto r = ts.rm(p, tx);
                            if (!r && r.error() != store::StoreError::kNoEnt)
                                return r.error();
                        }
                        return std::nullopt;
                    });
}

void DeviceImpl::connect() {
    const std::string dev = "device " + std::to_string(m_options.devid);
    if (!m_options.image.empty())
        attach_in_store();
    try {
        m_core = std::make_unique<pvkit_blkfront>();
        int r = pvkit_blkfront_init(m_core.get(), &m_env, m_front_path.c_str(),
                                    static_cast<std::uint16_t>(m_options.devid),
                                    m_options.max_ring_page_order);
        if (r < 0) {
            m_core.reset();
            throw FrontError(dev + ": cannot start the frontend at " + m_front_path + ": " +
                             std::string(store::to_string(static_cast<store::StoreError>(-r))));
        }
        m_back_path = pvkit_blkfront_backend_path(m_core.get());
        m_state_watch = m_back_path + "/state";
        m_domain.register_device(m_token, this);
        m_registered = true;
        // Watch, then read (rule 2): the first event comes at once and makes
        // the core read the backend's state.
        auto w = m_domain.m_self.client.watch(m_state_watch, m_token);
        if (!w)
            throw_store(dev + ": watch " + m_state_watch, w.error());
        const auto deadline = Clock::now() + m_options.connect_timeout;
        while (!pvkit_blkfront_connected(m_core.get())) {
            if (pvkit_blkfront_finished(m_core.get()))
                throw FrontError(dev + ": did not connect: " + reason());
            if (!progress(deadline))
                throw FrontError(dev + ": no backend connected within " +
                                 std::to_string(m_options.connect_timeout.count()) + " ms (" +
                                 reason() + "); is pvkit-blkback running?");
        }
    } catch (...) {
        // Leave nothing behind: the backend sees its directory go and drops
        // whatever it had mapped.
        m_detached = true;
        teardown_local();
        if (m_attached_by_us) {
            try {
                remove_from_store();
            } catch (const std::exception&) {
            }
        }
        throw;
    }
    refresh_info();
}

void DeviceImpl::refresh_info() {
    const pvkit_blkfront_info* ci = m_core ? pvkit_blkfront_get_info(m_core.get()) : nullptr;
    if (ci == nullptr)
        return;
    m_info.sectors = ci->sectors;
    m_info.size_bytes = ci->sectors * PVKIT_BLKIF_SECTOR_SIZE;
    m_info.sector_size = ci->sector_size;
    m_info.read_only = ci->read_only != 0;
    m_info.flush = ci->flush != 0;
    m_info.discard = ci->discard != 0;
    m_info.discard_granularity = ci->discard_granularity;
    m_info.max_indirect_segments = ci->max_indirect_segs;
    m_info.ring_page_order = ci->ring_page_order;
    m_info.ring_entries = ci->ring_ents;
}

void DeviceImpl::on_store_event() {
    if (m_core && !pvkit_blkfront_finished(m_core.get())) {
        (void)pvkit_blkfront_store_changed(m_core.get());
        // A reconnect may have brought other limits (ring size, indirect).
        if (pvkit_blkfront_connected(m_core.get()))
            refresh_info();
    }
}

// ---- The environment -----------------------------------------------------------------

int DeviceImpl::env_store_read(void* ctx, std::uint32_t tx, const char* path, char* buf,
                               std::uint32_t size) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_domain.m_self.client.read(path, tx);
    if (!r)
        return store_errno(r.error());
    if (r->size() > size)
        return -PVKIT_E2BIG;
    std::memcpy(buf, r->data(), r->size());
    return static_cast<int>(r->size());
}

int DeviceImpl::env_store_write(void* ctx, std::uint32_t tx, const char* path, const char* value) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_domain.m_self.client.write(path, value, tx);
    return r ? 0 : store_errno(r.error());
}

int DeviceImpl::env_store_rm(void* ctx, std::uint32_t tx, const char* path) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_domain.m_self.client.rm(path, tx);
    return r || r.error() == store::StoreError::kNoEnt ? 0 : store_errno(r.error());
}

int DeviceImpl::env_tx_start(void* ctx, std::uint32_t* tx) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_domain.m_self.client.transaction_start();
    if (!r)
        return store_errno(r.error());
    *tx = *r;
    return 0;
}

int DeviceImpl::env_tx_end(void* ctx, std::uint32_t tx, int commit) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_domain.m_self.client.transaction_end(tx, commit != 0);
    return r ? 0 : store_errno(r.error());
}

int DeviceImpl::env_alloc_frames(void* ctx, std::uint32_t count, std::uint32_t* first, void** mem) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto f = self->m_pool->frames.alloc(count);
    if (!f)
        return -PVKIT_ENOMEM;
    *first = *f;
    *mem = self->m_pool->pool.frame_ptr(*f);
    return 0;
}

void DeviceImpl::env_free_frames(void* ctx, std::uint32_t first, std::uint32_t count) {
    static_cast<DeviceImpl*>(ctx)->m_pool->frames.free(first, count);
}

int DeviceImpl::env_grant(void* ctx, pvkit_domid_t domid, std::uint32_t frame, int readonly,
                          pvkit_grant_ref_t* ref) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_pool->grants.grant(domid, frame,
                                        readonly != 0 ? GrantAccess::kReadOnly : GrantAccess::kReadWrite);
    if (!r)
        return r.error() == GrantError::kNoFreeRefs ? -PVKIT_ENOSPC : -PVKIT_EINVAL;
    *ref = *r;
    return 0;
}

int DeviceImpl::env_end_grant(void* ctx, pvkit_grant_ref_t ref) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto r = self->m_pool->grants.end(ref);
    if (r)
        return 0;
    return r.error() == GrantError::kInUse ? -PVKIT_EBUSY : -PVKIT_EINVAL;
}

int DeviceImpl::env_evtchn_alloc(void* ctx, pvkit_domid_t /*remote*/, pvkit_evtchn_port_t* port) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto p = self->m_domain.alloc_port();
    if (!p)
        return -PVKIT_ENOSPC;
    try {
        // Fresh eventfds per connection: nothing an old backend instance
        // still holds can kick the new connection.
        EventChannelFds fds = make_event_channel_fds();
        self->m_handoff_wait = dup_cloexec(fds.to_backend.get());
        self->m_handoff_notify = dup_cloexec(fds.to_frontend.get());
        self->m_channel = EventChannel::frontend_end(fds);
    } catch (const std::exception&) {
        self->m_domain.free_port(*p);
        return -PVKIT_ENOMEM;
    }
    self->m_channel_live = true;
    self->m_port = *p;
    *port = *p;
    return 0;
}

void DeviceImpl::env_evtchn_free(void* ctx, pvkit_evtchn_port_t port) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    self->m_domain.free_port(port);
    self->m_channel = EventChannel();
    self->m_channel_live = false;
    self->m_handoff_wait.reset();
    self->m_handoff_notify.reset();
}

void DeviceImpl::env_notify(void* ctx, pvkit_evtchn_port_t /*port*/) {
    static_cast<DeviceImpl*>(ctx)->m_channel.notify();
}

int DeviceImpl::env_before_initialised(void* ctx, pvkit_evtchn_port_t port) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    self->m_hook_error.clear();
    // The socket path comes from the backend directory, which only domain 0
    // writes: a frontend can never point its backend at another socket.
    auto path = self->m_domain.m_self.client.read(self->m_back_path + "/handoff-socket");
    if (!path) {
        self->m_hook_error = "the backend published no handoff-socket (" +
                             std::string(store::to_string(path.error())) + ")";
        return store_errno(path.error());
    }
    try {
        HandoffRequest req;
        req.frontend_domid = self->m_domain.domid;
        req.devid = self->m_options.devid;
        req.type = "vbd";
        req.ports = {port};
        req.fds.push_back(dup_cloexec(self->m_pool->pool.fd()));
        req.fds.push_back(std::move(self->m_handoff_wait));
        req.fds.push_back(std::move(self->m_handoff_notify));
        const int status = handoff_device(*path, req, self->m_options.connect_timeout);
        if (status != 0) {
            self->m_hook_error = "pvkit-blkback refused the hand-off: " + std::string(std::strerror(status));
            return -(status > 0 && status < 4096 ? status : PVKIT_EIO);
        }
    } catch (const std::exception& e) {
        self->m_hook_error = std::string("hand-off to ") + *path + " failed: " + e.what();
        return -PVKIT_EIO;
    }
    return 0;
}

void DeviceImpl::env_complete(void* ctx, pvkit_blkfront_io* io) {
    auto* self = static_cast<DeviceImpl*>(ctx);
    auto* slot = static_cast<IoSlot*>(io->cookie);
    slot->status = io->status;
    if (slot->bounce_count != 0) {
        if (io->status == 0 && slot->copy_out != nullptr && !slot->orphaned)
            std::memcpy(slot->copy_out, self->m_pool->pool.frame_ptr(slot->bounce_first),
                        static_cast<std::size_t>(slot->bytes));
        self->m_pool->frames.free(slot->bounce_first, slot->bounce_count);
        slot->bounce_count = 0;
    }
    if (slot->sync) {
        slot->done = true;
        if (slot->orphaned)
            self->release_slot(slot);
        return;
    }
    Completion c;
    c.tag = slot->tag;
    if (io->status != 0)
        c.error = blk_error_from_status(io->status);
    else
        c.bytes = slot->bytes;
    self->m_ready.push_back(c);
    --self->m_async_in_flight;
    self->release_slot(slot);
}

// ---- Waiting ----------------------------------------------------------------------------

std::size_t DeviceImpl::pump_events_now_and_then() {
    // Store events only matter for the handshake (state changes, a backend
    // restart), never per request, and looking costs system calls. While
    // responses flow, look at most every kStorePumpInterval; every sleep
    // below looks (and waits on the store socket) anyway.
    const Clock::time_point now = Clock::now();
    if (now - m_last_pump < kStorePumpInterval)
        return 0;
    m_last_pump = now;
    return m_domain.pump_events();
}

bool DeviceImpl::progress(Clock::time_point deadline) {
    pvkit_blkfront* core = m_core.get();
    const bool flowing = core != nullptr && m_channel_live && pvkit_blkfront_connected(core);
    std::size_t events = flowing ? pump_events_now_and_then() : m_domain.pump_events();
    int responses = core != nullptr ? pvkit_blkfront_poll(core) : 0;
    if (events != 0 || responses != 0)
        return true;
    if (core != nullptr && m_channel_live && m_options.spin.count() > 0 &&
        pvkit_blkfront_outstanding(core) != 0) {
        // Hold-off: while the backend is busy it is not kicked and we do
        // not sleep; a quick answer costs no system call. Optionally,
        // after a pure spin, each look yields the CPU: on a machine with
        // few cores the work we wait for (the backend, or the kernel worker
        // doing its I/O) may need this very core.
        SpinDeadline spin(m_options.spin);
        SpinDeadline pure(
            std::min(m_options.spin, m_options.spin_yield_after.value_or(m_options.spin)));
        do {
            if (pvkit_blkfront_responses_ready(core) != 0)
                return true;
            if (pure.expired())
                ::sched_yield();
            else
                cpu_relax();
        } while (!spin.expired());
    }
    // Final check: arm rsp_event, look once more; only then sleep.
    if (core != nullptr && pvkit_blkfront_final_check(core) != 0)
        return true;
    // The core's store calls may have queued events behind our back.
    m_last_pump = Clock::now();
    if (m_domain.pump_events() != 0)
        return true;
    const auto now = Clock::now();
    if (now >= deadline)
        return false;
    auto tick = core != nullptr && pvkit_blkfront_deferred(core) != 0 ? kDeferredTick : kIdleTick;
    // Without pvkit-stored there is no descriptor to wake us: wake now and
    // then so that pump_events() gets to redial it.
    if (m_domain.store_down())
        tick = std::min(tick, kStoreDownTick);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                std::chrono::milliseconds(1);
    const int timeout_ms = static_cast<int>(std::min(left, std::chrono::milliseconds(tick)).count());
    pollfd fds[2];
    nfds_t n = 0;
    int channel_index = -1;
    if (m_channel_live) {
        channel_index = static_cast<int>(n);
        fds[n++] = pollfd{m_channel.wait_fd(), POLLIN, 0};
    }
    if (m_domain.store_fd() >= 0)
        fds[n++] = pollfd{m_domain.store_fd(), POLLIN, 0};
    ++m_sleeps;
    int r = ::poll(fds, n, timeout_ms);
    if (r > 0 && channel_index >= 0 && (fds[channel_index].revents & POLLIN) != 0 &&
        m_channel.try_consume())
        ++m_notifications_received;
    return true;
}

void DeviceImpl::wait_finished(std::chrono::milliseconds timeout) {
    if (!m_core)
        return;
    auto deadline = Clock::now() + timeout;
    while (!pvkit_blkfront_finished(m_core.get())) {
        if (!progress(deadline))
            break;
    }
    if (pvkit_blkfront_finished(m_core.get()))
        return;
    // The backend does not answer what is on the ring: drop the ring (what
    // was on it stays granted until the backend lets go) and give the
    // state machine a last chance to finish.
    pvkit_blkfront_abandon_ring(m_core.get());
    deadline = Clock::now() + kAbandonGrace;
    while (!pvkit_blkfront_finished(m_core.get())) {
        if (!progress(deadline))
            break;
    }
}

void DeviceImpl::teardown_local() {
    if (m_registered) {
        if (!m_state_watch.empty())
            (void)m_domain.m_self.client.unwatch(m_state_watch, m_token);
        m_domain.unregister_device(m_token);
        m_registered = false;
    }
    if (m_core) {
        (void)counters(); // keep the last values readable after the core is gone
        // Everything unfinished completes now with kClosed; grants the
        // backend still holds stay granted, and the pool is unmapped once
        // the last PoolBuffer goes, so no page is ever reused under it.
        (void)pvkit_blkfront_destroy(m_core.get(), 1);
        m_core.reset();
    }
    m_channel = EventChannel();
    m_channel_live = false;
}

// ---- I/O -----------------------------------------------------------------------------------

Result<IoSlot*, BlkError> DeviceImpl::take_slot() {
    if (!m_core || m_closed || pvkit_blkfront_finished(m_core.get()))
        return Unexpected{BlkError::kClosed};
    if (m_free_slots.empty())
        return Unexpected{BlkError::kBusy};
    IoSlot* s = m_free_slots.back();
    m_free_slots.pop_back();
    s->busy = true;
    s->sync = false;
    s->done = false;
    s->orphaned = false;
    s->copy_out = nullptr;
    s->bounce_count = 0;
    s->bytes = 0;
    s->tag = 0;
    s->status = 0;
    return s;
}

void DeviceImpl::release_slot(IoSlot* slot) {
    if (slot->bounce_count != 0) {
        m_pool->frames.free(slot->bounce_first, slot->bounce_count);
        slot->bounce_count = 0;
    }
    slot->busy = false;
    m_free_slots.push_back(slot);
}

void DeviceImpl::fill_segments(IoSlot& slot, std::uint32_t first_frame, std::size_t length) {
    // Data is packed from the start of each page: page i holds bytes
    // [i * 4096, (i + 1) * 4096) of the I/O.
    std::size_t left = length / PVKIT_BLKIF_SECTOR_SIZE;
    const std::uint32_t pages = pages_for(length);
    for (std::uint32_t i = 0; i < pages; ++i) {
        const std::size_t sectors = std::min<std::size_t>(left, PVKIT_BLKIF_SECTORS_PER_PAGE);
        pvkit_blkfront_seg& s = slot.segs[i];
        s.frame = first_frame + i;
        s.first_sect = 0;
        s.last_sect = static_cast<std::uint8_t>(sectors - 1);
        left -= sectors;
    }
    slot.io.nr_segs = static_cast<std::uint16_t>(pages);
    slot.io.segs = slot.segs.data();
}

Result<void, BlkError> DeviceImpl::check(const Request& rq) const {
    const std::uint32_t ss = m_info.sector_size;
    switch (rq.op) {
    case PVKIT_BLKFRONT_OP_READ:
    case PVKIT_BLKFRONT_OP_WRITE:
        if (rq.length == 0 || rq.length > m_options.max_io_bytes || rq.offset % ss != 0 ||
            rq.length % ss != 0)
            return Unexpected{BlkError::kInvalid};
        if (rq.buf != nullptr &&
            (!rq.buf->valid() || rq.buf->m_pool != m_pool || rq.length > rq.buf->size()))
            return Unexpected{BlkError::kInvalid};
        return {};
    case PVKIT_BLKFRONT_OP_DISCARD:
        if (rq.length == 0 || rq.offset % ss != 0 || rq.length % ss != 0)
            return Unexpected{BlkError::kInvalid};
        return {};
    case PVKIT_BLKFRONT_OP_FLUSH:
        return {};
    default:
        return Unexpected{BlkError::kInvalid};
    }
}

Result<IoSlot*, BlkError> DeviceImpl::try_start(const Request& rq, bool sync, std::uint64_t tag) {
    auto ok = check(rq);
    if (!ok)
        return Unexpected{ok.error()};
    auto taken = take_slot();
    if (!taken)
        return taken;
    IoSlot* slot = *taken;
    pvkit_blkfront_io& io = slot->io;
    const bool data = rq.op == PVKIT_BLKFRONT_OP_READ || rq.op == PVKIT_BLKFRONT_OP_WRITE;
    if (data) {
        std::uint32_t first = 0;
        if (rq.buf != nullptr) {
            first = rq.buf->first_frame();
        } else {
            const std::uint32_t pages = pages_for(rq.length);
            auto frames = m_pool->frames.alloc(pages);
            if (!frames) {
                release_slot(slot);
                return Unexpected{BlkError::kBusy};
            }
            first = *frames;
            slot->bounce_first = first;
            slot->bounce_count = pages;
            if (rq.in != nullptr)
                std::memcpy(m_pool->pool.frame_ptr(first), rq.in, rq.length);
            slot->copy_out = rq.out;
        }
        fill_segments(*slot, first, rq.length);
    } else {
        io.nr_segs = 0;
        io.segs = nullptr;
    }
    io.op = rq.op;
    io.discard_secure = 0;
    io.sector = rq.offset / PVKIT_BLKIF_SECTOR_SIZE;
    io.nr_sectors = rq.op == PVKIT_BLKFRONT_OP_DISCARD ? rq.length / PVKIT_BLKIF_SECTOR_SIZE : 0;
    io.cookie = slot;
    slot->bytes = data ? rq.length : 0;
    slot->sync = sync;
    slot->tag = tag;
    if (!sync)
        ++m_async_in_flight;
    const int r = pvkit_blkfront_submit(m_core.get(), &io);
    if (r < 0) {
        if (!sync)
            --m_async_in_flight;
        release_slot(slot);
        return Unexpected{blk_error_from_status(r)};
    }
    return slot;
}

Result<void, BlkError> DeviceImpl::wait_sync(IoSlot* slot, Clock::time_point deadline) {
    while (!slot->done) {
        if (!progress(deadline)) {
            // The I/O stays in flight; its completion frees the slot and
            // never touches the caller's memory.
            slot->orphaned = true;
            return Unexpected{BlkError::kTimeout};
        }
    }
    const int status = slot->status;
    release_slot(slot);
    if (status != 0)
        return Unexpected{blk_error_from_status(status)};
    return {};
}

Result<void, BlkError> DeviceImpl::run_sync(const Request& rq) {
    const auto deadline = Clock::now() + m_options.io_timeout;
    for (;;) {
        auto s = try_start(rq, true, 0);
        if (s)
            return wait_sync(*s, deadline);
        if (s.error() != BlkError::kBusy)
            return Unexpected{s.error()};
        // Full: wait for something to complete, then try again.
        if (!progress(deadline))
            return Unexpected{BlkError::kTimeout};
    }
}

Result<void, BlkError> DeviceImpl::run_sync_copy(const Request& rq) {
    const auto deadline = Clock::now() + m_options.io_timeout;
    const std::uint64_t chunk = m_options.max_io_bytes;
    if (rq.length == 0 || rq.length % m_info.sector_size != 0 || rq.offset % m_info.sector_size != 0)
        return Unexpected{BlkError::kInvalid};
    std::vector<IoSlot*> active;
    std::optional<BlkError> failed;
    std::uint64_t at = 0;
    for (;;) {
        // Pipelined: as many pieces in flight as the queue allows.
        while (at < rq.length && !failed) {
            Request piece = rq;
            piece.offset = rq.offset + at;
            piece.length = std::min(chunk, rq.length - at);
            if (rq.out != nullptr)
                piece.out = rq.out + at;
            if (rq.in != nullptr)
                piece.in = rq.in + at;
            auto s = try_start(piece, true, 0);
            if (!s) {
                if (s.error() != BlkError::kBusy)
                    failed = s.error();
                break;
            }
            active.push_back(*s);
            at += piece.length;
        }
        for (auto it = active.begin(); it != active.end();) {
            if (!(*it)->done) {
                ++it;
                continue;
            }
            const int status = (*it)->status;
            release_slot(*it);
            it = active.erase(it);
            if (status != 0 && !failed)
                failed = blk_error_from_status(status);
        }
        if (active.empty() && (at >= rq.length || failed))
            break;
        if (!progress(deadline)) {
            for (IoSlot* s : active)
                s->orphaned = true;
            return Unexpected{BlkError::kTimeout};
        }
    }
    if (failed)
        return Unexpected{*failed};
    return {};
}

Result<void, BlkError> DeviceImpl::submit(const Request& rq, std::uint64_t tag) {
    auto s = try_start(rq, false, tag);
    if (!s)
        return Unexpected{s.error()};
    return {};
}

Result<PoolBuffer, BlkError> DeviceImpl::alloc_buffer(std::size_t bytes) {
    if (bytes == 0 || bytes > std::size_t{PVKIT_GRANT_POOL_MAX_FRAMES} * kPage)
        return Unexpected{BlkError::kInvalid};
    const std::uint32_t pages = pages_for(bytes);
    auto first = m_pool->frames.alloc(pages);
    if (!first)
        return Unexpected{BlkError::kNoBuffer};
    return PoolBuffer(m_pool, *first, pages, m_pool->pool.frame_ptr(*first),
                      std::size_t{pages} * kPage);
}

std::size_t DeviceImpl::poll(std::vector<Completion>& out) {
    if (m_core) {
        if (m_channel_live && pvkit_blkfront_connected(m_core.get()))
            (void)pump_events_now_and_then();
        else
            (void)m_domain.pump_events();
        (void)pvkit_blkfront_poll(m_core.get());
    }
    const std::size_t n = m_ready.size();
    out.insert(out.end(), m_ready.begin(), m_ready.end());
    m_ready.clear();
    return n;
}

Result<std::size_t, BlkError> DeviceImpl::wait(std::vector<Completion>& out, std::size_t min,
                                              std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::size_t got = poll(out);
    while (got < min) {
        if (m_ready.empty() && m_async_in_flight == 0)
            break; // nothing can come
        if (!progress(deadline)) {
            got += poll(out);
            if (got >= min)
                break;
            return Unexpected{BlkError::kTimeout};
        }
        const std::size_t n = m_ready.size();
        out.insert(out.end(), m_ready.begin(), m_ready.end());
        m_ready.clear();
        got += n;
    }
    return got;
}

// ---- Closing ---------------------------------------------------------------------------------

void DeviceImpl::close() {
    if (m_closed || !m_core)
        return;
    pvkit_blkfront_close(m_core.get());
    wait_finished(m_options.connect_timeout);
    m_closed = true;
}

void DeviceImpl::detach() {
    if (m_detached)
        return;
    m_detached = true;
    if (!m_core) {
        teardown_local();
        return;
    }
    std::string error;
    if (m_attached_by_us) {
        // docs/handshake.md "Teardown started by the toolstack": online = 0
        // and the backend's state Closing in one transaction; the frontend
        // and backend then close; the directories go once the backend is
        // Closed (or the wait ran out, as the toolstack does after 10 s).
        try {
            auto ops = toolstack::device_close_ops(m_domain.domid, device_ref());
            if (!ops)
                throw FrontError(toolstack::to_string(ops.error()));
            run_transaction(m_domain.dom0, "close device " + std::to_string(m_options.devid),
                            [&](store::TxId tx) { return apply_ops(m_domain.dom0, *ops, tx); });
            wait_finished(m_options.connect_timeout);
        } catch (const FrontError& e) {
            error = e.what();
        }
        teardown_local();
        try {
            remove_from_store();
        } catch (const FrontError& e) {
            if (error.empty())
                error = e.what();
        }
    } else {
        close();
        teardown_local();
    }
    m_closed = true;
    if (!error.empty())
        throw FrontError(error);
}

BlkCounters DeviceImpl::counters() const {
    BlkCounters c;
    if (m_core) {
        const pvkit_blkfront_counters* k = pvkit_blkfront_get_counters(m_core.get());
        c.requests = k->ios_completed + k->ios_failed;
        c.errors = k->ios_failed;
        c.ring_requests = k->ring_requests;
        c.indirect_requests = k->indirect_requests;
        c.bytes_read = k->bytes_read;
        c.bytes_written = k->bytes_written;
        c.notifications_sent = k->notifications_sent;
        c.reconnects = k->reconnects;
        c.ios_reissued = k->ios_reissued;
        c.responses_rejected = k->responses_rejected;
        c.grants_deferred = k->grants_deferred;
        m_last_counters = c;
    } else {
        c = m_last_counters;
    }
    c.notifications_received = m_notifications_received;
    c.sleeps = m_sleeps;
    return c;
}

unsigned DeviceImpl::state() const {
    return m_core ? pvkit_blkfront_state(m_core.get()) : PVKIT_XENBUS_CLOSED;
}

std::string DeviceImpl::reason() const {
    if (!m_core)
        return "closed";
    std::string why = pvkit_blkfront_reason_string(m_core->reason);
    if (m_core->reason == PVKIT_BLKFRONT_REASON_BAD_NODE && m_core->reason_node[0] != '\0')
        why += std::string(" (") + m_core->reason_node + ")";
    if (m_core->reason == PVKIT_BLKFRONT_REASON_CONNECT_HOOK && !m_hook_error.empty())
        why += ": " + m_hook_error;
    if (m_core->reason == PVKIT_BLKFRONT_REASON_NONE)
        why = "frontend state " + std::to_string(pvkit_blkfront_state(m_core.get())) +
              ", backend state " + std::to_string(m_core->backend_state);
    return why;
}

} // namespace detail

// ---- PoolBuffer ---------------------------------------------------------------------------

PoolBuffer::PoolBuffer(PoolBuffer&& other) noexcept
    : m_pool(std::move(other.m_pool)), m_first_frame(other.m_first_frame),
      m_nr_frames(other.m_nr_frames), m_data(std::exchange(other.m_data, nullptr)),
      m_size(std::exchange(other.m_size, 0)) {}

PoolBuffer& PoolBuffer::operator=(PoolBuffer&& other) noexcept {
    if (this != &other) {
        reset();
        m_pool = std::move(other.m_pool);
        m_first_frame = other.m_first_frame;
        m_nr_frames = other.m_nr_frames;
        m_data = std::exchange(other.m_data, nullptr);
        m_size = std::exchange(other.m_size, 0);
    }
    return *this;
}

PoolBuffer::~PoolBuffer() { reset(); }

void PoolBuffer::reset() {
    if (m_pool && m_data != nullptr)
        m_pool->frames.free(m_first_frame, m_nr_frames);
    m_pool.reset();
    m_data = nullptr;
    m_size = 0;
}

// ---- BlkDevice ----------------------------------------------------------------------------

using Request = detail::DeviceImpl::Request;

BlkDevice BlkDevice::attach(HostDomain& domain, const BlkDeviceOptions& options) {
    auto impl = std::make_unique<detail::DeviceImpl>(domain.impl(), options);
    impl->connect();
    return BlkDevice(std::move(impl));
}

BlkDevice::BlkDevice(std::unique_ptr<detail::DeviceImpl> impl) : m_impl(std::move(impl)) {}
BlkDevice::BlkDevice(BlkDevice&&) noexcept = default;
BlkDevice& BlkDevice::operator=(BlkDevice&&) noexcept = default;
BlkDevice::~BlkDevice() = default;

const BlkInfo& BlkDevice::info() const { return m_impl->info(); }
std::uint32_t BlkDevice::devid() const { return m_impl->devid(); }
bool BlkDevice::connected() const { return m_impl->connected(); }

Result<void, BlkError> BlkDevice::read(std::uint64_t offset, std::span<std::byte> out) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_READ;
    rq.offset = offset;
    rq.length = out.size();
    rq.out = out.data();
    return m_impl->run_sync_copy(rq);
}

Result<void, BlkError> BlkDevice::write(std::uint64_t offset, std::span<const std::byte> data) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_WRITE;
    rq.offset = offset;
    rq.length = data.size();
    rq.in = data.data();
    return m_impl->run_sync_copy(rq);
}

Result<void, BlkError> BlkDevice::read(std::uint64_t offset, PoolBuffer& buf, std::size_t length) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_READ;
    rq.offset = offset;
    rq.length = length;
    rq.buf = &buf;
    return m_impl->run_sync(rq);
}

Result<void, BlkError> BlkDevice::write(std::uint64_t offset, const PoolBuffer& buf,
                                        std::size_t length) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_WRITE;
    rq.offset = offset;
    rq.length = length;
    rq.buf = &buf;
    return m_impl->run_sync(rq);
}

Result<void, BlkError> BlkDevice::flush() {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_FLUSH;
    return m_impl->run_sync(rq);
}

Result<void, BlkError> BlkDevice::discard(std::uint64_t offset, std::uint64_t length) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_DISCARD;
    rq.offset = offset;
    rq.length = length;
    return m_impl->run_sync(rq);
}

Result<PoolBuffer, BlkError> BlkDevice::alloc_buffer(std::size_t bytes) {
    return m_impl->alloc_buffer(bytes);
}

Result<void, BlkError> BlkDevice::submit_read(std::uint64_t offset, std::span<std::byte> out,
                                              std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_READ;
    rq.offset = offset;
    rq.length = out.size();
    rq.out = out.data();
    return m_impl->submit(rq, tag);
}

Result<void, BlkError> BlkDevice::submit_write(std::uint64_t offset, std::span<const std::byte> data,
                                               std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_WRITE;
    rq.offset = offset;
    rq.length = data.size();
    rq.in = data.data();
    return m_impl->submit(rq, tag);
}

Result<void, BlkError> BlkDevice::submit_read(std::uint64_t offset, PoolBuffer& buf,
                                              std::size_t length, std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_READ;
    rq.offset = offset;
    rq.length = length;
    rq.buf = &buf;
    return m_impl->submit(rq, tag);
}

Result<void, BlkError> BlkDevice::submit_write(std::uint64_t offset, const PoolBuffer& buf,
                                               std::size_t length, std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_WRITE;
    rq.offset = offset;
    rq.length = length;
    rq.buf = &buf;
    return m_impl->submit(rq, tag);
}

Result<void, BlkError> BlkDevice::submit_flush(std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_FLUSH;
    return m_impl->submit(rq, tag);
}

Result<void, BlkError> BlkDevice::submit_discard(std::uint64_t offset, std::uint64_t length,
                                                 std::uint64_t tag) {
    Request rq;
    rq.op = PVKIT_BLKFRONT_OP_DISCARD;
    rq.offset = offset;
    rq.length = length;
    return m_impl->submit(rq, tag);
}

std::size_t BlkDevice::poll(std::vector<Completion>& out) { return m_impl->poll(out); }

Result<std::size_t, BlkError> BlkDevice::wait(std::vector<Completion>& out, std::size_t min,
                                              std::chrono::milliseconds timeout) {
    return m_impl->wait(out, min, timeout);
}

std::uint32_t BlkDevice::in_flight() const { return m_impl->in_flight(); }
void BlkDevice::close() { m_impl->close(); }
void BlkDevice::detach() { m_impl->detach(); }
BlkCounters BlkDevice::counters() const { return m_impl->counters(); }
unsigned BlkDevice::state() const { return m_impl->state(); }
std::string BlkDevice::reason() const { return m_impl->reason(); }

} // namespace pvkit::front
