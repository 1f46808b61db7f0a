// XenBus device states and the transitions each party may make.
//
// Every PV device has two `state` nodes in the store, one in its frontend
// directory and one in its backend directory. docs/handshake.md draws the
// state machine; check_state_transition is that drawing as code, so the
// drivers, the toolstack and the tests all share one definition.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pvkit/transport/result.hpp"

namespace pvkit::toolstack {

// The numbers are Xen's (xen/include/public/io/xenbus.h) and are what the
// store holds, in decimal.
enum class XenbusState : std::uint8_t {
    kUnknown = 0, // no state node (never written)
    kInitialising = 1,
    kInitWait = 2,    // backend: features published, waiting for the frontend
    kInitialised = 3, // frontend: ring and event channel published
    kConnected = 4,
    kClosing = 5,
    kClosed = 6,
    kReconfiguring = 7, // Xen uses 7 and 8 for PCI passthrough only;
    kReconfigured = 8,  // no pvkit device enters them.
};

// "Initialising", "InitWait", ... for messages and logs.
const char* to_string(XenbusState state);

// The store form: "0".."8".
std::string format_xenbus_state(XenbusState state);

// Parses a state node's value. The value comes from a peer and is
// untrusted, so exactly one decimal digit 0..8 is accepted: no sign, no
// spaces, no leading zeros, no trailing newline.
std::optional<XenbusState> parse_xenbus_state(std::string_view value);

// Who writes a state node.
enum class StateWriter : std::uint8_t { kToolstack, kFrontend, kBackend };
const char* to_string(StateWriter writer);

// Which of the device's two state nodes is written.
enum class StateNode : std::uint8_t { kFrontend, kBackend };

enum class TransitionError : std::uint8_t {
    kNotWriter,     // this party never writes this node
    kNotAllowed,    // the state machine has no such edge for this party
    kReservedState, // Unknown, Reconfiguring and Reconfigured are never written
};
const char* to_string(TransitionError error);

// Checks one write of a state node: `writer` changes `node` from `from`
// (kUnknown when the node does not exist yet) to `to`. Rewriting the same
// state is allowed and means nothing. The edges are those of
// docs/handshake.md:
//
//   toolstack, either node:  Unknown -> Initialising          (create)
//   toolstack, backend node: Initialising|InitWait|Connected -> Closing  (detach)
//   frontend:  Initialising -> Initialised -> Connected
//              Initialising|Initialised|Connected -> Closing -> Closed
//              Initialised|Connected|Closed -> Initialising  (reconnect)
//   backend:   Initialising -> InitWait -> Connected
//              Initialising|InitWait|Connected -> Closing -> Closed
//              any -> Closed                      (a restarted backend)
//              Closed -> InitWait                 (reconnect)
[[nodiscard]] Result<void, TransitionError>
check_state_transition(StateWriter writer, StateNode node, XenbusState from, XenbusState to);

} // namespace pvkit::toolstack
