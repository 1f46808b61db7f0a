// pvkit: the toolstack command line (like Xen's xl).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>

#include "bench/ring_bench.hpp"

namespace {

void add_bench_ring(CLI::App& bench, int& exit_code) {
    auto* cmd = bench.add_subcommand("ring", "Request/response over a pvkit ring between two "
                                             "processes vs a bare SPSC queue and eventfd ping-pong");
    auto opt = std::make_shared<pvkit::bench::RingBenchOptions>();
    auto json = std::make_shared<bool>(false);
    auto quick = std::make_shared<bool>(false);
    auto require = std::make_shared<bool>(false);
    auto spin_ns = std::make_shared<long>(opt->spin.count());
    cmd->add_flag("--json", *json, "Print the results as JSON");
    cmd->add_flag("--quick", *quick, "Small counts: checks that everything runs, figures are rough");
    cmd->add_flag("--require-goals", *require, "Exit 3 if a result misses its goal");
    cmd->add_option("--rounds", opt->rounds, "Interleaved pvkit/baseline repetitions")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--requests", opt->requests, "Requests per throughput measurement")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
    cmd->add_option("--roundtrips", opt->roundtrips, "Round trips per latency measurement")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
    cmd->add_option("--batch", opt->batch, "Requests per push")->check(CLI::Range(1, 128));
    cmd->add_option("--spin-ns", *spin_ns, "Spin on the ring before sleeping (ns)")
        ->check(CLI::Range(0L, 1000000000L));
    cmd->callback([=, &exit_code] {
        pvkit::bench::RingBenchOptions o = *opt;
        o.spin = std::chrono::nanoseconds(*spin_ns);
        if (*quick) {
            o.rounds = 1;
            o.requests = 20000;
            o.roundtrips = 200;
        }
        pvkit::bench::BenchReport report = pvkit::bench::run_ring_bench(o);
        if (*json)
            std::cout << report.to_json().dump(2) << "\n";
        else
            report.print_human(std::cout);
        if (*require && !report.goals_met())
            exit_code = 3;
    });
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"pvkit: paravirtualized split drivers on KVM"};
    app.require_subcommand(1);
    int exit_code = 0;
    auto* bench = app.add_subcommand("bench", "Benchmarks; each prints a pvkit-vs-baseline table "
                                              "or JSON");
    bench->require_subcommand(1);
    add_bench_ring(*bench, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::cerr << "pvkit: " << e.what() << "\n";
        return 1;
    }
    return exit_code;
}
