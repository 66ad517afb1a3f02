/* The postgresql state store (store/store_postgresql.so): every replica
 * shares one database. Loaded by the core only when [router] store =
 * postgresql, so the core binary itself does not depend on libpq.
 *
 * Two connections per process. Writes go through a group commit on the
 * write connection, as in the SQLite store: writers queue, the one at the
 * head sends one transaction for everyone queued (each caller's ops in its
 * own savepoint, so one that fails is undone alone) in libpq's pipeline
 * mode (libpq 14 or later), so the whole group costs one round trip, plus
 * one for each caller whose write fails, and every caller returns only
 * once the COMMIT is acknowledged. Reads (get, scan) have a
 * connection of their own and never wait behind a write. Leases, releases,
 * upkeep and migrations use the write connection.
 *
 * A lost connection fails the calls that use it at once (RD_E_UNAVAILABLE)
 * and is re-opened with capped back-off by the next call or by maintain();
 * the store is healthy only while both connections are up. Leases are
 * rows with fencing tokens and expire on the database's clock, so the
 * replicas' clocks never matter. */
#include "store.h"
#include "group_commit.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <semaphore.h>
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

/* One connection and its reconnect state, all under its mutex but `up`. */
typedef struct pgconn {
    const char *name; /* "writes" or "reads", for the log */
    PGconn *c;
    pthread_mutex_t mu;
    bool down;           /* lost, not yet back */
    bool broken;         /* up by libpq's account, but its protocol state is unknown */
    int64_t retry_at_ms; /* next reconnect attempt */
    int64_t backoff_ms;
    atomic_bool up; /* readable without the lock */
} pgconn;

/* A write waiting for the group commit (on its caller's stack). */
typedef struct gc_req {
    gc_link l; /* first: a link is its request */
    const char *ns;
    const rd_kv_op *ops;
    size_t n;
    const store_fence *f; /* may be NULL */
    bool add;             /* ops[0] is inserted only if its key is absent */
    bool added;           /* add: the insert wrote a row */
    rd_status st;         /* RD_OK until something of its own failed */
} gc_req;

static gc_req *gc_next(const gc_req *r) {
    return (gc_req *)r->l.next;
}

struct store_impl {
    char *conninfo;
    store_opts o;
    pgconn w; /* group commits, leases, upkeep, migrations */
    pgconn r; /* get and scan */
    /* Group commit: writers queue here; the one at the head commits for
     * everyone queued behind it. */
    pthread_mutex_t gmu;
    gc_queue gq;
    int64_t last_deep; /* under w.mu: wall s of the last retention pass */
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

/* The first line of libpq's message. */
static void errtext(PGconn *c, char *buf, size_t n) {
    snprintf(buf, n, "%s", c ? PQerrorMessage(c) : "out of memory");
    buf[strcspn(buf, "\n")] = 0; /* libpq's hints follow on further lines */
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

static void conn_init(pgconn *k, const char *name) {
    k->name = name;
    pthread_mutex_init(&k->mu, NULL);
    k->backoff_ms = 100;
    atomic_init(&k->up, false);
}

static void conn_fini(pgconn *k) {
    if (k->c) PQfinish(k->c);
    pthread_mutex_destroy(&k->mu);
}

static void pg_close(store_impl *s) {
    if (!s) return;
    conn_fini(&s->w);
    conn_fini(&s->r);
    pthread_mutex_destroy(&s->gmu);
    free(s->conninfo);
    free(s);
}

/* Opens k at start; false with err set when the server cannot be reached. */
static bool conn_open(store_impl *s, pgconn *k, char *err, size_t errsz) {
    k->c = s->conninfo ? connect_db(s) : NULL;
    if (!k->c || PQstatus(k->c) != CONNECTION_OK) {
        char e[256];
        errtext(k->c, e, sizeof e);
        /* libpq names host and port, never the password. */
        snprintf(err, errsz, "store_url: cannot connect to PostgreSQL: %s", e);
        if (s->o.unreachable) *s->o.unreachable = true;
        return false;
    }
    atomic_store(&k->up, true);
    return true;
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
    conn_init(&s->w, "writes");
    conn_init(&s->r, "reads");
    pthread_mutex_init(&s->gmu, NULL);
    if (!conn_open(s, &s->w, err, errsz) || migrate(s->w.c, err, errsz) ||
        !conn_open(s, &s->r, err, errsz)) {
        pg_close(s);
        return NULL;
    }
    s->last_deep = wall_s(s);
    return s;
}

/* Makes sure k is up (k->mu held); false while it is not. */
static bool conn_up(store_impl *s, pgconn *k) {
    if (!k->down && !k->broken && PQstatus(k->c) == CONNECTION_OK) return true;
    if (!k->down) {
        k->down = true;
        atomic_store(&k->up, false);
        char e[256];
        errtext(k->c, e, sizeof e);
        s->o.log(RD_LOG_ERROR,
                 "state store: lost the PostgreSQL connection (%s: %s); not ready, retrying",
                 k->name, *e ? e : "protocol out of step");
        k->retry_at_ms = 0;
    }
    int64_t now = mono_ms();
    if (now < k->retry_at_ms) return false;
    /* A new connection rather than PQreset(): nothing of an interrupted
     * pipeline can survive into it. */
    PGconn *c = connect_db(s);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        if (c) PQfinish(c);
        k->retry_at_ms = now + k->backoff_ms;
        k->backoff_ms = k->backoff_ms * 2 > 1000 ? 1000 : k->backoff_ms * 2;
        return false;
    }
    PQfinish(k->c);
    k->c = c;
    k->down = k->broken = false;
    k->backoff_ms = 100;
    atomic_store(&k->up, true);
    s->o.log(RD_LOG_INFO, "state store: PostgreSQL connection re-established (%s)", k->name);
    return true;
}

/* After a failed statement: a broken connection marks k down. */
static void after_error(store_impl *s, pgconn *k, PGresult *r, const char *what) {
    if (k->broken || PQstatus(k->c) != CONNECTION_OK) {
        conn_up(s, k); /* logs once and schedules the reconnect */
        return;
    }
    const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(k->c);
    s->o.log(RD_LOG_ERROR, "state store: %s: %.200s", what, m && *m ? m : "failed");
}

static PGresult *run(PGconn *c, const char *sql, int n, const char *const *v, const int *len,
                     const int *fmt, int binary_result) {
    return PQexecParams(c, sql, n, NULL, v, len, fmt, binary_result);
}

static bool ok_res(PGresult *r) {
    ExecStatusType t = PQresultStatus(r);
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

static rd_status pg_get(store_impl *s, const char *ns, const char *key, char **val, size_t *len) {
    pgconn *k = &s->r;
    pthread_mutex_lock(&k->mu);
    if (!conn_up(s, k)) {
        pthread_mutex_unlock(&k->mu);
        return RD_E_UNAVAILABLE;
    }
    const char *p[] = {ns, key};
    PGresult *r =
        run(k->c, "SELECT v, t FROM routerd_kv WHERE ns=$1 AND k=$2", 2, p, NULL, NULL, 1);
    rd_status st = RD_E_FATAL;
    bool touch = false;
    int64_t now = wall_s(s);
    if (!ok_res(r)) {
        after_error(s, k, r, "read");
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
        /* At most hourly per conversation: it may stay on the read
         * connection (autocommit, unfenced, as it always was). */
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)now);
        const char *q[] = {ns, key, ts};
        PQclear(run(k->c, "UPDATE routerd_kv SET t=$3 WHERE ns=$1 AND k=$2", 3, q, NULL, NULL, 0));
    }
    pthread_mutex_unlock(&k->mu);
    return st;
}

/* ---- group commit in one pipeline ------------------------------------- */

/* What each command of a pipeline was, to attribute its result. */
enum { CMD_FRAME, CMD_SP, CMD_FENCE, CMD_OP, CMD_RELEASE };

typedef struct cmd_tag {
    gc_req *r; /* NULL for the transaction's own commands */
    int kind;
} cmd_tag;

/* Lease check of a fenced request. In a pipeline nothing can look at a
 * result before the commands after it are sent, so a check that merely
 * returned no row would not stop the ops queued behind it: this one fails
 * (division by zero, SQLSTATE 22012) unless the lease is held, which
 * aborts the request's savepoint and everything after it up to the sync.
 * FOR SHARE keeps the lease row locked until the group's COMMIT, so a
 * takeover's UPDATE of the lease waits for it and no write lands after
 * another replica took over. statement_timestamp(): the lease must be
 * live when it is checked, not merely when the group began. */
static const char fence_sql[] =
    "SELECT 1 / count(*) FROM (SELECT 1 FROM routerd_lease WHERE key=$1 AND holder=$2 AND "
    "token=$3 AND expires_at > statement_timestamp() FOR SHARE) AS held";
#define SQLSTATE_NOT_HELD "22012"

static bool send_sql(PGconn *c, const char *sql, cmd_tag *tags, size_t *nt, gc_req *r, int kind) {
    tags[*nt] = (cmd_tag){r, kind};
    ++*nt;
    return PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
}

static bool send_op(PGconn *c, const gc_req *r, const rd_kv_op *op, const char *ts) {
    switch (op->op) {
    case RD_KV_PUT: {
        const char *p[] = {r->ns, op->key, op->val ? op->val : "", ts};
        int len[] = {0, 0, (int)op->val_len, 0};
        int fmt[] = {0, 0, 1, 0};
        return PQsendQueryParams(c,
                                 r->add ? "INSERT INTO routerd_kv(ns,k,v,t) VALUES($1,$2,$3,$4) "
                                          "ON CONFLICT (ns,k) DO NOTHING"
                                        : "INSERT INTO routerd_kv(ns,k,v,t) VALUES($1,$2,$3,$4) "
                                          "ON CONFLICT (ns,k) DO UPDATE SET v=excluded.v, "
                                          "t=excluded.t",
                                 4, NULL, p, len, fmt, 0);
    }
    case RD_KV_DEL: {
        const char *p[] = {r->ns, op->key};
        return PQsendQueryParams(c, "DELETE FROM routerd_kv WHERE ns=$1 AND k=$2", 2, NULL, p, NULL,
                                 NULL, 0);
    }
    default: { /* RD_KV_DEL_RANGE; others were refused before queueing */
        const char *p[] = {r->ns, op->key, op->key_end};
        if (!op->key_end)
            return PQsendQueryParams(c, "DELETE FROM routerd_kv WHERE ns=$1 AND k>=$2", 2, NULL, p,
                                     NULL, NULL, 0);
        return PQsendQueryParams(c, "DELETE FROM routerd_kv WHERE ns=$1 AND k>=$2 AND k<$3", 3,
                                 NULL, p, NULL, NULL, 0);
    }
    }
}

/* One request: its savepoint, fence check, ops, and the savepoint's
 * release (which keeps its writes and its lease lock in the group). */
static bool send_req(PGconn *c, gc_req *r, const char *ts, cmd_tag *tags, size_t *nt) {
    if (!send_sql(c, "SAVEPOINT w", tags, nt, r, CMD_SP)) return false;
    if (r->f) {
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)r->f->token);
        const char *p[] = {r->f->key, r->f->holder, tok};
        tags[(*nt)++] = (cmd_tag){r, CMD_FENCE};
        if (!PQsendQueryParams(c, fence_sql, 3, NULL, p, NULL, NULL, 0)) return false;
    }
    for (size_t i = 0; i < r->n; i++) {
        tags[(*nt)++] = (cmd_tag){r, CMD_OP};
        if (!send_op(c, r, &r->ops[i], ts)) return false;
    }
    return send_sql(c, "RELEASE SAVEPOINT w", tags, nt, r, CMD_RELEASE);
}

/* The next command's result and the NULL that ends it; NULL when the
 * connection failed or answered out of step. Blocking is safe however
 * long the pipeline: libpq reads the server's answers while it waits to
 * send, so neither side can fill the other's buffers for good. */
static PGresult *take(PGconn *c) {
    PGresult *r = PQgetResult(c);
    if (!r || PQstatus(c) != CONNECTION_OK) {
        PQclear(r);
        return NULL;
    }
    if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) return r;
    /* FATAL/PANIC: the server is closing this session (shutdown, admin). */
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    PGresult *end = sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")) ? r : PQgetResult(c);
    if (end) {
        if (end != r) PQclear(end);
        PQclear(r);
        return NULL;
    }
    return r;
}

enum { ROUND_COMMITTED, ROUND_RETRY, ROUND_FAILED };

/* One pipeline: BEGIN (or, after a request failed, the rollback of its
 * savepoint), the requests from `from` to `last` (from may be NULL: none
 * left), COMMIT, sync. A request that fails aborts everything after it
 * up to the sync; *failed is then that request, whose savepoint is still
 * open, and the caller sends the rest again. w.mu held, connection up. */
static int round_trip(store_impl *s, bool began, gc_req *from, gc_req *last, const char *ts,
                      gc_req **failed) {
    pgconn *k = &s->w;
    PGconn *c = k->c;
    size_t ncmd = 3;
    for (gc_req *r = from; r; r = r == last ? NULL : gc_next(r))
        ncmd += 2 + (r->f ? 1 : 0) + r->n;
    cmd_tag *tags = malloc(ncmd * sizeof *tags);
    if (!tags) return ROUND_FAILED;
    size_t nt = 0;
    *failed = NULL;
    bool sent = PQenterPipelineMode(c);
    if (sent && !began)
        sent = send_sql(c, "BEGIN", tags, &nt, NULL, CMD_FRAME);
    else if (sent)
        sent = send_sql(c, "ROLLBACK TO SAVEPOINT w", tags, &nt, NULL, CMD_FRAME) &&
               send_sql(c, "RELEASE SAVEPOINT w", tags, &nt, NULL, CMD_FRAME);
    for (gc_req *r = from; sent && r; r = r == last ? NULL : gc_next(r))
        sent = send_req(c, r, ts, tags, &nt);
    sent = sent && send_sql(c, "COMMIT", tags, &nt, NULL, CMD_FRAME) && PQpipelineSync(c);
    int out = ROUND_COMMITTED;
    bool lost = !sent;
    for (size_t i = 0; !lost && i < nt; i++) {
        PGresult *res = take(c);
        if (!res) {
            lost = true;
            break;
        }
        cmd_tag *t = &tags[i];
        if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
            /* skipped after an earlier failure */
        } else if (!ok_res(res) && t->kind == CMD_FENCE) {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (!code || strcmp(code, SQLSTATE_NOT_HELD)) after_error(s, k, res, "lease check");
            t->r->st = RD_E_UNAVAILABLE;
            *failed = t->r;
            out = ROUND_RETRY;
        } else if (!ok_res(res) && t->kind == CMD_OP) {
            after_error(s, k, res, "write");
            /* add always said unavailable when its insert failed */
            t->r->st = t->r->add ? RD_E_UNAVAILABLE : RD_E_INTERNAL;
            *failed = t->r;
            out = ROUND_RETRY;
        } else if (!ok_res(res)) { /* BEGIN, savepoints, COMMIT: the group fails */
            after_error(s, k, res, i + 1 == nt ? "commit" : "transaction");
            out = ROUND_FAILED;
        } else if (t->kind == CMD_OP && t->r->add) {
            t->r->added = atoi(PQcmdTuples(res)) > 0;
        }
        PQclear(res);
    }
    free(tags);
    if (!lost) {
        PGresult *sync = take(c);
        lost = !sync || PQresultStatus(sync) != PGRES_PIPELINE_SYNC;
        PQclear(sync);
    }
    if (!lost && !PQexitPipelineMode(c)) lost = true;
    if (lost) {
        if (PQstatus(c) == CONNECTION_OK) k->broken = true;
        after_error(s, k, NULL, "transaction");
        return ROUND_FAILED;
    }
    if (out == ROUND_FAILED && PQtransactionStatus(c) != PQTRANS_IDLE) exec_ok(c, "ROLLBACK");
    return out;
}

/* One transaction for the requests from first to last (w.mu held): one
 * round trip, plus one for each request that fails. */
static void commit_group(store_impl *s, gc_req *first, gc_req *last) {
    for (gc_req *r = first;; r = gc_next(r)) {
        r->st = RD_OK;
        if (r == last) break;
    }
    int out = ROUND_FAILED;
    if (conn_up(s, &s->w)) {
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)wall_s(s));
        gc_req *from = first, *failed = NULL;
        bool began = false;
        while ((out = round_trip(s, began, from, last, ts, &failed)) == ROUND_RETRY) {
            began = true;
            from = failed == last ? NULL : gc_next(failed);
        }
    }
    /* Not committed: whoever had not failed on its own cannot know. */
    for (gc_req *r = first;; r = gc_next(r)) {
        if (out != ROUND_COMMITTED && r->st == RD_OK) r->st = RD_E_UNAVAILABLE;
        if (r->st == RD_OK && r->add && !r->added) r->st = RD_E_DUPLICATE;
        if (r == last) break;
    }
}

/* Queues the request; the one at the head commits for all queued behind
 * it, each returning once its group's COMMIT is acknowledged. */
static rd_status submit(store_impl *s, gc_req *me) {
    sem_init(&me->l.wake, 0, 0);
    pthread_mutex_lock(&s->gmu);
    if (!gc_join(&s->gq, &me->l)) {
        pthread_mutex_unlock(&s->gmu);
        if (!gc_await(&me->l)) { /* committed by its group's head */
            sem_destroy(&me->l.wake);
            return me->st;
        }
        pthread_mutex_lock(&s->gmu);
    }
    /* At the head: everything queued so far goes in one transaction;
     * requests that arrive meanwhile wait for the next group. */
    gc_req *last = (gc_req *)s->gq.tail;
    pthread_mutex_unlock(&s->gmu);
    pthread_mutex_lock(&s->w.mu);
    commit_group(s, me, last);
    pthread_mutex_unlock(&s->w.mu);
    gc_finish(&s->gmu, &s->gq, &me->l, &last->l);
    sem_destroy(&me->l.wake);
    return me->st;
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
    gc_req me = {.ns = ns, .ops = ops, .n = n, .f = f};
    return submit(s, &me);
}

static rd_status pg_add(store_impl *s, const char *ns, const char *key, const void *val,
                        size_t len) {
    rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = val, .val_len = len};
    gc_req me = {.ns = ns, .ops = &op, .n = 1, .add = true};
    return submit(s, &me);
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
    pgconn *k = &s->r;
    pthread_mutex_lock(&k->mu);
    if (!conn_up(s, k)) {
        pthread_mutex_unlock(&k->mu);
        free(end);
        return RD_E_UNAVAILABLE;
    }
    const char *p[] = {ns, prefix, *end ? end : NULL};
    PGresult *r = run(k->c,
                      "SELECT k, v FROM routerd_kv WHERE ns=$1 AND k>=$2 AND ($3::text IS NULL "
                      "OR k<$3) ORDER BY k",
                      3, p, NULL, NULL, 1);
    free(end);
    row *rows = NULL;
    size_t nrows = 0;
    rd_status st = RD_OK;
    if (!ok_res(r)) {
        after_error(s, k, r, "scan");
        st = RD_E_UNAVAILABLE;
    } else {
        int nt = PQntuples(r);
        rows = calloc(nt > 0 ? (size_t)nt : 1, sizeof *rows);
        for (int i = 0; rows && i < nt; i++) {
            int kl = PQgetlength(r, i, 0), vl = PQgetlength(r, i, 1);
            const char *key = PQgetvalue(r, i, 0);
            if ((size_t)kl < plen || memcmp(key, prefix, plen)) continue;
            row *w = &rows[nrows];
            w->k = malloc((size_t)kl + 1);
            w->v = malloc((size_t)vl + 1);
            if (!w->k || !w->v) {
                free(w->k);
                free(w->v);
                break;
            }
            memcpy(w->k, key, (size_t)kl);
            w->k[kl] = 0;
            if (vl) memcpy(w->v, PQgetvalue(r, i, 1), (size_t)vl);
            w->v[vl] = 0;
            w->n = (size_t)vl;
            nrows++;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&k->mu);
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
    pgconn *k = &s->w;
    pthread_mutex_lock(&k->mu);
    if (!conn_up(s, k)) {
        pthread_mutex_unlock(&k->mu);
        return -1;
    }
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)lease_ms);
    const char *p[] = {key, holder, ms};
    /* Renewed by its holder (even after expiry: nobody else took it, so
     * its token still fences), taken over by anyone once expired; a new
     * holder gets the next token. */
    PGresult *r = run(k->c,
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
        after_error(s, k, r, "lease");
    }
    PQclear(r);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

static void pg_release(store_impl *s, const char *key, const char *holder, int64_t token) {
    pgconn *k = &s->w;
    pthread_mutex_lock(&k->mu);
    if (conn_up(s, k)) {
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)token);
        const char *p[] = {key, holder, tok};
        PGresult *r = run(k->c,
                          "UPDATE routerd_lease SET holder='', expires_at='-infinity' WHERE "
                          "key=$1 AND holder=$2 AND token=$3",
                          3, p, NULL, NULL, 0);
        if (!ok_res(r)) after_error(s, k, r, "lease release");
        PQclear(r);
    }
    pthread_mutex_unlock(&k->mu);
}

/* Reconnects k or checks that it still answers: a connection that looks
 * fine may be dead. k->mu held; false while k is down. */
static bool probe(store_impl *s, pgconn *k) {
    if (!conn_up(s, k)) return false;
    PGresult *r = PQexec(k->c, "SELECT 1");
    bool ok = ok_res(r);
    if (!ok) {
        k->broken = true; /* nothing else fails a SELECT 1 */
        after_error(s, k, r, "probe");
    }
    PQclear(r);
    return ok;
}

static void pg_maintain(store_impl *s, int64_t now) {
    pthread_mutex_lock(&s->r.mu);
    probe(s, &s->r);
    pthread_mutex_unlock(&s->r.mu);
    pgconn *k = &s->w;
    pthread_mutex_lock(&k->mu);
    if (!probe(s, k) || now - s->last_deep < 3600) {
        pthread_mutex_unlock(&k->mu);
        return;
    }
    s->last_deep = now;
    /* Chat claims (webhook mode) leave a row per chat ever claimed;
     * their tokens fence nothing, so rows released or dead for a
     * while go. Leader leases keep theirs: the token must only grow. */
    PGresult *r = PQexec(k->c, "DELETE FROM routerd_lease WHERE key LIKE 'claim:%' AND "
                               "expires_at < now() - interval '10 minutes'");
    if (!ok_res(r)) after_error(s, k, r, "claim cleanup");
    PQclear(r);
    if (s->o.retention_s > 0) {
        char cut[24];
        snprintf(cut, sizeof cut, "%lld", (long long)(now - s->o.retention_s));
        const char *p[] = {STORE_CONV_PREFIX, STORE_CONV_END, cut};
        r = run(k->c, "DELETE FROM routerd_kv WHERE k>=$1 AND k<$2 AND t<$3", 3, p, NULL, NULL, 0);
        if (ok_res(r) && atoi(PQcmdTuples(r)) > 0)
            s->o.log(RD_LOG_INFO, "state store: %s conversation(s) idle over %lld day(s) forgotten",
                     PQcmdTuples(r), (long long)(s->o.retention_s / 86400));
        else if (!ok_res(r))
            after_error(s, k, r, "retention");
        PQclear(r);
    }
    pthread_mutex_unlock(&k->mu);
}

/* Ready only while both connections are: a replica that could write but
 * not read (or the reverse) cannot do its work. */
static bool pg_healthy(store_impl *s) {
    return atomic_load(&s->w.up) && atomic_load(&s->r.up);
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
