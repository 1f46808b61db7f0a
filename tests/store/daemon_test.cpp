// pvkit-stored as a real process: every operation through the client
// library, domain isolation, watches, transactions, quotas, persistence
// across restarts and kill -9, hostile clients, and load.
#include <catch2/catch.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pvkit/store/client.hpp"
#include "pvkit/store/path.hpp"
#include "store_test_support.hpp"

using namespace pvkit::store;
using namespace pvkit::store::test;
using namespace std::string_literals;

namespace {

using Dump = std::map<std::string, std::pair<std::string, std::string>>;

// The whole tree as domain 0 sees it, through the protocol.
void walk(StoreClient& c, const std::string& path, Dump& out) {
    StoreResult<std::string> v = c.read(path);
    StoreResult<Perms> p = c.get_perms(path);
    StoreResult<std::vector<std::string>> kids = c.directory(path);
    if (!v || !p || !kids)
        throw std::runtime_error("walk " + path + " failed");
    out[path] = {*v, format_perms(*p)};
    for (const std::string& k : *kids)
        walk(c, child_path(path, k), out);
}

Dump dump(StoreClient& c) {
    Dump d;
    walk(c, "/", d);
    return d;
}

std::string err(StoreError e) { return "!" + std::string(to_string(e)); }

template <class T>
std::string show(const StoreResult<T>& r) {
    if (!r)
        return err(r.error());
    if constexpr (std::is_same_v<T, std::string>)
        return r.value();
    else
        return "value";
}
inline std::string show(const StoreResult<void>& r) { return r ? "OK" : err(r.error()); }

// Sets up /local/domain/<d> owned by d.
void make_domain(StoreClient& root, pvkit_domid_t d) {
    std::string p = "/local/domain/" + std::to_string(d);
    REQUIRE(root.mkdir(p).ok());
    REQUIRE(root.set_perms(p, {Perm{Access::kNone, d}}).ok());
}

StoreClient restricted(const Daemon& d, pvkit_domid_t domid) {
    StoreClient c = d.client();
    REQUIRE(c.restrict(domid).ok());
    return c;
}

// The daemon is alive and serves a new client.
void check_serving(Daemon& d) {
    REQUIRE(d.alive());
    StoreClient c = d.client();
    REQUIRE(c.write("/health", "ok").ok());
    StoreResult<std::string> v = c.read("/health");
    REQUIRE(v.ok());
    CHECK(*v == "ok");
}

// A client connected before some bad input arrives, holding a watch and an
// open transaction with a write in it. check() shows that the daemon carried
// on for it, not only for clients that come later: it still gets a watch
// event for another client's write, can read, and can commit.
class Bystander {
public:
    explicit Bystander(Daemon& d) : m_daemon(d), m_client(d.client()) {
        REQUIRE(m_client.write("/bystander/before", "1").ok());
        // The transaction writes below a node that exists already, so that
        // nodes other clients create elsewhere cannot make it conflict.
        REQUIRE(m_client.mkdir("/bystander-tx").ok());
        REQUIRE(m_client.watch("/bystander", "by").ok());
        StoreResult<WatchEvent> first = m_client.wait_for_event(kWait);
        REQUIRE(first.ok());
        REQUIRE(*first == WatchEvent{"/bystander", "by"});
        StoreResult<TxId> tx = m_client.transaction_start();
        REQUIRE(tx.ok());
        m_tx = *tx;
        REQUIRE(m_client.write("/bystander-tx/v", "from-tx", m_tx).ok());
    }

    // After the bad input. Also checks that a new client is served.
    void check() {
        check_serving(m_daemon);
        INFO("a client connected before the bad input");
        REQUIRE(m_client.connected());
        StoreClient other = m_daemon.client();
        REQUIRE(other.write("/bystander/after", "2").ok());
        StoreResult<WatchEvent> e = m_client.wait_for_event(kWait);
        REQUIRE(e.ok());
        CHECK(*e == WatchEvent{"/bystander/after", "by"});
        CHECK(show(m_client.read("/bystander/before")) == "1");
        CHECK(show(m_client.read("/bystander/after")) == "2");
        CHECK(show(m_client.read("/bystander-tx/v", m_tx)) == "from-tx");
        CHECK(show(m_client.transaction_end(m_tx, true)) == "OK");
        CHECK(show(other.read("/bystander-tx/v")) == "from-tx");
        // Nothing else was sent to it: the bad input touched none of its state.
        CHECK(m_client.queued_events() == 0);
    }

private:
    Daemon& m_daemon;
    StoreClient m_client;
    TxId m_tx{};
};

Message raw_request(std::uint32_t type, std::uint32_t req_id, std::string payload, std::uint32_t tx = 0) {
    return Message{type, req_id, tx, std::move(payload)};
}

std::string error_name(const Message& m) {
    if (m.type != PVKIT_STORE_ERROR)
        return "(not an error)";
    auto args = split_args(m.payload);
    return args && args->size() == 1 ? std::string(args->front()) : "(malformed)";
}

} // namespace

TEST_CASE("every operation through the client library", "[daemon][ops]") {
    Daemon d;
    StoreClient c = d.client();
    CHECK(show(c.write("/a/b", "hello")) == "OK");
    CHECK(show(c.read("/a/b")) == "hello");
    CHECK(show(c.write("/a/bin", "x\0y"s)) == "OK");
    CHECK(show(c.read("/a/bin")) == "x\0y"s);
    CHECK(show(c.read("/a/none")) == err(StoreError::kNoEnt));
    CHECK(show(c.mkdir("/a/dir")) == "OK");
    CHECK(show(c.mkdir("/a/dir")) == "OK");
    auto ls = c.directory("/a");
    REQUIRE(ls.ok());
    CHECK(*ls == std::vector<std::string>{"b", "bin", "dir"});
    auto perms = c.get_perms("/a/b");
    REQUIRE(perms.ok());
    CHECK(*perms == Perms{Perm{Access::kNone, 0}});
    CHECK(show(c.set_perms("/a/b", {Perm{Access::kNone, 3}, Perm{Access::kRead, 4}})) == "OK");
    perms = c.get_perms("/a/b");
    REQUIRE(perms.ok());
    CHECK(format_perms(*perms) == "n3 r4");
    CHECK(show(c.rm("/a/dir")) == "OK");
    CHECK(show(c.read("/a/dir")) == err(StoreError::kNoEnt));
    CHECK(show(c.get_domain_path(12)) == "/local/domain/12");
    CHECK(show(c.write("/a/big", std::string(2049, 'x'))) == err(StoreError::kTooBig));
    CHECK(show(c.read("bad path")) == err(StoreError::kInval));
    // Too big to send at all: refused by the client before it is sent.
    CHECK(show(c.write("/a/huge", std::string(kPayloadMax, 'x'))) == err(StoreError::kTooBig));
    CHECK(c.connected());

    auto tx = c.transaction_start();
    REQUIRE(tx.ok());
    CHECK(show(c.write("/t/x", "1", *tx)) == "OK");
    CHECK(show(c.read("/t/x", *tx)) == "1");
    CHECK(show(c.read("/t/x")) == err(StoreError::kNoEnt));
    CHECK(show(c.transaction_end(*tx, true)) == "OK");
    CHECK(show(c.read("/t/x")) == "1");

    CHECK(show(c.watch("/a", "tok")) == "OK");
    auto e = c.wait_for_event(kWait);
    REQUIRE(e.ok());
    CHECK(*e == WatchEvent{"/a", "tok"});
    CHECK(show(c.unwatch("/a", "tok")) == "OK");
    CHECK(show(c.unwatch("/a", "tok")) == err(StoreError::kNoEnt));
}

TEST_CASE("socket file is 0660 and its directory is created 0755", "[daemon]") {
    Daemon d;
    struct stat st {};
    REQUIRE(::stat(d.socket().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0660);

    TempDir tmp;
    std::string sock = (tmp.path() / "run" / "pvkit" / "s.sock").string();
    Daemon nested({"--socket", sock});
    REQUIRE(::stat((tmp.path() / "run" / "pvkit").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0755);
    StoreResult<StoreClient> c = StoreClient::connect(sock, kWait);
    REQUIRE(c.ok());
    CHECK(c->write("/x", "1").ok());
}

TEST_CASE("a restricted connection acts as its domain", "[daemon][perms]") {
    Daemon d;
    StoreClient root = d.client();
    make_domain(root, 5);
    make_domain(root, 6);
    StoreClient d5 = restricted(d, 5);
    StoreClient d6 = restricted(d, 6);
    CHECK(show(d5.get_domain_path(5)) == "/local/domain/5");
    CHECK(show(d5.write("device/vif/0/state", "1")) == "OK");
    CHECK(show(root.read("/local/domain/5/device/vif/0/state")) == "1");
    CHECK(show(d5.read("/local/domain/5/device/vif/0/state")) == "1");
    CHECK(show(d6.read("/local/domain/5/device/vif/0/state")) == err(StoreError::kAccess));
    CHECK(show(d6.write("/local/domain/5/x", "1")) == err(StoreError::kAccess));
    CHECK(show(d6.read("/")) == err(StoreError::kAccess));
    CHECK(show(d5.set_perms("device", {Perm{Access::kNone, 5}, Perm{Access::kRead, 6}})) == "OK");
    CHECK(show(d6.read("/local/domain/5/device")) == "");
    // Restriction cannot be undone or changed.
    CHECK(show(d5.restrict(6)) == err(StoreError::kPerm));
    CHECK(show(d5.read("/local/domain/6")) == err(StoreError::kAccess));
}

TEST_CASE("watch events arrive in order, also while waiting for replies", "[daemon][watch]") {
    Daemon d;
    StoreClient w = d.client();
    StoreClient writer = d.client();
    REQUIRE(w.watch("/w", "mine").ok());
    // Events that come in while this client waits for its own replies are
    // queued, not lost.
    for (int i = 0; i < 20; ++i)
        REQUIRE(w.write("/w/" + std::to_string(i), "x").ok());
    REQUIRE(writer.write("/w/0", "changed").ok());
    REQUIRE(writer.rm("/w/1").ok());
    REQUIRE(writer.write("/wx", "no event: not below /w").ok());
    REQUIRE(writer.write("/w/last", "").ok());

    std::vector<std::string> expected = {"/w"};
    for (int i = 0; i < 20; ++i)
        expected.push_back("/w/" + std::to_string(i));
    expected.insert(expected.end(), {"/w/0", "/w/1", "/w/last"});
    std::vector<std::string> got;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        auto e = w.wait_for_event(kWait);
        REQUIRE(e.ok());
        CHECK(e->token == "mine");
        got.push_back(e->path);
    }
    CHECK(got == expected);
    auto none = w.wait_for_event(std::chrono::milliseconds(0));
    REQUIRE(!none.ok());
    CHECK(none.error() == StoreError::kTimedOut);
    // A timed-out wait for an event leaves the connection usable.
    CHECK(w.connected());
    CHECK(w.read("/w/last").ok());
}

TEST_CASE("events sent with a reply are queued when the call returns", "[daemon][watch][client]") {
    // The daemon sends a watch's OK and its first event in one write. Both
    // are decoded at once, so an event loop that polls native_handle() and
    // looks at queued_events() cannot miss the event.
    Daemon d;
    StoreClient c = d.client();
    REQUIRE(c.watch("/ev", "t").ok());
    CHECK(c.queued_events() == 1);
    REQUIRE(c.native_handle() >= 0);
    pollfd pfd{c.native_handle(), POLLIN, 0};
    CHECK(::poll(&pfd, 1, 0) == 0);
    auto e = c.poll_event();
    REQUIRE(e);
    CHECK(*e == WatchEvent{"/ev", "t"});
    CHECK(!c.poll_event().has_value());
}

TEST_CASE("transactions through the daemon", "[daemon][tx]") {
    Daemon d;
    StoreClient a = d.client();
    StoreClient b = d.client();
    REQUIRE(a.write("/acct/x", "10").ok());
    REQUIRE(a.write("/acct/y", "0").ok());

    auto t1 = a.transaction_start();
    REQUIRE(t1.ok());
    CHECK(show(a.read("/acct/x", *t1)) == "10");
    CHECK(a.write("/acct/x", "5", *t1).ok());
    CHECK(a.write("/acct/y", "5", *t1).ok());
    CHECK(show(b.read("/acct/y")) == "0");
    CHECK(show(a.transaction_end(*t1, true)) == "OK");
    CHECK(show(b.read("/acct/x")) == "5");
    CHECK(show(b.read("/acct/y")) == "5");

    // A failed commit changes nothing: not the tree, not the log (every
    // change is written to it before the reply, so its size is exact), and
    // it fires no watch. The marker write after it shows what the next
    // event is.
    StoreClient w = d.client();
    REQUIRE(w.watch("/acct", "acct").ok());
    auto t2 = a.transaction_start();
    REQUIRE(t2.ok());
    CHECK(show(a.read("/acct/x", *t2)) == "5");
    CHECK(a.write("/acct/y", "from-t2", *t2).ok());
    REQUIRE(b.write("/acct/x", "7").ok());
    const std::filesystem::path log = d.data_dir() / "store.log";
    const std::uintmax_t log_size = std::filesystem::file_size(log);
    CHECK(show(a.transaction_end(*t2, true)) == err(StoreError::kAgain));
    CHECK(std::filesystem::file_size(log) == log_size);
    CHECK(show(b.read("/acct/y")) == "5");
    REQUIRE(b.write("/acct/marker", "").ok());
    CHECK(std::filesystem::file_size(log) > log_size);
    for (const char* path : {"/acct", "/acct/x", "/acct/marker"}) {
        StoreResult<WatchEvent> e = w.wait_for_event(kWait);
        REQUIRE(e.ok());
        CHECK(*e == WatchEvent{path, "acct"});
    }

    auto t3 = a.transaction_start();
    REQUIRE(t3.ok());
    CHECK(a.rm("/acct", *t3).ok());
    CHECK(show(a.transaction_end(*t3, false)) == "OK");
    CHECK(show(b.read("/acct/x")) == "7");
    CHECK(show(a.transaction_end(*t3, true)) == err(StoreError::kNoEnt));

    // Neither the failed nor the aborted transaction left a record that a
    // restart after a crash would replay.
    d.kill9();
    d.start();
    StoreClient c = d.client();
    CHECK(show(c.read("/acct/x")) == "7");
    CHECK(show(c.read("/acct/y")) == "5");
    CHECK(show(c.read("/acct/marker")).empty());
}

TEST_CASE("quotas: nodes, watches, transactions, outstanding requests", "[daemon][quota]") {
    Daemon d({"--quota-nodes", "8", "--quota-watches", "3", "--quota-transactions", "2",
              "--quota-outstanding", "4"});
    StoreClient root = d.client();
    make_domain(root, 9);

    SECTION("nodes") {
        StoreClient d9 = restricted(d, 9);
        for (int i = 1; i < 8; ++i)
            REQUIRE(show(d9.write("n" + std::to_string(i), "")) == "OK");
        CHECK(show(d9.write("n8", "")) == err(StoreError::kQuota));
        CHECK(show(d9.write("n1", "overwriting is fine")) == "OK");
        REQUIRE(d9.rm("n1").ok());
        CHECK(show(d9.write("n8", "")) == "OK");
        for (int i = 0; i < 20; ++i)
            REQUIRE(root.write("/root-" + std::to_string(i), "").ok());
    }
    SECTION("watches") {
        StoreClient a = restricted(d, 9);
        StoreClient b = restricted(d, 9);
        CHECK(a.watch("w1", "t").ok());
        CHECK(a.watch("w2", "t").ok());
        CHECK(b.watch("w3", "t").ok());
        CHECK(show(b.watch("w4", "t")) == err(StoreError::kQuota));
        for (int i = 0; i < 10; ++i)
            CHECK(root.watch("/r" + std::to_string(i), "t").ok());
    }
    SECTION("transactions") {
        StoreClient a = restricted(d, 9);
        StoreClient b = restricted(d, 9);
        auto t1 = a.transaction_start();
        auto t2 = b.transaction_start();
        REQUIRE(t1.ok());
        REQUIRE(t2.ok());
        auto t3 = a.transaction_start();
        REQUIRE(!t3.ok());
        CHECK(t3.error() == StoreError::kQuota);
        REQUIRE(a.transaction_end(*t1, false).ok());
        CHECK(a.transaction_start().ok());
    }
    SECTION("outstanding requests of one connection") {
        REQUIRE(root.write("/big", std::string(2048, 'b')).ok());
        REQUIRE(root.set_perms("/big", {Perm{Access::kRead, 0}}).ok());
        RawConnection raw(d.socket());
        REQUIRE(raw.send(raw_request(PVKIT_STORE_CONTROL, 1, "restrict\0009\0"s)));
        auto ok = raw.receive();
        REQUIRE(ok);
        REQUIRE(ok->type == PVKIT_STORE_CONTROL);
        // Many reads in one send, none of the replies read yet: the daemon
        // takes them in large batches, so the fifth is over the quota of 4
        // while the first four replies are still queued.
        const std::uint32_t n = 2000;
        std::string batch;
        for (std::uint32_t i = 0; i < n; ++i)
            batch += encode(raw_request(PVKIT_STORE_READ, 100 + i, "/big\0"s));
        REQUIRE(raw.send(batch));
        std::size_t quota_errors = 0;
        for (std::uint32_t i = 0; i < n; ++i) {
            auto m = raw.receive();
            REQUIRE(m);
            REQUIRE(m->req_id == 100 + i);
            if (m->type == PVKIT_STORE_ERROR) {
                REQUIRE(error_name(*m) == "EQUOTA");
                ++quota_errors;
            } else {
                REQUIRE(m->type == PVKIT_STORE_READ);
                REQUIRE(m->payload.size() == 2048);
            }
            if (i < 4)
                CHECK(m->type == PVKIT_STORE_READ);
            if (i == 4)
                CHECK(m->type == PVKIT_STORE_ERROR);
        }
        CHECK(quota_errors > 0);
        // Domain 0 is exempt.
        RawConnection raw0(d.socket());
        std::string batch0;
        for (std::uint32_t i = 0; i < 100; ++i)
            batch0 += encode(raw_request(PVKIT_STORE_READ, i + 1, "/big\0"s));
        REQUIRE(raw0.send(batch0));
        for (std::uint32_t i = 0; i < 100; ++i) {
            auto m = raw0.receive();
            REQUIRE(m);
            CHECK(m->type == PVKIT_STORE_READ);
        }
    }
    check_serving(d);
}

TEST_CASE("the tree survives a clean restart and a kill -9", "[daemon][persist]") {
    Daemon d;
    Dump before;
    {
        StoreClient c = d.client();
        make_domain(c, 3);
        std::mt19937 rng(7);
        for (int i = 0; i < 300; ++i) {
            std::string p = "/local/domain/3/k" + std::to_string(rng() % 50) + "/v" + std::to_string(rng() % 5);
            REQUIRE(c.write(p, "value-" + std::to_string(i)).ok());
            if (i % 17 == 0)
                REQUIRE(c.rm("/local/domain/3/k" + std::to_string(rng() % 50)).ok());
            if (i % 23 == 0)
                REQUIRE(c.set_perms(p, {Perm{Access::kRead, 3}, Perm{Access::kWrite, 4}}).ok());
        }
        REQUIRE(c.write("/binary", "\x01\x02\xff\xfe\0end"s).ok());
        before = dump(c);
    }
    CHECK(before.size() > 50);
    SECTION("clean stop") {
        int status = d.stop();
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    SECTION("kill -9") {
        d.kill9();
    }
    d.start();
    StoreClient c = d.client();
    CHECK(dump(c) == before);
    // Node ownership (quota accounting) is rebuilt too.
    StoreClient d3 = restricted(d, 3);
    CHECK(d3.write("fresh", "1").ok());
}

namespace {

// Writes /crash/<round>/<i> = "v<i>" until the connection breaks; records the
// highest i the daemon acknowledged.
struct CrashWriter {
    std::mutex mutex;
    std::condition_variable cv;
    long acked = -1;

    void run(StoreClient c, int round) {
        for (long i = 0; i < 10'000'000; ++i) {
            StoreResult<void> r = c.write("/crash/" + std::to_string(round) + "/" + std::to_string(i),
                                          "v" + std::to_string(i));
            if (!r)
                return;
            std::lock_guard<std::mutex> lock(mutex);
            acked = i;
            cv.notify_all();
        }
    }
    bool wait_for(long n) {
        std::unique_lock<std::mutex> lock(mutex);
        return cv.wait_for(lock, kWait, [&] { return acked >= n; });
    }
};

void crash_rounds(Daemon& d, int rounds, long writes_before_kill) {
    std::vector<long> acked;
    for (int round = 0; round < rounds; ++round) {
        CrashWriter w;
        std::thread t([&w, &d, round] { w.run(d.client(), round); });
        bool reached = w.wait_for(writes_before_kill);
        d.kill9();
        t.join();
        REQUIRE(reached);
        acked.push_back(w.acked);
        d.start();
        StoreClient c = d.client();
        // This round's writes, and every earlier round's, are all there.
        for (int r = 0; r <= round; ++r) {
            std::string dir = "/crash/" + std::to_string(r);
            for (long i = 0; i <= acked[static_cast<std::size_t>(r)]; ++i) {
                StoreResult<std::string> v = c.read(dir + "/" + std::to_string(i));
                INFO("round " << r << " write " << i << " of " << acked[static_cast<std::size_t>(r)]
                              << " acknowledged");
                REQUIRE(v.ok());
                REQUIRE(*v == "v" + std::to_string(i));
            }
            // At most one write was in flight and may or may not have
            // landed; nothing after it can have.
            long after = acked[static_cast<std::size_t>(r)] + 2;
            CHECK(c.read(dir + "/" + std::to_string(after)).error() == StoreError::kNoEnt);
        }
    }
}

} // namespace

TEST_CASE("kill -9 mid-stream loses no acknowledged write", "[daemon][persist][crash]") {
    // A small compaction threshold makes snapshots happen during the stream.
    Daemon d({"--compact-bytes", "16384"});
    crash_rounds(d, 3, 200);
}

TEST_CASE("kill -9 with --fsync=always loses no acknowledged write", "[daemon][persist][crash]") {
    Daemon d({"--fsync", "always"});
    crash_rounds(d, 1, 50);
}

TEST_CASE("bad input: a header announcing too long a payload", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    RawConnection raw(d.socket());
    pvkit_store_msg_header h{PVKIT_STORE_WRITE, 77, 0, PVKIT_STORE_PAYLOAD_MAX + 1};
    REQUIRE(raw.send(std::string_view(reinterpret_cast<const char*>(&h), sizeof h)));
    auto reply = raw.receive();
    REQUIRE(reply);
    CHECK(reply->req_id == 77);
    CHECK(error_name(*reply) == "EINVAL");
    CHECK(raw.wait_for_close());
    by.check();
}

TEST_CASE("bad input: unknown operation codes", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    RawConnection raw(d.socket());
    for (std::uint32_t type : {20u, PVKIT_STORE_OP_COUNT, 1000u, 0xFFFFFFFFu}) {
        REQUIRE(raw.send(raw_request(type, type, "payload\0"s)));
        auto reply = raw.receive();
        REQUIRE(reply);
        CHECK(reply->req_id == type);
        CHECK(error_name(*reply) == "ENOSYS");
    }
    REQUIRE(raw.send(raw_request(PVKIT_STORE_WATCH_EVENT, 5, "/x\0t\0"s)));
    auto reply = raw.receive();
    REQUIRE(reply);
    CHECK(error_name(*reply) == "EINVAL");
    // The same connection carries on.
    REQUIRE(raw.send(raw_request(PVKIT_STORE_GET_DOMAIN_PATH, 6, "1\0"s)));
    reply = raw.receive();
    REQUIRE(reply);
    CHECK(reply->type == PVKIT_STORE_GET_DOMAIN_PATH);
    by.check();
}

TEST_CASE("bad input: broken UTF-8 and non-ASCII paths", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    RawConnection raw(d.socket());
    std::uint32_t id = 1;
    for (const std::string& path : {"/\xc3("s, "/\xff\xfe"s, "/caf\xc3\xa9"s, "/\xed\xa0\x80"s, "/a\x7f"s}) {
        for (std::uint32_t type : {PVKIT_STORE_READ, PVKIT_STORE_MKDIR, PVKIT_STORE_RM, PVKIT_STORE_DIRECTORY}) {
            REQUIRE(raw.send(raw_request(type, id, path + '\0')));
            auto reply = raw.receive();
            REQUIRE(reply);
            CHECK(reply->req_id == id);
            CHECK(error_name(*reply) == "EINVAL");
            ++id;
        }
        REQUIRE(raw.send(raw_request(PVKIT_STORE_WRITE, id, path + '\0' + "v")));
        auto reply = raw.receive();
        REQUIRE(reply);
        CHECK(error_name(*reply) == "EINVAL");
        ++id;
    }
    by.check();
    StoreClient c = d.client();
    auto ls = c.directory("/");
    REQUIRE(ls.ok());
    CHECK(*ls == std::vector<std::string>{"bystander", "bystander-tx", "health"});
}

TEST_CASE("bad input: embedded NUL and missing terminators", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    RawConnection raw(d.socket());
    const std::pair<std::uint32_t, std::string> cases[] = {
        {PVKIT_STORE_READ, "/a\0b\0"s},
        {PVKIT_STORE_READ, "/a"s},
        {PVKIT_STORE_READ, ""s},
        {PVKIT_STORE_MKDIR, "/a\0\0"s},
        {PVKIT_STORE_WATCH, "/a\0tok"s},
        {PVKIT_STORE_SET_PERMS, "/a\0n0\0r\0"s},
        {PVKIT_STORE_TRANSACTION_END, "TF\0"s},
        {PVKIT_STORE_CONTROL, "restrict\0001\0extra\0"s},
    };
    std::uint32_t id = 1;
    for (const auto& [type, payload] : cases) {
        REQUIRE(raw.send(raw_request(type, id, payload)));
        auto reply = raw.receive();
        REQUIRE(reply);
        CHECK(reply->req_id == id);
        INFO(type_name(type));
        CHECK(error_name(*reply) == "EINVAL");
        ++id;
    }
    by.check();
}

TEST_CASE("bad input: a client that disconnects mid-message", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    StoreClient watcher = d.client();
    REQUIRE(watcher.watch("/mid", "t").ok());
    {
        RawConnection raw(d.socket());
        std::string msg = encode(raw_request(PVKIT_STORE_WRITE, 1, "/mid/x\0value"s));
        REQUIRE(raw.send(msg.substr(0, 7))); // inside the header
    }
    {
        RawConnection raw(d.socket());
        std::string msg = encode(raw_request(PVKIT_STORE_WRITE, 1, "/mid/y\0value"s));
        REQUIRE(raw.send(msg.substr(0, msg.size() - 3))); // inside the payload
    }
    {
        // A transaction and a watch left open by a vanishing client.
        RawConnection raw(d.socket());
        REQUIRE(raw.send(raw_request(PVKIT_STORE_TRANSACTION_START, 1, "\0"s)));
        REQUIRE(raw.receive());
        REQUIRE(raw.send(raw_request(PVKIT_STORE_WATCH, 2, "/mid\0gone\0"s)));
        REQUIRE(raw.receive());
    }
    by.check();
    StoreClient c = d.client();
    CHECK(show(c.read("/mid/x")) == err(StoreError::kNoEnt));
    CHECK(show(c.read("/mid/y")) == err(StoreError::kNoEnt));
    REQUIRE(c.write("/mid/z", "").ok());
    auto first = watcher.wait_for_event(kWait);
    REQUIRE(first.ok());
    CHECK(first->path == "/mid");
    auto second = watcher.wait_for_event(kWait);
    REQUIRE(second.ok());
    CHECK(second->path == "/mid/z");
}

TEST_CASE("bad input: a client that never reads its replies is cut off", "[daemon][bad]") {
    Daemon d({"--max-output-bytes", "65536"});
    Bystander by(d);
    {
        StoreClient c = d.client();
        REQUIRE(c.write("/big", std::string(2048, 'b')).ok());
    }
    RawConnection raw(d.socket());
    // 2000 replies of 2 KiB cannot all sit in the socket and 64 KiB of queue.
    std::string batch;
    for (std::uint32_t i = 0; i < 2000; ++i)
        batch += encode(raw_request(PVKIT_STORE_READ, i + 1, "/big\0"s));
    (void)raw.send(batch); // may fail once the daemon hangs up
    CHECK(raw.wait_for_close());
    by.check();
}

TEST_CASE("bad input: a watcher that never reads is cut off, writers carry on", "[daemon][bad]") {
    Daemon d({"--max-output-bytes", "65536"});
    Bystander by(d);
    RawConnection slow(d.socket());
    REQUIRE(slow.send(raw_request(PVKIT_STORE_WATCH, 1, "/flood\0t\0"s)));
    StoreClient writer = d.client();
    // Each event is about 230 bytes: 3000 of them are far more than the
    // socket buffer and the 64 KiB queue together.
    const std::string name(200, 'n');
    for (int i = 0; i < 3000; ++i)
        REQUIRE(writer.write("/flood/" + name + std::to_string(i), "").ok());
    CHECK(slow.wait_for_close());
    by.check();
}

TEST_CASE("bad input: random garbage from many clients", "[daemon][bad]") {
    Daemon d;
    Bystander by(d);
    std::mt19937 rng(2024);
    for (int conn = 0; conn < 20; ++conn) {
        RawConnection raw(d.socket());
        std::string junk(4096, '\0');
        for (char& ch : junk)
            ch = static_cast<char>(rng() & 0xFF);
        if (conn % 2 == 0) {
            // Plausible headers with random types and small lengths.
            junk.clear();
            for (int m = 0; m < 50; ++m) {
                std::string payload(rng() % 64, 'x');
                for (char& ch : payload)
                    ch = static_cast<char>(rng() & 0xFF);
                junk += encode(raw_request(static_cast<std::uint32_t>(rng() % 30), static_cast<std::uint32_t>(m),
                                           payload, static_cast<std::uint32_t>(rng() % 3)));
            }
        }
        (void)raw.send(junk);
    }
    by.check();
}

namespace {

// Makes ftruncate() to any length beyond the log header (16 bytes) fail
// with EIO in the calling thread and in every process it starts from now
// on: pvkit-stored then cannot cut a failed append back. Its other
// truncations (a fresh log to 0, compaction to the header) still work. A
// seccomp filter cannot be removed, so callers use a thread of their own.
void deny_log_cut_back_in_this_thread() {
    auto stmt = [](std::uint32_t code, std::uint32_t k) {
        return sock_filter{static_cast<std::uint16_t>(code), 0, 0, k};
    };
    auto jump = [](std::uint32_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
        return sock_filter{static_cast<std::uint16_t>(code), jt, jf, k};
    };
    constexpr std::uint32_t kLength = offsetof(seccomp_data, args) + sizeof(std::uint64_t);
    constexpr std::uint32_t kFail = SECCOMP_RET_ERRNO | (EIO & SECCOMP_RET_DATA);
    std::array code = {
        stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_ftruncate, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        // The 64-bit length: its upper half (little-endian), then its lower.
        stmt(BPF_LD | BPF_W | BPF_ABS, kLength + 4),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
        stmt(BPF_RET | BPF_K, kFail),
        stmt(BPF_LD | BPF_W | BPF_ABS, kLength),
        jump(BPF_JMP | BPF_JGT | BPF_K, 16, 0, 1),
        stmt(BPF_RET | BPF_K, kFail),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    // No new privileges is what lets an unprivileged process install a filter.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        pvkit::throw_errno("prctl PR_SET_NO_NEW_PRIVS");
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        pvkit::throw_errno("prctl PR_SET_SECCOMP");
}

// pvkit-stored started from a thread that carries the filter above and stays
// alive while the daemon runs (the tests' children get SIGKILL when the
// thread that forked them ends). The daemon ignores SIGXFSZ (inherited), so
// a file size limit makes its writes fail with EFBIG instead of killing it.
class DaemonWithoutCutBack {
public:
    DaemonWithoutCutBack() {
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        struct sigaction old {};
        if (::sigaction(SIGXFSZ, &ignore, &old) != 0)
            pvkit::throw_errno("sigaction SIGXFSZ");
        std::future<void> started = m_started.get_future();
        m_thread = std::thread([this] {
            try {
                deny_log_cut_back_in_this_thread();
                m_daemon.emplace();
            } catch (...) {
                m_started.set_exception(std::current_exception());
                return;
            }
            m_started.set_value();
            m_release.get_future().wait();
        });
        try {
            started.get();
        } catch (...) {
            (void)::sigaction(SIGXFSZ, &old, nullptr);
            m_thread.join();
            throw;
        }
        (void)::sigaction(SIGXFSZ, &old, nullptr);
    }
    DaemonWithoutCutBack(const DaemonWithoutCutBack&) = delete;
    DaemonWithoutCutBack& operator=(const DaemonWithoutCutBack&) = delete;
    DaemonWithoutCutBack(DaemonWithoutCutBack&&) = delete;
    DaemonWithoutCutBack& operator=(DaemonWithoutCutBack&&) = delete;
    ~DaemonWithoutCutBack() {
        if (m_daemon->running())
            m_daemon->kill9();
        release();
    }
    // Kills it and starts it again from the calling thread: without the
    // filter and without a size limit.
    void kill9_and_restart_normally() {
        m_daemon->kill9();
        release();
        m_daemon->start();
    }
    Daemon& daemon() { return *m_daemon; }

private:
    void release() {
        if (!m_thread.joinable())
            return;
        m_release.set_value();
        m_thread.join();
    }

    std::optional<Daemon> m_daemon;
    std::promise<void> m_started;
    std::promise<void> m_release;
    std::thread m_thread;
};

// The process at the other end of a client's connection.
pid_t peer_pid(StoreClient& c) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        pvkit::throw_errno("getsockopt SO_PEERCRED");
    return cred.pid;
}

void set_file_size_limit(pid_t pid, rlim_t soft) {
    rlimit old{};
    if (::prlimit(pid, RLIMIT_FSIZE, nullptr, &old) != 0)
        pvkit::throw_errno("prlimit");
    rlimit lim{soft, old.rlim_max};
    if (::prlimit(pid, RLIMIT_FSIZE, &lim, nullptr) != 0)
        pvkit::throw_errno("prlimit RLIMIT_FSIZE");
}

} // namespace

TEST_CASE("a torn append that cannot be cut back latches the log: writes EIO, reads work",
          "[daemon][persist][latch]") {
    DaemonWithoutCutBack guarded;
    Daemon& d = guarded.daemon();
    StoreClient c = d.client();
    REQUIRE(c.write("/kept/a", "1").ok());
    REQUIRE(c.write("/kept/b", "2").ok());
    const std::filesystem::path log = d.data_dir() / "store.log";
    const std::uintmax_t good = std::filesystem::file_size(log);

    // The next record gets 5 bytes into the file, then EFBIG; cutting them
    // off fails (the filter), so they stay: a torn record.
    const pid_t pid = peer_pid(c);
    set_file_size_limit(pid, static_cast<rlim_t>(good + 5));
    CHECK(show(c.write("/lost/torn", "x")) == err(StoreError::kIo));
    REQUIRE(std::filesystem::file_size(log) == good + 5);

    // With the limit gone a write would succeed again, but it would go after
    // the torn bytes and be dropped on replay: refused, and nothing written.
    set_file_size_limit(pid, RLIM_INFINITY);
    CHECK(show(c.write("/lost/after", "y")) == err(StoreError::kIo));
    CHECK(show(c.mkdir("/lost/dir")) == err(StoreError::kIo));
    StoreResult<TxId> tx = c.transaction_start();
    REQUIRE(tx.ok());
    CHECK(c.write("/lost/tx", "z", *tx).ok());
    CHECK(show(c.transaction_end(*tx, true)) == err(StoreError::kIo));
    CHECK(std::filesystem::file_size(log) == good + 5);
    // Reads carry on, from this client and a new one.
    CHECK(show(c.read("/kept/a")) == "1");
    CHECK(show(c.read("/lost/after")) == err(StoreError::kNoEnt));
    StoreClient other = d.client();
    CHECK(show(other.read("/kept/b")) == "2");
    CHECK(show(other.write("/lost/other", "w")) == err(StoreError::kIo));
    REQUIRE(d.alive());

    // A restart cuts the torn tail off; everything acknowledged is there,
    // nothing refused is, and writes work again.
    guarded.kill9_and_restart_normally();
    StoreClient after = d.client();
    CHECK(show(after.read("/kept/a")) == "1");
    CHECK(show(after.read("/kept/b")) == "2");
    CHECK(show(after.read("/lost")) == err(StoreError::kNoEnt));
    CHECK(show(after.write("/new", "ok")) == "OK");
    CHECK(std::filesystem::file_size(log) > good);
}

TEST_CASE("load: concurrent clients, nothing lost or reordered", "[daemon][load]") {
    Daemon d;
    constexpr int kWriters = 4;
    constexpr int kWritesEach = 1000;
    constexpr int kCounters = 2;
    constexpr int kIncrementsEach = 150;
    // A hang deadline, not a performance bound: all the work below takes a
    // few seconds even under a sanitizer on a loaded machine. Every loop
    // checks it, and no single call blocks for more than kWait, so a daemon
    // that stops making progress fails the test here with a clear message
    // instead of running into ctest's timeout.
    constexpr std::chrono::seconds kDeadline{120};
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    auto past_deadline = [deadline] { return std::chrono::steady_clock::now() >= deadline; };
    const std::string overdue =
        " not done within the " + std::to_string(kDeadline.count()) + " s deadline";

    StoreClient watcher = d.client();
    REQUIRE(watcher.watch("/load", "w").ok());
    {
        StoreClient c = d.client();
        REQUIRE(c.write("/counter", "0").ok());
    }

    std::mutex mutex;
    std::vector<std::string> failures;
    auto fail = [&](const std::string& what) {
        std::lock_guard<std::mutex> lock(mutex);
        failures.push_back(what);
    };

    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
        threads.emplace_back([&, w] {
            StoreClient c = d.client();
            for (int i = 0; i < kWritesEach; ++i) {
                if (past_deadline())
                    return fail("writer " + std::to_string(w) + ": write " + std::to_string(i) +
                                overdue);
                std::string p = "/load/c" + std::to_string(w) + "/" + std::to_string(i);
                if (!c.write(p, std::to_string(i)).ok())
                    return fail("write " + p);
                if (i % 10 == 0) {
                    StoreResult<std::string> v = c.read(p);
                    if (!v || *v != std::to_string(i))
                        return fail("read back " + p);
                }
            }
        });
    }
    std::atomic<long> retries{0};
    for (int k = 0; k < kCounters; ++k) {
        threads.emplace_back([&] {
            StoreClient c = d.client();
            for (int i = 0; i < kIncrementsEach; ++i) {
                for (int attempt = 0;; ++attempt) {
                    if (attempt == 100000)
                        return fail("counter: no progress");
                    if (past_deadline())
                        return fail("counter: increment " + std::to_string(i) + overdue);
                    StoreResult<TxId> tx = c.transaction_start();
                    if (!tx)
                        return fail("transaction_start");
                    StoreResult<std::string> v = c.read("/counter", *tx);
                    if (!v)
                        return fail("counter read");
                    if (!c.write("/counter", std::to_string(std::stol(*v) + 1), *tx).ok())
                        return fail("counter write");
                    StoreResult<void> end = c.transaction_end(*tx, true);
                    if (end)
                        break;
                    if (end.error() != StoreError::kAgain)
                        return fail("counter commit: " + std::string(to_string(end.error())));
                    ++retries;
                }
            }
        });
    }

    // Every write produces one event, and each writer's events must come
    // in the order it wrote, with none missing.
    std::vector<int> next(kWriters, 0);
    auto first = watcher.wait_for_event(kWait);
    REQUIRE(first.ok());
    CHECK(first->path == "/load");
    for (int n = 0; n < kWriters * kWritesEach; ++n) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            FAIL_CHECK("watch event " << n << " of " << kWriters * kWritesEach << overdue);
            break;
        }
        auto e = watcher.wait_for_event(std::min(left, std::chrono::milliseconds(kWait)));
        if (!e) {
            FAIL_CHECK("watch event " << n << ": " << to_string(e.error()));
            break;
        }
        // "/load/c<w>/<i>"
        std::size_t slash = e->path.rfind('/');
        int w = std::stoi(e->path.substr(7, slash - 7));
        int i = std::stoi(e->path.substr(slash + 1));
        REQUIRE(w >= 0);
        REQUIRE(w < kWriters);
        REQUIRE(i == next[static_cast<std::size_t>(w)]);
        ++next[static_cast<std::size_t>(w)];
    }
    // The threads check the deadline between calls, so they end within
    // kWait of it.
    for (std::thread& t : threads)
        t.join();
    for (const std::string& f : failures)
        UNSCOPED_INFO(f);
    CHECK(failures.empty());

    StoreClient c = d.client();
    for (int w = 0; w < kWriters; ++w) {
        for (int i = 0; i < kWritesEach; ++i) {
            StoreResult<std::string> v = c.read("/load/c" + std::to_string(w) + "/" + std::to_string(i));
            REQUIRE(v.ok());
            REQUIRE(*v == std::to_string(i));
        }
    }
    CHECK(show(c.read("/counter")) == std::to_string(kCounters * kIncrementsEach));
    // Nothing else was queued for the watcher.
    auto extra = watcher.wait_for_event(std::chrono::milliseconds(0));
    CHECK(!extra.ok());
    if (past_deadline())
        FAIL("load test" << overdue);
}

TEST_CASE("the client reports a daemon that is gone", "[daemon][client]") {
    Daemon d;
    StoreClient c = d.client();
    REQUIRE(c.write("/x", "1").ok());
    d.kill9();
    StoreResult<std::string> r = c.read("/x");
    REQUIRE(!r.ok());
    CHECK(r.error() == StoreError::kNotConn);
    CHECK(!c.connected());
    CHECK(c.read("/x").error() == StoreError::kNotConn);
    std::string detail;
    auto again = StoreClient::connect(d.socket(), kWait, &detail);
    REQUIRE(!again.ok());
    CHECK(detail.find(d.socket()) != std::string::npos);
}
