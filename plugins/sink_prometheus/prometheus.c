/* prometheus sink: serves the metrics registry on the admin server in the
 * Prometheus text format, with process metrics from /proc, and optionally
 * pushes the same figures to a StatsD server over UDP. */
#include <routerd/plugin.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "prom_format.h"
#include "prom_process.h"
#include "statsd.h"

/* The keys, written by cfg_bind(). */
typedef struct {
    const char *path;
    int process;
    const char *statsd_address;
    int64_t statsd_interval_ms;
    const char *statsd_prefix;
    int statsd_tags;
} prom_conf;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    prom_conf cf;
    atomic_bool stopped;
    atomic_int busy; /* scrapes inside the handler */
    rd_series *scrapes;
    /* StatsD */
    int sock;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t interval_ms;
    statsd_fmt *fmt;
    pthread_t th;
    bool th_started, th_stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rd_series *pushes, *push_errors;
} prom;

static const rd_option opts[] = {
    {"path", RD_OPT_STRING, 0, "/metrics", "admin server path of the exposition", 0, 0, NULL,
     RD_BIND(prom_conf, path)},
    {"process_metrics", RD_OPT_BOOL, 0, "true",
     "add process_* metrics (CPU, memory, file descriptors, start time) from /proc", 0, 0, NULL,
     RD_BIND(prom_conf, process)},
    {"statsd_address", RD_OPT_STRING, 0, NULL,
     "push to a StatsD server at IP:PORT over UDP (unset = no push)", 0, 0, NULL,
     RD_BIND(prom_conf, statsd_address)},
    {"statsd_interval_ms", RD_OPT_INT, 0, "10000", "time between StatsD pushes", 100, 3600000, NULL,
     RD_BIND(prom_conf, statsd_interval_ms)},
    {"statsd_prefix", RD_OPT_STRING, 0, "", "put before every StatsD metric name", 0, 0, NULL,
     RD_BIND(prom_conf, statsd_prefix)},
    {"statsd_tags", RD_OPT_BOOL, 0, "true",
     "labels as DogStatsD tags (|#label:value); false appends them to the name", 0, 0, NULL,
     RD_BIND(prom_conf, statsd_tags)},
    {0},
};

static void scrape(void *arg, const rd_http_req *req, rd_http_resp *resp) {
    (void)req;
    prom *p = arg;
    atomic_fetch_add(&p->busy, 1);
    /* After stop() no host call is allowed: answer without the registry. */
    if (atomic_load(&p->stopped)) {
        atomic_fetch_sub(&p->busy, 1);
        resp->status = 503;
        resp->body = strdup("stopping\n");
        resp->body_len = resp->body ? strlen(resp->body) : 0;
        return;
    }
    p->h->add(p->scrapes, 1);
    prom_doc *d = prom_doc_new();
    char *text = NULL;
    size_t len = 0;
    if (d) {
        p->h->metrics_visit(p->ctx, prom_doc_add, d);
        if (p->cf.process) {
            proc_stats ps;
            proc_read_self(&ps);
            proc_add_metrics(d, &ps);
        }
        text = prom_doc_render(d, &len);
        prom_doc_free(d);
    }
    atomic_fetch_sub(&p->busy, 1);
    if (!text) {
        resp->status = 500;
        resp->body = strdup("out of memory\n");
        resp->body_len = resp->body ? strlen(resp->body) : 0;
        return;
    }
    resp->content_type = PROM_CONTENT_TYPE;
    resp->body = text;
    resp->body_len = len;
}

/* ---- StatsD ---------------------------------------------------------------- */

static int parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len) {
    const char *colon = strrchr(text, ':');
    if (!colon || !colon[1]) return -1;
    char host[128];
    size_t hl = (size_t)(colon - text);
    if (hl == 0 || hl >= sizeof host) return -1;
    memcpy(host, text, hl);
    host[hl] = 0;
    char *h = host;
    if (h[0] == '[' && h[hl - 1] == ']') { /* [::1]:8125 */
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(h, colon + 1, &hints, &ai) || !ai) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

typedef struct {
    prom *p;
    int errors;
} push_ctx;

static void send_packet(void *arg, const char *data, size_t len) {
    push_ctx *pc = arg;
    if (sendto(pc->p->sock, data, len, MSG_DONTWAIT, (struct sockaddr *)&pc->p->addr,
               pc->p->addrlen) < 0)
        pc->errors++;
}

static void push(prom *p) {
    statsd_begin(p->fmt);
    p->h->metrics_visit(p->ctx, statsd_visit, p->fmt);
    size_t len;
    const char *text = statsd_text(p->fmt, &len);
    push_ctx pc = {p, 0};
    /* 1432 bytes fit an Ethernet MTU with IP and UDP headers. */
    statsd_packets(text, len, 1432, send_packet, &pc);
    p->h->add(pc.errors ? p->push_errors : p->pushes, 1);
}

static void *statsd_main(void *arg) {
    pthread_setname_np(pthread_self(), "prom-statsd");
    prom *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->th_stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += p->interval_ms / 1000;
        dl.tv_nsec += (p->interval_ms % 1000) * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        while (!p->th_stop && pthread_cond_timedwait(&p->cv, &p->mu, &dl) != ETIMEDOUT) {
        }
        pthread_mutex_unlock(&p->mu);
        push(p); /* the last one runs after stop was asked: final figures */
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- plugin ops ---------------------------------------------------------------- */

static void p_destroy(void *self);

static rd_status p_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    prom *p = calloc(1, sizeof *p);
    if (!p) return RD_E_INTERNAL;
    p->h = h;
    p->ctx = ctx;
    p->sock = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *self = p;
    rd_status st = h->cfg_bind(ctx, &p->cf, sizeof p->cf, err);
    if (st != RD_OK) {
        p_destroy(p);
        *self = NULL; /* the host does not destroy() what create() refused */
        return st;
    }
    if (!p->cf.path || p->cf.path[0] != '/') {
        h->error(err, RD_E_CONFIG, "fatal", "path: must start with '/'");
        return RD_E_CONFIG;
    }
    const char *sa = p->cf.statsd_address;
    if (sa && *sa) {
        if (parse_addr(sa, &p->addr, &p->addrlen)) {
            h->error(err, RD_E_CONFIG, "fatal",
                     "statsd_address: '%s' is not IP:PORT (for example 127.0.0.1:8125)", sa);
            return RD_E_CONFIG;
        }
        p->interval_ms = p->cf.statsd_interval_ms;
        p->fmt = statsd_fmt_new(p->cf.statsd_prefix, p->cf.statsd_tags);
        if (!p->fmt) return RD_E_INTERNAL;
    }
    const char *inst = h->info(ctx, "instance");
    const char *lv[] = {inst ? inst : "prometheus"};
    p->scrapes = h->series(h->metric(ctx, RD_METRIC_COUNTER, "routerd_prometheus_scrapes_total",
                                     "Scrapes of the metrics endpoint.",
                                     (const char *const[]){"sink", NULL}, NULL, 0),
                           lv);
    rd_metric *pm = h->metric(ctx, RD_METRIC_COUNTER, "routerd_statsd_pushes_total",
                              "StatsD pushes, by result.",
                              (const char *const[]){"sink", "result", NULL}, NULL, 0);
    if (p->fmt) {
        p->pushes = h->series(pm, (const char *const[]){lv[0], "ok"});
        p->push_errors = h->series(pm, (const char *const[]){lv[0], "error"});
    }
    return RD_OK;
}

static rd_status p_start(void *self, rd_error *err) {
    prom *p = self;
    rd_status st = p->h->http_route(p->ctx, "GET", p->cf.path, scrape, p);
    if (st != RD_OK) {
        p->h->error(err, st, "fatal", "cannot serve %s on the admin server", p->cf.path);
        return st;
    }
    if (p->fmt) {
        p->sock = socket(p->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (p->sock < 0) {
            p->h->error(err, RD_E_INTERNAL, "fatal", "statsd socket: %s", strerror(errno));
            return RD_E_INTERNAL;
        }
        if (pthread_create(&p->th, NULL, statsd_main, p)) {
            p->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the StatsD thread");
            return RD_E_INTERNAL;
        }
        p->th_started = true;
    }
    return RD_OK;
}

static void p_event(void *self, const rd_event *ev) {
    (void)self, (void)ev; /* the registry says it all */
}

static void p_stop(void *self) {
    prom *p = self;
    atomic_store(&p->stopped, true);
    while (atomic_load(&p->busy) > 0) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    if (p->th_started) {
        pthread_mutex_lock(&p->mu);
        p->th_stop = true;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->th, NULL);
        p->th_started = false;
    }
}

static void p_destroy(void *self) {
    prom *p = self;
    if (!p) return;
    if (p->sock >= 0) close(p->sock);
    statsd_fmt_free(p->fmt);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = p_create,
                           .start = p_start,
                           .stop = p_stop,
                           .destroy = p_destroy,
                           .event = p_event};

RD_PLUGIN_DEFINE(.kind = RD_KIND_SINK, .name = "prometheus", .version = "1.0.0",
                 .summary = "serves /metrics in the Prometheus text format, optional StatsD push",
                 .options = opts, .ops = &ops);
