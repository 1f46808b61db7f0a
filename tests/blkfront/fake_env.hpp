// An in-process world for the blkfront core: an in-memory store with
// transactions, a real grant pool and grant table, a frame allocator, an
// event-channel counter (FakeEnv), and a backend built from the transport
// library's backend side (GrantPool::attach, GrantMapper, map_ring,
// BackRing) that serves requests from an in-memory disk or misbehaves on
// request (FakeBackend). Nothing here uses Catch2 macros; failures throw.
#pragma once

#include <pvkit/blkfront.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/ring.hpp"

namespace pvkit::blkfront::test {

using Slot = union pvkit_blkif_sring_entry;

inline constexpr pvkit_domid_t kFrontDomid = 5;
inline constexpr std::uint32_t kDevid = 51712;
inline const std::string kFrontDir = "/local/domain/5/device/vbd/51712";
inline const std::string kBackDir = "/local/domain/0/backend/vbd/5/51712";

// The store: nodes and values; transactions buffer their writes and apply
// them at commit (or throw them away on an injected EAGAIN).
class FakeStore {
public:
    std::optional<std::string> get(const std::string& path) const;
    void put(const std::string& path, const std::string& value) { m_nodes[path] = value; }
    void remove_tree(const std::string& path);

    int read(std::uint32_t tx, const std::string& path, std::string& out) const;
    int write(std::uint32_t tx, const std::string& path, const std::string& value);
    int rm(std::uint32_t tx, const std::string& path);
    int tx_start(std::uint32_t& tx);
    int tx_end(std::uint32_t tx, bool commit);

    // The next `n` commits fail with EAGAIN.
    void fail_commits(int n) { m_fail_commits = n; }
    // Every value written to `path`, in order (committed ones only).
    [[nodiscard]] std::vector<std::string> history(const std::string& path) const;
    // Reads fail with this error (0: none) for paths starting with `prefix`.
    void fail_reads(const std::string& prefix, int err) {
        m_fail_prefix = prefix;
        m_fail_err = err;
    }

private:
    struct Tx {
        std::map<std::string, std::optional<std::string>> writes; // nullopt: removed
    };
    void apply(const std::string& path, const std::optional<std::string>& value);

    std::map<std::string, std::string> m_nodes;
    std::map<std::uint32_t, Tx> m_txs;
    std::map<std::string, std::vector<std::string>> m_history;
    std::uint32_t m_next_tx = 1;
    int m_fail_commits = 0;
    std::string m_fail_prefix;
    int m_fail_err = 0;
};

// The frontend's environment.
class FakeEnv {
public:
    explicit FakeEnv(std::uint32_t data_frames = 4096, std::uint32_t grants = 16384);
    FakeEnv(const FakeEnv&) = delete;
    FakeEnv& operator=(const FakeEnv&) = delete;

    // The toolstack's nodes for one disk (both directories, state 1).
    void toolstack_attach();

    const pvkit_blkfront_env* env() const { return &m_env; }
    FakeStore& store() { return m_store; }
    const FakeStore& store() const { return m_store; }
    GrantPool& pool() { return *m_pool; }
    GrantTable& table() { return *m_table; }

    // Data frames for I/O buffers, and their memory.
    std::uint32_t alloc_frames(std::uint32_t count);
    void free_frames(std::uint32_t first, std::uint32_t count);
    std::byte* frame(std::uint32_t f) { return m_pool->frame_ptr(f); }
    [[nodiscard]] std::uint32_t frames_in_use() const;

    struct Done {
        pvkit_blkfront_io* io;
        int status;
    };
    std::vector<Done> completed;
    std::uint64_t notifications = 0;
    std::uint32_t ports_allocated = 0;
    std::set<pvkit_evtchn_port_t> live_ports;
    int hook_result = 0;   // what before_initialised returns
    int hook_calls = 0;
    int grant_failures_after = -1; // grants that succeed before they start failing (-1: never)
    std::uint32_t frame_limit = 0; // 0: no limit on alloc_frames by the core

private:
    static int store_read(void* ctx, std::uint32_t tx, const char* path, char* buf, std::uint32_t size);
    static int store_write(void* ctx, std::uint32_t tx, const char* path, const char* value);
    static int store_rm(void* ctx, std::uint32_t tx, const char* path);
    static int tx_start(void* ctx, std::uint32_t* tx);
    static int tx_end(void* ctx, std::uint32_t tx, int commit);
    static int core_alloc_frames(void* ctx, std::uint32_t count, std::uint32_t* first, void** mem);
    static void core_free_frames(void* ctx, std::uint32_t first, std::uint32_t count);
    static int grant(void* ctx, pvkit_domid_t domid, std::uint32_t frame, int ro, pvkit_grant_ref_t* ref);
    static int end_grant(void* ctx, pvkit_grant_ref_t ref);
    static int evtchn_alloc(void* ctx, pvkit_domid_t remote, pvkit_evtchn_port_t* port);
    static void evtchn_free(void* ctx, pvkit_evtchn_port_t port);
    static void notify(void* ctx, pvkit_evtchn_port_t port);
    static int before_initialised(void* ctx, pvkit_evtchn_port_t port);
    static void complete(void* ctx, pvkit_blkfront_io* io);

    FakeStore m_store;
    std::unique_ptr<GrantPool> m_pool;
    std::unique_ptr<GrantTable> m_table;
    std::vector<bool> m_used; // by data frame index
    std::uint32_t m_core_frames = 0;
    pvkit_evtchn_port_t m_next_port = 1;
    pvkit_blkfront_env m_env{};
};

// The backend's published values for InitWait.
struct Features {
    std::uint64_t sectors = 8192; // 4 MiB
    std::uint32_t sector_size = 512;
    std::uint32_t info = 0;
    bool flush = true;
    bool discard = true;
    std::uint32_t max_indirect = 0;
    std::uint32_t max_ring_order = 0;
    // Raw values written after the ones above (or instead: "" removes).
    std::map<std::string, std::string> overrides;
};

// A backend, domain 0, serving the frontend's pool from an in-memory disk.
class FakeBackend {
public:
    FakeBackend(FakeEnv& env, std::uint64_t disk_bytes);

    void set_state(unsigned state);
    void set_online(bool online);
    // Publishes features and InitWait.
    void initwait(const Features& f);
    // Frontend Initialised: maps the ring and goes Connected. Returns false
    // if the frontend is not Initialised or its nodes are inconsistent.
    bool connect();
    // The requests published so far, copied out (consumed, not answered).
    std::vector<Slot> take_requests();
    // Performs and answers every published request; returns how many.
    std::size_t serve();
    // Performs one request copy and answers it (pushes; kicks are counted).
    void answer(const Slot& req, std::int16_t status = PVKIT_BLKIF_RSP_OKAY);
    // Puts a raw response and publishes it.
    void respond_raw(const pvkit_blkif_response& rsp);
    // Writes an impossible rsp_prod (hostile).
    void set_rsp_prod(std::uint32_t value);
    // Drops every mapping, as a dead backend's successor would have left
    // the pool (in-use bits cleared).
    void crash();
    // Keeps a mapping of every data grant of the next served request, so
    // the frontend's end of it fails until release_held().
    void hold_next_grants() { m_hold_next = true; }
    void release_held() { m_held.clear(); }

    [[nodiscard]] bool connected() const { return m_ring.has_value(); }
    [[nodiscard]] std::uint32_t ring_entries() const { return m_ring ? m_ring->nr_ents() : 0; }
    [[nodiscard]] pvkit_back_ring& raw_ring() { return m_ring->raw(); }
    [[nodiscard]] std::uint32_t ring_order() const { return m_order; }

    std::vector<std::byte> disk;
    std::uint64_t kicks_sent = 0;

private:
    std::int16_t perform(const Slot& req);
    bool do_segment(std::uint8_t op, std::uint64_t& byte_offset, const pvkit_blkif_segment& seg);

    FakeEnv& m_env;
    std::optional<GrantPool> m_pool;
    std::unique_ptr<GrantMapper> m_mapper;
    std::optional<RingMapping> m_ring_map;
    std::optional<BackRing<Slot>> m_ring;
    std::uint32_t m_order = 0;
    bool m_hold_next = false;
    std::vector<GrantMapping> m_held;
};

// Runs the core's reaction to a store change (what a watch would trigger).
inline int store_changed(pvkit_blkfront* fe) { return pvkit_blkfront_store_changed(fe); }

} // namespace pvkit::blkfront::test
