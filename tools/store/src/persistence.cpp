#include "pvkit/store/persistence.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <system_error>

namespace pvkit::store {

namespace {

constexpr char kLogMagic[8] = {'P', 'V', 'K', 'S', 'T', 'L', 'O', 'G'};
constexpr std::uint32_t kLogVersion = 1;
constexpr std::size_t kLogHeaderSize = 16;
constexpr std::size_t kRecordHeaderSize = 8;
// No record can be bigger than this: a ChangeSet comes from one request or
// one transaction, and the largest transaction still fits comfortably. It
// bounds what a corrupt length field can make start-up allocate.
constexpr std::uint32_t kMaxRecordBody = 256u << 20;

constexpr const char* kLogName = "store.log";
constexpr const char* kSnapshotName = "snapshot.json";
constexpr const char* kSnapshotTmpName = "snapshot.json.tmp";
constexpr const char* kLockName = "lock";

std::uint32_t crc32(std::string_view bytes) {
    boost::crc_32_type crc;
    crc.process_bytes(bytes.data(), bytes.size());
    return crc.checksum();
}

template <class T>
void put_le(std::string& out, T value) {
    // x86-64 is little-endian (abi.h), so the in-memory bytes are the format.
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, std::string_view bytes) {
    put_le<std::uint32_t>(out, static_cast<std::uint32_t>(bytes.size()));
    out += bytes;
}

// Reads a record body with a bounds check on every field.
class Reader {
public:
    explicit Reader(std::string_view data) : m_data(data) {}

    template <class T>
    bool get(T& value) {
        if (m_data.size() - m_pos < sizeof(T))
            return false;
        std::memcpy(&value, m_data.data() + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return true;
    }
    bool get_bytes(std::string& out) {
        std::uint32_t len = 0;
        if (!get(len) || m_data.size() - m_pos < len)
            return false;
        out.assign(m_data.substr(m_pos, len));
        m_pos += len;
        return true;
    }
    [[nodiscard]] bool done() const { return m_pos == m_data.size(); }

private:
    std::string_view m_data;
    std::size_t m_pos = 0;
};

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
    throw std::runtime_error(file.string() + ": " + what);
}

[[noreturn]] void fail_errno(const std::filesystem::path& file, const std::string& what) {
    throw std::system_error(errno, std::generic_category(), file.string() + ": " + what);
}

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string read_file(const std::filesystem::path& path, int fd) {
    std::string out;
    std::array<char, 65536> buf;
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail_errno(path, "read");
        }
        if (n == 0)
            return out;
        out.append(buf.data(), static_cast<std::size_t>(n));
    }
}

void fsync_dir(const std::filesystem::path& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid())
        fail_errno(dir, "open directory");
    if (::fsync(fd.get()) != 0)
        fail_errno(dir, "fsync directory");
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t extra;
        std::uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (s.size() - i <= extra)
            return false;
        for (std::size_t k = 1; k <= extra; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    while (i + 3 <= in.size()) {
        std::uint32_t v = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                          (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                          static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 2]));
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += kB64[(v >> 6) & 63];
        out += kB64[v & 63];
        i += 3;
    }
    std::size_t rest = in.size() - i;
    if (rest > 0) {
        std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
        if (rest == 2)
            v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += rest == 2 ? kB64[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0)
        return std::nullopt;
    auto value_of = [](char c) -> int {
        const char* p = std::strchr(kB64, c);
        return (c == '\0' || p == nullptr) ? -1 : static_cast<int>(p - kB64);
    };
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 4) {
        int pad = 0;
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            char c = in[i + k];
            int d;
            if (c == '=' && i + 4 == in.size() && k >= 2) {
                ++pad;
                d = 0;
            } else {
                if (pad != 0)
                    return std::nullopt;
                d = value_of(c);
                if (d < 0)
                    return std::nullopt;
            }
            v = (v << 6) | static_cast<std::uint32_t>(d);
        }
        out += static_cast<char>((v >> 16) & 0xFF);
        if (pad < 2)
            out += static_cast<char>((v >> 8) & 0xFF);
        if (pad < 1)
            out += static_cast<char>(v & 0xFF);
    }
    return out;
}

std::string log_header() {
    std::string h(kLogMagic, sizeof kLogMagic);
    put_le<std::uint32_t>(h, kLogVersion);
    put_le<std::uint32_t>(h, 0);
    return h;
}

// Loads snapshot.json into `store`; returns its sequence number.
std::uint64_t load_snapshot(const std::filesystem::path& file, Store& store, LoadReport& report) {
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        if (errno == ENOENT)
            return 0;
        fail_errno(file, "open");
    }
    std::string text = read_file(file, fd.get());
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(file, std::string("not valid JSON: ") + e.what());
    }
    try {
        if (doc.at("format") != "pvkit-store-snapshot" || doc.at("version") != 1)
            fail(file, "not a version 1 pvkit store snapshot");
        auto seq = doc.at("seq").get<std::uint64_t>();
        ChangeSet puts;
        for (const nlohmann::json& n : doc.at("nodes")) {
            Change c;
            c.kind = Change::Kind::kPut;
            c.path = n.at("path").get<std::string>();
            if (n.contains("value_base64")) {
                std::optional<std::string> v = base64_decode(n.at("value_base64").get<std::string>());
                if (!v)
                    fail(file, "node " + c.path + ": bad value_base64");
                c.value = std::move(*v);
            } else {
                c.value = n.at("value").get<std::string>();
            }
            for (const nlohmann::json& p : n.at("perms")) {
                std::optional<Perm> perm = parse_perm(p.get<std::string>());
                if (!perm)
                    fail(file, "node " + c.path + ": bad permission " + p.dump());
                c.perms.push_back(*perm);
            }
            puts.push_back(std::move(c));
        }
        for (const Change& c : puts) {
            if (!store.apply(ChangeSet{c}))
                fail(file, "node " + c.path + " cannot be restored (bad path or missing parent)");
        }
        report.snapshot_nodes = puts.size();
        report.snapshot_seq = seq;
        return seq;
    } catch (const nlohmann::json::exception& e) {
        fail(file, std::string("unexpected content: ") + e.what());
    }
}

} // namespace

std::string_view to_string(FsyncPolicy policy) {
    return policy == FsyncPolicy::kAlways ? "always" : "never";
}

std::string encode_changes(std::uint64_t seq, const ChangeSet& changes) {
    std::string out;
    put_le<std::uint64_t>(out, seq);
    put_le<std::uint32_t>(out, static_cast<std::uint32_t>(changes.size()));
    for (const Change& c : changes) {
        put_le<std::uint8_t>(out, static_cast<std::uint8_t>(c.kind));
        put_bytes(out, c.path);
        if (c.kind != Change::Kind::kPut)
            continue;
        put_bytes(out, c.value);
        put_le<std::uint32_t>(out, static_cast<std::uint32_t>(c.perms.size()));
        for (const Perm& p : c.perms) {
            put_le<std::uint8_t>(out, static_cast<std::uint8_t>(p.access));
            put_le<std::uint16_t>(out, p.domid);
        }
    }
    return out;
}

std::optional<DecodedRecord> decode_changes(std::string_view body) {
    Reader r(body);
    DecodedRecord rec;
    std::uint32_t count = 0;
    if (!r.get(rec.seq) || !r.get(count))
        return std::nullopt;
    for (std::uint32_t i = 0; i < count; ++i) {
        Change c;
        std::uint8_t kind = 0;
        if (!r.get(kind) || !r.get_bytes(c.path))
            return std::nullopt;
        if (kind == static_cast<std::uint8_t>(Change::Kind::kDel)) {
            c.kind = Change::Kind::kDel;
        } else if (kind == static_cast<std::uint8_t>(Change::Kind::kPut)) {
            c.kind = Change::Kind::kPut;
            std::uint32_t nperms = 0;
            if (!r.get_bytes(c.value) || !r.get(nperms) || nperms == 0)
                return std::nullopt;
            for (std::uint32_t k = 0; k < nperms; ++k) {
                std::uint8_t access = 0;
                std::uint16_t domid = 0;
                if (!r.get(access) || !r.get(domid) || access > 3)
                    return std::nullopt;
                c.perms.push_back(Perm{static_cast<Access>(access), domid});
            }
        } else {
            return std::nullopt;
        }
        rec.changes.push_back(std::move(c));
    }
    if (!r.done())
        return std::nullopt;
    return rec;
}

std::string snapshot_json(const Store& store, std::uint64_t seq) {
    nlohmann::json nodes = nlohmann::json::array();
    store.for_each_node([&nodes](const std::string& path, const NodeData& node) {
        nlohmann::json n;
        n["path"] = path;
        nlohmann::json perms = nlohmann::json::array();
        for (const Perm& p : node.perms)
            perms.push_back(format_perm(p));
        n["perms"] = std::move(perms);
        if (is_utf8(node.value))
            n["value"] = node.value;
        else
            n["value_base64"] = base64_encode(node.value);
        nodes.push_back(std::move(n));
    });
    nlohmann::json doc;
    doc["format"] = "pvkit-store-snapshot";
    doc["version"] = 1;
    doc["seq"] = seq;
    doc["nodes"] = std::move(nodes);
    return doc.dump(1) + "\n";
}

std::unique_ptr<Persistence> Persistence::open(const PersistenceOptions& options, Store& store,
                                               LoadReport* report_out) {
    namespace fs = std::filesystem;
    const fs::path& dir = options.data_dir;
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
        fs::create_directories(dir, ec);
        if (ec)
            throw std::system_error(ec, dir.string() + ": cannot create data directory");
        // The store may hold secrets of guests: only its owner reads it.
        if (::chmod(dir.c_str(), 0700) != 0)
            fail_errno(dir, "chmod");
    } else if (!fs::is_directory(dir, ec)) {
        fail(dir, "not a directory");
    }

    std::unique_ptr<Persistence> p(new Persistence(options));
    fs::path lock_path = dir / kLockName;
    p->m_lock.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!p->m_lock.valid())
        fail_errno(lock_path, "open");
    if (::flock(p->m_lock.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            fail(dir, "in use by another pvkit-stored (lock held)");
        fail_errno(lock_path, "flock");
    }

    LoadReport report;
    std::uint64_t snap_seq = load_snapshot(dir / kSnapshotName, store, report);
    p->m_seq = snap_seq;
    // A temp file left by a crash during compaction is never the truth.
    ::unlink((dir / kSnapshotTmpName).c_str());

    fs::path log_path = dir / kLogName;
    bool created = !fs::exists(log_path, ec);
    p->m_log.reset(::open(log_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!p->m_log.valid())
        fail_errno(log_path, "open");
    std::string log = read_file(log_path, p->m_log.get());

    std::size_t good = 0;
    if (log.size() >= kLogHeaderSize) {
        if (log.compare(0, kLogHeaderSize, log_header()) != 0)
            fail(log_path, "not a version 1 pvkit store log");
        good = kLogHeaderSize;
        while (log.size() - good >= kRecordHeaderSize) {
            std::uint32_t len = 0;
            std::uint32_t crc = 0;
            std::memcpy(&len, log.data() + good, 4);
            std::memcpy(&crc, log.data() + good + 4, 4);
            if (len > kMaxRecordBody || log.size() - good - kRecordHeaderSize < len)
                break;
            std::string_view body(log.data() + good + kRecordHeaderSize, len);
            if (crc32(body) != crc)
                break;
            std::optional<DecodedRecord> rec = decode_changes(body);
            if (!rec)
                break;
            if (rec->seq <= snap_seq) {
                // Compaction wrote the snapshot but died before emptying the log.
                ++report.records_skipped;
            } else {
                if (rec->seq != p->m_seq + 1)
                    fail(log_path, "record sequence jumps from " + std::to_string(p->m_seq) +
                                       " to " + std::to_string(rec->seq));
                if (!store.apply(rec->changes))
                    fail(log_path, "record " + std::to_string(rec->seq) + " does not apply");
                p->m_seq = rec->seq;
                ++report.records_replayed;
            }
            good += kRecordHeaderSize + len;
        }
    }
    report.torn_bytes = log.size() - good;
    if (good < kLogHeaderSize) {
        // New, empty or torn inside the header: start the log afresh.
        if (::ftruncate(p->m_log.get(), 0) != 0)
            fail_errno(log_path, "ftruncate");
        std::string h = log_header();
        if (::pwrite(p->m_log.get(), h.data(), h.size(), 0) != static_cast<ssize_t>(h.size()))
            fail_errno(log_path, "write header");
        if (::fsync(p->m_log.get()) != 0)
            fail_errno(log_path, "fsync");
        good = kLogHeaderSize;
    } else if (report.torn_bytes > 0) {
        if (::ftruncate(p->m_log.get(), static_cast<off_t>(good)) != 0)
            fail_errno(log_path, "ftruncate");
        if (::fsync(p->m_log.get()) != 0)
            fail_errno(log_path, "fsync");
    }
    if (created)
        fsync_dir(dir);
    if (::lseek(p->m_log.get(), static_cast<off_t>(good), SEEK_SET) < 0)
        fail_errno(log_path, "lseek");
    p->m_log_size = good;
    if (report_out != nullptr)
        *report_out = report;
    return p;
}

Persistence::~Persistence() = default;

bool Persistence::append(const ChangeSet& changes) {
    if (m_broken) {
        // Anything written now would land after the torn bytes that could
        // not be cut off, and replay stops at those: it would be
        // acknowledged and then lost. Refuse every change instead.
        errno = EIO;
        return false;
    }
    std::string body = encode_changes(m_seq + 1, changes);
    std::string rec;
    rec.reserve(kRecordHeaderSize + body.size());
    put_le<std::uint32_t>(rec, static_cast<std::uint32_t>(body.size()));
    put_le<std::uint32_t>(rec, crc32(body));
    rec += body;
    if (!write_all(m_log.get(), rec)) {
        // Take back whatever part made it, so the next record starts on a
        // record boundary. If even that fails, replay stops at the torn
        // record, so the log is latched broken: nothing after it may be
        // acknowledged.
        int saved = errno;
        const char* step = "ftruncate";
        bool cut = ::ftruncate(m_log.get(), static_cast<off_t>(m_log_size)) == 0;
        if (cut) {
            step = "lseek";
            cut = ::lseek(m_log.get(), static_cast<off_t>(m_log_size), SEEK_SET) >= 0;
        }
        if (!cut) {
            int cut_errno = errno;
            m_broken = true;
            std::cerr
                << "pvkit-stored: " << (m_options.data_dir / kLogName).string()
                << ": append failed (" << std::strerror(saved) << ") and the partial record could "
                << "not be cut off (" << step << ": " << std::strerror(cut_errno)
                << "); refusing every further change with EIO until restart (reads still work)\n";
        }
        errno = saved;
        return false;
    }
    m_log_size += rec.size();
    ++m_seq;
    m_dirty = true;
    return true;
}

void Persistence::sync() {
    if (!m_dirty)
        return;
    m_dirty = false;
    if (m_options.fsync != FsyncPolicy::kAlways)
        return;
    if (::fdatasync(m_log.get()) != 0)
        fail_errno(m_options.data_dir / kLogName, "fdatasync");
    ++m_syncs;
}

void Persistence::maybe_compact(const Store& store) {
    if (m_log_size <= std::max<std::uint64_t>(m_compact_at, m_options.compact_bytes))
        return;
    try {
        compact(store);
    } catch (...) {
        m_compact_at = m_log_size + m_options.compact_bytes;
        throw;
    }
}

void Persistence::compact(const Store& store) {
    namespace fs = std::filesystem;
    const fs::path& dir = m_options.data_dir;
    fs::path tmp = dir / kSnapshotTmpName;
    fs::path final_path = dir / kSnapshotName;
    std::string text = snapshot_json(store, m_seq);
    {
        UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd.valid())
            fail_errno(tmp, "open");
        if (!write_all(fd.get(), text))
            fail_errno(tmp, "write");
        // The snapshot must be on disk before it replaces the old one and
        // before the log that it makes redundant is emptied, whatever the
        // fsync policy: otherwise a power cut could lose old data, not just
        // the newest.
        if (::fsync(fd.get()) != 0)
            fail_errno(tmp, "fsync");
    }
    if (::rename(tmp.c_str(), final_path.c_str()) != 0)
        fail_errno(final_path, "rename");
    fsync_dir(dir);
    fs::path log_path = dir / kLogName;
    if (::ftruncate(m_log.get(), static_cast<off_t>(kLogHeaderSize)) != 0)
        fail_errno(log_path, "ftruncate");
    if (::lseek(m_log.get(), static_cast<off_t>(kLogHeaderSize), SEEK_SET) < 0)
        fail_errno(log_path, "lseek");
    if (::fsync(m_log.get()) != 0)
        fail_errno(log_path, "fsync");
    m_log_size = kLogHeaderSize;
    m_compact_at = 0;
    m_dirty = false;
    ++m_compactions;
}

} // namespace pvkit::store
