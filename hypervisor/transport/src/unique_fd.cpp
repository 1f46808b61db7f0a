#include "pvkit/transport/unique_fd.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace pvkit {

void UniqueFd::reset(int fd) {
    if (m_fd >= 0)
        ::close(m_fd);
    m_fd = fd;
}

void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

void send_fds(int sock, std::span<const std::byte> payload, std::span<const int> fds) {
    if (payload.empty())
        throw std::invalid_argument("send_fds: payload must not be empty");
    if (fds.size() > kMaxPassedFds)
        throw std::invalid_argument("send_fds: too many descriptors");
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
    iovec iov{const_cast<std::byte*>(payload.data()), payload.size()}; // sendmsg does not write
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do {
        n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        throw_errno("sendmsg");
    if (static_cast<std::size_t>(n) != payload.size())
        throw std::system_error(EMSGSIZE, std::generic_category(), "sendmsg: short write");
}

ReceivedFds recv_fds(int sock, std::size_t max_payload, std::size_t max_fds) {
    if (max_fds > kMaxPassedFds)
        throw std::invalid_argument("recv_fds: too many descriptors");
    ReceivedFds out;
    out.payload.resize(max_payload);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
    iovec iov{out.payload.data(), out.payload.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    // CMSG_LEN, not CMSG_SPACE: the padding CMSG_SPACE adds would let the
    // kernel deliver one descriptor more than asked for an odd max_fds.
    msg.msg_controllen = max_fds == 0 ? 0 : CMSG_LEN(sizeof(int) * max_fds);
    if (max_fds == 0)
        msg.msg_control = nullptr;
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        throw_errno("recvmsg");
    // Take ownership of every descriptor that arrived before checking
    // anything else, so that no error path leaks one.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            out.fds.emplace_back(fd);
        }
    }
    if (n == 0)
        throw std::system_error(ECONNRESET, std::generic_category(), "recvmsg: peer closed");
    if ((msg.msg_flags & MSG_CTRUNC) != 0 || out.fds.size() > max_fds)
        throw std::system_error(EMSGSIZE, std::generic_category(), "recvmsg: too many descriptors");
    if ((msg.msg_flags & MSG_TRUNC) != 0)
        throw std::system_error(EMSGSIZE, std::generic_category(), "recvmsg: message too long");
    out.payload.resize(static_cast<std::size_t>(n));
    return out;
}

} // namespace pvkit
