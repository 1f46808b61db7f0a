// `pvkit create|list|destroy|block-attach|block-detach|block-list|
//  network-attach|network-detach|network-list`: the toolstack commands.
// Each connects to pvkit-stored, runs the toolstack's store actions and
// prints one line per thing it did.
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/domain_ops.hpp"

namespace pvkit::cli {

namespace {

namespace ts = pvkit::toolstack;
using store::StoreClient;

struct Common {
    std::string socket;
    double timeout_s = 10.0;
};

void add_common(CLI::App* cmd, Common& c) {
    cmd->add_option("--store-socket", c.socket,
                    "pvkit-stored socket (default: $PVKIT_STORE_SOCKET or /run/pvkit/stored.sock)");
}

StoreClient connect_store(const Common& c) {
    std::string detail;
    auto client = StoreClient::connect(c.socket, std::chrono::seconds(5), &detail);
    if (!client)
        throw std::runtime_error("cannot reach pvkit-stored: " + detail);
    return std::move(client.value());
}

[[noreturn]] void store_failure(const std::string& what, store::StoreError e) {
    throw std::runtime_error(what + ": " + std::string(store::to_string(e)));
}

// Runs attach_device; a device that is there already (or a domain that went
// away meanwhile) is refused with the store untouched.
void attach(StoreClient& client, const std::string& dom, pvkit_domid_t domid,
            const ts::DeviceRef& device, const std::vector<ts::StoreOp>& ops, const char* command) {
    auto r = ts::attach_device(client, domid, device, ops);
    if (r)
        return;
    if (r.error() == store::StoreError::kExist)
        throw std::runtime_error("domain " + dom + " already has " + ts::to_string(device.kind) +
                                 " " + std::to_string(device.devid));
    if (r.error() == store::StoreError::kNoEnt)
        throw std::runtime_error(std::string(command) + ": domain " + dom + " no longer exists");
    store_failure(command, r.error());
}

std::chrono::milliseconds to_ms(double seconds) {
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
}

pvkit_domid_t resolve_domain(StoreClient& client, const std::string& dom) {
    auto id = ts::find_domain(client, dom);
    if (!id)
        store_failure("domain " + dom, id.error());
    return id.value();
}

std::string state_name(ts::XenbusState s) { return ts::to_string(s); }

nlohmann::json to_json(const ts::DomainSummary& d) {
    nlohmann::json devs = nlohmann::json::array();
    for (const ts::DeviceStatus& dev : d.devices)
        devs.push_back({{"type", ts::to_string(dev.ref.kind)},
                        {"devid", dev.ref.devid},
                        {"backend", dev.ref.backend_domid},
                        {"frontend_state", state_name(dev.frontend_state)},
                        {"backend_state", state_name(dev.backend_state)},
                        {"detail", dev.detail}});
    // memory_kib is the domain's memory/target, null where there is none
    // (a host-process domain).
    nlohmann::json memory = nullptr;
    if (d.memory_kib)
        memory = *d.memory_kib;
    nlohmann::json j = {{"domid", d.domid},
                        {"name", d.name},
                        {"type", d.type},
                        {"memory_kib", memory},
                        {"devices", devs}};
    if (d.pid)
        j["pid"] = *d.pid;
    return j;
}

void print_devices(const ts::DomainSummary& d, ts::DeviceKind kind) {
    std::printf("%-6s %-7s %-8s %-13s %-13s %s\n", "devid", "backend", "type", "frontend",
                "backend", "detail");
    for (const ts::DeviceStatus& dev : d.devices) {
        if (dev.ref.kind != kind)
            continue;
        std::printf("%-6u %-7u %-8s %-13s %-13s %s\n", dev.ref.devid,
                    static_cast<unsigned>(dev.ref.backend_domid), ts::to_string(kind),
                    state_name(dev.frontend_state).c_str(), state_name(dev.backend_state).c_str(),
                    dev.detail.c_str());
    }
}

// pvkit-vmm: --vmm, else next to this pvkit (an installed tree), else the
// build tree's, else $PATH.
std::string find_vmm(const std::string& override_path) {
    if (!override_path.empty())
        return override_path;
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto beside = self.parent_path() / "pvkit-vmm";
        if (std::filesystem::exists(beside, ec))
            return beside.string();
    }
    if (std::filesystem::exists(PVKIT_VMM_BUILD_PATH, ec))
        return PVKIT_VMM_BUILD_PATH;
    return "pvkit-vmm";
}

// Runs pvkit-vmm in the foreground for a pv-guest config, like `xl create
// -c`: the guest's console is this terminal and pvkit's exit status is the
// VMM's (0 when the guest powered off, see docs/vmm.md). The VMM registers
// the domain itself, with its own pid, and removes it when it exits.
int run_vmm(const std::string& vmm, const std::string& config, const std::string& socket,
            const std::vector<std::string>& extra) {
    std::vector<std::string> args = {vmm, "--config", config, "--store-socket",
                                     store::resolve_socket_path(socket)};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0)
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        ::execvp(argv[0], argv.data());
        std::fprintf(stderr, "pvkit: cannot run %s: %s\n", argv[0], std::strerror(errno));
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    throw std::runtime_error("pvkit-vmm killed by signal " + std::to_string(WTERMSIG(status)));
}

// `pvkit create FILE key=value ...`, like xl: a pv-guest's kernel, cmdline
// and memory can be given on the command line instead of in the file. They
// become the VMM's --kernel, --cmdline and --memory, which take precedence
// over the config's keys. A relative kernel path is relative to the current
// directory (it was typed here), unlike the file's, which are relative to
// the file.
struct Overrides {
    std::optional<std::filesystem::path> kernel;
    std::optional<std::string> cmdline;
    std::optional<std::uint64_t> memory_mib;
};

Overrides parse_overrides(const std::vector<std::string>& args) {
    Overrides o;
    for (const std::string& arg : args) {
        const auto eq = arg.find('=');
        const std::string key = arg.substr(0, eq);
        const std::string value = eq == std::string::npos ? std::string() : arg.substr(eq + 1);
        if (eq == std::string::npos || value.empty())
            throw std::runtime_error("create: override \"" + arg +
                                     "\": expected key=value with kernel, cmdline or memory");
        if (key == "kernel") {
            o.kernel = std::filesystem::absolute(value).lexically_normal();
            std::error_code ec;
            if (!std::filesystem::is_regular_file(*o.kernel, ec))
                throw std::runtime_error("create: override kernel=" + value + ": " +
                                         o.kernel->string() + " is not an existing regular file");
        } else if (key == "cmdline") {
            o.cmdline = value;
        } else if (key == "memory") {
            std::uint64_t mib = 0;
            const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), mib);
            if (err != std::errc() || end != value.data() + value.size() || mib == 0)
                throw std::runtime_error("create: override memory=" + value +
                                         ": expected a size in MiB");
            o.memory_mib = mib;
        } else {
            throw std::runtime_error("create: override \"" + key +
                                     "\": expected kernel, cmdline or memory");
        }
    }
    return o;
}

// Makes the images the config asks for ("create_size_mb") that do not
// exist yet: sparse files, created exclusively so that a racing creator
// is never truncated. Existing images are left alone.
void create_disk_images(const ts::DomainConfig& config) {
    for (const ts::DiskConfig& disk : config.disks) {
        std::error_code ec;
        if (!disk.create_size_mb || std::filesystem::exists(disk.path, ec))
            continue;
        std::filesystem::create_directories(disk.path.parent_path(), ec);
        if (ec)
            throw std::runtime_error("create " + config.name + ": disk " + disk.path.string() +
                                     ": cannot create its directory: " + ec.message());
        const int fd = ::open(disk.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            throw std::runtime_error("create " + config.name + ": disk " + disk.path.string() +
                                     ": " + std::strerror(errno));
        const off_t size = static_cast<off_t>(*disk.create_size_mb) << 20;
        const int rc = ::ftruncate(fd, size);
        const int err = errno;
        ::close(fd);
        if (rc != 0) {
            ::unlink(disk.path.c_str());
            throw std::runtime_error("create " + config.name + ": disk " + disk.path.string() +
                                     ": cannot size it: " + std::strerror(err));
        }
        std::printf("created disk image %s (%u MiB, sparse)\n", disk.path.c_str(),
                    *disk.create_size_mb);
    }
}

void add_create(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("create", "Validate a domain config and register the domain "
                                             "and its devices in the store");
    struct Args {
        Common common;
        std::string config;
        bool dry_run = false;
        std::string vmm;
        double timeout = 0;
        std::string stats_json;
        std::vector<std::string> overrides;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("config", a->config, "Domain config (JSON), see docs/domain-config.md")
        ->required();
    cmd->add_option("overrides", a->overrides,
                    "pv-guest: kernel=PATH, cmdline=STRING, memory=MIB instead of the config's");
    cmd->add_flag("--dry-run", a->dry_run, "Only validate the config and print what would be written");
    cmd->add_option("--vmm", a->vmm, "pvkit-vmm to run for a pv-guest (default: found next to pvkit)");
    cmd->add_option("--timeout", a->timeout, "pv-guest: stop the guest after this many seconds")
        ->check(CLI::Range(0.0, 3.1536e7));
    cmd->add_option("--stats-json", a->stats_json, "pv-guest: write the VMM's exit counters here");
    add_common(cmd, a->common);
    cmd->callback([a, &ctx] {
        const Overrides overrides = parse_overrides(a->overrides);
        // ConfigError lists every problem, each naming the file and key. A
        // kernel given on the command line replaces the file's, which then
        // need not exist.
        ts::LoadOptions load_options;
        load_options.check_kernel = !overrides.kernel;
        ts::DomainConfig config;
        try {
            config = ts::load_domain_config(a->config, load_options);
        } catch (const ts::ConfigError& e) {
            // The two errors a first run of an example meets get a way out.
            std::string what = e.what();
            if (what.find(": kernel: expected an existing") != std::string::npos)
                what += "\n  (build the guest, e.g. cmake --build build --target pvkit-mini, or "
                        "give another with: pvkit create FILE kernel=PATH)";
            if (what.find(".path: expected an existing disk image") != std::string::npos)
                what += "\n  (create the image, e.g. truncate -s 64M PATH, or give the disk "
                        "\"create_size_mb\" so that pvkit create makes it)";
            throw std::runtime_error(what);
        }
        if (config.type != ts::DomainType::kPvGuest && !a->overrides.empty())
            throw std::runtime_error("create " + config.name +
                                     ": kernel, cmdline and memory overrides are for pv-guests");
        std::printf("config %s: valid (%s \"%s\", %zu disk(s), %zu nic(s))\n", a->config.c_str(),
                    ts::to_string(config.type), config.name.c_str(), config.disks.size(),
                    config.nics.size());
        if (a->dry_run) {
            auto ops = ts::domain_create_ops(1, config);
            if (!ops)
                throw std::runtime_error(ts::to_string(ops.error()));
            for (const ts::StoreOp& op : ops.value())
                std::printf("  %s %s%s%s\n", op.kind == ts::StoreOp::Kind::kMkdir ? "mkdir" : "write",
                            op.path.c_str(), op.value.empty() ? "" : " = ", op.value.c_str());
            std::printf("dry run: nothing written (domid 1 shown as an example)\n");
            return;
        }
        create_disk_images(config);
        if (config.type == ts::DomainType::kPvGuest) {
            std::vector<std::string> extra;
            if (overrides.kernel)
                extra.insert(extra.end(), {"--kernel", overrides.kernel->string()});
            if (overrides.cmdline)
                extra.insert(extra.end(), {"--cmdline", *overrides.cmdline});
            if (overrides.memory_mib)
                extra.insert(extra.end(), {"--memory", std::to_string(*overrides.memory_mib)});
            if (a->timeout > 0)
                extra.insert(extra.end(), {"--timeout", std::to_string(a->timeout)});
            if (!a->stats_json.empty())
                extra.insert(extra.end(), {"--stats-json", a->stats_json});
            std::string vmm = find_vmm(a->vmm);
            std::printf("starting %s for %s (console follows)\n", vmm.c_str(), config.name.c_str());
            int status = run_vmm(vmm, a->config, a->common.socket, extra);
            std::printf("pvkit-vmm for %s exited with status %d%s\n", config.name.c_str(), status,
                        status == 0 ? " (guest powered off)" : " (see docs/vmm.md for the meaning)");
            ctx.exit_code = status;
            return;
        }
        StoreClient client = connect_store(a->common);
        // A host-process domain is owned by the process that will run its
        // frontends (libpvkit-front's HostDomain::adopt records its pid);
        // `pvkit create` only registers it.
        std::optional<pid_t> owner;
        auto domid = ts::create_domain(client, config, owner);
        if (!domid) {
            if (domid.error() == store::StoreError::kExist)
                throw std::runtime_error("create " + config.name + ": a domain named \"" +
                                         config.name + "\" exists already");
            store_failure("create " + config.name, domid.error());
        }
        std::printf("domain %s registered as domid %u under /local/domain/%u\n", config.name.c_str(),
                    static_cast<unsigned>(domid.value()), static_cast<unsigned>(domid.value()));
        for (const ts::DeviceRef& dev : ts::device_refs(config))
            std::printf("  %s %u: frontend %s, backend %s (state Initialising)\n",
                        ts::to_string(dev.kind), dev.devid,
                        ts::frontend_path(domid.value(), dev.kind, dev.devid).c_str(),
                        ts::backend_path(dev.backend_domid, domid.value(), dev.kind, dev.devid)
                            .c_str());
    });
}

void add_list(CLI::App& app) {
    auto* cmd = app.add_subcommand("list", "List domains");
    struct Args {
        Common common;
        bool json = false;
    };
    auto a = std::make_shared<Args>();
    cmd->add_flag("--json", a->json, "Print JSON");
    add_common(cmd, a->common);
    cmd->callback([a] {
        StoreClient client = connect_store(a->common);
        auto all = ts::list_domains(client);
        if (!all)
            store_failure("list", all.error());
        if (a->json) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& d : all.value())
                j.push_back(to_json(d));
            std::cout << j.dump(2) << "\n";
            return;
        }
        std::printf("%-6s %-24s %-13s %-10s %-7s %s\n", "domid", "name", "type", "mem(KiB)",
                    "devices", "pid");
        for (const auto& d : all.value())
            std::printf("%-6u %-24s %-13s %-10s %-7zu %s\n", static_cast<unsigned>(d.domid),
                        d.name.c_str(), d.type.c_str(),
                        d.memory_kib ? std::to_string(*d.memory_kib).c_str() : "-",
                        d.devices.size(), d.pid ? std::to_string(*d.pid).c_str() : "-");
    });
}

void add_destroy(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("destroy", "Close every device of a domain and remove it");
    struct Args {
        Common common;
        std::string dom;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("domain", a->dom, "Domain name or domid")->required();
    cmd->add_option("--timeout", a->common.timeout_s, "Seconds to wait for each backend to close")
        ->check(CLI::Range(0.0, 3600.0));
    add_common(cmd, a->common);
    cmd->callback([a, &ctx] {
        StoreClient client = connect_store(a->common);
        pvkit_domid_t domid = resolve_domain(client, a->dom);
        auto r = ts::destroy_domain(client, domid, to_ms(a->common.timeout_s));
        if (!r)
            store_failure("destroy " + a->dom, r.error());
        std::printf("domain %s (domid %u) destroyed%s\n", a->dom.c_str(),
                    static_cast<unsigned>(domid),
                    r.value() ? "" : "; some backends did not answer and were removed anyway");
        (void)ctx;
    });
}

void add_detach(CLI::App& app, ts::DeviceKind kind, const char* name) {
    auto* cmd = app.add_subcommand(name, std::string("Detach a ") +
                                             (kind == ts::DeviceKind::kVbd ? "disk" : "NIC") +
                                             " through Closing/Closed");
    struct Args {
        Common common;
        std::string dom;
        std::string dev;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("domain", a->dom, "Domain name or domid")->required();
    cmd->add_option("device", a->dev,
                    kind == ts::DeviceKind::kVbd ? "devid or vdev (xvda..)" : "devid")
        ->required();
    cmd->add_option("--timeout", a->common.timeout_s, "Seconds to wait for the backend")
        ->check(CLI::Range(0.0, 3600.0));
    add_common(cmd, a->common);
    cmd->callback([a, kind] {
        StoreClient client = connect_store(a->common);
        pvkit_domid_t domid = resolve_domain(client, a->dom);
        auto summary = ts::describe_domain(client, domid);
        if (!summary)
            store_failure("domain " + a->dom, summary.error());
        std::optional<std::uint32_t> devid = kind == ts::DeviceKind::kVbd
                                                 ? ts::vdev_to_devid(a->dev)
                                                 : std::optional<std::uint32_t>{};
        if (!devid) {
            auto d = store::parse_domid(a->dev, 0xffff);
            if (!d)
                throw std::runtime_error("device " + a->dev + ": expected a devid (0..65535)" +
                                         (kind == ts::DeviceKind::kVbd ? " or xvda..xvdp" : ""));
            devid = *d;
        }
        for (const ts::DeviceStatus& dev : summary->devices) {
            if (dev.ref.kind != kind || dev.ref.devid != *devid)
                continue;
            auto r = ts::detach_device(client, domid, dev.ref, to_ms(a->common.timeout_s));
            if (!r)
                store_failure("detach", r.error());
            std::printf("%s %u of domain %s detached%s\n", ts::to_string(kind), *devid,
                        a->dom.c_str(), r.value() ? " (backend Closed)" : " (no backend answered)");
            return;
        }
        throw std::runtime_error(std::string("domain ") + a->dom + " has no " + ts::to_string(kind) +
                                 " " + std::to_string(*devid));
    });
}

void add_device_list(CLI::App& app, ts::DeviceKind kind, const char* name) {
    auto* cmd = app.add_subcommand(name, std::string("List a domain's ") +
                                             (kind == ts::DeviceKind::kVbd ? "disks" : "NICs"));
    struct Args {
        Common common;
        std::string dom;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("domain", a->dom, "Domain name or domid")->required();
    add_common(cmd, a->common);
    cmd->callback([a, kind] {
        StoreClient client = connect_store(a->common);
        auto d = ts::describe_domain(client, resolve_domain(client, a->dom));
        if (!d)
            store_failure("domain " + a->dom, d.error());
        print_devices(d.value(), kind);
    });
}

void add_block_attach(CLI::App& app) {
    auto* cmd = app.add_subcommand("block-attach", "Attach a disk image to a domain");
    struct Args {
        Common common;
        std::string dom;
        std::string vdev;
        std::string path;
        std::string mode = "w";
        int backend = 0;
        unsigned sector_size = 512;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("domain", a->dom, "Domain name or domid")->required();
    cmd->add_option("vdev", a->vdev, "xvda..xvdp, or a devid")->required();
    cmd->add_option("path", a->path, "Image file or block device")->required();
    cmd->add_option("--mode", a->mode, "r or w");
    cmd->add_option("--backend", a->backend, "Backend domid");
    cmd->add_option("--sector-size", a->sector_size, "512 or 4096");
    add_common(cmd, a->common);
    cmd->callback([a] {
        // The disk goes through the same validation as a config file's disks[].
        nlohmann::json disk = {{"path", a->path},
                               {"mode", a->mode},
                               {"backend", a->backend},
                               {"sector_size", a->sector_size}};
        if (ts::vdev_to_devid(a->vdev))
            disk["vdev"] = a->vdev;
        else if (auto d = store::parse_domid(a->vdev, 0xffff))
            disk["devid"] = *d;
        else
            throw std::runtime_error("vdev " + a->vdev + ": expected xvda..xvdp or a devid");
        auto parsed = ts::parse_disk_config(disk.dump(), "block-attach");
        if (!parsed.ok())
            throw std::runtime_error(parsed.errors.front());
        StoreClient client = connect_store(a->common);
        pvkit_domid_t domid = resolve_domain(client, a->dom);
        auto ops = ts::disk_attach_ops(domid, *parsed.value, ts::BlkbackOptions{});
        if (!ops)
            throw std::runtime_error(ts::to_string(ops.error()));
        attach(client, a->dom, domid, ts::device_ref(*parsed.value), ops.value(), "block-attach");
        std::printf("vbd %u (%s, mode %s) attached to domain %s (domid %u)\n",
                    ts::device_ref(*parsed.value).devid, a->path.c_str(), a->mode.c_str(),
                    a->dom.c_str(), static_cast<unsigned>(domid));
    });
}

void add_network_attach(CLI::App& app) {
    auto* cmd = app.add_subcommand("network-attach", "Attach a NIC to a domain");
    struct Args {
        Common common;
        std::string dom;
        unsigned devid = 0;
        std::string mac;
        std::string tap;
        std::string bridge;
        unsigned queues = 1;
        int backend = 0;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("domain", a->dom, "Domain name or domid")->required();
    cmd->add_option("--devid", a->devid, "Device id (0..65535)");
    cmd->add_option("--mac", a->mac, "MAC address (default: generated)");
    cmd->add_option("--tap", a->tap, "TAP device name");
    cmd->add_option("--bridge", a->bridge, "Bridge to add the TAP device to");
    cmd->add_option("--queues", a->queues, "Queues (1..8)");
    cmd->add_option("--backend", a->backend, "Backend domid");
    add_common(cmd, a->common);
    cmd->callback([a] {
        StoreClient client = connect_store(a->common);
        pvkit_domid_t domid = resolve_domain(client, a->dom);
        auto summary = ts::describe_domain(client, domid);
        if (!summary)
            store_failure("domain " + a->dom, summary.error());
        nlohmann::json nic = {{"devid", a->devid}, {"queues", a->queues}, {"backend", a->backend}};
        if (!a->mac.empty())
            nic["mac"] = a->mac;
        if (!a->tap.empty())
            nic["tap"] = a->tap;
        if (!a->bridge.empty())
            nic["bridge"] = a->bridge;
        auto parsed = ts::parse_nic_config(nic.dump(), "network-attach", summary->name);
        if (!parsed.ok())
            throw std::runtime_error(parsed.errors.front());
        auto ops = ts::nic_attach_ops(domid, *parsed.value, ts::NetbackOptions{});
        if (!ops)
            throw std::runtime_error(ts::to_string(ops.error()));
        attach(client, a->dom, domid, ts::device_ref(*parsed.value), ops.value(), "network-attach");
        std::printf("vif %u attached to domain %s (domid %u)\n", a->devid, a->dom.c_str(),
                    static_cast<unsigned>(domid));
    });
}

} // namespace

void register_domain_commands(CLI::App& app, Context& ctx) {
    add_create(app, ctx);
    add_list(app);
    add_destroy(app, ctx);
    add_block_attach(app);
    add_detach(app, ts::DeviceKind::kVbd, "block-detach");
    add_device_list(app, ts::DeviceKind::kVbd, "block-list");
    add_network_attach(app);
    add_detach(app, ts::DeviceKind::kVif, "network-detach");
    add_device_list(app, ts::DeviceKind::kVif, "network-list");
}

} // namespace pvkit::cli
