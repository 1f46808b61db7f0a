// pvkit-blkback's daemon: store handshake, hand-off socket, data path.
//
// One thread, one epoll loop (docs/blkback.md, "Event loop"). It
// multiplexes the store connection, the hand-off listening socket and its
// clients, each connected device's eventfd, the io_uring completion
// eventfd, a signalfd and a periodic timerfd.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "pvkit/blkback/config.hpp"

namespace pvkit::blkback {

inline constexpr const char* kDefaultHandoffSocket = "/run/pvkit/blkback.sock";

struct DaemonOptions {
    std::string store_socket;                          // empty: the client's default
    std::string handoff_socket = kDefaultHandoffSocket; // published as handoff-socket
    bool direct = false;                               // open images with O_DIRECT
    int ready_fd = -1;                                 // write "READY\n" here once serving
    std::chrono::microseconds spin{50};                // poll rings this long before sleeping
    std::chrono::milliseconds close_timeout{5000};     // longest wait for a frontend to close
    std::chrono::milliseconds stats_interval{1000};    // statistics/ at most this often
    DaemonCaps caps;
    bool inline_writes = true; // buffered images: WRITE with pwritev in the loop, not io_uring
    bool inline_reads = true;  // buffered images: READ with preadv2(RWF_NOWAIT) in the loop first
    std::uint32_t submit_chunk = 0; // requests consumed per device before each submit (0: all)
    bool json_stats = false; // SIGUSR1 and exit print JSON on stdout instead of text on stderr
    unsigned sq_entries = 256;
    unsigned cq_entries = 4096; // bounds the I/O operations in flight
};

class Daemon {
public:
    // Connects to the store, binds the hand-off socket, sets up io_uring.
    // Throws std::runtime_error with one clear sentence on failure.
    explicit Daemon(DaemonOptions options);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    ~Daemon();

    // Serves until SIGTERM/SIGINT (exit status 0) or until the store
    // connection is lost (1).
    int run();

private:
    class Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pvkit::blkback
