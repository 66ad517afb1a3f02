/* Metrics registry. Families and series are created rarely (start-up, new
 * label values) under a mutex; updates are lock-free atomics on resolved
 * series, so the hot path never waits. */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct rd_series {
    struct rd_series *next;
    char **values;
    _Atomic uint64_t bits; /* double value, as bits */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t *buckets; /* non-cumulative counts, nb + 1 (last is +Inf) */
    struct rd_metric *fam;
};

struct rd_metric {
    struct rd_metric *next;
    rd_metric_type type;
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *le;
    size_t nb;
    rd_series *series;
    pthread_mutex_t mu;
};

static rd_metric *families, *families_tail;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,  5,     10,   15,  30,   60};

static uint64_t d2b(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double b2d(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v) {
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d2b(b2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static bool same_labels(const rd_metric *m, const char *const *labels) {
    size_t n = 0;
    while (labels && labels[n])
        n++;
    if (n != m->nlabels) return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(labels[i], m->labels[i])) return false;
    return true;
}

rd_metric *metric_family(rd_metric_type type, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t nb) {
    pthread_mutex_lock(&reg_mu);
    for (rd_metric *m = families; m; m = m->next) {
        if (!strcmp(m->name, name)) {
            rd_metric *r = m->type == type && same_labels(m, labels) ? m : NULL;
            pthread_mutex_unlock(&reg_mu);
            if (!r) LOGE("metric %s registered twice with different shapes", name);
            return r;
        }
    }
    rd_metric *m = xcalloc(1, sizeof *m);
    m->type = type;
    m->name = xstrdup(name);
    m->help = xstrdup(help ? help : "");
    while (labels && labels[m->nlabels])
        m->nlabels++;
    m->labels = xcalloc(m->nlabels + 1, sizeof *m->labels);
    for (size_t i = 0; i < m->nlabels; i++)
        m->labels[i] = xstrdup(labels[i]);
    if (type == RD_METRIC_HISTOGRAM) {
        if (!buckets || !nb) {
            buckets = default_buckets;
            nb = sizeof default_buckets / sizeof *default_buckets;
        }
        m->le = xmalloc(nb * sizeof *m->le);
        memcpy(m->le, buckets, nb * sizeof *m->le);
        m->nb = nb;
    }
    pthread_mutex_init(&m->mu, NULL);
    if (families_tail)
        families_tail->next = m;
    else
        families = m;
    families_tail = m;
    pthread_mutex_unlock(&reg_mu);
    return m;
}

rd_series *metric_series(rd_metric *m, const char *const *values) {
    if (!m) return NULL;
    /* Label values may come from a peer's text: never a secret in them. */
    char **red = xcalloc(m->nlabels + 1, sizeof *red);
    for (size_t i = 0; i < m->nlabels; i++)
        red[i] = redact_dup(values[i] ? values[i] : "");
    pthread_mutex_lock(&m->mu);
    rd_series *s;
    for (s = m->series; s; s = s->next) {
        size_t i = 0;
        while (i < m->nlabels && !strcmp(s->values[i], red[i]))
            i++;
        if (i == m->nlabels) break;
    }
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->fam = m;
        s->values = red;
        red = NULL;
        if (m->type == RD_METRIC_HISTOGRAM) s->buckets = xcalloc(m->nb + 1, sizeof *s->buckets);
        /* Append so exposition order follows creation order. */
        rd_series **pp = &m->series;
        while (*pp)
            pp = &(*pp)->next;
        *pp = s;
    }
    pthread_mutex_unlock(&m->mu);
    if (red) free_list(red);
    return s;
}

void series_add(rd_series *s, double v) {
    if (s) atomic_add_double(&s->bits, v);
}

void series_set(rd_series *s, double v) {
    if (s) atomic_store_explicit(&s->bits, d2b(v), memory_order_relaxed);
}

void series_observe(rd_series *s, double v) {
    if (!s || !s->buckets) return;
    const rd_metric *m = s->fam;
    size_t i = 0;
    while (i < m->nb && v > m->le[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum_bits, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

double series_value(rd_series *s) {
    return s ? b2d(atomic_load_explicit(&s->bits, memory_order_relaxed)) : NAN;
}

uint64_t series_count(rd_series *s) {
    return s ? atomic_load_explicit(&s->count, memory_order_relaxed) : 0;
}

void metrics_visit(rd_metric_visit_fn fn, void *arg) {
    pthread_mutex_lock(&reg_mu);
    for (rd_metric *m = families; m; m = m->next) {
        rd_metric_view mv = {.size = sizeof mv,
                             .name = m->name,
                             .help = m->help,
                             .type = m->type,
                             .label_names = (const char *const *)m->labels,
                             .nlabels = m->nlabels};
        pthread_mutex_lock(&m->mu);
        uint64_t *cum = m->nb ? xmalloc((m->nb + 1) * sizeof *cum) : NULL;
        for (rd_series *s = m->series; s; s = s->next) {
            rd_series_view sv = {.size = sizeof sv,
                                 .label_values = (const char *const *)s->values,
                                 .value = series_value(s)};
            if (s->buckets) {
                uint64_t run = 0;
                for (size_t i = 0; i <= m->nb; i++) {
                    run += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
                    cum[i] = run;
                }
                sv.bucket_le = m->le;
                sv.bucket_counts = cum;
                sv.nbuckets = m->nb;
                /* The +Inf bucket is the count, so the two always agree. */
                sv.count = run;
                sv.sum = b2d(atomic_load_explicit(&s->sum_bits, memory_order_relaxed));
            }
            fn(arg, &mv, &sv);
        }
        free(cum);
        pthread_mutex_unlock(&m->mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

void metrics_free_all(void) {
    pthread_mutex_lock(&reg_mu);
    rd_metric *m = families;
    while (m) {
        rd_metric *next = m->next;
        rd_series *s = m->series;
        while (s) {
            rd_series *sn = s->next;
            for (size_t i = 0; i < m->nlabels; i++)
                free(s->values[i]);
            free(s->values);
            free(s->buckets);
            free(s);
            s = sn;
        }
        for (size_t i = 0; i < m->nlabels; i++)
            free(m->labels[i]);
        free(m->labels);
        free(m->le);
        free(m->name);
        free(m->help);
        pthread_mutex_destroy(&m->mu);
        free(m);
        m = next;
    }
    families = families_tail = NULL;
    pthread_mutex_unlock(&reg_mu);
}
