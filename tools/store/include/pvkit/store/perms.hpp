// Node permissions (store.h): a letter and a domid per entry. The first
// entry names the node's owner and the access every other domain gets;
// later entries give named domains their own access.
#pragma once

#include <pvkit/abi.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pvkit::store {

// Bit values: kRead | kWrite == kBoth.
enum class Access : std::uint8_t { kNone = 0, kRead = 1, kWrite = 2, kBoth = 3 };

[[nodiscard]] constexpr bool allows(Access granted, Access wanted) {
    return (static_cast<unsigned>(granted) & static_cast<unsigned>(wanted)) ==
           static_cast<unsigned>(wanted);
}

struct Perm {
    Access access = Access::kNone;
    pvkit_domid_t domid = 0;

    friend bool operator==(const Perm&, const Perm&) = default;
};

using Perms = std::vector<Perm>;

// "r5" -> {kRead, 5}. The domid is decimal, without sign or leading zeros
// beyond a single "0", and at most PVKIT_DOMID_MAX; nullopt otherwise.
[[nodiscard]] std::optional<Perm> parse_perm(std::string_view text);
// {kRead, 5} -> "r5".
[[nodiscard]] std::string format_perm(const Perm& perm);

// Every entry of `texts` parsed; nullopt if any is invalid or there is none.
[[nodiscard]] std::optional<Perms> parse_perms(std::span<const std::string_view> texts);
// "n0 r5": for people (the CLI and log lines).
[[nodiscard]] std::string format_perms(const Perms& perms, std::string_view separator = " ");

// Parses a decimal domid in [0, max]; nullopt for anything else.
[[nodiscard]] std::optional<pvkit_domid_t> parse_domid(std::string_view text,
                                                       pvkit_domid_t max = PVKIT_DOMID_MAX);

} // namespace pvkit::store
