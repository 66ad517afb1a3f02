/*
 * Helpers every file of the telegram transport uses: metric series (cached
 * per label pair), the clock, sleeping until stop, waking every waiting
 * thread, and the retry back-off. They call only the host, so any file may
 * use them.
 */
#include "telegram.h"
#include "backoff.h"
#include "hash_mix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */

struct tg_series_cache {
    rd_metric *m;
    char a[48], b[48];
    rd_series *s;
    tg_series_cache *next;
};

static rd_series *series_of(tg *t, rd_metric *m, const char *a, const char *b) {
    if (!m) return NULL;
    a = a ? a : "";
    b = b ? b : "";
    pthread_mutex_lock(&t->series_mu);
    tg_series_cache *c = t->series;
    for (; c; c = c->next)
        if (c->m == m && !strcmp(c->a, a) && !strcmp(c->b, b)) break;
    if (!c && (c = calloc(1, sizeof *c))) {
        c->m = m;
        snprintf(c->a, sizeof c->a, "%s", a);
        snprintf(c->b, sizeof c->b, "%s", b);
        const char *vals[2] = {c->a, c->b};
        c->s = t->h->series(m, vals);
        c->next = t->series;
        t->series = c;
    }
    pthread_mutex_unlock(&t->series_mu);
    return c ? c->s : NULL;
}

void tg_count(tg *t, rd_metric *m, const char *a, const char *b, double v) {
    rd_series *s = series_of(t, m, a, b);
    if (s) t->h->add(s, v);
}

void tg_gauge_l(tg *t, rd_metric *m, const char *a, double v) {
    rd_series *s = series_of(t, m, a, NULL);
    if (s) t->h->set(s, v);
}

void tg_gauge(tg *t, rd_metric *m, double v) {
    rd_series *s = series_of(t, m, NULL, NULL);
    if (s) t->h->set(s, v);
}

void tg_observe(tg *t, rd_metric *m, const char *a, double v) {
    rd_series *s = series_of(t, m, a, NULL);
    if (s) t->h->observe(s, v);
}

void tg_metrics_free(tg *t) {
    for (tg_series_cache *c = t->series, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    t->series = NULL;
}

/* ------------------------------------------------------------------------ */
/* Time                                                                      */

int64_t tg_now(tg *t) {
    return t->h->now_ms();
}

struct timespec tg_deadline(int64_t ms) {
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    return dl;
}

int tg_sleep(tg *t, int64_t ms, atomic_int *flag) {
    if (flag && atomic_load(flag)) return 1;
    if (ms <= 0) return 0;
    struct timespec dl = tg_deadline(ms);
    pthread_mutex_lock(&t->wake_mu);
    while (!(flag && atomic_load(flag))) {
        if (pthread_cond_timedwait(&t->wake_cv, &t->wake_mu, &dl) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&t->wake_mu);
    return flag && atomic_load(flag);
}

int tg_nap(tg *t, int64_t ms, atomic_int *flag, uint64_t since) {
    if (flag && atomic_load(flag)) return 1;
    if (ms <= 0) return 0;
    struct timespec dl = tg_deadline(ms);
    pthread_mutex_lock(&t->wake_mu);
    atomic_store(&t->napping, 1);
    while (!(flag && atomic_load(flag)) && atomic_load(&t->wake_gen) == since) {
        if (pthread_cond_timedwait(&t->wake_cv, &t->wake_mu, &dl) == ETIMEDOUT) break;
    }
    atomic_store(&t->napping, 0);
    pthread_mutex_unlock(&t->wake_mu);
    return flag && atomic_load(flag);
}

/* The count goes up before napping is read, and a nap sets napping before
 * it reads the count (both sequentially consistent): either the kick sees
 * the nap and signals under the lock, or the nap sees the new count. Most
 * kicks (one per acknowledged message) find no nap and cost no system
 * call. */
void tg_kick(tg *t) {
    atomic_fetch_add(&t->wake_gen, 1);
    if (!atomic_load(&t->napping)) return;
    pthread_mutex_lock(&t->wake_mu);
    pthread_cond_broadcast(&t->wake_cv);
    pthread_mutex_unlock(&t->wake_mu);
}

void tg_wake(tg *t) {
    pthread_mutex_lock(&t->wake_mu);
    pthread_cond_broadcast(&t->wake_cv);
    pthread_mutex_unlock(&t->wake_mu);
    pthread_mutex_lock(&t->typ_mu);
    pthread_cond_broadcast(&t->typ_cv);
    pthread_mutex_unlock(&t->typ_mu);
    pthread_mutex_lock(&t->in_mu);
    pthread_cond_broadcast(&t->in_cv);
    pthread_mutex_unlock(&t->in_mu);
    pthread_mutex_lock(&t->ob_mu);
    pthread_cond_broadcast(&t->ob_cv);
    pthread_mutex_unlock(&t->ob_mu);
    pthread_mutex_lock(&t->rep_mu);
    pthread_cond_broadcast(&t->rep_cv);
    pthread_mutex_unlock(&t->rep_mu);
    if (t->multi) curl_multi_wakeup(t->multi);
}

int64_t tg_backoff(tg *t, int attempt) {
    /* The clock and a stack address seed the jitter. */
    uint64_t x = hash_mix64((uint64_t)t->h->wall_ns() ^ ((uint64_t)(uintptr_t)&attempt << 7));
    return backoff_jitter_ms(t->c.retry_base_ms, t->c.retry_max_ms, attempt, x);
}
