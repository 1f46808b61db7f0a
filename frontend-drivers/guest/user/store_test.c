/*
 * store-test: the store from guest user mode, through the store ring the
 * VMM relays to pvkit-stored as this domain. Reads and writes its own
 * nodes (absolute and relative paths), lists, watches, commits and aborts
 * transactions, moves a value larger than the ring, and is refused what
 * domain permissions forbid. Then 200 reads between POST codes 0x20 and
 * 0x21 time a store round trip from user mode.
 */
#include <pvkit/abi.h>

#include "programs.h"
#include "pvkit_guest/fmt.h"
#include "pvkit_guest/mem.h"
#include "ulib.h"
#include "ustore.h"

#define BENCH_READS 200u

static char g_buf[4096];
static char g_big[2000];

/* Whether the NUL-separated list holds `name`. */
static int list_has(const char* list, int len, const char* name) {
    for (int at = 0; at < len;) {
        const char* item = list + at;
        if (strcmp(item, name) == 0)
            return 1;
        at += (int)strlen(item) + 1;
    }
    return 0;
}

int store_test_main(void) {
    check_eq("xs_init", xs_init(), 0);
    const long domid = sys_info(SYS_INFO_DOMID);
    char home[40];
    fmt_format(home, sizeof home, "/local/domain/%ld", domid);
    char path[96];

    fmt_format(path, sizeof path, "%s/name", home);
    int r = xs_read(0, path, g_buf, sizeof g_buf);
    check("read <home>/name", r > 0, r);
    uprintf("store-test: domain %ld is named '%s'\n", domid, r > 0 ? g_buf : "");
    char name[64];
    memcpy(name, g_buf, r > 0 && r < (int)sizeof name ? (size_t)r + 1 : 1);
    if (r <= 0 || r >= (int)sizeof name)
        name[0] = '\0';
    r = xs_read(0, "name", g_buf, sizeof g_buf);
    check("read name (relative) gives the same", r > 0 && strcmp(g_buf, name) == 0, r);

    check_eq("write data/greeting", xs_write(0, "data/greeting", "hello from guest user mode"), 0);
    fmt_format(path, sizeof path, "%s/data/greeting", home);
    r = xs_read(0, path, g_buf, sizeof g_buf);
    check("read it back", r > 0 && strcmp(g_buf, "hello from guest user mode") == 0, r);
    r = xs_get_perms("data/greeting", g_buf, sizeof g_buf);
    char owner[16];
    fmt_format(owner, sizeof owner, "%ld", domid);
    check("data/greeting is owned by this domain", r > 1 && strcmp(g_buf + 1, owner) == 0, r);
    r = xs_directory(0, home, g_buf, sizeof g_buf);
    check("directory <home> lists data and name",
          r > 0 && list_has(g_buf, r, "data") && list_has(g_buf, r, "name"), r);
    check_eq("read(too small a buffer)", xs_read(0, "data/greeting", g_buf, 4), -PVKIT_E2BIG);

    /* What this domain may not do. */
    check_eq("write /local/domain/0/x", xs_write(0, "/local/domain/0/x", "x"), -PVKIT_EACCES);
    check_eq("write /vm/x", xs_write(0, "/vm/x", "x"), -PVKIT_EACCES);
    fmt_format(path, sizeof path, "/local/domain/%ld/name", domid + 1);
    check_eq("read another domain's name", xs_read(0, path, g_buf, sizeof g_buf), -PVKIT_EACCES);
    check_eq("read a missing node of its own", xs_read(0, "data/missing", g_buf, sizeof g_buf),
             -PVKIT_ENOENT);
    check_eq("read an invalid path", xs_read(0, "data/bad path", g_buf, sizeof g_buf),
             -PVKIT_EINVAL);

    /* Watches: the first event comes at once, then one per change. */
    char ev_path[128];
    char ev_token[32];
    check_eq("watch data/w", xs_watch("data/w", "tok"), 0);
    r = xs_wait_event(ev_path, sizeof ev_path, ev_token, sizeof ev_token, 5000000);
    check("first event", r == 1 && strcmp(ev_path, "data/w") == 0 && strcmp(ev_token, "tok") == 0,
          r);
    check_eq("write data/w", xs_write(0, "data/w", "1"), 0);
    r = xs_wait_event(ev_path, sizeof ev_path, ev_token, sizeof ev_token, 5000000);
    check("event for the write", r == 1 && strcmp(ev_path, "data/w") == 0, r);
    check_eq("unwatch data/w", xs_unwatch("data/w", "tok"), 0);

    /* Transactions. */
    uint32_t tx = 0;
    check_eq("transaction start", xs_tx_start(&tx), 0);
    check_eq("write data/t inside", xs_write(tx, "data/t", "in-tx"), 0);
    check_eq("data/t invisible outside", xs_read(0, "data/t", g_buf, sizeof g_buf), -PVKIT_ENOENT);
    r = xs_read(tx, "data/t", g_buf, sizeof g_buf);
    check("data/t visible inside", r == 5 && strcmp(g_buf, "in-tx") == 0, r);
    check_eq("commit", xs_tx_end(tx, 1), 0);
    r = xs_read(0, "data/t", g_buf, sizeof g_buf);
    check("data/t after commit", r == 5 && strcmp(g_buf, "in-tx") == 0, r);
    check_eq("transaction start", xs_tx_start(&tx), 0);
    check_eq("write data/t2 inside", xs_write(tx, "data/t2", "gone"), 0);
    check_eq("abort", xs_tx_end(tx, 0), 0);
    check_eq("data/t2 after abort", xs_read(0, "data/t2", g_buf, sizeof g_buf), -PVKIT_ENOENT);

    /* Bigger than the ring in both directions. */
    for (uint32_t i = 0; i < sizeof g_big; ++i)
        g_big[i] = (char)('a' + i % 26);
    check_eq("write a 2000-byte value", xs_write_bytes(0, "data/big", g_big, sizeof g_big), 0);
    r = xs_read(0, "data/big", g_buf, sizeof g_buf);
    check("read it back", r == (int)sizeof g_big && memcmp(g_buf, g_big, sizeof g_big) == 0, r);

    check_eq("mkdir data/dir", xs_mkdir(0, "data/dir"), 0);
    r = xs_directory(0, "data", g_buf, sizeof g_buf);
    check("directory data lists dir", r > 0 && list_has(g_buf, r, "dir"), r);
    check_eq("rm data/dir", xs_rm(0, "data/dir"), 0);
    check_eq("rm data/dir again", xs_rm(0, "data/dir"), 0);

    fmt_format(path, sizeof path, "%s/name", home);
    sys_post(0x20);
    int failures = 0;
    for (uint32_t i = 0; i < BENCH_READS; ++i) {
        if (xs_read(0, path, g_buf, sizeof g_buf) <= 0)
            ++failures;
    }
    sys_post(0x21);
    check_eq("timed reads that failed", failures, 0);
    const struct xs_counters* c = xs_counters();
    uprintf("store-test: %u reads between POST codes 0x20 and 0x21; %lu requests, %lu kicks, "
            "%lu sleeps in all\n",
            BENCH_READS, c->requests, c->kicks, c->sleeps);
    return check_summary("store-test");
}
