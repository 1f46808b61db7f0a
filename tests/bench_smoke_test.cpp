// Runs `pvkit bench ring --quick --json` as a user would and checks the
// shared benchmark JSON shape. Figures are not judged here: timing belongs
// to the benchmark, never to a test.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

#include <cmath>
#include <cstdio>
#include <string>

using pvkit::test::CommandResult;
using pvkit::test::run_command;

TEST_CASE("pvkit bench ring --json prints the shared result shape", "[bench]") {
    CommandResult run = run_command(std::string(PVKIT_CLI) + " bench ring --quick --json");
    INFO(run.err);
    REQUIRE(run.status == 0);
    nlohmann::json j = nlohmann::json::parse(run.out);
    CHECK(j.at("suite") == "ring");
    const auto& results = j.at("results");
    REQUIRE(results.is_array());
    std::vector<std::string> names;
    for (const auto& r : results) {
        names.push_back(r.at("name").get<std::string>());
        CHECK(r.at("unit").is_string());
        CHECK(r.at("baseline_name").is_string());
        double pvkit = r.at("pvkit").get<double>();
        double baseline = r.at("baseline").get<double>();
        CHECK(pvkit >= 0);
        CHECK(baseline > 0);
        CHECK(r.at("pvkit_min").get<double>() <= pvkit);
        CHECK(r.at("pvkit_max").get<double>() >= pvkit);
        // ratio is oriented so that higher is better.
        if (!r.at("ratio").is_null() && pvkit > 0) {
            double expect = r.at("higher_is_better").get<bool>() ? pvkit / baseline : baseline / pvkit;
            CHECK(std::fabs(r.at("ratio").get<double>() - expect) <= 1e-9 * std::fabs(expect));
        }
    }
    std::vector<std::string> expected = {"rr_throughput_polling", "rr_throughput_holdoff",
                                         "notifications_per_request", "roundtrip_latency_blocking",
                                         "roundtrip_latency_spin"};
    CHECK(names == expected);
}

TEST_CASE("pvkit bench ring rejects bad options with one line and non-zero status", "[bench]") {
    CommandResult run = run_command(std::string(PVKIT_CLI) + " bench ring --batch 0");
    CHECK(run.status > 0);
    CHECK(run.out.empty());
    CHECK(run.err.find("--batch") != std::string::npos);
}
