// Every tools/examples/*.json loads and lays out. The kernels the pv-guest
// examples name are built by the guest part of the tree, which may not
// exist yet, so the kernel check runs only where the kernel is there.
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/store_layout.hpp"

namespace ts = pvkit::toolstack;

TEST_CASE("every example config loads and produces a store layout", "[toolstack][examples]") {
    const std::filesystem::path dir = PVKIT_EXAMPLES_DIR;
    std::set<std::string> seen;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".json")
            continue;
        seen.insert(entry.path().filename().string());
        INFO(entry.path().string());

        // Disk images are made when a test or a user runs the example.
        ts::LoadOptions options{.check_kernel = false, .check_disk_paths = false};
        ts::DomainConfig config;
        REQUIRE_NOTHROW(config = ts::load_domain_config(entry.path(), options));
        CHECK(config.name == entry.path().stem().string());
        if (config.type == ts::DomainType::kPvGuest && std::filesystem::exists(config.kernel)) {
            options.check_kernel = true;
            CHECK_NOTHROW(ts::load_domain_config(entry.path(), options));
        }

        const auto ops = ts::domain_create_ops(1, config);
        REQUIRE(ops.ok());
        CHECK_FALSE(ops.value().empty());
    }
    CHECK(seen.count("minios-blk.json") == 1);
    CHECK(seen.count("hostproc-blk-net.json") == 1);
}

// `pvkit create tools/examples/minios-blk.json` boots the mini guest into its
// block self-test (the guest reads `run=`), and makes the image if it is
// missing; so a missing image is not a config error for it.
TEST_CASE("minios-blk runs blk-selftest on an image pvkit create makes", "[toolstack][examples]") {
    const std::filesystem::path file =
        std::filesystem::path(PVKIT_EXAMPLES_DIR) / "minios-blk.json";
    ts::LoadOptions options{.check_kernel = false, .check_disk_paths = true};
    ts::DomainConfig config;
    REQUIRE_NOTHROW(config = ts::load_domain_config(file, options));
    CHECK(config.cmdline.find("run=blk-selftest") != std::string::npos);
    REQUIRE(config.disks.size() == 1);
    REQUIRE(config.disks[0].create_size_mb.has_value());
    // blk-selftest needs at least 8 MiB (pvkit_guest/blk_pattern.h).
    CHECK(*config.disks[0].create_size_mb >= 8u);
    // The kernel path is relative to the example: the repository's build/.
    CHECK(config.kernel ==
          (std::filesystem::path(PVKIT_EXAMPLES_DIR) / "../../build/guest/pvkit-mini")
              .lexically_normal());
}
