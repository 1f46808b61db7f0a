// Store layout: the exact operations for a domain with one disk and one
// NIC, teardown paths, hot-plug, and domid allocation.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "pvkit/toolstack/domain_config.hpp"
#include "pvkit/toolstack/store_layout.hpp"

namespace ts = pvkit::toolstack;
using Kind = ts::StoreOp::Kind;
using Perms = std::vector<std::string>;

namespace {

ts::DomainConfig one_disk_one_nic() {
    auto parsed =
        ts::parse_domain_config(R"({
        "name": "vm1", "type": "pv-guest", "memory": 64, "vcpus": 2,
        "kernel": "/boot/pvkit-mini", "cmdline": "console=hvc0",
        "disks": [ { "vdev": "xvda", "path": "/var/tmp/vm1.img", "mode": "w" } ],
        "nics": [ { "devid": 0, "mac": "02:00:00:00:00:01", "bridge": "br0" } ]
    })",
                                "t.json", {.check_kernel = false, .check_disk_paths = false});
    REQUIRE(parsed.errors.empty());
    return *parsed.value;
}

// Prints an op list readably when a comparison fails.
std::string describe(const std::vector<ts::StoreOp>& ops) {
    std::string text;
    for (const auto& op : ops) {
        text += op.kind == Kind::kMkdir ? "mkdir " : "write ";
        text += op.path;
        if (op.kind == Kind::kWrite)
            text += " = \"" + op.value + "\"";
        text += " [";
        for (const auto& p : op.perms)
            text += " " + p;
        text += " ]\n";
    }
    return text;
}

} // namespace

TEST_CASE("create: a domain with one disk and one nic", "[toolstack][layout]") {
    const auto result = ts::domain_create_ops(5, one_disk_one_nic());
    REQUIRE(result.ok());
    const std::vector<ts::StoreOp>& ops = result.value();

    const Perms ro{"n0", "r5"};    // toolstack owns, the domain reads
    const Perms rw{"n5"};          // the domain owns
    const Perms front{"n5", "r0"}; // frontend dir: domain owns, backend reads
    const Perms back{"n0", "r5"};  // backend dir: backend owns, domain reads
    const std::string vm = "/vm/vm1";
    const std::string home = "/local/domain/5";
    const std::string vbd_back = "/local/domain/0/backend/vbd/5/51712";
    const std::string vbd_front = "/local/domain/5/device/vbd/51712";
    const std::string vif_back = "/local/domain/0/backend/vif/5/0";
    const std::string vif_front = "/local/domain/5/device/vif/0";

    const std::vector<ts::StoreOp> expected{
        {Kind::kMkdir, vm, "", ro},
        {Kind::kWrite, vm + "/name", "vm1", ro},
        {Kind::kWrite, vm + "/domid", "5", ro},
        {Kind::kWrite, vm + "/type", "pv-guest", ro},
        {Kind::kWrite, vm + "/memory", "64", ro},
        {Kind::kWrite, vm + "/vcpus", "2", ro},
        {Kind::kMkdir, vm + "/image", "", ro},
        {Kind::kWrite, vm + "/image/kernel", "/boot/pvkit-mini", ro},
        {Kind::kWrite, vm + "/image/cmdline", "console=hvc0", ro},

        {Kind::kMkdir, home, "", ro},
        {Kind::kWrite, home + "/name", "vm1", ro},
        {Kind::kWrite, home + "/domid", "5", ro},
        {Kind::kWrite, home + "/vm", vm, ro},
        {Kind::kWrite, home + "/type", "pv-guest", ro},
        {Kind::kMkdir, home + "/memory", "", ro},
        {Kind::kWrite, home + "/memory/target", "65536", ro},
        {Kind::kWrite, home + "/memory/static-max", "65536", ro},
        {Kind::kMkdir, home + "/device", "", ro},
        {Kind::kMkdir, home + "/control", "", ro},
        {Kind::kWrite, home + "/control/shutdown", "", rw},
        {Kind::kMkdir, home + "/data", "", rw},

        // Disk: parents, then the backend directory, then the frontend's.
        {Kind::kMkdir, "/local/domain/0/backend", "", {"n0"}},
        {Kind::kMkdir, "/local/domain/0/backend/vbd", "", {"n0"}},
        {Kind::kMkdir, "/local/domain/0/backend/vbd/5", "", {"n0", "r5"}},
        {Kind::kMkdir, home + "/device/vbd", "", ro},
        {Kind::kMkdir, vbd_back, "", back},
        {Kind::kWrite, vbd_back + "/frontend", vbd_front, back},
        {Kind::kWrite, vbd_back + "/frontend-id", "5", back},
        {Kind::kWrite, vbd_back + "/params", "/var/tmp/vm1.img", back},
        {Kind::kWrite, vbd_back + "/mode", "w", back},
        {Kind::kWrite, vbd_back + "/type", "raw", back},
        {Kind::kWrite, vbd_back + "/device-type", "disk", back},
        {Kind::kWrite, vbd_back + "/dev", "xvda", back},
        {Kind::kWrite, vbd_back + "/config-sector-size", "512", back},
        {Kind::kWrite, vbd_back + "/config-max-ring-page-order", "4", back},
        {Kind::kWrite, vbd_back + "/config-max-indirect-segments", "256", back},
        {Kind::kWrite, vbd_back + "/config-feature-flush-cache", "1", back},
        {Kind::kWrite, vbd_back + "/config-feature-discard", "1", back},
        {Kind::kWrite, vbd_back + "/online", "1", back},
        {Kind::kWrite, vbd_back + "/state", "1", back},
        {Kind::kMkdir, vbd_front, "", front},
        {Kind::kWrite, vbd_front + "/backend", vbd_back, front},
        {Kind::kWrite, vbd_front + "/backend-id", "0", front},
        {Kind::kWrite, vbd_front + "/virtual-device", "51712", front},
        {Kind::kWrite, vbd_front + "/device-type", "disk", front},
        {Kind::kWrite, vbd_front + "/state", "1", front},

        // NIC: /local/domain/0/backend already exists in this list.
        {Kind::kMkdir, "/local/domain/0/backend/vif", "", {"n0"}},
        {Kind::kMkdir, "/local/domain/0/backend/vif/5", "", {"n0", "r5"}},
        {Kind::kMkdir, home + "/device/vif", "", ro},
        {Kind::kMkdir, vif_back, "", back},
        {Kind::kWrite, vif_back + "/frontend", vif_front, back},
        {Kind::kWrite, vif_back + "/frontend-id", "5", back},
        {Kind::kWrite, vif_back + "/handle", "0", back},
        {Kind::kWrite, vif_back + "/mac", "02:00:00:00:00:01", back},
        {Kind::kWrite, vif_back + "/tap", "vif5.0", back},
        {Kind::kWrite, vif_back + "/bridge", "br0", back},
        {Kind::kWrite, vif_back + "/config-max-queues", "1", back},
        {Kind::kWrite, vif_back + "/config-feature-sg", "1", back},
        {Kind::kWrite, vif_back + "/config-feature-gso-tcpv4", "1", back},
        {Kind::kWrite, vif_back + "/config-feature-gso-tcpv6", "1", back},
        {Kind::kWrite, vif_back + "/config-feature-csum-offload", "1", back},
        {Kind::kWrite, vif_back + "/online", "1", back},
        {Kind::kWrite, vif_back + "/state", "1", back},
        {Kind::kMkdir, vif_front, "", front},
        {Kind::kWrite, vif_front + "/backend", vif_back, front},
        {Kind::kWrite, vif_front + "/backend-id", "0", front},
        {Kind::kWrite, vif_front + "/handle", "0", front},
        {Kind::kWrite, vif_front + "/mac", "02:00:00:00:00:01", front},
        {Kind::kWrite, vif_front + "/state", "1", front},
    };
    INFO(describe(ops));
    CHECK(ops == expected);
}

TEST_CASE("create: devices served by a driver domain get its permissions", "[toolstack][layout]") {
    ts::DomainConfig config = one_disk_one_nic();
    config.disks[0].backend_domid = 3;
    config.nics.clear();
    const auto result = ts::domain_create_ops(7, config);
    REQUIRE(result.ok());
    const auto find = [&](const std::string& path) {
        for (const auto& op : result.value()) {
            if (op.path == path)
                return op;
        }
        FAIL("no op for " << path);
        return ts::StoreOp{};
    };
    CHECK(find("/local/domain/3/backend/vbd/7/51712").perms == Perms{"n3", "r7"});
    CHECK(find("/local/domain/3/backend/vbd/7/51712/state").perms == Perms{"n3", "r7"});
    CHECK(find("/local/domain/7/device/vbd/51712").perms == Perms{"n7", "r3"});
    CHECK(find("/local/domain/7/device/vbd/51712/backend").value ==
          "/local/domain/3/backend/vbd/7/51712");
    CHECK(find("/local/domain/7/device/vbd/51712/backend-id").value == "3");
}

TEST_CASE("create: a host-process domain has no memory or image nodes", "[toolstack][layout]") {
    auto parsed = ts::parse_domain_config(R"({ "name": "app", "type": "host-process" })", "t.json");
    REQUIRE(parsed.ok());
    const auto result = ts::domain_create_ops(9, *parsed.value);
    REQUIRE(result.ok());
    for (const auto& op : result.value()) {
        CHECK(op.path.find("/memory") == std::string::npos);
        CHECK(op.path.find("/image") == std::string::npos);
    }
    CHECK(result.value()[3] ==
          ts::StoreOp{Kind::kWrite, "/vm/app/type", "host-process", {"n0", "r9"}});
}

TEST_CASE("create: state is the last node written in every device directory",
          "[toolstack][layout]") {
    const auto result = ts::domain_create_ops(5, one_disk_one_nic());
    REQUIRE(result.ok());
    const auto& ops = result.value();
    for (const std::string dir :
         {"/local/domain/0/backend/vbd/5/51712", "/local/domain/5/device/vbd/51712",
          "/local/domain/0/backend/vif/5/0", "/local/domain/5/device/vif/0"}) {
        std::size_t last = 0;
        std::size_t state = 0;
        for (std::size_t i = 0; i < ops.size(); ++i) {
            if (ops[i].path.rfind(dir + "/", 0) == 0)
                last = i;
            if (ops[i].path == dir + "/state")
                state = i;
        }
        INFO(dir);
        CHECK(state == last);
        CHECK(ops[state].value == "1");
    }
}

TEST_CASE("create refuses impossible domids", "[toolstack][layout]") {
    const auto config = one_disk_one_nic();
    CHECK(ts::domain_create_ops(0, config).error() == ts::LayoutError::kInvalidDomid);
    CHECK(ts::domain_create_ops(PVKIT_DOMID_MAX + 1, config).error() ==
          ts::LayoutError::kInvalidDomid);
    CHECK(ts::domain_create_ops(PVKIT_DOMID_MAX, config).ok());

    auto self_backed = config;
    self_backed.nics[0].backend_domid = 5;
    CHECK(ts::domain_create_ops(5, self_backed).error() == ts::LayoutError::kBackendIsFrontend);

    auto bad_backend = config;
    bad_backend.disks[0].backend_domid = PVKIT_DOMID_SELF;
    CHECK(ts::domain_create_ops(5, bad_backend).error() == ts::LayoutError::kInvalidBackendDomid);
}

TEST_CASE("destroy removes backend dirs, the home dir and the vm record", "[toolstack][layout]") {
    auto config = one_disk_one_nic();
    config.disks.push_back(config.disks[0]);
    config.disks[1].devid = 51728;
    config.disks[1].backend_domid = 3;
    CHECK(ts::domain_destroy_paths(5, config) == std::vector<std::string>{
                                                     "/local/domain/0/backend/vbd/5",
                                                     "/local/domain/3/backend/vbd/5",
                                                     "/local/domain/0/backend/vif/5",
                                                     "/local/domain/5",
                                                     "/vm/vm1",
                                                 });

    // From what the toolstack reads back out of the store.
    const std::vector<ts::DeviceRef> devices{{ts::DeviceKind::kVif, 1, 0}};
    CHECK(ts::domain_destroy_paths(8, "web", devices) ==
          std::vector<std::string>{"/local/domain/0/backend/vif/8", "/local/domain/8", "/vm/web"});
}

TEST_CASE("attach writes the same nodes as create, detach closes then removes",
          "[toolstack][layout]") {
    const auto config = one_disk_one_nic();
    const auto created = ts::domain_create_ops(5, config).value();
    const auto attached =
        ts::disk_attach_ops(5, config.disks[0], config.backend_options.blkback).value();
    // Every attach op appears in the create list, unchanged.
    for (const auto& op : attached) {
        INFO(op.path);
        CHECK(std::find(created.begin(), created.end(), op) != created.end());
    }
    CHECK(attached.front() == ts::StoreOp{Kind::kMkdir, "/local/domain/0/backend", "", {"n0"}});
    CHECK(attached.back() ==
          ts::StoreOp{Kind::kWrite, "/local/domain/5/device/vbd/51712/state", "1", {"n5", "r0"}});

    const auto nic = ts::nic_attach_ops(5, config.nics[0], config.backend_options.netback);
    REQUIRE(nic.ok());
    CHECK(nic.value().back().path == "/local/domain/5/device/vif/0/state");

    const ts::DeviceRef disk = ts::device_ref(config.disks[0]);
    CHECK(ts::device_close_ops(5, disk).value() ==
          std::vector<ts::StoreOp>{
              {Kind::kWrite, "/local/domain/0/backend/vbd/5/51712/online", "0", {"n0", "r5"}},
              {Kind::kWrite, "/local/domain/0/backend/vbd/5/51712/state", "5", {"n0", "r5"}},
          });
    CHECK(ts::device_remove_paths(5, disk) ==
          std::vector<std::string>{"/local/domain/0/backend/vbd/5/51712",
                                   "/local/domain/5/device/vbd/51712"});
    CHECK(ts::device_close_ops(0, disk).error() == ts::LayoutError::kInvalidDomid);
}

TEST_CASE("a nic's tap defaults to vif<domid>.<devid> unless named", "[toolstack][layout]") {
    auto config = one_disk_one_nic();
    config.nics[0].devid = 65535;
    const auto ops = ts::nic_attach_ops(32751, config.nics[0], {}).value();
    const auto tap = std::find_if(ops.begin(), ops.end(),
                                  [](const auto& op) { return op.path.ends_with("/tap"); });
    REQUIRE(tap != ops.end());
    CHECK(tap->value == "vif32751.65535");
    CHECK(tap->value.size() <= ts::kIfnameMaxLength);

    config.nics[0].tap = "mytap";
    const auto named = ts::nic_attach_ops(4, config.nics[0], {}).value();
    CHECK(std::find_if(named.begin(), named.end(), [](const auto& op) {
              return op.path.ends_with("/tap") && op.value == "mytap";
          }) != named.end());
}

TEST_CASE("domid allocation takes the lowest free domid", "[toolstack][layout][domid]") {
    CHECK(ts::allocate_domid({}) == pvkit_domid_t{1});
    const std::vector<pvkit_domid_t> some{0, 1, 2, 4, 7};
    CHECK(ts::allocate_domid(some) == pvkit_domid_t{3});
    const std::vector<pvkit_domid_t> unsorted{3, 1, 2, PVKIT_DOMID_SELF, PVKIT_DOMID_INVALID};
    CHECK(ts::allocate_domid(unsorted) == pvkit_domid_t{4});

    std::vector<pvkit_domid_t> all;
    for (std::uint32_t d = 1; d <= PVKIT_DOMID_MAX; ++d)
        all.push_back(static_cast<pvkit_domid_t>(d));
    CHECK_FALSE(ts::allocate_domid(all).has_value());
    all.erase(all.begin() + 99); // frees domid 100
    CHECK(ts::allocate_domid(all) == pvkit_domid_t{100});
    all.pop_back(); // frees PVKIT_DOMID_MAX as well; 100 is still lower
    CHECK(ts::allocate_domid(all) == pvkit_domid_t{100});
}

TEST_CASE("domids read from the store parse strictly", "[toolstack][layout][domid]") {
    CHECK(ts::parse_domid("0") == pvkit_domid_t{0});
    CHECK(ts::parse_domid("5") == pvkit_domid_t{5});
    CHECK(ts::parse_domid("32751") == pvkit_domid_t{PVKIT_DOMID_MAX});
    for (const char* bad :
         {"", "32752", "65535", "99999", "05", "-1", "+1", " 1", "1 ", "1\n", "0x1", "abc"}) {
        INFO(bad);
        CHECK_FALSE(ts::parse_domid(bad).has_value());
    }
}

TEST_CASE("path builders follow Xen's layout", "[toolstack][layout]") {
    CHECK(ts::domain_path(12) == "/local/domain/12");
    CHECK(ts::vm_path("web") == "/vm/web");
    CHECK(ts::frontend_path(12, ts::DeviceKind::kVbd, 51712) ==
          "/local/domain/12/device/vbd/51712");
    CHECK(ts::backend_path(0, 12, ts::DeviceKind::kVif, 1) == "/local/domain/0/backend/vif/12/1");
    CHECK(ts::perm_none(0) == "n0");
    CHECK(ts::perm_read(3) == "r3");
    CHECK(ts::perm_write(4) == "w4");
    CHECK(ts::perm_both(5) == "b5");
}
