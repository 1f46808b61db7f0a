#include "pvkit/front/blk_workload.hpp"

#include <algorithm>
#include <random>
#include <string>

#include "pvkit/front/pattern.hpp"

namespace pvkit::front {

namespace {

using Clock = std::chrono::steady_clock;

std::string fail_text(const BlkWorkloadSpec& spec, const std::string& what) {
    return std::string("workload ") + to_string(spec.kind) +
           " bs=" + std::to_string(spec.block_size) + " qd=" + std::to_string(spec.queue_depth) +
           ": " + what;
}

} // namespace

const char* to_string(BlkWorkloadKind kind) {
    switch (kind) {
    case BlkWorkloadKind::kRandRead:
        return "randread";
    case BlkWorkloadKind::kRandWrite:
        return "randwrite";
    case BlkWorkloadKind::kSeqRead:
        return "read";
    case BlkWorkloadKind::kSeqWrite:
        return "write";
    }
    return "?";
}

bool parse_workload_kind(const std::string& text, BlkWorkloadKind& out) {
    for (BlkWorkloadKind k : {BlkWorkloadKind::kRandRead, BlkWorkloadKind::kRandWrite,
                              BlkWorkloadKind::kSeqRead, BlkWorkloadKind::kSeqWrite}) {
        if (text == to_string(k)) {
            out = k;
            return true;
        }
    }
    return false;
}

double BlkWorkloadResult::iops() const {
    return seconds > 0 ? static_cast<double>(requests) / seconds : 0.0;
}

double BlkWorkloadResult::mib_per_second() const {
    return seconds > 0 ? static_cast<double>(bytes) / seconds / (1024.0 * 1024.0) : 0.0;
}

double BlkWorkloadResult::latency_percentile_us(double p) const {
    if (latencies_us.empty())
        return 0.0;
    const double clamped = std::clamp(p, 0.0, 1.0);
    const auto i = static_cast<std::size_t>(clamped * static_cast<double>(latencies_us.size() - 1));
    return latencies_us[i];
}

BlkWorkloadResult run_blk_workload(BlkDevice& device, const BlkWorkloadSpec& spec) {
    const BlkInfo& info = device.info();
    const std::uint64_t bs = spec.block_size;
    if (bs == 0 || bs % info.sector_size != 0 || bs > info.max_io_bytes)
        throw FrontError(fail_text(spec, "block size must be a multiple of the sector size (" +
                                             std::to_string(info.sector_size) + ") up to " +
                                             std::to_string(info.max_io_bytes)));
    if (spec.queue_depth == 0 || spec.queue_depth > info.queue_depth)
        throw FrontError(
            fail_text(spec, "queue depth must be 1.." + std::to_string(info.queue_depth)));
    if (spec.duration.count() <= 0 && spec.requests == 0)
        throw FrontError(fail_text(spec, "neither a duration nor a request count"));
    if (is_write(spec.kind) && info.read_only)
        throw FrontError(fail_text(spec, "the device is read-only"));
    if (spec.span_offset % bs != 0 || spec.span_offset >= info.size_bytes)
        throw FrontError(fail_text(spec, "span offset " + std::to_string(spec.span_offset) +
                                             " is not a block multiple inside the disk"));
    const std::uint64_t room = info.size_bytes - spec.span_offset;
    const std::uint64_t span = spec.span_bytes == 0 ? room : std::min(spec.span_bytes, room);
    const std::uint64_t blocks = span / bs;
    if (blocks == 0)
        throw FrontError(fail_text(spec, "the span is smaller than one block"));
    if (device.in_flight() != 0)
        throw FrontError(fail_text(spec, "the device has asynchronous I/O in flight already"));

    // Zero-copy buffers, one per queue slot; written data is the pattern
    // of the slot's first offset, so a later verify can tell it apart from
    // garbage (not from other slots' data: the workload does not track
    // which block got which buffer).
    std::vector<PoolBuffer> bufs;
    bufs.reserve(spec.queue_depth);
    for (std::uint32_t i = 0; i < spec.queue_depth; ++i) {
        auto buf = device.alloc_buffer(static_cast<std::size_t>(bs));
        if (!buf)
            throw FrontError(
                fail_text(spec, std::string("allocate buffers: ") + to_string(buf.error())));
        if (is_write(spec.kind))
            fill_pattern(buf->bytes().first(static_cast<std::size_t>(bs)), spec.seed, i * bs);
        bufs.push_back(std::move(buf).value());
    }

    const bool random =
        spec.kind == BlkWorkloadKind::kRandRead || spec.kind == BlkWorkloadKind::kRandWrite;
    const bool writes = is_write(spec.kind);
    std::mt19937_64 rng(spec.seed);
    std::uint64_t next_block = 0;
    auto pick = [&]() -> std::uint64_t {
        std::uint64_t block;
        if (random) {
            block = rng() % blocks;
        } else {
            block = next_block;
            next_block = next_block + 1 == blocks ? 0 : next_block + 1;
        }
        return spec.span_offset + block * bs;
    };

    BlkWorkloadResult res;
    if (spec.record_latencies)
        res.latencies_us.reserve(
            spec.requests != 0
                ? static_cast<std::size_t>(std::min<std::uint64_t>(spec.requests, 1u << 24))
                : std::size_t{1} << 20);
    std::vector<Clock::time_point> started(spec.queue_depth);
    std::vector<Completion> done;
    done.reserve(spec.queue_depth);
    std::uint64_t submitted = 0;
    double latency_sum_us = 0;
    res.latency_min_us = 0;

    auto submit = [&](std::uint32_t slot, Clock::time_point now) {
        started[slot] = now;
        const std::uint64_t off = pick();
        auto r = writes ? device.submit_write(off, bufs[slot], static_cast<std::size_t>(bs), slot)
                        : device.submit_read(off, bufs[slot], static_cast<std::size_t>(bs), slot);
        if (!r)
            throw FrontError(fail_text(spec, "submit at offset " + std::to_string(off) + ": " +
                                                 to_string(r.error())));
        ++submitted;
    };
    auto want_more = [&](Clock::time_point now, Clock::time_point end) {
        if (spec.requests != 0 && submitted >= spec.requests)
            return false;
        return spec.duration.count() <= 0 || now < end;
    };

    const BlkCounters before = device.counters();
    const Clock::time_point t0 = Clock::now();
    const Clock::time_point end = t0 + std::chrono::duration_cast<Clock::duration>(spec.duration);
    for (std::uint32_t i = 0; i < spec.queue_depth && want_more(t0, end); ++i)
        submit(i, t0);
    Clock::time_point last = t0;
    while (device.in_flight() > 0) {
        done.clear();
        auto r = device.wait(done, 1, spec.stall_timeout);
        if (!r)
            throw FrontError(
                fail_text(spec, std::string("waiting for completions: ") + to_string(r.error())));
        const Clock::time_point now = Clock::now();
        last = now;
        for (const Completion& c : done) {
            if (c.error)
                throw FrontError(
                    fail_text(spec, std::string("I/O failed: ") + to_string(*c.error)));
            const auto slot = static_cast<std::uint32_t>(c.tag);
            const double us =
                std::chrono::duration<double, std::micro>(now - started[slot]).count();
            latency_sum_us += us;
            if (res.requests == 0 || us < res.latency_min_us)
                res.latency_min_us = us;
            res.latency_max_us = std::max(res.latency_max_us, us);
            if (spec.record_latencies)
                res.latencies_us.push_back(us);
            ++res.requests;
            res.bytes += c.bytes;
        }
        // Replacements go out after the whole batch was collected.
        for (const Completion& c : done) {
            if (!want_more(now, end))
                break;
            submit(static_cast<std::uint32_t>(c.tag), now);
        }
    }
    const BlkCounters after = device.counters();
    res.seconds = std::chrono::duration<double>(last - t0).count();
    res.ring_requests = after.ring_requests - before.ring_requests;
    res.notifications_sent = after.notifications_sent - before.notifications_sent;
    res.notifications_received = after.notifications_received - before.notifications_received;
    res.sleeps = after.sleeps - before.sleeps;
    res.latency_mean_us =
        res.requests != 0 ? latency_sum_us / static_cast<double>(res.requests) : 0.0;
    std::sort(res.latencies_us.begin(), res.latencies_us.end());
    return res;
}

} // namespace pvkit::front
