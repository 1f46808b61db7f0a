// The hypercall dispatcher, driven with plain numbers: every argument a
// guest could pass, good and bad.
#include <catch2/catch.hpp>

#include <pvkit/hypercall.h>

#include <string>

#include "pvkit/vmm/boot.hpp"
#include "pvkit/vmm/exit_stats.hpp"
#include "pvkit/vmm/hypercall.hpp"
#include "pvkit/vmm/serial.hpp"
#include "vmm_test_support.hpp"

using pvkit::vmm::ConsoleSink;
using pvkit::vmm::ExitStatus;
using pvkit::vmm::GuestMemory;
using pvkit::vmm::HypercallDispatcher;
using pvkit::vmm::HypercallResult;

namespace {

constexpr std::uint64_t kRam = 1 << 20;
constexpr std::uint64_t kStartInfo = 0x3000;
constexpr std::uint64_t kBlockHelper = 0x4000 + pvkit::vmm::kBlockHelperOffset;

class FakeScheduler final : public pvkit::vmm::SchedulerHooks {
public:
    void yield() override { ++yields; }
    int yields = 0;
};

struct Fixture {
    pvkit::test::ScratchDir dir;
    std::string console_path = dir.file("console");
    ConsoleSink console = ConsoleSink::open_file(console_path);
    GuestMemory memory = GuestMemory::create(kRam);
    FakeScheduler scheduler;
    HypercallDispatcher dispatcher{memory, console, scheduler, {PVKIT_FEAT_CONSOLE_HC, kStartInfo}};

    HypercallResult call(std::uint64_t nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0) {
        return dispatcher.dispatch(nr, {a0, a1, 0, 0, 0});
    }
    std::string console_text() {
        console.flush();
        return pvkit::test::read_text_file(console_path);
    }
};

void put_text(GuestMemory& memory, std::uint64_t gpa, const std::string& text) {
    REQUIRE(memory.write_bytes(gpa, std::as_bytes(std::span(text.data(), text.size()))).ok());
}

} // namespace

TEST_CASE("VERSION, FEATURES and START_INFO answer from the VMM", "[vmm][hypercall]") {
    Fixture f;
    CHECK(f.call(PVKIT_HC_VERSION).value == PVKIT_ABI_VERSION);
    CHECK(f.call(PVKIT_HC_FEATURES).value == static_cast<std::int64_t>(PVKIT_FEAT_CONSOLE_HC));
    CHECK(f.call(PVKIT_HC_START_INFO).value == static_cast<std::int64_t>(kStartInfo));
}

TEST_CASE("FEATURES never has bit 63 set", "[vmm][hypercall]") {
    Fixture f;
    HypercallDispatcher d(f.memory, f.console, f.scheduler, {~0ull, kStartInfo});
    CHECK(d.dispatch(PVKIT_HC_FEATURES, {}).value > 0);
}

TEST_CASE("CONSOLE_WRITE copies guest bytes to the console", "[vmm][hypercall]") {
    Fixture f;
    put_text(f.memory, 0x5000, "hello, console\n");
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0x5000, 15).value == 15);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0x5000, 0).value == 0);
    CHECK(f.console_text() == "hello, console\n");
}

TEST_CASE("CONSOLE_WRITE takes exactly PVKIT_CONSOLE_WRITE_MAX bytes, not one more",
          "[vmm][hypercall]") {
    Fixture f;
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0x5000, PVKIT_CONSOLE_WRITE_MAX).value ==
          PVKIT_CONSOLE_WRITE_MAX);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0x5000, PVKIT_CONSOLE_WRITE_MAX + 1).value ==
          -PVKIT_E2BIG);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0x5000, ~0ull).value == -PVKIT_E2BIG);
}

TEST_CASE("CONSOLE_WRITE checks the length before the address", "[vmm][hypercall]") {
    Fixture f;
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 1ull << 50, 1ull << 20).value == -PVKIT_E2BIG);
}

TEST_CASE("CONSOLE_WRITE rejects ranges outside guest RAM", "[vmm][hypercall]") {
    Fixture f;
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, kRam, 1).value == -PVKIT_EFAULT);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, kRam - 8, 16).value == -PVKIT_EFAULT);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, 0xfffffffffffffff0ull, 32).value == -PVKIT_EFAULT);
    CHECK(f.call(PVKIT_HC_CONSOLE_WRITE, ~0ull, 1).value == -PVKIT_EFAULT);
    CHECK(f.console_text().empty()); // nothing of a failed call reaches the console
}

TEST_CASE("CONSOLE_WRITE is ENOSYS when the feature is not offered", "[vmm][hypercall]") {
    Fixture f;
    HypercallDispatcher d(f.memory, f.console, f.scheduler, {0, kStartInfo});
    CHECK(d.dispatch(PVKIT_HC_CONSOLE_WRITE, {0x5000, 1, 0, 0, 0}).value == -PVKIT_ENOSYS);
}

TEST_CASE("SCHED_OP yields through the run loop and asks the port to block", "[vmm][hypercall]") {
    Fixture f;
    CHECK(f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_YIELD).value == 0);
    CHECK(f.scheduler.yields == 1);
    auto block = f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_BLOCK);
    CHECK(block.value == 0);
    CHECK(block.block);
    CHECK_FALSE(f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_YIELD).block);
    CHECK(f.call(PVKIT_HC_SCHED_OP, 99).value == -PVKIT_EINVAL);
}

TEST_CASE("SCHED_OP SHUTDOWN maps each reason to an exit status", "[vmm][hypercall]") {
    Fixture f;
    auto poweroff = f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, PVKIT_SHUTDOWN_POWEROFF);
    REQUIRE(poweroff.stop);
    CHECK(poweroff.stop->status == ExitStatus::kPoweroff);
    CHECK(static_cast<int>(poweroff.stop->status) == 0);
    auto crash = f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, PVKIT_SHUTDOWN_CRASH);
    REQUIRE(crash.stop);
    CHECK(crash.stop->status == ExitStatus::kGuestCrash);
    CHECK(static_cast<int>(crash.stop->status) != 0);
    auto reboot = f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, PVKIT_SHUTDOWN_REBOOT);
    REQUIRE(reboot.stop);
    CHECK(reboot.stop->status == ExitStatus::kGuestReboot);
}

TEST_CASE("SCHED_OP SHUTDOWN refuses reserved and unknown reasons", "[vmm][hypercall]") {
    Fixture f;
    for (std::uint64_t reason : {2ull, 4ull, 77ull, ~0ull}) {
        auto r = f.call(PVKIT_HC_SCHED_OP, PVKIT_SCHEDOP_SHUTDOWN, reason);
        CHECK(r.value == -PVKIT_EINVAL);
        CHECK_FALSE(r.stop);
    }
}

TEST_CASE("Unknown hypercalls and absent PV facilities return ENOSYS", "[vmm][hypercall]") {
    Fixture f; // no event channels, pools, store or connector behind it
    for (std::uint64_t nr :
         {std::uint64_t{PVKIT_HC_EVTCHN_OP}, std::uint64_t{PVKIT_HC_GRANT_POOL_QUERY},
          std::uint64_t{PVKIT_HC_STORE_RING_INFO}, std::uint64_t{PVKIT_HC_DEVICE_CONNECT},
          std::uint64_t{9}, std::uint64_t{127}, std::uint64_t{1} << 63, ~std::uint64_t{0}}) {
        INFO("nr " << nr);
        CHECK(f.call(nr, 0x5000, 1).value == -PVKIT_ENOSYS);
    }
}

namespace {

// An ExitContext over a register file in memory.
class FakeExit final : public pvkit::vmm::ExitContext {
public:
    pvkit::Result<kvm_regs, pvkit::vmm::KvmError> regs() override {
        if (fail)
            return pvkit::Unexpected{pvkit::vmm::KvmError{"KVM_GET_REGS", EIO}};
        return r;
    }
    pvkit::Result<void, pvkit::vmm::KvmError> set_regs(const kvm_regs& regs) override {
        r = regs;
        ++sets;
        return {};
    }
    void request_stop(pvkit::vmm::RunOutcome outcome) override { stop = outcome; }

    kvm_regs r{};
    bool fail = false;
    int sets = 0;
    std::optional<pvkit::vmm::RunOutcome> stop;
};

pvkit::vmm::IoRequest port_write(std::span<std::byte> data) {
    return {pvkit::vmm::IoSpace::kPort, PVKIT_HYPERCALL_PORT, 0, 1, true, data};
}

} // namespace

TEST_CASE("The hypercall port takes the number from RAX and answers in RAX", "[vmm][hypercall]") {
    Fixture f;
    pvkit::vmm::ExitStats stats;
    pvkit::vmm::HypercallPort port(f.dispatcher, stats, kBlockHelper);
    FakeExit exit;
    exit.r.rax = PVKIT_HC_CONSOLE_WRITE;
    exit.r.rdi = kRam; // bad address
    exit.r.rsi = 4;
    std::byte al{0x55}; // not the number: only RAX counts
    port.access(port_write(std::span(&al, 1)), exit);
    CHECK(exit.sets == 1);
    CHECK(static_cast<std::int64_t>(exit.r.rax) == -PVKIT_EFAULT);
    CHECK(exit.r.rdi == kRam); // other registers unchanged
    CHECK(stats.hypercalls().at(PVKIT_HC_CONSOLE_WRITE).calls == 1);
    CHECK(stats.hypercalls().at(PVKIT_HC_CONSOLE_WRITE).errors == 1);
}

TEST_CASE("The hypercall port stops the guest on SHUTDOWN and on register errors",
          "[vmm][hypercall]") {
    Fixture f;
    pvkit::vmm::ExitStats stats;
    pvkit::vmm::HypercallPort port(f.dispatcher, stats, kBlockHelper);
    std::byte al{};
    FakeExit off;
    off.r.rax = PVKIT_HC_SCHED_OP;
    off.r.rdi = PVKIT_SCHEDOP_SHUTDOWN;
    off.r.rsi = PVKIT_SHUTDOWN_POWEROFF;
    port.access(port_write(std::span(&al, 1)), off);
    REQUIRE(off.stop);
    CHECK(off.stop->status == ExitStatus::kPoweroff);

    FakeExit broken;
    broken.fail = true;
    port.access(port_write(std::span(&al, 1)), broken);
    REQUIRE(broken.stop);
    CHECK(broken.stop->status == ExitStatus::kVmmError);
    CHECK_THAT(broken.stop->message, Catch::Contains("KVM_GET_REGS"));
}

TEST_CASE("BLOCK with interrupts off resumes in the block helper; with them on it returns",
          "[vmm][hypercall]") {
    Fixture f;
    pvkit::vmm::ExitStats stats;
    pvkit::vmm::HypercallPort port(f.dispatcher, stats, kBlockHelper);
    std::byte al{};
    FakeExit off;
    off.r.rax = PVKIT_HC_SCHED_OP;
    off.r.rdi = PVKIT_SCHEDOP_BLOCK;
    off.r.rip = 0x4067; // the stub's ret
    off.r.rflags = 0x2;
    port.access(port_write(std::span(&al, 1)), off);
    CHECK(off.r.rip == kBlockHelper);
    CHECK(off.r.rax == 0);
    CHECK_FALSE(off.stop);

    FakeExit on;
    on.r.rax = PVKIT_HC_SCHED_OP;
    on.r.rdi = PVKIT_SCHEDOP_BLOCK;
    on.r.rip = 0x4067;
    on.r.rflags = 0x202; // IF: a sleep could miss its wakeup
    port.access(port_write(std::span(&al, 1)), on);
    CHECK(on.r.rip == 0x4067);
    CHECK(on.r.rax == 0);
}

TEST_CASE("The hypercall port reads as 0xff and makes no call", "[vmm][hypercall]") {
    Fixture f;
    pvkit::vmm::ExitStats stats;
    pvkit::vmm::HypercallPort port(f.dispatcher, stats, kBlockHelper);
    FakeExit exit;
    std::byte value{0};
    port.access(
        {pvkit::vmm::IoSpace::kPort, PVKIT_HYPERCALL_PORT, 0, 1, false, std::span(&value, 1)},
        exit);
    CHECK(value == std::byte{0xff});
    CHECK(exit.sets == 0);
    CHECK(stats.hypercalls().empty());
}

TEST_CASE("The 16550 prints THR writes and reports an empty transmitter", "[vmm][serial]") {
    Fixture f;
    pvkit::vmm::Serial16550 uart(f.console);
    FakeExit exit;
    auto io = [&](std::uint64_t offset, bool write, std::uint8_t value) {
        std::byte b{value};
        uart.access({pvkit::vmm::IoSpace::kPort, pvkit::vmm::kCom1Base + offset, offset, 1, write,
                     std::span(&b, 1)},
                    exit);
        return std::to_integer<std::uint8_t>(b);
    };
    CHECK((io(5, false, 0) & 0x60) == 0x60); // LSR: THR empty, transmitter empty
    io(0, true, 'o');
    io(0, true, 'k');
    io(0, true, '\n');
    // With DLAB set, offset 0 is the divisor latch, not THR.
    io(3, true, 0x80);
    io(0, true, 'X');
    CHECK(io(0, false, 0) == 'X');
    io(3, true, 0x03);
    CHECK(io(3, false, 0) == 0x03);
    io(7, true, 0x5a);
    CHECK(io(7, false, 0) == 0x5a); // scratch
    CHECK(f.console_text() == "ok\n");
}
