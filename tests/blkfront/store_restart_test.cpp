// libpvkit-front through a pvkit-stored restart: real pvkit-stored and
// pvkit-blkback processes, a real image file. While the store is away a
// connected device keeps doing I/O (its data path is the ring and the
// event channel); once the store is back the HostDomain reconnects to it,
// so a pvkit-blkback restart after that is followed: the device connects
// to the new backend and nothing acknowledged is lost. Every wait is
// bounded (kWait); nothing depends on how fast the machine is.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "e2e_support.hpp"
#include "pvkit/front/pattern.hpp"
#include "pvkit/toolstack/store_layout.hpp"

using namespace pvkit;
using namespace pvkit::front;
using namespace pvkit::blkfront::e2e;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kBlock = 64 * 1024;
constexpr std::uint32_t kXvda = 51712;

// "ok" or the error's text: CHECK(ok(...) == "ok") shows what failed.
std::string ok(const Result<void, BlkError>& r) { return r ? "ok" : to_string(r.error()); }

std::vector<std::byte> pattern(std::uint64_t seed, std::uint64_t offset, std::size_t len) {
    std::vector<std::byte> v(len);
    fill_pattern(v, seed, offset);
    return v;
}

} // namespace

TEST_CASE("a HostDomain follows a pvkit-stored restart, then a pvkit-blkback restart",
          "[blkfront][e2e][store-restart]") {
    World w;
    const std::uint64_t size = 8 * kMiB;
    const std::uint64_t blocks = size / kBlock;
    const std::string img = w.image("disk.img", size);
    DiskModel model(size);
    {
        HostDomain dom = HostDomain::create(w.domain_options());
        BlkDeviceOptions o;
        o.image = img;
        o.devid = kXvda;
        o.connect_timeout = kWait;
        o.io_timeout = kWait;
        BlkDevice dev = BlkDevice::attach(dom, o);
        REQUIRE(dev.info().size_bytes == size);

        std::uint64_t seed = 1;
        // Writes one block, reads it back and checks it.
        auto write_verify = [&](std::uint64_t block) {
            const std::uint64_t off = block * kBlock;
            const std::vector<std::byte> data = pattern(seed++, off, kBlock);
            INFO("block " << block);
            REQUIRE(ok(dev.write(off, data)) == "ok");
            model.write(off, data);
            std::vector<std::byte> got(kBlock);
            REQUIRE(ok(dev.read(off, got)) == "ok");
            CHECK(!first_difference(got, data, off));
        };

        for (std::uint64_t b = 0; b < 16; ++b)
            write_verify(b);
        const std::uint64_t reconnects_before = dom.store().reconnect_stats().reconnects;

        // The store goes away: the device keeps doing I/O.
        w.store.kill9();
        for (std::uint64_t b = 16; b < 48; ++b)
            write_verify(b);
        for (std::uint64_t b = 0; b < 8; ++b)
            write_verify(b); // overwrite what was written before the kill
        CHECK(dev.state() == 4); // still Connected

        // Back on the same socket and data directory. I/O goes on; the
        // waits in it give the domain its chances to redial (bounded).
        w.store.start();
        const auto deadline = std::chrono::steady_clock::now() + kWait;
        std::uint64_t b = 48;
        while (dom.store().reconnect_stats().reconnects == reconnects_before &&
               std::chrono::steady_clock::now() < deadline) {
            write_verify(b);
            b = b + 1 < blocks / 2 ? b + 1 : 48;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        REQUIRE(dom.store().reconnect_stats().reconnects > reconnects_before);
        REQUIRE(dom.store().connected());

        // Now the backend restarts: the frontend sees it only through the
        // store, on its new connection.
        const std::uint64_t backend_reconnects = dev.counters().reconnects;
        w.blkback.kill9();
        w.blkback.start();
        for (std::uint64_t k = blocks / 2; k < blocks; ++k)
            write_verify(k);
        CHECK(dev.counters().reconnects > backend_reconnects);
        CHECK(dev.state() == 4);

        // Everything acknowledged, before and after both restarts, is there.
        std::vector<std::byte> all(static_cast<std::size_t>(size));
        REQUIRE(ok(dev.read(0, all)) == "ok");
        CHECK(!first_difference(all, model.at(0, size), 0));
        REQUIRE(ok(dev.flush()) == "ok");
        CHECK(dev.counters().errors == 0);

        // The toolstack connection came back too: detach and destroy clean up.
        dev.detach();
        const pvkit_domid_t domid = dom.domid();
        dom.destroy();
        store::StoreClient dom0 = w.store.client();
        CHECK(dom0.read(toolstack::domain_path(domid)).error() == store::StoreError::kNoEnt);
    }
    // The host's own view of the image, independent of the PV path.
    const std::vector<std::byte> host = read_file(img, 0, static_cast<std::size_t>(size));
    CHECK(!first_difference(host, model.at(0, size), 0));
}
