// A closed-loop block workload over one BlkDevice, the same one that
// `pvkit blk bench-io`, `pvkit bench blk` and (later) the guest benchmark
// run: `queue_depth` I/Os of `block_size` bytes kept in flight, each
// completion immediately replaced by the next I/O, until a duration or a
// request count is reached.
//
// Zero-copy: one PoolBuffer per queue slot, so the backend reads and writes
// the buffers directly and the loop itself copies nothing. Offsets are
// uniformly random blocks of the span (with replacement, like fio's
// norandommap) or consecutive blocks that wrap around at its end.
//
// The loop collects every completion available before it issues the
// replacements, so the requests of one pass go out together; waiting spins
// on the ring before sleeping (BlkDeviceOptions::spin), which is what keeps
// notifications rare.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pvkit/front/blk_device.hpp"

namespace pvkit::front {

enum class BlkWorkloadKind : std::uint8_t {
    kRandRead,
    kRandWrite,
    kSeqRead,
    kSeqWrite,
};

// "randread", "randwrite", "read", "write" (fio's names).
const char* to_string(BlkWorkloadKind kind);
// The inverse; false if `text` is none of them.
bool parse_workload_kind(const std::string& text, BlkWorkloadKind& out);
[[nodiscard]] inline bool is_write(BlkWorkloadKind k) {
    return k == BlkWorkloadKind::kRandWrite || k == BlkWorkloadKind::kSeqWrite;
}

struct BlkWorkloadSpec {
    BlkWorkloadKind kind = BlkWorkloadKind::kRandRead;
    // Bytes per I/O: a multiple of the device's sector size, at most its
    // max_io_bytes.
    std::uint32_t block_size = 4096;
    // I/Os in flight, at most the device's queue depth.
    std::uint32_t queue_depth = 1;
    // The run ends at whichever comes first; at least one must be set
    // (0 means "no limit" for each).
    std::chrono::nanoseconds duration{0};
    std::uint64_t requests = 0;
    // The part of the disk used: [span_offset, span_offset + span_bytes);
    // span_bytes 0 means to the end of the disk.
    std::uint64_t span_offset = 0;
    std::uint64_t span_bytes = 0;
    // Offsets (random kinds) and the data written.
    std::uint64_t seed = 1;
    // Keep one latency per I/O (sorted in the result). Off: only the sum,
    // minimum and maximum.
    bool record_latencies = true;
    // Longest wait for any completion; a backend that stops answering for
    // this long fails the run.
    std::chrono::milliseconds stall_timeout{10000};
};

struct BlkWorkloadResult {
    std::uint64_t requests = 0; // I/Os completed
    std::uint64_t bytes = 0;
    double seconds = 0; // first submission to last completion
    // Deltas of the device's counters over the run.
    std::uint64_t ring_requests = 0;
    std::uint64_t notifications_sent = 0;     // frontend -> backend kicks
    std::uint64_t notifications_received = 0; // backend -> frontend kicks consumed
    std::uint64_t sleeps = 0;                 // waits that slept in poll(2)
    // Per I/O, submission to completion seen, in microseconds.
    double latency_mean_us = 0;
    double latency_min_us = 0;
    double latency_max_us = 0;
    std::vector<double> latencies_us; // sorted; empty unless record_latencies

    [[nodiscard]] double iops() const;
    [[nodiscard]] double mib_per_second() const;
    // p in [0, 1] over latencies_us (0 if none were recorded).
    [[nodiscard]] double latency_percentile_us(double p) const;
};

// Runs the workload. The device must be connected and writable for the
// write kinds. Throws FrontError naming the step (bad spec, no buffers, an
// I/O error, a stall).
[[nodiscard]] BlkWorkloadResult run_blk_workload(BlkDevice& device, const BlkWorkloadSpec& spec);

} // namespace pvkit::front
