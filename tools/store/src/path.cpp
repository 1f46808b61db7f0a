#include "pvkit/store/path.hpp"

#include <pvkit/store.h>

namespace pvkit::store {

std::string domain_path(pvkit_domid_t domid) { return "/local/domain/" + std::to_string(domid); }

bool has_valid_path_chars(std::string_view text) {
    for (char c : text) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '/' || c == '_' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

namespace {

// Checks the shape of an absolute path: leading "/", no empty component,
// no trailing "/" unless it is the root.
bool is_well_formed_absolute(std::string_view abs) {
    if (abs.empty() || abs[0] != '/' || abs.size() > PVKIT_STORE_ABS_PATH_MAX)
        return false;
    if (abs.size() == 1)
        return true;
    if (abs.back() == '/')
        return false;
    return abs.find("//") == std::string_view::npos && has_valid_path_chars(abs);
}

} // namespace

std::optional<std::string> canonical_node_path(std::string_view path, pvkit_domid_t domid) {
    if (path.empty())
        return std::nullopt;
    if (path[0] == '/') {
        if (!is_well_formed_absolute(path))
            return std::nullopt;
        return std::string(path);
    }
    // '@' names are watch-only specials, never nodes.
    if (path[0] == '@' || path.size() > PVKIT_STORE_REL_PATH_MAX)
        return std::nullopt;
    std::string abs = domain_path(domid);
    abs += '/';
    abs += path;
    if (!is_well_formed_absolute(abs))
        return std::nullopt;
    return abs;
}

std::optional<std::string> canonical_watch_path(std::string_view path, pvkit_domid_t domid) {
    if (!path.empty() && path[0] == '@') {
        if (path.size() < 2 || path.size() > PVKIT_STORE_REL_PATH_MAX || !has_valid_path_chars(path) ||
            path.find('/') != std::string_view::npos)
            return std::nullopt;
        return std::string(path);
    }
    return canonical_node_path(path, domid);
}

std::string_view parent_path(std::string_view abs) {
    std::size_t slash = abs.rfind('/');
    if (slash == 0 || slash == std::string_view::npos)
        return "/";
    return abs.substr(0, slash);
}

std::string_view base_name(std::string_view abs) {
    std::size_t slash = abs.rfind('/');
    return slash == std::string_view::npos ? abs : abs.substr(slash + 1);
}

std::string child_path(std::string_view parent, std::string_view name) {
    std::string out(parent);
    if (out != "/")
        out += '/';
    out += name;
    return out;
}

bool is_at_or_below(std::string_view path, std::string_view ancestor) {
    if (ancestor == "/")
        return !path.empty() && path[0] == '/';
    if (path.size() < ancestor.size() || path.compare(0, ancestor.size(), ancestor) != 0)
        return false;
    return path.size() == ancestor.size() || path[ancestor.size()] == '/';
}

} // namespace pvkit::store
