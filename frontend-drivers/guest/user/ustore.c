#include "ustore.h"

#include <pvkit/store.h>

#include "pvkit_guest/mem.h"
#include "ulib.h"

#define RING_MASK (PVKIT_STORE_RING_SIZE - 1u)
/* Spin this many times on the ring before sleeping: long enough for the
 * relay's round trip (tens of microseconds), short enough not to starve
 * the host threads that produce the reply. */
#define SPIN_LOOPS 20000u
#define SLEEP_US 100000ull

static struct pvkit_store_ring* g_ring;
static uint32_t g_port;
static uint32_t g_req_id;
static uint32_t g_req_prod; /* our private copies of the indices we write */
static uint32_t g_rsp_cons;
static struct xs_counters g_counters;

/* The message being received. */
static union {
    struct pvkit_store_msg_header hdr;
    char bytes[sizeof(struct pvkit_store_msg_header) + PVKIT_STORE_PAYLOAD_MAX];
} g_rx;
static uint32_t g_rx_len;

/* The request being built. */
static char g_tx_buf[PVKIT_STORE_PAYLOAD_MAX];

struct queued_event {
    uint32_t len;
    char payload[XS_EVENT_MAX];
};
static struct queued_event g_events[XS_EVENT_QUEUE];
static uint32_t g_event_head;
static uint32_t g_event_count;

static const struct pvkit_store_errname k_errors[] = PVKIT_STORE_ERRORS_INIT;

int xs_init(void) {
    const struct pvkit_start_info* si = start_info();
    if ((si->features & PVKIT_FEAT_STORE_RING) == 0 || si->store_ring_gpa == 0)
        return -PVKIT_ENOSYS;
    g_ring = (struct pvkit_store_ring*)(uintptr_t)si->store_ring_gpa;
    g_port = si->store_evtchn;
    /* The VMM starts the ring at zero; these are ours from now on. */
    g_req_prod = __atomic_load_n(&g_ring->req_prod, __ATOMIC_ACQUIRE);
    g_rsp_cons = __atomic_load_n(&g_ring->rsp_cons, __ATOMIC_ACQUIRE);
    return 0;
}

uint32_t xs_port(void) {
    return g_port;
}

const struct xs_counters* xs_counters(void) {
    return &g_counters;
}

static int connected(void) {
    return __atomic_load_n(&g_ring->connection, __ATOMIC_ACQUIRE) == PVKIT_STORE_RING_CONNECTED;
}

static void kick(void) {
    ++g_counters.kicks;
    evtchn_notify(g_port);
}

/* Waits until ready() says so: spin, then sleep on the store port. The
 * pending bit is cleared before the last look, so an interrupt after the
 * look leaves it set and the sleep returns at once. */
static int wait_until(int (*ready)(void), uint64_t timeout_us) {
    for (uint32_t i = 0; i < SPIN_LOOPS; ++i) {
        if (ready())
            return 1;
        __builtin_ia32_pause();
    }
    uint64_t waited = 0;
    for (;;) {
        evtchn_test_and_clear(g_port);
        if (ready())
            return 1;
        if (!connected())
            return -PVKIT_ENOTCONN;
        if (waited >= timeout_us)
            return 0;
        ++g_counters.sleeps;
        if (sys_evtchn_wait(g_port, SLEEP_US) == 0)
            waited += SLEEP_US;
    }
}

static int request_space(void) {
    const uint32_t cons = __atomic_load_n(&g_ring->req_cons, __ATOMIC_ACQUIRE);
    return g_req_prod - cons < PVKIT_STORE_RING_SIZE || !connected();
}

static int response_ready(void) {
    return __atomic_load_n(&g_ring->rsp_prod, __ATOMIC_ACQUIRE) != g_rsp_cons || !connected();
}

static int put_bytes(const char* data, uint32_t len) {
    while (len > 0) {
        if (!connected())
            return -PVKIT_ENOTCONN;
        const uint32_t cons = __atomic_load_n(&g_ring->req_cons, __ATOMIC_ACQUIRE);
        const uint32_t used = g_req_prod - cons;
        if (used > PVKIT_STORE_RING_SIZE)
            return -PVKIT_EPROTO; /* the VMM's index makes no sense */
        uint32_t space = PVKIT_STORE_RING_SIZE - used;
        if (space == 0) {
            /* Publish what is there so the relay can make room. */
            __atomic_store_n(&g_ring->req_prod, g_req_prod, __ATOMIC_RELEASE);
            kick();
            int w = wait_until(request_space, XS_REPLY_TIMEOUT_US);
            if (w <= 0)
                return w == 0 ? -PVKIT_EIO : w;
            continue;
        }
        if (space > len)
            space = len;
        for (uint32_t i = 0; i < space; ++i)
            g_ring->req[(g_req_prod + i) & RING_MASK] = data[i];
        g_req_prod += space;
        data += space;
        len -= space;
    }
    return 0;
}

static int send_message(uint32_t type, uint32_t tx, const char* payload, uint32_t len) {
    if (len > PVKIT_STORE_PAYLOAD_MAX)
        return -PVKIT_E2BIG;
    if (++g_req_id == 0)
        g_req_id = 1;
    struct pvkit_store_msg_header hdr = {type, g_req_id, tx, len};
    int r = put_bytes((const char*)&hdr, sizeof hdr);
    if (r == 0)
        r = put_bytes(payload, len);
    if (r != 0)
        return r;
    /* Release: the bytes are in the ring before the index covering them. */
    __atomic_store_n(&g_ring->req_prod, g_req_prod, __ATOMIC_RELEASE);
    kick();
    ++g_counters.requests;
    return 0;
}

/* Takes bytes of the current message from the ring. 1: g_rx holds a whole
 * message; 0: more bytes are needed; < 0: error. */
static int take_message(void) {
    const uint32_t prod = __atomic_load_n(&g_ring->rsp_prod, __ATOMIC_ACQUIRE);
    const uint32_t avail = prod - g_rsp_cons;
    if (avail > PVKIT_STORE_RING_SIZE)
        return -PVKIT_EPROTO;
    uint32_t taken = 0;
    for (;;) {
        uint32_t want;
        if (g_rx_len < sizeof g_rx.hdr) {
            want = (uint32_t)sizeof g_rx.hdr - g_rx_len;
        } else {
            if (g_rx.hdr.len > PVKIT_STORE_PAYLOAD_MAX)
                return -PVKIT_EPROTO;
            want = (uint32_t)sizeof g_rx.hdr + g_rx.hdr.len - g_rx_len;
            if (want == 0)
                break;
        }
        if (taken == avail)
            break;
        if (want > avail - taken)
            want = avail - taken;
        for (uint32_t i = 0; i < want; ++i)
            g_rx.bytes[g_rx_len + i] = g_ring->rsp[(g_rsp_cons + taken + i) & RING_MASK];
        g_rx_len += want;
        taken += want;
    }
    if (taken > 0) {
        g_rsp_cons += taken;
        /* Release: our copy is done before the relay may overwrite it. */
        __atomic_store_n(&g_ring->rsp_cons, g_rsp_cons, __ATOMIC_RELEASE);
        kick(); /* the relay may be waiting for room */
    }
    return g_rx_len >= sizeof g_rx.hdr && g_rx_len == sizeof g_rx.hdr + g_rx.hdr.len;
}

static void queue_event(void) {
    if (g_event_count == XS_EVENT_QUEUE || g_rx.hdr.len > XS_EVENT_MAX) {
        ++g_counters.events_dropped;
        return;
    }
    struct queued_event* e = &g_events[(g_event_head + g_event_count) % XS_EVENT_QUEUE];
    e->len = g_rx.hdr.len;
    memcpy(e->payload, g_rx.bytes + sizeof g_rx.hdr, e->len);
    ++g_event_count;
}

static int error_from_name(const char* name, uint32_t len) {
    for (uint32_t i = 0; i < sizeof k_errors / sizeof k_errors[0]; ++i) {
        const uint32_t n = (uint32_t)strlen(k_errors[i].name);
        if (len == n + 1 && memcmp(name, k_errors[i].name, n) == 0 && name[n] == '\0')
            return -k_errors[i].errnum;
    }
    return -PVKIT_EPROTO;
}

/* Sends a request and waits for its reply, queueing watch events. The
 * reply's payload goes to `reply` (if not NULL); returns its length,
 * -PVKIT_E2BIG if it does not fit `size`. */
static int request(uint32_t type, uint32_t tx, const char* payload, uint32_t len, char* reply,
                   uint32_t size) {
    if (g_ring == NULL)
        return -PVKIT_ENOSYS;
    int r = send_message(type, tx, payload, len);
    if (r != 0)
        return r;
    const uint32_t id = g_req_id;
    for (;;) {
        r = take_message();
        if (r < 0)
            return r;
        if (r == 0) {
            r = wait_until(response_ready, XS_REPLY_TIMEOUT_US);
            if (r <= 0)
                return r == 0 ? -PVKIT_EIO : r;
            continue;
        }
        g_rx_len = 0; /* the message is ours now; the buffer is reused */
        const uint32_t n = g_rx.hdr.len;
        const char* body = g_rx.bytes + sizeof g_rx.hdr;
        if (g_rx.hdr.type == PVKIT_STORE_WATCH_EVENT) {
            queue_event();
            continue;
        }
        if (g_rx.hdr.req_id != id)
            continue; /* a late reply to an abandoned request */
        if (g_rx.hdr.type == PVKIT_STORE_ERROR)
            return error_from_name(body, n);
        if (g_rx.hdr.type != type)
            return -PVKIT_EPROTO;
        if (reply != NULL) {
            if (n > size)
                return -PVKIT_E2BIG;
            memcpy(reply, body, n);
        }
        return (int)n;
    }
}

/* path\0 [extra] into g_tx_buf; returns the length or -E2BIG. */
static int build(const char* a, uint32_t a_len, int nul_a, const char* b, uint32_t b_len,
                 int nul_b) {
    const uint32_t total = a_len + (nul_a ? 1u : 0u) + b_len + (nul_b ? 1u : 0u);
    if (total > sizeof g_tx_buf)
        return -PVKIT_E2BIG;
    memcpy(g_tx_buf, a, a_len);
    uint32_t at = a_len;
    if (nul_a)
        g_tx_buf[at++] = '\0';
    memcpy(g_tx_buf + at, b, b_len);
    at += b_len;
    if (nul_b)
        g_tx_buf[at++] = '\0';
    return (int)at;
}

static int ok_reply(int r) {
    return r < 0 ? r : 0;
}

int xs_read(uint32_t tx, const char* path, char* buf, uint32_t size) {
    int len = build(path, (uint32_t)strlen(path), 1, "", 0, 0);
    if (len < 0)
        return len;
    int r = request(PVKIT_STORE_READ, tx, g_tx_buf, (uint32_t)len, buf, size);
    if (r >= 0 && (uint32_t)r < size)
        buf[r] = '\0';
    return r;
}

int xs_write_bytes(uint32_t tx, const char* path, const void* value, uint32_t value_len) {
    int len = build(path, (uint32_t)strlen(path), 1, value, value_len, 0);
    if (len < 0)
        return len;
    return ok_reply(request(PVKIT_STORE_WRITE, tx, g_tx_buf, (uint32_t)len, NULL, 0));
}

int xs_write(uint32_t tx, const char* path, const char* value) {
    return xs_write_bytes(tx, path, value, (uint32_t)strlen(value));
}

int xs_mkdir(uint32_t tx, const char* path) {
    int len = build(path, (uint32_t)strlen(path), 1, "", 0, 0);
    return len < 0 ? len
                   : ok_reply(request(PVKIT_STORE_MKDIR, tx, g_tx_buf, (uint32_t)len, NULL, 0));
}

int xs_rm(uint32_t tx, const char* path) {
    int len = build(path, (uint32_t)strlen(path), 1, "", 0, 0);
    return len < 0 ? len : ok_reply(request(PVKIT_STORE_RM, tx, g_tx_buf, (uint32_t)len, NULL, 0));
}

int xs_directory(uint32_t tx, const char* path, char* buf, uint32_t size) {
    int len = build(path, (uint32_t)strlen(path), 1, "", 0, 0);
    return len < 0 ? len : request(PVKIT_STORE_DIRECTORY, tx, g_tx_buf, (uint32_t)len, buf, size);
}

int xs_get_perms(const char* path, char* buf, uint32_t size) {
    int len = build(path, (uint32_t)strlen(path), 1, "", 0, 0);
    return len < 0 ? len : request(PVKIT_STORE_GET_PERMS, 0, g_tx_buf, (uint32_t)len, buf, size);
}

int xs_watch(const char* path, const char* token) {
    int len = build(path, (uint32_t)strlen(path), 1, token, (uint32_t)strlen(token), 1);
    return len < 0 ? len
                   : ok_reply(request(PVKIT_STORE_WATCH, 0, g_tx_buf, (uint32_t)len, NULL, 0));
}

int xs_unwatch(const char* path, const char* token) {
    int len = build(path, (uint32_t)strlen(path), 1, token, (uint32_t)strlen(token), 1);
    return len < 0 ? len
                   : ok_reply(request(PVKIT_STORE_UNWATCH, 0, g_tx_buf, (uint32_t)len, NULL, 0));
}

int xs_tx_start(uint32_t* tx) {
    char id[16];
    int r = request(PVKIT_STORE_TRANSACTION_START, 0, "", 1, id, sizeof id - 1);
    if (r < 0)
        return r;
    uint32_t v = 0;
    int digits = 0;
    for (int i = 0; i < r && id[i] != '\0'; ++i) {
        if (id[i] < '0' || id[i] > '9' || v > 100000000u)
            return -PVKIT_EPROTO;
        v = v * 10 + (uint32_t)(id[i] - '0');
        ++digits;
    }
    if (digits == 0 || v == 0)
        return -PVKIT_EPROTO;
    *tx = v;
    return 0;
}

int xs_tx_end(uint32_t tx, int commit) {
    return ok_reply(request(PVKIT_STORE_TRANSACTION_END, tx, commit ? "T" : "F", 2, NULL, 0));
}

static int event_queued(void) {
    return g_event_count > 0;
}

int xs_wait_event(char* path, uint32_t path_size, char* token, uint32_t token_size,
                  uint64_t timeout_us) {
    if (g_ring == NULL)
        return -PVKIT_ENOSYS;
    uint64_t waited = 0;
    while (!event_queued()) {
        int r = take_message();
        if (r < 0)
            return r;
        if (r == 1) {
            g_rx_len = 0;
            if (g_rx.hdr.type == PVKIT_STORE_WATCH_EVENT)
                queue_event();
            continue; /* replies to nothing outstanding are dropped */
        }
        if (waited >= timeout_us)
            return 0;
        const uint64_t slice = timeout_us - waited < SLEEP_US ? timeout_us - waited : SLEEP_US;
        r = wait_until(response_ready, slice);
        if (r < 0)
            return r;
        if (r == 0)
            waited += slice;
    }
    struct queued_event* e = &g_events[g_event_head];
    g_event_head = (g_event_head + 1) % XS_EVENT_QUEUE;
    --g_event_count;
    /* path\0token\0 */
    const uint32_t path_len = (uint32_t)strnlen(e->payload, e->len);
    if (path_len >= e->len)
        return -PVKIT_EPROTO;
    const char* tok = e->payload + path_len + 1;
    const uint32_t tok_len = (uint32_t)strnlen(tok, e->len - path_len - 1);
    if (path_len >= path_size || tok_len >= token_size)
        return -PVKIT_E2BIG;
    memcpy(path, e->payload, path_len + 1);
    memcpy(token, tok, tok_len);
    token[tok_len] = '\0';
    return 1;
}
