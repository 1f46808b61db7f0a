// Real KVM, real guests, real pvkit-stored: the guest as a PV domain.
// Event channels kicked from guest user mode, grant pools in guest-physical
// space, the store ring relayed to pvkit-stored as the guest's domain, and
// the hand-off of a device to a backend (the test plays the backend).
//
// Every wait is bounded (the VMM's --timeout, the tests' kWait); nothing
// here checks how fast anything is. The measurements the tests make are
// printed for docs/vmm.md, never compared.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <pvkit/evtchn.h>
#include <pvkit/grant.h>
#include <pvkit/start_info.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <vector>

#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/domain_ops.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/handoff.hpp"
#include "pvkit/vmm/machine.hpp"
#include "pvkit_guest/pool_pattern.h"
#include "store_test_support.hpp"
#include "vmm_test_support.hpp"

using pvkit::UniqueFd;
using pvkit::store::StoreClient;
using pvkit::store::test::Daemon;
using pvkit::store::test::kWait;
using pvkit::test::ScratchDir;
using pvkit::test::VmmProcess;
using pvkit::test::VmmRun;
using pvkit::vmm::ExitStatus;

namespace {

constexpr const char* kTimeout = "60";
constexpr std::uint32_t kDevid = 51712; // xvda

int status(ExitStatus s) {
    return static_cast<int>(s);
}

void show(const VmmRun& run) {
    UNSCOPED_INFO("pvkit-vmm stdout:\n" << run.out << "\nstderr:\n" << run.err);
}

nlohmann::json read_json(const std::string& path) {
    return nlohmann::json::parse(pvkit::test::read_text_file(path));
}

// Time between two POST codes the guest wrote, in ns.
std::uint64_t post_interval(const nlohmann::json& stats, int from, int to) {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    for (const auto& p : stats.at("post_codes")) {
        if (p.at("code") == from)
            a = p.at("time_ns");
        if (p.at("code") == to)
            b = p.at("time_ns");
    }
    REQUIRE(a != 0);
    REQUIRE(b > a);
    return b - a;
}

// A pv-guest domain config with one disk (an empty image) for `program`.
std::string write_config(const ScratchDir& dir, const std::string& name,
                         const std::string& program) {
    const std::string image = dir.file(name + ".img");
    std::ofstream(image).put('\0');
    nlohmann::json cfg = {
        {"name", name},
        {"type", "pv-guest"},
        {"memory", 32},
        {"vcpus", 1},
        {"kernel", PVKIT_GUEST_KERNEL},
        {"cmdline", "run=" + program},
        {"disks", nlohmann::json::array({{{"vdev", "xvda"}, {"path", image}, {"mode", "w"}}})},
    };
    const std::string path = dir.file(name + ".json");
    std::ofstream(path) << cfg.dump(2);
    return path;
}

// Reads `path` until `ok(value)` holds, woken by a watch; bounded by kWait.
std::string wait_for_node(StoreClient& c, const std::string& path,
                          const std::function<bool(const std::string&)>& ok) {
    REQUIRE(c.watch(path, "wait").ok());
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    for (;;) {
        auto v = c.read(path);
        if (v && ok(v.value())) {
            (void)c.unwatch(path, "wait");
            return v.value();
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            FAIL("timed out waiting for " << path);
        (void)c.wait_for_event(left);
    }
}

pvkit_domid_t wait_for_domid(StoreClient& c, const std::string& name) {
    const std::string text =
        wait_for_node(c, "/vm/" + name + "/domid", [](const std::string& v) { return !v.empty(); });
    auto domid = pvkit::toolstack::parse_domid(text);
    REQUIRE(domid);
    return *domid;
}

bool wait_readable(int fd, std::chrono::milliseconds bound) {
    pollfd pfd{fd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&pfd, 1, static_cast<int>(bound.count()));
    } while (r < 0 && errno == EINTR);
    return r == 1;
}

void signal_fd(int fd) {
    const std::uint64_t one = 1;
    REQUIRE(::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one));
}

// Consumes the eventfd's count (after waiting for it to be non-zero).
std::uint64_t take_kicks(int fd) {
    REQUIRE(wait_readable(fd, kWait));
    std::uint64_t n = 0;
    REQUIRE(::read(fd, &n, sizeof n) == static_cast<ssize_t>(sizeof n));
    return n;
}

// The backend's end of a hand-off: a SEQPACKET socket, published in the
// backend directory as blkback does (pvkit/transport/handoff.hpp).
class FakeBackend {
public:
    explicit FakeBackend(const std::string& path) : m_path(path) {
        m_listen.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        REQUIRE(m_listen.valid());
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        REQUIRE(path.size() < sizeof addr.sun_path);
        std::memcpy(addr.sun_path, path.data(), path.size());
        // sockaddr_un is what bind() takes for AF_UNIX; the cast is the API.
        REQUIRE(::bind(m_listen.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(m_listen.get(), 4) == 0);
    }

    // handoff-socket and state InitWait, in one transaction, as domain 0.
    void publish_initwait(StoreClient& c, const std::string& dir) {
        auto r = pvkit::toolstack::in_transaction(c, [&](pvkit::store::TxId tx) {
            auto w = c.write(dir + "/handoff-socket", m_path, tx);
            if (!w)
                return w;
            return c.write(dir + "/state", "2", tx);
        });
        REQUIRE(r.ok());
    }

    struct Request {
        pid_t peer = -1;
        pvkit_domid_t domid = 0;
        std::uint32_t devid = 0;
        std::string type;
        std::vector<std::uint32_t> ports;
        std::vector<UniqueFd> fds;
    };

    // Accepts one connection and receives its request (bounded).
    Request receive() {
        REQUIRE(wait_readable(m_listen.get(), kWait));
        m_conn.reset(::accept4(m_listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(m_conn.valid());
        REQUIRE(wait_readable(m_conn.get(), kWait));
        Request req;
        req.peer = pvkit::peer_pid(m_conn.get());
        auto got = pvkit::recv_handoff(m_conn.get());
        if (!got)
            FAIL("recv_handoff: " << pvkit::to_string(got.error()));
        req.domid = got->frontend_domid;
        req.devid = got->devid;
        req.type = got->type;
        req.ports.assign(got->ports.begin(), got->ports.end());
        req.fds = std::move(got->fds);
        return req;
    }

    void reply(int status_code) { pvkit::send_handoff_reply(m_conn.get(), status_code); }

private:
    std::string m_path;
    UniqueFd m_listen;
    UniqueFd m_conn;
};

} // namespace

TEST_CASE("evtchn-test: event channels from guest user mode, bad arguments refused",
          "[vmm][guest][evtchn]") {
    ScratchDir dir;
    const std::string stats_path = dir.file("stats.json");
    auto run = pvkit::test::run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--cmdline", "run=evtchn-test",
                                     "--timeout", kTimeout, "--stats-json", stats_path});
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::Contains("evtchn-test: ") && Catch::Contains(" 0 failed"));
    const auto stats = read_json(stats_path);
    // Writes of unbound ports (2, then 1000 timed ones), a 2-byte write
    // and one at offset 8: all dropped by the VMM, the guest carried on.
    CHECK(stats.at("doorbell").at("dropped_unbound") == 1002);
    CHECK(stats.at("doorbell").at("dropped_malformed") == 2);
    const auto& e = stats.at("event_channels");
    CHECK(e.at("allocated").get<int>() >= 4);
    CHECK(e.at("allocated") == e.at("closed"));
    // 100000 kicks through KVM_IOEVENTFD: none of them reached the VMM.
    std::uint64_t doorbell_writes = 0;
    for (const auto& m : stats.at("mmio"))
        if (m.at("device") == "doorbell")
            doorbell_writes = m.at("writes");
    CHECK(doorbell_writes == 1004);
    const double per_kick_us =
        static_cast<double>(post_interval(stats, 0x10, 0x11)) / 100000 / 1000;
    const double per_exit_us = static_cast<double>(post_interval(stats, 0x11, 0x12)) / 1000 / 1000;
    std::cout << "measured: doorbell kick from guest CPL3 (KVM_IOEVENTFD, datamatch): "
              << per_kick_us << " us; write of an unbound port (exit to the VMM): " << per_exit_us
              << " us\n";
}

TEST_CASE("pool-test: the pool the host writes through its memfd is at the start-info address",
          "[vmm][guest][pool]") {
    ScratchDir dir;
    auto console = pvkit::vmm::ConsoleSink::open_file(dir.file("console"));
    pvkit::vmm::MachineConfig config;
    config.kernel = pvkit::test::read_binary_file(PVKIT_GUEST_KERNEL);
    config.ram_bytes = 32ull << 20;
    config.cmdline = "run=pool-test";
    config.domid = 9;
    config.timeout = std::chrono::seconds(60);
    config.devices = {{PVKIT_DEV_BLK, kDevid, PVKIT_DOMID_HOST}};
    config.pool_frames = 600; // not a multiple of 2 MiB: the tail is 4 KiB pages
    auto machine = pvkit::vmm::Machine::create(config, console);
    REQUIRE(machine->devices().size() == 1);
    const pvkit::GrantPool& pool = machine->devices()[0].pool;
    CHECK(pool.layout().owner == 9);
    CHECK(pool.size_bytes() == 600 * 4096);

    // The host's own mapping of the memfd, as a backend would have.
    void* host =
        ::mmap(nullptr, pool.size_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, pool.fd(), 0);
    REQUIRE(host != MAP_FAILED);
    auto* bytes = static_cast<std::uint8_t*>(host);
    const std::uint32_t first = pool.layout().data_first;
    for (std::uint32_t i = 0; i < 4096; ++i)
        bytes[first * 4096 + i] = pool_host_byte(i);

    auto outcome = machine->run();
    console.flush();
    const std::string out = pvkit::test::read_text_file(dir.file("console"));
    UNSCOPED_INFO("console:\n" << out << "\noutcome: " << outcome.message);
    CHECK(outcome.status == ExitStatus::kPoweroff);
    CHECK_THAT(out, Catch::Contains("pool-test: ") && Catch::Contains(" 0 failed"));
    std::uint32_t bad = 0;
    for (std::uint32_t i = 0; i < 4096; ++i)
        bad += bytes[(first + 1) * 4096 + i] != pool_guest_byte(i);
    CHECK(bad == 0);
    // The guest found the pool where the start info said.
    auto info = machine->memory().read<pvkit_start_info>(machine->boot().start_info_gpa);
    REQUIRE(info.ok());
    CHECK(info->devices[0].pool_gpa == machine->devices()[0].gpa);
    ::munmap(host, pool.size_bytes());
}

TEST_CASE("store-test: the guest uses the store through its ring, as its own domain",
          "[vmm][guest][store]") {
    Daemon daemon;
    ScratchDir dir;
    StoreClient c = daemon.client();
    // Registered beforehand by the toolstack; the VMM adopts it (--domid)
    // and records its pid. It does not remove a domain it did not create.
    auto cfg =
        pvkit::toolstack::load_domain_config(write_config(dir, "vmm-store-test", "store-test"));
    auto domid = pvkit::toolstack::create_domain(c, cfg, std::nullopt);
    REQUIRE(domid.ok());
    const std::string home = "/local/domain/" + std::to_string(domid.value());
    const std::string stats_path = dir.file("stats.json");
    auto vmm = VmmProcess::start({"--config", dir.file("vmm-store-test.json"), "--store-socket",
                                  daemon.socket(), "--domid", std::to_string(domid.value()),
                                  "--timeout", kTimeout, "--stats-json", stats_path});
    const pid_t pid = vmm.pid();
    auto run = vmm.wait();
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::Contains("store-test: 35 passed, 0 failed"));
    CHECK_THAT(run.out, Catch::Contains("is named 'vmm-store-test'"));
    // What the guest wrote is there, owned by the guest's domain.
    CHECK(c.read(home + "/data/greeting").value() == "hello from guest user mode");
    auto perms = c.get_perms(home + "/data/greeting");
    REQUIRE(perms.ok());
    CHECK(perms->at(0).domid == domid.value());
    CHECK(c.read(home + "/pid").value() == std::to_string(pid));
    CHECK(c.read("/local/domain/0/x").error() == pvkit::store::StoreError::kNoEnt);

    const auto stats = read_json(stats_path);
    CHECK(stats.at("store").at("connected") == true);
    CHECK(stats.at("store").at("bytes_to_daemon").get<std::uint64_t>() > 0);
    const double per_read_us = static_cast<double>(post_interval(stats, 0x20, 0x21)) / 200 / 1000;
    // The same reads from a host process, for comparison: what the relay adds.
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i)
        REQUIRE(c.read(home + "/name").ok());
    const double host_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        200;
    std::cout << "measured: store read round trip from guest user mode: " << per_read_us
              << " us (host process over the socket: " << host_us << " us)\n";
}

TEST_CASE("evtchn-test with a store and a device: the VMM's port and device checks",
          "[vmm][guest][evtchn]") {
    Daemon daemon;
    ScratchDir dir;
    auto run = pvkit::test::run_vmm({"--config", write_config(dir, "vmm-evtchn", "evtchn-test"),
                                     "--store-socket", daemon.socket(), "--timeout", kTimeout,
                                     "--destroy-timeout", "0.1"});
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::Contains("evtchn-test: ") && Catch::Contains(" 0 failed"));
    CHECK_THAT(run.out, Catch::Contains("device_connect(store port) = -1"));
    // The VMM registered the domain itself, and removed it at exit.
    StoreClient c = daemon.client();
    CHECK(c.read("/vm/vmm-evtchn/domid").error() == pvkit::store::StoreError::kNoEnt);
}

TEST_CASE("A guest that jumps its store ring index loses its store connection, not its life",
          "[vmm][guest][store]") {
    for (const char* program : {"store-hostile-index", "store-hostile-header"}) {
        DYNAMIC_SECTION(program) {
            Daemon daemon;
            ScratchDir dir;
            const std::string stats_path = dir.file("stats.json");
            auto run =
                pvkit::test::run_vmm({"--config", write_config(dir, "vmm-hostile", program),
                                      "--store-socket", daemon.socket(), "--timeout", kTimeout,
                                      "--stats-json", stats_path, "--destroy-timeout", "0.1"});
            show(run);
            // The policy: the guest keeps running and ends normally.
            CHECK(run.exit_code == status(ExitStatus::kPoweroff));
            CHECK_THAT(run.out, Catch::Contains("store-hostile: the guest is still running"));
            CHECK_THAT(run.out, Catch::Contains(" 0 failed"));
            CHECK_THAT(run.err, Catch::Contains("store ring of domain") &&
                                    Catch::Contains("disconnected: guest protocol error"));
            const auto stats = read_json(stats_path);
            CHECK(stats.at("store").at("connected") == false);
            // The daemon is unharmed and serves others.
            StoreClient c = daemon.client();
            CHECK(c.write("/after", "ok").ok());
        }
    }
}

TEST_CASE("handoff-test: the VMM hands the pool and eventfds to the backend; kicks and "
          "interrupts flow without the VMM",
          "[vmm][guest][handoff]") {
    Daemon daemon;
    ScratchDir dir;
    StoreClient c = daemon.client();
    FakeBackend backend(dir.file("handoff.sock"));
    const std::string stats_path = dir.file("stats.json");
    auto vmm = VmmProcess::start({"--config", write_config(dir, "vmm-handoff", "handoff-test"),
                                  "--store-socket", daemon.socket(), "--timeout", kTimeout,
                                  "--stats-json", stats_path, "--destroy-timeout", "0.1"});
    const pvkit_domid_t domid = wait_for_domid(c, "vmm-handoff");
    const std::string home = "/local/domain/" + std::to_string(domid);
    const std::string back_dir = pvkit::toolstack::backend_path(
        PVKIT_DOMID_HOST, domid, pvkit::toolstack::DeviceKind::kVbd, kDevid);
    backend.publish_initwait(c, back_dir);

    auto req = backend.receive();
    // The credential check a backend makes: the peer is the process the
    // store names for the domain.
    CHECK(req.peer == vmm.pid());
    CHECK(c.read(home + "/pid").value() == std::to_string(vmm.pid()));
    CHECK(req.domid == domid);
    CHECK(req.devid == kDevid);
    CHECK(req.type == "vbd");
    REQUIRE(req.ports.size() == 1);
    REQUIRE(req.fds.size() == 3);
    backend.reply(0);
    auto pool = pvkit::GrantPool::attach(std::move(req.fds[0])); // checks the seals
    REQUIRE(pool.ok());
    CHECK(pool->layout().owner == domid);
    const int kick = req.fds[1].get(); // the guest's doorbell writes of the port
    const int irq = req.fds[2].get();  // the guest's interrupt

    // Pool contents, both ways.
    const std::uint32_t first = pool->layout().data_first;
    auto* data = reinterpret_cast<std::uint8_t*>(pool->frame_ptr(first));
    for (std::uint32_t i = 0; i < 4096; ++i)
        data[i] = pool_host_byte(i);
    signal_fd(irq);
    CHECK(take_kicks(kick) == 1);
    auto* reply = reinterpret_cast<const std::uint8_t*>(pool->frame_ptr(first + 1));
    std::uint32_t bad = 0;
    for (std::uint32_t i = 0; i < 4096; ++i)
        bad += reply[i] != pool_guest_byte(i);
    CHECK(bad == 0);
    signal_fd(irq); // acknowledged: the guest goes on to its grant

    // A grant made in guest user mode, mapped with the backends' library.
    CHECK(take_kicks(kick) == 1);
    auto ref_text = c.read(home + "/device/vbd/" + std::to_string(kDevid) + "/ring-ref");
    REQUIRE(ref_text.ok());
    {
        pvkit::GrantMapper mapper(*pool, PVKIT_DOMID_HOST);
        auto mapping = mapper.map(static_cast<pvkit::GrantRef>(std::stoul(ref_text.value())),
                                  pvkit::GrantAccess::kReadWrite);
        REQUIRE(mapping.ok());
        CHECK(mapping->frame() == first + 2);
        char text[21] = {};
        REQUIRE(mapping->copy_out(0, std::as_writable_bytes(std::span(text))).ok());
        CHECK(std::string(text, 20) == "granted by the guest");
        const std::string mine = "written by the backend";
        REQUIRE(
            mapping->copy_in(1024, std::as_bytes(std::span(mine.c_str(), mine.size() + 1))).ok());
        signal_fd(irq); // still mapped: the guest's end_grant must fail
        CHECK(take_kicks(kick) == 1);
        mapping->release();
        signal_fd(irq);
        CHECK(take_kicks(kick) == 1);
        // Ended: the reference maps no more.
        auto again = mapper.map(static_cast<pvkit::GrantRef>(std::stoul(ref_text.value())),
                                pvkit::GrantAccess::kReadOnly);
        CHECK(pvkit::test::error_of(again) == pvkit::GrantError::kNotGranted);
    }

    // Round trips: irqfd -> guest handler -> user mode -> doorbell -> eventfd.
    std::vector<double> rtt_us;
    for (int i = 0; i < 1000; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        signal_fd(irq);
        REQUIRE(take_kicks(kick) == 1);
        rtt_us.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    std::sort(rtt_us.begin(), rtt_us.end());
    std::cout << "measured: irqfd -> guest handler -> user-mode kick -> host eventfd round trip: "
              << "min " << rtt_us.front() << " us, median " << rtt_us[rtt_us.size() / 2]
              << " us, max " << rtt_us.back() << " us\n";

    // The burst: every kick arrives, counted in the eventfd.
    signal_fd(irq);
    std::uint64_t kicks = 0;
    while (kicks < 100000)
        kicks += take_kicks(kick);
    CHECK(kicks == 100000);
    signal_fd(irq);

    auto run = vmm.wait();
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::Contains("handoff-test: ") && Catch::Contains(" 0 failed"));
    const auto stats = read_json(stats_path);
    CHECK(stats.at("handoff").at("accepted") == 1);
    CHECK(stats.at("event_channels").at("connected") == 1);
    const double per_kick_us =
        static_cast<double>(post_interval(stats, 0x12, 0x13)) / 100000 / 1000;
    std::cout << "measured: doorbell kick from guest CPL3 to a backend's eventfd: " << per_kick_us
              << " us\n";
}

TEST_CASE("A hand-off the backend refuses fails the guest's request with its reason",
          "[vmm][guest][handoff]") {
    Daemon daemon;
    ScratchDir dir;
    StoreClient c = daemon.client();
    FakeBackend backend(dir.file("handoff.sock"));
    auto vmm = VmmProcess::start({"--config", write_config(dir, "vmm-refused", "handoff-test"),
                                  "--store-socket", daemon.socket(), "--timeout", kTimeout,
                                  "--destroy-timeout", "0.1"});
    const pvkit_domid_t domid = wait_for_domid(c, "vmm-refused");
    backend.publish_initwait(c, pvkit::toolstack::backend_path(PVKIT_DOMID_HOST, domid,
                                                               pvkit::toolstack::DeviceKind::kVbd,
                                                               kDevid));
    auto req = backend.receive();
    backend.reply(EPERM);
    auto run = vmm.wait();
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kGuestCrash)); // the program's check failed
    CHECK_THAT(run.out, Catch::Contains("device_connect(0, port) = -1, expected 0"));
    CHECK_THAT(run.err, Catch::Contains("device connect refused: vbd 51712: EPERM"));
}

TEST_CASE("SIGTERM stops a guest whose vCPU sleeps in KVM, with the relay thread running",
          "[vmm][guest][evtchn]") {
    Daemon daemon;
    ScratchDir dir;
    StoreClient c = daemon.client();
    auto vmm =
        VmmProcess::start({"--config", write_config(dir, "vmm-idle-term", "idle"), "--store-socket",
                           daemon.socket(), "--timeout", kTimeout, "--destroy-timeout", "0.1"});
    const pvkit_domid_t domid = wait_for_domid(c, "vmm-idle-term");
    // The guest writes this right before it goes to sleep for good.
    wait_for_node(c, "/local/domain/" + std::to_string(domid) + "/data/idle",
                  [](const std::string& v) { return v == "1"; });
    REQUIRE(::kill(vmm.pid(), SIGTERM) == 0);
    auto run = vmm.wait();
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kTerminated));
    CHECK_THAT(run.err, Catch::Contains("stopped by SIGTERM"));
}

TEST_CASE("An idle guest sleeps in KVM: no exits while it waits, stopped by the timeout",
          "[vmm][guest][evtchn]") {
    Daemon daemon; // a relay thread too: signals must still reach the vCPU thread
    ScratchDir dir;
    const std::string stats_path = dir.file("stats.json");
    auto run = pvkit::test::run_vmm({"--config", write_config(dir, "vmm-idle", "idle"),
                                     "--store-socket", daemon.socket(), "--timeout", "1",
                                     "--stats-json", stats_path, "--destroy-timeout", "0.1"});
    show(run);
    CHECK(run.exit_code == status(ExitStatus::kTimeout));
    const auto stats = read_json(stats_path);
    // Boot takes a few dozen exits; a second of polling would take hundreds.
    CHECK(stats.at("exits").at("total").get<std::uint64_t>() < 100);
}
