// Helpers for the store tests: temporary directories, a real pvkit-stored
// process, and a raw protocol connection for feeding it bad input. Like
// tests/support, nothing here uses Catch2 macros; failures throw.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/store/client.hpp"
#include "pvkit/store/wire.hpp"
#include "pvkit/transport/unique_fd.hpp"
#include "test_support.hpp"

namespace pvkit::store::test {

// Every wait in the store tests is bounded by this; nothing depends on how
// fast the machine is, only on whether things happen at all.
inline constexpr std::chrono::milliseconds kWait{20000};

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
public:
    TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir();
    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }

private:
    std::filesystem::path m_path;
};

// A pvkit-stored process serving a socket in a temp directory. The data
// directory survives restart() and kill9() so persistence can be checked.
class Daemon {
public:
    // `extra` are additional command-line options (quotas, --fsync, ...).
    explicit Daemon(std::vector<std::string> extra = {});
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    ~Daemon();

    void start();
    // SIGTERM and wait: a clean stop. Returns the wait status.
    int stop();
    // SIGKILL and reap: a crash.
    void kill9();
    void restart() {
        stop();
        start();
    }
    [[nodiscard]] bool running() const { return m_child.has_value(); }
    // True if the process is still alive (has not exited on its own).
    [[nodiscard]] bool alive();

    // The socket: "--socket PATH" from `extra` if given, else one in the temp directory.
    [[nodiscard]] std::string socket() const;
    [[nodiscard]] std::filesystem::path data_dir() const { return m_dir.path() / "data"; }
    [[nodiscard]] const std::vector<std::string>& extra() const { return m_extra; }

    // A connected client (domain 0); throws if it cannot connect.
    [[nodiscard]] StoreClient client() const;

private:
    TempDir m_dir;
    std::vector<std::string> m_extra;
    std::optional<pvkit::test::ChildProcess> m_child;
};

// The path of the pvkit-stored binary under test.
std::string stored_binary();

// A connection that speaks raw bytes, for hostile-client tests.
class RawConnection {
public:
    explicit RawConnection(const std::string& socket_path);
    // Sends bytes (blocking, bounded by kWait). False if the daemon hung up.
    bool send(std::string_view bytes);
    bool send(const Message& msg) { return send(encode(msg)); }
    // The next message, or nullopt if the daemon closed the connection.
    // Throws on timeout.
    std::optional<Message> receive();
    // Whether the daemon has closed the connection: reads and discards
    // until end of stream (true) or until kWait passes (false).
    bool wait_for_close();
    [[nodiscard]] int fd() const { return m_fd.get(); }
    void close() { m_fd.reset(); }

private:
    UniqueFd m_fd;
    FrameDecoder m_decoder;
};

} // namespace pvkit::store::test
