#include "blk_bench.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "pvkit/front/blk_device.hpp"
#include "pvkit/front/blk_workload.hpp"
#include "pvkit/front/host_domain.hpp"
#include "pvkit/front/pattern.hpp"
#include "pvkit/store/client.hpp"
#include "pvkit/transport/unique_fd.hpp"
#include "service.hpp"
#include "store_bench.hpp"

namespace pvkit::bench {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Every start-up wait is bounded by this.
constexpr auto kStartTimeout = std::chrono::milliseconds(20000);
// A fio run may take this much longer than its --runtime (start-up, the
// image's layout, a loaded machine) before it counts as hung.
constexpr auto kFioSlack = std::chrono::milliseconds(30000);
// blkback publishes statistics/ from a 200 ms timer; this bounds the wait
// for a run's counters to appear in the store.
constexpr auto kStatsTimeout = std::chrono::milliseconds(3000);
// The queue depth of the deep figures and the most any figure uses: the
// device's queue depth and nbdkit's thread count.
constexpr std::uint32_t kDeepQueue = 32;
constexpr std::uint32_t kLargeBlock = 128 * 1024;
constexpr std::uint32_t kNbdkitThreads = kDeepQueue;
constexpr std::uint64_t kPatternSeed = 0x626c6b; // "blk"

// ---- Finding programs ---------------------------------------------------------------

// ---- Children -----------------------------------------------------------------------

bool socket_accepts(const fs::path& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        throw_errno("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string p = path.string();
    if (p.size() >= sizeof addr.sun_path)
        throw std::runtime_error("bench blk: socket path too long: " + p);
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
    return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

// Waits until a daemon without a ready descriptor (nbdkit) accepts on its
// socket.
void wait_for_socket(Service& svc, const fs::path& path) {
    const auto deadline = Clock::now() + kStartTimeout;
    while (!socket_accepts(path)) {
        throw_if_interrupted("bench blk");
        if (svc.exited())
            throw std::runtime_error(svc.name() + " " + svc.describe_status() +
                                     " during start-up: " + svc.log_tail());
        if (Clock::now() >= deadline)
            throw std::runtime_error(svc.name() + " did not accept on " + path.string() +
                                     " within " + std::to_string(kStartTimeout.count() / 1000) +
                                     " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// Runs a program to completion (bounded), returning its exit status; its
// output is in `log`.
int run_to_exit(const std::string& name, const std::string& binary,
                const std::vector<std::string>& args, const fs::path& log,
                std::chrono::milliseconds timeout) {
    Service child(name, binary, args, log);
    const auto deadline = Clock::now() + timeout;
    while (!child.exited()) {
        if (interrupted()) {
            child.stop(std::chrono::seconds(2));
            throw_if_interrupted("bench blk");
        }
        if (Clock::now() >= deadline) {
            child.stop(std::chrono::seconds(2));
            throw std::runtime_error(name + " did not finish within " +
                                     std::to_string(timeout.count() / 1000) +
                                     " s: " + child.log_tail());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const std::string status = child.describe_status();
    if (status.rfind("exited with status ", 0) != 0)
        throw std::runtime_error(name + " " + status + ": " + child.log_tail());
    return std::stoi(status.substr(std::strlen("exited with status ")));
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string first_line(const std::string& text) {
    std::string line = text.substr(0, text.find('\n'));
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
        line.pop_back();
    return line;
}

std::string tool_version(const std::string& binary, const fs::path& dir, const std::string& tag) {
    const fs::path log = dir / (tag + "-version.log");
    try {
        (void)run_to_exit(tag + " --version", binary, {"--version"}, log, std::chrono::seconds(10));
    } catch (const std::exception&) {
        return "";
    }
    return first_line(read_file(log));
}

// ---- The image ----------------------------------------------------------------------

// Creates (or overwrites) the image with the pattern, so that reads move
// real data, and syncs it so O_DIRECT reads find it on the device.
std::string fs_type(const fs::path& p) {
    struct statfs s {};
    if (::statfs(p.c_str(), &s) != 0)
        return "unknown";
    switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53:
        return "ext4";
    case 0x01021994:
        return "tmpfs";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x794c7630:
        return "overlayfs";
    default: {
        char buf[32];
        std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(s.f_type));
        return buf;
    }
    }
}

// ---- Figures ------------------------------------------------------------------------

struct Figure {
    std::string name;
    front::BlkWorkloadKind kind;
    std::uint32_t block_size;
    std::uint32_t queue_depth;
    [[nodiscard]] bool large() const { return block_size >= kLargeBlock; }
    [[nodiscard]] const char* unit() const { return large() ? "MiB/s" : "IOPS"; }
};

const std::vector<Figure>& figures() {
    using K = front::BlkWorkloadKind;
    static const std::vector<Figure> list = {
        {"randread_4k_qd1", K::kRandRead, 4096, 1},
        {"randwrite_4k_qd1", K::kRandWrite, 4096, 1},
        {"randread_4k_qd32", K::kRandRead, 4096, kDeepQueue},
        {"randwrite_4k_qd32", K::kRandWrite, 4096, kDeepQueue},
        {"read_128k_qd32", K::kSeqRead, kLargeBlock, kDeepQueue},
        {"write_128k_qd32", K::kSeqWrite, kLargeBlock, kDeepQueue},
    };
    return list;
}

// One measurement of one system.
struct Sample {
    double value = 0;      // IOPS or MiB/s, as the figure's unit says
    double lat_p50_us = 0; // completion latency, median I/O
    double lat_mean_us = 0;
    std::uint64_t ios = 0;
};

// ---- fio ----------------------------------------------------------------------------

struct FioSetup {
    std::string binary;
    fs::path dir;
    fs::path image;
    fs::path nbd_socket;
    std::uint64_t span = 0;
    bool direct = false;
    double seconds = 0;
};

std::vector<std::string> fio_common(const FioSetup& s, const Figure& f, const fs::path& out) {
    const auto runtime_ms = std::max<long>(1, std::lround(s.seconds * 1000.0));
    return {"--name=" + f.name, std::string("--rw=") + front::to_string(f.kind),
            "--bs=" + std::to_string(f.block_size), "--iodepth=" + std::to_string(f.queue_depth),
            "--size=" + std::to_string(s.span),
            // Uniform random offsets with replacement, as the PV workload.
            "--norandommap", "--randrepeat=0", "--time_based",
            "--runtime=" + std::to_string(runtime_ms) + "ms", "--output-format=json",
            "--output=" + out.string()};
}

Sample parse_fio(const fs::path& out, const Figure& f, const std::string& what) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(out));
        const auto& job = j.at("jobs").at(0);
        if (job.at("error").get<int>() != 0)
            throw std::runtime_error("job error " + std::to_string(job.at("error").get<int>()));
        const auto& side = job.at(front::is_write(f.kind) ? "write" : "read");
        Sample s;
        s.ios = side.at("total_ios").get<std::uint64_t>();
        if (s.ios == 0)
            throw std::runtime_error("no I/O completed");
        s.value = f.large() ? side.at("bw_bytes").get<double>() / (1024.0 * 1024.0)
                            : side.at("iops").get<double>();
        // fio's clat is submission to completion as the engine saw it; lat
        // adds the time to submit. The PV loop measures the latter.
        s.lat_mean_us = side.at("lat_ns").at("mean").get<double>() / 1000.0;
        const auto& pct = side.at("clat_ns").at("percentile");
        s.lat_p50_us = pct.contains("50.000000") ? pct.at("50.000000").get<double>() / 1000.0 : 0.0;
        return s;
    } catch (const std::exception& e) {
        throw std::runtime_error("bench blk: " + what + ": cannot read fio's JSON " + out.string() +
                                 ": " + e.what());
    }
}

Sample run_fio(const FioSetup& s, const Figure& f, bool nbd, int round) {
    const std::string tag =
        std::string(nbd ? "fio-nbd-" : "fio-file-") + f.name + "-r" + std::to_string(round);
    const fs::path out = s.dir / (tag + ".json");
    std::vector<std::string> args = fio_common(s, f, out);
    if (nbd) {
        args.push_back("--ioengine=nbd");
        args.push_back("--uri=nbd+unix:///?socket=" + s.nbd_socket.string());
    } else {
        args.push_back("--ioengine=io_uring");
        args.push_back("--filename=" + s.image.string());
        args.push_back(std::string("--direct=") + (s.direct ? "1" : "0"));
        // fio's default drops the file's pages before the job; the other
        // two systems keep them, so must fio.
        args.push_back("--invalidate=0");
    }
    const auto timeout = std::chrono::milliseconds(std::lround(s.seconds * 1000.0)) + kFioSlack;
    const int status =
        run_to_exit("fio (" + tag + ")", s.binary, args, s.dir / (tag + ".log"), timeout);
    if (status != 0)
        throw std::runtime_error(
            "bench blk: fio (" + tag + ") exited with status " + std::to_string(status) + ": " +
            first_line(read_file(s.dir / (tag + ".log"))) +
            (nbd ? " (fio's nbd engine needs fio built with libnbd, as Debian's is)" : ""));
    Sample r = parse_fio(out, f, "fio (" + tag + ")");
    std::error_code ec;
    fs::remove(out, ec);
    return r;
}

// ---- The PV path --------------------------------------------------------------------

// blkback's per-device counters, as published in statistics/.
struct BackendCounters {
    std::uint64_t requests = 0; // requests-read + requests-write
    std::uint64_t notifications_sent = 0;
    std::uint64_t notifications_received = 0;
};

class BackendStats {
public:
    BackendStats(const std::string& socket, std::string device_path)
        : m_path(std::move(device_path)) {
        std::string why;
        auto c = store::StoreClient::connect(socket, kStartTimeout, &why);
        if (!c)
            throw std::runtime_error("bench blk: cannot connect to pvkit-stored: " + why);
        m_client.emplace(std::move(c).value());
        m_client->set_reply_timeout(kStartTimeout);
    }

    BackendCounters read() {
        BackendCounters c;
        c.requests = value("requests-read") + value("requests-write");
        c.notifications_sent = value("notifications-sent");
        c.notifications_received = value("notifications-received");
        return c;
    }

    // Waits until the counters include `requests` more requests than
    // `base` (blkback publishes them from a timer). False if they did not
    // within kStatsTimeout; the last values are in `out` anyway.
    bool wait_for(const BackendCounters& base, std::uint64_t requests, BackendCounters& out) {
        const auto deadline = Clock::now() + kStatsTimeout;
        for (;;) {
            out = read();
            if (out.requests - base.requests >= requests)
                return true;
            if (Clock::now() >= deadline)
                return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

private:
    std::uint64_t value(const std::string& name) {
        auto r = m_client->read(m_path + "/statistics/" + name);
        if (!r) {
            if (r.error() == store::StoreError::kNoEnt)
                return 0; // not published yet
            throw std::runtime_error("bench blk: read " + m_path + "/statistics/" + name + ": " +
                                     std::string(store::to_string(r.error())));
        }
        try {
            return std::stoull(*r);
        } catch (const std::exception&) {
            throw std::runtime_error("bench blk: " + m_path + "/statistics/" + name + " is '" + *r +
                                     "', not a number");
        }
    }

    std::string m_path;
    std::optional<store::StoreClient> m_client;
};

struct PvSample {
    Sample sample;
    double front_sent_per_request = 0;     // frontend -> backend kicks
    double front_received_per_request = 0; // backend kicks the frontend consumed
    double back_sent_per_request = 0;      // backend -> frontend kicks
    double back_received_per_request = 0;  // frontend kicks the backend consumed
    double sleeps_per_request = 0;         // frontend waits that slept
    bool backend_counters_complete = true;
};

PvSample run_pv(front::BlkDevice& dev, BackendStats& stats, const Figure& f, std::uint64_t span,
                double seconds, std::uint64_t seed) {
    front::BlkWorkloadSpec spec;
    spec.kind = f.kind;
    spec.block_size = f.block_size;
    spec.queue_depth = f.queue_depth;
    spec.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(seconds));
    spec.span_bytes = span;
    spec.seed = seed;
    const BackendCounters base = stats.read();
    front::BlkWorkloadResult r;
    try {
        r = front::run_blk_workload(dev, spec);
    } catch (const front::FrontError& e) {
        throw std::runtime_error(std::string("bench blk: PV ") + e.what());
    }
    BackendCounters now;
    PvSample p;
    p.backend_counters_complete = stats.wait_for(base, r.ring_requests, now);
    if (r.requests == 0)
        throw std::runtime_error("bench blk: PV " + f.name + ": no I/O completed");
    const auto per = [&](std::uint64_t n) {
        return static_cast<double>(n) / static_cast<double>(r.requests);
    };
    p.sample.ios = r.requests;
    p.sample.value = f.large() ? r.mib_per_second() : r.iops();
    p.sample.lat_p50_us = r.latency_percentile_us(0.5);
    p.sample.lat_mean_us = r.latency_mean_us;
    p.front_sent_per_request = per(r.notifications_sent);
    p.front_received_per_request = per(r.notifications_received);
    p.back_sent_per_request = per(now.notifications_sent - base.notifications_sent);
    p.back_received_per_request = per(now.notifications_received - base.notifications_received);
    p.sleeps_per_request = per(r.sleeps);
    return p;
}

// ---- Collecting ---------------------------------------------------------------------

struct FigureSamples {
    std::vector<PvSample> pv;
    std::vector<Sample> fio;
    std::vector<Sample> nbd;
};

std::vector<double> values(const std::vector<Sample>& s, double Sample::*field) {
    std::vector<double> v;
    for (const Sample& x : s)
        v.push_back(x.*field);
    return v;
}

std::vector<double> pv_values(const std::vector<PvSample>& s, double Sample::*field) {
    std::vector<double> v;
    for (const PvSample& x : s)
        v.push_back(x.sample.*field);
    return v;
}

std::vector<double> pv_counts(const std::vector<PvSample>& s, double PvSample::*field) {
    std::vector<double> v;
    for (const PvSample& x : s)
        v.push_back(x.*field);
    return v;
}

nlohmann::json stats_json(const std::vector<double>& v) {
    const Stats s = Stats::of(v);
    return {{"min", s.min}, {"median", s.median}, {"max", s.max}};
}

std::string fmt(double v, int precision) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", precision, v);
    return buf;
}

} // namespace

void prepare_bench_image(const fs::path& path, std::uint64_t size, const std::string& suite) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid())
        throw_errno(suite + ": open image " + path.string());
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
        throw_errno(suite + ": resize image " + path.string());
    std::vector<std::byte> chunk(1024 * 1024);
    for (std::uint64_t at = 0; at < size; at += chunk.size()) {
        throw_if_interrupted(suite);
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - at));
        const std::span<std::byte> part(chunk.data(), n);
        front::fill_pattern(part, kPatternSeed, at);
        std::size_t done = 0;
        while (done < n) {
            const ssize_t w =
                ::pwrite(fd.get(), part.data() + done, n - done, static_cast<off_t>(at + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                throw_errno(suite + ": write image " + path.string());
            done += static_cast<std::size_t>(w);
        }
    }
    if (::fdatasync(fd.get()) != 0)
        throw_errno(suite + ": sync image " + path.string());
}

std::string find_blkback_binary(const std::string& given) {
    std::vector<std::string> build_paths;
#ifdef PVKIT_BLKBACK_BUILD_PATH
    build_paths.emplace_back(PVKIT_BLKBACK_BUILD_PATH);
#endif
    return find_pvkit_program(given, "pvkit-blkback", "--blkback-binary",
                              {"../backend-drivers/blkback"}, build_paths);
}

BenchReport run_blk_bench(const BlkBenchOptions& opt) {
    if (opt.rounds < 1)
        throw std::invalid_argument("bench blk: --rounds must be >= 1");
    if (!(opt.seconds >= 0.01) || opt.seconds > 3600)
        throw std::invalid_argument("bench blk: --seconds must be in [0.01, 3600]");
    const std::uint64_t min_size = 4ull * 1024 * 1024;
    if (opt.size < min_size || opt.size % kLargeBlock != 0)
        throw std::invalid_argument("bench blk: --size must be a multiple of 128k, at least 4M");
    for (const std::string& name : opt.figures)
        if (std::none_of(figures().begin(), figures().end(),
                         [&](const Figure& f) { return f.name == name; }))
            throw std::invalid_argument("bench blk: --figures: unknown figure '" + name + "'");
    // Programs first: a missing package is one line before anything starts.
    const std::string fio = find_system_tool(opt.fio_binary, "fio", "--fio-binary", "fio");
    const std::string nbdkit = find_system_tool(opt.nbdkit_binary, "nbdkit", "--nbdkit-binary", "nbdkit");
    const std::string stored_binary = find_store_binary(opt.store_binary);
    const std::string blkback_binary = find_blkback_binary(opt.blkback_binary);

    InterruptGuard interrupts;
    // Declaration order is teardown order in reverse: the disk is detached
    // and the domain destroyed before nbdkit, blkback and the store stop,
    // and the scratch directory goes last.
    TempDir dir("pvkit-bench-blk");
    const fs::path image = opt.image.empty() ? dir.path() / "image.raw" : fs::absolute(opt.image);
    {
        std::error_code ec;
        if (fs::exists(image, ec) && !fs::is_regular_file(image, ec))
            throw std::runtime_error("bench blk: --image " + image.string() +
                                     ": not a regular file");
    }
    prepare_bench_image(image, opt.size, "bench blk");

    const std::string store_socket = (dir.path() / "stored.sock").string();
    const std::string handoff_socket = (dir.path() / "blkback.sock").string();
    const fs::path nbd_socket = dir.path() / "nbdkit.sock";
    auto stored = start_ready("pvkit-stored", stored_binary,
                              {"--foreground", "--socket", store_socket, "--data-dir",
                               (dir.path() / "store-data").string()},
                              dir.path() / "stored.log", kStartTimeout);
    std::vector<std::string> blkback_args = {"--store-socket",      store_socket,
                                             "--handoff-socket",    handoff_socket,
                                             "--stats-interval-ms", "1"};
    if (opt.direct)
        blkback_args.push_back("--direct");
    if (opt.blkback_spin_us)
        blkback_args.insert(blkback_args.end(),
                            {"--spin-us", std::to_string(*opt.blkback_spin_us)});
    auto blkback =
        start_ready("pvkit-blkback", blkback_binary, blkback_args, dir.path() / "blkback.log", kStartTimeout);
    std::vector<std::string> nbdkit_args = {"--foreground",
                                            "--unix",
                                            nbd_socket.string(),
                                            "--threads",
                                            std::to_string(kNbdkitThreads),
                                            "--exit-with-parent",
                                            "file",
                                            "file=" + image.string()};
    if (opt.direct)
        nbdkit_args.push_back("cache=none");
    auto nbd = std::make_unique<Service>("nbdkit", nbdkit, nbdkit_args, dir.path() / "nbdkit.log");
    wait_for_socket(*nbd, nbd_socket);

    front::HostDomainOptions dopts;
    dopts.store_socket = store_socket;
    dopts.name = "pvkit-bench-blk-" + std::to_string(::getpid());
    dopts.timeout = std::chrono::milliseconds(kStartTimeout);
    std::optional<front::HostDomain> domain;
    std::optional<front::BlkDevice> dev;
    try {
        domain.emplace(front::HostDomain::create(dopts));
        front::BlkDeviceOptions o;
        o.image = image;
        o.queue_depth = kDeepQueue;
        o.max_io_bytes = kLargeBlock;
        if (opt.frontend_spin)
            o.spin = *opt.frontend_spin;
        if (opt.frontend_spin_yield_after)
            o.spin_yield_after = *opt.frontend_spin_yield_after;
        // Bounded teardown: after Ctrl-C the daemons may be gone already.
        o.connect_timeout = std::chrono::milliseconds(5000);
        dev.emplace(front::BlkDevice::attach(*domain, o));
    } catch (const std::exception& e) {
        throw std::runtime_error(
            std::string("bench blk: attach the image through pvkit-blkback: ") + e.what() +
            " (blkback log: " + blkback->log_tail() + ")");
    }
    const std::string backend_dir = "/local/domain/0/backend/vbd/" +
                                    std::to_string(domain->domid()) + "/" +
                                    std::to_string(dev->devid());
    BackendStats stats(store_socket, backend_dir);

    FioSetup fs_setup;
    fs_setup.binary = fio;
    fs_setup.dir = dir.path();
    fs_setup.image = image;
    fs_setup.nbd_socket = nbd_socket;
    fs_setup.span = opt.size;
    fs_setup.direct = opt.direct;
    fs_setup.seconds = opt.seconds;

    std::vector<Figure> chosen;
    for (const Figure& f : figures())
        if (opt.figures.empty() ||
            std::find(opt.figures.begin(), opt.figures.end(), f.name) != opt.figures.end())
            chosen.push_back(f);
    std::vector<FigureSamples> samples(chosen.size());
    for (int round = 0; round < opt.rounds; ++round) {
        for (std::size_t fi = 0; fi < chosen.size(); ++fi) {
            const Figure& f = chosen[fi];
            FigureSamples& s = samples[fi];
            // Interleaved: the three systems run each figure back to back,
            // so a migration of our vCPUs hits them alike; who goes first
            // rotates between rounds.
            for (int k = 0; k < 3; ++k) {
                throw_if_interrupted("bench blk");
                switch ((k + round) % 3) {
                case 0:
                    s.pv.push_back(run_pv(*dev, stats, f, opt.size, opt.seconds,
                                          static_cast<std::uint64_t>(round) * 7919 + fi + 1));
                    break;
                case 1:
                    s.fio.push_back(run_fio(fs_setup, f, false, round));
                    break;
                default:
                    s.nbd.push_back(run_fio(fs_setup, f, true, round));
                    break;
                }
                if (blkback->exited())
                    throw std::runtime_error("bench blk: pvkit-blkback " +
                                             blkback->describe_status() + ": " +
                                             blkback->log_tail());
                if (nbd->exited())
                    throw std::runtime_error("bench blk: nbdkit " + nbd->describe_status() + ": " +
                                             nbd->log_tail());
            }
        }
    }
    throw_if_interrupted("bench blk");

    const front::BlkInfo info = dev->info();
    dev->detach();
    dev.reset();
    domain->destroy();
    domain.reset();

    const std::string fio_version = tool_version(fio, dir.path(), "fio");
    const std::string nbdkit_version = tool_version(nbdkit, dir.path(), "nbdkit");
    const std::string cache = opt.direct ? "direct" : "page-cache";
    const std::string fio_name =
        (fio_version.empty() ? std::string("fio") : fio_version) + "-io_uring-file";
    const std::string nbd_name =
        (nbdkit_version.empty() ? std::string("nbdkit") : nbdkit_version) + "-file-unix";
    std::string nbd_name_clean = nbd_name;
    std::replace(nbd_name_clean.begin(), nbd_name_clean.end(), ' ', '-');

    BenchReport report;
    report.suite = "blk";
    report.config = {
        {"rounds", opt.rounds},
        {"seconds", opt.seconds},
        {"size", opt.size},
        {"image", opt.image.empty() ? std::string("(scratch file)") : image.string()},
        {"image_fs", fs_type(image.parent_path())},
        {"cache", cache},
        {"cache_pvkit",
         opt.direct ? "pvkit-blkback --direct (O_DIRECT)" : "pvkit-blkback default (page cache)"},
        {"cache_fio",
         opt.direct ? "--direct=1 (O_DIRECT)" : "--direct=0 --invalidate=0 (page cache)"},
        {"cache_nbdkit", opt.direct
                             ? "file plugin cache=none: page cache, evicted after each request "
                               "(nbdkit 1.32 has no O_DIRECT)"
                             : "file plugin cache=default (page cache)"},
        {"queue_depths", {1, kDeepQueue}},
        {"block_sizes", {4096, kLargeBlock}},
        {"offsets",
         "random: uniform with replacement (fio --norandommap); sequential: wrap at the end"},
        {"fio_version", fio_version},
        {"nbdkit_version", nbdkit_version},
        {"nbdkit_threads", kNbdkitThreads},
        {"blkback_spin_us",
         opt.blkback_spin_us ? nlohmann::json(*opt.blkback_spin_us) : nlohmann::json("default")},
        {"frontend_spin_ns", opt.frontend_spin ? nlohmann::json(opt.frontend_spin->count())
                                               : nlohmann::json("default")},
        {"frontend_spin_yield_after_ns",
         opt.frontend_spin_yield_after ? nlohmann::json(opt.frontend_spin_yield_after->count())
                                       : nlohmann::json("default")},
        {"fio_binary", fio},
        {"nbdkit_binary", nbdkit},
        {"store_binary", stored_binary},
        {"blkback_binary", blkback_binary},
        {"pvkit_ring_entries", info.ring_entries},
        {"pvkit_queue_depth", info.queue_depth},
        {"pvkit_frontend", "libpvkit-front in the pvkit process (run_blk_workload), zero-copy "
                           "pool buffers, one ring of 512 slots"},
        {"cpus", online_cpus()}};

    for (std::size_t fi = 0; fi < chosen.size(); ++fi) {
        const Figure& f = chosen[fi];
        const FigureSamples& s = samples[fi];
        nlohmann::json notif = {
            {"frontend_sent", stats_json(pv_counts(s.pv, &PvSample::front_sent_per_request))},
            {"frontend_received",
             stats_json(pv_counts(s.pv, &PvSample::front_received_per_request))},
            {"backend_sent", stats_json(pv_counts(s.pv, &PvSample::back_sent_per_request))},
            {"backend_received", stats_json(pv_counts(s.pv, &PvSample::back_received_per_request))},
            {"frontend_sleeps", stats_json(pv_counts(s.pv, &PvSample::sleeps_per_request))},
        };
        std::vector<double> kicks;
        bool complete = true;
        for (const PvSample& p : s.pv) {
            kicks.push_back(p.front_sent_per_request + p.back_sent_per_request);
            complete = complete && p.backend_counters_complete;
        }
        const double kicks_median = Stats::of(kicks).median;
        notif["kicks_both_directions"] = stats_json(kicks);
        notif["backend_counters_complete"] = complete;

        auto add = [&](const std::string& suffix, const std::vector<Sample>& base,
                       const std::string& baseline_name, double goal_ratio) {
            BenchResult r;
            r.name = f.name + suffix;
            r.unit = f.unit();
            r.pvkit = Stats::of(pv_values(s.pv, &Sample::value));
            r.baseline = Stats::of(values(base, &Sample::value));
            r.baseline_name = baseline_name;
            r.goal = Goal{"ratio >= " + fmt(goal_ratio, 1), r.ratio() >= goal_ratio};
            const double pv_p50 = Stats::of(pv_values(s.pv, &Sample::lat_p50_us)).median;
            const double base_p50 = Stats::of(values(base, &Sample::lat_p50_us)).median;
            r.note = "p50 latency " + fmt(pv_p50, 1) + " us vs " + fmt(base_p50, 1) +
                     " us; PV notifications/request " + fmt(kicks_median, 4);
            r.details = {
                {"rw", front::to_string(f.kind)},
                {"block_size", f.block_size},
                {"queue_depth", f.queue_depth},
                {"pvkit_latency_p50_us", stats_json(pv_values(s.pv, &Sample::lat_p50_us))},
                {"pvkit_latency_mean_us", stats_json(pv_values(s.pv, &Sample::lat_mean_us))},
                {"baseline_latency_p50_us", stats_json(values(base, &Sample::lat_p50_us))},
                {"baseline_latency_mean_us", stats_json(values(base, &Sample::lat_mean_us))},
                {"pvkit_notifications_per_request", notif}};
            report.results.push_back(std::move(r));
        };
        add("_vs_fio", s.fio, fio_name, 0.9);
        add("_vs_nbdkit", s.nbd, nbd_name_clean, 1.0);
    }
    return report;
}

} // namespace pvkit::bench
