// Store paths: validation and the relative-to-absolute rule.
//
// A path is absolute ("/local/domain/3/device") or relative to the
// caller's domain path ("device" from domain 3 is
// "/local/domain/3/device"). Characters are XenStore's: A-Z a-z 0-9 and
// "-/_@". That set is ASCII only, so broken UTF-8, non-ASCII text and
// embedded NULs are all rejected by the same check. Components are never
// empty ("//"), a path never ends in "/" (except the root "/"), an absolute
// path is at most PVKIT_STORE_ABS_PATH_MAX bytes and a relative one at most
// PVKIT_STORE_REL_PATH_MAX.
#pragma once

#include <pvkit/abi.h>

#include <optional>
#include <string>
#include <string_view>

namespace pvkit::store {

// "/local/domain/<domid>".
[[nodiscard]] std::string domain_path(pvkit_domid_t domid);

// Whether every byte of `text` is in XenStore's path alphabet.
[[nodiscard]] bool has_valid_path_chars(std::string_view text);

// The absolute form of a node path given by `domid`, or nullopt (EINVAL) if
// it breaks a rule above.
[[nodiscard]] std::optional<std::string> canonical_node_path(std::string_view path,
                                                             pvkit_domid_t domid);

// A watch path is a node path or a special name "@<chars>" (XenStore's
// "@introduceDomain" style), which is kept as it is.
[[nodiscard]] std::optional<std::string> canonical_watch_path(std::string_view path,
                                                              pvkit_domid_t domid);

// Parent of an absolute path other than "/": "/a/b" -> "/a", "/a" -> "/".
[[nodiscard]] std::string_view parent_path(std::string_view abs);
// Last component: "/a/b" -> "b".
[[nodiscard]] std::string_view base_name(std::string_view abs);
// "/a" + "b" -> "/a/b"; "/" + "b" -> "/b".
[[nodiscard]] std::string child_path(std::string_view parent, std::string_view name);

// Whether `path` is `ancestor` or lies below it ("/a/b" is below "/a", "/ab" is not).
[[nodiscard]] bool is_at_or_below(std::string_view path, std::string_view ancestor);

} // namespace pvkit::store
