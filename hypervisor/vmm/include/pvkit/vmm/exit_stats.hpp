// Counters of everything that made the vCPU leave the guest: per KVM exit
// reason, per port, per MMIO region, per hypercall; plus the POST codes the
// guest wrote (boot milestones with their time and exit count). Printed at
// exit and written as JSON with --stats-json (format in docs/vmm.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pvkit/vmm/exit_status.hpp"
#include "pvkit/vmm/io_bus.hpp"

namespace pvkit::vmm {

struct IoCounter {
    std::string device; // "" for an access no device claimed
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
};

struct HypercallCounter {
    std::uint64_t calls = 0;
    std::uint64_t errors = 0; // results in [-4095, -1]
};

struct PostCodeRecord {
    std::uint8_t code = 0;
    std::uint64_t exits = 0;   // exits before this one
    std::uint64_t time_ns = 0; // since the first KVM_RUN
};

// "io", "mmio", "shutdown", ... for a KVM_EXIT_* number.
std::string exit_reason_name(std::uint32_t reason);

class ExitStats {
public:
    static constexpr std::size_t kMaxPostCodes = 256;

    void set_setup_time(std::chrono::nanoseconds setup) { m_setup = setup; }
    // Time zero: just before the first KVM_RUN.
    void start_clock();
    void stop_clock();

    void count_exit(std::uint32_t kvm_exit_reason);
    void count_io(IoSpace space, std::uint64_t key, bool write, std::string_view device);
    void count_hypercall(std::uint64_t nr, std::int64_t result);
    void record_post_code(std::uint8_t code);

    [[nodiscard]] std::uint64_t total_exits() const { return m_total; }
    [[nodiscard]] std::uint64_t exits(std::string_view reason) const;
    [[nodiscard]] const std::map<std::uint64_t, IoCounter>& ports() const { return m_ports; }
    [[nodiscard]] const std::map<std::uint64_t, IoCounter>& mmio() const { return m_mmio; }
    [[nodiscard]] const std::map<std::uint64_t, HypercallCounter>& hypercalls() const {
        return m_hypercalls;
    }
    [[nodiscard]] const std::vector<PostCodeRecord>& post_codes() const { return m_post_codes; }
    [[nodiscard]] std::chrono::nanoseconds run_time() const;

    // The --stats-json document.
    [[nodiscard]] nlohmann::json to_json(const RunOutcome& outcome,
                                         std::uint64_t console_bytes) const;
    // Lines for stderr, each starting with "pvkit-vmm: ".
    [[nodiscard]] std::string summary() const;

private:
    std::uint64_t m_total = 0;
    std::map<std::string, std::uint64_t, std::less<>> m_by_reason;
    std::map<std::uint64_t, IoCounter> m_ports; // by port
    std::map<std::uint64_t, IoCounter> m_mmio;  // by region base, or address if unclaimed
    std::map<std::uint64_t, HypercallCounter> m_hypercalls;
    std::vector<PostCodeRecord> m_post_codes;
    std::uint64_t m_post_codes_dropped = 0;
    std::chrono::nanoseconds m_setup{0};
    std::chrono::steady_clock::time_point m_start{};
    std::chrono::steady_clock::time_point m_stop{};
    bool m_started = false;
    bool m_stopped = false;
};

} // namespace pvkit::vmm
