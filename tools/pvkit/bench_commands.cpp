// `pvkit bench ...`
#include <chrono>
#include <iostream>
#include <memory>

#include "bench/ring_bench.hpp"
#include "bench/store_bench.hpp"
#include "commands.hpp"

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

} // namespace

void register_bench_commands(CLI::App& app, Context& ctx) {
    auto* bench = app.add_subcommand("bench", "Benchmarks; each prints a pvkit-vs-baseline table "
                                              "or JSON (--json)");
    bench->require_subcommand(1);
    add_bench_ring(*bench, ctx);
    add_bench_store(*bench, ctx);
}

} // namespace pvkit::cli
