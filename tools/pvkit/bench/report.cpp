#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace pvkit::bench {

namespace {
std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}
} // namespace

Stats Stats::of(std::vector<double> samples) {
    Stats s;
    if (samples.empty())
        return s;
    std::sort(samples.begin(), samples.end());
    s.min = samples.front();
    s.max = samples.back();
    std::size_t n = samples.size();
    s.median = n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    return s;
}

double BenchResult::ratio() const {
    double num = higher_is_better ? pvkit.median : baseline.median;
    double den = higher_is_better ? baseline.median : pvkit.median;
    if (den <= 0)
        return num > 0 ? std::numeric_limits<double>::infinity() : 0.0;
    return num / den;
}

nlohmann::json BenchReport::to_json() const {
    nlohmann::json results_json = nlohmann::json::array();
    for (const BenchResult& r : results) {
        nlohmann::json j;
        j["name"] = r.name;
        j["unit"] = r.unit;
        j["pvkit"] = r.pvkit.median;
        j["baseline"] = r.baseline.median;
        j["baseline_name"] = r.baseline_name;
        double ratio = r.ratio();
        // JSON has no infinity; a zero-cost pvkit figure reports null.
        j["ratio"] = std::isfinite(ratio) ? nlohmann::json(ratio) : nlohmann::json();
        j["higher_is_better"] = r.higher_is_better;
        j["pvkit_min"] = r.pvkit.min;
        j["pvkit_max"] = r.pvkit.max;
        j["baseline_min"] = r.baseline.min;
        j["baseline_max"] = r.baseline.max;
        if (r.goal) {
            j["goal"] = r.goal->description;
            j["goal_met"] = r.goal->met;
        }
        if (!r.note.empty())
            j["note"] = r.note;
        if (!r.details.empty())
            j["details"] = r.details;
        results_json.push_back(std::move(j));
    }
    return {{"suite", suite}, {"results", results_json}, {"config", config}};
}

void BenchReport::print_human(std::ostream& out) const {
    out << "pvkit bench " << suite << "\n";
    char line[512];
    std::snprintf(line, sizeof line, "  %-30s %-10s %12s %12s  %-22s %7s  %s\n", "result", "unit",
                  "pvkit", "baseline", "baseline is", "ratio", "goal");
    out << line;
    for (const BenchResult& r : results) {
        std::string goal = r.goal ? r.goal->description + (r.goal->met ? " (met)" : " (MISSED)") : "";
        std::snprintf(line, sizeof line, "  %-30s %-10s %12.4g %12.4g  %-22s %7.3f  %s\n",
                      r.name.c_str(), r.unit.c_str(), r.pvkit.median, r.baseline.median,
                      r.baseline_name.c_str(), r.ratio(), goal.c_str());
        out << line;
        std::snprintf(line, sizeof line, "  %-30s %-10s %12s %12s\n", "", "min..max",
                      (fmt(r.pvkit.min) + ".." + fmt(r.pvkit.max)).c_str(),
                      (fmt(r.baseline.min) + ".." + fmt(r.baseline.max)).c_str());
        out << line;
        if (!r.note.empty())
            out << "    " << r.note << "\n";
    }
}

bool BenchReport::goals_met() const {
    return std::all_of(results.begin(), results.end(),
                       [](const BenchResult& r) { return !r.goal || r.goal->met; });
}

} // namespace pvkit::bench
