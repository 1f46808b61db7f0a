// Deterministic data patterns for writing and verifying disks.
//
// The byte at disk offset `o` under seed `s` depends only on (s, o), so
// any subrange written with one seed can be verified later by anyone (the
// `pvkit blk` commands, the tests, a check of the image file on the host)
// without remembering how it was written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace pvkit::front {

// Fills `out` with the pattern for disk offsets [disk_offset, +size).
void fill_pattern(std::span<std::byte> out, std::uint64_t seed, std::uint64_t disk_offset);

// The disk offset of the first byte of `data` (which came from
// `disk_offset`) that differs from the pattern, or nullopt.
std::optional<std::uint64_t> find_pattern_mismatch(std::span<const std::byte> data,
                                                   std::uint64_t seed,
                                                   std::uint64_t disk_offset);

// FNV-1a (64 bit) of `data`, for printing what was read.
std::uint64_t fnv1a64(std::span<const std::byte> data);

} // namespace pvkit::front
