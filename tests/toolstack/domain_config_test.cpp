// Domain config loading: one test per rejection reason, each checking the
// exact message (file, key path, what was expected, what was found), plus
// the accepted forms and their defaults.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pvkit/toolstack/domain_config.hpp"

namespace ts = pvkit::toolstack;
using nlohmann::json;

namespace {

// Turns off the file checks: these tests are about the schema, and the
// paths below do not exist on the test machine.
constexpr ts::LoadOptions kNoFileChecks{.check_kernel = false, .check_disk_paths = false};

json base_config() {
    return json::parse(R"({
        "name": "vm1",
        "type": "pv-guest",
        "memory": 64,
        "vcpus": 2,
        "kernel": "/boot/pvkit-mini",
        "cmdline": "console=hvc0",
        "disks": [ { "vdev": "xvda", "path": "/var/tmp/vm1.img", "mode": "w" } ],
        "nics": [ { "devid": 0, "bridge": "br0" } ]
    })");
}

ts::Parsed<ts::DomainConfig> parse(const json& config,
                                   const ts::LoadOptions& options = kNoFileChecks) {
    return ts::parse_domain_config(config.dump(2), "t.json", options);
}

ts::Parsed<ts::DomainConfig> parse_text(const std::string& text,
                                        const ts::LoadOptions& options = kNoFileChecks) {
    return ts::parse_domain_config(text, "t.json", options);
}

// The config must be rejected with exactly this one message.
void require_single_error(const ts::Parsed<ts::DomainConfig>& result, const std::string& message) {
    REQUIRE_FALSE(result.ok());
    REQUIRE(result.errors == std::vector<std::string>{message});
}

// A scratch directory for tests that need real files.
class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "pvkit-toolstack-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        m_path = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }
    std::filesystem::path write(const std::string& name, const std::string& content) const {
        auto file = m_path / name;
        std::ofstream(file) << content;
        return file;
    }

private:
    std::filesystem::path m_path;
};

} // namespace

TEST_CASE("a complete pv-guest config loads with its values and defaults", "[toolstack][config]") {
    auto result = parse(base_config());
    REQUIRE(result.errors.empty());
    REQUIRE(result.ok());
    const ts::DomainConfig& c = *result.value;
    CHECK(c.source == "t.json");
    CHECK(c.name == "vm1");
    CHECK(c.type == ts::DomainType::kPvGuest);
    CHECK(c.memory_mib == 64);
    CHECK(c.vcpus == 2);
    CHECK(c.kernel == "/boot/pvkit-mini");
    CHECK(c.cmdline == "console=hvc0");

    REQUIRE(c.disks.size() == 1);
    const ts::DiskConfig& d = c.disks[0];
    CHECK(d.devid == 51712); // (202 << 8) | (0 << 4), Xen's xvda
    CHECK(d.vdev == "xvda");
    CHECK(d.path == "/var/tmp/vm1.img");
    CHECK(d.mode == ts::DiskMode::kWrite);
    CHECK(d.backend_domid == 0);
    CHECK(d.format == ts::DiskFormat::kRaw);
    CHECK(d.sector_size == 512);
    CHECK_FALSE(d.max_ring_page_order.has_value());

    REQUIRE(c.nics.size() == 1);
    const ts::NicConfig& n = c.nics[0];
    CHECK(n.devid == 0);
    CHECK(n.mac_generated);
    CHECK(n.mac == ts::MacAddress::generate("vm1", 0));
    CHECK(n.bridge == "br0");
    CHECK(n.tap.empty());
    CHECK(n.backend_domid == 0);
    CHECK(n.queues == 1);

    CHECK(c.backend_options.blkback.max_indirect_segments == PVKIT_BLKIF_MAX_INDIRECT_SEGMENTS);
    CHECK(c.backend_options.blkback.max_ring_page_order == PVKIT_RING_MAX_PAGE_ORDER);
    CHECK(c.backend_options.blkback.feature_flush_cache);
    CHECK(c.backend_options.netback.feature_sg);
}

TEST_CASE("every optional key is accepted with its documented values", "[toolstack][config]") {
    json c = base_config();
    c["disks"] = json::parse(R"([
        { "devid": 768, "path": "/dev/loop0", "mode": "r", "backend": 3, "format": "raw",
          "sector_size": 4096, "max_ring_page_order": 2 }
    ])");
    c["nics"] = json::parse(R"([
        { "devid": 1, "mac": "00:16:3E:AA:bb:01", "tap": "tap-vm1", "bridge": "br0",
          "backend": 3, "queues": 8 }
    ])");
    c["backend_options"] = json::parse(R"({
        "blkback": { "max_indirect_segments": 0, "max_ring_page_order": 1,
                     "feature_flush_cache": false, "feature_discard": false },
        "netback": { "feature_sg": false, "feature_gso_tcpv4": false,
                     "feature_gso_tcpv6": false, "feature_csum_offload": false }
    })");
    auto result = parse(c);
    REQUIRE(result.errors.empty());
    const ts::DomainConfig& config = *result.value;
    CHECK(config.disks[0].devid == 768);
    CHECK_FALSE(config.disks[0].vdev.has_value());
    CHECK(config.disks[0].mode == ts::DiskMode::kRead);
    CHECK(config.disks[0].backend_domid == 3);
    CHECK(config.disks[0].sector_size == 4096);
    CHECK(config.disks[0].max_ring_page_order == 2u);
    CHECK(config.nics[0].mac.to_string() == "00:16:3e:aa:bb:01");
    CHECK_FALSE(config.nics[0].mac_generated);
    CHECK(config.nics[0].tap == "tap-vm1");
    CHECK(config.nics[0].queues == 8);
    CHECK(config.backend_options.blkback.max_indirect_segments == 0);
    CHECK(config.backend_options.blkback.max_ring_page_order == 1);
    CHECK_FALSE(config.backend_options.blkback.feature_discard);
    CHECK_FALSE(config.backend_options.netback.feature_csum_offload);
}

TEST_CASE("a host-process config needs no kernel, memory or vcpus", "[toolstack][config]") {
    auto result = parse_text(R"({ "name": "app", "type": "host-process",
        "disks": [ { "devid": 0, "path": "/var/tmp/app.img", "mode": "r" } ] })");
    REQUIRE(result.errors.empty());
    CHECK(result.value->type == ts::DomainType::kHostProcess);
    CHECK(result.value->kernel.empty());
    CHECK(result.value->memory_mib == 0);
}

// ---- Rejections, one reason each ---------------------------------------

TEST_CASE("rejects a value of the wrong JSON type", "[toolstack][config][reject]") {
    json c = base_config();
    c["memory"] = "64";
    require_single_error(parse(c),
                         R"(t.json: memory: expected an integer from 4 to 65536 (MiB), got "64")");

    c = base_config();
    c["memory"] = 64.0;
    require_single_error(parse(c),
                         R"(t.json: memory: expected an integer from 4 to 65536 (MiB), got 64.0)");

    c = base_config();
    c["name"] = 42;
    require_single_error(
        parse(c),
        R"(t.json: name: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got 42)");

    c = base_config();
    c["disks"] = json::object();
    require_single_error(parse(c), R"(t.json: disks: expected an array of disk objects, got {})");

    c = base_config();
    c["nics"][0] = "br0";
    require_single_error(parse(c), R"(t.json: nics[0]: expected a JSON object, got "br0")");

    c = base_config();
    c["backend_options"] = {{"blkback", {{"feature_discard", 1}}}};
    require_single_error(
        parse(c),
        R"(t.json: backend_options.blkback.feature_discard: expected true or false, got 1)");
}

TEST_CASE("rejects a top level that is not an object", "[toolstack][config][reject]") {
    require_single_error(parse_text("[1, 2]"),
                         "t.json: (top level): expected a JSON object, got [1,2]");
}

TEST_CASE("rejects out-of-range numbers", "[toolstack][config][reject]") {
    json c = base_config();
    c["vcpus"] = 65;
    require_single_error(parse(c), "t.json: vcpus: expected an integer from 1 to 64, got 65");

    c = base_config();
    c["vcpus"] = 0;
    require_single_error(parse(c), "t.json: vcpus: expected an integer from 1 to 64, got 0");

    c = base_config();
    c["memory"] = 3;
    require_single_error(parse(c),
                         "t.json: memory: expected an integer from 4 to 65536 (MiB), got 3");

    c = base_config();
    c["memory"] = 18446744073709551615ull;
    require_single_error(
        parse(c),
        "t.json: memory: expected an integer from 4 to 65536 (MiB), got 18446744073709551615");

    c = base_config();
    c["nics"][0]["queues"] = 9;
    require_single_error(parse(c),
                         "t.json: nics[0].queues: expected an integer from 1 to 8, got 9");

    c = base_config();
    c["disks"][0]["backend"] = -1;
    require_single_error(
        parse(c),
        "t.json: disks[0].backend: expected an integer from 0 to 32751 (a domid), got -1");

    c = base_config();
    c["disks"][0]["max_ring_page_order"] = 5;
    require_single_error(
        parse(c), "t.json: disks[0].max_ring_page_order: expected an integer from 0 to 4, got 5");

    c = base_config();
    c["disks"][0]["sector_size"] = 1024;
    require_single_error(parse(c), "t.json: disks[0].sector_size: expected 512 or 4096, got 1024");

    c = base_config();
    c["backend_options"] = {{"blkback", {{"max_indirect_segments", 257}}}};
    require_single_error(parse(c), "t.json: backend_options.blkback.max_indirect_segments: "
                                   "expected an integer from 0 to 256, got 257");
}

TEST_CASE("rejects an unknown value of an enumerated key", "[toolstack][config][reject]") {
    json c = base_config();
    c["disks"].push_back({{"vdev", "xvdb"}, {"path", "/var/tmp/b.img"}, {"mode", "rw"}});
    require_single_error(parse(c), R"(t.json: disks[1].mode: expected "r" or "w", got "rw")");

    c = base_config();
    c["type"] = "hvm";
    require_single_error(parse(c),
                         R"(t.json: type: expected "pv-guest" or "host-process", got "hvm")");

    c = base_config();
    c["disks"][0]["format"] = "qcow2";
    require_single_error(parse(c), R"(t.json: disks[0].format: expected "raw", got "qcow2")");
}

TEST_CASE("rejects unknown keys, suggesting the nearest known one", "[toolstack][config][reject]") {
    json c = base_config();
    c["memroy"] = 64;
    require_single_error(parse(c), R"(t.json: memroy: unknown key (did you mean "memory"?))");

    c = base_config();
    c["disks"][0]["mdoe"] = "r";
    require_single_error(parse(c), R"(t.json: disks[0].mdoe: unknown key (did you mean "mode"?))");

    c = base_config();
    c["nics"][0]["colour"] = "blue";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].colour: unknown key; expected one of "devid", "mac", "bridge", "tap", "backend" or "queues")");

    c = base_config();
    c["backend_options"] = {{"blkback", {{"feature-discard", true}}}};
    require_single_error(
        parse(c),
        R"(t.json: backend_options.blkback.feature-discard: unknown key (did you mean "feature_discard"?))");
}

TEST_CASE("rejects a key given twice in one object", "[toolstack][config][reject]") {
    auto result = parse_text(R"({ "name": "vm1", "type": "pv-guest", "memory": 64,
        "kernel": "/boot/k",
        "disks": [ { "vdev": "xvda", "path": "/a", "mode": "w", "mode": "r" } ] })");
    require_single_error(
        result, "t.json: disks[0].mode: duplicate key (only one value per key is allowed)");
}

TEST_CASE("rejects bad MAC addresses", "[toolstack][config][reject]") {
    json c = base_config();
    c["nics"][0]["mac"] = "01:00:5e:00:00:01";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].mac: expected a unicast MAC address (lowest bit of the first octet clear), got "01:00:5e:00:00:01")");

    c = base_config();
    c["nics"][0]["mac"] = "02:00:00:00:00";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].mac: expected a MAC address of six hex pairs like "02:00:00:00:00:01", got "02:00:00:00:00")");

    c = base_config();
    c["nics"][0]["mac"] = "02-00-00-00-00-01";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].mac: expected a MAC address of six hex pairs like "02:00:00:00:00:01", got "02-00-00-00-00-01")");

    c = base_config();
    c["nics"][0]["mac"] = "00:00:00:00:00:00";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].mac: expected a non-zero MAC address, got "00:00:00:00:00:00")");

    c = base_config();
    c["nics"][0]["mac"] = "02:00:00:00:00:07";
    c["nics"].push_back({{"devid", 1}, {"mac", "02:00:00:00:00:07"}});
    require_single_error(
        parse(c),
        R"(t.json: nics[1].mac: expected a MAC address not used by another nic, got "02:00:00:00:00:07" (already used by nics[0]))");
}

TEST_CASE("rejects duplicate devids", "[toolstack][config][reject]") {
    json c = base_config();
    c["disks"].push_back({{"devid", 51712}, {"path", "/var/tmp/b.img"}, {"mode", "r"}});
    require_single_error(parse(c), "t.json: disks[1].devid: expected a devid not used by another "
                                   "disk, got 51712 (already used by disks[0])");

    c = base_config();
    c["disks"].push_back({{"vdev", "xvda"}, {"path", "/var/tmp/b.img"}, {"mode", "r"}});
    require_single_error(
        parse(c),
        R"(t.json: disks[1].vdev: expected a disk not used by another disk, got "xvda" (devid 51712, already used by disks[0]))");

    c = base_config();
    c["nics"].push_back({{"devid", 0}, {"mac", "02:00:00:00:00:09"}});
    require_single_error(parse(c), "t.json: nics[1].devid: expected a devid not used by another "
                                   "nic, got 0 (already used by nics[0])");

    // A disk and a NIC live in different directories (vbd, vif): the same
    // number is fine.
    c = base_config();
    c["disks"][0] = {{"devid", 0}, {"path", "/var/tmp/a.img"}, {"mode", "w"}};
    CHECK(parse(c).ok());
}

TEST_CASE("rejects a missing required key", "[toolstack][config][reject]") {
    json c = base_config();
    c["disks"][0].erase("mode");
    require_single_error(parse(c),
                         R"(t.json: disks[0].mode: required key is missing (expected "r" or "w"))");

    c = base_config();
    c.erase("name");
    require_single_error(parse(c), "t.json: name: required key is missing (expected a name of 1 to "
                                   "64 characters from A-Z a-z 0-9 _ . -)");

    c = base_config();
    c.erase("kernel");
    require_single_error(parse(c),
                         "t.json: kernel: required key is missing (expected a path to the kernel)");

    c = base_config();
    c.erase("memory");
    require_single_error(
        parse(c),
        "t.json: memory: required key is missing (expected an integer from 4 to 65536 (MiB))");

    c = base_config();
    c.erase("type");
    require_single_error(
        parse(c),
        R"(t.json: type: required key is missing (expected "pv-guest" or "host-process"))");

    c = base_config();
    c["disks"][0].erase("path");
    require_single_error(parse(c), "t.json: disks[0].path: required key is missing (expected a "
                                   "path to a disk image or block device)");

    c = base_config();
    c["nics"][0].erase("devid");
    require_single_error(
        parse(c),
        "t.json: nics[0].devid: required key is missing (expected an integer from 0 to 65535)");

    c = base_config();
    c["disks"][0].erase("vdev");
    require_single_error(
        parse(c), R"(t.json: disks[0]: expected one of the keys "vdev" or "devid", got neither)");

    c = base_config();
    c["disks"][0]["devid"] = 1;
    require_single_error(
        parse(c), R"(t.json: disks[0]: expected one of the keys "vdev" or "devid", got both)");
}

TEST_CASE("rejects JSON syntax errors with line and column", "[toolstack][config][reject]") {
    auto result =
        parse_text("{\n  \"name\": \"vm1\",\n  \"type\": \"pv-guest\" \"memory\": 64\n}\n");
    REQUIRE(result.errors.size() == 1);
    // The column is where the offending token ends: the parser knows only
    // after reading all of "memory" that a comma is missing before it.
    CHECK(result.errors[0] == "t.json: line 3, column 29: invalid JSON: syntax error while "
                              "parsing object - unexpected string literal; expected '}'");

    result = parse_text("{\n  \"name\": \"vm1\",\n");
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].rfind("t.json: line 3, column 1: invalid JSON: ", 0) == 0);

    // Comments are not JSON; a config with one is refused, not half read.
    result = parse_text("{ // a comment\n \"name\": \"vm1\" }");
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].rfind("t.json: line 1, column ", 0) == 0);
}

TEST_CASE("rejects a cmdline longer than the start-info page holds",
          "[toolstack][config][reject]") {
    json c = base_config();
    c["cmdline"] = std::string(ts::kCmdlineMaxBytes, 'x');
    CHECK(parse(c).ok());

    c["cmdline"] = std::string(ts::kCmdlineMaxBytes + 1, 'x');
    require_single_error(parse(c), "t.json: cmdline: expected at most 1023 bytes "
                                   "(PVKIT_START_INFO_CMDLINE_MAX - 1), got 1024 bytes");

    c["cmdline"] = std::string("a\0b", 3);
    require_single_error(parse(c),
                         "t.json: cmdline: expected no NUL characters, got one at byte 1");
}

TEST_CASE("rejects a kernel that is missing or not a regular file", "[toolstack][config][reject]") {
    TempDir dir;
    const ts::LoadOptions check_kernel{.check_kernel = true, .check_disk_paths = false};

    json c = base_config();
    c["kernel"] = (dir.path() / "no-such-kernel").string();
    require_single_error(parse(c, check_kernel),
                         "t.json: kernel: expected an existing regular file, got \"" +
                             (dir.path() / "no-such-kernel").string() + "\" (" +
                             (dir.path() / "no-such-kernel").string() +
                             ": No such file or directory)");

    c["kernel"] = dir.path().string();
    require_single_error(parse(c, check_kernel),
                         "t.json: kernel: expected an existing regular file, got \"" +
                             dir.path().string() + "\" (" + dir.path().string() +
                             " is not a regular file)");

    c["kernel"] = dir.write("kernel", "\x7f"
                                      "ELF")
                      .string();
    CHECK(parse(c, check_kernel).ok());
}

TEST_CASE("rejects a disk path that does not exist when paths are checked",
          "[toolstack][config][reject]") {
    TempDir dir;
    const ts::LoadOptions check_disks{.check_kernel = false, .check_disk_paths = true};
    json c = base_config();
    const auto missing = (dir.path() / "missing.img").string();
    c["disks"][0]["path"] = missing;
    require_single_error(
        parse(c, check_disks),
        "t.json: disks[0].path: expected an existing disk image or block device, got \"" + missing +
            "\" (" + missing + ": No such file or directory)");

    c["disks"][0]["path"] = dir.write("disk.img", "").string();
    CHECK(parse(c, check_disks).ok());
}

TEST_CASE("rejects bad names", "[toolstack][config][reject]") {
    for (const char* name : {"", "my vm", "vm/1", "ä"}) {
        json c = base_config();
        c["name"] = name;
        require_single_error(
            parse(c),
            "t.json: name: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got " +
                json(name).dump());
    }
    json c = base_config();
    c["name"] = std::string(64, 'a');
    CHECK(parse(c).ok());
    c["name"] = std::string(65, 'a');
    CHECK_FALSE(parse(c).ok());
}

TEST_CASE("rejects vdev names outside xvda..xvdp", "[toolstack][config][reject]") {
    for (const char* vdev : {"sda", "xvdq", "xvda1", "xvd"}) {
        json c = base_config();
        c["disks"][0]["vdev"] = vdev;
        require_single_error(
            parse(c),
            std::string(
                R"(t.json: disks[0].vdev: expected a Xen disk name from "xvda" to "xvdp", got ")") +
                vdev + "\"");
    }
    CHECK(ts::vdev_to_devid("xvdp") == (202u << 8 | 15u << 4));
}

TEST_CASE("rejects bad interface names", "[toolstack][config][reject]") {
    json c = base_config();
    c["nics"][0]["tap"] = "a-name-longer-than-15";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].tap: expected a network interface name of 1 to 15 characters without '/', ':' or spaces, got "a-name-longer-than-15")");

    c = base_config();
    c["nics"][0]["bridge"] = "br 0";
    require_single_error(
        parse(c),
        R"(t.json: nics[0].bridge: expected a network interface name of 1 to 15 characters without '/', ':' or spaces, got "br 0")");
}

TEST_CASE("rejects pv-guest keys in a host-process config", "[toolstack][config][reject]") {
    require_single_error(
        parse_text(R"({ "name": "app", "type": "host-process", "kernel": "/boot/k" })"),
        R"(t.json: kernel: unexpected key for type "host-process" (only a "pv-guest" has a kernel, memory, vcpus and a cmdline))");
}

TEST_CASE("rejects more devices than the start-info page lists", "[toolstack][config][reject]") {
    json c = base_config();
    for (int i = 1; i <= 16; ++i)
        c["nics"].push_back({{"devid", i}});
    require_single_error(
        parse(c),
        R"(t.json: nics: expected at most 16 disks and nics together for a "pv-guest" (PVKIT_START_INFO_MAX_DEVICES), got 18)");
}

TEST_CASE("collects every error, not just the first", "[toolstack][config][reject]") {
    json c = base_config();
    c["vcpus"] = 100;
    c["disks"][0]["mode"] = "rw";
    c["nics"][0]["mac"] = "ff:ff:ff:ff:ff:ff";
    c["extra"] = true;
    auto result = parse(c);
    REQUIRE_FALSE(result.ok());
    CHECK(
        result.errors ==
        std::vector<std::string>{
            R"(t.json: extra: unknown key; expected one of "name", "type", "memory", "vcpus", "kernel", "cmdline", "disks", "nics" or "backend_options")",
            "t.json: vcpus: expected an integer from 1 to 64, got 100",
            R"(t.json: disks[0].mode: expected "r" or "w", got "rw")",
            R"(t.json: nics[0].mac: expected a unicast MAC address (lowest bit of the first octet clear), got "ff:ff:ff:ff:ff:ff")",
        });
}

TEST_CASE("hostile input is reported and never thrown or crashed on",
          "[toolstack][config][reject]") {
    // Deep nesting would make the JSON library recurse without bound.
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    require_single_error(parse_text(deep),
                         "t.json: [0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                         "[0][0][0][0][0][0][0][0][0][0]: expected at most 32 levels of nested "
                         "objects and arrays");

    require_single_error(parse_text(R"({ "memory": 1e400 })"),
                         "t.json: invalid JSON: number overflow parsing '1e400'");

    auto result = parse_text("{ \"name\": \"\xff\" }");
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].rfind("t.json: line 1, column ", 0) == 0);

    result = parse_text("");
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].rfind("t.json: line 1, column 1: invalid JSON: ", 0) == 0);

    result = parse_text(std::string("{\0}", 3));
    CHECK(result.errors.size() == 1);

    const std::string huge(ts::kCmdlineMaxBytes * 2048, ' ');
    require_single_error(parse_text(huge),
                         "t.json: expected a config of at most 1048576 bytes, got 2095104");

    // A long value is cut in the message, on a character boundary.
    json c = base_config();
    // Byte 60 of the rendering is the second byte of "ä": the cut backs up
    // to before the "ä" rather than leave half of it.
    c["type"] = std::string(58, 'a') + "\xc3\xa4xyz";
    result = parse(c);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0] == R"(t.json: type: expected "pv-guest" or "host-process", got ")" +
                                  std::string(58, 'a') + "...");
}

// ---- Files and single devices ------------------------------------------

TEST_CASE("relative paths resolve against the config file's directory", "[toolstack][config]") {
    TempDir dir;
    std::filesystem::create_directory(dir.path() / "images");
    dir.write("images/a.img", "");
    dir.write("kernel", "");
    const auto file = dir.write("vm.json", R"({ "name": "vm", "type": "pv-guest", "memory": 16,
        "kernel": "kernel", "disks": [ { "devid": 0, "path": "images/a.img", "mode": "w" } ] })");
    const ts::DomainConfig config = ts::load_domain_config(file);
    CHECK(config.kernel == dir.path() / "kernel");
    CHECK(config.disks[0].path == dir.path() / "images" / "a.img");
    CHECK(config.source == file.string());
}

TEST_CASE("load_domain_config throws one ConfigError listing every problem",
          "[toolstack][config]") {
    TempDir dir;
    const auto file = dir.write("bad.json", R"({ "name": "a b", "type": "pv-guest", "memory": 1,
        "kernel": "k" })");
    try {
        (void)ts::load_domain_config(file, kNoFileChecks);
        FAIL("no exception");
    } catch (const ts::ConfigError& e) {
        REQUIRE(e.errors().size() == 2);
        CHECK(e.errors()[0].rfind(file.string() + ": name: ", 0) == 0);
        CHECK(e.errors()[1].rfind(file.string() + ": memory: ", 0) == 0);
        CHECK(std::string(e.what()) == e.errors()[0] + "\n" + e.errors()[1]);
    }

    const auto missing = dir.path() / "missing.json";
    try {
        (void)ts::load_domain_config(missing);
        FAIL("no exception");
    } catch (const ts::ConfigError& e) {
        CHECK(std::string(e.what()) ==
              missing.string() + ": cannot read the file (No such file or directory)");
    }

    try {
        (void)ts::load_domain_config(dir.path());
        FAIL("no exception");
    } catch (const ts::ConfigError& e) {
        CHECK(std::string(e.what()) ==
              dir.path().string() + ": cannot read the file (Is a directory)");
    }
}

TEST_CASE("single devices for attach parse with paths relative to the object",
          "[toolstack][config]") {
    auto disk =
        ts::parse_disk_config(R"({ "vdev": "xvdb", "path": "/var/tmp/b.img", "mode": "r" })",
                              "command line", kNoFileChecks);
    REQUIRE(disk.ok());
    CHECK(disk.value->devid == (202u << 8 | 1u << 4));

    disk = ts::parse_disk_config(R"({ "vdev": "xvdb", "path": "/b.img", "mode": "x" })",
                                 "command line", kNoFileChecks);
    CHECK(disk.errors ==
          std::vector<std::string>{R"(command line: mode: expected "r" or "w", got "x")"});

    auto nic = ts::parse_nic_config(R"({ "devid": 2 })", "command line", "vm1");
    REQUIRE(nic.ok());
    CHECK(nic.value->mac == ts::MacAddress::generate("vm1", 2));

    nic = ts::parse_nic_config(R"({ "devid": 2, })", "command line", "vm1");
    REQUIRE(nic.errors.size() == 1);
    CHECK(nic.errors[0].rfind("command line: line 1, column 15: invalid JSON: ", 0) == 0);
}

TEST_CASE("generated MACs are stable, unicast, locally administered and distinct",
          "[toolstack][config]") {
    const auto a0 = ts::MacAddress::generate("vm1", 0);
    CHECK(a0 == ts::MacAddress::generate("vm1", 0));
    CHECK(a0.octets[0] == 0x02);
    CHECK(a0.is_locally_administered());
    CHECK_FALSE(a0.is_multicast());
    CHECK(a0 != ts::MacAddress::generate("vm1", 1));
    CHECK(a0 != ts::MacAddress::generate("vm2", 0));
    CHECK(ts::MacAddress::parse(a0.to_string()) == a0);
    CHECK_FALSE(ts::MacAddress::parse("02:00:00:00:00:0g").has_value());
    CHECK_FALSE(ts::MacAddress::parse(" 02:00:00:00:00:01").has_value());
}
