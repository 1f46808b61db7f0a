// pvkit-blkback: serves vbd devices from disk images (docs/blkback.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "pvkit/blkback/daemon.hpp"

int main(int argc, char** argv) {
    pvkit::blkback::DaemonOptions options;
    long long spin_us = options.spin.count();
    long long close_ms = options.close_timeout.count();
    long long stats_ms = options.stats_interval.count();

    CLI::App app{"pvkit-blkback: the pvkit block backend daemon"};
    app.add_option("--store-socket", options.store_socket,
                   "pvkit-stored socket (default: $PVKIT_STORE_SOCKET, then /run/pvkit/stored.sock)");
    app.add_option("--handoff-socket", options.handoff_socket,
                   "SOCK_SEQPACKET socket on which frontends hand over their grant pool and eventfds")
        ->capture_default_str();
    app.add_flag("--direct", options.direct, "open images with O_DIRECT (bypass the host page cache)");
    bool uring_writes = false;
    app.add_flag(
        "--uring-writes", uring_writes,
        "buffered images: submit WRITEs to io_uring instead of writing them in the event loop");
    bool uring_reads = false;
    app.add_flag("--uring-reads", uring_reads,
                 "buffered images: submit READs to io_uring instead of reading the page cache in "
                 "the event loop");
    app.add_option("--ready-fd", options.ready_fd, "write READY to this descriptor once serving");
    app.add_option("--spin-us", spin_us, "poll rings this many microseconds before sleeping")
        ->check(CLI::Range(0LL, 1000000LL))
        ->capture_default_str();
    app.add_option("--submit-chunk", options.submit_chunk,
                   "requests consumed per device before each io_uring submit (0: the whole ring)")
        ->check(CLI::Range(0u, 4096u))
        ->capture_default_str();
    app.add_option("--close-timeout-ms", close_ms, "longest wait for a frontend to finish closing")
        ->check(CLI::Range(1LL, 3600000LL))
        ->capture_default_str();
    app.add_option("--stats-interval-ms", stats_ms, "publish statistics/ at most this often")
        ->check(CLI::Range(1LL, 3600000LL))
        ->capture_default_str();
    app.add_option("--max-ring-page-order", options.caps.max_ring_page_order,
                   "cap on max-ring-page-order for every device")
        ->check(CLI::Range(0u, 4u))
        ->capture_default_str();
    app.add_option("--max-indirect-segments", options.caps.max_indirect_segments,
                   "cap on feature-max-indirect-segments for every device (0 disables indirect)")
        ->check(CLI::Range(0u, 256u))
        ->capture_default_str();
    app.add_option("--queue-depth", options.cq_entries,
                   "io_uring completion entries: the I/O operations in flight across all devices")
        ->check(CLI::Range(64u, 65536u))
        ->capture_default_str();
    app.add_flag("--json-stats", options.json_stats,
                 "print statistics as JSON on stdout (on SIGUSR1 and at exit) instead of text on stderr");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    options.inline_writes = !uring_writes;
    options.inline_reads = !uring_reads;
    options.spin = std::chrono::microseconds(spin_us);
    options.close_timeout = std::chrono::milliseconds(close_ms);
    options.stats_interval = std::chrono::milliseconds(stats_ms);

    try {
        pvkit::blkback::Daemon daemon(options);
        return daemon.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pvkit-blkback: %s\n", e.what());
        return 1;
    }
}
