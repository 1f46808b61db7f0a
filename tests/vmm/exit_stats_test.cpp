// Exit counters and their JSON form (the --stats-json format in docs/vmm.md).
#include <catch2/catch.hpp>

#include <pvkit/hypercall.h>

#include "pvkit/vmm/exit_stats.hpp"

using pvkit::vmm::ExitStats;
using pvkit::vmm::ExitStatus;
using pvkit::vmm::IoSpace;
using pvkit::vmm::RunOutcome;

TEST_CASE("Exit counters by reason, port, MMIO region and hypercall", "[vmm][stats]") {
    ExitStats s;
    s.start_clock();
    s.count_exit(KVM_EXIT_IO);
    s.count_io(IoSpace::kPort, PVKIT_HYPERCALL_PORT, true, "hypercall");
    s.count_hypercall(PVKIT_HC_CONSOLE_WRITE, 5);
    s.count_exit(KVM_EXIT_IO);
    s.count_io(IoSpace::kPort, PVKIT_HYPERCALL_PORT, true, "hypercall");
    s.count_hypercall(PVKIT_HC_CONSOLE_WRITE, -PVKIT_EFAULT);
    s.count_exit(KVM_EXIT_IO);
    s.count_io(IoSpace::kPort, 0x3fd, false, "serial");
    s.count_exit(KVM_EXIT_MMIO);
    s.count_io(IoSpace::kMmio, 0x40000000, true, "");
    s.count_exit(KVM_EXIT_IO);
    s.record_post_code(2);
    s.stop_clock();

    CHECK(s.total_exits() == 5);
    CHECK(s.exits("io") == 4);
    CHECK(s.exits("mmio") == 1);
    CHECK(s.exits("hlt") == 0);
    CHECK(s.ports().at(PVKIT_HYPERCALL_PORT).writes == 2);
    CHECK(s.ports().at(0x3fd).reads == 1);
    CHECK(s.hypercalls().at(PVKIT_HC_CONSOLE_WRITE).calls == 2);
    CHECK(s.hypercalls().at(PVKIT_HC_CONSOLE_WRITE).errors == 1);
    REQUIRE(s.post_codes().size() == 1);
    CHECK(s.post_codes()[0].code == 2);
    CHECK(s.post_codes()[0].exits == 4); // exits before the one carrying the code

    const auto j = s.to_json(RunOutcome{ExitStatus::kPoweroff, "guest powered off"}, 42);
    CHECK(j.at("format") == "pvkit-vmm-stats/1");
    CHECK(j.at("outcome").at("status") == 0);
    CHECK(j.at("outcome").at("reason") == "poweroff");
    CHECK(j.at("exits").at("total") == 5);
    CHECK(j.at("exits").at("by_reason").at("io") == 4);
    CHECK(j.at("ports").size() == 2);
    CHECK(j.at("ports")[0].at("port") == 0x99);
    CHECK(j.at("ports")[0].at("device") == "hypercall");
    CHECK(j.at("mmio")[0].at("device").is_null()); // unclaimed
    CHECK(j.at("hypercalls")[0].at("name") == "console_write");
    CHECK(j.at("post_codes")[0].at("code") == 2);
    CHECK(j.at("console_bytes") == 42);
    CHECK(j.at("time_ns").at("run").get<std::uint64_t>() > 0);

    const std::string text = s.summary();
    CHECK_THAT(text, Catch::Contains("5 exits"));
    CHECK_THAT(text, Catch::Contains("port 0x0099 (hypercall): 2 writes"));
    CHECK_THAT(text, Catch::Contains("console_write 2 (1 failed)"));
}

TEST_CASE("POST codes are bounded; the rest are counted as dropped", "[vmm][stats]") {
    ExitStats s;
    for (std::size_t i = 0; i < ExitStats::kMaxPostCodes + 10; ++i)
        s.record_post_code(static_cast<std::uint8_t>(i));
    CHECK(s.post_codes().size() == ExitStats::kMaxPostCodes);
    CHECK(s.to_json(RunOutcome{}, 0).at("post_codes_dropped") == 10);
}
