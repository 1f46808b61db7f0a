// Where the guest's console output goes: stdout or a log file. Both the
// hypercall console (whole buffers) and the 16550 (one byte per exit) write
// here, in the order the guest produced the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::vmm {

class ConsoleServer;

class ConsoleSink {
public:
    // Writes to a descriptor this object does not own (stdout).
    static ConsoleSink borrow_fd(int fd);
    // Creates or truncates `path`. Throws std::runtime_error naming it.
    static ConsoleSink open_file(const std::string& path);

    ConsoleSink(ConsoleSink&&) noexcept = default;
    ConsoleSink& operator=(ConsoleSink&&) noexcept = default;
    ConsoleSink(const ConsoleSink&) = delete;
    ConsoleSink& operator=(const ConsoleSink&) = delete;
    ~ConsoleSink();

    // A whole buffer: written at once, after any bytes put() was holding.
    void write(std::span<const std::byte> bytes);
    // One byte (the UART): held until a newline or a full line buffer, so a
    // byte-at-a-time console does not cost a write(2) per byte.
    void put(std::byte byte);
    void flush();
    // Also hands every byte written to `server` (pvkit console's socket);
    // nullptr stops that. The server must outlive its use here.
    void set_server(ConsoleServer* server) { m_server = server; }

    [[nodiscard]] std::uint64_t bytes_written() const { return m_bytes; }
    // Errors writing the sink are counted, not fatal: a closed stdout must
    // not stop the guest.
    [[nodiscard]] std::uint64_t write_errors() const { return m_errors; }

private:
    ConsoleSink(int fd, UniqueFd owned) : m_fd(fd), m_owned(std::move(owned)) {}
    void write_all(std::span<const std::byte> bytes);

    int m_fd;
    UniqueFd m_owned;
    ConsoleServer* m_server = nullptr;
    std::vector<std::byte> m_line;
    std::uint64_t m_bytes = 0;
    std::uint64_t m_errors = 0;
};

} // namespace pvkit::vmm
