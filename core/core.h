/* Internal interfaces of the routerd core. Not installed. */
#ifndef ROUTERD_CORE_H
#define ROUTERD_CORE_H

#include <routerd/plugin.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#define EX_OK_ 0
#define EX_USAGE_ 64
#define EX_CONFIG_ 78

/* ---- util.c ------------------------------------------------------------ */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *str_trim(char *s);
int64_t mono_ms(void);
/* What a thread of this process is doing, from procfs: running (or
 * waiting for a CPU), waiting for a mutex, or asleep otherwise (a call, a
 * condition, a timer; also when procfs cannot tell). */
typedef enum { THREAD_RUNNING, THREAD_LOCK_WAIT, THREAD_ASLEEP } thread_state;
thread_state thread_state_of(int tid);
/* The time us microseconds from now on clock (CLOCK_REALTIME for a default
 * condition variable), for the timed waits. */
struct timespec deadline_in(clockid_t clock, int64_t us);
int64_t wall_ns(void);
void sha256_hex(const void *data, size_t len, char out[65]);
void hmac_sha256_hex(const void *key, size_t klen, const void *data, size_t len, char out[65]);
void random_bytes(void *buf, size_t n);
void random_hex(char *out, size_t nbytes); /* writes 2*nbytes hex + NUL */
uint64_t rand_u64(void);
size_t levenshtein(const char *a, const char *b);
/* Scrambles all 64 bits (MurmurHash3's finaliser), for table slots. */
uint64_t mix64(uint64_t x);
/* The did-you-mean among n candidates (close in edits, or extended by
 * key), or NULL. */
const char *suggest(const char *key, const char *const *cands, size_t n);
/* Parses a decimal int64 with nothing else but blanks; 0 on success. */
int parse_i64(const char *s, int64_t *out);
/* Splits a comma list into a NULL-terminated array of trimmed, non-empty
 * strings (one allocation per string plus the array). */
char **split_list(const char *s);
void free_list(char **l);
/* Copies s[0..len) to out as valid UTF-8 without NUL bytes: a NUL and each
 * maximal ill-formed subsequence (overlongs, surrogates, beyond U+10FFFF,
 * truncated) become U+FFFD. out (NULL: only count) needs 3 * len + 1
 * bytes; it is NUL-terminated. Returns the length written. */
size_t utf8_clean(const char *s, size_t len, char *out);
/* The same into a malloc()ed string; *out_len gets its length. */
char *utf8_clean_dup(const char *s, size_t len, size_t *out_len);

/* ---- log.c ------------------------------------------------------------- */
void log_init(void);
void log_set_level(rd_log_level lvl);
/* Once a sink with RD_PF_LOGS runs, the text log goes quiet: that sink
 * writes every line, errors included. */
void log_set_text(bool on);
/* Every line that passes the level, redacted, also goes to fn (NULL: to
 * nothing); the event fan-out sets it while sinks run. */
typedef void (*log_hook_fn)(const char *source, rd_log_level lvl, const char *msg);
void log_set_hook(log_hook_fn fn);
void log_msg(const char *source, rd_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(const char *source, rd_log_level lvl, const char *fmt, va_list ap);
#define LOGE(...) log_msg("core", RD_LOG_ERROR, __VA_ARGS__)
#define LOGW(...) log_msg("core", RD_LOG_WARN, __VA_ARGS__)
#define LOGI(...) log_msg("core", RD_LOG_INFO, __VA_ARGS__)
#define LOGD(...) log_msg("core", RD_LOG_DEBUG, __VA_ARGS__)
void log_reopen(void);
/* Secrets: every registered value, in its wire spellings and parts, is
 * replaced by *** in logs, events, metrics labels and errors (redact.c). */
void secret_add(const char *value);
size_t redact(const char *src, char *dst, size_t dstsz);
char *redact_dup(const char *src);

/* ---- env.c ------------------------------------------------------------- */
#define MANIFEST_MAX (1L << 20) /* bytes of a manifest */
#define ENV_FILE_MAX (1L << 20) /* bytes of an --env-file */
/* fopen() for a regular file of at most max bytes; NULL with a message. */
FILE *open_text_file(const char *path, const char *what, long max, char *err, size_t errsz);
/* Expands ${VAR} and ${VAR:-default}. Returns malloc()ed text, or NULL with
 * *bad set to the malloc()ed name of the undefined variable (or a syntax
 * message starting with a space). */
char *env_expand(const char *in, char **bad);
/* Loads a dotenv file into the environment (existing variables win).
 * Returns 0, or -1 with a message in err. */
int dotenv_load(const char *path, char *err, size_t errsz);
/* Parses one dotenv line; returns 1 with key/value set (malloc()ed), 0 for
 * blank/comment, -1 on a syntax error. */
int dotenv_parse_line(const char *line, char **key, char **val);

/* ---- manifest.c -------------------------------------------------------- */
typedef struct mf_kv {
    char *key, *raw, *val; /* raw as written, val expanded */
    int line;
    bool used;
} mf_kv;

typedef struct mf_section {
    char *name; /* "backend.helper" */
    char *kind; /* "backend" */
    char *inst; /* "helper" (empty for router) */
    int line;
    mf_kv *kv;
    size_t nkv;
} mf_section;

typedef struct manifest {
    char *path;
    mf_section *sec;
    size_t nsec;
    char sha256[65]; /* of the file bytes */
} manifest;

/* Parses and expands. On error returns NULL with a one-line message. */
manifest *manifest_load(const char *path, char *err, size_t errsz);
/* The same without ${VAR} expansion: val is the text as written. */
manifest *manifest_load_raw(const char *path, char *err, size_t errsz);
manifest *manifest_parse_string(const char *name, const char *text, char *err, size_t errsz);
void manifest_free(manifest *m);
mf_section *manifest_section(manifest *m, const char *name);
mf_kv *section_get(mf_section *s, const char *key);

/* ---- schema.c ---------------------------------------------------------- */
int parse_duration_ms(const char *s, int64_t *out);
int check_http_url(const char *s);
typedef struct cfg_val {
    const rd_option *opt;
    bool set;  /* written in the manifest */
    bool have; /* set or defaulted */
    char *str;
    int64_t i;
    double d;
    char **list;
} cfg_val;

typedef struct cfg_set {
    cfg_val *v;
    size_t n;
    rd_option *opts; /* the schema in this build's layout; v[i].opt points here */
} cfg_set;

/* Option arrays are walked with the element size the plugin was built
 * with: rd_plugin.option_size when the descriptor is large enough to carry
 * it, else the 1.0/1.1 layout, which ends before `offset`. Members beyond
 * the plugin's element size read as 0. */
#define RD_OPTION_SIZE_V1 offsetof(rd_option, offset)
size_t plugin_option_size(const rd_plugin *d);
/* The i-th element of an option array of the given element size. */
const rd_option *opt_step(const rd_option *opts, size_t opt_size, size_t i);
/* The i-th option of a plugin (i may reach the NULL-key terminator);
 * only the 1.0 members (key .. choices) may be read through it. */
const rd_option *opt_at(const rd_plugin *d, size_t i);
/* Size of the member a bound option of type t writes (0 for an unknown type). */
size_t bind_member_size(rd_opt_type t);

/* Validates section s against the options (NULL-key terminated) plus any
 * extra reserved keys. Unknown keys get a did-you-mean. On error: -1 and a
 * message "file:line: [section] key: problem". schema_apply() takes an
 * array of this build's rd_option; schema_apply_sized() one of opt_size
 * bytes per element (a plugin's: plugin_option_size()). */
int schema_apply(const manifest *m, mf_section *s, const rd_option *opts,
                 const char *const *reserved, cfg_set *out, char *err, size_t errsz);
int schema_apply_sized(const manifest *m, mf_section *s, const rd_option *opts, size_t opt_size,
                       const char *const *reserved, cfg_set *out, char *err, size_t errsz);
/* The core of host->cfg_bind(): writes every option of c declared with
 * RD_BIND into conf (conf_size bytes), as rd_option documents (ENUM absent
 * without default -1, LIST never NULL; strings and lists stay owned by c).
 * Nothing is written unless every binding fits: -1 with a message naming
 * the key in err when one lies outside conf_size or has the wrong size. */
int cfg_bind_set(const cfg_set *c, void *conf, size_t conf_size, char *err, size_t errsz);
void cfg_free(cfg_set *c);
cfg_val *cfg_find(cfg_set *c, const char *key);
const char *opt_type_name(rd_opt_type t);

/* ---- loader.c ---------------------------------------------------------- */
typedef struct plugin_so {
    char *path;
    void *dl;
    const rd_plugin *desc;
    char sha256[65]; /* of the file, hashed before dlopen */
} plugin_so;

/* plugin_dir is a comma-separated list of folders, searched in order. */
/* The path of file in the first folder of the list that has it (malloc()ed),
 * or NULL. */
char *plugin_find(const char *plugin_dirs, const char *file);
/* Loads (or finds in the cache) a plugin by name (<kind>_<name>.so in the
 * first folder that has it) or path. Checks the folder's and file's
 * permissions, the SHA-256 pin (hex, or NULL), ABI, sizes, kind and ops.
 * On error NULL with a message. */
plugin_so *plugin_load(const char *plugin_dir, rd_kind kind, const char *name_or_path,
                       const char *pin, char *err, size_t errsz);
void plugins_unload_all(void);
/* dlopen()s real (path as given, for messages) and checks its descriptor:
 * the descriptor with *dl set, or NULL with a message. No cache, no file
 * checks (plugin_load() adds those). */
const rd_plugin *plugin_dlopen(const char *path, const char *real, rd_kind want, void **dl,
                               char *err, size_t errsz);
/* The descriptor checks plugin_load() makes (want 0 = any kind): NULL, or
 * the problem (possibly written into tmp). */
const char *plugin_check_desc(const rd_plugin *d, rd_kind want, char *tmp, size_t tmpsz);
const char *kind_name(rd_kind k);
/* Lists the plugins the folders of the list offer (sorted per folder; a
 * name an earlier folder has is not listed again), for --list-plugins. */
int plugin_list(const char *plugin_dir, bool markdown, FILE *out);

/* ---- verify.c --------------------------------------------------------- */
int sha256_file_hex(const char *path, char out[65], char *err, size_t errsz);
/* -1 with the path in err when path is writable by group or others. */
int check_not_writable(const char *path, bool want_dir, char *err, size_t errsz);
/* Verifies the Ed25519 signature of the manifest's bytes (base64 from
 * $CONFIG_MANIFEST_SIGNATURE or PATH.sig) with key (a PEM file path or PEM
 * text). sha_out receives the SHA-256 of the bytes verified. */
int manifest_verify(const char *path, const char *key, char sha_out[65], char *err, size_t errsz);

/* ---- diffcfg.c --------------------------------------------------------- */
/* routerd -c A --diff-config B: exit 0, or 1 on drift above max_pct or a
 * missing required key (78 when a manifest cannot be read). */
int diff_config(const char *a, const char *b, double max_pct, const char *plugin_dir, FILE *out);

/* ---- sdnotify.c -------------------------------------------------------- */
/* systemd notification protocol on $NOTIFY_SOCKET; all calls are no-ops
 * without it. */
int sd_notify_init(void);
int sd_notify_send(const char *msg);
/* Keep-alive interval from $WATCHDOG_USEC/$WATCHDOG_PID: half the
 * timeout in ms, 0 when no watchdog is asked for. */
int64_t sd_watchdog_interval_ms(void);
void sd_notify_close(void);

/* ---- store.c ----------------------------------------------------------- */
typedef struct store store;
struct store_opts;
struct store_fence;
/* kind "sqlite" (where = state_dir) or the name of a module in
 * module_dir/store/ (where = its connection string). */
store *store_open_with(const char *kind, const char *where, const char *module_dir,
                       const struct store_opts *o, char *err, size_t errsz);
/* SQLite in dir with defaults (tests, tools). */
store *store_open(const char *dir, bool sync_full, char *err, size_t errsz);
void store_close(store *s);
const char *store_kind(store *s);
/* SQLite: transactions committed and write requests they carried (group
 * commit: writers waiting together share one commit). Zero elsewhere. */
void store_commit_counts(store *s, uint64_t *commits, uint64_t *writes);
rd_status store_get(store *s, const char *ns, const char *key, char **val, size_t *len);
rd_status store_put(store *s, const char *ns, const char *key, const void *val, size_t len);
rd_status store_del(store *s, const char *ns, const char *key);
rd_status store_txn(store *s, const char *ns, const rd_kv_op *ops, size_t n);
rd_status store_txn_fenced(store *s, const char *ns, const rd_kv_op *ops, size_t n,
                           const struct store_fence *f);
/* A commit without a sync of its own (state_sync = full); store_sync()
 * returns once commits up to seq are durable. See rd_host.kv_txn_lazy. */
rd_status store_txn_lazy(store *s, const char *ns, const rd_kv_op *ops, size_t n,
                         const struct store_fence *f, uint64_t *seq);
rd_status store_sync(store *s, uint64_t seq, int64_t wait_ms);
/* Inserts unless present: RD_OK inserted, RD_E_DUPLICATE already there. */
rd_status store_add(store *s, const char *ns, const char *key, const void *val, size_t len);
rd_status store_scan(store *s, const char *ns, const char *prefix, rd_kv_visit_fn fn, void *arg);
/* 1 held (token set), 0 held by another replica, -1 store unreachable. */
int store_lease(store *s, const char *key, const char *holder, int64_t lease_ms, int64_t *token);
void store_release(store *s, const char *key, const char *holder, int64_t token);
/* Upkeep every few seconds (now = wall-clock seconds). */
void store_maintain(store *s, int64_t now);
/* False while the store cannot commit. */
bool store_healthy(store *s);
/* Registers the password inside a store_url (URI or conninfo) as a secret. */
void store_url_secrets(const char *url);

/* ---- metrics.c --------------------------------------------------------- */
rd_metric *metric_family(rd_metric_type type, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t nb);
rd_series *metric_series(rd_metric *m, const char *const *values);
void series_add(rd_series *s, double v);
void series_set(rd_series *s, double v);
void series_observe(rd_series *s, double v);
double series_value(rd_series *s);
uint64_t series_count(rd_series *s);
void metrics_visit(rd_metric_visit_fn fn, void *arg);
void metrics_free_all(void);

/* ---- watermark.c ------------------------------------------------------- */
/* Tracks which update ids are handled; the watermark is the highest id
 * below which every id seen is handled. Not thread-safe by itself. */
typedef struct watermark {
    int64_t *ids;
    unsigned char *done;
    size_t head, len, cap; /* ring of pending ids, ascending */
    int64_t wm;            /* -1 before anything */
    int64_t max_seen;
} watermark;
void wm_init(watermark *w);
void wm_free(watermark *w);
/* 0 = added as pending, 1 = duplicate (handled or pending). */
int wm_add(watermark *w, int64_t id);
/* Marks id handled; returns true when the watermark moved. */
bool wm_done(watermark *w, int64_t id);
int64_t wm_get(const watermark *w);
/* Forgets a pending id (it was refused and will come again). */
void wm_remove(watermark *w, int64_t id);
size_t wm_pending(const watermark *w);

/* ---- ratelimit.c ------------------------------------------------------- */
typedef struct bucket {
    double tokens;
    int64_t last_ms;
    bool noticed; /* one notice per exhaustion */
} bucket;
/* Takes one token at now_ms with `per_minute` capacity and refill.
 * Returns 1 allowed, 0 denied (send a notice), -1 denied (already noticed).
 * per_minute <= 0 always allows. */
int bucket_take(bucket *b, int per_minute, int64_t now_ms);
bool bucket_full(const bucket *b, int per_minute, int64_t now_ms);

/* ---- fifo.c ------------------------------------------------------------ */
/* Intrusive FIFO: a chat's queued jobs, and the run queue of chats with
 * work (router.c). Not thread-safe by itself. */
typedef struct qnode {
    struct qnode *next;
} qnode;
typedef struct fifo {
    qnode *head, *tail;
    size_t len;
} fifo;
void fifo_push(fifo *f, qnode *n);
qnode *fifo_pop(fifo *f);

#endif
