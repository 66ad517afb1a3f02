/* a2a backend: forwards each chat message to an A2A agent over JSON-RPC
 * (dialects 0.3 and 1.0, blocking send or SSE streaming) and relays the
 * reply. contextId is kept per (chat, persona), taskId only while a task
 * waits for input. */
#include <routerd/plugin.h>

#include "a2a.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KEY_MAX 192

typedef struct a2a {
    const rd_host *h;
    rd_ctx *ctx;
    /* config */
    char *base_url, *card_url;
    const char *token, *api_hdr, *api_key, *failure_notice, *new_command;
    int cfg_dialect, want_stream, no_discovery;
    int64_t timeout_ms, connect_ms, max_bytes, poll_ms, retries;
    /* agent, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    a2a_card card;
    int have_card, dialect, streaming, need_discover, stopping;
    int64_t last_rediscover_ms;
    pthread_t disc;
    int disc_started;
    /* one curl handle per worker thread, all listed for destroy() */
    pthread_key_t tls;
    CURL **handles;
    size_t nhandles;
    atomic_long next_id;
    atomic_int stop_flag;
    rd_series *fail[4];
} a2a;

static const char *const classes[] = {"transient", "fatal", "timeout", "protocol"};
static const char *const dialects[] = {"auto", "1.0", "0.3", NULL};

static const rd_option opts[] = {
    {"url", RD_OPT_STRING, RD_OPT_REQUIRED, NULL, "agent base URL (the card is found below it)", 0,
     0, NULL},
    {"token", RD_OPT_STRING, RD_OPT_SECRET, NULL, "bearer token sent as Authorization", 0, 0, NULL},
    {"api_key_header", RD_OPT_STRING, 0, NULL, "header name carrying api_key (e.g. X-API-Key)", 0,
     0, NULL},
    {"api_key", RD_OPT_STRING, RD_OPT_SECRET, NULL, "API key sent in api_key_header", 0, 0, NULL},
    {"dialect", RD_OPT_ENUM, 0, "auto", "protocol version: auto (from the card), 1.0 or 0.3", 0, 0,
     dialects},
    {"stream", RD_OPT_BOOL, 0, "false", "stream replies (SSE) when the card allows it", 0, 0, NULL},
    {"timeout_s", RD_OPT_INT, 0, "120", "total time for one message, polling included", 1, 86400,
     NULL},
    {"connect_timeout_s", RD_OPT_INT, 0, "10", "TCP/TLS connect timeout", 1, 600, NULL},
    {"card_url", RD_OPT_STRING, 0, NULL,
     "agent card URL; \"none\" skips discovery and url is then the JSON-RPC endpoint", 0, 0, NULL},
    {"max_response_bytes", RD_OPT_INT, 0, "4194304", "largest response body or stream accepted",
     1024, 1073741824, NULL},
    {"failure_notice", RD_OPT_STRING, 0, NULL,
     "text sent to the user when the agent fails (empty = the router's notice)", 0, 0, NULL},
    {"new_command", RD_OPT_STRING, 0, "/new", "chat command that starts a new conversation", 0, 0,
     NULL},
    {"poll_interval_ms", RD_OPT_INT, 0, "500", "first interval when polling a running task", 10,
     60000, NULL},
    {"retries", RD_OPT_INT, 0, "3", "retries of transient failures within the deadline", 0, 20,
     NULL},
    {0},
};

/* ------------------------------------------------------------ utilities */

static int64_t now_ms(const a2a *a) {
    return a->h->now_ms();
}

typedef struct {
    char *b;
    size_t n, cap;
} buf;

static void buf_add(buf *s, const char *t, size_t n) {
    if (s->n + n + 1 > s->cap) {
        size_t nc = (s->n + n + 1) * 2;
        char *nb = realloc(s->b, nc);
        if (!nb) return;
        s->b = nb;
        s->cap = nc;
    }
    memcpy(s->b + s->n, t, n);
    s->n += n;
    s->b[s->n] = 0;
}

static void count_fail(a2a *a, const char *klass) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(klass, classes[i]) && a->fail[i]) a->h->add(a->fail[i], 1);
}

/* Sleeps up to ms, in slices, giving up early on shutdown. */
static void nap(a2a *a, rd_reply *rp, int64_t ms) {
    while (ms > 0 && !atomic_load(&a->stop_flag) && !(rp && a->h->cancelled(rp))) {
        int64_t s = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)s * 1000000L};
        nanosleep(&ts, NULL);
        ms -= s;
    }
}

/* Capped exponential back-off with jitter: 200 ms, 400 ms, ... 5 s, +-50%. */
static int64_t backoff_ms(int attempt) {
    int64_t b = 200LL << (attempt < 5 ? attempt : 5);
    if (b > 5000) b = 5000;
    return b / 2 + (int64_t)(rand() % (int)(b + 1));
}

static CURL *my_curl(a2a *a) {
    CURL *c = pthread_getspecific(a->tls);
    if (c) return c;
    c = curl_easy_init();
    if (!c) return NULL;
    pthread_mutex_lock(&a->mu);
    CURL **n = realloc(a->handles, (a->nhandles + 1) * sizeof *n);
    if (n) {
        a->handles = n;
        a->handles[a->nhandles++] = c;
    }
    pthread_mutex_unlock(&a->mu);
    if (!n) {
        curl_easy_cleanup(c);
        return NULL;
    }
    pthread_setspecific(a->tls, c);
    return c;
}

/* ----------------------------------------------------------------- HTTP */

typedef void (*event_fn)(void *arg, const char *event, const char *data, size_t len);

typedef struct {
    a2a *a;
    CURL *c;
    buf body;
    int oversize, decided, sse;
    a2a_sse parser;
    event_fn on_event;
    void *event_arg;
    const int *done; /* set by on_event once the stream said all */
    int finished;
    size_t total;
} xfer;

typedef struct {
    CURLcode cc;
    long status;
    int sse;      /* the answer was an event stream */
    int oversize; /* body beyond max_response_bytes */
    char *body;   /* non-stream body, NUL-terminated */
    size_t len;
    long retry_after_s; /* Retry-After header in seconds, 0 = none */
    char err[CURL_ERROR_SIZE];
} http_res;

static size_t on_write(char *p, size_t sz, size_t nm, void *ud) {
    xfer *x = ud;
    size_t n = sz * nm;
    x->total += n;
    if (x->total > (size_t)x->a->max_bytes) {
        x->oversize = 1;
        return 0;
    }
    if (!x->decided) {
        x->decided = 1;
        char *ct = NULL;
        curl_easy_getinfo(x->c, CURLINFO_CONTENT_TYPE, &ct);
        x->sse = x->on_event && ct && !strncasecmp(ct, "text/event-stream", 17);
        if (x->sse) a2a_sse_init(&x->parser, (size_t)x->a->max_bytes);
    }
    if (x->sse) {
        if (a2a_sse_feed(&x->parser, p, n, x->on_event, x->event_arg)) {
            x->oversize = 1;
            return 0;
        }
        if (x->done && *x->done) {
            x->finished = 1; /* do not wait for the agent to close */
            return 0;
        }
    } else {
        buf_add(&x->body, p, n);
    }
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
    http_res *r = ud;
    size_t n = sz * nm;
    if (n > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        char v[32];
        size_t l = n - 12 < sizeof v - 1 ? n - 12 : sizeof v - 1;
        memcpy(v, p + 12, l);
        v[l] = 0;
        long s = strtol(v, NULL, 10); /* HTTP dates are ignored */
        if (s > 0) r->retry_after_s = s;
    }
    return n;
}

static int on_xfer(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    const a2a *a = ud;
    return atomic_load(&a->stop_flag) ? 1 : 0;
}

/* One HTTP exchange. body NULL = GET. v10 adds A2A-Version: 1.0. With
 * on_event set, an event-stream answer is fed to it as it arrives. */
static void http_do(a2a *a, CURL *c, const char *url, const char *body, int v10,
                    const char *traceparent, int64_t deadline, event_fn on_event, void *arg,
                    const int *done, http_res *r) {
    memset(r, 0, sizeof *r);
    struct curl_slist *hd = NULL;
    char line[512];
    if (body) hd = curl_slist_append(hd, "Content-Type: application/json");
    hd = curl_slist_append(hd, on_event ? "Accept: text/event-stream" : "Accept: application/json");
    if (v10) hd = curl_slist_append(hd, "A2A-Version: 1.0");
    if (a->token && *a->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", a->token);
        hd = curl_slist_append(hd, line);
    }
    if (a->api_hdr && *a->api_hdr && a->api_key) {
        snprintf(line, sizeof line, "%s: %s", a->api_hdr, a->api_key);
        hd = curl_slist_append(hd, line);
    }
    if (traceparent && *traceparent) {
        snprintf(line, sizeof line, "traceparent: %s", traceparent);
        hd = curl_slist_append(hd, line);
    }
    hd = curl_slist_append(hd, "Expect:");
    xfer x = {.a = a, .c = c, .on_event = on_event, .event_arg = arg, .done = done};
    int64_t left = deadline - now_ms(a);
    if (left < 1) left = 1;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(a->connect_ms < left ? a->connect_ms : left));
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "routerd-a2a/1.0");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)a->max_bytes);
    r->cc = curl_easy_perform(c);
    if (r->cc == CURLE_WRITE_ERROR && x.finished) r->cc = CURLE_OK;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hd);
    r->sse = x.sse;
    r->oversize = x.oversize || r->cc == CURLE_FILESIZE_EXCEEDED;
    if (x.sse) a2a_sse_free(&x.parser);
    r->body = x.body.b;
    r->len = x.body.n;
    if (!r->err[0] && r->cc) snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(r->cc));
}

static void http_free(http_res *r) {
    free(r->body);
    r->body = NULL;
}

/* ------------------------------------------------------------ discovery */

static char *join_url(const char *base, const char *path) {
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    char *u = malloc(n + strlen(path) + 1);
    if (!u) return NULL;
    memcpy(u, base, n);
    strcpy(u + n, path);
    return u;
}

/* Fetches and applies the card. 0 ok, -1 unreachable, -2 invalid. */
static int discover(a2a *a, CURL *c) {
    const char *paths[] = {"/.well-known/agent-card.json", "/.well-known/agent.json"};
    char safe[512], why[128];
    for (int i = 0; i < (a->card_url ? 1 : 2); i++) {
        char *url = a->card_url ? strdup(a->card_url) : join_url(a->base_url, paths[i]);
        if (!url) return -1;
        a->h->redact(a->ctx, url, safe, sizeof safe);
        http_res r;
        http_do(a, c, url, NULL, 1, NULL, now_ms(a) + a->connect_ms + 10000, NULL, NULL, NULL, &r);
        free(url);
        if (r.cc != CURLE_OK && !r.oversize) {
            char e[256];
            a->h->redact(a->ctx, r.err, e, sizeof e);
            a->h->log(a->ctx, RD_LOG_WARN, "agent card %s unreachable: %s", safe, e);
            http_free(&r);
            return -1;
        }
        if (r.status == 404 && !a->card_url && i == 0) {
            http_free(&r);
            continue;
        }
        if (r.status != 200 || r.oversize) {
            int later = r.status >= 500 || r.status == 429;
            if (r.oversize)
                a->h->log(a->ctx, RD_LOG_ERROR, "invalid agent card at %s: larger than %lld bytes",
                          safe, (long long)a->max_bytes);
            else
                a->h->log(a->ctx, later ? RD_LOG_WARN : RD_LOG_ERROR,
                          "%s agent card at %s: HTTP %ld", later ? "unavailable" : "invalid", safe,
                          r.status);
            http_free(&r);
            return later ? -1 : -2;
        }
        a2a_card card;
        int rc = a2a_card_parse(r.body ? r.body : "", r.len, &card, why, sizeof why);
        http_free(&r);
        if (rc) {
            a->h->log(a->ctx, RD_LOG_ERROR, "invalid agent card at %s: %s", safe, why);
            return -2;
        }
        char ep[512];
        a->h->redact(a->ctx, card.rpc_url, ep, sizeof ep);
        pthread_mutex_lock(&a->mu);
        a2a_card_free(&a->card);
        a->card = card;
        a->dialect = a->cfg_dialect ? a->cfg_dialect : card.dialect;
        a->streaming = card.streaming;
        int was = a->have_card;
        a->have_card = 1;
        pthread_mutex_unlock(&a->mu);
        a->h->log(a->ctx, RD_LOG_INFO, "agent card %s: endpoint %s, dialect %s%s", safe, ep,
                  a->dialect == A2A_V10 ? "1.0" : "0.3", card.streaming ? ", streaming" : "");
        if (!was) a->h->ready(a->ctx, 1, NULL);
        return 0;
    }
    a->h->log(a->ctx, RD_LOG_ERROR, "no agent card below %s (404 on both well-known paths)", safe);
    return -2;
}

static void *disc_main(void *arg) {
    a2a *a = arg;
    CURL *c = curl_easy_init();
    int64_t wait = 250;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        if (!a->need_discover) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        pthread_mutex_unlock(&a->mu);
        int rc = c ? discover(a, c) : -1;
        pthread_mutex_lock(&a->mu);
        if (rc == 0) {
            a->need_discover = 0;
            wait = 250;
            pthread_cond_broadcast(&a->cv); /* messages waiting for the card */
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (!a->stopping) pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        wait = wait * 2 > 10000 ? 10000 : wait * 2;
    }
    pthread_mutex_unlock(&a->mu);
    if (c) curl_easy_cleanup(c);
    return NULL;
}

/* After a 404 or a refused connection the agent may have moved: fetch the
 * card again in the background, at most every 5 s. */
static void rediscover(a2a *a) {
    if (a->no_discovery) return;
    pthread_mutex_lock(&a->mu);
    int64_t t = now_ms(a);
    if (t - a->last_rediscover_ms > 5000) {
        a->last_rediscover_ms = t;
        a->need_discover = 1;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
}

/* -------------------------------------------------------------- handle */

/* What one exchange produced, from a body or a stream. */
typedef struct {
    int kind; /* a2a_kind */
    int code;
    char errmsg[160];
    a2a_state state;
    char *task_id, *context_id;
    char *text;        /* message text or artifacts text */
    char *status_text; /* status.message */
    int final, events, done;
    /* streaming artifacts */
    struct art {
        char *id;
        buf text;
    } * arts;
    size_t narts;
    int64_t last_progress;
    a2a *a;
    rd_reply *rp;
} outcome;

static void out_free(outcome *o) {
    free(o->task_id);
    free(o->context_id);
    free(o->text);
    free(o->status_text);
    for (size_t i = 0; i < o->narts; i++) {
        free(o->arts[i].id);
        free(o->arts[i].text.b);
    }
    free(o->arts);
    memset(o, 0, sizeof *o);
}

static void take(char **dst, char **src) {
    if (*src) {
        free(*dst);
        *dst = *src;
        *src = NULL;
    }
}

static char *arts_text(outcome *o) {
    buf s = {0};
    for (size_t i = 0; i < o->narts; i++) {
        if (!o->arts[i].text.n) continue;
        if (s.n) buf_add(&s, "\n", 1);
        buf_add(&s, o->arts[i].text.b, o->arts[i].text.n);
    }
    return s.b;
}

/* Folds one parsed response or stream event into the outcome. */
static void absorb(outcome *o, a2a_result *r) {
    o->events++;
    if (r->kind == A2A_R_ERROR) {
        o->kind = A2A_R_ERROR;
        o->code = r->code;
        snprintf(o->errmsg, sizeof o->errmsg, "%s", r->errmsg);
        return;
    }
    take(&o->context_id, &r->context_id);
    take(&o->task_id, &r->task_id);
    switch (r->kind) {
    case A2A_R_MESSAGE:
        o->kind = A2A_R_MESSAGE;
        take(&o->text, &r->text);
        break;
    case A2A_R_TASK:
        o->kind = A2A_R_TASK;
        o->state = r->state;
        free(o->status_text);
        o->status_text = r->status_text;
        r->status_text = NULL;
        if (r->text) {
            for (size_t i = 0; i < o->narts; i++) {
                free(o->arts[i].id);
                free(o->arts[i].text.b);
            }
            o->narts = 0;
            take(&o->text, &r->text);
        }
        break;
    case A2A_R_STATUS:
        if (o->kind != A2A_R_MESSAGE) o->kind = A2A_R_TASK;
        o->state = r->state;
        o->final |= r->final;
        free(o->status_text); /* a status without a message clears the old one */
        o->status_text = r->status_text;
        r->status_text = NULL;
        break;
    case A2A_R_ARTIFACT: {
        if (o->kind != A2A_R_MESSAGE) o->kind = A2A_R_TASK;
        const char *id = r->artifact_id ? r->artifact_id : "";
        size_t i = 0;
        while (i < o->narts && strcmp(o->arts[i].id, id))
            i++;
        if (i == o->narts) {
            struct art *n = realloc(o->arts, (o->narts + 1) * sizeof *n);
            if (!n) break;
            o->arts = n;
            o->arts[i].id = strdup(id);
            memset(&o->arts[i].text, 0, sizeof o->arts[i].text);
            o->narts++;
        } else if (!r->append) {
            o->arts[i].text.n = 0;
        }
        if (r->text) buf_add(&o->arts[i].text, r->text, strlen(r->text));
        if (o->text) { /* artifacts from an earlier Task snapshot come first */
            free(o->text);
            o->text = NULL;
        }
        break;
    }
    default:
        if (o->kind == 0) o->kind = A2A_R_INVALID;
        break;
    }
}

static void on_event(void *arg, const char *event, const char *data, size_t len) {
    outcome *o = arg;
    a2a_result r;
    a2a_parse_response(data, len, &r);
    a2a_kind ev_kind = r.kind;
    if (!strcmp(event, "error") && r.kind != A2A_R_ERROR) {
        a2a_result_free(&r);
        r.kind = A2A_R_ERROR;
        r.code = -32603;
        snprintf(r.errmsg, sizeof r.errmsg, "stream error event");
    }
    if (r.kind == A2A_R_INVALID) {
        o->kind = A2A_R_INVALID;
        o->events++;
    } else {
        absorb(o, &r);
    }
    a2a_result_free(&r);
    /* The stream said all: a message, an error, 0.3 final, or a status
     * update to a settled state. A Task snapshot does not end it: on a
     * continued task it still shows the old input-required state. */
    if (o->kind == A2A_R_MESSAGE || o->kind == A2A_R_ERROR || o->kind == A2A_R_INVALID ||
        o->final || (ev_kind == A2A_R_STATUS && !a2a_state_active(o->state)))
        o->done = 1;
    /* Partial text at most once a second. */
    int64_t t = now_ms(o->a);
    if (o->narts && o->rp && t - o->last_progress >= 1000) {
        char *s = arts_text(o);
        if (s) {
            o->a->h->reply_progress(o->rp, s, strlen(s));
            o->last_progress = t;
        }
        free(s);
    }
}

typedef struct {
    a2a *a;
    const rd_request *rq;
    rd_reply *rp;
    int64_t deadline;
    char kctx[KEY_MAX], ktask[KEY_MAX];
    long retry_after_s; /* from the last transient answer */
    long http_status;   /* of the last non-200 answer */
    char msg_id[64];
    char *ctx_id, *task_id;
    const char *klass;
    char why[400];
} call;

static void fail(call *c, const char *klass, const char *fmt, const char *detail) {
    c->klass = klass;
    snprintf(c->why, sizeof c->why, fmt, detail ? detail : "");
}

static char *kv_str(a2a *a, const char *key) {
    char *v = NULL;
    size_t n = 0;
    if (a->h->kv_get(a->ctx, key, &v, &n) != RD_OK) return NULL;
    if (v && !*v) {
        free(v);
        return NULL;
    }
    return v;
}

static void set_task(call *c, const char *id) {
    if (id && *id) {
        c->a->h->kv_put(c->a->ctx, c->ktask, id, strlen(id));
    } else if (c->task_id) {
        c->a->h->kv_del(c->a->ctx, c->ktask);
    }
    free(c->task_id);
    c->task_id = id && *id ? strdup(id) : NULL;
}

static void set_ctx(call *c, const char *id) {
    if (!id || !*id || (c->ctx_id && !strcmp(c->ctx_id, id))) return;
    c->a->h->kv_put(c->a->ctx, c->kctx, id, strlen(id));
    free(c->ctx_id);
    c->ctx_id = strdup(id);
}

/* Result of one JSON-RPC exchange, classified. */
enum { X_OK, X_TRANSIENT, X_FAIL, X_RPC };

/* Sends one JSON-RPC request (send, stream, get or cancel) and fills o.
 * Returns X_OK with o filled, X_RPC with o->code set, or a failure. */
static int exchange(call *c, const char *body, long id, int stream, int dialect, outcome *o) {
    a2a *a = c->a;
    pthread_mutex_lock(&a->mu);
    char *url = strdup(a->have_card ? a->card.rpc_url : a->base_url);
    pthread_mutex_unlock(&a->mu);
    CURL *h = my_curl(a);
    if (!url || !h) {
        free(url);
        fail(c, "transient", "out of memory%s", NULL);
        return X_FAIL;
    }
    o->a = a;
    o->rp = c->rp;
    http_res r;
    http_do(a, h, url, body, dialect == A2A_V10, c->rq->traceparent, c->deadline,
            stream ? on_event : NULL, o, &o->done, &r);
    free(url);
    int ret = X_OK;
    char e[256];
    if (r.oversize) {
        fail(c, "protocol", "response larger than max_response_bytes%s", NULL);
        ret = X_FAIL;
    } else if (r.cc != CURLE_OK && !(r.sse && r.cc != CURLE_OPERATION_TIMEDOUT)) {
        a->h->redact(a->ctx, r.err, e, sizeof e);
        if (now_ms(a) >= c->deadline - 20) {
            fail(c, "timeout", "no answer before the deadline: %s", e);
            ret = X_FAIL;
        } else {
            fail(c, "transient", "agent unreachable: %s", e);
            if (r.cc == CURLE_COULDNT_CONNECT) rediscover(a);
            ret = X_TRANSIENT;
        }
    } else if (r.status != 200) {
        const char *k = a2a_class_http(r.status);
        c->retry_after_s = r.retry_after_s;
        c->http_status = r.status;
        snprintf(e, sizeof e, "%ld", r.status);
        fail(c, k, "agent answered HTTP %s", e);
        ret = !strcmp(k, "transient") ? X_TRANSIENT : X_FAIL;
    } else if (r.sse) {
        /* A stream: done when it reached a final, terminal or interrupted
         * state, or a message; a cut stream is handled by the caller. */
        if (o->kind == A2A_R_INVALID) {
            fail(c, "protocol", "unparseable stream event%s", NULL);
            ret = X_FAIL;
        } else if (o->kind == A2A_R_ERROR) {
            ret = X_RPC;
        } else if (o->events == 0) {
            fail(c, "transient", "stream closed before any event%s", NULL);
            ret = X_TRANSIENT;
        }
    } else {
        a2a_result res;
        a2a_parse_response(r.body ? r.body : "", r.len, &res);
        if (res.kind == A2A_R_INVALID) {
            fail(c, "protocol", "invalid agent response%s", NULL);
            ret = X_FAIL;
        } else if (res.id_kind == 2 || (res.id_kind == 1 && res.id != id)) {
            fail(c, "protocol", "response id does not match the request%s", NULL);
            ret = X_FAIL;
        } else {
            absorb(o, &res);
            ret = o->kind == A2A_R_ERROR ? X_RPC : X_OK;
        }
        a2a_result_free(&res);
    }
    http_free(&r);
    if (ret == X_OK && !o->text && o->narts) o->text = arts_text(o);
    return ret;
}

static long next_id(a2a *a) {
    return atomic_fetch_add(&a->next_id, 1) + 1;
}

/* Best-effort cancel of a task we give up on. */
static void cancel_task(call *c, int dialect, const char *tenant) {
    long id = next_id(c->a);
    char *body = a2a_build_task_op(dialect, 1, id, c->task_id, tenant);
    int64_t keep = c->deadline;
    c->deadline = now_ms(c->a) + 2000;
    outcome o = {0};
    const char *k = c->klass;
    char why[sizeof c->why];
    memcpy(why, c->why, sizeof why);
    exchange(c, body, id, 0, dialect, &o);
    c->klass = k;
    memcpy(c->why, why, sizeof why);
    out_free(&o);
    free(body);
    c->deadline = keep;
}

/* Polls GetTask until the task leaves the active states or time runs out. */
static int poll_task(call *c, int dialect, const char *tenant, outcome *o) {
    a2a *a = c->a;
    int64_t wait = a->poll_ms;
    for (;;) {
        int64_t left = c->deadline - now_ms(a);
        if (left <= 0 || a->h->cancelled(c->rp) || atomic_load(&a->stop_flag)) break;
        nap(a, c->rp, wait < left ? wait : left);
        if (now_ms(a) >= c->deadline) break;
        wait = wait * 3 / 2 > 5000 ? 5000 : wait * 3 / 2;
        long id = next_id(a);
        char *body = a2a_build_task_op(dialect, 0, id, c->task_id, tenant);
        outcome p = {0};
        int x = exchange(c, body, id, 0, dialect, &p);
        free(body);
        if (x == X_TRANSIENT) {
            out_free(&p);
            continue;
        }
        if (x == X_FAIL && !strcmp(c->klass, "timeout")) {
            out_free(&p);
            break;
        }
        if (x != X_OK || p.kind != A2A_R_TASK) {
            if (x == X_RPC) {
                c->klass = a2a_class_rpc(p.code);
                snprintf(c->why, sizeof c->why, "polling the task: error %d %s", p.code, p.errmsg);
            } else if (x == X_OK) {
                fail(c, "protocol", "polling the task: not a task%s", NULL);
            }
            out_free(&p);
            return -1;
        }
        out_free(o);
        *o = p;
        if (!a2a_state_active(o->state)) return 0;
    }
    fail(c, "timeout", "task still running at the deadline%s", NULL);
    cancel_task(c, dialect, tenant);
    return -1;
}

/* Copies the correlation id as a UUID-shaped messageId when it is 32 hex. */
static void make_msg_id(const char *corr, char *out, size_t n) {
    size_t l = corr ? strlen(corr) : 0;
    if (l == 32 && strspn(corr, "0123456789abcdefABCDEF") == 32) {
        snprintf(out, n, "%.8s-%.4s-%.4s-%.4s-%.12s", corr, corr + 8, corr + 12, corr + 16,
                 corr + 20);
    } else {
        snprintf(out, n, "%s", corr && *corr ? corr : "routerd");
    }
}

static int is_new_command(const a2a *a, const rd_request *rq) {
    const char *nc = a->new_command;
    if (!nc || !*nc) return 0;
    size_t l = strlen(nc);
    const char *t = rq->text;
    while (*t == ' ')
        t++;
    if (strncmp(t, nc, l)) return 0;
    return t[l] == 0 || t[l] == ' ' || t[l] == '@' || t[l] == '\n';
}

static rd_status finish_fail(call *c, rd_error *err) {
    a2a *a = c->a;
    count_fail(a, c->klass);
    if (a->failure_notice && *a->failure_notice)
        a->h->reply_append(c->rp, a->failure_notice, strlen(a->failure_notice));
    rd_status st = !strcmp(c->klass, "timeout")     ? RD_E_TIMEOUT
                   : !strcmp(c->klass, "transient") ? RD_E_RETRY
                                                    : RD_E_FATAL;
    a->h->error(err, st, c->klass, "%s", c->why);
    return st;
}

static rd_status a_handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    a2a *a = self;
    call c = {.a = a, .rq = rq, .rp = rp};
    const char *persona = rq->persona ? rq->persona : "";
    snprintf(c.kctx, sizeof c.kctx, "ctx:%lld:%s", (long long)rq->chat_id, persona);
    snprintf(c.ktask, sizeof c.ktask, "task:%lld:%s", (long long)rq->chat_id, persona);
    if (is_new_command(a, rq)) {
        rd_kv_op ops[] = {{.op = RD_KV_DEL, .key = c.kctx}, {.op = RD_KV_DEL, .key = c.ktask}};
        a->h->kv_txn(a->ctx, ops, 2);
        static const char done[] = "Started a new conversation.";
        a->h->reply_append(rp, done, sizeof done - 1);
        return RD_OK;
    }
    int64_t t0 = now_ms(a);
    c.deadline = t0 + a->timeout_ms;
    if (rq->deadline_ms > 0 && rq->deadline_ms < c.deadline) c.deadline = rq->deadline_ms;
    make_msg_id(rq->correlation_id, c.msg_id, sizeof c.msg_id);
    c.ctx_id = kv_str(a, c.kctx);
    c.task_id = kv_str(a, c.ktask);

    /* No card yet: ask the discovery thread to try now and wait a little. */
    pthread_mutex_lock(&a->mu);
    int64_t until = now_ms(a) + a->connect_ms + 2000;
    if (until > c.deadline) until = c.deadline;
    if (!a->have_card && now_ms(a) - a->last_rediscover_ms > 1000) {
        a->last_rediscover_ms = now_ms(a);
        a->need_discover = 1;
        pthread_cond_broadcast(&a->cv);
    }
    while (!a->have_card && !a->stopping && now_ms(a) < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
    }
    int have = a->have_card;
    pthread_mutex_unlock(&a->mu);
    if (!have) {
        fail(&c, "transient", "agent card not fetched yet%s", NULL);
        free(c.ctx_id);
        free(c.task_id);
        return finish_fail(&c, err);
    }

    int switched = 0, dropped_task = 0, attempt = 0, refetched = 0;
    rd_status st = RD_OK;
    outcome o = {0};
    for (;;) {
        pthread_mutex_lock(&a->mu);
        int dialect = a->dialect;
        int stream = a->want_stream && a->streaming;
        char *tenant = a->card.tenant ? strdup(a->card.tenant) : NULL;
        pthread_mutex_unlock(&a->mu);
        char mid[80];
        snprintf(mid, sizeof mid, "%s%s", c.msg_id, dropped_task ? "-1" : "");
        a2a_send s = {.dialect = dialect,
                      .stream = stream,
                      .id = next_id(a),
                      .text = rq->text,
                      .message_id = mid,
                      .context_id = c.ctx_id,
                      .task_id = c.task_id,
                      .tenant = tenant};
        char *body = a2a_build_send(&s);
        out_free(&o);
        int x = body ? exchange(&c, body, s.id, stream, dialect, &o) : X_FAIL;
        free(body);
        if (!body) fail(&c, "transient", "out of memory%s", NULL);

        if (x == X_RPC) {
            int code = o.code;
            if ((code == -32601 || code == -32009) && a->cfg_dialect == A2A_AUTO && !switched) {
                switched = 1;
                pthread_mutex_lock(&a->mu);
                if (a->dialect == dialect) a->dialect = dialect == A2A_V10 ? A2A_V03 : A2A_V10;
                pthread_mutex_unlock(&a->mu);
                a->h->log(a->ctx, RD_LOG_WARN, "agent answered %d in dialect %s; switching to %s",
                          code, dialect == A2A_V10 ? "1.0" : "0.3",
                          dialect == A2A_V10 ? "0.3" : "1.0");
                free(tenant);
                continue;
            }
            if (stream && code == -32004 && !c.task_id) {
                pthread_mutex_lock(&a->mu);
                a->streaming = 0; /* the agent does not stream after all */
                pthread_mutex_unlock(&a->mu);
                free(tenant);
                continue;
            }
            if ((code == -32001 || code == -32004) && c.task_id && !dropped_task) {
                dropped_task = 1;
                set_task(&c, NULL);
                free(tenant);
                continue;
            }
            c.klass = a2a_class_rpc(code);
            snprintf(c.why, sizeof c.why, "agent error %d: %s", code, o.errmsg);
            x = !strcmp(c.klass, "transient") ? X_TRANSIENT : X_FAIL;
        }
        if (x == X_TRANSIENT) {
            int64_t b = backoff_ms(attempt);
            if (c.retry_after_s > 0 && c.retry_after_s * 1000 > b) b = c.retry_after_s * 1000;
            c.retry_after_s = 0;
            if (attempt < a->retries && now_ms(a) + b < c.deadline && !a->h->cancelled(rp)) {
                attempt++;
                nap(a, rp, b);
                free(tenant);
                continue;
            }
        }
        if (x == X_FAIL && c.http_status == 404 && !a->no_discovery && !refetched) {
            /* The endpoint is gone: the agent may have moved. Fetch the
             * card again now and resend if it names another endpoint. */
            refetched = 1;
            c.http_status = 0;
            pthread_mutex_lock(&a->mu);
            char *before = a->card.rpc_url ? strdup(a->card.rpc_url) : NULL;
            pthread_mutex_unlock(&a->mu);
            CURL *h = my_curl(a);
            int moved = 0;
            if (h && discover(a, h) == 0) {
                pthread_mutex_lock(&a->mu);
                moved = !before || strcmp(before, a->card.rpc_url);
                pthread_mutex_unlock(&a->mu);
            }
            free(before);
            if (moved) {
                free(tenant);
                continue;
            }
        }
        if (x != X_OK) {
            if (!strcmp(c.klass, "timeout") && o.kind == A2A_R_TASK && o.task_id &&
                a2a_state_active(o.state)) {
                free(c.task_id);
                c.task_id = strdup(o.task_id);
                cancel_task(&c, dialect, tenant); /* a cut-off stream leaves it running */
                free(c.task_id);
                c.task_id = NULL;
            }
            free(tenant);
            st = finish_fail(&c, err);
            break;
        }
        set_ctx(&c, o.context_id);
        if (o.kind == A2A_R_TASK && o.task_id && a2a_state_active(o.state)) {
            /* A cut stream or a task still running: poll it. */
            free(c.task_id);
            c.task_id = strdup(o.task_id);
            if (poll_task(&c, dialect, tenant, &o)) {
                free(c.task_id);
                c.task_id = NULL;
                free(tenant);
                st = finish_fail(&c, err);
                break;
            }
            set_ctx(&c, o.context_id);
        }
        free(tenant);
        if (o.kind == A2A_R_MESSAGE) {
            if (c.task_id) set_task(&c, NULL);
            if (o.text) a->h->reply_append(rp, o.text, strlen(o.text));
        } else if (o.kind == A2A_R_TASK && o.state == A2A_TS_COMPLETED) {
            if (c.task_id) set_task(&c, NULL);
            const char *t = o.text ? o.text : o.status_text;
            if (t) a->h->reply_append(rp, t, strlen(t));
        } else if (o.kind == A2A_R_TASK && a2a_state_interrupted(o.state)) {
            set_task(&c, o.task_id);
            const char *t = o.status_text;
            if (!t || !*t)
                t = o.state == A2A_TS_AUTH_REQUIRED ? "The agent needs authorization to continue."
                                                    : "The agent needs more input.";
            a->h->reply_append(rp, t, strlen(t));
        } else if (o.kind == A2A_R_TASK && a2a_state_terminal(o.state)) {
            if (c.task_id) set_task(&c, NULL);
            count_fail(a, "fatal");
            const char *t = o.status_text && *o.status_text ? o.status_text : a->failure_notice;
            if (t && *t) a->h->reply_append(rp, t, strlen(t));
            a->h->error(err, RD_E_FATAL, "fatal", "task %s",
                        o.state == A2A_TS_FAILED     ? "failed"
                        : o.state == A2A_TS_REJECTED ? "rejected"
                                                     : "canceled");
            st = RD_E_FATAL;
        } else {
            fail(&c, "protocol", "agent response without a usable result%s", NULL);
            st = finish_fail(&c, err);
        }
        break;
    }
    out_free(&o);
    free(c.ctx_id);
    free(c.task_id);
    return st;
}

/* ------------------------------------------------------------ lifecycle */

static void a_destroy(void *self) {
    a2a *a = self;
    if (!a) return;
    for (size_t i = 0; i < a->nhandles; i++)
        curl_easy_cleanup(a->handles[i]);
    free(a->handles);
    pthread_key_delete(a->tls);
    a2a_card_free(&a->card);
    free(a->base_url);
    free(a->card_url);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    curl_global_cleanup();
}

static rd_status a_create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        h->error(err, RD_E_INTERNAL, "fatal", "curl_global_init failed");
        return RD_E_INTERNAL;
    }
    a2a *a = calloc(1, sizeof *a);
    if (!a) return RD_E_INTERNAL;
    a->h = h;
    a->ctx = ctx;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    pthread_key_create(&a->tls, NULL);
    const char *url = h->cfg_str(ctx, "url");
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        h->error(err, RD_E_CONFIG, "fatal", "url must be an http:// or https:// URL");
        *self = a;
        return RD_E_CONFIG;
    }
    a->base_url = strdup(url);
    const char *cu = h->cfg_str(ctx, "card_url");
    if (cu && !strcmp(cu, "none"))
        a->no_discovery = 1;
    else if (cu && *cu)
        a->card_url = strdup(cu);
    a->token = h->cfg_str(ctx, "token");
    a->api_hdr = h->cfg_str(ctx, "api_key_header");
    a->api_key = h->cfg_str(ctx, "api_key");
    if (a->api_key && (!a->api_hdr || !*a->api_hdr)) a->api_hdr = "X-API-Key";
    const char *d = h->cfg_str(ctx, "dialect");
    a->cfg_dialect = d && !strcmp(d, "1.0") ? A2A_V10 : d && !strcmp(d, "0.3") ? A2A_V03 : A2A_AUTO;
    a->want_stream = h->cfg_bool(ctx, "stream");
    a->timeout_ms = h->cfg_int(ctx, "timeout_s") * 1000;
    a->connect_ms = h->cfg_int(ctx, "connect_timeout_s") * 1000;
    a->max_bytes = h->cfg_int(ctx, "max_response_bytes");
    a->failure_notice = h->cfg_str(ctx, "failure_notice");
    a->new_command = h->cfg_str(ctx, "new_command");
    a->poll_ms = h->cfg_int(ctx, "poll_interval_ms");
    a->retries = h->cfg_int(ctx, "retries");
    static const char *const labels[] = {"classification", NULL};
    rd_metric *m = h->metric(ctx, RD_METRIC_COUNTER, "routerd_a2a_failures_total",
                             "A2A backend failures by classification", labels, NULL, 0);
    for (int i = 0; m && i < 4; i++) {
        const char *lv[] = {classes[i]};
        a->fail[i] = h->series(m, lv);
    }
    srand((unsigned)h->wall_ns());
    *self = a;
    return RD_OK;
}

static rd_status a_start(void *self, rd_error *err) {
    a2a *a = self;
    if (a->no_discovery) {
        /* url is the endpoint; the dialect is probed by the first call. */
        a->card.rpc_url = strdup(a->base_url);
        a->dialect = a->cfg_dialect ? a->cfg_dialect : A2A_V10;
        a->streaming = a->want_stream;
        a->have_card = 1;
        a->h->ready(a->ctx, 1, NULL);
        return RD_OK;
    }
    a->h->ready(a->ctx, 0, "agent card not fetched yet");
    CURL *c = curl_easy_init();
    int rc = c ? discover(a, c) : -1;
    if (c) curl_easy_cleanup(c);
    if (rc) {
        char safe[512];
        a->h->redact(a->ctx, a->card_url ? a->card_url : a->base_url, safe, sizeof safe);
        a->h->log(a->ctx, RD_LOG_WARN,
                  "agent at %s not usable yet; retrying discovery in the background", safe);
        a->need_discover = 1;
    }
    if (pthread_create(&a->disc, NULL, disc_main, a)) {
        a->h->error(err, RD_E_INTERNAL, "fatal", "cannot start the discovery thread");
        return RD_E_INTERNAL;
    }
    a->disc_started = 1;
    return RD_OK;
}

static void a_quiesce(void *self) {
    a2a *a = self;
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void a_stop(void *self) {
    a2a *a = self;
    a_quiesce(a);
    atomic_store(&a->stop_flag, 1);
    if (a->disc_started) pthread_join(a->disc, NULL);
    a->disc_started = 0;
}

static const rd_ops ops = {.size = sizeof ops,
                           .create = a_create,
                           .start = a_start,
                           .quiesce = a_quiesce,
                           .stop = a_stop,
                           .destroy = a_destroy,
                           .handle = a_handle};

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "a2a", .version = "1.0",
                 .summary = "forwards messages to an A2A agent (JSON-RPC, protocol 0.3 and 1.0)",
                 .options = opts, .ops = &ops);
