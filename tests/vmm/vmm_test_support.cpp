#include "vmm_test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "pvkit/transport/unique_fd.hpp"
#include "test_support.hpp"

namespace pvkit::test {

ScratchDir::ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/pvkit-vmm-test-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr)
        throw_errno("mkdtemp");
    m_path = templ;
}

ScratchDir::~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_binary_file(const std::string& path, const std::vector<std::byte>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write " + path);
}

std::vector<std::byte> read_binary_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    std::memcpy(bytes.data(), chars.data(), chars.size());
    return bytes;
}

ElfBuilder::ElfBuilder(std::uint64_t load_gpa, std::size_t code_bytes, std::uint64_t bss) {
    std::memcpy(header.e_ident, ELFMAG, SELFMAG);
    header.e_ident[EI_CLASS] = ELFCLASS64;
    header.e_ident[EI_DATA] = ELFDATA2LSB;
    header.e_ident[EI_VERSION] = EV_CURRENT;
    header.e_type = ET_EXEC;
    header.e_machine = EM_X86_64;
    header.e_version = EV_CURRENT;
    header.e_entry = load_gpa;
    header.e_phoff = sizeof(Elf64_Ehdr);
    header.e_ehsize = sizeof(Elf64_Ehdr);
    header.e_phentsize = sizeof(Elf64_Phdr);
    std::vector<std::byte> code(code_bytes, std::byte{0x90}); // nops
    add_segment(load_gpa, std::move(code), code_bytes + bss, PF_R | PF_X);
}

Elf64_Phdr& ElfBuilder::add_segment(std::uint64_t gpa, std::vector<std::byte> bytes,
                                    std::uint64_t memsz, std::uint32_t flags) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = flags;
    ph.p_offset = payload.size(); // relative for now; build() adds payload_offset()
    ph.p_vaddr = gpa;
    ph.p_paddr = gpa;
    ph.p_filesz = bytes.size();
    ph.p_memsz = memsz;
    ph.p_align = 1;
    payload.insert(payload.end(), bytes.begin(), bytes.end());
    segments.push_back(ph);
    return segments.back();
}

std::uint64_t ElfBuilder::payload_offset() const {
    return sizeof(Elf64_Ehdr) + segments.size() * sizeof(Elf64_Phdr);
}

std::vector<std::byte> ElfBuilder::build() const {
    Elf64_Ehdr eh = header;
    if (eh.e_phnum == 0 && !segments.empty())
        eh.e_phnum = static_cast<Elf64_Half>(segments.size());
    std::vector<std::byte> out(sizeof eh);
    std::memcpy(out.data(), &eh, sizeof eh);
    for (Elf64_Phdr ph : segments) {
        ph.p_offset += payload_offset();
        const std::size_t at = out.size();
        out.resize(at + sizeof ph);
        std::memcpy(out.data() + at, &ph, sizeof ph);
    }
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

VmmProcess VmmProcess::start(const std::vector<std::string>& args) {
    auto dir = std::make_unique<ScratchDir>();
    const std::string out_path = dir->file("stdout");
    const std::string err_path = dir->file("stderr");
    UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    UniqueFd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out.valid() || !err.valid())
        throw_errno("open of the VMM's output files");

    std::vector<std::string> storage{PVKIT_VMM_BINARY};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : storage)
        argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        // Only async-signal-safe calls between fork and exec.
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
            ::_exit(126);
        if (::dup2(out.get(), STDOUT_FILENO) < 0 || ::dup2(err.get(), STDERR_FILENO) < 0)
            ::_exit(126);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    // Through syscall(2): Debian 12's <sys/pidfd.h> lacks extern "C" for C++.
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
        const int e = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw std::system_error(e, std::generic_category(), "pidfd_open");
    }
    return VmmProcess(std::move(dir), pid, pidfd);
}

VmmProcess::VmmProcess(VmmProcess&& other) noexcept
    : m_dir(std::move(other.m_dir)), m_pid(std::exchange(other.m_pid, -1)),
      m_pidfd(std::exchange(other.m_pidfd, -1)) {}

VmmProcess::~VmmProcess() {
    if (m_pid > 0) {
        ::kill(m_pid, SIGKILL);
        while (::waitpid(m_pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    if (m_pidfd >= 0)
        ::close(m_pidfd);
}

VmmRun VmmProcess::wait(std::chrono::seconds bound) {
    pollfd pfd{m_pidfd, POLLIN, 0};
    int ready;
    do {
        ready = ::poll(&pfd, 1, static_cast<int>(bound.count() * 1000));
    } while (ready < 0 && errno == EINTR);
    if (ready <= 0)
        ::kill(m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
    }
    m_pid = -1;
    VmmRun run;
    run.wait_status = status;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = read_text_file(m_dir->file("stdout"));
    run.err = read_text_file(m_dir->file("stderr"));
    if (ready <= 0)
        throw std::runtime_error("pvkit-vmm did not finish within the test's bound; stderr:\n" +
                                 run.err);
    if (!WIFEXITED(status))
        throw std::runtime_error("pvkit-vmm " + describe_wait_status(status) + "; stderr:\n" +
                                 run.err);
    return run;
}

VmmRun run_vmm(const std::vector<std::string>& args, std::chrono::seconds bound) {
    return VmmProcess::start(args).wait(bound);
}

} // namespace pvkit::test
