#include "pvkit/vmm/console_server.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "pvkit/vmm/helper_thread.hpp"

namespace pvkit::vmm {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what) {
    throw std::runtime_error("console socket " + path + ": " + what + ": " + std::strerror(errno));
}

} // namespace

ConsoleServer::ConsoleServer(std::string path) : m_path(std::move(path)), m_ring(kHistoryBytes) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (m_path.empty() || m_path.size() >= sizeof addr.sun_path)
        throw std::runtime_error("console socket path '" + m_path + "' is empty or too long");
    std::memcpy(addr.sun_path, m_path.c_str(), m_path.size() + 1);
    // A socket left by a VMM that died: the domid is ours now.
    struct stat st {};
    if (::lstat(m_path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("console socket " + m_path +
                                     ": exists and is not a socket");
        if (::unlink(m_path.c_str()) != 0)
            fail(m_path, "cannot remove the stale socket");
    }
    m_listen.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!m_listen.valid())
        fail(m_path, "socket");
    if (::bind(m_listen.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        fail(m_path, "bind");
    if (::chmod(m_path.c_str(), 0600) != 0 || ::listen(m_listen.get(), 16) != 0) {
        const int e = errno;
        ::unlink(m_path.c_str());
        errno = e;
        fail(m_path, "chmod/listen");
    }
    m_wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!m_wake.valid()) {
        ::unlink(m_path.c_str());
        fail(m_path, "eventfd");
    }
    try {
        m_thread = start_helper_thread([this] { run(); });
    } catch (...) {
        ::unlink(m_path.c_str());
        throw;
    }
}

ConsoleServer::~ConsoleServer() {
    stop();
}

void ConsoleServer::stop() {
    if (!m_thread.joinable())
        return;
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    const std::uint64_t one = 1;
    (void)!::write(m_wake.get(), &one, sizeof one);
    m_thread.join();
    ::unlink(m_path.c_str());
}

void ConsoleServer::publish(std::span<const std::byte> bytes) {
    if (bytes.empty())
        return;
    {
        std::lock_guard lock(m_mutex);
        // The ring keeps the last kHistoryBytes.
        const auto keep = bytes.size() > kHistoryBytes ? bytes.subspan(bytes.size() - kHistoryBytes)
                                                       : bytes;
        m_total += bytes.size() - keep.size();
        for (std::byte b : keep)
            m_ring[static_cast<std::size_t>(m_total++ % kHistoryBytes)] = b;
        for (Client& c : m_clients) {
            if (c.overflow)
                continue;
            if (c.pending.size() + bytes.size() > kClientBacklog)
                c.overflow = true;
            else
                c.pending.insert(c.pending.end(), bytes.begin(), bytes.end());
        }
        if (m_clients.empty())
            return;
    }
    const std::uint64_t one = 1;
    (void)!::write(m_wake.get(), &one, sizeof one);
}

void ConsoleServer::history_into(std::vector<std::byte>& out) const {
    const std::uint64_t n = std::min<std::uint64_t>(m_total, kHistoryBytes);
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = m_total - n; i < m_total; ++i)
        out.push_back(m_ring[static_cast<std::size_t>(i % kHistoryBytes)]);
}

bool ConsoleServer::send_pending(Client& client) {
    if (client.overflow)
        return false;
    std::size_t sent = 0;
    while (sent < client.pending.size()) {
        const ssize_t n = ::send(client.fd.get(), client.pending.data() + sent,
                                 client.pending.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return false;
        sent += static_cast<std::size_t>(n);
    }
    client.pending.erase(client.pending.begin(),
                         client.pending.begin() + static_cast<std::ptrdiff_t>(sent));
    return true;
}

void ConsoleServer::run() {
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        fds.push_back({m_wake.get(), POLLIN, 0});
        fds.push_back({m_listen.get(), POLLIN, 0});
        {
            std::lock_guard lock(m_mutex);
            for (const Client& c : m_clients)
                fds.push_back({c.fd.get(),
                               static_cast<short>(POLLIN | (c.pending.empty() ? 0 : POLLOUT)), 0});
        }
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR)
                continue;
            return; // cannot happen with valid descriptors; clients just stop
        }
        if (fds[0].revents & POLLIN) {
            std::uint64_t count = 0;
            (void)!::read(m_wake.get(), &count, sizeof count);
        }
        std::lock_guard lock(m_mutex);
        if (m_stopping) {
            // Whatever each client can take now; then they see end of file.
            for (Client& c : m_clients)
                if (c.overflow)
                    ++m_dropped;
                else
                    (void)send_pending(c);
            m_clients.clear();
            return;
        }
        // Only this thread adds or removes clients: fds[2 + i] is client i.
        std::vector<bool> gone(m_clients.size(), false);
        for (std::size_t i = 0; i < m_clients.size(); ++i) {
            Client& c = m_clients[i];
            const short rev = fds[2 + i].revents;
            if (rev & POLLIN) {
                std::array<std::byte, 512> discard{};
                const ssize_t n = ::recv(c.fd.get(), discard.data(), discard.size(), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    gone[i] = true;
            }
            if (rev & (POLLERR | POLLNVAL))
                gone[i] = true;
            if (!gone[i] && c.overflow) {
                ++m_dropped;
                gone[i] = true;
            }
            if (!gone[i] && !send_pending(c))
                gone[i] = true;
        }
        std::size_t keep = 0;
        for (std::size_t i = 0; i < m_clients.size(); ++i)
            if (!gone[i])
                m_clients[keep++] = std::move(m_clients[i]);
        m_clients.resize(keep);
        if (fds[1].revents & POLLIN) {
            for (;;) {
                UniqueFd fd(::accept4(m_listen.get(), nullptr, nullptr,
                                      SOCK_CLOEXEC | SOCK_NONBLOCK));
                if (!fd.valid())
                    break; // EAGAIN: no more; anything else: try on the next wakeup
                Client c;
                c.fd = std::move(fd);
                history_into(c.pending);
                ++m_accepted;
                if (send_pending(c))
                    m_clients.push_back(std::move(c));
            }
        }
    }
}

} // namespace pvkit::vmm
