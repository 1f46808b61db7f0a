// `pvkit bench blk`: block I/O through the PV path (this process as a
// host-process frontend, libpvkit-front, and pvkit-blkback) against two
// baselines on the same image file, with the same caching mode, block
// size and queue depth, interleaved round by round:
//   - fio with the io_uring engine directly on the file (the limit), and
//   - fio's nbd engine against nbdkit serving the file over a Unix socket
//     (the peer: another block server in a separate process).
// The benchmark starts its own pvkit-stored, pvkit-blkback and nbdkit in a
// scratch directory and stops them on every path. See docs/benchmarks.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "report.hpp"

namespace pvkit::bench {

struct BlkBenchOptions {
    int rounds = 3;                            // interleaved PV / fio / fio-nbd repetitions
    double seconds = 2.0;                      // length of one measurement
    std::uint64_t size = 256ull * 1024 * 1024; // image size (the span every workload uses)
    std::string image;                         // empty: a file in the scratch directory
    // The caching mode of all three: false = the host page cache (fio
    // --direct=0, blkback without --direct, nbdkit cache=default); true =
    // O_DIRECT (fio --direct=1, blkback --direct; nbdkit 1.32 has no
    // O_DIRECT, it gets cache=none, see docs/benchmarks.md).
    bool direct = false;
    // Only these figures (names as in the results without _vs_...); empty:
    // all.
    std::vector<std::string> figures;
    // The frontend's spin before sleeping (BlkDeviceOptions::spin); unset:
    // the library's default.
    std::optional<std::chrono::nanoseconds> frontend_spin;
    // BlkDeviceOptions::spin_yield_after; unset: the library's default.
    std::optional<std::chrono::nanoseconds> frontend_spin_yield_after;
    // pvkit-blkback --spin-us; unset: blkback's default.
    std::optional<std::uint32_t> blkback_spin_us;
    std::string store_binary;   // empty: found next to pvkit (find_store_binary)
    std::string blkback_binary; // empty: found next to pvkit (find_blkback_binary)
    std::string fio_binary;     // empty: `fio` in PATH (Debian: fio)
    std::string nbdkit_binary;  // empty: `nbdkit` in PATH (Debian: nbdkit)
};

// The pvkit-blkback to run: `given` if not empty, else `pvkit-blkback` next
// to the running pvkit, else the path the build recorded. Throws with a
// message naming --blkback-binary if none is executable.
[[nodiscard]] std::string find_blkback_binary(const std::string& given);

// Creates or resizes `path` to `size` bytes and fills it with a pattern,
// so that reads hit real data (not holes); synced. Errors name `suite`.
void prepare_bench_image(const std::filesystem::path& path, std::uint64_t size,
                         const std::string& suite);

// Throws (one line, naming the package to install or the option to pass)
// if a program cannot be found or started, or an I/O fails.
BenchReport run_blk_bench(const BlkBenchOptions& opt);

} // namespace pvkit::bench
