// The store wire protocol (hypercall-abi/include/pvkit/store.h): messages,
// their encoding, and incremental framing of a byte stream.
//
// The same code frames the daemon's Unix socket, the client library's
// socket and (later) the guest store ring, which is also a byte stream in
// which a message may arrive in pieces.
#pragma once

#include <pvkit/store.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/store/error.hpp"

namespace pvkit::store {

inline constexpr std::size_t kHeaderSize = sizeof(pvkit_store_msg_header);
inline constexpr std::size_t kPayloadMax = PVKIT_STORE_PAYLOAD_MAX;

// One message, decoded. The payload is raw bytes (WRITE values and READ
// replies may hold anything, NULs included).
struct Message {
    std::uint32_t type = 0;
    std::uint32_t req_id = 0;
    std::uint32_t tx_id = 0;
    std::string payload;

    friend bool operator==(const Message&, const Message&) = default;
};

// Whether `type` is one of the PVKIT_STORE_* numbers (0 to OP_COUNT - 1,
// without the reserved 20).
[[nodiscard]] bool is_known_type(std::uint32_t type);

// "READ", "WATCH_EVENT", ...; "UNKNOWN" for anything else.
[[nodiscard]] std::string_view type_name(std::uint32_t type);

// Appends the encoded message (header, then payload) to `out`. The caller
// keeps payload.size() <= kPayloadMax; encode() asserts it.
void encode_into(std::string& out, const Message& msg);
[[nodiscard]] std::string encode(const Message& msg);

// Builders for the daemon's replies.
[[nodiscard]] Message make_reply(const Message& request, std::string payload);
[[nodiscard]] Message make_ok(const Message& request);
[[nodiscard]] Message make_error(const Message& request, StoreError error);
[[nodiscard]] Message make_error(std::uint32_t req_id, std::uint32_t tx_id, StoreError error);
[[nodiscard]] Message make_watch_event(std::string_view path, std::string_view token);

enum class FrameError {
    kTooLong, // a header announced more than kPayloadMax payload bytes
};
[[nodiscard]] std::string_view to_string(FrameError error);

// Cuts a byte stream into messages. Bytes go in with feed() in whatever
// pieces the transport delivers; next() hands out each complete message
// once. A header whose len exceeds kPayloadMax cannot be skipped safely (the
// stream has no resynchronisation point), so the decoder then stays failed
// and the connection must be closed. The type is not checked here: an
// unknown type is framed normally and the receiver answers it.
class FrameDecoder {
public:
    void feed(std::string_view bytes);

    // The next complete message, nullopt if more bytes are needed, or the
    // error that stopped the stream.
    [[nodiscard]] Result<std::optional<Message>, FrameError> next();

    // The header of the message that failed (for the error reply's req_id).
    [[nodiscard]] const pvkit_store_msg_header& failed_header() const { return m_failed_header; }

    // Bytes received but not yet returned as a message; a partial message
    // at end of stream shows up here.
    [[nodiscard]] std::size_t buffered() const { return m_buf.size() - m_pos; }
    [[nodiscard]] bool failed() const { return m_failed; }

private:
    std::string m_buf;
    std::size_t m_pos = 0;
    bool m_failed = false;
    pvkit_store_msg_header m_failed_header{};
};

// Splits a payload of NUL-terminated strings ("a\0b\0") into its strings.
// nullopt if the payload is empty or does not end with a NUL (a string
// without its terminator is malformed, as in XenStore).
[[nodiscard]] std::optional<std::vector<std::string_view>> split_args(std::string_view payload);

// Joins strings into "a\0b\0".
[[nodiscard]] std::string join_args(std::span<const std::string> args);
[[nodiscard]] std::string join_args(std::initializer_list<std::string_view> args);

// Splits a WRITE payload into path and value at the first NUL; nullopt if
// there is no NUL.
struct PathAndValue {
    std::string_view path;
    std::string_view value;
};
[[nodiscard]] std::optional<PathAndValue> split_write(std::string_view payload);

} // namespace pvkit::store
