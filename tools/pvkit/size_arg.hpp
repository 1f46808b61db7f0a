// Sizes on pvkit's command lines: "4096", "4k", "256M", "1G" (powers of
// 1024). Shared by `pvkit blk` and `pvkit bench`.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pvkit::cli {

// Throws std::runtime_error naming the option and what was expected.
inline std::uint64_t parse_size(const std::string& option, const std::string& text) {
    std::size_t used = 0;
    std::uint64_t value = 0;
    try {
        if (text.empty() || text[0] == '-')
            throw std::invalid_argument("sign");
        value = std::stoull(text, &used, 10);
    } catch (const std::exception&) {
        throw std::runtime_error(option + ": expected a size such as 4096, 4k, 256M or 1G, got '" +
                                 text + "'");
    }
    const std::string suffix = text.substr(used);
    std::uint64_t unit = 1;
    if (suffix == "k" || suffix == "K")
        unit = 1024;
    else if (suffix == "m" || suffix == "M")
        unit = 1024 * 1024;
    else if (suffix == "g" || suffix == "G")
        unit = 1024ull * 1024 * 1024;
    else if (!suffix.empty())
        throw std::runtime_error(option + ": unknown unit '" + suffix + "' in '" + text +
                                 "' (k, M or G)");
    if (value > UINT64_MAX / unit)
        throw std::runtime_error(option + ": " + text + " is too large");
    return value * unit;
}

} // namespace pvkit::cli
