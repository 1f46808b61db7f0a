#include "pvkit/toolstack/xenbus_state.hpp"

namespace pvkit::toolstack {

const char* to_string(XenbusState state) {
    switch (state) {
    case XenbusState::kUnknown:
        return "Unknown";
    case XenbusState::kInitialising:
        return "Initialising";
    case XenbusState::kInitWait:
        return "InitWait";
    case XenbusState::kInitialised:
        return "Initialised";
    case XenbusState::kConnected:
        return "Connected";
    case XenbusState::kClosing:
        return "Closing";
    case XenbusState::kClosed:
        return "Closed";
    case XenbusState::kReconfiguring:
        return "Reconfiguring";
    case XenbusState::kReconfigured:
        return "Reconfigured";
    }
    return "invalid";
}

std::string format_xenbus_state(XenbusState state) {
    return std::to_string(static_cast<unsigned>(state));
}

std::optional<XenbusState> parse_xenbus_state(std::string_view value) {
    if (value.size() != 1 || value[0] < '0' || value[0] > '8')
        return std::nullopt;
    return static_cast<XenbusState>(value[0] - '0');
}

const char* to_string(StateWriter writer) {
    switch (writer) {
    case StateWriter::kToolstack:
        return "toolstack";
    case StateWriter::kFrontend:
        return "frontend";
    case StateWriter::kBackend:
        return "backend";
    }
    return "unknown";
}

const char* to_string(TransitionError error) {
    switch (error) {
    case TransitionError::kNotWriter:
        return "this party does not write this state node";
    case TransitionError::kNotAllowed:
        return "the handshake has no such transition for this party";
    case TransitionError::kReservedState:
        return "Unknown, Reconfiguring and Reconfigured are never written";
    }
    return "unknown transition error";
}

namespace {

using S = XenbusState;

bool is_one_of(S state, std::initializer_list<S> states) {
    for (S s : states) {
        if (s == state)
            return true;
    }
    return false;
}

bool toolstack_may(StateNode node, S from, S to) {
    // Creating a device writes both state nodes once.
    if (from == S::kUnknown && to == S::kInitialising)
        return true;
    // Detach asks the backend to close; the frontend follows it.
    return node == StateNode::kBackend && to == S::kClosing &&
           is_one_of(from, {S::kInitialising, S::kInitWait, S::kConnected});
}

bool frontend_may(S from, S to) {
    switch (to) {
    case S::kInitialised:
        return from == S::kInitialising;
    case S::kConnected:
        return from == S::kInitialised;
    case S::kClosing:
        return is_one_of(from, {S::kInitialising, S::kInitialised, S::kConnected});
    case S::kClosed:
        return from == S::kClosing;
    case S::kInitialising:
        // Start over with a fresh ring: the backend restarted (it went
        // Closed) or a closed device is being reopened.
        return is_one_of(from, {S::kInitialised, S::kConnected, S::kClosed});
    default:
        return false;
    }
}

bool backend_may(S from, S to) {
    switch (to) {
    case S::kInitWait:
        // Closed -> InitWait reopens the device for a frontend that went
        // back to Initialising.
        return is_one_of(from, {S::kInitialising, S::kClosed});
    case S::kConnected:
        return from == S::kInitWait;
    case S::kClosing:
        return is_one_of(from, {S::kInitialising, S::kInitWait, S::kConnected});
    case S::kClosed:
        // From Closing normally; from anything when a restarted backend
        // finds the node its previous instance left and declares that
        // connection gone.
        return is_one_of(from, {S::kInitialising, S::kInitWait, S::kConnected, S::kClosing});
    default:
        return false;
    }
}

} // namespace

Result<void, TransitionError> check_state_transition(StateWriter writer, StateNode node,
                                                     XenbusState from, XenbusState to) {
    if (is_one_of(to, {S::kUnknown, S::kReconfiguring, S::kReconfigured}))
        return Unexpected{TransitionError::kReservedState};

    const bool owner = writer == StateWriter::kToolstack ||
                       (writer == StateWriter::kFrontend && node == StateNode::kFrontend) ||
                       (writer == StateWriter::kBackend && node == StateNode::kBackend);
    if (!owner)
        return Unexpected{TransitionError::kNotWriter};
    // Writing the state a node already has changes nothing and is harmless
    // (a watch may fire twice for one change).
    if (from == to)
        return {};

    bool allowed = false;
    switch (writer) {
    case StateWriter::kToolstack:
        allowed = toolstack_may(node, from, to);
        break;
    case StateWriter::kFrontend:
        allowed = frontend_may(from, to);
        break;
    case StateWriter::kBackend:
        allowed = backend_may(from, to);
        break;
    }
    if (!allowed)
        return Unexpected{TransitionError::kNotAllowed};
    return {};
}

} // namespace pvkit::toolstack
