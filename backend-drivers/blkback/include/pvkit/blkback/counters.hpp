// Per-device counters: what the device did and what it refused.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pvkit/blkback/request.hpp"

namespace pvkit::blkback {

struct DeviceCounters {
    std::uint64_t requests_read = 0;
    std::uint64_t requests_write = 0;
    std::uint64_t requests_flush = 0;
    std::uint64_t requests_discard = 0;
    std::uint64_t requests_indirect = 0; // also counted as read or write
    std::uint64_t bytes_read = 0;
    std::uint64_t bytes_written = 0;
    std::uint64_t notifications_sent = 0;     // kicks to the frontend
    std::uint64_t notifications_received = 0; // kicks from the frontend (eventfd reads)
    std::uint64_t ring_halts = 0;
    std::uint64_t connections = 0;
    std::array<std::uint64_t, kRequestErrorCount> errors{};

    void count_error(RequestError e) { ++errors[static_cast<std::size_t>(e)]; }
    [[nodiscard]] std::uint64_t total_errors() const;

    // (name, value) pairs in a fixed order; names are the store node names
    // under statistics/ and the JSON keys ("errors/<reason>" for errors).
    [[nodiscard]] std::vector<std::pair<std::string, std::uint64_t>> items() const;

    bool operator==(const DeviceCounters&) const = default;
};

} // namespace pvkit::blkback
