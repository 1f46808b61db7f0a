// `pvkit bench guest-blk`: the same block workload run by the blkfront core
// in two places against one pvkit-blkback and one image file:
//   - in the pvkit mini guest's user mode under KVM (pvkit-vmm, the
//     `blk-bench` program: grants in guest-physical pool pages, doorbell
//     kicks through KVM_IOEVENTFD, interrupts through KVM_IRQFD), and
//   - in this process as a host-process frontend (libpvkit-front,
//     run_blk_workload), the baseline.
// ratio = guest / host-process IOPS (issue goal: >= 0.8 here). Besides the
// headline it reports VM exits per request (from pvkit-vmm's POST-code
// window around the timed part), notifications per request on both sides,
// and the guest's boot exits. Rounds are interleaved and alternate who goes
// first. See docs/benchmarks.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report.hpp"

namespace pvkit::bench {

struct GuestBlkBenchOptions {
    int rounds = 3;
    // I/Os per run, the same on both sides.
    std::uint64_t requests = 20000;
    // The image, and the part of it the random offsets cover, in MiB.
    std::uint32_t span_mb = 64;
    // Only these figures (e.g. randread_4k_qd1); empty: all.
    std::vector<std::string> figures;
    // Bound for one guest run (boot, workload, shutdown), seconds.
    double guest_timeout = 120;
    std::string kernel;         // empty: build/guest/pvkit-mini beside pvkit or the build's
    std::string vmm_binary;     // empty: found next to pvkit, then the build's
    std::string store_binary;   // empty: found next to pvkit (find_store_binary)
    std::string blkback_binary; // empty: found next to pvkit (find_blkback_binary)
};

// Throws (one line, naming what to build or pass) if a program cannot be
// found or started, the guest fails, or an I/O fails.
BenchReport run_guest_blk_bench(const GuestBlkBenchOptions& opt);

} // namespace pvkit::bench
