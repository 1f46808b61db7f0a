// `pvkit console`: a real pvkit-stored, a real pvkit-vmm running the mini
// guest's `idle` program, and the pvkit CLI attaching to its console after
// the guest has printed. Every wait is bounded (kWait, the VMM's
// --timeout); nothing here checks how fast anything is.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pvkit/toolstack/domain_ops.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "store_test_support.hpp"
#include "vmm_test_support.hpp"

using pvkit::store::StoreClient;
using pvkit::store::test::Daemon;
using pvkit::store::test::kWait;
using pvkit::test::ScratchDir;
using pvkit::test::VmmProcess;
using pvkit::vmm::ExitStatus;

namespace {

// A pv-guest config without devices running `program` of the mini guest.
std::string write_config(const ScratchDir& dir, const std::string& name,
                         const std::string& program) {
    nlohmann::json cfg = {{"name", name},         {"type", "pv-guest"},
                          {"memory", 32},         {"vcpus", 1},
                          {"kernel", PVKIT_GUEST_KERNEL}, {"cmdline", "run=" + program}};
    const std::string path = dir.file(name + ".json");
    std::ofstream(path) << cfg.dump(2);
    return path;
}

// Reads `path` until it is non-empty and, if `want` is given, equal to
// it; woken by a watch, bounded by kWait.
std::string wait_for_value(StoreClient& c, const std::string& path, const std::string& want = {}) {
    REQUIRE(c.watch(path, "wait").ok());
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    for (;;) {
        auto v = c.read(path);
        if (v && !v.value().empty() && (want.empty() || v.value() == want)) {
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

// `pvkit ARGS` with stdout and stderr on one pipe the test reads.
class Cli {
public:
    explicit Cli(const std::vector<std::string>& args) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        m_out = fds[0];
        std::vector<std::string> argv_s{PVKIT_CLI};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (std::string& s : argv_s)
            argv.push_back(s.data());
        argv.push_back(nullptr);
        m_pid = ::fork();
        REQUIRE(m_pid >= 0);
        if (m_pid == 0) {
            ::dup2(fds[1], STDOUT_FILENO);
            ::dup2(fds[1], STDERR_FILENO);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
    }
    Cli(const Cli&) = delete;
    Cli& operator=(const Cli&) = delete;
    ~Cli() {
        if (m_pid > 0) {
            ::kill(m_pid, SIGKILL);
            ::waitpid(m_pid, nullptr, 0);
        }
        ::close(m_out);
    }

    // Reads until `want` is in the output (true) or end of file or kWait.
    bool read_until(const std::string& want) {
        const auto deadline = std::chrono::steady_clock::now() + kWait;
        while (output.find(want) == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return false;
            pollfd p{m_out, POLLIN, 0};
            const int r = ::poll(&p, 1, static_cast<int>(left.count()));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return false;
            std::array<char, 4096> buf{};
            const ssize_t n = ::read(m_out, buf.data(), buf.size());
            if (n <= 0)
                return false;
            output.append(buf.data(), static_cast<std::size_t>(n));
        }
        return true;
    }
    // Reads to end of file and reaps; the exit code, or -1 (bounded by kWait).
    int finish() {
        (void)read_until(std::string(1, '\0')); // never printed: reads to EOF
        int status = 0;
        pid_t r = ::waitpid(m_pid, &status, 0);
        m_pid = -1;
        if (r < 0 || !WIFEXITED(status))
            return -1;
        return WEXITSTATUS(status);
    }

    std::string output;

private:
    pid_t m_pid = -1;
    int m_out = -1;
};

} // namespace

TEST_CASE("pvkit console replays what the guest printed, then ends with the VMM",
          "[vmm][guest][console]") {
    Daemon daemon;
    ScratchDir dir;
    StoreClient c = daemon.client();
    auto vmm = VmmProcess::start({"--config", write_config(dir, "vmm-console", "idle"),
                                  "--store-socket", daemon.socket(), "--timeout", "60",
                                  "--destroy-timeout", "0.1"});
    const std::string domid = wait_for_value(c, "/vm/vmm-console/domid");
    const std::string home = "/local/domain/" + domid;
    // The guest has printed its banner and gone idle before anyone attaches.
    wait_for_value(c, home + "/data/idle", "1");
    const std::string socket = c.read(home + "/console/socket").value();
    CHECK(c.read(home + "/console/type").value() == "pvkit-vmm");
    CHECK(socket == (std::filesystem::path(daemon.socket()).parent_path() /
                     ("console-" + domid + ".sock"))
                        .string());
    CHECK((std::filesystem::status(socket).permissions() & std::filesystem::perms::all) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));

    // By name; a second client by domid.
    Cli console({"console", "vmm-console", "--store-socket", daemon.socket()});
    Cli second({"console", domid, "--store-socket", daemon.socket()});
    CHECK(console.read_until("idle: waiting for an event that never comes\n"));
    CHECK(second.read_until("idle: waiting for an event that never comes\n"));
    REQUIRE(::kill(vmm.pid(), SIGTERM) == 0);
    auto run = vmm.wait();
    UNSCOPED_INFO("pvkit-vmm stdout:\n" << run.out << "\nstderr:\n" << run.err);
    CHECK(run.exit_code == static_cast<int>(ExitStatus::kTerminated));
    const int code = console.finish();
    UNSCOPED_INFO("pvkit console:\n" << console.output);
    CHECK(code == 0);
    CHECK(second.finish() == 0);
    // The client saw the whole console, boot included: the replay, then
    // the rest, byte for byte what went to the VMM's stdout.
    CHECK(console.output == run.out);
    CHECK(second.output == run.out);
    CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(socket)));
}

TEST_CASE("pvkit console: one line for a domain that does not exist or has no console",
          "[vmm][console]") {
    Daemon daemon;
    StoreClient c = daemon.client();
    {
        Cli cli({"console", "nosuchdomain", "--store-socket", daemon.socket()});
        CHECK(cli.finish() == 1);
        CHECK(cli.output == "pvkit: no such domain: nosuchdomain\n");
    }
    // A domain registered without a VMM (as a host-process domain is).
    REQUIRE(c.write("/local/domain/7/name", "bare").ok());
    REQUIRE(c.write("/vm/bare/domid", "7").ok());
    {
        Cli cli({"console", "bare", "--store-socket", daemon.socket()});
        CHECK(cli.finish() == 1);
        CHECK(cli.output == "pvkit: domain bare has no console\n");
    }
    // A console whose VMM is gone.
    REQUIRE(c.write("/local/domain/7/console/socket", "/nonexistent/console-7.sock").ok());
    {
        Cli cli({"console", "7", "--store-socket", daemon.socket()});
        CHECK(cli.finish() == 1);
        CHECK_THAT(cli.output, Catch::StartsWith("pvkit: cannot connect to the console of "
                                                 "domain 7 at /nonexistent/console-7.sock: "));
        CHECK(std::count(cli.output.begin(), cli.output.end(), '\n') == 1);
    }
}
