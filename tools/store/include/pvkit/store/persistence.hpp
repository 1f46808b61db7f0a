// Persistence of the store tree: an append-only log of ChangeSets plus a
// JSON snapshot that the log is compacted into.
//
// Files in the data directory:
//   store.log      16-byte header ("PVKSTLOG", version 1, 0), then records:
//                  u32 length, u32 CRC-32 of the body, body (length bytes).
//                  A body is u64 sequence number, u32 change count, then per
//                  change u8 kind (1 put, 2 del), u32 + path, and for a put
//                  u32 + value, u32 perm count, per perm u8 access + u16 domid.
//                  All little-endian.
//   snapshot.json  {"format":"pvkit-store-snapshot","version":1,"seq":N,
//                   "nodes":[{"path":..,"perms":["n0",..],"value":..}, ..]}
//                  in path order; a value that is not UTF-8 is stored as
//                  "value_base64" instead of "value". It holds every change
//                  up to and including sequence number N.
//   lock           flock()ed while a daemon uses the directory.
//
// Every change is write(2)n to the log before the store applies it, so a
// killed daemon (kill -9) loses nothing it acknowledged: the bytes are in
// the page cache. Whether they also survive a power cut is the fsync
// policy's business (docs/store.md).
//
// Start-up loads the snapshot, then replays log records newer than its
// sequence number. The first record that is short or fails its checksum
// ends the log (a torn write from a crash); it and anything after it are
// cut off, and the count of dropped bytes is reported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "pvkit/store/store.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::store {

enum class FsyncPolicy {
    kAlways, // fdatasync the log before any reply or event leaves the daemon
    kNever,  // write(2) only: survives a daemon crash, not a power cut
};

[[nodiscard]] std::string_view to_string(FsyncPolicy policy);

struct PersistenceOptions {
    std::filesystem::path data_dir;
    FsyncPolicy fsync = FsyncPolicy::kNever;
    // The log is compacted into a snapshot once it is longer than this.
    std::size_t compact_bytes = std::size_t{4} << 20;
};

// What start-up found.
struct LoadReport {
    std::size_t snapshot_nodes = 0;
    std::uint64_t snapshot_seq = 0;
    std::size_t records_replayed = 0;
    std::size_t records_skipped = 0; // already in the snapshot
    std::size_t torn_bytes = 0;      // cut off the end of the log
};

// Encoding of log record bodies (exposed for tests).
[[nodiscard]] std::string encode_changes(std::uint64_t seq, const ChangeSet& changes);
struct DecodedRecord {
    std::uint64_t seq = 0;
    ChangeSet changes;
};
[[nodiscard]] std::optional<DecodedRecord> decode_changes(std::string_view body);

class Persistence final : public Journal {
public:
    // Opens or creates the data directory, locks it, and loads the snapshot
    // and log into `store` (which must be fresh). Throws std::runtime_error
    // with a message naming the file and the problem.
    static std::unique_ptr<Persistence> open(const PersistenceOptions& options, Store& store,
                                             LoadReport* report = nullptr);
    ~Persistence() override;

    // Journal: writes one record. On a failed or short write the log is cut
    // back to where it was and false is returned. If cutting it back fails
    // too, the log is latched broken (one line on stderr): every later
    // append fails with EIO without touching the file, because a record
    // after the torn bytes would be acknowledged and then dropped on
    // replay. Only a restart (which cuts the torn tail off) clears it.
    [[nodiscard]] bool append(const ChangeSet& changes) override;

    // Makes every record appended so far durable as the policy says (one
    // fdatasync for all of them under kAlways: group commit). Throws
    // std::system_error if that fails: after a failed fsync the kernel may
    // have dropped the dirty pages, so retrying cannot be trusted and the
    // daemon must stop.
    void sync();

    // Compacts if the log is longer than the threshold. A failed compaction
    // loses nothing (the log still holds every change) and is retried only
    // after the log has grown by another threshold; the exception is passed
    // on for the caller to report.
    void maybe_compact(const Store& store);
    // Writes snapshot.json (temp file, fsync, rename, fsync of the
    // directory), then empties the log. Throws std::system_error.
    void compact(const Store& store);

    [[nodiscard]] std::uint64_t last_seq() const { return m_seq; }
    [[nodiscard]] std::uint64_t log_bytes() const { return m_log_size; }
    [[nodiscard]] std::uint64_t compactions() const { return m_compactions; }
    [[nodiscard]] std::uint64_t syncs() const { return m_syncs; }
    // Whether a failed append could not be taken back (see append()).
    [[nodiscard]] bool broken() const { return m_broken; }

private:
    explicit Persistence(const PersistenceOptions& options) : m_options(options) {}

    PersistenceOptions m_options;
    UniqueFd m_lock;
    UniqueFd m_log;
    std::uint64_t m_log_size = 0;
    std::uint64_t m_compact_at = 0; // log size that triggers the next compaction
    std::uint64_t m_seq = 0;
    bool m_dirty = false;
    bool m_broken = false;
    std::uint64_t m_compactions = 0;
    std::uint64_t m_syncs = 0;
};

// Snapshot text for `store` (the JSON described above); for tests and tools.
[[nodiscard]] std::string snapshot_json(const Store& store, std::uint64_t seq);

} // namespace pvkit::store
