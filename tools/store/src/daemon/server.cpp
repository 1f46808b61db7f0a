#include "server.hpp"

#include <array>
#include <deque>
#include <exception>
#include <iostream>
#include <string>

namespace pvkit::store {

namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;

namespace {

// Upper bounds for one gathered write: enough to fill a socket buffer in
// one system call, small enough to keep the buffer list cheap.
constexpr std::size_t kMaxWriteChunks = 64;
constexpr std::size_t kMaxWriteBytes = std::size_t{256} << 10;

} // namespace

// One client connection.
class Server::Session : public std::enable_shared_from_this<Server::Session> {
public:
    Session(Server& server, stream_protocol::socket socket, ConnId conn)
        : m_server(server), m_socket(std::move(socket)), m_conn(conn) {}

    [[nodiscard]] ConnId conn() const { return m_conn; }
    [[nodiscard]] bool closed() const { return m_closed; }
    [[nodiscard]] std::size_t outstanding() const { return m_outstanding; }

    void start_read() {
        if (m_closed || m_close_after_flush)
            return;
        m_socket.async_read_some(asio::buffer(m_rbuf),
                                 [self = shared_from_this()](const boost::system::error_code& ec,
                                                             std::size_t n) { self->on_read(ec, n); });
    }

    // Queues one message. A client whose queue grows past the bound is
    // cut off: it is not reading, and nobody else may pay for that.
    void enqueue(const Message& msg, bool is_reply) {
        if (m_closed)
            return;
        std::string bytes = encode(msg);
        if (m_out_bytes + bytes.size() > m_server.m_options.max_output_bytes) {
            ++m_server.m_stats.overflow_disconnects;
            close("output queue over " + std::to_string(m_server.m_options.max_output_bytes) +
                  " bytes (client not reading)");
            return;
        }
        m_out_bytes += bytes.size();
        if (is_reply)
            ++m_outstanding;
        m_out.push_back(Chunk{std::move(bytes), is_reply});
        if (!m_marked_dirty) {
            m_marked_dirty = true;
            m_server.mark_dirty(shared_from_this());
        }
    }

    // Called by Server::flush once the journal is durable.
    void start_write() {
        m_marked_dirty = false;
        if (m_writing || m_closed || m_out.empty())
            return;
        m_wbufs.clear();
        std::size_t bytes = 0;
        m_in_flight = 0;
        for (const Chunk& c : m_out) {
            if (m_in_flight == kMaxWriteChunks || bytes >= kMaxWriteBytes)
                break;
            m_wbufs.push_back(asio::buffer(c.bytes));
            bytes += c.bytes.size();
            ++m_in_flight;
        }
        m_writing = true;
        asio::async_write(m_socket, m_wbufs,
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                     std::size_t) { self->on_write(ec); });
    }

    // `why` is logged for a client cut off for misbehaving; empty for an
    // ordinary end of connection.
    void close(const std::string& why) {
        if (m_closed)
            return;
        m_closed = true;
        // forget() drops the server's reference; the caller may still be
        // running inside this session.
        std::shared_ptr<Session> keep = shared_from_this();
        if (!why.empty() && m_server.m_options.log_clients)
            std::cerr << "pvkit-stored: client " << m_conn << " (domain "
                      << m_server.m_store.domid_of(m_conn) << "): " << why << ", disconnected\n";
        m_server.m_store.disconnect(m_conn);
        m_server.forget(m_conn);
        boost::system::error_code ignored;
        m_socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
        m_socket.close(ignored);
        // m_out stays until the session dies: an aborted write may still
        // name its buffers until its handler has run.
    }

private:
    struct Chunk {
        std::string bytes;
        bool is_reply;
    };

    void on_read(const boost::system::error_code& ec, std::size_t n) {
        if (m_closed)
            return;
        if (ec) {
            // End of stream or a reset; a partial message is simply dropped.
            close("");
            return;
        }
        m_decoder.feed(std::string_view(m_rbuf.data(), n));
        for (;;) {
            Result<std::optional<Message>, FrameError> next = m_decoder.next();
            if (!next) {
                // The stream cannot be resynchronised after a bad length:
                // answer the request, then hang up.
                ++m_server.m_stats.oversized_frames;
                const pvkit_store_msg_header& h = m_decoder.failed_header();
                enqueue(make_error(h.req_id, h.tx_id, StoreError::kInval), true);
                m_close_after_flush = true;
                if (m_server.m_options.log_clients)
                    std::cerr << "pvkit-stored: client " << m_conn << ": message length " << h.len
                              << " over " << kPayloadMax << ", closing\n";
                break;
            }
            if (!*next)
                break;
            m_server.dispatch(*this, **next);
            if (m_closed)
                break;
        }
        m_server.schedule_flush();
        if (m_closed)
            return;
        if (m_close_after_flush) {
            if (m_out.empty() && !m_writing)
                close("");
            return;
        }
        start_read();
    }

    void on_write(const boost::system::error_code& ec) {
        m_writing = false;
        if (m_closed)
            return;
        if (ec) {
            close("");
            return;
        }
        for (std::size_t i = 0; i < m_in_flight; ++i) {
            m_out_bytes -= m_out.front().bytes.size();
            if (m_out.front().is_reply)
                --m_outstanding;
            m_out.pop_front();
        }
        m_in_flight = 0;
        if (m_out.empty() && m_close_after_flush) {
            close("");
            return;
        }
        // Output queued since the last flush waits for the next one, which
        // is already scheduled and will start this session's writes.
        if (m_server.m_flush_scheduled) {
            if (!m_marked_dirty && !m_out.empty()) {
                m_marked_dirty = true;
                m_server.mark_dirty(shared_from_this());
            }
            return;
        }
        start_write();
    }

    Server& m_server;
    stream_protocol::socket m_socket;
    ConnId m_conn;
    FrameDecoder m_decoder;
    std::array<char, 65536> m_rbuf{};
    std::deque<Chunk> m_out; // a deque keeps queued strings in place while written
    std::vector<asio::const_buffer> m_wbufs;
    std::size_t m_in_flight = 0;
    std::size_t m_out_bytes = 0;
    std::size_t m_outstanding = 0;
    bool m_writing = false;
    bool m_closed = false;
    bool m_close_after_flush = false;
    bool m_marked_dirty = false;
};

Server::Server(asio::io_context& io, Store& store, Persistence* persistence, ServerOptions options,
               UniqueFd listen_fd)
    : m_io(io), m_store(store), m_persistence(persistence), m_options(options), m_acceptor(io),
      m_retry_timer(io) {
    m_acceptor.assign(stream_protocol(), listen_fd.release());
}

Server::~Server() { stop(); }

void Server::start() { accept_next(); }

void Server::stop() {
    if (m_stopped)
        return;
    m_stopped = true;
    boost::system::error_code ignored;
    m_acceptor.close(ignored);
    m_retry_timer.cancel();
    // close() removes the session from the map, so walk a copy.
    std::map<ConnId, std::shared_ptr<Session>> sessions = m_sessions;
    for (auto& [id, s] : sessions)
        s->close("");
    m_dirty.clear();
}

void Server::accept_next() {
    if (m_stopped)
        return;
    m_acceptor.async_accept([this](const boost::system::error_code& ec, stream_protocol::socket sock) {
        on_accept(ec, std::move(sock));
    });
}

void Server::on_accept(const boost::system::error_code& ec, stream_protocol::socket sock) {
    if (m_stopped || ec == asio::error::operation_aborted)
        return;
    if (ec) {
        // Out of descriptors or memory: retrying at once would spin.
        std::cerr << "pvkit-stored: accept: " << ec.message() << "\n";
        m_retry_timer.expires_after(std::chrono::milliseconds(100));
        m_retry_timer.async_wait([this](const boost::system::error_code& tec) {
            if (!tec)
                accept_next();
        });
        return;
    }
    if (m_sessions.size() >= m_options.max_connections) {
        ++m_stats.refused;
        boost::system::error_code ignored;
        sock.close(ignored);
        accept_next();
        return;
    }
    ++m_stats.accepted;
    ConnId id = m_store.connect();
    auto session = std::make_shared<Session>(*this, std::move(sock), id);
    m_sessions.emplace(id, session);
    session->start_read();
    accept_next();
}

void Server::dispatch(Session& session, const Message& request) {
    ++m_stats.requests;
    if (!m_store.is_privileged(session.conn()) &&
        session.outstanding() >= m_store.limits().quota_outstanding) {
        ++m_stats.outstanding_rejects;
        session.enqueue(make_error(request, StoreError::kQuota), true);
        return;
    }
    m_out.clear();
    m_store.handle(session.conn(), request, m_out);
    for (const Outgoing& o : m_out) {
        auto it = m_sessions.find(o.conn);
        if (it != m_sessions.end())
            it->second->enqueue(o.msg, o.is_reply);
    }
    m_out.clear();
}

void Server::schedule_flush() {
    if (m_flush_scheduled)
        return;
    m_flush_scheduled = true;
    // Runs after the handlers that are already ready (other clients'
    // requests that arrived together), so one fdatasync covers them all.
    asio::post(m_io, [this] {
        m_flush_scheduled = false;
        flush();
    });
}

void Server::flush() {
    if (m_persistence != nullptr) {
        // A failed sync is fatal and propagates (see Persistence::sync).
        m_persistence->sync();
        try {
            m_persistence->maybe_compact(m_store);
        } catch (const std::exception& e) {
            // The log still holds everything; compaction is retried later.
            std::cerr << "pvkit-stored: compaction failed: " << e.what() << "\n";
        }
    }
    std::vector<std::shared_ptr<Session>> dirty;
    dirty.swap(m_dirty);
    for (const std::shared_ptr<Session>& s : dirty)
        s->start_write();
}

void Server::mark_dirty(const std::shared_ptr<Session>& session) { m_dirty.push_back(session); }

void Server::forget(ConnId conn) { m_sessions.erase(conn); }

} // namespace pvkit::store
