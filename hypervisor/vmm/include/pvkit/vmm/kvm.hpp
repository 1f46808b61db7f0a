// Small owning types over the KVM API: the /dev/kvm handle (`Kvm`), one VM
// (`Vm`) and one virtual CPU (`Vcpu`).
//
// Set-up calls (opening /dev/kvm, creating the VM and its vCPUs, memory
// slots) throw: they run once at start-up and their failure ends the
// process with one clear message. Calls made while the guest runs return
// Result<T, KvmError> so that the run loop can turn a failure into an exit
// status instead of unwinding through device code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "pvkit/transport/result.hpp"
#include "pvkit/transport/unique_fd.hpp"
#include "pvkit/vmm/kvm_uapi.hpp"

namespace pvkit::vmm {

// A KVM ioctl that failed while the guest was running: which call and errno.
struct KvmError {
    const char* call = "";
    int err = 0;
};
std::string to_string(const KvmError& error);

// /dev/kvm is missing, unusable, or lacks a capability pvkit needs. The
// message names what is missing and why pvkit needs it.
class KvmUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A capability pvkit-vmm refuses to start without.
struct RequiredCapability {
    int id;           // KVM_CAP_*
    const char* name; // "KVM_CAP_IRQFD"
    const char* why;  // what pvkit uses it for
};
std::span<const RequiredCapability> required_capabilities();

class Vm;
class Vcpu;

class Kvm {
public:
    // Opens `path`, checks the API version and every required capability.
    // Throws KvmUnavailable naming everything that is missing at once.
    static Kvm open(const std::string& path = "/dev/kvm");

    [[nodiscard]] int fd() const { return m_fd.get(); }
    [[nodiscard]] std::size_t vcpu_mmap_size() const { return m_vcpu_mmap_size; }
    // KVM_CHECK_EXTENSION; 0 when absent.
    [[nodiscard]] int check_extension(int capability) const;
    // KVM_GET_SUPPORTED_CPUID. Throws std::system_error.
    [[nodiscard]] std::vector<kvm_cpuid_entry2> supported_cpuid() const;
    // KVM_CREATE_VM. Throws std::system_error.
    [[nodiscard]] Vm create_vm() const;

private:
    Kvm(UniqueFd fd, std::size_t vcpu_mmap_size)
        : m_fd(std::move(fd)), m_vcpu_mmap_size(vcpu_mmap_size) {}

    UniqueFd m_fd;
    std::size_t m_vcpu_mmap_size;
};

class Vm {
public:
    [[nodiscard]] int fd() const { return m_fd.get(); }

    // KVM_SET_USER_MEMORY_REGION. `host_addr` is the start of a mapping of
    // `size` bytes that outlives the VM. Throws std::system_error.
    void set_user_memory(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                         std::uint64_t host_addr);
    // KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and local APICs. Must come
    // before the first vCPU. Throws std::system_error.
    void create_irqchip();
    // KVM_CREATE_VCPU and the mapping of its kvm_run page. Throws.
    [[nodiscard]] Vcpu create_vcpu(std::uint32_t id);

    // The calls below run while the guest runs (event-channel hypercalls),
    // so they report failures instead of throwing.

    // KVM_SET_GSI_ROUTING: replaces the whole routing table with `entries`.
    Result<void, KvmError> set_gsi_routing(std::span<const kvm_irq_routing_entry> entries);
    // KVM_IOEVENTFD: assign (or, with KVM_IOEVENTFD_FLAG_DEASSIGN in
    // `request.flags`, remove) an eventfd signalled by guest writes.
    Result<void, KvmError> ioeventfd(const kvm_ioeventfd& request);
    // KVM_IRQFD: assign (or, with KVM_IRQFD_FLAG_DEASSIGN, remove) an
    // eventfd that injects a GSI when signalled.
    Result<void, KvmError> irqfd(const kvm_irqfd& request);

private:
    friend class Kvm;
    Vm(UniqueFd fd, std::size_t vcpu_mmap_size)
        : m_fd(std::move(fd)), m_vcpu_mmap_size(vcpu_mmap_size) {}

    UniqueFd m_fd;
    std::size_t m_vcpu_mmap_size;
};

class Vcpu {
public:
    Vcpu(Vcpu&& other) noexcept;
    Vcpu& operator=(Vcpu&&) = delete;
    Vcpu(const Vcpu&) = delete;
    Vcpu& operator=(const Vcpu&) = delete;
    ~Vcpu();

    [[nodiscard]] int fd() const { return m_fd.get(); }
    [[nodiscard]] std::uint32_t id() const { return m_id; }

    // The kvm_run page KVM shares with this process. The kernel writes it
    // during KVM_RUN; it is not guest memory.
    [[nodiscard]] kvm_run& shared_run() const { return *m_run; }
    // Size of the kvm_run mapping: bounds every offset KVM reports in it.
    [[nodiscard]] std::size_t shared_run_size() const { return m_run_size; }

    // KVM_RUN. EINTR (a signal arrived, see Machine's timeout) comes back as
    // an error like any other; the caller decides.
    Result<void, KvmError> run();

    Result<kvm_regs, KvmError> regs() const;
    Result<void, KvmError> set_regs(const kvm_regs& regs);
    Result<kvm_sregs, KvmError> sregs() const;
    Result<void, KvmError> set_sregs(const kvm_sregs& sregs);
    Result<void, KvmError> set_cpuid(std::span<const kvm_cpuid_entry2> entries);
    Result<kvm_lapic_state, KvmError> lapic() const;
    Result<kvm_vcpu_events, KvmError> events() const;

private:
    friend class Vm;
    Vcpu(UniqueFd fd, std::uint32_t id, kvm_run* run, std::size_t run_size)
        : m_fd(std::move(fd)), m_id(id), m_run(run), m_run_size(run_size) {}

    UniqueFd m_fd;
    std::uint32_t m_id;
    kvm_run* m_run;
    std::size_t m_run_size;
};

} // namespace pvkit::vmm
