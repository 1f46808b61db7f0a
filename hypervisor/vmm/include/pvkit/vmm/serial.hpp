// A 16550-style UART, output only: enough for a guest's earliest console
// output before it has found the hypercall page. Writes to THR go to the
// console; LSR always reports an empty transmitter, so a polling driver
// never waits; there is no input and no interrupt.
#pragma once

#include <array>
#include <cstdint>

#include "pvkit/vmm/console.hpp"
#include "pvkit/vmm/io_bus.hpp"

namespace pvkit::vmm {

inline constexpr std::uint16_t kCom1Base = 0x3f8;
inline constexpr std::uint16_t kUartPorts = 8;

class Serial16550 final : public IoHandler {
public:
    explicit Serial16550(ConsoleSink& console) : m_console(console) {}

    void access(const IoRequest& request, ExitContext& context) override;

private:
    ConsoleSink& m_console;
    // IER, LCR, MCR, scratch and the divisor latch are stored so a driver
    // reads back what it wrote.
    std::uint8_t m_ier = 0;
    std::uint8_t m_lcr = 0;
    std::uint8_t m_mcr = 0;
    std::uint8_t m_scratch = 0;
    std::uint8_t m_dll = 0;
    std::uint8_t m_dlm = 0;
};

} // namespace pvkit::vmm
