#include "ring_bench.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "process.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "pvkit/transport/grant_mapper.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/transport/grant_table.hpp"
#include "pvkit/transport/ring.hpp"
#include "spsc_queue.hpp"

namespace pvkit::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTimeout = std::chrono::milliseconds(20000);

// A 64-byte message, the same for pvkit and the baselines.
struct Msg {
    std::uint64_t id;
    std::uint64_t payload[7];
};
static_assert(sizeof(Msg) == 64);

constexpr std::uint32_t kRingPages = 4; // 128 slots of 64 bytes
constexpr std::uint32_t kSlots = 128;
constexpr std::uint64_t kStopId = ~std::uint64_t{0};
constexpr pvkit_domid_t kFrontDomid = 1;
constexpr pvkit_domid_t kBackDomid = 0;
constexpr int kFrontCpu = 0;
constexpr int kBackCpu = 1;

enum class Notify {
    kPolling,  // both sides poll the indices; no event channel
    kHoldOff,  // spin, then arm the event index and sleep; kick only a sleeper
    kEveryPush // kick after every push (what a queue without event indices does)
};

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

[[noreturn]] void fail_ring(const char* side, RingError e) {
    throw std::runtime_error(std::string(side) + " ring: " + to_string(e));
}

// ---- pvkit ring ---------------------------------------------------------

struct PvkitSetup {
    GrantPool pool;
    std::vector<GrantRef> ring_refs;
    EventChannelFds evtchn;
};

PvkitSetup make_pvkit_setup() {
    // Four ring frames, plus room in the table for the ring's grants.
    PvkitSetup s{GrantPool::create(kFrontDomid, kRingPages, 16), {}, make_event_channel_fds()};
    return s;
}

// The backend child: attaches to the pool it was given as if it came over a
// socket, maps the ring through the grant checks and answers requests.
int pvkit_backend(Child& self, PvkitSetup& setup, Notify mode, std::chrono::nanoseconds spin,
                  std::uint32_t batch) {
    UniqueFd pool_fd(::dup(setup.pool.fd()));
    auto pool = GrantPool::attach(std::move(pool_fd));
    if (!pool)
        throw std::runtime_error(to_string(pool.error()));
    GrantMapper mapper(*pool, kBackDomid);
    auto mapping = map_ring(mapper, setup.ring_refs);
    if (!mapping)
        throw std::runtime_error(to_string(mapping.error()));
    auto ring = BackRing<Msg>::attach(mapping->bytes);
    if (!ring)
        fail_ring("backend", ring.error());
    EventChannel channel = EventChannel::backend_end(setup.evtchn);
    self.signal_ready();

    bool stop = false;
    while (!stop) {
        auto ready = mode == Notify::kPolling ? ring->pending()
                                              : wait_for_ring(*ring, channel, spin, kTimeout);
        if (!ready)
            fail_ring("backend", ready.error());
        if (*ready == 0) {
            cpu_relax();
            continue;
        }
        auto got = ring->consume(
            [&](const Msg& req) {
                Msg rsp{};
                rsp.id = req.id;
                rsp.payload[0] = req.payload[0] + 1;
                (void)ring->put_response(rsp); // cannot fail: one response per request
                stop = stop || req.id == kStopId;
            },
            batch);
        if (!got)
            fail_ring("backend", got.error());
        bool kick = ring->push();
        if (mode == Notify::kEveryPush || (mode == Notify::kHoldOff && kick))
            channel.notify();
    }
    std::array<std::uint64_t, 1> sent{channel.notifications_sent()};
    self.send(sent);
    return 0;
}

struct RunResult {
    double seconds = 0;
    std::uint64_t requests = 0;
    std::uint64_t notifications = 0; // both directions
};

// The frontend: keeps up to a ring's worth of requests in flight, `batch` per push.
RunResult pvkit_throughput(Notify mode, std::uint64_t total, std::uint32_t batch,
                           std::chrono::nanoseconds spin) {
    PvkitSetup setup = make_pvkit_setup();
    GrantTable grants(setup.pool);
    for (std::uint32_t i = 0; i < kRingPages; ++i) {
        auto ref = grants.grant(kBackDomid, setup.pool.layout().data_first + i,
                                GrantAccess::kReadWrite);
        if (!ref)
            throw std::runtime_error(to_string(ref.error()));
        setup.ring_refs.push_back(*ref);
    }
    std::span<std::byte> ring_mem{setup.pool.frame_ptr(setup.pool.layout().data_first),
                                  kRingPages * PVKIT_PAGE_SIZE};
    auto ring = FrontRing<Msg>::init(ring_mem);
    if (!ring)
        fail_ring("frontend", ring.error());

    Child child(kBackCpu, [&](Child& self) { return pvkit_backend(self, setup, mode, spin, batch); });
    EventChannel channel = EventChannel::frontend_end(setup.evtchn);
    child.wait_ready(kTimeout);

    std::uint64_t next = 0;
    std::uint64_t done = 0;
    auto accept = [&](const Msg& rsp) {
        // Responses come back in order here, so the id must be the next one.
        if (rsp.id != done || rsp.payload[0] != done + 1)
            return false;
        ++done;
        return true;
    };
    auto t0 = Clock::now();
    while (done < total) {
        std::uint32_t n = static_cast<std::uint32_t>(
            std::min<std::uint64_t>({batch, ring->free_slots(), total - next}));
        for (std::uint32_t i = 0; i < n; ++i) {
            Msg req{};
            req.id = next;
            req.payload[0] = next;
            ++next;
            (void)ring->put(req); // n <= free_slots
        }
        if (n > 0) {
            bool kick = ring->push();
            if (mode == Notify::kEveryPush || (mode == Notify::kHoldOff && kick))
                channel.notify();
        }
        auto got = ring->consume<Msg>(accept);
        if (!got)
            fail_ring("frontend", got.error());
        bool must_wait = *got == 0 && (ring->free_slots() == 0 || next == total);
        if (must_wait && mode != Notify::kPolling) {
            auto ready = wait_for_ring(*ring, channel, spin, kTimeout);
            if (!ready)
                fail_ring("frontend", ready.error());
        }
    }
    double secs = seconds_since(t0);

    Msg stop{};
    stop.id = kStopId;
    (void)ring->put(stop);
    (void)ring->push();
    channel.notify();
    auto backend_sent = child.receive(1, kTimeout);
    child.join(kTimeout);
    return {secs, total, channel.notifications_sent() + backend_sent[0]};
}

// One request at a time, both sides sleeping on their event channel.
double pvkit_roundtrip_us(std::uint64_t iterations, std::chrono::nanoseconds spin) {
    PvkitSetup setup = make_pvkit_setup();
    GrantTable grants(setup.pool);
    for (std::uint32_t i = 0; i < kRingPages; ++i) {
        auto ref = grants.grant(kBackDomid, setup.pool.layout().data_first + i,
                                GrantAccess::kReadWrite);
        if (!ref)
            throw std::runtime_error(to_string(ref.error()));
        setup.ring_refs.push_back(*ref);
    }
    std::span<std::byte> ring_mem{setup.pool.frame_ptr(setup.pool.layout().data_first),
                                  kRingPages * PVKIT_PAGE_SIZE};
    auto ring = FrontRing<Msg>::init(ring_mem);
    if (!ring)
        fail_ring("frontend", ring.error());
    Child child(kBackCpu,
                [&](Child& self) { return pvkit_backend(self, setup, Notify::kHoldOff, spin, 1); });
    EventChannel channel = EventChannel::frontend_end(setup.evtchn);
    child.wait_ready(kTimeout);

    auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < iterations; ++i) {
        Msg req{};
        req.id = i;
        req.payload[0] = i;
        (void)ring->put(req);
        if (ring->push())
            channel.notify();
        std::uint32_t got = 0;
        while (got == 0) {
            auto ready = wait_for_ring(*ring, channel, spin, kTimeout);
            if (!ready)
                fail_ring("frontend", ready.error());
            auto n = ring->consume<Msg>([&](const Msg& rsp) { return rsp.id == i; });
            if (!n)
                fail_ring("frontend", n.error());
            got = *n;
        }
    }
    double secs = seconds_since(t0);
    // Stop the backend.
    Msg stop{};
    stop.id = kStopId;
    (void)ring->put(stop);
    (void)ring->push();
    channel.notify();
    (void)child.receive(1, kTimeout);
    child.join(kTimeout);
    return secs * 1e6 / static_cast<double>(iterations);
}

// ---- baselines ----------------------------------------------------------

using Queue = SpscShared<Msg, kSlots>;

struct SharedQueues {
    Queue req;
    Queue rsp;
};

class SharedMapping {
public:
    explicit SharedMapping(std::size_t bytes) : m_bytes(bytes) {
        m_addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m_addr == MAP_FAILED)
            throw_errno("mmap");
    }
    SharedMapping(const SharedMapping&) = delete;
    SharedMapping& operator=(const SharedMapping&) = delete;
    ~SharedMapping() { ::munmap(m_addr, m_bytes); }
    [[nodiscard]] void* get() const { return m_addr; }

private:
    void* m_addr;
    std::size_t m_bytes;
};

// Same messages, same batching, same in-flight bound and pinning as the
// pvkit throughput run, on two bare queues.
RunResult spsc_throughput(std::uint64_t total, std::uint32_t batch) {
    SharedMapping mem(sizeof(SharedQueues));
    auto* q = new (mem.get()) SharedQueues{};
    Child child(kBackCpu, [&](Child& self) {
        SpscConsumer<Msg, kSlots> in(&q->req);
        SpscProducer<Msg, kSlots> out(&q->rsp);
        self.signal_ready();
        bool stop = false;
        while (!stop) {
            std::uint32_t room = out.free_slots();
            std::uint32_t n = in.consume(
                [&](const Msg& req) {
                    Msg rsp{};
                    rsp.id = req.id;
                    rsp.payload[0] = req.payload[0] + 1;
                    out.put(rsp);
                    stop = stop || req.id == kStopId;
                },
                std::min(batch, room));
            if (n > 0)
                out.publish();
            else
                cpu_relax();
        }
        return 0;
    });
    child.wait_ready(kTimeout);
    SpscProducer<Msg, kSlots> out(&q->req);
    SpscConsumer<Msg, kSlots> in(&q->rsp);
    std::uint64_t next = 0;
    std::uint64_t done = 0;
    bool bad = false;
    auto t0 = Clock::now();
    while (done < total && !bad) {
        std::uint64_t in_flight = next - done;
        std::uint32_t n = static_cast<std::uint32_t>(std::min<std::uint64_t>(
            {batch, kSlots - in_flight, out.free_slots(), total - next}));
        for (std::uint32_t i = 0; i < n; ++i) {
            Msg req{};
            req.id = next;
            req.payload[0] = next;
            ++next;
            out.put(req);
        }
        if (n > 0)
            out.publish();
        (void)in.consume(
            [&](const Msg& rsp) {
                bad = bad || rsp.id != done || rsp.payload[0] != done + 1;
                ++done;
            },
            kSlots);
    }
    double secs = seconds_since(t0);
    if (bad)
        throw std::runtime_error("spsc baseline: response out of order");
    while (out.free_slots() == 0)
        cpu_relax();
    Msg stop{};
    stop.id = kStopId;
    out.put(stop);
    out.publish();
    child.join(kTimeout);
    return {secs, total, 0};
}

// Two blocking eventfds, one per direction: the cheapest blocking wakeup
// round trip between two processes.
double eventfd_pingpong_us(std::uint64_t iterations) {
    UniqueFd ping(::eventfd(0, EFD_CLOEXEC));
    UniqueFd pong(::eventfd(0, EFD_CLOEXEC));
    if (!ping.valid() || !pong.valid())
        throw_errno("eventfd");
    Child child(kBackCpu, [&](Child& self) {
        self.signal_ready();
        std::uint64_t v;
        for (std::uint64_t i = 0; i < iterations; ++i) {
            if (::read(ping.get(), &v, sizeof v) != sizeof v)
                return 1;
            v = 1;
            if (::write(pong.get(), &v, sizeof v) != sizeof v)
                return 1;
        }
        return 0;
    });
    child.wait_ready(kTimeout);
    auto t0 = Clock::now();
    std::uint64_t v;
    for (std::uint64_t i = 0; i < iterations; ++i) {
        v = 1;
        if (::write(ping.get(), &v, sizeof v) != sizeof v ||
            ::read(pong.get(), &v, sizeof v) != sizeof v)
            throw_errno("eventfd ping-pong");
    }
    double secs = seconds_since(t0);
    child.join(kTimeout);
    return secs * 1e6 / static_cast<double>(iterations);
}

double mmsgs(const RunResult& r) {
    // Requests and responses both count as messages.
    return 2.0 * static_cast<double>(r.requests) / r.seconds / 1e6;
}

} // namespace

BenchReport run_ring_bench(const RingBenchOptions& opt) {
    if (opt.rounds < 1 || opt.requests < 1 || opt.roundtrips < 1 || opt.batch < 1 ||
        opt.batch > kSlots)
        throw std::invalid_argument("bench ring: rounds, requests, roundtrips must be >= 1 and "
                                    "batch in [1, 128]");
    pin_to_cpu(kFrontCpu);

    std::vector<double> polled, polled_base, notify, notify_base, npr, npr_base, lat, lat_base,
        lat_spin;
    for (int round = 0; round < opt.rounds; ++round) {
        // Interleaved: every round measures pvkit and its baseline back to
        // back, so a migration of our vCPUs hits both alike; who goes first
        // alternates between rounds, so neither always runs on a warm cache.
        const bool pvkit_first = round % 2 == 0;
        auto both = [pvkit_first](auto&& pvkit_run, auto&& baseline_run) {
            if (pvkit_first) {
                pvkit_run();
                baseline_run();
            } else {
                baseline_run();
                pvkit_run();
            }
        };
        both(
            [&] {
                polled.push_back(
                    mmsgs(pvkit_throughput(Notify::kPolling, opt.requests, opt.batch, opt.spin)));
            },
            [&] { polled_base.push_back(mmsgs(spsc_throughput(opt.requests, opt.batch))); });
        both(
            [&] {
                RunResult held =
                    pvkit_throughput(Notify::kHoldOff, opt.requests, opt.batch, opt.spin);
                notify.push_back(mmsgs(held));
                npr.push_back(static_cast<double>(held.notifications) /
                              static_cast<double>(held.requests));
            },
            [&] { notify_base.push_back(mmsgs(spsc_throughput(opt.requests, opt.batch))); });
        RunResult every = pvkit_throughput(Notify::kEveryPush, opt.requests, opt.batch, opt.spin);
        npr_base.push_back(static_cast<double>(every.notifications) /
                           static_cast<double>(every.requests));

        both(
            [&] {
                lat.push_back(pvkit_roundtrip_us(opt.roundtrips, std::chrono::nanoseconds{0}));
                lat_spin.push_back(pvkit_roundtrip_us(opt.roundtrips, opt.spin));
            },
            [&] { lat_base.push_back(eventfd_pingpong_us(opt.roundtrips)); });
    }

    BenchReport report;
    report.suite = "ring";
    report.config = {{"rounds", opt.rounds},
                     {"requests", opt.requests},
                     {"roundtrips", opt.roundtrips},
                     {"batch", opt.batch},
                     {"message_bytes", sizeof(Msg)},
                     {"ring_slots", kSlots},
                     {"spin_ns", opt.spin.count()},
                     {"cpus", online_cpus()}};

    BenchResult r;
    r.name = "rr_throughput_polling";
    r.unit = "Mmsg/s";
    r.pvkit = Stats::of(polled);
    r.baseline = Stats::of(polled_base);
    r.baseline_name = "spsc-queue-pair";
    r.goal = Goal{"ratio >= 0.5", r.ratio() >= 0.5};
    r.note = "requests+responses per second, both sides polling, batch " +
             std::to_string(opt.batch);
    report.results.push_back(r);

    r = {};
    r.name = "rr_throughput_holdoff";
    r.unit = "Mmsg/s";
    r.pvkit = Stats::of(notify);
    r.baseline = Stats::of(notify_base);
    r.baseline_name = "spsc-queue-pair";
    r.note = "event-index hold-off, spin then sleep on eventfds (baseline polls)";
    report.results.push_back(r);

    r = {};
    r.name = "notifications_per_request";
    r.unit = "notif/req";
    r.higher_is_better = false;
    r.pvkit = Stats::of(npr);
    r.baseline = Stats::of(npr_base);
    r.baseline_name = "kick-every-push";
    r.goal = Goal{"pvkit <= 0.05", r.pvkit.median <= 0.05};
    r.note = "both directions, same workload as rr_throughput_holdoff";
    report.results.push_back(r);

    r = {};
    r.name = "roundtrip_latency_blocking";
    r.unit = "us";
    r.higher_is_better = false;
    r.pvkit = Stats::of(lat);
    r.baseline = Stats::of(lat_base);
    r.baseline_name = "eventfd-pingpong";
    r.goal = Goal{"ratio >= 0.8", r.ratio() >= 0.8};
    r.note = "one request in flight, both sides sleep in poll(2) at once";
    report.results.push_back(r);

    r = {};
    r.name = "roundtrip_latency_spin";
    r.unit = "us";
    r.higher_is_better = false;
    r.pvkit = Stats::of(lat_spin);
    r.baseline = Stats::of(lat_base);
    r.baseline_name = "eventfd-pingpong";
    r.note = "one request in flight, spin " + std::to_string(opt.spin.count()) +
             " ns on the ring before sleeping";
    report.results.push_back(r);
    return report;
}

} // namespace pvkit::bench
