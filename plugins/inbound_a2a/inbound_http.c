/* The listener: libmicrohttpd with a thread per connection (a blocking
 * send and an SSE stream wait on their own thread), bounded connections,
 * idle timeout and body size; per-caller auth by bearer token or
 * X-API-Key, compared in constant time; the card; SSE streams. */
#include "inbound.h"

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sbuf.h"

/* ---- requests_total ------------------------------------------------------------- */

static const char *const oc_names[OC_N] = {"ok",           "invalid", "not_found", "unauthorized",
                                           "rate_limited", "full",    "too_large", "error"};

typedef struct ib_series {
    char key[IB_NAME_MAX + 64];
    rd_series *s;
} ib_series;

void ib_count(ib *b, const char *caller, const char *method, ib_outcome oc) {
    if (!b->m_req) return;
    char key[IB_NAME_MAX + 64];
    snprintf(key, sizeof key, "%s|%s|%d", caller, method, (int)oc);
    pthread_mutex_lock(&b->smu);
    rd_series *s = NULL;
    for (size_t i = 0; i < b->nseries && !s; i++)
        if (!strcmp(b->series[i].key, key)) s = b->series[i].s;
    if (!s) {
        const char *lv[] = {b->inst, caller, method, oc_names[oc]};
        s = b->h->series(b->m_req, lv);
        ib_series *n = realloc(b->series, (b->nseries + 1) * sizeof *n);
        if (n) {
            b->series = n;
            snprintf(n[b->nseries].key, sizeof n[b->nseries].key, "%s", key);
            n[b->nseries++].s = s;
        }
    }
    pthread_mutex_unlock(&b->smu);
    if (s) b->h->add(s, 1);
}

/* ---- auth ---------------------------------------------------------------------- */

void ib_token_digest(const char *s, unsigned char out[32]) {
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL);
}

/* Every caller is compared, found or not: the time says nothing. */
ib_caller *ib_auth(ib *b, const char *bearer, const char *api_key) {
    const char *given = bearer ? bearer : api_key;
    if (!given || !*given || strlen(given) > 4096) return NULL;
    unsigned char g[32];
    ib_token_digest(given, g);
    ib_caller *found = NULL;
    for (size_t i = 0; i < b->ncallers; i++) {
        if (CRYPTO_memcmp(g, b->callers[i].token_sha, 32) == 0) found = &b->callers[i];
    }
    return found;
}

/* "Bearer <token>" (scheme in any case), else NULL. */
static const char *bearer_of(const char *h) {
    if (!h || strncasecmp(h, "Bearer ", 7)) return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

ib_caller *ib_auth_headers(ib *b, const char *authorization, const char *api_key) {
    return ib_auth(b, bearer_of(authorization), api_key);
}

/* ---- responses ------------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *type, char *body,
                               int retry_after) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "A2A-Version"); /* the card's shape */
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_error(struct MHD_Connection *c, int status, int code,
                                     const char *msg) {
    return respond(c, status, "application/json", ib_rpc_error_body(code, msg), 0);
}

/* ---- SSE streams ------------------------------------------------------------------ */

typedef struct stream {
    ib *b;
    char *task_id, *rpc_id;
    int v10, sent_task, done;
    ib_state state;
    uint64_t gen;
    sbuf out;
    size_t off;
    int64_t last_ms;
} stream;

static void emit(stream *s, char *ev) {
    if (!ev) return;
    sbuf_puts(&s->out, ev);
    free(ev);
    s->last_ms = s->b->h->now_ms();
}

/* What changed since the last event: the Task first, then status and
 * artifact updates; done after a terminal state. */
static void report(stream *s, ib_task *t) {
    if (!s->sent_task) {
        emit(s, ib_event_task(t, s->v10, s->rpc_id));
        s->sent_task = 1;
        s->state = t->state;
        s->done = ib_terminal(t->state);
        return;
    }
    if (t->state == s->state) return;
    if (s->state == TS_SUBMITTED && ib_terminal(t->state) && t->delivered_ms && !t->notify) {
        ib_task q = *t; /* the question was asked in between */
        q.state = TS_INPUT;
        q.updated_ms = t->delivered_ms;
        emit(s, ib_event_status(&q, s->v10, s->rpc_id));
    }
    if (t->state == TS_COMPLETED && t->answer) emit(s, ib_event_artifact(t, s->v10, s->rpc_id));
    emit(s, ib_event_status(t, s->v10, s->rpc_id));
    s->state = t->state;
    s->done = ib_terminal(t->state);
}

static int64_t keepalive_ms(ib *b) {
    int64_t k = b->cf.http_timeout / 2;
    return k > 15000 ? 15000 : k < 500 ? 500 : k;
}

/* Fills s->out with the next events; waits for a change meanwhile. */
static void produce(stream *s) {
    ib *b = s->b;
    uint64_t g = ib_gen(b);
    ib_task t;
    if (ib_task_load(b, s->task_id, &t)) {
        s->done = 1;
        return;
    }
    report(s, &t);
    ib_task_free(&t);
    if (s->out.len > s->off || s->done) return;
    if (ib_stopping(b)) {
        s->done = 1;
        return;
    }
    /* Another replica's change shows at the next look, a second later. */
    s->gen = ib_wait(b, g, 1000);
    if (b->h->now_ms() - s->last_ms >= keepalive_ms(b)) emit(s, strdup(": keep-alive\n\n"));
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *s = cls;
    while (s->out.len <= s->off) {
        if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
        sbuf_reset(&s->out);
        s->off = 0;
        produce(s);
        if (s->out.failed) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->out.len - s->off;
    if (n > max) n = max;
    memcpy(buf, s->out.p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *s = cls;
    atomic_fetch_sub(&s->b->streams, 1);
    free(s->task_id);
    free(s->rpc_id);
    sbuf_free(&s->out);
    free(s);
}

static enum MHD_Result open_stream(ib *b, struct MHD_Connection *c, ib_answer *a) {
    if (atomic_fetch_add(&b->streams, 1) >= b->cf.max_streams) {
        atomic_fetch_sub(&b->streams, 1);
        a->outcome = OC_FULL;
        return respond(c, 503, "application/json",
                       ib_rpc_error_body(-32000, "too many streams: retry later"), 10);
    }
    stream *s = calloc(1, sizeof *s);
    struct MHD_Response *r =
        s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, s, stream_free)
          : NULL;
    if (!r) {
        atomic_fetch_sub(&b->streams, 1);
        free(s);
        return MHD_NO;
    }
    s->b = b;
    s->v10 = a->v10;
    s->task_id = a->task_id, a->task_id = NULL;
    s->rpc_id = a->rpc_id, a->rpc_id = NULL;
    s->last_ms = b->h->now_ms();
    if (a->first) { /* a new task starts as it was stored: `submitted` */
        emit(s, a->first);
        a->first = NULL;
        s->sent_task = 1;
        s->state = a->first_state;
        s->done = ib_terminal(s->state);
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- requests ---------------------------------------------------------------------- */

typedef struct conn {
    int done; /* answered from the headers */
    ib_caller *caller;
    char *body;
    size_t len;
    int too_large;
} conn;

static int is_card(const char *url) {
    return !strcmp(url, "/.well-known/agent-card.json") || !strcmp(url, "/.well-known/agent.json");
}

static int is_rpc(ib *b, const char *url) {
    return !strcmp(url, "/") || (b->rpc_path[0] && !strcmp(url, b->rpc_path));
}

static enum MHD_Result card(ib *b, struct MHD_Connection *c) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "A2A-Version");
    return respond(c, 200, "application/json", ib_card(b, v && v[0] == '1'), 0);
}

/* JSON (application/json, application/a2a+json) or no Content-Type. */
static int json_type(struct MHD_Connection *c) {
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!t) return 1;
    size_t n = strcspn(t, "; ");
    return (n == 16 && !strncasecmp(t, "application/json", n)) ||
           (n == 20 && !strncasecmp(t, "application/a2a+json", n));
}

/* First call: headers only, no body read yet. */
static enum MHD_Result on_headers(ib *b, struct MHD_Connection *c, const char *url,
                                  const char *method, conn *cs) {
    cs->done = 1;
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (is_card(url) || (b->rpc_path[0] && !strncmp(url, b->rpc_path, strlen(b->rpc_path)) &&
                         is_card(url + strlen(b->rpc_path))))
        return get ? card(b, c) : respond(c, 405, "text/plain", strdup("method not allowed\n"), 0);
    if (!is_rpc(b, url)) return respond(c, 404, "text/plain", strdup("not found\n"), 0);
    if (strcmp(method, "POST"))
        return respond(c, 405, "text/plain", strdup("method not allowed\n"), 0);
    const char *au = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    cs->caller = ib_auth_headers(b, au, key);
    if (!cs->caller) {
        ib_count(b, "-", "other", OC_UNAUTHORIZED);
        return respond_error(c, 401, -32000, "unauthorized");
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)b->cf.max_body_bytes) {
        ib_count(b, cs->caller->name, "other", OC_TOO_LARGE);
        return respond_error(c, 413, -32600, "request body larger than max_body_bytes");
    }
    if (!json_type(c)) {
        ib_count(b, cs->caller->name, "other", OC_INVALID);
        return respond_error(c, 200, -32005, "content type not supported: use application/json");
    }
    cs->done = 0;
    return MHD_YES;
}

static void take_body(ib *b, conn *cs, const char *data, size_t n) {
    if (cs->too_large || n > (size_t)b->cf.max_body_bytes - cs->len) {
        cs->too_large = 1; /* the rest is read and dropped, then 413 */
        return;
    }
    char *nb = realloc(cs->body, cs->len + n + 1);
    if (!nb) {
        cs->too_large = 1;
        return;
    }
    cs->body = nb;
    memcpy(cs->body + cs->len, data, n);
    cs->len += n;
    cs->body[cs->len] = 0;
}

static enum MHD_Result finish(ib *b, struct MHD_Connection *c, conn *cs) {
    cs->done = 1;
    if (cs->too_large) {
        ib_count(b, cs->caller->name, "other", OC_TOO_LARGE);
        return respond_error(c, 413, -32600, "request body larger than max_body_bytes");
    }
    ib_answer a = {0};
    ib_rpc(b, cs->caller, cs->body ? cs->body : "", cs->len, &a);
    enum MHD_Result r;
    if (a.stream)
        r = open_stream(b, c, &a);
    else
        r = respond(c, a.http, "application/json", a.body, a.retry_after), a.body = NULL;
    ib_count(b, cs->caller->name, a.method, a.outcome);
    free(a.body);
    free(a.task_id);
    free(a.rpc_id);
    free(a.first);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    ib *b = cls;
    conn *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        return on_headers(b, c, url, method, cs);
    }
    if (cs->done) { /* answered already: the body is not kept */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        take_body(b, cs, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return finish(b, c, cs);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

int ib_http_start(ib *b, rd_error *err) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_POLL;
    if (b->addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    int64_t to = b->cf.http_timeout / 1000;
    b->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, b, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&b->addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, b, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(to < 1 ? 1 : to), MHD_OPTION_CONNECTION_LIMIT, (unsigned)b->cf.max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)b->cf.max_header_bytes, MHD_OPTION_END);
    if (!b->mhd) {
        b->h->error(err, RD_E_CONFIG, "fatal", "listen %s: cannot listen (address in use?)",
                    b->cf.listen);
        return -1;
    }
    return 0;
}

/* The listening socket comes back to us: closed once the daemon stopped. */
void ib_http_quiesce(ib *b) {
    if (b->mhd && b->listen_fd < 0) b->listen_fd = MHD_quiesce_daemon(b->mhd);
}

void ib_http_stop(ib *b) {
    if (b->mhd) MHD_stop_daemon(b->mhd);
    b->mhd = NULL;
    if (b->listen_fd >= 0) close(b->listen_fd);
    b->listen_fd = -1;
}
