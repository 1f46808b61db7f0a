// pvkit-vmm: boots one pvkit guest and runs it to completion. The exit
// status says how the guest ended (docs/vmm.md, "Exit statuses").
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/elf_loader.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/kvm.hpp"
#include "pvkit/vmm/layout.hpp"
#include "pvkit/vmm/machine.hpp"

namespace {

using pvkit::vmm::ExitStatus;

struct Options {
    std::string kernel;
    std::uint64_t memory_mib = 64;
    std::string cmdline;
    unsigned domid = 1;
    double timeout_s = 0;
    std::string console_log;
    std::string stats_json;
    std::string kvm_path = "/dev/kvm";
    bool quiet = false;
};

int startup_failure(const std::string& message) {
    std::fprintf(stderr, "pvkit-vmm: %s\n", message.c_str());
    return static_cast<int>(ExitStatus::kStartupError);
}

int run(const Options& options) {
    using namespace pvkit::vmm;
    std::optional<ConsoleSink> console;
    MachineConfig config;
    try {
        console = options.console_log.empty() ? ConsoleSink::borrow_fd(STDOUT_FILENO)
                                              : ConsoleSink::open_file(options.console_log);
        config.ram_bytes = options.memory_mib << 20;
        config.kernel = read_kernel_file(options.kernel, config.ram_bytes);
        config.kernel_name = options.kernel;
        config.cmdline = options.cmdline;
        config.domid = static_cast<pvkit_domid_t>(options.domid);
        if (options.timeout_s > 0) // at least 1 ms: 0 would mean "no timeout"
            config.timeout = std::chrono::milliseconds(
                std::max<std::int64_t>(1, static_cast<std::int64_t>(options.timeout_s * 1000.0)));
        config.kvm_path = options.kvm_path;
    } catch (const std::exception& e) {
        return startup_failure(e.what());
    }

    std::unique_ptr<Machine> machine;
    try {
        machine = Machine::create(config, *console);
    } catch (const std::exception& e) {
        return startup_failure(e.what());
    }

    RunOutcome outcome;
    try {
        outcome = machine->run();
    } catch (const std::exception& e) {
        outcome = RunOutcome{ExitStatus::kVmmError, e.what()};
    }
    console->flush();

    if (outcome.status != ExitStatus::kPoweroff || !options.quiet)
        std::fprintf(stderr, "pvkit-vmm: %s (exit status %d: %s)\n", outcome.message.c_str(),
                     static_cast<int>(outcome.status), to_string(outcome.status));
    if (!options.quiet)
        std::fputs(machine->stats().summary().c_str(), stderr);
    if (!options.stats_json.empty()) {
        std::ofstream out(options.stats_json, std::ios::trunc);
        out << machine->stats().to_json(outcome, console->bytes_written()).dump(2) << '\n';
        if (!out)
            std::fprintf(stderr, "pvkit-vmm: cannot write %s\n", options.stats_json.c_str());
    }
    return static_cast<int>(outcome.status);
}

} // namespace

int main(int argc, char** argv) {
    // A console on a closed pipe must fail writes (counted), not kill the VMM.
    std::signal(SIGPIPE, SIG_IGN);
    Options options;
    CLI::App app{"pvkit-vmm: boot a pvkit guest kernel in a KVM VM and run it"};
    app.add_option("--kernel", options.kernel, "guest kernel (static ELF64 x86-64)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--memory", options.memory_mib, "guest RAM in MiB")
        ->check(CLI::Range(std::uint64_t{pvkit::vmm::layout::kMinRam >> 20},
                           std::uint64_t{pvkit::vmm::layout::kMaxRam >> 20}))
        ->capture_default_str();
    app.add_option("--cmdline", options.cmdline, "kernel command line (at most 1023 bytes)");
    app.add_option("--domid", options.domid, "this guest's domain id")
        ->check(CLI::Range(1u, unsigned{PVKIT_DOMID_MAX}))
        ->capture_default_str();
    app.add_option("--timeout", options.timeout_s,
                   "stop the guest after this many seconds of wall-clock time (exit status 8)")
        ->check(CLI::Range(0.001, 31536000.0)); // up to a year: keeps the ms count finite
    app.add_option("--console-log", options.console_log,
                   "write the guest console to FILE instead of stdout");
    app.add_option("--stats-json", options.stats_json, "write exit counters as JSON to FILE");
    app.add_option("--kvm", options.kvm_path, "KVM device")->capture_default_str();
    app.add_flag("--quiet", options.quiet, "print nothing on stderr when the guest powers off");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        (void)app.exit(e);
        return static_cast<int>(ExitStatus::kStartupError);
    }
    return run(options);
}
