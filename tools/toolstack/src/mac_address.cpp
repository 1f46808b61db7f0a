#include "pvkit/toolstack/mac_address.hpp"

#include <cstddef>

namespace pvkit::toolstack {

namespace {

std::optional<std::uint8_t> hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return static_cast<std::uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f')
        return static_cast<std::uint8_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return static_cast<std::uint8_t>(c - 'A' + 10);
    return std::nullopt;
}

// FNV-1a, 64 bits: small, stable across platforms and releases, which is
// all a default MAC needs (it is not a security boundary).
std::uint64_t fnv1a(std::uint64_t hash, std::uint8_t byte) {
    constexpr std::uint64_t kPrime = 0x100000001b3ull;
    return (hash ^ byte) * kPrime;
}

} // namespace

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
    constexpr std::size_t kTextLength = 17; // 6 pairs and 5 colons
    if (text.size() != kTextLength)
        return std::nullopt;
    MacAddress mac;
    for (std::size_t i = 0; i < mac.octets.size(); ++i) {
        const std::size_t at = i * 3;
        if (i > 0 && text[at - 1] != ':')
            return std::nullopt;
        auto high = hex_digit(text[at]);
        auto low = hex_digit(text[at + 1]);
        if (!high || !low)
            return std::nullopt;
        mac.octets[i] = static_cast<std::uint8_t>((*high << 4) | *low);
    }
    return mac;
}

MacAddress MacAddress::generate(std::string_view domain_name, std::uint32_t devid) {
    std::uint64_t hash = 0xcbf29ce484222325ull; // FNV offset basis
    for (char c : domain_name)
        hash = fnv1a(hash, static_cast<std::uint8_t>(c));
    // A separator that cannot occur in a name keeps ("a1", 0) and ("a", 10)
    // apart.
    hash = fnv1a(hash, 0);
    for (int shift = 0; shift < 32; shift += 8)
        hash = fnv1a(hash, static_cast<std::uint8_t>(devid >> shift));

    MacAddress mac;
    mac.octets[0] = 0x02; // locally administered, unicast
    for (std::size_t i = 1; i < mac.octets.size(); ++i)
        mac.octets[i] = static_cast<std::uint8_t>(hash >> (8 * (i - 1)));
    return mac;
}

std::string MacAddress::to_string() const {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text;
    text.reserve(17);
    for (std::size_t i = 0; i < octets.size(); ++i) {
        if (i > 0)
            text += ':';
        text += kDigits[octets[i] >> 4];
        text += kDigits[octets[i] & 0x0fu];
    }
    return text;
}

} // namespace pvkit::toolstack
