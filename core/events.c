/* Event fan-out: each sink instance has a bounded queue and one dispatcher
 * thread, so a slow sink drops (and counts) events instead of slowing the
 * router. The dispatcher takes events in batches: after a batch it lets
 * SINK_BATCH_MS pass before it looks again, and producers wake it only
 * when it sleeps with an empty queue, so a steady trickle of messages
 * costs a sink at most one wake-up per SINK_BATCH_MS, not one per event.
 * A flush or a stop wakes it at once. */
#include "router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sinkq {
    rd_ctx *ctx;
    rd_event **ring;
    size_t cap, head, len;
    pthread_mutex_t mu;
    pthread_cond_t cv, drained;
    bool stop, busy;
    bool parked;              /* the dispatcher waits for an event: the next push wakes it */
    int marks;                /* flush markers queued: they end a batch pause */
    uint64_t queued, flushed; /* items ever queued / handled */
    uint64_t dropped;         /* events refused because the queue was full */
    pthread_t th;
    /* main thread only (sinks_report) */
    uint64_t seen, episode_base;
    bool dropping;
} sinkq;

static sinkq **queues;
static size_t nqueues;
static atomic_bool running;
static _Thread_local bool in_dispatch;

/* How long events may wait for the next batch; short beside what sinks do
 * with them (scrapes, log lines, exports every few seconds). */
#define SINK_BATCH_MS 10
/* Events handed to the sink per lock hold. */
#define SINK_BATCH_MAX 256

static size_t slen(const char *s) {
    return s ? strlen(s) + 1 : 0;
}

static const char *put(char **p, const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *r = *p;
    *p += n;
    return r;
}

/* One allocation holds the event and all its strings. */
static rd_event *ev_copy(const rd_event *e) {
    size_t n = sizeof *e + slen(e->source) + slen(e->msg) + slen(e->correlation_id) +
               slen(e->chat_id_hash) + slen(e->persona) + slen(e->transport) + slen(e->backend) +
               slen(e->status) + slen(e->failure_class) + slen(e->trace_id) + slen(e->span_id) +
               slen(e->backend_span_id) + slen(e->caller);
    rd_event *c = xmalloc(n);
    *c = *e;
    c->size = sizeof *c;
    char *p = (char *)(c + 1);
    c->source = put(&p, e->source);
    c->msg = put(&p, e->msg);
    c->correlation_id = put(&p, e->correlation_id);
    c->chat_id_hash = put(&p, e->chat_id_hash);
    c->persona = put(&p, e->persona);
    c->transport = put(&p, e->transport);
    c->backend = put(&p, e->backend);
    c->status = put(&p, e->status);
    c->failure_class = put(&p, e->failure_class);
    c->trace_id = put(&p, e->trace_id);
    c->span_id = put(&p, e->span_id);
    c->backend_span_id = put(&p, e->backend_span_id);
    c->caller = put(&p, e->caller);
    return c;
}

static void *dispatch(void *arg) {
    pthread_setname_np(pthread_self(), "rd-events");
    sinkq *q = arg;
    in_dispatch = true;
    rd_event *batch[SINK_BATCH_MAX];
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->len && !q->stop) {
            q->parked = true;
            pthread_cond_wait(&q->cv, &q->mu);
            q->parked = false;
        }
        if (!q->len && q->stop) break;
        size_t n = 0;
        bool mark = false;
        while (q->len && n < SINK_BATCH_MAX) {
            rd_event *e = q->ring[q->head];
            q->head = (q->head + 1) % q->cap;
            q->len--;
            batch[n++] = e;
            if (!e) {
                mark = true;
                q->marks--;
                break; /* what comes after a flush marker waits for it */
            }
        }
        q->busy = true;
        pthread_mutex_unlock(&q->mu);
        for (size_t i = 0; i < n; i++) {
            rd_event *e = batch[i];
            if (e) {
                q->ctx->ops->event(q->ctx->self, e);
                free(e);
            } else if (q->ctx->ops->flush) { /* a flush marker */
                rd_error err = {0};
                if (q->ctx->ops->flush(q->ctx->self, &err) != RD_OK)
                    log_msg(q->ctx->name, RD_LOG_WARN, "flush failed: %s", err.msg);
            }
        }
        pthread_mutex_lock(&q->mu);
        q->busy = false;
        q->flushed += n;
        pthread_cond_broadcast(&q->drained);
        /* A short queue after a batch: let more gather before the next one.
         * A full batch, a flush, a stop or a filling queue go on at once. */
        if (n < SINK_BATCH_MAX && !mark && !q->stop && !q->marks && q->len < q->cap / 2) {
            struct timespec dl = deadline_in(CLOCK_REALTIME, SINK_BATCH_MS * 1000);
            while (!q->stop && !q->marks && q->len < q->cap / 2)
                if (pthread_cond_timedwait(&q->cv, &q->mu, &dl) != 0) break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

void sinks_start(void) {
    for (size_t i = 0; i < R.nctx; i++) {
        rd_ctx *c = R.ctx[i];
        if (c->kind != RD_KIND_SINK) continue;
        sinkq *q = xcalloc(1, sizeof *q);
        q->ctx = c;
        q->cap = 8192;
        q->ring = xcalloc(q->cap, sizeof *q->ring);
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        pthread_cond_init(&q->drained, NULL);
        const char *lv[] = {c->inst};
        c->m_dropped =
            metric_series(metric_family(RD_METRIC_COUNTER, "routerd_events_dropped_total",
                                        "Events a sink could not keep up with and dropped.",
                                        (const char *const[]){"sink", NULL}, NULL, 0),
                          lv);
        c->q = q;
        pthread_create(&q->th, NULL, dispatch, q);
        queues = xrealloc(queues, (nqueues + 1) * sizeof *queues);
        queues[nqueues++] = q;
    }
    atomic_store(&running, nqueues > 0);
    if (nqueues) log_set_hook(router_log_event);
}

static void push(sinkq *q, const rd_event *e) {
    pthread_mutex_lock(&q->mu);
    if ((q->len == q->cap && e) || q->stop) {
        if (!q->stop) q->dropped++;
        pthread_mutex_unlock(&q->mu);
        series_add(q->ctx->m_dropped, 1);
        return;
    }
    q->ring[(q->head + q->len) % q->cap] = e ? ev_copy(e) : NULL;
    q->len++;
    q->queued++;
    if (!e) q->marks++;
    /* A pausing dispatcher comes back by itself; a marker or a queue half
     * full ends its pause. */
    if (q->parked || !e || q->len == q->cap / 2) pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void emit_event(const rd_event *ev) {
    if (!atomic_load(&running)) return;
    for (size_t i = 0; i < nqueues; i++)
        push(queues[i], ev);
}

void router_log_event(const char *source, rd_log_level lvl, const char *msg) {
    /* A sink's own log lines are not fed back to sinks. */
    if (in_dispatch || !atomic_load(&running)) return;
    rd_event ev = {.size = sizeof ev,
                   .type = RD_EV_LOG,
                   .level = lvl,
                   .ts_ns = wall_ns(),
                   .source = source,
                   .msg = msg};
    emit_event(&ev);
}

static void drop_note(sinkq *q, rd_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void drop_note(sinkq *q, rd_log_level lvl, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_msg(q->ctx->name, lvl, "%s", msg);
    /* The log sink itself cannot take its own note while it is behind. */
    if (q->ctx->desc->flags & RD_PF_LOGS) fprintf(stderr, "routerd: [%s] %s\n", q->ctx->name, msg);
}

/* Run by the main loop: a sink whose queue overflows is reported when it
 * starts dropping events and when it keeps up again, not per event. */
void sinks_report(void) {
    for (size_t i = 0; i < nqueues; i++) {
        sinkq *q = queues[i];
        pthread_mutex_lock(&q->mu);
        uint64_t d = q->dropped;
        size_t len = q->len, cap = q->cap;
        pthread_mutex_unlock(&q->mu);
        if (!q->dropping && d > q->seen) {
            q->dropping = true;
            q->episode_base = q->seen;
            drop_note(q, RD_LOG_WARN,
                      "cannot keep up: its event queue (%zu) is full and events are dropped "
                      "(routerd_events_dropped_total)",
                      cap);
        } else if (q->dropping && d == q->seen && len <= cap / 2) {
            q->dropping = false;
            drop_note(q, RD_LOG_INFO, "keeps up again; %llu event(s) were dropped",
                      (unsigned long long)(d - q->episode_base));
        }
        q->seen = d;
    }
}

/* Asks every sink to flush on its own thread (after what is queued) and
 * waits up to timeout_ms for them. */
void sinks_flush(int timeout_ms) {
    int64_t end = mono_ms() + timeout_ms;
    for (size_t i = 0; i < nqueues; i++) {
        sinkq *q = queues[i];
        pthread_mutex_lock(&q->mu);
        if (q->len == q->cap) { /* make room: the marker must get in */
            if (!q->ring[q->head]) q->marks--;
            free(q->ring[q->head]);
            q->head = (q->head + 1) % q->cap;
            q->len--;
            q->flushed++;
        }
        pthread_mutex_unlock(&q->mu);
        push(q, NULL);
        pthread_mutex_lock(&q->mu);
        while (q->flushed < q->queued && mono_ms() < end) {
            struct timespec dl = deadline_in(CLOCK_REALTIME, 50 * 1000);
            pthread_cond_timedwait(&q->drained, &q->mu, &dl);
        }
        pthread_mutex_unlock(&q->mu);
    }
}

/* Delivers what is queued, then joins the dispatchers. */
void sinks_stop(void) {
    atomic_store(&running, false);
    log_set_hook(NULL);
    for (size_t i = 0; i < nqueues; i++) {
        sinkq *q = queues[i];
        pthread_mutex_lock(&q->mu);
        q->stop = true;
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->th, NULL);
        for (size_t k = 0; k < q->len; k++)
            free(q->ring[(q->head + k) % q->cap]); /* free(NULL) for markers is fine */
        free(q->ring);
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        pthread_cond_destroy(&q->drained);
        q->ctx->q = NULL;
        free(q);
    }
    free(queues);
    queues = NULL;
    nqueues = 0;
}
