#include "pvkit/blkback/counters.hpp"

namespace pvkit::blkback {

std::uint64_t DeviceCounters::total_errors() const {
    std::uint64_t sum = 0;
    for (std::uint64_t e : errors)
        sum += e;
    return sum;
}

std::vector<std::pair<std::string, std::uint64_t>> DeviceCounters::items() const {
    std::vector<std::pair<std::string, std::uint64_t>> out{
        {"requests-read", requests_read},
        {"requests-write", requests_write},
        {"requests-flush", requests_flush},
        {"requests-discard", requests_discard},
        {"requests-indirect", requests_indirect},
        {"bytes-read", bytes_read},
        {"bytes-written", bytes_written},
        {"notifications-sent", notifications_sent},
        {"notifications-received", notifications_received},
        {"ring-halts", ring_halts},
        {"connections", connections},
        {"errors-total", total_errors()},
    };
    for (std::size_t i = 0; i < kRequestErrorCount; ++i)
        out.emplace_back(std::string("errors/") + counter_name(static_cast<RequestError>(i)), errors[i]);
    return out;
}

} // namespace pvkit::blkback
