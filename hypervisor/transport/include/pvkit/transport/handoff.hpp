// Device hand-off: how a backend daemon receives a device's grant pool and
// event-channel eventfds from the process that owns them (the guest's VMM,
// or a host-process frontend).
//
// The backend listens on a Unix SOCK_SEQPACKET socket whose path it
// publishes as `handoff-socket` in the device's backend directory (written
// by domain 0 only, so a frontend cannot redirect it). The owner connects
// and sends one HandoffRequest with the fds; the backend answers with one
// HandoffReply. The backend accepts a hand-off only if the store says the
// device (type, frontend domid, devid) is one it serves, and only from a
// peer whose credentials (SO_PEERCRED) the store vouches for: pid equal to
// /local/domain/<domid>/pid, written by the toolstack. See
// docs/handshake.md.
#pragma once

#include <pvkit/abi.h>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit {

inline constexpr std::uint32_t kHandoffMagic = 0x46484b50; // "PKHF"
inline constexpr std::uint32_t kHandoffVersion = 1;
// A device hands over its pool plus one eventfd per direction and queue;
// eight queues at most.
inline constexpr std::size_t kHandoffMaxFds = 1 + 2 * 8;
static_assert(kHandoffMaxFds <= kMaxPassedFds, "a hand-off must fit one message");

// The order of fds in a hand-off: pool first, then for each queue the
// eventfd the backend waits on and the one it notifies.
struct HandoffRequest {
    pvkit_domid_t frontend_domid = 0;
    std::uint32_t devid = 0;
    std::string type; // "vbd" or "vif"
    // Event-channel ports as published in the store, one per queue: the
    // backend checks them against the frontend's event-channel node.
    std::vector<pvkit_evtchn_port_t> ports;
    std::vector<UniqueFd> fds;
};

enum class HandoffError {
    kMalformed,   // size, magic, version, type or counts wrong
    kFdCount,     // fds do not match the number of queues
    kSystem,      // socket error or peer closed
};
const char* to_string(HandoffError e);

// The owner's side: sends `req` on a connected socket and waits for the
// backend's reply status (0 or a positive errno). Throws std::system_error
// on socket errors (a start-up path).
int send_handoff(int sock, const HandoffRequest& req, std::chrono::milliseconds timeout);

// Connects to a backend's hand-off socket, sends, returns the reply status.
int handoff_device(const std::string& socket_path, const HandoffRequest& req,
                   std::chrono::milliseconds timeout);

// The backend's side: receives one request from a connected socket. Every
// field is checked; fds arrive owned, so no error path leaks them.
Result<HandoffRequest, HandoffError> recv_handoff(int sock);
void send_handoff_reply(int sock, int status);

// The peer's pid as the kernel reports it (SO_PEERCRED), or -1.
pid_t peer_pid(int sock);

} // namespace pvkit
