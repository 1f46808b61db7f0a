#include "service.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
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

std::string Service::describe_status() const {
    if (!m_reaped)
        return "running";
    if (WIFEXITED(m_status))
        return "exited with status " + std::to_string(WEXITSTATUS(m_status));
    if (WIFSIGNALED(m_status))
        return "killed by signal " + std::to_string(WTERMSIG(m_status));
    return "stopped (status " + std::to_string(m_status) + ")";
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
