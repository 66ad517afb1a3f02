/* The state store, one suite for both implementations: get/put/del,
 * atomic transactions, ordered prefix scans, namespaces, persistence across
 * reopen, leases and fencing, retention. SQLite by default; PostgreSQL when
 * run through tests/support/pg.sh (ROUTERD_TEST_PG_URL set). Plus what is
 * particular to each: file modes and a full disk (SQLite), concurrent
 * migrations, an outage and the pipelined group commit (PostgreSQL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "harness.h"
#include "store.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *dir;
    store *st;
} fx;

static const char *pg_url(void) {
    const char *u = getenv("ROUTERD_TEST_PG_URL");
    return u && *u ? u : NULL;
}

static store *open_opts(fx *f, const store_opts *o, char *err, size_t errsz) {
    if (pg_url()) return store_open_with("postgresql", pg_url(), ROUTERD_PLUGIN_DIR, o, err, errsz);
    char *sub = xasprintf("%s/state", f->dir); /* store_open creates it */
    store *st = store_open_with("sqlite", sub, NULL, o, err, errsz);
    free(sub);
    return st;
}

static store *open_store(fx *f, bool sync_full) {
    char err[512] = "";
    store_opts o = {.sync_full = sync_full, .lease_ms = 3000, .wal_limit_b = 1 << 20};
    store *st = open_opts(f, &o, err, sizeof err);
    if (!st) fail_msg("store open: %s", err);
    return st;
}

/* PostgreSQL: every test starts from an empty database (the schema is
 * created again, which runs the migrations each time). */
static void pg_reset(void) {
    char *cmd = xasprintf("psql -q -X '%s' -c 'DROP TABLE IF EXISTS routerd_kv, routerd_lease, "
                          "routerd_schema' >/dev/null 2>&1",
                          pg_url());
    if (system(cmd) != 0) fail_msg("cannot reset the test database");
    free(cmd);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->dir = rt_tmpdir();
    if (pg_url()) pg_reset();
    f->st = open_store(f, true);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    store_close(f->st);
    rt_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* True when ns/key reads back as val; for writer threads, which must not
 * assert. */
static bool holds(store *st, const char *ns, const char *key, const char *val) {
    char *got = NULL;
    size_t len = 0;
    bool same =
        store_get(st, ns, key, &got, &len) == RD_OK && len == strlen(val) && !memcmp(got, val, len);
    free(got);
    return same;
}

static void expect(store *st, const char *ns, const char *key, const char *want) {
    char *v = NULL;
    size_t n = 12345;
    rd_status rc = store_get(st, ns, key, &v, &n);
    if (!want) {
        assert_int_equal(rc, RD_E_FATAL);
        return;
    }
    if (rc != RD_OK) fail_msg("%s/%s: missing, want \"%s\"", ns, key, want);
    assert_string_equal(v, want);
    assert_int_equal(n, strlen(want));
    free(v);
}

static void put_get_del(void **state) {
    fx *f = *state;
    expect(f->st, "transport.a", "offset", NULL);
    assert_int_equal(store_put(f->st, "transport.a", "offset", "41", 2), RD_OK);
    expect(f->st, "transport.a", "offset", "41");
    assert_int_equal(store_put(f->st, "transport.a", "offset", "42", 2), RD_OK); /* replace */
    expect(f->st, "transport.a", "offset", "42");
    assert_int_equal(store_del(f->st, "transport.a", "offset"), RD_OK);
    expect(f->st, "transport.a", "offset", NULL);
    /* Deleting what is not there is fine. */
    assert_int_equal(store_del(f->st, "transport.a", "offset"), RD_OK);
}

static void binary_and_empty_values(void **state) {
    fx *f = *state;
    const char bin[] = {'a', 0, 'b', (char)0xff, 0};
    assert_int_equal(store_put(f->st, "ns", "bin", bin, sizeof bin), RD_OK);
    char *v = NULL;
    size_t n = 0;
    assert_int_equal(store_get(f->st, "ns", "bin", &v, &n), RD_OK);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    assert_int_equal(v[n], 0); /* always NUL-terminated */
    free(v);
    assert_int_equal(store_put(f->st, "ns", "empty", "", 0), RD_OK);
    assert_int_equal(store_put(f->st, "ns", "null", NULL, 0), RD_OK);
    expect(f->st, "ns", "empty", "");
    expect(f->st, "ns", "null", "");
    /* len may be NULL. */
    assert_int_equal(store_get(f->st, "ns", "bin", &v, NULL), RD_OK);
    free(v);
}

static void namespaces_isolated(void **state) {
    fx *f = *state;
    store_put(f->st, "backend.a", "k", "A", 1);
    store_put(f->st, "backend.b", "k", "B", 1);
    store_put(f->st, "backend.a", "j/1", "1", 1);
    store_put(f->st, "backend.b", "j/1", "1", 1);
    expect(f->st, "backend.a", "k", "A");
    expect(f->st, "backend.b", "k", "B");
    expect(f->st, "backend.c", "k", NULL);
    store_del(f->st, "backend.a", "k");
    expect(f->st, "backend.b", "k", "B");
    rd_kv_op op = {.op = RD_KV_DEL_RANGE, .key = "", .key_end = "\x7f"};
    assert_int_equal(store_txn(f->st, "backend.a", &op, 1), RD_OK);
    expect(f->st, "backend.a", "j/1", NULL);
    expect(f->st, "backend.b", "j/1", "1");
    /* No end key: from the first key to the last. */
    store_put(f->st, "backend.b", "j/2", "2", 1);
    store_put(f->st, "backend.b", "a", "a", 1);
    rd_kv_op open_end = {.op = RD_KV_DEL_RANGE, .key = "j/"};
    assert_int_equal(store_txn(f->st, "backend.b", &open_end, 1), RD_OK);
    expect(f->st, "backend.b", "j/1", NULL);
    expect(f->st, "backend.b", "j/2", NULL);
    expect(f->st, "backend.b", "a", "a");
}

static void txn_applies_all(void **state) {
    fx *f = *state;
    store_put(f->st, "ns", "old", "o", 1);
    for (int i = 0; i < 6; i++) {
        char k[16];
        snprintf(k, sizeof k, "j/%03d", i);
        store_put(f->st, "ns", k, "x", 1);
    }
    rd_kv_op ops[] = {
        {.op = RD_KV_PUT, .key = "new", .val = "n", .val_len = 1},
        {.op = RD_KV_DEL, .key = "old"},
        {.op = RD_KV_DEL_RANGE, .key = "j/001", .key_end = "j/004"},
        {.op = RD_KV_PUT, .key = "j/002", .val = "again", .val_len = 5},
    };
    assert_int_equal(store_txn(f->st, "ns", ops, 4), RD_OK);
    expect(f->st, "ns", "new", "n");
    expect(f->st, "ns", "old", NULL);
    expect(f->st, "ns", "j/000", "x");
    expect(f->st, "ns", "j/001", NULL); /* start is inclusive */
    expect(f->st, "ns", "j/002", "again");
    expect(f->st, "ns", "j/003", NULL);
    expect(f->st, "ns", "j/004", "x"); /* end is exclusive */
    expect(f->st, "ns", "j/005", "x");
    assert_int_equal(store_txn(f->st, "ns", NULL, 0), RD_OK);
}

static void txn_is_atomic(void **state) {
    fx *f = *state;
    store_put(f->st, "ns", "keep", "k", 1);
    store_put(f->st, "ns", "r/1", "1", 1);
    /* The last op is invalid: none of the earlier ones may stay. */
    rd_kv_op ops[] = {
        {.op = RD_KV_PUT, .key = "added", .val = "a", .val_len = 1},
        {.op = RD_KV_DEL, .key = "keep"},
        {.op = RD_KV_DEL_RANGE, .key = "r/", .key_end = "r0"},
        {.op = (rd_kv_op_type)99, .key = "bogus"},
    };
    assert_int_not_equal(store_txn(f->st, "ns", ops, 4), RD_OK);
    expect(f->st, "ns", "added", NULL);
    expect(f->st, "ns", "keep", "k");
    expect(f->st, "ns", "r/1", "1");
    /* The store still works after the rollback. */
    assert_int_equal(store_txn(f->st, "ns", ops, 3), RD_OK);
    expect(f->st, "ns", "added", "a");
    expect(f->st, "ns", "keep", NULL);
    expect(f->st, "ns", "r/1", NULL);
}

typedef struct {
    char keys[64][32];
    char vals[64][32];
    int n, stop_after;
    store *reenter;
} scan_acc;

static int collect(void *arg, const char *key, const void *val, size_t len) {
    scan_acc *a = arg;
    snprintf(a->keys[a->n], sizeof a->keys[0], "%s", key);
    snprintf(a->vals[a->n], sizeof a->vals[0], "%.*s", (int)len, (const char *)val);
    a->n++;
    if (a->reenter) { /* callbacks may use the store (rows are copied first) */
        char *v = NULL;
        assert_int_equal(store_get(a->reenter, "scan", key, &v, NULL), RD_OK);
        free(v);
        store_put(a->reenter, "scan", "zz-written-in-callback", "1", 1);
    }
    return a->stop_after && a->n >= a->stop_after;
}

static void scan_prefix_in_order(void **state) {
    fx *f = *state;
    /* Inserted out of order, with neighbours just outside the prefix. */
    const char *keys[] = {"j/10", "j/2", "j/1", "i/9", "j0", "j/", "k", "j/1/x"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        store_put(f->st, "scan", keys[i], keys[i], strlen(keys[i]));
    store_put(f->st, "other", "j/0", "x", 1);
    scan_acc a = {0};
    assert_int_equal(store_scan(f->st, "scan", "j/", collect, &a), RD_OK);
    const char *want[] = {"j/", "j/1", "j/1/x", "j/10", "j/2"};
    assert_int_equal(a.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(a.keys[i], want[i]);
        assert_string_equal(a.vals[i], want[i]);
    }
    /* Empty prefix: the whole namespace, sorted. */
    memset(&a, 0, sizeof a);
    store_scan(f->st, "scan", "", collect, &a);
    assert_int_equal(a.n, 8);
    assert_string_equal(a.keys[0], "i/9");
    assert_string_equal(a.keys[7], "k");
    /* Returning nonzero stops the scan. */
    memset(&a, 0, sizeof a);
    a.stop_after = 2;
    store_scan(f->st, "scan", "j/", collect, &a);
    assert_int_equal(a.n, 2);
    /* No match. */
    memset(&a, 0, sizeof a);
    store_scan(f->st, "scan", "nothing", collect, &a);
    assert_int_equal(a.n, 0);
    /* Re-entering the store from the callback must not deadlock. */
    memset(&a, 0, sizeof a);
    a.reenter = f->st;
    store_scan(f->st, "scan", "j/", collect, &a);
    assert_int_equal(a.n, 5);
    expect(f->st, "scan", "zz-written-in-callback", "1");
}

static void scan_prefix_with_sql_wildcards(void **state) {
    fx *f = *state;
    store_put(f->st, "w", "a%b", "1", 1);
    store_put(f->st, "w", "a%c", "2", 1);
    store_put(f->st, "w", "axb", "3", 1);
    store_put(f->st, "w", "a_b", "4", 1);
    scan_acc a = {0};
    store_scan(f->st, "w", "a%", collect, &a);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.keys[0], "a%b");
    assert_string_equal(a.keys[1], "a%c");
}

static void reopen_persists(void **state) {
    fx *f = *state;
    rd_kv_op ops[] = {
        {.op = RD_KV_PUT, .key = "offset", .val = "100", .val_len = 3},
        {.op = RD_KV_PUT, .key = "conv/42", .val = "ctx-1", .val_len = 5},
    };
    assert_int_equal(store_txn(f->st, "transport.tg", ops, 2), RD_OK);
    store_put(f->st, "backend.a2a", "conv/42", "ctx-2", 5);
    store_close(f->st);
    f->st = open_store(f, false);
    expect(f->st, "transport.tg", "offset", "100");
    expect(f->st, "transport.tg", "conv/42", "ctx-1");
    expect(f->st, "backend.a2a", "conv/42", "ctx-2");
}

static void open_errors(void **state) {
    (void)state;
    char err[256] = "";
    assert_null(store_open("/dev/null/not-a-dir", true, err, sizeof err));
    assert_non_null(strstr(err, "/dev/null/not-a-dir"));
    /* Without a store (--check-config) every call says unavailable. */
    char *v = NULL;
    assert_int_equal(store_get(NULL, "n", "k", &v, NULL), RD_E_UNAVAILABLE);
    assert_int_equal(store_put(NULL, "n", "k", "v", 1), RD_E_UNAVAILABLE);
    assert_int_equal(store_del(NULL, "n", "k"), RD_E_UNAVAILABLE);
    assert_int_equal(store_scan(NULL, "n", "", collect, NULL), RD_E_UNAVAILABLE);
    store_close(NULL);
}

typedef struct {
    store *st;
    int id;
} worker_arg;

static void *writer(void *arg) {
    worker_arg *w = arg;
    char ns[16], key[16], val[16];
    snprintf(ns, sizeof ns, "w%d", w->id);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "%d", i * w->id);
        if (store_put(w->st, ns, key, val, strlen(val)) != RD_OK) return (void *)1;
    }
    return NULL;
}

static int count_rows(void *arg, const char *key, const void *val, size_t len) {
    (void)key;
    (void)val;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static void concurrent_writers(void **state) {
    fx *f = *state;
    store_close(f->st);
    f->st = open_store(f, false); /* normal sync keeps this quick */
    pthread_t t[4];
    worker_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (worker_arg){f->st, i + 1};
        pthread_create(&t[i], NULL, writer, &wa[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    for (int i = 1; i <= 4; i++) {
        char ns[16], key[16], val[16];
        snprintf(ns, sizeof ns, "w%d", i);
        int rows = 0;
        store_scan(f->st, ns, "k", count_rows, &rows);
        assert_int_equal(rows, 200);
        for (int k = 0; k < 200; k += 37) {
            snprintf(key, sizeof key, "k%04d", k);
            snprintf(val, sizeof val, "%d", k * i);
            expect(f->st, ns, key, val);
        }
    }
}

/* Concurrent writers share commits (one fsync for a group), and each
 * store_put() still returns only once its own row is committed. */
static void group_commit_shares_fsyncs(void **state) {
    fx *f = *state;
    if (strcmp(store_kind(f->st), "sqlite")) skip();
    store_close(f->st);
    f->st = open_store(f, true);
    pthread_t t[8];
    worker_arg wa[8];
    for (int i = 0; i < 8; i++) {
        wa[i] = (worker_arg){f->st, i + 1};
        pthread_create(&t[i], NULL, writer, &wa[i]);
    }
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    uint64_t commits, writes;
    store_commit_counts(f->st, &commits, &writes);
    assert_int_equal(writes, 8 * 200);
    assert_true(commits < writes);
    for (int i = 1; i <= 8; i++) {
        char ns[16];
        snprintf(ns, sizeof ns, "w%d", i);
        int rows = 0;
        store_scan(f->st, ns, "k", count_rows, &rows);
        assert_int_equal(rows, 200);
    }
    /* Reopened, every acknowledged write is there. */
    store_close(f->st);
    f->st = open_store(f, true);
    int rows = 0;
    store_scan(f->st, "w8", "k", count_rows, &rows);
    assert_int_equal(rows, 200);
}

/* Each writer reads its own row right after its commit returns (reads
 * have their own connection), while a reader scans beside them and never
 * sees a row count go down. */
static void *write_then_read(void *arg) {
    worker_arg *w = arg;
    char ns[16], key[16], val[16];
    snprintf(ns, sizeof ns, "w%d", w->id);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "%d", i * w->id);
        if (store_put(w->st, ns, key, val, strlen(val)) != RD_OK) return (void *)1;
        if (!holds(w->st, ns, key, val)) return (void *)2;
    }
    return NULL;
}

typedef struct {
    store *st;
    atomic_bool stop;
    int regressions, scans;
} scan_arg;

static void *scanner(void *arg) {
    scan_arg *a = arg;
    int last = 0;
    while (!atomic_load(&a->stop)) {
        int rows = 0;
        store_scan(a->st, "w1", "k", count_rows, &rows);
        if (rows < last) a->regressions++;
        last = rows;
        a->scans++;
    }
    return NULL;
}

static void reads_beside_writes(void **state) {
    fx *f = *state;
    store_close(f->st);
    f->st = open_store(f, true);
    scan_arg sa = {.st = f->st};
    pthread_t sc;
    pthread_create(&sc, NULL, scanner, &sa);
    pthread_t t[4];
    worker_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i] = (worker_arg){f->st, i + 1};
        pthread_create(&t[i], NULL, write_then_read, &wa[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    atomic_store(&sa.stop, true);
    pthread_join(sc, NULL);
    assert_int_equal(sa.regressions, 0);
    assert_true(sa.scans > 0);
    int rows = 0;
    store_scan(f->st, "w4", "k", count_rows, &rows);
    assert_int_equal(rows, 100);
}

static void *put_a(void *arg) {
    store *st = arg;
    return store_put(st, "ns", "a", "1", 1) == RD_OK ? NULL : (void *)1;
}

/* store_commit_delay_us: once writes come close together, a write alone
 * at the head waits (bounded) for the next one and they share a commit; a
 * write nobody joins still returns after the delay. */
static void commit_delay_waits_for_a_companion(void **state) {
    fx *f = *state;
    if (strcmp(store_kind(f->st), "sqlite")) skip();
    store_close(f->st);
    char err[512] = "";
    store_opts o = {.lease_ms = 3000, .wal_limit_b = 1 << 20, .commit_delay_us = 100000};
    f->st = open_opts(f, &o, err, sizeof err);
    assert_non_null(f->st);
    /* Back-to-back writes teach it that writes come close together; each
     * may wait for a companion that does not come. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(store_put(f->st, "ns", "warm", "x", 1), RD_OK);
    uint64_t c0, w0, c1, w1;
    store_commit_counts(f->st, &c0, &w0);
    pthread_t t;
    pthread_create(&t, NULL, put_a, f->st);
    usleep(10000);
    int64_t t0 = mono_ms();
    assert_int_equal(store_put(f->st, "ns", "b", "2", 1), RD_OK);
    void *r;
    pthread_join(t, &r);
    assert_null(r);
    store_commit_counts(f->st, &c1, &w1);
    assert_int_equal(w1 - w0, 2);
    assert_int_equal(c1 - c0, 1); /* one commit for both */
    assert_true(mono_ms() - t0 < 100 + 1000);
    expect(f->st, "ns", "a", "1");
    expect(f->st, "ns", "b", "2");
    /* Alone: it waits at most the delay. */
    t0 = mono_ms();
    assert_int_equal(store_put(f->st, "ns", "c", "3", 1), RD_OK);
    assert_true(mono_ms() - t0 < 100 + 2000);
    expect(f->st, "ns", "c", "3");
    /* A commit without a sync has none to share: it does not wait, while
     * a synced one just after it still does. */
    rd_kv_op op = {.op = RD_KV_PUT, .key = "d", .val = "4", .val_len = 1};
    t0 = mono_ms();
    assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, NULL), RD_OK);
    int64_t lazy_ms = mono_ms() - t0;
    t0 = mono_ms();
    assert_int_equal(store_put(f->st, "ns", "e", "5", 1), RD_OK);
    assert_true(mono_ms() - t0 >= 90);
    assert_true(lazy_ms < 70);
    expect(f->st, "ns", "d", "4");
}

typedef struct sync_wait {
    store *st;
    uint64_t seq;
    int64_t took_ms;
    rd_status st_rc;
} sync_wait;

static void *wait_sync(void *arg) {
    sync_wait *w = arg;
    int64_t t0 = mono_ms();
    w->st_rc = store_sync(w->st, w->seq, 5000);
    w->took_ms = mono_ms() - t0;
    return NULL;
}

/* A lazy commit is kept and read back at once; with state_sync = full it
 * is durable only once a synced commit covers it, or store_sync() syncs
 * after waiting for one. */
static void lazy_commits_wait_for_a_sync(void **state) {
    fx *f = *state;
    rd_kv_op op = {.op = RD_KV_PUT, .key = "j1", .val = "a", .val_len = 1};
    uint64_t s1 = 99;
    assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &s1), RD_OK);
    expect(f->st, "ns", "j1", "a");
    if (strcmp(store_kind(f->st), "sqlite")) { /* every commit is synced */
        assert_int_equal(s1, 0);
        int64_t t0 = mono_ms();
        assert_int_equal(store_sync(f->st, s1, 5000), RD_OK);
        assert_true(mono_ms() - t0 < 1000);
        return;
    }
    assert_true(s1 > 0);
    /* Nobody covers it: the wait runs out, then it syncs. */
    int64_t t0 = mono_ms();
    assert_int_equal(store_sync(f->st, s1, 300), RD_OK);
    assert_true(mono_ms() - t0 >= 250);
    /* Covered already by a synced commit after it: no wait. */
    uint64_t s2 = 0;
    op.key = "j2";
    assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &s2), RD_OK);
    assert_true(s2 > s1);
    assert_int_equal(store_put(f->st, "ns", "rec", "sent", 4), RD_OK);
    t0 = mono_ms();
    assert_int_equal(store_sync(f->st, s2, 5000), RD_OK);
    assert_true(mono_ms() - t0 < 250);
    /* A waiter returns as soon as another writer's synced commit lands. */
    sync_wait w = {.st = f->st};
    op.key = "j3";
    assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &w.seq), RD_OK);
    pthread_t t;
    pthread_create(&t, NULL, wait_sync, &w);
    usleep(100000);
    assert_int_equal(store_put(f->st, "ns", "rec", "done", 4), RD_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.st_rc, RD_OK);
    assert_true(w.took_ms >= 80 && w.took_ms < 2500);
    expect(f->st, "ns", "j3", "a");

    /* With state_sync = normal every commit counts as durable. */
    store_close(f->st);
    f->st = open_store(f, false);
    op.key = "j4";
    assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &s1), RD_OK);
    t0 = mono_ms();
    assert_int_equal(store_sync(f->st, s1, 5000), RD_OK);
    assert_true(mono_ms() - t0 < 250);
    expect(f->st, "ns", "j2", "a");
}

/* Syncs counted: "unix-excl" wrapped by a VFS of the same name, found
 * first by sqlite3_vfs_find() (registered after it, not as the default).
 * Files keep their own object; only their method table (one for the
 * database, another for the WAL) is a copy whose xSync counts and goes on
 * to the real one. */
static sqlite3_vfs count_vfs, *real_vfs;
static struct {
    const sqlite3_io_methods *real;
    sqlite3_io_methods copy;
} count_io[4];
static atomic_int syncs;

static int count_sync(sqlite3_file *f, int flags) {
    atomic_fetch_add(&syncs, 1);
    for (size_t i = 0; i < 4; i++)
        if (f->pMethods == &count_io[i].copy) return count_io[i].real->xSync(f, flags);
    return SQLITE_IOERR_FSYNC;
}

static int count_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *out) {
    (void)v;
    int rc = real_vfs->xOpen(real_vfs, name, f, flags, out);
    for (size_t i = 0; rc == SQLITE_OK && f->pMethods && i < 4; i++) {
        if (!count_io[i].real) { /* the store opens its files one at a time */
            count_io[i].real = f->pMethods;
            count_io[i].copy = *f->pMethods;
            count_io[i].copy.xSync = count_sync;
        }
        if (count_io[i].real == f->pMethods) {
            f->pMethods = &count_io[i].copy;
            break;
        }
    }
    return rc;
}

static void count_syncs(void) {
    if (real_vfs) return;
    real_vfs = sqlite3_vfs_find("unix-excl");
    assert_non_null(real_vfs);
    count_vfs = *real_vfs;
    count_vfs.pNext = NULL;
    count_vfs.xOpen = count_open;
    assert_int_equal(sqlite3_vfs_register(&count_vfs, 0), SQLITE_OK);
}

/* state_sync = full: a commit is on the disk when it returns (an fsync of
 * the WAL each), a lazy one waits for a later sync; state_sync = normal
 * never syncs a commit. */
static void sqlite_syncs_as_configured(void **state) {
    fx *f = *state;
    if (strcmp(store_kind(f->st), "sqlite")) skip();
    count_syncs();
    store_close(f->st);
    f->st = open_store(f, true);
    rd_kv_op op = {.op = RD_KV_PUT, .key = "j", .val = "a", .val_len = 1};
    uint64_t seq = 0;
    for (int i = 0; i < 3; i++) {
        int before = atomic_load(&syncs);
        assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
        assert_int_equal(atomic_load(&syncs) - before, 1);
        before = atomic_load(&syncs);
        assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &seq), RD_OK);
        assert_int_equal(store_add(f->st, "ns", "k", "dup", 3), RD_E_DUPLICATE);
        assert_int_equal(atomic_load(&syncs) - before, 0);
        assert_int_equal(store_sync(f->st, seq, 0), RD_OK);
        assert_int_equal(atomic_load(&syncs) - before, 1);
        before = atomic_load(&syncs);
        char key[16];
        snprintf(key, sizeof key, "a%d", i);
        assert_int_equal(store_add(f->st, "ns", key, "v", 1), RD_OK);
        assert_int_equal(atomic_load(&syncs) - before, 1);
    }
    store_close(f->st);
    f->st = open_store(f, false);
    int before = atomic_load(&syncs);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_put(f->st, "ns", "k", "w", 1), RD_OK);
        assert_int_equal(store_txn_lazy(f->st, "ns", &op, 1, NULL, &seq), RD_OK);
        assert_int_equal(store_sync(f->st, seq, 0), RD_OK);
        char key[16];
        snprintf(key, sizeof key, "b%d", i);
        assert_int_equal(store_add(f->st, "ns", key, "v", 1), RD_OK);
    }
    assert_int_equal(atomic_load(&syncs) - before, 0);
    expect(f->st, "ns", "k", "w");
    expect(f->st, "ns", "a2", "v");
}

/* store_cache_kib bounds what SQLite keeps of a store larger than it
 * (both connections), and transactions larger than the cache (spilled to
 * the WAL before their commit) are all there, before and after a reopen. */
static void sqlite_cache_bounded(void **state) {
    fx *f = *state;
    if (strcmp(store_kind(f->st), "sqlite")) skip();
    store_close(f->st);
    char err[512] = "";
    store_opts o = {.sync_full = false, .lease_ms = 3000, .wal_limit_b = 1 << 20, .cache_kib = 64};
    size_t base = mallinfo2().uordblks; /* the heap in use, this test's store aside */
    f->st = open_opts(f, &o, err, sizeof err);
    assert_non_null(f->st);
    char val[1024];
    memset(val, 'x', sizeof val);
    rd_kv_op ops[500];
    char keys[500][16];
    for (int t = 0; t < 8; t++) { /* 4 MB in transactions of 500 KB */
        for (int i = 0; i < 500; i++) {
            snprintf(keys[i], sizeof keys[i], "r%d-%03d", t, i);
            ops[i] = (rd_kv_op){.op = RD_KV_PUT, .key = keys[i], .val = val, .val_len = sizeof val};
        }
        assert_int_equal(store_txn(f->st, "big", ops, 500), RD_OK);
    }
    int rows = 0;
    store_scan(f->st, "big", "r", count_rows, &rows);
    assert_int_equal(rows, 4000);
    assert_true(mallinfo2().uordblks < base + 1536 * 1024);
    store_close(f->st);
    f->st = open_store(f, true);
    rows = 0;
    store_scan(f->st, "big", "r", count_rows, &rows);
    assert_int_equal(rows, 4000);
}

static void add_if_absent(void **state) {
    fx *f = *state;
    assert_int_equal(store_add(f->st, "core", "chat_hash_key", "first", 5), RD_OK);
    assert_int_equal(store_add(f->st, "core", "chat_hash_key", "second", 6), RD_E_DUPLICATE);
    expect(f->st, "core", "chat_hash_key", "first");
}

static void lease_and_fencing(void **state) {
    fx *f = *state;
    int64_t ta = 0, t2 = 0, tb = 0;
    assert_int_equal(store_lease(f->st, "bot:1", "A", 3000, &ta), 1);
    assert_true(ta > 0);
    store_fence fa = {"bot:1", "A", ta};
    rd_kv_op op = {.op = RD_KV_PUT, .key = "meta", .val = "a1", .val_len = 2};
    assert_int_equal(store_txn_fenced(f->st, "transport.tg", &op, 1, &fa), RD_OK);
    expect(f->st, "transport.tg", "meta", "a1");
    if (!pg_url()) return; /* one process: it always leads */
    store *b = open_store(f, false);
    /* Held by A: B neither gets it nor writes under it. */
    assert_int_equal(store_lease(b, "bot:1", "B", 3000, &tb), 0);
    store_fence fb = {"bot:1", "B", ta};
    rd_kv_op two[] = {{.op = RD_KV_PUT, .key = "meta", .val = "b1", .val_len = 2},
                      {.op = RD_KV_DEL, .key = "other"}};
    store_put(b, "transport.tg", "other", "o", 1);
    assert_int_equal(store_txn_fenced(b, "transport.tg", two, 2, &fb), RD_E_UNAVAILABLE);
    expect(f->st, "transport.tg", "meta", "a1");
    expect(f->st, "transport.tg", "other", "o");
    /* Renewal keeps the term. */
    assert_int_equal(store_lease(f->st, "bot:1", "A", 3000, &t2), 1);
    assert_int_equal(t2, ta);
    /* Released: B takes over at once with a new token, A's writes fail. */
    store_release(f->st, "bot:1", "A", ta);
    assert_int_equal(store_lease(b, "bot:1", "B", 3000, &tb), 1);
    assert_true(tb > ta);
    fb.token = tb;
    assert_int_equal(store_txn_fenced(b, "transport.tg", two, 2, &fb), RD_OK);
    op.val = "a2";
    assert_int_equal(store_txn_fenced(f->st, "transport.tg", &op, 1, &fa), RD_E_UNAVAILABLE);
    expect(f->st, "transport.tg", "meta", "b1");
    expect(f->st, "transport.tg", "other", NULL);
    /* Expiry: B stops renewing; once its lease ran out A takes over. */
    assert_int_equal(store_lease(f->st, "bot:1", "A", 3000, &t2), 0);
    assert_int_equal(store_lease(b, "bot:1", "B", 300, &tb), 1);
    rt_sleep_ms(600);
    assert_int_equal(store_txn_fenced(b, "transport.tg", &op, 1, &fb), RD_E_UNAVAILABLE);
    assert_int_equal(store_lease(f->st, "bot:1", "A", 3000, &t2), 1);
    assert_true(t2 > tb);
    /* Keys are independent. */
    assert_int_equal(store_lease(b, "bot:2", "B", 3000, &tb), 1);
    store_close(b);
}

/* PostgreSQL: released chat claims do not pile up (one row per chat ever
 * claimed); a new claim after the cleanup starts a fresh row (token 1). */
static void released_claims_cleaned(void **state) {
    fx *f = *state;
    if (!pg_url()) skip();
    int64_t t = 0;
    assert_int_equal(store_lease(f->st, "claim:tg:42", "A", 3000, &t), 1);
    assert_int_equal(t, 1);
    store_release(f->st, "claim:tg:42", "A", t);
    store_maintain(f->st, (int64_t)time(NULL)); /* within the hour: kept */
    assert_int_equal(store_lease(f->st, "claim:tg:42", "B", 3000, &t), 1);
    assert_int_equal(t, 2);
    store_release(f->st, "claim:tg:42", "B", t);
    /* Leader leases are never removed, whatever their age. */
    int64_t lt = 0;
    assert_int_equal(store_lease(f->st, "bot:7", "A", 3000, &lt), 1);
    store_release(f->st, "bot:7", "A", lt);
    char *cmd = xasprintf("psql -q -X '%s' -c \"UPDATE routerd_lease SET expires_at = now() - "
                          "interval '1 hour'\" >/dev/null 2>&1",
                          pg_url());
    assert_int_equal(system(cmd), 0);
    free(cmd);
    store_maintain(f->st, (int64_t)time(NULL) + 3700);
    assert_int_equal(store_lease(f->st, "claim:tg:42", "C", 3000, &t), 1);
    assert_int_equal(t, 1);
    assert_int_equal(store_lease(f->st, "bot:7", "C", 3000, &lt), 1);
    assert_int_equal(lt, 2);
}

static void retention_forgets_idle_conversations(void **state) {
    fx *f = *state;
    store_close(f->st);
    char err[512] = "";
    store_opts o = {.lease_ms = 3000, .retention_s = 90 * 86400, .wal_limit_b = 1 << 20};
    f->st = open_opts(f, &o, err, sizeof err);
    assert_non_null(f->st);
    store_put(f->st, "backend.a2a", "conv:42:helper", "{\"context\":\"c\"}", 15);
    store_put(f->st, "transport.tg", "meta", "m", 1);
    store_put(f->st, "core", "chat_hash_key", "k", 1);
    int64_t now = (int64_t)time(NULL);
    store_maintain(f->st, now + 3700); /* idle for an hour: kept */
    expect(f->st, "backend.a2a", "conv:42:helper", "{\"context\":\"c\"}");
    store_maintain(f->st, now + 91 * 86400);
    expect(f->st, "backend.a2a", "conv:42:helper", NULL);
    /* Only conversations expire. */
    expect(f->st, "transport.tg", "meta", "m");
    expect(f->st, "core", "chat_hash_key", "k");
}

static void sqlite_file_modes(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    mode_t old = umask(022);
    store_close(f->st);
    char *db = xasprintf("%s/state/routerd.db", f->dir);
    char *wal = xasprintf("%s-wal", db);
    /* A database left 0644 by an earlier version is tightened. */
    assert_int_equal(chmod(db, 0644), 0);
    f->st = open_store(f, true);
    assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A fresh one too. */
    store_close(f->st);
    unlink(db);
    unlink(wal);
    f->st = open_store(f, true);
    assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The WAL index is kept in memory: no shared-memory file to protect. */
    char *shm = xasprintf("%s-shm", db);
    assert_int_equal(stat(shm, &st), -1);
    free(shm);
    umask(old);
    free(db);
    free(wal);
}

/* A second store on the same state_dir (a second routerd) is refused
 * while the first is open, and opens once it is closed. */
static void sqlite_second_open_refused(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    char err[512] = "";
    store_opts o = {.sync_full = true, .lease_ms = 3000, .wal_limit_b = 1 << 20};
    assert_null(open_opts(f, &o, err, sizeof err));
    assert_non_null(strstr(err, "is locked: another routerd uses state_dir"));
    assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
    store_close(f->st);
    f->st = open_opts(f, &o, err, sizeof err);
    assert_non_null(f->st);
    expect(f->st, "ns", "k", "v");
}

/* This program run again as another process (see main): a new program,
 * not a fork, so that SQLite's per-file state does not cross. */
static pid_t spawn_self(const char *mode, const char *a, const char *b) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_core_store", mode, a, b, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int exit_code(pid_t pid) {
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    return WEXITSTATUS(ws);
}

/* SQLite in another process (the sqlite3 shell, a backup tool) gets
 * "database is locked" while routerd holds the store: the WAL index lives
 * in routerd's memory, where no other process could see it. */
static void sqlite_other_process_locked_out(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
    char *db = xasprintf("%s/state/routerd.db", f->dir);
    assert_int_equal(exit_code(spawn_self("--read", db, NULL)), SQLITE_BUSY);
    /* Once routerd has closed it, the same read works. */
    store_close(f->st);
    f->st = NULL;
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "SELECT count(*) FROM kv", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    f->st = open_store(f, true);
    expect(f->st, "ns", "k", "v");
    free(db);
}

/* A program that holds the database open in a read (the sqlite3 shell
 * mid-query) keeps routerd from opening it, and the error says so. */
static void sqlite_other_program_holding_it(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    assert_int_equal(store_put(f->st, "ns", "k", "v", 1), RD_OK);
    store_close(f->st);
    f->st = NULL;
    char *db = xasprintf("%s/state/routerd.db", f->dir);
    char *flag = xasprintf("%s/holding", f->dir);
    pid_t pid = spawn_self("--hold", db, flag);
    for (int i = 0; i < 500 && access(flag, F_OK) != 0; i++)
        usleep(10000);
    assert_int_equal(access(flag, F_OK), 0);
    char err[512] = "";
    store_opts o = {.sync_full = true, .lease_ms = 3000, .wal_limit_b = 1 << 20};
    assert_null(open_opts(f, &o, err, sizeof err));
    assert_non_null(strstr(err, "is locked by another program (the sqlite3 shell"));
    assert_int_equal(exit_code(pid), 0);
    f->st = open_store(f, true);
    expect(f->st, "ns", "k", "v");
    free(flag);
    free(db);
}

/* A process killed with the store open leaves its commits in the WAL and
 * no index of them anywhere (it lived in the process's memory): the next
 * open rebuilds the index from the WAL and finds every commit. */
static void sqlite_killed_keeps_commits(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    store_close(f->st);
    f->st = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store *st = open_store(f, true);
        char key[32];
        for (int i = 0; i < 200; i++) {
            snprintf(key, sizeof key, "k%03d", i);
            /* every other one without a sync: kept all the same */
            rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = key, .val_len = strlen(key)};
            if ((i % 2 ? store_txn_lazy(st, "ns", &op, 1, NULL, NULL)
                       : store_put(st, "ns", key, key, strlen(key))) != RD_OK)
                _exit(1);
        }
        kill(getpid(), SIGKILL);
        _exit(2);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFSIGNALED(ws));
    char *wal = xasprintf("%s/state/routerd.db-wal", f->dir);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0); /* the commits are still only in the WAL */
    assert_true(sb.st_size > 0);
    free(wal);
    f->st = open_store(f, true);
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        expect(f->st, "ns", key, key);
    }
    assert_int_equal(store_put(f->st, "ns", "after", "x", 1), RD_OK);
    expect(f->st, "ns", "after", "x");
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) return xstrdup("");
    char *b = xcalloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, fp);
    b[n] = 0;
    fclose(fp);
    return b;
}

/* A disk that fills and frees (a file-size limit stands in for it): the
 * cause is logged once, the store says it cannot commit, and it recovers
 * by itself once writes fit again. */
static void sqlite_disk_full_recovers(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    char *logp = xasprintf("%s/stderr.log", f->dir);
    fflush(stderr);
    int saved = dup(2);
    int lfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(lfd, 2);
    close(lfd);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 512 * 1024;
    setrlimit(RLIMIT_FSIZE, &lim);
    char big[8192];
    memset(big, 'x', sizeof big);
    int failures = 0, i = 0;
    for (; i < 400 && failures < 5; i++) {
        char k[32];
        snprintf(k, sizeof k, "j/%06d", i);
        if (store_put(f->st, "transport.tg", k, big, sizeof big) != RD_OK) failures++;
    }
    bool healthy_while_full = store_healthy(f->st);
    /* A commit that writes nothing (a key deleted that was not there)
     * succeeds even now, and proves nothing about space. */
    rd_status noop = store_del(f->st, "transport.tg", "never-written");
    bool healthy_after_noop = store_healthy(f->st);
    setrlimit(RLIMIT_FSIZE, &old);
    store_maintain(f->st, (int64_t)time(NULL)); /* space again: the probe succeeds */
    bool healthy_after = store_healthy(f->st);
    rd_status after = store_put(f->st, "transport.tg", "meta", "ok", 2);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *log = slurp(logp);
    assert_int_equal(failures, 5);
    assert_false(healthy_while_full);
    assert_int_equal(noop, RD_OK);
    assert_false(healthy_after_noop);
    assert_true(healthy_after);
    assert_int_equal(after, RD_OK);
    expect(f->st, "transport.tg", "meta", "ok");
    /* The cause once per episode, never the rollback's complaint. */
    if (count_of(log, "cannot commit") != 1 || !strstr(log, "File too large"))
        fail_msg("log:\n%s", log);
    assert_null(strstr(log, "no transaction is active"));
    assert_null(strstr(log, "cannot rollback"));
    assert_int_equal(count_of(log, "commits succeed again"), 1);
    free(log);
    free(logp);
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Checkpoints run on a thread of their own, which closing the store ends;
 * they keep the WAL short under a stream of commits and lose nothing. */
static void sqlite_checkpoints_off_the_commits(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    assert_int_equal(rt_threads_named(getpid(), "rd-checkpoint"), 1);
    store_close(f->st);
    assert_int_equal(rt_threads_named(getpid(), "rd-checkpoint"), 0);
    f->st = open_store(f, false); /* no fsync per commit: a quick stream */
    assert_int_equal(rt_threads_named(getpid(), "rd-checkpoint"), 1);
    char *wal = xasprintf("%s/state/routerd.db-wal", f->dir);
    char val[1024];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    /* Commits of a page or more each, in runs with pauses between them.
     * Checkpointed past 1,000 pages, the WAL starts over (cut to the 1 MiB
     * limit) at a commit after a checkpoint has copied all of it: its size
     * falls. Unchecked, it would pass 24 MiB first (the writer's own
     * checkpoint, the fallback, comes only at 8,000 pages). */
    long long most = 0;
    bool cut = false;
    int n = 0;
    for (; n < 12000 && !cut && most <= 24LL << 20; n++) {
        char k[32];
        snprintf(k, sizeof k, "c/%06d", n);
        assert_int_equal(store_put(f->st, "t", k, val, strlen(val)), RD_OK);
        if (n % 200 == 199) {
            usleep(20000);
            long long sz = file_size(wal);
            if (sz < most) cut = true;
            if (sz > most) most = sz;
        }
    }
    free(wal);
    if (!cut) fail_msg("the WAL was never started over: %lld bytes", most);
    store_close(f->st);
    assert_int_equal(rt_threads_named(getpid(), "rd-checkpoint"), 0);
    f->st = open_store(f, true);
    char *got = NULL;
    size_t len = 0;
    for (int i = 0; i < n; i += n / 10 + 1) {
        char k[32];
        snprintf(k, sizeof k, "c/%06d", i);
        assert_int_equal(store_get(f->st, "t", k, &got, &len), RD_OK);
        assert_int_equal(len, strlen(val));
        free(got);
    }
}

/* Deleted rows give their pages back to the file system (incremental
 * vacuum and a truncating checkpoint in the hourly upkeep). */
static void sqlite_vacuum_gives_space_back(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    char *db = xasprintf("%s/state/routerd.db", f->dir);
    char val[4096];
    memset(val, 'v', sizeof val);
    for (int b = 0; b < 20; b++) {
        rd_kv_op ops[50];
        char keys[50][32];
        for (int i = 0; i < 50; i++) {
            snprintf(keys[i], sizeof keys[i], "conv:%d:p", b * 50 + i);
            ops[i] = (rd_kv_op){.op = RD_KV_PUT, .key = keys[i], .val = val, .val_len = sizeof val};
        }
        assert_int_equal(store_txn(f->st, "backend.a2a", ops, 50), RD_OK);
    }
    store_maintain(f->st, (int64_t)time(NULL) + 3700); /* everything into the database file */
    long long full = file_size(db);
    assert_true(full > 1000 * 4096);
    rd_kv_op del = {.op = RD_KV_DEL_RANGE, .key = "conv:", .key_end = "conv;"};
    assert_int_equal(store_txn(f->st, "backend.a2a", &del, 1), RD_OK);
    store_maintain(f->st, (int64_t)time(NULL) + 2 * 3700);
    long long after = file_size(db);
    if (after > full / 4)
        fail_msg("database file %lld bytes after deleting, %lld before", after, full);
    char *wal = xasprintf("%s-wal", db);
    assert_true(file_size(wal) <= 1 << 20); /* the WAL limit of open_store() */
    free(wal);
    free(db);
}

/* A database written before schema versions (kv without the time column,
 * no auto-vacuum) is migrated in place and keeps its rows. */
static void sqlite_migrates_old_schema(void **state) {
    if (pg_url()) skip();
    fx *f = *state;
    store_close(f->st);
    f->st = NULL;
    char *db = xasprintf("%s/state/routerd.db", f->dir);
    unlink(db);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "PRAGMA journal_mode=WAL; CREATE TABLE kv(ns TEXT NOT NULL, k "
                                  "TEXT NOT NULL, v BLOB, PRIMARY KEY(ns, k)) WITHOUT ROWID;"
                                  "INSERT INTO kv VALUES('transport.tg','meta','old');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    f->st = open_store(f, true);
    expect(f->st, "transport.tg", "meta", "old");
    assert_int_equal(store_put(f->st, "transport.tg", "meta", "new", 3), RD_OK);
    store_close(f->st);
    /* Opening again changes nothing (idempotent). */
    f->st = open_store(f, true);
    expect(f->st, "transport.tg", "meta", "new");
    store_close(f->st);
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA auto_vacuum", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2); /* incremental */
    sqlite3_finalize(q);
    sqlite3_close(h);
    f->st = open_store(f, true);
    free(db);
}

static void *opener(void *arg) {
    char err[512] = "";
    store_opts o = {.lease_ms = 3000};
    store *st =
        store_open_with("postgresql", (const char *)arg, ROUTERD_PLUGIN_DIR, &o, err, sizeof err);
    if (!st)
        fprintf(stderr, "open: %s\n", err);
    else if (store_put(st, "ns", "k", "v", 1) != RD_OK)
        st = (store_close(st), NULL);
    else
        store_close(st);
    return st ? NULL : (void *)1;
}

/* Replicas starting together on an empty database: the migration runs
 * once under its advisory lock and every one of them opens. */
static void pg_concurrent_migrations(void **state) {
    if (!pg_url()) skip();
    fx *f = *state;
    store_close(f->st);
    pg_reset();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, opener, (void *)pg_url());
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    f->st = open_store(f, false);
    expect(f->st, "ns", "k", "v");
}

static void pg_cmd(const char *what) {
    char *cmd = xasprintf("'%s' %s '%s'", getenv("ROUTERD_TEST_PG_SH"), what,
                          getenv("ROUTERD_TEST_PG_DIR"));
    if (system(cmd) != 0) fail_msg("%s failed", cmd);
    free(cmd);
}

/* The server goes away and comes back: calls fail fast meanwhile, the
 * store says it is unhealthy, and the same handle works again after. */
static void pg_outage_recovers(void **state) {
    if (!pg_url() || !getenv("ROUTERD_TEST_PG_SH")) skip();
    fx *f = *state;
    assert_int_equal(store_put(f->st, "ns", "before", "1", 1), RD_OK);
    pg_cmd("stop");
    long long t0 = rt_now_ms();
    assert_int_not_equal(store_put(f->st, "ns", "during", "1", 1), RD_OK);
    char *v = NULL;
    assert_int_equal(store_get(f->st, "ns", "before", &v, NULL), RD_E_UNAVAILABLE);
    int64_t tok = 0;
    assert_int_equal(store_lease(f->st, "bot:9", "A", 3000, &tok), -1);
    assert_false(store_healthy(f->st));
    assert_true(rt_now_ms() - t0 < 5000);
    pg_cmd("start >/dev/null");
    for (int i = 0; i < 100 && !store_healthy(f->st); i++) {
        store_maintain(f->st, (int64_t)time(NULL));
        rt_sleep_ms(100);
    }
    assert_true(store_healthy(f->st));
    assert_int_equal(store_put(f->st, "ns", "after", "1", 1), RD_OK);
    expect(f->st, "ns", "before", "1");
    expect(f->st, "ns", "during", NULL);
    expect(f->st, "ns", "after", "1");
}

/* ---- PostgreSQL: the pipelined group commit ---------------------------- */

/* The first number psql prints for sql. */
static long long pg_scalar(const char *sql) {
    char *cmd = xasprintf("psql -q -X -t -A '%s' -c \"%s\" 2>/dev/null", pg_url(), sql);
    FILE *p = popen(cmd, "r");
    free(cmd);
    long long v = -1;
    if (p) {
        if (fscanf(p, "%lld", &v) != 1) v = -1;
        pclose(p);
    }
    return v;
}

static bool pg_wait_for(const char *sql) {
    for (int i = 0; i < 200; i++) {
        if (pg_scalar(sql) > 0) return true;
        rt_sleep_ms(50);
    }
    return false;
}

/* Another session locks row g/locked for a while, so that a routerd write
 * of it heads a group that cannot commit yet: writers arriving meanwhile
 * queue and go together in the next group. */
static void hold_row_lock(void) {
    char *cmd = xasprintf("psql -q -X '%s' -c \"BEGIN; SELECT 1 FROM routerd_kv WHERE ns='g' AND "
                          "k='locked' FOR UPDATE; SELECT pg_sleep(2.5); COMMIT\" >/dev/null 2>&1 &",
                          pg_url());
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_true(pg_wait_for("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                            "'%pg_sleep(2.5)%' AND state = 'active' AND pid <> pg_backend_pid()"));
}

static void wait_routerd_blocked(void) {
    assert_true(pg_wait_for("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'routerd' AND wait_event_type = 'Lock'"));
}

typedef struct {
    store *st;
    const char *ns;
    rd_kv_op ops[2];
    size_t n;
    const store_fence *f;
    bool add;
    rd_status got;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    if (j->add)
        j->got = store_add(j->st, j->ns, j->ops[0].key, j->ops[0].val, j->ops[0].val_len);
    else
        j->got = store_txn_fenced(j->st, j->ns, j->ops, j->n, j->f);
    return NULL;
}

static job put_job(store *st, const char *key, const char *val) {
    return (job){.st = st,
                 .ns = "g",
                 .ops = {{.op = RD_KV_PUT, .key = key, .val = val, .val_len = strlen(val)}},
                 .n = 1};
}

/* Statements time out at half the lease: a longer one outlasts the lock. */
static void reopen_long_lease(fx *f) {
    store_close(f->st);
    char err[512] = "";
    store_opts o = {.lease_ms = 20000};
    f->st = open_opts(f, &o, err, sizeof err);
    if (!f->st) fail_msg("store open: %s", err);
}

/* Starts jobs[1..n-1] while jobs[0] (a write of g/locked) waits for the
 * row lock, so they queue behind it and share the next group; waits for
 * all of them. */
static void run_grouped(job *jobs, int n) {
    hold_row_lock();
    pthread_t t[16];
    pthread_create(&t[0], NULL, run_job, &jobs[0]);
    wait_routerd_blocked();
    for (int i = 1; i < n; i++)
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* In one group: a request whose op the database rejects (a key that is
 * not valid UTF-8) and one whose fence is not held are each undone alone,
 * with their own status; the others in the group commit. */
static void pg_group_member_fails_alone(void **state) {
    fx *f = *state;
    if (!pg_url()) skip();
    reopen_long_lease(f);
    assert_int_equal(store_put(f->st, "g", "locked", "0", 1), RD_OK);
    int64_t tok = 0;
    assert_int_equal(store_lease(f->st, "bot:g", "A", 30000, &tok), 1);
    store_fence held = {"bot:g", "A", tok}, stale = {"bot:g", "A", tok + 1};
    job jobs[6] = {put_job(f->st, "locked", "1"), put_job(f->st, "b1", "b"),
                   put_job(f->st, "c", "c"),      put_job(f->st, "d", "d"),
                   put_job(f->st, "e", "e"),      put_job(f->st, "f", "f")};
    jobs[1].ops[1] = (rd_kv_op){.op = RD_KV_PUT, .key = "bad\xff", .val = "x", .val_len = 1};
    jobs[1].n = 2;
    jobs[3].f = &stale;
    jobs[4].f = &held;
    jobs[5].add = true;
    run_grouped(jobs, 6);
    assert_int_equal(jobs[0].got, RD_OK);
    assert_int_equal(jobs[1].got, RD_E_INTERNAL); /* its op failed: rolled back */
    assert_int_equal(jobs[2].got, RD_OK);
    assert_int_equal(jobs[3].got, RD_E_UNAVAILABLE); /* not its lease term */
    assert_int_equal(jobs[4].got, RD_OK);
    assert_int_equal(jobs[5].got, RD_OK);
    expect(f->st, "g", "locked", "1");
    expect(f->st, "g", "b1", NULL); /* the failed request's first op went with it */
    expect(f->st, "g", "c", "c");
    expect(f->st, "g", "d", NULL);
    expect(f->st, "g", "e", "e");
    expect(f->st, "g", "f", "f");
    /* The fence held the lease row until the group committed: the lease
     * is still A's, same term. */
    int64_t again = 0;
    assert_int_equal(store_lease(f->st, "bot:g", "A", 30000, &again), 1);
    assert_int_equal(again, tok);
    /* Every request of a group failing leaves a working store. */
    job bad[3] = {put_job(f->st, "locked", "2"), put_job(f->st, "x\xff", "1"),
                  put_job(f->st, "y\xfe", "1")};
    bad[2].f = &stale;
    run_grouped(bad, 3);
    assert_int_equal(bad[0].got, RD_OK);
    assert_int_equal(bad[1].got, RD_E_INTERNAL);
    assert_int_equal(bad[2].got, RD_E_UNAVAILABLE);
    assert_int_equal(store_put(f->st, "g", "after", "1", 1), RD_OK);
    expect(f->st, "g", "after", "1");
    assert_true(store_healthy(f->st));
}

/* Two callers adding the same key in one group: exactly one inserts, the
 * other is told it is a duplicate, and the first value stays. */
static void pg_add_duplicates_in_group(void **state) {
    fx *f = *state;
    if (!pg_url()) skip();
    reopen_long_lease(f);
    assert_int_equal(store_put(f->st, "g", "locked", "0", 1), RD_OK);
    job jobs[4] = {put_job(f->st, "locked", "1"), put_job(f->st, "dup", "first"),
                   put_job(f->st, "dup", "other"), put_job(f->st, "solo", "s")};
    jobs[1].add = jobs[2].add = jobs[3].add = true;
    run_grouped(jobs, 4);
    assert_int_equal(jobs[0].got, RD_OK);
    assert_int_equal(jobs[3].got, RD_OK);
    assert_true((jobs[1].got == RD_OK && jobs[2].got == RD_E_DUPLICATE) ||
                (jobs[1].got == RD_E_DUPLICATE && jobs[2].got == RD_OK));
    expect(f->st, "g", "dup", jobs[1].got == RD_OK ? "first" : "other");
    expect(f->st, "g", "solo", "s");
}

typedef struct {
    store *st;
    int id, added;
} adder_arg;

static void *adder(void *arg) {
    adder_arg *a = arg;
    char key[16], val[16];
    snprintf(val, sizeof val, "%d", a->id);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "a%03d", i);
        rd_status rc = store_add(a->st, "adds", key, val, strlen(val));
        if (rc == RD_OK)
            a->added++;
        else if (rc != RD_E_DUPLICATE)
            return (void *)1;
    }
    return NULL;
}

/* Many threads: each txn is durable and readable as soon as it returns
 * (reads go to the other connection), nothing is lost, and concurrent
 * adds of the same keys insert each key exactly once. */
static void *txn_writer(void *arg) {
    worker_arg *w = arg;
    char ns[16], key[16], val[16];
    snprintf(ns, sizeof ns, "m%d", w->id);
    for (int i = 0; i < 150; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(val, sizeof val, "%d", i * w->id);
        rd_kv_op ops[] = {{.op = RD_KV_PUT, .key = key, .val = val, .val_len = strlen(val)},
                          {.op = RD_KV_PUT, .key = "last", .val = val, .val_len = strlen(val)}};
        if (store_txn(w->st, ns, ops, 2) != RD_OK) return (void *)1;
        if (!holds(w->st, ns, key, val)) return (void *)2;
    }
    return NULL;
}

static void pg_many_writers(void **state) {
    fx *f = *state;
    if (!pg_url()) skip();
    enum { NW = 12, NA = 4 };
    pthread_t t[NW + NA];
    worker_arg wa[NW];
    adder_arg aa[NA];
    for (int i = 0; i < NW; i++) {
        wa[i] = (worker_arg){f->st, i + 1};
        pthread_create(&t[i], NULL, txn_writer, &wa[i]);
    }
    for (int i = 0; i < NA; i++) {
        aa[i] = (adder_arg){f->st, i + 1, 0};
        pthread_create(&t[NW + i], NULL, adder, &aa[i]);
    }
    for (int i = 0; i < NW + NA; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    for (int i = 1; i <= NW; i++) {
        char ns[16], val[16];
        snprintf(ns, sizeof ns, "m%d", i);
        int rows = 0;
        assert_int_equal(store_scan(f->st, ns, "k", count_rows, &rows), RD_OK);
        assert_int_equal(rows, 150);
        snprintf(val, sizeof val, "%d", 149 * i);
        expect(f->st, ns, "last", val);
    }
    int added = 0, rows = 0;
    for (int i = 0; i < NA; i++)
        added += aa[i].added;
    assert_int_equal(added, 100);
    store_scan(f->st, "adds", "a", count_rows, &rows);
    assert_int_equal(rows, 100);
}

typedef struct {
    store *st;
    int id;
    atomic_bool *stop;
    unsigned char ok[4096]; /* keys that returned RD_OK */
    int n, unavailable, other;
    long long slowest_ms;
} burst_arg;

static void *burster(void *arg) {
    burst_arg *b = arg;
    char ns[16], key[16];
    snprintf(ns, sizeof ns, "b%d", b->id);
    for (b->n = 0; b->n < 4096 && !atomic_load(b->stop); b->n++) {
        snprintf(key, sizeof key, "k%04d", b->n);
        long long t0 = rt_now_ms();
        rd_status rc = store_put(b->st, ns, key, "v", 1);
        long long took = rt_now_ms() - t0;
        if (took > b->slowest_ms) b->slowest_ms = took;
        if (rc == RD_OK)
            b->ok[b->n] = 1;
        else if (rc == RD_E_UNAVAILABLE)
            b->unavailable++;
        else
            b->other++;
        if (rc != RD_OK) rt_sleep_ms(5);
    }
    return NULL;
}

/* The server dies in the middle of a burst of group commits: callers are
 * told RD_E_UNAVAILABLE at once (no hang), the store recovers when the
 * server is back, and every write that returned RD_OK is there. */
static void pg_killed_mid_burst(void **state) {
    fx *f = *state;
    if (!pg_url() || !getenv("ROUTERD_TEST_PG_SH")) skip();
    enum { NB = 8 };
    atomic_bool stop = false;
    static burst_arg ba[NB];
    pthread_t t[NB];
    for (int i = 0; i < NB; i++) {
        memset(&ba[i], 0, sizeof ba[i]);
        ba[i].st = f->st;
        ba[i].id = i;
        ba[i].stop = &stop;
        pthread_create(&t[i], NULL, burster, &ba[i]);
    }
    rt_sleep_ms(300);
    pg_cmd("kill");
    rt_sleep_ms(700);
    assert_false(store_healthy(f->st));
    atomic_store(&stop, true);
    for (int i = 0; i < NB; i++)
        pthread_join(t[i], NULL);
    pg_cmd("start >/dev/null");
    for (int i = 0; i < 100 && !store_healthy(f->st); i++) {
        store_maintain(f->st, (int64_t)time(NULL));
        rt_sleep_ms(100);
    }
    assert_true(store_healthy(f->st));
    int unavailable = 0;
    for (int i = 0; i < NB; i++) {
        unavailable += ba[i].unavailable;
        assert_int_equal(ba[i].other, 0);
        assert_true(ba[i].slowest_ms < 5000);
        char ns[16], key[16];
        snprintf(ns, sizeof ns, "b%d", i);
        for (int k = 0; k < ba[i].n; k++) {
            if (!ba[i].ok[k]) continue;
            snprintf(key, sizeof key, "k%04d", k);
            expect(f->st, ns, key, "v");
        }
    }
    assert_true(unavailable > 0);
    assert_int_equal(store_put(f->st, "b0", "after", "1", 1), RD_OK);
    expect(f->st, "b0", "after", "1");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* test_core_store --read DB: another process reading the database; exits
 * with SQLite's primary result code. */
static int read_db(const char *db) {
    sqlite3 *h = NULL;
    int rc = sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(h, "SELECT count(*) FROM kv", NULL, NULL, NULL);
    sqlite3_close(h);
    return rc & 0xff;
}

/* test_core_store --hold DB FLAG: reads the database in a transaction
 * held open for 3 s (longer than the store's 2 s busy timeout), creating
 * FLAG once the read holds its lock. */
static int hold_db(const char *db, const char *flag) {
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_exec(h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "SELECT k FROM kv", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW)
        return 1;
    FILE *fp = fopen(flag, "w");
    if (!fp) return 1;
    fclose(fp);
    sleep(3);
    sqlite3_finalize(q);
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(h);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--read")) return read_db(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "--hold")) return hold_db(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        T(put_get_del),
        T(binary_and_empty_values),
        T(namespaces_isolated),
        T(txn_applies_all),
        T(txn_is_atomic),
        T(scan_prefix_in_order),
        T(scan_prefix_with_sql_wildcards),
        T(reopen_persists),
        T(concurrent_writers),
        T(group_commit_shares_fsyncs),
        T(reads_beside_writes),
        T(commit_delay_waits_for_a_companion),
        T(lazy_commits_wait_for_a_sync),
        T(add_if_absent),
        T(lease_and_fencing),
        T(released_claims_cleaned),
        T(retention_forgets_idle_conversations),
        T(sqlite_file_modes),
        T(sqlite_second_open_refused),
        T(sqlite_other_process_locked_out),
        T(sqlite_other_program_holding_it),
        T(sqlite_syncs_as_configured),
        T(sqlite_cache_bounded),
        T(sqlite_killed_keeps_commits),
        T(sqlite_disk_full_recovers),
        T(sqlite_vacuum_gives_space_back),
        T(sqlite_checkpoints_off_the_commits),
        T(sqlite_migrates_old_schema),
        T(pg_concurrent_migrations),
        T(pg_outage_recovers),
        T(pg_group_member_fails_alone),
        T(pg_add_duplicates_in_group),
        T(pg_many_writers),
        T(pg_killed_mid_burst),
        cmocka_unit_test(open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
