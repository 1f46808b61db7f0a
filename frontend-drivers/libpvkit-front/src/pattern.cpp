#include "pvkit/front/pattern.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace pvkit::front {

namespace {

// SplitMix64: a cheap, well-mixed function of the 8-byte word index.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::uint64_t word(std::uint64_t seed, std::uint64_t index) {
    return mix(seed * 0xd1342543de82ef95ull ^ index);
}

std::byte byte_at(std::uint64_t seed, std::uint64_t offset) {
    return static_cast<std::byte>(word(seed, offset / 8) >> (8 * (offset % 8)));
}

} // namespace

void fill_pattern(std::span<std::byte> out, std::uint64_t seed, std::uint64_t disk_offset) {
    std::size_t i = 0;
    // Unaligned head, then whole words, then the tail.
    while (i < out.size() && (disk_offset + i) % 8 != 0) {
        out[i] = byte_at(seed, disk_offset + i);
        ++i;
    }
    while (i + 8 <= out.size()) {
        std::uint64_t w = word(seed, (disk_offset + i) / 8);
        for (std::size_t k = 0; k < 8; ++k)
            out[i + k] = static_cast<std::byte>(w >> (8 * k));
        i += 8;
    }
    for (; i < out.size(); ++i)
        out[i] = byte_at(seed, disk_offset + i);
}

std::optional<std::uint64_t> find_pattern_mismatch(std::span<const std::byte> data,
                                                   std::uint64_t seed,
                                                   std::uint64_t disk_offset) {
    // Compare against generated chunks: word-at-a-time generation and
    // memcmp, then look closer only inside a chunk that differs.
    constexpr std::size_t kChunk = 64 * 1024;
    std::vector<std::byte> expect(std::min(kChunk, data.size()));
    for (std::size_t at = 0; at < data.size(); at += kChunk) {
        const std::size_t n = std::min(kChunk, data.size() - at);
        std::span<std::byte> want(expect.data(), n);
        fill_pattern(want, seed, disk_offset + at);
        if (std::memcmp(want.data(), data.data() + at, n) == 0)
            continue;
        for (std::size_t i = 0; i < n; ++i) {
            if (want[i] != data[at + i])
                return disk_offset + at + i;
        }
    }
    return std::nullopt;
}

std::uint64_t fnv1a64(std::span<const std::byte> data) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::byte b : data) {
        h ^= static_cast<std::uint64_t>(b);
        h *= 0x100000001b3ull;
    }
    return h;
}

} // namespace pvkit::front
