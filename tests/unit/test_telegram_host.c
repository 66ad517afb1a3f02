/* Fake host for the telegram transport tests; see test_telegram_host.h. */
#include "test_telegram_host.h"
#include "fake_telegram.h"

#include <setjmp.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

extern const rd_plugin routerd_plugin_v1;

struct rd_ctx {
    int unused;
};
static rd_ctx the_ctx;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

long long th_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* Config                                                                    */

typedef struct kv_pair {
    char *key, *val;
} kv_pair;

static kv_pair cfg[64];
static size_t ncfg;
static char **lists[64];
static size_t nlists;

void th_cfg(const char *key, const char *val) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < ncfg; i++) {
        if (!strcmp(cfg[i].key, key)) {
            free(cfg[i].val);
            cfg[i].val = strdup(val);
            pthread_mutex_unlock(&mu);
            return;
        }
    }
    cfg[ncfg].key = strdup(key);
    cfg[ncfg].val = strdup(val);
    ncfg++;
    pthread_mutex_unlock(&mu);
}

static const rd_option *opt_of(const char *key) {
    for (const rd_option *o = routerd_plugin_v1.options; o && o->key; o++)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

static int h_cfg_isset(rd_ctx *ctx, const char *key) {
    (void)ctx;
    for (size_t i = 0; i < ncfg; i++)
        if (!strcmp(cfg[i].key, key)) return 1;
    return 0;
}

static const char *h_cfg_str(rd_ctx *ctx, const char *key) {
    (void)ctx;
    for (size_t i = 0; i < ncfg; i++)
        if (!strcmp(cfg[i].key, key)) return cfg[i].val;
    const rd_option *o = opt_of(key);
    return o ? o->def : NULL;
}

static int64_t h_cfg_int(rd_ctx *ctx, const char *key) {
    const char *s = h_cfg_str(ctx, key);
    return s ? strtoll(s, NULL, 10) : 0;
}

static int h_cfg_bool(rd_ctx *ctx, const char *key) {
    const char *s = h_cfg_str(ctx, key);
    return s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") ||
                 !strcmp(s, "1"));
}

static double h_cfg_double(rd_ctx *ctx, const char *key) {
    const char *s = h_cfg_str(ctx, key);
    return s ? strtod(s, NULL) : 0;
}

static const char *const *h_cfg_list(rd_ctx *ctx, const char *key) {
    const char *s = h_cfg_str(ctx, key);
    if (!s) return NULL;
    char **v = calloc(strlen(s) + 2, sizeof *v);
    size_t n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && e[-1] == ' ')
            *--e = 0;
        v[n++] = strdup(tok);
    }
    free(copy);
    pthread_mutex_lock(&mu);
    if (nlists < 64) lists[nlists++] = v;
    pthread_mutex_unlock(&mu);
    return (const char *const *)v;
}

static const char *h_info(rd_ctx *ctx, const char *what) {
    (void)ctx;
    if (!strcmp(what, "instance")) return "main";
    if (!strcmp(what, "kind")) return "transport";
    if (!strcmp(what, "env")) return "test";
    return NULL;
}

static int64_t h_now_ms(void) {
    return th_now_ms();
}

static _Atomic long long wall_skew_ms;

void th_wall_advance_ms(long long ms) {
    wall_skew_ms += ms;
}

static int64_t h_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)wall_skew_ms * 1000000;
}

/* ------------------------------------------------------------------------ */
/* Logs                                                                      */

static char *logs[20000];
static size_t nlogs;

static void add_log(const char *line) {
    pthread_mutex_lock(&mu);
    if (nlogs < sizeof logs / sizeof logs[0]) logs[nlogs++] = strdup(line);
    pthread_mutex_unlock(&mu);
    if (getenv("TH_VERBOSE")) fprintf(stderr, "[telegram] %s\n", line);
}

static void h_vlog(rd_ctx *ctx, rd_log_level level, const char *fmt, va_list ap) {
    (void)ctx, (void)level;
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    add_log(buf);
}

static void h_log(rd_ctx *ctx, rd_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    h_vlog(ctx, level, fmt, ap);
    va_end(ap);
}

static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass ? klass : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    add_log(err->msg);
}

int th_log_has(const char *needle) {
    pthread_mutex_lock(&mu);
    int found = 0;
    for (size_t i = 0; i < nlogs && !found; i++)
        found = strstr(logs[i], needle) != NULL;
    pthread_mutex_unlock(&mu);
    return found;
}

int th_leaked(const char *secret) {
    return th_log_has(secret);
}

static size_t h_redact(rd_ctx *ctx, const char *src, char *dst, size_t dstsz) {
    (void)ctx;
    const char *tok = h_cfg_str(NULL, "token");
    size_t o = 0, tl = tok ? strlen(tok) : 0;
    for (size_t i = 0; src[i] && o + 4 < dstsz;) {
        if (tl && !strncmp(src + i, tok, tl)) {
            memcpy(dst + o, "***", 3);
            o += 3;
            i += tl;
        } else {
            dst[o++] = src[i++];
        }
    }
    dst[o] = 0;
    return o;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

typedef struct fake_metric {
    char name[96];
    size_t nlabels;
} fake_metric;

typedef struct fake_series {
    fake_metric *m;
    char a[64], b[64];
    double v;
} fake_series;

static fake_metric metrics[64];
static size_t nmetrics;
static fake_series series[1024];
static size_t nseries;

static rd_metric *h_metric(rd_ctx *ctx, rd_metric_type type, const char *name, const char *help,
                           const char *const *labels, const double *b, size_t nb) {
    (void)ctx, (void)type, (void)help, (void)b, (void)nb;
    pthread_mutex_lock(&mu);
    fake_metric *m = NULL;
    for (size_t i = 0; i < nmetrics; i++)
        if (!strcmp(metrics[i].name, name)) m = &metrics[i];
    if (!m && nmetrics < 64) {
        m = &metrics[nmetrics++];
        snprintf(m->name, sizeof m->name, "%s", name);
        m->nlabels = 0;
        while (labels && labels[m->nlabels])
            m->nlabels++;
    }
    pthread_mutex_unlock(&mu);
    return (rd_metric *)m;
}

static rd_series *h_series(rd_metric *mm, const char *const *values) {
    fake_metric *m = (fake_metric *)mm;
    const char *a = m->nlabels > 0 ? values[0] : "", *b = m->nlabels > 1 ? values[1] : "";
    pthread_mutex_lock(&mu);
    fake_series *s = NULL;
    for (size_t i = 0; i < nseries; i++)
        if (series[i].m == m && !strcmp(series[i].a, a) && !strcmp(series[i].b, b)) s = &series[i];
    if (!s && nseries < 1024) {
        s = &series[nseries++];
        s->m = m;
        snprintf(s->a, sizeof s->a, "%s", a);
        snprintf(s->b, sizeof s->b, "%s", b);
        s->v = 0;
    }
    pthread_mutex_unlock(&mu);
    return (rd_series *)s;
}

static void h_add(rd_series *s, double v) {
    pthread_mutex_lock(&mu);
    ((fake_series *)s)->v += v;
    pthread_mutex_unlock(&mu);
}

static void h_set(rd_series *s, double v) {
    pthread_mutex_lock(&mu);
    ((fake_series *)s)->v = v;
    pthread_mutex_unlock(&mu);
}

double th_metric(const char *name, const char *l1, const char *l2) {
    double v = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        fake_series *s = &series[i];
        if (strcmp(s->m->name, name)) continue;
        if (l1 && strcmp(s->a, l1)) continue;
        if (l2 && strcmp(s->b, l2)) continue;
        v += s->v;
    }
    pthread_mutex_unlock(&mu);
    return v;
}

static void h_metrics_visit(rd_ctx *ctx, rd_metric_visit_fn fn, void *arg) {
    (void)ctx, (void)fn, (void)arg;
}

/* ------------------------------------------------------------------------ */
/* Routes and readiness                                                      */

typedef struct route {
    char path[256];
    rd_http_fn fn;
    void *arg;
} route;
static route routes[8];
static size_t nroutes;
static int ready_state;

static rd_status h_http_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                              void *arg) {
    (void)ctx;
    if (strcmp(method, "POST") || nroutes >= 8) return RD_E_CONFIG;
    pthread_mutex_lock(&mu);
    snprintf(routes[nroutes].path, sizeof routes[nroutes].path, "%s", path);
    routes[nroutes].fn = fn;
    routes[nroutes].arg = arg;
    nroutes++;
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

typedef struct req_impl {
    const char *secret;
} req_impl;

static const char *req_header(const rd_http_req *req, const char *name) {
    const req_impl *ri = req->impl;
    return !strcasecmp(name, "X-Telegram-Bot-Api-Secret-Token") ? ri->secret : NULL;
}

int th_http_post(const char *path, const char *secret, const char *body, int *retry_after) {
    route *r = NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path)) r = &routes[i];
    pthread_mutex_unlock(&mu);
    if (!r) return 404;
    req_impl ri = {secret};
    rd_http_req req = {.size = sizeof req,
                       .method = "POST",
                       .path = path,
                       .body = body,
                       .body_len = strlen(body),
                       .header = req_header,
                       .impl = &ri};
    rd_http_resp resp = {.size = sizeof resp, .status = 200};
    r->fn(r->arg, &req, &resp);
    free(resp.body);
    if (retry_after) *retry_after = resp.retry_after_s;
    return resp.status;
}

static void h_ready(rd_ctx *ctx, int ok, const char *reason) {
    (void)ctx, (void)reason;
    pthread_mutex_lock(&mu);
    ready_state = ok;
    pthread_mutex_unlock(&mu);
}

int th_ready(void) {
    pthread_mutex_lock(&mu);
    int v = ready_state;
    pthread_mutex_unlock(&mu);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Intake                                                                    */

typedef struct rec {
    th_msg m;
    int handled;
} rec;

static rec *recs;
static size_t nrecs, caprecs;
static int64_t last_id = -1;
static size_t violations;
static int full;
static size_t wm_idx; /* records [0, wm_idx) are handled */
static int stopping;

static th_file *atts_copy(const th_file *src, size_t n) {
    th_file *v = n ? calloc(n, sizeof *v) : NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = src[i];
        v[i].data = malloc(src[i].len + 1);
        memcpy(v[i].data, src[i].data, src[i].len);
    }
    return v;
}

static void atts_free(th_file *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(a[i].data);
    free(a);
}

static rec *add_rec(void) {
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 256;
        recs = realloc(recs, caprecs * sizeof *recs);
    }
    rec *r = &recs[nrecs++];
    memset(r, 0, sizeof *r);
    return r;
}

static int known_id(int64_t id) {
    for (size_t i = nrecs; i-- > 0;)
        if (recs[i].m.id == id) return 1;
    return 0;
}

static rd_status h_submit(rd_ctx *ctx, const rd_inbound *in) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (full) {
        pthread_mutex_unlock(&mu);
        return RD_E_FULL;
    }
    if (in->update_id <= last_id) {
        violations++;
        int dup = known_id(in->update_id);
        pthread_mutex_unlock(&mu);
        return dup ? RD_E_DUPLICATE : RD_E_INTERNAL;
    }
    last_id = in->update_id;
    rec *r = add_rec();
    r->m.id = in->update_id;
    r->m.chat_id = in->chat_id;
    r->m.user_id = in->user_id;
    r->m.message_id = in->message_id;
    r->m.thread_id = in->thread_id;
    r->m.text = strndup(in->text, in->text_len);
    r->m.flags = in->flags;
    r->m.meta = in->meta ? strdup(in->meta) : NULL;
    r->m.nfiles = in->nattachments;
    r->m.files = in->nattachments ? calloc(in->nattachments, sizeof *r->m.files) : NULL;
    for (size_t i = 0; i < in->nattachments; i++) {
        const rd_attachment *a = in->attachments[i];
        th_file *x = &r->m.files[i];
        snprintf(x->kind, sizeof x->kind, "%s", a->kind ? a->kind : "");
        snprintf(x->mime, sizeof x->mime, "%s", a->mime ? a->mime : "");
        snprintf(x->name, sizeof x->name, "%s", a->name ? a->name : "");
        x->data = malloc(a->len + 1);
        memcpy(x->data, a->data, a->len);
        x->len = a->len;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static void h_skip(rd_ctx *ctx, int64_t update_id, const char *why) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (update_id <= last_id) violations++;
    last_id = update_id;
    rec *r = add_rec();
    r->m.id = update_id;
    r->m.skipped = 1;
    r->handled = 1;
    snprintf(r->m.why, sizeof r->m.why, "%s", why ? why : "");
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* mu held */
static int64_t watermark_locked(void) {
    while (wm_idx < nrecs && recs[wm_idx].handled)
        wm_idx++;
    return wm_idx ? recs[wm_idx - 1].m.id : -1;
}

static int64_t h_watermark(rd_ctx *ctx) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    int64_t w = watermark_locked();
    pthread_mutex_unlock(&mu);
    return w;
}

static void h_request_stop(rd_ctx *ctx) {
    (void)ctx;
}

static int h_stopping(rd_ctx *ctx) {
    (void)ctx;
    return stopping;
}

void th_set_full(int on) {
    pthread_mutex_lock(&mu);
    full = on;
    pthread_mutex_unlock(&mu);
}

size_t th_violations(void) {
    pthread_mutex_lock(&mu);
    size_t v = violations;
    pthread_mutex_unlock(&mu);
    return v;
}

size_t th_msgs(th_msg **out, int include_skipped) {
    pthread_mutex_lock(&mu);
    th_msg *v = calloc(nrecs + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i].m.skipped && !include_skipped) continue;
        v[k] = recs[i].m;
        v[k].text = recs[i].m.text ? strdup(recs[i].m.text) : NULL;
        v[k].meta = recs[i].m.meta ? strdup(recs[i].m.meta) : NULL;
        v[k].files = atts_copy(recs[i].m.files, recs[i].m.nfiles);
        k++;
    }
    pthread_mutex_unlock(&mu);
    *out = v;
    return k;
}

void th_msgs_free(th_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(m[i].text);
        free(m[i].meta);
        atts_free(m[i].files, m[i].nfiles);
    }
    free(m);
}

static size_t count_locked(int skipped) {
    size_t n = 0;
    for (size_t i = 0; i < nrecs; i++)
        n += recs[i].m.skipped == skipped;
    return n;
}

size_t th_submitted(void) {
    pthread_mutex_lock(&mu);
    size_t n = count_locked(0);
    pthread_mutex_unlock(&mu);
    return n;
}

size_t th_skipped(void) {
    pthread_mutex_lock(&mu);
    size_t n = count_locked(1);
    pthread_mutex_unlock(&mu);
    return n;
}

size_t th_wait_submitted(size_t n, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    size_t have;
    while ((have = th_submitted()) < n && th_now_ms() < end)
        th_sleep_ms(5);
    return have;
}

/* ------------------------------------------------------------------------ */
/* Echo worker                                                               */

static pthread_t echo_th;
static int echo_running, echo_stop;
static void *echo_self;
static char echo_prefix[64];
static size_t echo_next;

static void *echo_loop(void *arg) {
    (void)arg;
    const rd_ops *ops = routerd_plugin_v1.ops;
    pthread_mutex_lock(&mu);
    while (!echo_stop) {
        if (echo_next >= nrecs) {
            /* Skips move the watermark too. */
            int64_t w = watermark_locked();
            pthread_mutex_unlock(&mu);
            if (w >= 0) ops->ack(echo_self, w);
            pthread_mutex_lock(&mu);
            if (echo_next >= nrecs && !echo_stop) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += 50000000L;
                if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&cv, &mu, &dl);
            }
            continue;
        }
        size_t i = echo_next++;
        if (recs[i].m.skipped) continue;
        th_msg m = recs[i].m;
        size_t n = strlen(echo_prefix) + strlen(m.text) + 1;
        char *text = malloc(n);
        snprintf(text, n, "%s%s", echo_prefix, m.text);
        pthread_mutex_unlock(&mu);
        char cid[32];
        snprintf(cid, sizeof cid, "c-%lld", (long long)m.id);
        rd_outbound out = {.size = sizeof out,
                           .chat_id = m.chat_id,
                           .thread_id = m.thread_id,
                           .reply_to = m.message_id,
                           .text = text,
                           .text_len = strlen(text),
                           .correlation_id = cid};
        rd_error err = {0};
        ops->send(echo_self, &out, &err);
        free(text);
        pthread_mutex_lock(&mu);
        recs[i].handled = 1;
        int64_t w = watermark_locked();
        pthread_mutex_unlock(&mu);
        ops->ack(echo_self, w);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

void th_echo_start(void *self, const char *prefix) {
    pthread_mutex_lock(&mu);
    echo_self = self;
    echo_stop = 0;
    snprintf(echo_prefix, sizeof echo_prefix, "%s", prefix ? prefix : "echo: ");
    pthread_mutex_unlock(&mu);
    pthread_create(&echo_th, NULL, echo_loop, NULL);
    echo_running = 1;
}

void th_echo_stop(void) {
    if (!echo_running) return;
    pthread_mutex_lock(&mu);
    echo_stop = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(echo_th, NULL);
    echo_running = 0;
}

void th_ack_all(void *self) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrecs; i++)
        recs[i].handled = 1;
    int64_t w = watermark_locked();
    pthread_mutex_unlock(&mu);
    if (w >= 0) routerd_plugin_v1.ops->ack(self, w);
}

void th_ack_upto(void *self, int64_t upto) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i].m.id <= upto) recs[i].handled = 1;
    int64_t w = watermark_locked();
    pthread_mutex_unlock(&mu);
    if (w >= 0) routerd_plugin_v1.ops->ack(self, w);
}

/* ------------------------------------------------------------------------ */
/* State store                                                               */

typedef struct kv_row {
    char *key;
    char *val;
    size_t len;
} kv_row;

static kv_row *kv;
static size_t nkv, capkv;
static int kv_failing;

static size_t kv_find(const char *key, int *found) {
    size_t lo = 0, hi = nkv;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(kv[mid].key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void kv_put_locked(const char *key, const void *val, size_t len) {
    int found;
    size_t i = kv_find(key, &found);
    if (!found) {
        if (nkv == capkv) {
            capkv = capkv ? capkv * 2 : 256;
            kv = realloc(kv, capkv * sizeof *kv);
        }
        memmove(kv + i + 1, kv + i, (nkv - i) * sizeof *kv);
        nkv++;
        kv[i].key = strdup(key);
    } else {
        free(kv[i].val);
    }
    kv[i].val = malloc(len + 1);
    memcpy(kv[i].val, val, len);
    kv[i].val[len] = 0;
    kv[i].len = len;
}

static void kv_del_at(size_t i) {
    free(kv[i].key);
    free(kv[i].val);
    memmove(kv + i, kv + i + 1, (nkv - i - 1) * sizeof *kv);
    nkv--;
}

static rd_status h_kv_get(rd_ctx *ctx, const char *key, char **val, size_t *len) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    int found;
    size_t i = kv_find(key, &found);
    if (found) {
        *val = malloc(kv[i].len + 1);
        memcpy(*val, kv[i].val, kv[i].len + 1);
        if (len) *len = kv[i].len;
    }
    pthread_mutex_unlock(&mu);
    return found ? RD_OK : RD_E_FATAL;
}

static rd_status h_kv_put(rd_ctx *ctx, const char *key, const void *val, size_t len) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (kv_failing) {
        pthread_mutex_unlock(&mu);
        return RD_E_INTERNAL;
    }
    kv_put_locked(key, val, len);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_kv_del(rd_ctx *ctx, const char *key) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    int found;
    size_t i = kv_find(key, &found);
    if (found) kv_del_at(i);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_kv_txn(rd_ctx *ctx, const rd_kv_op *ops, size_t n) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    if (kv_failing) {
        pthread_mutex_unlock(&mu);
        return RD_E_INTERNAL;
    }
    for (size_t k = 0; k < n; k++) {
        const rd_kv_op *op = &ops[k];
        int found;
        if (op->op == RD_KV_PUT) {
            kv_put_locked(op->key, op->val, op->val_len);
        } else if (op->op == RD_KV_DEL) {
            size_t i = kv_find(op->key, &found);
            if (found) kv_del_at(i);
        } else {
            size_t i = kv_find(op->key, &found);
            while (i < nkv && strcmp(kv[i].key, op->key_end) < 0)
                kv_del_at(i);
        }
    }
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_kv_scan(rd_ctx *ctx, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    size_t pl = strlen(prefix), n = 0;
    kv_row *copy = calloc(nkv + 1, sizeof *copy);
    for (size_t i = 0; i < nkv; i++) {
        if (strncmp(kv[i].key, prefix, pl)) continue;
        copy[n].key = strdup(kv[i].key);
        copy[n].val = malloc(kv[i].len + 1);
        memcpy(copy[n].val, kv[i].val, kv[i].len + 1);
        copy[n].len = kv[i].len;
        n++;
    }
    pthread_mutex_unlock(&mu);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (!stop) stop = fn(arg, copy[i].key, copy[i].val, copy[i].len);
        free(copy[i].key);
        free(copy[i].val);
    }
    free(copy);
    return RD_OK;
}

size_t th_kv_count(const char *prefix) {
    pthread_mutex_lock(&mu);
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i < nkv; i++)
        n += strncmp(kv[i].key, prefix, pl) == 0;
    pthread_mutex_unlock(&mu);
    return n;
}

void th_kv_set(const char *key, const char *val) {
    pthread_mutex_lock(&mu);
    kv_put_locked(key, val, strlen(val));
    pthread_mutex_unlock(&mu);
}

char *th_kv_get(const char *key) {
    pthread_mutex_lock(&mu);
    int found;
    size_t i = kv_find(key, &found);
    char *v = found ? strdup(kv[i].val) : NULL;
    pthread_mutex_unlock(&mu);
    return v;
}

static kv_row *snap;
static size_t nsnap;

static void rows_free(kv_row *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(r[i].key);
        free(r[i].val);
    }
    free(r);
}

static kv_row *rows_copy(const kv_row *src, size_t n) {
    kv_row *r = calloc(n + 1, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].key = strdup(src[i].key);
        r[i].val = malloc(src[i].len + 1);
        memcpy(r[i].val, src[i].val, src[i].len + 1);
        r[i].len = src[i].len;
    }
    return r;
}

void th_kv_snapshot(void) {
    pthread_mutex_lock(&mu);
    rows_free(snap, nsnap);
    snap = rows_copy(kv, nkv);
    nsnap = nkv;
    pthread_mutex_unlock(&mu);
}

void th_kv_restore(void) {
    pthread_mutex_lock(&mu);
    rows_free(kv, nkv);
    kv = rows_copy(snap, nsnap);
    nkv = capkv = nsnap;
    if (!capkv) {
        free(kv);
        kv = NULL;
    }
    pthread_mutex_unlock(&mu);
}

void th_kv_fail(int on) {
    pthread_mutex_lock(&mu);
    kv_failing = on;
    pthread_mutex_unlock(&mu);
}

/* ------------------------------------------------------------------------ */
/* Unused reply hooks                                                        */

static void h_reply_append(rd_reply *r, const char *text, size_t len) {
    (void)r, (void)text, (void)len;
}

static void h_complete(rd_reply *r, rd_status st, const rd_error *err) {
    (void)r, (void)st, (void)err;
}

static int h_cancelled(rd_reply *r) {
    (void)r;
    return 0;
}

static const rd_host host = {
    .size = sizeof host,
    .abi_minor = RD_ABI_MINOR,
    .log = h_log,
    .vlog = h_vlog,
    .cfg_str = h_cfg_str,
    .cfg_int = h_cfg_int,
    .cfg_bool = h_cfg_bool,
    .cfg_double = h_cfg_double,
    .cfg_list = h_cfg_list,
    .cfg_isset = h_cfg_isset,
    .info = h_info,
    .now_ms = h_now_ms,
    .wall_ns = h_wall_ns,
    .metric = h_metric,
    .series = h_series,
    .add = h_add,
    .set = h_set,
    .observe = h_add,
    .metrics_visit = h_metrics_visit,
    .http_route = h_http_route,
    .ready = h_ready,
    .submit = h_submit,
    .skip = h_skip,
    .watermark = h_watermark,
    .request_stop = h_request_stop,
    .stopping = h_stopping,
    .reply_append = h_reply_append,
    .reply_progress = h_reply_append,
    .complete = h_complete,
    .cancelled = h_cancelled,
    .kv_get = h_kv_get,
    .kv_put = h_kv_put,
    .kv_del = h_kv_del,
    .kv_txn = h_kv_txn,
    .kv_scan = h_kv_scan,
    .redact = h_redact,
    .error = h_error,
};

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */

const rd_ops *th_ops(void) {
    return routerd_plugin_v1.ops;
}

void th_new_run(void) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i].m.text);
        free(recs[i].m.meta);
        atts_free(recs[i].m.files, recs[i].m.nfiles);
    }
    nrecs = 0;
    last_id = -1;
    violations = 0;
    full = 0;
    wm_idx = 0;
    echo_next = 0;
    stopping = 0;
    ready_state = 0;
    nroutes = 0;
    pthread_mutex_unlock(&mu);
}

void th_reset(void) {
    th_new_run();
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nkv; i++) {
        free(kv[i].key);
        free(kv[i].val);
    }
    nkv = 0;
    kv_failing = 0;
    for (size_t i = 0; i < ncfg; i++) {
        free(cfg[i].key);
        free(cfg[i].val);
    }
    ncfg = 0;
    for (size_t i = 0; i < nlists; i++) {
        for (char **p = lists[i]; *p; p++)
            free(*p);
        free(lists[i]);
    }
    nlists = 0;
    for (size_t i = 0; i < nlogs; i++)
        free(logs[i]);
    nlogs = 0;
    nseries = 0;
    nmetrics = 0;
    pthread_mutex_unlock(&mu);
}

void *th_launch(rd_status *st, rd_error *err) {
    const rd_ops *ops = routerd_plugin_v1.ops;
    void *self = NULL;
    rd_error e = {0};
    if (!err) err = &e;
    rd_status s = ops->create(&host, &the_ctx, &self, err);
    if (s == RD_OK) {
        s = ops->start(self, err);
        if (s != RD_OK) {
            ops->stop(self);
            ops->destroy(self);
            self = NULL;
        }
    }
    if (st) *st = s;
    return self;
}

long long th_shutdown_timed(void *self) {
    const rd_ops *ops = routerd_plugin_v1.ops;
    th_echo_stop();
    stopping = 1;
    long long t0 = th_now_ms();
    ops->quiesce(self);
    ops->stop(self);
    long long dt = th_now_ms() - t0;
    ops->destroy(self);
    return dt;
}

void th_shutdown(void *self) {
    if (self) th_shutdown_timed(self);
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

void *th_launch_ok(void) {
    rd_status st;
    rd_error err = {0};
    void *self = th_launch(&st, &err);
    if (!self) fprintf(stderr, "launch failed: %d %s\n", st, err.msg);
    assert_non_null(self);
    return self;
}
