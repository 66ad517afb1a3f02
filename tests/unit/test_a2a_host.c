/* See test_a2a_host.h. */
#include "test_a2a_host.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

extern const rd_plugin routerd_plugin_v1;

struct rd_reply {
    pthread_mutex_t mu;
    char *buf;
    size_t len;
    int progress;
    char *last_progress;
    char *files, *choices; /* ah_result.files / choices */
};

typedef struct kv {
    char *key, *val;
    size_t len;
    struct kv *next;
} kv;

typedef struct series {
    char name[96];
    char labels[256]; /* values joined with '|' */
    double v;
    struct series *next;
} series;

struct rd_metric {
    char name[96];
    int nlabels;
    struct rd_metric *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static kv *cfg, *store;
static series *metrics;
static rd_metric *families;
static char *logs;
static size_t logs_len;
static int ready_state;
static char ready_why[512];
static unsigned long corr_seq;
static char *lists[64][32];

static kv *kv_find(kv *l, const char *k) {
    for (; l; l = l->next)
        if (!strcmp(l->key, k)) return l;
    return NULL;
}

static void kv_set(kv **l, const char *k, const char *v, size_t len) {
    kv *e = kv_find(*l, k);
    if (!e) {
        e = calloc(1, sizeof *e);
        e->key = strdup(k);
        e->next = *l;
        *l = e;
    }
    free(e->val);
    e->val = malloc(len + 1);
    memcpy(e->val, v, len);
    e->val[len] = 0;
    e->len = len;
}

static void kv_drop(kv **l, const char *k) {
    for (kv **p = l; *p; p = &(*p)->next) {
        if (!strcmp((*p)->key, k)) {
            kv *e = *p;
            *p = e->next;
            free(e->key);
            free(e->val);
            free(e);
            return;
        }
    }
}

static void kv_clear(kv **l) {
    while (*l) {
        kv *e = *l;
        *l = e->next;
        free(e->key);
        free(e->val);
        free(e);
    }
}

void ah_reset(void) {
    pthread_mutex_lock(&mu);
    kv_clear(&cfg);
    kv_clear(&store);
    while (metrics) {
        series *s = metrics;
        metrics = s->next;
        free(s);
    }
    while (families) {
        rd_metric *m = families;
        families = m->next;
        free(m);
    }
    free(logs);
    logs = NULL;
    logs_len = 0;
    ready_state = 0;
    ready_why[0] = 0;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 32 && lists[i][j]; j++) {
            free(lists[i][j]);
            lists[i][j] = NULL;
        }
    pthread_mutex_unlock(&mu);
}

void ah_cfg(const char *key, const char *val) {
    kv_set(&cfg, key, val, strlen(val));
}

static const rd_option *opt(const char *key) {
    for (const rd_option *o = routerd_plugin_v1.options; o && o->key; o++)
        if (!strcmp(o->key, key)) return o;
    return NULL;
}

static const char *raw(const char *key) {
    kv *e = kv_find(cfg, key);
    if (e) return e->val;
    const rd_option *o = opt(key);
    return o ? o->def : NULL;
}

static void h_vlog(rd_ctx *ctx, rd_log_level lvl, const char *fmt, va_list ap) {
    (void)ctx;
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (getenv("AH_VERBOSE")) fprintf(stderr, "[%s] %s\n", names[lvl & 3], line);
    pthread_mutex_lock(&mu);
    size_t n = strlen(line);
    logs = realloc(logs, logs_len + n + 2);
    memcpy(logs + logs_len, line, n);
    logs_len += n;
    logs[logs_len++] = '\n';
    logs[logs_len] = 0;
    pthread_mutex_unlock(&mu);
}

static void h_log(rd_ctx *ctx, rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    h_vlog(ctx, lvl, fmt, ap);
    va_end(ap);
}

static const char *h_cfg_str(rd_ctx *ctx, const char *key) {
    (void)ctx;
    return raw(key);
}

static int64_t h_cfg_int(rd_ctx *ctx, const char *key) {
    (void)ctx;
    const char *v = raw(key);
    const rd_option *o = opt(key);
    if (!v) return 0;
    if (o && o->type == RD_OPT_ENUM) {
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(o->choices[i], v)) return i;
        return 0;
    }
    if (o && o->type == RD_OPT_BOOL)
        return !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") ||
               !strcasecmp(v, "on");
    return strtoll(v, NULL, 10);
}

static int h_cfg_bool(rd_ctx *ctx, const char *key) {
    return (int)h_cfg_int(ctx, key);
}

static double h_cfg_double(rd_ctx *ctx, const char *key) {
    (void)ctx;
    const char *v = raw(key);
    return v ? strtod(v, NULL) : 0;
}

static const char *const *h_cfg_list(rd_ctx *ctx, const char *key) {
    (void)ctx;
    static const char *const none[] = {NULL};
    const char *v = raw(key);
    if (!v || !*v) return none;
    int slot = 0;
    for (const rd_option *o = routerd_plugin_v1.options; o && o->key; o++, slot++)
        if (!strcmp(o->key, key)) break;
    char **l = lists[slot % 64];
    if (!l[0]) {
        char *copy = strdup(v), *save = NULL;
        int n = 0;
        for (char *t = strtok_r(copy, ",", &save); t && n < 31; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            l[n++] = strdup(t);
        }
        free(copy);
    }
    return (const char *const *)l;
}

static int h_cfg_isset(rd_ctx *ctx, const char *key) {
    (void)ctx;
    return kv_find(cfg, key) != NULL;
}

static const char *h_info(rd_ctx *ctx, const char *what) {
    (void)ctx;
    if (!strcmp(what, "instance")) return "agent";
    if (!strcmp(what, "env")) return "test";
    return NULL;
}

static int64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t h_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static rd_metric *h_metric(rd_ctx *ctx, rd_metric_type t, const char *name, const char *help,
                           const char *const *labels, const double *b, size_t nb) {
    (void)ctx, (void)t, (void)help, (void)b, (void)nb;
    rd_metric *m = calloc(1, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    while (labels && labels[m->nlabels])
        m->nlabels++;
    pthread_mutex_lock(&mu);
    m->next = families;
    families = m;
    pthread_mutex_unlock(&mu);
    return m;
}

static rd_series *h_series(rd_metric *m, const char *const *values) {
    char labels[256] = "";
    for (int i = 0; values && i < m->nlabels; i++) {
        strncat(labels, "|", sizeof labels - strlen(labels) - 1);
        strncat(labels, values[i], sizeof labels - strlen(labels) - 1);
    }
    pthread_mutex_lock(&mu);
    series *s;
    for (s = metrics; s; s = s->next)
        if (!strcmp(s->name, m->name) && !strcmp(s->labels, labels)) break;
    if (!s) {
        s = calloc(1, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", m->name);
        snprintf(s->labels, sizeof s->labels, "%s", labels);
        s->next = metrics;
        metrics = s;
    }
    pthread_mutex_unlock(&mu);
    return (rd_series *)s;
}

static void h_add(rd_series *x, double v) {
    series *s = (series *)x;
    pthread_mutex_lock(&mu);
    s->v += v;
    pthread_mutex_unlock(&mu);
}

static void h_set(rd_series *x, double v) {
    series *s = (series *)x;
    pthread_mutex_lock(&mu);
    s->v = v;
    pthread_mutex_unlock(&mu);
}

static void h_ready(rd_ctx *ctx, int ok, const char *why) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    ready_state = ok;
    snprintf(ready_why, sizeof ready_why, "%s", why ? why : "");
    pthread_mutex_unlock(&mu);
}

static void h_reply_append(rd_reply *r, const char *text, size_t len) {
    pthread_mutex_lock(&r->mu);
    r->buf = realloc(r->buf, r->len + len + 1);
    memcpy(r->buf + r->len, text, len);
    r->len += len;
    r->buf[r->len] = 0;
    pthread_mutex_unlock(&r->mu);
}

static void h_reply_progress(rd_reply *r, const char *text, size_t len) {
    pthread_mutex_lock(&r->mu);
    r->progress++;
    free(r->last_progress);
    r->last_progress = strndup(text, len);
    pthread_mutex_unlock(&r->mu);
}

/* Appends a line to a malloc()ed log string. */
static void cat_line(char **dst, const char *line) {
    size_t o = *dst ? strlen(*dst) : 0, n = strlen(line);
    *dst = realloc(*dst, o + n + 2);
    memcpy(*dst + o, line, n);
    (*dst)[o + n] = '\n';
    (*dst)[o + n + 1] = 0;
}

static atomic_int no_media;

void ah_no_media(int on) {
    atomic_store(&no_media, on);
}

static rd_status h_reply_attach(rd_reply *r, const rd_attachment *a) {
    char line[600];
    snprintf(line, sizeof line, "%s|%s|%zu|%.*s|%s", a->name ? a->name : "-",
             a->mime ? a->mime : "-", a->len, a->data ? (int)(a->len < 200 ? a->len : 200) : 1,
             a->data ? (const char *)a->data : "-", a->url ? a->url : "-");
    pthread_mutex_lock(&r->mu);
    cat_line(&r->files, line);
    pthread_mutex_unlock(&r->mu);
    return RD_OK;
}

static void h_reply_choices(rd_reply *r, const char *const *choices) {
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; choices[i]; i++)
        cat_line(&r->choices, choices[i]);
    pthread_mutex_unlock(&r->mu);
}

static atomic_int hard_stop;

static int h_cancelled(rd_reply *r) {
    (void)r;
    return atomic_load(&hard_stop);
}

void ah_hard_stop(int on) {
    atomic_store(&hard_stop, on);
}

static rd_status h_kv_get(rd_ctx *ctx, const char *key, char **val, size_t *len) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    kv *e = kv_find(store, key);
    if (e) {
        *val = malloc(e->len + 1);
        memcpy(*val, e->val, e->len + 1);
        if (len) *len = e->len;
    }
    pthread_mutex_unlock(&mu);
    return e ? RD_OK : RD_E_FATAL;
}

static rd_status h_kv_put(rd_ctx *ctx, const char *key, const void *val, size_t len) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    kv_set(&store, key, val, len);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_kv_del(rd_ctx *ctx, const char *key) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    kv_drop(&store, key);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

/* Unordered visit of a snapshot (keys copied, so fn may write). */
static rd_status h_kv_scan(rd_ctx *ctx, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    (void)ctx;
    size_t pl = strlen(prefix), n = 0, cap = 0;
    kv *snap = NULL;
    pthread_mutex_lock(&mu);
    for (kv *e = store; e; e = e->next) {
        if (strncmp(e->key, prefix, pl)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            snap = realloc(snap, cap * sizeof *snap);
        }
        snap[n].key = strdup(e->key);
        snap[n].val = malloc(e->len + 1);
        memcpy(snap[n].val, e->val, e->len + 1);
        snap[n].len = e->len;
        n++;
    }
    pthread_mutex_unlock(&mu);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (!stop) stop = fn(arg, snap[i].key, snap[i].val, snap[i].len);
        free(snap[i].key);
        free(snap[i].val);
    }
    free(snap);
    return RD_OK;
}

static rd_status h_kv_txn(rd_ctx *ctx, const rd_kv_op *ops, size_t n) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n; i++) {
        if (ops[i].op == RD_KV_PUT) kv_set(&store, ops[i].key, ops[i].val, ops[i].val_len);
        if (ops[i].op == RD_KV_DEL) kv_drop(&store, ops[i].key);
    }
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static size_t h_redact(rd_ctx *ctx, const char *src, char *dst, size_t sz) {
    (void)ctx;
    return (size_t)snprintf(dst, sz, "%s", src);
}

static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass ? klass : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static const rd_host host = {
    .size = sizeof(rd_host),
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
    .ready = h_ready,
    .reply_append = h_reply_append,
    .reply_progress = h_reply_progress,
    .cancelled = h_cancelled,
    .kv_get = h_kv_get,
    .kv_put = h_kv_put,
    .kv_del = h_kv_del,
    .kv_txn = h_kv_txn,
    .kv_scan = h_kv_scan,
    .redact = h_redact,
    .error = h_error,
    .reply_attach = h_reply_attach,
    .reply_choices = h_reply_choices,
};

/* The same host as of ABI 1.1: no reply_attach / reply_choices. */
static rd_host host_11;

void *ah_launch(rd_status *st, rd_error *err) {
    const rd_ops *ops = routerd_plugin_v1.ops;
    void *self = NULL;
    memset(err, 0, sizeof *err);
    host_11 = host;
    host_11.size = (uint32_t)offsetof(rd_host, cfg_bind);
    const rd_host *h = atomic_load(&no_media) ? &host_11 : &host;
    *st = ops->create(h, (rd_ctx *)&host, &self, err);
    if (*st != RD_OK) return NULL;
    *st = ops->start(self, err);
    if (*st != RD_OK) {
        ops->stop(self);
        ops->destroy(self);
        return NULL;
    }
    return self;
}

void ah_shutdown(void *self) {
    const rd_ops *ops = routerd_plugin_v1.ops;
    if (!self) return;
    ops->stop(self);
    ops->destroy(self);
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

static ah_result call(void *self, int64_t chat, const char *text, int64_t deadline_ms,
                      const char *traceparent, int64_t update_id, uint32_t flags,
                      const rd_attachment *const *atts, size_t natts) {
    char corr[40];
    pthread_mutex_lock(&mu);
    unsigned long n = ++corr_seq;
    pthread_mutex_unlock(&mu);
    char meta[96] = "";
    if (update_id) {
        /* as the telegram transport says it: re-delivered under this id */
        snprintf(meta, sizeof meta, "{\"telegram\":{\"update_id\":%lld}}", (long long)update_id);
        n = (unsigned long)update_id;
    }
    snprintf(corr, sizeof corr, "%032lx", 0xabc0000000UL + n);
    rd_request rq = {.size = sizeof rq,
                     .chat_id = chat,
                     .user_id = chat,
                     .message_id = (int64_t)n,
                     .text = text,
                     .text_len = strlen(text),
                     .persona = "helper",
                     .correlation_id = corr,
                     .traceparent = traceparent,
                     .deadline_ms = deadline_ms ? h_now_ms() + deadline_ms : 0,
                     .meta = meta[0] ? meta : NULL,
                     .flags = flags,
                     .update_id = (int64_t)n,
                     .transport = "console",
                     .attachments = atts,
                     .nattachments = natts};
    struct rd_reply rp = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ah_result r = {0};
    r.st = routerd_plugin_v1.ops->handle(self, &rq, &rp, &r.err);
    r.text = rp.buf ? rp.buf : strdup("");
    r.progress = rp.progress;
    r.last_progress = rp.last_progress;
    r.files = rp.files;
    r.choices = rp.choices;
    pthread_mutex_destroy(&rp.mu);
    return r;
}

void ah_result_free(ah_result *r) {
    free(r->text);
    free(r->last_progress);
    free(r->files);
    free(r->choices);
    memset(r, 0, sizeof *r);
}

int ah_ready(char *reason, size_t sz) {
    pthread_mutex_lock(&mu);
    int r = ready_state;
    if (reason) snprintf(reason, sz, "%s", ready_why);
    pthread_mutex_unlock(&mu);
    return r;
}

int ah_wait_ready(int want, int timeout_ms) {
    for (int waited = 0;; waited += 20) {
        if (ah_ready(NULL, 0) == want) return 1;
        if (waited >= timeout_ms) return 0;
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
}

double ah_metric(const char *name, const char *const *values) {
    double sum = 0;
    pthread_mutex_lock(&mu);
    for (series *s = metrics; s; s = s->next) {
        if (strcmp(s->name, name)) continue;
        int ok = 1;
        for (int i = 0; values && values[i]; i++) {
            char want[128];
            snprintf(want, sizeof want, "|%s", values[i]);
            if (!strstr(s->labels, want)) ok = 0;
        }
        if (ok) sum += s->v;
    }
    pthread_mutex_unlock(&mu);
    return sum;
}

int ah_logged(const char *needle) {
    pthread_mutex_lock(&mu);
    int r = logs && strstr(logs, needle) != NULL;
    pthread_mutex_unlock(&mu);
    return r;
}

char *ah_kv(const char *key) {
    pthread_mutex_lock(&mu);
    kv *e = kv_find(store, key);
    char *v = e ? strdup(e->val) : NULL;
    pthread_mutex_unlock(&mu);
    return v;
}

void ah_kv_put(const char *key, const char *val) {
    pthread_mutex_lock(&mu);
    kv_set(&store, key, val, strlen(val));
    pthread_mutex_unlock(&mu);
}
