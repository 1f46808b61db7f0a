// Building blocks for reading JSON configs with useful errors: a strict
// parser (line and column for syntax errors, duplicate keys rejected) and
// typed readers that report "<source>: <key path>: expected ..., got ...".
// Internal to pvkit_toolstack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pvkit::toolstack::detail {

using Json = nlohmann::json;

// Config files are small; a cap keeps a wrong path (a disk image given as
// the config) from being read into memory whole.
inline constexpr std::size_t kConfigMaxBytes = 1u << 20;
// Deeper nesting than any config needs; the limit keeps recursion in the
// JSON library (printing, destroying values) bounded.
inline constexpr std::size_t kMaxNesting = 32;

// Key paths as messages print them: `disks[1].mode`. A key that is not a
// plain identifier is quoted: `disks[0]["odd key"]`.
std::string child_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, std::size_t index);

// A short rendering of a value for "got ...": JSON syntax, so a string
// shows its quotes and "64" is told apart from 64; long values are cut.
std::string describe(const Json& value);

// `"r" or "w"`, `one of "a", "b" or "c"`.
std::string describe_choices(std::initializer_list<std::string_view> choices);

// Collects errors for one source (a file name or "command line").
class Diagnostics {
public:
    explicit Diagnostics(std::string source) : m_source(std::move(source)) {}

    // "<source>: <key path>: <message>"; the empty path is the top level.
    void error(std::string_view key_path, std::string_view message);
    // "<source>: line L, column C: <message>"
    void error_at(std::size_t line, std::size_t column, std::string_view message);
    // "<source>: <message>", for problems with the file itself.
    void error_file(std::string_view message);

    [[nodiscard]] bool has_errors() const { return !m_errors.empty(); }
    [[nodiscard]] std::size_t count() const { return m_errors.size(); }
    [[nodiscard]] const std::string& source() const { return m_source; }
    std::vector<std::string> take() { return std::move(m_errors); }

private:
    std::string m_source;
    std::vector<std::string> m_errors;
};

// Parses `text` as one JSON value. Syntax errors are reported with line
// and column; a key repeated inside one object is reported with its key
// path, because plain JSON parsing silently keeps only the last value and a
// config must not change meaning that way. nullopt on any error.
std::optional<Json> parse_json_strict(std::string_view text, Diagnostics& diag);

// Reports `value` not being an object; true if it is one.
bool expect_object(Diagnostics& diag, const Json& value, std::string_view path);

// Reports every key of `object` that is not in `known`, suggesting the
// nearest known key when one is close (a typo must not pass silently).
void reject_unknown_keys(Diagnostics& diag, const Json& object, std::string_view path,
                         std::initializer_list<std::string_view> known);

// The member `key` of `object`, or nullptr.
const Json* member(const Json& object, std::string_view key);

// "<path>.<key>: required key is missing (expected <expected>)"
void report_missing(Diagnostics& diag, std::string_view path, std::string_view expected);

// Typed readers. Each reports "expected <what>, got <value>" on a wrong
// type or value and returns nullopt.
std::optional<std::int64_t> read_integer(Diagnostics& diag, const Json& value,
                                         std::string_view path, std::int64_t min, std::int64_t max,
                                         std::string_view unit = {});
std::optional<bool> read_bool(Diagnostics& diag, const Json& value, std::string_view path);
std::optional<std::string> read_string(Diagnostics& diag, const Json& value, std::string_view path,
                                       std::string_view expected);
// The index of the choice `value` equals.
std::optional<std::size_t> read_choice(Diagnostics& diag, const Json& value, std::string_view path,
                                       std::initializer_list<std::string_view> choices);

} // namespace pvkit::toolstack::detail
