#include "guest_blk_bench.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "blk_bench.hpp"
#include "process.hpp"
#include "pvkit/front/blk_device.hpp"
#include "pvkit/front/blk_workload.hpp"
#include "pvkit/front/host_domain.hpp"
#include "service.hpp"
#include "store_bench.hpp"

namespace pvkit::bench {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kSuite = "bench guest-blk";
constexpr auto kStartTimeout = std::chrono::milliseconds(20000);
constexpr std::uint32_t kBlockSize = 4096;
constexpr std::uint32_t kGuestMemoryMib = 32;
// The mini guest's blk-bench writes these POST codes right before its
// first submission and right after its last completion
// (frontend-drivers/guest/user/blk_bench.c).
constexpr int kPostWorkloadStart = 0x30;
constexpr int kPostWorkloadEnd = 0x31;
constexpr const char* kResultPrefix = "blk-bench-result ";
constexpr double kGoalRatio = 0.8;

struct Figure {
    std::string name;
    front::BlkWorkloadKind kind;
    std::uint32_t queue_depth;
};

const std::vector<Figure>& figures() {
    static const std::vector<Figure> all = {
        {"randread_4k_qd1", front::BlkWorkloadKind::kRandRead, 1},
        {"randread_4k_qd16", front::BlkWorkloadKind::kRandRead, 16},
        {"randwrite_4k_qd16", front::BlkWorkloadKind::kRandWrite, 16},
    };
    return all;
}

std::uint32_t deepest_queue() {
    std::uint32_t qd = 1;
    for (const Figure& f : figures())
        qd = std::max(qd, f.queue_depth);
    return qd;
}

struct Sample {
    double iops = 0;
    double sent_per_request = 0;     // frontend -> blkback kicks
    double received_per_request = 0; // blkback -> frontend events
    double sleeps_per_request = 0;
    // Guest only.
    double exits_per_request = 0;
    double exits_total = 0;
    double guest_clock_iops = 0;
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// pvkit-vmm's record of a POST code (docs/vmm.md): the exits before it and
// the host's clock when it came. The window's own opening marker is one
// exit; what remains between the markers is the workload's.
struct PostRecord {
    std::uint64_t exits = 0;
    std::uint64_t time_ns = 0;
};

PostRecord post_record(const json& stats, int code, const std::string& what) {
    for (const json& p : stats.at("post_codes"))
        if (p.at("code").get<int>() == code)
            return {p.at("exits").get<std::uint64_t>(), p.at("time_ns").get<std::uint64_t>()};
    throw std::runtime_error(std::string(kSuite) + ": " + what + ": POST code " +
                             std::to_string(code) + " missing from pvkit-vmm's counters");
}

struct GuestEnv {
    fs::path dir;
    std::string vmm;
    std::string kernel;
    std::string store_socket;
    fs::path image;
    std::uint64_t requests = 0;
    std::uint32_t span_mb = 0;
    double timeout = 0;
};

Sample run_guest(const GuestEnv& env, const Figure& f, std::uint64_t seed, int run) {
    const std::string what = "guest run " + std::to_string(run) + " (" + f.name + ")";
    const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(run);
    const fs::path config = env.dir / ("guest-" + tag + ".json");
    const fs::path stats_path = env.dir / ("guest-" + tag + "-exits.json");
    const fs::path log = env.dir / ("guest-" + tag + ".log");
    const std::string rw = f.kind == front::BlkWorkloadKind::kRandRead ? "randread" : "randwrite";
    const json cfg = {
        {"name", "pvkit-bench-guest-blk-" + tag},
        {"type", "pv-guest"},
        {"memory", kGuestMemoryMib},
        {"vcpus", 1},
        {"kernel", env.kernel},
        {"cmdline", "run=blk-bench bench.ops=" + std::to_string(env.requests) +
                        " bench.qd=" + std::to_string(f.queue_depth) + " bench.rw=" + rw +
                        " bench.span_mb=" + std::to_string(env.span_mb) +
                        " bench.seed=" + std::to_string(seed)},
        {"disks", json::array({{{"vdev", "xvda"}, {"path", env.image.string()}, {"mode", "w"}}})}};
    {
        std::ofstream out(config);
        out << cfg.dump(2) << '\n';
        if (!out)
            throw std::runtime_error(std::string(kSuite) + ": cannot write " + config.string());
    }
    Service vmm("pvkit-vmm", env.vmm,
                {"--config", config.string(), "--store-socket", env.store_socket, "--stats-json",
                 stats_path.string(), "--timeout", std::to_string(env.timeout), "--quiet"},
                log);
    // pvkit-vmm stops the guest at --timeout itself; the slack covers its
    // start-up and teardown.
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(env.timeout + 10));
    while (!vmm.exited()) {
        if (interrupted() || Clock::now() >= deadline) {
            vmm.stop(std::chrono::seconds(2));
            throw_if_interrupted(kSuite);
            throw std::runtime_error(std::string(kSuite) + ": " + what + ": pvkit-vmm hung: " +
                                     vmm.log_tail());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (vmm.exit_status() != 0)
        throw std::runtime_error(std::string(kSuite) + ": " + what + ": pvkit-vmm " +
                                 vmm.describe_status() + " (docs/vmm.md): " + vmm.log_tail());

    const std::string console = read_file(log);
    const auto at = console.find(kResultPrefix);
    if (at == std::string::npos)
        throw std::runtime_error(std::string(kSuite) + ": " + what +
                                 ": no blk-bench-result line on the guest console: " +
                                 vmm.log_tail());
    const auto end = console.find('\n', at);
    const std::size_t from = at + std::string(kResultPrefix).size();
    json result;
    json stats;
    try {
        result = json::parse(console.substr(from, end == std::string::npos ? end : end - from));
        stats = json::parse(read_file(stats_path));
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string(kSuite) + ": " + what + ": " + e.what());
    }
    const auto requests = result.at("requests").get<std::uint64_t>();
    const auto elapsed_ns = result.at("elapsed_ns").get<std::uint64_t>();
    if (requests != env.requests || result.at("errors").get<std::uint64_t>() != 0 ||
        elapsed_ns == 0)
        throw std::runtime_error(std::string(kSuite) + ": " + what +
                                 ": the guest reported " + result.dump());
    const PostRecord start = post_record(stats, kPostWorkloadStart, what);
    const PostRecord stop = post_record(stats, kPostWorkloadEnd, what);
    if (stop.exits <= start.exits || stop.time_ns <= start.time_ns)
        throw std::runtime_error(std::string(kSuite) + ": " + what + ": POST codes out of order");
    const auto n = static_cast<double>(requests);
    Sample s;
    // The time is the host's: pvkit-vmm's clock at the two markers' exits
    // (the guest's own TSC-based elapsed_ns is reported beside it).
    s.iops = n / (static_cast<double>(stop.time_ns - start.time_ns) / 1e9);
    s.guest_clock_iops = n / (static_cast<double>(elapsed_ns) / 1e9);
    s.sent_per_request = result.at("notifications_sent").get<double>() / n;
    s.received_per_request = result.at("notifications_received").get<double>() / n;
    s.sleeps_per_request = result.at("sleeps").get<double>() / n;
    s.exits_per_request = static_cast<double>(stop.exits - start.exits - 1) / n;
    s.exits_total = stats.at("exits").at("total").get<double>();
    return s;
}

Sample run_host(front::BlkDevice& dev, const Figure& f, std::uint64_t requests,
                std::uint64_t span, std::uint64_t seed) {
    front::BlkWorkloadSpec spec;
    spec.kind = f.kind;
    spec.block_size = kBlockSize;
    spec.queue_depth = f.queue_depth;
    spec.requests = requests;
    spec.span_bytes = span;
    spec.seed = seed;
    spec.record_latencies = false;
    const front::BlkWorkloadResult r = front::run_blk_workload(dev, spec);
    const auto n = static_cast<double>(r.requests);
    Sample s;
    s.iops = r.iops();
    s.sent_per_request = static_cast<double>(r.notifications_sent) / n;
    s.received_per_request = static_cast<double>(r.notifications_received) / n;
    s.sleeps_per_request = static_cast<double>(r.sleeps) / n;
    return s;
}

std::vector<double> field(const std::vector<Sample>& v, double Sample::*m) {
    std::vector<double> out;
    out.reserve(v.size());
    for (const Sample& s : v)
        out.push_back(s.*m);
    return out;
}

json stats_json(const std::vector<double>& v) {
    const Stats s = Stats::of(v);
    return {{"min", s.min}, {"median", s.median}, {"max", s.max}};
}

std::string find_kernel(const std::string& given) {
    std::vector<std::string> build_paths;
#ifdef PVKIT_MINI_BUILD_PATH
    build_paths.emplace_back(PVKIT_MINI_BUILD_PATH);
#endif
    // In a build tree pvkit is tools/pvkit and the guest guest/pvkit-mini.
    return find_pvkit_program(given, "pvkit-mini", "--kernel", {"../guest"}, build_paths);
}

std::string find_vmm_binary(const std::string& given) {
    std::vector<std::string> build_paths;
#ifdef PVKIT_VMM_BUILD_PATH
    build_paths.emplace_back(PVKIT_VMM_BUILD_PATH);
#endif
    return find_pvkit_program(given, "pvkit-vmm", "--vmm", {"../hypervisor/vmm"}, build_paths);
}

} // namespace

BenchReport run_guest_blk_bench(const GuestBlkBenchOptions& opt) {
    if (opt.rounds < 1)
        throw std::invalid_argument("bench guest-blk: --rounds must be >= 1");
    if (opt.requests < 100 || opt.requests > 10'000'000)
        throw std::invalid_argument("bench guest-blk: --requests must be in [100, 10000000]");
    if (opt.span_mb < 1 || opt.span_mb > 65536)
        throw std::invalid_argument("bench guest-blk: --span-mb must be in [1, 65536]");
    if (!(opt.guest_timeout >= 1) || opt.guest_timeout > 3600)
        throw std::invalid_argument("bench guest-blk: --guest-timeout must be in [1, 3600]");
    for (const std::string& name : opt.figures)
        if (std::none_of(figures().begin(), figures().end(),
                         [&](const Figure& f) { return f.name == name; }))
            throw std::invalid_argument("bench guest-blk: --figures: unknown figure '" + name +
                                        "'");
    std::vector<Figure> chosen;
    for (const Figure& f : figures())
        if (opt.figures.empty() ||
            std::find(opt.figures.begin(), opt.figures.end(), f.name) != opt.figures.end())
            chosen.push_back(f);

    const std::string kernel = fs::absolute(find_kernel(opt.kernel)).string();
    const std::string vmm_binary = find_vmm_binary(opt.vmm_binary);
    const std::string stored_binary = find_store_binary(opt.store_binary);
    const std::string blkback_binary = find_blkback_binary(opt.blkback_binary);

    InterruptGuard interrupts;
    // Teardown in reverse: the host device and domain go before blkback
    // and the store stop, the scratch directory last.
    TempDir dir("pvkit-bench-guest-blk");
    const std::uint64_t span = std::uint64_t{opt.span_mb} << 20;
    const fs::path image = dir.path() / "image.raw";
    prepare_bench_image(image, span, kSuite);
    const std::string store_socket = (dir.path() / "stored.sock").string();
    auto stored = start_ready("pvkit-stored", stored_binary,
                              {"--foreground", "--socket", store_socket, "--data-dir",
                               (dir.path() / "store-data").string()},
                              dir.path() / "stored.log", kStartTimeout);
    auto blkback = start_ready("pvkit-blkback", blkback_binary,
                               {"--store-socket", store_socket, "--handoff-socket",
                                (dir.path() / "blkback.sock").string()},
                               dir.path() / "blkback.log", kStartTimeout);

    front::HostDomainOptions dopts;
    dopts.store_socket = store_socket;
    dopts.name = "pvkit-bench-guest-blk-host-" + std::to_string(::getpid());
    dopts.timeout = kStartTimeout;
    std::optional<front::HostDomain> domain;
    std::optional<front::BlkDevice> dev;
    try {
        domain.emplace(front::HostDomain::create(dopts));
        front::BlkDeviceOptions o;
        o.image = image;
        o.queue_depth = deepest_queue();
        o.max_io_bytes = kBlockSize;
        o.connect_timeout = std::chrono::milliseconds(5000);
        dev.emplace(front::BlkDevice::attach(*domain, o));
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string(kSuite) + ": attach the image for the host-process "
                                                       "frontend: " +
                                 e.what() + " (blkback log: " + blkback->log_tail() + ")");
    }

    GuestEnv env;
    env.dir = dir.path();
    env.vmm = vmm_binary;
    env.kernel = kernel;
    env.store_socket = store_socket;
    env.image = image;
    env.requests = opt.requests;
    env.span_mb = opt.span_mb;
    env.timeout = opt.guest_timeout;

    struct Samples {
        std::vector<Sample> guest;
        std::vector<Sample> host;
    };
    std::vector<Samples> samples(chosen.size());
    int run = 0;
    for (int round = 0; round < opt.rounds; ++round) {
        for (std::size_t fi = 0; fi < chosen.size(); ++fi) {
            const Figure& f = chosen[fi];
            // The same offsets on both sides: one seed per round and figure.
            const auto seed = static_cast<std::uint64_t>(round) * 7919 + fi + 1;
            for (int k = 0; k < 2; ++k) {
                throw_if_interrupted(kSuite);
                if ((k + round) % 2 == 0)
                    samples[fi].guest.push_back(run_guest(env, f, seed, ++run));
                else
                    samples[fi].host.push_back(run_host(*dev, f, opt.requests, span, seed));
                if (blkback->exited())
                    throw std::runtime_error(std::string(kSuite) + ": pvkit-blkback " +
                                             blkback->describe_status() + ": " +
                                             blkback->log_tail());
            }
        }
    }
    const front::BlkInfo info = dev->info();
    dev->detach();
    dev.reset();
    domain->destroy();
    domain.reset();

    BenchReport report;
    report.suite = "guest-blk";
    report.config = {
        {"rounds", opt.rounds},
        {"requests", opt.requests},
        {"block_size", kBlockSize},
        {"span_mb", opt.span_mb},
        {"offsets", "uniform random 4 KiB blocks of the span, with replacement; the same seed "
                    "on both sides"},
        {"cache", "page cache (pvkit-blkback default)"},
        {"guest", "pvkit mini guest, blk-bench in user mode (blkfront core), " +
                      std::to_string(kGuestMemoryMib) + " MiB, 1 vCPU"},
        {"baseline", "host-process frontend: libpvkit-front run_blk_workload in pvkit"},
        {"host_queue_depth", info.queue_depth},
        {"kernel", kernel},
        {"vmm_binary", vmm_binary},
        {"store_binary", stored_binary},
        {"blkback_binary", blkback_binary},
        {"cpus", online_cpus()}};
    for (std::size_t fi = 0; fi < chosen.size(); ++fi) {
        const Figure& f = chosen[fi];
        const Samples& s = samples[fi];
        BenchResult r;
        r.name = f.name;
        r.unit = "IOPS";
        r.pvkit = Stats::of(field(s.guest, &Sample::iops));
        r.baseline = Stats::of(field(s.host, &Sample::iops));
        r.baseline_name = "host-process-frontend";
        r.goal = Goal{"ratio >= 0.8", r.ratio() >= kGoalRatio};
        const double exits = Stats::of(field(s.guest, &Sample::exits_per_request)).median;
        const double guest_kicks = Stats::of(field(s.guest, &Sample::sent_per_request)).median;
        const double host_kicks = Stats::of(field(s.host, &Sample::sent_per_request)).median;
        r.note = "guest: exits/request " + std::to_string(exits) + ", kicks/request " +
                 std::to_string(guest_kicks) + "; host process: kicks/request " +
                 std::to_string(host_kicks);
        r.details = {
            {"rw", front::to_string(f.kind)},
            {"queue_depth", f.queue_depth},
            {"guest_exits_per_request", stats_json(field(s.guest, &Sample::exits_per_request))},
            {"guest_iops_by_guest_clock", stats_json(field(s.guest, &Sample::guest_clock_iops))},
            {"guest_exits_per_run", stats_json(field(s.guest, &Sample::exits_total))},
            {"guest_notifications_sent_per_request",
             stats_json(field(s.guest, &Sample::sent_per_request))},
            {"guest_notifications_received_per_request",
             stats_json(field(s.guest, &Sample::received_per_request))},
            {"guest_sleeps_per_request", stats_json(field(s.guest, &Sample::sleeps_per_request))},
            {"host_notifications_sent_per_request",
             stats_json(field(s.host, &Sample::sent_per_request))},
            {"host_notifications_received_per_request",
             stats_json(field(s.host, &Sample::received_per_request))},
            {"host_sleeps_per_request", stats_json(field(s.host, &Sample::sleeps_per_request))}};
        report.results.push_back(std::move(r));
    }
    return report;
}

} // namespace pvkit::bench
