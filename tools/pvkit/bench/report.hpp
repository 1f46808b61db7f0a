// The shared result shape of every `pvkit bench` suite:
//   {"suite": "...", "results": [{"name", "unit", "pvkit", "baseline",
//    "baseline_name", "ratio", ...}], "config": {...}}
// ratio is oriented so that higher is better: pvkit/baseline for
// throughputs, baseline/pvkit for latencies and costs.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace pvkit::bench {

// min/median/max of repeated measurements; the median is the headline.
struct Stats {
    double min = 0;
    double median = 0;
    double max = 0;
    static Stats of(std::vector<double> samples);
};

struct Goal {
    std::string description; // e.g. "ratio >= 0.5"
    bool met = false;
};

struct BenchResult {
    std::string name;
    std::string unit;
    bool higher_is_better = true;
    Stats pvkit;
    Stats baseline;
    std::string baseline_name;
    std::optional<Goal> goal;
    std::string note;
    // Suite-specific figures behind the headline (latencies, counters),
    // printed as "details" when not empty.
    nlohmann::json details = nlohmann::json::object();

    [[nodiscard]] double ratio() const;
};

struct BenchReport {
    std::string suite;
    std::vector<BenchResult> results;
    nlohmann::json config = nlohmann::json::object();

    [[nodiscard]] nlohmann::json to_json() const;
    void print_human(std::ostream& out) const;
    // True if every result with a goal met it.
    [[nodiscard]] bool goals_met() const;
};

} // namespace pvkit::bench
