#include "pvkit/vmm/device_handoff.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <utility>

#include "pvkit/toolstack/store_layout.hpp"
#include "pvkit/transport/handoff.hpp"

namespace pvkit::vmm {

namespace {

const char* errno_name(Errno e) {
    switch (e) {
    case PVKIT_EPERM:
        return "EPERM";
    case PVKIT_ENOENT:
        return "ENOENT";
    case PVKIT_EIO:
        return "EIO";
    case PVKIT_EAGAIN:
        return "EAGAIN";
    case PVKIT_EBUSY:
        return "EBUSY";
    case PVKIT_EINVAL:
        return "EINVAL";
    case PVKIT_EISCONN:
        return "EISCONN";
    case PVKIT_ENOTCONN:
        return "ENOTCONN";
    case PVKIT_ENOMEM:
        return "ENOMEM";
    default:
        return "error";
    }
}

// The backend's answer (a host errno) as the guest sees it. Only the
// answers the frontend can act on keep their meaning; the rest are EIO.
Errno guest_errno(int backend_status) {
    switch (backend_status) {
    case EPERM:
        return PVKIT_EPERM;
    case EAGAIN:
        return PVKIT_EAGAIN;
    case EBUSY:
        return PVKIT_EBUSY;
    case EINVAL:
        return PVKIT_EINVAL;
    default:
        return PVKIT_EIO;
    }
}

toolstack::DeviceKind kind_of(std::uint32_t type) {
    return type == PVKIT_DEV_NET ? toolstack::DeviceKind::kVif : toolstack::DeviceKind::kVbd;
}

} // namespace

const char* device_kind_name(std::uint32_t type) {
    return type == PVKIT_DEV_NET ? PVKIT_DEV_NET_NAME : PVKIT_DEV_BLK_NAME;
}

HandoffConnector::HandoffConnector(pvkit_domid_t domid, EventChannelTable& evtchn,
                                   const std::vector<DevicePool>& devices,
                                   store::StoreClient* store, std::chrono::milliseconds timeout)
    : m_domid(domid), m_evtchn(evtchn), m_devices(devices), m_store(store), m_timeout(timeout) {}

Errno HandoffConnector::refuse(const PvDevice& device, Errno err, const std::string& why) {
    ++m_counters.refused;
    m_last_refusal = std::string(device_kind_name(device.type)) + " " +
                     std::to_string(device.devid) + ": " + errno_name(err) + ": " + why;
    std::fprintf(stderr, "pvkit-vmm: device connect refused: %s\n", m_last_refusal.c_str());
    return err;
}

Errno HandoffConnector::connect(std::uint32_t pool_index,
                                std::span<const pvkit_evtchn_port_t> ports) {
    ++m_counters.attempts;
    if (pool_index >= m_devices.size()) {
        ++m_counters.refused;
        return PVKIT_ENOENT;
    }
    const DevicePool& dev = m_devices[pool_index];
    const PvDevice& d = dev.device;
    for (pvkit_evtchn_port_t port : ports) {
        if (auto ok = m_evtchn.check_connectable(port, d.backend_domid); !ok)
            return refuse(d, ok.error(),
                          "port " + std::to_string(port) +
                              " is not an unbound port of this guest for domain " +
                              std::to_string(d.backend_domid));
    }
    if (m_store == nullptr || !m_store->connected())
        return refuse(d, PVKIT_ENOTCONN, "the VMM has no store connection");

    // The backend directory comes from the config, never from a node the
    // frontend wrote; only domain 0 (and the backend) can write in it.
    const std::string dir =
        toolstack::backend_path(d.backend_domid, m_domid, kind_of(d.type), d.devid);
    auto state = m_store->read(dir + "/state");
    if (!state)
        return refuse(d, state.error() == store::StoreError::kNoEnt ? PVKIT_EAGAIN : PVKIT_EIO,
                      dir + "/state: " + std::string(store::to_string(state.error())));
    if (state.value() != "2")
        return refuse(d, PVKIT_EAGAIN,
                      "backend state is '" + state.value() + "', not 2 (InitWait)");
    auto socket = m_store->read(dir + "/handoff-socket");
    if (!socket || socket->empty())
        return refuse(d, PVKIT_EAGAIN, dir + "/handoff-socket is missing");

    HandoffRequest req;
    req.frontend_domid = m_domid;
    req.devid = d.devid;
    req.type = device_kind_name(d.type);
    req.ports.assign(ports.begin(), ports.end());
    req.fds.emplace_back(::fcntl(dev.pool.fd(), F_DUPFD_CLOEXEC, 0));
    if (!req.fds.back().valid())
        return refuse(d, PVKIT_ENOMEM, std::string("dup of the pool fd: ") + std::strerror(errno));
    for (pvkit_evtchn_port_t port : ports) {
        auto fds = m_evtchn.fds(port);
        if (!fds)
            return refuse(d, fds.error(), "port " + std::to_string(port) + " has no eventfds");
        // Order: the one the backend waits on, then the one it notifies.
        req.fds.push_back(std::move(fds->kick));
        req.fds.push_back(std::move(fds->irq));
    }
    int status = 0;
    try {
        status = handoff_device(socket.value(), req, m_timeout);
    } catch (const std::exception& e) {
        return refuse(d, PVKIT_EIO, socket.value() + ": " + e.what());
    }
    if (status != 0)
        return refuse(d, guest_errno(status),
                      "the backend at " + socket.value() + " answered " + std::strerror(status));
    for (pvkit_evtchn_port_t port : ports)
        m_evtchn.mark_connected(port, d.backend_domid);
    ++m_counters.accepted;
    return 0;
}

nlohmann::json HandoffConnector::stats() const {
    return nlohmann::json{
        {"attempts", m_counters.attempts},
        {"accepted", m_counters.accepted},
        {"refused", m_counters.refused},
        {"last_refusal",
         m_last_refusal.empty() ? nlohmann::json(nullptr) : nlohmann::json(m_last_refusal)},
    };
}

} // namespace pvkit::vmm
