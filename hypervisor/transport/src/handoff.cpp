#include "pvkit/transport/handoff.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace pvkit {

namespace {

constexpr std::size_t kMaxQueues = 8;
constexpr std::size_t kTypeLen = 8;

// Wire form of a request; the fds travel as SCM_RIGHTS with it.
struct WireRequest {
    std::uint32_t magic;
    std::uint32_t version;
    pvkit_domid_t frontend_domid;
    std::uint16_t nr_queues;
    std::uint32_t devid;
    char type[kTypeLen];
    std::uint32_t ports[kMaxQueues];
    std::uint32_t nr_fds;
};
static_assert(std::has_unique_object_representations_v<WireRequest>);

struct WireReply {
    std::uint32_t magic;
    std::int32_t status;
};

void wait_readable(int sock, std::chrono::milliseconds timeout) {
    pollfd pfd{sock, POLLIN, 0};
    int r;
    do {
        r = ::poll(&pfd, 1,
                   static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(
                       timeout.count(), 0, std::numeric_limits<int>::max())));
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        throw_errno("poll hand-off socket");
    if (r == 0)
        throw std::system_error(ETIMEDOUT, std::generic_category(), "backend did not answer hand-off");
}

} // namespace

const char* to_string(HandoffError e) {
    switch (e) {
    case HandoffError::kMalformed:
        return "malformed hand-off request";
    case HandoffError::kFdCount:
        return "hand-off carries the wrong number of descriptors";
    case HandoffError::kSystem:
        return "hand-off socket error";
    }
    return "unknown hand-off error";
}

int send_handoff(int sock, const HandoffRequest& req, std::chrono::milliseconds timeout) {
    if (req.ports.empty() || req.ports.size() > kMaxQueues || req.type.size() >= kTypeLen ||
        req.fds.size() != 1 + 2 * req.ports.size())
        throw std::invalid_argument("send_handoff: inconsistent request");
    WireRequest w{};
    w.magic = kHandoffMagic;
    w.version = kHandoffVersion;
    w.frontend_domid = req.frontend_domid;
    w.nr_queues = static_cast<std::uint16_t>(req.ports.size());
    w.devid = req.devid;
    std::memcpy(w.type, req.type.data(), req.type.size());
    for (std::size_t i = 0; i < req.ports.size(); ++i)
        w.ports[i] = req.ports[i];
    w.nr_fds = static_cast<std::uint32_t>(req.fds.size());
    std::vector<int> raw;
    raw.reserve(req.fds.size());
    for (const UniqueFd& fd : req.fds)
        raw.push_back(fd.get());
    send_fds(sock, std::as_bytes(std::span(&w, 1)), raw);

    wait_readable(sock, timeout);
    WireReply reply{};
    ssize_t n;
    do {
        n = ::recv(sock, &reply, sizeof reply, 0);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof reply) || reply.magic != kHandoffMagic)
        throw std::system_error(EPROTO, std::generic_category(), "bad hand-off reply");
    return reply.status;
}

int handoff_device(const std::string& socket_path, const HandoffRequest& req,
                   std::chrono::milliseconds timeout) {
    sockaddr_un addr{};
    if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
        throw std::invalid_argument("hand-off socket path empty or too long: " + socket_path);
    UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!sock.valid())
        throw_errno("socket");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        throw_errno("connect " + socket_path);
    return send_handoff(sock.get(), req, timeout);
}

Result<HandoffRequest, HandoffError> recv_handoff(int sock) {
    ReceivedFds got;
    try {
        got = recv_fds(sock, sizeof(WireRequest) + 1, kHandoffMaxFds);
    } catch (const std::system_error& e) {
        // EMSGSIZE: too many descriptors (the kernel closed the extra ones)
        // or an oversized message; either way the peer's fault.
        if (e.code().value() == EMSGSIZE)
            return Unexpected{std::strstr(e.what(), "descriptors") != nullptr
                                  ? HandoffError::kFdCount
                                  : HandoffError::kMalformed};
        return Unexpected{HandoffError::kSystem};
    }
    // One copy of the peer's message; everything below checks the copy.
    WireRequest w{};
    if (got.payload.size() != sizeof w)
        return Unexpected{HandoffError::kMalformed};
    std::memcpy(&w, got.payload.data(), sizeof w);
    if (w.magic != kHandoffMagic || w.version != kHandoffVersion || w.nr_queues == 0 ||
        w.nr_queues > kMaxQueues || w.type[kTypeLen - 1] != '\0')
        return Unexpected{HandoffError::kMalformed};
    if (w.nr_fds != got.fds.size() || got.fds.size() != 1 + 2 * std::size_t{w.nr_queues})
        return Unexpected{HandoffError::kFdCount};
    HandoffRequest req;
    req.frontend_domid = w.frontend_domid;
    req.devid = w.devid;
    req.type = std::string(w.type, ::strnlen(w.type, kTypeLen));
    if (req.type != "vbd" && req.type != "vif")
        return Unexpected{HandoffError::kMalformed};
    req.ports.assign(w.ports, w.ports + w.nr_queues);
    req.fds = std::move(got.fds);
    return req;
}

void send_handoff_reply(int sock, int status) {
    WireReply reply{kHandoffMagic, status};
    // Best effort: a peer that went away just misses its answer.
    (void)::send(sock, &reply, sizeof reply, MSG_NOSIGNAL);
}

pid_t peer_pid(int sock) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -1;
    return cred.pid;
}

} // namespace pvkit
