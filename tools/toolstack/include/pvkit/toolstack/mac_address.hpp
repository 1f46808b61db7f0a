// Ethernet MAC addresses of virtual NICs: parsing the configured form,
// formatting the store form, and generating a stable default.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pvkit::toolstack {

struct MacAddress {
    std::array<std::uint8_t, 6> octets{};

    // Parses exactly "xx:xx:xx:xx:xx:xx" with hex digits in either case.
    // Anything else (other separators, missing digits, spaces) is nullopt.
    static std::optional<MacAddress> parse(std::string_view text);

    // A locally administered unicast address derived from the domain name
    // and the devid, so the same config always gets the same address and
    // two NICs of one domain get different ones. The first octet is 0x02;
    // the other five come from a hash of (name, devid).
    static MacAddress generate(std::string_view domain_name, std::uint32_t devid);

    // Lower-case "xx:xx:xx:xx:xx:xx", the form written to the store.
    [[nodiscard]] std::string to_string() const;

    // Bit 0 of the first octet: group (multicast or broadcast) address.
    [[nodiscard]] bool is_multicast() const { return (octets[0] & 0x01u) != 0; }
    // Bit 1 of the first octet: not assigned by a vendor.
    [[nodiscard]] bool is_locally_administered() const { return (octets[0] & 0x02u) != 0; }
    [[nodiscard]] bool is_zero() const { return octets == std::array<std::uint8_t, 6>{}; }

    bool operator==(const MacAddress&) const = default;
};

} // namespace pvkit::toolstack
