// The guest block path end to end: a real pvkit-stored, a real
// pvkit-blkback serving real image files, and the real pvkit-vmm booting
// the mini guest under KVM, whose user-mode programs drive the blkfront
// core (frontend-drivers/guest/user/ublk.c).
//
//  - blk-selftest passes, and its pattern is then checked in the image file
//    from the host (pread), independently of the guest's own read-back.
//  - blkback is killed (-9) and restarted while the guest is busy; the
//    guest reconnects (a fresh port, handed to the new blkback by a second
//    DEVICE_CONNECT) and completes its run.
//  - blk-hostile attacks its first disk's backend; blkback contains it,
//    keeps serving the guest's second disk and a host-process frontend,
//    and then another guest.
//
// Every wait is bounded (the VMM's --timeout, kWait); no test checks how
// fast anything is. The figures printed are for docs/vmm.md.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <pvkit/blkif.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "blkback_test_support.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit_guest/blk_pattern.h"
#include "vmm_test_support.hpp"

namespace bt = pvkit::blkback::test;
using pvkit::store::StoreClient;
using pvkit::test::VmmProcess;
using pvkit::test::VmmRun;

namespace {

constexpr const char* kTimeout = "120";
constexpr std::uint64_t kImageBytes = 16ull << 20;
constexpr std::uint32_t kXvda = 51712;

struct Disk {
    std::string image;
    std::string vdev;
};

std::string write_config(const bt::Bench& bench, const std::string& name,
                         const std::string& cmdline, const std::vector<Disk>& disks) {
    nlohmann::json list = nlohmann::json::array();
    for (const Disk& d : disks)
        list.push_back({{"vdev", d.vdev}, {"path", d.image}, {"mode", "w"}});
    const nlohmann::json cfg = {
        {"name", name},  {"type", "pv-guest"},           {"memory", 32},
        {"vcpus", 1},    {"kernel", PVKIT_GUEST_KERNEL}, {"cmdline", cmdline},
        {"disks", list},
    };
    const std::string path = bench.image(name + ".json");
    std::ofstream(path) << cfg.dump(2);
    return path;
}

std::vector<std::string> vmm_args(const bt::Bench& bench, const std::string& config,
                                  const std::string& stats) {
    return {"--config",  config,   "--store-socket", bench.store.socket(),
            "--timeout", kTimeout, "--stats-json",   stats};
}

void show(const VmmRun& run) {
    UNSCOPED_INFO("pvkit-vmm stdout:\n" << run.out << "\nstderr:\n" << run.err);
}

nlohmann::json read_json(const std::string& path) {
    return nlohmann::json::parse(pvkit::test::read_text_file(path));
}

// The image as blk-selftest leaves it: its extents hold the pattern and
// every other byte is still zero (partial pages wrote only their sectors).
void check_pattern_in_image(const std::string& image) {
    const std::vector<std::byte> bytes = bt::read_image(image, 0, kImageBytes);
    REQUIRE(bytes.size() == kImageBytes);
    const std::uint64_t sectors = kImageBytes / 512;
    std::vector<bool> covered(kImageBytes, false);
    std::uint64_t pattern_bytes = 0;
    for (const blk_pattern_extent& e : k_blk_pattern_extents) {
        const std::uint64_t start = blk_pattern_start(&e, sectors) * 512;
        for (std::uint64_t b = start; b < start + std::uint64_t{e.nr_sectors} * 512; ++b) {
            covered[b] = true;
            ++pattern_bytes;
        }
    }
    std::uint64_t wrong_pattern = 0;
    std::uint64_t wrong_zero = 0;
    for (std::uint64_t b = 0; b < kImageBytes; ++b) {
        const auto got = static_cast<std::uint8_t>(bytes[b]);
        if (covered[b])
            wrong_pattern += got != blk_pattern_byte(b);
        else
            wrong_zero += got != 0;
    }
    INFO("pattern bytes checked: " << pattern_bytes);
    CHECK(pattern_bytes > 0);
    CHECK(wrong_pattern == 0);
    CHECK(wrong_zero == 0);
}

// Exits and time between two POST codes of the VMM's statistics.
struct Window {
    std::uint64_t exits = 0;
    std::uint64_t ns = 0;
};

Window post_window(const nlohmann::json& stats, int from, int to) {
    const nlohmann::json* a = nullptr;
    const nlohmann::json* b = nullptr;
    for (const auto& p : stats.at("post_codes")) {
        if (p.at("code") == from)
            a = &p;
        if (p.at("code") == to)
            b = &p;
    }
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    return Window{b->at("exits").get<std::uint64_t>() - a->at("exits").get<std::uint64_t>(),
                  b->at("time_ns").get<std::uint64_t>() - a->at("time_ns").get<std::uint64_t>()};
}

// The backend state of (domid, devid) once it is `want`; bounded by kWait.
bool wait_backend_state(StoreClient& dom0, pvkit_domid_t domid, std::uint32_t devid,
                        const std::string& want) {
    const std::string path = bt::backend_dir(domid, devid) + "/state";
    REQUIRE(dom0.watch(path, "state").ok());
    const auto deadline = std::chrono::steady_clock::now() + bt::kWait;
    for (;;) {
        auto v = dom0.read(path);
        if (v && v.value() == want) {
            (void)dom0.unwatch(path, "state");
            return true;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        (void)dom0.wait_for_event(left);
    }
}

pvkit_domid_t wait_domid(StoreClient& dom0, const std::string& name) {
    const std::string path = "/vm/" + name + "/domid";
    REQUIRE(dom0.watch(path, "domid").ok());
    const auto deadline = std::chrono::steady_clock::now() + bt::kWait;
    for (;;) {
        auto v = dom0.read(path);
        if (v && !v.value().empty()) {
            auto domid = pvkit::toolstack::parse_domid(v.value());
            REQUIRE(domid);
            (void)dom0.unwatch(path, "domid");
            return *domid;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            FAIL("no domid for " << name);
        (void)dom0.wait_for_event(left);
    }
}

StoreClient dom0_client(const bt::Bench& bench) {
    auto c = StoreClient::connect(bench.store.socket(), std::chrono::seconds(5));
    REQUIRE(c);
    return std::move(c).value();
}

} // namespace

TEST_CASE("blk-selftest through pvkit-blkback: the guest's pattern is in the image file",
          "[vmm][guest][blk]") {
    bt::Bench bench; // a pvkit-stored and a running pvkit-blkback
    const std::string image = bench.image("selftest.img");
    bt::make_image(image, kImageBytes);
    const std::string config =
        write_config(bench, "blk-selftest", "run=blk-selftest", {{image, "xvda"}});
    const std::string stats_path = bench.image("stats.json");
    const VmmRun run = pvkit::test::run_vmm(vmm_args(bench, config, stats_path));
    show(run);
    REQUIRE(run.exit_code == 0);
    CHECK(run.out.find("blk-selftest: ") != std::string::npos);
    CHECK(run.out.find(" 0 failed") != std::string::npos);
    check_pattern_in_image(image);

    const nlohmann::json stats = read_json(stats_path);
    const nlohmann::json& handoff = stats.at("handoff");
    CHECK(handoff.at("accepted") == 1);
    std::cout << "blk-selftest: " << stats.at("exits").at("total") << " exits in "
              << stats.at("time_ns").at("run") << " ns of guest run time\n";
    CHECK(bench.blkback.alive());
}

TEST_CASE("blk-bench prints one result line; the data path takes no VMM exit per request",
          "[vmm][guest][blk]") {
    bt::Bench bench; // a pvkit-stored and a running pvkit-blkback
    const std::string image = bench.image("bench.img");
    bt::make_image(image, kImageBytes);
    constexpr int kOps = 400;
    const std::string config = write_config(bench, "blk-bench",
                                            "run=blk-bench bench.ops=" + std::to_string(kOps) +
                                                " bench.qd=8 bench.span_mb=16",
                                            {{image, "xvda"}});
    const std::string stats_path = bench.image("stats.json");
    const VmmRun run = pvkit::test::run_vmm(vmm_args(bench, config, stats_path));
    show(run);
    REQUIRE(run.exit_code == 0);
    const std::string prefix = "blk-bench-result ";
    const auto at = run.out.find(prefix);
    REQUIRE(at != std::string::npos);
    const auto end = run.out.find('\n', at);
    const nlohmann::json result =
        nlohmann::json::parse(run.out.substr(at + prefix.size(), end - at - prefix.size()));
    CHECK(result.at("requests") == kOps);
    CHECK(result.at("reads").get<int>() + result.at("writes").get<int>() == kOps);
    CHECK(result.at("bytes") == kOps * 4096);
    CHECK(result.at("errors") == 0);
    CHECK(result.at("ring_requests") == kOps);
    CHECK(result.at("elapsed_ns").get<std::uint64_t>() > 0);

    // Exits in the timed window: only the guest's sleeps (each a BLOCK
    // hypercall, plus the system calls' own port I/O) leave KVM. Requests,
    // notifications and responses never do.
    const Window w = post_window(read_json(stats_path), 0x30, 0x31);
    const std::uint64_t sleeps = result.at("sleeps").get<std::uint64_t>();
    INFO("exits " << w.exits << ", sleeps " << sleeps);
    CHECK(w.exits <= 2 * sleeps + 2);
    std::cout << "blk-bench: " << run.out.substr(at, end - at) << "\n  VMM: " << w.exits
              << " exits in the window (" << w.ns << " ns)\n";
}

TEST_CASE("blkback killed with -9 and restarted during guest I/O: the guest completes its run",
          "[vmm][guest][blk]") {
    bt::Bench bench; // a pvkit-stored and a running pvkit-blkback
    const std::string image = bench.image("restart.img");
    bt::make_image(image, kImageBytes);
    const std::string config = write_config(
        bench, "blk-restart", "run=blk-selftest blk.until_reconnects=1", {{image, "xvda"}});
    const std::string stats_path = bench.image("stats.json");
    StoreClient dom0 = dom0_client(bench);
    VmmProcess vmm = VmmProcess::start(vmm_args(bench, config, stats_path));
    const pvkit_domid_t domid = wait_domid(dom0, "blk-restart");
    // Connected: the guest is in its rounds, which it leaves only after it
    // lived through a reconnect.
    REQUIRE(wait_backend_state(dom0, domid, kXvda, "4"));
    bench.blkback.kill9();
    bench.blkback.start();
    const VmmRun run = vmm.wait();
    show(run);
    REQUIRE(run.exit_code == 0);
    CHECK(run.out.find(" 0 failed") != std::string::npos);
    check_pattern_in_image(image);
    // Two hand-offs: the first blkback's and the restarted one's.
    const nlohmann::json stats = read_json(stats_path);
    CHECK(stats.at("handoff").at("accepted").get<int>() >= 2);
}

TEST_CASE("blk-hostile: blkback contains a hostile guest and keeps serving others",
          "[vmm][guest][blk]") {
    bt::Bench bench; // a pvkit-stored and a running pvkit-blkback
    const std::string attacked = bench.image("attacked.img");
    const std::string second = bench.image("second.img");
    bt::make_image(attacked, kImageBytes);
    bt::make_image(second, kImageBytes);

    // A host-process frontend of another domain on the same blkback.
    StoreClient dom0 = dom0_client(bench);
    bt::DiskSpec other;
    other.domid = 90;
    other.image = bench.image("other.img");
    bt::make_image(other.image, 1 << 20);
    bt::attach_disk(dom0, other, ::getpid());
    bt::TestFrontend front(bench.store.socket(), other);
    front.connect();

    const std::string config = write_config(bench, "blk-hostile", "run=blk-hostile",
                                            {{attacked, "xvda"}, {second, "xvdb"}});
    const std::string stats_path = bench.image("stats.json");
    const VmmRun run = pvkit::test::run_vmm(vmm_args(bench, config, stats_path));
    show(run);
    CHECK(run.exit_code == 0);
    CHECK(run.out.find("blk-hostile: ") != std::string::npos);
    CHECK(run.out.find(" 0 failed") != std::string::npos);
    REQUIRE(bench.blkback.alive());

    // The other frontend still has its disk.
    const std::vector<std::byte> block = bt::pattern_block(3, 1);
    CHECK(front.write_sync(24, block) == PVKIT_BLKIF_RSP_OKAY);
    std::vector<std::byte> back;
    CHECK(front.read_sync(24, 8, back) == PVKIT_BLKIF_RSP_OKAY);
    CHECK(back == block);
    front.close();

    // And another guest gets its disk served.
    const std::string image = bench.image("after.img");
    bt::make_image(image, kImageBytes);
    const std::string config2 =
        write_config(bench, "blk-after", "run=blk-selftest", {{image, "xvda"}});
    const VmmRun after = pvkit::test::run_vmm(vmm_args(bench, config2, bench.image("s2.json")));
    show(after);
    CHECK(after.exit_code == 0);
    check_pattern_in_image(image);
    CHECK(bench.blkback.alive());
}
