// `pvkit console <domain>`: attaches to a pv-guest's console, like `xl
// console`. pvkit-vmm serves the console on a Unix socket and publishes its
// path at /local/domain/<domid>/console/socket; this prints the console's
// recent history, then everything new, until the VMM closes the socket
// (the guest is gone) or SIGINT/SIGTERM. Both end with status 0.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/domain_ops.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::cli {

namespace {

namespace ts = pvkit::toolstack;
using store::StoreClient;
using store::StoreError;

volatile sig_atomic_t g_stop = 0;

extern "C" void on_console_signal(int) {
    g_stop = 1;
}

struct ConsoleArgs {
    std::string socket;
    std::string domain;
};

std::string console_socket_of(const ConsoleArgs& a) {
    std::string detail;
    auto client = StoreClient::connect(a.socket, std::chrono::seconds(5), &detail);
    if (!client)
        throw std::runtime_error("cannot reach pvkit-stored: " +
                                 (detail.empty() ? store::resolve_socket_path(a.socket) : detail));
    auto domid = ts::find_domain(*client, a.domain);
    if (!domid) {
        if (domid.error() == StoreError::kNoEnt)
            throw std::runtime_error("no such domain: " + a.domain);
        throw std::runtime_error("domain " + a.domain + ": " +
                                 std::string(store::to_string(domid.error())));
    }
    auto path = client->read(ts::domain_path(domid.value()) + "/console/socket");
    if (!path) {
        if (path.error() == StoreError::kNoEnt)
            throw std::runtime_error("domain " + a.domain + " has no console");
        throw std::runtime_error("domain " + a.domain + ": console/socket: " +
                                 std::string(store::to_string(path.error())));
    }
    return path.value();
}

UniqueFd connect_console(const std::string& domain, const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        throw std::runtime_error("domain " + domain + ": bad console socket path '" + path + "'");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid() ||
        ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("cannot connect to the console of domain " + domain + " at " +
                                 path + ": " + std::strerror(errno));
    return fd;
}

// False if stdout is gone (a closed pipe): stop quietly.
bool write_stdout(const std::byte* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(STDOUT_FILENO, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

void run_console(const ConsoleArgs& a) {
    const std::string path = console_socket_of(a);
    UniqueFd fd = connect_console(a.domain, path);
    // SIGINT/SIGTERM are blocked except inside ppoll: none can slip in
    // between a check of g_stop and the wait.
    struct sigaction sa {};
    sa.sa_handler = on_console_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t blocked;
    sigset_t waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &blocked, &waiting);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    std::array<std::byte, 4096> buf{};
    while (g_stop == 0) {
        pollfd p{fd.get(), POLLIN, 0};
        if (::ppoll(&p, 1, nullptr, &waiting) < 0) {
            if (errno == EINTR)
                continue;
            throw std::runtime_error(std::string("console: poll: ") + std::strerror(errno));
        }
        const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            throw std::runtime_error("console of domain " + a.domain + ": " +
                                     std::strerror(errno));
        if (n == 0)
            return; // the VMM closed it: the guest is gone
        if (!write_stdout(buf.data(), static_cast<std::size_t>(n)))
            return;
    }
}

} // namespace

void register_console_commands(CLI::App& app, Context& /*ctx*/) {
    auto args = std::make_shared<ConsoleArgs>();
    CLI::App* cmd = app.add_subcommand(
        "console", "attach to a domain's console: its recent output, then everything new, until "
                   "the guest ends or Ctrl-C (like xl console)");
    cmd->add_option("domain", args->domain, "domain name or domid")->required();
    cmd->add_option("--store-socket", args->socket,
                    "pvkit-stored socket (default: $PVKIT_STORE_SOCKET or /run/pvkit/stored.sock)");
    cmd->callback([args] { run_console(*args); });
}

} // namespace pvkit::cli
