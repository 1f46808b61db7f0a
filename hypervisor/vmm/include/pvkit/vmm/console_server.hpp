// The guest console on a Unix stream socket, for `pvkit console` (like
// xenconsoled's pty). The VMM keeps the last kHistoryBytes of console
// output; every client that connects gets that history first, then
// everything new. Clients never stall the guest: publish() only copies
// bytes into memory; a thread of its own accepts clients and sends with
// non-blocking writes, and a client that falls more than kClientBacklog
// bytes behind is disconnected (counted in dropped()). Bytes a client
// sends are read and discarded: the guest has no console input.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::vmm {

class ConsoleServer {
public:
    static constexpr std::size_t kHistoryBytes = 64 * 1024;
    static constexpr std::size_t kClientBacklog = 256 * 1024;

    // Binds `path` (mode 0600; a stale socket there is removed first) and
    // starts the serving thread. Throws std::runtime_error naming the path.
    explicit ConsoleServer(std::string path);
    ConsoleServer(const ConsoleServer&) = delete;
    ConsoleServer& operator=(const ConsoleServer&) = delete;
    ~ConsoleServer();

    // Console output, from any thread. Never blocks on a client.
    void publish(std::span<const std::byte> bytes);
    // Sends what each client can take without blocking, closes them, joins
    // the thread and removes the socket. Also done by the destructor.
    void stop();

    [[nodiscard]] const std::string& path() const { return m_path; }
    [[nodiscard]] std::uint64_t accepted() const { return m_accepted.load(); }
    [[nodiscard]] std::uint64_t dropped() const { return m_dropped.load(); }

private:
    struct Client {
        UniqueFd fd;
        std::vector<std::byte> pending;
        bool overflow = false;
    };

    void run();
    void history_into(std::vector<std::byte>& out) const;
    // False if the client is gone (error, or more than it could take).
    static bool send_pending(Client& client);

    std::string m_path;
    UniqueFd m_listen;
    UniqueFd m_wake;
    std::mutex m_mutex; // guards everything below it
    std::vector<std::byte> m_ring;
    std::uint64_t m_total = 0; // bytes ever published
    std::vector<Client> m_clients;
    bool m_stopping = false;
    std::atomic<std::uint64_t> m_accepted{0};
    std::atomic<std::uint64_t> m_dropped{0};
    std::thread m_thread;
};

} // namespace pvkit::vmm
