/* The plugin test kit's fake host (routerd/plugintest.h): the daemon's own
 * manifest and schema code validates the configuration; everything else
 * the plugin does is recorded in memory. */
#include "core.h"

/* The kit's API is all the library exports (built with hidden visibility). */
#pragma GCC visibility push(default)
#include <routerd/plugintest.h>
#pragma GCC visibility pop

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct rd_ctx {
    int unused;
};
static rd_ctx the_ctx;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static const rd_plugin *plugin;
/* The instance rdpt_start() returned and rdpt_shutdown() has not yet
 * taken: a test that fails half-way leaves it running, and the next
 * rdpt_reset() shuts it down before it clears what its threads use. */
static void *live;
static void *plugin_dl;

long long rdpt_now_ms(void) {
    return mono_ms();
}

void rdpt_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------ */
/* Small tables                                                              */

typedef struct pair {
    char *key, *val;
} pair;

typedef struct pairs {
    pair *v;
    size_t n;
} pairs;

static pair *pairs_find(pairs *t, const char *key) {
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].key, key)) return &t->v[i];
    return NULL;
}

static void pairs_set(pairs *t, const char *key, const char *val) {
    pair *p = pairs_find(t, key);
    if (p && !val) {
        free(p->key);
        free(p->val);
        *p = t->v[--t->n];
        return;
    }
    if (!val) return;
    if (!p) {
        t->v = xrealloc(t->v, (t->n + 1) * sizeof *t->v);
        p = &t->v[t->n++];
        p->key = xstrdup(key);
        p->val = NULL;
    }
    free(p->val);
    p->val = xstrdup(val);
}

static void pairs_clear(pairs *t) {
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].key);
        free(t->v[i].val);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Misuse and teardown records                                               */

static size_t nmisuse;
static char misuse_first[256];
static int phase; /* 0 idle, 1 running, 2 stopped (no host calls allowed) */
static size_t late_calls;
static char late_first[128];

static void misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void add_log(rd_log_level lvl, const char *line);

static void misuse(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&mu);
    if (!nmisuse++) snprintf(misuse_first, sizeof misuse_first, "%s", buf);
    pthread_mutex_unlock(&mu);
    add_log(RD_LOG_ERROR, buf);
}

/* Every call the plugin makes passes here: none may come after stop(). */
static void host_call(const char *what) {
    pthread_mutex_lock(&mu);
    if (phase == 2 && !late_calls++)
        snprintf(late_first, sizeof late_first, "host->%s after stop() returned", what);
    pthread_mutex_unlock(&mu);
}

size_t rdpt_misuses(char *buf, size_t bufsz) {
    pthread_mutex_lock(&mu);
    size_t n = nmisuse;
    if (buf && bufsz) snprintf(buf, bufsz, "%s", misuse_first);
    pthread_mutex_unlock(&mu);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Configuration through the daemon's schema code                           */

static pairs cfg_text;      /* key = value as written */
static pairs info;          /* router facts */
static cfg_set cfg;         /* validated; valid while cfg_ok */
static bool cfg_ok;         /* cfg matches cfg_text */
static char cfg_err[512];   /* why not, when validation failed */
static char parse_err[512]; /* rdpt_section() text that did not parse */
static cfg_set *retired;    /* earlier sets: plugins may hold their strings */
static size_t nretired;

static const char *const transport_reserved[] = {"plugin", "allowlist", "sha256", NULL};
static const char *const plugin_reserved[] = {"plugin", "sha256", NULL};

static void retire_cfg_locked(void) {
    if (!cfg.n && !cfg.v) return;
    retired = xrealloc(retired, (nretired + 1) * sizeof *retired);
    retired[nretired++] = cfg;
    memset(&cfg, 0, sizeof cfg);
}

/* The section's keys with a placeholder each: values are put in after
 * parsing, as ${VAR} expansion would (so a value may hold anything, a line
 * break included). */
static char *section_text_locked(const char *kind) {
    size_t cap = 64, len = 0;
    char *s = xmalloc(cap);
    len = (size_t)snprintf(s, cap, "[%s.test]\n", kind);
    for (size_t i = 0; i < cfg_text.n; i++) {
        size_t need = strlen(cfg_text.v[i].key) + 8;
        if (len + need >= cap) s = xrealloc(s, cap = (len + need) * 2);
        len += (size_t)snprintf(s + len, cap - len, "%s = v\n", cfg_text.v[i].key);
    }
    return s;
}

/* mu held. Validates cfg_text into cfg unless already done. */
static int validate_locked(void) {
    if (cfg_ok) return 0;
    if (!plugin || parse_err[0]) {
        snprintf(cfg_err, sizeof cfg_err, "%s", plugin ? parse_err : "no plugin loaded");
        return -1;
    }
    retire_cfg_locked();
    const char *kind = kind_name(plugin->kind);
    char *text = section_text_locked(kind);
    char err[512] = "";
    manifest *m = manifest_parse_string("manifest", text, err, sizeof err);
    free(text);
    int rc = -1;
    if (m) {
        char sec[64];
        snprintf(sec, sizeof sec, "%s.test", kind);
        mf_section *ms = manifest_section(m, sec);
        for (size_t i = 0; ms && i < ms->nkv; i++) {
            pair *p = pairs_find(&cfg_text, ms->kv[i].key);
            free(ms->kv[i].val);
            free(ms->kv[i].raw);
            ms->kv[i].val = xstrdup(p ? p->val : "");
            ms->kv[i].raw = xstrdup(p ? p->val : "");
        }
        rc = schema_apply_sized(m, ms, plugin->options, plugin_option_size(plugin),
                                plugin->kind == RD_KIND_TRANSPORT ? transport_reserved
                                                                  : plugin_reserved,
                                &cfg, err, sizeof err);
        manifest_free(m);
    }
    /* Lists are split now, so that getters never write. */
    for (size_t i = 0; rc == 0 && i < cfg.n; i++)
        if (cfg.v[i].have && !cfg.v[i].list && cfg.v[i].opt->type == RD_OPT_LIST)
            cfg.v[i].list = split_list(cfg.v[i].str);
    if (rc) {
        snprintf(cfg_err, sizeof cfg_err, "%s", err);
        retire_cfg_locked();
        return -1;
    }
    cfg_ok = true;
    cfg_err[0] = 0;
    return 0;
}

int rdpt_check(char *err, size_t errsz) {
    pthread_mutex_lock(&mu);
    int rc = validate_locked();
    if (rc && err && errsz) snprintf(err, errsz, "%s", cfg_err);
    pthread_mutex_unlock(&mu);
    return rc;
}

void rdpt_set(const char *key, const char *value) {
    pthread_mutex_lock(&mu);
    pairs_set(&cfg_text, key, value);
    parse_err[0] = 0;
    cfg_ok = false;
    pthread_mutex_unlock(&mu);
}

int rdpt_section(const char *text, char *err, size_t errsz) {
    char *full = xasprintf("[backend.test]\n%s", text);
    char perr[512] = "";
    manifest *m = manifest_parse_string("manifest", full, perr, sizeof perr);
    free(full);
    if (m && m->nsec != 1) {
        snprintf(perr, sizeof perr, "manifest:%d: [%s] the text is one section's body",
                 m->sec[1].line, m->sec[1].name);
        manifest_free(m);
        m = NULL;
    }
    pthread_mutex_lock(&mu);
    pairs_clear(&cfg_text);
    cfg_ok = false;
    /* Unparsable: start() must refuse too. */
    snprintf(parse_err, sizeof parse_err, "%s", m ? "" : perr);
    if (!m) {
        pthread_mutex_unlock(&mu);
        if (err && errsz) snprintf(err, errsz, "%s", perr);
        return -1;
    }
    mf_section *s = manifest_section(m, "backend.test");
    for (size_t i = 0; s && i < s->nkv; i++)
        pairs_set(&cfg_text, s->kv[i].key, s->kv[i].val);
    manifest_free(m);
    pthread_mutex_unlock(&mu);
    return rdpt_check(err, errsz);
}

#define T(x) (1u << RD_OPT_##x)

/* The declared option behind a getter call, with the types that getter
 * serves (as routerd: anything else is a plugin bug, logged and counted). */
static cfg_val *lookup(const char *getter, const char *key, unsigned types) {
    host_call(getter);
    pthread_mutex_lock(&mu);
    if (validate_locked()) {
        pthread_mutex_unlock(&mu);
        misuse("%s(\"%s\") with an invalid configuration: %s", getter, key ? key : "(null)",
               cfg_err);
        return NULL;
    }
    cfg_val *v = key ? cfg_find(&cfg, key) : NULL;
    pthread_mutex_unlock(&mu);
    if (!v) {
        misuse("plugin bug: %s(\"%s\"): the key is not declared in the plugin's options", getter,
               key ? key : "(null)");
        return NULL;
    }
    if (!(types & (1u << v->opt->type))) {
        misuse("plugin bug: %s(\"%s\"): the key is a %s option", getter, key,
               opt_type_name(v->opt->type));
        return NULL;
    }
    return v;
}

/* The text as written (an ENUM's choice). */
static const char *h_cfg_str(rd_ctx *ctx, const char *key) {
    (void)ctx;
    cfg_val *v = lookup("cfg_str", key, T(STRING) | T(URL) | T(ENUM));
    return v && v->have ? v->str : NULL;
}

/* An ENUM's index (-1 when absent), a DURATION in milliseconds. */
static int64_t h_cfg_int(rd_ctx *ctx, const char *key) {
    (void)ctx;
    cfg_val *v = lookup("cfg_int", key, T(INT) | T(ENUM) | T(DURATION) | T(BOOL));
    if (!v) return 0;
    if (v->opt->type == RD_OPT_ENUM && !v->have) return -1;
    return v->have ? v->i : 0;
}

static int h_cfg_bool(rd_ctx *ctx, const char *key) {
    (void)ctx;
    cfg_val *v = lookup("cfg_bool", key, T(BOOL));
    return v && v->have ? (int)v->i : 0;
}

static double h_cfg_double(rd_ctx *ctx, const char *key) {
    (void)ctx;
    cfg_val *v = lookup("cfg_double", key, T(DOUBLE) | T(INT));
    return v && v->have ? v->d : 0;
}

static const char *const *h_cfg_list(rd_ctx *ctx, const char *key) {
    (void)ctx;
    static const char *const empty[] = {NULL};
    cfg_val *v = lookup("cfg_list", key, T(LIST));
    return v && v->have && v->list ? (const char *const *)v->list : empty;
}

static int h_cfg_isset(rd_ctx *ctx, const char *key) {
    (void)ctx;
    cfg_val *v = lookup("cfg_isset", key, ~0u);
    return v && v->set;
}

static rd_status h_cfg_bind(rd_ctx *ctx, void *conf, size_t conf_size, rd_error *err);

static const char *h_info(rd_ctx *ctx, const char *what) {
    (void)ctx;
    host_call("info");
    if (!what) return NULL;
    if (!strcmp(what, "kind")) return plugin ? kind_name(plugin->kind) : NULL;
    pthread_mutex_lock(&mu);
    pair *p = pairs_find(&info, what);
    const char *v = p ? p->val : NULL;
    pthread_mutex_unlock(&mu);
    return v;
}

void rdpt_info(const char *what, const char *value) {
    pthread_mutex_lock(&mu);
    pairs_set(&info, what, value);
    pthread_mutex_unlock(&mu);
}

void rdpt_secret(const char *value) {
    secret_add(value);
}

/* ------------------------------------------------------------------------ */
/* Clock                                                                     */

static int64_t pinned_now;

void rdpt_set_now_ms(int64_t ms) {
    pthread_mutex_lock(&mu);
    pinned_now = ms;
    pthread_mutex_unlock(&mu);
}

static int64_t h_now_ms(void) {
    pthread_mutex_lock(&mu);
    int64_t n = pinned_now;
    pthread_mutex_unlock(&mu);
    return n ? n : rdpt_now_ms();
}

static _Atomic long long wall_skew_ms;

void rdpt_wall_advance_ms(long long ms) {
    wall_skew_ms += ms;
}

static int64_t h_wall_ns(void) {
    return wall_ns() + (int64_t)wall_skew_ms * 1000000;
}

/* ------------------------------------------------------------------------ */
/* Logs                                                                      */

static char *logs;
static size_t logs_len, logs_cap;

static void add_log(rd_log_level lvl, const char *line) {
    if (getenv("RDPT_VERBOSE")) fprintf(stderr, "[plugin %d] %s\n", (int)lvl, line);
    pthread_mutex_lock(&mu);
    size_t n = strlen(line) + 4;
    if (logs_len + n >= logs_cap) logs = xrealloc(logs, logs_cap = (logs_len + n) * 2);
    logs_len += (size_t)snprintf(logs + logs_len, logs_cap - logs_len, "%d %s\n", (int)lvl, line);
    pthread_mutex_unlock(&mu);
}

static void h_vlog(rd_ctx *ctx, rd_log_level lvl, const char *fmt, va_list ap) {
    (void)ctx;
    host_call("log");
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    add_log(lvl > RD_LOG_ERROR ? RD_LOG_ERROR : lvl, buf);
}

static void h_log(rd_ctx *ctx, rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    h_vlog(ctx, lvl, fmt, ap);
    va_end(ap);
}

/* The plugin gets the redacted text like from routerd; the log keeps the
 * raw one so that a test sees a secret the plugin let through. */
static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass ? klass : "");
    char *raw = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err->msg[0] = 0;
        return;
    }
    add_log(RD_LOG_DEBUG, raw);
    redact(raw, err->msg, sizeof err->msg);
    free(raw);
}

static size_t h_redact(rd_ctx *ctx, const char *src, char *dst, size_t dstsz) {
    (void)ctx;
    return redact(src, dst, dstsz);
}

int rdpt_logged(const char *needle) {
    pthread_mutex_lock(&mu);
    int r = logs && strstr(logs, needle) != NULL;
    pthread_mutex_unlock(&mu);
    return r;
}

int rdpt_log_count(const char *needle) {
    int n = 0;
    size_t k = strlen(needle);
    pthread_mutex_lock(&mu);
    for (const char *q = logs; q && k && (q = strstr(q, needle)); q += k)
        n++;
    pthread_mutex_unlock(&mu);
    return n;
}

const char *rdpt_logs(void) {
    return logs ? logs : "";
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

struct rd_metric {
    char *name, *help;
    rd_metric_type type;
    char **labels;
    size_t nlabels;
    double *le;
    size_t nle;
};

struct rd_series {
    struct rd_metric *m;
    char **values;
    double v, sum;
    uint64_t count;
    uint64_t *buckets; /* per bucket (not cumulative), then +Inf */
};

static struct rd_metric **families;
static size_t nfamilies;
static struct rd_series **series;
static size_t nseries;

static const double default_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

static rd_metric *h_metric(rd_ctx *ctx, rd_metric_type type, const char *name, const char *help,
                           const char *const *labels, const double *buckets, size_t nb) {
    (void)ctx;
    host_call("metric");
    if (!name) return NULL;
    size_t nl = 0;
    while (labels && labels[nl])
        nl++;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nfamilies; i++) {
        struct rd_metric *m = families[i];
        if (strcmp(m->name, name)) continue;
        bool same = m->type == type && m->nlabels == nl;
        for (size_t j = 0; same && j < nl; j++)
            same = !strcmp(m->labels[j], labels[j]);
        pthread_mutex_unlock(&mu);
        if (!same) misuse("plugin bug: metric '%s' registered again with another shape", name);
        return same ? m : NULL;
    }
    struct rd_metric *m = xcalloc(1, sizeof *m);
    m->name = xstrdup(name);
    m->help = xstrdup(help ? help : "");
    m->type = type;
    m->nlabels = nl;
    m->labels = xcalloc(nl + 1, sizeof *m->labels);
    for (size_t j = 0; j < nl; j++)
        m->labels[j] = xstrdup(labels[j]);
    if (type == RD_METRIC_HISTOGRAM) {
        if (!buckets) buckets = default_le, nb = sizeof default_le / sizeof default_le[0];
        m->le = xcalloc(nb + 1, sizeof *m->le);
        memcpy(m->le, buckets, nb * sizeof *m->le);
        m->nle = nb;
    }
    families = xrealloc(families, (nfamilies + 1) * sizeof *families);
    families[nfamilies++] = m;
    pthread_mutex_unlock(&mu);
    return m;
}

static rd_series *h_series(rd_metric *m, const char *const *values) {
    host_call("series");
    if (!m) return NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        if (series[i]->m != m) continue;
        size_t j = 0;
        while (j < m->nlabels && !strcmp(series[i]->values[j], values[j] ? values[j] : ""))
            j++;
        if (j == m->nlabels) {
            pthread_mutex_unlock(&mu);
            return series[i];
        }
    }
    struct rd_series *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->values = xcalloc(m->nlabels + 1, sizeof *s->values);
    for (size_t j = 0; j < m->nlabels; j++)
        s->values[j] = xstrdup(values[j] ? values[j] : "");
    s->buckets = xcalloc(m->nle + 1, sizeof *s->buckets);
    series = xrealloc(series, (nseries + 1) * sizeof *series);
    series[nseries++] = s;
    pthread_mutex_unlock(&mu);
    return s;
}

static void h_add(rd_series *s, double v) {
    host_call("add");
    if (!s) return;
    pthread_mutex_lock(&mu);
    s->v += v;
    pthread_mutex_unlock(&mu);
}

static void h_set(rd_series *s, double v) {
    host_call("set");
    if (!s) return;
    pthread_mutex_lock(&mu);
    s->v = v;
    pthread_mutex_unlock(&mu);
}

static void h_observe(rd_series *s, double v) {
    host_call("observe");
    if (!s) return;
    pthread_mutex_lock(&mu);
    size_t b = 0;
    while (b < s->m->nle && v > s->m->le[b])
        b++;
    s->buckets[b]++;
    s->count++;
    s->sum += v;
    pthread_mutex_unlock(&mu);
}

static void h_metrics_visit(rd_ctx *ctx, rd_metric_visit_fn fn, void *arg) {
    (void)ctx;
    host_call("metrics_visit");
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        struct rd_series *s = series[i];
        rd_metric_view mv = {.size = sizeof mv,
                             .name = s->m->name,
                             .help = s->m->help,
                             .type = s->m->type,
                             .label_names = (const char *const *)s->m->labels,
                             .nlabels = s->m->nlabels};
        uint64_t *cum = xcalloc(s->m->nle + 1, sizeof *cum);
        for (size_t b = 0, acc = 0; b <= s->m->nle; b++)
            cum[b] = acc += s->buckets[b];
        rd_series_view sv = {.size = sizeof sv,
                             .label_values = (const char *const *)s->values,
                             .value = s->v,
                             .bucket_le = s->m->le,
                             .bucket_counts = cum,
                             .nbuckets = s->m->nle,
                             .count = s->count,
                             .sum = s->sum};
        fn(arg, &mv, &sv);
        free(cum);
    }
    pthread_mutex_unlock(&mu);
}

static bool has_value(const struct rd_series *s, const char *v) {
    for (size_t j = 0; j < s->m->nlabels; j++)
        if (!strcmp(s->values[j], v)) return true;
    return false;
}

static double metric_sum(const char *name, const char *const *values, size_t npos, bool sum) {
    double total = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nseries; i++) {
        const struct rd_series *s = series[i];
        if (strcmp(s->m->name, name)) continue;
        bool ok = true;
        if (npos)
            for (size_t k = 0; ok && k < npos; k++)
                ok = !values[k] || (k < s->m->nlabels && !strcmp(s->values[k], values[k]));
        else
            for (size_t k = 0; ok && values && values[k]; k++)
                ok = has_value(s, values[k]);
        if (!ok) continue;
        if (s->m->type == RD_METRIC_HISTOGRAM)
            total += sum ? s->sum : (double)s->count;
        else
            total += s->v;
    }
    pthread_mutex_unlock(&mu);
    return total;
}

double rdpt_metric(const char *name, const char *const *values) {
    return metric_sum(name, values, 0, false);
}

double rdpt_metric_at(const char *name, size_t n, const char *const *values) {
    static const char *const any[] = {NULL};
    return n ? metric_sum(name, values, n, false) : metric_sum(name, any, 0, false);
}

double rdpt_metric_sum(const char *name, const char *const *values) {
    return metric_sum(name, values, 0, true);
}

/* ------------------------------------------------------------------------ */
/* Routes and readiness                                                      */

typedef struct route {
    char *method, *path, *header, *secret;
    rd_http_fn fn;
    void *arg;
} route;
static route *routes;
static size_t nroutes;
static int ready_state;
static char ready_why[512];

static rd_status add_route(const char *method, const char *path, const char *header,
                           const char *secret, rd_http_fn fn, void *arg) {
    if (!method || !path || !fn || path[0] != '/') return RD_E_CONFIG;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path) && !strcmp(routes[i].method, method)) {
            pthread_mutex_unlock(&mu);
            return RD_E_CONFIG;
        }
    routes = xrealloc(routes, (nroutes + 1) * sizeof *routes);
    routes[nroutes++] = (route){xstrdup(method),
                                xstrdup(path),
                                header ? xstrdup(header) : NULL,
                                secret ? xstrdup(secret) : NULL,
                                fn,
                                arg};
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_http_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                              void *arg) {
    (void)ctx;
    host_call("http_route");
    return add_route(method, path, NULL, NULL, fn, arg);
}

static rd_status h_http_route_auth(rd_ctx *ctx, const char *method, const char *path,
                                   const char *header, const char *secret, rd_http_fn fn,
                                   void *arg) {
    (void)ctx;
    host_call("http_route_auth");
    if (!header || !secret) return RD_E_CONFIG;
    return add_route(method, path, header, secret, fn, arg);
}

static void routes_clear_locked(void) {
    for (size_t i = 0; i < nroutes; i++) {
        free(routes[i].method);
        free(routes[i].path);
        free(routes[i].header);
        free(routes[i].secret);
    }
    free(routes);
    routes = NULL;
    nroutes = 0;
}

static const char *req_header(const rd_http_req *req, const char *name) {
    const char *const *h = req->impl;
    for (size_t i = 0; h && h[i] && h[i + 1]; i += 2)
        if (!strcasecmp(h[i], name)) return h[i + 1];
    return NULL;
}

int rdpt_http(const char *method, const char *path, const char *const *headers,
              const char *req_body, char **body, int *retry_after) {
    if (body) *body = NULL;
    if (retry_after) *retry_after = 0;
    route r = {0};
    bool path_known = false;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nroutes; i++) {
        if (strcmp(routes[i].path, path)) continue;
        path_known = true;
        if (!strcmp(routes[i].method, method)) r = routes[i];
    }
    pthread_mutex_unlock(&mu);
    if (!r.fn) return path_known ? 405 : 404;
    rd_http_req req = {.size = sizeof req,
                       .method = method,
                       .path = path,
                       .body = req_body ? req_body : "",
                       .body_len = req_body ? strlen(req_body) : 0,
                       .header = req_header,
                       .impl = (void *)headers};
    if (r.header) {
        const char *got = req_header(&req, r.header);
        if (!got || strcmp(got, r.secret)) return 401;
    }
    rd_http_resp resp = {.size = sizeof resp, .status = 200};
    r.fn(r.arg, &req, &resp);
    if (body)
        *body = resp.body;
    else
        free(resp.body);
    if (retry_after) *retry_after = resp.retry_after_s;
    return resp.status;
}

rd_http_fn rdpt_route(const char *path, void **arg) {
    rd_http_fn fn = NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nroutes && !fn; i++)
        if (!strcmp(routes[i].path, path)) {
            fn = routes[i].fn;
            if (arg) *arg = routes[i].arg;
        }
    pthread_mutex_unlock(&mu);
    return fn;
}

static void h_ready(rd_ctx *ctx, int ok, const char *reason) {
    (void)ctx;
    host_call("ready");
    pthread_mutex_lock(&mu);
    ready_state = ok ? 1 : 0;
    snprintf(ready_why, sizeof ready_why, "%s", reason ? reason : "");
    pthread_mutex_unlock(&mu);
}

int rdpt_ready(char *reason, size_t sz) {
    pthread_mutex_lock(&mu);
    int r = ready_state;
    if (reason && sz) snprintf(reason, sz, "%s", ready_why);
    pthread_mutex_unlock(&mu);
    return r;
}

int rdpt_wait_ready(int want, int timeout_ms) {
    long long end = rdpt_now_ms() + timeout_ms;
    while (rdpt_ready(NULL, 0) != want) {
        if (rdpt_now_ms() >= end) return 0;
        rdpt_sleep_ms(10);
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Intake                                                                    */

typedef struct rec {
    rdpt_msg m;
    int handled;
} rec;

static rec *recs;
static size_t nrecs, caprecs;
static int64_t last_id = -1;
static size_t violations;
static int full, stopping, stop_requested, cancelled;
static size_t wm_idx; /* records [0, wm_idx) are handled */

static void file_copy(rdpt_file *f, const rd_attachment *a) {
    memset(f, 0, sizeof *f);
    if (!a) return;
    f->kind = xstrdup(a->kind ? a->kind : "");
    f->mime = xstrdup(a->mime ? a->mime : "");
    f->name = xstrdup(a->name ? a->name : "");
    f->url = xstrdup(a->url ? a->url : "");
    if (a->data) {
        f->data = xmalloc(a->len + 1);
        memcpy(f->data, a->data, a->len);
        f->data[a->len] = 0;
        f->len = a->len;
    }
}

static void files_free(rdpt_file *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(f[i].kind);
        free(f[i].mime);
        free(f[i].name);
        free(f[i].url);
        free(f[i].data);
    }
    free(f);
}

static rdpt_file *files_dup(const rdpt_file *f, size_t n) {
    if (!n) return NULL;
    rdpt_file *c = xcalloc(n, sizeof *c);
    for (size_t i = 0; i < n; i++) {
        rd_attachment a = {.size = sizeof a,
                           .kind = f[i].kind,
                           .mime = f[i].mime,
                           .name = f[i].name,
                           .data = f[i].data,
                           .len = f[i].len,
                           .url = f[i].url};
        file_copy(&c[i], &a);
    }
    return c;
}

static rec *add_rec_locked(void) {
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 256;
        recs = xrealloc(recs, caprecs * sizeof *recs);
    }
    rec *r = &recs[nrecs++];
    memset(r, 0, sizeof *r);
    return r;
}

static int known_id_locked(int64_t id) {
    for (size_t i = nrecs; i-- > 0;)
        if (recs[i].m.id == id) return 1;
    return 0;
}

static rd_status h_submit(rd_ctx *ctx, const rd_inbound *in) {
    (void)ctx;
    host_call("submit");
    if (!in || !plugin || plugin->kind != RD_KIND_TRANSPORT) {
        misuse("plugin bug: submit() from a %s or without a message",
               plugin ? kind_name(plugin->kind) : "plugin");
        return RD_E_INTERNAL;
    }
    pthread_mutex_lock(&mu);
    if (full) {
        pthread_mutex_unlock(&mu);
        return RD_E_FULL;
    }
    if (in->update_id <= last_id) {
        violations++;
        int dup = known_id_locked(in->update_id);
        pthread_mutex_unlock(&mu);
        return dup ? RD_E_DUPLICATE : RD_E_INTERNAL;
    }
    last_id = in->update_id;
    rec *r = add_rec_locked();
    r->m.id = in->update_id;
    r->m.chat_id = in->chat_id;
    r->m.user_id = in->user_id;
    r->m.message_id = in->message_id;
    r->m.thread_id = in->thread_id;
    /* As routerd: valid UTF-8 without NUL bytes from here on. */
    r->m.text = utf8_clean_dup(in->text ? in->text : "", in->text ? in->text_len : 0, NULL);
    r->m.flags = in->flags;
    r->m.meta = in->meta ? xstrdup(in->meta) : NULL;
    if (RD_HAS(in, nattachments) && in->attachments && in->nattachments) {
        r->m.files = xcalloc(in->nattachments, sizeof *r->m.files);
        for (size_t i = 0; i < in->nattachments; i++)
            file_copy(&r->m.files[i], in->attachments[i]);
        r->m.nfiles = in->nattachments;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static void h_skip(rd_ctx *ctx, int64_t update_id, const char *why) {
    (void)ctx;
    host_call("skip");
    pthread_mutex_lock(&mu);
    if (update_id <= last_id) violations++;
    last_id = update_id;
    rec *r = add_rec_locked();
    r->m.id = update_id;
    r->m.skipped = 1;
    r->handled = 1;
    snprintf(r->m.why, sizeof r->m.why, "%s", why ? why : "");
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int64_t watermark_locked(void) {
    while (wm_idx < nrecs && recs[wm_idx].handled)
        wm_idx++;
    return wm_idx ? recs[wm_idx - 1].m.id : -1;
}

static int64_t h_watermark(rd_ctx *ctx) {
    (void)ctx;
    host_call("watermark");
    pthread_mutex_lock(&mu);
    int64_t w = watermark_locked();
    pthread_mutex_unlock(&mu);
    return w;
}

static void h_request_stop(rd_ctx *ctx) {
    (void)ctx;
    host_call("request_stop");
    pthread_mutex_lock(&mu);
    stop_requested = 1;
    pthread_mutex_unlock(&mu);
}

static int h_stopping(rd_ctx *ctx) {
    (void)ctx;
    pthread_mutex_lock(&mu);
    int s = stopping;
    pthread_mutex_unlock(&mu);
    return s;
}

void rdpt_set_stopping(int on) {
    pthread_mutex_lock(&mu);
    stopping = on;
    pthread_mutex_unlock(&mu);
}

int rdpt_stop_requested(void) {
    pthread_mutex_lock(&mu);
    int s = stop_requested;
    pthread_mutex_unlock(&mu);
    return s;
}

void rdpt_set_full(int on) {
    pthread_mutex_lock(&mu);
    full = on;
    pthread_mutex_unlock(&mu);
}

size_t rdpt_violations(void) {
    pthread_mutex_lock(&mu);
    size_t v = violations;
    pthread_mutex_unlock(&mu);
    return v;
}

size_t rdpt_msgs(rdpt_msg **out, int include_skipped) {
    pthread_mutex_lock(&mu);
    rdpt_msg *v = xcalloc(nrecs + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i].m.skipped && !include_skipped) continue;
        v[k] = recs[i].m;
        v[k].text = recs[i].m.text ? xstrdup(recs[i].m.text) : NULL;
        v[k].meta = recs[i].m.meta ? xstrdup(recs[i].m.meta) : NULL;
        v[k].files = files_dup(recs[i].m.files, recs[i].m.nfiles);
        k++;
    }
    pthread_mutex_unlock(&mu);
    *out = v;
    return k;
}

void rdpt_msgs_free(rdpt_msg *m, size_t n) {
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].text);
        free(m[i].meta);
        files_free(m[i].files, m[i].nfiles);
    }
    free(m);
}

static size_t count_locked(int skipped) {
    size_t n = 0;
    for (size_t i = 0; i < nrecs; i++)
        n += recs[i].m.skipped == skipped;
    return n;
}

size_t rdpt_submitted(void) {
    pthread_mutex_lock(&mu);
    size_t n = count_locked(0);
    pthread_mutex_unlock(&mu);
    return n;
}

size_t rdpt_skipped(void) {
    pthread_mutex_lock(&mu);
    size_t n = count_locked(1);
    pthread_mutex_unlock(&mu);
    return n;
}

size_t rdpt_wait_submitted(size_t n, int timeout_ms) {
    long long end = rdpt_now_ms() + timeout_ms;
    size_t have;
    while ((have = rdpt_submitted()) < n && rdpt_now_ms() < end)
        rdpt_sleep_ms(5);
    return have;
}

void rdpt_ack_upto(void *self, int64_t upto) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i].m.id <= upto) recs[i].handled = 1;
    int64_t w = watermark_locked();
    pthread_mutex_unlock(&mu);
    if (w >= 0 && plugin && plugin->ops->ack) plugin->ops->ack(self, w);
}

/* One send() in rdpt_send(): a pending one ends in h_send_done(). */
struct rd_send {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, calls;
    rd_status st;
    int64_t sent_id;
    rd_error err;
};

static atomic_int pending_sends, nowait_refused;

static void h_send_done(rd_send *s, rd_status st, int64_t sent_id, const rd_error *err) {
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->st = st;
    s->sent_id = sent_id;
    if (err) s->err = *err;
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

size_t rdpt_pending_sends(void) {
    return (size_t)atomic_load(&pending_sends);
}

size_t rdpt_nowait_refused(void) {
    return (size_t)atomic_load(&nowait_refused);
}

rd_send *rdpt_send_start(void *self, const rd_outbound *out, rd_status *st, rd_error *err) {
    *st = RD_E_INTERNAL;
    if (!plugin || !plugin->ops->send || !RD_HAS(rdpt_host(), send_done)) return NULL;
    rd_send *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    rd_outbound o = *out;
    o.size = sizeof o;
    if (!o.text) o.text = "";
    if (!o.text_len) o.text_len = strlen(o.text);
    o.done = s;
    *st = RD_E_WOULDBLOCK;
    if (rdpt_host()->abi_minor >= 5 && plugin->abi_minor >= 5 &&
        (plugin->flags & RD_PF_NOWAIT_SEND) && !(plugin->flags & RD_PF_SERIAL)) {
        rd_outbound nw = o;
        nw.flags |= RD_OUT_NOWAIT;
        *st = plugin->ops->send(self, &nw, err);
        if (*st == RD_E_WOULDBLOCK) atomic_fetch_add(&nowait_refused, 1);
    }
    if (*st == RD_E_WOULDBLOCK) *st = plugin->ops->send(self, &o, err);
    if (*st == RD_PENDING) {
        atomic_fetch_add(&pending_sends, 1);
        return s;
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return NULL;
}

rd_status rdpt_send_wait(rd_send *s, rd_error *err, int64_t *sent_id) {
    if (!s) return RD_E_INTERNAL;
    pthread_mutex_lock(&s->mu);
    while (!s->done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&pending_sends, 1);
    rdpt_sleep_ms(1); /* a second send_done() would be a plugin bug */
    pthread_mutex_lock(&s->mu);
    rd_status st = s->calls == 1 ? s->st : RD_E_INTERNAL;
    if (st != RD_OK && err) *err = s->err;
    if (sent_id) *sent_id = st == RD_OK ? s->sent_id : 0;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return st;
}

rd_status rdpt_send(void *self, const rd_outbound *out, rd_error *err) {
    if (!plugin || !plugin->ops->send) return RD_E_INTERNAL;
    rd_outbound o = *out;
    o.size = sizeof o;
    if (!o.text) o.text = "";
    if (!o.text_len) o.text_len = strlen(o.text);
    rd_error e = {0};
    if (!err) err = &e;
    /* Like the router: a host of ABI 1.4 lets send() finish later. */
    rd_send *s = NULL;
    if (RD_HAS(rdpt_host(), send_done)) {
        s = calloc(1, sizeof *s);
        if (!s) return RD_E_INTERNAL;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        o.done = s;
    }
    rd_status st = RD_E_WOULDBLOCK;
    /* A host of 1.5 asks a transport that says it can (RD_PF_NOWAIT_SEND)
     * not to wait first, and sends again without the flag when it would. */
    if (s && rdpt_host()->abi_minor >= 5 && plugin->abi_minor >= 5 &&
        (plugin->flags & RD_PF_NOWAIT_SEND) && !(plugin->flags & RD_PF_SERIAL)) {
        rd_outbound nw = o;
        nw.flags |= RD_OUT_NOWAIT;
        st = plugin->ops->send(self, &nw, err);
        if (st == RD_E_WOULDBLOCK) atomic_fetch_add(&nowait_refused, 1);
    }
    if (st == RD_E_WOULDBLOCK) st = plugin->ops->send(self, &o, err);
    if (st == RD_PENDING && s) {
        atomic_fetch_add(&pending_sends, 1);
        pthread_mutex_lock(&s->mu);
        while (!s->done)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_sub(&pending_sends, 1);
        st = s->st;
        if (st != RD_OK) *err = s->err;
        if (out->sent_id) *out->sent_id = st == RD_OK ? s->sent_id : 0;
        /* a second send_done() would be a plugin bug: make it visible */
        rdpt_sleep_ms(1);
        pthread_mutex_lock(&s->mu);
        int calls = s->calls;
        pthread_mutex_unlock(&s->mu);
        if (calls != 1) st = RD_E_INTERNAL;
    } else if (st == RD_PENDING) {
        st = RD_E_INTERNAL; /* pending without a way to finish */
    }
    if (s) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
    }
    return st;
}

/* ---- echo worker ---- */

static pthread_t echo_th;
static int echo_running, echo_stop;
static void *echo_self;
static char echo_prefix[64];
static size_t echo_next;

static void *echo_loop(void *arg) {
    (void)arg;
    const rd_ops *ops = plugin->ops;
    pthread_mutex_lock(&mu);
    while (!echo_stop) {
        if (echo_next >= nrecs) {
            int64_t w = watermark_locked(); /* skips move it too */
            pthread_mutex_unlock(&mu);
            if (w >= 0 && ops->ack) ops->ack(echo_self, w);
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
        rdpt_msg m = recs[i].m;
        char *text = xasprintf("%s%s", echo_prefix, m.text);
        pthread_mutex_unlock(&mu);
        char cid[32];
        snprintf(cid, sizeof cid, "c-%lld", (long long)m.id);
        rd_outbound out = {.size = sizeof out,
                           .chat_id = m.chat_id,
                           .thread_id = m.thread_id,
                           .reply_to = m.message_id,
                           .text = text,
                           .text_len = strlen(text),
                           .correlation_id = cid,
                           .update_id = m.id};
        rd_error err = {0};
        ops->send(echo_self, &out, &err);
        free(text);
        pthread_mutex_lock(&mu);
        recs[i].handled = 1;
        int64_t w = watermark_locked();
        pthread_mutex_unlock(&mu);
        if (ops->ack) ops->ack(echo_self, w);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

void rdpt_echo_start(void *self, const char *prefix) {
    if (!plugin || echo_running) return;
    pthread_mutex_lock(&mu);
    echo_self = self;
    echo_stop = 0;
    snprintf(echo_prefix, sizeof echo_prefix, "%s", prefix ? prefix : "echo: ");
    pthread_mutex_unlock(&mu);
    if (pthread_create(&echo_th, NULL, echo_loop, NULL) == 0) echo_running = 1;
}

void rdpt_echo_stop(void) {
    if (!echo_running) return;
    pthread_mutex_lock(&mu);
    echo_stop = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(echo_th, NULL);
    echo_running = 0;
}

/* ------------------------------------------------------------------------ */
/* Backend replies                                                           */

struct rd_reply {
    char *buf;
    size_t len;
    int progress;
    char *last_progress;
    rdpt_file *files;
    size_t nfiles, bytes;
    char **choices;
    int done;       /* complete() called */
    char *req_text; /* the request's text, kept as long as the reply */
    rd_status st;
    rd_error err;
    long long done_ms;
};

static size_t max_files = 10, max_bytes = 20u << 20;
static struct rd_reply **abandoned; /* pending replies never completed in time */
static size_t nabandoned;

void rdpt_set_attach_limits(size_t files, size_t bytes) {
    pthread_mutex_lock(&mu);
    max_files = files;
    max_bytes = bytes;
    pthread_mutex_unlock(&mu);
}

static void h_reply_append(rd_reply *r, const char *text, size_t len) {
    host_call("reply_append");
    if (!r || !text) return;
    pthread_mutex_lock(&mu);
    r->buf = xrealloc(r->buf, r->len + len + 1);
    memcpy(r->buf + r->len, text, len);
    r->len += len;
    r->buf[r->len] = 0;
    pthread_mutex_unlock(&mu);
}

static atomic_int progress_delay_ms;

void rdpt_set_progress_delay_ms(int ms) {
    atomic_store(&progress_delay_ms, ms > 0 ? ms : 0);
}

static void h_reply_progress(rd_reply *r, const char *text, size_t len) {
    host_call("reply_progress");
    if (!r || !text) return;
    int delay = atomic_load(&progress_delay_ms);
    if (delay) rdpt_sleep_ms(delay); /* a transport whose progress() waits for its API */
    pthread_mutex_lock(&mu);
    r->progress++;
    free(r->last_progress);
    r->last_progress = xstrndup(text, len);
    pthread_mutex_unlock(&mu);
}

static rd_status h_reply_attach(rd_reply *r, const rd_attachment *a) {
    host_call("reply_attach");
    if (!r || !a || (!a->data && !(a->url && *a->url))) {
        add_log(RD_LOG_WARN, "reply_attach: an attachment has neither data nor url");
        return RD_E_FATAL;
    }
    pthread_mutex_lock(&mu);
    if (r->nfiles >= max_files || r->bytes + a->len > max_bytes) {
        pthread_mutex_unlock(&mu);
        return RD_E_FULL;
    }
    r->files = xrealloc(r->files, (r->nfiles + 1) * sizeof *r->files);
    file_copy(&r->files[r->nfiles++], a);
    r->bytes += a->data ? a->len : 0;
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static void h_reply_choices(rd_reply *r, const char *const *choices) {
    host_call("reply_choices");
    if (!r) return;
    pthread_mutex_lock(&mu);
    free_list(r->choices);
    r->choices = NULL;
    /* As routerd: at most 10 choices of 1 to 64 bytes, the rest dropped. */
    size_t n = 0, dropped = 0;
    for (size_t i = 0; choices && choices[i]; i++) {
        size_t l = strlen(choices[i]);
        if (!l || l > 64 || n == 10) {
            dropped++;
            continue;
        }
        if (!r->choices) r->choices = xcalloc(11, sizeof *r->choices);
        r->choices[n++] = xstrdup(choices[i]);
    }
    pthread_mutex_unlock(&mu);
    if (dropped)
        add_log(RD_LOG_WARN, "reply_choices: choice(s) dropped (empty, too long or past 10)");
}

static void h_complete(rd_reply *r, rd_status st, const rd_error *err) {
    host_call("complete");
    if (!r) return;
    pthread_mutex_lock(&mu);
    if (r->done) {
        pthread_mutex_unlock(&mu);
        misuse("plugin bug: complete() twice for one reply");
        return;
    }
    r->done = 1;
    r->st = st;
    if (err) r->err = *err;
    r->done_ms = rdpt_now_ms();
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int h_cancelled(rd_reply *r) {
    (void)r;
    pthread_mutex_lock(&mu);
    int c = cancelled;
    pthread_mutex_unlock(&mu);
    return c;
}

void rdpt_set_cancelled(int on) {
    pthread_mutex_lock(&mu);
    cancelled = on;
    pthread_mutex_unlock(&mu);
}

static void reply_free(struct rd_reply *r) {
    free(r->req_text);
    free(r->buf);
    free(r->last_progress);
    files_free(r->files, r->nfiles);
    free_list(r->choices);
    free(r);
}

/* mu held. What the reply holds, copied to the test's view of it. */
static void reply_out(const struct rd_reply *r, rdpt_reply *out) {
    free(out->text);
    out->text = utf8_clean_dup(r->buf ? r->buf : "", r->len, &out->len);
    out->progress = r->progress;
    out->last_progress =
        r->last_progress ? utf8_clean_dup(r->last_progress, strlen(r->last_progress), NULL) : NULL;
    out->files = files_dup(r->files, r->nfiles);
    out->nfiles = r->nfiles;
    if (r->choices) {
        size_t k = 0;
        while (r->choices[k])
            k++;
        out->choices = xcalloc(k + 1, sizeof *out->choices);
        for (size_t i = 0; i < k; i++)
            out->choices[i] = xstrdup(r->choices[i]);
    }
}

static char *request_of(const rdpt_request *in, rd_request *rq, char corr[40]);

int rdpt_call(void *self, const rdpt_request *in, rdpt_reply *out) {
    memset(out, 0, sizeof *out);
    out->text = xstrdup("");
    if (!plugin || plugin->kind != RD_KIND_BACKEND || !in) return -1;
    char corr[40];
    long long t0 = rdpt_now_ms();
    rd_request rq;
    char *text = request_of(in, &rq, corr);
    struct rd_reply *r = xcalloc(1, sizeof *r);
    r->req_text = text; /* the request stays valid until complete() */
    rd_status st = plugin->ops->handle(self, &rq, r, &out->err);
    long long end_ms = rdpt_now_ms();
    int rc = 0;
    pthread_mutex_lock(&mu);
    if (st == RD_PENDING) {
        out->pending = 1;
        long long limit = in->deadline_ms ? t0 + in->deadline_ms + 1000 : t0 + 30000;
        while (!r->done && rdpt_now_ms() < limit) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_nsec += 20000000L;
            if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&cv, &mu, &dl);
        }
        if (r->done) {
            st = r->st;
            out->err = r->err;
            end_ms = r->done_ms;
        } else {
            st = RD_E_TIMEOUT;
            rc = -1;
        }
    }
    out->st = st;
    out->elapsed_ms = end_ms - t0;
    if (in->deadline_ms && end_ms > t0 + in->deadline_ms)
        out->late_ms = end_ms - t0 - in->deadline_ms;
    reply_out(r, out);
    if (rc) {
        /* complete() may still come: the reply must outlive the call. */
        abandoned = xrealloc(abandoned, (nabandoned + 1) * sizeof *abandoned);
        abandoned[nabandoned++] = r;
    } else {
        reply_free(r);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void rdpt_reply_free(rdpt_reply *r) {
    if (!r) return;
    free(r->text);
    free(r->last_progress);
    files_free(r->files, r->nfiles);
    free_list(r->choices);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------ */
/* State store                                                               */

typedef struct kv_row {
    char *key;
    char *val;
    size_t len;
} kv_row;

static kv_row *kv, *snap;
static size_t nkv, capkv, nsnap;
static int kv_failing;
static atomic_int kv_delay_ms;
static atomic_int kv_sync_failing;
static atomic_uint_fast64_t kv_seq;
static int64_t lead_term = 1;
static pairs claims;     /* key -> token */
static pairs held_other; /* claims another replica holds: key -> "" */
static int64_t next_claim = 1;

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
            kv = xrealloc(kv, capkv * sizeof *kv);
        }
        memmove(kv + i + 1, kv + i, (nkv - i) * sizeof *kv);
        nkv++;
        kv[i].key = xstrdup(key);
    } else {
        free(kv[i].val);
    }
    kv[i].val = xmalloc(len + 1);
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
    host_call("kv_get");
    pthread_mutex_lock(&mu);
    int found;
    size_t i = kv_find(key, &found);
    if (found) {
        *val = xmalloc(kv[i].len + 1);
        memcpy(*val, kv[i].val, kv[i].len + 1);
        if (len) *len = kv[i].len;
    }
    pthread_mutex_unlock(&mu);
    return found ? RD_OK : RD_E_FATAL;
}

/* The writes of every kv call; the callers name themselves to host_call(). */
static rd_status kv_apply(const rd_kv_op *ops, size_t n) {
    int delay = atomic_load(&kv_delay_ms);
    if (delay > 0) rdpt_sleep_ms(delay); /* a slow disk: other calls go on meanwhile */
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
            while (i < nkv && (!op->key_end || strcmp(kv[i].key, op->key_end) < 0))
                kv_del_at(i);
        }
    }
    pthread_mutex_unlock(&mu);
    return RD_OK;
}

static rd_status h_kv_txn(rd_ctx *ctx, const rd_kv_op *ops, size_t n) {
    (void)ctx;
    host_call("kv_txn");
    return kv_apply(ops, n);
}

/* The store keeps everything at once: a lazy commit is a commit. */
static rd_status h_kv_txn_lazy(rd_ctx *ctx, const rd_kv_op *ops, size_t n, uint64_t *seq) {
    (void)ctx;
    host_call("kv_txn_lazy");
    rd_status st = kv_apply(ops, n);
    if (seq) *seq = atomic_fetch_add(&kv_seq, 1) + 1;
    return st;
}

static rd_status h_kv_sync(rd_ctx *ctx, uint64_t seq, int64_t wait_ms) {
    (void)ctx;
    (void)seq;
    (void)wait_ms;
    host_call("kv_sync");
    return atomic_load(&kv_sync_failing) ? RD_E_INTERNAL : RD_OK;
}

static rd_status h_kv_put(rd_ctx *ctx, const char *key, const void *val, size_t len) {
    (void)ctx;
    host_call("kv_put");
    rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = val, .val_len = len};
    return kv_apply(&op, 1);
}

static rd_status h_kv_del(rd_ctx *ctx, const char *key) {
    (void)ctx;
    host_call("kv_del");
    rd_kv_op op = {.op = RD_KV_DEL, .key = key};
    return kv_apply(&op, 1);
}

static rd_status h_kv_add(rd_ctx *ctx, const char *key, const void *val, size_t len) {
    (void)ctx;
    host_call("kv_add");
    pthread_mutex_lock(&mu);
    int found;
    kv_find(key, &found);
    rd_status st = kv_failing ? RD_E_INTERNAL : found ? RD_E_DUPLICATE : RD_OK;
    if (st == RD_OK) kv_put_locked(key, val, len);
    pthread_mutex_unlock(&mu);
    return st;
}

/* Visits a copy, so that fn may write. */
static rd_status h_kv_scan(rd_ctx *ctx, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    (void)ctx;
    host_call("kv_scan");
    pthread_mutex_lock(&mu);
    size_t pl = strlen(prefix), n = 0;
    kv_row *copy = xcalloc(nkv + 1, sizeof *copy);
    for (size_t i = 0; i < nkv; i++) {
        if (strncmp(kv[i].key, prefix, pl)) continue;
        copy[n].key = xstrdup(kv[i].key);
        copy[n].val = xmalloc(kv[i].len + 1);
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

/* One replica: it always leads, in one term. */
static int64_t h_lead(rd_ctx *ctx, const char *key) {
    (void)ctx, (void)key;
    host_call("lead");
    pthread_mutex_lock(&mu);
    int64_t t = lead_term;
    pthread_mutex_unlock(&mu);
    return t;
}

static int64_t h_claim(rd_ctx *ctx, const char *key, int64_t release) {
    (void)ctx;
    host_call("claim");
    char tok[32];
    pthread_mutex_lock(&mu);
    pair *p = pairs_find(&claims, key);
    int64_t r = 0;
    if (pairs_find(&held_other, key)) {
        r = 0;
    } else if (release) {
        if (p && strtoll(p->val, NULL, 10) == release) pairs_set(&claims, key, NULL);
    } else if (p) {
        r = strtoll(p->val, NULL, 10);
    } else {
        r = next_claim++;
        snprintf(tok, sizeof tok, "%lld", (long long)r);
        pairs_set(&claims, key, tok);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

void rdpt_claim_other(const char *key, int held) {
    pthread_mutex_lock(&mu);
    pairs_set(&held_other, key, held ? "" : NULL);
    if (held) pairs_set(&claims, key, NULL);
    pthread_mutex_unlock(&mu);
}

size_t rdpt_kv_count(const char *prefix) {
    pthread_mutex_lock(&mu);
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i < nkv; i++)
        n += strncmp(kv[i].key, prefix, pl) == 0;
    pthread_mutex_unlock(&mu);
    return n;
}

void rdpt_kv_set(const char *key, const char *value) {
    pthread_mutex_lock(&mu);
    kv_put_locked(key, value, strlen(value));
    pthread_mutex_unlock(&mu);
}

char *rdpt_kv_get(const char *key) {
    pthread_mutex_lock(&mu);
    int found;
    size_t i = kv_find(key, &found);
    char *v = found ? xstrdup(kv[i].val) : NULL;
    pthread_mutex_unlock(&mu);
    return v;
}

void rdpt_kv_fail(int on) {
    pthread_mutex_lock(&mu);
    kv_failing = on;
    pthread_mutex_unlock(&mu);
}

void rdpt_kv_sync_fail(int on) {
    atomic_store(&kv_sync_failing, on);
}

void rdpt_kv_delay(int ms) {
    atomic_store(&kv_delay_ms, ms > 0 ? ms : 0);
}

static void rows_free(kv_row *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(r[i].key);
        free(r[i].val);
    }
    free(r);
}

static kv_row *rows_copy(const kv_row *src, size_t n) {
    kv_row *r = xcalloc(n + 1, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].key = xstrdup(src[i].key);
        r[i].val = xmalloc(src[i].len + 1);
        memcpy(r[i].val, src[i].val, src[i].len + 1);
        r[i].len = src[i].len;
    }
    return r;
}

void rdpt_kv_snapshot(void) {
    pthread_mutex_lock(&mu);
    rows_free(snap, nsnap);
    snap = rows_copy(kv, nkv);
    nsnap = nkv;
    pthread_mutex_unlock(&mu);
}

void rdpt_kv_restore(void) {
    pthread_mutex_lock(&mu);
    rows_free(kv, nkv);
    kv = rows_copy(snap, nsnap);
    nkv = nsnap;
    capkv = nsnap + 1;
    pthread_mutex_unlock(&mu);
}

/* ------------------------------------------------------------------------ */
/* Deliveries (inbound plugins)                                              */

static rdpt_delivery *dels;
static size_t ndels;
static rd_status del_st = RD_OK;
static int64_t del_next = 1001;
static int del_delay_ms;

void rdpt_deliver_result(rd_status st, int64_t first_sent_id, int delay_ms) {
    pthread_mutex_lock(&mu);
    del_st = st;
    del_next = first_sent_id;
    del_delay_ms = delay_ms;
    pthread_mutex_unlock(&mu);
}

static char **choices_dup(const char *const *c) {
    size_t n = 0;
    while (c && c[n])
        n++;
    if (!n) return NULL;
    char **v = xcalloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = xstrdup(c[i]);
    return v;
}

static void delivery_copy(rdpt_delivery *d, const char *transport, const rd_outbound *out) {
    memset(d, 0, sizeof *d);
    d->transport = xstrdup(transport ? transport : "");
    d->chat_id = out->chat_id;
    d->thread_id = out->thread_id;
    d->reply_to = out->reply_to;
    d->text = xstrdup(out->text ? out->text : "");
    d->flags = out->flags;
    d->correlation_id = xstrdup(out->correlation_id ? out->correlation_id : "");
    d->caller = RD_HAS(out, caller) && out->caller ? xstrdup(out->caller) : NULL;
    if (RD_HAS(out, choices)) d->choices = choices_dup(out->choices);
    if (RD_HAS(out, nattachments) && out->attachments && out->nattachments) {
        d->files = xcalloc(out->nattachments, sizeof *d->files);
        for (size_t i = 0; i < out->nattachments; i++)
            file_copy(&d->files[i], out->attachments[i]);
        d->nfiles = out->nattachments;
    }
}

/* Recorded and answered as the test chose (rdpt_deliver_result). */
static rd_status h_deliver(rd_ctx *ctx, const char *transport, const rd_outbound *out,
                           int64_t timeout_ms, int64_t *sent_id, rd_error *err) {
    (void)ctx;
    host_call("deliver");
    if (sent_id) *sent_id = 0;
    if (!out || !transport || !plugin || plugin->kind != RD_KIND_INBOUND) {
        misuse("plugin bug: deliver() from a %s or without a message",
               plugin ? kind_name(plugin->kind) : "plugin");
        return RD_E_INTERNAL;
    }
    pthread_mutex_lock(&mu);
    int delay = del_delay_ms;
    pthread_mutex_unlock(&mu);
    if (delay > 0) rdpt_sleep_ms(delay);
    pthread_mutex_lock(&mu);
    rd_status st = del_st;
    int64_t id = st == RD_OK ? del_next : 0;
    if (st == RD_OK && del_next) del_next++;
    dels = xrealloc(dels, (ndels + 1) * sizeof *dels);
    delivery_copy(&dels[ndels], transport, out);
    dels[ndels].timeout_ms = timeout_ms;
    dels[ndels].st = st;
    dels[ndels].sent_id = id;
    ndels++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (sent_id) *sent_id = id;
    if (st != RD_OK) h_error(err, st, "fatal", "delivery refused by the test");
    return st;
}

static void delivery_free(rdpt_delivery *d) {
    free(d->transport);
    free(d->text);
    free(d->correlation_id);
    free(d->caller);
    free_list(d->choices);
    files_free(d->files, d->nfiles);
}

size_t rdpt_deliveries(rdpt_delivery **out) {
    pthread_mutex_lock(&mu);
    rdpt_delivery *v = xcalloc(ndels + 1, sizeof *v);
    for (size_t i = 0; i < ndels; i++) {
        v[i] = dels[i];
        v[i].transport = xstrdup(dels[i].transport);
        v[i].text = xstrdup(dels[i].text);
        v[i].correlation_id = xstrdup(dels[i].correlation_id);
        v[i].caller = dels[i].caller ? xstrdup(dels[i].caller) : NULL;
        v[i].choices = choices_dup((const char *const *)dels[i].choices);
        v[i].files = files_dup(dels[i].files, dels[i].nfiles);
    }
    size_t n = ndels;
    pthread_mutex_unlock(&mu);
    *out = v;
    return n;
}

void rdpt_deliveries_free(rdpt_delivery *d, size_t n) {
    for (size_t i = 0; d && i < n; i++)
        delivery_free(&d[i]);
    free(d);
}

size_t rdpt_delivered(void) {
    pthread_mutex_lock(&mu);
    size_t n = ndels;
    pthread_mutex_unlock(&mu);
    return n;
}

size_t rdpt_wait_delivered(size_t n, int timeout_ms) {
    long long end = rdpt_now_ms() + timeout_ms;
    size_t have;
    while ((have = rdpt_delivered()) < n && rdpt_now_ms() < end)
        rdpt_sleep_ms(5);
    return have;
}

/* host->answered() calls; `inside` when made in an rdpt_intercept() on
 * the same thread (the router ignores the others). */
static rdpt_answered *ans;
static size_t nans;
static _Thread_local int intercepting;

static void h_answered(rd_ctx *ctx, const char *correlation_id, const char *caller) {
    (void)ctx;
    host_call("answered");
    pthread_mutex_lock(&mu);
    ans = xrealloc(ans, (nans + 1) * sizeof *ans);
    ans[nans++] = (rdpt_answered){
        .correlation_id = correlation_id ? xstrdup(correlation_id) : NULL,
        .caller = caller ? xstrdup(caller) : NULL,
        .inside = intercepting,
    };
    pthread_mutex_unlock(&mu);
}

size_t rdpt_answers(rdpt_answered **out) {
    pthread_mutex_lock(&mu);
    rdpt_answered *v = xcalloc(nans + 1, sizeof *v);
    for (size_t i = 0; i < nans; i++) {
        v[i] = ans[i];
        v[i].correlation_id = ans[i].correlation_id ? xstrdup(ans[i].correlation_id) : NULL;
        v[i].caller = ans[i].caller ? xstrdup(ans[i].caller) : NULL;
    }
    size_t n = nans;
    pthread_mutex_unlock(&mu);
    *out = v;
    return n;
}

void rdpt_answers_free(rdpt_answered *a, size_t n) {
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].correlation_id);
        free(a[i].caller);
    }
    free(a);
}

static void deliveries_clear_locked(void) {
    for (size_t i = 0; i < ndels; i++)
        delivery_free(&dels[i]);
    free(dels);
    dels = NULL;
    ndels = 0;
    del_st = RD_OK;
    del_delay_ms = 0;
    /* del_next stays: message ids keep growing across a restart. */
    for (size_t i = 0; i < nans; i++) {
        free(ans[i].correlation_id);
        free(ans[i].caller);
    }
    free(ans);
    ans = NULL;
    nans = 0;
}

/* The request a worker builds for an admitted message. */
static char *request_of(const rdpt_request *in, rd_request *rq, char corr[40]) {
    static unsigned long seq;
    pthread_mutex_lock(&mu);
    unsigned long n = ++seq;
    pthread_mutex_unlock(&mu);
    snprintf(corr, 40, "%032lx", 0xc0ffee0000UL + n);
    size_t tlen;
    char *text = utf8_clean_dup(in->text ? in->text : "", in->text ? strlen(in->text) : 0, &tlen);
    *rq = (rd_request){.size = sizeof *rq,
                       .chat_id = in->chat_id,
                       .user_id = in->user_id,
                       .message_id = in->message_id,
                       .text = text,
                       .text_len = tlen,
                       .persona = in->persona ? in->persona : "default",
                       .correlation_id = in->correlation_id ? in->correlation_id : corr,
                       .traceparent = in->traceparent,
                       .deadline_ms = in->deadline_ms ? h_now_ms() + in->deadline_ms : 0,
                       .meta = in->meta,
                       .flags = in->flags,
                       .update_id = in->update_id,
                       .transport = in->transport ? in->transport : "console",
                       .attachments = in->attachments,
                       .nattachments = in->nattachments,
                       .reply_to = in->reply_to};
    return text;
}

int rdpt_intercept_rq(void *self, const rd_request *rq) {
    if (!plugin || plugin->kind != RD_KIND_INBOUND || !rq) return -1;
    const rd_ops *o = plugin->ops;
    if (o->size < offsetof(rd_ops, intercept) + sizeof o->intercept || !o->intercept) return -1;
    intercepting = 1;
    int r = o->intercept(self, rq) ? 1 : 0;
    intercepting = 0;
    return r;
}

int rdpt_intercept(void *self, const rdpt_request *in) {
    if (!in) return -1;
    rd_request rq;
    char corr[40];
    char *text = request_of(in, &rq, corr);
    int r = rdpt_intercept_rq(self, &rq);
    free(text);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The table                                                                 */

static const rd_host host_full = {
    .size = sizeof host_full,
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
    .observe = h_observe,
    .metrics_visit = h_metrics_visit,
    .http_route = h_http_route,
    .ready = h_ready,
    .submit = h_submit,
    .skip = h_skip,
    .watermark = h_watermark,
    .request_stop = h_request_stop,
    .stopping = h_stopping,
    .reply_append = h_reply_append,
    .reply_progress = h_reply_progress,
    .complete = h_complete,
    .cancelled = h_cancelled,
    .kv_get = h_kv_get,
    .kv_put = h_kv_put,
    .kv_del = h_kv_del,
    .kv_txn = h_kv_txn,
    .kv_scan = h_kv_scan,
    .redact = h_redact,
    .error = h_error,
    .http_route_auth = h_http_route_auth,
    .lead = h_lead,
    .claim = h_claim,
    .kv_add = h_kv_add,
    .cfg_bind = h_cfg_bind,
    .reply_attach = h_reply_attach,
    .reply_choices = h_reply_choices,
    .deliver = h_deliver,
    .answered = h_answered,
    .send_done = h_send_done,
    .kv_txn_lazy = h_kv_txn_lazy,
    .kv_sync = h_kv_sync,
};

/* What plugins get: host_full less the calls a test switched off. */
static rd_host host;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_init(void) {
    host = host_full;
}

/* The table as a host of ABI 1.minor has it: shorter, so RD_HAS() finds
 * the later members absent. */
int rdpt_set_host_minor(uint32_t minor) {
    if (minor > RD_ABI_MINOR) return -1;
    pthread_once(&host_once, host_init);
    host.abi_minor = minor;
    host.size = minor < 1   ? (uint32_t)offsetof(rd_host, http_route_auth)
                : minor < 2 ? (uint32_t)offsetof(rd_host, cfg_bind)
                : minor < 3 ? (uint32_t)offsetof(rd_host, deliver)
                : minor < 4 ? (uint32_t)offsetof(rd_host, send_done)
                : minor < 6 ? (uint32_t)offsetof(rd_host, kv_txn_lazy)
                            : (uint32_t)sizeof host;
    return 0;
}

const rd_host *rdpt_host(void) {
    pthread_once(&host_once, host_init);
    return &host;
}

int rdpt_offer(const char *call, int on) {
    pthread_once(&host_once, host_init);
#define OPTIONAL(m)                                                                                \
    if (!strcmp(call, #m)) return host.m = on ? host_full.m : NULL, 0;
    OPTIONAL(http_route_auth)
    OPTIONAL(lead)
    OPTIONAL(claim)
    OPTIONAL(kv_add)
    OPTIONAL(cfg_bind)
    OPTIONAL(reply_attach)
    OPTIONAL(reply_choices)
    OPTIONAL(deliver)
    OPTIONAL(answered)
    OPTIONAL(kv_txn_lazy)
    OPTIONAL(kv_sync)
#undef OPTIONAL
    return -1;
}

rd_ctx *rdpt_ctx(void) {
    return &the_ctx;
}

/* routerd's own binding over the validated section. */
static rd_status h_cfg_bind(rd_ctx *ctx, void *conf, size_t conf_size, rd_error *err) {
    (void)ctx;
    host_call("cfg_bind");
    char msg[sizeof cfg_err];
    pthread_mutex_lock(&mu);
    int rc = validate_locked();
    if (rc)
        snprintf(msg, sizeof msg, "%s", cfg_err);
    else if (!conf)
        rc = -1, snprintf(msg, sizeof msg, "no config struct");
    else
        rc = cfg_bind_set(&cfg, conf, conf_size, msg, sizeof msg);
    pthread_mutex_unlock(&mu);
    if (!rc) return RD_OK;
    h_error(err, RD_E_CONFIG, "fatal", "cfg_bind: %s (a plugin bug)", msg);
    return RD_E_CONFIG;
}

/* ------------------------------------------------------------------------ */
/* Plugin choice and lifecycle                                               */

int rdpt_use(const rd_plugin *desc, char *err, size_t errsz) {
    char tmp[256];
    const char *p = desc ? plugin_check_desc(desc, 0, tmp, sizeof tmp) : "no descriptor";
    if (p) {
        if (err && errsz)
            snprintf(err, errsz, "plugin '%s' refused: %s", desc && desc->name ? desc->name : "?",
                     p);
        return -1;
    }
    pthread_mutex_lock(&mu);
    plugin = desc;
    cfg_ok = false;
    pthread_mutex_unlock(&mu);
    return 0;
}

int rdpt_load(const char *path, rd_kind want, char *err, size_t errsz) {
    char real[4096];
    if (!realpath(path, real)) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    void *dl;
    const rd_plugin *d = plugin_dlopen(path, real, want, &dl, err, errsz);
    if (!d) return -1;
    pthread_mutex_lock(&mu);
    void *old = plugin_dl;
    plugin = d;
    plugin_dl = dl;
    cfg_ok = false;
    pthread_mutex_unlock(&mu);
    if (old) dlclose(old);
    return 0;
}

const rd_plugin *rdpt_plugin(void) {
    return plugin;
}

void rdpt_new_run(void) {
    rdpt_echo_stop();
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i].m.text);
        free(recs[i].m.meta);
        files_free(recs[i].m.files, recs[i].m.nfiles);
    }
    nrecs = 0;
    last_id = -1;
    violations = 0;
    full = 0;
    wm_idx = 0;
    echo_next = 0;
    stopping = 0;
    stop_requested = 0;
    cancelled = 0;
    ready_state = 0;
    ready_why[0] = 0;
    phase = 0;
    late_calls = 0;
    late_first[0] = 0;
    routes_clear_locked();
    deliveries_clear_locked();
    pthread_mutex_unlock(&mu);
}

void rdpt_reset(void) {
    if (live) {
        fprintf(stderr, "rdpt: shutting down an instance a failed test left running\n");
        rdpt_shutdown(live);
    }
    rdpt_new_run();
    pthread_mutex_lock(&mu);
    rows_free(kv, nkv);
    kv = NULL;
    nkv = capkv = 0;
    rows_free(snap, nsnap);
    snap = NULL;
    nsnap = 0;
    kv_failing = 0;
    atomic_store(&kv_delay_ms, 0);
    atomic_store(&kv_sync_failing, 0);
    lead_term = 1;
    pairs_clear(&claims);
    pairs_clear(&held_other);
    pairs_clear(&cfg_text);
    parse_err[0] = 0;
    pairs_clear(&info);
    for (size_t i = 0; i < nabandoned; i++)
        reply_free(abandoned[i]);
    free(abandoned);
    abandoned = NULL;
    nabandoned = 0;
    retire_cfg_locked();
    for (size_t i = 0; i < nretired; i++)
        cfg_free(&retired[i]);
    free(retired);
    retired = NULL;
    nretired = 0;
    cfg_ok = false;
    free(logs);
    logs = NULL;
    logs_len = logs_cap = 0;
    for (size_t i = 0; i < nseries; i++) {
        free_list(series[i]->values);
        free(series[i]->buckets);
        free(series[i]);
    }
    free(series);
    series = NULL;
    nseries = 0;
    for (size_t i = 0; i < nfamilies; i++) {
        free_list(families[i]->labels);
        free(families[i]->name);
        free(families[i]->help);
        free(families[i]->le);
        free(families[i]);
    }
    free(families);
    families = NULL;
    nfamilies = 0;
    nmisuse = 0;
    misuse_first[0] = 0;
    pinned_now = 0;
    max_files = 10;
    max_bytes = 20u << 20;
    atomic_store(&progress_delay_ms, 0);
    del_next = 1001;
    pthread_mutex_unlock(&mu);
    pthread_once(&host_once, host_init);
    host = host_full;
}

void *rdpt_start(rd_status *st, rd_error *err) {
    rd_error e = {0};
    rd_status s0;
    if (!err) err = &e;
    if (!st) st = &s0;
    memset(err, 0, sizeof *err);
    if (!plugin) {
        *st = RD_E_INTERNAL;
        snprintf(err->msg, sizeof err->msg, "no plugin loaded");
        return NULL;
    }
    char cerr[512];
    if (rdpt_check(cerr, sizeof cerr)) {
        *st = RD_E_CONFIG;
        h_error(err, RD_E_CONFIG, "fatal", "%s", cerr);
        return NULL;
    }
    size_t bugs = rdpt_misuses(NULL, 0);
    pthread_mutex_lock(&mu);
    phase = 1;
    pthread_mutex_unlock(&mu);
    const rd_ops *ops = plugin->ops;
    void *self = NULL;
    /* As routerd: a failed create() is not destroyed, a failed start() is
     * destroyed without stop(). */
    rd_status s = ops->create(rdpt_host(), &the_ctx, &self, err);
    bool created = s == RD_OK, started = false;
    char bug[256];
    if (s == RD_OK && rdpt_misuses(bug, sizeof bug) > bugs) {
        s = RD_E_CONFIG;
        h_error(err, s, "fatal", "%s", bug);
    }
    if (s == RD_OK && ops->start) s = ops->start(self, err);
    started = s == RD_OK;
    if (s == RD_OK && rdpt_misuses(bug, sizeof bug) > bugs) {
        s = RD_E_CONFIG;
        h_error(err, s, "fatal", "%s", bug);
    }
    if (s != RD_OK) {
        if (started && ops->quiesce) ops->quiesce(self);
        if (started && ops->stop) ops->stop(self);
        if (created && ops->destroy) ops->destroy(self);
        self = NULL;
    }
    *st = s;
    live = self;
    return self;
}

void rdpt_forget_instance(void *self) {
    if (self == live) live = NULL;
}

long long rdpt_shutdown(void *self) {
    if (!self || !plugin) return 0;
    if (self == live) live = NULL;
    const rd_ops *ops = plugin->ops;
    rdpt_echo_stop();
    rdpt_set_stopping(1);
    long long t0 = rdpt_now_ms();
    if (ops->quiesce) ops->quiesce(self);
    if (ops->stop) ops->stop(self);
    long long dt = rdpt_now_ms() - t0;
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_mutex_unlock(&mu);
    if (ops->destroy) ops->destroy(self);
    return dt;
}

int rdpt_teardown_ok(char *err, size_t errsz) {
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (late_calls) {
        if (err && errsz)
            snprintf(err, errsz, "%zu host calls after stop(): first %s", late_calls, late_first);
        rc = -1;
    } else if (nabandoned) {
        if (err && errsz)
            snprintf(err, errsz, "%zu backend replies were never completed", nabandoned);
        rc = -1;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}
