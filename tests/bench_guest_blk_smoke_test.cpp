// Runs `pvkit bench guest-blk --json` with tiny settings as a user would: a
// real pvkit-stored, pvkit-blkback and pvkit-vmm booting the mini guest
// under KVM, and the host-process frontend, against one image. Checks the
// shared benchmark JSON shape, that every figure ran on both sides with
// positive values, and that the exit and notification counters were
// collected. Figures are not judged: timing belongs to the benchmark, never
// to a test.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using pvkit::test::CommandResult;
using pvkit::test::run_command;

// 1 round of 1000 I/Os on an 8 MiB image: 3 figures x 2 sides, three
// guest boots, a few seconds in all (also under ASan).
const std::string kTiny = " bench guest-blk --json --rounds 1 --requests 1000 --span-mb 8";

} // namespace

TEST_CASE("pvkit bench guest-blk --json runs every figure in the guest and in a host process",
          "[bench][vmm]") {
    CommandResult run = run_command(std::string(PVKIT_CLI) + kTiny);
    INFO(run.err);
    REQUIRE(run.status == 0);
    const nlohmann::json j = nlohmann::json::parse(run.out);
    CHECK(j.at("suite") == "guest-blk");
    const auto& config = j.at("config");
    CHECK(config.at("rounds") == 1);
    CHECK(config.at("requests") == 1000);
    CHECK(config.at("span_mb") == 8);
    std::vector<std::string> names;
    for (const auto& r : j.at("results")) {
        const std::string name = r.at("name").get<std::string>();
        INFO(name);
        names.push_back(name);
        CHECK(r.at("unit") == "IOPS");
        CHECK(r.at("higher_is_better") == true);
        CHECK(r.at("baseline_name") == "host-process-frontend");
        const double guest = r.at("pvkit").get<double>();
        const double host = r.at("baseline").get<double>();
        CHECK(guest > 0);
        CHECK(host > 0);
        const double expect = guest / host;
        CHECK(std::fabs(r.at("ratio").get<double>() - expect) <= 1e-9 * std::fabs(expect));
        CHECK(r.at("goal") == "ratio >= 0.8");
        CHECK(r.at("goal_met").is_boolean());
        const auto& d = r.at("details");
        // The guest's workload window and its whole run, from pvkit-vmm's
        // counters: the run has at least its boot's exits.
        CHECK(d.at("guest_exits_per_request").at("median").get<double>() >= 0);
        CHECK(d.at("guest_exits_per_run").at("min").get<double>() > 10);
        CHECK(d.at("guest_iops_by_guest_clock").at("median").get<double>() > 0);
        CHECK(d.at("guest_notifications_sent_per_request").at("median").get<double>() >= 0);
        CHECK(d.at("host_notifications_sent_per_request").at("median").get<double>() >= 0);
    }
    const std::vector<std::string> expected = {"randread_4k_qd1", "randread_4k_qd16",
                                               "randwrite_4k_qd16"};
    CHECK(names == expected);
}

TEST_CASE("pvkit bench guest-blk: a missing kernel or a bad option is one line and a failure",
          "[bench][vmm]") {
    CommandResult run =
        run_command(std::string(PVKIT_CLI) + kTiny + " --kernel /nonexistent/pvkit-mini");
    CHECK(run.status == 1);
    CHECK(run.out.empty());
    CHECK(run.err.find("--kernel /nonexistent/pvkit-mini") != std::string::npos);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
    run = run_command(std::string(PVKIT_CLI) + " bench guest-blk --figures randread_4k_qd64");
    CHECK(run.status == 1);
    CHECK(run.err.find("unknown figure 'randread_4k_qd64'") != std::string::npos);
    run = run_command(std::string(PVKIT_CLI) + " bench guest-blk --requests 5");
    CHECK(run.status > 0);
    CHECK(run.err.find("--requests") != std::string::npos);
}
