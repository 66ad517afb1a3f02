/*
 * A fake routerd host for in-process tests of the telegram transport: it
 * implements rd_host (config from a table with the schema's defaults, an
 * in-memory state store that survives plugin restarts, submit/skip with
 * ordering checks, back-pressure on demand, metrics, routes, logs) and can
 * run an echo worker that answers through the plugin's send() and acks.
 */
#ifndef TEST_TELEGRAM_HOST_H
#define TEST_TELEGRAM_HOST_H

#include <routerd/plugin.h>
#include <stddef.h>
#include <stdint.h>

typedef struct th_file {
    char kind[16], mime[96], name[128];
    unsigned char *data;
    size_t len;
} th_file;

typedef struct th_msg {
    int64_t id; /* update_id given to submit/skip */
    int64_t chat_id, user_id, message_id, thread_id;
    char *text;
    uint32_t flags;
    char *meta;
    int skipped;
    char why[32];
    th_file *files; /* copies of the attachments */
    size_t nfiles;
} th_msg;

/* A fresh "machine": empty store, config, records. */
void th_reset(void);
/* A fresh "process": records and handled state cleared, store kept. */
void th_new_run(void);
void th_cfg(const char *key, const char *val);

const rd_ops *th_ops(void);
/* create + start; returns the instance or NULL (st/err say why). */
void *th_launch(rd_status *st, rd_error *err);
/* quiesce + stop + destroy (stops the echo worker first). */
void th_shutdown(void *self);
/* Like th_shutdown, but quiesce only, returning the ms it took to
 * quiesce + stop. */
long long th_shutdown_timed(void *self);

/* Copies of everything submitted or skipped, in order. */
size_t th_msgs(th_msg **out, int include_skipped);
void th_msgs_free(th_msg *m, size_t n);
size_t th_submitted(void);
size_t th_skipped(void);
/* Waits until at least n were submitted (not counting skips). */
size_t th_wait_submitted(size_t n, int timeout_ms);
/* Submits fail with RD_E_FULL while on. */
void th_set_full(int on);
/* Ordering violations (an id not above the previous one) and duplicate
 * submits of the same id. */
size_t th_violations(void);

/* Echo worker: sends "echo: <text>" for every submitted message through
 * the plugin, then marks it handled and acks. */
void th_echo_start(void *self, const char *prefix);
void th_echo_stop(void);
/* Marks everything handled and acks. */
void th_ack_all(void *self);
/* Marks records with id <= upto handled and acks. */
void th_ack_upto(void *self, int64_t upto);
/* Saves / restores the whole state store (a crash leaves the store as it
 * was at the instant of the kill). */
void th_kv_snapshot(void);
void th_kv_restore(void);

/* The send-path fixture: a fake Bot API for `token`, and the plugin's
 * config reset and pointed at it with long-poll `timeout` seconds, no
 * pacing, no typing and fast retries. */
struct ftg;
struct ftg *th_fake_api(const char *token, const char *timeout);
/* Shuts the plugin down (self may be NULL), asserts that `secret` never
 * reached a log line, and stops the fake Bot API. */
void th_fake_api_stop(struct ftg *f, void *self, const char *secret);
/* th_launch that must succeed. */
void *th_launch_ok(void);

int th_ready(void);
int th_log_has(const char *needle);
/* Whether any log line or error contained the raw token. */
int th_leaked(const char *secret);
double th_metric(const char *name, const char *label1, const char *label2);
/* Calls the plugin's route like the admin server would. */
int th_http_post(const char *path, const char *secret, const char *body, int *retry_after);
size_t th_kv_count(const char *prefix);
/* Writes a row as an earlier run (or build) would have left it. */
void th_kv_set(const char *key, const char *val);
/* A copy of a row's value (malloc) or NULL. */
char *th_kv_get(const char *key);
void th_kv_fail(int on);

long long th_now_ms(void);
/* Moves the host's wall clock (wall_ns) forward; th_reset does not undo it. */
void th_wall_advance_ms(long long ms);
void th_sleep_ms(int ms);

#endif
