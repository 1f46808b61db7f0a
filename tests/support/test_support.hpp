// Helpers shared by the test binaries and by the peer executables they
// start. Nothing here uses Catch2 macros, so a peer process (which has no
// Catch2 runner) can link it too; helpers report failure by throwing.
#pragma once

#include <pvkit/grant.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::test {

// A zero-filled, page-aligned heap buffer: rings and pages in
// single-process tests live here, aligned like a real shared page.
class AlignedBuffer {
public:
    explicit AlignedBuffer(std::size_t bytes);
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    ~AlignedBuffer();

    [[nodiscard]] std::span<std::byte> span() const { return {m_data, m_size}; }
    [[nodiscard]] std::byte* data() const { return m_data; }
    [[nodiscard]] std::size_t size() const { return m_size; }

private:
    std::byte* m_data;
    std::size_t m_size;
};

// Number of descriptors open in this process (entries of /proc/self/fd).
// Leak checks compare two counts taken the same way, so the directory
// descriptor used to count is in both.
std::size_t count_open_fds();

// Whether `fd` has FD_CLOEXEC / O_NONBLOCK set.
bool has_cloexec(int fd);
bool is_nonblocking(int fd);

// A header that is consistent with a pool of `nr_frames` frames whose grant
// table takes `table_nr` frames, as GrantPool::create would write it.
// Tests for hostile pools start from this and break one field.
pvkit_grant_pool_header consistent_pool_header(std::uint32_t nr_frames, std::uint32_t table_nr,
                                               std::uint32_t nr_grants, pvkit_domid_t owner);

// A memfd of `bytes` bytes with `hdr` written at offset 0, then sealed with
// `seals` (0: left unsealed). This is how a hostile pool creator would hand
// out a pool: the header says whatever it likes.
UniqueFd make_crafted_pool(std::size_t bytes, const pvkit_grant_pool_header& hdr, int seals);

// A close-on-exec duplicate of `fd`.
UniqueFd dup_fd(int fd);

// Both ends of one event channel in this process. The backend end gets
// duplicates of the eventfds, as it would after receiving them over a
// socket; EventChannel::frontend_end takes the originals.
struct ChannelPair {
    EventChannel front;
    EventChannel back;
};
ChannelPair make_channel_pair();

// Both ends of a Unix socket pair, close-on-exec.
struct SocketPair {
    UniqueFd first;
    UniqueFd second;
};
SocketPair make_socket_pair(int type);

// Makes every blocking receive on `fd` give up after `timeout`, so that a
// peer that died or misbehaves turns into an error instead of a hang.
void set_receive_timeout(int fd, std::chrono::milliseconds timeout);

// A child process started with fork() and execv(). The destructor kills
// (SIGKILL, by pid) and reaps a child that is still running, so a failing
// test never leaves a process behind.
class ChildProcess {
public:
    // Starts `path` with `args` (argv[1...]). `inherit_fd` stays open in the
    // child under the same number; every other close-on-exec descriptor is
    // closed by exec. The child gets SIGKILL if this process dies first.
    static ChildProcess spawn(const std::string& path, const std::vector<std::string>& args,
                              int inherit_fd);

    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess& operator=(ChildProcess&&) = delete;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess();

    [[nodiscard]] pid_t pid() const { return m_pid; }

    // Waits (poll on a pidfd, no sleeping loop) up to `timeout` for the
    // child to exit and reaps it. Returns its wait status, or nullopt if it
    // was still running, in which case it is killed and reaped.
    std::optional<int> wait(std::chrono::milliseconds timeout);

private:
    ChildProcess(pid_t pid, UniqueFd pidfd) : m_pid(pid), m_pidfd(std::move(pidfd)) {}
    void kill_and_reap();

    pid_t m_pid = -1;
    UniqueFd m_pidfd;
};

// "exited with status 3", "killed by signal 9": for failure messages.
std::string describe_wait_status(int status);

// A command line run through /bin/sh, as a user would type it.
struct CommandResult {
    int status = -1; // exit status, or -1 if it did not exit normally
    std::string out;
    std::string err;
};
// Runs `command_line` (the caller quotes arguments), capturing stdout and
// stderr separately. Throws if the shell cannot be started.
CommandResult run_command(const std::string& command_line);

// Bytes of a trivially copyable object, for send_fds payloads.
template <class T>
std::span<const std::byte> bytes_of(const T& value) {
    return std::as_bytes(std::span(&value, 1));
}

} // namespace pvkit::test
