// `pvkit bench store`: pvkit-stored against etcd 3.4 (through its HTTP/JSON
// gateway), both started by the benchmark in a scratch directory, measured
// with the same operations, value sizes and client counts, interleaved
// round by round. See docs/benchmarks.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "report.hpp"

namespace pvkit::bench {

struct StoreBenchOptions {
    int rounds = 5; // interleaved pvkit/etcd repetitions
    // A measurement ends when its first client has done this many
    // operations, or after max_time, whichever comes first; the figure is
    // all clients' operations over the time they all ran.
    std::uint64_t ops = 20000;
    std::chrono::milliseconds max_time{2000};
    std::string store_binary;                // empty: found next to pvkit (see find_store_binary)
    std::string etcd_binary = "/usr/bin/etcd"; // Debian's etcd-server
};

// The pvkit-stored to run: `given` if not empty, else `pvkit-stored` next
// to the running pvkit (installed side by side), else in the build tree's
// tools/store/ next to tools/pvkit, else the path the build recorded.
// Throws with a message naming --store-binary if none is executable.
[[nodiscard]] std::string find_store_binary(const std::string& given);

// Throws (one line, naming what to install or pass) if a daemon cannot be
// found or started, or a client operation fails.
BenchReport run_store_bench(const StoreBenchOptions& opt);

} // namespace pvkit::bench
