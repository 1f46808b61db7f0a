// What the toolstack wrote for one vbd, parsed strictly.
//
// The backend directory is written by domain 0 (the toolstack), so its
// values are not hostile, but they are still parsed with the same strict
// rules as a peer's (docs/handshake.md, "Number format"): a typo in a
// config must fail that one device with a message naming the node, never
// be half-understood.
#pragma once

#include <pvkit/abi.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/transport/result.hpp"

namespace pvkit::blkback {

// Plain ASCII decimal: no sign, no leading zeros (except "0"), no spaces,
// at most `max`. nullopt for anything else.
[[nodiscard]] std::optional<std::uint64_t> parse_decimal(std::string_view text, std::uint64_t max);
// "0" or "1".
[[nodiscard]] std::optional<bool> parse_flag(std::string_view text);

enum class ConfigError : std::uint8_t {
    kMissingNode, // a required node (params, mode, frontend, frontend-id) is absent
    kBadParams,   // not an absolute path
    kBadMode,     // not "r" or "w"
    kBadType,     // not "raw"
    kBadSectorSize,
    kBadRingOrder,
    kBadIndirectSegments,
    kBadFlag,        // a config-feature-* that is not 0 or 1
    kBadFrontend,    // frontend is not this device's frontend directory
    kBadFrontendId,  // frontend-id is not this directory's domid
};
const char* to_string(ConfigError e);

struct ConfigFailure {
    ConfigError error = ConfigError::kMissingNode;
    std::string node; // the offending node, for the log line and the error node
};

// The device as the toolstack configured it. Limits are already capped by
// the protocol's maxima and by the daemon's own options.
struct DeviceConfig {
    std::string params; // image path
    bool read_only = false;
    std::uint32_t sector_size = 512;
    std::uint32_t max_ring_page_order = 0;
    std::uint32_t max_indirect_segments = 0;
    bool feature_flush = true;
    bool feature_discard = true;
    std::string frontend_path;
    pvkit_domid_t frontend_id = 0;
};

// Daemon-wide caps (command-line options) applied on top of config-*.
struct DaemonCaps {
    std::uint32_t max_ring_page_order = 4;
    std::uint32_t max_indirect_segments = 256;
};

// `nodes` maps node names of the backend directory to their values (absent
// nodes are simply missing). Missing config-* nodes take the toolstack's
// defaults (512, 4, 256, 1, 1); missing params, mode, frontend or
// frontend-id are errors.
[[nodiscard]] Result<DeviceConfig, ConfigFailure>
parse_device_config(const std::map<std::string, std::string>& nodes, pvkit_domid_t domid,
                    std::uint32_t devid, const DaemonCaps& caps);

// The nodes parse_device_config looks at.
[[nodiscard]] const std::vector<std::string>& device_config_nodes();

} // namespace pvkit::blkback
