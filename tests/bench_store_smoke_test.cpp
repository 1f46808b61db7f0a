// Runs `pvkit bench store --quick --json` as a user would and checks the
// shared benchmark JSON shape and that every result is there. Figures are
// not judged: timing belongs to the benchmark, never to a test.
//
// The benchmark needs etcd (Debian's etcd-server, which
// tools/install-deps.sh installs). Without it the benchmark must fail with
// one line naming the package, which one test checks by pointing
// --etcd-binary nowhere. The shape test fails when /usr/bin/etcd is
// missing: the test command installs it, so a missing one is a broken setup,
// not something to pass over.
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

constexpr const char* kEtcd = "/usr/bin/etcd";

bool etcd_installed() { return ::access(kEtcd, X_OK) == 0; }

} // namespace

TEST_CASE("pvkit bench store --json prints the shared result shape", "[bench]") {
    if (!etcd_installed()) {
        FAIL(kEtcd << " is missing; run tools/install-deps.sh (etcd-server)");
    }
    CommandResult run = run_command(std::string(PVKIT_CLI) + " bench store --quick --json");
    INFO(run.err);
    REQUIRE(run.status == 0);
    nlohmann::json j = nlohmann::json::parse(run.out);
    CHECK(j.at("suite") == "store");
    CHECK(j.at("config").is_object());
    CHECK(j.at("config").at("rounds") == 1);
    const auto& results = j.at("results");
    REQUIRE(results.is_array());
    std::vector<std::string> names;
    for (const auto& r : results) {
        names.push_back(r.at("name").get<std::string>());
        std::string unit = r.at("unit").get<std::string>();
        CHECK((unit == "ops/s" || unit == "events/s"));
        CHECK(r.at("higher_is_better") == true);
        CHECK(r.at("baseline_name").get<std::string>().rfind("etcd", 0) == 0);
        double pvkit = r.at("pvkit").get<double>();
        double baseline = r.at("baseline").get<double>();
        CHECK(pvkit > 0);
        CHECK(baseline > 0);
        CHECK(r.at("pvkit_min").get<double>() <= pvkit);
        CHECK(r.at("pvkit_max").get<double>() >= pvkit);
        CHECK(r.at("baseline_min").get<double>() <= baseline);
        CHECK(r.at("baseline_max").get<double>() >= baseline);
        if (!r.at("ratio").is_null()) {
            double expect = pvkit / baseline;
            CHECK(std::fabs(r.at("ratio").get<double>() - expect) <= 1e-9 * std::fabs(expect));
        }
        // Goals belong to the default configuration; the --fsync=always
        // figures are informational.
        const bool strict = r.at("name").get<std::string>().ends_with("_fsync");
        CHECK(r.contains("goal") == !strict);
        if (!strict) {
            CHECK(r.at("goal").is_string());
            CHECK(r.at("goal_met").is_boolean());
        }
        CHECK(r.at("note").is_string());
    }
    std::vector<std::string> expected = {
        "read_ops_1client",          "read_ops_4clients",          "write_ops_1client",
        "write_ops_4clients",        "watch_events_1writer",       "watch_events_3writers",
        "write_ops_1client_fsync",   "write_ops_4clients_fsync",   "watch_events_1writer_fsync",
        "watch_events_3writers_fsync"};
    CHECK(names == expected);
    auto read4 = std::find_if(results.begin(), results.end(),
                              [](const auto& r) { return r.at("name") == "read_ops_4clients"; });
    REQUIRE(read4 != results.end());
    CHECK(read4->at("goal").get<std::string>().find("pvkit >= 100000") != std::string::npos);
}

TEST_CASE("pvkit bench store without etcd fails with one line naming the package", "[bench]") {
    CommandResult run =
        run_command(std::string(PVKIT_CLI) + " bench store --quick --etcd-binary /nonexistent/etcd");
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err.find("apt-get install etcd-server") != std::string::npos);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
}

TEST_CASE("pvkit bench store rejects bad options with one line and non-zero status", "[bench]") {
    CommandResult run = run_command(std::string(PVKIT_CLI) + " bench store --rounds 0");
    CHECK(run.status > 0);
    CHECK(run.out.empty());
    CHECK(run.err.find("--rounds") != std::string::npos);
}
