// What a test process and pvkit-test-ring-peer say to each other over their
// SOCK_SEQPACKET socket pair (one message per struct, descriptors passed
// with SCM_RIGHTS). Both are built from this tree, so plain structs do.
//
//   pvkit-test-ring-peer <mode> <socket fd>
//
// Modes and their messages (test = T, peer = P):
//   echo-backend                T->P BackendSetup + [pool, to_backend, to_frontend]
//                               P->T EchoReport when all requests are answered
//   hostile-backend-jump        T->P BackendSetup + [pool, to_backend, to_frontend]
//                               P->T HostileReport after publishing rsp_prod far ahead
//   hostile-backend-unknown-id  T->P BackendSetup + [pool, to_backend, to_frontend]
//                               P->T HostileReport after answering with made-up ids
//   hostile-frontend            P->T FrontendSetup + [pool, a_to_backend, a_to_frontend,
//                                                     b_to_backend, b_to_frontend]
//                               P->T FrontendReport when ring B is done
//   grant-backend               T->P GrantCheckSetup + [pool]
//                               P->T GrantCheckReport, holding a read-only mapping
//                               T->P kReleaseCommand; P releases it
//                               P->T kReleasedReply
//   event-pong                  T->P PongSetup + [to_backend, to_frontend]
//                               then `rounds` kick/answer round trips
//
// The peer exits 0 when everything went as its mode expects, kExitFailed
// (with a message on stderr) otherwise.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstdint>

namespace pvkit::test::peer {

// Bound on every single wait on either side; generous, since it only
// matters when something is already broken.
inline constexpr std::chrono::milliseconds kWaitTimeout{10000};
// Bound on waiting for the peer to exit once its work is done.
inline constexpr std::chrono::milliseconds kExitTimeout{30000};

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitFailed = 65;

// The echo protocol's ring slot: 24 bytes, 128 slots on one page.
struct EchoRequest {
    std::uint64_t id;
    std::uint64_t value;
};
struct EchoResponse {
    std::uint64_t id;
    std::uint64_t value;
    std::uint64_t result;
};
union EchoSlot {
    EchoRequest req;
    EchoResponse rsp;
};

// What the echo backend computes, so the frontend can check every answer.
constexpr std::uint64_t echo_result(std::uint64_t value) {
    return value * 0x9E3779B97F4A7C15ULL + 0x5bd1e995ULL;
}

// Bytes the echo backend expects in the data page and the bytes it writes
// back, at offset kDataReplyOffset.
inline constexpr std::uint8_t kFrontendSeed = 0x3c;
inline constexpr std::uint8_t kBackendSeed = 0xa5;
inline constexpr std::uint32_t kDataBytes = 256;
inline constexpr std::uint32_t kDataReplyOffset = 1024;
constexpr std::uint8_t data_byte(std::uint8_t seed, std::uint32_t i) {
    return static_cast<std::uint8_t>((i * 7 + seed) & 0xffu);
}

// How far ahead the hostile backend publishes rsp_prod, and the ids it
// answers with (the in-flight table never issues ids with these high bits).
inline constexpr std::uint32_t kJumpAhead = 1000;
inline constexpr std::uint64_t kMadeUpIdBase = 0xbad0000000000000ULL;

struct BackendSetup {
    std::uint32_t ring_ref;    // writable grant of the ring page
    std::uint32_t data_ref;    // echo-backend: writable grant of a data page
    std::uint32_t nr_requests; // echo-backend: requests to answer
    pvkit_domid_t backend_domid;
    std::uint16_t pad;
};

struct EchoReport {
    std::uint32_t answered;
    std::uint32_t seed_ok; // 1 if the data page held the frontend's bytes
    std::uint64_t maps;
    std::uint64_t rejected;
};

struct HostileReport {
    std::uint32_t requests_seen;
    std::uint32_t published_rsp_prod;
};

struct FrontendSetup {
    std::uint32_t bad_ring_ref;  // ring A: the peer breaks it
    std::uint32_t good_ring_ref; // ring B: the peer uses it properly
    std::uint32_t legit_requests; // ring A: requests before the jump
    std::uint32_t bad_req_prod;   // ring A: what req_prod jumps to
    std::uint32_t nr_requests;    // ring B: requests to send
    pvkit_domid_t backend_domid;
    std::uint16_t pad;
};

struct FrontendReport {
    std::uint32_t answered; // ring B responses that checked out
    std::uint32_t pad;
};

// GrantError values travel as int32_t; kGrantOk means "no error".
inline constexpr std::int32_t kGrantOk = -1;

struct GrantCheckSetup {
    std::uint32_t ro_ref;      // read-only grant to backend_domid
    std::uint32_t foreign_ref; // writable grant to another domain
    pvkit_domid_t backend_domid;
    std::uint16_t pad;
    std::uint32_t pad2;
};

struct GrantCheckReport {
    std::int32_t rw_map_of_ro;
    std::int32_t ro_map_of_ro;
    std::int32_t write_through_ro;
    std::int32_t ro_map_of_foreign;
    std::int32_t rw_map_of_foreign;
    std::uint32_t pad;
    std::uint8_t first_bytes[64]; // read through the read-only mapping
};

inline constexpr char kReleaseCommand = 'R';
inline constexpr char kReleasedReply = 'r';

struct PongSetup {
    std::uint32_t rounds;
    std::uint32_t pad;
};

} // namespace pvkit::test::peer
