#include "pvkit/vmm/exit_stats.hpp"

#include <cstdio>

#include "pvkit/vmm/hypercall.hpp"

namespace pvkit::vmm {

namespace {

std::string hex(std::uint64_t value, int width = 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%0*llx", width, static_cast<unsigned long long>(value));
    return buf;
}

bool is_error_result(std::int64_t result) {
    return result >= -4095 && result <= -1;
}

} // namespace

std::string exit_reason_name(std::uint32_t reason) {
    switch (reason) {
    case KVM_EXIT_IO:
        return "io";
    case KVM_EXIT_MMIO:
        return "mmio";
    case KVM_EXIT_HLT:
        return "hlt";
    case KVM_EXIT_SHUTDOWN:
        return "shutdown";
    case KVM_EXIT_INTERNAL_ERROR:
        return "internal_error";
    case KVM_EXIT_FAIL_ENTRY:
        return "fail_entry";
    case KVM_EXIT_INTR:
        return "intr";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return "irq_window_open";
    case KVM_EXIT_SYSTEM_EVENT:
        return "system_event";
    case KVM_EXIT_DEBUG:
        return "debug";
    case KVM_EXIT_EXCEPTION:
        return "exception";
    default:
        return "reason_" + std::to_string(reason);
    }
}

void ExitStats::start_clock() {
    m_start = std::chrono::steady_clock::now();
    m_started = true;
}

void ExitStats::stop_clock() {
    m_stop = std::chrono::steady_clock::now();
    m_stopped = true;
}

std::chrono::nanoseconds ExitStats::run_time() const {
    if (!m_started)
        return std::chrono::nanoseconds{0};
    const auto end = m_stopped ? m_stop : std::chrono::steady_clock::now();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(end - m_start);
}

void ExitStats::count_exit(std::uint32_t kvm_exit_reason) {
    ++m_total;
    const std::string name = exit_reason_name(kvm_exit_reason);
    auto it = m_by_reason.find(name);
    if (it == m_by_reason.end())
        m_by_reason.emplace(name, 1);
    else
        ++it->second;
}

std::uint64_t ExitStats::exits(std::string_view reason) const {
    auto it = m_by_reason.find(reason);
    return it == m_by_reason.end() ? 0 : it->second;
}

void ExitStats::count_io(IoSpace space, std::uint64_t key, bool write, std::string_view device) {
    auto& table = space == IoSpace::kPort ? m_ports : m_mmio;
    IoCounter& c = table[key];
    if (c.device.empty())
        c.device = device;
    ++(write ? c.writes : c.reads);
}

void ExitStats::count_hypercall(std::uint64_t nr, std::int64_t result) {
    HypercallCounter& c = m_hypercalls[nr];
    ++c.calls;
    if (is_error_result(result))
        ++c.errors;
}

void ExitStats::record_post_code(std::uint8_t code) {
    if (m_post_codes.size() >= kMaxPostCodes) {
        ++m_post_codes_dropped;
        return;
    }
    // `m_total` already counts the exit that carried this code.
    m_post_codes.push_back(PostCodeRecord{code, m_total == 0 ? 0 : m_total - 1,
                                          static_cast<std::uint64_t>(run_time().count())});
}

nlohmann::json ExitStats::to_json(const RunOutcome& outcome, std::uint64_t console_bytes) const {
    using nlohmann::json;
    json by_reason = json::object();
    for (const auto& [name, count] : m_by_reason)
        by_reason[name] = count;
    auto io_list = [](const std::map<std::uint64_t, IoCounter>& table, const char* key) {
        json list = json::array();
        for (const auto& [address, c] : table)
            list.push_back({{key, address},
                            {"device", c.device.empty() ? json(nullptr) : json(c.device)},
                            {"reads", c.reads},
                            {"writes", c.writes}});
        return list;
    };
    json hypercalls = json::array();
    for (const auto& [nr, c] : m_hypercalls)
        hypercalls.push_back(
            {{"nr", nr}, {"name", hypercall_name(nr)}, {"calls", c.calls}, {"errors", c.errors}});
    json post = json::array();
    for (const PostCodeRecord& p : m_post_codes)
        post.push_back({{"code", p.code}, {"exits", p.exits}, {"time_ns", p.time_ns}});
    return json{
        {"format", "pvkit-vmm-stats/1"},
        {"outcome",
         {{"status", static_cast<int>(outcome.status)},
          {"reason", to_string(outcome.status)},
          {"message", outcome.message}}},
        {"time_ns",
         {{"setup", static_cast<std::uint64_t>(m_setup.count())},
          {"run", static_cast<std::uint64_t>(run_time().count())}}},
        {"exits", {{"total", m_total}, {"by_reason", by_reason}}},
        {"ports", io_list(m_ports, "port")},
        {"mmio", io_list(m_mmio, "address")},
        {"hypercalls", hypercalls},
        {"post_codes", post},
        {"post_codes_dropped", m_post_codes_dropped},
        {"console_bytes", console_bytes},
    };
}

std::string ExitStats::summary() const {
    std::string out;
    char line[160];
    std::snprintf(line, sizeof line, "pvkit-vmm: %llu exits in %.3f s of guest run time\n",
                  static_cast<unsigned long long>(m_total),
                  static_cast<double>(run_time().count()) / 1e9);
    out += line;
    std::string reasons;
    for (const auto& [name, count] : m_by_reason)
        reasons += (reasons.empty() ? "" : ", ") + name + " " + std::to_string(count);
    if (!reasons.empty())
        out += "pvkit-vmm:   by reason: " + reasons + "\n";
    for (const auto& [port, c] : m_ports)
        out += "pvkit-vmm:   port " + hex(port, 4) + " (" +
               (c.device.empty() ? std::string("unclaimed") : c.device) +
               "): " + std::to_string(c.writes) + " writes, " + std::to_string(c.reads) +
               " reads\n";
    for (const auto& [address, c] : m_mmio)
        out += "pvkit-vmm:   mmio " + hex(address) + " (" +
               (c.device.empty() ? std::string("unclaimed") : c.device) +
               "): " + std::to_string(c.writes) + " writes, " + std::to_string(c.reads) +
               " reads\n";
    std::string calls;
    for (const auto& [nr, c] : m_hypercalls) {
        calls += (calls.empty() ? "" : ", ") + std::string(hypercall_name(nr)) + " " +
                 std::to_string(c.calls);
        if (c.errors != 0)
            calls += " (" + std::to_string(c.errors) + " failed)";
    }
    if (!calls.empty())
        out += "pvkit-vmm:   hypercalls: " + calls + "\n";
    return out;
}

} // namespace pvkit::vmm
