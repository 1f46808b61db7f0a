#include "e2e_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "pvkit/transport/unique_fd.hpp"

namespace pvkit::blkfront::e2e {

std::string pvkit_binary() { return PVKIT_CLI_PATH; }

World::World() : blkback(store.socket(), (dir.path() / "blkback.sock").string()) {}

std::string World::image(const std::string& name, std::uint64_t bytes) const {
    const std::string p = path(name);
    UniqueFd fd(::open(p.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600));
    if (!fd.valid())
        throw_errno("create " + p);
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
        throw_errno("ftruncate " + p);
    return p;
}

front::HostDomainOptions World::domain_options() const {
    front::HostDomainOptions o;
    o.store_socket = store.socket();
    o.timeout = kWait;
    return o;
}

std::vector<std::byte> read_file(const std::string& path, std::uint64_t offset, std::size_t len) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        throw_errno("open " + path);
    std::vector<std::byte> out(len);
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n = ::pread(fd.get(), out.data() + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_errno("pread " + path);
        if (n == 0)
            throw std::runtime_error("pread " + path + ": short file");
        done += static_cast<std::size_t>(n);
    }
    return out;
}

void DiskModel::write(std::uint64_t offset, std::span<const std::byte> data) {
    if (offset + data.size() > m_bytes.size())
        throw std::out_of_range("DiskModel::write");
    std::memcpy(m_bytes.data() + offset, data.data(), data.size());
}

void DiskModel::zero(std::uint64_t offset, std::uint64_t length) {
    if (offset + length > m_bytes.size())
        throw std::out_of_range("DiskModel::zero");
    std::memset(m_bytes.data() + offset, 0, length);
}

std::span<const std::byte> DiskModel::at(std::uint64_t offset, std::uint64_t length) const {
    if (offset + length > m_bytes.size())
        throw std::out_of_range("DiskModel::at");
    return {m_bytes.data() + offset, static_cast<std::size_t>(length)};
}

std::optional<std::uint64_t> first_difference(std::span<const std::byte> got,
                                              std::span<const std::byte> want, std::uint64_t offset) {
    if (got.size() != want.size())
        return offset;
    if (std::memcmp(got.data(), want.data(), got.size()) == 0)
        return std::nullopt;
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (got[i] != want[i])
            return offset + i;
    }
    return std::nullopt;
}

CommandResult run_pvkit(const std::vector<std::string>& args) {
    TempDir tmp;
    const std::string out_path = (tmp.path() / "out").string();
    const std::string err_path = (tmp.path() / "err").string();
    std::vector<std::string> storage{pvkit_binary()};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : storage)
        argv.push_back(s.data());
    argv.push_back(nullptr);
    UniqueFd out(::open(out_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600));
    UniqueFd err(::open(err_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600));
    if (!out.valid() || !err.valid())
        throw_errno("open capture files");
    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        if (::dup2(out.get(), 1) < 0 || ::dup2(err.get(), 2) < 0)
            ::_exit(126);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    // Bounded: a hung command is killed after kWait * 3 (its own timeouts
    // are shorter).
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + 3 * kWait;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            throw_errno("waitpid");
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            break;
        }
        pollfd none{-1, 0, 0};
        ::poll(&none, 0, 10);
    }
    CommandResult res;
    res.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    auto slurp = [](const std::string& p) {
        UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
        std::string s;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd.get(), buf, sizeof buf)) > 0)
            s.append(buf, static_cast<std::size_t>(n));
        return s;
    };
    res.out = slurp(out_path);
    res.err = slurp(err_path);
    return res;
}

} // namespace pvkit::blkfront::e2e
