// `pvkit bench ...`
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "bench/blk_bench.hpp"
#include "bench/guest_blk_bench.hpp"
#include "bench/ring_bench.hpp"
#include "bench/store_bench.hpp"
#include "commands.hpp"
#include "size_arg.hpp"

namespace pvkit::cli {

namespace {

void print_report(const bench::BenchReport& report, bool json) {
    if (json)
        std::cout << report.to_json().dump(2) << "\n";
    else
        report.print_human(std::cout);
}

void add_bench_ring(CLI::App& bench, Context& ctx) {
    auto* cmd = bench.add_subcommand("ring", "Request/response over a pvkit ring between two "
                                             "processes vs a bare SPSC queue and eventfd ping-pong");
    struct Args {
        bench::RingBenchOptions opt;
        bool json = false;
        bool quick = false;
        bool require = false;
        long spin_ns = 5000;
    };
    auto a = std::make_shared<Args>();
    a->spin_ns = static_cast<long>(a->opt.spin.count());
    cmd->add_flag("--json", a->json, "Print the results as JSON");
    cmd->add_flag("--quick", a->quick, "Small counts: checks that everything runs, figures are rough");
    cmd->add_flag("--require-goals", a->require, "Exit 3 if a result misses its goal");
    cmd->add_option("--rounds", a->opt.rounds, "Interleaved pvkit/baseline repetitions")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--requests", a->opt.requests, "Requests per throughput measurement")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
    cmd->add_option("--roundtrips", a->opt.roundtrips, "Round trips per latency measurement")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
    cmd->add_option("--batch", a->opt.batch, "Requests per push")->check(CLI::Range(1, 128));
    cmd->add_option("--spin-ns", a->spin_ns, "Spin on the ring before sleeping (ns)")
        ->check(CLI::Range(0L, 1000000000L));
    cmd->callback([a, &ctx] {
        bench::RingBenchOptions o = a->opt;
        o.spin = std::chrono::nanoseconds(a->spin_ns);
        if (a->quick) {
            o.rounds = 1;
            o.requests = 20000;
            o.roundtrips = 200;
        }
        bench::BenchReport report = bench::run_ring_bench(o);
        print_report(report, a->json);
        if (a->require && !report.goals_met())
            ctx.exit_code = 3;
    });
}

void add_bench_store(CLI::App& bench, Context& ctx) {
    auto* cmd = bench.add_subcommand("store", "Reads, writes and watch events on pvkit-stored vs "
                                              "etcd (HTTP/JSON gateway), 1 and 4 clients");
    struct Args {
        bench::StoreBenchOptions opt;
        bool json = false;
        bool quick = false;
        bool require = false;
        double max_seconds = 2.0;
    };
    auto a = std::make_shared<Args>();
    a->max_seconds = static_cast<double>(a->opt.max_time.count()) / 1000.0;
    cmd->add_flag("--json", a->json, "Print the results as JSON");
    cmd->add_flag("--quick", a->quick, "Small counts: checks that everything runs, figures are rough");
    cmd->add_flag("--require-goals", a->require, "Exit 3 if a result misses its goal");
    cmd->add_option("--rounds", a->opt.rounds, "Interleaved pvkit/etcd repetitions")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--ops", a->opt.ops,
                    "Operations per client per measurement (the first client done ends it)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
    cmd->add_option("--max-seconds", a->max_seconds, "Time limit of one measurement")
        ->check(CLI::Range(0.01, 3600.0));
    cmd->add_option("--store-binary", a->opt.store_binary,
                    "pvkit-stored to run (default: found next to pvkit)");
    cmd->add_option("--etcd-binary", a->opt.etcd_binary, "etcd to run (Debian: etcd-server)");
    cmd->callback([a, &ctx] {
        bench::StoreBenchOptions o = a->opt;
        o.max_time = std::chrono::milliseconds(static_cast<long>(a->max_seconds * 1000.0));
        if (a->quick) {
            o.rounds = 1;
            o.ops = 200;
            o.max_time = std::chrono::milliseconds(250);
        }
        bench::BenchReport report = bench::run_store_bench(o);
        print_report(report, a->json);
        if (a->require && !report.goals_met())
            ctx.exit_code = 3;
    });
}

void add_bench_blk(CLI::App& bench, Context& ctx) {
    auto* cmd = bench.add_subcommand(
        "blk",
        "4 KiB random and 128 KiB sequential I/O through the PV path (pvkit-blkback) vs fio "
        "io_uring on the file and fio against nbdkit (same file, caching, block size, depth)");
    struct Args {
        bench::BlkBenchOptions opt;
        std::string size = "256M";
        bool json = false;
        bool quick = false;
        bool require = false;
        long spin_ns = -1;
        long blkback_spin_us = -1;
        long spin_yield_after_ns = -1;
    };
    auto a = std::make_shared<Args>();
    cmd->add_flag("--json", a->json, "Print the results as JSON");
    cmd->add_option("--figures", a->opt.figures,
                    "Only these figures, e.g. randread_4k_qd32,write_128k_qd32 (default: all six)")
        ->delimiter(',');
    cmd->add_option("--spin-ns", a->spin_ns,
                    "The PV frontend's spin before sleeping (default: libpvkit-front's)")
        ->check(CLI::Range(0L, 1000000000L));
    cmd->add_option("--spin-yield-after-ns", a->spin_yield_after_ns,
                    "The PV frontend yields the CPU between looks after this much of its spin "
                    "(default: libpvkit-front's)")
        ->check(CLI::Range(0L, 1000000000L));
    cmd->add_option("--blkback-spin-us", a->blkback_spin_us,
                    "pvkit-blkback --spin-us (default: blkback's)")
        ->check(CLI::Range(0L, 1000000L));
    cmd->add_flag(
        "--quick", a->quick,
        "1 round of 0.2 s on a 16M image: checks that everything runs, figures are rough");
    cmd->add_flag("--require-goals", a->require, "Exit 3 if a result misses its goal");
    cmd->add_option("--rounds", a->opt.rounds, "Interleaved PV/fio/nbd repetitions (default 3)")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--seconds", a->opt.seconds, "Length of one measurement (default 2)")
        ->check(CLI::Range(0.01, 3600.0));
    cmd->add_option("--size", a->size, "Image size, the span every workload uses (default 256M)");
    cmd->add_option("--image", a->opt.image,
                    "Image file to use (created or overwritten; default: a scratch file)");
    cmd->add_flag(
        "--direct", a->opt.direct,
        "O_DIRECT instead of the page cache (nbdkit: cache=none, see docs/benchmarks.md)");
    cmd->add_option("--store-binary", a->opt.store_binary,
                    "pvkit-stored to run (default: found next to pvkit)");
    cmd->add_option("--blkback-binary", a->opt.blkback_binary,
                    "pvkit-blkback to run (default: found next to pvkit)");
    cmd->add_option("--fio-binary", a->opt.fio_binary,
                    "fio to run (default: fio in PATH; Debian: fio)");
    cmd->add_option("--nbdkit-binary", a->opt.nbdkit_binary,
                    "nbdkit to run (default: nbdkit in PATH; Debian: nbdkit)");
    cmd->callback([a, &ctx] {
        bench::BlkBenchOptions o = a->opt;
        o.size = parse_size("--size", a->size);
        if (a->spin_ns >= 0)
            o.frontend_spin = std::chrono::nanoseconds(a->spin_ns);
        if (a->spin_yield_after_ns >= 0)
            o.frontend_spin_yield_after = std::chrono::nanoseconds(a->spin_yield_after_ns);
        if (a->blkback_spin_us >= 0)
            o.blkback_spin_us = static_cast<std::uint32_t>(a->blkback_spin_us);
        if (a->quick) {
            o.rounds = 1;
            o.seconds = 0.2;
            o.size = 16ull * 1024 * 1024;
        }
        bench::BenchReport report = bench::run_blk_bench(o);
        print_report(report, a->json);
        if (a->require && !report.goals_met())
            ctx.exit_code = 3;
    });
}

void add_bench_guest_blk(CLI::App& bench, Context& ctx) {
    auto* cmd = bench.add_subcommand(
        "guest-blk",
        "The same 4 KiB block workload from the mini guest's user mode under KVM and from a "
        "host-process frontend, against one pvkit-blkback: guest/host IOPS, exits and "
        "notifications per request");
    struct Args {
        bench::GuestBlkBenchOptions opt;
        bool json = false;
        bool quick = false;
        bool require = false;
    };
    auto a = std::make_shared<Args>();
    cmd->add_flag("--json", a->json, "Print the results as JSON");
    cmd->add_option("--figures", a->opt.figures,
                    "Only these figures, e.g. randread_4k_qd1,randwrite_4k_qd16 (default: all)")
        ->delimiter(',');
    cmd->add_option("--rounds", a->opt.rounds, "Interleaved guest/host repetitions (default 3)")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--requests", a->opt.requests, "I/Os per run on each side (default 20000)")
        ->check(CLI::Range(std::uint64_t{100}, std::uint64_t{10'000'000}));
    cmd->add_option("--span-mb", a->opt.span_mb, "Image size and the span of the offsets (default 64)")
        ->check(CLI::Range(1U, 65536U));
    cmd->add_option("--guest-timeout", a->opt.guest_timeout,
                    "Bound for one guest run in seconds (default 120)")
        ->check(CLI::Range(1.0, 3600.0));
    cmd->add_flag("--quick", a->quick,
                  "1 round of 2000 requests: checks that everything runs, figures are rough");
    cmd->add_flag("--require-goals", a->require, "Exit 3 if a result misses its goal");
    cmd->add_option("--kernel", a->opt.kernel,
                    "The mini guest kernel (default: guest/pvkit-mini of this build)");
    cmd->add_option("--vmm", a->opt.vmm_binary, "pvkit-vmm to run (default: found next to pvkit)");
    cmd->add_option("--store-binary", a->opt.store_binary,
                    "pvkit-stored to run (default: found next to pvkit)");
    cmd->add_option("--blkback-binary", a->opt.blkback_binary,
                    "pvkit-blkback to run (default: found next to pvkit)");
    cmd->callback([a, &ctx] {
        bench::GuestBlkBenchOptions o = a->opt;
        if (a->quick) {
            o.rounds = 1;
            o.requests = 2000;
        }
        bench::BenchReport report = bench::run_guest_blk_bench(o);
        print_report(report, a->json);
        if (a->require && !report.goals_met())
            ctx.exit_code = 3;
    });
}

} // namespace

void register_bench_commands(CLI::App& app, Context& ctx) {
    auto* bench = app.add_subcommand("bench", "Benchmarks; each prints a pvkit-vs-baseline table "
                                              "or JSON (--json)");
    bench->require_subcommand(1);
    add_bench_ring(*bench, ctx);
    add_bench_store(*bench, ctx);
    add_bench_blk(*bench, ctx);
    add_bench_guest_blk(*bench, ctx);
}

} // namespace pvkit::cli
