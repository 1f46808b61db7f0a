// The wire codec, permissions and path rules: pure functions.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "pvkit/store/path.hpp"
#include "pvkit/store/perms.hpp"
#include "pvkit/store/wire.hpp"

using namespace pvkit::store;
using namespace std::string_literals;

namespace {

std::string header_bytes(std::uint32_t type, std::uint32_t req, std::uint32_t tx, std::uint32_t len) {
    pvkit_store_msg_header h{type, req, tx, len};
    return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}

} // namespace

TEST_CASE("encode writes the header then the payload", "[wire]") {
    Message m{PVKIT_STORE_WRITE, 7, 3, "/a\0value"s};
    std::string bytes = encode(m);
    REQUIRE(bytes.size() == 16 + m.payload.size());
    CHECK(bytes.substr(0, 16) == header_bytes(PVKIT_STORE_WRITE, 7, 3, 8));
    CHECK(bytes.substr(16) == m.payload);
}

TEST_CASE("the decoder reassembles messages fed one byte at a time", "[wire]") {
    Message a{PVKIT_STORE_READ, 1, 0, "/a\0"s};
    Message b{PVKIT_STORE_WRITE, 2, 9, "/b\0x\0y"s};
    Message c{PVKIT_STORE_TRANSACTION_START, 3, 0, ""};
    std::string stream = encode(a) + encode(b) + encode(c);
    FrameDecoder d;
    std::vector<Message> got;
    for (char ch : stream) {
        d.feed(std::string_view(&ch, 1));
        for (;;) {
            auto r = d.next();
            REQUIRE(r.ok());
            if (!*r)
                break;
            got.push_back(**r);
        }
    }
    REQUIRE(got.size() == 3);
    CHECK(got[0] == a);
    CHECK(got[1] == b);
    CHECK(got[2] == c);
    CHECK(d.buffered() == 0);
}

TEST_CASE("the decoder hands out several messages from one chunk", "[wire]") {
    FrameDecoder d;
    std::string stream;
    for (std::uint32_t i = 0; i < 100; ++i)
        stream += encode(Message{PVKIT_STORE_READ, i, 0, "/x" + std::to_string(i) + "\0"s});
    d.feed(stream);
    for (std::uint32_t i = 0; i < 100; ++i) {
        auto r = d.next();
        REQUIRE(r.ok());
        REQUIRE(r->has_value());
        CHECK((*r)->req_id == i);
    }
    auto r = d.next();
    REQUIRE(r.ok());
    CHECK(!r->has_value());
}

TEST_CASE("a payload of exactly the maximum is accepted", "[wire]") {
    FrameDecoder d;
    d.feed(encode(Message{PVKIT_STORE_WRITE, 1, 0, std::string(kPayloadMax, 'v')}));
    auto r = d.next();
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK((*r)->payload.size() == kPayloadMax);
}

TEST_CASE("a header announcing more than the maximum fails the stream", "[wire]") {
    FrameDecoder d;
    d.feed(header_bytes(PVKIT_STORE_READ, 42, 5, PVKIT_STORE_PAYLOAD_MAX + 1));
    auto r = d.next();
    REQUIRE(!r.ok());
    CHECK(r.error() == FrameError::kTooLong);
    CHECK(d.failed());
    CHECK(d.failed_header().req_id == 42);
    CHECK(d.failed_header().tx_id == 5);
    // Once failed, always failed: nothing after it can be trusted.
    d.feed(encode(Message{PVKIT_STORE_READ, 1, 0, "/a\0"s}));
    CHECK(!d.next().ok());
}

TEST_CASE("unknown types are framed, not rejected, by the decoder", "[wire]") {
    FrameDecoder d;
    d.feed(encode(Message{999, 1, 0, "x"}));
    auto r = d.next();
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK((*r)->type == 999);
    CHECK(!is_known_type(999));
    CHECK(!is_known_type(20));
    CHECK(!is_known_type(PVKIT_STORE_OP_COUNT));
    CHECK(is_known_type(PVKIT_STORE_READ));
    CHECK(type_name(PVKIT_STORE_WATCH_EVENT) == "WATCH_EVENT");
    CHECK(type_name(999) == "UNKNOWN");
}

TEST_CASE("split_args needs a terminating NUL", "[wire]") {
    CHECK(!split_args("").has_value());
    CHECK(!split_args("abc").has_value());
    CHECK(!split_args("a\0b"s).has_value());
    const std::string one_arg = "a\0"s;
    auto one = split_args(one_arg);
    REQUIRE(one);
    CHECK(*one == std::vector<std::string_view>{"a"});
    const std::string three_args = "a\0\0c\0"s;
    auto three = split_args(three_args);
    REQUIRE(three);
    CHECK(*three == std::vector<std::string_view>{"a", "", "c"});
    CHECK(join_args({"x", "yz"}) == "x\0yz\0"s);
}

TEST_CASE("split_write keeps NULs in the value", "[wire]") {
    const std::string payload = "/p\0v\0w"s;
    auto pv = split_write(payload);
    REQUIRE(pv);
    CHECK(pv->path == "/p");
    CHECK(pv->value == "v\0w"s);
    CHECK(!split_write("/p").has_value());
}

TEST_CASE("replies echo req_id and tx_id", "[wire]") {
    Message req{PVKIT_STORE_READ, 77, 12, "/a\0"s};
    Message err = make_error(req, StoreError::kNoEnt);
    CHECK(err.type == PVKIT_STORE_ERROR);
    CHECK(err.req_id == 77);
    CHECK(err.tx_id == 12);
    CHECK(err.payload == "ENOENT\0"s);
    Message ok = make_ok(req);
    CHECK(ok.type == PVKIT_STORE_READ);
    CHECK(ok.payload == "OK\0"s);
    Message ev = make_watch_event("/a", "tok");
    CHECK(ev.req_id == 0);
    CHECK(ev.payload == "/a\0tok\0"s);
}

TEST_CASE("error names round-trip and EQUOTA is spelled as in XenStore", "[wire]") {
    for (StoreError e : {StoreError::kInval, StoreError::kAccess, StoreError::kNoEnt, StoreError::kAgain,
                         StoreError::kQuota, StoreError::kTooBig, StoreError::kNoSys}) {
        auto back = error_from_name(to_string(e));
        REQUIRE(back);
        CHECK(*back == e);
    }
    CHECK(to_string(StoreError::kQuota) == "EQUOTA");
    CHECK(static_cast<int>(StoreError::kQuota) == PVKIT_EDQUOT);
    CHECK(!error_from_name("EWHATEVER").has_value());
    CHECK(to_string(StoreError::kNotConn) == "ENOTCONN");
}

TEST_CASE("permissions parse and format", "[perms]") {
    auto p = parse_perm("r5");
    REQUIRE(p);
    CHECK(p->access == Access::kRead);
    CHECK(p->domid == 5);
    CHECK(format_perm(Perm{Access::kBoth, 32751}) == "b32751");
    CHECK(format_perm(Perm{Access::kNone, 0}) == "n0");
    for (const char* bad : {"", "r", "x5", "r-1", "r05", "r32752", "r99999", "r5 ", "R5", "r0x5"})
        CHECK_FALSE(parse_perm(bad).has_value());
    CHECK(allows(Access::kBoth, Access::kRead));
    CHECK_FALSE(allows(Access::kWrite, Access::kRead));
    CHECK(format_perms({Perm{Access::kNone, 5}, Perm{Access::kRead, 0}}) == "n5 r0");
}

TEST_CASE("paths: absolute, relative, and every rejection", "[path]") {
    CHECK(canonical_node_path("/", 3) == "/");
    CHECK(canonical_node_path("/local/domain/3", 3) == "/local/domain/3");
    CHECK(canonical_node_path("device/vbd", 3) == "/local/domain/3/device/vbd");
    CHECK(canonical_node_path("A-z_0@9", 0) == "/local/domain/0/A-z_0@9");
    const std::string bad[] = {
        "",           "//",          "/a//b",         "/a/",          "a/",          "/a b",
        "/a\0b"s,     "/caf\xc3\xa9", "/\xff\xfe",     "/a.b",         "/a:b",        "@watch",
        "/a\nb",      "/tab\t",      "\xc3(",
    };
    for (const std::string& p : bad)
        CHECK_FALSE(canonical_node_path(p, 1).has_value());
    CHECK(canonical_node_path("/" + std::string(PVKIT_STORE_ABS_PATH_MAX - 1, 'a'), 0).has_value());
    CHECK_FALSE(canonical_node_path("/" + std::string(PVKIT_STORE_ABS_PATH_MAX, 'a'), 0).has_value());
    CHECK(canonical_node_path(std::string(PVKIT_STORE_REL_PATH_MAX, 'a'), 0).has_value());
    CHECK_FALSE(canonical_node_path(std::string(PVKIT_STORE_REL_PATH_MAX + 1, 'a'), 0).has_value());
    CHECK(canonical_watch_path("@introduceDomain", 1) == "@introduceDomain");
    CHECK_FALSE(canonical_watch_path("@", 1).has_value());
    CHECK_FALSE(canonical_watch_path("@a/b", 1).has_value());
    CHECK(parent_path("/a/b") == "/a");
    CHECK(parent_path("/a") == "/");
    CHECK(base_name("/a/b") == "b");
    CHECK(child_path("/", "x") == "/x");
    CHECK(is_at_or_below("/a/b", "/a"));
    CHECK(is_at_or_below("/a", "/a"));
    CHECK_FALSE(is_at_or_below("/ab", "/a"));
    CHECK(is_at_or_below("/x", "/"));
}
