/*
 * routerd plugin test kit: a fake routerd host for in-process plugin tests.
 *
 * It loads one plugin (a .so by path, or a descriptor linked into the test),
 * validates its configuration with the same schema code as the daemon
 * (types, bounds, enums, booleans, lists, unknown keys, required keys),
 * implements every rd_host call of the ABI this header ships with, and
 * records what the plugin does: submitted and skipped updates, replies with
 * their attachments and choices, log lines, metrics, readiness, routes and
 * the state store (in memory). The functions return a status and never
 * abort, so they fit any test framework (cmocka, plain assert(), ...).
 *
 * One plugin instance at a time per process. Thread-safe: a plugin's own
 * threads may call the host while the test calls these functions.
 *
 *   rdpt_load("./backend_echo.so", RD_KIND_BACKEND, err, sizeof err);
 *   rdpt_section("prefix = hi: \n", err, sizeof err);
 *   void *self = rdpt_start(&st, &e);
 *   rdpt_reply r;
 *   rdpt_call(self, &(rdpt_request){.chat_id = 1, .text = "x"}, &r);
 *   ... r.text is "hi: x" ...
 *   rdpt_reply_free(&r);
 *   rdpt_shutdown(self);            (quiesce, stop, destroy)
 *   rdpt_teardown_ok(err, sizeof err);
 *
 * Link with librouterd-plugintest (pkg-config routerd-plugintest, or the
 * CMake target routerd::plugintest).
 */
#ifndef ROUTERD_PLUGINTEST_H
#define ROUTERD_PLUGINTEST_H

#include <routerd/plugin.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The plugin under test                                                     */

/* dlopen()s path and checks its descriptor like routerd does (ABI version,
 * sizes, kind when want is not 0, ops, option types and bindings). 0, or -1
 * with the reason in err. Replaces a plugin chosen before. */
int rdpt_load(const char *path, rd_kind want, char *err, size_t errsz);
/* The same for a descriptor linked into the test program. */
int rdpt_use(const rd_plugin *desc, char *err, size_t errsz);
/* The plugin chosen, or NULL. */
const rd_plugin *rdpt_plugin(void);
/* The host table and context handed to create(), for tests driving the
 * ops themselves. */
const rd_host *rdpt_host(void);
rd_ctx *rdpt_ctx(void);

/* Switches off (on = 0) or back on an optional host call added after ABI
 * 1.0 ("http_route_auth", "lead", "claim", "kv_add", "cfg_bind",
 * "reply_attach", "reply_choices", "deliver", "answered", "kv_txn_lazy",
 * "kv_sync"), to test a plugin's fallback on an older host. Before
 * rdpt_start(); rdpt_reset() turns all on again. 0, or -1 for a name not
 * in that list. */
int rdpt_offer(const char *call, int on);

/* Presents the host table of ABI 1.minor (shorter: RD_HAS() finds the
 * later calls absent), to test a plugin on an older routerd. Before
 * rdpt_start(); rdpt_reset() restores the current one. 0, or -1 for a
 * minor newer than this kit's. */
int rdpt_set_host_minor(uint32_t minor);

/* A fresh machine: configuration, store, records, logs, metrics, routes,
 * router facts and the clock forgotten (the plugin stays chosen). An
 * instance a failed test left running is shut down first. */
void rdpt_reset(void);
/* A fresh process: records, routes, readiness and flags cleared, the
 * configuration and the state store kept (a restart). */
void rdpt_new_run(void);

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

/* Replaces the configuration with the body of a manifest section
 * ("key = value" lines, ; comments, ${VAR} expanded) and validates it
 * against the plugin's options like routerd does. 0, or -1 with the
 * daemon's message in err (the configuration is then still replaced, so
 * rdpt_start() refuses it too). */
int rdpt_section(const char *text, char *err, size_t errsz);
/* Sets one key to a value as routerd sees it after ${VAR} expansion (so
 * any text, a line break included); NULL removes it. */
void rdpt_set(const char *key, const char *value);
/* Validates the current configuration: 0, or -1 with the message. */
int rdpt_check(char *err, size_t errsz);
/* A router fact for host->info() ("env", "instance", "store", ...); NULL
 * removes it. "kind" follows the plugin. */
void rdpt_info(const char *what, const char *value);
/* A value host->redact() masks (secret options are registered by the
 * schema already). */
void rdpt_secret(const char *value);
/* Pins host->now_ms(); 0 returns to the monotonic clock. */
void rdpt_set_now_ms(int64_t ms);
/* Moves host->wall_ns() forward by ms (cumulative; rdpt_reset() keeps it). */
void rdpt_wall_advance_ms(long long ms);

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */

/* Validates the configuration, then create() and start(). The instance, or
 * NULL with *st and err saying why (a configuration error is RD_E_CONFIG
 * with the daemon's message; a config getter asked during create() or
 * start() for a key the plugin did not declare, or with the getter of
 * another type, fails it too, as in routerd). st and err may be NULL. */
void *rdpt_start(rd_status *st, rd_error *err);
/* quiesce(), stop() and destroy(); returns the milliseconds quiesce and
 * stop took. NULL is a no-op returning 0. */
long long rdpt_shutdown(void *self);
/* For a test that tore self down through the plugin's ops itself: without
 * it, the next rdpt_reset() would shut self down again. */
void rdpt_forget_instance(void *self);
/* After rdpt_shutdown(): 0 when the teardown was clean (no host call after
 * stop() returned, no backend reply left pending), else -1 with what. */
int rdpt_teardown_ok(char *err, size_t errsz);
/* Plugin bugs seen so far (getters for undeclared keys, metric() after
 * start, ...): their number, and the first one's text in buf. */
size_t rdpt_misuses(char *buf, size_t bufsz);
/* host->stopping() answers 1 from now on. */
void rdpt_set_stopping(int on);
/* host->cancelled() answers 1 from now on (the router's hard stop). */
void rdpt_set_cancelled(int on);
/* Whether the plugin called host->request_stop(). */
int rdpt_stop_requested(void);

/* ------------------------------------------------------------------------ */
/* Backends                                                                  */

typedef struct rdpt_request {
    int64_t chat_id, user_id, message_id, update_id;
    const char *text;           /* NUL-terminated */
    const char *persona;        /* NULL = "default" */
    const char *transport;      /* NULL = "console" */
    const char *correlation_id; /* NULL = one made up per call */
    const char *traceparent;    /* NULL = none */
    const char *meta;           /* NULL = none */
    uint32_t flags;             /* RD_MSG_* */
    int64_t deadline_ms;        /* relative to the call; 0 = none */
    const rd_attachment *const *attachments;
    size_t nattachments;
    int64_t reply_to; /* (1.3) the message this one answers; 0 = none */
} rdpt_request;

typedef struct rdpt_file {
    char *kind, *mime, *name, *url; /* "" when not given */
    unsigned char *data;            /* NULL when not given */
    size_t len;
} rdpt_file;

typedef struct rdpt_reply {
    rd_status st; /* handle()'s status, or complete()'s after RD_PENDING */
    rd_error err;
    char *text; /* reply_append() text, never NULL */
    size_t len;
    int progress;        /* reply_progress() calls */
    char *last_progress; /* NULL when none */
    rdpt_file *files;    /* reply_attach() copies */
    size_t nfiles;
    char **choices; /* reply_choices(), NULL-terminated; NULL when none */
    int pending;    /* handle() returned RD_PENDING */
    long long elapsed_ms;
    long long late_ms; /* past the deadline when it finished; 0 = in time */
} rdpt_reply;

/* Calls handle() like a host worker; after RD_PENDING waits for
 * host->complete() until the deadline (plus one second) or 30 s without
 * one. RD_OK when the call ran (the plugin's status is in out->st), -1
 * when no backend is loaded or the completion never came. */
int rdpt_call(void *self, const rdpt_request *rq, rdpt_reply *out);
void rdpt_reply_free(rdpt_reply *r);
/* Limits reply_attach() enforces (RD_E_FULL past them); defaults 10 files
 * and 20 MiB like [router] max_attachments and max_attachment_bytes. */
void rdpt_set_attach_limits(size_t max_files, size_t max_bytes);
/* reply_progress() takes ms before it returns, as a transport's progress()
 * that waits for its API would (0, the default: at once). A backend should
 * not let other calls wait behind it. */
void rdpt_set_progress_delay_ms(int ms);

/* ------------------------------------------------------------------------ */
/* Transports                                                                */

typedef struct rdpt_msg {
    int64_t id; /* update_id given to submit/skip */
    int64_t chat_id, user_id, message_id, thread_id;
    char *text;
    uint32_t flags;
    char *meta;
    int skipped;
    char why[32];
    rdpt_file *files; /* attachments, copied */
    size_t nfiles;
} rdpt_msg;

/* Copies of everything submitted (and skipped when include_skipped), in
 * order; free with rdpt_msgs_free(). */
size_t rdpt_msgs(rdpt_msg **out, int include_skipped);
void rdpt_msgs_free(rdpt_msg *m, size_t n);
size_t rdpt_submitted(void);
size_t rdpt_skipped(void);
/* Waits until at least n were submitted (skips not counted); returns how
 * many were. */
size_t rdpt_wait_submitted(size_t n, int timeout_ms);
/* submit() answers RD_E_FULL while on. */
void rdpt_set_full(int on);
/* Ordering violations: an update id not above the one before it. */
size_t rdpt_violations(void);
/* Marks updates with id <= upto handled (all of them for INT64_MAX) and
 * calls ack() with the new watermark. */
void rdpt_ack_upto(void *self, int64_t upto);
/* Calls send() like the router: out is completed with size and defaults;
 * with a host of ABI 1.4 it offers out->done and, when send() returns
 * RD_PENDING, waits for host->send_done() and returns its status (and
 * RD_E_INTERNAL when send_done() came more than once). With a host of 1.5
 * and a transport with RD_PF_NOWAIT_SEND, the first call carries
 * RD_OUT_NOWAIT and, when it answers RD_E_WOULDBLOCK, a second one
 * without it follows, as the router's worker would make. */
rd_status rdpt_send(void *self, const rd_outbound *out, rd_error *err);
/* Like rdpt_send() but without waiting, as a router does with a transport
 * that keeps a chat's sends in order (RD_PF_ORDERED_SEND): *st is send()'s
 * answer; when it is RD_PENDING the send is returned, to be ended with
 * rdpt_send_wait() (which frees it), else NULL. */
rd_send *rdpt_send_start(void *self, const rd_outbound *out, rd_status *st, rd_error *err);
/* Waits for s's send_done(): its status (RD_E_INTERNAL when it came more
 * than once), err and the message id it named. */
rd_status rdpt_send_wait(rd_send *s, rd_error *err, int64_t *sent_id);
/* rdpt_send() calls now waiting for their send_done(). */
size_t rdpt_pending_sends(void);
/* rdpt_send() calls whose RD_OUT_NOWAIT try answered RD_E_WOULDBLOCK. */
size_t rdpt_nowait_refused(void);
/* A worker answering every submitted update with prefix + text through
 * send(), then marking it handled and acking (skips move the watermark
 * too). */
void rdpt_echo_start(void *self, const char *prefix);
void rdpt_echo_stop(void);

/* ------------------------------------------------------------------------ */
/* Inbound plugins (ABI 1.3)                                                 */

/* One host->deliver() call, as the plugin made it. */
typedef struct rdpt_delivery {
    char *transport;
    int64_t chat_id, thread_id, reply_to;
    char *text;
    uint32_t flags; /* RD_OUT_* */
    char *correlation_id;
    char *caller;   /* rd_outbound.caller; NULL when none */
    char **choices; /* NULL-terminated; NULL when none */
    rdpt_file *files;
    size_t nfiles;
    int64_t timeout_ms;
    rd_status st;    /* what deliver() returned */
    int64_t sent_id; /* what it stored in *sent_id */
} rdpt_delivery;

/* What the next deliver() calls answer: st (err filled when not RD_OK);
 * with RD_OK the first call gets sent_id first_sent_id and each later one
 * the next number (first_sent_id 0: always 0, the transport does not tell).
 * Each call first waits delay_ms. Default: RD_OK, 1001, no delay;
 * rdpt_new_run() restores RD_OK and no delay but keeps counting ids. */
void rdpt_deliver_result(rd_status st, int64_t first_sent_id, int delay_ms);
/* Copies of the deliver() calls so far, in order; free with
 * rdpt_deliveries_free(). */
size_t rdpt_deliveries(rdpt_delivery **out);
void rdpt_deliveries_free(rdpt_delivery *d, size_t n);
size_t rdpt_delivered(void);
/* Waits until at least n deliver() calls returned; returns how many did. */
size_t rdpt_wait_delivered(size_t n, int timeout_ms);
/* One host->answered() call: the task id and caller it named (NULL when
 * passed NULL); inside = made from within rdpt_intercept() on its thread,
 * where the router heeds it (elsewhere it is ignored). */
typedef struct rdpt_answered {
    char *correlation_id;
    char *caller;
    int inside;
} rdpt_answered;
/* Copies of the answered() calls so far, in order; free with
 * rdpt_answers_free(). rdpt_new_run() forgets them. */
size_t rdpt_answers(rdpt_answered **out);
void rdpt_answers_free(rdpt_answered *a, size_t n);
/* Offers rq to the instance's intercept() as a worker does with an
 * admitted message (defaults as rdpt_call: transport NULL = "console").
 * 1 taken, 0 routed on, -1 when no inbound plugin is loaded. */
int rdpt_intercept(void *self, const rdpt_request *rq);
/* The same with a request the test built itself, passed as it is (a
 * shorter rq->size plays an older routerd). */
int rdpt_intercept_rq(void *self, const rd_request *rq);

/* ------------------------------------------------------------------------ */
/* Observations                                                              */

/* 1 when a log line (or an error message the plugin filled) contains
 * needle. Lines are kept as the plugin wrote them, unredacted, so that a
 * test can look for a leaked secret. */
int rdpt_logged(const char *needle);
/* How often needle occurs in the log lines so far (safe while the plugin's
 * threads log, unlike reading rdpt_logs()). */
int rdpt_log_count(const char *needle);
/* All log lines so far, each "<level digit> <text>\n"; owned by the kit,
 * valid until the next log line or reset. */
const char *rdpt_logs(void);
/* Sum over a family's series whose label values include every listed value
 * (NULL-terminated list; NULL = every series). Counters and gauges give
 * their value, histograms their count. */
double rdpt_metric(const char *name, const char *const *values);
/* The same with label values by position (n of them; a NULL entry matches
 * any value). */
double rdpt_metric_at(const char *name, size_t n, const char *const *values);
/* Sum of a histogram's observations. */
double rdpt_metric_sum(const char *name, const char *const *values);
/* Readiness as last reported (0 before any), and its reason. */
int rdpt_ready(char *reason, size_t sz);
int rdpt_wait_ready(int want, int timeout_ms);

/* Calls a route the plugin registered, like the admin server would
 * (auth routes answer 401 on a wrong or missing header without calling
 * the plugin). headers: name, value pairs, NULL-terminated. Returns the
 * HTTP status (404 without such route); the body (malloc()ed) goes to
 * *body when body is not NULL. */
int rdpt_http(const char *method, const char *path, const char *const *headers,
              const char *req_body, char **body, int *retry_after);
/* The handler registered for path (any method), or NULL. */
rd_http_fn rdpt_route(const char *path, void **arg);

/* The state store, as the plugin's namespace. */
char *rdpt_kv_get(const char *key); /* malloc()ed copy or NULL */
void rdpt_kv_set(const char *key, const char *value);
size_t rdpt_kv_count(const char *prefix);
/* Replicas sharing the store: while held, another replica holds claim key
 * (host->claim() answers 0 for it); held 0 lets it go, as when that
 * replica's lease ran out. rdpt_reset() forgets them. */
void rdpt_claim_other(const char *key, int held);
/* Writes fail with RD_E_INTERNAL while on. */
void rdpt_kv_fail(int on);
/* kv_sync() fails with RD_E_INTERNAL while on (a disk that cannot sync);
 * rdpt_reset() turns it off. */
void rdpt_kv_sync_fail(int on);
/* Each write commits ms later (a slow disk); 0 = at once. rdpt_reset()
 * sets 0. */
void rdpt_kv_delay(int ms);
/* Saves / restores the whole store (a crash keeps it as it was). */
void rdpt_kv_snapshot(void);
void rdpt_kv_restore(void);

/* Monotonic milliseconds and a sleep, for waits in tests. */
long long rdpt_now_ms(void);
void rdpt_sleep_ms(int ms);

#ifdef __cplusplus
}
#endif
#endif
