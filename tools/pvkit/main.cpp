// pvkit: the toolstack command line (like Xen's xl).
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) {
    CLI::App app{"pvkit: paravirtualized split drivers on KVM"};
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
        return app.exit(e);
    } catch (const std::exception& e) {
        std::cerr << "pvkit: " << e.what() << "\n";
        return 1;
    }
    return ctx.exit_code;
}
