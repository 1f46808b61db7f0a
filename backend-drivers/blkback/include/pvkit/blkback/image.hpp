// The disk image behind one vbd: a regular file or a block device.
#pragma once

#include <cstdint>
#include <string>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::blkback {

struct ImageOptions {
    bool read_only = false;
    bool direct = false; // O_DIRECT: bypass the host page cache
    std::uint32_t sector_size = 512;
};

class Image {
public:
    // Opens `path`. On failure returns the errno and fills `why` with a
    // sentence naming the path.
    static Result<Image, int> open(const std::string& path, const ImageOptions& options,
                                   std::string& why);

    [[nodiscard]] int fd() const { return m_fd.get(); }
    // Size in 512-byte sectors, rounded down to whole logical sectors.
    [[nodiscard]] std::uint64_t sectors() const { return m_sectors; }
    // Discard granularity in bytes: a power of two, a multiple of the
    // sector size.
    [[nodiscard]] std::uint32_t discard_granularity() const { return m_discard_granularity; }
    [[nodiscard]] bool block_device() const { return m_block_device; }

private:
    Image(UniqueFd fd, std::uint64_t sectors, std::uint32_t granularity, bool block_device)
        : m_fd(std::move(fd)), m_sectors(sectors), m_discard_granularity(granularity),
          m_block_device(block_device) {}

    UniqueFd m_fd;
    std::uint64_t m_sectors = 0;
    std::uint32_t m_discard_granularity = 4096;
    bool m_block_device = false;
};

} // namespace pvkit::blkback
