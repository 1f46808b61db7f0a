// pvkit-stored as a real process: every operation through the client
// library, domain isolation, watches, transactions, quotas, persistence
// across restarts and kill -9, hostile clients, and load.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <condition_variable>
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

    auto t2 = a.transaction_start();
    REQUIRE(t2.ok());
    CHECK(show(a.read("/acct/x", *t2)) == "5");
    CHECK(a.write("/acct/y", "from-t2", *t2).ok());
    REQUIRE(b.write("/acct/x", "7").ok());
    CHECK(show(a.transaction_end(*t2, true)) == err(StoreError::kAgain));
    CHECK(show(b.read("/acct/y")) == "5");

    auto t3 = a.transaction_start();
    REQUIRE(t3.ok());
    CHECK(a.rm("/acct", *t3).ok());
    CHECK(show(a.transaction_end(*t3, false)) == "OK");
    CHECK(show(b.read("/acct/x")) == "7");
    CHECK(show(a.transaction_end(*t3, true)) == err(StoreError::kNoEnt));
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
    RawConnection raw(d.socket());
    pvkit_store_msg_header h{PVKIT_STORE_WRITE, 77, 0, PVKIT_STORE_PAYLOAD_MAX + 1};
    REQUIRE(raw.send(std::string_view(reinterpret_cast<const char*>(&h), sizeof h)));
    auto reply = raw.receive();
    REQUIRE(reply);
    CHECK(reply->req_id == 77);
    CHECK(error_name(*reply) == "EINVAL");
    CHECK(raw.wait_for_close());
    check_serving(d);
}

TEST_CASE("bad input: unknown operation codes", "[daemon][bad]") {
    Daemon d;
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
    check_serving(d);
}

TEST_CASE("bad input: broken UTF-8 and non-ASCII paths", "[daemon][bad]") {
    Daemon d;
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
    check_serving(d);
    StoreClient c = d.client();
    auto ls = c.directory("/");
    REQUIRE(ls.ok());
    CHECK(*ls == std::vector<std::string>{"health"});
}

TEST_CASE("bad input: embedded NUL and missing terminators", "[daemon][bad]") {
    Daemon d;
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
    check_serving(d);
}

TEST_CASE("bad input: a client that disconnects mid-message", "[daemon][bad]") {
    Daemon d;
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
    check_serving(d);
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
    check_serving(d);
}

TEST_CASE("bad input: a watcher that never reads is cut off, writers carry on", "[daemon][bad]") {
    Daemon d({"--max-output-bytes", "65536"});
    RawConnection slow(d.socket());
    REQUIRE(slow.send(raw_request(PVKIT_STORE_WATCH, 1, "/flood\0t\0"s)));
    StoreClient writer = d.client();
    // Each event is about 230 bytes: 3000 of them are far more than the
    // socket buffer and the 64 KiB queue together.
    const std::string name(200, 'n');
    for (int i = 0; i < 3000; ++i)
        REQUIRE(writer.write("/flood/" + name + std::to_string(i), "").ok());
    CHECK(slow.wait_for_close());
    check_serving(d);
}

TEST_CASE("bad input: random garbage from many clients", "[daemon][bad]") {
    Daemon d;
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
    check_serving(d);
}

TEST_CASE("load: concurrent clients, nothing lost or reordered", "[daemon][load]") {
    Daemon d;
    constexpr int kWriters = 4;
    constexpr int kWritesEach = 1000;
    constexpr int kCounters = 2;
    constexpr int kIncrementsEach = 150;

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
        auto e = watcher.wait_for_event(kWait);
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
    for (std::thread& t : threads)
        t.join();
    CHECK(failures.empty());
    for (const std::string& f : failures)
        UNSCOPED_INFO(f);

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
