#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace pvkit::test {

AlignedBuffer::AlignedBuffer(std::size_t bytes) : m_data(nullptr), m_size(bytes) {
    // aligned_alloc wants a size that is a multiple of the alignment.
    std::size_t rounded = (bytes + PVKIT_PAGE_SIZE - 1) / PVKIT_PAGE_SIZE * PVKIT_PAGE_SIZE;
    void* p = std::aligned_alloc(PVKIT_PAGE_SIZE, rounded == 0 ? PVKIT_PAGE_SIZE : rounded);
    if (p == nullptr)
        throw std::bad_alloc();
    std::memset(p, 0, rounded == 0 ? PVKIT_PAGE_SIZE : rounded);
    m_data = static_cast<std::byte*>(p);
}

AlignedBuffer::~AlignedBuffer() { std::free(m_data); }

std::size_t count_open_fds() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr)
        throw_errno("opendir /proc/self/fd");
    std::size_t n = 0;
    while (const dirent* e = ::readdir(dir)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
            ++n;
    }
    ::closedir(dir);
    return n;
}

bool has_cloexec(int fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0)
        throw_errno("fcntl F_GETFD");
    return (flags & FD_CLOEXEC) != 0;
}

bool is_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0)
        throw_errno("fcntl F_GETFL");
    return (flags & O_NONBLOCK) != 0;
}

pvkit_grant_pool_header consistent_pool_header(std::uint32_t nr_frames, std::uint32_t table_nr,
                                               std::uint32_t nr_grants, pvkit_domid_t owner) {
    pvkit_grant_pool_header hdr{};
    hdr.magic = PVKIT_GRANT_POOL_MAGIC;
    hdr.version = PVKIT_GRANT_POOL_VERSION;
    hdr.page_size = PVKIT_PAGE_SIZE;
    hdr.nr_frames = nr_frames;
    hdr.table_first = 1;
    hdr.table_nr = table_nr;
    hdr.nr_grants = nr_grants;
    hdr.data_first = 1 + table_nr;
    hdr.owner = owner;
    return hdr;
}

UniqueFd make_crafted_pool(std::size_t bytes, const pvkit_grant_pool_header& hdr, int seals) {
    UniqueFd fd(::memfd_create("pvkit-test-crafted-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid())
        throw_errno("memfd_create");
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
        throw_errno("ftruncate");
    // A pool smaller than its header still gets as much of the header as fits.
    std::size_t len = std::min(bytes, sizeof hdr);
    if (len > 0 && ::pwrite(fd.get(), &hdr, len, 0) != static_cast<ssize_t>(len))
        throw_errno("pwrite pool header");
    if (seals != 0 && ::fcntl(fd.get(), F_ADD_SEALS, seals) != 0)
        throw_errno("F_ADD_SEALS");
    return fd;
}

UniqueFd dup_fd(int fd) {
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy.valid())
        throw_errno("fcntl F_DUPFD_CLOEXEC");
    return copy;
}

ChannelPair make_channel_pair() {
    EventChannelFds fds = make_event_channel_fds();
    EventChannel back(dup_fd(fds.to_backend.get()), dup_fd(fds.to_frontend.get()));
    EventChannel front = EventChannel::frontend_end(fds);
    return ChannelPair{std::move(front), std::move(back)};
}

SocketPair make_socket_pair(int type) {
    int sv[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
        throw_errno("socketpair");
    return SocketPair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        throw_errno("setsockopt SO_RCVTIMEO");
}

ChildProcess ChildProcess::spawn(const std::string& path, const std::vector<std::string>& args,
                                 int inherit_fd) {
    // Everything the child needs is built before fork(): between fork and
    // exec only async-signal-safe calls are allowed.
    std::vector<std::string> storage;
    storage.reserve(args.size() + 1);
    storage.push_back(path);
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(storage.size() + 1);
    for (std::string& s : storage)
        argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        // A peer must not outlive a test process that crashed or was killed.
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
            ::_exit(126);
        if (inherit_fd >= 0 && ::fcntl(inherit_fd, F_SETFD, 0) != 0)
            ::_exit(126);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    // Through syscall(2): Debian 12's <sys/pidfd.h> lacks extern "C" for C++.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) {
        int err = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw std::system_error(err, std::generic_category(), "pidfd_open");
    }
    return ChildProcess(pid, std::move(pidfd));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)), m_pidfd(std::move(other.m_pidfd)) {}

ChildProcess::~ChildProcess() {
    if (m_pid > 0)
        kill_and_reap();
}

void ChildProcess::kill_and_reap() {
    ::kill(m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
    }
    m_pid = -1;
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
    if (m_pid <= 0)
        throw std::logic_error("ChildProcess::wait: no child");
    pollfd pfd{m_pidfd.get(), POLLIN, 0};
    int r;
    do {
        r = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        throw_errno("poll pidfd");
    if (r == 0) {
        kill_and_reap();
        return std::nullopt;
    }
    int status = 0;
    pid_t got;
    do {
        got = ::waitpid(m_pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    if (got != m_pid)
        throw_errno("waitpid");
    m_pid = -1;
    return status;
}

std::string describe_wait_status(int status) {
    if (WIFEXITED(status))
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "killed by signal " + std::to_string(WTERMSIG(status));
    return "wait status " + std::to_string(status);
}

CommandResult run_command(const std::string& command_line) {
    // stderr goes to an unlinked temp file so stdout can be read from the
    // pipe without either of them filling up and blocking the child.
    char err_path[] = "/tmp/pvkit-cmd-stderr-XXXXXX";
    UniqueFd err_fd(::mkstemp(err_path));
    if (!err_fd.valid())
        throw std::system_error(errno, std::generic_category(), "mkstemp");
    std::string cmd = "(" + command_line + ") 2>'" + err_path + "'";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
        ::unlink(err_path);
        throw std::system_error(errno, std::generic_category(), "popen");
    }
    CommandResult r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        r.out.append(buf, n);
    int status = ::pclose(p);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    ::unlink(err_path);
    ssize_t got;
    while ((got = ::read(err_fd.get(), buf, sizeof buf)) > 0)
        r.err.append(buf, static_cast<std::size_t>(got));
    return r;
}

} // namespace pvkit::test
