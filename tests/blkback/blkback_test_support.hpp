// Helpers for the blkback tests: a real pvkit-blkback process, the
// toolstack's part of attaching a disk, and a small frontend built from the
// transport primitives (GrantPool::create, GrantTable, FrontRing,
// EventChannel, handoff_device, StoreClient). Like tests/support, nothing
// here uses Catch2 macros; failures throw.
#pragma once

#include <pvkit/blkif.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/xenbus_state.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/handoff.hpp"
#include "pvkit/transport/ring.hpp"
#include "store_test_support.hpp"
#include "test_support.hpp"

namespace pvkit::blkback::test {

using pvkit::store::StoreClient;
using pvkit::store::test::kWait;
using pvkit::store::test::TempDir;
using pvkit::toolstack::XenbusState;
using StoreDaemon = pvkit::store::test::Daemon;

std::string blkback_binary();

// A pvkit-blkback process. Its stderr goes to the test's stderr, so a
// failing test shows the daemon's log lines.
class Blkback {
public:
    Blkback(std::string store_socket, std::string handoff_socket, std::vector<std::string> extra = {});
    Blkback(const Blkback&) = delete;
    Blkback& operator=(const Blkback&) = delete;
    ~Blkback();

    void start();
    int stop(); // SIGTERM, wait; the wait status
    void kill9();
    // SIGSTOP: the daemon freezes wherever it is (requests stay in flight).
    void pause();
    [[nodiscard]] bool alive();
    [[nodiscard]] const std::string& handoff_socket() const { return m_handoff; }
    [[nodiscard]] pid_t pid() const { return m_child ? m_child->pid() : -1; }

private:
    std::string m_store;
    std::string m_handoff;
    std::vector<std::string> m_extra;
    std::optional<pvkit::test::ChildProcess> m_child;
};

// A store, a blkback and a temp directory for images: what most tests need.
struct Bench {
    TempDir dir;
    StoreDaemon store;
    Blkback blkback;
    explicit Bench(std::vector<std::string> blkback_extra = {});
    [[nodiscard]] std::string image(const std::string& name) const { return (dir.path() / name).string(); }
};

// What the toolstack writes for one disk (store_layout.hpp's disk_attach_ops).
struct DiskSpec {
    pvkit_domid_t domid = 1;
    std::uint32_t devid = 51712;
    std::string image;
    bool read_only = false;
    std::uint32_t sector_size = 512;
    std::uint32_t max_ring_page_order = 4;
    std::uint32_t max_indirect_segments = 256;
    bool flush = true;
    bool discard = true;
    // Written after the toolstack's nodes, in the same transaction: for
    // tests of bad configs.
    std::map<std::string, std::string> backend_overrides;
};

std::string backend_dir(pvkit_domid_t domid, std::uint32_t devid);
std::string frontend_dir(pvkit_domid_t domid, std::uint32_t devid);

// Creates an image of `bytes` bytes filled with `fill`.
void make_image(const std::string& path, std::uint64_t bytes, std::uint8_t fill = 0);
// A disk of domain `domid` (devid 51712) on a fresh zero-filled image of
// `bytes` named `name` in the bench's directory.
DiskSpec image_disk(const Bench& b, pvkit_domid_t domid, const std::string& name,
                    std::uint64_t bytes);
// Reads `len` bytes of the image at `offset` with pread (the host's own view).
std::vector<std::byte> read_image(const std::string& path, std::uint64_t offset, std::size_t len);
// Allocated bytes of a file (st_blocks * 512): shows holes.
std::uint64_t allocated_bytes(const std::string& path);

// The toolstack side, as domain 0: the domain's pid node (what
// handoff.hpp's credential check reads) and the device's directories.
void attach_disk(StoreClient& dom0, const DiskSpec& spec, pid_t frontend_pid);
// Waits (bounded by kWait) until the node at `path` reads `value`.
bool wait_node(StoreClient& c, const std::string& path, const std::string& value);
// device_close_ops: online = 0 and state = Closing in one transaction.
void detach_disk(StoreClient& dom0, const DiskSpec& spec);

// A host-process frontend for one vbd.
class TestFrontend {
public:
    struct Options {
        std::uint32_t data_frames = 2048;
        std::uint32_t grants = 4096;
        std::uint32_t ring_order = 0;
    };
    TestFrontend(const std::string& store_socket, DiskSpec spec, Options options);
    TestFrontend(const std::string& store_socket, DiskSpec spec) : TestFrontend(store_socket, std::move(spec), Options{}) {}
    TestFrontend(const TestFrontend&) = delete;
    TestFrontend& operator=(const TestFrontend&) = delete;
    ~TestFrontend();

    // ---- handshake -------------------------------------------------------
    // The frontend's state; writes go through its own (restricted) connection.
    void set_state(XenbusState s);
    [[nodiscard]] XenbusState backend_state();
    // Waits (bounded by kWait) until the backend state is `s`; false on timeout.
    bool wait_backend_state(XenbusState s, std::chrono::milliseconds timeout = kWait);
    [[nodiscard]] std::optional<std::string> backend_node(const std::string& name);
    // Everything up to Connected: waits for InitWait, reads the features,
    // makes a fresh ring and event channel, writes ring-ref(s),
    // event-channel and protocol, hands the pool and eventfds over, writes
    // Initialised, waits for Connected and writes Connected. Throws on failure.
    void connect();
    // The same, but stops after the hand-off (status returned; nothing
    // written after it), for tests that poke the hand-off itself.
    int prepare_and_handoff();
    // Frontend-initiated close: Closing, collect responses, Closed, wait for
    // the backend Closed, end the grants.
    void close();
    // After the backend went away and came back (backend Closed with
    // online = 1): collect what the old ring answered, end old grants
    // (quarantining any still in use), Initialising, connect again and
    // re-issue the requests still in flight, in order.
    void reconnect();

    // ---- features the backend published -----------------------------------
    [[nodiscard]] std::uint64_t sectors() const { return m_sectors; }
    [[nodiscard]] std::uint32_t sector_size() const { return m_sector_size; }
    [[nodiscard]] std::uint32_t max_indirect() const { return m_max_indirect; }

    // ---- memory ---------------------------------------------------------------
    [[nodiscard]] GrantPool& pool() { return *m_pool; }
    [[nodiscard]] GrantTable& table() { return *m_table; }
    std::uint32_t alloc_frame();
    void free_frame(std::uint32_t frame);
    [[nodiscard]] std::span<std::byte> frame(std::uint32_t f) { return m_pool->data_frame(f); }
    [[nodiscard]] FrontRing<pvkit_blkif_sring_entry>& ring() { return *m_ring; }
    [[nodiscard]] EventChannel& channel() { return m_channel; }
    [[nodiscard]] pvkit_domid_t domid() const { return m_spec.domid; }
    [[nodiscard]] const DiskSpec& spec() const { return m_spec; }

    // ---- raw requests (hostile tests) ------------------------------------------
    // Puts any slot-sized request and publishes it (kicking if needed).
    template <class Req>
    void put_raw(const Req& req) {
        if (!m_ring->put(req))
            throw std::runtime_error("put_raw: ring full or halted");
        if (m_ring->push())
            m_channel.notify();
    }
    // Collects `n` responses (bounded wait); throws on timeout.
    std::vector<pvkit_blkif_response> collect(std::size_t n, std::chrono::milliseconds timeout = kWait);

    // ---- tracked I/O (with shadows, re-issued on reconnect) ----------------------
    struct Completion {
        std::uint64_t tag = 0; // the caller's tag
        std::int16_t status = 0;
        std::vector<std::byte> data; // reads: what came back
    };
    // Queues a request; returns false if the ring or the in-flight table is full.
    bool submit_write(std::uint64_t tag, std::uint64_t sector, std::span<const std::byte> data);
    bool submit_read(std::uint64_t tag, std::uint64_t sector, std::uint32_t nr_sectors);
    bool submit_flush(std::uint64_t tag);
    bool submit_discard(std::uint64_t tag, std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag = 0);
    // Indirect read or write of `nr_sectors` (a multiple of 8) through one
    // indirect page of 4K segments.
    bool submit_indirect(std::uint64_t tag, std::uint8_t op, std::uint64_t sector,
                         std::span<const std::byte> data, std::uint32_t nr_sectors);
    // Waits up to `timeout` for at least one completion; empty if none came
    // (for example because the backend went away: see backend_went_away()).
    std::vector<Completion> wait_completions(std::chrono::milliseconds timeout = kWait);
    [[nodiscard]] std::size_t in_flight() const { return m_shadows.size(); }

    // Synchronous helpers.
    std::int16_t write_sync(std::uint64_t sector, std::span<const std::byte> data);
    std::int16_t read_sync(std::uint64_t sector, std::uint32_t nr_sectors, std::vector<std::byte>& out);
    std::int16_t flush_sync();
    std::int16_t discard_sync(std::uint64_t sector, std::uint64_t nr_sectors, std::uint8_t flag = 0);

    // Whether the backend is in a state that means "went away": Closed with
    // online = 1 while we were connected. Checks the store without waiting.
    bool backend_went_away();
    // Grants still in use by the backend, by the frontend's own count.
    [[nodiscard]] std::size_t quarantined() const { return m_quarantine.size(); }
    [[nodiscard]] std::uint64_t reissued() const { return m_reissued; }

private:
    struct Shadow {
        std::uint64_t tag = 0;
        std::uint64_t seq = 0; // submission order
        std::uint8_t op = 0;   // PVKIT_BLKIF_OP_*
        std::uint8_t indirect_op = 0;
        std::uint64_t sector = 0;
        std::uint64_t nr_sectors = 0;
        std::uint8_t flag = 0;
        std::vector<std::byte> data; // writes: the data; kept for re-issue
        std::vector<std::uint32_t> frames;
        std::vector<GrantRef> grants;
        std::uint64_t id = 0;
    };

    bool issue(Shadow& s);
    void end_grants(std::vector<GrantRef>& grants, std::vector<std::uint32_t>& frames);
    void retry_quarantine();
    void pump_store();
    void take_responses(std::vector<Completion>& out);
    std::optional<std::string> read_backend(const std::string& name);
    void write_front(const std::string& name, const std::string& value);

    std::string m_store_socket;
    DiskSpec m_spec;
    Options m_options;
    std::string m_back;
    std::string m_front;
    std::optional<StoreClient> m_store; // restricted to the frontend's domid
    std::unique_ptr<GrantPool> m_pool;
    std::unique_ptr<GrantTable> m_table;
    std::vector<std::uint32_t> m_free_frames;
    std::optional<FrontRing<pvkit_blkif_sring_entry>> m_ring;
    std::vector<std::uint32_t> m_ring_frames;
    std::vector<GrantRef> m_ring_grants;
    EventChannel m_channel;
    pvkit_evtchn_port_t m_port = 0;
    std::unique_ptr<InFlightTable<std::uint64_t>> m_inflight; // id -> shadow seq
    std::map<std::uint64_t, Shadow> m_shadows;                 // by seq
    std::uint64_t m_next_seq = 1;
    std::vector<std::pair<GrantRef, std::uint32_t>> m_quarantine; // grant still in use, its frame
    std::uint64_t m_sectors = 0;
    std::uint32_t m_sector_size = 512;
    std::uint32_t m_max_indirect = 0;
    std::uint32_t m_max_order = 0;
    std::uint64_t m_reissued = 0;
    std::vector<Completion> m_pending_early; // answered by a backend that then went away
};

// 4096 bytes of a pattern that names `block` and `version`, so a wrong or
// stale block is recognisable.
std::vector<std::byte> pattern_block(std::uint64_t block, std::uint64_t version);

} // namespace pvkit::blkback::test
