/* State store: one small interface (store.h) with two implementations.
 *
 * sqlite (default): one database in WAL mode in state_dir. SQLite gives
 * crash-safe transactions, ordered keys (journal scans and range deletes)
 * and scales to millions of rows without a server. One process only.
 *
 * postgresql: store/store_postgresql.so in the plugin directory, loaded on
 * demand, shared by every replica. */
#include "core.h"
#include "store.h"
#include "group_commit.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct store {
    const store_ops *ops;
    store_impl *impl;
    void *dl;
};

/* ------------------------------------------------------------------------ */
/* sqlite                                                                    */

/* A transaction waiting for the group commit (on its caller's stack). */
typedef struct gc_req {
    gc_link l; /* first: a link is its request */
    const char *ns;
    const rd_kv_op *ops;
    size_t n;
    int rc;
    bool lazy;    /* may commit without a sync of its own */
    uint64_t seq; /* out: the commit's place */
} gc_req;

static gc_req *gc_next(const gc_req *r) {
    return (gc_req *)r->l.next;
}

struct store_impl {
    sqlite3 *db;
    pthread_mutex_t mu; /* the writing connection; statements are reused */
    sqlite3_stmt *put, *add, *touch, *del, *delr, *delr_open, *begin, *commit, *rollback, *sp,
        *sp_release, *sp_undo;
    /* Commits are numbered (seq, under mu); `durable` is the last one a
     * sync covered. The connection runs with synchronous=NORMAL and a
     * synced commit fsyncs the WAL itself (wal_sync), which is what FULL
     * does; a lazy commit skips that and is durable once a later synced
     * commit or an fsync of the WAL is: the WAL is appended in order, so a
     * sync covers every frame before it. */
    uint64_t seq;
    atomic_uint_fast64_t durable;
    pthread_mutex_t dmu; /* with dcv: kv_sync() waiting for a durable commit */
    pthread_cond_t dcv;
    atomic_int dwaiters;
    /* Reads while the writing connection commits have a connection of
     * their own: in WAL mode they see the last commit without waiting for
     * the one (and its fsync) in progress. Scans always use it. */
    sqlite3 *rdb;
    pthread_mutex_t rmu;
    sqlite3_stmt *get, *scan;
    sqlite3_stmt *wget; /* the same get on the writing connection */
    int lockfd;         /* flock()ed for the store's life: one routerd per state_dir */
    /* Group commit: writers queue here; the one at the head commits for
     * everyone queued behind it, so concurrent writes share one fsync. */
    pthread_mutex_t gmu;
    gc_queue gq;
    /* Adaptive batching (o.commit_delay_us): the mean gap between writes,
     * and whether the head is waiting for a companion. */
    int64_t last_arrival_us, gap_us;
    bool gathering;
    atomic_uint_fast64_t commits, writes; /* for the batching ratio in tests and metrics */
    store_opts o;
    bool failing;          /* under mu: the last commit failed */
    sqlite3_int64 changes; /* under mu: rows written when the last commit was noted */
    atomic_bool ok;        /* !failing, readable without the lock */
    int64_t last_deep;     /* wall s of the last retention/vacuum/checkpoint */
    int64_t last_fail_log; /* mono ms */
    bool logged_fail;      /* this episode's failure was logged */
    /* Checkpoints on a thread and a connection of their own (ck_main),
     * woken by the WAL's length (on_wal); cdb is set while it runs. */
    sqlite3 *cdb;
    pthread_t ckth;
    pthread_mutex_t cmu; /* with ccv: ck_stop, and the wait for ck_due */
    pthread_cond_t ccv;
    /* One checkpoint at a time: the thread's and the truncating ones the
     * writer runs (mu before it), which would otherwise find it busy. */
    pthread_mutex_t ckmu;
    atomic_bool ck_due;
    bool ck_stop;
    int64_t ck_fail_log; /* mono ms; checkpoint thread only */
};

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_s(const store_impl *s) {
    return s->o.now ? s->o.now() : (int64_t)time(NULL);
}

static int prep(store_impl *s, sqlite3_stmt **st, const char *sql) {
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
}

static int prep_read(store_impl *s, sqlite3_stmt **st, const char *sql) {
    return sqlite3_prepare_v3(s->rdb, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
}

/* What synchronous=FULL does at a commit: an fsync of the WAL (mu held);
 * *en gets the system's reason when it fails (the connection's own errno
 * is not set by a sync made outside a statement). No WAL open means
 * nothing was written to one. */
static int wal_sync(store_impl *s, int *en) {
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK ||
        !wal || !wal->pMethods)
        return SQLITE_OK;
    int rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) *en = errno;
    return rc;
}

#define WAL_SYNC_FAILED "cannot sync the write-ahead log"

/* The end of a commit that must be durable: with state_sync = full, the
 * WAL synced (mu held); *en gets the system's reason when it cannot be. */
static int commit_sync(store_impl *s, int *en) {
    return s->o.sync_full ? wal_sync(s, en) : SQLITE_OK;
}

static void sl_close(store_impl *s) {
    if (!s) return;
    if (s->cdb) { /* the checkpoint thread first; the writer's close checkpoints last */
        pthread_mutex_lock(&s->cmu);
        s->ck_stop = true;
        pthread_cond_signal(&s->ccv);
        pthread_mutex_unlock(&s->cmu);
        pthread_join(s->ckth, NULL);
        sqlite3_close(s->cdb);
    }
    sqlite3_stmt *all[] = {s->get,    s->wget,     s->put,       s->add,        s->touch,
                           s->del,    s->delr,     s->delr_open, s->scan,       s->begin,
                           s->commit, s->rollback, s->sp,        s->sp_release, s->sp_undo};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->rdb);
    sqlite3_close(s->db);
    if (s->lockfd >= 0) close(s->lockfd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->gmu);
    pthread_mutex_destroy(&s->dmu);
    pthread_cond_destroy(&s->dcv);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->ccv);
    pthread_mutex_destroy(&s->ckmu);
    free(s);
}

/* The WAL's length (pages) at which a checkpoint copies it into the
 * database, SQLite's own default; past CK_INLINE_PAGES (the checkpoint
 * thread cannot keep up, or fails) the committing writer runs one itself. */
#define CK_PAGES 1000
#define CK_INLINE_PAGES (8 * CK_PAGES)

/* After each commit of the writing connection (mu held). Replaces SQLite's
 * automatic checkpoint, which runs inside the commit that crosses the
 * length, holding the write lock through the copy and the database's
 * fsync: every commit behind it waited. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages) {
    store_impl *s = arg;
    if (pages >= CK_INLINE_PAGES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages >= CK_PAGES && !atomic_exchange(&s->ck_due, true)) {
        pthread_mutex_lock(&s->cmu);
        pthread_cond_signal(&s->ccv);
        pthread_mutex_unlock(&s->cmu);
    }
    return SQLITE_OK;
}

/* A PASSIVE checkpoint never blocks the writer: commits append to the WAL
 * while it copies, and the writer starts the WAL over once a checkpoint
 * has copied all of it. */
static void *ck_main(void *arg) {
    store_impl *s = arg;
    pthread_mutex_lock(&s->cmu);
    for (;;) {
        while (!atomic_load(&s->ck_due) && !s->ck_stop)
            pthread_cond_wait(&s->ccv, &s->cmu);
        if (s->ck_stop) break;
        pthread_mutex_unlock(&s->cmu);
        atomic_store(&s->ck_due, false);
        pthread_mutex_lock(&s->ckmu);
        int rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_unlock(&s->ckmu);
        int64_t now = mono_ms();
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY &&
            (!s->ck_fail_log || now - s->ck_fail_log >= 60000)) {
            LOGW("state store: checkpoint failed: %s (%s); the WAL grows until one succeeds",
                 sqlite3_errmsg(s->cdb), sqlite3_errstr(rc));
            s->ck_fail_log = now;
        }
        pthread_mutex_lock(&s->cmu);
    }
    pthread_mutex_unlock(&s->cmu);
    return NULL;
}

/* The whole WAL into the database, and the WAL cut to nothing (mu held). */
static void ck_truncate(store_impl *s) {
    pthread_mutex_lock(&s->ckmu);
    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    pthread_mutex_unlock(&s->ckmu);
}

/* Without the thread, SQLite's automatic checkpoint stays. */
static void ck_start(store_impl *s, const char *path, const char *vfs) {
    if (sqlite3_open_v2(path, &s->cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs) !=
        SQLITE_OK) {
        sqlite3_close(s->cdb);
        s->cdb = NULL;
        return;
    }
    sqlite3_busy_timeout(s->cdb, 2000);
    /* A connection finds the WAL at its first read; until then a
     * checkpoint on it does nothing. */
    if (sqlite3_exec(s->cdb, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL) !=
            SQLITE_OK ||
        pthread_create(&s->ckth, NULL, ck_main, s) != 0) {
        sqlite3_close(s->cdb);
        s->cdb = NULL;
        return;
    }
    pthread_setname_np(s->ckth, "rd-checkpoint"); /* named before open returns */
    sqlite3_wal_hook(s->db, on_wal, s);
}

/* The database and its WAL hold the chat hash key, message texts and
 * conversation ids: owner only, whatever the umask. SQLite gives the WAL
 * the database file's mode. */
static int secure_file(const char *path, char *err, size_t errsz) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errsz, "state store %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
        if (fchmod(fd, 0600) == 0)
            LOGW("state store %s was readable by others (mode %03o); now 0600", path,
                 (unsigned)(st.st_mode & 0777));
    }
    close(fd);
    return 0;
}

/* Versioned schema (PRAGMA user_version):
 *   0 -> 1  kv(ns, k, v)                      (before versions were kept)
 *   1 -> 2  kv.t: last write, for retention; incremental auto-vacuum */
static int sl_migrate(store_impl *s, char **msg, bool *vacuum) {
    sqlite3_stmt *q = NULL;
    int ver = 0, have_kv = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        ver = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE name='kv'", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        have_kv = 1;
    sqlite3_finalize(q);
    if (ver >= 2) return SQLITE_OK;
    int rc;
    if (!have_kv) {
        rc = sqlite3_exec(s->db,
                          "CREATE TABLE kv(ns TEXT NOT NULL, k TEXT NOT NULL, v BLOB,"
                          " t INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(ns, k)) WITHOUT ROWID;"
                          "PRAGMA user_version=2;",
                          NULL, NULL, msg);
    } else {
        rc = sqlite3_exec(s->db,
                          "ALTER TABLE kv ADD COLUMN t INTEGER NOT NULL DEFAULT 0;"
                          "PRAGMA user_version=2;",
                          NULL, NULL, msg);
        *vacuum = true;
    }
    return rc;
}

static store_impl *sl_open(const char *dir, const store_opts *o, char *err, size_t errsz) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errsz, "state_dir %s: cannot create: %s", dir, strerror(errno));
        return NULL;
    }
    struct stat dst;
    if (stat(dir, &dst) == 0 && (dst.st_mode & 077))
        LOGW("state_dir %s is accessible to group or others (mode %03o); chmod 700 it", dir,
             (unsigned)(dst.st_mode & 0777));
    char *path = xasprintf("%s/routerd.db", dir);
    if (secure_file(path, err, errsz)) {
        free(path);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        char *side = xasprintf("%s-%s", path, i ? "shm" : "wal");
        int bad = access(side, F_OK) == 0 && secure_file(side, err, errsz);
        free(side);
        if (bad) {
            free(path);
            return NULL;
        }
    }
    store_impl *s = xcalloc(1, sizeof *s);
    s->o = *o;
    atomic_init(&s->ok, true);
    atomic_init(&s->ck_due, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_mutex_init(&s->gmu, NULL);
    pthread_mutex_init(&s->dmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->dcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_cond_init(&s->ccv, NULL);
    pthread_mutex_init(&s->ckmu, NULL);
    s->gap_us = 1000000; /* no waiting until writes are seen to come close together */
    /* routerd is the database's only user: a second routerd on the same
     * state_dir fails at start instead of sharing the journal. */
    s->lockfd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (s->lockfd >= 0 && errno == EWOULDBLOCK)
            snprintf(err, errsz, "state store %s is locked: another routerd uses state_dir %s",
                     path, dir);
        else
            snprintf(err, errsz, "state store %s: %s", path, strerror(errno));
        free(path);
        sl_close(s);
        return NULL;
    }
    /* "unix-excl": one process-wide lock taken at the first access and the
     * WAL index in this process's memory, so a transaction costs no lock
     * syscalls; the two connections still share the index. Both must open
     * read-write: a read-only one would go back to per-transaction locks. */
    /* No global allocation statistics: they take one process-wide mutex
     * around every allocation SQLite makes, on every thread. Only takes
     * effect before SQLite initializes (the first store opened). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    const char *vfs = sqlite3_vfs_find("unix-excl") ? "unix-excl" : NULL;
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs);
    if (rc != SQLITE_OK) {
        snprintf(err, errsz, "state store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "open");
        free(path);
        sl_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 2000);
    sqlite3_extended_result_codes(s->db, 1);
    /* auto_vacuum first: a new database takes it only before WAL mode
     * writes its header; an existing one ignores it (see sl_migrate).
     * locking_mode stays NORMAL: an EXCLUSIVE connection would shut the
     * read connection out. The flock above keeps other routerds out. */
    char cache[48] = ""; /* per connection; SQLite's default is 2,000 KiB */
    if (o->cache_kib > 0)
        snprintf(cache, sizeof cache, " PRAGMA cache_size=%lld;", -(long long)o->cache_kib);
    char *sql = xasprintf("PRAGMA auto_vacuum=INCREMENTAL;"
                          " PRAGMA journal_mode=WAL;"
                          " PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=%lld;%s"
                          "BEGIN IMMEDIATE;", /* takes the lock now, not at the first write */
                          (long long)o->wal_limit_b, cache);
    char *msg = NULL;
    bool vacuum = false;
    rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    free(sql);
    if (rc == SQLITE_OK) rc = sl_migrate(s, &msg, &vacuum);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg);
    else
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    /* An existing database switches to incremental vacuum by one VACUUM. */
    if (rc == SQLITE_OK && vacuum)
        rc = sqlite3_exec(s->db, "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL, NULL, &msg);
    int en = 0;
    if (rc == SQLITE_OK && commit_sync(s, &en) != SQLITE_OK)
        msg = sqlite3_mprintf(WAL_SYNC_FAILED ": %s", strerror(en)), rc = SQLITE_IOERR;
    if (rc == SQLITE_OK) {
        rc = sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs);
        if (rc == SQLITE_OK) rc = sqlite3_exec(s->rdb, "PRAGMA query_only=1", NULL, NULL, NULL);
        if (rc == SQLITE_OK && *cache) rc = sqlite3_exec(s->rdb, cache, NULL, NULL, NULL);
        if (rc != SQLITE_OK) msg = sqlite3_mprintf("read connection: %s", sqlite3_errmsg(s->rdb));
    }
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(s->rdb, 2000);
        rc = prep_read(s, &s->get, "SELECT v, t FROM kv WHERE ns=?1 AND k=?2") ||
             prep_read(s, &s->scan, "SELECT k, v FROM kv WHERE ns=?1 AND k>=?2 ORDER BY k");
        if (rc != SQLITE_OK) msg = sqlite3_mprintf("%s", sqlite3_errmsg(s->rdb));
    }
    if (rc == SQLITE_OK)
        rc = prep(s, &s->wget, "SELECT v, t FROM kv WHERE ns=?1 AND k=?2") ||
             prep(s, &s->put, "INSERT OR REPLACE INTO kv(ns,k,v,t) VALUES(?1,?2,?3,?4)") ||
             prep(s, &s->add, "INSERT OR IGNORE INTO kv(ns,k,v,t) VALUES(?1,?2,?3,?4)") ||
             prep(s, &s->touch, "UPDATE kv SET t=?3 WHERE ns=?1 AND k=?2") ||
             prep(s, &s->del, "DELETE FROM kv WHERE ns=?1 AND k=?2") ||
             /* Two statements: with "(?3 IS NULL OR k<?3)" the planner
              * cannot bound the range and scans to the namespace's end. */
             prep(s, &s->delr, "DELETE FROM kv WHERE ns=?1 AND k>=?2 AND k<?3") ||
             prep(s, &s->delr_open, "DELETE FROM kv WHERE ns=?1 AND k>=?2") ||
             prep(s, &s->begin, "BEGIN IMMEDIATE") || prep(s, &s->commit, "COMMIT") ||
             prep(s, &s->rollback, "ROLLBACK") || prep(s, &s->sp, "SAVEPOINT w") ||
             prep(s, &s->sp_release, "RELEASE w") || prep(s, &s->sp_undo, "ROLLBACK TO w");
    if ((rc & 0xff) == SQLITE_BUSY) { /* not a routerd: the flock above would have said */
        snprintf(err, errsz,
                 "state store %s is locked by another program (the sqlite3 shell, a backup "
                 "tool): close it, or copy the database while routerd is stopped",
                 path);
        sqlite3_free(msg);
        free(path);
        sl_close(s);
        return NULL;
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errsz, "state store %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        free(path);
        sl_close(s);
        return NULL;
    }
    ck_start(s, path, vfs);
    free(path);
    s->last_deep = wall_s(s);
    return s;
}

static int step_reset(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static bool is_conv(const char *key) {
    return !strncmp(key, STORE_CONV_PREFIX, sizeof STORE_CONV_PREFIX - 1);
}

static rd_status sl_get(store_impl *s, const char *ns, const char *key, char **val, size_t *len) {
    /* On the writing connection while it is free: its page cache holds what
     * it wrote, where the read connection's is dropped at every commit
     * (a few pread calls per get). The read connection takes over while a
     * commit is in progress, so a get never waits for an fsync. */
    bool writer = pthread_mutex_trylock(&s->mu) == 0;
    if (!writer) pthread_mutex_lock(&s->rmu);
    sqlite3_stmt *q = writer ? s->wget : s->get;
    sqlite3_bind_text(q, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    rd_status st = RD_E_FATAL;
    bool touch = false;
    int64_t now = wall_s(s);
    if (sqlite3_step(q) == SQLITE_ROW) {
        int n = sqlite3_column_bytes(q, 0);
        const void *b = sqlite3_column_blob(q, 0);
        char *v = xmalloc((size_t)n + 1);
        if (n) memcpy(v, b, (size_t)n);
        v[n] = 0;
        *val = v;
        if (len) *len = (size_t)n;
        st = RD_OK;
        /* A conversation in use is not idle, even when its ids stay. */
        touch = is_conv(key) && sqlite3_column_int64(q, 1) < now - STORE_TOUCH_S;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (!writer) pthread_mutex_unlock(&s->rmu);
    if (touch) { /* at most once an hour per conversation */
        if (!writer) pthread_mutex_lock(&s->mu);
        sqlite3_bind_text(s->touch, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->touch, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->touch, 3, now);
        step_reset(s->touch);
    }
    if (writer || touch) pthread_mutex_unlock(&s->mu);
    return st;
}

static int apply(store_impl *s, const char *ns, const rd_kv_op *op, int64_t now) {
    sqlite3_stmt *st;
    switch (op->op) {
    case RD_KV_PUT:
        st = s->put;
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, op->val ? op->val : "", (int)op->val_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        break;
    case RD_KV_DEL:
        st = s->del;
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->key, -1, SQLITE_STATIC);
        break;
    case RD_KV_DEL_RANGE:
        st = op->key_end ? s->delr : s->delr_open;
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

/* The operating system's reason behind an I/O error, when it is one of
 * the space ones (errno may be stale otherwise). */
static int sys_errno(sqlite3 *db, int e) {
    int en = sqlite3_system_errno(db);
    if (en) return en;
    return e == ENOSPC || e == EFBIG || e == EDQUOT || e == EIO ? e : 0;
}

/* Notes the outcome of a commit (mu held). An episode's first failure is
 * logged with its real cause; failures that come back within a minute
 * (a disk that stays nearly full) belong to the same episode. */
static void note_commit(store_impl *s, int rc, const char *msg, int en) {
    sqlite3_int64 ch = sqlite3_total_changes64(s->db);
    bool wrote = ch != s->changes;
    s->changes = ch;
    if (rc == SQLITE_OK) {
        /* A commit that wrote nothing needs no space: it proves nothing. */
        if (s->failing && !wrote) return;
        if (s->failing && s->logged_fail) LOGI("state store: commits succeed again");
        s->failing = s->logged_fail = false;
        atomic_store(&s->ok, true);
        return;
    }
    int64_t now = mono_ms();
    if (!s->failing && (!s->last_fail_log || now - s->last_fail_log >= 60000)) {
        LOGE("state store: cannot commit: %s (%s%s%s); not ready until a commit succeeds", msg,
             sqlite3_errstr(rc), en ? ": " : "", en ? strerror(en) : "");
        s->last_fail_log = now;
        s->logged_fail = true;
    }
    s->failing = true;
    atomic_store(&s->ok, false);
    /* Disk full: a checkpoint moves the WAL into the database file and
     * truncates it, which is often what frees the space. */
    if ((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) ck_truncate(s);
}

/* Commits up to seq are durable (mu held): wakes kv_sync() waiters. */
static void durable_at(store_impl *s, uint64_t seq) {
    if (seq <= atomic_load(&s->durable)) return;
    atomic_store(&s->durable, seq);
    if (atomic_load(&s->dwaiters) > 0) {
        pthread_mutex_lock(&s->dmu);
        pthread_cond_broadcast(&s->dcv);
        pthread_mutex_unlock(&s->dmu);
    }
}

static int done_ok(int rc) {
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One transaction for the requests from first to last (mu held). Each
 * request runs in its own savepoint, so one that fails is undone alone;
 * a failed COMMIT fails them all. */
static void commit_group(store_impl *s, gc_req *first, gc_req *last) {
    int64_t now = wall_s(s);
    bool single = first == last && first->n == 1;
    /* Without a sync only when every request of the group allows it. */
    bool lazy = s->o.sync_full;
    for (gc_req *r = first; lazy; r = gc_next(r)) {
        lazy = r->lazy;
        if (r == last) break;
    }
    int rc = single ? SQLITE_OK : done_ok(step_reset(s->begin));
    char msg[256] = "";
    int en = 0;
    for (gc_req *r = first;; r = gc_next(r)) {
        r->rc = rc;
        if (rc == SQLITE_OK && !single) r->rc = done_ok(step_reset(s->sp));
        for (size_t i = 0; r->rc == SQLITE_OK && i < r->n; i++)
            r->rc = apply(s, r->ns, &r->ops[i], now);
        if (r->rc != SQLITE_OK && !*msg) {
            /* The cause, before a rollback replaces the connection's message. */
            snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(s->db));
            en = sys_errno(s->db, errno);
        }
        if (!single && rc == SQLITE_OK) {
            if (r->rc != SQLITE_OK) step_reset(s->sp_undo);
            int rel = done_ok(step_reset(s->sp_release));
            if (r->rc == SQLITE_OK) r->rc = rel;
        }
        atomic_fetch_add(&s->writes, 1);
        if (r == last) break;
    }
    /* A failed COMMIT, or a failed sync of one that must be durable, fails
     * every request of the group. */
    bool group_failed = false;
    if (!single && rc == SQLITE_OK && (rc = done_ok(step_reset(s->commit))) != SQLITE_OK) {
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(s->db));
        en = sys_errno(s->db, errno);
        group_failed = true;
    }
    if (!single && !sqlite3_get_autocommit(s->db)) step_reset(s->rollback);
    if (rc == SQLITE_OK && !lazy && (rc = commit_sync(s, &en)) != SQLITE_OK) {
        snprintf(msg, sizeof msg, WAL_SYNC_FAILED);
        group_failed = true;
    }
    for (gc_req *r = first; group_failed; r = gc_next(r)) {
        r->rc = rc;
        if (r == last) break;
    }
    atomic_fetch_add(&s->commits, 1);
    uint64_t seq = ++s->seq;
    int worst = SQLITE_OK;
    for (gc_req *r = first;; r = gc_next(r)) {
        if (r->rc != SQLITE_OK) worst = r->rc;
        r->seq = seq;
        if (r == last) break;
    }
    /* A synced commit (or, with state_sync = normal, any) covers all before
     * it; one that failed may have written frames it did not sync. */
    if (!lazy && rc == SQLITE_OK) durable_at(s, seq);
    note_commit(s, worst, msg, en);
}

static rd_status txn(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n, bool lazy,
                     uint64_t *seq) {
    for (size_t i = 0; i < n; i++)
        if (ops[i].op < RD_KV_PUT || ops[i].op > RD_KV_DEL_RANGE) {
            LOGE("state store: invalid operation in a transaction; nothing applied");
            return RD_E_INTERNAL;
        }
    if (!n) {
        if (seq) *seq = 0;
        return RD_OK;
    }
    gc_req me = {.ns = ns, .ops = ops, .n = n, .lazy = lazy};
    sem_init(&me.l.wake, 0, 0);
    int64_t t = mono_us();
    pthread_mutex_lock(&s->gmu);
    int64_t gap = t - s->last_arrival_us;
    s->gap_us += ((gap < 1000000 ? gap : 1000000) - s->gap_us) / 8;
    s->last_arrival_us = t;
    if (!gc_join(&s->gq, &me.l)) {
        if (s->gathering) { /* the head waits for a companion: here is one */
            s->gathering = false;
            sem_post(&s->gq.head->wake); /* under gmu: the head cannot be gone */
        }
        pthread_mutex_unlock(&s->gmu);
        if (!gc_await(&me.l)) { /* committed by its group's head */
            sem_destroy(&me.l.wake);
            if (seq) *seq = me.seq;
            return me.rc == SQLITE_OK ? RD_OK : RD_E_INTERNAL;
        }
        pthread_mutex_lock(&s->gmu);
    }
    /* Alone at the head while writes come faster than the delay (a steady
     * low rate, where groups would be of one): wait, bounded, for the next
     * writer to share this commit. A lazy one has no fsync to share. */
    int64_t delay = s->o.commit_delay_us;
    if (delay > 0 && !lazy && s->gq.tail == &me.l && s->gap_us < delay) {
        struct timespec dl = deadline_in(CLOCK_REALTIME, delay); /* sem_timedwait's clock */
        s->gathering = true;
        pthread_mutex_unlock(&s->gmu);
        while (sem_timedwait(&me.l.wake, &dl) != 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&s->gmu);
        s->gathering = false;
    }
    /* At the head: commit everything queued so far in one go. Requests that
     * arrive meanwhile wait for the next group. */
    gc_req *last = (gc_req *)s->gq.tail;
    pthread_mutex_unlock(&s->gmu);
    pthread_mutex_lock(&s->mu);
    commit_group(s, &me, last);
    pthread_mutex_unlock(&s->mu);
    gc_finish(&s->gmu, &s->gq, &me.l, &last->l);
    sem_destroy(&me.l.wake);
    if (seq) *seq = me.seq;
    return me.rc == SQLITE_OK ? RD_OK : RD_E_INTERNAL;
}

static rd_status sl_txn(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n,
                        const store_fence *f) {
    (void)f; /* one process: it always holds every lease */
    return txn(s, ns, ops, n, false, NULL);
}

static rd_status sl_txn_lazy(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n,
                             const store_fence *f, uint64_t *seq) {
    (void)f;
    return txn(s, ns, ops, n, true, seq);
}

static rd_status sl_sync(store_impl *s, uint64_t seq, int64_t wait_ms) {
    if (atomic_load(&s->durable) >= seq) return RD_OK;
    if (wait_ms > 0) {
        struct timespec dl = deadline_in(CLOCK_MONOTONIC, wait_ms * 1000); /* dcv's clock */
        pthread_mutex_lock(&s->dmu);
        atomic_fetch_add(&s->dwaiters, 1);
        while (atomic_load(&s->durable) < seq &&
               pthread_cond_timedwait(&s->dcv, &s->dmu, &dl) != ETIMEDOUT)
            ;
        atomic_fetch_sub(&s->dwaiters, 1);
        pthread_mutex_unlock(&s->dmu);
        if (atomic_load(&s->durable) >= seq) return RD_OK;
    }
    /* Nobody synced it meanwhile: an fsync of the WAL does. */
    pthread_mutex_lock(&s->mu);
    int rc = SQLITE_OK, en = 0;
    if (atomic_load(&s->durable) < seq) {
        rc = wal_sync(s, &en);
        if (rc == SQLITE_OK)
            durable_at(s, s->seq);
        else
            note_commit(s, rc, WAL_SYNC_FAILED, en);
    }
    pthread_mutex_unlock(&s->mu);
    return rc == SQLITE_OK ? RD_OK : RD_E_INTERNAL;
}

static rd_status sl_add(store_impl *s, const char *ns, const char *key, const void *val,
                        size_t len) {
    pthread_mutex_lock(&s->mu);
    sqlite3_bind_text(s->add, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->add, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s->add, 3, val ? val : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s->add, 4, wall_s(s));
    int rc = step_reset(s->add);
    atomic_fetch_add(&s->commits, 1); /* a transaction of its own */
    atomic_fetch_add(&s->writes, 1);
    bool added = rc == SQLITE_DONE && sqlite3_changes(s->db) > 0;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(s->db));
    int en = sys_errno(s->db, errno);
    int sr = added ? commit_sync(s, &en) : SQLITE_OK;
    if (sr != SQLITE_OK) {
        snprintf(msg, sizeof msg, WAL_SYNC_FAILED);
        added = false;
        rc = sr;
    }
    ++s->seq;
    if (added) durable_at(s, s->seq);
    note_commit(s, rc == SQLITE_DONE ? SQLITE_OK : rc, msg, en);
    pthread_mutex_unlock(&s->mu);
    if (rc != SQLITE_DONE) return RD_E_INTERNAL;
    return added ? RD_OK : RD_E_DUPLICATE;
}

typedef struct row {
    char *k;
    char *v;
    size_t n;
} row;

static rd_status visit_rows(row *rows, size_t nrows, rd_kv_visit_fn fn, void *arg) {
    bool stop = false;
    for (size_t i = 0; i < nrows; i++) {
        if (!stop && fn(arg, rows[i].k, rows[i].v, rows[i].n)) stop = true;
        free(rows[i].k);
        free(rows[i].v);
    }
    free(rows);
    return RD_OK;
}

static rd_status sl_scan(store_impl *s, const char *ns, const char *prefix, rd_kv_visit_fn fn,
                         void *arg) {
    row *rows = NULL;
    size_t nrows = 0, cap = 0;
    size_t plen = strlen(prefix);
    pthread_mutex_lock(&s->rmu);
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
    pthread_mutex_unlock(&s->rmu);
    return visit_rows(rows, nrows, fn, arg);
}

static int sl_lease(store_impl *s, const char *key, const char *holder, int64_t lease_ms,
                    int64_t *token) {
    (void)s, (void)key, (void)holder, (void)lease_ms;
    *token = 1; /* the exclusive file lock already makes this process the only one */
    return 1;
}

static void sl_release(store_impl *s, const char *key, const char *holder, int64_t token) {
    (void)s, (void)key, (void)holder, (void)token;
}

static void sl_maintain(store_impl *s, int64_t now) {
    pthread_mutex_lock(&s->mu);
    if (s->failing) {
        /* Nothing else may write while the disk is full: probe, so
         * readiness comes back by itself once there is space. */
        ck_truncate(s);
        char *msg = NULL;
        char *sql = xasprintf("INSERT OR REPLACE INTO kv(ns,k,v,t) VALUES('core','store_probe',"
                              "'%lld',%lld)",
                              (long long)now, (long long)now);
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        free(sql);
        int en = sys_errno(s->db, errno);
        const char *why = msg ? msg : sqlite3_errmsg(s->db);
        if (rc == SQLITE_OK && (rc = commit_sync(s, &en)) != SQLITE_OK) why = WAL_SYNC_FAILED;
        note_commit(s, rc, why, en);
        sqlite3_free(msg);
    }
    if (!s->failing && now - s->last_deep >= 3600) {
        s->last_deep = now;
        if (s->o.retention_s > 0) {
            sqlite3_stmt *q = NULL;
            if (sqlite3_prepare_v2(s->db, "DELETE FROM kv WHERE k>=?1 AND k<?2 AND t<?3", -1, &q,
                                   NULL) == SQLITE_OK) {
                sqlite3_bind_text(q, 1, STORE_CONV_PREFIX, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 2, STORE_CONV_END, -1, SQLITE_STATIC);
                sqlite3_bind_int64(q, 3, now - s->o.retention_s);
                if (sqlite3_step(q) == SQLITE_DONE && sqlite3_changes(s->db) > 0)
                    LOGI("state store: %d conversation(s) idle over %lld day(s) forgotten",
                         sqlite3_changes(s->db), (long long)(s->o.retention_s / 86400));
            }
            sqlite3_finalize(q);
        }
        /* Give free pages back to the file system, and keep the WAL short. */
        sqlite3_exec(s->db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
        ck_truncate(s);
    }
    pthread_mutex_unlock(&s->mu);
}

static bool sl_healthy(store_impl *s) {
    return atomic_load(&s->ok);
}

static const store_ops sqlite_ops = {
    .abi = STORE_ABI,
    .name = "sqlite",
    .open = sl_open,
    .close = sl_close,
    .get = sl_get,
    .txn = sl_txn,
    .add = sl_add,
    .txn_lazy = sl_txn_lazy,
    .sync = sl_sync,
    .scan = sl_scan,
    .lease = sl_lease,
    .release = sl_release,
    .maintain = sl_maintain,
    .healthy = sl_healthy,
};

/* ------------------------------------------------------------------------ */
/* The interface                                                             */

static void store_log(rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg("core", lvl, fmt, ap);
    va_end(ap);
}

store *store_open_with(const char *kind, const char *where, const char *module_dir,
                       const store_opts *o, char *err, size_t errsz) {
    store_opts opts = *o;
    if (!opts.log) opts.log = store_log;
    store *s = xcalloc(1, sizeof *s);
    if (!strcmp(kind, "sqlite")) {
        s->ops = &sqlite_ops;
    } else {
        /* module_dir is the plugin folder list: the first one with it. */
        char *file = xasprintf("store/store_%s.so", kind);
        char *path = plugin_find(module_dir ? module_dir : ".", file);
        if (!path) path = xasprintf("%s/%s", module_dir ? module_dir : ".", file);
        free(file);
        s->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!s->dl) {
            snprintf(err, errsz, "store = %s: cannot load %s: %s", kind, path, dlerror());
            free(path);
            free(s);
            return NULL;
        }
        store_entry_fn entry = (store_entry_fn)(uintptr_t)dlsym(s->dl, STORE_SYMBOL);
        s->ops = entry ? entry() : NULL;
        if (!s->ops || s->ops->abi != STORE_ABI) {
            snprintf(err, errsz, "store = %s: %s is not a routerd %d store module", kind, path,
                     STORE_ABI);
            free(path);
            dlclose(s->dl);
            free(s);
            return NULL;
        }
        free(path);
    }
    s->impl = s->ops->open(where, &opts, err, errsz);
    if (!s->impl) {
        if (s->dl) dlclose(s->dl);
        free(s);
        return NULL;
    }
    return s;
}

store *store_open(const char *dir, bool sync_full, char *err, size_t errsz) {
    store_opts o = {.sync_full = sync_full, .lease_ms = 10000, .wal_limit_b = 64 << 20};
    return store_open_with("sqlite", dir, NULL, &o, err, errsz);
}

void store_close(store *s) {
    if (!s) return;
    s->ops->close(s->impl);
    if (s->dl) dlclose(s->dl);
    free(s);
}

const char *store_kind(store *s) {
    return s ? s->ops->name : "none";
}

void store_commit_counts(store *s, uint64_t *commits, uint64_t *writes) {
    *commits = *writes = 0;
    if (!s || s->ops != &sqlite_ops) return;
    *commits = atomic_load(&s->impl->commits);
    *writes = atomic_load(&s->impl->writes);
}

rd_status store_get(store *s, const char *ns, const char *key, char **val, size_t *len) {
    if (!s) return RD_E_UNAVAILABLE; /* --check-config runs without a store */
    return s->ops->get(s->impl, ns, key, val, len);
}

rd_status store_txn_fenced(store *s, const char *ns, const rd_kv_op *ops, size_t n,
                           const store_fence *f) {
    if (!s) return RD_E_UNAVAILABLE;
    return s->ops->txn(s->impl, ns, ops, n, f);
}

rd_status store_txn_lazy(store *s, const char *ns, const rd_kv_op *ops, size_t n,
                         const store_fence *f, uint64_t *seq) {
    if (!s) return RD_E_UNAVAILABLE;
    if (s->ops->txn_lazy) return s->ops->txn_lazy(s->impl, ns, ops, n, f, seq);
    if (seq) *seq = 0;
    return s->ops->txn(s->impl, ns, ops, n, f);
}

rd_status store_sync(store *s, uint64_t seq, int64_t wait_ms) {
    if (!s) return RD_E_UNAVAILABLE;
    return s->ops->sync ? s->ops->sync(s->impl, seq, wait_ms) : RD_OK;
}

rd_status store_txn(store *s, const char *ns, const rd_kv_op *ops, size_t n) {
    return store_txn_fenced(s, ns, ops, n, NULL);
}

rd_status store_put(store *s, const char *ns, const char *key, const void *val, size_t len) {
    rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = val, .val_len = len};
    return store_txn(s, ns, &op, 1);
}

rd_status store_del(store *s, const char *ns, const char *key) {
    rd_kv_op op = {.op = RD_KV_DEL, .key = key};
    return store_txn(s, ns, &op, 1);
}

rd_status store_add(store *s, const char *ns, const char *key, const void *val, size_t len) {
    if (!s) return RD_E_UNAVAILABLE;
    return s->ops->add(s->impl, ns, key, val, len);
}

rd_status store_scan(store *s, const char *ns, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    if (!s) return RD_E_UNAVAILABLE;
    return s->ops->scan(s->impl, ns, prefix, fn, arg);
}

int store_lease(store *s, const char *key, const char *holder, int64_t lease_ms, int64_t *token) {
    if (!s) return -1;
    return s->ops->lease(s->impl, key, holder, lease_ms, token);
}

void store_release(store *s, const char *key, const char *holder, int64_t token) {
    if (s) s->ops->release(s->impl, key, holder, token);
}

void store_maintain(store *s, int64_t now) {
    if (s) s->ops->maintain(s->impl, now);
}

bool store_healthy(store *s) {
    return s && s->ops->healthy(s->impl);
}

static int hexval(int c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Registers a password and, when it is percent-encoded, its decoded form. */
static void add_password(const char *p, size_t n) {
    if (!n) return;
    char *raw = xstrndup(p, n), *dec = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (raw[i] == '%' && i + 2 < n + 1 && (h = hexval(raw[i + 1])) >= 0 &&
            (l = hexval(raw[i + 2])) >= 0) {
            dec[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            dec[o++] = raw[i];
        }
    }
    dec[o] = 0;
    secret_add(raw);
    if (*dec && strcmp(dec, raw)) secret_add(dec);
    free(raw);
    free(dec);
}

void store_url_secrets(const char *url) {
    if (!url) return;
    const char *scheme = strstr(url, "://");
    if (scheme) {
        /* postgresql://user:password@host/db?password=... */
        const char *auth = scheme + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
        if (at && (!slash || at < slash)) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon) add_password(colon + 1, (size_t)(at - colon - 1));
        }
        for (const char *q = strstr(url, "password="); q; q = strstr(q + 1, "password=")) {
            q += 9;
            add_password(q, strcspn(q, "&"));
        }
        return;
    }
    /* conninfo: password=secret or password='se cret' */
    for (const char *q = strstr(url, "password"); q; q = strstr(q + 1, "password")) {
        const char *v = q + 8;
        while (*v == ' ')
            v++;
        if (*v != '=') continue;
        v++;
        while (*v == ' ')
            v++;
        if (*v == '\'') {
            v++;
            add_password(v, strcspn(v, "'"));
        } else {
            add_password(v, strcspn(v, " "));
        }
    }
}
