// Event channels: one eventfd per direction, kicks that carry no data and
// merge, waits that spin and then sleep with a bounded timeout, and fds
// that work the same after being passed to another process.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#include "peer/peer_protocol.hpp"
#include "pvkit/transport/event_channel.hpp"
#include "test_support.hpp"

namespace {

using pvkit::EventChannel;
using pvkit::test::ChannelPair;
using pvkit::test::make_channel_pair;
using namespace std::chrono_literals;

TEST_CASE("make_event_channel_fds makes two non-blocking close-on-exec eventfds", "[evtchn]") {
    pvkit::EventChannelFds fds = pvkit::make_event_channel_fds();
    REQUIRE(fds.to_backend.valid());
    REQUIRE(fds.to_frontend.valid());
    CHECK(fds.to_backend.get() != fds.to_frontend.get());
    for (int fd : {fds.to_backend.get(), fds.to_frontend.get()}) {
        CHECK(pvkit::test::is_nonblocking(fd));
        CHECK(pvkit::test::has_cloexec(fd));
    }
    // The frontend waits on to_frontend and kicks through to_backend.
    const int to_backend = fds.to_backend.get();
    const int to_frontend = fds.to_frontend.get();
    EventChannel front = EventChannel::frontend_end(fds);
    CHECK(front.wait_fd() == to_frontend);
    CHECK(front.notify_fd() == to_backend);
}

TEST_CASE("the backend end waits on to_backend and kicks through to_frontend", "[evtchn]") {
    pvkit::EventChannelFds fds = pvkit::make_event_channel_fds();
    const int to_backend = fds.to_backend.get();
    const int to_frontend = fds.to_frontend.get();
    EventChannel back = EventChannel::backend_end(fds);
    CHECK(back.wait_fd() == to_backend);
    CHECK(back.notify_fd() == to_frontend);
}

TEST_CASE("a kick is consumed once, at the other end only", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    ch.front.notify();
    CHECK_FALSE(ch.front.try_consume()); // our own kick is not for us
    CHECK(ch.back.try_consume());
    CHECK_FALSE(ch.back.try_consume());

    ch.back.notify();
    CHECK(ch.front.try_consume());
    CHECK_FALSE(ch.front.try_consume());
    CHECK(ch.front.notifications_sent() == 1);
    CHECK(ch.back.notifications_sent() == 1);
}

TEST_CASE("try_consume on a quiet channel returns at once", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    CHECK_FALSE(ch.back.try_consume());
    CHECK_FALSE(ch.front.try_consume());
}

TEST_CASE("kicks merge: many notifies wake the waiter once", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    for (int i = 0; i < 5; ++i)
        ch.front.notify();
    CHECK(ch.front.notifications_sent() == 5);
    CHECK(ch.back.wait(0ns, 0ms));
    CHECK_FALSE(ch.back.wait(0ns, 0ms));
    CHECK(ch.back.wakeups() == 1);
}

TEST_CASE("notify on a saturated counter neither blocks nor loses the kick", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    // The largest value an eventfd holds; one more write would block (EAGAIN).
    const std::uint64_t almost_full = 0xfffffffffffffffeULL;
    REQUIRE(::write(ch.front.notify_fd(), &almost_full, sizeof almost_full) ==
            static_cast<ssize_t>(sizeof almost_full));
    ch.front.notify();
    CHECK(ch.front.notifications_sent() == 1);
    CHECK(ch.back.try_consume());
    CHECK_FALSE(ch.back.try_consume());
}

TEST_CASE("wait times out when nothing arrives", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    CHECK_FALSE(ch.back.wait(0ns, 0ms));
    CHECK_FALSE(ch.back.wait(0ns, 20ms));
    CHECK(ch.back.sleeps() == 2);
    CHECK(ch.back.wakeups() == 0);
}

TEST_CASE("wait with a spin picks up a pending kick without sleeping", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    ch.front.notify();
    CHECK(ch.back.wait(1ms, 0ms));
    CHECK(ch.back.wakeups() == 1);
    CHECK(ch.back.sleeps() == 0);
}

TEST_CASE("wait with a spin and nothing pending sleeps and then times out", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    CHECK_FALSE(ch.back.wait(200us, 0ms));
    CHECK(ch.back.sleeps() == 1);
}

TEST_CASE("wait wakes for a kick sent from another thread", "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    // Whether the kick lands before or during the wait, it is found; the
    // timeout only bounds a broken run.
    std::thread kicker([&] { ch.front.notify(); });
    const bool woke = ch.back.wait(0ns, 10s);
    kicker.join();
    CHECK(woke);
}

// True once thread `tid` of this process is asleep (state S in its
// /proc stat), false if that does not happen before `deadline`.
bool wait_until_sleeping(pid_t tid, std::chrono::steady_clock::time_point deadline) {
    const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
    while (std::chrono::steady_clock::now() < deadline) {
        std::ifstream stat(path);
        std::string line;
        std::getline(stat, line);
        // The state follows the parenthesised command name.
        const auto paren = line.rfind(')');
        if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S')
            return true;
        std::this_thread::yield();
    }
    return false;
}

// Fails until event_channel.cpp clamps the timeout before converting it to
// poll(2)'s int: today 2^32 ms becomes 0 ms and the wait returns at once.
// The kicker only kicks once the waiter is asleep, so a correct wait
// always sees the kick and a truncated one never does.
TEST_CASE("wait with a timeout beyond INT_MAX milliseconds still waits for the kick",
          "[evtchn]") {
    ChannelPair ch = make_channel_pair();
    const pid_t waiter = ::gettid();
    std::thread kicker([&] {
        (void)wait_until_sleeping(waiter, std::chrono::steady_clock::now() + 5s);
        ch.front.notify();
    });
    const bool woke = ch.back.wait(0ns, std::chrono::milliseconds(std::int64_t{1} << 32));
    kicker.join();
    CHECK(woke);
}

TEST_CASE("eventfds passed to another process carry kicks both ways", "[evtchn][process]") {
    pvkit::EventChannelFds fds = pvkit::make_event_channel_fds();
    pvkit::test::SocketPair sp = pvkit::test::make_socket_pair(SOCK_SEQPACKET);
    pvkit::test::set_receive_timeout(sp.first.get(), pvkit::test::peer::kWaitTimeout);
    pvkit::test::ChildProcess child = pvkit::test::ChildProcess::spawn(
        PVKIT_TEST_RING_PEER, {"event-pong", std::to_string(sp.second.get())}, sp.second.get());
    sp.second.reset();

    pvkit::test::peer::PongSetup setup{};
    setup.rounds = 200;
    const std::array<int, 2> passed{fds.to_backend.get(), fds.to_frontend.get()};
    pvkit::send_fds(sp.first.get(), pvkit::test::bytes_of(setup), passed);
    EventChannel front = EventChannel::frontend_end(fds);

    // Strict ping-pong: every kick must come back before the next goes out,
    // so nothing merges and each round proves both directions.
    std::uint32_t rounds = 0;
    for (; rounds < setup.rounds; ++rounds) {
        front.notify();
        if (!front.wait(0ns, pvkit::test::peer::kWaitTimeout))
            break;
    }
    CHECK(rounds == setup.rounds);
    auto status = child.wait(pvkit::test::peer::kExitTimeout);
    REQUIRE(status.has_value());
    INFO(pvkit::test::describe_wait_status(*status));
    CHECK((WIFEXITED(*status) && WEXITSTATUS(*status) == 0));
}

} // namespace
