// Owning file descriptor and SCM_RIGHTS descriptor passing.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pvkit {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : m_fd(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    UniqueFd(UniqueFd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other)
            reset(std::exchange(other.m_fd, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const { return m_fd; }
    [[nodiscard]] bool valid() const { return m_fd >= 0; }
    [[nodiscard]] int release() { return std::exchange(m_fd, -1); }
    void reset(int fd = -1);

private:
    int m_fd = -1;
};

// Most descriptors one message carries: a device hand-off's pool plus two
// eventfds for each of 8 queues.
inline constexpr std::size_t kMaxPassedFds = 17;

// Sends `payload` (at least one byte) and `fds` in one message on a
// SOCK_STREAM or SOCK_SEQPACKET Unix socket. Throws std::system_error.
void send_fds(int sock, std::span<const std::byte> payload, std::span<const int> fds);

struct ReceivedFds {
    std::vector<std::byte> payload;
    std::vector<UniqueFd> fds;
};

// Receives one message with at most `max_fds` descriptors and at most
// `max_payload` bytes. Descriptors beyond max_fds (a truncated control
// message) are closed by the kernel and reported as an error, never leaked.
// Throws std::system_error on failure or end of stream.
ReceivedFds recv_fds(int sock, std::size_t max_payload, std::size_t max_fds);

// Throws std::system_error with errno and `what`.
[[noreturn]] void throw_errno(const std::string& what);

} // namespace pvkit
