// libpvkit-front end to end: real pvkit-stored and pvkit-blkback processes,
// real image files. Data written through PV is read back through PV and
// checked independently by reading the image file on the host. Every wait
// is bounded (kWait); nothing depends on how fast the machine is.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "e2e_support.hpp"
#include "pvkit/front/pattern.hpp"
#include "pvkit/store/perms.hpp"
#include "pvkit/toolstack/store_layout.hpp"

using namespace pvkit;
using namespace pvkit::front;
using namespace pvkit::blkfront::e2e;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint32_t kXvda = 51712;
constexpr std::uint32_t kXvdb = 51728;

BlkDeviceOptions disk(const std::string& image, std::uint32_t devid = kXvda) {
    BlkDeviceOptions o;
    o.image = image;
    o.devid = devid;
    o.connect_timeout = kWait;
    o.io_timeout = kWait;
    return o;
}

// "ok" or the error's text: CHECK(ok(...) == "ok") shows what failed.
std::string ok(const Result<void, BlkError>& r) { return r ? "ok" : to_string(r.error()); }

std::vector<std::byte> pattern(std::uint64_t seed, std::uint64_t offset, std::size_t len) {
    std::vector<std::byte> v(len);
    fill_pattern(v, seed, offset);
    return v;
}

bool exists(store::StoreClient& c, const std::string& path) {
    auto r = c.read(path);
    if (!r && r.error() != store::StoreError::kNoEnt)
        throw std::runtime_error("store read " + path + " failed");
    return static_cast<bool>(r);
}

} // namespace

TEST_CASE("integrity: random writes through PV read back through PV and from the host file",
          "[blkfront][e2e]") {
    World w;
    const std::uint64_t size = 64 * kMiB;
    const std::string img = w.image("disk.img", size);
    DiskModel model(size);
    {
        HostDomain dom = HostDomain::create(w.domain_options());
        BlkDeviceOptions o = disk(img);
        o.max_io_bytes = 256 * 1024;
        o.queue_depth = 64;
        BlkDevice dev = BlkDevice::attach(dom, o);
        REQUIRE(dev.info().size_bytes == size);
        REQUIRE(!dev.info().read_only);

        std::mt19937_64 rng(20240607);
        std::vector<std::byte> buf;
        for (std::uint64_t i = 0; i < 160; ++i) {
            // 512 bytes to 1 MiB, anywhere: many cross the 256 KiB pieces.
            const std::uint64_t len = (1 + rng() % 2048) * 512;
            const std::uint64_t off = (rng() % ((size - len) / 512 + 1)) * 512;
            buf = pattern(i + 1, off, static_cast<std::size_t>(len));
            INFO("write " << i << ": " << len << " bytes at " << off);
            REQUIRE(ok(dev.write(off, buf)) == "ok");
            model.write(off, buf);
            if (i % 4 == 0) {
                const std::uint64_t rlen = (1 + rng() % 1024) * 512;
                const std::uint64_t roff = (rng() % ((size - rlen) / 512 + 1)) * 512;
                std::vector<std::byte> got(static_cast<std::size_t>(rlen));
                REQUIRE(ok(dev.read(roff, got)) == "ok");
                CHECK(!first_difference(got, model.at(roff, rlen), roff));
            }
        }
        // Zero-copy buffers too: the backend reads and writes pool pages directly.
        auto zc = dev.alloc_buffer(128 * 1024);
        REQUIRE(zc);
        fill_pattern(zc->bytes(), 777, 5 * kMiB);
        REQUIRE(ok(dev.write(5 * kMiB, *zc, 128 * 1024)) == "ok");
        model.write(5 * kMiB, zc->bytes());
        std::memset(zc->data(), 0, zc->size());
        REQUIRE(ok(dev.read(5 * kMiB, *zc, 128 * 1024)) == "ok");
        CHECK(!find_pattern_mismatch(zc->bytes(), 777, 5 * kMiB));

        // The whole disk through PV.
        std::vector<std::byte> all(static_cast<std::size_t>(size));
        REQUIRE(ok(dev.read(0, all)) == "ok");
        CHECK(!first_difference(all, model.at(0, size), 0));
        REQUIRE(ok(dev.flush()) == "ok");
        const BlkCounters c = dev.counters();
        CHECK(c.errors == 0);
        CHECK(c.bytes_written >= 160 * 512);
        CHECK(c.indirect_requests > 0);
        dev.detach();
        dom.destroy();
    }
    // The host's own view of the image, independent of the PV path.
    const std::vector<std::byte> host = read_file(img, 0, static_cast<std::size_t>(size));
    CHECK(!first_difference(host, model.at(0, size), 0));
}

TEST_CASE("queue depth up to the ring size", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", 16 * kMiB);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDeviceOptions o = disk(img);
    o.max_io_bytes = 4096;
    o.buffer_bytes = 4 * kMiB; // 512 zero-copy buffers plus room for copies
    BlkDevice dev = BlkDevice::attach(dom, o);
    const std::uint32_t qd = dev.info().queue_depth;
    REQUIRE(dev.info().ring_entries == 512);
    REQUIRE(qd == 512);

    std::vector<PoolBuffer> bufs;
    for (std::uint32_t i = 0; i < qd; ++i) {
        auto b = dev.alloc_buffer(4096);
        REQUIRE(b);
        fill_pattern(b->bytes(), 9, std::uint64_t{i} * 4096);
        bufs.push_back(std::move(b).value());
    }
    for (std::uint32_t i = 0; i < qd; ++i)
        REQUIRE(ok(dev.submit_write(std::uint64_t{i} * 4096, bufs[i], 4096, i)) == "ok");
    CHECK(dev.in_flight() == qd);
    auto extra = dev.alloc_buffer(4096);
    REQUIRE(extra);
    auto busy = dev.submit_write(0, *extra, 4096, 9999);
    REQUIRE(!busy);
    CHECK(busy.error() == BlkError::kBusy);

    std::vector<Completion> done;
    while (done.size() < qd) {
        auto r = dev.wait(done, qd - done.size(), kWait);
        REQUIRE(r);
    }
    std::set<std::uint64_t> tags;
    for (const Completion& c : done) {
        CHECK(!c.error);
        CHECK(c.bytes == 4096);
        tags.insert(c.tag);
    }
    CHECK(tags.size() == qd);
    CHECK(dev.in_flight() == 0);

    // A full ring of copying reads.
    std::vector<std::vector<std::byte>> back(qd, std::vector<std::byte>(4096));
    for (std::uint32_t i = 0; i < qd; ++i)
        REQUIRE(ok(dev.submit_read(std::uint64_t{i} * 4096, back[i], i)) == "ok");
    done.clear();
    while (done.size() < qd)
        REQUIRE(dev.wait(done, qd - done.size(), kWait));
    for (std::uint32_t i = 0; i < qd; ++i)
        CHECK(!find_pattern_mismatch(back[i], 9, std::uint64_t{i} * 4096));
    CHECK(dev.counters().ring_requests >= 2 * qd);
    CHECK(!find_pattern_mismatch(read_file(img, 0, 512 * 4096), 9, 0));
}

TEST_CASE("several frontends, each with several devices, at once", "[blkfront][e2e]") {
    World w;
    constexpr int kFrontends = 3;
    constexpr std::uint64_t kSize = 8 * kMiB;
    std::vector<std::string> images;
    for (int i = 0; i < 2 * kFrontends; ++i) {
        // Appended rather than "d" + to_string(i): GCC 12 at -O3 reports a
        // false -Wrestrict in operator+(const char*, string&&).
        std::string name = "d";
        name += std::to_string(i);
        name += ".img";
        images.push_back(w.image(name, kSize));
    }
    std::vector<std::string> errors(kFrontends);
    std::vector<pvkit_domid_t> domids(kFrontends, 0);

    auto frontend = [&](int k) {
        try {
            HostDomain dom = HostDomain::create(w.domain_options());
            domids[static_cast<std::size_t>(k)] = dom.domid();
            BlkDeviceOptions oa = disk(images[static_cast<std::size_t>(2 * k)], kXvda);
            BlkDeviceOptions ob = disk(images[static_cast<std::size_t>(2 * k + 1)], kXvdb);
            oa.queue_depth = ob.queue_depth = 32;
            BlkDevice a = BlkDevice::attach(dom, oa);
            BlkDevice b = BlkDevice::attach(dom, ob);
            // Interleaved: each device gets its own seed.
            const std::uint64_t seed_a = 100 + 2 * static_cast<std::uint64_t>(k);
            const std::uint64_t seed_b = seed_a + 1;
            for (std::uint64_t off = 0; off < kSize; off += 512 * 1024) {
                auto pa = pattern(seed_a, off, 512 * 1024);
                auto pb = pattern(seed_b, off, 512 * 1024);
                if (auto r = a.write(off, pa); !r)
                    throw std::runtime_error(std::string("write a: ") + to_string(r.error()));
                if (auto r = b.write(off, pb); !r)
                    throw std::runtime_error(std::string("write b: ") + to_string(r.error()));
            }
            std::vector<std::byte> got(kSize);
            if (auto r = a.read(0, got); !r || find_pattern_mismatch(got, seed_a, 0))
                throw std::runtime_error("read back a failed");
            if (auto r = b.read(0, got); !r || find_pattern_mismatch(got, seed_b, 0))
                throw std::runtime_error("read back b failed");
            a.detach();
            b.detach();
            dom.destroy();
        } catch (const std::exception& e) {
            errors[static_cast<std::size_t>(k)] = e.what();
        }
    };
    std::vector<std::thread> threads;
    for (int k = 0; k < kFrontends; ++k)
        threads.emplace_back(frontend, k);
    for (std::thread& t : threads)
        t.join();
    for (int k = 0; k < kFrontends; ++k) {
        INFO("frontend " << k);
        CHECK(errors[static_cast<std::size_t>(k)].empty());
        CHECK(errors[static_cast<std::size_t>(k)] == "");
    }
    CHECK(std::set<pvkit_domid_t>(domids.begin(), domids.end()).size() == kFrontends);
    for (int k = 0; k < kFrontends; ++k) {
        const std::uint64_t seed_a = 100 + 2 * static_cast<std::uint64_t>(k);
        CHECK(!find_pattern_mismatch(read_file(images[static_cast<std::size_t>(2 * k)], 0, kSize), seed_a, 0));
        CHECK(!find_pattern_mismatch(read_file(images[static_cast<std::size_t>(2 * k + 1)], 0, kSize), seed_a + 1, 0));
    }
}

TEST_CASE("flush and discard", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", 8 * kMiB);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDevice dev = BlkDevice::attach(dom, disk(img));
    REQUIRE(dev.info().flush);
    REQUIRE(dev.info().discard);
    const std::uint32_t gran = dev.info().discard_granularity;
    REQUIRE(gran >= 512);
    REQUIRE(gran <= 256 * 1024);

    REQUIRE(ok(dev.write(0, pattern(5, 0, kMiB))) == "ok");
    REQUIRE(ok(dev.flush()) == "ok");
    const std::uint64_t off = 256 * 1024;
    const std::uint64_t len = 512 * 1024;
    REQUIRE(ok(dev.discard(off, len)) == "ok");
    REQUIRE(ok(dev.flush()) == "ok");

    std::vector<std::byte> got(kMiB);
    REQUIRE(ok(dev.read(0, got)) == "ok");
    const std::vector<std::byte> zeros(len);
    CHECK(!find_pattern_mismatch(std::span(got).subspan(0, off), 5, 0));
    CHECK(!first_difference(std::span(got).subspan(off, len), zeros, off));
    CHECK(!find_pattern_mismatch(std::span(got).subspan(off + len), 5, off + len));
    const std::vector<std::byte> host = read_file(img, 0, kMiB);
    CHECK(!first_difference(std::span(host).subspan(off, len), zeros, off));
    CHECK(!find_pattern_mismatch(std::span(host).subspan(0, off), 5, 0));

    // Asynchronous forms and their checks.
    REQUIRE(ok(dev.submit_flush(1)) == "ok");
    REQUIRE(ok(dev.submit_discard(2 * kMiB, 64 * 1024, 2)) == "ok");
    std::vector<Completion> done;
    while (done.size() < 2)
        REQUIRE(dev.wait(done, 2 - done.size(), kWait));
    CHECK(!done[0].error);
    CHECK(!done[1].error);
    auto bad = dev.discard(100, 512);
    REQUIRE(!bad);
    CHECK(bad.error() == BlkError::kInvalid);
    auto past = dev.discard(8 * kMiB, 4096);
    REQUIRE(!past);
    CHECK(past.error() == BlkError::kOutOfRange);
}

TEST_CASE("a read-only device refuses writes with an error", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", 4 * kMiB);
    {
        // Something to read: written by a read-write attachment first.
        HostDomain dom = HostDomain::create(w.domain_options());
        BlkDevice dev = BlkDevice::attach(dom, disk(img));
        REQUIRE(ok(dev.write(0, pattern(3, 0, 64 * 1024))) == "ok");
    }
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDeviceOptions o = disk(img);
    o.read_only = true;
    BlkDevice dev = BlkDevice::attach(dom, o);
    REQUIRE(dev.info().read_only);
    auto w1 = dev.write(0, pattern(4, 0, 4096));
    REQUIRE(!w1);
    CHECK(w1.error() == BlkError::kReadOnly);
    auto w2 = dev.submit_write(4096, pattern(4, 4096, 4096), 1);
    REQUIRE(!w2);
    CHECK(w2.error() == BlkError::kReadOnly);
    auto d = dev.discard(0, 4096);
    REQUIRE(!d);
    CHECK(d.error() == BlkError::kReadOnly);
    std::vector<std::byte> got(64 * 1024);
    REQUIRE(ok(dev.read(0, got)) == "ok");
    CHECK(!find_pattern_mismatch(got, 3, 0));
    CHECK(!find_pattern_mismatch(read_file(img, 0, 64 * 1024), 3, 0));
    CHECK(dev.counters().bytes_written == 0);
}

TEST_CASE("4096-byte sectors: aligned I/O works, misaligned I/O is refused", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", 4 * kMiB);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDeviceOptions o = disk(img);
    o.sector_size = 4096;
    BlkDevice dev = BlkDevice::attach(dom, o);
    REQUIRE(dev.info().sector_size == 4096);
    auto bad = dev.write(512, pattern(1, 512, 4096));
    REQUIRE(!bad);
    CHECK(bad.error() == BlkError::kInvalid);
    REQUIRE(ok(dev.write(8192, pattern(1, 8192, 3 * 4096))) == "ok");
    std::vector<std::byte> got(3 * 4096);
    REQUIRE(ok(dev.read(8192, got)) == "ok");
    CHECK(!find_pattern_mismatch(got, 1, 8192));
}

TEST_CASE("reconnect: kill -9 of pvkit-blkback under a write/verify workload loses nothing",
          "[blkfront][e2e][reconnect]") {
    World w;
    constexpr std::uint64_t kBlock = 64 * 1024;
    constexpr std::uint64_t kBlocks = 256; // 16 MiB
    constexpr std::uint32_t kQd = 32;
    constexpr int kKills = 2;
    const std::string img = w.image("disk.img", kBlocks * kBlock);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDeviceOptions o = disk(img);
    o.queue_depth = kQd;
    o.max_io_bytes = kBlock;
    BlkDevice dev = BlkDevice::attach(dom, o);

    // What each block holds once its last acknowledged write is in: the
    // version (pattern seed) of that write; 0 for never written.
    std::vector<std::uint64_t> acked_version(kBlocks, 0);
    std::vector<bool> busy(kBlocks, false);
    struct Op {
        bool write = false;
        std::uint64_t block = 0;
        std::uint64_t version = 0;
        std::uint32_t buffer = 0;
    };
    std::map<std::uint64_t, Op> ops; // by tag
    std::vector<PoolBuffer> bufs;
    std::vector<std::uint32_t> free_bufs;
    for (std::uint32_t i = 0; i < kQd; ++i) {
        auto b = dev.alloc_buffer(kBlock);
        REQUIRE(b);
        bufs.push_back(std::move(b).value());
        free_bufs.push_back(i);
    }

    std::atomic<std::uint64_t> acked{0};
    std::atomic<bool> killer_done{false};
    std::atomic<bool> test_done{false};
    std::string killer_error;
    // The killer restarts pvkit-blkback, so it is the new process's parent
    // thread: ChildProcess sets PR_SET_PDEATHSIG, which fires when that
    // *thread* exits. It therefore stays alive until the test is done.
    std::thread killer([&] {
        try {
            for (int k = 0; k < kKills; ++k) {
                // Kill while requests are in flight: after a few hundred more
                // acknowledgements (bounded wait).
                const std::uint64_t target = acked.load() + 300;
                const auto deadline = std::chrono::steady_clock::now() + kWait;
                while (acked.load() < target && std::chrono::steady_clock::now() < deadline)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                if (acked.load() < target)
                    throw std::runtime_error("the workload stalled before kill " + std::to_string(k));
                w.blkback.kill9();
                // Let requests pile up against the dead backend.
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                w.blkback.start();
            }
        } catch (const std::exception& e) {
            killer_error = e.what();
        }
        killer_done = true;
        const auto deadline = std::chrono::steady_clock::now() + 10 * kWait;
        while (!test_done.load() && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    struct JoinAtExit {
        std::thread& t;
        std::atomic<bool>& done;
        ~JoinAtExit() {
            done = true;
            t.join();
        }
    } join_killer{killer, test_done};

    std::mt19937_64 rng(99);
    std::uint64_t next_tag = 1;
    std::uint64_t next_version = 1;
    std::uint64_t completed = 0;
    std::vector<std::string> failures;
    std::vector<Completion> done;
    const std::uint64_t want = 4000;
    while (!(killer_done && completed >= want) || !ops.empty()) {
        // Keep the queue full while the workload runs.
        while (!(killer_done && completed >= want) && !free_bufs.empty()) {
            const std::uint64_t block = rng() % kBlocks;
            if (busy[block])
                continue; // one I/O per block at a time: reads have one right answer
            const bool write = acked_version[block] == 0 || rng() % 3 != 0;
            Op op{write, block, write ? next_version++ : acked_version[block], free_bufs.back()};
            free_bufs.pop_back();
            PoolBuffer& buf = bufs[op.buffer];
            Result<void, BlkError> r = Result<void, BlkError>();
            if (write) {
                fill_pattern(buf.bytes().subspan(0, kBlock), op.version, block * kBlock);
                r = dev.submit_write(block * kBlock, buf, kBlock, next_tag);
            } else {
                r = dev.submit_read(block * kBlock, buf, kBlock, next_tag);
            }
            REQUIRE(ok(r) == "ok");
            busy[block] = true;
            ops[next_tag++] = op;
        }
        done.clear();
        auto r = dev.wait(done, 1, kWait);
        if (!r) {
            store::StoreClient admin = w.store.client();
            const std::string front =
                toolstack::frontend_path(dom.domid(), toolstack::DeviceKind::kVbd, kXvda);
            const std::string back =
                toolstack::backend_path(0, dom.domid(), toolstack::DeviceKind::kVbd, kXvda);
            FAIL("no completion within " << kWait.count() << " ms: frontend state " << dev.state()
                 << " (" << dev.reason() << "), store: frontend " << admin.read(front + "/state").value()
                 << ", backend " << admin.read(back + "/state").value() << "; " << ops.size()
                 << " in flight, " << dev.counters().reconnects << " reconnects");
        }
        for (const Completion& c : done) {
            const Op op = ops.at(c.tag);
            ops.erase(c.tag);
            busy[op.block] = false;
            free_bufs.push_back(op.buffer);
            ++completed;
            if (c.error) {
                failures.push_back(std::string(op.write ? "write" : "read") + " of block " +
                                   std::to_string(op.block) + ": " + to_string(*c.error));
                continue;
            }
            if (op.write) {
                acked_version[op.block] = op.version;
                acked.fetch_add(1);
            } else if (auto bad = find_pattern_mismatch(bufs[op.buffer].bytes().subspan(0, kBlock),
                                                         op.version, op.block * kBlock)) {
                failures.push_back("read of block " + std::to_string(op.block) + " differs at " +
                                   std::to_string(*bad));
            }
        }
    }
    REQUIRE(killer_error.empty());
    INFO("first failure: " << (failures.empty() ? std::string("none") : failures.front()));
    CHECK(failures.empty());
    CHECK(dev.counters().reconnects >= kKills);
    CHECK(dev.counters().errors == 0);

    // Every acknowledged write is there, through PV and in the file.
    std::vector<std::byte> all(kBlocks * kBlock);
    REQUIRE(ok(dev.read(0, all)) == "ok");
    const std::vector<std::byte> host = read_file(img, 0, kBlocks * kBlock);
    std::uint64_t checked = 0;
    for (std::uint64_t b = 0; b < kBlocks; ++b) {
        if (acked_version[b] == 0)
            continue;
        INFO("block " << b << " version " << acked_version[b]);
        CHECK(!find_pattern_mismatch(std::span(all).subspan(b * kBlock, kBlock), acked_version[b], b * kBlock));
        CHECK(!find_pattern_mismatch(std::span(host).subspan(b * kBlock, kBlock), acked_version[b], b * kBlock));
        ++checked;
    }
    CHECK(checked > kBlocks / 2);
    dev.detach();
    dom.destroy();
}

TEST_CASE("a domain and its device live in the store exactly while they exist", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", kMiB);
    store::StoreClient admin = w.store.client();
    HostDomain a = HostDomain::create(w.domain_options());
    HostDomain b = HostDomain::create(w.domain_options());
    CHECK(a.domid() != b.domid());
    const std::string home = toolstack::domain_path(a.domid());
    CHECK(admin.read(home + "/type").value() == "host-process");
    CHECK(admin.read(home + "/pid").value() == std::to_string(::getpid()));
    CHECK(store::format_perms(admin.get_perms(home + "/pid").value()) ==
          "n0 r" + std::to_string(a.domid()));
    CHECK(exists(admin, "/vm/" + a.name()));

    const std::string front = toolstack::frontend_path(a.domid(), toolstack::DeviceKind::kVbd, kXvda);
    const std::string back = toolstack::backend_path(0, a.domid(), toolstack::DeviceKind::kVbd, kXvda);
    {
        BlkDevice dev = BlkDevice::attach(a, disk(img));
        CHECK(admin.read(front + "/state").value() == "4");
        CHECK(admin.read(back + "/state").value() == "4");
        CHECK(admin.read(front + "/protocol").value() == "x86_64-abi");
        // The frontend writes only its own directory, as its own domain.
        CHECK(store::format_perms(admin.get_perms(front + "/event-channel").value()).rfind(
                  "n" + std::to_string(a.domid()), 0) == 0);
        dev.detach();
        CHECK(!exists(admin, front));
        CHECK(!exists(admin, back));
        // Attaching the same devid again works once it is gone.
        BlkDevice again = BlkDevice::attach(a, disk(img));
        CHECK(again.connected());
    } // the destructor detaches
    CHECK(!exists(admin, front));
    a.destroy();
    CHECK(!exists(admin, home));
    CHECK(!exists(admin, "/vm/" + a.name()));
    CHECK(exists(admin, toolstack::domain_path(b.domid())));
}

TEST_CASE("attaching the same devid twice is refused", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", kMiB);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDevice dev = BlkDevice::attach(dom, disk(img));
    CHECK_THROWS_WITH(BlkDevice::attach(dom, disk(img)), Catch::Contains("already exists"));
    CHECK(dev.connected());
}

TEST_CASE("without a backend, attach fails with a clear error and leaves nothing behind",
          "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", kMiB);
    w.blkback.stop();
    store::StoreClient admin = w.store.client();
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDeviceOptions o = disk(img);
    o.connect_timeout = std::chrono::milliseconds(1500);
    CHECK_THROWS_WITH(BlkDevice::attach(dom, o), Catch::Contains("pvkit-blkback"));
    CHECK(!exists(admin, toolstack::frontend_path(dom.domid(), toolstack::DeviceKind::kVbd, kXvda)));
    CHECK(!exists(admin, toolstack::backend_path(0, dom.domid(), toolstack::DeviceKind::kVbd, kXvda)));
}

TEST_CASE("a frontend-initiated close finishes the device", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", kMiB);
    HostDomain dom = HostDomain::create(w.domain_options());
    BlkDevice dev = BlkDevice::attach(dom, disk(img));
    REQUIRE(ok(dev.write(0, pattern(8, 0, 8192))) == "ok");
    dev.close();
    CHECK(dev.state() == 6);
    auto r = dev.write(0, pattern(8, 0, 4096));
    REQUIRE(!r);
    CHECK(r.error() == BlkError::kClosed);
    store::StoreClient admin = w.store.client();
    const std::string back = toolstack::backend_path(0, dom.domid(), toolstack::DeviceKind::kVbd, kXvda);
    CHECK(admin.read(back + "/state").value() == "6");
    dev.detach();
    CHECK(!exists(admin, back));
}

TEST_CASE("pvkit blk commands", "[blkfront][e2e][cli]") {
    World w;
    const std::string img = w.image("disk.img", 8 * kMiB);
    const std::vector<std::string> base = {"blk", "--store-socket", w.store.socket(), "--image", img};
    auto cmd = [&](std::vector<std::string> rest) {
        std::vector<std::string> args = base;
        args.insert(args.end(), rest.begin(), rest.end());
        return run_pvkit(args);
    };

    CommandResult r = cmd({"write", "--offset", "4k", "--length", "1M", "--pattern", "42"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("wrote 1048576 bytes at offset 4096") != std::string::npos);
    CHECK(!find_pattern_mismatch(read_file(img, 4096, kMiB), 42, 4096));

    r = cmd({"verify", "--offset", "4096", "--length", "1048576", "--pattern", "42"});
    CHECK(r.status == 0);
    CHECK(r.out.find("verified 1048576 bytes") != std::string::npos);

    r = cmd({"verify", "--offset", "0", "--length", "8k", "--pattern", "42"});
    CHECK(r.status == 1);
    CHECK(r.err == "pvkit: blk verify: " + img + ": byte at offset 0 differs from pattern seed 42\n");

    const std::string out = w.path("out.bin");
    r = cmd({"read", "--offset", "4096", "--length", "64k", "--output", out});
    CHECK(r.status == 0);
    CHECK(r.out.find("fnv1a64 0x") != std::string::npos);
    CHECK(read_file(out, 0, 64 * 1024) == read_file(img, 4096, 64 * 1024));

    r = cmd({"info"});
    CHECK(r.status == 0);
    CHECK(r.out.find("size:                  8388608 bytes") != std::string::npos);
    CHECK(r.out.find("read-only:             yes") != std::string::npos);

    r = cmd({"bench-io", "--rw", "randwrite", "--bs", "4k", "--qd", "8", "--seconds", "0.3", "--size", "1M"});
    CHECK(r.status == 0);
    CHECK(r.out.find("randwrite bs=4096 qd=8") != std::string::npos);
    r = cmd({"bench-io", "--rw", "read", "--bs", "64k", "--qd", "4", "--seconds", "0.3"});
    CHECK(r.status == 0);
    CHECK(r.out.find("IOPS") != std::string::npos);

    // Errors: one line, non-zero.
    r = cmd({"write", "--offset", "100", "--length", "4096", "--pattern", "1"});
    CHECK(r.status == 1);
    CHECK(r.err == "pvkit: blk write: --offset and --length must be multiples of the sector size (512)\n");
    r = cmd({"write", "--offset", "8M", "--length", "4096", "--pattern", "1"});
    CHECK(r.status == 1);
    CHECK(r.err.find("beyond the end of the disk") != std::string::npos);
    r = run_pvkit({"blk", "--store-socket", w.path("nothing.sock"), "--image", img, "info"});
    CHECK(r.status == 1);
    CHECK(r.err.rfind("pvkit: blk info: cannot connect to pvkit-stored at ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    r = cmd({"read", "--length", "1x"});
    CHECK(r.status == 1);
    CHECK(r.err == "pvkit: --length: unknown unit 'x' in '1x' (k, M or G)\n");

    // Every command cleaned up after itself.
    store::StoreClient admin = w.store.client();
    auto doms = admin.directory("/local/domain");
    REQUIRE(doms);
    CHECK(*doms == std::vector<std::string>{"0"});
    CHECK(admin.directory("/vm").value().empty());
}

TEST_CASE("a domain and disk made by the toolstack are adopted and used", "[blkfront][e2e]") {
    World w;
    const std::string img = w.image("disk.img", 4 * kMiB);
    store::StoreClient admin = w.store.client();

    // What `pvkit create` writes for a host-process domain with one disk.
    toolstack::DomainConfig config;
    config.name = "made-by-toolstack";
    config.type = toolstack::DomainType::kHostProcess;
    toolstack::DiskConfig d;
    d.devid = kXvda;
    d.path = img;
    config.disks.push_back(d);
    const pvkit_domid_t domid = 7;
    auto ops = toolstack::domain_create_ops(domid, config);
    REQUIRE(ops);
    auto tx = admin.transaction_start();
    REQUIRE(tx);
    for (const toolstack::StoreOp& op : *ops) {
        auto r = op.kind == toolstack::StoreOp::Kind::kMkdir ? admin.mkdir(op.path, *tx)
                                                              : admin.write(op.path, op.value, *tx);
        REQUIRE(r);
        store::Perms perms;
        for (const std::string& p : op.perms)
            perms.push_back(store::parse_perm(p).value());
        REQUIRE(admin.set_perms(op.path, perms, *tx));
    }
    REQUIRE(admin.transaction_end(*tx, true));

    {
        HostDomain dom = HostDomain::adopt(domid, w.domain_options());
        CHECK(dom.domid() == domid);
        CHECK(dom.name() == "made-by-toolstack");
        CHECK(admin.read(toolstack::domain_path(domid) + "/pid").value() == std::to_string(::getpid()));
        BlkDeviceOptions o; // no image: the device is there already
        o.devid = kXvda;
        o.connect_timeout = kWait;
        BlkDevice dev = BlkDevice::attach(dom, o);
        REQUIRE(ok(dev.write(0, pattern(12, 0, 256 * 1024))) == "ok");
        std::vector<std::byte> got(256 * 1024);
        REQUIRE(ok(dev.read(0, got)) == "ok");
        CHECK(!find_pattern_mismatch(got, 12, 0));
        // Not ours to remove: detach closes it, the toolstack keeps it.
        dev.detach();
        const std::string front = toolstack::frontend_path(domid, toolstack::DeviceKind::kVbd, kXvda);
        CHECK(admin.read(front + "/state").value() == "6");
        dom.destroy();
    }
    CHECK(exists(admin, toolstack::domain_path(domid)));
    CHECK(!exists(admin, toolstack::domain_path(domid) + "/pid"));
    CHECK(!find_pattern_mismatch(read_file(img, 0, 256 * 1024), 12, 0));
    CHECK_THROWS_WITH(HostDomain::adopt(domid + 1, w.domain_options()), Catch::Contains("adopt domain 8"));
}
