#include "pvkit/store/perms.hpp"

namespace pvkit::store {

std::optional<pvkit_domid_t> parse_domid(std::string_view text, pvkit_domid_t max) {
    // At most 5 digits and no leading zeros: one spelling per number, so
    // that "r05" and "r5" cannot name the same domain in two entries.
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > max)
        return std::nullopt;
    return static_cast<pvkit_domid_t>(value);
}

std::optional<Perm> parse_perm(std::string_view text) {
    if (text.empty())
        return std::nullopt;
    Access access;
    switch (text[0]) {
    case 'n':
        access = Access::kNone;
        break;
    case 'r':
        access = Access::kRead;
        break;
    case 'w':
        access = Access::kWrite;
        break;
    case 'b':
        access = Access::kBoth;
        break;
    default:
        return std::nullopt;
    }
    std::optional<pvkit_domid_t> domid = parse_domid(text.substr(1));
    if (!domid)
        return std::nullopt;
    return Perm{access, *domid};
}

std::string format_perm(const Perm& perm) {
    static constexpr char kLetters[] = {'n', 'r', 'w', 'b'};
    std::string out(1, kLetters[static_cast<unsigned>(perm.access) & 3u]);
    out += std::to_string(perm.domid);
    return out;
}

std::optional<Perms> parse_perms(std::span<const std::string_view> texts) {
    if (texts.empty())
        return std::nullopt;
    Perms out;
    out.reserve(texts.size());
    for (std::string_view t : texts) {
        std::optional<Perm> p = parse_perm(t);
        if (!p)
            return std::nullopt;
        out.push_back(*p);
    }
    return out;
}

std::string format_perms(const Perms& perms, std::string_view separator) {
    std::string out;
    for (std::size_t i = 0; i < perms.size(); ++i) {
        if (i != 0)
            out += separator;
        out += format_perm(perms[i]);
    }
    return out;
}

} // namespace pvkit::store
