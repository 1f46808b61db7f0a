// Benchmark processes: a forked child pinned to its own CPU, and a pipe to
// pass small results back.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::bench {

// Pins the calling thread to `cpu` if the machine has more than one CPU.
void pin_to_cpu(int cpu);
[[nodiscard]] int online_cpus();

// A child forked to run `body` pinned to `cpu`. Its return value becomes
// the exit status; exceptions print to stderr and exit 1. The child never
// returns into the caller's stack.
class Child {
public:
    Child(int cpu, const std::function<int(Child&)>& body);
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child();

    // Child side: tell the parent set-up is done; send result words.
    void signal_ready();
    void send(std::span<const std::uint64_t> words);

    // Parent side.
    void wait_ready(std::chrono::milliseconds timeout);
    std::vector<std::uint64_t> receive(std::size_t count, std::chrono::milliseconds timeout);
    // Waits for exit; throws if the child failed or does not exit in time.
    void join(std::chrono::milliseconds timeout);

private:
    pid_t m_pid = -1;
    UniqueFd m_to_parent; // child writes, parent reads
    UniqueFd m_parent_end;
};

} // namespace pvkit::bench
