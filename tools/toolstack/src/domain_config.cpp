#include "pvkit/toolstack/domain_config.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <system_error>
#include <utility>

#include "config_reader.hpp"

namespace pvkit::toolstack {

using detail::child_path;
using detail::Diagnostics;
using detail::index_path;
using detail::Json;
using detail::member;

const char* to_string(DomainType type) {
    switch (type) {
    case DomainType::kPvGuest:
        return "pv-guest";
    case DomainType::kHostProcess:
        return "host-process";
    }
    return "unknown";
}

const char* to_string(DiskMode mode) {
    switch (mode) {
    case DiskMode::kRead:
        return "r";
    case DiskMode::kWrite:
        return "w";
    }
    return "?";
}

const char* to_string(DiskFormat format) {
    switch (format) {
    case DiskFormat::kRaw:
        return "raw";
    }
    return "unknown";
}

namespace {

std::string join_lines(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) {
        if (!text.empty())
            text += '\n';
        text += line;
    }
    return text;
}

// The logical sector sizes a disk may have.
constexpr std::int64_t kSectorSize512 = PVKIT_BLKIF_SECTOR_SIZE;
constexpr std::int64_t kSectorSize4k = 4096;

// Settings every parse of one source shares.
struct Context {
    Diagnostics& diag;
    std::filesystem::path base_dir; // relative paths in the config resolve here
    LoadOptions options;
};

std::filesystem::path resolve(const Context& ctx, const std::string& text) {
    std::filesystem::path path(text);
    if (path.is_relative())
        path = ctx.base_dir / path;
    // Backends and the VMM run with other working directories, so every
    // path leaves the toolstack absolute.
    std::error_code ec;
    std::filesystem::path absolute = std::filesystem::absolute(path, ec);
    return (ec ? path : absolute).lexically_normal();
}

enum class FileKind : std::uint8_t {
    kKernel, // a regular file
    kDisk,   // a regular file or a block device
};

// Reports `path` (resolved from the config's `value`) not existing or not
// being a file of `kind`.
bool check_file(const Context& ctx, std::string_view key_path, const Json& value,
                const std::filesystem::path& path, FileKind kind) {
    const std::string expected = kind == FileKind::kKernel
                                     ? "expected an existing regular file, got "
                                     : "expected an existing disk image or block device, got ";
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) {
        if (!ec)
            ec = std::make_error_code(std::errc::no_such_file_or_directory);
        ctx.diag.error(key_path, expected + detail::describe(value) + " (" + path.string() + ": " +
                                     ec.message() + ")");
        return false;
    }
    const bool accepted = std::filesystem::is_regular_file(status) ||
                          (kind == FileKind::kDisk && std::filesystem::is_block_file(status));
    if (!accepted) {
        ctx.diag.error(key_path, expected + detail::describe(value) + " (" + path.string() +
                                     (kind == FileKind::kKernel
                                          ? " is not a regular file)"
                                          : " is neither a regular file nor a block device)"));
        return false;
    }
    return true;
}

bool valid_domain_name(std::string_view name) {
    if (name.empty() || name.size() > kNameMaxLength)
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
    });
}

// Linux's dev_valid_name(): 1..IFNAMSIZ-1 bytes, not "." or "..", no '/',
// ':' or white space. Control characters are refused as well.
bool valid_ifname(std::string_view name) {
    if (name.empty() || name.size() > kIfnameMaxLength || name == "." || name == "..")
        return false;
    return std::none_of(name.begin(), name.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return c == '/' || c == ':' || u <= 0x20u || u == 0x7fu;
    });
}

std::optional<std::uint32_t> read_u32(const Context& ctx, const Json& value, std::string_view path,
                                      std::uint32_t min, std::uint32_t max,
                                      std::string_view unit = {}) {
    auto number = detail::read_integer(ctx.diag, value, path, min, max, unit);
    if (!number)
        return std::nullopt;
    return static_cast<std::uint32_t>(*number);
}

std::optional<pvkit_domid_t> read_backend_domid(const Context& ctx, const Json& value,
                                                std::string_view path) {
    auto number = read_u32(ctx, value, path, PVKIT_DOMID_HOST, PVKIT_DOMID_MAX, "a domid");
    if (!number)
        return std::nullopt;
    return static_cast<pvkit_domid_t>(*number);
}

std::optional<std::string> read_ifname(const Context& ctx, const Json& value,
                                       std::string_view path) {
    static constexpr std::string_view kExpected =
        "a network interface name of 1 to 15 characters without '/', ':' or spaces";
    auto name = detail::read_string(ctx.diag, value, path, kExpected);
    if (!name)
        return std::nullopt;
    if (!valid_ifname(*name)) {
        ctx.diag.error(path, std::string("expected ") + std::string(kExpected) + ", got " +
                                 detail::describe(value));
        return std::nullopt;
    }
    return name;
}

// Sets disk.devid from "vdev" or "devid", exactly one of which is given.
void read_disk_id(const Context& ctx, const Json& object, const std::string& path,
                  DiskConfig& disk) {
    const Json* vdev = member(object, "vdev");
    const Json* devid = member(object, "devid");
    if ((vdev == nullptr) == (devid == nullptr)) {
        ctx.diag.error(path, std::string(R"(expected one of the keys "vdev" or "devid", got )") +
                                 (vdev != nullptr ? "both" : "neither"));
        return;
    }
    if (devid != nullptr) {
        disk.devid = read_u32(ctx, *devid, child_path(path, "devid"), 0, kDevidMax).value_or(0);
        return;
    }
    const std::string key_path = child_path(path, "vdev");
    static constexpr std::string_view kExpected = R"(a Xen disk name from "xvda" to "xvdp")";
    auto name = detail::read_string(ctx.diag, *vdev, key_path, kExpected);
    if (!name)
        return;
    auto number = vdev_to_devid(*name);
    if (!number) {
        ctx.diag.error(key_path,
                       "expected " + std::string(kExpected) + ", got " + detail::describe(*vdev));
        return;
    }
    disk.devid = *number;
    disk.vdev = std::move(name);
}

void read_disk_path(const Context& ctx, const Json& object, const std::string& path,
                    DiskConfig& disk) {
    static constexpr std::string_view kExpected = "a path to a disk image or block device";
    const std::string key_path = child_path(path, "path");
    const Json* value = member(object, "path");
    if (value == nullptr) {
        detail::report_missing(ctx.diag, key_path, kExpected);
        return;
    }
    auto text = detail::read_string(ctx.diag, *value, key_path, kExpected);
    if (!text)
        return;
    if (text->empty()) {
        ctx.diag.error(key_path, "expected " + std::string(kExpected) + R"(, got "")");
        return;
    }
    disk.path = resolve(ctx, *text);
    // A missing image that the config asks to create is not an error here:
    // `pvkit create` makes it (create_disk_images).
    std::error_code ec;
    const bool will_create = disk.create_size_mb && !std::filesystem::exists(disk.path, ec);
    if (ctx.options.check_disk_paths && !will_create)
        check_file(ctx, key_path, *value, disk.path, FileKind::kDisk);
}

std::optional<DiskConfig> parse_disk(const Context& ctx, const Json& object,
                                     const std::string& path) {
    const std::size_t errors_before = ctx.diag.count();
    if (!detail::expect_object(ctx.diag, object, path))
        return std::nullopt;
    detail::reject_unknown_keys(ctx.diag, object, path,
                                {"vdev", "devid", "path", "mode", "backend", "format",
                                 "sector_size", "max_ring_page_order", "create_size_mb"});
    DiskConfig disk;
    if (const Json* value = member(object, "create_size_mb"))
        disk.create_size_mb =
            read_u32(ctx, *value, child_path(path, "create_size_mb"), 1, kDiskCreateMaxMb);
    read_disk_id(ctx, object, path, disk);
    read_disk_path(ctx, object, path, disk);

    if (const Json* value = member(object, "mode")) {
        auto choice = detail::read_choice(ctx.diag, *value, child_path(path, "mode"), {"r", "w"});
        if (choice)
            disk.mode = *choice == 0 ? DiskMode::kRead : DiskMode::kWrite;
    } else {
        detail::report_missing(ctx.diag, child_path(path, "mode"), R"("r" or "w")");
    }

    if (const Json* value = member(object, "backend")) {
        disk.backend_domid = read_backend_domid(ctx, *value, child_path(path, "backend"))
                                 .value_or(disk.backend_domid);
    }

    // "raw" is the only format so far; reading it still rejects the others.
    if (const Json* value = member(object, "format"))
        (void)detail::read_choice(ctx.diag, *value, child_path(path, "format"), {"raw"});

    if (const Json* value = member(object, "sector_size")) {
        std::optional<std::int64_t> size;
        if (value->is_number_integer())
            size = value->get<std::int64_t>();
        if (size && (*size == kSectorSize512 || *size == kSectorSize4k)) {
            disk.sector_size = static_cast<std::uint32_t>(*size);
        } else {
            ctx.diag.error(child_path(path, "sector_size"),
                           "expected 512 or 4096, got " + detail::describe(*value));
        }
    }

    if (const Json* value = member(object, "max_ring_page_order")) {
        disk.max_ring_page_order = read_u32(ctx, *value, child_path(path, "max_ring_page_order"), 0,
                                            PVKIT_RING_MAX_PAGE_ORDER);
    }

    if (ctx.diag.count() != errors_before)
        return std::nullopt;
    return disk;
}

void read_nic_mac(const Context& ctx, const Json& value, const std::string& key_path,
                  NicConfig& nic) {
    auto text =
        detail::read_string(ctx.diag, value, key_path, R"(a MAC address like "02:00:00:00:00:01")");
    if (!text)
        return;
    auto mac = MacAddress::parse(*text);
    if (!mac) {
        ctx.diag.error(key_path,
                       R"(expected a MAC address of six hex pairs like "02:00:00:00:00:01", got )" +
                           detail::describe(value));
    } else if (mac->is_multicast()) {
        ctx.diag.error(key_path, "expected a unicast MAC address (lowest bit of the first octet "
                                 "clear), got " +
                                     detail::describe(value));
    } else if (mac->is_zero()) {
        ctx.diag.error(key_path, "expected a non-zero MAC address, got " + detail::describe(value));
    } else {
        nic.mac = *mac;
    }
}

std::optional<NicConfig> parse_nic(const Context& ctx, const Json& object, const std::string& path,
                                   std::string_view domain_name) {
    const std::size_t errors_before = ctx.diag.count();
    if (!detail::expect_object(ctx.diag, object, path))
        return std::nullopt;
    detail::reject_unknown_keys(ctx.diag, object, path,
                                {"devid", "mac", "bridge", "tap", "backend", "queues"});
    NicConfig nic;

    if (const Json* value = member(object, "devid")) {
        nic.devid = read_u32(ctx, *value, child_path(path, "devid"), 0, kDevidMax).value_or(0);
    } else {
        detail::report_missing(ctx.diag, child_path(path, "devid"),
                               "an integer from 0 to " + std::to_string(kDevidMax));
    }

    if (const Json* value = member(object, "mac")) {
        read_nic_mac(ctx, *value, child_path(path, "mac"), nic);
    } else {
        nic.mac = MacAddress::generate(domain_name, nic.devid);
        nic.mac_generated = true;
    }

    if (const Json* value = member(object, "bridge"))
        nic.bridge = read_ifname(ctx, *value, child_path(path, "bridge")).value_or("");
    if (const Json* value = member(object, "tap"))
        nic.tap = read_ifname(ctx, *value, child_path(path, "tap")).value_or("");

    if (const Json* value = member(object, "backend")) {
        nic.backend_domid = read_backend_domid(ctx, *value, child_path(path, "backend"))
                                .value_or(nic.backend_domid);
    }

    if (const Json* value = member(object, "queues"))
        nic.queues =
            read_u32(ctx, *value, child_path(path, "queues"), 1, kNicQueuesMax).value_or(1);

    if (ctx.diag.count() != errors_before)
        return std::nullopt;
    return nic;
}

// Reads an optional boolean member into `target`.
void read_flag(const Context& ctx, const Json& object, const std::string& path,
               std::string_view key, bool& target) {
    if (const Json* value = member(object, key))
        target = detail::read_bool(ctx.diag, *value, child_path(path, key)).value_or(target);
}

void read_blkback_options(const Context& ctx, const Json& object, const std::string& path,
                          BlkbackOptions& options) {
    if (!detail::expect_object(ctx.diag, object, path))
        return;
    detail::reject_unknown_keys(
        ctx.diag, object, path,
        {"max_indirect_segments", "max_ring_page_order", "feature_flush_cache", "feature_discard"});
    if (const Json* value = member(object, "max_indirect_segments")) {
        options.max_indirect_segments =
            read_u32(ctx, *value, child_path(path, "max_indirect_segments"), 0,
                     PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS)
                .value_or(options.max_indirect_segments);
    }
    if (const Json* value = member(object, "max_ring_page_order")) {
        options.max_ring_page_order = read_u32(ctx, *value, child_path(path, "max_ring_page_order"),
                                               0, PVKIT_RING_MAX_PAGE_ORDER)
                                          .value_or(options.max_ring_page_order);
    }
    read_flag(ctx, object, path, "feature_flush_cache", options.feature_flush_cache);
    read_flag(ctx, object, path, "feature_discard", options.feature_discard);
}

void read_netback_options(const Context& ctx, const Json& object, const std::string& path,
                          NetbackOptions& options) {
    if (!detail::expect_object(ctx.diag, object, path))
        return;
    detail::reject_unknown_keys(
        ctx.diag, object, path,
        {"feature_sg", "feature_gso_tcpv4", "feature_gso_tcpv6", "feature_csum_offload"});
    read_flag(ctx, object, path, "feature_sg", options.feature_sg);
    read_flag(ctx, object, path, "feature_gso_tcpv4", options.feature_gso_tcpv4);
    read_flag(ctx, object, path, "feature_gso_tcpv6", options.feature_gso_tcpv6);
    read_flag(ctx, object, path, "feature_csum_offload", options.feature_csum_offload);
}

void read_backend_options(const Context& ctx, const Json& object, const std::string& path,
                          BackendOptions& options) {
    if (!detail::expect_object(ctx.diag, object, path))
        return;
    detail::reject_unknown_keys(ctx.diag, object, path, {"blkback", "netback"});
    if (const Json* value = member(object, "blkback"))
        read_blkback_options(ctx, *value, child_path(path, "blkback"), options.blkback);
    if (const Json* value = member(object, "netback"))
        read_netback_options(ctx, *value, child_path(path, "netback"), options.netback);
}

// Reports every devid used by two disks.
void check_disk_duplicates(const Context& ctx,
                           const std::vector<std::pair<std::size_t, DiskConfig>>& disks) {
    std::map<std::uint32_t, std::size_t> first_use;
    for (const auto& [index, disk] : disks) {
        auto [it, inserted] = first_use.emplace(disk.devid, index);
        if (inserted)
            continue;
        const std::string element = index_path("disks", index);
        const std::string other = index_path("disks", it->second);
        if (disk.vdev) {
            ctx.diag.error(child_path(element, "vdev"),
                           "expected a disk not used by another disk, got \"" + *disk.vdev +
                               "\" (devid " + std::to_string(disk.devid) + ", already used by " +
                               other + ")");
        } else {
            ctx.diag.error(child_path(element, "devid"),
                           "expected a devid not used by another disk, got " +
                               std::to_string(disk.devid) + " (already used by " + other + ")");
        }
    }
}

// Reports every devid, MAC address and TAP name used by two NICs.
void check_nic_duplicates(const Context& ctx,
                          const std::vector<std::pair<std::size_t, NicConfig>>& nics) {
    std::map<std::uint32_t, std::size_t> devids;
    std::map<std::string, std::size_t> macs;
    std::map<std::string, std::size_t> taps;
    for (const auto& [index, nic] : nics) {
        const std::string element = index_path("nics", index);
        if (auto [it, inserted] = devids.emplace(nic.devid, index); !inserted) {
            ctx.diag.error(child_path(element, "devid"),
                           "expected a devid not used by another nic, got " +
                               std::to_string(nic.devid) + " (already used by " +
                               index_path("nics", it->second) + ")");
        }
        const std::string mac = nic.mac.to_string();
        if (auto [it, inserted] = macs.emplace(mac, index); !inserted) {
            ctx.diag.error(child_path(element, "mac"),
                           "expected a MAC address not used by another nic, got \"" + mac + "\"" +
                               (nic.mac_generated ? " (generated)" : "") + " (already used by " +
                               index_path("nics", it->second) + ")");
        }
        if (nic.tap.empty())
            continue;
        if (auto [it, inserted] = taps.emplace(nic.tap, index); !inserted) {
            ctx.diag.error(child_path(element, "tap"),
                           "expected a TAP name not used by another nic, got \"" + nic.tap +
                               "\" (already used by " + index_path("nics", it->second) + ")");
        }
    }
}

void read_name(const Context& ctx, const Json& root, DomainConfig& config) {
    static constexpr std::string_view kExpected =
        "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -";
    const Json* value = member(root, "name");
    if (value == nullptr) {
        detail::report_missing(ctx.diag, "name", kExpected);
        return;
    }
    auto name = detail::read_string(ctx.diag, *value, "name", kExpected);
    if (name && !valid_domain_name(*name)) {
        ctx.diag.error("name",
                       "expected " + std::string(kExpected) + ", got " + detail::describe(*value));
        return;
    }
    if (name)
        config.name = std::move(*name);
}

std::optional<DomainType> read_type(const Context& ctx, const Json& root) {
    const Json* value = member(root, "type");
    if (value == nullptr) {
        detail::report_missing(ctx.diag, "type", R"("pv-guest" or "host-process")");
        return std::nullopt;
    }
    auto choice = detail::read_choice(ctx.diag, *value, "type", {"pv-guest", "host-process"});
    if (!choice)
        return std::nullopt;
    return *choice == 0 ? DomainType::kPvGuest : DomainType::kHostProcess;
}

void read_kernel(const Context& ctx, const Json& value, DomainConfig& config) {
    auto text = detail::read_string(ctx.diag, value, "kernel", "a path to the kernel");
    if (!text)
        return;
    if (text->empty()) {
        ctx.diag.error("kernel", R"(expected a path to the kernel, got "")");
        return;
    }
    config.kernel = resolve(ctx, *text);
    if (ctx.options.check_kernel)
        check_file(ctx, "kernel", value, config.kernel, FileKind::kKernel);
}

void read_cmdline(const Context& ctx, const Json& value, DomainConfig& config) {
    auto text = detail::read_string(ctx.diag, value, "cmdline", "a string");
    if (!text)
        return;
    if (text->size() > kCmdlineMaxBytes) {
        ctx.diag.error("cmdline", "expected at most " + std::to_string(kCmdlineMaxBytes) +
                                      " bytes (PVKIT_START_INFO_CMDLINE_MAX - 1), got " +
                                      std::to_string(text->size()) + " bytes");
        return;
    }
    // The guest reads the command line as a C string.
    if (const auto nul = text->find('\0'); nul != std::string::npos) {
        ctx.diag.error("cmdline",
                       "expected no NUL characters, got one at byte " + std::to_string(nul));
        return;
    }
    config.cmdline = std::move(*text);
}

// memory, vcpus, kernel and cmdline: a pv-guest's own keys. `required` is
// false when the type is unknown (already reported), so that a bad type
// does not also produce "missing" errors.
void read_guest_keys(const Context& ctx, const Json& root, bool required, DomainConfig& config) {
    if (const Json* value = member(root, "memory")) {
        config.memory_mib =
            read_u32(ctx, *value, "memory", kMemoryMinMib, kMemoryMaxMib, "MiB").value_or(0);
    } else if (required) {
        detail::report_missing(ctx.diag, "memory",
                               "an integer from " + std::to_string(kMemoryMinMib) + " to " +
                                   std::to_string(kMemoryMaxMib) + " (MiB)");
    }

    config.vcpus = 1;
    if (const Json* value = member(root, "vcpus"))
        config.vcpus = read_u32(ctx, *value, "vcpus", 1, kVcpusMax).value_or(1);

    if (const Json* value = member(root, "kernel"))
        read_kernel(ctx, *value, config);
    else if (required)
        detail::report_missing(ctx.diag, "kernel", "a path to the kernel");

    if (const Json* value = member(root, "cmdline"))
        read_cmdline(ctx, *value, config);
}

// A host process has no kernel, memory or vCPUs of its own: a value there
// is a mistake (most likely the wrong type), not something to ignore.
void reject_guest_keys(const Context& ctx, const Json& root) {
    for (std::string_view key : {"memory", "vcpus", "kernel", "cmdline"}) {
        if (member(root, key) != nullptr) {
            ctx.diag.error(key, R"(unexpected key for type "host-process" (only a "pv-guest" )"
                                "has a kernel, memory, vcpus and a cmdline)");
        }
    }
}

void read_disks(const Context& ctx, const Json& value, DomainConfig& config) {
    if (!value.is_array()) {
        ctx.diag.error("disks",
                       "expected an array of disk objects, got " + detail::describe(value));
        return;
    }
    std::vector<std::pair<std::size_t, DiskConfig>> disks;
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (auto disk = parse_disk(ctx, value[i], index_path("disks", i)))
            disks.emplace_back(i, std::move(*disk));
    }
    check_disk_duplicates(ctx, disks);
    for (auto& entry : disks)
        config.disks.push_back(std::move(entry.second));
}

void read_nics(const Context& ctx, const Json& value, DomainConfig& config) {
    if (!value.is_array()) {
        ctx.diag.error("nics", "expected an array of nic objects, got " + detail::describe(value));
        return;
    }
    std::vector<std::pair<std::size_t, NicConfig>> nics;
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (auto nic = parse_nic(ctx, value[i], index_path("nics", i), config.name))
            nics.emplace_back(i, std::move(*nic));
    }
    check_nic_duplicates(ctx, nics);
    for (auto& entry : nics)
        config.nics.push_back(std::move(entry.second));
}

// The start-info page lists a pv-guest's devices, and it has a fixed number
// of slots.
void check_device_count(const Context& ctx, const Json& root) {
    const auto length = [&](std::string_view key) -> std::size_t {
        const Json* value = member(root, key);
        return value != nullptr && value->is_array() ? value->size() : 0;
    };
    const std::size_t count = length("disks") + length("nics");
    if (count <= kPvGuestDevicesMax)
        return;
    ctx.diag.error(length("nics") > 0 ? "nics" : "disks",
                   "expected at most " + std::to_string(kPvGuestDevicesMax) +
                       R"( disks and nics together for a "pv-guest" )"
                       "(PVKIT_START_INFO_MAX_DEVICES), got " +
                       std::to_string(count));
}

std::optional<DomainConfig> parse_domain(const Context& ctx, const Json& root) {
    if (!detail::expect_object(ctx.diag, root, ""))
        return std::nullopt;
    detail::reject_unknown_keys(ctx.diag, root, "",
                                {"name", "type", "memory", "vcpus", "kernel", "cmdline", "disks",
                                 "nics", "backend_options"});
    DomainConfig config;
    config.source = ctx.diag.source();
    read_name(ctx, root, config);
    const std::optional<DomainType> type = read_type(ctx, root);
    config.type = type.value_or(DomainType::kPvGuest);
    if (type == DomainType::kHostProcess)
        reject_guest_keys(ctx, root);
    else
        read_guest_keys(ctx, root, type.has_value(), config);
    if (const Json* value = member(root, "disks"))
        read_disks(ctx, *value, config);
    if (const Json* value = member(root, "nics"))
        read_nics(ctx, *value, config);
    if (type == DomainType::kPvGuest)
        check_device_count(ctx, root);
    if (const Json* value = member(root, "backend_options"))
        read_backend_options(ctx, *value, "backend_options", config.backend_options);

    if (ctx.diag.has_errors())
        return std::nullopt;
    return config;
}

template <class T, class ParseFn>
Parsed<T> parse_source(std::string_view json_text, std::string_view source,
                       const LoadOptions& options, ParseFn parse) {
    Diagnostics diag{std::string(source)};
    Context ctx{diag, std::filesystem::path(source).parent_path(), options};
    Parsed<T> result;
    if (json_text.size() > detail::kConfigMaxBytes) {
        diag.error_file("expected a config of at most " + std::to_string(detail::kConfigMaxBytes) +
                        " bytes, got " + std::to_string(json_text.size()));
    } else if (auto document = detail::parse_json_strict(json_text, diag)) {
        auto value = parse(ctx, *document);
        if (value && !diag.has_errors())
            result.value = std::move(*value);
    }
    result.errors = diag.take();
    if (!result.errors.empty())
        result.value.reset();
    return result;
}

} // namespace

ConfigError::ConfigError(std::vector<std::string> errors)
    : std::runtime_error(join_lines(errors)), m_errors(std::move(errors)) {}

std::optional<std::uint32_t> vdev_to_devid(std::string_view vdev) {
    // Xen's encoding for the first 16 disks: major 202, disk number in bits
    // 4..7, partition (always 0 here) in bits 0..3.
    constexpr std::uint32_t kXvdMajor = 202;
    constexpr std::uint32_t kXvdDisks = 16;
    if (vdev.size() != 4 || vdev.substr(0, 3) != "xvd")
        return std::nullopt;
    const char letter = vdev[3];
    if (letter < 'a' || static_cast<std::uint32_t>(letter - 'a') >= kXvdDisks)
        return std::nullopt;
    return (kXvdMajor << 8) | (static_cast<std::uint32_t>(letter - 'a') << 4);
}

Parsed<DomainConfig> parse_domain_config(std::string_view json_text, std::string_view source,
                                         const LoadOptions& options) {
    return parse_source<DomainConfig>(json_text, source, options, parse_domain);
}

Parsed<DiskConfig> parse_disk_config(std::string_view json_text, std::string_view source,
                                     const LoadOptions& options) {
    return parse_source<DiskConfig>(
        json_text, source, options,
        [](const Context& ctx, const Json& root) { return parse_disk(ctx, root, ""); });
}

Parsed<NicConfig> parse_nic_config(std::string_view json_text, std::string_view source,
                                   std::string_view domain_name) {
    return parse_source<NicConfig>(json_text, source, LoadOptions{},
                                   [domain_name](const Context& ctx, const Json& root) {
                                       return parse_nic(ctx, root, "", domain_name);
                                   });
}

DomainConfig load_domain_config(const std::filesystem::path& file, const LoadOptions& options) {
    const std::string source = file.string();
    // A directory opens fine as a stream and then reads as empty, which
    // would be reported as a JSON error; say what it is instead.
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec))
        throw ConfigError({source + ": cannot read the file (" +
                           std::make_error_code(std::errc::is_a_directory).message() + ")"});
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        // errno from the failed open is the only reason iostreams give.
        const int err = errno;
        throw ConfigError(
            {source + ": cannot read the file (" + std::generic_category().message(err) + ")"});
    }
    std::string text;
    // Read one byte past the cap so an oversized file is reported, not cut.
    text.resize(detail::kConfigMaxBytes + 1);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad())
        throw ConfigError({source + ": cannot read the file"});
    text.resize(static_cast<std::size_t>(in.gcount()));

    auto parsed = parse_domain_config(text, source, options);
    if (!parsed.ok())
        throw ConfigError(std::move(parsed.errors));
    return std::move(*parsed.value);
}

} // namespace pvkit::toolstack
