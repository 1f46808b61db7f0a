#include "pvkit/transport/ring.hpp"

#include <string>

namespace pvkit {

const char* to_string(RingError e) {
    switch (e) {
    case RingError::kBadGeometry:
        return "ring memory has a bad size";
    case RingError::kProtocol:
        return "peer published an impossible ring index";
    case RingError::kBadResponse:
        return "peer sent a response that matches no request in flight";
    case RingError::kFull:
        return "ring full";
    case RingError::kHalted:
        return "ring halted after a protocol violation";
    case RingError::kTimeout:
        return "timed out waiting on the ring";
    }
    return "unknown ring error";
}

std::string RingHalt::describe() const {
    std::string s = to_string(error);
    s += ": peer index " + std::to_string(peer_index) + ", our consumer index " +
         std::to_string(consumer) + ", at most " + std::to_string(limit) + " entries possible";
    return s;
}

} // namespace pvkit
