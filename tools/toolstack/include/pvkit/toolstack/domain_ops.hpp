// The toolstack's store actions: running store_layout.hpp's operation
// lists against pvkit-stored, in transactions, for domains and devices.
// `pvkit create/list/destroy/block-*/network-*` and libpvkit-front's host
// domains all go through these, so a domain is created and torn down the
// same way whoever asks.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/store/client.hpp"
#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/toolstack/xenbus_state.hpp"

namespace pvkit::toolstack {

using store::StoreClient;
using store::StoreError;
using store::StoreResult;
using store::TxId;

// Runs `body` inside a transaction and commits it, starting over when the
// commit conflicts (EAGAIN), at most `attempts` times. `body` may return
// an error to abort the transaction; that error is returned.
StoreResult<void> in_transaction(StoreClient& client,
                                 const std::function<StoreResult<void>(TxId)>& body,
                                 int attempts = 32);

// Performs each op (mkdir or write, then set_perms) with `tx`.
StoreResult<void> apply_ops(StoreClient& client, std::span<const StoreOp> ops, TxId tx);
// Removes each path recursively; a path already gone is not an error.
StoreResult<void> remove_paths(StoreClient& client, std::span<const std::string> paths, TxId tx);

// Creates a domain in one transaction: a free domid, the /vm record (whose
// existence makes names unique: kExist if the name is taken), the domain
// and device nodes, and, if `owner_pid` is set, /local/domain/<domid>/pid
// (perms n0 r<domid>), which backends check before they accept a device's
// grant pool from that process.
StoreResult<pvkit_domid_t> create_domain(StoreClient& client, const DomainConfig& config,
                                         std::optional<pid_t> owner_pid);

struct DeviceStatus {
    DeviceRef ref;
    XenbusState frontend_state = XenbusState::kUnknown;
    XenbusState backend_state = XenbusState::kUnknown;
    std::string detail; // vbd: params (image); vif: mac
};

struct DomainSummary {
    pvkit_domid_t domid = 0;
    std::string name;
    std::string type;
    std::optional<std::uint64_t> memory_kib; // memory/target; none for host-process domains
    std::optional<pid_t> pid;
    std::vector<DeviceStatus> devices;
};

// Every domain under /local/domain except domain 0, by domid. Values are
// reported as the store holds them; unparsable ones (pid, memory target)
// are left empty.
StoreResult<std::vector<DomainSummary>> list_domains(StoreClient& client);
StoreResult<DomainSummary> describe_domain(StoreClient& client, pvkit_domid_t domid);

// A domid given as a number or a domain name; kNoEnt if there is none.
StoreResult<pvkit_domid_t> find_domain(StoreClient& client, std::string_view name_or_domid);

// Hot-plug: writes the device's nodes (`ops`, from disk_attach_ops or
// nic_attach_ops for `device`) in one transaction. In that transaction it
// checks that the domain still exists (else kNoEnt) and that neither the
// device's frontend nor its backend directory does (else kExist); either
// error leaves the store unchanged.
StoreResult<void> attach_device(StoreClient& client, pvkit_domid_t domid, const DeviceRef& device,
                                std::span<const StoreOp> ops);

// The teardown dance from docs/handshake.md: online = 0 and state Closing
// on the backend, wait until the backend says Closed (or `timeout`), then
// remove both directories. Returns true if the backend closed in time,
// false if the directories were removed without it (no backend running).
StoreResult<bool> detach_device(StoreClient& client, pvkit_domid_t domid, const DeviceRef& device,
                                std::chrono::milliseconds timeout);

// Detaches every device (each with `timeout`), then removes the domain.
// Returns true if every backend closed in time.
StoreResult<bool> destroy_domain(StoreClient& client, pvkit_domid_t domid,
                                 std::chrono::milliseconds timeout);

} // namespace pvkit::toolstack
