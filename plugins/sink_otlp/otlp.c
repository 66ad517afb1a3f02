/* otlp sink: one trace per message, exported over OTLP/HTTP JSON.
 *
 * event() (dispatcher thread) decides sampling, copies what the trace needs
 * and queues it; a bounded queue means a slow or dead collector costs
 * dropped spans (routerd_otlp_spans_dropped_total), never a stalled router.
 * One exporter thread sends batches with libcurl; flush() (at drain and on
 * SIGHUP) waits for the queue to be sent, within a time limit. */
#include <routerd/plugin.h>

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "curl_pool.h"
#include "otlp_answer.h"
#include "otlp_conf.h"
#include "otlp_json.h"

/* Send failures remembered until the matching REPLIED event comes. */
#define NFAIL 64
/* Queue-full notes the exporter thread logs (event() runs on the sink's
 * dispatcher thread, whose own log lines reach no sink). */
enum { NOTE_FULL = 1, NOTE_ROOM = 2 };

/* The keys, written by cfg_bind(). */
typedef struct {
    const char *endpoint, *traces_endpoint, *headers, *service_name, *resource_attributes;
    const char *ca_file;
    double sample_ratio;
    int64_t timeout_ms, batch_size, queue_size, interval_ms, retry_after_max_ms, response_max_bytes,
        flush_timeout_ms;
} otlp_keys;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    otlp_keys k;
    otlp_conf conf;
    const char *env, *version;
    int64_t batch_spans, queue_max, interval_ms, flush_ms;
    int64_t retry_after_max_ms, answer_max; /* limits on what the collector says */

    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    otlp_trace *head, *tail; /* queue */
    int64_t queued;          /* traces in the queue */
    bool stop, flush_req;
    bool exporting;      /* a batch is on its way */
    uint64_t flush_done; /* flushes completed */
    pthread_t th;
    bool started;
    bool full;             /* dropping because the queue is full */
    int64_t full_dropped;  /* spans dropped in this episode */
    int notes;             /* NOTE_* waiting for the exporter to log */
    bool room_first;       /* NOTE_ROOM belongs to an earlier episode than NOTE_FULL */
    int64_t noted_dropped; /* for NOTE_ROOM */

    /* exporter thread only */
    CURL *curl;
    struct curl_slist *hdrs;
    int64_t backoff_ms, next_try_ms, failing_since_ms, last_warn_ms;
    uint64_t failures;
    bool rejecting; /* the collector refuses part of each batch */
    sbuf answer;
    char retry_after[64];

    /* dispatcher thread only */
    struct {
        char corr[33];
        char *msg;
    } fail[NFAIL];
    size_t fail_next;

    rd_series *exported, *drop_full, *drop_export, *drop_shutdown, *drop_rejected, *req_ok,
        *req_err;
} otlp;

static const rd_option opts[] = {
    {"endpoint", RD_OPT_URL, 0, NULL,
     "collector base URL; /v1/traces is appended (default: OTEL_EXPORTER_OTLP_ENDPOINT, "
     "then http://localhost:4318)",
     0, 0, NULL, RD_BIND(otlp_keys, endpoint)},
    {"traces_endpoint", RD_OPT_URL, 0, NULL,
     "full traces URL, taken as it is (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)", 0, 0, NULL,
     RD_BIND(otlp_keys, traces_endpoint)},
    {"ca_file", RD_OPT_STRING, 0, NULL,
     "PEM file of the certificate authorities trusted for the collector instead of the system's "
     "(default: OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, then OTEL_EXPORTER_OTLP_CERTIFICATE)",
     0, 0, NULL, RD_BIND(otlp_keys, ca_file)},
    {"headers", RD_OPT_STRING, RD_OPT_SECRET, NULL,
     "extra HTTP headers 'name=value,name2=value2', added to OTEL_EXPORTER_OTLP_HEADERS", 0, 0,
     NULL, RD_BIND(otlp_keys, headers)},
    {"sample_ratio", RD_OPT_DOUBLE, 0, NULL,
     "share of successful messages traced, by trace id; failures are always traced "
     "(default: OTEL_TRACES_SAMPLER_ARG, else 1)",
     0, 1, NULL, RD_BIND(otlp_keys, sample_ratio)},
    {"service_name", RD_OPT_STRING, 0, NULL,
     "service.name of the resource (default: OTEL_SERVICE_NAME, else routerd)", 0, 0, NULL,
     RD_BIND(otlp_keys, service_name)},
    {"resource_attributes", RD_OPT_STRING, 0, NULL,
     "more resource attributes 'key=value,...', over OTEL_RESOURCE_ATTRIBUTES", 0, 0, NULL,
     RD_BIND(otlp_keys, resource_attributes)},
    {"timeout_ms", RD_OPT_INT, 0, NULL,
     "time limit of one export request (default: OTEL_EXPORTER_OTLP_TIMEOUT, else 5000)", 100,
     60000, NULL, RD_BIND(otlp_keys, timeout_ms)},
    {"batch_size", RD_OPT_INT, 0, "512", "most spans in one export request", 1, 100000, NULL,
     RD_BIND(otlp_keys, batch_size)},
    {"queue_size", RD_OPT_INT, 0, "2048", "most traces waiting for export; more are dropped", 1,
     1000000, NULL, RD_BIND(otlp_keys, queue_size)},
    {"interval_ms", RD_OPT_INT, 0, "1000", "longest time a trace waits before its batch is sent",
     10, 60000, NULL, RD_BIND(otlp_keys, interval_ms)},
    {"retry_after_max_s", RD_OPT_DURATION, 0, "30",
     "longest wait a collector's Retry-After may ask for; a longer one is cut to this (a bare "
     "number is seconds)",
     0, 3600, NULL, RD_BIND(otlp_keys, retry_after_max_ms)},
    {"response_max_bytes", RD_OPT_INT, 0, "65536",
     "most bytes of a collector's answer read (partial success); the rest is discarded", 1024,
     16777216, NULL, RD_BIND(otlp_keys, response_max_bytes)},
    {"flush_timeout_ms", RD_OPT_INT, 0, "4000",
     "how long a flush (drain, SIGHUP) waits for the queue to be sent", 0, 60000, NULL,
     RD_BIND(otlp_keys, flush_timeout_ms)},
    {0},
};

static void add(otlp *o, rd_series *s, double v) {
    if (v > 0) o->h->add(s, v);
}

/* ---- export ------------------------------------------------------------------ */

static size_t keep_answer(char *p, size_t sz, size_t n, void *arg) {
    otlp *o = arg;
    size_t len = sz * n, max = (size_t)o->answer_max, room = max - o->answer.len;
    if (o->answer.len < max) sbuf_putn(&o->answer, p, len < room ? len : room);
    return len;
}

static size_t keep_header(char *p, size_t sz, size_t n, void *arg) {
    otlp *o = arg;
    size_t len = sz * n;
    if (len > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        size_t v = len - 12;
        while (v && (p[12 + v - 1] == '\r' || p[12 + v - 1] == '\n'))
            v--;
        snprintf(o->retry_after, sizeof o->retry_after, "%.*s", (int)v, p + 12);
    }
    return len;
}

/* Retry-After as milliseconds from now, within retry_after_max_s; -1 when
 * absent or unreadable. */
static int64_t retry_after_ms(otlp *o) {
    if (!o->retry_after[0]) return -1;
    int64_t max = o->retry_after_max_ms, ms = otlp_retry_after_ms(o->retry_after, max);
    if (ms >= 0) return ms;
    time_t when = curl_getdate(o->retry_after, NULL), now = time(NULL);
    if (when < 0 || when <= now) return when < 0 ? -1 : 0;
    return when - now > max / 1000 ? max : (int64_t)(when - now) * 1000;
}

static int post(otlp *o, const char *body, size_t len, char *why, size_t whysz) {
    if (!o->curl) {
        o->curl = curl_easy_init();
        if (!o->curl) {
            snprintf(why, whysz, "curl_easy_init failed");
            return -1;
        }
    }
    CURL *c = o->curl;
    curl_easy_setopt(c, CURLOPT_URL, o->conf.url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, o->hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)o->conf.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->conf.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (o->conf.ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, o->conf.ca_file);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, o);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, keep_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, o);
    sbuf_reset(&o->answer);
    o->retry_after[0] = 0;
    curl_easy_setopt(c, CURLOPT_USERAGENT, "routerd-otlp/1.0");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(why, whysz, "%s", curl_easy_strerror(rc));
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        snprintf(why, whysz, "HTTP %ld", status);
        return -1;
    }
    return 0;
}

/* Sends one batch (a list of traces, freed here). Returns 0 on success. */
static int export_batch(otlp *o, otlp_trace *list, int64_t spans) {
    sbuf b = {0};
    otlp_json_begin(&b, &o->conf.resource, o->version);
    bool first = true;
    for (otlp_trace *t = list; t; t = t->next)
        otlp_json_trace(&b, t, o->env, &first);
    otlp_json_end(&b);
    while (list) {
        otlp_trace *n = list->next;
        otlp_trace_free(list);
        list = n;
    }
    char why[CURL_ERROR_SIZE + 64] = "out of memory";
    int rc = b.failed ? -1 : post(o, b.p, b.len, why, sizeof why);
    sbuf_free(&b);
    int64_t now = o->h->now_ms();
    if (rc == 0) {
        otlp_answer a;
        otlp_answer_parse(o->answer.failed ? NULL : o->answer.p, o->answer.len, spans, &a);
        sbuf_reset(&o->answer);
        if (a.bad[0]) o->h->log(o->ctx, RD_LOG_WARN, "collector answer: %s", a.bad);
        add(o, o->exported, (double)(spans - a.rejected));
        add(o, o->drop_rejected, (double)a.rejected);
        /* Partial refusals: told when they start and when they stop. */
        if (a.rejected && !o->rejecting) {
            char red[512];
            o->h->redact(o->ctx, a.message, red, sizeof red);
            o->h->log(o->ctx, RD_LOG_WARN,
                      "the collector refused %lld of %lld span(s)%s%s; further refusals are "
                      "counted in routerd_otlp_spans_dropped_total{reason=\"rejected\"}",
                      (long long)a.rejected, (long long)spans, red[0] ? ": " : "", red);
        } else if (!a.rejected && o->rejecting) {
            o->h->log(o->ctx, RD_LOG_INFO, "the collector accepts every span again");
        }
        o->rejecting = a.rejected > 0;
        o->h->add(o->req_ok, 1);
        if (o->failures)
            o->h->log(o->ctx, RD_LOG_INFO, "collector reachable again after %llu failed export(s)",
                      (unsigned long long)o->failures);
        o->failures = 0;
        o->backoff_ms = 0;
        o->next_try_ms = 0;
        return 0;
    }
    add(o, o->drop_export, (double)spans);
    o->h->add(o->req_err, 1);
    /* Warn on the first failure and then once a minute, not per batch. */
    if (!o->failures || now - o->last_warn_ms >= 60000) {
        char red[512];
        o->h->redact(o->ctx, why, red, sizeof red);
        o->h->log(o->ctx, RD_LOG_WARN, "export to the collector failed (%s): %lld span(s) dropped",
                  red, (long long)spans);
        o->last_warn_ms = now;
    }
    o->failures++;
    /* Back off 0.5 s doubling to 30 s, or longer when the collector asks
     * (Retry-After, cut to retry_after_max_s); the queue absorbs what comes. */
    o->backoff_ms = o->backoff_ms ? o->backoff_ms * 2 : 500;
    if (o->backoff_ms > 30000) o->backoff_ms = 30000;
    int64_t asked = retry_after_ms(o);
    o->next_try_ms = now + (asked > o->backoff_ms ? asked : o->backoff_ms);
    sbuf_reset(&o->answer);
    return -1;
}

/* Takes up to batch_spans spans off the queue (at least one trace). */
static otlp_trace *take_locked(otlp *o, int64_t *spans) {
    otlp_trace *list = NULL, **tail = &list;
    *spans = 0;
    while (o->head && (*spans == 0 || *spans + o->head->nspans <= o->batch_spans)) {
        otlp_trace *t = o->head;
        o->head = t->next;
        if (!o->head) o->tail = NULL;
        o->queued--;
        t->next = NULL;
        *tail = t;
        tail = &t->next;
        *spans += t->nspans;
    }
    return list;
}

static int64_t drop_all_locked(otlp *o) {
    int64_t spans = 0;
    while (o->head) {
        otlp_trace *t = o->head;
        o->head = t->next;
        spans += t->nspans;
        otlp_trace_free(t);
    }
    o->tail = NULL;
    o->queued = 0;
    return spans;
}

static void deadline_in(struct timespec *ts, int64_t ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static void log_notes(otlp *o, int notes, bool room_first, int64_t dropped, int64_t queued) {
    for (int pass = 0; pass < 2; pass++) {
        bool room = (pass == 0) == room_first;
        if (room && (notes & NOTE_ROOM))
            o->h->log(o->ctx, RD_LOG_INFO,
                      "export queue has room again; %lld span(s) were dropped while it was full",
                      (long long)dropped);
        if (!room && (notes & NOTE_FULL))
            o->h->log(o->ctx, RD_LOG_WARN,
                      "export queue full (%lld traces; queue_size): spans are dropped until the "
                      "collector catches up",
                      (long long)queued);
    }
}

static void *exporter(void *arg) {
    pthread_setname_np(pthread_self(), "otlp-export");
    otlp *o = arg;
    pthread_mutex_lock(&o->mu);
    int64_t oldest_ms = 0; /* when the queue stopped being empty */
    while (!o->stop) {
        if (o->notes) {
            int notes = o->notes;
            bool room_first = o->room_first;
            int64_t dropped = o->noted_dropped, queued = o->queue_max;
            o->notes = 0;
            pthread_mutex_unlock(&o->mu);
            log_notes(o, notes, room_first, dropped, queued);
            pthread_mutex_lock(&o->mu);
            continue;
        }
        int64_t now = o->h->now_ms();
        if (o->head && !oldest_ms) oldest_ms = now;
        bool full = o->queued * 5 >= o->batch_spans; /* a trace has up to 5 spans */
        bool due = o->head && now - oldest_ms >= o->interval_ms;
        bool may = now >= o->next_try_ms || o->flush_req;
        if (o->flush_req && !o->head) {
            o->flush_req = false;
            o->flush_done++;
            pthread_cond_broadcast(&o->done_cv);
            continue;
        }
        if (!(o->head && may && (full || due || o->flush_req))) {
            int64_t wait = o->interval_ms;
            if (o->head && !may)
                wait = o->next_try_ms - now;
            else if (o->head)
                wait = o->interval_ms - (now - oldest_ms);
            if (wait < 1) wait = 1;
            struct timespec dl;
            deadline_in(&dl, wait);
            pthread_cond_timedwait(&o->cv, &o->mu, &dl);
            continue;
        }
        int64_t spans;
        otlp_trace *list = take_locked(o, &spans);
        oldest_ms = o->head ? now : 0;
        bool flushing = o->flush_req;
        o->exporting = true;
        pthread_mutex_unlock(&o->mu);
        int rc = export_batch(o, list, spans);
        pthread_mutex_lock(&o->mu);
        o->exporting = false;
        if (rc && flushing) /* the collector is down: do not wait out every batch */
            add(o, o->drop_export, (double)drop_all_locked(o));
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

/* ---- events ---------------------------------------------------------------------- */

static void remember_failure(otlp *o, const rd_event *ev) {
    if (!ev->correlation_id) return;
    size_t i = o->fail_next++ % NFAIL;
    free(o->fail[i].msg);
    snprintf(o->fail[i].corr, sizeof o->fail[i].corr, "%s", ev->correlation_id);
    o->fail[i].msg = NULL;
    if (ev->msg && *ev->msg) {
        size_t n = strlen(ev->msg) + 64;
        char *m = malloc(n);
        if (m) o->h->redact(o->ctx, ev->msg, m, n);
        o->fail[i].msg = m;
    }
}

/* The send failure detail for this message, handed over (or NULL). */
static char *take_failure(otlp *o, const char *corr) {
    for (size_t i = 0; corr && i < NFAIL; i++)
        if (o->fail[i].corr[0] && !strcmp(o->fail[i].corr, corr)) {
            char *m = o->fail[i].msg;
            o->fail[i].corr[0] = 0;
            o->fail[i].msg = NULL;
            return m ? m : strdup("send failed");
        }
    return NULL;
}

static void o_event(void *self, const rd_event *ev) {
    otlp *o = self;
    /* A send failure is followed by the message's REPLIED event (status
     * send_failed), which closes the trace: keep the detail until then. */
    if (ev->type == RD_EV_SEND_FAILED) {
        remember_failure(o, ev);
        return;
    }
    if (ev->type != RD_EV_REPLIED && ev->type != RD_EV_REJECTED) return;
    char *failure = take_failure(o, ev->correlation_id);
    if (!otlp_is_error(ev) && !otlp_sampled(ev->trace_id, o->conf.ratio)) {
        free(failure);
        return;
    }
    otlp_trace *t = otlp_trace_new(ev, failure);
    free(failure);
    if (!t) return;
    pthread_mutex_lock(&o->mu);
    if (o->queued >= o->queue_max || o->stop) {
        /* One note when an episode of drops starts, one when it ends. */
        if (!o->stop && !o->full) {
            o->full = true;
            o->full_dropped = 0;
            o->room_first = o->notes & NOTE_ROOM;
            o->notes |= NOTE_FULL;
            pthread_cond_signal(&o->cv);
        }
        if (!o->stop) o->full_dropped += t->nspans;
        pthread_mutex_unlock(&o->mu);
        add(o, o->drop_full, t->nspans);
        otlp_trace_free(t);
        return;
    }
    if (o->full) {
        o->full = false;
        if (o->notes & NOTE_FULL) o->room_first = false;
        o->notes |= NOTE_ROOM;
        o->noted_dropped = o->full_dropped;
        pthread_cond_signal(&o->cv);
    }
    if (o->tail)
        o->tail->next = t;
    else
        o->head = t;
    o->tail = t;
    o->queued++;
    if (o->queued * 5 >= o->batch_spans) pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static rd_status o_flush(void *self, rd_error *err) {
    otlp *o = self;
    pthread_mutex_lock(&o->mu);
    if (!o->started || (!o->head && !o->exporting && !o->flush_req)) {
        pthread_mutex_unlock(&o->mu);
        return RD_OK;
    }
    uint64_t done = o->flush_done;
    o->flush_req = true;
    pthread_cond_signal(&o->cv);
    struct timespec dl;
    deadline_in(&dl, o->flush_ms);
    int rc = 0;
    while (o->flush_done == done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&o->done_cv, &o->mu, &dl);
    bool ok = o->flush_done != done;
    pthread_mutex_unlock(&o->mu);
    if (!ok) {
        o->h->error(err, RD_E_TIMEOUT, "timeout", "spans still queued after %lld ms",
                    (long long)o->flush_ms);
        return RD_E_TIMEOUT;
    }
    return RD_OK;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static const char *env_get(const char *name) {
    return getenv(name);
}

static void o_destroy(void *self);

static rd_status o_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    otlp *o = calloc(1, sizeof *o);
    if (!o) return RD_E_INTERNAL;
    *self = o;
    o->h = h;
    o->ctx = ctx;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    pthread_cond_init(&o->done_cv, NULL);
    o->env = h->info(ctx, "env");
    o->version = h->info(ctx, "version");
    rd_status st = h->cfg_bind(ctx, &o->k, sizeof o->k, err);
    if (st != RD_OK) {
        o_destroy(o);
        *self = NULL; /* the host does not destroy() what create() refused */
        return st;
    }
    /* Without a default, 0 is a value: whether the key was written decides. */
    otlp_manifest m = {.endpoint = o->k.endpoint,
                       .traces_endpoint = o->k.traces_endpoint,
                       .headers = o->k.headers,
                       .ca_file = o->k.ca_file,
                       .service_name = o->k.service_name,
                       .resource_attributes = o->k.resource_attributes,
                       .ratio_set = h->cfg_isset(ctx, "sample_ratio"),
                       .ratio = o->k.sample_ratio,
                       .timeout_set = h->cfg_isset(ctx, "timeout_ms"),
                       .timeout_ms = o->k.timeout_ms,
                       .env = o->env,
                       .version = o->version,
                       .build_sha = h->info(ctx, "build_sha")};
    char msg[256];
    if (otlp_conf_resolve(&m, env_get, &o->conf, msg, sizeof msg)) {
        h->error(err, RD_E_CONFIG, "fatal", "%s", msg);
        return RD_E_CONFIG;
    }
    int cae = o->conf.ca_file ? ca_file_check(o->conf.ca_file) : 0;
    if (cae) {
        h->error(err, RD_E_CONFIG, "fatal", "ca_file: cannot read %s: %s", o->conf.ca_file,
                 strerror(cae));
        return RD_E_CONFIG;
    }
    o->batch_spans = o->k.batch_size;
    o->queue_max = o->k.queue_size;
    o->interval_ms = o->k.interval_ms;
    o->flush_ms = o->k.flush_timeout_ms;
    o->retry_after_max_ms = o->k.retry_after_max_ms;
    o->answer_max = o->k.response_max_bytes;

    const char *inst = h->info(ctx, "instance");
    const char *sink = inst ? inst : "otlp";
    o->exported = h->series(h->metric(ctx, RD_METRIC_COUNTER, "routerd_otlp_spans_exported_total",
                                      "Spans the collector accepted.",
                                      (const char *const[]){"sink", NULL}, NULL, 0),
                            (const char *const[]){sink});
    rd_metric *dm = h->metric(ctx, RD_METRIC_COUNTER, "routerd_otlp_spans_dropped_total",
                              "Spans lost: queue full, export failed, refused by the collector, "
                              "or left at shutdown.",
                              (const char *const[]){"sink", "reason", NULL}, NULL, 0);
    o->drop_full = h->series(dm, (const char *const[]){sink, "queue_full"});
    o->drop_export = h->series(dm, (const char *const[]){sink, "export_failed"});
    o->drop_shutdown = h->series(dm, (const char *const[]){sink, "shutdown"});
    o->drop_rejected = h->series(dm, (const char *const[]){sink, "rejected"});
    rd_metric *rm = h->metric(ctx, RD_METRIC_COUNTER, "routerd_otlp_exports_total",
                              "Export requests to the collector, by result.",
                              (const char *const[]){"sink", "result", NULL}, NULL, 0);
    o->req_ok = h->series(rm, (const char *const[]){sink, "ok"});
    o->req_err = h->series(rm, (const char *const[]){sink, "error"});
    return RD_OK;
}

/* The URL without user:password@, for the log. */
static void url_for_log(const char *url, char *out, size_t outsz) {
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t hostlen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hostlen);
    if (at)
        snprintf(out, outsz, "%.*s***@%s", (int)(host - url), url, at + 1);
    else
        snprintf(out, outsz, "%s", url);
}

static rd_status o_start(void *self, rd_error *err) {
    otlp *o = self;
    o->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    for (size_t i = 0; o->hdrs && i < o->conf.headers.n; i++) {
        size_t n = strlen(o->conf.headers.keys[i]) + strlen(o->conf.headers.vals[i]) + 3;
        char *line = malloc(n);
        if (!line) break;
        snprintf(line, n, "%s: %s", o->conf.headers.keys[i], o->conf.headers.vals[i]);
        struct curl_slist *l = curl_slist_append(o->hdrs, line);
        free(line);
        if (!l) break;
        o->hdrs = l;
    }
    if (o->conf.note[0]) o->h->log(o->ctx, RD_LOG_WARN, "%s", o->conf.note);
    char bare[512], url[512];
    url_for_log(o->conf.url, bare, sizeof bare);
    o->h->redact(o->ctx, bare, url, sizeof url);
    o->h->log(o->ctx, RD_LOG_INFO, "exporting traces to %s (sample ratio %g, failures always)", url,
              o->conf.ratio);
    pthread_mutex_lock(&o->mu);
    int rc = pthread_create(&o->th, NULL, exporter, o);
    o->started = rc == 0;
    pthread_mutex_unlock(&o->mu);
    if (rc) {
        o->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the exporter thread");
        return RD_E_INTERNAL;
    }
    return RD_OK;
}

static void o_stop(void *self) {
    otlp *o = self;
    pthread_mutex_lock(&o->mu);
    bool started = o->started;
    o->stop = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    if (started) pthread_join(o->th, NULL);
    pthread_mutex_lock(&o->mu);
    o->started = false;
    int64_t left = drop_all_locked(o);
    pthread_mutex_unlock(&o->mu);
    add(o, o->drop_shutdown, (double)left);
}

static void o_destroy(void *self) {
    otlp *o = self;
    if (!o) return;
    drop_all_locked(o);
    for (size_t i = 0; i < NFAIL; i++)
        free(o->fail[i].msg);
    if (o->curl) curl_easy_cleanup(o->curl);
    sbuf_free(&o->answer);
    curl_slist_free_all(o->hdrs);
    otlp_conf_free(&o->conf);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    pthread_cond_destroy(&o->done_cv);
    free(o);
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = o_create,
                           .start = o_start,
                           .stop = o_stop,
                           .destroy = o_destroy,
                           .event = o_event,
                           .flush = o_flush};

RD_PLUGIN_DEFINE(.kind = RD_KIND_SINK, .name = "otlp", .version = "1.0.0",
                 .summary = "one trace per message to an OpenTelemetry collector (OTLP/HTTP JSON)",
                 .options = opts, .ops = &ops);
