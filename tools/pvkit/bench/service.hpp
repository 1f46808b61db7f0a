// Daemons a benchmark starts for itself (pvkit-stored, etcd) and the
// scratch directory they live in. Both clean up in their destructors, so a
// benchmark that fails half-way leaves no process and no directory behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
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
    // "exited with status 1", "killed by signal 9", "running".
    [[nodiscard]] std::string describe_status() const;

private:
    std::string m_name;
    std::filesystem::path m_log;
    pid_t m_pid = -1;
    int m_status = 0;
    bool m_reaped = false;
};

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked
// it). `count` distinct ports at once.
[[nodiscard]] std::vector<std::uint16_t> free_loopback_ports(std::size_t count);

} // namespace pvkit::bench
