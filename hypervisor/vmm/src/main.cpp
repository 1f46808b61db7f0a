// pvkit-vmm: boots one pvkit guest and runs it to completion. The exit
// status says how the guest ended (docs/vmm.md, "Exit statuses").
//
// With --config the guest comes from a domain config (kernel, memory,
// command line, devices); with --store-socket the VMM also registers the
// domain in pvkit-stored (or, with --domid, adopts an existing
// registration), relays the guest's store ring and hands devices to their
// backends. Registration happens here, at the process edge; everything
// the running guest needs is in the Machine.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/domain_ops.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/console_server.hpp"
#include "pvkit/vmm/elf_loader.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/kvm.hpp"
#include "pvkit/vmm/layout.hpp"
#include "pvkit/vmm/machine.hpp"

namespace {

using pvkit::vmm::ExitStatus;
namespace store = pvkit::store;
namespace toolstack = pvkit::toolstack;

struct Options {
    std::string kernel;
    std::uint64_t memory_mib = 64;
    bool memory_given = false;
    std::string cmdline;
    bool cmdline_given = false;
    unsigned domid = 1;
    bool domid_given = false;
    double timeout_s = 0;
    std::string console_log;
    std::string console_socket;
    std::string stats_json;
    std::string kvm_path = "/dev/kvm";
    bool quiet = false;
    std::string config;
    std::string store_socket;
    std::uint32_t pool_frames = pvkit::vmm::MachineConfig::kDefaultPoolFrames;
    double destroy_timeout_s = 2.0;
};

int startup_failure(const std::string& message) {
    std::fprintf(stderr, "pvkit-vmm: %s\n", message.c_str());
    return static_cast<int>(ExitStatus::kStartupError);
}

std::string store_failure(const char* what, store::StoreError e) {
    return std::string(what) + ": " + std::string(store::to_string(e));
}

// The domain's registration in the store: made here (and undone at exit)
// or adopted (--domid), in which case only the pid node is ours.
struct Registration {
    std::unique_ptr<store::StoreClient> client;
    pvkit_domid_t domid = 0;
    bool created = false;
};

// Throws std::runtime_error with a one-line reason.
Registration register_domain(const Options& options,
                             const std::optional<toolstack::DomainConfig>& config) {
    Registration reg;
    std::string detail;
    auto client =
        store::StoreClient::connect(options.store_socket, std::chrono::seconds(5), &detail);
    if (!client)
        throw std::runtime_error("cannot connect to pvkit-stored: " +
                                 (detail.empty() ? options.store_socket : detail));
    client->set_reply_timeout(std::chrono::seconds(5));
    reg.client = std::make_unique<store::StoreClient>(std::move(client).value());
    const pid_t pid = ::getpid();
    if (!options.domid_given && config) {
        // The toolstack's own create, with this process as the domain's
        // owner: backends accept hand-offs only from the pid it records.
        auto domid = toolstack::create_domain(*reg.client, *config, pid);
        if (!domid)
            throw std::runtime_error(store_failure(
                ("cannot register domain '" + config->name + "'").c_str(), domid.error()));
        reg.domid = domid.value();
        reg.created = true;
        return reg;
    }
    reg.domid = static_cast<pvkit_domid_t>(options.domid);
    if (!options.domid_given)
        return reg; // no config, no domid: a guest the store does not know
    // An existing registration: it must exist; the pid becomes ours.
    const std::string home = toolstack::domain_path(reg.domid);
    if (auto name = reg.client->read(home + "/name"); !name)
        throw std::runtime_error(store_failure((home + "/name").c_str(), name.error()));
    if (auto w = reg.client->write(home + "/pid", std::to_string(pid)); !w)
        throw std::runtime_error(store_failure((home + "/pid").c_str(), w.error()));
    const store::Perms perms{{store::Access::kNone, PVKIT_DOMID_HOST},
                             {store::Access::kRead, reg.domid}};
    if (auto p = reg.client->set_perms(home + "/pid", perms); !p)
        throw std::runtime_error(store_failure((home + "/pid").c_str(), p.error()));
    return reg;
}

// Where `pvkit console` connects: --console-socket, else (with a store)
// console-<domid>.sock in the directory of the store's socket (a runtime
// directory such as /run/pvkit); empty: no console socket.
std::string console_socket_path(const Options& options, pvkit_domid_t domid) {
    if (!options.console_socket.empty() || options.store_socket.empty())
        return options.console_socket;
    const std::filesystem::path store = store::resolve_socket_path(options.store_socket);
    return (store.parent_path() / ("console-" + std::to_string(domid) + ".sock")).string();
}

// console/socket and console/type under the domain's home, readable by
// domain 0 only (the socket is the host's business).
void publish_console(Registration& reg, const std::string& path) {
    const std::string dir = toolstack::domain_path(reg.domid) + "/console";
    const store::Perms host_only{{store::Access::kNone, PVKIT_DOMID_HOST}};
    for (const auto& [node, value] :
         {std::pair<std::string, std::string>{dir + "/type", "pvkit-vmm"},
          std::pair<std::string, std::string>{dir + "/socket", path}}) {
        if (auto w = reg.client->write(node, value); !w)
            throw std::runtime_error(store_failure(node.c_str(), w.error()));
        if (auto p = reg.client->set_perms(node, host_only); !p)
            throw std::runtime_error(store_failure(node.c_str(), p.error()));
    }
    if (auto p = reg.client->set_perms(dir, host_only); !p)
        throw std::runtime_error(store_failure(dir.c_str(), p.error()));
}

void unregister_domain(Registration& reg, const Options& options) {
    // An adopted registration outlives this VMM; its console does not.
    if (reg.client && !reg.created && options.domid_given)
        (void)reg.client->rm(toolstack::domain_path(reg.domid) + "/console");
    if (!reg.client || !reg.created)
        return;
    const auto timeout = std::chrono::milliseconds(
        static_cast<std::int64_t>(std::max(0.0, options.destroy_timeout_s) * 1000.0));
    auto r = toolstack::destroy_domain(*reg.client, reg.domid, timeout);
    if (!r)
        std::fprintf(stderr, "pvkit-vmm: cannot remove domain %u from the store: %s\n",
                     static_cast<unsigned>(reg.domid),
                     std::string(store::to_string(r.error())).c_str());
}

int run(const Options& options) {
    using namespace pvkit::vmm;
    std::optional<ConsoleSink> console;
    std::optional<toolstack::DomainConfig> domain;
    MachineConfig config;
    try {
        console = options.console_log.empty() ? ConsoleSink::borrow_fd(STDOUT_FILENO)
                                              : ConsoleSink::open_file(options.console_log);
        std::string kernel = options.kernel;
        std::uint64_t memory_mib = options.memory_mib;
        config.cmdline = options.cmdline;
        if (!options.config.empty()) {
            // A --kernel replaces the config's, which then need not exist.
            toolstack::LoadOptions load_options;
            load_options.check_kernel = kernel.empty();
            domain = toolstack::load_domain_config(options.config, load_options);
            if (domain->type != toolstack::DomainType::kPvGuest)
                throw std::runtime_error(options.config +
                                         ": type: pvkit-vmm runs pv-guest domains only");
            if (kernel.empty())
                kernel = domain->kernel.string();
            if (!options.memory_given)
                memory_mib = domain->memory_mib;
            if (!options.cmdline_given)
                config.cmdline = domain->cmdline;
            for (const toolstack::DiskConfig& d : domain->disks)
                config.devices.push_back(PvDevice{PVKIT_DEV_BLK, d.devid, d.backend_domid});
            for (const toolstack::NicConfig& n : domain->nics)
                config.devices.push_back(PvDevice{PVKIT_DEV_NET, n.devid, n.backend_domid});
        }
        if (kernel.empty())
            throw std::runtime_error("--kernel is required (or a --config naming one)");
        config.ram_bytes = memory_mib << 20;
        config.kernel = read_kernel_file(kernel, config.ram_bytes);
        config.kernel_name = kernel;
        config.domid = static_cast<pvkit_domid_t>(options.domid);
        config.pool_frames = options.pool_frames;
        config.store_socket = options.store_socket;
        if (options.timeout_s > 0) // at least 1 ms: 0 would mean "no timeout"
            config.timeout = std::chrono::milliseconds(
                std::max<std::int64_t>(1, static_cast<std::int64_t>(options.timeout_s * 1000.0)));
        config.kvm_path = options.kvm_path;
    } catch (const std::exception& e) {
        return startup_failure(e.what());
    }

    Registration reg;
    if (!options.store_socket.empty()) {
        try {
            reg = register_domain(options, domain);
        } catch (const std::exception& e) {
            return startup_failure(e.what());
        }
        config.domid = reg.domid;
    }

    // Before the machine exists, so that boot output is in its history.
    std::unique_ptr<ConsoleServer> console_server;
    if (const std::string path = console_socket_path(options, config.domid); !path.empty()) {
        try {
            console_server = std::make_unique<ConsoleServer>(path);
            if (reg.client && (reg.created || options.domid_given))
                publish_console(reg, path); // a domain the store knows
        } catch (const std::exception& e) {
            console_server.reset();
            unregister_domain(reg, options);
            return startup_failure(e.what());
        }
        console->set_server(console_server.get());
    }

    std::unique_ptr<Machine> machine;
    try {
        machine = Machine::create(config, *console);
    } catch (const std::exception& e) {
        console->set_server(nullptr);
        console_server.reset();
        unregister_domain(reg, options);
        return startup_failure(e.what());
    }

    RunOutcome outcome;
    try {
        outcome = machine->run();
    } catch (const std::exception& e) {
        outcome = RunOutcome{ExitStatus::kVmmError, e.what()};
    }
    console->flush();
    console->set_server(nullptr);
    if (console_server) {
        // Clients see end of file: the guest is gone.
        console_server->stop();
        if (console_server->dropped() > 0)
            std::fprintf(stderr,
                         "pvkit-vmm: console: %llu client(s) disconnected for falling behind\n",
                         static_cast<unsigned long long>(console_server->dropped()));
    }

    if (outcome.status != ExitStatus::kPoweroff || !options.quiet)
        std::fprintf(stderr, "pvkit-vmm: %s (exit status %d: %s)\n", outcome.message.c_str(),
                     static_cast<int>(outcome.status), to_string(outcome.status));
    if (!options.quiet)
        std::fputs(machine->summary().c_str(), stderr);
    if (!options.stats_json.empty()) {
        std::ofstream out(options.stats_json, std::ios::trunc);
        out << machine->stats_json(outcome, console->bytes_written()).dump(2) << '\n';
        if (!out)
            std::fprintf(stderr, "pvkit-vmm: cannot write %s\n", options.stats_json.c_str());
    }
    // The guest is gone: close its store connection and ports before the
    // toolstack's teardown asks the backends to let go.
    machine.reset();
    unregister_domain(reg, options);
    return static_cast<int>(outcome.status);
}

} // namespace

int main(int argc, char** argv) {
    // A console on a closed pipe must fail writes (counted), not kill the VMM.
    std::signal(SIGPIPE, SIG_IGN);
    Options options;
    CLI::App app{"pvkit-vmm: boot a pvkit guest kernel in a KVM VM and run it"};
    app.add_option("--kernel", options.kernel, "guest kernel (static ELF64 x86-64)")
        ->check(CLI::ExistingFile);
    auto* memory = app.add_option("--memory", options.memory_mib, "guest RAM in MiB")
                       ->check(CLI::Range(std::uint64_t{pvkit::vmm::layout::kMinRam >> 20},
                                          std::uint64_t{pvkit::vmm::layout::kMaxRam >> 20}))
                       ->capture_default_str();
    auto* cmdline =
        app.add_option("--cmdline", options.cmdline, "kernel command line (at most 1023 bytes)");
    auto* domid = app.add_option("--domid", options.domid,
                                 "this guest's domain id; with --store-socket, adopt the existing "
                                 "registration of that domain")
                      ->check(CLI::Range(1u, unsigned{PVKIT_DOMID_MAX}))
                      ->capture_default_str();
    app.add_option("--timeout", options.timeout_s,
                   "stop the guest after this many seconds of wall-clock time (exit status 8)")
        ->check(CLI::Range(0.001, 31536000.0)); // up to a year: keeps the ms count finite
    app.add_option("--console-log", options.console_log,
                   "write the guest console to FILE instead of stdout");
    app.add_option("--console-socket", options.console_socket,
                   "also serve the guest console on this Unix socket for `pvkit console` "
                   "(default with --store-socket: console-<domid>.sock beside the store's "
                   "socket)");
    app.add_option("--stats-json", options.stats_json, "write exit counters as JSON to FILE");
    app.add_option("--kvm", options.kvm_path, "KVM device")->capture_default_str();
    app.add_flag("--quiet", options.quiet, "print nothing on stderr when the guest powers off");
    app.add_option("--config", options.config,
                   "domain config (JSON): kernel, memory, command line and PV devices")
        ->check(CLI::ExistingFile);
    app.add_option("--store-socket", options.store_socket,
                   "pvkit-stored's socket: register the domain, relay its store ring, hand "
                   "devices to backends");
    app.add_option("--pool-frames", options.pool_frames,
                   "size of each device's grant pool in 4 KiB frames")
        ->check(CLI::Range(pvkit::vmm::MachineConfig::kMinPoolFrames, 262144u))
        ->capture_default_str();
    app.add_option("--destroy-timeout", options.destroy_timeout_s,
                   "seconds to wait for backends to close when removing a domain this VMM "
                   "registered")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        (void)app.exit(e);
        return static_cast<int>(ExitStatus::kStartupError);
    }
    options.memory_given = memory->count() > 0;
    options.cmdline_given = cmdline->count() > 0;
    options.domid_given = domid->count() > 0;
    return run(options);
}
