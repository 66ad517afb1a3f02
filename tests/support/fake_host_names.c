/* The names the telegram, a2a and sink tests use, on the plugin test kit;
 * see fake_host.h. */
#include "fake_host.h"
#include "fake_telegram.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plugin whose objects are linked into the test, if any. */
extern const rd_plugin routerd_plugin_v1 __attribute__((weak));

__attribute__((constructor)) static void choose_linked_plugin(void) {
    char err[256];
    if (&routerd_plugin_v1 && rdpt_use(&routerd_plugin_v1, err, sizeof err))
        fprintf(stderr, "fake host: %s\n", err);
}

/* ---- common ------------------------------------------------------------ */

void th_reset(void) {
    rdpt_reset();
    /* One process without replicas, as these tests were written for;
     * leases are covered by the HA tests against the real binary. */
    rdpt_offer("lead", 0);
    rdpt_info("instance", "main");
    rdpt_info("env", "test");
}

void th_new_run(void) {
    rdpt_new_run();
}

void th_cfg(const char *key, const char *val) {
    rdpt_set(key, val);
}

const rd_ops *th_ops(void) {
    return rdpt_plugin()->ops;
}

const rd_plugin *th_plugin(void) {
    return rdpt_plugin();
}

void th_defaults(void) {}

void th_info(const char *what, const char *value) {
    rdpt_info(what, value);
}

void th_secret(const char *value) {
    rdpt_secret(value);
}

void th_set_now_ms(int64_t ms) {
    rdpt_set_now_ms(ms);
}

const char *th_logs(void) {
    return rdpt_logs();
}

rd_http_fn th_route(const char *path, void **arg) {
    return rdpt_route(path, arg);
}

/* ---- transports --------------------------------------------------------- */

void *th_launch(rd_status *st, rd_error *err) {
    return rdpt_start(st, err);
}

void *th_launch_ok(void) {
    rd_status st;
    rd_error err = {0};
    void *self = rdpt_start(&st, &err);
    if (!self) fprintf(stderr, "launch failed: %d %s\n", st, err.msg);
    assert_non_null(self);
    return self;
}

long long th_shutdown_timed(void *self) {
    return rdpt_shutdown(self);
}

void th_shutdown(void *self) {
    rdpt_shutdown(self);
}

size_t th_msgs(th_msg **out, int include_skipped) {
    return rdpt_msgs(out, include_skipped);
}

void th_msgs_free(th_msg *m, size_t n) {
    rdpt_msgs_free(m, n);
}

size_t th_submitted(void) {
    return rdpt_submitted();
}

size_t th_skipped(void) {
    return rdpt_skipped();
}

size_t th_wait_submitted(size_t n, int timeout_ms) {
    return rdpt_wait_submitted(n, timeout_ms);
}

void th_set_full(int on) {
    rdpt_set_full(on);
}

size_t th_violations(void) {
    return rdpt_violations();
}

void th_echo_start(void *self, const char *prefix) {
    rdpt_echo_start(self, prefix);
}

void th_echo_stop(void) {
    rdpt_echo_stop();
}

void th_ack_all(void *self) {
    rdpt_ack_upto(self, INT64_MAX);
}

void th_ack_upto(void *self, int64_t upto) {
    rdpt_ack_upto(self, upto);
}

void th_kv_snapshot(void) {
    rdpt_kv_snapshot();
}

void th_kv_restore(void) {
    rdpt_kv_restore();
}

int th_ready(void) {
    return rdpt_ready(NULL, 0);
}

int th_log_has(const char *needle) {
    return rdpt_logged(needle);
}

int th_leaked(const char *secret) {
    return rdpt_logged(secret);
}

double th_metric(const char *name, const char *label1, const char *label2) {
    const char *const v[] = {label1, label2};
    return rdpt_metric_at(name, 2, v);
}

int th_http_post(const char *path, const char *secret, const char *body, int *retry_after) {
    const char *const h[] = {"X-Telegram-Bot-Api-Secret-Token", secret, NULL};
    return rdpt_http("POST", path, secret ? h : NULL, body, NULL, retry_after);
}

size_t th_kv_count(const char *prefix) {
    return rdpt_kv_count(prefix);
}

void th_kv_set(const char *key, const char *val) {
    rdpt_kv_set(key, val);
}

char *th_kv_get(const char *key) {
    return rdpt_kv_get(key);
}

void th_kv_fail(int on) {
    rdpt_kv_fail(on);
}

long long th_now_ms(void) {
    return rdpt_now_ms();
}

void th_wall_advance_ms(long long ms) {
    rdpt_wall_advance_ms(ms);
}

void th_sleep_ms(int ms) {
    rdpt_sleep_ms(ms);
}

ftg *th_fake_api(const char *token, const char *timeout) {
    ftg *f = ftg_start(token);
    assert_non_null(f);
    th_reset();
    th_cfg("token", token);
    th_cfg("api_base", ftg_base(f));
    th_cfg("timeout", timeout);
    th_cfg("throttle", "off");
    th_cfg("typing", "false");
    th_cfg("retry_base_ms", "20");
    th_cfg("retry_max_ms", "200");
    return f;
}

void th_fake_api_stop(ftg *f, void *self, const char *secret) {
    th_shutdown(self);
    assert_false(th_leaked(secret));
    ftg_stop(f);
}

/* ---- backends ----------------------------------------------------------- */

void ah_reset(void) {
    rdpt_reset();
    rdpt_set_cancelled(0);
    rdpt_info("instance", "agent");
    rdpt_info("env", "test");
}

void ah_cfg(const char *key, const char *val) {
    rdpt_set(key, val);
}

static int no_media;

void ah_no_media(int on) {
    __atomic_store_n(&no_media, on, __ATOMIC_SEQ_CST);
}

void *ah_launch(rd_status *st, rd_error *err) {
    int on = !__atomic_load_n(&no_media, __ATOMIC_SEQ_CST);
    rdpt_offer("reply_attach", on);
    rdpt_offer("reply_choices", on);
    return rdpt_start(st, err);
}

void ah_shutdown(void *self) {
    if (!self) return;
    rdpt_forget_instance(self);
    const rd_ops *ops = rdpt_plugin()->ops;
    if (ops->stop) ops->stop(self);
    if (ops->destroy) ops->destroy(self);
}

ah_result ah_call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                  const char *traceparent) {
    return ah_call_update(self, chat, text, deadline_ms, traceparent, 0);
}

static ah_result call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                      const char *traceparent, int64_t update_id, uint32_t flags,
                      const rd_attachment *const *atts, size_t natts);

ah_result ah_call_update(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                         const char *traceparent, int64_t update_id) {
    return call(self, chat, text, deadline_ms, traceparent, update_id, 0, NULL, 0);
}

ah_result ah_call_files(void *self, int64_t chat, const char *text, uint32_t flags,
                        const rd_attachment *const *atts, size_t natts) {
    return call(self, chat, text, 0, NULL, 0, flags, atts, natts);
}

/* Appends a line to a malloc()ed text. */
static void cat_line(char **dst, const char *line) {
    size_t o = *dst ? strlen(*dst) : 0, n = strlen(line);
    *dst = realloc(*dst, o + n + 2);
    memcpy(*dst + o, line, n);
    (*dst)[o + n] = '\n';
    (*dst)[o + n + 1] = 0;
}

static ah_result call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                      const char *traceparent, int64_t update_id, uint32_t flags,
                      const rd_attachment *const *atts, size_t natts) {
    static unsigned long seq;
    unsigned long n = __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST);
    char meta[96] = "", corr[40];
    if (update_id) {
        /* as the telegram transport says it: re-delivered under this id */
        snprintf(meta, sizeof meta, "{\"telegram\":{\"update_id\":%lld}}", (long long)update_id);
        n = (unsigned long)update_id;
    }
    snprintf(corr, sizeof corr, "%032lx", 0xabc0000000UL + n);
    rdpt_request rq = {.chat_id = chat,
                       .user_id = chat,
                       .message_id = (int64_t)n,
                       .update_id = (int64_t)n,
                       .text = text,
                       .persona = "helper",
                       .correlation_id = corr,
                       .traceparent = traceparent,
                       .meta = meta[0] ? meta : NULL,
                       .flags = flags,
                       .deadline_ms = deadline_ms,
                       .attachments = atts,
                       .nattachments = natts};
    ah_result r = {0};
    rdpt_call(self, &rq, &r.reply);
    r.st = r.reply.st;
    r.err = r.reply.err;
    r.text = r.reply.text;
    r.progress = r.reply.progress;
    r.last_progress = r.reply.last_progress;
    for (size_t i = 0; i < r.reply.nfiles; i++) {
        const rdpt_file *f = &r.reply.files[i];
        char line[600];
        snprintf(line, sizeof line, "%s|%s|%zu|%.*s|%s", *f->name ? f->name : "-",
                 *f->mime ? f->mime : "-", f->len, f->data ? (int)(f->len < 200 ? f->len : 200) : 1,
                 f->data ? (const char *)f->data : "-", *f->url ? f->url : "-");
        cat_line(&r.files, line);
    }
    for (size_t i = 0; r.reply.choices && r.reply.choices[i]; i++)
        cat_line(&r.choices, r.reply.choices[i]);
    return r;
}

void ah_result_free(ah_result *r) {
    rdpt_reply_free(&r->reply);
    free(r->files);
    free(r->choices);
    memset(r, 0, sizeof *r);
}

void ah_hard_stop(int on) {
    rdpt_set_cancelled(on);
}

int ah_ready(char *reason, size_t sz) {
    return rdpt_ready(reason, sz);
}

int ah_wait_ready(int want, int timeout_ms) {
    return rdpt_wait_ready(want, timeout_ms);
}

double ah_metric(const char *name, const char *const *values) {
    return rdpt_metric(name, values);
}

int ah_logged(const char *needle) {
    return rdpt_logged(needle);
}

char *ah_kv(const char *key) {
    return rdpt_kv_get(key);
}

void ah_kv_put(const char *key, const char *val) {
    rdpt_kv_set(key, val);
}
