// HostDomain: an ordinary process becomes a PV domain.
//
// create() registers a new domain of type "host-process" in the store, the
// way `pvkit create` would: over a domain-0 connection it lists
// /local/domain, takes allocate_domid() of the domids in use, and writes
// domain_create_ops() plus /local/domain/<domid>/pid (= getpid(), perms
// "n0 r<domid>") in one transaction, starting over on EAGAIN (at most 16
// times). It then opens a second connection, restricted to the new domid,
// for the frontend side of every device handshake: the process speaks as
// its domain there, exactly as a guest would.
//
// The pid node is what pvkit-blkback checks (SO_PEERCRED) before it accepts
// the device's grant pool and eventfds from this process.
//
// Threading: a HostDomain and its devices are used from one thread at a
// time. Several HostDomains (in threads or processes) run independently.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <memory>
#include <string>

#include "pvkit/store/client.hpp"

namespace pvkit::front {

namespace detail {
class DomainImpl;
}

struct HostDomainOptions {
    // pvkit-stored's socket; empty: $PVKIT_STORE_SOCKET, else the default.
    std::string store_socket;
    // Domain name (unique among domains); empty: "hostproc-<pid>-<n>".
    std::string name;
    // Bound for every store reply and for each device's connect and close.
    std::chrono::milliseconds timeout{10000};
};

class HostDomain {
public:
    // A new host-process domain. Throws FrontError.
    static HostDomain create(const HostDomainOptions& options = {});
    // A host-process domain the toolstack created already (`pvkit create`
    // with "type": "host-process"): checks its type, writes its pid node
    // and restricts the second connection. destroy() leaves it in the store.
    static HostDomain adopt(pvkit_domid_t domid, const HostDomainOptions& options = {});

    HostDomain(HostDomain&&) noexcept;
    HostDomain& operator=(HostDomain&&) noexcept;
    HostDomain(const HostDomain&) = delete;
    HostDomain& operator=(const HostDomain&) = delete;
    // Destroys the domain if destroy() was not called (errors are dropped).
    ~HostDomain();

    [[nodiscard]] pvkit_domid_t domid() const;
    [[nodiscard]] const std::string& name() const;

    // Detaches every device still attached, then removes the domain from
    // the store (a created domain only). Throws FrontError.
    void destroy();

    // The domain-0 connection (toolstack work: attach, detach, destroy).
    store::StoreClient& toolstack();
    // The connection restricted to this domain (the frontend's handshake).
    store::StoreClient& store();

    [[nodiscard]] detail::DomainImpl& impl() { return *m_impl; }

private:
    explicit HostDomain(std::unique_ptr<detail::DomainImpl> impl);
    std::unique_ptr<detail::DomainImpl> m_impl;
};

} // namespace pvkit::front
