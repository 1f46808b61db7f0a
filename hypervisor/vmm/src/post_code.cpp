#include "pvkit/vmm/post_code.hpp"

namespace pvkit::vmm {

void PostCodePort::access(const IoRequest& request, ExitContext& /*context*/) {
    if (!request.write) {
        for (std::byte& b : request.data)
            b = std::byte{0xff};
        return;
    }
    m_stats.record_post_code(std::to_integer<std::uint8_t>(request.data[0]));
}

} // namespace pvkit::vmm
