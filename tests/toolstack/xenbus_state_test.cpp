// XenBus states: the store form, strict parsing of peer-written values,
// and the transition rules of docs/handshake.md, both as the scenarios the
// document walks through and as an exhaustive table.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pvkit/toolstack/xenbus_state.hpp"

namespace ts = pvkit::toolstack;
using S = ts::XenbusState;
using W = ts::StateWriter;
using N = ts::StateNode;

namespace {

constexpr S kAll[] = {S::kUnknown,     S::kInitialising,  S::kInitWait,
                      S::kInitialised, S::kConnected,     S::kClosing,
                      S::kClosed,      S::kReconfiguring, S::kReconfigured};

bool allowed(W writer, N node, S from, S to) {
    return ts::check_state_transition(writer, node, from, to).ok();
}

// One step of a scenario: `writer` moves `node` from `from` to `to`.
struct Step {
    W writer;
    N node;
    S from;
    S to;
};

void require_steps(const std::vector<Step>& steps) {
    for (const Step& s : steps) {
        INFO(ts::to_string(s.writer) << (s.node == N::kFrontend ? " frontend " : " backend ")
                                     << ts::to_string(s.from) << " -> " << ts::to_string(s.to));
        CHECK(allowed(s.writer, s.node, s.from, s.to));
    }
}

} // namespace

TEST_CASE("states format as Xen's numbers and parse back", "[toolstack][xenbus]") {
    for (S state : kAll) {
        const std::string text = ts::format_xenbus_state(state);
        CHECK(text.size() == 1);
        CHECK(ts::parse_xenbus_state(text) == state);
    }
    CHECK(ts::format_xenbus_state(S::kInitialising) == "1");
    CHECK(ts::format_xenbus_state(S::kClosed) == "6");
    CHECK(std::string(ts::to_string(S::kInitWait)) == "InitWait");
}

TEST_CASE("state values from a peer parse strictly", "[toolstack][xenbus]") {
    for (const char* bad : {"", "9", "10", "01", "-1", "+4", " 4", "4 ", "4\n", "x"}) {
        INFO('"' << bad << '"');
        CHECK_FALSE(ts::parse_xenbus_state(bad).has_value());
    }
    CHECK_FALSE(ts::parse_xenbus_state(std::string_view("4\0", 2)).has_value());
}

TEST_CASE("the documented scenarios are allowed step by step", "[toolstack][xenbus]") {
    SECTION("create and connect") {
        require_steps({
            {W::kToolstack, N::kBackend, S::kUnknown, S::kInitialising},
            {W::kToolstack, N::kFrontend, S::kUnknown, S::kInitialising},
            {W::kBackend, N::kBackend, S::kInitialising, S::kInitWait},
            {W::kFrontend, N::kFrontend, S::kInitialising, S::kInitialised},
            {W::kBackend, N::kBackend, S::kInitWait, S::kConnected},
            {W::kFrontend, N::kFrontend, S::kInitialised, S::kConnected},
        });
    }
    SECTION("toolstack detach") {
        require_steps({
            {W::kToolstack, N::kBackend, S::kConnected, S::kClosing},
            {W::kFrontend, N::kFrontend, S::kConnected, S::kClosing},
            {W::kFrontend, N::kFrontend, S::kClosing, S::kClosed},
            {W::kBackend, N::kBackend, S::kClosing, S::kClosed},
        });
    }
    SECTION("frontend-initiated close, then reopen") {
        require_steps({
            {W::kFrontend, N::kFrontend, S::kConnected, S::kClosing},
            {W::kBackend, N::kBackend, S::kConnected, S::kClosing},
            {W::kFrontend, N::kFrontend, S::kClosing, S::kClosed},
            {W::kBackend, N::kBackend, S::kClosing, S::kClosed},
            {W::kFrontend, N::kFrontend, S::kClosed, S::kInitialising},
            {W::kBackend, N::kBackend, S::kClosed, S::kInitWait},
            {W::kFrontend, N::kFrontend, S::kInitialising, S::kInitialised},
            {W::kBackend, N::kBackend, S::kInitWait, S::kConnected},
            {W::kFrontend, N::kFrontend, S::kInitialised, S::kConnected},
        });
    }
    SECTION("backend restart and reconnect") {
        require_steps({
            // The new backend instance finds Connected and declares it gone.
            {W::kBackend, N::kBackend, S::kConnected, S::kClosed},
            {W::kFrontend, N::kFrontend, S::kConnected, S::kInitialising},
            {W::kBackend, N::kBackend, S::kClosed, S::kInitWait},
            {W::kFrontend, N::kFrontend, S::kInitialising, S::kInitialised},
            {W::kBackend, N::kBackend, S::kInitWait, S::kConnected},
            {W::kFrontend, N::kFrontend, S::kInitialised, S::kConnected},
        });
    }
    SECTION("backend-initiated close (a protocol violation halted the ring)") {
        require_steps({
            {W::kBackend, N::kBackend, S::kConnected, S::kClosing},
            {W::kFrontend, N::kFrontend, S::kConnected, S::kClosing},
            {W::kFrontend, N::kFrontend, S::kClosing, S::kClosed},
            {W::kBackend, N::kBackend, S::kClosing, S::kClosed},
        });
    }
}

TEST_CASE("each party writes only its own state node", "[toolstack][xenbus]") {
    auto r = ts::check_state_transition(W::kFrontend, N::kBackend, S::kInitWait, S::kConnected);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == ts::TransitionError::kNotWriter);
    r = ts::check_state_transition(W::kBackend, N::kFrontend, S::kInitialising, S::kInitialised);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == ts::TransitionError::kNotWriter);
}

TEST_CASE("reserved states are never written", "[toolstack][xenbus]") {
    for (W writer : {W::kToolstack, W::kFrontend, W::kBackend}) {
        for (S to : {S::kUnknown, S::kReconfiguring, S::kReconfigured}) {
            auto r = ts::check_state_transition(writer, N::kBackend, S::kConnected, to);
            REQUIRE_FALSE(r.ok());
            CHECK(r.error() == ts::TransitionError::kReservedState);
        }
    }
}

TEST_CASE("forbidden shortcuts are refused", "[toolstack][xenbus]") {
    // The frontend may not claim Connected before publishing its ring.
    CHECK_FALSE(allowed(W::kFrontend, N::kFrontend, S::kInitialising, S::kConnected));
    // The backend may not connect before InitWait (features first).
    CHECK_FALSE(allowed(W::kBackend, N::kBackend, S::kInitialising, S::kConnected));
    // Only a backend uses InitWait, only a frontend Initialised.
    CHECK_FALSE(allowed(W::kFrontend, N::kFrontend, S::kInitialising, S::kInitWait));
    CHECK_FALSE(allowed(W::kBackend, N::kBackend, S::kInitWait, S::kInitialised));
    // Closed is reached through Closing, except by a restarted backend.
    CHECK_FALSE(allowed(W::kFrontend, N::kFrontend, S::kConnected, S::kClosed));
    // The toolstack never writes the frontend's state after creating it.
    CHECK_FALSE(allowed(W::kToolstack, N::kFrontend, S::kConnected, S::kClosing));
    // Nobody moves a node that does not exist except the toolstack.
    CHECK_FALSE(allowed(W::kBackend, N::kBackend, S::kUnknown, S::kInitWait));
    CHECK_FALSE(allowed(W::kFrontend, N::kFrontend, S::kUnknown, S::kInitialising));
}

TEST_CASE("the transition table is exactly the documented one", "[toolstack][xenbus]") {
    using Edge = std::pair<S, S>;
    const std::set<Edge> toolstack_backend{
        {S::kUnknown, S::kInitialising},
        {S::kInitialising, S::kClosing},
        {S::kInitWait, S::kClosing},
        {S::kConnected, S::kClosing},
    };
    const std::set<Edge> toolstack_frontend{{S::kUnknown, S::kInitialising}};
    const std::set<Edge> frontend{
        {S::kInitialising, S::kInitialised}, {S::kInitialised, S::kConnected},
        {S::kInitialising, S::kClosing},     {S::kInitialised, S::kClosing},
        {S::kConnected, S::kClosing},        {S::kClosing, S::kClosed},
        {S::kInitialised, S::kInitialising}, {S::kConnected, S::kInitialising},
        {S::kClosed, S::kInitialising},
    };
    const std::set<Edge> backend{
        {S::kInitialising, S::kInitWait}, {S::kClosed, S::kInitWait},
        {S::kInitWait, S::kConnected},    {S::kInitialising, S::kClosing},
        {S::kInitWait, S::kClosing},      {S::kConnected, S::kClosing},
        {S::kClosing, S::kClosed},        {S::kInitialising, S::kClosed},
        {S::kInitWait, S::kClosed},       {S::kConnected, S::kClosed},
    };
    const struct {
        W writer;
        N node;
        const std::set<Edge>& edges;
    } tables[] = {
        {W::kToolstack, N::kBackend, toolstack_backend},
        {W::kToolstack, N::kFrontend, toolstack_frontend},
        {W::kFrontend, N::kFrontend, frontend},
        {W::kBackend, N::kBackend, backend},
    };
    const S written[] = {S::kInitialising, S::kInitWait, S::kInitialised,
                         S::kConnected,    S::kClosing,  S::kClosed};
    for (const auto& table : tables) {
        for (S from : kAll) {
            for (S to : written) {
                INFO(ts::to_string(table.writer)
                     << ": " << ts::to_string(from) << " -> " << ts::to_string(to));
                const bool expected = from == to || table.edges.count({from, to}) == 1;
                CHECK(allowed(table.writer, table.node, from, to) == expected);
            }
        }
    }
}
