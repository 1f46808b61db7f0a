// `pvkit store ...` against a real pvkit-stored.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "store_test_support.hpp"

using namespace pvkit::store;
using namespace pvkit::store::test;

namespace {

using Run = pvkit::test::CommandResult;

// Runs `pvkit <args>` through the shell (arguments are quoted by the
// caller where needed) and collects its output.
Run run_pvkit(const TempDir& /*tmp*/, const std::string& args, const std::string& env = "") {
    return pvkit::test::run_command(env + " '" + std::string(PVKIT_CLI_PATH) + "' " + args);
}

} // namespace

TEST_CASE("pvkit store read, write, ls, mkdir, rm, perms", "[cli]") {
    Daemon d;
    TempDir tmp;
    const std::string s = "store --socket '" + d.socket() + "' ";

    Run w = run_pvkit(tmp, s + "write /vm/1/name 'guest one'");
    CHECK(w.status == 0);
    CHECK(w.out.empty());
    CHECK(w.err.empty());
    Run r = run_pvkit(tmp, s + "read /vm/1/name");
    CHECK(r.status == 0);
    CHECK(r.out == "guest one\n");
    CHECK(run_pvkit(tmp, s + "mkdir /vm/2").status == 0);
    Run ls = run_pvkit(tmp, s + "ls /vm");
    CHECK(ls.status == 0);
    CHECK(ls.out == "1\n2\n");
    Run p = run_pvkit(tmp, s + "perms /vm/1/name");
    CHECK(p.out == "n0\n");
    CHECK(run_pvkit(tmp, s + "perms /vm/1/name n5 r7").status == 0);
    CHECK(run_pvkit(tmp, s + "perms /vm/1/name").out == "n5 r7\n");
    CHECK(run_pvkit(tmp, s + "rm /vm/1").status == 0);
    CHECK(run_pvkit(tmp, s + "ls /vm").out == "2\n");
    // Options of `store` may also come after the subcommand.
    CHECK(run_pvkit(tmp, "store ls /vm --socket '" + d.socket() + "'").out == "2\n");
    // The socket can come from the environment.
    CHECK(run_pvkit(tmp, "store ls /vm", "PVKIT_STORE_SOCKET='" + d.socket() + "'").out == "2\n");
}

TEST_CASE("pvkit store errors are one line and a non-zero exit", "[cli]") {
    Daemon d;
    TempDir tmp;
    const std::string s = "store --socket '" + d.socket() + "' ";
    Run r = run_pvkit(tmp, s + "read /nope");
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK(r.err == "pvkit: store read /nope: ENOENT\n");
    Run bad = run_pvkit(tmp, s + "write 'not a path' x");
    CHECK(bad.status == 1);
    CHECK(bad.err == "pvkit: store write not a path: EINVAL\n");
    Run perm = run_pvkit(tmp, s + "perms / q5");
    CHECK(perm.status == 1);
    CHECK(perm.err.find("bad permission 'q5'") != std::string::npos);
    CHECK(std::count(perm.err.begin(), perm.err.end(), '\n') == 1);
    Run denied = run_pvkit(tmp, s + "--as-domid 4 read /");
    CHECK(denied.status == 1);
    CHECK(denied.err == "pvkit: store read /: EACCES\n");
    Run gone = run_pvkit(tmp, "store --socket '" + (tmp.path() / "none.sock").string() + "' read /");
    CHECK(gone.status == 1);
    CHECK(gone.err.find("cannot connect to") != std::string::npos);
    CHECK(std::count(gone.err.begin(), gone.err.end(), '\n') == 1);
}

TEST_CASE("pvkit store watch prints events and stops after --count", "[cli]") {
    Daemon d;
    TempDir tmp;
    std::string cmd = "'" + std::string(PVKIT_CLI_PATH) + "' store --socket '" + d.socket() +
                      "' watch /w --count 3 --timeout 20";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char line[256];
    // The first event comes as soon as the watch is set; once it is read,
    // the watch is in place and the writes below cannot be missed.
    REQUIRE(std::fgets(line, sizeof line, p) != nullptr);
    CHECK(std::string(line) == "/w\n");
    StoreClient c = d.client();
    REQUIRE(c.write("/w/a", "1").ok());
    REQUIRE(c.rm("/w/a").ok());
    REQUIRE(std::fgets(line, sizeof line, p) != nullptr);
    CHECK(std::string(line) == "/w/a\n");
    REQUIRE(std::fgets(line, sizeof line, p) != nullptr);
    CHECK(std::string(line) == "/w/a\n");
    int status = ::pclose(p);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    // Too few events before the timeout: an error.
    Run r = run_pvkit(tmp, "store --socket '" + d.socket() + "' watch /quiet --count 2 --timeout 0.3");
    CHECK(r.status == 1);
    CHECK(r.out == "/quiet\n");
    CHECK(r.err == "pvkit: store watch /quiet: timed out after 1 of 2 events\n");
}

TEST_CASE("pvkit-stored: one clear line for bad options and unusable sockets", "[cli][daemon]") {
    TempDir tmp;
    auto stored = [&](const std::string& args) {
        return pvkit::test::run_command("'" + stored_binary() + "' " + args);
    };
    Run bogus = stored("--bogus");
    CHECK(bogus.status == 2);
    CHECK(bogus.err.rfind("pvkit-stored: ", 0) == 0);
    CHECK(std::count(bogus.err.begin(), bogus.err.end(), '\n') == 1);
    Run fsync = stored("--fsync sometimes --foreground");
    CHECK(fsync.status == 2);
    CHECK(fsync.err.find("--fsync") != std::string::npos);

    // The socket's directory is a regular file: cannot bind.
    std::ofstream(tmp.path() / "file") << "x";
    Run bind = stored("--foreground --data-dir '" + (tmp.path() / "data").string() + "' --socket '" +
                      (tmp.path() / "file" / "s.sock").string() + "'");
    CHECK(bind.status == 1);
    CHECK(bind.err.rfind("pvkit-stored: cannot bind ", 0) == 0);
    CHECK(std::count(bind.err.begin(), bind.err.end(), '\n') == 1);

    // Someone is already serving that socket.
    Daemon d;
    Run busy = stored("--foreground --data-dir '" + (tmp.path() / "data2").string() + "' --socket '" +
                      d.socket() + "'");
    CHECK(busy.status == 1);
    CHECK(busy.err == "pvkit-stored: cannot bind " + d.socket() + ": another pvkit-stored is listening on it\n");
    StoreClient c = d.client();
    CHECK(c.write("/still", "here").ok());
}
