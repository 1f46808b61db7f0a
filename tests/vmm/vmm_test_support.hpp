// Helpers for the VMM tests: a scratch directory, crafted ELF files, and
// running the real pvkit-vmm binary with its output captured.
#pragma once

#include <elf.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pvkit::test {

// The error of a Result, or nullopt if it succeeded: `CHECK(error_of(r) ==
// E::kX)` fails cleanly on an unexpected success instead of reading the
// error of a successful result.
template <class R> auto error_of(const R& result) -> std::optional<decltype(result.error())> {
    if (result.ok())
        return std::nullopt;
    return result.error();
}

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class ScratchDir {
public:
    ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    ~ScratchDir();

    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }
    [[nodiscard]] std::string file(const std::string& name) const {
        return (m_path / name).string();
    }

private:
    std::filesystem::path m_path;
};

std::string read_text_file(const std::string& path);
void write_binary_file(const std::string& path, const std::vector<std::byte>& bytes);
std::vector<std::byte> read_binary_file(const std::string& path);

// A minimal, valid static x86-64 executable that tests then break in one
// place: one R+X PT_LOAD segment at `load_gpa` holding `code`, with
// `bss` zero bytes after it, entry at its start.
struct ElfBuilder {
    Elf64_Ehdr header{};
    std::vector<Elf64_Phdr> segments;
    std::vector<std::byte> payload; // placed right after the program headers

    ElfBuilder(std::uint64_t load_gpa, std::size_t code_bytes, std::uint64_t bss);
    // Appends a segment whose bytes are `bytes` (added to the payload).
    Elf64_Phdr& add_segment(std::uint64_t gpa, std::vector<std::byte> bytes, std::uint64_t memsz,
                            std::uint32_t flags);
    [[nodiscard]] std::uint64_t payload_offset() const;
    [[nodiscard]] std::vector<std::byte> build() const;
};

struct VmmRun {
    int wait_status = 0; // as from waitpid
    int exit_code = -1;  // -1 unless the process exited normally
    std::string out;     // stdout: the guest console unless --console-log
    std::string err;     // stderr: diagnostics and the exit summary
};

// PVKIT_VMM_BINARY running with its stdout and stderr captured in files.
// The destructor kills (by pid) and reaps a VMM that is still running.
class VmmProcess {
public:
    static VmmProcess start(const std::vector<std::string>& args);

    VmmProcess(VmmProcess&& other) noexcept;
    VmmProcess& operator=(VmmProcess&&) = delete;
    VmmProcess(const VmmProcess&) = delete;
    VmmProcess& operator=(const VmmProcess&) = delete;
    ~VmmProcess();

    [[nodiscard]] pid_t pid() const { return m_pid; }
    // Waits at most `bound`; past it the VMM is killed and this throws.
    VmmRun wait(std::chrono::seconds bound = std::chrono::seconds(120));

private:
    VmmProcess(std::unique_ptr<ScratchDir> dir, pid_t pid, int pidfd)
        : m_dir(std::move(dir)), m_pid(pid), m_pidfd(pidfd) {}

    std::unique_ptr<ScratchDir> m_dir;
    pid_t m_pid = -1;
    int m_pidfd = -1;
};

// start() and wait(): runs the VMM to completion and returns what it printed.
VmmRun run_vmm(const std::vector<std::string>& args,
               std::chrono::seconds bound = std::chrono::seconds(120));

} // namespace pvkit::test
