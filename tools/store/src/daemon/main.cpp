// pvkit-stored: the store daemon (XenStore semantics). See docs/store.md.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "pvkit/store/client.hpp"
#include "pvkit/store/persistence.hpp"
#include "server.hpp"

namespace {

namespace fs = std::filesystem;
using pvkit::UniqueFd;
using namespace pvkit::store;

struct DaemonOptions {
    std::string socket_path = kDefaultSocketPath;
    std::string data_dir = "/var/lib/pvkit/store";
    // Store content describes running domains, which a power cut ends anyway;
    // see docs/store.md for the measurements behind this default.
    std::string fsync = "never";
    bool foreground = false;
    int ready_fd = -1;
    std::size_t compact_bytes = std::size_t{4} << 20;
    // See serve(); measured with `pvkit bench store` (docs/store.md).
    unsigned spin_us = 20;
    ServerOptions server;
    StoreLimits limits;
};

[[noreturn]] void fail_errno(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_un make_addr(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        throw std::runtime_error("socket path '" + path + "' is empty or longer than " +
                                 std::to_string(sizeof addr.sun_path - 1) + " bytes");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

// Whether a daemon answers on `path` (used before replacing a stale socket).
bool someone_listens(const sockaddr_un& addr) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return false;
    // sockaddr_un is what connect() takes for AF_UNIX; the cast is the API.
    return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

// Creates the listening socket: parent directory 0755 if missing, socket
// file 0660 (owner and group may connect; the group is how an
// administrator lets backends and VMMs in).
UniqueFd bind_socket(const std::string& path) {
    sockaddr_un addr = make_addr(path);
    fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !fs::exists(parent, ec)) {
        fs::create_directories(parent, ec);
        if (ec)
            throw std::runtime_error("cannot create " + parent.string() + ": " + ec.message());
        if (::chmod(parent.c_str(), 0755) != 0)
            fail_errno("cannot chmod " + parent.string());
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("cannot bind " + path + ": exists and is not a socket");
        if (someone_listens(addr))
            throw std::runtime_error("cannot bind " + path + ": another pvkit-stored is listening on it");
        // Left behind by a daemon that died: replace it.
        ::unlink(path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        fail_errno("socket");
    // The umask makes the socket 0660 from its first moment, so there is no
    // window in which others could connect.
    mode_t old_mask = ::umask(0117);
    int r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = errno;
    ::umask(old_mask);
    if (r != 0) {
        errno = err;
        fail_errno("cannot bind " + path);
    }
    if (::chmod(path.c_str(), 0660) != 0)
        fail_errno("cannot chmod " + path);
    if (::listen(fd.get(), SOMAXCONN) != 0)
        fail_errno("cannot listen on " + path);
    return fd;
}

// Detaches from the terminal. Everything that can fail visibly (options,
// data directory, socket) has been done by now.
void daemonize() {
    pid_t pid = ::fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid > 0)
        ::_exit(0);
    if (::setsid() < 0)
        fail_errno("setsid");
    if (::chdir("/") != 0)
        fail_errno("chdir /");
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        fail_errno("/dev/null");
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    if (devnull > 2)
        ::close(devnull);
}

// Runs the event loop until the server stops. With `spin` > 0, an idle
// loop keeps polling (epoll_wait with a zero timeout) for that long after
// its last piece of work before it sleeps: a client that sends its next
// request within the spin is served without the daemon's ~20 us wakeup
// (docs/machine-notes.md), at the price of a core spent polling.
void serve(boost::asio::io_context& io, std::chrono::microseconds spin) {
    if (spin.count() == 0) {
        io.run();
        return;
    }
    using clock = std::chrono::steady_clock;
    auto last_work = clock::now();
    while (!io.stopped()) {
        if (io.poll() > 0) {
            last_work = clock::now();
            continue;
        }
        if (clock::now() - last_work < spin)
            continue;
        if (io.run_one() == 0)
            break; // stopped, or out of work
        last_work = clock::now();
    }
}

int run(DaemonOptions& o) {
    // Paths are made absolute before a background daemon leaves its cwd.
    std::string socket_path = fs::absolute(o.socket_path).string();
    PersistenceOptions popts;
    popts.data_dir = fs::absolute(o.data_dir);
    popts.fsync = o.fsync == "never" ? FsyncPolicy::kNever : FsyncPolicy::kAlways;
    popts.compact_bytes = o.compact_bytes;

    Store store(o.limits);
    LoadReport report;
    std::unique_ptr<Persistence> persistence = Persistence::open(popts, store, &report);
    store.set_journal(persistence.get());
    if (report.torn_bytes > 0)
        std::cerr << "pvkit-stored: " << (popts.data_dir / "store.log").string() << ": dropped "
                  << report.torn_bytes << " bytes of an incomplete final record\n";

    UniqueFd listen_fd = bind_socket(socket_path);
    ::signal(SIGPIPE, SIG_IGN);
    // A file-size limit must fail the log write (EIO to the client, the
    // log latched broken) rather than kill the daemon.
    ::signal(SIGXFSZ, SIG_IGN);
    if (!o.foreground)
        daemonize();

    boost::asio::io_context io;
    Server server(io, store, persistence.get(), o.server, std::move(listen_fd));
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (!ec)
            server.stop();
    });
    server.start();
    if (o.foreground)
        std::cerr << "pvkit-stored: serving " << socket_path << " (data " << popts.data_dir.string()
                  << ", " << store.node_count() << " nodes, fsync=" << to_string(popts.fsync)
                  << ")\n";
    if (o.ready_fd >= 0) {
        // Tells a supervisor (or a test) that clients can connect now.
        static constexpr char kReady[] = "READY\n";
        if (::write(o.ready_fd, kReady, sizeof kReady - 1) < 0)
            std::cerr << "pvkit-stored: --ready-fd " << o.ready_fd << ": " << std::strerror(errno) << "\n";
        ::close(o.ready_fd);
    }
    serve(io, std::chrono::microseconds(o.spin_us));

    // A clean stop leaves a fresh snapshot and an empty log behind.
    persistence->sync();
    persistence->compact(store);
    ::unlink(socket_path.c_str());
    if (o.foreground) {
        const ServerStats& s = server.stats();
        std::cerr << "pvkit-stored: stopped after " << s.requests << " requests from " << s.accepted
                  << " clients (" << s.oversized_frames << " oversized messages, "
                  << s.overflow_disconnects << " clients cut off for not reading, "
                  << s.outstanding_rejects << " over the outstanding-request quota, " << s.refused
                  << " refused)\n";
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"pvkit-stored: the pvkit store daemon (XenStore semantics)"};
    DaemonOptions o;
    app.add_option("--socket", o.socket_path, "Unix socket to listen on (mode 0660)")
        ->capture_default_str();
    app.add_option("--data-dir", o.data_dir, "Directory for the snapshot and the log")
        ->capture_default_str();
    app.add_option("--fsync", o.fsync,
                   "always: fdatasync the log before replying (survives power loss); "
                   "never: write(2) only (survives a daemon crash)")
        ->check(CLI::IsMember({"always", "never"}))
        ->capture_default_str();
    app.add_flag("--foreground", o.foreground, "Stay attached to the terminal and log to stderr");
    app.add_option("--ready-fd", o.ready_fd, "Write READY to this descriptor once clients can connect")
        ->check(CLI::Range(0, 1 << 20));
    app.add_option("--compact-bytes", o.compact_bytes, "Compact the log into a snapshot beyond this size")
        ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 34))
        ->capture_default_str();
    app.add_option("--spin-us", o.spin_us,
                   "Poll this long for more work before sleeping (0: sleep at once)")
        ->check(CLI::Range(0U, 1000000U))
        ->capture_default_str();
    app.add_option("--max-output-bytes", o.server.max_output_bytes,
                   "Disconnect a client with more than this many bytes queued for it")
        ->check(CLI::Range(std::size_t{8192}, std::size_t{1} << 34))
        ->capture_default_str();
    app.add_option("--max-connections", o.server.max_connections, "Clients at once")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
        ->capture_default_str();
    app.add_option("--quota-nodes", o.limits.quota_nodes, "Nodes a domain other than 0 may own")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--quota-watches", o.limits.quota_watches, "Watches per domain other than 0")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--quota-transactions", o.limits.quota_transactions,
                   "Open transactions per domain other than 0")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--quota-outstanding", o.limits.quota_outstanding,
                   "Unanswered requests per connection of a domain other than 0")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0)
            return app.exit(e); // --help
        std::cerr << "pvkit-stored: " << e.what() << " (see --help)\n";
        return 2;
    }
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::cerr << "pvkit-stored: " << e.what() << "\n";
        return 1;
    }
}
