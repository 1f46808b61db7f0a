// pvkit: the toolstack command line (like Xen's xl).
//
// Exit status: 0 success, 1 failure, 2 usage error (unknown command or
// option, missing argument, bad value); `bench --require-goals` exits 3
// when a goal is missed, and `create` of a pv-guest passes pvkit-vmm's
// status through. A failure is one line on stderr (except a config with
// several problems, one line each); `--help` prints to stdout and exits 0.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

constexpr int kUsageError = 2;

// CLI11's message on one line (a few of its messages span several).
std::string one_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    std::string out;
    for (char c : text) {
        if (c == '\n')
            out += "; ";
        else
            out += c;
    }
    return out;
}

// The deepest subcommand the parser had reached when it gave up ("pvkit
// bench ring"), so that the message points at the right --help.
const CLI::App* deepest_command(const CLI::App& app) {
    const CLI::App* cur = &app;
    while (!cur->get_subcommands().empty())
        cur = cur->get_subcommands().back();
    return cur;
}

std::string command_path(const CLI::App* cmd) {
    std::string path = cmd->get_name();
    for (const CLI::App* up = cmd->get_parent(); up != nullptr; up = up->get_parent())
        path = up->get_name() + " " + path;
    return path;
}

// What went wrong, on one line. A command that needs a subcommand and got
// a word it does not know reports that word rather than the missing
// subcommand.
std::string describe(const CLI::ParseError& e, const CLI::App* cmd) {
    if (e.get_name() == "RequiredError" && cmd->get_require_subcommand_min() > 0 &&
        cmd->get_subcommands().empty()) {
        const std::vector<std::string> extra = cmd->remaining();
        if (!extra.empty())
            return (extra.front().starts_with("-") ? "unknown option '" : "unknown command '") +
                   extra.front() + "'";
    }
    return one_line(e.what());
}

} // namespace

int main(int argc, char** argv) {
    // Named, so that help says "pvkit" whatever path it was run by.
    CLI::App app{"pvkit: paravirtualized split drivers on KVM", "pvkit"};
    app.require_subcommand(1);
    pvkit::cli::Context ctx;
    pvkit::cli::register_bench_commands(app, ctx);
    pvkit::cli::register_store_commands(app, ctx);
    pvkit::cli::register_domain_commands(app, ctx);
    pvkit::cli::register_blk_commands(app, ctx);
    pvkit::cli::register_console_commands(app, ctx);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0 || e.get_name() == "RuntimeError")
            return app.exit(e); // --help (of the subcommand given); a bare status
        const CLI::App* cmd = deepest_command(app);
        const std::string where = command_path(cmd);
        std::cerr << where << ": " << describe(e, cmd) << " (see " << where << " --help)\n";
        return kUsageError;
    } catch (const std::exception& e) {
        std::cerr << "pvkit: " << e.what() << "\n";
        return 1;
    }
    return ctx.exit_code;
}
