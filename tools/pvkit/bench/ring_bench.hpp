// `pvkit bench ring`: request/response over a pvkit ring in a grant pool
// between two processes, against a bare SPSC queue pair and a raw eventfd
// ping-pong measured in the same run.
#pragma once

#include <chrono>
#include <cstdint>

#include "pvkit/transport/event_channel.hpp"
#include "report.hpp"

namespace pvkit::bench {

struct RingBenchOptions {
    int rounds = 5;                   // interleaved pvkit/baseline repetitions
    std::uint64_t requests = 2000000; // per throughput measurement
    std::uint64_t roundtrips = 10000; // per latency measurement
    std::uint32_t batch = 32;         // requests produced per push
    std::chrono::nanoseconds spin = kDefaultSpin; // spin before sleeping, notify mode
};

BenchReport run_ring_bench(const RingBenchOptions& opt);

} // namespace pvkit::bench
