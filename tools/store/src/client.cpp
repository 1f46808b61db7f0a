#include "pvkit/store/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::store {

namespace {

int ms_until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
        return 0;
    // Round up so that a wait never ends just before its deadline and spins.
    return static_cast<int>(std::min<long long>(left.count() + 1, 1 << 30));
}

// Waits for `events` on `fd` until `deadline`; false on timeout.
StoreResult<bool> wait_fd(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        pollfd pfd{fd, events, 0};
        int r = ::poll(&pfd, 1, ms_until(deadline));
        if (r > 0)
            return true;
        if (r == 0)
            return false;
        if (errno != EINTR)
            return Unexpected{StoreError::kNotConn};
    }
}

class SocketTransport final : public StoreTransport {
public:
    explicit SocketTransport(UniqueFd fd) : m_fd(std::move(fd)) {}

    [[nodiscard]] int native_handle() const override { return m_fd.get(); }

    StoreResult<void> send(std::string_view bytes, Clock::time_point deadline) override {
        while (!bytes.empty()) {
            ssize_t n = ::send(m_fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n >= 0) {
                bytes.remove_prefix(static_cast<std::size_t>(n));
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return Unexpected{StoreError::kNotConn};
            StoreResult<bool> ready = wait_fd(m_fd.get(), POLLOUT, deadline);
            if (!ready)
                return Unexpected{ready.error()};
            if (!*ready)
                return Unexpected{StoreError::kTimedOut};
        }
        return {};
    }

    StoreResult<std::size_t> receive(std::span<char> buf, Clock::time_point deadline) override {
        for (;;) {
            ssize_t n = ::recv(m_fd.get(), buf.data(), buf.size(), 0);
            if (n > 0)
                return static_cast<std::size_t>(n);
            if (n == 0)
                return Unexpected{StoreError::kNotConn};
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return Unexpected{StoreError::kNotConn};
            StoreResult<bool> ready = wait_fd(m_fd.get(), POLLIN, deadline);
            if (!ready)
                return Unexpected{ready.error()};
            if (!*ready)
                return Unexpected{StoreError::kTimedOut};
        }
    }

private:
    UniqueFd m_fd;
};

void set_detail(std::string* detail, const std::string& path, int err) {
    if (detail != nullptr)
        *detail = path + ": " + std::strerror(err);
}

// Connects to the socket at `path` before `deadline`. kInval for a path
// that can never work; kNotConn or kTimedOut for one that may work later.
StoreResult<std::unique_ptr<StoreTransport>> dial(const std::string& path,
                                                  Clock::time_point deadline, std::string* detail) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        set_detail(detail, path, ENAMETOOLONG);
        return Unexpected{StoreError::kInval};
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
        set_detail(detail, path, errno);
        return Unexpected{StoreError::kNotConn};
    }
    // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        // A Unix socket connect only waits when the listen backlog is full.
        if (errno != EAGAIN && errno != EINPROGRESS) {
            set_detail(detail, path, errno);
            return Unexpected{StoreError::kNotConn};
        }
        StoreResult<bool> ready = wait_fd(fd.get(), POLLOUT, deadline);
        if (!ready || !*ready) {
            set_detail(detail, path, ETIMEDOUT);
            return Unexpected{StoreError::kTimedOut};
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            set_detail(detail, path, err != 0 ? err : errno);
            return Unexpected{StoreError::kNotConn};
        }
    }
    return std::unique_ptr<StoreTransport>(std::make_unique<SocketTransport>(std::move(fd)));
}

// The id in a TRANSACTION_START reply ("42\0").
std::optional<TxId> parse_tx_id(std::string_view payload) {
    auto args = split_args(payload);
    if (!args || args->size() != 1 || args->front().empty() || args->front().size() > 10)
        return std::nullopt;
    std::uint64_t id = 0;
    for (char c : args->front()) {
        if (c < '0' || c > '9')
            return std::nullopt;
        id = id * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (id == 0 || id > UINT32_MAX)
        return std::nullopt;
    return static_cast<TxId>(id);
}

bool is_restrict(std::string_view payload) {
    auto args = split_args(payload);
    return args && args->size() == 2 && (*args)[0] == "restrict";
}

// Whether a request whose reply was lost may be sent again on a new
// connection: reads, and requests about the connection's own state (which
// died with the old connection, so the new one does not have it yet).
// Changes to the tree may have been applied, and sending them again could
// undo another client's later change, so they are not.
bool safe_to_resend(std::uint32_t type, std::string_view payload) {
    switch (type) {
    case PVKIT_STORE_READ:
    case PVKIT_STORE_DIRECTORY:
    case PVKIT_STORE_GET_PERMS:
    case PVKIT_STORE_GET_DOMAIN_PATH:
    case PVKIT_STORE_WATCH:
    case PVKIT_STORE_UNWATCH:
    case PVKIT_STORE_RESET_WATCHES:
    case PVKIT_STORE_TRANSACTION_START:
        return true;
    case PVKIT_STORE_CONTROL:
        return is_restrict(payload);
    default:
        return false;
    }
}

} // namespace

std::string resolve_socket_path(std::string_view path) {
    if (!path.empty())
        return std::string(path);
    const char* env = std::getenv(kSocketEnvVar);
    if (env != nullptr && *env != '\0')
        return env;
    return kDefaultSocketPath;
}

StoreResult<StoreClient> StoreClient::connect(std::string_view socket_path,
                                              std::chrono::milliseconds timeout,
                                              std::string* detail) {
    std::string path = resolve_socket_path(socket_path);
    StoreResult<std::unique_ptr<StoreTransport>> transport =
        dial(path, Clock::now() + timeout, detail);
    if (!transport)
        return Unexpected{transport.error()};
    StoreClient client(std::move(*transport));
    client.m_socket_path = std::move(path);
    return client;
}

StoreClient::StoreClient(std::unique_ptr<StoreTransport> transport)
    : m_transport(std::move(transport)) {}
StoreClient::StoreClient(StoreClient&&) noexcept = default;
StoreClient& StoreClient::operator=(StoreClient&&) noexcept = default;
StoreClient::~StoreClient() = default;

void StoreClient::drop_connection() {
    m_transport.reset();
    // A partial message of the old connection must not prefix the new one's.
    m_decoder = FrameDecoder{};
    // Closing a connection aborts its transactions (docs/store.md).
    m_stats.lost_transactions += m_open_txs.size();
    m_lost_txs.merge(m_open_txs);
    m_open_txs.clear();
}

StoreResult<void> StoreClient::set_reconnect_policy(std::optional<ReconnectPolicy> policy) {
    if (policy && m_socket_path.empty())
        return Unexpected{StoreError::kInval};
    m_policy = policy;
    return {};
}

int StoreClient::native_handle() const { return m_transport ? m_transport->native_handle() : -1; }

StoreResult<std::optional<Message>> StoreClient::pump(Clock::time_point deadline, bool want_reply) {
    std::array<char, 16384> buf;
    for (;;) {
        // Decode everything already buffered, so that no complete event is
        // left behind in the decoder where neither queued_events() nor the
        // descriptor (native_handle()) would show it.
        std::optional<Message> reply;
        for (;;) {
            Result<std::optional<Message>, FrameError> next = m_decoder.next();
            if (!next) {
                drop_connection();
                return Unexpected{StoreError::kProtocol};
            }
            if (!*next)
                break;
            Message& msg = **next;
            if (msg.type == PVKIT_STORE_WATCH_EVENT) {
                auto args = split_args(msg.payload);
                if (!args || args->size() != 2) {
                    drop_connection();
                    return Unexpected{StoreError::kProtocol};
                }
                m_events.push_back(WatchEvent{std::string((*args)[0]), std::string((*args)[1])});
                continue;
            }
            if (!want_reply || reply) {
                // Nothing (more) was asked: a reply now is out of step.
                drop_connection();
                return Unexpected{StoreError::kProtocol};
            }
            reply = std::move(msg);
        }
        if (reply)
            return reply;
        if (!want_reply && !m_events.empty())
            return std::optional<Message>{};
        StoreResult<std::size_t> n = m_transport->receive(buf, deadline);
        if (!n) {
            // Waiting for an event may time out harmlessly; waiting for a
            // reply may not (the reply could still come, out of step).
            if (want_reply || n.error() != StoreError::kTimedOut)
                drop_connection();
            return Unexpected{n.error()};
        }
        m_decoder.feed(std::string_view(buf.data(), *n));
    }
}

StoreResult<Message> StoreClient::exchange(std::uint32_t type, const std::string& payload,
                                           std::uint32_t tx_id, Clock::time_point deadline,
                                           Lost& lost) {
    lost = Lost::kNo;
    if (!m_transport) {
        lost = Lost::kBeforeSend;
        return Unexpected{StoreError::kNotConn};
    }
    std::uint32_t req_id = m_next_req++;
    if (m_next_req == 0)
        m_next_req = 1;
    StoreResult<void> sent =
        m_transport->send(encode(Message{type, req_id, tx_id, payload}), deadline);
    if (!sent) {
        drop_connection();
        // A message not wholly sent was never seen by the daemon.
        if (sent.error() == StoreError::kNotConn)
            lost = Lost::kBeforeSend;
        return Unexpected{sent.error()};
    }
    StoreResult<std::optional<Message>> got = pump(deadline, true);
    if (!got) {
        // The daemon had the request; whether it acted on it is unknown.
        if (got.error() == StoreError::kNotConn)
            lost = Lost::kAfterSend;
        return Unexpected{got.error()};
    }
    Message reply = std::move(**got);
    if (reply.req_id != req_id || (reply.type != type && reply.type != PVKIT_STORE_ERROR)) {
        drop_connection();
        return Unexpected{StoreError::kProtocol};
    }
    if (reply.type == PVKIT_STORE_ERROR) {
        auto args = split_args(reply.payload);
        std::optional<StoreError> err =
            (args && args->size() == 1) ? error_from_name(args->front()) : std::nullopt;
        return Unexpected{err.value_or(StoreError::kProtocol)};
    }
    return reply;
}

void StoreClient::note_reply(std::uint32_t type, const std::string& payload, std::uint32_t tx_id,
                             const StoreResult<Message>& reply) {
    if (type == PVKIT_STORE_TRANSACTION_END) {
        // Every outcome but EINVAL (a malformed end) ends the transaction.
        if (reply || reply.error() != StoreError::kInval)
            m_open_txs.erase(tx_id);
        return;
    }
    if (!reply)
        return;
    auto args = split_args(payload);
    switch (type) {
    case PVKIT_STORE_WATCH:
        if (args && args->size() == 2)
            m_watches.emplace_back((*args)[0], (*args)[1]);
        break;
    case PVKIT_STORE_UNWATCH:
        if (args && args->size() == 2) {
            std::erase_if(m_watches, [&](const auto& w) {
                return w.first == (*args)[0] && w.second == (*args)[1];
            });
        }
        break;
    case PVKIT_STORE_RESET_WATCHES:
        m_watches.clear();
        break;
    case PVKIT_STORE_CONTROL:
        if (is_restrict(payload))
            m_restrict = payload;
        break;
    case PVKIT_STORE_TRANSACTION_START:
        if (std::optional<TxId> id = parse_tx_id(reply->payload)) {
            // A new daemon may hand out an id a lost transaction had.
            m_lost_txs.erase(*id);
            m_open_txs.insert(*id);
        }
        break;
    default:
        break;
    }
}

StoreResult<void> StoreClient::restore(Clock::time_point deadline, Lost& lost) {
    // The restriction first: the daemon refuses it once there are watches.
    if (m_restrict) {
        StoreResult<Message> r = exchange(PVKIT_STORE_CONTROL, *m_restrict, 0, deadline, lost);
        if (!r)
            return Unexpected{r.error()};
    }
    // Each watch fires once when set: the caller's cue to read again.
    for (const auto& [path, token] : m_watches) {
        StoreResult<Message> r =
            exchange(PVKIT_STORE_WATCH, join_args({path, token}), 0, deadline, lost);
        if (!r)
            return Unexpected{r.error()};
    }
    return {};
}

StoreResult<void> StoreClient::reconnect(Clock::time_point deadline) {
    drop_connection();
    std::chrono::milliseconds backoff = m_policy->initial_backoff;
    for (;;) {
        std::string detail;
        StoreResult<std::unique_ptr<StoreTransport>> transport =
            dial(m_socket_path, deadline, &detail);
        if (transport) {
            m_transport = std::move(*transport);
            Lost lost = Lost::kNo;
            // Restoring is ordinary requests, each bounded by the reply timeout.
            StoreResult<void> restored = restore(Clock::now() + m_reply_timeout, lost);
            if (restored) {
                ++m_stats.reconnects;
                m_stats.last_error.clear();
                return {};
            }
            drop_connection();
            detail = m_socket_path + ": restoring the connection failed: " +
                     std::string(to_string(restored.error()));
            if (lost == Lost::kNo) {
                // The daemon refused the restriction or a watch. Never go on
                // with a wider identity or fewer watches than the caller set.
                m_stats.last_error = std::move(detail);
                return Unexpected{restored.error()};
            }
        } else if (transport.error() == StoreError::kInval) {
            m_stats.last_error = std::move(detail);
            return Unexpected{StoreError::kInval};
        }
        ++m_stats.dial_failures;
        m_stats.last_error = std::move(detail);
        Clock::time_point now = Clock::now();
        if (now >= deadline)
            return Unexpected{StoreError::kNotConn};
        std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
        backoff = std::min(backoff * 2, m_policy->max_backoff);
    }
}

StoreResult<Message> StoreClient::request(std::uint32_t type, const std::string& payload,
                                          std::uint32_t tx_id) {
    if (!m_transport && !m_policy)
        return Unexpected{StoreError::kNotConn};
    if (payload.size() > kPayloadMax)
        return Unexpected{StoreError::kTooBig};
    // The end of the recovery this call started, if it started one.
    std::optional<Clock::time_point> give_up;
    // How the previous attempt ended, and whether it got as far as sending.
    Lost lost = Lost::kNo;
    bool attempted = false;
    for (;;) {
        if (tx_id != 0 && m_lost_txs.contains(tx_id)) {
            // The transaction died with an earlier connection: the caller
            // retries it, as after a conflict.
            if (type == PVKIT_STORE_TRANSACTION_END) {
                m_lost_txs.erase(tx_id);
                // But a commit the daemon had may have happened: retrying
                // the transaction could apply it twice.
                if (lost == Lost::kAfterSend && std::string_view(payload).starts_with('T'))
                    return Unexpected{StoreError::kNotConn};
            }
            return Unexpected{StoreError::kAgain};
        }
        if (lost == Lost::kAfterSend && !safe_to_resend(type, payload))
            return Unexpected{StoreError::kNotConn};
        if (attempted)
            ++m_stats.resent;
        attempted = m_transport != nullptr;
        StoreResult<Message> reply =
            exchange(type, payload, tx_id, Clock::now() + m_reply_timeout, lost);
        if (lost == Lost::kNo || !m_policy) {
            if (lost == Lost::kNo)
                note_reply(type, payload, tx_id, reply);
            return reply;
        }
        if (!give_up)
            give_up = Clock::now() + m_policy->deadline;
        StoreResult<void> back = reconnect(*give_up);
        if (!back)
            return Unexpected{back.error()};
    }
}

StoreResult<std::string> StoreClient::call(std::uint32_t type, std::string payload,
                                           std::uint32_t tx_id) {
    StoreResult<Message> r = request(type, payload, tx_id);
    if (!r)
        return Unexpected{r.error()};
    return std::move(r->payload);
}

StoreResult<void> StoreClient::call_ok(std::uint32_t type, std::string payload,
                                       std::uint32_t tx_id) {
    StoreResult<std::string> r = call(type, std::move(payload), tx_id);
    if (!r)
        return Unexpected{r.error()};
    if (*r != std::string_view("OK\0", 3))
        return Unexpected{StoreError::kProtocol};
    return {};
}

StoreResult<std::string> StoreClient::read(std::string_view path, TxId tx) {
    return call(PVKIT_STORE_READ, join_args({path}), tx);
}

StoreResult<void> StoreClient::write(std::string_view path, std::string_view value, TxId tx) {
    std::string payload = join_args({path});
    payload += value;
    return call_ok(PVKIT_STORE_WRITE, std::move(payload), tx);
}

StoreResult<void> StoreClient::mkdir(std::string_view path, TxId tx) {
    return call_ok(PVKIT_STORE_MKDIR, join_args({path}), tx);
}

StoreResult<void> StoreClient::rm(std::string_view path, TxId tx) {
    return call_ok(PVKIT_STORE_RM, join_args({path}), tx);
}

StoreResult<std::vector<std::string>> StoreClient::directory(std::string_view path, TxId tx) {
    StoreResult<std::string> r = call(PVKIT_STORE_DIRECTORY, join_args({path}), tx);
    if (!r)
        return Unexpected{r.error()};
    std::vector<std::string> out;
    if (r->empty())
        return out;
    auto args = split_args(*r);
    if (!args)
        return Unexpected{StoreError::kProtocol};
    for (std::string_view a : *args)
        out.emplace_back(a);
    return out;
}

StoreResult<Perms> StoreClient::get_perms(std::string_view path, TxId tx) {
    StoreResult<std::string> r = call(PVKIT_STORE_GET_PERMS, join_args({path}), tx);
    if (!r)
        return Unexpected{r.error()};
    auto args = split_args(*r);
    std::optional<Perms> perms = args ? parse_perms(*args) : std::nullopt;
    if (!perms)
        return Unexpected{StoreError::kProtocol};
    return std::move(*perms);
}

StoreResult<void> StoreClient::set_perms(std::string_view path, const Perms& perms, TxId tx) {
    std::string payload = join_args({path});
    for (const Perm& p : perms) {
        payload += format_perm(p);
        payload.push_back('\0');
    }
    return call_ok(PVKIT_STORE_SET_PERMS, std::move(payload), tx);
}

StoreResult<void> StoreClient::watch(std::string_view path, std::string_view token) {
    return call_ok(PVKIT_STORE_WATCH, join_args({path, token}), 0);
}

StoreResult<void> StoreClient::unwatch(std::string_view path, std::string_view token) {
    return call_ok(PVKIT_STORE_UNWATCH, join_args({path, token}), 0);
}

StoreResult<WatchEvent> StoreClient::wait_for_event(std::chrono::milliseconds timeout) {
    Clock::time_point deadline = Clock::now() + timeout;
    while (m_events.empty()) {
        if (!m_transport) {
            if (!m_policy)
                return Unexpected{StoreError::kNotConn};
            // Restoring the watches queues one event for each of them.
            StoreResult<void> back = reconnect(Clock::now() + m_policy->deadline);
            if (!back)
                return Unexpected{back.error()};
            continue;
        }
        // Decode what is already buffered first, then wait on the transport.
        StoreResult<std::optional<Message>> got = pump(deadline, false);
        // A timeout here is no reason to drop the connection: nothing was
        // asked, so nothing can be out of step. A lost connection is
        // recovered above if there is a policy.
        if (!got && (got.error() != StoreError::kNotConn || !m_policy))
            return Unexpected{got.error()};
    }
    WatchEvent e = std::move(m_events.front());
    m_events.pop_front();
    return e;
}

std::optional<WatchEvent> StoreClient::poll_event() {
    if (m_events.empty())
        return std::nullopt;
    WatchEvent e = std::move(m_events.front());
    m_events.pop_front();
    return e;
}

StoreResult<TxId> StoreClient::transaction_start() {
    StoreResult<std::string> r = call(PVKIT_STORE_TRANSACTION_START, std::string(1, '\0'), 0);
    if (!r)
        return Unexpected{r.error()};
    std::optional<TxId> id = parse_tx_id(*r);
    if (!id)
        return Unexpected{StoreError::kProtocol};
    return *id;
}

StoreResult<void> StoreClient::transaction_end(TxId tx, bool commit) {
    return call_ok(PVKIT_STORE_TRANSACTION_END, join_args({commit ? "T" : "F"}), tx);
}

StoreResult<void> StoreClient::restrict(pvkit_domid_t domid) {
    return call_ok(PVKIT_STORE_CONTROL, join_args({"restrict", std::to_string(domid)}), 0);
}

StoreResult<std::string> StoreClient::get_domain_path(pvkit_domid_t domid) {
    StoreResult<std::string> r = call(PVKIT_STORE_GET_DOMAIN_PATH, join_args({std::to_string(domid)}), 0);
    if (!r)
        return Unexpected{r.error()};
    auto args = split_args(*r);
    if (!args || args->size() != 1)
        return Unexpected{StoreError::kProtocol};
    return std::string(args->front());
}

} // namespace pvkit::store
