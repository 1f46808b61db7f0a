#include "config_reader.hpp"

#include <algorithm>
#include <limits>
#include <set>

namespace pvkit::toolstack::detail {

namespace {

bool is_plain_key(std::string_view key) {
    if (key.empty())
        return false;
    return std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

std::string display_path(std::string_view path) {
    return path.empty() ? std::string("(top level)") : std::string(path);
}

// Edit distance, for "did you mean". Keys are short, so the quadratic
// table is nothing.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// Where the parser stands, so a duplicate key can be named by its path.
struct Frame {
    bool is_array = false;
    std::size_t index = 0;      // arrays: index of the element being parsed
    std::string key;            // objects: the key being parsed
    std::set<std::string> keys; // objects: keys seen so far
};

std::string frames_path(const std::vector<Frame>& frames) {
    // frames[0] is the top-level container; each later frame is a child of
    // the one before, at that one's current key or index.
    std::string path;
    for (std::size_t i = 0; i + 1 < frames.size(); ++i)
        path = frames[i].is_array ? index_path(path, frames[i].index)
                                  : child_path(path, frames[i].key);
    return path;
}

void element_done(std::vector<Frame>& frames) {
    if (!frames.empty() && frames.back().is_array)
        ++frames.back().index;
}

// nlohmann's message is "[json.exception.parse_error.101] parse error at
// line 3, column 14: syntax error while ..."; keep only what follows the
// position, since the position is printed in our own form.
std::string parse_error_reason(const std::string& what) {
    std::string reason = what;
    // "[json.exception.<kind>.<id>] " names the library, not the problem.
    if (reason.starts_with("[json.exception.")) {
        const auto end = reason.find("] ");
        if (end != std::string::npos)
            reason.erase(0, end + 2);
    }
    if (reason.starts_with("parse error")) {
        const auto colon = reason.find(": ");
        if (colon != std::string::npos)
            reason.erase(0, colon + 2);
    }
    return reason;
}

} // namespace

std::string child_path(std::string_view parent, std::string_view key) {
    std::string path(parent);
    if (is_plain_key(key)) {
        if (!path.empty())
            path += '.';
        path += key;
    } else {
        path += '[';
        path += Json(std::string(key)).dump(-1, ' ', false, Json::error_handler_t::replace);
        path += ']';
    }
    return path;
}

std::string index_path(std::string_view parent, std::size_t index) {
    std::string path(parent);
    path += '[';
    path += std::to_string(index);
    path += ']';
    return path;
}

std::string describe(const Json& value) {
    constexpr std::size_t kMaxShown = 60;
    std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (text.size() <= kMaxShown)
        return text;
    std::size_t cut = kMaxShown;
    // Do not split a UTF-8 sequence: back up over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0u) == 0x80u)
        --cut;
    text.resize(cut);
    text += "...";
    return text;
}

std::string describe_choices(std::initializer_list<std::string_view> choices) {
    std::string text;
    if (choices.size() > 2)
        text = "one of ";
    std::size_t i = 0;
    for (std::string_view choice : choices) {
        if (i > 0)
            text += (i + 1 == choices.size()) ? " or " : ", ";
        text += '"';
        text += choice;
        text += '"';
        ++i;
    }
    return text;
}

void Diagnostics::error(std::string_view key_path, std::string_view message) {
    std::string line = m_source;
    line += ": ";
    line += display_path(key_path);
    line += ": ";
    line += message;
    m_errors.push_back(std::move(line));
}

void Diagnostics::error_at(std::size_t line_number, std::size_t column, std::string_view message) {
    std::string line = m_source;
    line += ": line " + std::to_string(line_number) + ", column " + std::to_string(column) + ": ";
    line += message;
    m_errors.push_back(std::move(line));
}

void Diagnostics::error_file(std::string_view message) {
    std::string line = m_source;
    line += ": ";
    line += message;
    m_errors.push_back(std::move(line));
}

std::optional<Json> parse_json_strict(std::string_view text, Diagnostics& diag) {
    std::vector<Frame> frames;
    bool duplicates = false;
    // Thrown from the callback to stop the parser: printing and destroying
    // values recurses, so a hostile file must not nest without limit.
    struct TooDeep {};
    const auto push = [&](bool is_array) {
        if (frames.size() >= kMaxNesting) {
            diag.error(frames_path(frames), "expected at most " + std::to_string(kMaxNesting) +
                                                " levels of nested objects and arrays");
            throw TooDeep{};
        }
        frames.emplace_back();
        frames.back().is_array = is_array;
    };
    // The callback sees every parse event in order, which is enough to know
    // the key path of each key as it is read.
    auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
        switch (event) {
        case Json::parse_event_t::object_start:
            push(false);
            break;
        case Json::parse_event_t::array_start:
            push(true);
            break;
        case Json::parse_event_t::key: {
            Frame& frame = frames.back();
            frame.key = parsed.get<std::string>();
            if (!frame.keys.insert(frame.key).second) {
                duplicates = true;
                diag.error(child_path(frames_path(frames), frame.key),
                           "duplicate key (only one value per key is allowed)");
            }
            break;
        }
        case Json::parse_event_t::object_end:
        case Json::parse_event_t::array_end:
            frames.pop_back();
            element_done(frames);
            break;
        case Json::parse_event_t::value:
            element_done(frames);
            break;
        }
        return true;
    };

    try {
        Json document = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                    /*ignore_comments=*/false);
        if (duplicates)
            return std::nullopt;
        return document;
    } catch (const Json::parse_error& e) {
        // e.byte counts the characters read, the offending one included.
        const std::size_t offending =
            std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
        std::size_t line = 1;
        std::size_t line_start = 0;
        for (std::size_t i = 0; i < offending; ++i) {
            if (text[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        }
        diag.error_at(line, offending - line_start + 1,
                      "invalid JSON: " + parse_error_reason(e.what()));
        return std::nullopt;
    } catch (const TooDeep&) {
        return std::nullopt;
    } catch (const Json::exception& e) {
        // Not a syntax error but still unusable input, such as a number
        // too large for a double ("1e400"); nlohmann gives no position.
        diag.error_file("invalid JSON: " + parse_error_reason(e.what()));
        return std::nullopt;
    }
}

bool expect_object(Diagnostics& diag, const Json& value, std::string_view path) {
    if (value.is_object())
        return true;
    diag.error(path, "expected a JSON object, got " + describe(value));
    return false;
}

void reject_unknown_keys(Diagnostics& diag, const Json& object, std::string_view path,
                         std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : object.items()) {
        if (std::find(known.begin(), known.end(), key) != known.end())
            continue;
        std::string_view nearest;
        std::size_t nearest_distance = std::numeric_limits<std::size_t>::max();
        for (std::string_view candidate : known) {
            const std::size_t d = edit_distance(key, candidate);
            if (d < nearest_distance) {
                nearest = candidate;
                nearest_distance = d;
            }
        }
        std::string message = "unknown key";
        if (nearest_distance <= 2 && nearest_distance < key.size()) {
            message += " (did you mean \"";
            message += nearest;
            message += "\"?)";
        } else {
            message += "; expected " + describe_choices(known);
        }
        diag.error(child_path(path, key), message);
    }
}

const Json* member(const Json& object, std::string_view key) {
    auto it = object.find(std::string(key));
    return it == object.end() ? nullptr : &*it;
}

void report_missing(Diagnostics& diag, std::string_view path, std::string_view expected) {
    diag.error(path, "required key is missing (expected " + std::string(expected) + ")");
}

std::optional<std::int64_t> read_integer(Diagnostics& diag, const Json& value,
                                         std::string_view path, std::int64_t min, std::int64_t max,
                                         std::string_view unit) {
    std::optional<std::int64_t> number;
    if (value.is_number_unsigned()) {
        // Above INT64_MAX cannot be in range; compare before narrowing.
        const auto u = value.get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            number = static_cast<std::int64_t>(u);
    } else if (value.is_number_integer()) {
        number = value.get<std::int64_t>();
    }
    if (number && *number >= min && *number <= max)
        return number;
    std::string message =
        "expected an integer from " + std::to_string(min) + " to " + std::to_string(max);
    if (!unit.empty()) {
        message += " (";
        message += unit;
        message += ')';
    }
    message += ", got " + describe(value);
    diag.error(path, message);
    return std::nullopt;
}

std::optional<bool> read_bool(Diagnostics& diag, const Json& value, std::string_view path) {
    if (value.is_boolean())
        return value.get<bool>();
    diag.error(path, "expected true or false, got " + describe(value));
    return std::nullopt;
}

std::optional<std::string> read_string(Diagnostics& diag, const Json& value, std::string_view path,
                                       std::string_view expected) {
    if (value.is_string())
        return value.get<std::string>();
    diag.error(path, "expected " + std::string(expected) + ", got " + describe(value));
    return std::nullopt;
}

std::optional<std::size_t> read_choice(Diagnostics& diag, const Json& value, std::string_view path,
                                       std::initializer_list<std::string_view> choices) {
    if (value.is_string()) {
        const auto& text = value.get_ref<const std::string&>();
        std::size_t i = 0;
        for (std::string_view choice : choices) {
            if (text == choice)
                return i;
            ++i;
        }
    }
    diag.error(path, "expected " + describe_choices(choices) + ", got " + describe(value));
    return std::nullopt;
}

} // namespace pvkit::toolstack::detail
