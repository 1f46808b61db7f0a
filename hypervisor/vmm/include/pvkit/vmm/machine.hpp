// Machine: one guest. It owns the KVM VM, guest RAM, the single vCPU and
// the devices, boots the kernel straight into long mode and runs the exit
// loop until the guest shuts down, faults, or --timeout expires.
//
// The exit loop is the exit dispatcher: KVM_EXIT_IO and KVM_EXIT_MMIO go to
// the device registered for the address (IoBus); everything else that
// stops the guest becomes a RunOutcome with one diagnostic line.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pvkit/store/client.hpp"
#include "pvkit/vmm/boot.hpp"
#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/device_handoff.hpp"
#include "pvkit/vmm/doorbell.hpp"
#include "pvkit/vmm/event_channels.hpp"
#include "pvkit/vmm/exit_stats.hpp"
#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/guest_memory.hpp"
#include "pvkit/vmm/hypercall.hpp"
#include "pvkit/vmm/io_bus.hpp"
#include "pvkit/vmm/kvm.hpp"
#include "pvkit/vmm/post_code.hpp"
#include "pvkit/vmm/serial.hpp"
#include "pvkit/vmm/store_relay.hpp"

namespace pvkit::vmm {

// The guest cannot be started: the message says why (bad kernel file,
// command line, RAM size, or a KVM set-up call that failed).
class StartupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct MachineConfig {
    std::vector<std::byte> kernel;      // the ELF image
    std::string kernel_name = "kernel"; // for messages: usually the path
    std::uint64_t ram_bytes = 64ull << 20;
    std::string cmdline;
    pvkit_domid_t domid = 1;
    // Wall-clock limit for run(); zero means none.
    std::chrono::milliseconds timeout{0};
    std::string kvm_path = "/dev/kvm";
    // PV devices: each gets a grant pool of `pool_frames` frames (header
    // and grant table included) in the device window.
    std::vector<PvDevice> devices;
    std::uint32_t pool_frames = kDefaultPoolFrames;
    // pvkit-stored's socket; empty: no store ring and no hand-off.
    std::string store_socket;
    // Bound on each store call and each hand-off the VMM makes.
    std::chrono::milliseconds store_timeout{5000};

    static constexpr std::uint32_t kDefaultPoolFrames = 1024; // 4 MiB
    // Room for the pool header and a two-frame grant table (1024 grants).
    static constexpr std::uint32_t kMinPoolFrames = 4;
    static constexpr std::uint32_t kPoolGrants = 1024;
};

// The feature bits this VMM offers a guest with this config: everything
// but the store ring and device connect, which need a store.
std::uint64_t vmm_features(const MachineConfig& config);

// The vector of the store ring's event channel (the VMM allocates that
// port; the guest learns the vector with EVTCHNOP_STATUS).
inline constexpr std::uint32_t kStorePortVector = PVKIT_EVTCHN_VECTOR_MAX;

class Machine final : private ExitContext, private SchedulerHooks {
public:
    // Builds and boots (but does not run) the guest. Throws StartupError or
    // KvmUnavailable.
    static std::unique_ptr<Machine> create(const MachineConfig& config, ConsoleSink& console);

    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;
    Machine(Machine&&) = delete;
    Machine& operator=(Machine&&) = delete;
    ~Machine() = default;

    // Registers a device for a port range or an MMIO range (outside RAM,
    // normally in the device window, BootState::device_window). The device
    // must outlive the Machine. The hypercall port (0x99), the 16550
    // (0x3f8-0x3ff) and the POST-code port (0x80) are taken.
    Result<void, BusError> add_port_device(std::uint16_t base, std::uint16_t length,
                                           std::string name, IoHandler& device);
    Result<void, BusError> add_mmio_device(std::uint64_t base, std::uint64_t length,
                                           std::string name, IoHandler& device);

    // Runs the vCPU until the guest stops. Only one Machine may run at a
    // time in a process: the timeout and SIGTERM/SIGINT handlers are
    // process-wide while run() is active.
    RunOutcome run();

    [[nodiscard]] const ExitStats& stats() const { return m_stats; }
    [[nodiscard]] const BootState& boot() const { return m_boot; }
    [[nodiscard]] const GuestMemory& memory() const { return m_memory; }
    [[nodiscard]] const std::vector<DevicePool>& devices() const { return m_devices; }
    [[nodiscard]] const EventChannelTable& event_channels() const { return m_evtchn; }
    [[nodiscard]] const Doorbell& doorbell() const { return m_doorbell; }
    // Null without a store.
    [[nodiscard]] const StoreRelay* store_relay() const { return m_store_relay.get(); }
    [[nodiscard]] pvkit_domid_t domid() const { return m_domid; }

    // The --stats-json document: the exit counters plus event channels,
    // doorbell, devices, hand-offs and the store relay.
    [[nodiscard]] nlohmann::json stats_json(const RunOutcome& outcome,
                                            std::uint64_t console_bytes) const;
    // The exit summary for stderr (ExitStats::summary plus the PV parts).
    [[nodiscard]] std::string summary() const;

private:
    Machine(const MachineConfig& config, ConsoleSink& console, Kvm kvm, Vm vm, GuestMemory memory);

    void boot(const MachineConfig& config);
    void create_devices(const MachineConfig& config);
    void connect_store(const MachineConfig& config);
    void handle_exit();
    void handle_port_io();
    void handle_mmio();
    void handle_signal();
    void stop(ExitStatus status, std::string message);
    [[nodiscard]] std::string where() const;

    // ExitContext
    Result<kvm_regs, KvmError> regs() override;
    Result<void, KvmError> set_regs(const kvm_regs& regs) override;
    void request_stop(RunOutcome outcome) override;
    // SchedulerHooks
    void yield() override;
    // KVM_EXIT_HLT, which only a VM without an in-kernel irqchip sees.
    void wait_for_interrupt();
    [[nodiscard]] bool interrupt_pending() const;

    ConsoleSink& m_console;
    Kvm m_kvm;
    Vm m_vm;
    GuestMemory m_memory;
    Vcpu m_vcpu;
    pvkit_domid_t m_domid;
    BootState m_boot;
    std::chrono::milliseconds m_timeout;
    ExitStats m_stats;
    IoBus m_ports;
    IoBus m_mmio;
    Serial16550 m_serial;
    PostCodePort m_post_codes;
    KvmEvtchnWiring m_wiring;
    EventChannelTable m_evtchn;
    Doorbell m_doorbell;
    std::vector<DevicePool> m_devices;
    std::unique_ptr<store::StoreClient> m_control_store; // domain 0: hand-offs
    std::optional<StoreRingPage> m_store_ring;
    std::unique_ptr<StoreRelay> m_store_relay; // declared after the page it uses
    UniqueFd m_store_kick;
    UniqueFd m_store_irq;
    std::unique_ptr<HandoffConnector> m_connector;
    HypercallDispatcher m_dispatcher;
    HypercallPort m_hypercall_port;
    std::optional<RunOutcome> m_stop;
};

} // namespace pvkit::vmm
