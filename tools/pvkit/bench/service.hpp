// Daemons a benchmark starts for itself (pvkit-stored, etcd) and the
// scratch directory they live in. Both clean up in their destructors, so a
// benchmark that fails half-way leaves no process and no directory behind.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace pvkit::bench {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
public:
    explicit TempDir(const std::string& prefix);
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();

    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }

private:
    std::filesystem::path m_path;
};

// A daemon started with fork() and execv(), its stdout and stderr going to
// a log file (kept out of the benchmark's own output, shown when it fails).
//
// The destructor stops it: SIGTERM, a bounded wait, then SIGKILL. The child
// also gets SIGKILL if the thread that started it dies first
// (PR_SET_PDEATHSIG), so start services from the main thread, before any
// worker thread exists (fork is only safe then anyway).
class Service {
public:
    // Starts `binary` with `args` (argv[1...]). `inherit_fd`, if not -1,
    // stays open in the daemon under the same number; every other
    // close-on-exec descriptor is closed by exec.
    Service(std::string name, const std::string& binary, const std::vector<std::string>& args,
            const std::filesystem::path& log, int inherit_fd = -1);
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;
    ~Service();

    [[nodiscard]] const std::string& name() const { return m_name; }
    [[nodiscard]] pid_t pid() const { return m_pid; }

    // Whether the daemon has exited (reaps it if so).
    [[nodiscard]] bool exited();
    // SIGTERM, wait up to `grace`, then SIGKILL and reap. Idempotent.
    void stop(std::chrono::milliseconds grace);
    // The last `max_bytes` of the log, for error messages ("" if empty).
    [[nodiscard]] std::string log_tail(std::size_t max_bytes = 600) const;
    // The exit status once it exited normally; -1 while running or if a
    // signal killed it.
    [[nodiscard]] int exit_status() const;
    // "exited with status 1", "killed by signal 9", "running".
    [[nodiscard]] std::string describe_status() const;

private:
    std::string m_name;
    std::filesystem::path m_log;
    pid_t m_pid = -1;
    int m_status = 0;
    bool m_reaped = false;
};

// Starts a pvkit daemon (pvkit-stored, pvkit-blkback) with `--ready-fd N`
// appended to `args` and waits for the READY line it writes once it
// serves. Throws with the daemon's log tail if it exits first, and if it
// is not ready within `timeout` or the benchmark is interrupted.
[[nodiscard]] std::unique_ptr<Service> start_ready(std::string name, const std::string& binary,
                                                   std::vector<std::string> args,
                                                   const std::filesystem::path& log,
                                                   std::chrono::milliseconds timeout);

// ---- Finding programs -------------------------------------------------------

[[nodiscard]] bool is_executable(const std::filesystem::path& p);

// One of pvkit's own programs: `given` (from `option`) if not empty, else
// `name` next to the running pvkit or in one of `beside` (directories
// relative to it), else each of `build_paths` (where the build put it).
// Throws naming `option` if none is executable.
[[nodiscard]] std::string find_pvkit_program(const std::string& given, const std::string& name,
                                             const std::string& option,
                                             const std::vector<std::string>& beside,
                                             const std::vector<std::string>& build_paths);

// A system program: `given` if not empty, else `name` in $PATH, /usr/bin,
// /usr/sbin. Throws naming the Debian package to install.
[[nodiscard]] std::string find_system_tool(const std::string& given, const std::string& name,
                                           const std::string& option, const std::string& package);

// ---- Interrupts -------------------------------------------------------------

// While one exists, SIGINT and SIGTERM only set a flag: the running
// measurement finishes, then the benchmark's error path stops its children
// and removes its files (interrupted() / throw_if_interrupted()). The old
// handlers come back on destruction. One at a time.
class InterruptGuard {
public:
    InterruptGuard();
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;
    ~InterruptGuard();

private:
    struct sigaction m_old_int {};
    struct sigaction m_old_term {};
};

[[nodiscard]] bool interrupted();
// Throws "<suite>: interrupted" if a signal came.
void throw_if_interrupted(const std::string& suite);

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked
// it). `count` distinct ports at once.
[[nodiscard]] std::vector<std::uint16_t> free_loopback_ports(std::size_t count);

} // namespace pvkit::bench
