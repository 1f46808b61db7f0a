#include "pvkit/toolstack/store_layout.hpp"

#include <set>
#include <utility>
#include <vector>

#include "pvkit/toolstack/xenbus_state.hpp"

namespace pvkit::toolstack {

const char* to_string(DeviceKind kind) {
    switch (kind) {
    case DeviceKind::kVbd:
        return "vbd";
    case DeviceKind::kVif:
        return "vif";
    }
    return "unknown";
}

const char* to_string(LayoutError error) {
    switch (error) {
    case LayoutError::kInvalidDomid:
        return "domid is not in [1, PVKIT_DOMID_MAX]";
    case LayoutError::kInvalidBackendDomid:
        return "backend domid is above PVKIT_DOMID_MAX";
    case LayoutError::kBackendIsFrontend:
        return "a device's backend domain is the domain itself";
    case LayoutError::kInvalidDevid:
        return "devid is out of range";
    }
    return "unknown layout error";
}

namespace {

std::string perm(char access, pvkit_domid_t domid) {
    return access + std::to_string(domid);
}

// Builds an operation list; every node gets explicit permissions.
class OpList {
public:
    void mkdir(std::string path, std::vector<std::string> perms) {
        // Parent directories are shared between devices; one mkdir each
        // is enough.
        if (!m_dirs.insert(path).second)
            return;
        m_ops.push_back({StoreOp::Kind::kMkdir, std::move(path), {}, std::move(perms)});
    }
    void write(std::string path, std::string value, std::vector<std::string> perms) {
        m_ops.push_back(
            {StoreOp::Kind::kWrite, std::move(path), std::move(value), std::move(perms)});
    }
    void append(std::vector<StoreOp> ops) {
        for (auto& op : ops) {
            if (op.kind == StoreOp::Kind::kMkdir)
                mkdir(std::move(op.path), std::move(op.perms));
            else
                m_ops.push_back(std::move(op));
        }
    }
    std::vector<StoreOp> take() { return std::move(m_ops); }

private:
    std::vector<StoreOp> m_ops;
    std::set<std::string> m_dirs;
};

bool valid_domid(pvkit_domid_t domid) {
    return domid >= 1 && domid <= PVKIT_DOMID_MAX;
}

std::optional<LayoutError> check_device(pvkit_domid_t domid, const DeviceRef& device) {
    if (!valid_domid(domid))
        return LayoutError::kInvalidDomid;
    if (device.backend_domid > PVKIT_DOMID_MAX)
        return LayoutError::kInvalidBackendDomid;
    if (device.backend_domid == domid)
        return LayoutError::kBackendIsFrontend;
    if (device.devid > kDevidMax)
        return LayoutError::kInvalidDevid;
    return std::nullopt;
}

const char* flag(bool on) {
    return on ? "1" : "0";
}

// The directories above a device's frontend and backend directories.
void device_parents(OpList& ops, pvkit_domid_t domid, const DeviceRef& device) {
    const pvkit_domid_t back = device.backend_domid;
    const std::string kind = to_string(device.kind);
    // The backend domain's backend tree is its own; each frontend domain
    // may read the part that is about it.
    ops.mkdir(domain_path(back) + "/backend", {perm_none(back)});
    ops.mkdir(domain_path(back) + "/backend/" + kind, {perm_none(back)});
    ops.mkdir(domain_path(back) + "/backend/" + kind + "/" + std::to_string(domid),
              {perm_none(back), perm_read(domid)});
    ops.mkdir(domain_path(domid) + "/device", {perm_none(PVKIT_DOMID_HOST), perm_read(domid)});
    ops.mkdir(domain_path(domid) + "/device/" + kind,
              {perm_none(PVKIT_DOMID_HOST), perm_read(domid)});
}

// Writes one device: backend directory first, so a frontend that sees its
// device always finds the backend it names; `state` last in each
// directory, because peers act on state and read the rest then.
void device_dirs(OpList& ops, pvkit_domid_t domid, const DeviceRef& device,
                 const std::vector<std::pair<std::string, std::string>>& backend_nodes,
                 const std::vector<std::pair<std::string, std::string>>& frontend_nodes) {
    const pvkit_domid_t back = device.backend_domid;
    const std::string back_dir = backend_path(back, domid, device.kind, device.devid);
    const std::string front_dir = frontend_path(domid, device.kind, device.devid);
    const std::string initialising = format_xenbus_state(XenbusState::kInitialising);

    // Xen's convention: each end owns its directory and the other end may
    // read it; nobody else may even read.
    const std::vector<std::string> back_perms{perm_none(back), perm_read(domid)};
    const std::vector<std::string> front_perms{perm_none(domid), perm_read(back)};

    device_parents(ops, domid, device);

    ops.mkdir(back_dir, back_perms);
    ops.write(back_dir + "/frontend", front_dir, back_perms);
    ops.write(back_dir + "/frontend-id", std::to_string(domid), back_perms);
    for (const auto& [key, value] : backend_nodes)
        ops.write(back_dir + "/" + key, value, back_perms);
    ops.write(back_dir + "/online", "1", back_perms);
    ops.write(back_dir + "/state", initialising, back_perms);

    ops.mkdir(front_dir, front_perms);
    ops.write(front_dir + "/backend", back_dir, front_perms);
    ops.write(front_dir + "/backend-id", std::to_string(back), front_perms);
    for (const auto& [key, value] : frontend_nodes)
        ops.write(front_dir + "/" + key, value, front_perms);
    ops.write(front_dir + "/state", initialising, front_perms);
}

void disk_ops(OpList& ops, pvkit_domid_t domid, const DiskConfig& disk,
              const BlkbackOptions& options) {
    const std::uint32_t ring_order = disk.max_ring_page_order.value_or(options.max_ring_page_order);
    std::vector<std::pair<std::string, std::string>> backend{
        {"params", disk.path.string()},
        {"mode", to_string(disk.mode)},
        {"type", to_string(disk.format)},
        {"device-type", "disk"},
    };
    if (disk.vdev)
        backend.emplace_back("dev", *disk.vdev);
    // Settings for pvkit-blkback. The frontend never reads config-* nodes;
    // it reads what the backend publishes from them in InitWait.
    backend.emplace_back("config-sector-size", std::to_string(disk.sector_size));
    backend.emplace_back("config-max-ring-page-order", std::to_string(ring_order));
    backend.emplace_back("config-max-indirect-segments",
                         std::to_string(options.max_indirect_segments));
    backend.emplace_back("config-feature-flush-cache", flag(options.feature_flush_cache));
    backend.emplace_back("config-feature-discard", flag(options.feature_discard));

    const std::vector<std::pair<std::string, std::string>> frontend{
        {"virtual-device", std::to_string(disk.devid)},
        {"device-type", "disk"},
    };
    device_dirs(ops, domid, device_ref(disk), backend, frontend);
}

void nic_ops(OpList& ops, pvkit_domid_t domid, const NicConfig& nic,
             const NetbackOptions& options) {
    const std::string mac = nic.mac.to_string();
    std::vector<std::pair<std::string, std::string>> backend{
        {"handle", std::to_string(nic.devid)},
        {"mac", mac},
        {"tap", nic.tap.empty() ? default_tap_name(domid, nic.devid) : nic.tap},
    };
    if (!nic.bridge.empty())
        backend.emplace_back("bridge", nic.bridge);
    // Settings for pvkit-netback, as for blkback above.
    backend.emplace_back("config-max-queues", std::to_string(nic.queues));
    backend.emplace_back("config-feature-sg", flag(options.feature_sg));
    backend.emplace_back("config-feature-gso-tcpv4", flag(options.feature_gso_tcpv4));
    backend.emplace_back("config-feature-gso-tcpv6", flag(options.feature_gso_tcpv6));
    backend.emplace_back("config-feature-csum-offload", flag(options.feature_csum_offload));

    const std::vector<std::pair<std::string, std::string>> frontend{
        {"handle", std::to_string(nic.devid)},
        {"mac", mac},
    };
    device_dirs(ops, domid, device_ref(nic), backend, frontend);
}

} // namespace

std::string perm_none(pvkit_domid_t domid) {
    return perm('n', domid);
}
std::string perm_read(pvkit_domid_t domid) {
    return perm('r', domid);
}
std::string perm_write(pvkit_domid_t domid) {
    return perm('w', domid);
}
std::string perm_both(pvkit_domid_t domid) {
    return perm('b', domid);
}

std::string domain_path(pvkit_domid_t domid) {
    return "/local/domain/" + std::to_string(domid);
}

std::string vm_path(std::string_view domain_name) {
    return "/vm/" + std::string(domain_name);
}

std::string frontend_path(pvkit_domid_t domid, DeviceKind kind, std::uint32_t devid) {
    return domain_path(domid) + "/device/" + to_string(kind) + "/" + std::to_string(devid);
}

std::string backend_path(pvkit_domid_t backend_domid, pvkit_domid_t domid, DeviceKind kind,
                         std::uint32_t devid) {
    return domain_path(backend_domid) + "/backend/" + to_string(kind) + "/" +
           std::to_string(domid) + "/" + std::to_string(devid);
}

std::string default_tap_name(pvkit_domid_t domid, std::uint32_t devid) {
    // Xen's vif<domid>.<devid>; at most "vif32751.65535", 14 bytes, which
    // fits IFNAMSIZ.
    return "vif" + std::to_string(domid) + "." + std::to_string(devid);
}

std::optional<pvkit_domid_t> parse_domid(std::string_view text) {
    constexpr std::size_t kMaxDigits = 5; // PVKIT_DOMID_MAX is 32751
    if (text.empty() || text.size() > kMaxDigits || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    std::uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (value > PVKIT_DOMID_MAX)
        return std::nullopt;
    return static_cast<pvkit_domid_t>(value);
}

std::optional<pvkit_domid_t> allocate_domid(std::span<const pvkit_domid_t> in_use) {
    std::vector<bool> used(std::size_t{PVKIT_DOMID_MAX} + 1, false);
    for (pvkit_domid_t domid : in_use) {
        if (domid <= PVKIT_DOMID_MAX)
            used[domid] = true;
    }
    for (std::uint32_t domid = 1; domid <= PVKIT_DOMID_MAX; ++domid) {
        if (!used[domid])
            return static_cast<pvkit_domid_t>(domid);
    }
    return std::nullopt;
}

DeviceRef device_ref(const DiskConfig& disk) {
    return {DeviceKind::kVbd, disk.devid, disk.backend_domid};
}

DeviceRef device_ref(const NicConfig& nic) {
    return {DeviceKind::kVif, nic.devid, nic.backend_domid};
}

std::vector<DeviceRef> device_refs(const DomainConfig& config) {
    std::vector<DeviceRef> refs;
    for (const auto& disk : config.disks)
        refs.push_back(device_ref(disk));
    for (const auto& nic : config.nics)
        refs.push_back(device_ref(nic));
    return refs;
}

Result<std::vector<StoreOp>, LayoutError> domain_create_ops(pvkit_domid_t domid,
                                                            const DomainConfig& config) {
    if (!valid_domid(domid))
        return Unexpected{LayoutError::kInvalidDomid};
    for (const DeviceRef& device : device_refs(config)) {
        if (auto error = check_device(domid, device))
            return Unexpected{*error};
    }

    OpList ops;
    const std::string home = domain_path(domid);
    const std::string vm = vm_path(config.name);
    // Toolstack-owned and readable by the domain (Xen's "roperm"), or owned
    // by the domain for the nodes it writes itself (Xen's "rwperm").
    const std::vector<std::string> ro{perm_none(PVKIT_DOMID_HOST), perm_read(domid)};
    const std::vector<std::string> rw{perm_none(domid)};
    const bool pv_guest = config.type == DomainType::kPvGuest;

    // The /vm record first: its creation inside the create transaction is
    // what makes domain names unique (a second create of the same name
    // conflicts on it).
    ops.mkdir(vm, ro);
    ops.write(vm + "/name", config.name, ro);
    ops.write(vm + "/domid", std::to_string(domid), ro);
    ops.write(vm + "/type", to_string(config.type), ro);
    if (pv_guest) {
        ops.write(vm + "/memory", std::to_string(config.memory_mib), ro);
        ops.write(vm + "/vcpus", std::to_string(config.vcpus), ro);
        ops.mkdir(vm + "/image", ro);
        ops.write(vm + "/image/kernel", config.kernel.string(), ro);
        ops.write(vm + "/image/cmdline", config.cmdline, ro);
    }

    ops.mkdir(home, ro);
    ops.write(home + "/name", config.name, ro);
    ops.write(home + "/domid", std::to_string(domid), ro);
    ops.write(home + "/vm", vm, ro);
    ops.write(home + "/type", to_string(config.type), ro);
    if (pv_guest) {
        // Xen keeps memory targets in KiB.
        constexpr std::uint64_t kKibPerMib = 1024;
        const std::string kib = std::to_string(std::uint64_t{config.memory_mib} * kKibPerMib);
        ops.mkdir(home + "/memory", ro);
        ops.write(home + "/memory/target", kib, ro);
        ops.write(home + "/memory/static-max", kib, ro);
    }
    ops.mkdir(home + "/device", ro);
    ops.mkdir(home + "/control", ro);
    ops.write(home + "/control/shutdown", "", rw);
    ops.mkdir(home + "/data", rw);

    for (const auto& disk : config.disks)
        disk_ops(ops, domid, disk, config.backend_options.blkback);
    for (const auto& nic : config.nics)
        nic_ops(ops, domid, nic, config.backend_options.netback);
    return ops.take();
}

std::vector<std::string> domain_destroy_paths(pvkit_domid_t domid, std::string_view domain_name,
                                              std::span<const DeviceRef> devices) {
    std::vector<std::string> paths;
    std::set<std::pair<pvkit_domid_t, DeviceKind>> seen;
    for (const DeviceRef& device : devices) {
        if (!seen.insert({device.backend_domid, device.kind}).second)
            continue;
        paths.push_back(domain_path(device.backend_domid) + "/backend/" + to_string(device.kind) +
                        "/" + std::to_string(domid));
    }
    paths.push_back(domain_path(domid));
    if (!domain_name.empty())
        paths.push_back(vm_path(domain_name));
    return paths;
}

std::vector<std::string> domain_destroy_paths(pvkit_domid_t domid, const DomainConfig& config) {
    const auto refs = device_refs(config);
    return domain_destroy_paths(domid, config.name, refs);
}

Result<std::vector<StoreOp>, LayoutError>
disk_attach_ops(pvkit_domid_t domid, const DiskConfig& disk, const BlkbackOptions& options) {
    if (auto error = check_device(domid, device_ref(disk)))
        return Unexpected{*error};
    OpList ops;
    disk_ops(ops, domid, disk, options);
    return ops.take();
}

Result<std::vector<StoreOp>, LayoutError> nic_attach_ops(pvkit_domid_t domid, const NicConfig& nic,
                                                         const NetbackOptions& options) {
    if (auto error = check_device(domid, device_ref(nic)))
        return Unexpected{*error};
    OpList ops;
    nic_ops(ops, domid, nic, options);
    return ops.take();
}

Result<std::vector<StoreOp>, LayoutError> device_close_ops(pvkit_domid_t domid,
                                                           const DeviceRef& device) {
    if (auto error = check_device(domid, device))
        return Unexpected{*error};
    const std::string back_dir =
        backend_path(device.backend_domid, domid, device.kind, device.devid);
    const std::vector<std::string> back_perms{perm_none(device.backend_domid), perm_read(domid)};
    // online = 0 first: a backend that sees Closing with online = 0 knows
    // the device is going away for good, not being reconnected.
    return std::vector<StoreOp>{
        {StoreOp::Kind::kWrite, back_dir + "/online", "0", back_perms},
        {StoreOp::Kind::kWrite, back_dir + "/state", format_xenbus_state(XenbusState::kClosing),
         back_perms},
    };
}

std::vector<std::string> device_remove_paths(pvkit_domid_t domid, const DeviceRef& device) {
    return {backend_path(device.backend_domid, domid, device.kind, device.devid),
            frontend_path(domid, device.kind, device.devid)};
}

} // namespace pvkit::toolstack
