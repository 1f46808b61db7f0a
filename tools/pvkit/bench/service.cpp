#include "service.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::bench {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                        prefix + "-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr)
        throw_errno("mkdtemp " + templ);
    m_path = templ;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
}

Service::Service(std::string name, const std::string& binary, const std::vector<std::string>& args,
                 const fs::path& log, int inherit_fd)
    : m_name(std::move(name)), m_log(log) {
    // Everything the child needs is prepared before fork(): between fork
    // and exec only async-signal-safe calls are allowed.
    std::vector<std::string> argv_storage;
    argv_storage.push_back(binary);
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!log_fd.valid())
        throw_errno("open " + log.string());
    UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_fd.valid())
        throw_errno("open /dev/null");
    // exec closes the write end of this pipe; if exec fails, the child
    // writes its errno there instead, so a bad path is one clear error.
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("pipe2");
    UniqueFd exec_rd(fds[0]);
    UniqueFd exec_wr(fds[1]);

    pid_t parent = ::getpid();
    m_pid = ::fork();
    if (m_pid < 0)
        throw_errno("fork");
    if (m_pid == 0) {
        // Die with the parent: a benchmark killed by Ctrl-C must not leave
        // daemons running. The getppid() check covers a parent that died
        // before prctl().
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
            ::_exit(127);
        // dup2 clears FD_CLOEXEC on the copies.
        if (::dup2(null_fd.get(), 0) < 0 || ::dup2(log_fd.get(), 1) < 0 ||
            ::dup2(log_fd.get(), 2) < 0)
            ::_exit(127);
        if (inherit_fd >= 0 && ::fcntl(inherit_fd, F_SETFD, 0) != 0)
            ::_exit(127);
        ::execv(argv[0], argv.data());
        int err = errno;
        // Best effort: the parent reports a generic failure if this is lost.
        (void)!::write(exec_wr.get(), &err, sizeof err);
        ::_exit(127);
    }
    exec_wr.reset();
    int err = 0;
    ssize_t n;
    do {
        n = ::read(exec_rd.get(), &err, sizeof err);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        ::waitpid(m_pid, &m_status, 0);
        m_reaped = true;
        throw std::runtime_error("cannot run " + binary + ": " + std::strerror(err));
    }
}

Service::~Service() { stop(std::chrono::seconds(5)); }

bool Service::exited() {
    if (m_reaped)
        return true;
    pid_t r = ::waitpid(m_pid, &m_status, WNOHANG);
    if (r == m_pid)
        m_reaped = true;
    return m_reaped;
}

void Service::stop(std::chrono::milliseconds grace) {
    if (m_pid <= 0 || exited())
        return;
    ::kill(m_pid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        if (exited())
            return;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(m_pid, SIGKILL);
    while (::waitpid(m_pid, &m_status, 0) < 0 && errno == EINTR) {
    }
    m_reaped = true;
}

std::string Service::log_tail(std::size_t max_bytes) const {
    std::ifstream in(m_log, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.size() > max_bytes)
        text = "..." + text.substr(text.size() - max_bytes);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    return text;
}

int Service::exit_status() const {
    return m_reaped && WIFEXITED(m_status) ? WEXITSTATUS(m_status) : -1;
}

std::string Service::describe_status() const {
    if (!m_reaped)
        return "running";
    if (WIFEXITED(m_status))
        return "exited with status " + std::to_string(WEXITSTATUS(m_status));
    if (WIFSIGNALED(m_status))
        return "killed by signal " + std::to_string(WTERMSIG(m_status));
    return "stopped (status " + std::to_string(m_status) + ")";
}

std::unique_ptr<Service> start_ready(std::string name, const std::string& binary,
                                     std::vector<std::string> args, const fs::path& log,
                                     std::chrono::milliseconds timeout) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("pipe2");
    UniqueFd ready_rd(fds[0]);
    UniqueFd ready_wr(fds[1]);
    args.push_back("--ready-fd");
    args.push_back(std::to_string(ready_wr.get()));
    auto svc = std::make_unique<Service>(std::move(name), binary, args, log, ready_wr.get());
    ready_wr.reset();
    // READY\n once it serves; end of file before that means it died.
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (got.find('\n') == std::string::npos) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw std::runtime_error(svc->name() + " did not become ready within " +
                                     std::to_string(timeout.count()) + " ms: " + svc->log_tail());
        if (interrupted())
            throw std::runtime_error(svc->name() + ": start-up interrupted");
        pollfd pfd{ready_rd.get(), POLLIN, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(std::min<long>(left.count(), 100)));
        if (r < 0 && errno != EINTR)
            throw_errno("poll");
        if (r <= 0)
            continue;
        char buf[64];
        const ssize_t n = ::read(ready_rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            svc->stop(std::chrono::seconds(1));
            throw std::runtime_error(svc->name() + " " + svc->describe_status() +
                                     " during start-up: " + svc->log_tail());
        }
        got.append(buf, static_cast<std::size_t>(n));
    }
    if (got != "READY\n")
        throw std::runtime_error(svc->name() + " wrote '" + got + "' on its ready descriptor");
    return svc;
}

bool is_executable(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

std::string find_pvkit_program(const std::string& given, const std::string& name,
                               const std::string& option, const std::vector<std::string>& beside,
                               const std::vector<std::string>& build_paths) {
    if (!given.empty()) {
        if (!is_executable(given))
            throw std::runtime_error(option + " " + given + ": not an executable file");
        return given;
    }
    std::vector<fs::path> candidates;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        candidates.push_back(self.parent_path() / name);
        for (const std::string& dir : beside)
            candidates.push_back((self.parent_path() / dir / name).lexically_normal());
    }
    for (const std::string& p : build_paths)
        candidates.emplace_back(p);
    std::string tried;
    for (const fs::path& p : candidates) {
        if (is_executable(p))
            return p.string();
        tried += (tried.empty() ? "" : ", ") + p.string();
    }
    throw std::runtime_error("cannot find " + name + " (looked at " + tried + "); build the " +
                             name + " target or pass " + option + " PATH");
}

std::string find_system_tool(const std::string& given, const std::string& name,
                             const std::string& option, const std::string& package) {
    if (!given.empty()) {
        if (!is_executable(given))
            throw std::runtime_error(option + " " + given +
                                     ": not an executable file (Debian: `apt-get install " +
                                     package + "`)");
        return given;
    }
    std::vector<fs::path> dirs;
    if (const char* path = std::getenv("PATH"); path != nullptr) {
        std::stringstream in(path);
        std::string dir;
        while (std::getline(in, dir, ':'))
            if (!dir.empty())
                dirs.emplace_back(dir);
    }
    dirs.emplace_back("/usr/bin");
    dirs.emplace_back("/usr/sbin");
    for (const fs::path& d : dirs)
        if (is_executable(d / name))
            return (d / name).string();
    throw std::runtime_error(name + " not found in PATH: install it with `apt-get install " +
                             package + "` (tools/install-deps.sh) or pass " + option + " PATH");
}

namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_bench_interrupt(int) { g_interrupted.store(true, std::memory_order_relaxed); }

} // namespace

InterruptGuard::InterruptGuard() {
    g_interrupted.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_bench_interrupt;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &m_old_int);
    ::sigaction(SIGTERM, &sa, &m_old_term);
}

InterruptGuard::~InterruptGuard() {
    ::sigaction(SIGINT, &m_old_int, nullptr);
    ::sigaction(SIGTERM, &m_old_term, nullptr);
}

bool interrupted() { return g_interrupted.load(std::memory_order_relaxed); }

void throw_if_interrupted(const std::string& suite) {
    if (interrupted())
        throw std::runtime_error(suite + ": interrupted");
}

std::vector<std::uint16_t> free_loopback_ports(std::size_t count) {
    // All sockets stay bound until every port is known, so the ports differ.
    std::vector<UniqueFd> held;
    std::vector<std::uint16_t> ports;
    for (std::size_t i = 0; i < count; ++i) {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd.valid())
            throw_errno("socket");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        // sockaddr_in is what bind()/getsockname() take for AF_INET; the casts are the API.
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw_errno("bind 127.0.0.1:0");
        ports.push_back(ntohs(addr.sin_port));
        held.push_back(std::move(fd));
    }
    return ports;
}

} // namespace pvkit::bench
