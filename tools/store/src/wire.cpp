#include "pvkit/store/wire.hpp"

#include <array>
#include <cassert>
#include <cstring>

namespace pvkit::store {

namespace {

constexpr std::array<std::string_view, PVKIT_STORE_OP_COUNT> kTypeNames = {
    "CONTROL",     "DIRECTORY", "READ",        "GET_PERMS",   "WATCH",
    "UNWATCH",     "TRANSACTION_START",        "TRANSACTION_END",
    "INTRODUCE",   "RELEASE",   "GET_DOMAIN_PATH",            "WRITE",
    "MKDIR",       "RM",        "SET_PERMS",   "WATCH_EVENT", "ERROR",
    "IS_DOMAIN_INTRODUCED",     "RESUME",      "SET_TARGET",  "RESERVED",
    "RESET_WATCHES",            "DIRECTORY_PART",
};

constexpr std::uint32_t kReservedType = 20;

} // namespace

bool is_known_type(std::uint32_t type) {
    return type < PVKIT_STORE_OP_COUNT && type != kReservedType;
}

std::string_view type_name(std::uint32_t type) {
    return is_known_type(type) ? kTypeNames[type] : "UNKNOWN";
}

void encode_into(std::string& out, const Message& msg) {
    assert(msg.payload.size() <= kPayloadMax);
    pvkit_store_msg_header hdr{};
    hdr.type = msg.type;
    hdr.req_id = msg.req_id;
    hdr.tx_id = msg.tx_id;
    hdr.len = static_cast<std::uint32_t>(msg.payload.size());
    std::size_t at = out.size();
    out.resize(at + kHeaderSize);
    std::memcpy(out.data() + at, &hdr, kHeaderSize);
    out += msg.payload;
}

std::string encode(const Message& msg) {
    std::string out;
    out.reserve(kHeaderSize + msg.payload.size());
    encode_into(out, msg);
    return out;
}

Message make_reply(const Message& request, std::string payload) {
    return Message{request.type, request.req_id, request.tx_id, std::move(payload)};
}

Message make_ok(const Message& request) {
    return make_reply(request, std::string("OK\0", 3));
}

Message make_error(std::uint32_t req_id, std::uint32_t tx_id, StoreError error) {
    std::string payload(to_string(error));
    payload.push_back('\0');
    return Message{PVKIT_STORE_ERROR, req_id, tx_id, std::move(payload)};
}

Message make_error(const Message& request, StoreError error) {
    return make_error(request.req_id, request.tx_id, error);
}

Message make_watch_event(std::string_view path, std::string_view token) {
    return Message{PVKIT_STORE_WATCH_EVENT, 0, 0, join_args({path, token})};
}

std::string_view to_string(FrameError error) {
    switch (error) {
    case FrameError::kTooLong:
        return "payload longer than PVKIT_STORE_PAYLOAD_MAX";
    }
    return "unknown frame error";
}

void FrameDecoder::feed(std::string_view bytes) {
    if (m_failed)
        return;
    // Drop consumed bytes before growing, so the buffer stays about one
    // message plus one read in size however long the stream runs.
    if (m_pos > 0 && (m_pos == m_buf.size() || m_pos >= m_buf.size() / 2)) {
        m_buf.erase(0, m_pos);
        m_pos = 0;
    }
    m_buf.append(bytes);
}

Result<std::optional<Message>, FrameError> FrameDecoder::next() {
    if (m_failed)
        return Unexpected{FrameError::kTooLong};
    if (m_buf.size() - m_pos < kHeaderSize)
        return std::optional<Message>{};
    // The header is copied out before any field is looked at.
    pvkit_store_msg_header hdr;
    std::memcpy(&hdr, m_buf.data() + m_pos, kHeaderSize);
    if (hdr.len > kPayloadMax) {
        m_failed = true;
        m_failed_header = hdr;
        return Unexpected{FrameError::kTooLong};
    }
    if (m_buf.size() - m_pos - kHeaderSize < hdr.len)
        return std::optional<Message>{};
    Message msg{hdr.type, hdr.req_id, hdr.tx_id, m_buf.substr(m_pos + kHeaderSize, hdr.len)};
    m_pos += kHeaderSize + hdr.len;
    return std::optional<Message>{std::move(msg)};
}

std::optional<std::vector<std::string_view>> split_args(std::string_view payload) {
    if (payload.empty() || payload.back() != '\0')
        return std::nullopt;
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start < payload.size()) {
        std::size_t nul = payload.find('\0', start);
        out.push_back(payload.substr(start, nul - start));
        start = nul + 1;
    }
    return out;
}

std::string join_args(std::span<const std::string> args) {
    std::string out;
    for (const std::string& a : args) {
        out += a;
        out.push_back('\0');
    }
    return out;
}

std::string join_args(std::initializer_list<std::string_view> args) {
    std::string out;
    for (std::string_view a : args) {
        out += a;
        out.push_back('\0');
    }
    return out;
}

std::optional<PathAndValue> split_write(std::string_view payload) {
    std::size_t nul = payload.find('\0');
    if (nul == std::string_view::npos)
        return std::nullopt;
    return PathAndValue{payload.substr(0, nul), payload.substr(nul + 1)};
}

} // namespace pvkit::store
