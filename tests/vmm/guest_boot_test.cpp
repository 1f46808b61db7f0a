// Real KVM, real guests: pvkit-vmm boots the mini guest and each way a
// guest can end is reported with its exit status. Every run is bounded by
// the VMM's own --timeout and by run_vmm's wait; nothing here measures time.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <pvkit/hypercall.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

#include "pvkit/vmm/machine.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::read_text_file;
using pvkit::test::run_vmm;
using pvkit::test::ScratchDir;
using pvkit::vmm::ExitStatus;

namespace {

constexpr const char* kTimeout = "60"; // seconds; a boot takes milliseconds

pvkit::test::VmmRun boot(const std::string& program, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--kernel",       PVKIT_GUEST_KERNEL, "--cmdline",
                                  "run=" + program, "--timeout",        kTimeout};
    args.insert(args.end(), extra.begin(), extra.end());
    auto run = run_vmm(args);
    UNSCOPED_INFO("pvkit-vmm stdout:\n" << run.out << "\nstderr:\n" << run.err);
    return run;
}

int status(ExitStatus s) {
    return static_cast<int>(s);
}

} // namespace

TEST_CASE("hello runs in guest user mode and powers off", "[vmm][guest]") {
    ScratchDir dir;
    const std::string stats_path = dir.file("stats.json");
    auto run = boot("hello", {"--stats-json", stats_path});
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::StartsWith("pvkit-mini\n")); // the 16550's early output
    CHECK_THAT(run.out, Catch::Contains("Hello from pvkit guest user mode (CPL 3)!"));
    CHECK_THAT(run.out, Catch::Contains("program 'hello' exited with status 0"));
    CHECK_THAT(run.err, Catch::Contains("guest powered off (exit status 0: poweroff)"));

    const auto stats = nlohmann::json::parse(read_text_file(stats_path));
    CHECK(stats.at("outcome").at("reason") == "poweroff");
    CHECK(stats.at("exits").at("total").get<std::uint64_t>() > 0);
    CHECK(stats.at("console_bytes").get<std::uint64_t>() == run.out.size());
    // Boot milestones: kernel entry, then the switch to user mode.
    const auto& post = stats.at("post_codes");
    REQUIRE(post.size() == 2);
    CHECK(post[0].at("code") == 1);
    CHECK(post[1].at("code") == 2);
    CHECK(post[0].at("exits").get<std::uint64_t>() < post[1].at("exits").get<std::uint64_t>());
    bool saw_hypercall_port = false;
    for (const auto& p : stats.at("ports"))
        saw_hypercall_port |= p.at("port") == 0x99 && p.at("device") == "hypercall";
    CHECK(saw_hypercall_port);
}

TEST_CASE("--console-log sends the guest console to a file", "[vmm][guest]") {
    ScratchDir dir;
    const std::string log = dir.file("console.log");
    auto run = boot("hello", {"--console-log", log, "--quiet"});
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK(run.out.empty());
    CHECK(run.err.empty()); // --quiet and a clean poweroff: nothing to say
    CHECK_THAT(read_text_file(log), Catch::Contains("Hello from pvkit guest user mode"));
}

TEST_CASE("hypercall-test checks every hypercall with good and bad arguments", "[vmm][guest]") {
    auto run = boot("hypercall-test");
    CHECK(run.exit_code == status(ExitStatus::kPoweroff));
    CHECK_THAT(run.out, Catch::Contains(" passed, 0 failed"));
    CHECK_THAT(run.out, !Catch::Contains("FAIL"));
    CHECK_THAT(run.out, Catch::Contains("console_write(gpa + len wraps around) = -14"));
    CHECK_THAT(run.out, Catch::Contains("console_write(len max + 1) = -7"));
    CHECK_THAT(run.out, Catch::Contains("unknown hypercall 127 (last stub) = -38"));
}

TEST_CASE("A user-mode fault is reported by the guest kernel, which crashes", "[vmm][guest]") {
    auto run = boot("fault");
    CHECK(run.exit_code == status(ExitStatus::kGuestCrash));
    CHECK_THAT(run.out, Catch::Contains("#PF (vector 14, error 0x4)"));
    CHECK_THAT(run.out, Catch::Contains("in user mode"));
    CHECK_THAT(run.out, Catch::Contains("cr2 0x8"));
    CHECK_THAT(run.out, Catch::Contains("program 'fault' killed by #PF"));
    CHECK_THAT(run.err,
               Catch::Contains("guest shut down with reason crash (exit status 2: crash)"));
}

TEST_CASE("A triple fault stops the VMM with its own status", "[vmm][guest]") {
    auto run = boot("triple-fault");
    CHECK(run.exit_code == status(ExitStatus::kTripleFault));
    CHECK_THAT(run.err, Catch::Contains("guest triple fault (KVM_EXIT_SHUTDOWN) at rip 0x"));
    CHECK_THAT(run.err, Catch::Contains("(cpl 0"));
    CHECK_THAT(run.err, Catch::Contains("instruction bytes 0f 0b")); // the ud2
}

TEST_CASE("An unhandled port write is reported with port, size, value and rip", "[vmm][guest]") {
    auto run = boot("bad-port");
    CHECK(run.exit_code == status(ExitStatus::kUnhandledIo));
    CHECK_THAT(run.err,
               Catch::Contains("unhandled port write: port 0x404, size 1, value 0x78, at rip 0x"));
}

TEST_CASE("An unhandled MMIO write is reported with address, size, value and rip", "[vmm][guest]") {
    auto run = boot("bad-mmio");
    CHECK(run.exit_code == status(ExitStatus::kUnhandledIo));
    CHECK_THAT(run.err, Catch::Contains("unhandled MMIO write: address 0x40100000, size 4, "
                                        "value 0x1234abcd, at rip 0x"));
}

TEST_CASE("An instruction KVM cannot emulate is an internal error", "[vmm][guest]") {
    auto run = boot("exec-mmio");
    CHECK(run.exit_code == status(ExitStatus::kInternalError));
    CHECK_THAT(run.err, Catch::Contains("KVM internal error: suberror 1 (instruction emulation "
                                        "failed) at rip 0x40000000"));
    CHECK_THAT(run.err, Catch::Contains("instruction bytes unreadable"));
}

TEST_CASE("--timeout stops a guest that never ends", "[vmm][guest]") {
    auto run = run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--cmdline", "run=spin", "--timeout", "1"});
    CHECK(run.exit_code == status(ExitStatus::kTimeout));
    CHECK_THAT(run.err, Catch::Contains("timeout: the guest was still running after 1000 ms"));
    CHECK_THAT(run.err, Catch::Contains("(cpl 3")); // caught in user mode
}

TEST_CASE("SIGTERM stops the guest cleanly", "[vmm][guest]") {
    ScratchDir dir;
    const std::string log = dir.file("console.log");
    // The VMM's own --timeout bounds the test should the signal be lost.
    auto vmm =
        pvkit::test::VmmProcess::start({"--kernel", PVKIT_GUEST_KERNEL, "--cmdline", "run=spin",
                                        "--timeout", "60", "--console-log", log});
    // Wait until the guest spins in user mode (bounded like the timeout).
    for (int i = 0; i < 60000; ++i) {
        if (read_text_file(log).find("looping forever") != std::string::npos)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(::kill(vmm.pid(), SIGTERM) == 0);
    auto run = vmm.wait();
    CHECK(run.exit_code == status(ExitStatus::kTerminated));
    CHECK_THAT(run.err, Catch::Contains("stopped by SIGTERM"));
}

TEST_CASE("An unknown program name crashes the guest with a list of programs", "[vmm][guest]") {
    auto run = boot("no-such-program");
    CHECK(run.exit_code == status(ExitStatus::kGuestCrash));
    CHECK_THAT(run.out, Catch::Contains("unknown program 'no-such-program'; programs: hello"));
}

TEST_CASE("A malformed kernel is refused before the guest starts", "[vmm][guest]") {
    ScratchDir dir;
    auto kernel = pvkit::test::read_binary_file(PVKIT_GUEST_KERNEL);
    SECTION("truncated header") {
        kernel.resize(40);
        pvkit::test::write_binary_file(dir.file("k"), kernel);
        auto run = run_vmm({"--kernel", dir.file("k")});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("truncated ELF header"));
    }
    SECTION("not an ELF file") {
        pvkit::test::write_binary_file(dir.file("k"), std::vector<std::byte>(4096, std::byte{'#'}));
        auto run = run_vmm({"--kernel", dir.file("k")});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("bad ELF magic"));
    }
    SECTION("truncated segments") {
        kernel.resize(kernel.size() / 4);
        pvkit::test::write_binary_file(dir.file("k"), kernel);
        auto run = run_vmm({"--kernel", dir.file("k")});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("extend past the end"));
    }
}

TEST_CASE("Bad command lines and devices are start-up errors", "[vmm][guest]") {
    SECTION("RAM below the minimum") {
        auto run = run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--memory", "3"});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
    }
    SECTION("kernel command line too long") {
        auto run = run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--cmdline", std::string(1024, 'x')});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("command line longer than 1023 bytes"));
    }
    SECTION("a device that is not KVM") {
        auto run = run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--kvm", "/dev/null"});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("/dev/null is not a KVM device"));
    }
    SECTION("a missing device") {
        auto run = run_vmm({"--kernel", PVKIT_GUEST_KERNEL, "--kvm", "/nonexistent/kvm"});
        CHECK(run.exit_code == status(ExitStatus::kStartupError));
        CHECK_THAT(run.err, Catch::Contains("cannot open /nonexistent/kvm"));
    }
}

TEST_CASE("The VMM library runs a guest in-process", "[vmm][guest]") {
    ScratchDir dir;
    auto console = pvkit::vmm::ConsoleSink::open_file(dir.file("console"));
    pvkit::vmm::MachineConfig config;
    config.kernel = pvkit::test::read_binary_file(PVKIT_GUEST_KERNEL);
    config.ram_bytes = 16ull << 20;
    config.cmdline = "run=hello";
    config.domid = 3;
    config.timeout = std::chrono::seconds(60);
    auto machine = pvkit::vmm::Machine::create(config, console);
    const auto outcome = machine->run();
    CHECK(outcome.status == ExitStatus::kPoweroff);
    CHECK(machine->stats().total_exits() > 0);
    CHECK(machine->stats().hypercalls().count(PVKIT_HC_CONSOLE_WRITE) == 1);
    console.flush();
    const std::string text = read_text_file(dir.file("console"));
    CHECK_THAT(text, Catch::Contains("hello: domain 3, 16 MiB of RAM"));
    CHECK_THAT(text, Catch::Contains("Hello from pvkit guest user mode"));
}

TEST_CASE("Machine::create refuses a malformed kernel with the loader's reason", "[vmm][guest]") {
    ScratchDir dir;
    auto console = pvkit::vmm::ConsoleSink::open_file(dir.file("console"));
    pvkit::vmm::MachineConfig config;
    config.kernel = pvkit::test::ElfBuilder(0x1000, 16, 0).build(); // inside the VMM's pages
    config.kernel_name = "crafted";
    try {
        (void)pvkit::vmm::Machine::create(config, console);
        FAIL("a kernel over the reserved pages was accepted");
    } catch (const pvkit::vmm::StartupError& e) {
        CHECK_THAT(e.what(), Catch::Contains("crafted: segment overlaps the VMM's reserved pages"));
    }
}

namespace {

// Records every access it gets.
class RecordingDevice final : public pvkit::vmm::IoHandler {
public:
    void access(const pvkit::vmm::IoRequest& request,
                pvkit::vmm::ExitContext& /*context*/) override {
        std::uint64_t value = 0;
        std::memcpy(&value, request.data.data(), std::min<std::size_t>(request.data.size(), 8));
        accesses.push_back({request.address, request.offset, request.size, request.write, value});
    }
    struct Access {
        std::uint64_t address, offset;
        std::uint32_t size;
        bool write;
        std::uint64_t value;
    };
    std::vector<Access> accesses;
};

} // namespace

TEST_CASE("Devices registered with the exit dispatcher receive the guest's accesses",
          "[vmm][guest]") {
    ScratchDir dir;
    auto console = pvkit::vmm::ConsoleSink::open_file(dir.file("console"));
    pvkit::vmm::MachineConfig config;
    config.kernel = pvkit::test::read_binary_file(PVKIT_GUEST_KERNEL);
    config.cmdline = "run=bad-mmio"; // writes 0x1234abcd 1 MiB into the device window
    config.timeout = std::chrono::seconds(60);
    auto machine = pvkit::vmm::Machine::create(config, console);
    const std::uint64_t window = machine->boot().device_window + 0x100000;
    RecordingDevice device;
    REQUIRE(machine->add_mmio_device(window, 4096, "recorder", device).ok());
    // RAM, taken ports and port ranges past 0xffff are refused.
    RecordingDevice other;
    CHECK(pvkit::test::error_of(machine->add_mmio_device(0x100000, 4096, "in-ram", other)) ==
          pvkit::vmm::BusError::kOverlap);
    // The doorbell page is taken.
    CHECK(pvkit::test::error_of(machine->add_mmio_device(machine->boot().doorbell_gpa, 4, "bell",
                                                         other)) == pvkit::vmm::BusError::kOverlap);
    CHECK(pvkit::test::error_of(machine->add_mmio_device(window + 4095, 2, "overlap", other)) ==
          pvkit::vmm::BusError::kOverlap);
    CHECK(pvkit::test::error_of(machine->add_port_device(0x99, 1, "hypercall-2", other)) ==
          pvkit::vmm::BusError::kOverlap);
    CHECK(pvkit::test::error_of(machine->add_port_device(0xfff0, 0x20, "wrap", other)) ==
          pvkit::vmm::BusError::kOverflow);

    const auto outcome = machine->run();
    // The device took the write, so the guest went on and reported that
    // nobody stopped it.
    CHECK(outcome.status == ExitStatus::kGuestCrash);
    REQUIRE(device.accesses.size() == 1);
    CHECK(device.accesses[0].address == window);
    CHECK(device.accesses[0].offset == 0);
    CHECK(device.accesses[0].size == 4);
    CHECK(device.accesses[0].write);
    CHECK(device.accesses[0].value == 0x1234abcd);
    CHECK(other.accesses.empty());
    CHECK(machine->stats().mmio().at(window).device == "recorder");
    console.flush();
    CHECK_THAT(read_text_file(dir.file("console")),
               Catch::Contains("'bad-mmio' returned; the VMM did not stop the guest"));
}
