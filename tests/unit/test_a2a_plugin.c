/* The a2a plugin in-process with a minimal fake host against the fake
 * agent: failure metric per class, progressive text while streaming,
 * secrets kept out of the log, concurrent handle() on several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <routerd/plugin.h>

#include "fake_a2a.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const rd_plugin routerd_plugin_v1;

struct rd_ctx {
    int unused;
};
static rd_ctx the_ctx;

struct rd_reply {
    char buf[8192];
    size_t len;
    int progress_calls;
    long long first_progress, last_progress;
    char last_progress_text[256];
};

struct rd_metric {
    int unused;
};
struct rd_series {
    char label[32];
    double v;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const char *cfg_keys[32], *cfg_vals[32];
static int ncfg;
static struct rd_series series[8];
static int nseries;
static char logbuf[65536];
static int ready_state = -1;
static struct {
    char key[96];
    char val[128];
} kv[64];
static int nkv;

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const rd_option *opt_of(const char *key) {
    for (const rd_option *o = routerd_plugin_v1.options; o && o->key; o++)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

static const char *h_cfg_str(rd_ctx *c, const char *key) {
    (void)c;
    for (int i = 0; i < ncfg; i++)
        if (!strcmp(cfg_keys[i], key)) return cfg_vals[i];
    const rd_option *o = opt_of(key);
    return o ? o->def : NULL;
}
static int64_t h_cfg_int(rd_ctx *c, const char *key) {
    const char *v = h_cfg_str(c, key);
    return v ? strtoll(v, NULL, 10) : 0;
}
static int h_cfg_bool(rd_ctx *c, const char *key) {
    const char *v = h_cfg_str(c, key);
    return v && (!strcmp(v, "true") || !strcmp(v, "1"));
}
static int h_cfg_isset(rd_ctx *c, const char *key) {
    (void)c;
    for (int i = 0; i < ncfg; i++)
        if (!strcmp(cfg_keys[i], key)) return 1;
    return 0;
}

static void h_vlog(rd_ctx *c, rd_log_level l, const char *fmt, va_list ap) {
    (void)c, (void)l;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    pthread_mutex_lock(&mu);
    size_t n = strlen(logbuf);
    snprintf(logbuf + n, sizeof logbuf - n, "%s\n", line);
    pthread_mutex_unlock(&mu);
}
static void h_log(rd_ctx *c, rd_log_level l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    h_vlog(c, l, fmt, ap);
    va_end(ap);
}

static int64_t h_now_ms(void) {
    return mono_ms();
}
static int64_t h_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct rd_metric the_metric;
static rd_metric *h_metric(rd_ctx *c, rd_metric_type t, const char *name, const char *help,
                           const char *const *labels, const double *b, size_t nb) {
    (void)c, (void)help, (void)b, (void)nb;
    assert_int_equal(t, RD_METRIC_COUNTER);
    assert_string_equal(name, "routerd_a2a_failures_total");
    assert_string_equal(labels[0], "classification");
    assert_null(labels[1]);
    return &the_metric;
}
static rd_series *h_series(rd_metric *m, const char *const *lv) {
    (void)m;
    struct rd_series *s = &series[nseries++];
    snprintf(s->label, sizeof s->label, "%s", lv[0]);
    return s;
}
static void h_add(rd_series *s, double v) {
    pthread_mutex_lock(&mu);
    s->v += v;
    pthread_mutex_unlock(&mu);
}
static double failures(const char *klass) {
    for (int i = 0; i < nseries; i++)
        if (!strcmp(series[i].label, klass)) return series[i].v;
    return -1;
}

static void h_ready(rd_ctx *c, int ok, const char *why) {
    (void)c, (void)why;
    pthread_mutex_lock(&mu);
    ready_state = ok;
    pthread_mutex_unlock(&mu);
}

static void h_reply_append(rd_reply *r, const char *t, size_t n) {
    if (r->len + n >= sizeof r->buf) n = sizeof r->buf - r->len - 1;
    memcpy(r->buf + r->len, t, n);
    r->len += n;
    r->buf[r->len] = 0;
}
static void h_reply_progress(rd_reply *r, const char *t, size_t n) {
    long long now = mono_ms();
    if (!r->progress_calls) r->first_progress = now;
    r->last_progress = now;
    r->progress_calls++;
    snprintf(r->last_progress_text, sizeof r->last_progress_text, "%.*s", (int)n, t);
}
static int h_cancelled(rd_reply *r) {
    (void)r;
    return 0;
}

static rd_status h_kv_get(rd_ctx *c, const char *key, char **val, size_t *len) {
    (void)c;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nkv; i++)
        if (!strcmp(kv[i].key, key)) {
            *val = strdup(kv[i].val);
            *len = strlen(kv[i].val);
            pthread_mutex_unlock(&mu);
            return RD_OK;
        }
    pthread_mutex_unlock(&mu);
    return RD_E_FATAL;
}
static rd_status h_kv_put(rd_ctx *c, const char *key, const void *v, size_t len) {
    (void)c;
    pthread_mutex_lock(&mu);
    int i = 0;
    while (i < nkv && strcmp(kv[i].key, key))
        i++;
    if (i == nkv) nkv++;
    snprintf(kv[i].key, sizeof kv[i].key, "%s", key);
    snprintf(kv[i].val, sizeof kv[i].val, "%.*s", (int)len, (const char *)v);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}
static rd_status h_kv_del(rd_ctx *c, const char *key) {
    (void)c;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nkv; i++)
        if (!strcmp(kv[i].key, key)) kv[i] = kv[--nkv];
    pthread_mutex_unlock(&mu);
    return RD_OK;
}
static rd_status h_kv_txn(rd_ctx *c, const rd_kv_op *ops, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ops[i].op == RD_KV_DEL)
            h_kv_del(c, ops[i].key);
        else if (ops[i].op == RD_KV_PUT)
            h_kv_put(c, ops[i].key, ops[i].val, ops[i].val_len);
    return RD_OK;
}

/* Replaces the configured secrets, as the real host does. */
static size_t h_redact(rd_ctx *c, const char *src, char *dst, size_t sz) {
    (void)c;
    snprintf(dst, sz, "%s", src);
    const char *tok = h_cfg_str(c, "token");
    char *p;
    while (tok && *tok && (p = strstr(dst, tok)))
        memset(p, '*', strlen(tok));
    return strlen(dst);
}

static void h_error(rd_error *e, rd_status code, const char *klass, const char *fmt, ...) {
    e->code = code;
    snprintf(e->klass, sizeof e->klass, "%s", klass);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

static const rd_host host = {
    .size = sizeof host,
    .log = h_log,
    .vlog = h_vlog,
    .cfg_str = h_cfg_str,
    .cfg_int = h_cfg_int,
    .cfg_bool = h_cfg_bool,
    .cfg_isset = h_cfg_isset,
    .now_ms = h_now_ms,
    .wall_ns = h_wall_ns,
    .metric = h_metric,
    .series = h_series,
    .add = h_add,
    .ready = h_ready,
    .reply_append = h_reply_append,
    .reply_progress = h_reply_progress,
    .cancelled = h_cancelled,
    .kv_get = h_kv_get,
    .kv_put = h_kv_put,
    .kv_del = h_kv_del,
    .kv_txn = h_kv_txn,
    .redact = h_redact,
    .error = h_error,
};

#define TOKEN "unit-Secret-token-77"

static fa *F;
static void *self;
static const rd_ops *ops;

static void boot(const char *const *kvs) {
    ncfg = 0;
    nseries = 0;
    nkv = 0;
    logbuf[0] = 0;
    ready_state = -1;
    for (int i = 0; kvs[i]; i += 2) {
        cfg_keys[ncfg] = kvs[i];
        cfg_vals[ncfg++] = kvs[i + 1];
    }
    ops = routerd_plugin_v1.ops;
    rd_error err = {0};
    assert_int_equal(ops->create(&host, &the_ctx, &self, &err), RD_OK);
    assert_int_equal(ops->start(self, &err), RD_OK);
}

static void shutdown_plugin(void) {
    ops->quiesce(self);
    ops->stop(self);
    ops->destroy(self);
}

static rd_status ask(int64_t chat, const char *text, rd_reply *rp, rd_error *err) {
    char corr[40];
    static int n;
    snprintf(corr, sizeof corr, "%032x", ++n);
    rd_request rq = {.size = sizeof rq,
                     .chat_id = chat,
                     .text = text,
                     .text_len = strlen(text),
                     .persona = "p",
                     .correlation_id = corr,
                     .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                     .deadline_ms = mono_ms() + 10000};
    memset(rp, 0, sizeof *rp);
    memset(err, 0, sizeof *err);
    return ops->handle(self, &rq, rp, err);
}

static void test_metrics_per_class(void **state) {
    (void)state;
    F = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    const char *kvs[] = {
        "url",   fa_base(F),       "token",  TOKEN, "retries", "1", "max_response_bytes",
        "65536", "failure_notice", "Sorry.", NULL};
    boot(kvs);
    assert_int_equal(ready_state, 1);
    rd_reply rp;
    rd_error err;
    assert_int_equal(ask(1, "hello", &rp, &err), RD_OK);
    assert_string_equal(rp.buf, "echo: hello");
    assert_int_equal(ask(2, "http:503", &rp, &err), RD_E_RETRY);
    assert_string_equal(err.klass, "transient");
    assert_string_equal(rp.buf, "Sorry.");
    assert_int_equal(ask(3, "rpcerr:-32602", &rp, &err), RD_E_FATAL);
    assert_string_equal(err.klass, "fatal");
    assert_int_equal(ask(4, "garbage", &rp, &err), RD_E_FATAL);
    assert_string_equal(err.klass, "protocol");
    assert_int_equal(ask(5, "big", &rp, &err), RD_E_FATAL);
    assert_string_equal(err.klass, "protocol");
    /* Retry-After: 1 is honoured over the shorter back-off. */
    long long t0 = mono_ms();
    assert_int_equal(ask(7, "flaky:1:429", &rp, &err), RD_OK);
    assert_string_equal(rp.buf, "recovered");
    assert_true(mono_ms() - t0 >= 1000);
    assert_int_equal(ask(6, "fail", &rp, &err), RD_E_FATAL);
    assert_string_equal(rp.buf, "I cannot do that.");
    assert_true(failures("transient") == 1);
    assert_true(failures("fatal") == 2);
    assert_true(failures("protocol") == 2);
    assert_true(failures("timeout") == 0);
    /* Context per (chat, persona) in the store. */
    char *v = NULL;
    size_t n = 0;
    assert_int_equal(h_kv_get(&the_ctx, "ctx:1:p", &v, &n), RD_OK);
    assert_string_equal(v, "ctx-1");
    free(v);
    assert_null(strstr(logbuf, TOKEN));
    shutdown_plugin();
    fa_stop(F);
}

/* Progress at most once a second while a stream comes in. */
static void test_stream_progress(void **state) {
    (void)state;
    F = fa_start(FA_CARD_V03, FA_SPEAK_V03, 1);
    const char *kvs[] = {"url", fa_base(F), "stream", "true", NULL};
    boot(kvs);
    rd_reply rp;
    rd_error err;
    long long t0 = mono_ms();
    assert_int_equal(ask(1, "stream:one two three four five six", &rp, &err), RD_OK);
    long long took = mono_ms() - t0;
    assert_string_equal(rp.buf, "one two three four five six");
    assert_true(rp.progress_calls >= 1);
    assert_true(rp.progress_calls <= 1 + took / 1000);
    assert_int_equal(strncmp(rp.last_progress_text, "one", 3), 0);
    shutdown_plugin();
    fa_stop(F);
}

typedef struct {
    int chat;
    int ok;
} job;

static void *worker(void *arg) {
    job *j = arg;
    for (int k = 0; k < 10; k++) {
        char text[32], want[48];
        snprintf(text, sizeof text, "c%d-%d", j->chat, k);
        snprintf(want, sizeof want, "echo: %s", text);
        rd_reply rp;
        rd_error err;
        if (ask(100 + j->chat, text, &rp, &err) == RD_OK && !strcmp(rp.buf, want)) j->ok++;
    }
    return NULL;
}

/* handle() on several threads at once, one curl handle per thread. */
static void test_concurrent(void **state) {
    (void)state;
    F = fa_start(FA_CARD_V10, FA_SPEAK_V10, 0);
    const char *kvs[] = {"url", fa_base(F), NULL};
    boot(kvs);
    pthread_t th[6];
    job jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (job){.chat = i};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].ok, 10);
    }
    shutdown_plugin();
    fa_stop(F);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_per_class),
        cmocka_unit_test(test_stream_progress),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
