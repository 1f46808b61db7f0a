// The store itself: a tree of string values with XenStore's permissions,
// watches, transactions and quotas. Pure logic: requests come in as decoded
// Messages and replies and watch events go out as Messages addressed to a
// connection, so everything here is tested without sockets. The daemon
// (server.hpp) owns the sockets; persistence plugs in through Journal.
#pragma once

#include <pvkit/abi.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/store/perms.hpp"
#include "pvkit/store/wire.hpp"

namespace pvkit::store {

using ConnId = std::uint64_t;

// Limits and per-domain quotas. Domain 0 (every connection that has not
// restricted itself) is exempt from the quotas, as in XenStore: it is the
// toolstack. The sizes apply to everyone.
struct StoreLimits {
    // Bytes in one node's value. Leaves room for the path and header in a
    // PVKIT_STORE_PAYLOAD_MAX message, like XenStore's 2048-byte entries.
    std::size_t max_value_bytes = 2048;
    // Nodes a domain may own (first perm entry names the owner).
    std::size_t quota_nodes = 1000;
    // Watches a domain may hold, over all its connections.
    std::size_t quota_watches = 128;
    // Transactions a domain may have open, over all its connections.
    std::size_t quota_transactions = 10;
    // Requests of one connection whose replies are still queued in the
    // daemon (not yet taken by the kernel). Enforced by the daemon, which is
    // the only place that knows; a request over it is answered EQUOTA.
    std::size_t quota_outstanding = 64;
};

// One node as persistence and tests see it.
struct NodeData {
    std::string value;
    Perms perms;
};

// A change to the tree: the unit of persistence. A put sets a node's value
// and permissions (creating it under an existing parent if needed, keeping
// its children otherwise); a del removes a node and everything below it.
// A request or a committed transaction produces one ChangeSet, applied in
// order, so replaying the same ChangeSets rebuilds the same tree.
struct Change {
    enum class Kind : std::uint8_t { kPut = 1, kDel = 2 };
    Kind kind = Kind::kPut;
    std::string path;
    std::string value; // put only
    Perms perms;       // put only

    friend bool operator==(const Change&, const Change&) = default;
};
using ChangeSet = std::vector<Change>;

// Where the store writes each change before applying it. append() must
// have handed the record to the OS (or failed) when it returns; false
// means the change is not applied and the request fails with EIO.
class Journal {
public:
    virtual ~Journal() = default;
    [[nodiscard]] virtual bool append(const ChangeSet& changes) = 0;
};

// A message for one connection: a reply or a watch event.
struct Outgoing {
    ConnId conn = 0;
    Message msg;
    bool is_reply = false;
};

class Store {
public:
    explicit Store(StoreLimits limits = {});
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Persistence hook; nullptr (the default) keeps everything in memory.
    void set_journal(Journal* journal);

    // A new connection acts as domain 0 until a CONTROL "restrict".
    ConnId connect();
    // Drops the connection's watches and open transactions.
    void disconnect(ConnId conn);
    // Makes `conn` act as `domid` for good (what CONTROL "restrict" does).
    [[nodiscard]] StoreResult<void> restrict(ConnId conn, pvkit_domid_t domid);

    // Handles one request from `conn` and appends what must be sent, in the
    // order it must be sent: watch events (to any connection) caused by the
    // request, then the reply to `conn`.
    void handle(ConnId conn, const Message& request, std::vector<Outgoing>& out);

    [[nodiscard]] pvkit_domid_t domid_of(ConnId conn) const;
    [[nodiscard]] bool is_privileged(ConnId conn) const;
    [[nodiscard]] const StoreLimits& limits() const;

    // Applies changes straight to the tree: no permissions, no journal, no
    // watches. For loading a snapshot and replaying the log. False (and the
    // tree left as far as it got) if a change is impossible, such as a put
    // whose parent does not exist.
    [[nodiscard]] bool apply(const ChangeSet& changes);

    // Every node in path order (a parent before its children).
    void for_each_node(const std::function<void(const std::string& path, const NodeData&)>& fn) const;
    [[nodiscard]] std::optional<NodeData> get_node(std::string_view abs_path) const;
    [[nodiscard]] std::size_t node_count() const;
    [[nodiscard]] std::size_t nodes_owned(pvkit_domid_t domid) const;
    [[nodiscard]] std::size_t watch_count(ConnId conn) const;
    [[nodiscard]] std::size_t transaction_count(ConnId conn) const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pvkit::store
