/*
 * The project's plugin tests on the plugin test kit (routerd/plugintest.h):
 * the kit's functions, plus the names the telegram (th_), a2a (ah_) and
 * sink tests grew up with. A test linked with a plugin's objects gets that
 * plugin chosen before main(); th_reset()/ah_reset() give each flavour's
 * router facts (instance "main" or "agent", env "test").
 */
#ifndef TESTS_FAKE_HOST_H
#define TESTS_FAKE_HOST_H

#include <routerd/plugintest.h>

#include <stddef.h>
#include <stdint.h>

/* ---- common ------------------------------------------------------------ */

typedef rdpt_msg th_msg;
typedef rdpt_file th_file;

/* A fresh machine (empty store, config, records), instance "main", a
 * host without lead() (one process, no replicas). */
void th_reset(void);
/* A fresh process: records and handled state cleared, store kept. */
void th_new_run(void);
/* Manifest key = value; NULL removes it. */
void th_cfg(const char *key, const char *val);
const rd_ops *th_ops(void);
/* The plugin linked into the test. */
const rd_plugin *th_plugin(void);
/* Kept for the sink tests: defaults come from the schema anyway. */
void th_defaults(void);
void th_info(const char *what, const char *value);
void th_secret(const char *value);
void th_set_now_ms(int64_t ms);
const char *th_logs(void);
rd_http_fn th_route(const char *path, void **arg);
/* The host table and context, for tests calling the ops themselves. */
#define th_host (*rdpt_host())
#define th_ctx (rdpt_ctx())

/* ---- transports (telegram) -------------------------------------------- */

/* create + start; NULL on failure (st/err say why, may be NULL). */
void *th_launch(rd_status *st, rd_error *err);
/* th_launch that must succeed (cmocka assert). */
void *th_launch_ok(void);
/* quiesce + stop + destroy (stops the echo worker first). */
void th_shutdown(void *self);
/* The same, returning the ms quiesce + stop took. */
long long th_shutdown_timed(void *self);
size_t th_msgs(th_msg **out, int include_skipped);
void th_msgs_free(th_msg *m, size_t n);
size_t th_submitted(void);
size_t th_skipped(void);
size_t th_wait_submitted(size_t n, int timeout_ms);
void th_set_full(int on);
size_t th_violations(void);
void th_echo_start(void *self, const char *prefix);
void th_echo_stop(void);
void th_ack_all(void *self);
void th_ack_upto(void *self, int64_t upto);
void th_kv_snapshot(void);
void th_kv_restore(void);
int th_ready(void);
int th_log_has(const char *needle);
/* Whether any log line or error contained the raw secret. */
int th_leaked(const char *secret);
/* Sum of a metric's series by label position (NULL = any value). */
double th_metric(const char *name, const char *label1, const char *label2);
/* POSTs body to the plugin's route with the Telegram secret header. */
int th_http_post(const char *path, const char *secret, const char *body, int *retry_after);
size_t th_kv_count(const char *prefix);
void th_kv_set(const char *key, const char *val);
char *th_kv_get(const char *key);
void th_kv_fail(int on);
long long th_now_ms(void);
/* Moves the host's wall clock (wall_ns) forward; th_reset does not undo it. */
void th_wall_advance_ms(long long ms);
void th_sleep_ms(int ms);

/* The telegram send-path fixture: a fake Bot API for `token`, and the
 * plugin's config reset and pointed at it with long-poll `timeout`
 * seconds, no pacing, no typing and fast retries. */
struct ftg;
struct ftg *th_fake_api(const char *token, const char *timeout);
/* Shuts the plugin down (self may be NULL), asserts that `secret` never
 * reached a log line, and stops the fake Bot API. */
void th_fake_api_stop(struct ftg *f, void *self, const char *secret);

/* ---- backends (a2a) ----------------------------------------------------- */

/* A fresh machine, instance "agent". */
void ah_reset(void);
void ah_cfg(const char *key, const char *val);
void *ah_launch(rd_status *st, rd_error *err);
void ah_shutdown(void *self);

typedef struct ah_result {
    rd_status st;
    rd_error err;
    char *text; /* reply text (malloc()ed) */
    int progress;
    char *last_progress;
    /* One line per reply_attach "name|mime|len|data or -|url or -" (data
     * up to 200 bytes; NULL = none), one line per choice (NULL = none). */
    char *files, *choices;
    rdpt_reply reply; /* everything, with timing */
} ah_result;

/* handle() for chat with a fresh correlation id; deadline_ms relative (0 =
 * none); traceparent NULL = none. */
ah_result ah_call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                  const char *traceparent);
/* The same for an update re-delivered under one id (meta names it as the
 * telegram transport does): update_id != 0 gives a stable messageId. */
ah_result ah_call_update(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                         const char *traceparent, int64_t update_id);
/* With text, flags and attachments (ABI 1.2). */
ah_result ah_call_files(void *self, int64_t chat, const char *text, uint32_t flags,
                        const rd_attachment *const *atts, size_t natts);
void ah_result_free(ah_result *r);
/* Instances launched from now on get a host without reply_attach and
 * reply_choices; ah_reset does not undo it. */
void ah_no_media(int on);
void ah_hard_stop(int on);
int ah_ready(char *reason, size_t sz);
int ah_wait_ready(int want, int timeout_ms);
double ah_metric(const char *name, const char *const *values);
int ah_logged(const char *needle);
char *ah_kv(const char *key);
void ah_kv_put(const char *key, const char *val);

#endif
