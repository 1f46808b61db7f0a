// The toolstack commands (`pvkit create/list/destroy/block-*/network-*`) as
// users run them, against a real pvkit-stored.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "pvkit/store/perms.hpp"
#include "pvkit/toolstack/domain_ops.hpp"
#include "store_test_support.hpp"
#include "test_support.hpp"

namespace ts = pvkit::toolstack;
using pvkit::store::StoreClient;
using pvkit::store::test::Daemon;
using pvkit::store::test::TempDir;
using pvkit::test::CommandResult;

namespace {

CommandResult pvkit_cli(const Daemon& d, const std::string& args) {
    return pvkit::test::run_command("'" + std::string(PVKIT_CLI_PATH) + "' " + args +
                                    " --store-socket '" + d.socket() + "'");
}

// `pvkit <args>` without a store socket, for what fails before any store use.
CommandResult pvkit_bare(const std::string& args) {
    return pvkit::test::run_command("'" + std::string(PVKIT_CLI_PATH) + "' " + args);
}

std::size_t line_count(const std::string& text) {
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Every node of the store with its value and permissions, to check that a
// refused command changed nothing.
std::map<std::string, std::string> dump_store(StoreClient& client) {
    std::map<std::string, std::string> out;
    std::vector<std::string> todo = {"/"};
    while (!todo.empty()) {
        const std::string path = todo.back();
        todo.pop_back();
        auto value = client.read(path);
        auto perms = client.get_perms(path);
        auto children = client.directory(path);
        REQUIRE(value.ok());
        REQUIRE(perms.ok());
        REQUIRE(children.ok());
        out[path] = value.value() + " [" + pvkit::store::format_perms(perms.value()) + "]";
        for (const std::string& child : children.value())
            todo.push_back(path == "/" ? "/" + child : path + "/" + child);
    }
    return out;
}

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
    std::string path = (dir.path() / name).string();
    std::ofstream(path) << text;
    return path;
}

// A host-process domain with one disk and one NIC; images are real files.
std::string make_config(const TempDir& dir, const std::string& name) {
    std::string img = write_file(dir, name + ".img", std::string(1 << 20, '\0'));
    nlohmann::json cfg = {{"name", name},
                          {"type", "host-process"},
                          {"disks", {{{"vdev", "xvda"}, {"path", img}, {"mode", "w"}}}},
                          {"nics", {{{"devid", 0}, {"tap", "pvktest0"}}}}};
    return write_file(dir, name + ".json", cfg.dump(2));
}

nlohmann::json list_json(const Daemon& d) {
    CommandResult r = pvkit_cli(d, "list --json");
    INFO(r.err);
    REQUIRE(r.status == 0);
    return nlohmann::json::parse(r.out);
}

} // namespace

TEST_CASE("pvkit create registers a domain and its devices; destroy removes them", "[cli][toolstack]") {
    Daemon d;
    TempDir dir;
    std::string cfg = make_config(dir, "alpha");

    CommandResult c = pvkit_cli(d, "create '" + cfg + "'");
    INFO(c.err);
    REQUIRE(c.status == 0);
    CHECK(c.out.find("registered as domid 1") != std::string::npos);

    nlohmann::json all = list_json(d);
    REQUIRE(all.size() == 1);
    CHECK(all[0]["name"] == "alpha");
    CHECK(all[0]["domid"] == 1);
    REQUIRE(all[0]["devices"].size() == 2);
    for (const auto& dev : all[0]["devices"]) {
        CHECK(dev["frontend_state"] == "Initialising");
        CHECK(dev["backend_state"] == "Initialising");
    }
    // The store holds Xen's layout with the permissions of docs/handshake.md.
    StoreClient client = d.client();
    auto backend = client.read("/local/domain/1/device/vbd/51712/backend");
    REQUIRE(backend.ok());
    CHECK(backend.value() == "/local/domain/0/backend/vbd/1/51712");

    // A second domain gets the next domid; the same name again is refused.
    CommandResult again = pvkit_cli(d, "create '" + cfg + "'");
    CHECK(again.status == 1);
    CHECK(again.err == "pvkit: create alpha: a domain named \"alpha\" exists already\n");
    CommandResult beta = pvkit_cli(d, "create '" + make_config(dir, "beta") + "'");
    CHECK(beta.status == 0);
    CHECK(beta.out.find("registered as domid 2") != std::string::npos);

    // No backend runs here: destroy waits its timeout, then removes anyway.
    CommandResult gone = pvkit_cli(d, "destroy alpha --timeout 0.2");
    INFO(gone.err);
    CHECK(gone.status == 0);
    CHECK(gone.out.find("removed anyway") != std::string::npos);
    all = list_json(d);
    REQUIRE(all.size() == 1);
    CHECK(all[0]["name"] == "beta");
    CHECK(client.read("/vm/alpha/name").error() == pvkit::store::StoreError::kNoEnt);
    CHECK(client.read("/local/domain/0/backend/vbd/1/51712/state").error() ==
          pvkit::store::StoreError::kNoEnt);
}

TEST_CASE("pvkit create reports config errors naming file, key and expectation", "[cli][toolstack]") {
    Daemon d;
    TempDir dir;
    std::string cfg = write_file(dir, "bad.json",
                                 R"({"name": "x", "type": "host-process", "disks": [{"vdev": "xvda",
                                     "path": "/nonexistent/disk.img", "mode": "rw"}]})");
    CommandResult r = pvkit_cli(d, "create '" + cfg + "'");
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK(r.err.find(cfg + ": disks[0].mode") != std::string::npos);
    CHECK(r.err.find("\"r\" or \"w\"") != std::string::npos);
    CHECK(list_json(d).empty());
}

TEST_CASE("block and network attach, list and detach", "[cli][toolstack]") {
    Daemon d;
    TempDir dir;
    REQUIRE(pvkit_cli(d, "create '" + make_config(dir, "gamma") + "'").status == 0);
    std::string img = write_file(dir, "extra.img", std::string(4096, '\0'));

    CommandResult a = pvkit_cli(d, "block-attach gamma xvdb '" + img + "' --mode r");
    INFO(a.err);
    REQUIRE(a.status == 0);
    CommandResult l = pvkit_cli(d, "block-list gamma");
    CHECK(l.out.find("51728") != std::string::npos); // xvdb
    CHECK(l.out.find(img) != std::string::npos);

    // A backend that answers the teardown: it sees Closing and writes Closed.
    StoreClient backend = d.client();
    const std::string state = "/local/domain/0/backend/vbd/1/51728/state";
    REQUIRE(backend.watch(state, "t").ok());
    std::atomic<bool> answered{false};
    std::thread responder([&] {
        for (int i = 0; i < 50 && !answered; ++i) {
            auto ev = backend.wait_for_event(std::chrono::milliseconds(200));
            auto v = backend.read(state);
            if (v.ok() && v.value() == "5") {
                REQUIRE(backend.write(state, "6").ok());
                answered = true;
            }
            (void)ev;
        }
    });
    CommandResult det = pvkit_cli(d, "block-detach gamma xvdb --timeout 10");
    responder.join();
    INFO(det.err);
    CHECK(det.status == 0);
    CHECK(det.out.find("(backend Closed)") != std::string::npos);
    CHECK(answered);
    CHECK(pvkit_cli(d, "block-list gamma").out.find("51728") == std::string::npos);

    CommandResult bad = pvkit_cli(d, "block-detach gamma xvdc --timeout 0.1");
    CHECK(bad.status == 1);
    CHECK(bad.err == "pvkit: domain gamma has no vbd 51744\n");

    CommandResult n = pvkit_cli(d, "network-attach gamma --devid 3 --mac 02:00:00:00:00:33");
    INFO(n.err);
    REQUIRE(n.status == 0);
    CHECK(pvkit_cli(d, "network-list gamma").out.find("02:00:00:00:00:33") != std::string::npos);
    CommandResult nd = pvkit_cli(d, "network-detach gamma 3 --timeout 0.1");
    CHECK(nd.status == 0);
    CHECK(nd.out.find("no backend answered") != std::string::npos);
    CHECK(pvkit_cli(d, "network-list gamma").out.find("02:00:00:00:00:33") == std::string::npos);

    CHECK(pvkit_cli(d, "destroy nosuchdomain").status == 1);
}

TEST_CASE("pvkit create runs pvkit-vmm for a pv-guest and reports its exit status", "[cli][toolstack][kvm]") {
    Daemon d;
    TempDir dir;
    auto guest = [&](const std::string& name, const std::string& program) {
        nlohmann::json cfg = {{"name", name},
                              {"type", "pv-guest"},
                              {"memory", 64},
                              {"kernel", PVKIT_MINI_GUEST},
                              {"cmdline", "run=" + program}};
        return write_file(dir, name + ".json", cfg.dump());
    };
    CommandResult ok = pvkit_cli(d, "create '" + guest("hello1", "hello") + "' --timeout 60");
    INFO(ok.out << ok.err);
    CHECK(ok.status == 0);
    CHECK(ok.out.find("Hello from pvkit guest user mode (CPL 3)!") != std::string::npos);
    CHECK(ok.out.find("exited with status 0 (guest powered off)") != std::string::npos);
    // The VMM registered the domain with its own pid and removed it at exit.
    CHECK(list_json(d).empty());

    // A guest whose program faults: the VMM's documented status (2, crash) comes through.
    CommandResult bad = pvkit_cli(d, "create '" + guest("fault1", "fault") + "' --timeout 60");
    CHECK(bad.status == 2);
    CHECK(list_json(d).empty());
}

TEST_CASE("usage errors are one line on stderr and exit status 2", "[cli][toolstack]") {
    // No store is involved: each fails while the command line is parsed.
    const char* const cases[] = {
        "",                            // no command
        "bogus",                       // unknown command
        "store bogus",                 // unknown subcommand
        "--bogus",                     // unknown option, no command
        "destroy",                     // missing domain
        "store read",                  // missing path
        "block-attach g1 xvdb",        // missing image path
        "destroy g1 --bogus",          // unknown option
        "destroy g1 --timeout soon",   // not a number
        "destroy g1 --timeout 99999",  // out of range
        "network-attach g1 --devid x", // not a number
        "bench ring --rounds 0",       // out of range, two levels down
        "store --as-domid 70000 ls /", // out of range, before the subcommand
    };
    for (const char* args : cases) {
        CommandResult r = pvkit_bare(args);
        INFO("pvkit " << args << " -> " << r.status << ": " << r.err);
        CHECK(r.status == 2);
        CHECK(r.out.empty());
        CHECK(line_count(r.err) == 1);
        CHECK(r.err.rfind("pvkit", 0) == 0);
        CHECK(r.err.find("--help)\n") != std::string::npos);
    }
    // The message names the command whose --help explains it.
    CHECK(pvkit_bare("destroy").err ==
          "pvkit destroy: domain is required (see pvkit destroy --help)\n");
    CHECK(pvkit_bare("store read").err ==
          "pvkit store read: PATH is required (see pvkit store read --help)\n");
    CHECK(pvkit_bare("bogus").err == "pvkit: unknown command 'bogus' (see pvkit --help)\n");
    CHECK(pvkit_bare("store bogus").err ==
          "pvkit store: unknown command 'bogus' (see pvkit store --help)\n");
    CHECK(pvkit_bare("--bogus").err == "pvkit: unknown option '--bogus' (see pvkit --help)\n");
}

TEST_CASE("--help prints the command's help on stdout and exits 0", "[cli][toolstack]") {
    const std::pair<const char*, const char*> cases[] = {
        {"--help", "block-attach"},
        {"store --help", "Usage: pvkit store"},
        {"store read --help", "Usage: pvkit store read"},
        {"bench ring --help", "--rounds"},
        {"destroy --help", "--timeout"},
        {"list --help", "--json"},
    };
    for (const auto& [args, wanted] : cases) {
        CommandResult r = pvkit_bare(args);
        INFO("pvkit " << args << " -> " << r.status << ": " << r.err);
        CHECK(r.status == 0);
        CHECK(r.err.empty());
        CHECK(r.out.find(wanted) != std::string::npos);
    }
    // A subcommand's help is its own, not the top level's.
    CHECK(pvkit_bare("bench ring --help").out.find("block-attach") == std::string::npos);
}

TEST_CASE("attaching a device that exists is refused and changes nothing", "[cli][toolstack]") {
    Daemon d;
    TempDir dir;
    REQUIRE(pvkit_cli(d, "create '" + make_config(dir, "delta") + "'").status == 0);
    std::string img = write_file(dir, "other.img", std::string(4096, '\0'));
    StoreClient client = d.client();
    // Both devices are in use: each end Connected.
    const std::string states[] = {
        "/local/domain/1/device/vbd/51712/state", "/local/domain/0/backend/vbd/1/51712/state",
        "/local/domain/1/device/vif/0/state", "/local/domain/0/backend/vif/1/0/state"};
    for (const std::string& state : states)
        REQUIRE(client.write(state, "4").ok());
    const auto before = dump_store(client);

    // By vdev and name, and by devid and domid.
    CommandResult b = pvkit_cli(d, "block-attach delta xvda '" + img + "' --mode r");
    CHECK(b.status == 1);
    CHECK(b.out.empty());
    CHECK(b.err == "pvkit: domain delta already has vbd 51712\n");
    CommandResult b2 = pvkit_cli(d, "block-attach 1 51712 '" + img + "'");
    CHECK(b2.status == 1);
    CHECK(b2.err == "pvkit: domain 1 already has vbd 51712\n");
    CommandResult n = pvkit_cli(d, "network-attach delta --devid 0 --mac 02:00:00:00:00:44");
    CHECK(n.status == 1);
    CHECK(n.out.empty());
    CHECK(n.err == "pvkit: domain delta already has vif 0\n");
    CHECK(dump_store(client) == before);
    CHECK(client.read("/local/domain/0/backend/vbd/1/51712/state").value() == "4");
    CHECK(client.read("/local/domain/0/backend/vbd/1/51712/params").value() != img);

    // A backend directory left without its frontend still blocks the devid.
    REQUIRE(client.rm("/local/domain/1/device/vif/0").ok());
    const auto half = dump_store(client);
    CommandResult h = pvkit_cli(d, "network-attach delta --devid 0");
    CHECK(h.status == 1);
    CHECK(h.err == "pvkit: domain delta already has vif 0\n");
    CHECK(dump_store(client) == half);

    // Another devid is still welcome.
    CommandResult other = pvkit_cli(d, "network-attach delta --devid 1");
    INFO(other.err);
    CHECK(other.status == 0);
    CHECK(client.read("/local/domain/1/device/vif/1/state").value() == "1");
}

TEST_CASE("pvkit list prints a table; --json has memory_kib as a number or null",
          "[cli][toolstack]") {
    Daemon d;
    TempDir dir;
    CommandResult empty = pvkit_cli(d, "list");
    CHECK(empty.status == 0);
    CHECK(empty.out == "domid  name                     type          mem(KiB)   devices pid\n");

    REQUIRE(pvkit_cli(d, "create '" + make_config(dir, "hp1") + "'").status == 0);
    // A pv-guest registered the way pvkit-vmm does it (with the VMM's pid),
    // without running one.
    ts::DomainConfig vm;
    vm.name = "vm1";
    vm.type = ts::DomainType::kPvGuest;
    vm.memory_mib = 64;
    vm.vcpus = 1;
    vm.kernel = "/boot/pvkit-mini";
    vm.cmdline = "run=hello";
    StoreClient client = d.client();
    auto domid = ts::create_domain(client, vm, pid_t{4242});
    REQUIRE(domid.ok());
    REQUIRE(domid.value() == 2);

    CommandResult t = pvkit_cli(d, "list");
    INFO(t.err);
    CHECK(t.status == 0);
    CHECK(t.err.empty());
    CHECK(t.out == "domid  name                     type          mem(KiB)   devices pid\n"
                   "1      hp1                      host-process  -          2       -\n"
                   "2      vm1                      pv-guest      65536      0       4242\n");

    nlohmann::json all = list_json(d);
    REQUIRE(all.size() == 2);
    CHECK(all[0]["name"] == "hp1");
    CHECK(all[0]["memory_kib"].is_null());
    CHECK_FALSE(all[0].contains("pid"));
    CHECK(all[1]["name"] == "vm1");
    CHECK(all[1]["type"] == "pv-guest");
    CHECK(all[1]["memory_kib"].is_number_unsigned());
    CHECK(all[1]["memory_kib"] == 65536);
    CHECK(all[1]["pid"] == 4242);
    CHECK(all[1]["devices"].empty());

    // A target that is not a number is reported as unknown, not passed on.
    REQUIRE(client.write("/local/domain/2/memory/target", "lots").ok());
    CHECK(list_json(d)[1]["memory_kib"].is_null());
    CHECK(pvkit_cli(d, "list").out.find("pv-guest      -  ") != std::string::npos);
}
