// Event channels without KVM: the port table driven through a fake
// wiring, and the EVTCHN_OP / GRANT_POOL_QUERY / STORE_RING_INFO /
// DEVICE_CONNECT hypercalls with every argument a guest could pass.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <pvkit/evtchn.h>
#include <pvkit/grant.h>
#include <pvkit/hypercall.h>
#include <pvkit/start_info.h>
#include <pvkit/store.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "pvkit/vmm/doorbell.hpp"
#include "pvkit/vmm/event_channels.hpp"
#include "pvkit/vmm/hypercall.hpp"
#include "vmm_test_support.hpp"

using pvkit::test::error_of;
using pvkit::vmm::Errno;
using pvkit::vmm::EventChannelTable;
using pvkit::vmm::EvtchnWiring;
using pvkit::vmm::GuestMemory;
using pvkit::vmm::HypercallDispatcher;

namespace {

constexpr pvkit_domid_t kSelf = 5;

// Records what the table asks of KVM; can be told to fail.
class FakeWiring final : public EvtchnWiring {
public:
    pvkit::Result<void, Errno> set_routes(std::span<const Route> r) override {
        if (fail_routes)
            return pvkit::Unexpected{Errno{PVKIT_EIO}};
        routes.clear();
        for (const Route& route : r)
            routes[route.gsi] = route.vector;
        return {};
    }
    pvkit::Result<void, Errno> kick(pvkit_evtchn_port_t port, int fd, bool assign) override {
        if (assign && fail_kick)
            return pvkit::Unexpected{Errno{PVKIT_ENOMEM}};
        if (assign)
            kicks[port] = fd;
        else
            kicks.erase(port);
        return {};
    }
    pvkit::Result<void, Errno> irq(std::uint32_t gsi, int fd, bool assign) override {
        if (assign)
            irqs[gsi] = fd;
        else
            irqs.erase(gsi);
        return {};
    }

    std::map<std::uint32_t, std::uint32_t> routes; // gsi -> vector
    std::map<pvkit_evtchn_port_t, int> kicks;      // port -> eventfd
    std::map<std::uint32_t, int> irqs;             // gsi -> eventfd
    bool fail_routes = false;
    bool fail_kick = false;
};

// Whether two descriptors name the same eventfd: a signal on one is
// readable on the other. (fstat cannot tell: every eventfd shares one
// anonymous inode.) Both are left with a zero count.
bool same_file(int a, int b) {
    const std::uint64_t one = 1;
    REQUIRE(::write(a, &one, sizeof one) == sizeof one);
    std::uint64_t n = 0;
    const bool same = ::read(b, &n, sizeof n) == sizeof n && n == 1;
    if (!same)
        (void)!::read(a, &n, sizeof n);
    return same;
}

} // namespace

TEST_CASE("ALLOC_UNBOUND wires a route, an irqfd and a doorbell ioeventfd", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    auto p = t.alloc_unbound(0, 0x40);
    REQUIRE(p.ok());
    CHECK(p.value() == 1); // the lowest free port, as Xen does
    CHECK(w.routes.at(1) == 0x40);
    REQUIRE(w.kicks.count(1) == 1);
    REQUIRE(w.irqs.count(1) == 1);
    CHECK_FALSE(same_file(w.kicks[1], w.irqs[1])); // two eventfds per port
    auto s = t.status(1);
    REQUIRE(s.ok());
    CHECK(s->status == PVKIT_EVTCHNSTAT_UNBOUND);
    CHECK(s->remote_dom == 0);
    CHECK(s->remote_port == 0);
    CHECK(s->vector == 0x40);
    CHECK(t.alloc_unbound(PVKIT_DOMID_SELF, 0x41).value() == 2);
    CHECK(t.status(2)->remote_dom == kSelf); // SELF names this domain
    CHECK(w.routes.size() == 2);
}

TEST_CASE("ALLOC_UNBOUND refuses bad vectors and domains", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    for (std::uint32_t v : {0u, 0x2fu, 0xf0u, 0xffu, 0x100u, ~0u})
        CHECK(error_of(t.alloc_unbound(0, v)) == PVKIT_EINVAL);
    CHECK(t.alloc_unbound(0, PVKIT_EVTCHN_VECTOR_MIN).ok());
    CHECK(t.alloc_unbound(0, PVKIT_EVTCHN_VECTOR_MAX).ok());
    CHECK(error_of(t.alloc_unbound(PVKIT_DOMID_MAX + 2, 0x40)) == PVKIT_EINVAL); // +1 is SELF
    CHECK(error_of(t.alloc_unbound(PVKIT_DOMID_INVALID, 0x40)) == PVKIT_EINVAL);
    CHECK(t.alloc_unbound(PVKIT_DOMID_MAX, 0x40).ok());
    CHECK(t.counters().refused == 8);
}

TEST_CASE("Ports run out at PVKIT_EVTCHN_MAX_PORT", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    for (std::uint32_t i = 1; i <= PVKIT_EVTCHN_MAX_PORT; ++i)
        REQUIRE(t.alloc_unbound(0, 0x40).value() == i);
    CHECK(error_of(t.alloc_unbound(0, 0x40)) == PVKIT_ENOSPC);
    REQUIRE(t.close(500).ok());
    CHECK(t.alloc_unbound(0, 0x41).value() == 500);
}

TEST_CASE("A wiring failure leaves no port behind", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    w.fail_kick = true;
    CHECK(error_of(t.alloc_unbound(0, 0x40)) == PVKIT_ENOMEM);
    CHECK(w.irqs.empty());
    CHECK(w.routes.empty());
    CHECK(t.status(1)->status == PVKIT_EVTCHNSTAT_CLOSED);
    w.fail_kick = false;
    w.fail_routes = true;
    CHECK(error_of(t.alloc_unbound(0, 0x40)) == PVKIT_EIO);
    w.fail_routes = false;
    CHECK(t.alloc_unbound(0, 0x40).value() == 1);
}

TEST_CASE("CLOSE removes the wiring; errors for bad and closed ports", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    REQUIRE(t.alloc_unbound(0, 0x40).ok());
    CHECK(error_of(t.close(0)) == PVKIT_EINVAL);
    CHECK(error_of(t.close(PVKIT_EVTCHN_MAX_PORT + 1)) == PVKIT_EINVAL);
    CHECK(error_of(t.close(2)) == PVKIT_ENOENT);
    REQUIRE(t.close(1).ok());
    CHECK(w.kicks.empty());
    CHECK(w.irqs.empty());
    CHECK(w.routes.empty());
    CHECK(error_of(t.close(1)) == PVKIT_ENOENT);
    CHECK(t.status(1)->status == PVKIT_EVTCHNSTAT_CLOSED);
    CHECK(error_of(t.status(0)) == PVKIT_EINVAL);
    CHECK(error_of(t.status(1024)) == PVKIT_EINVAL);
}

TEST_CASE("BIND_INTERDOMAIN to this domain crosses the eventfds of a loopback pair",
          "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    const auto a = t.alloc_unbound(kSelf, 0x40).value();
    auto b = t.bind_interdomain(PVKIT_DOMID_SELF, a, 0x50);
    REQUIRE(b.ok());
    // b's doorbell kick is a's interrupt, and the other way round.
    CHECK(same_file(w.kicks[b.value()], w.irqs[a]));
    CHECK(same_file(w.kicks[a], w.irqs[b.value()]));
    CHECK(t.status(a)->status == PVKIT_EVTCHNSTAT_INTERDOMAIN);
    CHECK(t.status(a)->remote_port == b.value());
    CHECK(t.status(b.value())->remote_port == a);
    CHECK(t.status(b.value())->vector == 0x50);
    // Bound already.
    CHECK(error_of(t.bind_interdomain(kSelf, a, 0x51)) == PVKIT_EINVAL);
    // Closing one end leaves the other unbound, still waiting for this domain.
    REQUIRE(t.close(b.value()).ok());
    CHECK(t.status(a)->status == PVKIT_EVTCHNSTAT_UNBOUND);
    CHECK(t.status(a)->remote_port == 0);
    auto again = t.bind_interdomain(kSelf, a, 0x52);
    REQUIRE(again.ok());
    CHECK(same_file(w.kicks[again.value()], w.irqs[a]));
}

TEST_CASE("BIND_INTERDOMAIN refuses other domains and ports not waiting for us", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    const auto for_dom0 = t.alloc_unbound(0, 0x40).value();
    CHECK(error_of(t.bind_interdomain(0, for_dom0, 0x41)) == PVKIT_EOPNOTSUPP);
    CHECK(error_of(t.bind_interdomain(kSelf + 1, 1, 0x41)) == PVKIT_EOPNOTSUPP);
    CHECK(error_of(t.bind_interdomain(PVKIT_DOMID_MAX + 1, 1, 0x41)) == PVKIT_EINVAL);
    CHECK(error_of(t.bind_interdomain(kSelf, for_dom0, 0x41)) == PVKIT_EINVAL);
    CHECK(error_of(t.bind_interdomain(kSelf, 0, 0x41)) == PVKIT_EINVAL);
    CHECK(error_of(t.bind_interdomain(kSelf, 1024, 0x41)) == PVKIT_EINVAL);
    CHECK(error_of(t.bind_interdomain(kSelf, 77, 0x41)) == PVKIT_ENOENT);
    const auto mine = t.alloc_unbound(kSelf, 0x40).value();
    CHECK(error_of(t.bind_interdomain(kSelf, mine, 0x2f)) == PVKIT_EINVAL);
}

TEST_CASE("The VMM's own port cannot be closed, bound or handed off by the guest",
          "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    const auto store = t.alloc_vmm_port(0, PVKIT_EVTCHN_VECTOR_MAX).value();
    CHECK(t.status(store)->status == PVKIT_EVTCHNSTAT_INTERDOMAIN);
    CHECK(t.status(store)->vector == PVKIT_EVTCHN_VECTOR_MAX);
    CHECK(error_of(t.close(store)) == PVKIT_EPERM);
    CHECK(error_of(t.check_connectable(store, 0)) == PVKIT_EPERM);
    CHECK(t.fds(store).ok());
}

TEST_CASE("Hand-off checks: allocated, unbound, for the backend's domain", "[vmm][evtchn]") {
    FakeWiring w;
    EventChannelTable t(w, kSelf);
    const auto p = t.alloc_unbound(0, 0x40).value();
    const auto other = t.alloc_unbound(3, 0x40).value();
    CHECK(t.check_connectable(p, 0).ok());
    CHECK(error_of(t.check_connectable(other, 0)) == PVKIT_EINVAL);
    CHECK(error_of(t.check_connectable(9, 0)) == PVKIT_ENOENT);
    CHECK(error_of(t.check_connectable(0, 0)) == PVKIT_EINVAL);
    auto fds = t.fds(p);
    REQUIRE(fds.ok());
    CHECK(same_file(fds->kick.get(), w.kicks[p]));
    CHECK(same_file(fds->irq.get(), w.irqs[p]));
    CHECK((::fcntl(fds->kick.get(), F_GETFD) & FD_CLOEXEC) != 0);
    t.mark_connected(p, 0);
    CHECK(t.status(p)->status == PVKIT_EVTCHNSTAT_INTERDOMAIN);
    CHECK(t.status(p)->remote_port == p);
    CHECK(error_of(t.check_connectable(p, 0)) == PVKIT_EISCONN);
    CHECK(t.counters().connected == 1);
    // After a close the number is reused with fresh eventfds: a backend
    // that kept the old ones cannot reach the new port.
    const int old_kick = ::dup(w.kicks[p]);
    REQUIRE(t.close(p).ok());
    REQUIRE(t.alloc_unbound(0, 0x40).value() == p);
    CHECK_FALSE(same_file(old_kick, w.kicks[p]));
    ::close(old_kick);
}

// ---- Hypercalls ---------------------------------------------------------------------

namespace {

class NoScheduler final : public pvkit::vmm::SchedulerHooks {
public:
    void yield() override {}
};

class FakeConnector final : public pvkit::vmm::DeviceConnector {
public:
    Errno connect(std::uint32_t pool_index, std::span<const pvkit_evtchn_port_t> ports) override {
        calls.push_back({pool_index, std::vector<pvkit_evtchn_port_t>(ports.begin(), ports.end())});
        return answer;
    }
    struct Call {
        std::uint32_t pool;
        std::vector<pvkit_evtchn_port_t> ports;
    };
    std::vector<Call> calls;
    Errno answer = 0;
};

constexpr std::uint64_t kRam = 1 << 20;
constexpr std::uint64_t kArg = 0x8000;

struct PvFixture {
    pvkit::test::ScratchDir dir;
    pvkit::vmm::ConsoleSink console = pvkit::vmm::ConsoleSink::open_file(dir.file("console"));
    GuestMemory memory = GuestMemory::create(kRam);
    NoScheduler scheduler;
    FakeWiring wiring;
    EventChannelTable table{wiring, kSelf};
    FakeConnector connector;
    HypercallDispatcher d{
        memory,
        console,
        scheduler,
        {PVKIT_FEAT_GRANT_POOLS | PVKIT_FEAT_STORE_RING | PVKIT_FEAT_DEVICE_CONNECT, 0x3000},
        {&table,
         {{0x40200000, 1024, PVKIT_DEV_BLK, 51712, 0}},
         pvkit_store_ring_info{0x40001000, 1, kSelf, 0},
         &connector}};

    std::int64_t call(std::uint64_t nr, std::uint64_t a0, std::uint64_t a1 = 0) {
        return d.dispatch(nr, {a0, a1, 0, 0, 0}).value;
    }
    template <class T> void put(const T& v, std::uint64_t gpa = kArg) {
        REQUIRE(memory.write(gpa, v).ok());
    }
    template <class T> T get(std::uint64_t gpa = kArg) { return memory.read<T>(gpa).value(); }
};

} // namespace

TEST_CASE("EVTCHN_OP copies in, checks reserved fields and writes back on success only",
          "[vmm][evtchn][hypercall]") {
    PvFixture f;
    pvkit_evtchn_alloc_unbound a{};
    a.remote_dom = 0;
    a.vector = 0x40;
    a.port = 0xdead; // OUT: its input is ignored
    f.put(a);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, kArg) == 0);
    CHECK(f.get<pvkit_evtchn_alloc_unbound>().port == 1);

    a.pad = 1;
    a.port = 0;
    f.put(a);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, kArg) == -PVKIT_EINVAL);
    CHECK(f.get<pvkit_evtchn_alloc_unbound>().port == 0); // untouched
    a.pad = 0;
    a.pad2 = 3;
    f.put(a);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, kArg) == -PVKIT_EINVAL);
    a.pad2 = 0;
    a.vector = 0x20;
    f.put(a);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, kArg) == -PVKIT_EINVAL);
    CHECK(f.get<pvkit_evtchn_alloc_unbound>().port == 0);

    // Addresses: the structure must lie wholly in RAM.
    for (std::uint64_t gpa : {kRam, kRam - 8, ~std::uint64_t{0} - 7, std::uint64_t{1} << 40})
        CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_ALLOC_UNBOUND, gpa) == -PVKIT_EFAULT);
    for (std::uint64_t cmd : {std::uint64_t{4}, std::uint64_t{1} << 32, ~std::uint64_t{0}})
        CHECK(f.call(PVKIT_HC_EVTCHN_OP, cmd, kArg) == -PVKIT_EINVAL);

    pvkit_evtchn_status s{};
    s.port = 1;
    s.vector = 0x77; // OUT
    f.put(s);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_STATUS, kArg) == 0);
    auto got = f.get<pvkit_evtchn_status>();
    CHECK(got.status == PVKIT_EVTCHNSTAT_UNBOUND);
    CHECK(got.vector == 0x40);
    s.pad = 1;
    f.put(s);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_STATUS, kArg) == -PVKIT_EINVAL);
    s = {};
    s.port = 1024;
    f.put(s);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_STATUS, kArg) == -PVKIT_EINVAL);

    pvkit_evtchn_bind_interdomain b{};
    b.remote_dom = PVKIT_DOMID_SELF;
    b.remote_port = 1;
    b.vector = 0x41;
    b.pad = 9;
    f.put(b);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_BIND_INTERDOMAIN, kArg) == -PVKIT_EINVAL);
    b.pad = 0;
    f.put(b);
    // Port 1 waits for domain 0, not for us.
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_BIND_INTERDOMAIN, kArg) == -PVKIT_EINVAL);
    CHECK(f.get<pvkit_evtchn_bind_interdomain>().local_port == 0);

    pvkit_evtchn_close c{1, 1};
    f.put(c);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_CLOSE, kArg) == -PVKIT_EINVAL);
    c.pad = 0;
    f.put(c);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_CLOSE, kArg) == 0);
    CHECK(f.call(PVKIT_HC_EVTCHN_OP, PVKIT_EVTCHNOP_CLOSE, kArg) == -PVKIT_ENOENT);
}

TEST_CASE("GRANT_POOL_QUERY and STORE_RING_INFO answer from the VMM's placements",
          "[vmm][hypercall]") {
    PvFixture f;
    CHECK(f.call(PVKIT_HC_GRANT_POOL_QUERY, 0, kArg) == 0);
    auto p = f.get<pvkit_grant_pool_info>();
    CHECK(p.gpa == 0x40200000);
    CHECK(p.nr_frames == 1024);
    CHECK(p.dev_type == PVKIT_DEV_BLK);
    CHECK(p.devid == 51712);
    CHECK(p.backend_domid == 0);
    CHECK(f.call(PVKIT_HC_GRANT_POOL_QUERY, 1, kArg) == -PVKIT_ENOENT);
    CHECK(f.call(PVKIT_HC_GRANT_POOL_QUERY, std::uint64_t{1} << 32, kArg) == -PVKIT_ENOENT);
    CHECK(f.call(PVKIT_HC_GRANT_POOL_QUERY, 0, kRam - 8) == -PVKIT_EFAULT);

    CHECK(f.call(PVKIT_HC_STORE_RING_INFO, kArg) == 0);
    auto r = f.get<pvkit_store_ring_info>();
    CHECK(r.ring_gpa == 0x40001000);
    CHECK(r.evtchn == 1);
    CHECK(r.domid == kSelf);
    CHECK(f.call(PVKIT_HC_STORE_RING_INFO, kRam) == -PVKIT_EFAULT);
}

TEST_CASE("DEVICE_CONNECT validates the request before the connector sees it", "[vmm][hypercall]") {
    PvFixture f;
    auto req = [](std::uint32_t pool, std::initializer_list<pvkit_evtchn_port_t> ports) {
        pvkit_device_connect c{};
        c.pool_index = pool;
        c.nr_queues = static_cast<std::uint32_t>(ports.size());
        std::copy(ports.begin(), ports.end(), c.ports);
        return c;
    };
    f.put(req(0, {3}));
    CHECK(f.call(PVKIT_HC_DEVICE_CONNECT, kArg) == 0);
    REQUIRE(f.connector.calls.size() == 1);
    CHECK(f.connector.calls[0].pool == 0);
    CHECK(f.connector.calls[0].ports == std::vector<pvkit_evtchn_port_t>{3});
    f.put(req(0, {3, 4, 5}));
    CHECK(f.call(PVKIT_HC_DEVICE_CONNECT, kArg) == 0);
    CHECK(f.connector.calls[1].ports.size() == 3);

    auto refused = [&](pvkit_device_connect c, std::int64_t want) {
        f.put(c);
        const auto before = f.connector.calls.size();
        CHECK(f.call(PVKIT_HC_DEVICE_CONNECT, kArg) == want);
        CHECK(f.connector.calls.size() == before);
    };
    auto c = req(0, {3});
    c.nr_queues = 0;
    refused(c, -PVKIT_EINVAL);
    c.nr_queues = PVKIT_DEVICE_CONNECT_MAX_QUEUES + 1;
    refused(c, -PVKIT_EINVAL);
    c = req(0, {3});
    c.reserved[0] = 1;
    refused(c, -PVKIT_EINVAL);
    refused(req(0, {0}), -PVKIT_EINVAL);
    refused(req(0, {PVKIT_EVTCHN_MAX_PORT + 1}), -PVKIT_EINVAL);
    refused(req(0, {3, 3}), -PVKIT_EINVAL);
    c = req(0, {3});
    c.ports[7] = 4; // beyond nr_queues
    refused(c, -PVKIT_EINVAL);
    refused(req(1, {3}), -PVKIT_ENOENT);
    CHECK(f.call(PVKIT_HC_DEVICE_CONNECT, kRam - 16) == -PVKIT_EFAULT);

    f.connector.answer = PVKIT_EAGAIN;
    f.put(req(0, {3}));
    CHECK(f.call(PVKIT_HC_DEVICE_CONNECT, kArg) == -PVKIT_EAGAIN);
}

TEST_CASE("The doorbell drops and counts what reaches the VMM", "[vmm][evtchn]") {
    pvkit::vmm::Doorbell db;
    struct NoExit final : pvkit::vmm::ExitContext {
        pvkit::Result<kvm_regs, pvkit::vmm::KvmError> regs() override { return kvm_regs{}; }
        pvkit::Result<void, pvkit::vmm::KvmError> set_regs(const kvm_regs&) override { return {}; }
        void request_stop(pvkit::vmm::RunOutcome) override { stopped = true; }
        bool stopped = false;
    } exit;
    std::uint32_t port = 999;
    auto bytes = std::as_writable_bytes(std::span(&port, 1));
    db.access({pvkit::vmm::IoSpace::kMmio, 0x40000000, 0, 4, true, bytes}, exit);
    db.access({pvkit::vmm::IoSpace::kMmio, 0x40000000, 0, 2, true, bytes.first(2)}, exit);
    db.access({pvkit::vmm::IoSpace::kMmio, 0x40000008, 8, 4, true, bytes}, exit);
    db.access({pvkit::vmm::IoSpace::kMmio, 0x40000000, 0, 4, false, bytes}, exit);
    CHECK(port == 0);          // reads return 0
    CHECK_FALSE(exit.stopped); // the guest goes on
    CHECK(db.counters().dropped_unbound == 1);
    CHECK(db.counters().dropped_malformed == 2);
    CHECK(db.counters().reads == 1);
}
