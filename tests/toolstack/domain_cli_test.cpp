// The toolstack commands (`pvkit create/list/destroy/block-*/network-*`) as
// users run them, against a real pvkit-stored.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "store_test_support.hpp"
#include "test_support.hpp"

using pvkit::store::StoreClient;
using pvkit::store::test::Daemon;
using pvkit::store::test::TempDir;
using pvkit::test::CommandResult;

namespace {

CommandResult pvkit_cli(const Daemon& d, const std::string& args) {
    return pvkit::test::run_command("'" + std::string(PVKIT_CLI_PATH) + "' " + args +
                                    " --store-socket '" + d.socket() + "'");
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
