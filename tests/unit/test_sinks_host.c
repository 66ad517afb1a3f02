/* Fake host for the sink unit tests. */
#include "test_sinks_host.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXKV 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *cfg_k[MAXKV], *cfg_v[MAXKV];
static char *info_k[MAXKV], *info_v[MAXKV];
static char *secrets[MAXKV];
static int64_t now; /* 0 = the real monotonic clock */
static char *logs;
static size_t logs_len;

struct rd_metric {
    char *name, *help;
    rd_metric_type type;
    char **labels;
    size_t nlabels;
};
struct rd_series {
    struct rd_metric *m;
    char **values;
    double v;
    uint64_t count;
    double sum;
};
static struct rd_metric *metrics[128];
static size_t nmetrics;
static struct rd_series *series[1024];
static size_t nseries;

typedef struct {
    char *path;
    rd_http_fn fn;
    void *arg;
} route;
static route routes[8];
static size_t nroutes;

static struct rd_ctx { int dummy; } the_ctx;
rd_ctx *th_ctx = &the_ctx;

static void set_kv(char **k, char **v, const char *key, const char *value) {
    for (int i = 0; i < MAXKV; i++)
        if (k[i] && !strcmp(k[i], key)) {
            free(v[i]);
            v[i] = value ? strdup(value) : NULL;
            if (!value) {
                free(k[i]);
                k[i] = NULL;
            }
            return;
        }
    if (!value) return;
    for (int i = 0; i < MAXKV; i++)
        if (!k[i]) {
            k[i] = strdup(key);
            v[i] = strdup(value);
            return;
        }
}

static const char *get_kv(char **k, char **v, const char *key) {
    for (int i = 0; i < MAXKV; i++)
        if (k[i] && !strcmp(k[i], key)) return v[i];
    return NULL;
}

void th_reset(void) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAXKV; i++) {
        free(cfg_k[i]), free(cfg_v[i]), free(info_k[i]), free(info_v[i]), free(secrets[i]);
        cfg_k[i] = cfg_v[i] = info_k[i] = info_v[i] = secrets[i] = NULL;
    }
    for (size_t i = 0; i < nseries; i++) {
        for (size_t j = 0; j < series[i]->m->nlabels; j++)
            free(series[i]->values[j]);
        free(series[i]->values);
        free(series[i]);
    }
    for (size_t i = 0; i < nmetrics; i++) {
        for (size_t j = 0; j < metrics[i]->nlabels; j++)
            free(metrics[i]->labels[j]);
        free(metrics[i]->labels);
        free(metrics[i]->name);
        free(metrics[i]->help);
        free(metrics[i]);
    }
    nseries = nmetrics = 0;
    for (size_t i = 0; i < nroutes; i++)
        free(routes[i].path);
    nroutes = 0;
    free(logs);
    logs = NULL;
    logs_len = 0;
    now = 0;
    pthread_mutex_unlock(&mu);
}

void th_cfg(const char *key, const char *value) {
    pthread_mutex_lock(&mu);
    set_kv(cfg_k, cfg_v, key, value);
    pthread_mutex_unlock(&mu);
}

void th_info(const char *what, const char *value) {
    pthread_mutex_lock(&mu);
    set_kv(info_k, info_v, what, value);
    pthread_mutex_unlock(&mu);
}

void th_secret(const char *value) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAXKV; i++)
        if (!secrets[i]) {
            secrets[i] = strdup(value);
            break;
        }
    pthread_mutex_unlock(&mu);
}

void th_set_now_ms(int64_t ms) {
    pthread_mutex_lock(&mu);
    now = ms;
    pthread_mutex_unlock(&mu);
}

const char *th_logs(void) {
    return logs ? logs : "";
}

rd_http_fn th_route(const char *path, void **arg) {
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path)) {
            *arg = routes[i].arg;
            return routes[i].fn;
        }
    return NULL;
}

double th_metric(const char *name, const char *const *values) {
    double sum = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        struct rd_series *s = series[i];
        if (strcmp(s->m->name, name)) continue;
        bool all = true;
        for (size_t k = 0; values && values[k]; k++) {
            bool found = false;
            for (size_t j = 0; j < s->m->nlabels; j++)
                if (!strcmp(s->values[j], values[k])) found = true;
            all = all && found;
        }
        if (all) sum += s->m->type == RD_METRIC_HISTOGRAM ? (double)s->count : s->v;
    }
    pthread_mutex_unlock(&mu);
    return sum;
}

/* ---- the host table ---------------------------------------------------------- */

static void h_vlog(rd_ctx *ctx, rd_log_level lvl, const char *fmt, va_list ap) {
    (void)ctx;
    char line[1024];
    int n = snprintf(line, sizeof line, "%d ", (int)lvl);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    pthread_mutex_lock(&mu);
    size_t l = strlen(line);
    char *nl = realloc(logs, logs_len + l + 2);
    if (nl) {
        logs = nl;
        memcpy(logs + logs_len, line, l);
        logs_len += l;
        logs[logs_len++] = '\n';
        logs[logs_len] = 0;
    }
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
    pthread_mutex_lock(&mu);
    const char *v = get_kv(cfg_k, cfg_v, key);
    pthread_mutex_unlock(&mu);
    return v;
}

static int64_t h_cfg_int(rd_ctx *ctx, const char *key) {
    const char *v = h_cfg_str(ctx, key);
    return v ? strtoll(v, NULL, 10) : 0;
}

static int h_cfg_bool(rd_ctx *ctx, const char *key) {
    const char *v = h_cfg_str(ctx, key);
    return v && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"));
}

static double h_cfg_double(rd_ctx *ctx, const char *key) {
    const char *v = h_cfg_str(ctx, key);
    return v ? strtod(v, NULL) : 0;
}

static int h_cfg_isset(rd_ctx *ctx, const char *key) {
    return h_cfg_str(ctx, key) != NULL;
}

/* cfg_bind over the key table, as the host converts (durations: a bare
 * number is seconds). */
static rd_status h_cfg_bind(rd_ctx *ctx, void *conf, size_t conf_size, rd_error *err) {
    static const char *const empty[] = {NULL};
    for (const rd_option *o = th_plugin()->options; o && o->key; o++) {
        if (!o->bind_len) continue;
        if (o->offset + o->bind_len > conf_size) {
            snprintf(err->msg, sizeof err->msg, "option '%s' outside the config struct", o->key);
            err->code = RD_E_CONFIG;
            return RD_E_CONFIG;
        }
        const char *v = h_cfg_str(ctx, o->key);
        char *at = (char *)conf + o->offset;
        int64_t i = v ? strtoll(v, NULL, 10) : 0;
        int b = h_cfg_bool(ctx, o->key);
        double d = h_cfg_double(ctx, o->key);
        const char *const *l = empty;
        switch (o->type) {
        case RD_OPT_STRING:
        case RD_OPT_URL:
            memcpy(at, &v, sizeof v);
            break;
        case RD_OPT_DURATION: {
            char *end = NULL;
            i = v ? strtoll(v, &end, 10) : 0;
            i *= !end || !*end || *end == 's' ? 1000
                 : !strcmp(end, "ms")         ? 1
                 : *end == 'm'                ? 60000
                                              : 3600000;
            memcpy(at, &i, sizeof i);
            break;
        }
        case RD_OPT_INT:
            memcpy(at, &i, sizeof i);
            break;
        case RD_OPT_BOOL:
            memcpy(at, &b, sizeof b);
            break;
        case RD_OPT_DOUBLE:
            memcpy(at, &d, sizeof d);
            break;
        case RD_OPT_ENUM:
            b = -1;
            for (int k = 0; v && o->choices[k]; k++)
                if (!strcmp(o->choices[k], v)) b = k;
            memcpy(at, &b, sizeof b);
            break;
        case RD_OPT_LIST:
            memcpy(at, &l, sizeof l);
            break;
        }
    }
    return RD_OK;
}

static const char *h_info(rd_ctx *ctx, const char *what) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    const char *v = get_kv(info_k, info_v, what);
    pthread_mutex_unlock(&mu);
    return v;
}

static int64_t h_now_ms(void) {
    pthread_mutex_lock(&mu);
    int64_t n = now;
    pthread_mutex_unlock(&mu);
    if (n) return n;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t h_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static rd_metric *h_metric(rd_ctx *ctx, rd_metric_type type, const char *name, const char *help,
                           const char *const *labels, const double *b, size_t nb) {
    (void)ctx, (void)b, (void)nb;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nmetrics; i++)
        if (!strcmp(metrics[i]->name, name)) {
            pthread_mutex_unlock(&mu);
            return metrics[i];
        }
    struct rd_metric *m = calloc(1, sizeof *m);
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    m->type = type;
    while (labels && labels[m->nlabels])
        m->nlabels++;
    m->labels = calloc(m->nlabels + 1, sizeof *m->labels);
    for (size_t i = 0; i < m->nlabels; i++)
        m->labels[i] = strdup(labels[i]);
    metrics[nmetrics++] = m;
    pthread_mutex_unlock(&mu);
    return m;
}

static rd_series *h_series(rd_metric *m, const char *const *values) {
    if (!m) return NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        if (series[i]->m != m) continue;
        size_t j = 0;
        while (j < m->nlabels && !strcmp(series[i]->values[j], values[j]))
            j++;
        if (j == m->nlabels) {
            pthread_mutex_unlock(&mu);
            return series[i];
        }
    }
    struct rd_series *s = calloc(1, sizeof *s);
    s->m = m;
    s->values = calloc(m->nlabels + 1, sizeof *s->values);
    for (size_t j = 0; j < m->nlabels; j++)
        s->values[j] = strdup(values[j]);
    series[nseries++] = s;
    pthread_mutex_unlock(&mu);
    return s;
}

static void h_add(rd_series *s, double v) {
    if (!s) return;
    pthread_mutex_lock(&mu);
    s->v += v;
    pthread_mutex_unlock(&mu);
}

static void h_set(rd_series *s, double v) {
    if (!s) return;
    pthread_mutex_lock(&mu);
    s->v = v;
    pthread_mutex_unlock(&mu);
}

static void h_observe(rd_series *s, double v) {
    if (!s) return;
    pthread_mutex_lock(&mu);
    s->count++;
    s->sum += v;
    pthread_mutex_unlock(&mu);
}

static void h_visit(rd_ctx *ctx, rd_metric_visit_fn fn, void *arg) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        struct rd_series *s = series[i];
        rd_metric_view mv = {.size = sizeof mv,
                             .name = s->m->name,
                             .help = s->m->help,
                             .type = s->m->type,
                             .label_names = (const char *const *)s->m->labels,
                             .nlabels = s->m->nlabels};
        uint64_t cum[1] = {s->count};
        rd_series_view sv = {.size = sizeof sv,
                             .label_values = (const char *const *)s->values,
                             .value = s->v,
                             .bucket_counts = cum,
                             .count = s->count,
                             .sum = s->sum};
        fn(arg, &mv, &sv);
    }
    pthread_mutex_unlock(&mu);
}

static rd_status h_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                         void *arg) {
    (void)ctx, (void)method;
    if (nroutes == 8) return RD_E_INTERNAL;
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path)) return RD_E_CONFIG;
    routes[nroutes++] = (route){strdup(path), fn, arg};
    return RD_OK;
}

static size_t h_redact(rd_ctx *ctx, const char *src, char *dst, size_t dstsz) {
    (void)ctx;
    size_t o = 0;
    pthread_mutex_lock(&mu);
    for (const char *p = src; *p && o + 1 < dstsz;) {
        size_t hit = 0;
        for (int i = 0; i < MAXKV; i++)
            if (secrets[i] && !strncmp(p, secrets[i], strlen(secrets[i]))) hit = strlen(secrets[i]);
        if (hit) {
            for (const char *m = "***"; *m && o + 1 < dstsz; m++)
                dst[o++] = *m;
            p += hit;
        } else {
            dst[o++] = *p++;
        }
    }
    pthread_mutex_unlock(&mu);
    dst[o] = 0;
    return o;
}

static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

const rd_host th_host = {
    .size = sizeof(rd_host),
    .abi_minor = RD_ABI_MINOR,
    .log = h_log,
    .vlog = h_vlog,
    .cfg_str = h_cfg_str,
    .cfg_int = h_cfg_int,
    .cfg_bool = h_cfg_bool,
    .cfg_double = h_cfg_double,
    .cfg_isset = h_cfg_isset,
    .cfg_bind = h_cfg_bind,
    .info = h_info,
    .now_ms = h_now_ms,
    .wall_ns = h_wall_ns,
    .metric = h_metric,
    .series = h_series,
    .add = h_add,
    .set = h_set,
    .observe = h_observe,
    .metrics_visit = h_visit,
    .http_route = h_route,
    .redact = h_redact,
    .error = h_error,
};

extern const rd_plugin routerd_plugin_v1;

const rd_plugin *th_plugin(void) {
    return &routerd_plugin_v1;
}

void th_defaults(void) {
    for (const rd_option *o = th_plugin()->options; o && o->key; o++)
        if (o->def) th_cfg(o->key, o->def);
}
