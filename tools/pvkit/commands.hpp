// Each group of `pvkit` subcommands registers itself here. A command's
// callback throws on failure (main prints one line and exits 1) or sets
// ctx.exit_code for a specific non-zero status.
#pragma once

#include <CLI/CLI.hpp>

namespace pvkit::cli {

struct Context {
    int exit_code = 0;
};

void register_bench_commands(CLI::App& app, Context& ctx);
// `pvkit store read|write|ls|rm|watch|perms` (tools/pvkit/store_commands.cpp)
void register_store_commands(CLI::App& app, Context& ctx);
// `pvkit create|list|destroy|block-*|network-*` (tools/pvkit/domain_commands.cpp)
void register_domain_commands(CLI::App& app, Context& ctx);
// `pvkit blk read|write|verify|bench-io ...` (tools/pvkit/blk_commands.cpp)
void register_blk_commands(CLI::App& app, Context& ctx);
// `pvkit console <domain>` (tools/pvkit/console_commands.cpp)
void register_console_commands(CLI::App& app, Context& ctx);

} // namespace pvkit::cli
