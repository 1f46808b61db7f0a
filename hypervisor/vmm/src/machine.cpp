#include "pvkit/vmm/machine.hpp"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pvkit/hypercall.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "pvkit/vmm/fault_report.hpp"
#include "pvkit/vmm/layout.hpp"

namespace pvkit::vmm {

namespace {

// ---- Stopping a running vCPU ------------------------------------------------
//
// The timeout timer and SIGTERM/SIGINT raise a signal on the vCPU thread.
// The handler records it and sets kvm_run.immediate_exit: if the thread is
// inside KVM_RUN, the signal makes KVM_RUN return EINTR; if it is about to
// enter, immediate_exit makes KVM_RUN return EINTR at once. Either way the
// run loop sees EINTR and reads g_signal; no wakeup can be lost.

std::atomic<kvm_run*> g_running{nullptr};
volatile std::sig_atomic_t g_signal = 0;
static_assert(std::atomic<kvm_run*>::is_always_lock_free, "used from a signal handler");

extern "C" void on_stop_signal(int signo) {
    g_signal = signo;
    if (kvm_run* run = g_running.load(std::memory_order_relaxed))
        run->immediate_exit = 1;
}

constexpr int kTimeoutSignal = SIGALRM;

// Installs the handlers and arms the timeout for the duration of run().
class StopSignals {
public:
    StopSignals(kvm_run& run, std::chrono::milliseconds timeout) {
        g_signal = 0;
        g_running.store(&run);
        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; // no SA_RESTART: KVM_RUN and poll must return EINTR
        for (std::size_t i = 0; i < kSignals.size(); ++i)
            ::sigaction(kSignals[i], &sa, &m_old[i]);
        if (timeout.count() > 0) {
            try {
                arm(timeout);
            } catch (...) {
                restore();
                throw;
            }
        }
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;
    ~StopSignals() { restore(); }

private:
    static constexpr std::array<int, 3> kSignals{kTimeoutSignal, SIGTERM, SIGINT};

    void restore() {
        if (m_timer_armed)
            ::timer_delete(m_timer);
        m_timer_armed = false;
        for (std::size_t i = 0; i < kSignals.size(); ++i)
            ::sigaction(kSignals[i], &m_old[i], nullptr);
        g_running.store(nullptr);
    }

    void arm(std::chrono::milliseconds timeout) {
        sigevent sev{};
        // To this thread, the one in KVM_RUN, not to the process.
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = kTimeoutSignal;
        const auto tid = static_cast<pid_t>(::syscall(SYS_gettid));
#ifdef sigev_notify_thread_id
        sev.sigev_notify_thread_id = tid;
#else
        sev._sigev_un._tid = tid; // glibc before 2.37 names the field only this way
#endif
        if (::timer_create(CLOCK_MONOTONIC, &sev, &m_timer) < 0)
            throw_errno("timer_create for --timeout");
        m_timer_armed = true;
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(timeout.count() / 1000);
        its.it_value.tv_nsec = static_cast<long>((timeout.count() % 1000) * 1000000);
        if (::timer_settime(m_timer, 0, &its, nullptr) < 0)
            throw_errno("timer_settime for --timeout");
    }

    std::array<struct sigaction, kSignals.size()> m_old{};
    timer_t m_timer{};
    bool m_timer_armed = false;
};

std::string hex(std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

std::uint64_t little_endian_value(std::span<const std::byte> data) {
    std::uint64_t v = 0;
    for (std::size_t i = data.size(); i-- > 0;)
        v = (v << 8) | std::to_integer<std::uint64_t>(data[i]);
    return v;
}

const char* internal_error_name(std::uint32_t suberror) {
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return "instruction emulation failed";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return "exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return "event delivery failed";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
        return "unexpected hardware exit reason";
    default:
        return "unknown suberror";
    }
}

} // namespace

// ---- Set-up -------------------------------------------------------------------

std::uint64_t vmm_features(const MachineConfig& config) {
    std::uint64_t f = PVKIT_FEAT_CONSOLE_HC | PVKIT_FEAT_EVTCHN_DOORBELL | PVKIT_FEAT_EVTCHN_IRQ |
                      PVKIT_FEAT_GRANT_POOLS;
    if (!config.store_socket.empty())
        f |= PVKIT_FEAT_STORE_RING | PVKIT_FEAT_DEVICE_CONNECT;
    return f;
}

std::unique_ptr<Machine> Machine::create(const MachineConfig& config, ConsoleSink& console) {
    const auto started = std::chrono::steady_clock::now();
    if (config.ram_bytes < layout::kMinRam || config.ram_bytes > layout::kMaxRam ||
        config.ram_bytes % layout::kPageSize != 0)
        throw StartupError("guest RAM must be a multiple of 4 KiB from " +
                           std::to_string(layout::kMinRam >> 20) + " MiB to " +
                           std::to_string(layout::kMaxRam >> 20) + " MiB");
    if (config.pool_frames < MachineConfig::kMinPoolFrames ||
        config.pool_frames > PVKIT_GRANT_POOL_MAX_FRAMES)
        throw StartupError("a grant pool needs " + std::to_string(MachineConfig::kMinPoolFrames) +
                           " to " + std::to_string(PVKIT_GRANT_POOL_MAX_FRAMES) + " frames");
    if (config.devices.size() > PVKIT_START_INFO_MAX_DEVICES)
        throw StartupError("at most " + std::to_string(PVKIT_START_INFO_MAX_DEVICES) +
                           " PV devices fit the start-info page");
    Kvm kvm = Kvm::open(config.kvm_path);
    // GSI = port (event_channels.cpp): every port needs a route.
    if (kvm.check_extension(KVM_CAP_IRQ_ROUTING) <= static_cast<int>(PVKIT_EVTCHN_MAX_PORT))
        throw KvmUnavailable(config.kvm_path + " offers fewer than " +
                             std::to_string(PVKIT_EVTCHN_MAX_PORT + 1) +
                             " interrupt routes, one per event-channel port");
    try {
        Vm vm = kvm.create_vm();
        // The in-kernel irqchip must exist before the vCPU is created. Its
        // local APIC takes the event channels' MSIs, and it keeps HLT (the
        // guest's sleep in SCHED_OP BLOCK) inside the kernel.
        vm.create_irqchip();
        GuestMemory memory = GuestMemory::create(config.ram_bytes);
        vm.set_user_memory(layout::kRamSlot, 0, memory.size(), memory.kvm_userspace_addr());
        std::unique_ptr<Machine> machine(
            new Machine(config, console, std::move(kvm), std::move(vm), std::move(memory)));
        machine->boot(config);
        machine->m_stats.set_setup_time(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now() - started));
        return machine;
    } catch (const std::system_error& e) {
        throw StartupError(std::string("KVM set-up failed: ") + e.what());
    } catch (const std::invalid_argument& e) {
        throw StartupError(e.what());
    }
}

Machine::Machine(const MachineConfig& config, ConsoleSink& console, Kvm kvm, Vm vm,
                 GuestMemory memory)
    : m_console(console), m_kvm(std::move(kvm)), m_vm(std::move(vm)), m_memory(std::move(memory)),
      m_vcpu(m_vm.create_vcpu(0)), m_domid(config.domid), m_timeout(config.timeout),
      m_serial(console), m_post_codes(m_stats),
      m_wiring(m_vm, layout::device_window_base(m_memory.size()) + layout::kDoorbellOffset),
      m_evtchn(m_wiring, config.domid),
      m_dispatcher(m_memory, console, *this,
                   HypercallConfig{vmm_features(config), layout::kStartInfo}),
      m_hypercall_port(m_dispatcher, m_stats, layout::kHypercallPage + kBlockHelperOffset) {
    // Fixed, non-overlapping ranges: failure would be a bug here.
    const bool ok = m_ports.add(PVKIT_HYPERCALL_PORT, 1, "hypercall", m_hypercall_port).ok() &&
                    m_ports.add(kCom1Base, kUartPorts, "serial", m_serial).ok() &&
                    m_ports.add(kPostCodePort, 1, "post-code", m_post_codes).ok();
    if (!ok)
        throw StartupError("device port ranges overlap");
}

Result<void, BusError> Machine::add_port_device(std::uint16_t base, std::uint16_t length,
                                                std::string name, IoHandler& device) {
    if (std::uint32_t{base} + length > 0x10000)
        return Unexpected{BusError::kOverflow};
    return m_ports.add(base, length, std::move(name), device);
}

Result<void, BusError> Machine::add_mmio_device(std::uint64_t base, std::uint64_t length,
                                                std::string name, IoHandler& device) {
    // RAM is KVM's; an access there never exits, so a device there would
    // silently never run.
    if (base < m_memory.size())
        return Unexpected{BusError::kOverlap};
    return m_mmio.add(base, length, std::move(name), device);
}

void Machine::create_devices(const MachineConfig& config) {
    m_devices.reserve(config.devices.size());
    for (const PvDevice& d : config.devices) {
        // Header, a grant table of kPoolGrants entries, data frames.
        const std::uint32_t table =
            (MachineConfig::kPoolGrants + PVKIT_GRANT_ENTRIES_PER_PAGE - 1) /
            PVKIT_GRANT_ENTRIES_PER_PAGE;
        const std::uint32_t data = config.pool_frames - 1 - table;
        const std::string name =
            std::string("pvkit-pool-") + device_kind_name(d.type) + "-" + std::to_string(d.devid);
        m_devices.push_back(DevicePool{
            d, GrantPool::create(config.domid, data, MachineConfig::kPoolGrants, name), 0});
    }
}

void Machine::connect_store(const MachineConfig& config) {
    if (config.store_socket.empty())
        return;
    std::string detail;
    auto client = store::StoreClient::connect(config.store_socket, config.store_timeout, &detail);
    if (!client)
        throw StartupError("cannot connect to pvkit-stored: " +
                           (detail.empty() ? config.store_socket : detail));
    client->set_reply_timeout(config.store_timeout);
    m_control_store = std::make_unique<store::StoreClient>(std::move(client).value());
    try {
        m_store_relay =
            StoreRelay::connect(config.store_socket, config.domid, config.store_timeout);
    } catch (const std::runtime_error& e) {
        throw StartupError(e.what());
    }
    m_store_ring.emplace(StoreRingPage::create());
}

void Machine::boot(const MachineConfig& config) {
    const ElfLoadLimits limits{layout::kKernelMin, m_memory.size()};
    auto image = load_elf(config.kernel, m_memory, limits);
    if (!image)
        throw StartupError(config.kernel_name + ": " + to_string(image.error().error) + ": " +
                           image.error().detail);

    create_devices(config);
    connect_store(config);
    const std::uint64_t features = vmm_features(config);
    pvkit_evtchn_port_t store_port = 0;
    if (m_store_ring) {
        // The store ring's port, connected to the relay from the start.
        auto port = m_evtchn.alloc_vmm_port(PVKIT_DOMID_HOST, kStorePortVector);
        if (!port)
            throw StartupError("cannot allocate the store ring's event channel (error " +
                               std::to_string(port.error()) + ")");
        store_port = port.value();
        auto fds = m_evtchn.fds(store_port);
        if (!fds)
            throw StartupError("cannot duplicate the store ring's eventfds");
        m_store_kick = std::move(fds->kick);
        m_store_irq = std::move(fds->irq);
    }

    const std::vector<kvm_cpuid_entry2> supported = m_kvm.supported_cpuid();
    BootParams params;
    params.cmdline = config.cmdline;
    params.domid = config.domid;
    params.features = features;
    params.nx = cpuid_has_nx(supported);
    for (const DevicePool& d : m_devices)
        params.devices.push_back(BootDevice{d.device.type, d.device.devid, d.pool.size_bytes()});
    params.store_ring = m_store_ring.has_value();
    params.store_evtchn = store_port;
    auto boot = write_boot_structures(m_memory, image.value(), params);
    if (!boot)
        throw StartupError(std::string("cannot prepare the guest: ") + to_string(boot.error()));
    m_boot = boot.value();

    // The PV pages of the device window: memory slots for the store ring
    // and the pools, an exit handler for the doorbell.
    HypercallServices& services = m_dispatcher.services();
    services.evtchn = &m_evtchn;
    if (m_store_ring) {
        m_vm.set_user_memory(layout::kStoreRingSlot, m_boot.store_ring_gpa, StoreRingPage::size(),
                             m_store_ring->kvm_userspace_addr());
        services.store = pvkit_store_ring_info{m_boot.store_ring_gpa, store_port, config.domid, 0};
    }
    for (std::size_t i = 0; i < m_devices.size(); ++i) {
        DevicePool& d = m_devices[i];
        d.gpa = m_boot.pool_gpas[i];
        m_vm.set_user_memory(layout::kFirstPoolSlot + static_cast<std::uint32_t>(i), d.gpa,
                             d.pool.size_bytes(),
                             reinterpret_cast<std::uintptr_t>(d.pool.frame_ptr(0)));
        services.pools.push_back(GrantPoolPlacement{d.gpa, d.pool.layout().nr_frames, d.device.type,
                                                    d.device.devid, d.device.backend_domid});
    }
    if (!m_mmio.add(m_boot.doorbell_gpa, layout::kPageSize, "doorbell", m_doorbell).ok())
        throw StartupError("the doorbell page overlaps another device");
    m_connector = std::make_unique<HandoffConnector>(config.domid, m_evtchn, m_devices,
                                                     m_control_store.get(), config.store_timeout);
    if (m_store_ring)
        services.connector = m_connector.get();

    const auto cpuid =
        make_guest_cpuid(supported, features, m_boot.hypercall_page_gpa, m_boot.start_info_gpa);
    auto fail = [](const KvmError& e) { throw StartupError("vCPU set-up: " + to_string(e)); };
    if (auto r = m_vcpu.set_cpuid(cpuid); !r)
        fail(r.error());
    auto sregs = m_vcpu.sregs();
    if (!sregs)
        fail(sregs.error());
    if (auto r = m_vcpu.set_sregs(long_mode_sregs(sregs.value(), m_boot)); !r)
        fail(r.error());
    if (auto r = m_vcpu.set_regs(entry_regs(m_boot)); !r)
        fail(r.error());
}

// ---- The exit loop ---------------------------------------------------------------

RunOutcome Machine::run() {
    m_stop.reset();
    kvm_run& shared = m_vcpu.shared_run();
    shared.immediate_exit = 0;
    StopSignals signals(shared, m_timeout);
    if (m_store_relay && m_store_kick.valid())
        m_store_relay->start(*m_store_ring, std::move(m_store_kick), std::move(m_store_irq));
    m_stats.start_clock();
    while (!m_stop) {
        auto ran = m_vcpu.run();
        if (!ran) {
            if (ran.error().err == EINTR || ran.error().err == EAGAIN) {
                m_stats.count_exit(KVM_EXIT_INTR);
                handle_signal();
                continue;
            }
            stop(ExitStatus::kVmmError, to_string(ran.error()));
            break;
        }
        m_stats.count_exit(shared.exit_reason);
        handle_exit();
    }
    m_stats.stop_clock();
    m_console.flush();
    return *m_stop;
}

void Machine::handle_signal() {
    const int signo = g_signal;
    if (signo == kTimeoutSignal) {
        stop(ExitStatus::kTimeout, "timeout: the guest was still running after " +
                                       std::to_string(m_timeout.count()) + " ms; stopped at " +
                                       where());
    } else if (signo == SIGTERM || signo == SIGINT) {
        stop(ExitStatus::kTerminated,
             std::string("stopped by ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT"));
    } else {
        // Some other signal interrupted KVM_RUN: carry on.
        m_vcpu.shared_run().immediate_exit = 0;
    }
}

void Machine::handle_exit() {
    const kvm_run& run = m_vcpu.shared_run();
    switch (run.exit_reason) {
    case KVM_EXIT_IO:
        handle_port_io();
        return;
    case KVM_EXIT_MMIO:
        handle_mmio();
        return;
    case KVM_EXIT_SHUTDOWN:
        stop(ExitStatus::kTripleFault, "guest triple fault (KVM_EXIT_SHUTDOWN) at " + where());
        return;
    case KVM_EXIT_INTERNAL_ERROR: {
        const std::uint32_t sub = run.internal.suberror;
        std::string message = "KVM internal error: suberror " + std::to_string(sub) + " (" +
                              internal_error_name(sub) + ") at " + where();
        const std::uint32_t ndata = std::min<std::uint32_t>(run.internal.ndata, 16);
        // Newer kernels append the bytes KVM failed on (struct
        // emulation_failure, an ABI overlay of `internal`); say so plainly.
        const auto& emu = run.emulation_failure;
        if (sub == KVM_INTERNAL_ERROR_EMULATION && ndata >= 3 &&
            (emu.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0) {
            const std::size_t size = std::min<std::size_t>(emu.insn_size, sizeof emu.insn_bytes);
            message += "; KVM's instruction bytes " +
                       format_bytes(std::span<const std::uint8_t>(emu.insn_bytes, size));
        } else if (ndata > 0) {
            message += "; data";
            for (std::uint32_t i = 0; i < ndata; ++i)
                message += " " + hex(run.internal.data[i]);
        }
        stop(ExitStatus::kInternalError, message);
        return;
    }
    case KVM_EXIT_FAIL_ENTRY:
        stop(ExitStatus::kFailEntry, "VM entry failed: hardware reason " +
                                         hex(run.fail_entry.hardware_entry_failure_reason) +
                                         " on host cpu " + std::to_string(run.fail_entry.cpu) +
                                         ", at " + where());
        return;
    case KVM_EXIT_HLT:
        // Only without an in-kernel irqchip, which pvkit-vmm always creates.
        wait_for_interrupt();
        return;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_RESET:
            stop(ExitStatus::kGuestReboot, "guest reset the machine");
            return;
        case KVM_SYSTEM_EVENT_CRASH:
            stop(ExitStatus::kGuestCrash, "guest reported a crash (KVM_SYSTEM_EVENT_CRASH)");
            return;
        default:
            stop(ExitStatus::kTripleFault, "guest shut down (KVM system event " +
                                               std::to_string(run.system_event.type) + ") at " +
                                               where());
            return;
        }
    case KVM_EXIT_INTR:
        handle_signal();
        return;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return;
    default:
        stop(ExitStatus::kVmmError, "unexpected KVM exit reason " +
                                        std::to_string(run.exit_reason) + " (" +
                                        exit_reason_name(run.exit_reason) + ") at " + where());
        return;
    }
}

void Machine::handle_port_io() {
    kvm_run& run = m_vcpu.shared_run();
    const auto& io = run.io;
    const bool write = io.direction == KVM_EXIT_IO_OUT;
    const std::uint64_t bytes = std::uint64_t{io.size} * io.count;
    // KVM puts the data inside the kvm_run mapping; check rather than trust.
    if ((io.size != 1 && io.size != 2 && io.size != 4) || io.count == 0 ||
        io.data_offset > m_vcpu.shared_run_size() ||
        bytes > m_vcpu.shared_run_size() - io.data_offset) {
        stop(ExitStatus::kVmmError, "malformed KVM_EXIT_IO: size " + std::to_string(io.size) +
                                        ", count " + std::to_string(io.count) + ", offset " +
                                        hex(io.data_offset));
        return;
    }
    // The data area is in the kvm_run page KVM shares with us (not guest RAM).
    std::byte* data = reinterpret_cast<std::byte*>(&run) + io.data_offset;
    // String I/O (rep outsb) arrives as `count` elements of `size` bytes.
    for (std::uint32_t i = 0; i < io.count && !m_stop; ++i) {
        const std::span<std::byte> element(data + std::size_t{i} * io.size, io.size);
        const IoBus::Range* range = m_ports.find(io.port, io.size);
        m_stats.count_io(IoSpace::kPort, io.port, write, range ? range->name : "");
        if (range == nullptr) {
            std::string message = std::string("unhandled port ") + (write ? "write" : "read") +
                                  ": port " + hex(io.port) + ", size " + std::to_string(io.size);
            if (write)
                message += ", value " + hex(little_endian_value(element));
            stop(ExitStatus::kUnhandledIo, message + ", at " + where());
            return;
        }
        if (!write)
            std::fill(element.begin(), element.end(), std::byte{0});
        const IoRequest request{IoSpace::kPort, io.port, io.port - range->base,
                                io.size,        write,   element};
        range->handler->access(request, *this);
    }
}

void Machine::handle_mmio() {
    kvm_run& run = m_vcpu.shared_run();
    auto& mmio = run.mmio;
    const bool write = mmio.is_write != 0;
    if (mmio.len == 0 || mmio.len > sizeof(mmio.data)) {
        stop(ExitStatus::kVmmError, "malformed KVM_EXIT_MMIO: length " + std::to_string(mmio.len));
        return;
    }
    const std::span<std::byte> data(reinterpret_cast<std::byte*>(mmio.data), mmio.len);
    const IoBus::Range* range = m_mmio.find(mmio.phys_addr, mmio.len);
    m_stats.count_io(IoSpace::kMmio, range ? range->base : mmio.phys_addr, write,
                     range ? range->name : "");
    if (range == nullptr) {
        std::string message = std::string("unhandled MMIO ") + (write ? "write" : "read") +
                              ": address " + hex(mmio.phys_addr) + ", size " +
                              std::to_string(mmio.len);
        if (write)
            message += ", value " + hex(little_endian_value(data));
        stop(ExitStatus::kUnhandledIo, message + ", at " + where());
        return;
    }
    if (!write)
        std::fill(data.begin(), data.end(), std::byte{0});
    const IoRequest request{IoSpace::kMmio, mmio.phys_addr, mmio.phys_addr - range->base,
                            mmio.len,       write,          data};
    range->handler->access(request, *this);
}

void Machine::stop(ExitStatus status, std::string message) {
    request_stop(RunOutcome{status, std::move(message)});
}

std::string Machine::where() const {
    return describe_vcpu(m_memory, m_vcpu);
}

// ---- ExitContext and SchedulerHooks --------------------------------------------

Result<kvm_regs, KvmError> Machine::regs() {
    return m_vcpu.regs();
}

Result<void, KvmError> Machine::set_regs(const kvm_regs& regs) {
    return m_vcpu.set_regs(regs);
}

void Machine::request_stop(RunOutcome outcome) {
    if (!m_stop)
        m_stop = std::move(outcome);
}

void Machine::yield() {
    ::sched_yield();
}

bool Machine::interrupt_pending() const {
    auto events = m_vcpu.events();
    if (events && (events->interrupt.injected != 0 || events->nmi.pending != 0))
        return true;
    auto lapic = m_vcpu.lapic();
    if (!lapic)
        return false;
    // The local APIC's IRR: eight 32-bit registers, 16 bytes apart, from 0x200.
    for (std::size_t i = 0; i < 8; ++i) {
        std::uint32_t irr = 0;
        std::memcpy(&irr, lapic->regs + 0x200 + i * 0x10, sizeof irr);
        if (irr != 0)
            return true;
    }
    return false;
}

void Machine::wait_for_interrupt() {
    // With the in-kernel irqchip KVM halts the vCPU itself and this never
    // runs; without it nothing here could wake us but a poll.
    while (g_signal == 0 && !interrupt_pending())
        ::poll(nullptr, 0, 1);
}

// ---- Statistics ------------------------------------------------------------------

nlohmann::json Machine::stats_json(const RunOutcome& outcome, std::uint64_t console_bytes) const {
    nlohmann::json j = m_stats.to_json(outcome, console_bytes);
    const EvtchnCounters& e = m_evtchn.counters();
    j["event_channels"] = {{"allocated", e.allocated},
                           {"closed", e.closed},
                           {"refused", e.refused},
                           {"connected", e.connected}};
    j["doorbell"] = m_doorbell.stats();
    nlohmann::json devices = nlohmann::json::array();
    for (const DevicePool& d : m_devices)
        devices.push_back({{"type", device_kind_name(d.device.type)},
                           {"devid", d.device.devid},
                           {"backend_domid", d.device.backend_domid},
                           {"pool_gpa", d.gpa},
                           {"pool_frames", d.pool.layout().nr_frames}});
    j["devices"] = devices;
    j["handoff"] = m_connector ? m_connector->stats() : nlohmann::json(nullptr);
    j["store"] = m_store_relay ? m_store_relay->stats() : nlohmann::json(nullptr);
    return j;
}

std::string Machine::summary() const {
    std::string out = m_stats.summary();
    const DoorbellCounters& d = m_doorbell.counters();
    if (d.dropped_unbound + d.dropped_malformed + d.reads != 0)
        out += "pvkit-vmm:   doorbell: " + std::to_string(d.dropped_unbound) +
               " writes of unbound ports dropped, " + std::to_string(d.dropped_malformed) +
               " malformed writes dropped, " + std::to_string(d.reads) + " reads\n";
    const EvtchnCounters& e = m_evtchn.counters();
    if (e.allocated != 0 || e.refused != 0)
        out += "pvkit-vmm:   event channels: " + std::to_string(e.allocated) + " allocated, " +
               std::to_string(e.closed) + " closed, " + std::to_string(e.refused) + " refused, " +
               std::to_string(e.connected) + " handed to backends\n";
    if (m_connector && m_connector->counters().attempts != 0) {
        const HandoffCounters& h = m_connector->counters();
        out += "pvkit-vmm:   device connects: " + std::to_string(h.accepted) + " accepted, " +
               std::to_string(h.refused) + " refused\n";
    }
    if (m_store_relay) {
        const StoreRelayCounters& c = m_store_relay->counters();
        const std::string reason = m_store_relay->disconnect_reason();
        out += "pvkit-vmm:   store ring: " + std::to_string(c.bytes_to_daemon.load()) +
               " bytes to pvkit-stored, " + std::to_string(c.bytes_to_guest.load()) +
               " bytes to the guest" +
               (reason.empty() ? std::string() : "; disconnected: " + reason) + "\n";
    }
    return out;
}

} // namespace pvkit::vmm
