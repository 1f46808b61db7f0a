#include "pvkit/vmm/console.hpp"

#include "pvkit/vmm/console_server.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pvkit::vmm {

namespace {
constexpr std::size_t kLineMax = 256;
} // namespace

ConsoleSink ConsoleSink::borrow_fd(int fd) {
    return ConsoleSink(fd, UniqueFd());
}

ConsoleSink ConsoleSink::open_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid())
        throw std::runtime_error("cannot open console log " + path + ": " + std::strerror(errno));
    const int raw = fd.get();
    return ConsoleSink(raw, std::move(fd));
}

ConsoleSink::~ConsoleSink() {
    if (m_fd >= 0)
        flush();
}

void ConsoleSink::write_all(std::span<const std::byte> bytes) {
    if (m_server != nullptr)
        m_server->publish(bytes);
    while (!bytes.empty()) {
        const ssize_t n = ::write(m_fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ++m_errors;
            return;
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
}

void ConsoleSink::write(std::span<const std::byte> bytes) {
    flush();
    write_all(bytes);
    m_bytes += bytes.size();
}

void ConsoleSink::put(std::byte byte) {
    m_line.push_back(byte);
    ++m_bytes;
    if (byte == std::byte{'\n'} || m_line.size() >= kLineMax)
        flush();
}

void ConsoleSink::flush() {
    if (m_line.empty())
        return;
    write_all(m_line);
    m_line.clear();
}

} // namespace pvkit::vmm
