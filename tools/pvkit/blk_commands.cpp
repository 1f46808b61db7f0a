// `pvkit blk write|read|verify|info|bench-io`: block I/O through the PV
// path from the command line. Each command makes this process a
// host-process domain (libpvkit-front), attaches the image through the
// store, so pvkit-stored and pvkit-blkback must be running, does its I/O,
// prints what it did, then detaches the disk and destroys the domain.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "commands.hpp"
#include "size_arg.hpp"
#include "pvkit/front/blk_device.hpp"
#include "pvkit/front/blk_workload.hpp"
#include "pvkit/front/host_domain.hpp"
#include "pvkit/front/pattern.hpp"

namespace pvkit::cli {

namespace {

using front::BlkDevice;
using front::BlkDeviceOptions;
using front::BlkError;
using front::HostDomain;
using front::HostDomainOptions;

struct BlkArgs {
    std::string store_socket;
    std::string image;
    std::uint32_t devid = 51712;
    std::uint32_t sector_size = 512;
    std::uint32_t timeout_ms = 10000;
};

// The domain and the attached disk for one command; detached and destroyed
// when the command is done (or fails).
class Session {
public:
    Session(const BlkArgs& a, const std::string& what, bool read_only, std::uint32_t queue_depth,
            std::uint32_t max_io_bytes)
        : m_what(what) {
        std::error_code ec;
        if (a.image.empty())
            throw std::runtime_error(what + ": --image is required");
        if (!std::filesystem::is_regular_file(a.image, ec) && !std::filesystem::is_block_file(a.image, ec))
            throw std::runtime_error(what + ": " + a.image + ": not a regular file or block device");
        HostDomainOptions dopts;
        dopts.store_socket = a.store_socket;
        dopts.name = "pvkit-blk-" + std::to_string(::getpid());
        dopts.timeout = std::chrono::milliseconds(a.timeout_ms);
        try {
            m_domain.emplace(HostDomain::create(dopts));
            BlkDeviceOptions o;
            o.devid = a.devid;
            o.image = a.image;
            o.read_only = read_only;
            o.sector_size = a.sector_size;
            o.connect_timeout = std::chrono::milliseconds(a.timeout_ms);
            o.queue_depth = queue_depth;
            o.max_io_bytes = max_io_bytes;
            m_device.emplace(BlkDevice::attach(*m_domain, o));
        } catch (const std::exception& e) {
            m_device.reset();
            m_domain.reset(); // destroys the domain again (best effort)
            throw std::runtime_error(what + ": " + e.what());
        }
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() = default;

    BlkDevice& dev() { return *m_device; }
    HostDomain& domain() { return *m_domain; }

    // Detach and destroy, reporting failures (the destructors would only
    // swallow them).
    void finish() {
        try {
            m_device->detach();
            m_domain->destroy();
        } catch (const std::exception& e) {
            throw std::runtime_error(m_what + ": teardown: " + e.what());
        }
    }

    [[noreturn]] void fail(const std::string& step, BlkError e) {
        throw std::runtime_error(m_what + ": " + step + ": " + front::to_string(e));
    }

    std::string where() const {
        return "domain " + std::to_string(m_domain->domid()) + " device " +
               std::to_string(m_device->devid());
    }

private:
    std::string m_what;
    std::optional<HostDomain> m_domain;
    std::optional<BlkDevice> m_device;
};

void check_range(const std::string& what, const BlkDevice& dev, std::uint64_t offset, std::uint64_t length) {
    const std::uint32_t ss = dev.info().sector_size;
    if (length == 0)
        throw std::runtime_error(what + ": --length must not be 0");
    if (offset % ss != 0 || length % ss != 0)
        throw std::runtime_error(what + ": --offset and --length must be multiples of the sector size (" +
                                 std::to_string(ss) + ")");
    if (offset > dev.info().size_bytes || length > dev.info().size_bytes - offset)
        throw std::runtime_error(what + ": " + std::to_string(offset) + " + " + std::to_string(length) +
                                 " is beyond the end of the disk (" +
                                 std::to_string(dev.info().size_bytes) + " bytes)");
}

std::string counters_line(const BlkDevice& dev) {
    const front::BlkCounters c = dev.counters();
    std::ostringstream s;
    s << c.ring_requests << " ring requests (" << c.indirect_requests << " indirect), "
      << c.notifications_sent << " notifications sent, " << c.notifications_received
      << " received, " << c.reconnects << " reconnects";
    return s.str();
}

constexpr std::uint64_t kChunk = 4 * 1024 * 1024;

struct IoArgs {
    std::string offset = "0";
    std::string length;
    std::uint64_t seed = 1;
    std::string output;
};

void run_write(const BlkArgs& a, const IoArgs& io) {
    const std::string what = "blk write";
    const std::uint64_t offset = parse_size("--offset", io.offset);
    const std::uint64_t length = parse_size("--length", io.length);
    Session s(a, what, false, 0, 256 * 1024);
    check_range(what, s.dev(), offset, length);
    std::vector<std::byte> buf(static_cast<std::size_t>(std::min(length, kChunk)));
    for (std::uint64_t at = 0; at < length; at += buf.size()) {
        std::span<std::byte> part(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), length - at)));
        front::fill_pattern(part, io.seed, offset + at);
        auto r = s.dev().write(offset + at, part);
        if (!r)
            s.fail("write at offset " + std::to_string(offset + at), r.error());
    }
    if (s.dev().info().flush) {
        auto r = s.dev().flush();
        if (!r)
            s.fail("flush", r.error());
    }
    std::cout << "wrote " << length << " bytes at offset " << offset << " of " << a.image
              << " (pattern seed " << io.seed << ") through " << s.where() << ": "
              << counters_line(s.dev()) << "\n";
    s.finish();
}

void run_read(const BlkArgs& a, const IoArgs& io, bool verify) {
    const std::string what = verify ? "blk verify" : "blk read";
    const std::uint64_t offset = parse_size("--offset", io.offset);
    const std::uint64_t length = parse_size("--length", io.length);
    std::ofstream out;
    if (!io.output.empty()) {
        out.open(io.output, std::ios::binary | std::ios::trunc);
        if (!out)
            throw std::runtime_error(what + ": cannot write " + io.output);
    }
    Session s(a, what, true, 0, 256 * 1024);
    check_range(what, s.dev(), offset, length);
    std::vector<std::byte> buf(static_cast<std::size_t>(std::min(length, kChunk)));
    // FNV-1a over the whole range, chunk by chunk.
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::uint64_t at = 0; at < length; at += buf.size()) {
        std::span<std::byte> part(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), length - at)));
        auto r = s.dev().read(offset + at, part);
        if (!r)
            s.fail("read at offset " + std::to_string(offset + at), r.error());
        if (verify) {
            if (auto bad = front::find_pattern_mismatch(part, io.seed, offset + at))
                throw std::runtime_error(what + ": " + a.image + ": byte at offset " + std::to_string(*bad) +
                                         " differs from pattern seed " + std::to_string(io.seed));
        }
        for (std::byte b : part) {
            h ^= static_cast<std::uint64_t>(b);
            h *= 0x100000001b3ull;
        }
        if (out.is_open()) {
            out.write(reinterpret_cast<const char*>(part.data()), static_cast<std::streamsize>(part.size()));
            if (!out)
                throw std::runtime_error(what + ": writing " + io.output + " failed");
        }
    }
    if (verify)
        std::cout << "verified " << length << " bytes at offset " << offset << " of " << a.image
                  << " against pattern seed " << io.seed << " through " << s.where() << ": "
                  << counters_line(s.dev()) << "\n";
    else
        std::cout << "read " << length << " bytes at offset " << offset << " of " << a.image
                  << " through " << s.where() << ": fnv1a64 0x" << std::hex << std::setw(16)
                  << std::setfill('0') << h << std::dec
                  << (io.output.empty() ? "" : ", written to " + io.output) << "\n";
    s.finish();
}

void run_info(const BlkArgs& a, bool read_only) {
    Session s(a, "blk info", read_only, 0, 128 * 1024);
    const front::BlkInfo& i = s.dev().info();
    std::cout << "image:                 " << a.image << "\n"
              << "device:                " << s.where() << "\n"
              << "size:                  " << i.size_bytes << " bytes (" << i.sectors << " 512-byte sectors)\n"
              << "sector-size:           " << i.sector_size << "\n"
              << "read-only:             " << (i.read_only ? "yes" : "no") << "\n"
              << "flush:                 " << (i.flush ? "yes" : "no") << "\n"
              << "discard:               " << (i.discard ? "yes, granularity " + std::to_string(i.discard_granularity) : "no") << "\n"
              << "indirect segments:     " << i.max_indirect_segments << "\n"
              << "ring:                  order " << i.ring_page_order << ", " << i.ring_entries << " slots\n"
              << "queue depth:           " << i.queue_depth << "\n";
    s.finish();
}

struct BenchArgs {
    std::string rw = "randread";
    std::string bs = "4k";
    std::uint32_t qd = 32;
    double seconds = 5;
    std::string size; // empty: the whole disk
    std::uint64_t seed = 1;
};

void run_bench(const BlkArgs& a, const BenchArgs& b) {
    const std::string what = "blk bench-io";
    front::BlkWorkloadSpec spec;
    if (!front::parse_workload_kind(b.rw, spec.kind))
        throw std::runtime_error(what + ": --rw must be randread, randwrite, read or write");
    const bool writes = front::is_write(spec.kind);
    const std::uint64_t bs = parse_size("--bs", b.bs);
    if (bs == 0 || bs % a.sector_size != 0 || bs > 1024 * 1024)
        throw std::runtime_error(what + ": --bs must be a multiple of the sector size (" +
                                 std::to_string(a.sector_size) + ") up to 1M");
    if (!(b.seconds > 0) || b.seconds > 86400)
        throw std::runtime_error(what + ": --seconds must be in (0, 86400]");
    const auto max_io = static_cast<std::uint32_t>((bs + 4095) / 4096 * 4096);
    Session s(a, what, !writes, b.qd, max_io);
    BlkDevice& dev = s.dev();
    spec.block_size = static_cast<std::uint32_t>(bs);
    spec.queue_depth = b.qd;
    spec.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(b.seconds));
    spec.span_bytes = b.size.empty() ? 0 : parse_size("--size", b.size);
    spec.seed = b.seed;
    spec.stall_timeout = std::chrono::milliseconds(std::max<std::uint32_t>(a.timeout_ms, 1000));
    if (std::min(dev.info().size_bytes, spec.span_bytes == 0 ? UINT64_MAX : spec.span_bytes) < bs)
        throw std::runtime_error(what + ": the disk (or --size) is smaller than one block of " +
                                 std::to_string(bs));
    const std::uint64_t span_bytes = spec.span_bytes == 0
                                         ? dev.info().size_bytes
                                         : std::min(spec.span_bytes, dev.info().size_bytes);
    front::BlkWorkloadResult r;
    try {
        r = front::run_blk_workload(dev, spec);
    } catch (const front::FrontError& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    const double iops = r.iops();
    std::cout << std::fixed << std::setprecision(1) << b.rw << " bs=" << bs << " qd=" << b.qd
              << " over " << span_bytes << " bytes of " << a.image << " for " << r.seconds
              << " s: " << r.requests << " I/Os, " << iops << " IOPS, " << r.mib_per_second()
              << " MiB/s\n"
              << "latency us: mean " << r.latency_mean_us << ", min " << r.latency_min_us
              << ", p50 " << r.latency_percentile_us(0.5) << ", p99 "
              << r.latency_percentile_us(0.99) << ", max " << r.latency_max_us << "\n"
              << "ring requests " << r.ring_requests << ", notifications sent "
              << r.notifications_sent << ", received " << r.notifications_received << ", sleeps "
              << r.sleeps << ", reconnects " << dev.counters().reconnects << "\n";
    s.finish();
}

CLI::App* leaf(CLI::App& parent, const std::string& name, const std::string& help) {
    CLI::App* cmd = parent.add_subcommand(name, help);
    cmd->fallthrough();
    return cmd;
}

} // namespace

void register_blk_commands(CLI::App& app, Context& /*ctx*/) {
    auto* blk = app.add_subcommand(
        "blk", "Block I/O through the PV path as a host-process domain (needs pvkit-stored and pvkit-blkback)");
    blk->require_subcommand(1);
    auto a = std::make_shared<BlkArgs>();
    blk->add_option("--store-socket", a->store_socket,
                    "pvkit-stored's socket (default: $PVKIT_STORE_SOCKET or /run/pvkit/stored.sock)");
    blk->add_option("--image", a->image, "Disk image (or block device) to attach");
    blk->add_option("--devid", a->devid, "The disk's devid (default 51712, xvda)")
        ->check(CLI::Range(0u, 65535u));
    blk->add_option("--sector-size", a->sector_size, "Logical sector size the backend publishes")
        ->check(CLI::IsMember({512u, 4096u}));
    blk->add_option("--timeout-ms", a->timeout_ms,
                    "Bound on connecting, closing and each store reply (default 10000)")
        ->check(CLI::Range(1u, 3600000u));

    auto add_range = [](CLI::App* cmd, IoArgs& io) {
        cmd->add_option("--offset", io.offset, "Byte offset (k, M, G allowed; default 0)");
        cmd->add_option("--length", io.length, "Bytes (k, M, G allowed)")->required();
    };
    {
        auto io = std::make_shared<IoArgs>();
        auto* cmd = leaf(*blk, "write", "Write a deterministic pattern (then flush)");
        add_range(cmd, *io);
        cmd->add_option("--pattern", io->seed, "Pattern seed")->required();
        cmd->callback([a, io] { run_write(*a, *io); });
    }
    {
        auto io = std::make_shared<IoArgs>();
        auto* cmd = leaf(*blk, "read", "Read and print a checksum (or save the data)");
        add_range(cmd, *io);
        cmd->add_option("--output", io->output, "Also write the data to this file");
        cmd->callback([a, io] { run_read(*a, *io, false); });
    }
    {
        auto io = std::make_shared<IoArgs>();
        auto* cmd = leaf(*blk, "verify", "Read and check against a pattern written by `blk write`");
        add_range(cmd, *io);
        cmd->add_option("--pattern", io->seed, "Pattern seed")->required();
        cmd->callback([a, io] { run_read(*a, *io, true); });
    }
    {
        auto writable = std::make_shared<bool>(false);
        auto* cmd = leaf(*blk, "info", "Print what the backend offers for the image");
        cmd->add_flag("--writable", *writable, "Attach read-write (default read-only)");
        cmd->callback([a, writable] { run_info(*a, !*writable); });
    }
    {
        auto b = std::make_shared<BenchArgs>();
        auto* cmd = leaf(*blk, "bench-io", "Measure I/O through the PV path (zero-copy buffers)");
        cmd->add_option("--rw", b->rw, "randread, randwrite, read or write")
            ->check(CLI::IsMember({"randread", "randwrite", "read", "write"}));
        cmd->add_option("--bs", b->bs, "Block size (default 4k)");
        cmd->add_option("--qd", b->qd, "I/Os in flight (default 32)")->check(CLI::Range(1u, 4096u));
        cmd->add_option("--seconds", b->seconds, "Run time (default 5)");
        cmd->add_option("--size", b->size, "Use only the first SIZE bytes of the disk");
        cmd->add_option("--seed", b->seed, "Seed for offsets and written data (default 1)");
        cmd->callback([a, b] { run_bench(*a, *b); });
    }
}

} // namespace pvkit::cli
