// StoreClient's reconnect policy against a real pvkit-stored: kill -9 and
// restart on the same socket and data directory, then check that the client
// is back with its watches and its restriction, that a transaction open at
// the crash fails with EAGAIN, that a daemon that never returns is reported
// within the policy's deadline, and that without a policy nothing changes.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/store/client.hpp"
#include "store_test_support.hpp"

using namespace pvkit::store;
using namespace pvkit::store::test;

namespace {

std::string err(StoreError e) {
    return "!" + std::string(to_string(e));
}

std::string show(const StoreResult<std::string>& r) {
    return r ? r.value() : err(r.error());
}
std::string show(const StoreResult<void>& r) {
    return r ? "OK" : err(r.error());
}

// A client of `d` that reconnects for as long as any test waits.
StoreClient reconnecting(const Daemon& d, std::chrono::milliseconds deadline = kWait) {
    StoreClient c = d.client();
    ReconnectPolicy policy;
    policy.deadline = deadline;
    REQUIRE(c.set_reconnect_policy(policy).ok());
    return c;
}

WatchEvent next_event(StoreClient& c) {
    StoreResult<WatchEvent> e = c.wait_for_event(kWait);
    REQUIRE(e.ok());
    return *e;
}

void crash_and_restart(Daemon& d) {
    d.kill9();
    d.start();
}

// A listening socket at `path` that is not pvkit-stored, to stand in for a
// daemon that dies holding a request.
pvkit::UniqueFd listen_on(const std::string& path) {
    pvkit::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        pvkit::throw_errno("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    // sockaddr_un is what bind() takes for AF_UNIX; the cast is the API.
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        pvkit::throw_errno("bind " + path);
    if (::listen(fd.get(), 4) != 0)
        pvkit::throw_errno("listen");
    return fd;
}

// Runs `call` on a reconnecting client whose first connection goes to a
// stand-in that reads one whole request and hangs up without replying; the
// real daemon (`daemon`, on the same socket) starts only after that, so the
// client must redial. Returns what `call` returned and the request type the
// stand-in received. The call runs in another thread for the time being (the
// daemon must be started by this one: it dies with the thread that spawned it).
template <class Call>
auto with_request_in_flight(const std::string& socket, std::optional<Daemon>& daemon,
                            StoreClient& client, Call call) {
    pvkit::UniqueFd listener = listen_on(socket);
    StoreResult<StoreClient> c = StoreClient::connect(socket, kWait);
    REQUIRE(c.ok());
    client = std::move(*c);
    client.set_reply_timeout(kWait);
    ReconnectPolicy policy;
    policy.deadline = kWait;
    REQUIRE(client.set_reconnect_policy(policy).ok());
    auto result = std::async(std::launch::async, [&] { return call(client); });

    pvkit::UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid())
        pvkit::throw_errno("accept4");
    pvkit::test::set_receive_timeout(conn.get(), kWait);
    FrameDecoder decoder;
    std::array<char, 4096> buf;
    std::optional<Message> msg;
    while (!msg) {
        ssize_t n = ::recv(conn.get(), buf.data(), buf.size(), 0);
        if (n <= 0)
            throw std::runtime_error("stand-in: no whole request arrived");
        decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
        auto next = decoder.next();
        if (!next)
            throw std::runtime_error("stand-in: bad request");
        msg = std::move(*next);
    }
    // The request arrived; the "daemon" dies without answering it. The
    // listener goes first, so that the client cannot redial the stand-in.
    listener.reset();
    conn.reset();
    daemon.emplace(std::vector<std::string>{"--socket", socket});
    return std::make_pair(result.get(), msg->type);
}

} // namespace

TEST_CASE("after kill -9 and restart the client reads again and its watch fires",
          "[reconnect][watch]") {
    Daemon d;
    StoreClient c = reconnecting(d);
    REQUIRE(c.write("/data/x", "1").ok());
    REQUIRE(c.watch("/data", "w").ok());
    REQUIRE(next_event(c) == WatchEvent{"/data", "w"});

    crash_and_restart(d);
    CHECK(show(c.read("/data/x")) == "1");
    CHECK(c.connected());
    CHECK(c.reconnect_stats().reconnects == 1);
    // The watch was set again, and fired on set: the cue to read again.
    CHECK(next_event(c) == WatchEvent{"/data", "w"});
    CHECK(c.queued_events() == 0);

    // It fires for another client's later write, and for our own.
    StoreClient other = d.client();
    REQUIRE(other.write("/data/y", "2").ok());
    CHECK(next_event(c) == WatchEvent{"/data/y", "w"});
    REQUIRE(c.write("/data/x", "3").ok());
    CHECK(next_event(c) == WatchEvent{"/data/x", "w"});
    CHECK(show(other.read("/data/x")) == "3");

    SECTION("a write as the first call after the crash is sent again: it never arrived") {
        std::uint64_t resent = c.reconnect_stats().resent;
        crash_and_restart(d);
        CHECK(show(c.write("/data/z", "4")) == "OK");
        CHECK(c.reconnect_stats().reconnects == 2);
        CHECK(c.reconnect_stats().resent == resent + 1);
        StoreClient third = d.client();
        CHECK(show(third.read("/data/z")) == "4");
        // The watch is back before the write: its set event, then the write's.
        CHECK(next_event(c) == WatchEvent{"/data", "w"});
        CHECK(next_event(c) == WatchEvent{"/data/z", "w"});
    }

    SECTION("a client waiting for events notices the crash and reconnects") {
        crash_and_restart(d);
        CHECK(next_event(c) == WatchEvent{"/data", "w"});
        CHECK(c.reconnect_stats().reconnects == 2);
        StoreClient third = d.client();
        REQUIRE(third.write("/data/w", "5").ok());
        CHECK(next_event(c) == WatchEvent{"/data/w", "w"});
    }

    SECTION("an unwatched watch is not set again") {
        REQUIRE(c.unwatch("/data", "w").ok());
        crash_and_restart(d);
        CHECK(show(c.read("/data/x")) == "3");
        StoreClient third = d.client();
        REQUIRE(third.write("/data/v", "6").ok());
        CHECK(c.wait_for_event(std::chrono::milliseconds(0)).error() == StoreError::kTimedOut);
        CHECK(c.queued_events() == 0);
    }
}

TEST_CASE("a transaction open at the crash ends with EAGAIN; a retry commits", "[reconnect][tx]") {
    Daemon d;
    StoreClient c = reconnecting(d);
    REQUIRE(c.mkdir("/t").ok());
    StoreResult<TxId> tx = c.transaction_start();
    REQUIRE(tx.ok());
    REQUIRE(c.write("/t/a", "1", *tx).ok());

    crash_and_restart(d);
    SECTION("the next request in it") {
        CHECK(show(c.write("/t/b", "2", *tx)) == err(StoreError::kAgain));
        CHECK(show(c.read("/t/a", *tx)) == err(StoreError::kAgain));
        // Ending it (commit or abort) tells the caller the same and forgets it.
        CHECK(show(c.transaction_end(*tx, true)) == err(StoreError::kAgain));
    }
    SECTION("its commit") {
        CHECK(show(c.transaction_end(*tx, true)) == err(StoreError::kAgain));
    }
    CHECK(c.reconnect_stats().reconnects == 1);
    CHECK(c.reconnect_stats().lost_transactions == 1);
    // Nothing of it was committed.
    CHECK(show(c.read("/t/a")) == err(StoreError::kNoEnt));

    // The retry, as after a conflict. The new daemon may reuse the old id.
    StoreResult<TxId> retry = c.transaction_start();
    REQUIRE(retry.ok());
    REQUIRE(c.write("/t/a", "1", *retry).ok());
    REQUIRE(c.write("/t/b", "2", *retry).ok());
    CHECK(show(c.transaction_end(*retry, true)) == "OK");
    StoreClient other = d.client();
    CHECK(show(other.read("/t/a")) == "1");
    CHECK(show(other.read("/t/b")) == "2");
}

TEST_CASE("a restricted connection is restricted again after reconnecting", "[reconnect][perms]") {
    Daemon d;
    StoreClient root = d.client();
    REQUIRE(root.mkdir("/local/domain/5").ok());
    REQUIRE(root.set_perms("/local/domain/5", {Perm{Access::kNone, 5}}).ok());
    REQUIRE(root.write("/secret", "dom0 only").ok());

    StoreClient c = reconnecting(d);
    REQUIRE(c.restrict(5).ok());
    REQUIRE(c.watch("device", "dev").ok());
    REQUIRE(next_event(c) == WatchEvent{"device", "dev"});
    CHECK(show(c.read("/secret")) == err(StoreError::kAccess));

    crash_and_restart(d);
    CHECK(show(c.read("/secret")) == err(StoreError::kAccess));
    CHECK(c.reconnect_stats().reconnects == 1);
    CHECK(c.connected());
    // Still domain 5: relative paths are its own, the restriction is final,
    // and its watch (set after the restriction) is back.
    CHECK(show(c.write("device/state", "1")) == "OK");
    StoreClient root2 = d.client();
    CHECK(show(root2.read("/local/domain/5/device/state")) == "1");
    CHECK(show(c.restrict(6)) == err(StoreError::kPerm));
    CHECK(next_event(c) == WatchEvent{"device", "dev"});
    CHECK(next_event(c) == WatchEvent{"device/state", "dev"});
}

TEST_CASE("a daemon that never comes back is reported within the deadline", "[reconnect]") {
    Daemon d;
    StoreClient c = reconnecting(d, std::chrono::milliseconds(300));
    REQUIRE(c.write("/x", "1").ok());
    REQUIRE(c.watch("/x", "x").ok());
    REQUIRE(next_event(c) == WatchEvent{"/x", "x"});
    d.kill9();

    // kWait is only a generous bound against a hang, not a speed check.
    auto started = Clock::now();
    CHECK(show(c.read("/x")) == err(StoreError::kNotConn));
    CHECK(show(c.write("/x", "2")) == err(StoreError::kNotConn));
    CHECK(c.wait_for_event(kWait).error() == StoreError::kNotConn);
    CHECK(Clock::now() - started < kWait);
    CHECK(!c.connected());
    CHECK(c.reconnect_stats().reconnects == 0);
    CHECK(c.reconnect_stats().dial_failures >= 3);
    INFO(c.reconnect_stats().last_error);
    CHECK(c.reconnect_stats().last_error.find(d.socket()) != std::string::npos);

    // When it does come back, the next call recovers.
    d.start();
    CHECK(show(c.read("/x")) == "1");
    CHECK(c.reconnect_stats().reconnects == 1);
    CHECK(c.reconnect_stats().last_error.empty());
    CHECK(next_event(c) == WatchEvent{"/x", "x"});
}

TEST_CASE("without a policy a lost connection stays lost", "[reconnect][client]") {
    Daemon d;
    StoreClient c = d.client();
    REQUIRE(c.write("/x", "1").ok());
    crash_and_restart(d);
    CHECK(show(c.read("/x")) == err(StoreError::kNotConn));
    CHECK(!c.connected());
    // The daemon is back, but this client does not redial.
    CHECK(show(c.read("/x")) == err(StoreError::kNotConn));
    CHECK(c.wait_for_event(std::chrono::milliseconds(0)).error() == StoreError::kNotConn);
    CHECK(c.reconnect_stats().reconnects == 0);

    // A policy can be dropped again, and only a client that dialed can have one.
    StoreClient other = d.client();
    REQUIRE(other.set_reconnect_policy(ReconnectPolicy{}).ok());
    REQUIRE(other.set_reconnect_policy(std::nullopt).ok());
    StoreClient given(nullptr);
    CHECK(show(given.set_reconnect_policy(ReconnectPolicy{})) == err(StoreError::kInval));
}

TEST_CASE("a request in flight when the daemon dies", "[reconnect][inflight]") {
    TempDir dir;
    std::string socket = (dir.path() / "stored.sock").string();
    std::optional<Daemon> d;
    StoreClient c(nullptr);

    SECTION("a read is sent again") {
        auto [r, seen] = with_request_in_flight(
            socket, d, c, [](StoreClient& cl) { return cl.read("/nothing"); });
        INFO(c.reconnect_stats().last_error);
        CHECK(seen == PVKIT_STORE_READ);
        CHECK(show(r) == err(StoreError::kNoEnt));
        CHECK(c.reconnect_stats().resent == 1);
    }
    SECTION("a write is not: its outcome is unknown, the client is back") {
        auto [r, seen] = with_request_in_flight(
            socket, d, c, [](StoreClient& cl) { return cl.write("/maybe", "1"); });
        CHECK(seen == PVKIT_STORE_WRITE);
        CHECK(show(r) == err(StoreError::kNotConn));
        CHECK(c.reconnect_stats().resent == 0);
        CHECK(c.connected());
        CHECK(show(c.read("/maybe")) == err(StoreError::kNoEnt));
    }
    SECTION("a watch is sent again and fires") {
        auto [r, seen] = with_request_in_flight(
            socket, d, c, [](StoreClient& cl) { return cl.watch("/w", "t"); });
        CHECK(seen == PVKIT_STORE_WATCH);
        CHECK(show(r) == "OK");
        CHECK(next_event(c) == WatchEvent{"/w", "t"});
        StoreClient other = d->client();
        REQUIRE(other.write("/w", "1").ok());
        CHECK(next_event(c) == WatchEvent{"/w", "t"});
    }
    CHECK(c.reconnect_stats().reconnects == 1);
}
