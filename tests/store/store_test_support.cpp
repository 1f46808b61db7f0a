#include "store_test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace pvkit::store::test {

namespace fs = std::filesystem;

std::string stored_binary() { return PVKIT_STORED_PATH; }

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/pvkit-store-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr)
        pvkit::throw_errno("mkdtemp");
    m_path = templ;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
}

Daemon::Daemon(std::vector<std::string> extra) : m_extra(std::move(extra)) { start(); }

Daemon::~Daemon() {
    if (m_child) {
        ::kill(m_child->pid(), SIGKILL);
        (void)m_child->wait(kWait);
    }
}

std::string Daemon::socket() const {
    for (std::size_t i = 0; i + 1 < m_extra.size(); ++i) {
        if (m_extra[i] == "--socket")
            return m_extra[i + 1];
    }
    return (m_dir.path() / "stored.sock").string();
}

void Daemon::start() {
    if (m_child)
        throw std::logic_error("Daemon::start: already running");
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        pvkit::throw_errno("pipe2");
    UniqueFd rd(fds[0]);
    UniqueFd wr(fds[1]);
    std::vector<std::string> args = {"--foreground", "--data-dir", data_dir().string(), "--ready-fd",
                                     std::to_string(wr.get())};
    bool has_fsync = false;
    bool has_socket = false;
    for (const std::string& e : m_extra) {
        has_fsync = has_fsync || e.rfind("--fsync", 0) == 0;
        has_socket = has_socket || e.rfind("--socket", 0) == 0;
    }
    if (!has_socket) {
        args.push_back("--socket");
        args.push_back(socket());
    }
    if (!has_fsync) {
        // Spelled out (it is the default) so that the tests keep checking
        // kill -9 safety without fsync even if the default changes; the one
        // test of --fsync=always asks for it.
        args.push_back("--fsync");
        args.push_back("never");
    }
    args.insert(args.end(), m_extra.begin(), m_extra.end());
    m_child.emplace(pvkit::test::ChildProcess::spawn(stored_binary(), args, wr.get()));
    wr.reset();

    std::string got;
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (got.find('\n') == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw std::runtime_error("pvkit-stored did not become ready in time");
        pollfd pfd{rd.get(), POLLIN, 0};
        int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            pvkit::throw_errno("poll");
        if (r == 0)
            continue;
        char buf[64];
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            std::optional<int> status = m_child->wait(kWait);
            m_child.reset();
            throw std::runtime_error("pvkit-stored exited before it was ready: " +
                                     (status ? pvkit::test::describe_wait_status(*status) : "hung"));
        }
        got.append(buf, static_cast<std::size_t>(n));
    }
    if (got != "READY\n")
        throw std::runtime_error("pvkit-stored wrote '" + got + "' on its ready descriptor");
}

int Daemon::stop() {
    if (!m_child)
        throw std::logic_error("Daemon::stop: not running");
    ::kill(m_child->pid(), SIGTERM);
    std::optional<int> status = m_child->wait(kWait);
    m_child.reset();
    if (!status)
        throw std::runtime_error("pvkit-stored did not stop on SIGTERM");
    return *status;
}

void Daemon::kill9() {
    if (!m_child)
        throw std::logic_error("Daemon::kill9: not running");
    ::kill(m_child->pid(), SIGKILL);
    (void)m_child->wait(kWait);
    m_child.reset();
}

bool Daemon::alive() {
    if (!m_child)
        return false;
    siginfo_t info{};
    // WNOWAIT leaves the child to be reaped by ChildProcess.
    if (::waitid(P_PID, static_cast<id_t>(m_child->pid()), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return false;
    return info.si_pid == 0;
}

StoreClient Daemon::client() const {
    std::string detail;
    StoreResult<StoreClient> c = StoreClient::connect(socket(), kWait, &detail);
    if (!c)
        throw std::runtime_error("cannot connect to pvkit-stored: " + detail);
    c->set_reply_timeout(kWait);
    return std::move(c).value();
}

RawConnection::RawConnection(const std::string& socket_path) {
    m_fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!m_fd.valid())
        pvkit::throw_errno("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
    if (::connect(m_fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        pvkit::throw_errno("connect " + socket_path);
    pvkit::test::set_receive_timeout(m_fd.get(), kWait);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(kWait.count() / 1000);
    if (::setsockopt(m_fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        pvkit::throw_errno("setsockopt SO_SNDTIMEO");
}

bool RawConnection::send(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(m_fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                return false;
            if (errno == EAGAIN)
                throw std::runtime_error("RawConnection::send: timed out");
            pvkit::throw_errno("send");
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::optional<Message> RawConnection::receive() {
    std::array<char, 8192> buf;
    for (;;) {
        auto next = m_decoder.next();
        if (!next)
            throw std::runtime_error("RawConnection::receive: daemon sent an oversized message");
        if (*next)
            return std::move(**next);
        ssize_t n = ::recv(m_fd.get(), buf.data(), buf.size(), 0);
        if (n == 0)
            return std::nullopt;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET)
                return std::nullopt;
            if (errno == EAGAIN)
                throw std::runtime_error("RawConnection::receive: timed out");
            pvkit::throw_errno("recv");
        }
        m_decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    }
}

bool RawConnection::wait_for_close() {
    std::array<char, 65536> buf;
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
        ssize_t n = ::recv(m_fd.get(), buf.data(), buf.size(), 0);
        if (n == 0)
            return true;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET)
                return true;
            if (errno == EAGAIN)
                return false;
            pvkit::throw_errno("recv");
        }
    }
    return false;
}

} // namespace pvkit::store::test
