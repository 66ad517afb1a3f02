/* SQLite state store: get/put/del, atomic transactions, ordered prefix
 * scans, namespaces, persistence across reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    store *st;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->dir = rt_tmpdir();
    char err[256] = "";
    char *sub = xasprintf("%s/state", f->dir); /* store_open creates it */
    f->st = store_open(sub, true, err, sizeof err);
    free(sub);
    if (!f->st) fail_msg("store_open: %s", err);
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
    char err[256] = "";
    char *sub = xasprintf("%s/state", f->dir);
    f->st = store_open(sub, false, err, sizeof err);
    free(sub);
    if (!f->st) fail_msg("reopen: %s", err);
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
    char err[256] = "";
    char *sub = xasprintf("%s/state", f->dir);
    f->st = store_open(sub, false, err, sizeof err); /* normal sync keeps this quick */
    free(sub);
    assert_non_null(f->st);
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

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
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
        cmocka_unit_test(open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
