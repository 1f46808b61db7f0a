// pvkit-stored's event loop: accepts Unix-socket clients, frames their
// bytes into requests, hands them to the Store, and writes replies and
// watch events back. One thread, Boost.Asio, nothing blocks on a client.
#pragma once

#include <boost/asio.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "pvkit/store/persistence.hpp"
#include "pvkit/store/store.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::store {

struct ServerOptions {
    // Bytes of replies and events queued for one client beyond what its
    // socket takes. A client that lets more pile up is disconnected.
    std::size_t max_output_bytes = std::size_t{1} << 20;
    // Clients at once; more are closed as soon as they are accepted.
    std::size_t max_connections = 1024;
    // Log one line per disconnected misbehaving client to stderr.
    bool log_clients = true;
};

struct ServerStats {
    std::uint64_t accepted = 0;
    std::uint64_t refused = 0;           // over max_connections
    std::uint64_t requests = 0;
    std::uint64_t oversized_frames = 0;  // len > PVKIT_STORE_PAYLOAD_MAX
    std::uint64_t overflow_disconnects = 0;
    std::uint64_t outstanding_rejects = 0;
};

class Server {
public:
    // `listen_fd` is a bound, listening Unix stream socket. `persistence`
    // may be null (memory only).
    Server(boost::asio::io_context& io, Store& store, Persistence* persistence,
           ServerOptions options, UniqueFd listen_fd);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    void start();
    // Stops accepting and closes every client.
    void stop();

    [[nodiscard]] const ServerStats& stats() const { return m_stats; }

private:
    class Session;
    friend class Session;

    void accept_next();
    void on_accept(const boost::system::error_code& ec, boost::asio::local::stream_protocol::socket sock);
    // Runs one request of `session` and routes what comes out.
    void dispatch(Session& session, const Message& request);
    // Makes the journal durable, then lets queued output go: nothing
    // reaches any client before the changes it reports are persisted.
    // Every handler that queues output schedules a flush, and writes start
    // only from a flush (or continue from a finished write while no flush
    // is pending).
    void schedule_flush();
    void flush();
    void mark_dirty(const std::shared_ptr<Session>& session);
    void forget(ConnId conn);

    boost::asio::io_context& m_io;
    Store& m_store;
    Persistence* m_persistence;
    ServerOptions m_options;
    boost::asio::local::stream_protocol::acceptor m_acceptor;
    boost::asio::steady_timer m_retry_timer;
    std::map<ConnId, std::shared_ptr<Session>> m_sessions;
    std::vector<std::shared_ptr<Session>> m_dirty;
    std::vector<Outgoing> m_out; // reused between requests
    ServerStats m_stats;
    bool m_stopped = false;
    bool m_flush_scheduled = false;
};

} // namespace pvkit::store
