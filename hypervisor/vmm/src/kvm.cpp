#include "pvkit/vmm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <utility>

namespace pvkit::vmm {

namespace {

constexpr std::array kRequired{
    RequiredCapability{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY",
                       "guest RAM is a memfd mapped with KVM_SET_USER_MEMORY_REGION"},
    RequiredCapability{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP",
                       "an in-kernel local APIC delivers event-channel interrupts"},
    RequiredCapability{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD",
                       "doorbell writes reach backends without a VMM exit"},
    RequiredCapability{KVM_CAP_IRQFD, "KVM_CAP_IRQFD",
                       "backends inject event-channel interrupts without the VMM"},
    RequiredCapability{KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING",
                       "each event-channel port is an MSI route to the vector the guest chose"},
    RequiredCapability{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID",
                       "KVM_SET_CPUID2 announces pvkit's CPUID leaves"},
    RequiredCapability{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT",
                       "--timeout and SIGTERM stop a running vCPU without a race"},
};

// Every ioctl here is retried on EINTR except KVM_RUN, whose EINTR is a
// message (a signal wants the run loop's attention).
template <class... Args> int xioctl(int fd, unsigned long request, Args... args) {
    int r;
    do {
        r = ::ioctl(fd, request, args...);
    } while (r < 0 && errno == EINTR);
    return r;
}

template <class T> Result<T, KvmError> get(int fd, unsigned long request, const char* call) {
    T value{};
    if (xioctl(fd, request, &value) < 0)
        return Unexpected{KvmError{call, errno}};
    return value;
}

template <class T>
Result<void, KvmError> set(int fd, unsigned long request, const T& value, const char* call) {
    if (xioctl(fd, request, &value) < 0)
        return Unexpected{KvmError{call, errno}};
    return {};
}

// kvm_cpuid2 ends in a flexible array: the entries live in one buffer right
// behind the header. A vector of 8-byte words keeps the buffer aligned for
// both structures.
class CpuidBuffer {
public:
    explicit CpuidBuffer(std::size_t nent)
        : m_words((sizeof(kvm_cpuid2) + nent * sizeof(kvm_cpuid_entry2) + 7) / 8) {
        header()->nent = static_cast<std::uint32_t>(nent);
    }
    kvm_cpuid2* header() { return reinterpret_cast<kvm_cpuid2*>(m_words.data()); }
    kvm_cpuid_entry2* entries() { return header()->entries; }

private:
    std::vector<std::uint64_t> m_words;
};

} // namespace

std::string to_string(const KvmError& error) {
    return std::string(error.call) + ": " + std::strerror(error.err);
}

std::span<const RequiredCapability> required_capabilities() {
    return kRequired;
}

Kvm Kvm::open(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) {
        const int err = errno;
        std::string msg = "cannot open " + path + ": " + std::strerror(err);
        if (err == ENOENT)
            msg += " (is the kvm module loaded, or is this host without virtualization?)";
        else if (err == EACCES || err == EPERM)
            msg += " (add the user to the kvm group or run as root)";
        throw KvmUnavailable(msg);
    }
    const int version = xioctl(fd.get(), KVM_GET_API_VERSION, 0);
    if (version < 0)
        throw KvmUnavailable(
            path + " is not a KVM device: KVM_GET_API_VERSION failed: " + std::strerror(errno));
    if (version != KVM_API_VERSION)
        throw KvmUnavailable(path + ": KVM API version " + std::to_string(version) +
                             ", pvkit-vmm needs " + std::to_string(KVM_API_VERSION));
    std::string missing;
    for (const RequiredCapability& cap : kRequired) {
        if (xioctl(fd.get(), KVM_CHECK_EXTENSION, cap.id) <= 0)
            missing += std::string("\n  ") + cap.name + " (" + cap.why + ")";
    }
    if (!missing.empty())
        throw KvmUnavailable(path + " lacks capabilities pvkit-vmm requires:" + missing);
    const int mmap_size = xioctl(fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < static_cast<int>(sizeof(kvm_run)))
        throw KvmUnavailable(path + ": KVM_GET_VCPU_MMAP_SIZE returned " +
                             std::to_string(mmap_size));
    return Kvm(std::move(fd), static_cast<std::size_t>(mmap_size));
}

int Kvm::check_extension(int capability) const {
    const int r = xioctl(m_fd.get(), KVM_CHECK_EXTENSION, capability);
    return r < 0 ? 0 : r;
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    // The kernel answers E2BIG while the buffer is too small; grow until it fits.
    for (std::size_t nent = 64; nent <= 4096; nent *= 2) {
        CpuidBuffer buf(nent);
        if (xioctl(m_fd.get(), KVM_GET_SUPPORTED_CPUID, buf.header()) == 0) {
            const std::size_t n = buf.header()->nent;
            return {buf.entries(), buf.entries() + n};
        }
        if (errno != E2BIG)
            throw_errno("KVM_GET_SUPPORTED_CPUID");
    }
    throw std::system_error(E2BIG, std::generic_category(), "KVM_GET_SUPPORTED_CPUID");
}

Vm Kvm::create_vm() const {
    UniqueFd vm(xioctl(m_fd.get(), KVM_CREATE_VM, 0));
    if (!vm.valid())
        throw_errno("KVM_CREATE_VM");
    return Vm(std::move(vm), m_vcpu_mmap_size);
}

void Vm::set_user_memory(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                         std::uint64_t host_addr) {
    kvm_userspace_memory_region region{};
    region.slot = slot;
    region.guest_phys_addr = gpa;
    region.memory_size = size;
    region.userspace_addr = host_addr;
    if (xioctl(m_fd.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
        throw_errno("KVM_SET_USER_MEMORY_REGION");
}

void Vm::create_irqchip() {
    if (xioctl(m_fd.get(), KVM_CREATE_IRQCHIP, 0) < 0)
        throw_errno("KVM_CREATE_IRQCHIP");
}

Vcpu Vm::create_vcpu(std::uint32_t id) {
    UniqueFd fd(xioctl(m_fd.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id)));
    if (!fd.valid())
        throw_errno("KVM_CREATE_VCPU");
    void* run = ::mmap(nullptr, m_vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (run == MAP_FAILED)
        throw_errno("mmap of the vCPU's kvm_run page");
    return Vcpu(std::move(fd), id, static_cast<kvm_run*>(run), m_vcpu_mmap_size);
}

Result<void, KvmError> Vm::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) {
    // kvm_irq_routing ends in a flexible array: header and entries in one
    // buffer of 8-byte words, aligned for both (see CpuidBuffer).
    std::vector<std::uint64_t> words((sizeof(kvm_irq_routing) + entries.size_bytes() + 7) /
                                     sizeof(std::uint64_t));
    auto* table = reinterpret_cast<kvm_irq_routing*>(words.data());
    table->nr = static_cast<std::uint32_t>(entries.size());
    table->flags = 0;
    if (!entries.empty())
        std::memcpy(table->entries, entries.data(), entries.size_bytes());
    if (xioctl(m_fd.get(), KVM_SET_GSI_ROUTING, table) < 0)
        return Unexpected{KvmError{"KVM_SET_GSI_ROUTING", errno}};
    return {};
}

Result<void, KvmError> Vm::ioeventfd(const kvm_ioeventfd& request) {
    return set(m_fd.get(), KVM_IOEVENTFD, request, "KVM_IOEVENTFD");
}

Result<void, KvmError> Vm::irqfd(const kvm_irqfd& request) {
    return set(m_fd.get(), KVM_IRQFD, request, "KVM_IRQFD");
}

Vcpu::Vcpu(Vcpu&& other) noexcept
    : m_fd(std::move(other.m_fd)), m_id(other.m_id), m_run(std::exchange(other.m_run, nullptr)),
      m_run_size(other.m_run_size) {}

Vcpu::~Vcpu() {
    if (m_run != nullptr)
        ::munmap(m_run, m_run_size);
}

Result<void, KvmError> Vcpu::run() {
    if (::ioctl(m_fd.get(), KVM_RUN, 0) < 0)
        return Unexpected{KvmError{"KVM_RUN", errno}};
    return {};
}

Result<kvm_regs, KvmError> Vcpu::regs() const {
    return get<kvm_regs>(m_fd.get(), KVM_GET_REGS, "KVM_GET_REGS");
}

Result<void, KvmError> Vcpu::set_regs(const kvm_regs& regs) {
    return set(m_fd.get(), KVM_SET_REGS, regs, "KVM_SET_REGS");
}

Result<kvm_sregs, KvmError> Vcpu::sregs() const {
    return get<kvm_sregs>(m_fd.get(), KVM_GET_SREGS, "KVM_GET_SREGS");
}

Result<void, KvmError> Vcpu::set_sregs(const kvm_sregs& sregs) {
    return set(m_fd.get(), KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
}

Result<void, KvmError> Vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
    CpuidBuffer buf(entries.size());
    std::memcpy(buf.entries(), entries.data(), entries.size_bytes());
    if (xioctl(m_fd.get(), KVM_SET_CPUID2, buf.header()) < 0)
        return Unexpected{KvmError{"KVM_SET_CPUID2", errno}};
    return {};
}

Result<kvm_lapic_state, KvmError> Vcpu::lapic() const {
    return get<kvm_lapic_state>(m_fd.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC");
}

Result<kvm_vcpu_events, KvmError> Vcpu::events() const {
    return get<kvm_vcpu_events>(m_fd.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}

} // namespace pvkit::vmm
