/* The state-store interface between the core and its implementations:
 * sqlite (built in) and postgresql (store/store_postgresql.so, dlopen()ed
 * so the core binary does not need libpq). Not installed; the module is
 * built from this tree only, so both sides always share this header. */
#ifndef ROUTERD_STORE_H
#define ROUTERD_STORE_H

#include <routerd/plugin.h>

#include <stdbool.h>
#include <stdint.h>

#define STORE_ABI 1
#define STORE_SYMBOL "routerd_store_v1"

typedef struct store_impl store_impl;

/* A fenced write commits only while `holder` still holds lease `key` with
 * fencing token `token`, checked inside the same transaction. */
typedef struct store_fence {
    const char *key;
    const char *holder;
    int64_t token;
} store_fence;

typedef struct store_opts {
    bool sync_full;      /* sqlite: each commit fsyncs the WAL, as synchronous=FULL would */
    int64_t lease_ms;    /* lease length; bounds network timeouts */
    int64_t retention_s; /* conv: rows idle longer are deleted; 0 = keep */
    int64_t wal_limit_b; /* sqlite: journal_size_limit */
    int64_t cache_kib;   /* sqlite: page cache of each connection (0: SQLite's default) */
    /* sqlite: a writer that would commit alone waits up to this long for
     * another to share its fsync, only while writes arrive closer together
     * than that (0 = never waits) */
    int64_t commit_delay_us;
    void (*log)(rd_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    bool *unreachable;    /* out, may be NULL: open failed only because no server answered */
    int64_t (*now)(void); /* wall-clock seconds of writes; NULL = time() (simulations) */
} store_opts;

typedef struct store_ops {
    uint32_t abi; /* STORE_ABI */
    const char *name;
    store_impl *(*open)(const char *where, const store_opts *o, char *err, size_t errsz);
    void (*close)(store_impl *s);
    rd_status (*get)(store_impl *s, const char *ns, const char *key, char **val, size_t *len);
    /* All ops in one transaction; f (may be NULL) fences it. */
    rd_status (*txn)(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n,
                     const store_fence *f);
    /* Inserts unless the key exists: RD_OK inserted, RD_E_DUPLICATE kept. */
    rd_status (*add)(store_impl *s, const char *ns, const char *key, const void *val, size_t len);
    /* Rows are copied out before fn runs, so fn may use the store. */
    rd_status (*scan)(store_impl *s, const char *ns, const char *prefix, rd_kv_visit_fn fn,
                      void *arg);
    /* Acquires or renews: 1 held (*token set), 0 another holder has it,
     * -1 the store cannot say (unreachable). */
    int (*lease)(store_impl *s, const char *key, const char *holder, int64_t lease_ms,
                 int64_t *token);
    void (*release)(store_impl *s, const char *key, const char *holder, int64_t token);
    /* Upkeep, called every few seconds with the wall clock: reconnects,
     * probes a failing store, retention, vacuum, WAL checkpoint. */
    void (*maintain)(store_impl *s, int64_t now_s);
    /* False while the store cannot commit (unreachable, disk full). */
    bool (*healthy)(store_impl *s);
    /* Optional (NULL: txn, and every commit is durable). A commit without
     * a sync of its own; *seq gets its place. */
    rd_status (*txn_lazy)(store_impl *s, const char *ns, const rd_kv_op *ops, size_t n,
                          const store_fence *f, uint64_t *seq);
    /* Optional: RD_OK once commits up to seq are durable (waits up to
     * wait_ms for another commit to cover them, then syncs). */
    rd_status (*sync)(store_impl *s, uint64_t seq, int64_t wait_ms);
} store_ops;

typedef const store_ops *(*store_entry_fn)(void);

/* Keys with this prefix are conversations: retention applies to them. */
#define STORE_CONV_PREFIX "conv:"
#define STORE_CONV_END "conv;" /* first key after the prefix */
/* A conversation read after this long idle has its time refreshed. */
#define STORE_TOUCH_S 3600

#endif
