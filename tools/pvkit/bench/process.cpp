#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pvkit::bench {

int online_cpus() {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

void pin_to_cpu(int cpu) {
    if (online_cpus() < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(cpu % online_cpus()), &set);
    // Best effort: a restricted cpuset only costs accuracy, not correctness.
    (void)::sched_setaffinity(0, sizeof set, &set);
}

namespace {
void poll_readable(int fd, std::chrono::milliseconds timeout, const char* what) {
    pollfd pfd{fd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        throw std::runtime_error(std::string("benchmark child did not answer: ") + what);
}

void read_exact(int fd, void* buf, std::size_t len, std::chrono::milliseconds timeout,
                const char* what) {
    auto* p = static_cast<char*>(buf);
    while (len > 0) {
        poll_readable(fd, timeout, what);
        ssize_t n = ::read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw std::runtime_error(std::string("benchmark child exited early: ") + what);
        p += n;
        len -= static_cast<std::size_t>(n);
    }
}
} // namespace

Child::Child(int cpu, const std::function<int(Child&)>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("pipe2");
    m_parent_end.reset(fds[0]);
    m_to_parent.reset(fds[1]);
    std::fflush(nullptr);
    m_pid = ::fork();
    if (m_pid < 0)
        throw_errno("fork");
    if (m_pid == 0) {
        m_parent_end.reset();
        int status = 1;
        try {
            pin_to_cpu(cpu);
            status = body(*this);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "pvkit bench child: %s\n", e.what());
        }
        std::fflush(nullptr);
        ::_exit(status);
    }
    m_to_parent.reset();
}

Child::~Child() {
    if (m_pid > 0) {
        ::kill(m_pid, SIGKILL);
        ::waitpid(m_pid, nullptr, 0);
    }
}

void Child::signal_ready() {
    std::uint64_t word = 0x7265616479; // "ready"
    send(std::span(&word, 1));
}

void Child::send(std::span<const std::uint64_t> words) {
    const auto* p = reinterpret_cast<const char*>(words.data());
    std::size_t len = words.size_bytes();
    while (len > 0) {
        ssize_t n = ::write(m_to_parent.get(), p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw_errno("write to benchmark parent");
        p += n;
        len -= static_cast<std::size_t>(n);
    }
}

void Child::wait_ready(std::chrono::milliseconds timeout) {
    std::uint64_t word = 0;
    read_exact(m_parent_end.get(), &word, sizeof word, timeout, "ready");
}

std::vector<std::uint64_t> Child::receive(std::size_t count, std::chrono::milliseconds timeout) {
    std::vector<std::uint64_t> words(count);
    read_exact(m_parent_end.get(), words.data(), count * sizeof(std::uint64_t), timeout, "result");
    return words;
}

void Child::join(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(m_pid, &status, WNOHANG);
        if (r == m_pid)
            break;
        if (r < 0)
            throw_errno("waitpid");
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("benchmark child did not exit in time");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    m_pid = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("benchmark child failed with status " + std::to_string(status));
}

} // namespace pvkit::bench
