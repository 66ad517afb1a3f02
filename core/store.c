/* State store: one SQLite database in WAL mode. SQLite gives crash-safe
 * transactions, ordered keys (journal scans and range deletes) and scales
 * to millions of rows without a server. */
#include "core.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct store {
    sqlite3 *db;
    pthread_mutex_t mu; /* one connection; statements are reused */
    sqlite3_stmt *get, *put, *del, *delr, *scan, *begin, *commit, *rollback;
};

static int prep(store *s, sqlite3_stmt **st, const char *sql) {
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
}

store *store_open(const char *dir, bool sync_full, char *err, size_t errsz) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errsz, "state_dir %s: cannot create: %s", dir, strerror(errno));
        return NULL;
    }
    store *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    char *path = xasprintf("%s/routerd.db", dir);
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errsz, "state store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "open");
        free(path);
        store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 2000);
    /* Exclusive: routerd is the database's only user. It saves the file
     * locks of every transaction, and a second routerd on the same
     * state_dir fails at start instead of sharing the journal. */
    char *sql = xasprintf("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL;"
                          " PRAGMA synchronous=%s;"
                          "BEGIN IMMEDIATE;" /* takes the lock now, not at the first write */
                          "CREATE TABLE IF NOT EXISTS kv(ns TEXT NOT NULL, k TEXT NOT NULL,"
                          " v BLOB, PRIMARY KEY(ns, k)) WITHOUT ROWID; COMMIT;",
                          sync_full ? "FULL" : "NORMAL");
    char *msg = NULL;
    rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    free(sql);
    if (rc == SQLITE_OK)
        rc = prep(s, &s->get, "SELECT v FROM kv WHERE ns=?1 AND k=?2") ||
             prep(s, &s->put, "INSERT OR REPLACE INTO kv(ns,k,v) VALUES(?1,?2,?3)") ||
             prep(s, &s->del, "DELETE FROM kv WHERE ns=?1 AND k=?2") ||
             prep(s, &s->delr, "DELETE FROM kv WHERE ns=?1 AND k>=?2 AND (?3 IS NULL OR k<?3)") ||
             prep(s, &s->scan, "SELECT k, v FROM kv WHERE ns=?1 AND k>=?2 ORDER BY k") ||
             prep(s, &s->begin, "BEGIN IMMEDIATE") || prep(s, &s->commit, "COMMIT") ||
             prep(s, &s->rollback, "ROLLBACK");
    if (rc == SQLITE_BUSY) {
        snprintf(err, errsz, "state store %s is locked: another routerd uses state_dir %s", path,
                 dir);
        sqlite3_free(msg);
        free(path);
        store_close(s);
        return NULL;
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errsz, "state store %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        free(path);
        store_close(s);
        return NULL;
    }
    free(path);
    return s;
}

void store_close(store *s) {
    if (!s) return;
    sqlite3_stmt *all[] = {s->get,  s->put,   s->del,    s->delr,
                           s->scan, s->begin, s->commit, s->rollback};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int step_reset(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

rd_status store_get(store *s, const char *ns, const char *key, char **val, size_t *len) {
    if (!s) return RD_E_UNAVAILABLE; /* --check-config runs without a store */
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_text(s->get, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->get, 2, key, -1, SQLITE_STATIC);
    rd_status st = RD_E_FATAL;
    if (sqlite3_step(s->get) == SQLITE_ROW) {
        int n = sqlite3_column_bytes(s->get, 0);
        const void *b = sqlite3_column_blob(s->get, 0);
        char *v = xmalloc((size_t)n + 1);
        if (n) memcpy(v, b, (size_t)n);
        v[n] = 0;
        *val = v;
        if (len) *len = (size_t)n;
        st = RD_OK;
    }
    sqlite3_reset(s->get);
    sqlite3_clear_bindings(s->get);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static int apply(store *s, const char *ns, const rd_kv_op *op) {
    sqlite3_stmt *st;
    switch (op->op) {
    case RD_KV_PUT:
        st = s->put;
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, op->val ? op->val : "", (int)op->val_len, SQLITE_STATIC);
        break;
    case RD_KV_DEL:
        st = s->del;
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->key, -1, SQLITE_STATIC);
        break;
    case RD_KV_DEL_RANGE:
        st = s->delr;
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->key, -1, SQLITE_STATIC);
        if (op->key_end) sqlite3_bind_text(st, 3, op->key_end, -1, SQLITE_STATIC);
        break;
    default:
        return SQLITE_MISUSE;
    }
    int rc = step_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

rd_status store_txn(store *s, const char *ns, const rd_kv_op *ops, size_t n) {
    if (!s) return RD_E_UNAVAILABLE; /* --check-config runs without a store */
    pthread_mutex_lock(&s->mu);
    int rc = n > 1 ? step_reset(s->begin) : SQLITE_DONE;
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = apply(s, ns, &ops[i]);
    if (n > 1) {
        if (rc == SQLITE_OK) {
            rc = step_reset(s->commit);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        }
        if (rc != SQLITE_OK) step_reset(s->rollback);
    }
    if (rc == SQLITE_MISUSE)
        LOGE("state store: invalid operation in a transaction; nothing applied");
    else if (rc != SQLITE_OK)
        LOGE("state store: %s", sqlite3_errmsg(s->db));
    pthread_mutex_unlock(&s->mu);
    return rc == SQLITE_OK ? RD_OK : RD_E_INTERNAL;
}

rd_status store_put(store *s, const char *ns, const char *key, const void *val, size_t len) {
    rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = val, .val_len = len};
    return store_txn(s, ns, &op, 1);
}

rd_status store_del(store *s, const char *ns, const char *key) {
    rd_kv_op op = {.op = RD_KV_DEL, .key = key};
    return store_txn(s, ns, &op, 1);
}

rd_status store_scan(store *s, const char *ns, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    if (!s) return RD_E_UNAVAILABLE; /* --check-config runs without a store */
    /* Rows are copied out first so the callback may call back into the store. */
    typedef struct {
        char *k;
        char *v;
        size_t n;
    } row;
    row *rows = NULL;
    size_t nrows = 0, cap = 0;
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_text(s->scan, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->scan, 2, prefix, -1, SQLITE_STATIC);
    while (sqlite3_step(s->scan) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s->scan, 0);
        if (!k || strncmp(k, prefix, plen)) break;
        if (nrows == cap) rows = xrealloc(rows, (cap = cap ? cap * 2 : 64) * sizeof *rows);
        int n = sqlite3_column_bytes(s->scan, 1);
        rows[nrows].k = xstrdup(k);
        rows[nrows].v = xmalloc((size_t)n + 1);
        if (n) memcpy(rows[nrows].v, sqlite3_column_blob(s->scan, 1), (size_t)n);
        rows[nrows].v[n] = 0;
        rows[nrows].n = (size_t)n;
        nrows++;
    }
    sqlite3_reset(s->scan);
    sqlite3_clear_bindings(s->scan);
    pthread_mutex_unlock(&s->mu);
    bool stop = false;
    for (size_t i = 0; i < nrows; i++) {
        if (!stop && fn(arg, rows[i].k, rows[i].v, rows[i].n)) stop = true;
        free(rows[i].k);
        free(rows[i].v);
    }
    free(rows);
    return RD_OK;
}
