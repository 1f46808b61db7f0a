// Port 0x80, the PC's POST-code port: the guest writes one byte at each
// boot milestone and the VMM records it with the time and the number of
// exits so far. This is how "boot to the first user-mode instruction" is
// measured without instrumenting the guest any further (docs/vmm.md).
#pragma once

#include <cstdint>

#include "pvkit/vmm/exit_stats.hpp"
#include "pvkit/vmm/io_bus.hpp"

namespace pvkit::vmm {

inline constexpr std::uint16_t kPostCodePort = 0x80;

class PostCodePort final : public IoHandler {
public:
    explicit PostCodePort(ExitStats& stats) : m_stats(stats) {}

    void access(const IoRequest& request, ExitContext& context) override;

private:
    ExitStats& m_stats;
};

} // namespace pvkit::vmm
