// The store core without sockets: every operation, permissions, watches,
// transactions, quotas and the journal hook.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "pvkit/store/store.hpp"

using namespace pvkit::store;
using namespace std::string_literals;

namespace {

struct Event {
    std::string path;
    std::string token;
    friend bool operator==(const Event&, const Event&) = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) { return os << e.path << "|" << e.token; }

// Drives a Store like the daemon does and keeps each connection's events.
// Results are strings so that checks read naturally: a reply payload, or
// "!" and the error name.
class Harness {
public:
    explicit Harness(StoreLimits limits = {}) : store(limits) {}

    ConnId connect(pvkit_domid_t domid = 0) {
        ConnId c = store.connect();
        if (domid != 0)
            REQUIRE(store.restrict(c, domid).ok());
        return c;
    }

    std::string request(ConnId c, std::uint32_t type, const std::string& payload, std::uint32_t tx = 0) {
        std::vector<Outgoing> out;
        std::uint32_t req_id = ++m_req;
        store.handle(c, Message{type, req_id, tx, payload}, out);
        std::optional<Message> reply;
        for (const Outgoing& o : out) {
            if (o.is_reply) {
                REQUIRE(o.conn == c);
                REQUIRE(!reply.has_value());
                reply = o.msg;
                continue;
            }
            REQUIRE(o.msg.type == PVKIT_STORE_WATCH_EVENT);
            REQUIRE(o.msg.req_id == 0);
            auto args = split_args(o.msg.payload);
            REQUIRE(args);
            REQUIRE(args->size() == 2);
            m_events[o.conn].push_back(Event{std::string((*args)[0]), std::string((*args)[1])});
        }
        REQUIRE(reply.has_value());
        CHECK(reply->req_id == req_id);
        CHECK(reply->tx_id == tx);
        if (reply->type == PVKIT_STORE_ERROR) {
            auto args = split_args(reply->payload);
            REQUIRE(args);
            return "!" + std::string(args->front());
        }
        CHECK(reply->type == type);
        if (reply->payload == "OK\0"s)
            return "OK";
        return reply->payload;
    }

    std::string read(ConnId c, const std::string& p, std::uint32_t tx = 0) {
        return request(c, PVKIT_STORE_READ, p + '\0', tx);
    }
    std::string write(ConnId c, const std::string& p, const std::string& v, std::uint32_t tx = 0) {
        return request(c, PVKIT_STORE_WRITE, p + '\0' + v, tx);
    }
    std::string mkdir(ConnId c, const std::string& p, std::uint32_t tx = 0) {
        return request(c, PVKIT_STORE_MKDIR, p + '\0', tx);
    }
    std::string rm(ConnId c, const std::string& p, std::uint32_t tx = 0) {
        return request(c, PVKIT_STORE_RM, p + '\0', tx);
    }
    std::string ls(ConnId c, const std::string& p, std::uint32_t tx = 0) {
        std::string r = request(c, PVKIT_STORE_DIRECTORY, p + '\0', tx);
        if (!r.empty() && r[0] == '!')
            return r;
        // "a\0b\0" -> "a b"
        std::string out;
        for (char ch : r)
            out += ch == '\0' ? ' ' : ch;
        if (!out.empty())
            out.pop_back();
        return out;
    }
    std::string perms(ConnId c, const std::string& p) {
        std::string r = request(c, PVKIT_STORE_GET_PERMS, p + '\0');
        if (!r.empty() && r[0] == '!')
            return r;
        std::string out;
        for (char ch : r)
            out += ch == '\0' ? ' ' : ch;
        out.pop_back();
        return out;
    }
    std::string set_perms(ConnId c, const std::string& p, const std::vector<std::string>& perms,
                          std::uint32_t tx = 0) {
        std::string payload = p + '\0';
        for (const std::string& s : perms)
            payload += s + '\0';
        return request(c, PVKIT_STORE_SET_PERMS, payload, tx);
    }
    std::string watch(ConnId c, const std::string& p, const std::string& token) {
        return request(c, PVKIT_STORE_WATCH, p + '\0' + token + '\0');
    }
    std::string unwatch(ConnId c, const std::string& p, const std::string& token) {
        return request(c, PVKIT_STORE_UNWATCH, p + '\0' + token + '\0');
    }
    std::uint32_t tx_start(ConnId c) {
        std::string r = request(c, PVKIT_STORE_TRANSACTION_START, "\0"s);
        REQUIRE(!r.empty());
        REQUIRE(r.back() == '\0');
        return static_cast<std::uint32_t>(std::stoul(r));
    }
    std::string tx_end(ConnId c, std::uint32_t tx, bool commit) {
        return request(c, PVKIT_STORE_TRANSACTION_END, commit ? "T\0"s : "F\0"s, tx);
    }

    // Events delivered to `c` since the last call.
    std::vector<Event> events(ConnId c) {
        std::vector<Event> e = std::move(m_events[c]);
        m_events.erase(c);
        return e;
    }

    // Creates /local/domain/<d> owned by d, as a toolstack would.
    void make_domain(pvkit_domid_t d) {
        ConnId root = connect();
        std::string p = "/local/domain/" + std::to_string(d);
        REQUIRE(mkdir(root, p) == "OK");
        REQUIRE(set_perms(root, p, {"n" + std::to_string(d)}) == "OK");
        store.disconnect(root);
    }

    Store store;

private:
    std::uint32_t m_req = 0;
    std::map<ConnId, std::vector<Event>> m_events;
};

// Records every change set; can be told to fail.
class RecordingJournal : public Journal {
public:
    bool append(const ChangeSet& changes) override {
        if (fail)
            return false;
        records.push_back(changes);
        return true;
    }
    std::vector<ChangeSet> records;
    bool fail = false;
};

std::map<std::string, std::pair<std::string, std::string>> dump(const Store& s) {
    std::map<std::string, std::pair<std::string, std::string>> out;
    s.for_each_node([&out](const std::string& path, const NodeData& n) {
        out[path] = {n.value, format_perms(n.perms)};
    });
    return out;
}

} // namespace

TEST_CASE("write, read, overwrite and intermediate nodes", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.write(c, "/a/b/c", "v1") == "OK");
    CHECK(h.read(c, "/a/b/c") == "v1");
    CHECK(h.read(c, "/a/b") == "");
    CHECK(h.read(c, "/a") == "");
    CHECK(h.write(c, "/a/b/c", "v2") == "OK");
    CHECK(h.read(c, "/a/b/c") == "v2");
    CHECK(h.write(c, "/bin", "a\0b\xff"s) == "OK");
    CHECK(h.read(c, "/bin") == "a\0b\xff"s);
    CHECK(h.write(c, "/empty", "") == "OK");
    CHECK(h.read(c, "/empty") == "");
    CHECK(h.read(c, "/nope") == "!ENOENT");
    CHECK(h.read(c, "/a/nope/deeper") == "!ENOENT");
}

TEST_CASE("directory lists children in name order", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.ls(c, "/") == "");
    for (const char* n : {"/d/zeta", "/d/alpha", "/d/mid/x"})
        REQUIRE(h.write(c, n, "") == "OK");
    CHECK(h.ls(c, "/d") == "alpha mid zeta");
    CHECK(h.ls(c, "/d/alpha") == "");
    CHECK(h.ls(c, "/") == "d");
    CHECK(h.ls(c, "/none") == "!ENOENT");
}

TEST_CASE("directory larger than a message is E2BIG", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    // 100 names of 50 bytes: 5100 bytes of listing.
    for (int i = 0; i < 100; ++i)
        REQUIRE(h.mkdir(c, "/big/" + std::string(45, 'n') + std::to_string(1000 + i)) == "OK");
    CHECK(h.ls(c, "/big") == "!E2BIG");
}

TEST_CASE("mkdir creates empty nodes and accepts existing ones", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.mkdir(c, "/m/n") == "OK");
    CHECK(h.read(c, "/m/n") == "");
    CHECK(h.write(c, "/m/n", "keep") == "OK");
    CHECK(h.mkdir(c, "/m/n") == "OK");
    CHECK(h.read(c, "/m/n") == "keep");
}

TEST_CASE("rm removes a subtree and is idempotent under an existing parent", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    REQUIRE(h.write(c, "/r/a/b", "1") == "OK");
    REQUIRE(h.write(c, "/r/a/c", "2") == "OK");
    REQUIRE(h.write(c, "/r/keep", "3") == "OK");
    std::size_t before = h.store.node_count();
    CHECK(h.rm(c, "/r/a") == "OK");
    CHECK(h.store.node_count() == before - 3);
    CHECK(h.read(c, "/r/a/b") == "!ENOENT");
    CHECK(h.ls(c, "/r") == "keep");
    CHECK(h.rm(c, "/r/a") == "OK");        // parent exists: fine
    CHECK(h.rm(c, "/r/x/y") == "!ENOENT"); // parent missing
    CHECK(h.rm(c, "/") == "!EINVAL");
}

TEST_CASE("values are limited to max_value_bytes", "[core][ops]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.write(c, "/v", std::string(2048, 'x')) == "OK");
    CHECK(h.write(c, "/v", std::string(2049, 'x')) == "!E2BIG");
    CHECK(h.read(c, "/v") == std::string(2048, 'x'));
    CHECK(h.write(c, "/w", std::string(2049, 'x')) == "!E2BIG");
    CHECK(h.read(c, "/w") == "!ENOENT");
}

TEST_CASE("malformed paths and payloads are EINVAL for every operation", "[core][bad]") {
    Harness h;
    ConnId c = h.connect();
    const std::string bad_paths[] = {"", "//x", "/a/", "/caf\xc3\xa9", "/\xc3(", "/a b", "@x", "/a.b"};
    for (const std::string& p : bad_paths) {
        INFO("path " << p);
        CHECK(h.read(c, p) == "!EINVAL");
        CHECK(h.write(c, p, "v") == "!EINVAL");
        CHECK(h.mkdir(c, p) == "!EINVAL");
        CHECK(h.rm(c, p) == "!EINVAL");
        CHECK(h.ls(c, p) == "!EINVAL");
        CHECK(h.perms(c, p) == "!EINVAL");
        CHECK(h.set_perms(c, p, {"n0"}) == "!EINVAL");
        if (p != "@x") // a special watch name, though never a node
            CHECK(h.watch(c, p, "t") == "!EINVAL");
    }
    // An embedded NUL splits the path into two arguments.
    CHECK(h.request(c, PVKIT_STORE_READ, "/a\0b\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_MKDIR, "/a\0b\0"s) == "!EINVAL");
    // A path without its NUL terminator.
    CHECK(h.request(c, PVKIT_STORE_READ, "/a") == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_READ, "") == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_WRITE, "/a") == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_WATCH, "/a\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_WATCH, "/a\0t\0x\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_SET_PERMS, "/a\0"s) == "!EINVAL");
    CHECK(h.set_perms(c, "/", {"x0"}) == "!EINVAL");
    CHECK(h.set_perms(c, "/", {"r0", "q"}) == "!EINVAL");
    CHECK(h.store.node_count() == 1);
}

TEST_CASE("unknown and unsupported types get ENOSYS; daemon-only types EINVAL", "[core][bad]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.request(c, 20, "") == "!ENOSYS");
    CHECK(h.request(c, PVKIT_STORE_OP_COUNT, "") == "!ENOSYS");
    CHECK(h.request(c, 0xFFFFFFFFu, "") == "!ENOSYS");
    CHECK(h.request(c, PVKIT_STORE_INTRODUCE, "1\0002\0003\0"s) == "!ENOSYS");
    CHECK(h.request(c, PVKIT_STORE_DIRECTORY_PART, "/\0000\0"s) == "!ENOSYS");
    CHECK(h.request(c, PVKIT_STORE_WATCH_EVENT, "/\0t\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_ERROR, "EINVAL\0"s) == "!EINVAL");
    CHECK(h.read(c, "/") == "");
}

TEST_CASE("GET_DOMAIN_PATH", "[core][ops]") {
    Harness h;
    ConnId c = h.connect(9);
    CHECK(h.request(c, PVKIT_STORE_GET_DOMAIN_PATH, "7\0"s) == "/local/domain/7\0"s);
    CHECK(h.request(c, PVKIT_STORE_GET_DOMAIN_PATH, "0\0"s) == "/local/domain/0\0"s);
    CHECK(h.request(c, PVKIT_STORE_GET_DOMAIN_PATH, "x\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_GET_DOMAIN_PATH, "99999\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_GET_DOMAIN_PATH, "7"s) == "!EINVAL");
}

TEST_CASE("restrict: once, to a real domid, before watches or transactions", "[core][perms]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "restrict\0000\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "restrict\00032752\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "restrict\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "frobnicate\0005\0"s) == "!EINVAL");
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "restrict\0005\0"s) == "OK");
    CHECK(h.store.domid_of(c) == 5);
    CHECK(!h.store.is_privileged(c));
    CHECK(h.request(c, PVKIT_STORE_CONTROL, "restrict\0006\0"s) == "!EPERM");
    CHECK(h.store.domid_of(c) == 5);

    ConnId w = h.connect();
    REQUIRE(h.watch(w, "/x", "t") == "OK");
    CHECK(h.request(w, PVKIT_STORE_CONTROL, "restrict\0005\0"s) == "!EBUSY");
    ConnId t = h.connect();
    h.tx_start(t);
    CHECK(h.request(t, PVKIT_STORE_CONTROL, "restrict\0005\0"s) == "!EBUSY");
}

TEST_CASE("permissions: domains see and change only what they may", "[core][perms]") {
    Harness h;
    h.make_domain(5);
    h.make_domain(6);
    ConnId root = h.connect();
    ConnId d5 = h.connect(5);
    ConnId d6 = h.connect(6);

    // The root is n0: no domain may read or write it.
    CHECK(h.read(d5, "/") == "!EACCES");
    CHECK(h.write(d5, "/evil", "x") == "!EACCES");
    CHECK(h.ls(d5, "/local/domain") == "!EACCES");

    // A domain works in its own directory, relative paths included.
    CHECK(h.write(d5, "data/key", "five") == "OK");
    CHECK(h.read(d5, "/local/domain/5/data/key") == "five");
    CHECK(h.read(d5, "data/key") == "five");
    CHECK(h.perms(d5, "data/key") == "n5");
    CHECK(h.store.nodes_owned(5) == 3); // its directory, data, data/key

    // Another domain can neither read it nor tell whether it exists.
    CHECK(h.read(d6, "/local/domain/5/data/key") == "!EACCES");
    CHECK(h.read(d6, "/local/domain/5/absent") == "!EACCES");
    CHECK(h.read(d5, "/local/domain/5/absent") == "!ENOENT");
    CHECK(h.write(d6, "/local/domain/5/data/key", "six") == "!EACCES");
    CHECK(h.rm(d6, "/local/domain/5/data") == "!EACCES");
    CHECK(h.perms(d6, "/local/domain/5/data") == "!EACCES");
    CHECK(h.set_perms(d6, "/local/domain/5/data", {"b6"}) == "!EACCES");

    // What domain 0 creates under a guest's directory stays the guest's.
    CHECK(h.write(root, "/local/domain/5/device/vbd/0/state", "1") == "OK");
    CHECK(h.perms(root, "/local/domain/5/device/vbd/0/state") == "n5");
    CHECK(h.read(d5, "device/vbd/0/state") == "1");

    // The owner shares: r6 lets domain 6 read, not write.
    CHECK(h.set_perms(d5, "data/key", {"n5", "r6"}) == "OK");
    CHECK(h.read(d6, "/local/domain/5/data/key") == "five");
    CHECK(h.write(d6, "/local/domain/5/data/key", "six") == "!EACCES");
    // Write-only access: may write, may not read.
    CHECK(h.set_perms(d5, "data/key", {"n5", "w6"}) == "OK");
    CHECK(h.write(d6, "/local/domain/5/data/key", "six") == "OK");
    CHECK(h.read(d6, "/local/domain/5/data/key") == "!EACCES");
    CHECK(h.read(d5, "data/key") == "six");
    // The default (first entry) applies to unnamed domains.
    CHECK(h.set_perms(d5, "data/key", {"r5"}) == "OK");
    CHECK(h.read(d6, "/local/domain/5/data/key") == "six");
    CHECK(h.write(d6, "/local/domain/5/data/key", "x") == "!EACCES");

    // Only domain 0 may give a node away.
    CHECK(h.set_perms(d5, "data/key", {"n6"}) == "!EPERM");
    CHECK(h.set_perms(root, "/local/domain/5/data/key", {"n6"}) == "OK");
    CHECK(h.store.nodes_owned(6) == 2);
    // ...and then domain 5 is no longer its owner.
    CHECK(h.set_perms(d5, "data/key", {"n5"}) == "!EACCES");
    CHECK(h.read(d6, "/local/domain/5/data/key") == "six");
}

TEST_CASE("directory shows only children the domain may read", "[core][perms]") {
    Harness h;
    h.make_domain(5);
    ConnId root = h.connect();
    ConnId d5 = h.connect(5);
    REQUIRE(h.write(root, "/local/domain/5/visible", "") == "OK");
    REQUIRE(h.write(root, "/local/domain/5/hidden", "") == "OK");
    REQUIRE(h.set_perms(root, "/local/domain/5/hidden", {"n0"}) == "OK");
    CHECK(h.ls(root, "/local/domain/5") == "hidden visible");
    CHECK(h.ls(d5, "/local/domain/5") == "visible");
    CHECK(h.ls(d5, "") == "!EINVAL"); // a relative path is never empty
}

TEST_CASE("creating needs write access on the nearest existing ancestor", "[core][perms]") {
    Harness h;
    ConnId root = h.connect();
    REQUIRE(h.mkdir(root, "/shared") == "OK");
    REQUIRE(h.set_perms(root, "/shared", {"r0"}) == "OK"); // everyone reads, nobody else writes
    ConnId d5 = h.connect(5);
    CHECK(h.ls(d5, "/shared") == "");
    CHECK(h.mkdir(d5, "/shared/x/y") == "!EACCES");
    REQUIRE(h.set_perms(root, "/shared", {"n0", "w5"}) == "OK");
    CHECK(h.mkdir(d5, "/shared/x/y") == "OK");
    // The creator owns the new nodes; the rest of the list is inherited.
    CHECK(h.perms(root, "/shared/x/y") == "n5 w5");
    CHECK(h.perms(root, "/shared/x") == "n5 w5");
}

TEST_CASE("watches: first event at once, then changes at or below", "[core][watch]") {
    Harness h;
    ConnId root = h.connect();
    ConnId w = h.connect();
    CHECK(h.watch(w, "/a", "tok") == "OK");
    CHECK(h.events(w) == std::vector<Event>{{"/a", "tok"}});

    REQUIRE(h.write(root, "/a", "1") == "OK");      // create
    REQUIRE(h.write(root, "/a/b/c", "2") == "OK");  // create below
    REQUIRE(h.write(root, "/a/b/c", "3") == "OK");  // change
    REQUIRE(h.write(root, "/ab", "x") == "OK");     // sibling with a common prefix: no event
    REQUIRE(h.write(root, "/other", "x") == "OK");  // elsewhere: no event
    REQUIRE(h.set_perms(root, "/a/b", {"r0"}) == "OK");
    REQUIRE(h.rm(root, "/a/b") == "OK");            // delete
    REQUIRE(h.mkdir(root, "/a") == "OK");           // exists already: nothing changes
    CHECK(h.events(w) == std::vector<Event>{{"/a", "tok"},
                                            {"/a/b/c", "tok"},
                                            {"/a/b/c", "tok"},
                                            {"/a/b", "tok"},
                                            {"/a/b", "tok"}});
}

TEST_CASE("a watch below a removed node fires with its own path", "[core][watch]") {
    Harness h;
    ConnId root = h.connect();
    REQUIRE(h.write(root, "/p/q/r", "") == "OK");
    CHECK(h.watch(root, "/p/q/r", "deep") == "OK");
    CHECK(h.watch(root, "/p/q/none", "absent") == "OK");
    h.events(root);
    REQUIRE(h.rm(root, "/p") == "OK");
    CHECK(h.events(root) == std::vector<Event>{{"/p/q/r", "deep"}, {"/p/q/none", "absent"}});
}

TEST_CASE("watch tokens, duplicates, unwatch, several watches", "[core][watch]") {
    Harness h;
    ConnId root = h.connect();
    ConnId w = h.connect();
    CHECK(h.watch(w, "/x", "one") == "OK");
    CHECK(h.watch(w, "/x", "one") == "!EEXIST");
    CHECK(h.watch(w, "/x", "two") == "OK");
    CHECK(h.watch(w, "/", "all") == "OK");
    h.events(w);
    REQUIRE(h.write(root, "/x", "") == "OK");
    CHECK(h.events(w) == std::vector<Event>{{"/x", "one"}, {"/x", "two"}, {"/x", "all"}});
    CHECK(h.unwatch(w, "/x", "one") == "OK");
    CHECK(h.unwatch(w, "/x", "one") == "!ENOENT");
    REQUIRE(h.write(root, "/x", "2") == "OK");
    CHECK(h.events(w) == std::vector<Event>{{"/x", "two"}, {"/x", "all"}});
    CHECK(h.request(w, PVKIT_STORE_RESET_WATCHES, "") == "OK");
    REQUIRE(h.write(root, "/x", "3") == "OK");
    CHECK(h.events(w).empty());
    CHECK(h.store.watch_count(w) == 0);
}

TEST_CASE("relative watches report relative paths", "[core][watch]") {
    Harness h;
    h.make_domain(4);
    ConnId d4 = h.connect(4);
    CHECK(h.watch(d4, "device", "dev") == "OK");
    CHECK(h.events(d4) == std::vector<Event>{{"device", "dev"}});
    REQUIRE(h.write(d4, "device/vif/0", "") == "OK");
    CHECK(h.events(d4) == std::vector<Event>{{"device/vif/0", "dev"}});
}

TEST_CASE("special @ watches fire once when set", "[core][watch]") {
    Harness h;
    ConnId c = h.connect();
    CHECK(h.watch(c, "@releaseDomain", "rel") == "OK");
    REQUIRE(h.write(c, "/x", "") == "OK");
    CHECK(h.events(c) == std::vector<Event>{{"@releaseDomain", "rel"}});
}

TEST_CASE("watch events go only to domains that may read the node", "[core][watch][perms]") {
    Harness h;
    h.make_domain(5);
    ConnId root = h.connect();
    ConnId d5 = h.connect(5);
    ConnId d6 = h.connect(6);
    CHECK(h.watch(d6, "/local/domain/5", "spy") == "OK");
    CHECK(h.watch(d5, "", "mine") == "!EINVAL"); // empty path
    CHECK(h.watch(d5, "/local/domain/5", "mine") == "OK");
    h.events(d5);
    h.events(d6);
    REQUIRE(h.write(root, "/local/domain/5/secret", "s") == "OK");
    REQUIRE(h.write(d5, "/local/domain/5/secret", "t") == "OK");
    REQUIRE(h.rm(root, "/local/domain/5/secret") == "OK");
    CHECK(h.events(d6).empty());
    CHECK(h.events(d5) == std::vector<Event>{{"/local/domain/5/secret", "mine"},
                                             {"/local/domain/5/secret", "mine"},
                                             {"/local/domain/5/secret", "mine"}});
}

TEST_CASE("events of a request come before its reply", "[core][watch]") {
    Store s;
    ConnId c = s.connect();
    std::vector<Outgoing> out;
    s.handle(c, Message{PVKIT_STORE_WATCH, 1, 0, "/k\0t\0"s}, out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].is_reply); // the watch's OK, then its first event
    CHECK(out[1].msg.type == PVKIT_STORE_WATCH_EVENT);
    out.clear();
    s.handle(c, Message{PVKIT_STORE_WRITE, 2, 0, "/k\0v"s}, out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].msg.type == PVKIT_STORE_WATCH_EVENT);
    CHECK(out[1].is_reply);
    CHECK(out[1].msg.req_id == 2);
}

TEST_CASE("transactions: private view, commit, abort", "[core][tx]") {
    Harness h;
    ConnId a = h.connect();
    ConnId b = h.connect();
    REQUIRE(h.write(a, "/t/x", "old") == "OK");
    REQUIRE(h.watch(b, "/t", "w") == "OK");
    h.events(b);

    std::uint32_t tx = h.tx_start(a);
    CHECK(tx != 0);
    CHECK(h.write(a, "/t/x", "new", tx) == "OK");
    CHECK(h.write(a, "/t/y/z", "made", tx) == "OK");
    CHECK(h.rm(a, "/t/gone", tx) == "OK");
    CHECK(h.read(a, "/t/x", tx) == "new");
    CHECK(h.ls(a, "/t", tx) == "x y");
    // Outside the transaction nothing has changed yet, and nobody was told.
    CHECK(h.read(a, "/t/x") == "old");
    CHECK(h.read(b, "/t/y/z") == "!ENOENT");
    CHECK(h.events(b).empty());
    CHECK(h.tx_end(a, tx, true) == "OK");
    CHECK(h.read(b, "/t/x") == "new");
    CHECK(h.read(b, "/t/y/z") == "made");
    CHECK(h.events(b) == std::vector<Event>{{"/t/x", "w"}, {"/t/y/z", "w"}});
    // The transaction is over.
    CHECK(h.read(a, "/t/x", tx) == "!ENOENT");
    CHECK(h.tx_end(a, tx, true) == "!ENOENT");

    std::uint32_t tx2 = h.tx_start(a);
    CHECK(tx2 != tx);
    CHECK(h.write(a, "/t/x", "aborted", tx2) == "OK");
    CHECK(h.rm(a, "/t/y", tx2) == "OK");
    CHECK(h.tx_end(a, tx2, false) == "OK");
    CHECK(h.read(a, "/t/x") == "new");
    CHECK(h.read(a, "/t/y/z") == "made");
    CHECK(h.events(b).empty());
}

TEST_CASE("a conflicting commit fails with EAGAIN and changes nothing", "[core][tx]") {
    Harness h;
    ConnId a = h.connect();
    ConnId b = h.connect();
    REQUIRE(h.write(a, "/c/x", "0") == "OK");
    REQUIRE(h.write(a, "/c/y", "0") == "OK");
    // A watch on everything and a journal: a failed commit must leave no
    // trace in either, not only in the tree.
    RecordingJournal j;
    h.store.set_journal(&j);
    ConnId w = h.connect();
    REQUIRE(h.watch(w, "/", "all") == "OK");
    auto commit_fails = [&](std::uint32_t tx) {
        (void)h.events(w);
        std::size_t records = j.records.size();
        CHECK(h.tx_end(a, tx, true) == "!EAGAIN");
        CHECK(j.records.size() == records);
        CHECK(h.events(w).empty());
    };

    SECTION("something it read changed") {
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.read(a, "/c/x", tx) == "0");
        CHECK(h.write(a, "/c/y", "from-tx", tx) == "OK");
        REQUIRE(h.write(b, "/c/x", "1") == "OK");
        commit_fails(tx);
        CHECK(h.read(a, "/c/y") == "0");
    }
    SECTION("something it wrote changed") {
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.write(a, "/c/x", "from-tx", tx) == "OK");
        REQUIRE(h.write(b, "/c/x", "1") == "OK");
        commit_fails(tx);
        CHECK(h.read(a, "/c/x") == "1");
    }
    SECTION("something it found absent was created") {
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.read(a, "/c/new", tx) == "!ENOENT");
        CHECK(h.write(a, "/c/x", "from-tx", tx) == "OK");
        REQUIRE(h.write(b, "/c/new", "1") == "OK");
        commit_fails(tx);
        CHECK(h.read(a, "/c/x") == "0");
    }
    SECTION("a child appeared under a node it removed") {
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.rm(a, "/c", tx) == "OK");
        REQUIRE(h.write(b, "/c/x/late", "1") == "OK");
        commit_fails(tx);
        CHECK(h.read(a, "/c/x/late") == "1");
        CHECK(h.read(a, "/c/y") == "0");
    }
    SECTION("it first looked at a node after that node changed") {
        // Changed after the start but before the transaction read it: the
        // transaction would mix old and new state, so it must not commit.
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.read(a, "/c/y", tx) == "0");
        REQUIRE(h.write(b, "/c/x", "1") == "OK");
        CHECK(h.read(a, "/c/x", tx) == "1");
        CHECK(h.write(a, "/c/y", "from-tx", tx) == "OK");
        commit_fails(tx);
        CHECK(h.read(a, "/c/y") == "0");
    }
    SECTION("unrelated changes do not conflict") {
        std::uint32_t tx = h.tx_start(a);
        CHECK(h.read(a, "/c/x", tx) == "0");
        CHECK(h.write(a, "/c/x", "from-tx", tx) == "OK");
        REQUIRE(h.write(b, "/elsewhere", "1") == "OK");
        (void)h.events(w);
        std::size_t records = j.records.size();
        CHECK(h.tx_end(a, tx, true) == "OK");
        CHECK(h.read(a, "/c/x") == "from-tx");
        // What commit_fails() checks the absence of, a commit does produce.
        CHECK(j.records.size() == records + 1);
        CHECK(h.events(w) == std::vector<Event>{Event{"/c/x", "all"}});
    }
}

TEST_CASE("transaction ids are per connection and checked", "[core][tx]") {
    Harness h;
    ConnId a = h.connect();
    ConnId b = h.connect();
    std::uint32_t tx = h.tx_start(a);
    CHECK(h.read(b, "/", tx) == "!ENOENT");
    CHECK(h.tx_end(b, tx, true) == "!ENOENT");
    CHECK(h.read(a, "/", 12345) == "!ENOENT");
    CHECK(h.request(a, PVKIT_STORE_TRANSACTION_START, "\0"s, tx) == "!EBUSY");
    CHECK(h.request(a, PVKIT_STORE_TRANSACTION_END, "X\0"s, tx) == "!EINVAL");
    CHECK(h.request(a, PVKIT_STORE_TRANSACTION_END, "T"s, tx) == "!EINVAL");
    CHECK(h.tx_end(a, 0, true) == "!ENOENT");
    CHECK(h.store.transaction_count(a) == 1);
    h.store.disconnect(a);
    CHECK(h.store.transaction_count(a) == 0);
}

TEST_CASE("a failed operation inside a transaction leaves it intact", "[core][tx]") {
    Harness h({.max_value_bytes = 2048, .quota_nodes = 3});
    h.make_domain(5);
    ConnId d5 = h.connect(5);
    std::uint32_t tx = h.tx_start(d5);
    CHECK(h.write(d5, "a", "1", tx) == "OK");
    CHECK(h.write(d5, "b/c/d", "1", tx) == "!EQUOTA");
    CHECK(h.write(d5, "big", std::string(3000, 'x'), tx) == "!E2BIG");
    CHECK(h.read(d5, "b", tx) == "!ENOENT");
    CHECK(h.tx_end(d5, tx, true) == "OK");
    CHECK(h.read(d5, "a") == "1");
    CHECK(h.store.nodes_owned(5) == 2);
}

TEST_CASE("quota: nodes owned", "[core][quota]") {
    Harness h({.max_value_bytes = 2048, .quota_nodes = 5});
    h.make_domain(5);
    ConnId d5 = h.connect(5);
    CHECK(h.store.nodes_owned(5) == 1);
    CHECK(h.write(d5, "a", "") == "OK");
    CHECK(h.write(d5, "b/c", "") == "OK");
    CHECK(h.store.nodes_owned(5) == 4);
    CHECK(h.write(d5, "d/e", "") == "!EQUOTA"); // would make 6
    CHECK(h.read(d5, "d") == "!ENOENT");        // nothing half-made
    CHECK(h.write(d5, "d", "") == "OK");        // exactly 5
    CHECK(h.mkdir(d5, "e") == "!EQUOTA");
    CHECK(h.write(d5, "a", "changing a value is fine") == "OK");
    CHECK(h.rm(d5, "b") == "OK");
    CHECK(h.store.nodes_owned(5) == 3);
    CHECK(h.mkdir(d5, "e") == "OK");

    // Domain 0 is exempt, even when it creates nodes that domain 5 owns.
    ConnId root = h.connect();
    for (int i = 0; i < 10; ++i)
        REQUIRE(h.write(root, "/local/domain/5/dom0-" + std::to_string(i), "") == "OK");
    CHECK(h.store.nodes_owned(5) == 14);
    CHECK(h.write(d5, "more", "") == "!EQUOTA");
}

TEST_CASE("quota: node count is checked again when a transaction commits", "[core][quota][tx]") {
    Harness h({.max_value_bytes = 2048, .quota_nodes = 6});
    h.make_domain(5);
    ConnId d5a = h.connect(5);
    ConnId d5b = h.connect(5);
    REQUIRE(h.mkdir(d5a, "a") == "OK");
    REQUIRE(h.mkdir(d5a, "b") == "OK");
    // The transaction and the other connection work in different
    // directories, so they do not conflict; together they are over quota.
    std::uint32_t tx = h.tx_start(d5a);
    CHECK(h.write(d5a, "a/t1", "", tx) == "OK");
    CHECK(h.write(d5a, "a/t2", "", tx) == "OK");
    CHECK(h.write(d5b, "b/x1", "") == "OK");
    CHECK(h.write(d5b, "b/x2", "") == "OK");
    CHECK(h.tx_end(d5a, tx, true) == "!EQUOTA");
    CHECK(h.store.nodes_owned(5) == 5);
    CHECK(h.read(d5a, "a/t1") == "!ENOENT");
}

TEST_CASE("quota: watches per domain", "[core][quota]") {
    Harness h({.max_value_bytes = 2048, .quota_nodes = 1000, .quota_watches = 3});
    ConnId a = h.connect(7);
    ConnId b = h.connect(7);
    CHECK(h.watch(a, "/w1", "t") == "OK");
    CHECK(h.watch(a, "/w2", "t") == "OK");
    CHECK(h.watch(b, "/w3", "t") == "OK");
    CHECK(h.watch(b, "/w4", "t") == "!EQUOTA");
    CHECK(h.watch(h.connect(8), "/w4", "t") == "OK"); // other domains unaffected
    CHECK(h.unwatch(a, "/w1", "t") == "OK");
    CHECK(h.watch(b, "/w4", "t") == "OK");
    ConnId root = h.connect();
    for (int i = 0; i < 10; ++i)
        CHECK(h.watch(root, "/r" + std::to_string(i), "t") == "OK");
}

TEST_CASE("quota: open transactions per domain", "[core][quota]") {
    Harness h({.max_value_bytes = 2048, .quota_nodes = 1000, .quota_watches = 10, .quota_transactions = 2});
    ConnId a = h.connect(7);
    ConnId b = h.connect(7);
    std::uint32_t t1 = h.tx_start(a);
    h.tx_start(b);
    CHECK(h.request(a, PVKIT_STORE_TRANSACTION_START, "\0"s) == "!EQUOTA");
    CHECK(h.tx_end(a, t1, false) == "OK");
    h.tx_start(a);
    ConnId root = h.connect();
    for (int i = 0; i < 10; ++i)
        h.tx_start(root);
}

TEST_CASE("the journal sees each change before it is applied", "[core][journal]") {
    Harness h;
    RecordingJournal j;
    h.store.set_journal(&j);
    ConnId c = h.connect();
    REQUIRE(h.write(c, "/j/k", "v") == "OK");
    REQUIRE(j.records.size() == 1);
    CHECK(j.records[0] == ChangeSet{
                             Change{Change::Kind::kPut, "/j", "", {Perm{Access::kNone, 0}}},
                             Change{Change::Kind::kPut, "/j/k", "v", {Perm{Access::kNone, 0}}},
                         });
    REQUIRE(h.read(c, "/j/k") == "v"); // reads are not journaled
    REQUIRE(h.mkdir(c, "/j") == "OK"); // nor are no-ops
    CHECK(j.records.size() == 1);
    REQUIRE(h.rm(c, "/j") == "OK");
    REQUIRE(j.records.size() == 2);
    CHECK(j.records[1] == ChangeSet{
                             Change{Change::Kind::kDel, "/j", "", {}},
                         });

    REQUIRE(h.watch(c, "/f", "t") == "OK");
    h.events(c);
    j.fail = true;
    CHECK(h.write(c, "/f", "x") == "!EIO");
    CHECK(h.read(c, "/f") == "!ENOENT");
    CHECK(h.events(c).empty());
    std::uint32_t tx = h.tx_start(c);
    CHECK(h.write(c, "/f", "x", tx) == "OK");
    CHECK(h.tx_end(c, tx, true) == "!EIO");
    CHECK(h.read(c, "/f") == "!ENOENT");
}

TEST_CASE("replaying the journal rebuilds the same tree", "[core][journal]") {
    // A fixed seed keeps the test deterministic; the mix of domains,
    // transactions and removals exercises every kind of change.
    std::mt19937 rng(12345);
    Harness h({.max_value_bytes = 2048, .quota_nodes = 200});
    RecordingJournal j;
    h.store.set_journal(&j);
    for (pvkit_domid_t d : {pvkit_domid_t{1}, pvkit_domid_t{2}, pvkit_domid_t{3}})
        h.make_domain(d);
    std::vector<ConnId> conns = {h.connect(), h.connect(1), h.connect(2), h.connect(3)};
    auto pick = [&rng](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    const char* names[] = {"a", "b", "c", "d"};
    auto random_path = [&]() {
        std::string p = "/local/domain/" + std::to_string(1 + pick(3));
        std::size_t depth = 1 + pick(3);
        for (std::size_t i = 0; i < depth; ++i)
            p += std::string("/") + names[pick(4)];
        return p;
    };
    std::map<ConnId, std::uint32_t> open_tx;
    int commits = 0;
    for (int step = 0; step < 3000; ++step) {
        ConnId c = conns[pick(conns.size())];
        std::uint32_t tx = open_tx.count(c) ? open_tx[c] : 0;
        switch (pick(8)) {
        case 0:
        case 1:
        case 2:
            (void)h.write(c, random_path(), std::to_string(step), tx);
            break;
        case 3:
            (void)h.rm(c, random_path(), tx);
            break;
        case 4:
            (void)h.set_perms(c, random_path(), {"n" + std::to_string(pick(4)), "r" + std::to_string(pick(4))}, tx);
            break;
        case 5:
            (void)h.mkdir(c, random_path(), tx);
            break;
        case 6:
            if (tx == 0)
                open_tx[c] = h.tx_start(c);
            break;
        case 7:
            if (tx != 0) {
                if (h.tx_end(c, tx, pick(4) != 0) == "OK")
                    ++commits;
                open_tx.erase(c);
            }
            break;
        }
    }
    CHECK(commits > 10);
    Store replica;
    for (const ChangeSet& cs : j.records)
        REQUIRE(replica.apply(cs));
    CHECK(dump(replica) == dump(h.store));
    for (pvkit_domid_t d : {pvkit_domid_t{0}, pvkit_domid_t{1}, pvkit_domid_t{2}, pvkit_domid_t{3}})
        CHECK(replica.nodes_owned(d) == h.store.nodes_owned(d));
}

TEST_CASE("apply refuses impossible changes", "[core][journal]") {
    Store s;
    CHECK_FALSE(s.apply({Change{Change::Kind::kPut, "/no/parent", "", {Perm{}}}}));
    CHECK_FALSE(s.apply({Change{Change::Kind::kPut, "relative", "", {Perm{}}}}));
    CHECK_FALSE(s.apply({Change{Change::Kind::kPut, "/ok", "", {}}}));
    CHECK_FALSE(s.apply({Change{Change::Kind::kDel, "/", "", {}}}));
    CHECK(s.apply({Change{Change::Kind::kDel, "/absent", "", {}}}));
    CHECK(s.node_count() == 1);
}

namespace {

// A deliberately naive model of the tree (domain 0 only, no permissions):
// path -> value, parents created on write, subtrees removed on rm.
class Model {
public:
    Model() { m_nodes["/"] = ""; }
    void write(const std::string& p, const std::string& v) {
        make_parents(p);
        m_nodes[p] = v;
    }
    void mkdir(const std::string& p) {
        if (!m_nodes.count(p)) {
            make_parents(p);
            m_nodes[p] = "";
        }
    }
    std::string rm(const std::string& p) {
        if (!m_nodes.count(p))
            return m_nodes.count(parent(p)) ? "OK" : "!ENOENT";
        for (auto it = m_nodes.begin(); it != m_nodes.end();) {
            if (it->first == p || it->first.rfind(p + "/", 0) == 0)
                it = m_nodes.erase(it);
            else
                ++it;
        }
        return "OK";
    }
    std::string read(const std::string& p) const {
        auto it = m_nodes.find(p);
        return it == m_nodes.end() ? "!ENOENT" : it->second;
    }
    std::string ls(const std::string& p) const {
        if (!m_nodes.count(p))
            return "!ENOENT";
        std::string out;
        for (const auto& [k, v] : m_nodes) {
            if (k != "/" && parent(k) == p)
                out += (out.empty() ? "" : " ") + k.substr(k.rfind('/') + 1);
        }
        return out;
    }
    const std::map<std::string, std::string>& nodes() const { return m_nodes; }

private:
    static std::string parent(const std::string& p) {
        std::size_t s = p.rfind('/');
        return s == 0 ? "/" : p.substr(0, s);
    }
    void make_parents(const std::string& p) {
        for (std::string q = parent(p); !m_nodes.count(q); q = parent(q))
            m_nodes[q] = "";
    }
    std::map<std::string, std::string> m_nodes;
};

} // namespace

TEST_CASE("the store agrees with a naive model, inside and outside transactions", "[core][tx][model]") {
    // Fixed seed: deterministic. Small names and shallow paths make ops
    // collide: overwrite, remove and re-create, remove a parent and then
    // write below it, all inside one transaction too.
    std::mt19937 rng(99);
    auto pick = [&rng](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    auto random_path = [&]() {
        std::string p = "/m";
        std::size_t depth = pick(4);
        for (std::size_t i = 0; i < depth; ++i)
            p += std::string("/") + "abc"[pick(3)];
        return p;
    };
    Harness h;
    ConnId c = h.connect();
    Model committed;
    std::optional<Model> in_tx;
    std::uint32_t tx = 0;

    auto compare = [&](const Model& m, std::uint32_t with_tx) {
        for (const auto& [path, value] : m.nodes()) {
            INFO("path " << path << " tx " << with_tx);
            REQUIRE(h.read(c, path, with_tx) == value);
            REQUIRE(h.ls(c, path, with_tx) == m.ls(path));
        }
        // A few paths that should not exist.
        for (int i = 0; i < 5; ++i) {
            std::string p = random_path();
            INFO("probe " << p << " tx " << with_tx);
            REQUIRE(h.read(c, p, with_tx) == m.read(p));
        }
    };

    for (int step = 0; step < 4000; ++step) {
        Model& m = in_tx ? *in_tx : committed;
        std::string p = random_path();
        switch (pick(10)) {
        case 0:
        case 1:
        case 2: {
            std::string v = "v" + std::to_string(step);
            REQUIRE(h.write(c, p, v, tx) == "OK");
            m.write(p, v);
            break;
        }
        case 3:
            REQUIRE(h.mkdir(c, p, tx) == "OK");
            m.mkdir(p);
            break;
        case 4:
        case 5:
            REQUIRE(h.rm(c, p, tx) == m.rm(p));
            break;
        case 6:
            if (!in_tx) {
                tx = h.tx_start(c);
                in_tx = committed;
            }
            break;
        case 7:
            if (in_tx) {
                // Nothing else changes the tree meanwhile: a commit must succeed.
                REQUIRE(h.tx_end(c, tx, true) == "OK");
                committed = *in_tx;
                in_tx.reset();
                tx = 0;
                compare(committed, 0);
            }
            break;
        case 8:
            if (in_tx && pick(3) == 0) {
                REQUIRE(h.tx_end(c, tx, false) == "OK");
                in_tx.reset();
                tx = 0;
                compare(committed, 0);
            }
            break;
        default:
            break;
        }
        if (step % 50 == 0) {
            compare(committed, 0);
            if (in_tx)
                compare(*in_tx, tx);
        }
    }
}
