// Domain configuration: the JSON file `pvkit create` reads, checked into
// plain validated types. The schema is documented in docs/domain-config.md.
//
// Loading is a process edge (STYLE.md): it collects every problem in the
// file rather than stopping at the first, and each message names the file,
// the JSON key path and what was expected, for example
//
//   examples/x.json: disks[1].mode: expected "r" or "w", got "rw"
//
// Only values that passed every check reach the types below, so the store
// layout code and the daemons never see a half-checked config.
#pragma once

#include <pvkit/abi.h>
#include <pvkit/blkif.h>
#include <pvkit/ring.h>
#include <pvkit/start_info.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/toolstack/mac_address.hpp"

namespace pvkit::toolstack {

// Limits of the schema. They are part of the documented format.
inline constexpr std::size_t kNameMaxLength = 64;
inline constexpr std::uint32_t kMemoryMinMib = 4;
inline constexpr std::uint32_t kMemoryMaxMib = 65536;
inline constexpr std::uint32_t kVcpusMax = 64;
// The start-info page holds the command line NUL terminated.
inline constexpr std::size_t kCmdlineMaxBytes = PVKIT_START_INFO_CMDLINE_MAX - 1;
// blkif requests carry the devid in a 16-bit `handle`.
inline constexpr std::uint32_t kDevidMax = 0xFFFF;
// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
inline constexpr std::size_t kIfnameMaxLength = 15;
inline constexpr std::uint32_t kNicQueuesMax = 8;
// A pv-guest learns its devices from the start-info page, which has room
// for this many.
inline constexpr std::size_t kPvGuestDevicesMax = PVKIT_START_INFO_MAX_DEVICES;

enum class DomainType : std::uint8_t {
    kPvGuest,     // "pv-guest": a kernel booted by pvkit-vmm
    kHostProcess, // "host-process": a host process using libpvkit-front, no kernel
};
const char* to_string(DomainType type);

enum class DiskMode : std::uint8_t { kRead, kWrite };
const char* to_string(DiskMode mode); // "r" / "w", as in the store's `mode` node

enum class DiskFormat : std::uint8_t { kRaw };
const char* to_string(DiskFormat format);

struct DiskConfig {
    std::uint32_t devid = 0;         // the <devid> of the store paths, 0..kDevidMax
    std::optional<std::string> vdev; // "xvda".."xvdp" when the config named the disk that way
    std::filesystem::path path;      // absolute: image file or block device
    DiskMode mode = DiskMode::kWrite;
    pvkit_domid_t backend_domid = PVKIT_DOMID_HOST;
    DiskFormat format = DiskFormat::kRaw;
    std::uint32_t sector_size = PVKIT_BLKIF_SECTOR_SIZE; // 512 or 4096
    // Caps the backend's max-ring-page-order for this disk; when absent the
    // blkback option (or its default) applies.
    std::optional<std::uint32_t> max_ring_page_order;
    // "create_size_mb": when the image does not exist, `pvkit create` makes
    // it (a sparse file of this many MiB) before the backend opens it. An
    // existing image is used as it is, whatever its size.
    std::optional<std::uint32_t> create_size_mb;
};

// The largest image `create_size_mb` may ask for (1 TiB).
inline constexpr std::uint32_t kDiskCreateMaxMb = 1u << 20;

struct NicConfig {
    std::uint32_t devid = 0;
    MacAddress mac;
    bool mac_generated = false; // true when the config gave no mac
    // Bridge the backend adds the TAP device to; empty for none.
    std::string bridge;
    // TAP device the backend uses; empty means "vif<domid>.<devid>".
    std::string tap;
    pvkit_domid_t backend_domid = PVKIT_DOMID_HOST;
    std::uint32_t queues = 1; // 1..kNicQueuesMax
};

// Settings for pvkit-blkback, applied to every disk of the domain. The
// defaults are what the backend offers at most.
struct BlkbackOptions {
    std::uint32_t max_indirect_segments = PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS; // 0 disables indirect
    std::uint32_t max_ring_page_order = PVKIT_RING_MAX_PAGE_ORDER;
    bool feature_flush_cache = true;
    bool feature_discard = true;
};

// Settings for pvkit-netback, applied to every NIC of the domain.
struct NetbackOptions {
    bool feature_sg = true;
    bool feature_gso_tcpv4 = true;
    bool feature_gso_tcpv6 = true;
    bool feature_csum_offload = true;
};

struct BackendOptions {
    BlkbackOptions blkback;
    NetbackOptions netback;
};

struct DomainConfig {
    std::string source; // the file it was read from, as given; for messages
    std::string name;
    DomainType type = DomainType::kPvGuest;
    // The pv-guest keys; 0 or empty for a host-process domain, which has
    // no VM of its own.
    std::uint32_t memory_mib = 0;
    std::uint32_t vcpus = 0;
    std::filesystem::path kernel; // absolute
    std::string cmdline;
    std::vector<DiskConfig> disks;
    std::vector<NicConfig> nics;
    BackendOptions backend_options;
};

struct LoadOptions {
    // Require `kernel` to name an existing regular file. Turned off for
    // configs whose kernel is built later (tests, examples).
    bool check_kernel = true;
    // Require every disk `path` to exist as a regular file or block device.
    bool check_disk_paths = true;
};

// The outcome of parsing: a value, or every problem found. Each error is
// one line "<source>: <key path>: <problem>" (or "<source>: line L,
// column C: <problem>" for JSON syntax errors).
template <class T> struct Parsed {
    std::optional<T> value; // set exactly when errors is empty
    std::vector<std::string> errors;

    [[nodiscard]] bool ok() const { return value.has_value(); }
};

// Thrown by load_domain_config; what() is every error, one per line.
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<std::string> errors);
    [[nodiscard]] const std::vector<std::string>& errors() const { return m_errors; }

private:
    std::vector<std::string> m_errors;
};

// Parses a domain config from JSON text. `source` names the text in
// messages; relative kernel and disk paths resolve against its directory
// (the current directory when it has none).
Parsed<DomainConfig> parse_domain_config(std::string_view json_text, std::string_view source,
                                         const LoadOptions& options = {});

// Reads and parses `file`. Throws ConfigError listing every problem
// (including "cannot read file").
DomainConfig load_domain_config(const std::filesystem::path& file, const LoadOptions& options = {});

// One device for `pvkit block-attach` / `network-attach`: the JSON object
// has the same keys as an element of "disks" / "nics". Key paths in
// messages are relative to that object. A NIC without a mac gets one
// generated from `domain_name`.
Parsed<DiskConfig> parse_disk_config(std::string_view json_text, std::string_view source,
                                     const LoadOptions& options = {});
Parsed<NicConfig> parse_nic_config(std::string_view json_text, std::string_view source,
                                   std::string_view domain_name);

// Maps a Xen disk name "xvda".."xvdp" to its devid, (202 << 8) | (n << 4)
// as in Xen's libxl; nullopt for anything else (partitions and disks past
// the 16th are not supported).
std::optional<std::uint32_t> vdev_to_devid(std::string_view vdev);

} // namespace pvkit::toolstack
