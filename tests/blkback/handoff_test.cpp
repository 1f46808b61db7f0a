// The hand-off socket: blkback takes a device's pool and eventfds only
// from the process the store vouches for, only for a device it serves, and
// only in the shape it expects. Every refusal leaves the daemon serving.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include "blkback_test_support.hpp"

using namespace pvkit::blkback::test;
using pvkit::toolstack::XenbusState;

namespace {

struct Setup {
    Bench bench;
    StoreClient dom0;
    DiskSpec spec;
    Setup() : dom0(bench.store.client()) {
        spec.domid = 3;
        spec.image = bench.image("h.img");
        make_image(spec.image, 1 << 20);
        attach_disk(dom0, spec, ::getpid());
    }
};

pvkit::HandoffRequest request_for(TestFrontend& f, std::uint32_t devid, pvkit_evtchn_port_t port) {
    pvkit::HandoffRequest req;
    req.frontend_domid = f.domid();
    req.devid = devid;
    req.type = "vbd";
    req.ports = {port};
    pvkit::EventChannelFds fds = pvkit::make_event_channel_fds();
    req.fds.push_back(pvkit::test::dup_fd(f.pool().fd()));
    req.fds.push_back(std::move(fds.to_backend));
    req.fds.push_back(std::move(fds.to_frontend));
    return req;
}

// The wire message of hypervisor/transport/src/handoff.cpp, for requests the
// library's sender refuses to build.
struct WireRequest {
    std::uint32_t magic;
    std::uint32_t version;
    pvkit_domid_t frontend_domid;
    std::uint16_t nr_queues;
    std::uint32_t devid;
    char type[8];
    std::uint32_t ports[8];
    std::uint32_t nr_fds;
};

int send_raw(const std::string& path, const WireRequest& w, std::span<const int> fds) {
    pvkit::UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    pvkit::send_fds(sock.get(), pvkit::test::bytes_of(w), fds);
    pvkit::test::set_receive_timeout(sock.get(), kWait);
    struct {
        std::uint32_t magic;
        std::int32_t status;
    } reply{};
    REQUIRE(::recv(sock.get(), &reply, sizeof reply, 0) == static_cast<ssize_t>(sizeof reply));
    return reply.status;
}

WireRequest wire_for(pvkit_domid_t domid, std::uint32_t devid, std::uint32_t port, std::uint32_t nr_fds) {
    WireRequest w{};
    w.magic = pvkit::kHandoffMagic;
    w.version = pvkit::kHandoffVersion;
    w.frontend_domid = domid;
    w.nr_queues = 1;
    w.devid = devid;
    std::memcpy(w.type, "vbd", 3);
    w.ports[0] = port;
    w.nr_fds = nr_fds;
    return w;
}

} // namespace

TEST_CASE("a hand-off from a process other than the domain's pid is refused", "[handoff]") {
    Setup s;
    TestFrontend f(s.bench.store.socket(), s.spec);
    REQUIRE(f.wait_backend_state(XenbusState::kInitWait));
    const std::string sock = s.bench.blkback.handoff_socket();
    // The store says domain 3 is pid 1, not us.
    REQUIRE(s.dom0.write("/local/domain/3/pid", "1"));
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 1), kWait) == EPERM);
    // No pid at all, or garbage.
    REQUIRE(s.dom0.rm("/local/domain/3/pid"));
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 1), kWait) == EPERM);
    REQUIRE(s.dom0.write("/local/domain/3/pid", std::to_string(::getpid()) + "\n"));
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 1), kWait) == EPERM);
    // With the right pid the device connects.
    REQUIRE(s.dom0.write("/local/domain/3/pid", std::to_string(::getpid())));
    f.connect();
    CHECK(f.write_sync(0, pattern_block(0, 0)) == PVKIT_BLKIF_RSP_OKAY);
}

TEST_CASE("a hand-off for a device blkback does not serve is refused", "[handoff]") {
    Setup s;
    TestFrontend f(s.bench.store.socket(), s.spec);
    REQUIRE(f.wait_backend_state(XenbusState::kInitWait));
    const std::string sock = s.bench.blkback.handoff_socket();
    CHECK(pvkit::handoff_device(sock, request_for(f, 999, 1), kWait) == ENODEV);
    auto vif = request_for(f, s.spec.devid, 1);
    vif.type = "vif";
    CHECK(pvkit::handoff_device(sock, vif, kWait) == ENODEV);
    // A port that is not the frontend's event-channel node.
    REQUIRE(s.dom0.write(frontend_dir(3, s.spec.devid) + "/event-channel", "5"));
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 6), kWait) == EINVAL);
    REQUIRE(s.dom0.rm(frontend_dir(3, s.spec.devid) + "/event-channel"));
    // Two queues: a vbd has one.
    auto two = request_for(f, s.spec.devid, 1);
    two.ports.push_back(2);
    auto more = pvkit::make_event_channel_fds();
    two.fds.push_back(std::move(more.to_backend));
    two.fds.push_back(std::move(more.to_frontend));
    CHECK(pvkit::handoff_device(sock, two, kWait) == EINVAL);
    // A device that is going away (online = 0).
    REQUIRE(s.dom0.write(backend_dir(3, s.spec.devid) + "/online", "0"));
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 1), kWait) == ENODEV);
    CHECK(s.bench.blkback.alive());
}

TEST_CASE("a hand-off with the wrong descriptors is refused and closes them", "[handoff]") {
    Setup s;
    TestFrontend f(s.bench.store.socket(), s.spec);
    REQUIRE(f.wait_backend_state(XenbusState::kInitWait));
    const std::string sock = s.bench.blkback.handoff_socket();
    auto ev = pvkit::make_event_channel_fds();
    const int pool = f.pool().fd();

    // Fewer or more descriptors than the queue count says.
    const int two[] = {pool, ev.to_backend.get()};
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 2), two) == EBADF);
    const int four[] = {pool, ev.to_backend.get(), ev.to_frontend.get(), pool};
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 4), four) == EBADF);
    // More descriptors than any hand-off may carry.
    std::vector<int> many(20, pool);
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 20), std::span<const int>(many.data(), 16)) == EBADF);
    // The right count, but pipes instead of eventfds.
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pvkit::UniqueFd p0(p[0]), p1(p[1]);
    const int pipes[] = {pool, p0.get(), p1.get()};
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 3), pipes) == EBADF);
    // An unsealed memfd as the pool.
    pvkit::UniqueFd unsealed(::memfd_create("unsealed", MFD_CLOEXEC));
    REQUIRE(::ftruncate(unsealed.get(), 1 << 20) == 0);
    const int bad_pool[] = {unsealed.get(), ev.to_backend.get(), ev.to_frontend.get()};
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 3), bad_pool) == EINVAL);
    // A malformed header.
    WireRequest w = wire_for(3, s.spec.devid, 1, 3);
    w.magic = 0;
    const int three[] = {pool, ev.to_backend.get(), ev.to_frontend.get()};
    CHECK(send_raw(sock, w, three) == EINVAL);
    // A pool that claims to belong to another domain.
    auto foreign = pvkit::GrantPool::create(9, 16, 64);
    const int foreign_fds[] = {foreign.fd(), ev.to_backend.get(), ev.to_frontend.get()};
    CHECK(send_raw(sock, wire_for(3, s.spec.devid, 1, 3), foreign_fds) == EINVAL);

    // None of this affected the device: a proper hand-off connects it.
    CHECK(s.bench.blkback.alive());
    f.connect();
    CHECK(f.write_sync(0, pattern_block(0, 0)) == PVKIT_BLKIF_RSP_OKAY);
    // A second hand-off while connected is refused.
    CHECK(pvkit::handoff_device(sock, request_for(f, s.spec.devid, 1), kWait) == EBUSY);
}

TEST_CASE("a frontend that is Initialised before its hand-off arrives is connected once it does", "[handoff]") {
    Setup s;
    TestFrontend f(s.bench.store.socket(), s.spec);
    REQUIRE(f.wait_backend_state(XenbusState::kInitWait));
    // Publish Initialised first, then hand off (late): blkback waits for it.
    // prepare_and_handoff writes the ring nodes and hands off; here the
    // state is written before the call by a second writer.
    REQUIRE(s.dom0.write(frontend_dir(3, s.spec.devid) + "/state", "3"));
    REQUIRE(f.prepare_and_handoff() == 0);
    REQUIRE(f.wait_backend_state(XenbusState::kConnected));
    f.set_state(XenbusState::kConnected);
    CHECK(f.write_sync(8, pattern_block(1, 1)) == PVKIT_BLKIF_RSP_OKAY);
    CHECK(read_image(s.spec.image, 4096, 4096) == pattern_block(1, 1));
}
