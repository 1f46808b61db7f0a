// The log and the snapshot, without a daemon: every record survives a
// reopen, compaction is invisible, torn and corrupt tails are dropped.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "pvkit/store/persistence.hpp"
#include "store_test_support.hpp"

using namespace pvkit::store;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

using Dump = std::map<std::string, std::pair<std::string, std::string>>;

Dump dump(const Store& s) {
    Dump out;
    s.for_each_node([&out](const std::string& path, const NodeData& n) {
        out[path] = {n.value, format_perms(n.perms)};
    });
    return out;
}

// A store with its persistence, driven through Store::handle as the daemon
// does (sync after every request).
struct Opened {
    Opened(const fs::path& dir, std::size_t compact_bytes = std::size_t{4} << 20) {
        PersistenceOptions o;
        o.data_dir = dir;
        o.fsync = FsyncPolicy::kNever;
        o.compact_bytes = compact_bytes;
        persistence = Persistence::open(o, store, &report);
        store.set_journal(persistence.get());
        conn = store.connect();
    }
    std::string write(const std::string& path, const std::string& value) {
        return request(PVKIT_STORE_WRITE, path + '\0' + value);
    }
    std::string request(std::uint32_t type, const std::string& payload) {
        std::vector<Outgoing> out;
        store.handle(conn, Message{type, 1, 0, payload}, out);
        persistence->sync();
        persistence->maybe_compact(store);
        return out.back().msg.type == PVKIT_STORE_ERROR ? "!" + out.back().msg.payload : "OK";
    }

    Store store;
    LoadReport report;
    std::unique_ptr<Persistence> persistence;
    ConnId conn = 0;
};

std::uintmax_t log_size(const fs::path& dir) { return fs::file_size(dir / "store.log"); }

void truncate_log(const fs::path& dir, std::uintmax_t size) { fs::resize_file(dir / "store.log", size); }

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const fs::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << s;
}

} // namespace

TEST_CASE("record bodies round-trip and garbage is refused", "[persist]") {
    ChangeSet cs = {
        Change{Change::Kind::kPut, "/a", "v\0x"s, {Perm{Access::kBoth, 3}, Perm{Access::kRead, 0}}},
        Change{Change::Kind::kDel, "/b", "", {}},
    };
    std::string body = encode_changes(42, cs);
    auto rec = decode_changes(body);
    REQUIRE(rec);
    CHECK(rec->seq == 42);
    CHECK(rec->changes == cs);
    for (std::size_t cut = 0; cut < body.size(); ++cut)
        CHECK_FALSE(decode_changes(body.substr(0, cut)).has_value());
    CHECK_FALSE(decode_changes(body + "x").has_value());
    std::string bad_kind = body;
    bad_kind[12] = 9; // the first change's kind byte
    CHECK_FALSE(decode_changes(bad_kind).has_value());
}

TEST_CASE("every change survives a reopen", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    Dump before;
    {
        Opened s(dir);
        CHECK(fs::status(dir).permissions() == fs::perms::owner_all);
        REQUIRE(s.write("/a/b", "1") == "OK");
        REQUIRE(s.write("/a/c", "bin\xff\0"s) == "OK");
        REQUIRE(s.request(PVKIT_STORE_SET_PERMS, "/a/b\0n5\0r7\0"s) == "OK");
        REQUIRE(s.request(PVKIT_STORE_RM, "/a/c\0"s) == "OK");
        REQUIRE(s.write("/a/c", "again") == "OK");
        before = dump(s.store);
        CHECK(s.persistence->last_seq() == 5);
    }
    Opened s(dir);
    CHECK(s.report.records_replayed == 5);
    CHECK(s.report.torn_bytes == 0);
    CHECK(dump(s.store) == before);
    CHECK(s.store.nodes_owned(5) == 1);
    REQUIRE(s.write("/after", "x") == "OK");
    CHECK(s.persistence->last_seq() == 6);
}

TEST_CASE("compaction writes a snapshot and empties the log", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    Dump before;
    {
        // A tiny threshold: compaction happens many times along the way.
        Opened s(dir, 2048);
        REQUIRE(s.write("/bin", "\xc3\x28\xff"s) == "OK");
        for (int i = 0; i < 200; ++i)
            REQUIRE(s.write("/k/" + std::to_string(i % 37), std::to_string(i) + std::string(20, 'v')) == "OK");
        CHECK(s.persistence->compactions() > 5);
        CHECK(log_size(dir) <= 2048 + 200);
        before = dump(s.store);
    }
    CHECK(fs::exists(dir / "snapshot.json"));
    CHECK_FALSE(fs::exists(dir / "snapshot.json.tmp"));
    std::string snap = slurp(dir / "snapshot.json");
    CHECK(snap.find("\"value_base64\"") != std::string::npos); // the non-UTF-8 value
    Opened s(dir);
    CHECK(dump(s.store) == before);
    CHECK(s.persistence->last_seq() == 201);
}

TEST_CASE("a torn final record is dropped, everything before it kept", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    std::uintmax_t size_before_last = 0;
    {
        Opened s(dir);
        REQUIRE(s.write("/one", "1") == "OK");
        REQUIRE(s.write("/two", "2") == "OK");
        size_before_last = log_size(dir);
        REQUIRE(s.write("/three", "3") == "OK");
    }
    std::uintmax_t full = log_size(dir);
    std::string original = slurp(dir / "store.log");
    // Cut the last record at every possible point.
    for (std::uintmax_t cut = size_before_last + 1; cut < full; ++cut) {
        INFO("log cut to " << cut << " of " << full);
        spit(dir / "store.log", original);
        truncate_log(dir, cut);
        {
            Opened s(dir);
            CHECK(s.report.torn_bytes == cut - size_before_last);
            CHECK(s.store.get_node("/two").has_value());
            CHECK_FALSE(s.store.get_node("/three").has_value());
            // New records go after the good ones and survive.
            REQUIRE(s.write("/four", "4") == "OK");
        }
        Opened again(dir);
        CHECK(again.report.torn_bytes == 0);
        CHECK(again.store.get_node("/four").has_value());
        CHECK(again.store.get_node("/two").has_value());
    }
}

TEST_CASE("a record with a bad checksum ends the log", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    std::uintmax_t size_before_last = 0;
    {
        Opened s(dir);
        REQUIRE(s.write("/one", "1") == "OK");
        size_before_last = log_size(dir);
        REQUIRE(s.write("/two", "2") == "OK");
    }
    std::string log = slurp(dir / "store.log");
    log[log.size() - 3] ^= 0x40;
    spit(dir / "store.log", log);
    Opened s(dir);
    CHECK(s.store.get_node("/one").has_value());
    CHECK_FALSE(s.store.get_node("/two").has_value());
    CHECK(s.report.torn_bytes == log.size() - size_before_last);
}

TEST_CASE("a crash between snapshot and log truncation replays nothing twice", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    std::string old_log;
    Dump before;
    {
        Opened s(dir);
        REQUIRE(s.write("/x", "1") == "OK");
        REQUIRE(s.request(PVKIT_STORE_RM, "/x\0"s) == "OK");
        REQUIRE(s.write("/y", "2") == "OK");
        old_log = slurp(dir / "store.log");
        s.persistence->compact(s.store);
        before = dump(s.store);
    }
    // The log as it was before the truncation that never happened.
    spit(dir / "store.log", old_log);
    Opened s(dir);
    CHECK(s.report.records_skipped == 3);
    CHECK(s.report.records_replayed == 0);
    CHECK(dump(s.store) == before);
    REQUIRE(s.write("/z", "3") == "OK");
    CHECK(s.persistence->last_seq() == 4);
}

TEST_CASE("a data directory is used by one daemon at a time", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    Opened first(dir);
    Store other;
    PersistenceOptions o;
    o.data_dir = dir;
    CHECK_THROWS_WITH(Persistence::open(o, other), Catch::Contains("in use by another pvkit-stored"));
}

TEST_CASE("a damaged snapshot stops start-up with a clear message", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    {
        Opened s(dir);
        REQUIRE(s.write("/x", "1") == "OK");
        s.persistence->compact(s.store);
    }
    PersistenceOptions o;
    o.data_dir = dir;
    SECTION("not JSON") {
        spit(dir / "snapshot.json", "{ nope");
        Store st;
        CHECK_THROWS_WITH(Persistence::open(o, st), Catch::Contains("snapshot.json: not valid JSON"));
    }
    SECTION("a node without its parent") {
        spit(dir / "snapshot.json",
             R"({"format":"pvkit-store-snapshot","version":1,"seq":1,"nodes":[{"path":"/a/b","perms":["n0"],"value":""}]})");
        Store st;
        CHECK_THROWS_WITH(Persistence::open(o, st), Catch::Contains("node /a/b cannot be restored"));
    }
    SECTION("a bad permission") {
        spit(dir / "snapshot.json",
             R"({"format":"pvkit-store-snapshot","version":1,"seq":1,"nodes":[{"path":"/","perms":["z0"],"value":""}]})");
        Store st;
        CHECK_THROWS_WITH(Persistence::open(o, st), Catch::Contains("bad permission"));
    }
    SECTION("a missing field") {
        spit(dir / "snapshot.json", R"({"format":"pvkit-store-snapshot","version":1,"nodes":[]})");
        Store st;
        CHECK_THROWS_WITH(Persistence::open(o, st), Catch::Contains("unexpected content"));
    }
}

TEST_CASE("a log that is not a pvkit log is refused", "[persist]") {
    pvkit::store::test::TempDir tmp;
    fs::path dir = tmp.path() / "data";
    fs::create_directories(dir);
    spit(dir / "store.log", "this is not a store log at all");
    Store st;
    PersistenceOptions o;
    o.data_dir = dir;
    CHECK_THROWS_WITH(Persistence::open(o, st), Catch::Contains("not a version 1 pvkit store log"));
}
