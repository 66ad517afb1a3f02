/*
 * routerd plugin ABI.
 *
 * A plugin is a shared object that exports exactly one symbol, the const
 * descriptor `routerd_plugin_v1`, defined with RD_PLUGIN_DEFINE(). The host
 * dlopen()s it, checks the ABI version and sizes, validates the manifest
 * section against the descriptor's option schema and then calls the ops.
 * Plugins link to nothing of the core: every service comes through the
 * rd_host table handed to create().
 *
 * Kinds:
 *   transport  receives chat messages (host->submit) and sends replies (send)
 *   backend    turns one request into one reply (handle); may block
 *   sink       observes events (event) and the metrics registry
 *   inbound    (1.3) takes work from outside on its own listener, asks
 *              people in chats (host->deliver) and takes their answers
 *              before routing (intercept)
 *
 * Threading:
 *   create/start/quiesce/stop/destroy run on the main thread, one at a time;
 *   start in manifest order, stop in reverse.
 *   backend handle() and transport send()/progress()/activity() run on host
 *   worker threads and may block. The host never runs two of them at once
 *   for the same chat, and runs different chats concurrently.
 *   sink event() runs on one dispatcher thread per sink instance.
 *   Every host function is thread-safe unless its comment says otherwise.
 *
 * Growth: structs only grow at the end. Each has a `size` member; readers
 * treat members beyond `size` as absent. Use RD_HAS(ptr, member) before
 * touching a member added after 1.0.
 *
 * Minimal backend (see plugins/backend_mock for a complete one):
 *
 *   typedef struct { const char *prefix; } conf;
 *   static const rd_option opts[] = {
 *       {.key = "prefix", .type = RD_OPT_STRING, .def = "echo: ", .help = "put first",
 *        RD_BIND(conf, prefix)},
 *       {0}};
 *   static const rd_host *H;
 *   static rd_status create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *e) {
 *       conf *c = calloc(1, sizeof *c);
 *       H = h; *self = c;
 *       return h->cfg_bind(ctx, c, sizeof *c, e);
 *   }
 *   static rd_status handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *e) {
 *       conf *c = self;
 *       H->reply_append(rp, c->prefix, strlen(c->prefix));
 *       H->reply_append(rp, rq->text, rq->text_len);
 *       return RD_OK;
 *   }
 *   static const rd_ops ops = {.size = sizeof ops, .create = create, .handle = handle};
 *   RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "echo", .version = "1.0",
 *                    .summary = "echoes", .options = opts, .ops = &ops);
 */
#ifndef ROUTERD_PLUGIN_H
#define ROUTERD_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Major: bumped when a plugin must be rebuilt; the symbol name carries it. */
#define RD_ABI_MAJOR 1
/* Minor: bumped when members are appended to a struct. */
#define RD_ABI_MINOR 7

#define RD_PLUGIN_SYMBOL "routerd_plugin_v1"

/* True when struct `p` (with a leading uint32_t size) contains member `m`. */
#define RD_HAS(p, m) (offsetof(__typeof__(*(p)), m) + sizeof((p)->m) <= (p)->size)

typedef struct rd_ctx rd_ctx;       /* opaque, one per plugin instance */
typedef struct rd_reply rd_reply;   /* opaque, host-owned reply being built */
typedef struct rd_metric rd_metric; /* opaque metric family */
typedef struct rd_series rd_series; /* opaque series: a family + label values */
typedef struct rd_send rd_send;     /* opaque, since 1.4: a send() finishing later */

typedef enum {
    RD_KIND_TRANSPORT = 1,
    RD_KIND_BACKEND = 2,
    RD_KIND_SINK = 3,
    RD_KIND_INBOUND = 4, /* since 1.3; manifest sections [inbound.NAME] */
} rd_kind;

typedef enum {
    RD_OK = 0,
    RD_PENDING = 1,        /* handle(): reply completes later via host->complete();
                              send() (1.4): finishes later via host->send_done() */
    RD_E_CONFIG = -1,      /* bad configuration: fatal at start */
    RD_E_RETRY = -2,       /* transient: worth retrying later */
    RD_E_TIMEOUT = -3,     /* deadline passed */
    RD_E_UNAVAILABLE = -4, /* peer down or not ready */
    RD_E_FATAL = -5,       /* permanent: do not retry */
    RD_E_FULL = -6,        /* submit(): queue full, nothing taken; try again later */
    RD_E_DUPLICATE = -7,   /* submit(): this update id is already known */
    RD_E_INTERNAL = -8,    /* bug or resource exhaustion */
    RD_E_WOULDBLOCK = -9,  /* send() with RD_OUT_NOWAIT (1.5): it would wait; nothing sent */
} rd_status;

/* Error detail returned beside a status. Messages must not contain secrets;
 * the host redacts known secret values again before printing. */
typedef struct rd_error {
    rd_status code;
    char klass[24]; /* failure classification: "transient", "fatal", "timeout", "protocol" */
    char msg[256];
} rd_error;

/* ------------------------------------------------------------------------ */
/* Configuration schema                                                      */

typedef enum {
    RD_OPT_STRING = 1,
    RD_OPT_INT,    /* 64-bit integer, bounded by min/max when min <= max */
    RD_OPT_BOOL,   /* true/false, yes/no, on/off, 1/0 */
    RD_OPT_DOUBLE, /* bounded by min/max when min <= max */
    RD_OPT_ENUM,   /* one of `choices` */
    RD_OPT_LIST,   /* comma separated strings */
    /* Since ABI 1.2. */
    RD_OPT_DURATION, /* "250ms", "30s", "5m", "2h", "1d"; a bare number is seconds.
                        min/max bound it in seconds; bound as int64_t milliseconds */
    RD_OPT_URL,      /* absolute http:// or https:// URL with a host, no whitespace */
} rd_opt_type;

#define RD_OPT_REQUIRED 0x1u /* must be present (a default does not count) */
#define RD_OPT_SECRET 0x2u   /* redacted in --print-config, logs and errors */

/* One configuration key. The host validates the manifest section against
 * the array before create(): unknown keys, bad types, out-of-range values
 * and missing required keys stop the start with the line that is wrong.
 *
 * Binding (since 1.2): a member declared with RD_BIND(conf_type, member)
 * is written by host->cfg_bind() into the plugin's own config struct. The
 * member's type follows the option type, and the loader refuses a plugin
 * whose member size does not match:
 *   STRING, URL  const char *          (host-owned, valid until destroy; NULL when
 *                                        absent without default)
 *   INT          int64_t
 *   BOOL         int                   (0 or 1)
 *   DOUBLE       double
 *   ENUM         int                   (index into choices; -1 when absent without default)
 *   LIST         const char *const *   (NULL-terminated, host-owned, never NULL)
 *   DURATION     int64_t               (milliseconds)
 * Absent keys without a default leave 0 / NULL except where noted. */
typedef struct rd_option {
    const char *key;
    rd_opt_type type;
    uint32_t flags;
    const char *def;            /* default, written as a user would; NULL = none */
    const char *help;           /* one line, shown by --list-plugins */
    double min, max;            /* INT/DOUBLE/DURATION bounds; ignored when min > max or both 0 */
    const char *const *choices; /* ENUM: NULL-terminated */
    /* ---- Since 1.2; the host reads them only when the plugin's
     * option_size covers them (arrays are walked with that stride). ---- */
    size_t offset;     /* RD_BIND: where cfg_bind() writes the value */
    uint32_t bind_len; /* RD_BIND: sizeof the member; 0 = not bound */
} rd_option;           /* arrays end with an element whose key is NULL */

/* Declares where cfg_bind() stores an option: {.key = "x", ..., RD_BIND(my_conf, x)} */
#define RD_BIND(type, member)                                                                      \
    .offset = offsetof(type, member), .bind_len = (uint32_t)sizeof(((type *)0)->member)

/* ------------------------------------------------------------------------ */
/* Messages crossing the boundary. All pointers are borrowed for the call. */

#define RD_MSG_EDITED 0x1u  /* an edit of an earlier message */
#define RD_MSG_GROUP 0x2u   /* from a group or channel, not a private chat */
#define RD_MSG_COMMAND 0x4u /* text starts with a bot command */
#define RD_MSG_CHOICE 0x8u  /* a choice picked from an earlier reply's choices (a button) */

/* A file travelling with a message (since 1.2). In rd_inbound and
 * reply_attach() the host copies it; in rd_request and rd_outbound it is
 * borrowed for the call. Either data/len or url is set. A url never carries
 * a credential (no bot token, no signed secret): receivers may log it. */
typedef struct rd_attachment {
    uint32_t size;
    const char *kind; /* "photo", "document", "voice", "audio", "video", "video_note",
                         "sticker", "animation"; NULL = decide from mime */
    const char *mime; /* "image/jpeg"; NULL = application/octet-stream */
    const char *name; /* file name; NULL = none */
    const void *data; /* the bytes, or NULL when only url is known */
    size_t len;
    const char *url; /* http(s) URL to fetch it from; NULL = none */
} rd_attachment;

/* What a transport hands to host->submit(). The host copies it. */
typedef struct rd_inbound {
    uint32_t size;
    int64_t update_id; /* strictly increasing per transport instance; the ack watermark */
    int64_t chat_id;
    int64_t user_id;
    int64_t message_id; /* replies quote it; 0 = none */
    int64_t thread_id;  /* forum topic; 0 = none */
    const char *text;   /* UTF-8, not necessarily NUL-terminated */
    size_t text_len;
    uint32_t flags;   /* RD_MSG_* */
    const char *meta; /* optional NUL-terminated JSON object for the backend; NULL = none */
    /* ---- Since 1.2 ---- */
    const rd_attachment *const *attachments; /* nattachments pointers; copied by submit() */
    size_t nattachments;
    /* ---- Since 1.3 ---- */
    int64_t reply_to; /* the message this one answers: the one it quotes, or the one whose
                         button was pressed (RD_MSG_CHOICE); 0 = none */
} rd_inbound;

/* What the host hands to a backend's handle(). */
typedef struct rd_request {
    uint32_t size;
    int64_t chat_id;
    int64_t user_id;
    int64_t message_id;
    const char *text; /* NUL-terminated, valid UTF-8 without NUL bytes (the host
                         replaces invalid sequences with U+FFFD at submit()) */
    size_t text_len;
    const char *persona;        /* persona tag resolved for this chat */
    const char *correlation_id; /* stable for this update; also the messageId seed */
    const char *traceparent;    /* W3C traceparent to propagate; NULL = none */
    int64_t deadline_ms;        /* host->now_ms() value after which to give up; 0 = none */
    const char *meta;           /* the transport's meta JSON, or NULL */
    uint32_t flags;             /* RD_MSG_* */
    int64_t update_id;
    /* ---- Since 1.2 ---- */
    const char *transport; /* instance name of the transport the update came from */
    const rd_attachment *const *attachments;
    size_t nattachments;
    /* ---- Since 1.3 ---- */
    int64_t reply_to; /* rd_inbound.reply_to */
} rd_request;

#define RD_OUT_NOTICE 0x1u     /* a failure or rate-limit notice, not an agent reply */
#define RD_OUT_FINAL_EDIT 0x2u /* edit_of is set: replace the progressive message */
/* (1.3) A question waiting for the person's answer: the transport may ask
 * for a reply (Telegram: force_reply when there are no choices). */
#define RD_OUT_QUESTION 0x4u
/* (1.5) Set only for a transport with RD_PF_NOWAIT_SEND, with out->done:
 * send() runs on a thread that must not wait (the backend's, as it
 * completes a call). Return RD_PENDING when the reply can go on without
 * this thread waiting; otherwise return RD_E_WOULDBLOCK having sent and
 * kept nothing: the host calls send() again, without the flag, from a
 * worker. */
#define RD_OUT_NOWAIT 0x8u

/* What the host hands to a transport's send()/progress()/activity(). */
typedef struct rd_outbound {
    uint32_t size;
    int64_t chat_id;
    int64_t thread_id;
    int64_t reply_to; /* message id to reply to; 0 = none */
    const char *text; /* NUL-terminated, may exceed the transport's limit */
    size_t text_len;
    uint32_t flags; /* RD_OUT_* */
    const char *correlation_id;
    int64_t edit_of; /* message id returned by progress(); 0 = send new */
    /* ---- Since 1.2 ---- */
    int64_t update_id;                       /* the update this answers; -1 = none */
    const rd_attachment *const *attachments; /* files to send with (or as) the reply */
    size_t nattachments;
    const char *const *choices; /* NULL-terminated answers to offer (buttons); NULL = none */
    /* ---- Since 1.3 ---- */
    int64_t *sent_id;   /* when not NULL, send() stores the id of the last message it sent (the
                           one carrying the choices), for answers that quote it; 0 = unknown */
    const char *caller; /* deliver(): the calling agent it is sent for; events name it,
                           transports ignore it; NULL = none */
    /* ---- Since 1.4 ---- */
    /* When not NULL, send() may return RD_PENDING and finish later with
     * host->send_done(done, ...), so no host thread waits on the network.
     * out and everything it points to are valid only during send(): copy
     * what the rest of the send needs. sent_id is then not written; the id
     * goes to send_done(). NULL: send() must finish before it returns. */
    rd_send *done;
} rd_outbound;

/* ------------------------------------------------------------------------ */
/* Events for sinks                                                          */

typedef enum {
    RD_EV_LOG = 1,     /* a log line: level, msg */
    RD_EV_RECEIVED,    /* an update entered the router */
    RD_EV_REJECTED,    /* not forwarded: status says why (allowlist, rate_limited, ...) */
    RD_EV_REPLIED,     /* round trip finished: reply or failure notice sent */
    RD_EV_SEND_FAILED, /* the transport could not deliver */
} rd_event_type;

typedef enum { RD_LOG_DEBUG = 0, RD_LOG_INFO, RD_LOG_WARN, RD_LOG_ERROR } rd_log_level;

/* Times are CLOCK_REALTIME nanoseconds; 0 = stage not reached. */
typedef struct rd_event {
    uint32_t size;
    rd_event_type type;
    rd_log_level level;
    int64_t ts_ns;
    const char *source;         /* "core" or "kind.instance" */
    const char *msg;            /* log text or short description; already redacted */
    const char *correlation_id; /* NULL for log lines outside a message */
    const char *chat_id_hash;   /* keyed hash of the chat id, hex; never the raw id */
    const char *persona;
    const char *transport; /* instance names */
    const char *backend;
    const char *status;        /* "ok", "failed", "rejected:allowlist", "rate_limited", ... */
    const char *failure_class; /* backend classification, or NULL */
    int64_t update_id;
    double latency_ms; /* receive to reply sent */
    int64_t t_received_ns, t_routed_ns, t_backend_start_ns, t_backend_end_ns, t_send_start_ns,
        t_send_end_ns;
    const char *trace_id;        /* 32 hex, the trace of this message */
    const char *span_id;         /* 16 hex, the root span; the backend call propagates a child */
    const char *backend_span_id; /* 16 hex, the span id sent to the agent in traceparent */
    /* ---- Since 1.3 ---- */
    const char *caller; /* the calling agent an inbound message is from (a delivery) or for
                           (a taken answer); NULL = none */
} rd_event;

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

typedef enum { RD_METRIC_COUNTER = 1, RD_METRIC_GAUGE, RD_METRIC_HISTOGRAM } rd_metric_type;

/* A read-only view of one series, for sinks that export the registry. */
typedef struct rd_series_view {
    uint32_t size;
    const char *const *label_values; /* nlabels entries */
    double value;                    /* counter/gauge */
    const double *bucket_le;         /* histogram upper bounds (without +Inf) */
    const uint64_t *bucket_counts;   /* cumulative counts, nbuckets entries, then +Inf */
    size_t nbuckets;
    uint64_t count;
    double sum;
} rd_series_view;

typedef struct rd_metric_view {
    uint32_t size;
    const char *name; /* Prometheus spelling: routerd_round_trip_seconds */
    const char *help;
    rd_metric_type type;
    const char *const *label_names;
    size_t nlabels;
} rd_metric_view;

typedef void (*rd_metric_visit_fn)(void *arg, const rd_metric_view *m, const rd_series_view *s);

/* ------------------------------------------------------------------------ */
/* Admin HTTP routes                                                         */

typedef struct rd_http_req {
    uint32_t size;
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;
    /* Returns the request header value (case-insensitive name) or NULL. */
    const char *(*header)(const struct rd_http_req *req, const char *name);
    void *impl;
} rd_http_req;

typedef struct rd_http_resp {
    uint32_t size;
    int status;               /* default 200 */
    const char *content_type; /* static string; default text/plain */
    char *body;               /* malloc()ed; the host frees it */
    size_t body_len;
    int retry_after_s; /* > 0 adds a Retry-After header */
} rd_http_resp;

/* Runs on an admin-server thread. Must not block for long. */
typedef void (*rd_http_fn)(void *arg, const rd_http_req *req, rd_http_resp *resp);

/* ------------------------------------------------------------------------ */
/* Key-value state store (crash-safe, shared by all instances, namespaced    */
/* per instance by the host).                                                 */

typedef enum { RD_KV_PUT = 1, RD_KV_DEL, RD_KV_DEL_RANGE } rd_kv_op_type;

typedef struct rd_kv_op {
    rd_kv_op_type op;
    const char *key; /* PUT/DEL: the key; DEL_RANGE: first key deleted (inclusive) */
    const void *val; /* PUT: value bytes */
    size_t val_len;
    const char *key_end; /* DEL_RANGE: end key (exclusive); NULL = to the last key */
} rd_kv_op;

/* Called for each row of a scan, in key order; return nonzero to stop. */
typedef int (*rd_kv_visit_fn)(void *arg, const char *key, const void *val, size_t len);

/* ------------------------------------------------------------------------ */
/* The host API, handed to create(). Valid until destroy() returns.          */

typedef struct rd_host {
    uint32_t size;
    uint32_t abi_minor;

    /* Logging. The host prefixes the instance ("backend.helper") and redacts. */
    void (*log)(rd_ctx *ctx, rd_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    void (*vlog)(rd_ctx *ctx, rd_log_level level, const char *fmt, va_list ap);

    /* Typed config of this instance, validated and defaulted. A key absent
     * without default gives NULL / 0. Strings and lists are owned by the
     * host and valid until destroy(). cfg_list returns a NULL-terminated
     * array, never NULL. cfg_int on an ENUM gives the index of the choice
     * (-1 when absent without default); cfg_int on a DURATION gives
     * milliseconds. Asking for a key the plugin did not declare, or with the
     * getter of another type, is a plugin bug: the host logs it and fails
     * the start. Prefer cfg_bind() (1.2). */
    const char *(*cfg_str)(rd_ctx *ctx, const char *key);
    int64_t (*cfg_int)(rd_ctx *ctx, const char *key);
    int (*cfg_bool)(rd_ctx *ctx, const char *key);
    double (*cfg_double)(rd_ctx *ctx, const char *key);
    const char *const *(*cfg_list)(rd_ctx *ctx, const char *key);
    int (*cfg_isset)(rd_ctx *ctx, const char *key); /* written in the manifest */

    /* Router facts: "env", "version", "build_sha", "instance", "kind",
     * "manifest_sha256", "state_dir", "admin_listen"; since ABI 1.1 also
     * "store" (sqlite or postgresql) and "lease_ms" ([router] lease_s in
     * ms); since 1.3 "transports" (the transport instance names,
     * comma-separated, from create() on). NULL if unknown. */
    const char *(*info)(rd_ctx *ctx, const char *what);

    /* Clock: monotonic milliseconds and wall-clock nanoseconds. */
    int64_t (*now_ms)(void);
    int64_t (*wall_ns)(void);

    /* Metrics. metric() only in create()/start(); returns an existing
     * family when name and shape match. label_names is NULL-terminated;
     * buckets (histograms, ascending, NULL = default) ends at nbuckets. */
    rd_metric *(*metric)(rd_ctx *ctx, rd_metric_type type, const char *name, const char *help,
                         const char *const *label_names, const double *buckets, size_t nbuckets);
    /* Resolve a series once and keep it; label_values has nlabels entries. */
    rd_series *(*series)(rd_metric *m, const char *const *label_values);
    void (*add)(rd_series *s, double v);     /* counter increment / gauge add */
    void (*set)(rd_series *s, double v);     /* gauge */
    void (*observe)(rd_series *s, double v); /* histogram */
    /* Visit every family and series (sinks). Values are a consistent-enough
     * snapshot: each series read atomically. */
    void (*metrics_visit)(rd_ctx *ctx, rd_metric_visit_fn fn, void *arg);

    /* Admin HTTP server. Only in create()/start(). path is exact. */
    rd_status (*http_route)(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                            void *arg);

    /* Readiness for /healthz: transports and backends call ready(ctx, 1, NULL)
     * once their handshake succeeded; ready(ctx, 0, why) when they lose it. */
    void (*ready)(rd_ctx *ctx, int ok, const char *reason);

    /* Transport intake. submit() copies the message and never blocks:
     * RD_OK queued, RD_E_FULL back-pressure (retry the same update later),
     * RD_E_DUPLICATE already queued or handled, RD_E_FATAL refused for
     * good (an attachment without data and url, more than [router]
     * max_attachments or max_attachment_bytes; logged): answer or skip() it.
     * The text reaches backends as valid UTF-8 without NUL bytes. skip() marks an update
     * handled without routing (ignored update kinds), so the watermark moves. */
    rd_status (*submit)(rd_ctx *ctx, const rd_inbound *in);
    void (*skip)(rd_ctx *ctx, int64_t update_id, const char *why);
    /* The transport's highest contiguous handled update id (-1 if none yet). */
    int64_t (*watermark)(rd_ctx *ctx);
    /* Ask the router to drain and exit (console transport at end of input). */
    void (*request_stop)(rd_ctx *ctx);
    /* True once draining started: stop taking new work. */
    int (*stopping)(rd_ctx *ctx);

    /* Backend replies. reply_append() adds text to the reply; reply_progress()
     * offers partial text for progressive display (the host may drop it; it
     * runs the transport's progress() on the calling thread, which may wait
     * for the chat's API: not from a thread other calls wait on);
     * complete() finishes a handle() that returned RD_PENDING (any thread). */
    void (*reply_append)(rd_reply *r, const char *text, size_t len);
    void (*reply_progress)(rd_reply *r, const char *text, size_t len);
    void (*complete)(rd_reply *r, rd_status st, const rd_error *err);
    /* True when the request should be abandoned (hard shutdown). */
    int (*cancelled)(rd_reply *r);

    /* State store, namespaced to this instance. get() returns a malloc()ed
     * NUL-terminated copy in *val (free with free()), RD_E_FATAL if absent.
     * txn() applies all ops in one committed transaction. scan() visits keys
     * with the given prefix in order. */
    rd_status (*kv_get)(rd_ctx *ctx, const char *key, char **val, size_t *len);
    rd_status (*kv_put)(rd_ctx *ctx, const char *key, const void *val, size_t len);
    rd_status (*kv_del)(rd_ctx *ctx, const char *key);
    rd_status (*kv_txn)(rd_ctx *ctx, const rd_kv_op *ops, size_t n);
    rd_status (*kv_scan)(rd_ctx *ctx, const char *prefix, rd_kv_visit_fn fn, void *arg);

    /* Copy src to dst (size dstsz, NUL-terminated) with every secret value of
     * the manifest replaced by "***". Returns the length written. */
    size_t (*redact)(rd_ctx *ctx, const char *src, char *dst, size_t dstsz);

    /* Fill err (code, classification, printf message). */
    void (*error)(rd_error *err, rd_status code, const char *klass, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

    /* ---- Added in ABI 1.1: check RD_HAS(host, member) before use. ---- */

    /* Like http_route, for a route that requires header `header` to equal
     * `secret` (compared in constant time). The host checks route, method,
     * secret and Content-Length from the request headers and answers
     * 404/405/401/413 before reading any body byte, so an unauthenticated
     * upload costs no memory. Only in create()/start(); the strings are
     * copied. The handler may still check the header itself. */
    rd_status (*http_route_auth)(rd_ctx *ctx, const char *method, const char *path,
                                 const char *header, const char *secret, rd_http_fn fn, void *arg);

    /* Leadership among replicas sharing the state store, for work only one
     * of them may do (long polling a bot): key names the work ("bot id").
     * Returns the current term (> 0) while this replica leads, 0 while
     * another one does or the store is unreachable. A new term means the
     * lead was lost in between: reload state from the store first. From
     * the first call on, this instance's kv writes are fenced: they fail
     * with RD_E_UNAVAILABLE unless it leads. Call before each poll and
     * before confirming; cheap (no I/O after the first call). With the
     * sqlite store (one process) it always leads. */
    int64_t (*lead)(rd_ctx *ctx, const char *key);

    /* Claims: expiring leases for work on one part of this instance's state
     * that one replica at a time may do (a chat of a webhook bot). With
     * release 0, acquires or renews `key` for this replica for [router]
     * lease_s: the claim's token (> 0) while held, 0 when another replica
     * holds it, -1 when the store cannot say. With release set to a token,
     * gives that claim up (returns 0). A dead replica's claims expire after
     * lease_s. Claims do not fence kv writes. Check RD_HAS first. */
    int64_t (*claim)(rd_ctx *ctx, const char *key, int64_t release);
    /* Inserts key unless it exists (in any replica): RD_OK inserted,
     * RD_E_DUPLICATE kept as it was. Not fenced. Check RD_HAS first. */
    rd_status (*kv_add)(rd_ctx *ctx, const char *key, const void *val, size_t len);

    /* ---- Added in ABI 1.2: check RD_HAS(host, member) before use. ---- */

    /* Writes every option declared with RD_BIND into conf (conf_size bytes,
     * the plugin's config struct), validated and defaulted. Call in
     * create(). RD_OK, or RD_E_CONFIG with err filled when a binding lies
     * outside conf_size. */
    rd_status (*cfg_bind)(rd_ctx *ctx, void *conf, size_t conf_size, rd_error *err);
    /* Adds a file to the reply (copied). RD_E_FULL past the host's
     * [router] max_attachments or max_attachment_bytes (all of the reply's
     * files together); RD_E_FATAL for one with neither data nor url. */
    rd_status (*reply_attach)(rd_reply *r, const rd_attachment *a);
    /* Offers answers the user can pick (buttons); NULL-terminated, copied;
     * a second call replaces the first. At most 10 choices of 1 to 64
     * bytes are kept (others are dropped with a warning). A pick comes back
     * as a request with RD_MSG_CHOICE and the text of the choice. */
    void (*reply_choices)(rd_reply *r, const char *const *choices);

    /* ---- Added in ABI 1.3: check RD_HAS(host, member) before use. ---- */

    /* Sends out (text, attachments, choices, RD_OUT_QUESTION) into chat
     * out->chat_id of the transport instance named `transport`, in that
     * chat's order: queued behind the messages already routed to it, run
     * by a worker like a reply. Waits until the transport's send()
     * returned, at most timeout_ms (0 = [router] request_timeout_s).
     * *sent_id (may be NULL) gets the id of the last message sent, 0 when
     * the transport does not tell. RD_E_UNAVAILABLE when the transport is
     * unknown or the router drains, RD_E_TIMEOUT when the wait ran out
     * (the send may still happen), else send()'s status with err filled.
     * Any thread, but not from a handle()/send()/intercept() of that
     * chat: it would wait for itself, so it is refused (RD_E_INTERNAL). */
    rd_status (*deliver)(rd_ctx *ctx, const char *transport, const rd_outbound *out,
                         int64_t timeout_ms, int64_t *sent_id, rd_error *err);
    /* Names what intercept() is taking, for the host's event of that
     * message: its correlation_id becomes correlation_id (the task id) and
     * caller its caller (may be NULL). Call from inside intercept() before
     * returning 1; ignored anywhere else. The strings are copied. */
    void (*answered)(rd_ctx *ctx, const char *correlation_id, const char *caller);

    /* ---- Added in ABI 1.4: check RD_HAS(host, member) before use. ---- */

    /* Finishes a send() that returned RD_PENDING (out->done): st and err as
     * send() would have returned them (err may be NULL for RD_OK), sent_id
     * as out->sent_id would have got (0 = unknown). Exactly once per
     * pending send, from any thread but not from inside that send(), and
     * before the transport's stop() returns (a stop gives up the sends
     * still running with RD_E_RETRY). The chat's next message waits for
     * it (unless the transport sets RD_PF_ORDERED_SEND, 1.7): per-chat
     * order holds. */
    void (*send_done)(rd_send *s, rd_status st, int64_t sent_id, const rd_error *err);

    /* ---- Added in ABI 1.6: check RD_HAS(host, member) before use. ---- */

    /* Like kv_txn, but the commit need not be durable when it returns: it
     * survives routerd being killed at once, and a crash of the machine
     * once the store's next durable commit (any instance's) or a
     * kv_sync() covers it. For writes whose loss the caller can undo
     * until then (a journal of updates not yet confirmed upstream).
     * *seq (may be NULL) gets the commit's place for kv_sync(). Fenced
     * like kv_txn. Stores that cannot defer a sync commit durably. */
    rd_status (*kv_txn_lazy)(rd_ctx *ctx, const rd_kv_op *ops, size_t n, uint64_t *seq);
    /* Returns RD_OK once every commit up to seq is durable: waits up to
     * wait_ms for another durable commit to cover it, then syncs itself
     * (may block for the disk). An error status when the sync failed:
     * nothing after the last durable commit is known to be kept. */
    rd_status (*kv_sync)(rd_ctx *ctx, uint64_t seq, int64_t wait_ms);
} rd_host;

/* ------------------------------------------------------------------------ */
/* Plugin operations. NULL members are "not supported"; the loader checks   */
/* the required set per kind.                                                */

typedef struct rd_ops {
    uint32_t size;

    /* All kinds. create() reads config and allocates; no threads or I/O
     * that can wait yet. start() begins work (threads, handshakes).
     * quiesce() stops intake at once (cancel a long poll) and returns.
     * stop() joins the plugin's threads; no host calls after it returns.
     * destroy() frees. create is required, the rest optional. */
    rd_status (*create)(const rd_host *host, rd_ctx *ctx, void **self, rd_error *err);
    rd_status (*start)(void *self, rd_error *err);
    void (*quiesce)(void *self);
    void (*stop)(void *self);
    void (*destroy)(void *self);

    /* Backend (required). May block until rq->deadline_ms. Add text with
     * host->reply_append(); return RD_OK, an error status with err filled
     * (text appended before an error is sent as the user-facing notice), or
     * RD_PENDING and call host->complete() later. */
    rd_status (*handle)(void *self, const rd_request *rq, rd_reply *rp, rd_error *err);

    /* Transport (send required). send() delivers a reply, splitting long
     * text as the medium requires; may block (rate limits, retries), or,
     * when out->done is set (1.4), return RD_PENDING and finish later.
     * progress() shows partial text: returns a message id to edit next time
     * in *msg_id (0 keeps sending new). activity(active) brackets backend
     * work (typing indicators). ack() tells the transport that every update
     * up to and including `watermark` is handled; it runs under the host's
     * routing lock: it must not block nor call submit/skip/watermark. */
    rd_status (*send)(void *self, const rd_outbound *out, rd_error *err);
    rd_status (*progress)(void *self, const rd_outbound *out, int64_t *msg_id, rd_error *err);
    void (*activity)(void *self, const rd_outbound *where, int active);
    void (*ack)(void *self, int64_t watermark);

    /* Sink (event required). event() runs on the sink's dispatcher thread
     * and should return quickly. flush() runs on that same thread after the
     * events queued before it: on SIGHUP (reopen log files there) and at
     * drain (send what is batched). */
    void (*event)(void *self, const rd_event *ev);
    rd_status (*flush)(void *self, rd_error *err);

    /* ---- Since 1.3 ---- */
    /* Inbound (required). Offered every message admitted for a persona
     * (allowlist, persona, rate limit passed) before its backend, on the
     * worker carrying that chat, so in chat order. Return 1 when the
     * message is this instance's (an answer it waits for): the host counts
     * it handled and calls no backend, so store what it needs first; call
     * host->answered() before to name the task in the host's event.
     * Return 0 to let it route on. Must not block for long. */
    int (*intercept)(void *self, const rd_request *rq);
} rd_ops;

#define RD_PF_LOGS 0x1u /* sink writes log lines: the host stops its own text log */
/* Never call handle() (backend) or send()/progress() (transport) of this
 * instance concurrently, even for different chats. The completion of a
 * handle() that returned RD_PENDING may overlap the next handle(). */
#define RD_PF_SERIAL 0x2u
/* (1.5) Transport: send() honours RD_OUT_NOWAIT and activity() does not
 * block. The host then sends an answer that completes later (RD_PENDING
 * from handle()) from the thread that completes it, saving a hand-off to a
 * worker per message. Ignored with RD_PF_SERIAL. */
#define RD_PF_NOWAIT_SEND 0x4u
/* (1.7) Transport: one chat's sends go out in the order send() was called,
 * including those that finish later (RD_PENDING, send_done()), and its
 * progress() shows nothing ahead of a reply still going out. The host then
 * starts a chat's next message as soon as send() has taken the reply
 * (returned RD_PENDING) instead of after send_done(); the update is still
 * acknowledged only at send_done(). Ignored with RD_PF_SERIAL. */
#define RD_PF_ORDERED_SEND 0x8u

typedef struct rd_plugin {
    uint32_t abi_major, abi_minor, size; /* filled by RD_PLUGIN_DEFINE */
    rd_kind kind;
    const char *name; /* must match the file name <kind>_<name>.so */
    const char *version;
    const char *summary;      /* one line */
    const rd_option *options; /* ends with a NULL key; NULL = no keys */
    const rd_ops *ops;
    uint32_t flags;          /* RD_PF_* */
    const void *reserved[4]; /* must be NULL */
    /* ---- Since 1.2 ---- */
    uint32_t option_size; /* sizeof(rd_option) the plugin was built with */
} rd_plugin;

#if defined(__GNUC__)
#define RD_EXPORT __attribute__((visibility("default")))
#else
#define RD_EXPORT
#endif

#define RD_PLUGIN_DEFINE(...)                                                                      \
    RD_EXPORT extern const rd_plugin routerd_plugin_v1;                                            \
    RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = RD_ABI_MAJOR,                      \
                                                   .abi_minor = RD_ABI_MINOR,                      \
                                                   .size = sizeof(rd_plugin),                      \
                                                   .option_size = sizeof(rd_option),               \
                                                   __VA_ARGS__}

#ifdef __cplusplus
}
#endif
#endif
