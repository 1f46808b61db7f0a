#include "pvkit/blkback/image.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pvkit/blkif.h>

#include <cerrno>
#include <cstring>

namespace pvkit::blkback {

namespace {
bool power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
} // namespace

Result<Image, int> Image::open(const std::string& path, const ImageOptions& options, std::string& why) {
    int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
    if (options.direct)
        flags |= O_DIRECT;
    UniqueFd fd(::open(path.c_str(), flags));
    if (!fd.valid()) {
        int err = errno;
        why = path + ": " + std::strerror(err);
        return Unexpected{err};
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        int err = errno;
        why = path + ": fstat: " + std::strerror(err);
        return Unexpected{err};
    }
    std::uint64_t bytes = 0;
    bool block = false;
    std::uint32_t granularity = 4096;
    if (S_ISREG(st.st_mode)) {
        bytes = static_cast<std::uint64_t>(st.st_size);
        // Punching a hole frees whole file-system blocks; smaller ranges are
        // zeroed instead, which is still correct, just not a hole.
        if (st.st_blksize > 0 && power_of_two(static_cast<std::uint64_t>(st.st_blksize)))
            granularity = static_cast<std::uint32_t>(st.st_blksize);
    } else if (S_ISBLK(st.st_mode)) {
        if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) {
            int err = errno;
            why = path + ": BLKGETSIZE64: " + std::strerror(err);
            return Unexpected{err};
        }
        block = true;
        unsigned int physical = 0;
        if (::ioctl(fd.get(), BLKPBSZGET, &physical) == 0 && power_of_two(physical))
            granularity = physical;
    } else {
        why = path + ": neither a regular file nor a block device";
        return Unexpected{EINVAL};
    }
    if (granularity < options.sector_size)
        granularity = options.sector_size;
    // Whole logical sectors only: a 4096-byte-sector device never exposes a
    // partial last sector.
    std::uint64_t sectors = bytes / options.sector_size * (options.sector_size / PVKIT_BLKIF_SECTOR_SIZE);
    return Image(std::move(fd), sectors, granularity, block);
}

} // namespace pvkit::blkback
