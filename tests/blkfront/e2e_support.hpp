// End-to-end helpers: a real pvkit-blkback process next to the real
// pvkit-stored of tests/store (Daemon), image files in a temp directory,
// and the host's own view of an image (pread). Like tests/support, nothing
// here uses Catch2 macros; failures throw.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pvkit/front/blk_device.hpp"
#include "pvkit/front/host_domain.hpp"
#include "blkback_test_support.hpp"
#include "store_test_support.hpp"
#include "test_support.hpp"

namespace pvkit::blkfront::e2e {

using pvkit::store::test::kWait;
using pvkit::store::test::TempDir;

std::string pvkit_binary();

// pvkit-blkback as a process: tests/blkback's helper.
using Blkback = pvkit::blkback::test::Blkback;

// A store, a block backend and a directory for images.
struct World {
    World();
    TempDir dir;
    pvkit::store::test::Daemon store;
    Blkback blkback;

    [[nodiscard]] std::string path(const std::string& name) const { return (dir.path() / name).string(); }
    // A sparse image of `bytes` bytes; returns its path.
    std::string image(const std::string& name, std::uint64_t bytes) const;
    [[nodiscard]] front::HostDomainOptions domain_options() const;
};

// The host's view of an image: `len` bytes at `offset` with pread.
std::vector<std::byte> read_file(const std::string& path, std::uint64_t offset, std::size_t len);

// A byte-for-byte model of a disk: what every acknowledged write left.
class DiskModel {
public:
    explicit DiskModel(std::uint64_t bytes) : m_bytes(bytes, std::byte{0}) {}
    void write(std::uint64_t offset, std::span<const std::byte> data);
    void zero(std::uint64_t offset, std::uint64_t length);
    [[nodiscard]] std::span<const std::byte> at(std::uint64_t offset, std::uint64_t length) const;
    [[nodiscard]] std::uint64_t size() const { return m_bytes.size(); }

private:
    std::vector<std::byte> m_bytes;
};

// The first offset at which `got` (read from `offset`) differs from
// `want`, for messages; nullopt when equal.
std::optional<std::uint64_t> first_difference(std::span<const std::byte> got,
                                              std::span<const std::byte> want, std::uint64_t offset);

// Runs the real `pvkit` binary; captures stdout and stderr.
struct CommandResult {
    int status = -1; // exit status, or -1 if killed
    std::string out;
    std::string err;
};
CommandResult run_pvkit(const std::vector<std::string>& args);

} // namespace pvkit::blkfront::e2e
