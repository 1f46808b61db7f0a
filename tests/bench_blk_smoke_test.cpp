// Runs `pvkit bench blk --json` with tiny settings as a user would and checks
// the shared benchmark JSON shape, that every figure is there against both
// baselines with positive values, and that the notification counters were
// collected. Figures are not judged: timing belongs to the benchmark, never
// to a test.
//
// The benchmark needs fio and nbdkit (Debian packages of the same names,
// which tools/install-deps.sh installs). Without them the benchmark must
// fail with one line naming the package, which one test checks by pointing
// --fio-binary nowhere. The shape test fails when either is missing: the
// test command installs them, so a missing one is a broken setup.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using pvkit::test::CommandResult;
using pvkit::test::run_command;

bool installed(const char* path) {
    return ::access(path, X_OK) == 0;
}

// 1 round of 0.1 s per measurement on a 4 MiB image: 6 figures x 3
// systems, a few seconds in all (also under ASan).
const std::string kTiny = " bench blk --json --rounds 1 --seconds 0.1 --size 4M";

} // namespace

TEST_CASE("pvkit bench blk --json prints every figure against both baselines", "[bench]") {
    if (!installed("/usr/bin/fio") || !installed("/usr/bin/nbdkit")) {
        FAIL("fio or nbdkit is missing; run tools/install-deps.sh (fio, nbdkit)");
    }
    CommandResult run = run_command(std::string(PVKIT_CLI) + kTiny);
    INFO(run.err);
    REQUIRE(run.status == 0);
    nlohmann::json j = nlohmann::json::parse(run.out);
    CHECK(j.at("suite") == "blk");
    const auto& config = j.at("config");
    CHECK(config.at("rounds") == 1);
    CHECK(config.at("size") == 4 * 1024 * 1024);
    CHECK(config.at("cache") == "page-cache");
    CHECK(config.at("fio_version").get<std::string>().rfind("fio", 0) == 0);
    CHECK(config.at("nbdkit_version").get<std::string>().rfind("nbdkit", 0) == 0);
    const auto& results = j.at("results");
    REQUIRE(results.is_array());
    std::vector<std::string> names;
    for (const auto& r : results) {
        const std::string name = r.at("name").get<std::string>();
        INFO(name);
        names.push_back(name);
        const bool vs_fio = name.ends_with("_vs_fio");
        const std::string unit = r.at("unit").get<std::string>();
        CHECK(unit == (name.find("_128k_") != std::string::npos ? "MiB/s" : "IOPS"));
        CHECK(r.at("higher_is_better") == true);
        const std::string baseline_name = r.at("baseline_name").get<std::string>();
        CHECK(baseline_name.rfind(vs_fio ? "fio" : "nbdkit", 0) == 0);
        const double pvkit = r.at("pvkit").get<double>();
        const double baseline = r.at("baseline").get<double>();
        CHECK(pvkit > 0);
        CHECK(baseline > 0);
        CHECK(r.at("pvkit_min").get<double>() <= pvkit);
        CHECK(r.at("pvkit_max").get<double>() >= pvkit);
        CHECK(r.at("baseline_min").get<double>() <= baseline);
        CHECK(r.at("baseline_max").get<double>() >= baseline);
        REQUIRE(r.at("ratio").is_number());
        const double expect = pvkit / baseline;
        CHECK(std::fabs(r.at("ratio").get<double>() - expect) <= 1e-9 * std::fabs(expect));
        CHECK(r.at("goal").get<std::string>() == (vs_fio ? "ratio >= 0.9" : "ratio >= 1.0"));
        CHECK(r.at("goal_met").is_boolean());
        const auto& d = r.at("details");
        CHECK(d.at("pvkit_latency_p50_us").at("median").get<double>() > 0);
        CHECK(d.at("baseline_latency_mean_us").at("median").get<double>() > 0);
        const auto& n = d.at("pvkit_notifications_per_request");
        CHECK(n.at("kicks_both_directions").at("median").get<double>() >= 0);
        CHECK(n.at("frontend_sent").at("median").get<double>() >= 0);
        CHECK(n.at("backend_sent").at("median").get<double>() >= 0);
        // blkback's counters of the run reached the store.
        CHECK(n.at("backend_counters_complete") == true);
    }
    const std::vector<std::string> expected = {
        "randread_4k_qd1_vs_fio",     "randread_4k_qd1_vs_nbdkit",   "randwrite_4k_qd1_vs_fio",
        "randwrite_4k_qd1_vs_nbdkit", "randread_4k_qd32_vs_fio",     "randread_4k_qd32_vs_nbdkit",
        "randwrite_4k_qd32_vs_fio",   "randwrite_4k_qd32_vs_nbdkit", "read_128k_qd32_vs_fio",
        "read_128k_qd32_vs_nbdkit",   "write_128k_qd32_vs_fio",      "write_128k_qd32_vs_nbdkit"};
    CHECK(names == expected);
}

TEST_CASE("pvkit bench blk without fio fails with one line naming the package", "[bench]") {
    CommandResult run =
        run_command(std::string(PVKIT_CLI) + kTiny + " --fio-binary /nonexistent/fio");
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err.find("--fio-binary") != std::string::npos);
    CHECK(run.err.find("apt-get install fio") != std::string::npos);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
}

TEST_CASE("pvkit bench blk without nbdkit fails with one line naming the package", "[bench]") {
    CommandResult run =
        run_command(std::string(PVKIT_CLI) + kTiny + " --nbdkit-binary /nonexistent/nbdkit");
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err.find("apt-get install nbdkit") != std::string::npos);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
}

TEST_CASE("pvkit bench blk rejects bad options with one line and non-zero status", "[bench]") {
    CommandResult run = run_command(std::string(PVKIT_CLI) + " bench blk --rounds 0");
    CHECK(run.status > 0);
    CHECK(run.out.empty());
    CHECK(run.err.find("--rounds") != std::string::npos);
    run = run_command(std::string(PVKIT_CLI) + " bench blk --size 1M");
    CHECK(run.status == 1);
    CHECK(run.err.find("--size") != std::string::npos);
}
