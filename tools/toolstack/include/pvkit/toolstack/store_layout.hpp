// Where a domain and its devices live in the store, as pure functions.
//
// Given a domid and a validated config (or one device), these return the
// store operations the toolstack performs, in order, and the paths it
// removes again. Nothing here talks to pvkit-stored: the caller runs the
// list, inside one store transaction, with whatever client it has. That
// keeps the layout testable and the same for `pvkit create`, `destroy`,
// `block-attach` and `network-attach`.
//
// The layout is Xen's (docs/handshake.md has the full tree):
//
//   /vm/<name>/...                                    the domain's record
//   /local/domain/<domid>/{name,domid,vm,type,memory/target,...}
//   /local/domain/<domid>/device/<kind>/<devid>/...   frontend directory
//   /local/domain/<backend>/backend/<kind>/<domid>/<devid>/...  backend directory
//
// with <kind> "vbd" for disks and "vif" for NICs.
#pragma once

#include <pvkit/abi.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/transport/result.hpp"

namespace pvkit::toolstack {

enum class DeviceKind : std::uint8_t { kVbd, kVif };
const char* to_string(DeviceKind kind); // "vbd" / "vif", the store's directory name

// One store operation. The caller performs `kind` on `path` and then sets
// `perms` on it (SET_PERMS), so every node's permissions are explicit and
// never depend on what the store's inheritance rule happens to be.
struct StoreOp {
    enum class Kind : std::uint8_t {
        kMkdir, // create the directory node (no error if it exists)
        kWrite, // write `value` (creating the node)
    };
    Kind kind = Kind::kWrite;
    std::string path;
    std::string value;              // empty for kMkdir
    std::vector<std::string> perms; // store.h format: "n0", "r5", ...; first entry is the owner

    bool operator==(const StoreOp&) const = default;
};

// A device as the toolstack finds it again at destroy or detach time (it
// reads these from the frontend directory's backend-id node).
struct DeviceRef {
    DeviceKind kind = DeviceKind::kVbd;
    std::uint32_t devid = 0;
    pvkit_domid_t backend_domid = PVKIT_DOMID_HOST;

    bool operator==(const DeviceRef&) const = default;
};

enum class LayoutError : std::uint8_t {
    kInvalidDomid,        // the domain's domid is not in [1, PVKIT_DOMID_MAX]
    kInvalidBackendDomid, // a backend domid above PVKIT_DOMID_MAX
    kBackendIsFrontend,   // a device whose backend is the domain itself
    kInvalidDevid,        // a devid above kDevidMax
};
const char* to_string(LayoutError error);

// "n<domid>" and friends, in store.h's permission format.
std::string perm_none(pvkit_domid_t domid); // owner, or "no access"
std::string perm_read(pvkit_domid_t domid);
std::string perm_write(pvkit_domid_t domid);
std::string perm_both(pvkit_domid_t domid);

// Path builders.
std::string domain_path(pvkit_domid_t domid);      // "/local/domain/<domid>"
std::string vm_path(std::string_view domain_name); // "/vm/<name>"
std::string frontend_path(pvkit_domid_t domid, DeviceKind kind, std::uint32_t devid);
std::string backend_path(pvkit_domid_t backend_domid, pvkit_domid_t domid, DeviceKind kind,
                         std::uint32_t devid);
// The TAP name a NIC gets when its config names none: "vif<domid>.<devid>".
std::string default_tap_name(pvkit_domid_t domid, std::uint32_t devid);

// Parses a domid the store holds (directory names under /local/domain,
// backend-id nodes): plain decimal, no sign or leading zeros, at most
// PVKIT_DOMID_MAX. Store contents may come from a guest, so anything else
// is nullopt.
std::optional<pvkit_domid_t> parse_domid(std::string_view text);

// The lowest domid in [1, PVKIT_DOMID_MAX] not in `in_use` (which may be
// unsorted and may hold 0 or out-of-range values; they are ignored).
// nullopt when every domid is taken. Two toolstacks racing for the same
// domid are separated by the store transaction that creates the domain.
std::optional<pvkit_domid_t> allocate_domid(std::span<const pvkit_domid_t> in_use);

// Everything `pvkit create` writes for a new domain, in order: the /vm
// record, the domain's home directory, then per disk and per NIC the
// backend directory (state last) and the frontend directory (state last).
// Both state nodes start at Initialising (1), and each backend has
// online = 1.
Result<std::vector<StoreOp>, LayoutError> domain_create_ops(pvkit_domid_t domid,
                                                            const DomainConfig& config);

// The paths `pvkit destroy` removes (recursively) once the devices are
// closed, or at once when forced: each backend's per-domain directory,
// the domain's home directory and its /vm record.
std::vector<std::string> domain_destroy_paths(pvkit_domid_t domid, std::string_view domain_name,
                                              std::span<const DeviceRef> devices);
std::vector<std::string> domain_destroy_paths(pvkit_domid_t domid, const DomainConfig& config);

// Hot-plug: what `pvkit block-attach` / `network-attach` writes. The same
// nodes domain_create_ops writes for that device, including the parent
// directories (creating an existing directory is harmless).
Result<std::vector<StoreOp>, LayoutError>
disk_attach_ops(pvkit_domid_t domid, const DiskConfig& disk, const BlkbackOptions& options);
Result<std::vector<StoreOp>, LayoutError> nic_attach_ops(pvkit_domid_t domid, const NicConfig& nic,
                                                         const NetbackOptions& options);

// The first step of a detach (and of a polite destroy): the backend's
// online = 0, then its state = Closing (5), written in one transaction.
// The frontend and backend then close as docs/handshake.md describes.
Result<std::vector<StoreOp>, LayoutError> device_close_ops(pvkit_domid_t domid,
                                                           const DeviceRef& device);

// The last step of a detach, once the backend state is Closed (or the
// wait timed out): the device's backend and frontend directories.
std::vector<std::string> device_remove_paths(pvkit_domid_t domid, const DeviceRef& device);

// The devices of a config, disks first, in config order.
std::vector<DeviceRef> device_refs(const DomainConfig& config);
DeviceRef device_ref(const DiskConfig& disk);
DeviceRef device_ref(const NicConfig& nic);

} // namespace pvkit::toolstack
