#include "pvkit/vmm/store_relay.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "pvkit/vmm/helper_thread.hpp"

namespace pvkit::vmm {

namespace {

constexpr std::uint32_t kRingMask = PVKIT_STORE_RING_SIZE - 1;
static_assert((PVKIT_STORE_RING_SIZE & kRingMask) == 0, "the ring size is a power of two");
static_assert(sizeof(pvkit_store_ring) <= PVKIT_PAGE_SIZE);
// Bytes the relay holds per direction before it stops taking more: the
// guest or the daemon then waits (back-pressure), nothing is dropped.
constexpr std::size_t kRelayBuffer = 64 * 1024;

// The guest writes these words concurrently: every access is one atomic
// load or store, ordered as store.h says.
std::uint32_t load_acquire(std::uint32_t& word) {
    return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire);
}

void store_release(std::uint32_t& word, std::uint32_t value) {
    std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
}

} // namespace

const char* to_string(StoreRingFault fault) {
    switch (fault) {
    case StoreRingFault::kRequestIndex:
        return "req_prod is more than the ring size ahead of req_cons";
    case StoreRingFault::kResponseIndex:
        return "rsp_cons is not within the ring size behind rsp_prod";
    case StoreRingFault::kRequestTooLong:
        return "a request announced more than 4096 payload bytes";
    }
    return "unknown store ring fault";
}

// ---- The page ------------------------------------------------------------------

StoreRingPage StoreRingPage::create() {
    UniqueFd fd(::memfd_create("pvkit-store-ring", MFD_CLOEXEC));
    if (!fd.valid())
        throw_errno("memfd_create for the store ring");
    if (::ftruncate(fd.get(), static_cast<off_t>(size())) != 0)
        throw_errno("ftruncate of the store ring");
    void* p = ::mmap(nullptr, size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED)
        throw_errno("mmap of the store ring");
    // A fresh memfd reads as zeros: indices 0, CONNECTED, no error.
    return StoreRingPage(std::move(fd), static_cast<pvkit_store_ring*>(p));
}

StoreRingPage::StoreRingPage(StoreRingPage&& other) noexcept
    : m_fd(std::move(other.m_fd)), m_ring(std::exchange(other.m_ring, nullptr)) {}

StoreRingPage::~StoreRingPage() {
    if (m_ring != nullptr)
        ::munmap(m_ring, size());
}

std::uint64_t StoreRingPage::kvm_userspace_addr() const {
    return reinterpret_cast<std::uintptr_t>(m_ring);
}

// ---- The pump -----------------------------------------------------------------------

StoreRingPump::StoreRingPump(pvkit_store_ring* ring) : m_ring(ring) {}

Result<std::size_t, StoreRingFault> StoreRingPump::take_requests(std::string& out,
                                                                 std::size_t room) {
    if (!m_connected)
        return 0;
    // Single read of the guest's index, checked before any byte is used.
    const std::uint32_t prod = load_acquire(m_ring->req_prod);
    const std::uint32_t avail = prod - m_req_cons;
    if (avail > PVKIT_STORE_RING_SIZE) {
        m_seen = prod;
        m_own = m_req_cons;
        return Unexpected{StoreRingFault::kRequestIndex};
    }
    const std::size_t n = std::min<std::size_t>(avail, room);
    if (n == 0)
        return 0;
    std::string bytes(n, '\0');
    for (std::size_t i = 0; i < n;) {
        const std::uint32_t at = (m_req_cons + static_cast<std::uint32_t>(i)) & kRingMask;
        const std::size_t chunk = std::min<std::size_t>(n - i, PVKIT_STORE_RING_SIZE - at);
        std::memcpy(bytes.data() + i, m_ring->req + at, chunk);
        i += chunk;
    }
    // Every header is checked on the private copy before its bytes go on.
    m_requests.feed(bytes);
    for (;;) {
        auto next = m_requests.next();
        if (!next) {
            m_seen = m_requests.failed_header().len;
            m_own = PVKIT_STORE_PAYLOAD_MAX;
            return Unexpected{StoreRingFault::kRequestTooLong};
        }
        if (!next.value())
            break;
    }
    out += bytes;
    m_req_cons += static_cast<std::uint32_t>(n);
    // Release: our copy is complete before the guest may reuse the space.
    store_release(m_ring->req_cons, m_req_cons);
    return n;
}

Result<std::size_t, StoreRingFault> StoreRingPump::put_responses(std::string& in) {
    if (!m_connected || in.empty())
        return 0;
    const std::uint32_t cons = load_acquire(m_ring->rsp_cons);
    const std::uint32_t used = m_rsp_prod - cons;
    if (used > PVKIT_STORE_RING_SIZE) {
        m_seen = cons;
        m_own = m_rsp_prod;
        return Unexpected{StoreRingFault::kResponseIndex};
    }
    const std::size_t n = std::min<std::size_t>(PVKIT_STORE_RING_SIZE - used, in.size());
    for (std::size_t i = 0; i < n;) {
        const std::uint32_t at = (m_rsp_prod + static_cast<std::uint32_t>(i)) & kRingMask;
        const std::size_t chunk = std::min<std::size_t>(n - i, PVKIT_STORE_RING_SIZE - at);
        std::memcpy(m_ring->rsp + at, in.data() + i, chunk);
        i += chunk;
    }
    m_rsp_prod += static_cast<std::uint32_t>(n);
    // Release: the bytes are visible before the index that covers them.
    store_release(m_ring->rsp_prod, m_rsp_prod);
    in.erase(0, n);
    return n;
}

void StoreRingPump::disconnect(bool fault) {
    m_connected = false;
    store_release(m_ring->error, fault ? PVKIT_STORE_RING_ERR_PROTO : PVKIT_STORE_RING_ERR_NONE);
    store_release(m_ring->connection, PVKIT_STORE_RING_DISCONNECTED);
}

// ---- The relay ----------------------------------------------------------------------

std::unique_ptr<StoreRelay> StoreRelay::connect(const std::string& socket_path, pvkit_domid_t domid,
                                                std::chrono::milliseconds timeout) {
    auto fail = [&](const std::string& why) -> std::runtime_error {
        return std::runtime_error("store relay: " + socket_path + ": " + why);
    };
    sockaddr_un addr{};
    if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
        throw fail("socket path empty or too long");
    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock.valid())
        throw fail(std::string("socket: ") + std::strerror(errno));
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
    // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        throw fail(std::strerror(errno));

    // Restrict before the guest can say anything: from here on the daemon
    // treats the connection as the guest's domain, irreversibly.
    store::Message restrict_msg;
    restrict_msg.type = PVKIT_STORE_CONTROL;
    restrict_msg.req_id = 1;
    restrict_msg.payload = store::join_args({"restrict", std::to_string(domid)});
    const std::string bytes = store::encode(restrict_msg);
    for (std::size_t done = 0; done < bytes.size();) {
        const ssize_t n =
            ::send(sock.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw fail(std::string("send: ") + std::strerror(errno));
        done += static_cast<std::size_t>(n);
    }
    store::FrameDecoder decoder;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto next = decoder.next();
        if (!next)
            throw fail("the daemon sent an oversized message");
        if (next.value()) {
            const store::Message& reply = *next.value();
            if (reply.type == PVKIT_STORE_ERROR)
                throw fail("restrict to domain " + std::to_string(domid) +
                           " refused: " + std::string(reply.payload.c_str()));
            if (reply.type != PVKIT_STORE_CONTROL || reply.req_id != 1 ||
                reply.payload != std::string("OK", 3))
                throw fail("unexpected answer to restrict");
            break;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw fail("no answer to restrict");
        pollfd pfd{sock.get(), POLLIN, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            throw fail(std::string("poll: ") + std::strerror(errno));
        if (r == 0)
            continue;
        std::array<char, 512> buf;
        const ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw fail("the daemon closed the connection");
        decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    }
    if (decoder.buffered() != 0)
        throw fail("the daemon sent more than the answer to restrict");
    const int flags = ::fcntl(sock.get(), F_GETFL);
    if (flags < 0 || ::fcntl(sock.get(), F_SETFL, flags | O_NONBLOCK) != 0)
        throw fail(std::string("fcntl: ") + std::strerror(errno));
    return std::unique_ptr<StoreRelay>(new StoreRelay(std::move(sock), domid));
}

StoreRelay::~StoreRelay() {
    stop();
}

void StoreRelay::start(StoreRingPage& page, UniqueFd kick, UniqueFd irq) {
    m_kick = std::move(kick);
    m_irq = std::move(irq);
    m_stop.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!m_stop.valid())
        throw_errno("eventfd for the store relay");
    m_pump = std::make_unique<StoreRingPump>(page.ring());
    m_thread = start_helper_thread([this] { run(); });
}

void StoreRelay::stop() {
    if (!m_thread.joinable())
        return;
    const std::uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of a full counter.
    (void)!::write(m_stop.get(), &one, sizeof one);
    m_thread.join();
}

std::string StoreRelay::disconnect_reason() const {
    std::lock_guard lock(m_reason_lock);
    return m_reason;
}

nlohmann::json StoreRelay::stats() const {
    const std::string reason = disconnect_reason();
    return nlohmann::json{
        {"connected", reason.empty()},
        {"disconnect_reason", reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(reason)},
        {"bytes_to_daemon", m_counters.bytes_to_daemon.load()},
        {"bytes_to_guest", m_counters.bytes_to_guest.load()},
        {"guest_kicks", m_counters.guest_kicks.load()},
        {"irqs_sent", m_counters.irqs_sent.load()},
    };
}

void StoreRelay::end_connection(const std::string& reason, bool fault) {
    m_pump->disconnect(fault);
    m_sock.reset();
    m_to_daemon.clear();
    m_to_guest.clear();
    {
        std::lock_guard lock(m_reason_lock);
        m_reason = reason;
    }
    std::fprintf(stderr,
                 "pvkit-vmm: store ring of domain %u disconnected: %s; the guest keeps running "
                 "without a store connection\n",
                 static_cast<unsigned>(m_domid), reason.c_str());
}

bool StoreRelay::service() {
    bool kick_guest = false;
    bool moved = true;
    while (moved && m_pump->connected()) {
        moved = false;
        const std::size_t room = kRelayBuffer - std::min(kRelayBuffer, m_to_daemon.size());
        auto took = m_pump->take_requests(m_to_daemon, room);
        if (!took) {
            end_connection(std::string("guest protocol error: ") + to_string(took.error()) +
                               " (guest index " + std::to_string(m_pump->seen_index()) +
                               ", VMM index " + std::to_string(m_pump->own_index()) + ")",
                           true);
            return true;
        }
        if (took.value() > 0) {
            moved = true;
            m_counters.bytes_to_daemon += took.value();
            // store.h: kick after publishing req_cons, so that a producer
            // waiting for space wakes. When the requests taken end on a
            // message boundary, the daemon answers each of them and the
            // kick that comes with the answer wakes such a producer too:
            // one interrupt per request instead of two (each costs the
            // guest an emulated interrupt handler on these hosts). A
            // request cut off by a full ring gets its kick now.
            if (m_pump->mid_message())
                kick_guest = true;
        }
        while (!m_to_daemon.empty()) {
            const ssize_t n = ::send(m_sock.get(), m_to_daemon.data(), m_to_daemon.size(),
                                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0) {
                end_connection(
                    std::string("writing to pvkit-stored failed: ") + std::strerror(errno), false);
                return true;
            }
            m_to_daemon.erase(0, static_cast<std::size_t>(n));
            moved = true;
        }
        while (m_to_guest.size() < kRelayBuffer) {
            std::array<char, 4096> buf;
            const ssize_t n = ::recv(m_sock.get(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0) {
                end_connection(n == 0 ? std::string("pvkit-stored closed the connection")
                                      : std::string("reading from pvkit-stored failed: ") +
                                            std::strerror(errno),
                               false);
                return true;
            }
            m_to_guest.append(buf.data(), static_cast<std::size_t>(n));
            moved = true;
        }
        auto put = m_pump->put_responses(m_to_guest);
        if (!put) {
            end_connection(std::string("guest protocol error: ") + to_string(put.error()) +
                               " (guest index " + std::to_string(m_pump->seen_index()) +
                               ", VMM index " + std::to_string(m_pump->own_index()) + ")",
                           true);
            return true;
        }
        if (put.value() > 0) {
            moved = kick_guest = true;
            m_counters.bytes_to_guest += put.value();
        }
    }
    return kick_guest;
}

void StoreRelay::run() {
    for (;;) {
        std::array<pollfd, 3> fds{};
        fds[0] = {m_stop.get(), POLLIN, 0};
        fds[1] = {m_kick.get(), POLLIN, 0};
        nfds_t n = 2;
        if (m_pump->connected() && m_sock.valid()) {
            short events = 0;
            if (m_to_guest.size() < kRelayBuffer)
                events |= POLLIN;
            if (!m_to_daemon.empty())
                events |= POLLOUT;
            fds[2] = {m_sock.get(), events, 0};
            n = 3;
        }
        const int r = ::poll(fds.data(), n, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            std::fprintf(stderr, "pvkit-vmm: store relay: poll: %s\n", std::strerror(errno));
            return;
        }
        if ((fds[0].revents & POLLIN) != 0)
            return;
        if ((fds[1].revents & POLLIN) != 0) {
            std::uint64_t count = 0;
            // Non-blocking: EAGAIN just means another pass consumed it.
            if (::read(m_kick.get(), &count, sizeof count) == static_cast<ssize_t>(sizeof count))
                m_counters.guest_kicks += count;
        }
        if (!m_pump->connected())
            continue; // a disconnected guest's kicks are drained and ignored
        if (service()) {
            const std::uint64_t one = 1;
            if (::write(m_irq.get(), &one, sizeof one) == static_cast<ssize_t>(sizeof one))
                ++m_counters.irqs_sent;
        }
    }
}

} // namespace pvkit::vmm
