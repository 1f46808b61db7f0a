#include "pvkit/vmm/serial.hpp"

namespace pvkit::vmm {

namespace {
// Register offsets from the base port.
constexpr std::uint64_t kThrRbr = 0; // THR (write) / RBR (read); DLL when DLAB
constexpr std::uint64_t kIer = 1;    // DLM when DLAB
constexpr std::uint64_t kIirFcr = 2;
constexpr std::uint64_t kLcr = 3;
constexpr std::uint64_t kMcr = 4;
constexpr std::uint64_t kLsr = 5;
constexpr std::uint64_t kMsr = 6;
constexpr std::uint64_t kScratch = 7;

constexpr std::uint8_t kLcrDlab = 0x80;
constexpr std::uint8_t kLsrThrEmpty = 0x20;
constexpr std::uint8_t kLsrTransmitterEmpty = 0x40;
constexpr std::uint8_t kIirNoInterrupt = 0x01;
// Carrier detect, data set ready, clear to send: "a terminal is attached".
constexpr std::uint8_t kMsrConnected = 0xb0;
} // namespace

void Serial16550::access(const IoRequest& request, ExitContext& /*context*/) {
    // Only byte accesses mean anything on a 16550; wider ones touch the
    // first register and read back zeros above it.
    const bool dlab = (m_lcr & kLcrDlab) != 0;
    if (request.write) {
        const auto value = std::to_integer<std::uint8_t>(request.data[0]);
        switch (request.offset) {
        case kThrRbr:
            if (dlab)
                m_dll = value;
            else
                m_console.put(request.data[0]);
            break;
        case kIer:
            if (dlab)
                m_dlm = value;
            else
                m_ier = value;
            break;
        case kLcr:
            m_lcr = value;
            break;
        case kMcr:
            m_mcr = value;
            break;
        case kScratch:
            m_scratch = value;
            break;
        default: // FCR, LSR, MSR: writes ignored
            break;
        }
        return;
    }
    std::uint8_t value = 0;
    switch (request.offset) {
    case kThrRbr:
        value = dlab ? m_dll : 0;
        break;
    case kIer:
        value = dlab ? m_dlm : m_ier;
        break;
    case kIirFcr:
        value = kIirNoInterrupt;
        break;
    case kLcr:
        value = m_lcr;
        break;
    case kMcr:
        value = m_mcr;
        break;
    case kLsr:
        value = kLsrThrEmpty | kLsrTransmitterEmpty;
        break;
    case kMsr:
        value = kMsrConnected;
        break;
    case kScratch:
        value = m_scratch;
        break;
    default:
        break;
    }
    request.data[0] = std::byte{value};
}

} // namespace pvkit::vmm
