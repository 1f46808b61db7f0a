// Synchronous client of pvkit-stored.
//
// One request at a time: each call sends a request and blocks until its
// reply arrives or the reply timeout passes. Watch events that arrive while
// a call waits for its reply are queued in order, never lost, and handed
// out by wait_for_event() / poll_event(). A client is not thread-safe; use
// one per thread.
//
// The bytes travel through a StoreTransport. connect() makes one over the
// daemon's Unix socket; the guest store ring can provide another, so the
// same client code serves host processes and guests.
//
// Reconnection is opt-in (set_reconnect_policy()): a client made by
// connect() can redial its socket after the daemon restarts and restore
// what the connection had (its restriction, its watches). See
// docs/store.md, "Reconnecting", for what happens to transactions and to a
// request that was in flight when the connection dropped.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pvkit/store/error.hpp"
#include "pvkit/store/perms.hpp"
#include "pvkit/store/wire.hpp"

namespace pvkit::store {

inline constexpr const char* kDefaultSocketPath = "/run/pvkit/stored.sock";
inline constexpr const char* kSocketEnvVar = "PVKIT_STORE_SOCKET";

using TxId = std::uint32_t;
using Clock = std::chrono::steady_clock;

struct WatchEvent {
    std::string path;
    std::string token;

    friend bool operator==(const WatchEvent&, const WatchEvent&) = default;
};

// A byte stream to the daemon.
class StoreTransport {
public:
    virtual ~StoreTransport() = default;
    // Sends every byte before `deadline`.
    [[nodiscard]] virtual StoreResult<void> send(std::string_view bytes, Clock::time_point deadline) = 0;
    // Receives at least one byte into `buf` before `deadline`; kTimedOut if
    // none came, kNotConn at end of stream.
    [[nodiscard]] virtual StoreResult<std::size_t> receive(std::span<char> buf,
                                                           Clock::time_point deadline) = 0;
    // A descriptor that polls readable when bytes from the daemon wait, or
    // -1 if the transport has none.
    [[nodiscard]] virtual int native_handle() const { return -1; }
};

// How a client made by StoreClient::connect() recovers from a lost
// connection (end of stream, ECONNRESET, EPIPE, ENOTCONN, or a call made
// after an earlier failure closed the connection).
struct ReconnectPolicy {
    // How long one recovery may take, from the moment the loss is seen;
    // then the call fails with kNotConn (reconnect_stats().last_error says
    // why). Every call that finds the connection down starts a new one.
    std::chrono::milliseconds deadline{10000};
    // Pause after the first failed dial; doubled after each further
    // failure up to max_backoff, and never past the deadline.
    std::chrono::milliseconds initial_backoff{10};
    std::chrono::milliseconds max_backoff{500};
};

// Counters for tests and diagnostics.
struct ReconnectStats {
    std::uint64_t reconnects = 0;    // connections re-established and restored
    std::uint64_t dial_failures = 0; // dials that failed (each one is retried until the deadline)
    std::uint64_t resent = 0;        // requests sent again on a new connection
    std::uint64_t lost_transactions = 0; // transactions open when a connection dropped
    std::string last_error;              // why the last dial or restore failed, "" if none did
};

// `path` if not empty, else $PVKIT_STORE_SOCKET if set and not empty, else
// kDefaultSocketPath.
[[nodiscard]] std::string resolve_socket_path(std::string_view path);

class StoreClient {
public:
    // Connects to the daemon's socket (resolve_socket_path(socket_path)).
    // On failure, `detail` (if given) receives a sentence such as
    // "/run/pvkit/stored.sock: No such file or directory".
    [[nodiscard]] static StoreResult<StoreClient>
    connect(std::string_view socket_path = {},
            std::chrono::milliseconds timeout = std::chrono::seconds(5),
            std::string* detail = nullptr);

    explicit StoreClient(std::unique_ptr<StoreTransport> transport);
    StoreClient(StoreClient&&) noexcept;
    StoreClient& operator=(StoreClient&&) noexcept;
    StoreClient(const StoreClient&) = delete;
    StoreClient& operator=(const StoreClient&) = delete;
    ~StoreClient();

    // How long a call waits for its reply (default 30 s). After a timeout
    // the connection is closed: a late reply would be out of step.
    void set_reply_timeout(std::chrono::milliseconds timeout) { m_reply_timeout = timeout; }

    // Enables (or with nullopt disables, the default) reconnection. Only a
    // client made by connect() knows where to redial: for any other,
    // enabling fails with kInval.
    [[nodiscard]] StoreResult<void> set_reconnect_policy(std::optional<ReconnectPolicy> policy);
    [[nodiscard]] const ReconnectStats& reconnect_stats() const { return m_stats; }

    [[nodiscard]] StoreResult<std::string> read(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> write(std::string_view path, std::string_view value, TxId tx = 0);
    [[nodiscard]] StoreResult<void> mkdir(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> rm(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<std::vector<std::string>> directory(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<Perms> get_perms(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> set_perms(std::string_view path, const Perms& perms, TxId tx = 0);

    // Sets a watch; its first event (the path itself) follows at once.
    [[nodiscard]] StoreResult<void> watch(std::string_view path, std::string_view token);
    [[nodiscard]] StoreResult<void> unwatch(std::string_view path, std::string_view token);
    // The oldest queued event, or the next one to arrive within `timeout`;
    // kTimedOut if none does.
    [[nodiscard]] StoreResult<WatchEvent> wait_for_event(std::chrono::milliseconds timeout);
    // The oldest queued event without waiting.
    [[nodiscard]] std::optional<WatchEvent> poll_event();
    [[nodiscard]] std::size_t queued_events() const { return m_events.size(); }

    [[nodiscard]] StoreResult<TxId> transaction_start();
    // commit = true: "T" (fails with kAgain on conflict); false: "F" (abort).
    [[nodiscard]] StoreResult<void> transaction_end(TxId tx, bool commit);

    // Makes this connection act as `domid` from now on (irreversible).
    [[nodiscard]] StoreResult<void> restrict(pvkit_domid_t domid);
    [[nodiscard]] StoreResult<std::string> get_domain_path(pvkit_domid_t domid);

    // Sends any request and returns its reply (an ERROR reply becomes its
    // error). For tools and tests that speak the protocol directly. Every
    // other call goes through here, so watches, the restriction and open
    // transactions set this way are restored (or failed) on reconnect too.
    [[nodiscard]] StoreResult<Message> request(std::uint32_t type, const std::string& payload,
                                               std::uint32_t tx_id = 0);

    [[nodiscard]] bool connected() const { return m_transport != nullptr; }

    // For event loops: the transport's descriptor (-1 if none or not
    // connected). Each call decodes everything the daemon has sent so far,
    // so when the descriptor is not readable and queued_events() is 0 there
    // is nothing to do; otherwise call wait_for_event(0ms) until it says
    // kTimedOut. With a reconnect policy the descriptor changes when the
    // client reconnects: fetch it again after each call.
    [[nodiscard]] int native_handle() const;

private:
    // How far a request got when its connection dropped.
    enum class Lost { kNo, kBeforeSend, kAfterSend };

    StoreResult<std::string> call(std::uint32_t type, std::string payload, std::uint32_t tx_id);
    StoreResult<void> call_ok(std::uint32_t type, std::string payload, std::uint32_t tx_id);
    // Reads from the transport until a non-event message is decoded or
    // `deadline` passes; events met on the way are queued.
    StoreResult<std::optional<Message>> pump(Clock::time_point deadline, bool want_reply);
    void drop_connection();
    // One request and its reply on the current connection, no recovery.
    // `lost` says whether a failure was the connection going away.
    StoreResult<Message> exchange(std::uint32_t type, const std::string& payload,
                                  std::uint32_t tx_id, Clock::time_point deadline, Lost& lost);
    // Dials until connected and restored or `deadline` passes.
    StoreResult<void> reconnect(Clock::time_point deadline);
    // Restores the restriction and the watches on a fresh connection.
    StoreResult<void> restore(Clock::time_point deadline, Lost& lost);
    // Keeps track of the connection state a reconnect must restore.
    void note_reply(std::uint32_t type, const std::string& payload, std::uint32_t tx_id,
                    const StoreResult<Message>& reply);

    std::unique_ptr<StoreTransport> m_transport;
    FrameDecoder m_decoder;
    std::deque<WatchEvent> m_events;
    std::uint32_t m_next_req = 1;
    std::chrono::milliseconds m_reply_timeout{30000};

    // Where connect() dialed; empty for a client given its transport.
    std::string m_socket_path;
    std::optional<ReconnectPolicy> m_policy;
    ReconnectStats m_stats;
    // What the connection holds, restored on reconnect: the "restrict"
    // CONTROL payload the daemon accepted (sent again first), then the
    // watches in the order they were set.
    std::optional<std::string> m_restrict;
    std::vector<std::pair<std::string, std::string>> m_watches; // (path, token)
    std::set<TxId> m_open_txs;
    // Transactions that died with an earlier connection: their requests
    // fail with kAgain until the caller ends them.
    std::set<TxId> m_lost_txs;
};

} // namespace pvkit::store
