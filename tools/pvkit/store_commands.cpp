// `pvkit store read|write|ls|mkdir|rm|watch|perms`: the store from the
// command line, like xenstore-read and friends.
#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "pvkit/store/client.hpp"

namespace pvkit::cli {

namespace {

using store::StoreClient;
using store::StoreError;

struct StoreArgs {
    std::string socket;
    int as_domid = -1;
};

// "store read /x: ENOENT" — main() adds the "pvkit: " in front.
[[noreturn]] void fail(const std::string& what, StoreError error) {
    throw std::runtime_error("store " + what + ": " + std::string(store::to_string(error)));
}

StoreClient connect(const StoreArgs& a, const std::string& what) {
    std::string detail;
    store::StoreResult<StoreClient> c = StoreClient::connect(a.socket, std::chrono::seconds(5), &detail);
    if (!c)
        throw std::runtime_error("store " + what + ": cannot connect to " +
                                 (detail.empty() ? store::resolve_socket_path(a.socket) : detail));
    if (a.as_domid >= 0) {
        store::StoreResult<void> r = c->restrict(static_cast<pvkit_domid_t>(a.as_domid));
        if (!r)
            fail(what + " (restrict to domain " + std::to_string(a.as_domid) + ")", r.error());
    }
    return std::move(c).value();
}

// Options of `pvkit store` may also follow the subcommand.
CLI::App* leaf(CLI::App& parent, const std::string& name, const std::string& help) {
    CLI::App* cmd = parent.add_subcommand(name, help);
    cmd->fallthrough();
    return cmd;
}

} // namespace

void register_store_commands(CLI::App& app, Context& ctx) {
    auto* st = app.add_subcommand("store", "Read and change the store (pvkit-stored)");
    st->require_subcommand(1);
    auto a = std::make_shared<StoreArgs>();
    st->add_option("--socket", a->socket,
                   "pvkit-stored's socket (default: $PVKIT_STORE_SOCKET or /run/pvkit/stored.sock)");
    st->add_option("--as-domid", a->as_domid,
                   "Act as this domain (restrict the connection) instead of domain 0")
        ->check(CLI::Range(1, static_cast<int>(PVKIT_DOMID_MAX)));

    {
        auto* cmd = leaf(*st, "read", "Print a node's value");
        auto path = std::make_shared<std::string>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->callback([a, path] {
            StoreClient c = connect(*a, "read " + *path);
            store::StoreResult<std::string> v = c.read(*path);
            if (!v)
                fail("read " + *path, v.error());
            std::cout << *v << "\n";
        });
    }
    {
        auto* cmd = leaf(*st, "write", "Set a node's value (creating the node and its parents)");
        auto path = std::make_shared<std::string>();
        auto value = std::make_shared<std::string>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->add_option("VALUE", *value, "New value")->required();
        cmd->callback([a, path, value] {
            StoreClient c = connect(*a, "write " + *path);
            store::StoreResult<void> r = c.write(*path, *value);
            if (!r)
                fail("write " + *path, r.error());
        });
    }
    {
        auto* cmd = leaf(*st, "ls", "List a node's children, one per line");
        auto path = std::make_shared<std::string>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->callback([a, path] {
            StoreClient c = connect(*a, "ls " + *path);
            store::StoreResult<std::vector<std::string>> d = c.directory(*path);
            if (!d)
                fail("ls " + *path, d.error());
            for (const std::string& name : *d)
                std::cout << name << "\n";
        });
    }
    {
        auto* cmd = leaf(*st, "mkdir", "Create an empty node (no error if it exists)");
        auto path = std::make_shared<std::string>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->callback([a, path] {
            StoreClient c = connect(*a, "mkdir " + *path);
            store::StoreResult<void> r = c.mkdir(*path);
            if (!r)
                fail("mkdir " + *path, r.error());
        });
    }
    {
        auto* cmd = leaf(*st, "rm", "Remove a node and everything below it");
        auto path = std::make_shared<std::string>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->callback([a, path] {
            StoreClient c = connect(*a, "rm " + *path);
            store::StoreResult<void> r = c.rm(*path);
            if (!r)
                fail("rm " + *path, r.error());
        });
    }
    {
        auto* cmd = leaf(*st, "watch",
                         "Print the path of each change at or below PATH (the first line comes at once)");
        auto path = std::make_shared<std::string>();
        auto count = std::make_shared<long>(0);
        auto timeout = std::make_shared<double>(0);
        cmd->add_option("PATH", *path, "Path to watch")->required();
        cmd->add_option("--count", *count, "Exit after this many events (counting the first)")
            ->check(CLI::Range(1L, 1L << 40));
        cmd->add_option("--timeout", *timeout, "Give up after this many seconds")
            ->check(CLI::Range(0.001, 1e9));
        cmd->callback([a, path, count, timeout, &ctx] {
            const std::string what = "watch " + *path;
            StoreClient c = connect(*a, what);
            store::StoreResult<void> r = c.watch(*path, "pvkit-cli");
            if (!r)
                fail(what, r.error());
            using Clock = std::chrono::steady_clock;
            const bool bounded = *timeout > 0;
            const Clock::time_point deadline =
                Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*timeout));
            long seen = 0;
            while (*count == 0 || seen < *count) {
                auto wait = std::chrono::milliseconds(1000);
                if (bounded) {
                    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
                    if (left.count() <= 0)
                        break;
                    wait = std::min(wait, left);
                }
                store::StoreResult<store::WatchEvent> e = c.wait_for_event(wait);
                if (!e) {
                    if (e.error() == StoreError::kTimedOut)
                        continue;
                    fail(what, e.error());
                }
                std::cout << e->path << std::endl;
                ++seen;
            }
            if (*count != 0 && seen < *count) {
                std::cerr << "pvkit: store " << what << ": timed out after " << seen << " of " << *count
                          << " events\n";
                ctx.exit_code = 1;
            }
        });
    }
    {
        auto* cmd = leaf(*st, "perms", "Print a node's permissions, or set them (e.g. n5 r0)");
        auto path = std::make_shared<std::string>();
        auto perms = std::make_shared<std::vector<std::string>>();
        cmd->add_option("PATH", *path, "Node path")->required();
        cmd->add_option("PERM", *perms,
                        "New permissions: owner and default access first (n/r/w/b + domid), "
                        "then per-domain entries");
        cmd->callback([a, path, perms] {
            const std::string what = "perms " + *path;
            StoreClient c = connect(*a, what);
            if (perms->empty()) {
                store::StoreResult<store::Perms> p = c.get_perms(*path);
                if (!p)
                    fail(what, p.error());
                std::cout << store::format_perms(*p) << "\n";
                return;
            }
            store::Perms parsed;
            for (const std::string& text : *perms) {
                std::optional<store::Perm> p = store::parse_perm(text);
                if (!p)
                    throw std::runtime_error("store " + what + ": bad permission '" + text +
                                             "' (expected n, r, w or b followed by a domid)");
                parsed.push_back(*p);
            }
            store::StoreResult<void> r = c.set_perms(*path, parsed);
            if (!r)
                fail(what, r.error());
        });
    }
}

} // namespace pvkit::cli
