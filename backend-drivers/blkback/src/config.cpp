#include "pvkit/blkback/config.hpp"

#include <pvkit/blkif.h>
#include <pvkit/ring.h>

#include <algorithm>
#include <vector>

namespace pvkit::blkback {

std::optional<std::uint64_t> parse_decimal(std::string_view text, std::uint64_t max) {
    // 20 digits hold any u64; a longer string cannot be a valid number.
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text.front() == '0'))
        return std::nullopt;
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        auto digit = static_cast<std::uint64_t>(c - '0');
        // Each step is checked before it is taken, so nothing can wrap.
        if (value > max / 10)
            return std::nullopt;
        value *= 10;
        if (digit > max - value)
            return std::nullopt;
        value += digit;
    }
    return value;
}

std::optional<bool> parse_flag(std::string_view text) {
    if (text == "0")
        return false;
    if (text == "1")
        return true;
    return std::nullopt;
}

const char* to_string(ConfigError e) {
    switch (e) {
    case ConfigError::kMissingNode:
        return "required node missing";
    case ConfigError::kBadParams:
        return "params is not an absolute path";
    case ConfigError::kBadMode:
        return "mode is not r or w";
    case ConfigError::kBadType:
        return "type is not raw";
    case ConfigError::kBadSectorSize:
        return "config-sector-size is not 512 or 4096";
    case ConfigError::kBadRingOrder:
        return "config-max-ring-page-order is not 0..4";
    case ConfigError::kBadIndirectSegments:
        return "config-max-indirect-segments is not 0..256";
    case ConfigError::kBadFlag:
        return "feature flag is not 0 or 1";
    case ConfigError::kBadFrontend:
        return "frontend does not name this device's frontend directory";
    case ConfigError::kBadFrontendId:
        return "frontend-id does not match the directory's domid";
    }
    return "unknown config error";
}

const std::vector<std::string>& device_config_nodes() {
    static const std::vector<std::string> nodes{
        "params",
        "mode",
        "type",
        "frontend",
        "frontend-id",
        "config-sector-size",
        "config-max-ring-page-order",
        "config-max-indirect-segments",
        "config-feature-flush-cache",
        "config-feature-discard",
    };
    return nodes;
}

Result<DeviceConfig, ConfigFailure> parse_device_config(const std::map<std::string, std::string>& nodes,
                                                        pvkit_domid_t domid, std::uint32_t devid,
                                                        const DaemonCaps& caps) {
    auto fail = [](ConfigError e, std::string node) -> Result<DeviceConfig, ConfigFailure> {
        return Unexpected{ConfigFailure{e, std::move(node)}};
    };
    auto get = [&nodes](const char* name) -> const std::string* {
        auto it = nodes.find(name);
        return it == nodes.end() ? nullptr : &it->second;
    };
    DeviceConfig cfg;

    const std::string* params = get("params");
    if (params == nullptr)
        return fail(ConfigError::kMissingNode, "params");
    if (params->empty() || params->front() != '/')
        return fail(ConfigError::kBadParams, "params");
    cfg.params = *params;

    const std::string* mode = get("mode");
    if (mode == nullptr)
        return fail(ConfigError::kMissingNode, "mode");
    if (*mode != "r" && *mode != "w")
        return fail(ConfigError::kBadMode, "mode");
    cfg.read_only = *mode == "r";

    if (const std::string* type = get("type"); type != nullptr && *type != "raw")
        return fail(ConfigError::kBadType, "type");

    const std::string expected_frontend =
        "/local/domain/" + std::to_string(domid) + "/device/vbd/" + std::to_string(devid);
    const std::string* frontend = get("frontend");
    if (frontend == nullptr)
        return fail(ConfigError::kMissingNode, "frontend");
    // The toolstack always writes this exact path; anything else would make
    // us watch and read a directory that is not this device's.
    if (*frontend != expected_frontend)
        return fail(ConfigError::kBadFrontend, "frontend");
    cfg.frontend_path = *frontend;

    const std::string* frontend_id = get("frontend-id");
    if (frontend_id == nullptr)
        return fail(ConfigError::kMissingNode, "frontend-id");
    auto fid = parse_decimal(*frontend_id, PVKIT_DOMID_MAX);
    if (!fid || *fid != domid)
        return fail(ConfigError::kBadFrontendId, "frontend-id");
    cfg.frontend_id = domid;

    if (const std::string* v = get("config-sector-size")) {
        auto n = parse_decimal(*v, 4096);
        if (!n || (*n != 512 && *n != 4096))
            return fail(ConfigError::kBadSectorSize, "config-sector-size");
        cfg.sector_size = static_cast<std::uint32_t>(*n);
    }
    std::uint32_t order = PVKIT_RING_MAX_PAGE_ORDER;
    if (const std::string* v = get("config-max-ring-page-order")) {
        auto n = parse_decimal(*v, PVKIT_RING_MAX_PAGE_ORDER);
        if (!n)
            return fail(ConfigError::kBadRingOrder, "config-max-ring-page-order");
        order = static_cast<std::uint32_t>(*n);
    }
    cfg.max_ring_page_order = std::min(order, caps.max_ring_page_order);

    std::uint32_t indirect = PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS;
    if (const std::string* v = get("config-max-indirect-segments")) {
        auto n = parse_decimal(*v, PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS);
        if (!n)
            return fail(ConfigError::kBadIndirectSegments, "config-max-indirect-segments");
        indirect = static_cast<std::uint32_t>(*n);
    }
    cfg.max_indirect_segments = std::min(indirect, caps.max_indirect_segments);

    for (const char* name : {"config-feature-flush-cache", "config-feature-discard"}) {
        const std::string* v = get(name);
        if (v == nullptr)
            continue;
        auto f = parse_flag(*v);
        if (!f)
            return fail(ConfigError::kBadFlag, name);
        (std::string_view(name) == "config-feature-discard" ? cfg.feature_discard
                                                           : cfg.feature_flush) = *f;
    }
    return cfg;
}

} // namespace pvkit::blkback
