// The guest's PV devices on the VMM side: one grant pool per device, and
// the hand-off of that pool and the device's event-channel eventfds to
// the backend daemon the store names (pvkit/transport/handoff.hpp).
//
// Who triggers the hand-off: the guest, with PVKIT_HC_DEVICE_CONNECT
// (pvkit/hypercall.h), after it granted its ring and allocated its port and
// before it writes Initialised: the frontend protocol publishes
// Initialised only once the backend holds the pool and the eventfds. The
// VMM never acts on frontend-written store nodes: it finds the backend
// directory from the domain's config (toolstack::backend_path), requires
// the backend's state InitWait and its handoff-socket there (both written
// in domain 0's backend directory, which the guest cannot write), and
// sends only fds it owns. The backend checks the VMM's pid against
// /local/domain/<domid>/pid.
#pragma once

#include <pvkit/abi.h>
#include <pvkit/start_info.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pvkit/store/client.hpp"
#include "pvkit/transport/grant_pool.hpp"
#include "pvkit/vmm/event_channels.hpp"
#include "pvkit/vmm/hypercall.hpp"

namespace pvkit::vmm {

// A PV device the domain config lists.
struct PvDevice {
    std::uint32_t type = PVKIT_DEV_BLK; // PVKIT_DEV_*
    std::uint32_t devid = 0;
    pvkit_domid_t backend_domid = PVKIT_DOMID_HOST;
};

// "vbd" / "vif": the store directory and hand-off type of a PVKIT_DEV_*.
const char* device_kind_name(std::uint32_t type);

// A device with its pool, mapped at `gpa` in the guest.
struct DevicePool {
    PvDevice device;
    GrantPool pool;
    std::uint64_t gpa = 0;
};

struct HandoffCounters {
    std::uint64_t attempts = 0;
    std::uint64_t accepted = 0;
    std::uint64_t refused = 0; // by the VMM's checks or by the backend
};

class HandoffConnector final : public DeviceConnector {
public:
    // `store` may be null (no store: every connect is -ENOTCONN). The
    // references must outlive the connector.
    HandoffConnector(pvkit_domid_t domid, EventChannelTable& evtchn,
                     const std::vector<DevicePool>& devices, store::StoreClient* store,
                     std::chrono::milliseconds timeout);

    Errno connect(std::uint32_t pool_index, std::span<const pvkit_evtchn_port_t> ports) override;

    [[nodiscard]] const HandoffCounters& counters() const { return m_counters; }
    [[nodiscard]] nlohmann::json stats() const;

private:
    Errno refuse(const PvDevice& device, Errno err, const std::string& why);

    pvkit_domid_t m_domid;
    EventChannelTable& m_evtchn;
    const std::vector<DevicePool>& m_devices;
    store::StoreClient* m_store;
    std::chrono::milliseconds m_timeout;
    HandoffCounters m_counters;
    std::string m_last_refusal;
};

} // namespace pvkit::vmm
