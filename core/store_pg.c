/* The postgresql state store (store/store_postgresql.so): every replica
 * shares one database. Loaded by the core only when [router] store =
 * postgresql, so the core binary itself does not depend on libpq.
 *
 * One connection per process, behind a mutex, as with SQLite. A lost
 * connection fails every call at once (RD_E_UNAVAILABLE) and is re-opened
 * with capped back-off by the next call or by maintain(). Leases are rows
 * with fencing tokens and expire on the database's clock, so the replicas'
 * clocks never matter. */
#include "store.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Migrations run under this transaction-level advisory lock, so replicas
 * starting together apply each one once. */
#define MIGRATION_LOCK "7526745115427725312"

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE IF NOT EXISTS routerd_kv(ns text COLLATE \"C\" NOT NULL,"
    " k text COLLATE \"C\" NOT NULL, v bytea NOT NULL, t bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY(ns, k));"
    "CREATE TABLE IF NOT EXISTS routerd_lease(key text PRIMARY KEY, holder text NOT NULL,"
    " token bigint NOT NULL, expires_at timestamptz NOT NULL)",
};
#define NMIGRATIONS (sizeof migrations / sizeof *migrations)

struct store_impl {
    PGconn *c;
    char *conninfo;
    pthread_mutex_t mu;
    store_opts o;
    atomic_bool ok;
    bool down;           /* under mu: connection lost, not yet back */
    int64_t retry_at_ms; /* under mu: next reconnect attempt */
    int64_t backoff_ms;  /* under mu */
    int64_t last_deep;   /* wall s of the last retention pass */
};

static int64_t wall_s(const store_impl *s) {
    return s->o.now ? s->o.now() : (int64_t)time(NULL);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* libpq's message without the trailing newline. */
static void errtext(PGconn *c, char *buf, size_t n) {
    snprintf(buf, n, "%s", c ? PQerrorMessage(c) : "out of memory");
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == ' '))
        buf[--l] = 0;
}

static PGconn *connect_db(store_impl *s) {
    char ct[24], tut[24], idle[24], st[64];
    /* Network waits stay below the lease, so a leader cut off from the
     * database notices before its lease runs out. */
    int64_t lease_s = s->o.lease_ms / 1000 > 0 ? s->o.lease_ms / 1000 : 1;
    snprintf(ct, sizeof ct, "%lld", (long long)(lease_s / 2 > 2 ? lease_s / 2 : 2));
    snprintf(tut, sizeof tut, "%lld",
             (long long)(s->o.lease_ms / 2 > 1000 ? s->o.lease_ms / 2 : 1000));
    snprintf(idle, sizeof idle, "%lld", (long long)(lease_s / 3 > 1 ? lease_s / 3 : 1));
    snprintf(st, sizeof st, "-c statement_timeout=%lld",
             (long long)(s->o.lease_ms / 2 > 1000 ? s->o.lease_ms / 2 : 1000));
    const char *keys[] = {"connect_timeout",
                          "tcp_user_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "application_name",
                          "options",
                          "dbname",
                          NULL};
    const char *vals[] = {ct, tut, idle, "1", "3", "routerd", st, s->conninfo, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

static int exec_ok(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

static int migrate(PGconn *c, char *err, size_t errsz) {
    if (!exec_ok(c, "BEGIN") || !exec_ok(c, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")") ||
        !exec_ok(c, "CREATE TABLE IF NOT EXISTS routerd_schema(version int NOT NULL)"))
        goto fail;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM routerd_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        goto fail;
    }
    int ver = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (ver > (int)NMIGRATIONS) {
        exec_ok(c, "ROLLBACK");
        snprintf(err, errsz,
                 "store_url: the database has schema version %d, newer than this routerd knows "
                 "(%d); upgrade routerd",
                 ver, (int)NMIGRATIONS);
        return -1;
    }
    for (int v = ver; v < (int)NMIGRATIONS; v++) {
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO routerd_schema(version) VALUES(%d)", v + 1);
        if (!exec_ok(c, migrations[v]) || !exec_ok(c, sql)) goto fail;
    }
    if (!exec_ok(c, "COMMIT")) goto fail;
    return 0;
fail:
    errtext(c, err, errsz);
    exec_ok(c, "ROLLBACK");
    return -1;
}

static void pg_close(store_impl *s) {
    if (!s) return;
    if (s->c) PQfinish(s->c);
    free(s->conninfo);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static store_impl *pg_open(const char *where, const store_opts *o, char *err, size_t errsz) {
    if (!where || !*where) {
        snprintf(err, errsz, "store = postgresql needs store_url");
        return NULL;
    }
    /* A malformed URL is a configuration error; a server that does not
     * answer is not (the caller waits for it). */
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(where, &perr);
    if (!parsed) {
        snprintf(err, errsz, "store_url: %.200s", perr ? perr : "cannot be parsed");
        size_t l = strlen(err);
        while (l && err[l - 1] == '\n')
            err[--l] = 0;
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(parsed);
    store_impl *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    s->conninfo = dupstr(where);
    pthread_mutex_init(&s->mu, NULL);
    s->backoff_ms = 100;
    s->c = s->conninfo ? connect_db(s) : NULL;
    if (!s->c || PQstatus(s->c) != CONNECTION_OK) {
        char e[256];
        errtext(s->c, e, sizeof e);
        /* libpq names host and port, never the password. */
        snprintf(err, errsz, "store_url: cannot connect to PostgreSQL: %s", e);
        if (o->unreachable) *o->unreachable = true;
        pg_close(s);
        return NULL;
    }
    if (migrate(s->c, err, errsz)) {
        pg_close(s);
        return NULL;
    }
    atomic_init(&s->ok, true);
    s->last_deep = wall_s(s);
    return s;
}

/* Makes sure the connection is up (mu held); false while it is not. */
static bool conn_up(store_impl *s) {
    if (!s->down && PQstatus(s->c) == CONNECTION_OK) return true;
    if (!s->down) {
        s->down = true;
        atomic_store(&s->ok, false);
        char e[256];
        errtext(s->c, e, sizeof e);
        s->o.log(RD_LOG_ERROR,
                 "state store: lost the PostgreSQL connection (%s); not ready, retrying", e);
        s->retry_at_ms = 0;
    }
    int64_t now = mono_ms();
    if (now < s->retry_at_ms) return false;
    PQreset(s->c);
    if (PQstatus(s->c) != CONNECTION_OK) {
        s->retry_at_ms = now + s->backoff_ms;
        s->backoff_ms = s->backoff_ms * 2 > 1000 ? 1000 : s->backoff_ms * 2;
        return false;
    }
    s->down = false;
    s->backoff_ms = 100;
    atomic_store(&s->ok, true);
    s->o.log(RD_LOG_INFO, "state store: PostgreSQL connection re-established");
    return true;
}

/* After a failed statement: a broken connection marks the store down. */
static void after_error(store_impl *s, PGresult *r, const char *what) {
    if (PQstatus(s->c) != CONNECTION_OK) {
        conn_up(s); /* logs once and schedules the reconnect */
        return;
    }
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(s->c);
    s->o.log(RD_LOG_ERROR, "state store: %s: %.200s", what, m && *m ? m : "failed");
}

static PGresult *run(store_impl *s, const char *sql, int n, const char *const *v, const int *len,
                     const int *fmt, int binary_result) {
    return PQexecParams(s->c, sql, n, NULL, v, len, fmt, binary_result);
}

static bool ok_res(PGresult *r) {
    ExecStatusType t = PQresultStatus(r);
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

static rd_status pg_get(store_impl *s, const char *ns, const char *key, char **val, size_t *len) {
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        return RD_E_UNAVAILABLE;
    }
    const char *p[] = {ns, key};
    PGresult *r = run(s, "SELECT v, t FROM routerd_kv WHERE ns=$1 AND k=$2", 2, p, NULL, NULL, 1);
    rd_status st = RD_E_FATAL;
    bool touch = false;
    int64_t now = wall_s(s);
    if (!ok_res(r)) {
        after_error(s, r, "read");
        st = RD_E_UNAVAILABLE;
    } else if (PQntuples(r) == 1) {
        int n = PQgetlength(r, 0, 0);
        char *v = malloc((size_t)n + 1);
        if (!v) {
            st = RD_E_INTERNAL;
        } else {
            if (n) memcpy(v, PQgetvalue(r, 0, 0), (size_t)n);
            v[n] = 0;
            *val = v;
            if (len) *len = (size_t)n;
            st = RD_OK;
            const unsigned char *tb = (const unsigned char *)PQgetvalue(r, 0, 1);
            uint64_t t = 0;
            for (int i = 0; i < 8 && PQgetlength(r, 0, 1) == 8; i++)
                t = t << 8 | tb[i];
            touch = !strncmp(key, STORE_CONV_PREFIX, sizeof STORE_CONV_PREFIX - 1) &&
                    (int64_t)t < now - STORE_TOUCH_S;
        }
    }
    PQclear(r);
    if (touch) {
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)now);
        const char *q[] = {ns, key, ts};
        PQclear(run(s, "UPDATE routerd_kv SET t=$3 WHERE ns=$1 AND k=$2", 3, q, NULL, NULL, 0));
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static bool apply(store_impl *s, const char *ns, const rd_kv_op *op, const char *ts) {
    PGresult *r = NULL;
    switch (op->op) {
    case RD_KV_PUT: {
        const char *p[] = {ns, op->key, op->val ? op->val : "", ts};
        int len[] = {0, 0, (int)op->val_len, 0};
        int fmt[] = {0, 0, 1, 0};
        r = run(s,
                "INSERT INTO routerd_kv(ns,k,v,t) VALUES($1,$2,$3,$4) ON CONFLICT (ns,k) DO "
                "UPDATE SET v=excluded.v, t=excluded.t",
                4, p, len, fmt, 0);
        break;
    }
    case RD_KV_DEL: {
        const char *p[] = {ns, op->key};
        r = run(s, "DELETE FROM routerd_kv WHERE ns=$1 AND k=$2", 2, p, NULL, NULL, 0);
        break;
    }
    case RD_KV_DEL_RANGE: {
        const char *p[] = {ns, op->key, op->key_end};
        r = run(s, "DELETE FROM routerd_kv WHERE ns=$1 AND k>=$2 AND ($3::text IS NULL OR k<$3)", 3,
                p, NULL, NULL, 0);
        break;
    }
    default:
        return false;
    }
    bool ok = ok_res(r);
    if (!ok) after_error(s, r, "write");
    PQclear(r);
    return ok;
}

static rd_status pg_txn(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n,
                        const store_fence *f) {
    for (size_t i = 0; i < n; i++)
        if (ops[i].op < RD_KV_PUT || ops[i].op > RD_KV_DEL_RANGE) {
            s->o.log(RD_LOG_ERROR, "state store: invalid operation in a transaction; nothing "
                                   "applied");
            return RD_E_INTERNAL;
        }
    if (n == 0) return RD_OK;
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        return RD_E_UNAVAILABLE;
    }
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)wall_s(s));
    bool block = n > 1 || f;
    rd_status st = RD_OK;
    if (block && !exec_ok(s->c, "BEGIN")) {
        after_error(s, NULL, "begin");
        st = RD_E_UNAVAILABLE;
        goto out;
    }
    if (f) {
        /* FOR SHARE: a takeover's UPDATE of the lease waits for this
         * commit, so no write lands after another replica took over. */
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)f->token);
        const char *p[] = {f->key, f->holder, tok};
        PGresult *r = run(s,
                          "SELECT 1 FROM routerd_lease WHERE key=$1 AND holder=$2 AND token=$3 "
                          "AND expires_at > now() FOR SHARE",
                          3, p, NULL, NULL, 0);
        bool held = ok_res(r) && PQntuples(r) == 1;
        if (!ok_res(r)) after_error(s, r, "lease check");
        PQclear(r);
        if (!held) {
            st = RD_E_UNAVAILABLE;
            goto rollback;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!apply(s, ns, &ops[i], ts)) {
            st = PQstatus(s->c) == CONNECTION_OK ? RD_E_INTERNAL : RD_E_UNAVAILABLE;
            goto rollback;
        }
    if (block && !exec_ok(s->c, "COMMIT")) {
        after_error(s, NULL, "commit");
        st = RD_E_UNAVAILABLE;
    }
    goto out;
rollback:
    if (block && PQstatus(s->c) == CONNECTION_OK) exec_ok(s->c, "ROLLBACK");
out:
    pthread_mutex_unlock(&s->mu);
    return st;
}

static rd_status pg_add(store_impl *s, const char *ns, const char *key, const void *val,
                        size_t len) {
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        return RD_E_UNAVAILABLE;
    }
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)wall_s(s));
    const char *p[] = {ns, key, val ? val : "", ts};
    int l[] = {0, 0, (int)len, 0};
    int fmt[] = {0, 0, 1, 0};
    PGresult *r = run(s,
                      "INSERT INTO routerd_kv(ns,k,v,t) VALUES($1,$2,$3,$4) ON CONFLICT (ns,k) "
                      "DO NOTHING",
                      4, p, l, fmt, 0);
    rd_status st = RD_E_UNAVAILABLE;
    if (ok_res(r))
        st = atoi(PQcmdTuples(r)) > 0 ? RD_OK : RD_E_DUPLICATE;
    else
        after_error(s, r, "write");
    PQclear(r);
    pthread_mutex_unlock(&s->mu);
    return st;
}

typedef struct row {
    char *k, *v;
    size_t n;
} row;

static rd_status pg_scan(store_impl *s, const char *ns, const char *prefix, rd_kv_visit_fn fn,
                         void *arg) {
    size_t plen = strlen(prefix);
    /* The first key after every key with this prefix, when there is one. */
    char *end = dupstr(prefix);
    if (!end) return RD_E_INTERNAL;
    while (plen && (unsigned char)end[plen - 1] >= 0x7f)
        end[--plen] = 0;
    if (plen) end[plen - 1]++;
    plen = strlen(prefix);
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        free(end);
        return RD_E_UNAVAILABLE;
    }
    const char *p[] = {ns, prefix, *end ? end : NULL};
    PGresult *r = run(s,
                      "SELECT k, v FROM routerd_kv WHERE ns=$1 AND k>=$2 AND ($3::text IS NULL "
                      "OR k<$3) ORDER BY k",
                      3, p, NULL, NULL, 1);
    free(end);
    row *rows = NULL;
    size_t nrows = 0;
    rd_status st = RD_OK;
    if (!ok_res(r)) {
        after_error(s, r, "scan");
        st = RD_E_UNAVAILABLE;
    } else {
        int nt = PQntuples(r);
        rows = calloc(nt > 0 ? (size_t)nt : 1, sizeof *rows);
        for (int i = 0; rows && i < nt; i++) {
            int kl = PQgetlength(r, i, 0), vl = PQgetlength(r, i, 1);
            const char *k = PQgetvalue(r, i, 0);
            if ((size_t)kl < plen || memcmp(k, prefix, plen)) continue;
            row *w = &rows[nrows];
            w->k = malloc((size_t)kl + 1);
            w->v = malloc((size_t)vl + 1);
            if (!w->k || !w->v) {
                free(w->k);
                free(w->v);
                break;
            }
            memcpy(w->k, k, (size_t)kl);
            w->k[kl] = 0;
            if (vl) memcpy(w->v, PQgetvalue(r, i, 1), (size_t)vl);
            w->v[vl] = 0;
            w->n = (size_t)vl;
            nrows++;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&s->mu);
    int stop = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (!stop) stop = fn(arg, rows[i].k, rows[i].v, rows[i].n);
        free(rows[i].k);
        free(rows[i].v);
    }
    free(rows);
    return st;
}

static int pg_lease(store_impl *s, const char *key, const char *holder, int64_t lease_ms,
                    int64_t *token) {
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)lease_ms);
    const char *p[] = {key, holder, ms};
    /* Renewed by its holder (even after expiry: nobody else took it, so
     * its token still fences), taken over by anyone once expired; a new
     * holder gets the next token. */
    PGresult *r = run(s,
                      "INSERT INTO routerd_lease AS l(key, holder, token, expires_at) "
                      "VALUES($1, $2, 1, now() + $3::bigint * interval '1 millisecond') "
                      "ON CONFLICT (key) DO UPDATE SET holder=excluded.holder, "
                      "token=CASE WHEN l.holder=excluded.holder THEN l.token ELSE l.token+1 END, "
                      "expires_at=excluded.expires_at "
                      "WHERE l.holder=excluded.holder OR l.expires_at < now() RETURNING token",
                      3, p, NULL, NULL, 0);
    int rc = -1;
    if (ok_res(r)) {
        rc = PQntuples(r) == 1;
        if (rc) *token = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    } else {
        after_error(s, r, "lease");
    }
    PQclear(r);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void pg_release(store_impl *s, const char *key, const char *holder, int64_t token) {
    pthread_mutex_lock(&s->mu);
    if (conn_up(s)) {
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)token);
        const char *p[] = {key, holder, tok};
        PGresult *r = run(s,
                          "UPDATE routerd_lease SET holder='', expires_at='-infinity' WHERE "
                          "key=$1 AND holder=$2 AND token=$3",
                          3, p, NULL, NULL, 0);
        if (!ok_res(r)) after_error(s, r, "lease release");
        PQclear(r);
    }
    pthread_mutex_unlock(&s->mu);
}

static void pg_maintain(store_impl *s, int64_t now) {
    pthread_mutex_lock(&s->mu);
    if (!conn_up(s)) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    /* A connection that looks fine may be dead: a cheap round trip. */
    PGresult *r = PQexec(s->c, "SELECT 1");
    if (!ok_res(r)) after_error(s, r, "probe");
    PQclear(r);
    bool hourly = !s->down && now - s->last_deep >= 3600;
    if (hourly) {
        s->last_deep = now;
        /* Chat claims (webhook mode) leave a row per chat ever claimed;
         * their tokens fence nothing, so rows released or dead for a
         * while go. Leader leases keep theirs: the token must only grow. */
        r = PQexec(s->c, "DELETE FROM routerd_lease WHERE key LIKE 'claim:%' AND "
                         "expires_at < now() - interval '10 minutes'");
        if (!ok_res(r)) after_error(s, r, "claim cleanup");
        PQclear(r);
    }
    if (hourly && s->o.retention_s > 0) {
        char cut[24];
        snprintf(cut, sizeof cut, "%lld", (long long)(now - s->o.retention_s));
        const char *p[] = {STORE_CONV_PREFIX, STORE_CONV_END, cut};
        r = run(s, "DELETE FROM routerd_kv WHERE k>=$1 AND k<$2 AND t<$3", 3, p, NULL, NULL, 0);
        if (ok_res(r) && atoi(PQcmdTuples(r)) > 0)
            s->o.log(RD_LOG_INFO, "state store: %s conversation(s) idle over %lld day(s) forgotten",
                     PQcmdTuples(r), (long long)(s->o.retention_s / 86400));
        else if (!ok_res(r))
            after_error(s, r, "retention");
        PQclear(r);
    }
    pthread_mutex_unlock(&s->mu);
}

static bool pg_healthy(store_impl *s) {
    return atomic_load(&s->ok);
}

static const store_ops pg_ops = {
    .abi = STORE_ABI,
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .get = pg_get,
    .txn = pg_txn,
    .add = pg_add,
    .scan = pg_scan,
    .lease = pg_lease,
    .release = pg_release,
    .maintain = pg_maintain,
    .healthy = pg_healthy,
};

__attribute__((visibility("default"))) const store_ops *routerd_store_v1(void);
__attribute__((visibility("default"))) const store_ops *routerd_store_v1(void) {
    return &pg_ops;
}
