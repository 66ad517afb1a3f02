/* Fake A2A agent; see fake_a2a.h for the script. */
#include "fake_a2a.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REQS 4096
#define MAX_TASKS 256

typedef struct {
    char id[32], ctx[64];
    int state; /* 0 working, 1 input-required, 2 completed, 3 failed, 4 canceled */
    int polls;
    char answer[256];
} task;

typedef struct {
    char mid[96];
    int n;
} flaky;

struct fa {
    int stopping;
    struct MHD_Daemon *d;
    char base[64];
    fa_card card;
    int speak, streaming, card_status, rpc_status;
    char endpoint[128]; /* card's JSON-RPC URL; "" = <base>/rpc */
    pthread_mutex_t mu;
    fa_req *reqs;
    int nreqs;
    task tasks[MAX_TASKS];
    int ntasks;
    flaky fl[64];
    int nfl;
    int next_ctx;
};

typedef struct {
    char *body;
    size_t len;
} conn_state;

static void ms_sleep(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void cp(char *dst, size_t n, const char *s) {
    snprintf(dst, n, "%s", s ? s : "");
}

/* ------------------------------------------------------------ JSON shapes */

static const char *state_name(int v10, int st) {
    static const char *const s03[] = {"working", "input-required", "completed",
                                      "failed",  "canceled",       "submitted"};
    static const char *const s10[] = {"TASK_STATE_WORKING",   "TASK_STATE_INPUT_REQUIRED",
                                      "TASK_STATE_COMPLETED", "TASK_STATE_FAILED",
                                      "TASK_STATE_CANCELED",  "TASK_STATE_SUBMITTED"};
    return v10 ? s10[st] : s03[st];
}

static cJSON *parts(int v10, const char *text) {
    cJSON *a = cJSON_CreateArray();
    cJSON *p = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddItemToArray(a, p);
    return a;
}

static cJSON *message(int v10, const char *text, const char *ctx, const char *task_id) {
    cJSON *m = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "role", v10 ? "ROLE_AGENT" : "agent");
    cJSON_AddStringToObject(m, "messageId", "agent-msg");
    cJSON_AddItemToObject(m, "parts", parts(v10, text));
    if (ctx) cJSON_AddStringToObject(m, "contextId", ctx);
    if (task_id) cJSON_AddStringToObject(m, "taskId", task_id);
    return m;
}

static cJSON *status(int v10, int st, const char *msg, const task *t) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "state", state_name(v10, st));
    if (msg) cJSON_AddItemToObject(s, "message", message(v10, msg, t->ctx, t->id));
    return s;
}

static cJSON *task_json(int v10, const task *t) {
    cJSON *o = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(o, "kind", "task");
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "contextId", t->ctx);
    const char *sm = t->state == 1   ? "What is your name?"
                     : t->state == 3 ? "I cannot do that."
                                     : NULL;
    cJSON_AddItemToObject(o, "status", status(v10, t->state, sm, t));
    if (t->state == 2) {
        cJSON *arts = cJSON_AddArrayToObject(o, "artifacts");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "artifactId", "a1");
        cJSON_AddItemToObject(a, "parts", parts(v10, t->answer));
        cJSON_AddItemToArray(arts, a);
    }
    return o;
}

static cJSON *status_update(int v10, const task *t, int st, int final) {
    cJSON *u = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(u, "kind", "status-update");
    cJSON_AddStringToObject(u, "taskId", t->id);
    cJSON_AddStringToObject(u, "contextId", t->ctx);
    cJSON_AddItemToObject(u, "status", status(v10, st, NULL, t));
    if (!v10) cJSON_AddBoolToObject(u, "final", final);
    if (!v10) return u;
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, "statusUpdate", u);
    return w;
}

static cJSON *artifact_update(int v10, const task *t, const char *text, int append, int last) {
    cJSON *u = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(u, "kind", "artifact-update");
    cJSON_AddStringToObject(u, "taskId", t->id);
    cJSON_AddStringToObject(u, "contextId", t->ctx);
    cJSON *a = cJSON_AddObjectToObject(u, "artifact");
    cJSON_AddStringToObject(a, "artifactId", "a1");
    cJSON_AddItemToObject(a, "parts", parts(v10, text));
    if (append) cJSON_AddBoolToObject(u, "append", 1);
    if (last) cJSON_AddBoolToObject(u, "lastChunk", 1);
    if (!v10) return u;
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, "artifactUpdate", u);
    return w;
}

/* Send results: 1.0 wraps in {"task":…}/{"message":…}. */
static cJSON *wrap(int v10, const char *key, cJSON *o) {
    if (!v10) return o;
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, key, o);
    return w;
}

static char *rpc_result(const cJSON *id, cJSON *result) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(r, "result", result);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static char *rpc_error(const cJSON *id, int code, const char *msg) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* ------------------------------------------------------------- responses */

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *ctype, char *body,
                             size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, char *body) {
    return reply(c, 200, "application/json", body, strlen(body));
}

/* An event stream written in small pieces; cut = close without the end. */
typedef struct {
    char *text;
    size_t len, pos;
    unsigned seed;
    int cut, hold; /* hold: keep the connection open after the last event */
    const int *stopping;
} sse_gen;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    sse_gen *g = cls;
    if (g->pos >= g->len && g->hold) {
        for (int i = 0; i < 300 && !*g->stopping; i++)
            ms_sleep(10);
        g->hold = 0;
    }
    if (g->pos >= g->len)
        return g->cut ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    g->seed = g->seed * 1103515245u + 12345u;
    size_t n = 1 + (g->seed >> 16) % 13;
    if (n > max) n = max;
    if (n > g->len - g->pos) n = g->len - g->pos;
    memcpy(buf, g->text + g->pos, n);
    g->pos += n;
    ms_sleep(1);
    return (ssize_t)n;
}

static void sse_free(void *cls) {
    sse_gen *g = cls;
    free(g->text);
    free(g);
}

typedef struct {
    char *b;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *s, const char *t) {
    size_t n = strlen(t);
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->b = realloc(s->b, s->cap);
    }
    memcpy(s->b + s->n, t, n);
    s->n += n;
    s->b[s->n] = 0;
}

/* Adds one event; alternates LF and CRLF, splits data over two lines and
 * sprinkles comments, as real servers and proxies do. */
static void sse_event(sbuf *s, int k, const char *event, const cJSON *id, cJSON *result) {
    char *j = result ? rpc_result(id, result) : rpc_error(id, -32603, "stream broke");
    const char *eol = k % 2 ? "\r\n" : "\n";
    if (k % 3 == 0) {
        sb_add(s, ": keep-alive");
        sb_add(s, eol);
    }
    if (event) {
        sb_add(s, "event: ");
        sb_add(s, event);
        sb_add(s, eol);
    }
    char *comma = strchr(j, ',');
    if (comma && k % 2 == 0) {
        comma[0] = 0;
        sb_add(s, "data: ");
        sb_add(s, j);
        sb_add(s, ",");
        sb_add(s, eol);
        sb_add(s, "data:");
        sb_add(s, comma + 1);
    } else {
        sb_add(s, "data: ");
        sb_add(s, j);
    }
    sb_add(s, eol);
    sb_add(s, eol);
    free(j);
}

static enum MHD_Result reply_sse(struct MHD_Connection *c, sbuf *s, int cut, int hold,
                                 const int *stopping) {
    sse_gen *g = calloc(1, sizeof *g);
    g->text = s->b;
    g->len = s->n;
    g->seed = (unsigned)s->n;
    g->cut = cut;
    g->hold = hold;
    g->stopping = stopping;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256, sse_read, g, sse_free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------------- state */

static task *new_task(fa *f, const char *ctx, int state) {
    if (f->ntasks >= MAX_TASKS) return NULL;
    task *t = &f->tasks[f->ntasks];
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "task-%d", ++f->ntasks);
    cp(t->ctx, sizeof t->ctx, ctx);
    t->state = state;
    return t;
}

static task *find_task(fa *f, const char *id) {
    for (int i = 0; id && i < f->ntasks; i++)
        if (!strcmp(f->tasks[i].id, id)) return &f->tasks[i];
    return NULL;
}

static const char *hdr(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void record(fa *f, struct MHD_Connection *c, const char *url, const char *method,
                   const cJSON *msg) {
    pthread_mutex_lock(&f->mu);
    if (f->nreqs < MAX_REQS) {
        fa_req *r = &f->reqs[f->nreqs++];
        memset(r, 0, sizeof *r);
        cp(r->path, sizeof r->path, url);
        cp(r->method, sizeof r->method, method);
        cp(r->a2a_version, sizeof r->a2a_version, hdr(c, "A2A-Version"));
        cp(r->authorization, sizeof r->authorization, hdr(c, "Authorization"));
        cp(r->api_key, sizeof r->api_key, hdr(c, "X-API-Key"));
        cp(r->traceparent, sizeof r->traceparent, hdr(c, "traceparent"));
        cp(r->accept, sizeof r->accept, hdr(c, "Accept"));
        if (msg) {
            cp(r->message_id, sizeof r->message_id, jstr(msg, "messageId"));
            cp(r->context_id, sizeof r->context_id, jstr(msg, "contextId"));
            cp(r->task_id, sizeof r->task_id, jstr(msg, "taskId"));
            const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "parts"), 0);
            cp(r->text, sizeof r->text, jstr(p0, "text"));
        }
    }
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------------------ card */

static enum MHD_Result serve_card(fa *f, struct MHD_Connection *c, const char *url) {
    record(f, c, url, "", NULL);
    int legacy = !strcmp(url, "/.well-known/agent.json");
    int st = f->card_status;
    if (st && st != 200) return reply(c, st, "text/plain", strdup("not now"), 7);
    if ((f->card == FA_CARD_LEGACY) != legacy)
        return reply(c, 404, "text/plain", strdup("not found"), 9);
    if (f->card == FA_CARD_INVALID)
        return reply(c, 200, "application/json", strdup("{\"name\": \"broken"), 16);
    char rpc[128];
    pthread_mutex_lock(&f->mu);
    if (f->endpoint[0])
        snprintf(rpc, sizeof rpc, "%s", f->endpoint);
    else
        snprintf(rpc, sizeof rpc, "%s/rpc", f->base);
    pthread_mutex_unlock(&f->mu);
    cJSON *card = cJSON_CreateObject();
    cJSON_AddStringToObject(card, "name", "fake agent");
    cJSON_AddStringToObject(card, "description", "test double");
    cJSON_AddStringToObject(card, "version", "1.0.0");
    cJSON *caps = cJSON_AddObjectToObject(card, "capabilities");
    cJSON_AddBoolToObject(caps, "streaming", f->streaming);
    cJSON_AddItemToObject(card, "skills", cJSON_CreateArray());
    if (f->card == FA_CARD_V10 || f->card == FA_CARD_HYBRID || f->card == FA_CARD_NO_RPC) {
        cJSON *si = cJSON_AddArrayToObject(card, "supportedInterfaces");
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "url", rpc);
        cJSON_AddStringToObject(e, "protocolBinding",
                                f->card == FA_CARD_NO_RPC ? "GRPC" : "JSONRPC");
        cJSON_AddStringToObject(e, "protocolVersion", "1.0");
        cJSON_AddItemToArray(si, e);
    }
    if (f->card == FA_CARD_V03 || f->card == FA_CARD_LEGACY || f->card == FA_CARD_HYBRID) {
        cJSON_AddStringToObject(card, "protocolVersion", "0.3.0");
        cJSON_AddStringToObject(card, "url", rpc);
        cJSON_AddStringToObject(card, "preferredTransport", "JSONRPC");
    }
    char *s = cJSON_PrintUnformatted(card);
    cJSON_Delete(card);
    return reply_json(c, s);
}

/* ------------------------------------------------------------------- rpc */

static int is_v10_method(const char *m) {
    return !strcmp(m, "SendMessage") || !strcmp(m, "SendStreamingMessage") ||
           !strcmp(m, "GetTask") || !strcmp(m, "CancelTask");
}

static int is_v03_method(const char *m) {
    return !strcmp(m, "message/send") || !strcmp(m, "message/stream") || !strcmp(m, "tasks/get") ||
           !strcmp(m, "tasks/cancel");
}

/* Shape checks of the user message per dialect. */
static int valid_message(int v10, const cJSON *m) {
    if (!cJSON_IsObject(m) || !jstr(m, "messageId")) return 0;
    const char *role = jstr(m, "role");
    const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "parts"), 0);
    if (!p0 || !jstr(p0, "text")) return 0;
    if (v10) return role && !strcmp(role, "ROLE_USER") && !jstr(m, "kind") && !jstr(p0, "kind");
    return role && !strcmp(role, "user") && jstr(m, "kind") &&
           !strcmp(jstr(m, "kind"), "message") && jstr(p0, "kind") &&
           !strcmp(jstr(p0, "kind"), "text");
}

static enum MHD_Result serve_stream(fa *f, struct MHD_Connection *c, int v10, const cJSON *id,
                                    const char *text, const char *ctx) {
    sbuf s = {0};
    int k = 0, cut = 0, hold = 0;
    char held[300];
    if (!strncmp(text, "streamhold:", 11)) {
        hold = 1;
        snprintf(held, sizeof held, "stream:%s", text + 11);
        text = held;
    }
    pthread_mutex_lock(&f->mu);
    task t0 = {0};
    task *t = new_task(f, ctx, 0);
    if (t) t0 = *t;
    pthread_mutex_unlock(&f->mu);
    if (!t) return reply_json(c, rpc_error(id, -32603, "too many tasks"));
    t0.state = 5; /* submitted */
    sse_event(&s, k++, NULL, id, wrap(v10, "task", task_json(v10, &t0)));
    if (!strncmp(text, "stream:", 7)) {
        sse_event(&s, k++, NULL, id, status_update(v10, &t0, 0, 0));
        char words[256];
        cp(words, sizeof words, text + 7);
        char *save = NULL, *w = strtok_r(words, " ", &save);
        int first = 1;
        while (w) {
            char chunk[300];
            snprintf(chunk, sizeof chunk, "%s%s", first ? "" : " ", w);
            w = strtok_r(NULL, " ", &save);
            sse_event(&s, k++, NULL, id, artifact_update(v10, &t0, chunk, !first, w == NULL));
            first = 0;
        }
        pthread_mutex_lock(&f->mu);
        t->state = 2;
        cp(t->answer, sizeof t->answer, text + 7);
        pthread_mutex_unlock(&f->mu);
        sse_event(&s, k++, NULL, id, status_update(v10, &t0, 2, 1));
    } else if (!strcmp(text, "streamcut")) {
        sse_event(&s, k++, NULL, id, status_update(v10, &t0, 0, 0));
        sse_event(&s, k++, NULL, id, artifact_update(v10, &t0, "partial", 0, 0));
        pthread_mutex_lock(&f->mu);
        t->polls = 1;
        cp(t->answer, sizeof t->answer, "partial and complete");
        pthread_mutex_unlock(&f->mu);
        cut = 1;
    } else if (!strcmp(text, "streamerr")) {
        sse_event(&s, k++, "error", id, NULL);
    } else {
        free(s.b);
        return reply_json(c, rpc_error(id, -32602, "stream script unknown"));
    }
    return reply_sse(c, &s, cut, hold, &f->stopping);
}

static enum MHD_Result serve_rpc(fa *f, struct MHD_Connection *c, const char *url, const char *body,
                                 size_t len) {
    cJSON *req = cJSON_ParseWithLength(body, len);
    const cJSON *id = cJSON_GetObjectItem(req, "id");
    const char *method = jstr(req, "method");
    const cJSON *params = cJSON_GetObjectItem(req, "params");
    const cJSON *msg = cJSON_GetObjectItem(params, "message");
    record(f, c, url, method, msg);
    char *out = NULL;
    enum MHD_Result ret;
    if (!req || !method) {
        out = rpc_error(id, -32700, "parse error");
        goto json;
    }
    const char *ver = hdr(c, "A2A-Version");
    int v10 = is_v10_method(method);
    int known = v10 || is_v03_method(method);
    int hdr_ok = v10 ? ver && !strcmp(ver, "1.0") : !ver || strcmp(ver, "1.0");
    if (!known || !hdr_ok || !(f->speak & (v10 ? FA_SPEAK_V10 : FA_SPEAK_V03))) {
        out = rpc_error(id, -32601, "Method not found");
        goto json;
    }
    const char *ct = hdr(c, "Content-Type");
    if (!ct || strncmp(ct, "application/json", 16)) {
        out = rpc_error(id, -32005, "content type");
        goto json;
    }
    int is_get = !strcmp(method, "GetTask") || !strcmp(method, "tasks/get");
    int is_cancel = !strcmp(method, "CancelTask") || !strcmp(method, "tasks/cancel");
    if (is_get || is_cancel) {
        pthread_mutex_lock(&f->mu);
        task *t = find_task(f, jstr(params, "id"));
        if (!t) {
            pthread_mutex_unlock(&f->mu);
            out = rpc_error(id, -32001, "Task not found");
            goto json;
        }
        if (is_cancel)
            t->state = 4;
        else if (t->state == 0 && t->polls-- <= 0)
            t->state = 2;
        out = rpc_result(id, task_json(v10, t));
        pthread_mutex_unlock(&f->mu);
        goto json;
    }
    if (!valid_message(v10, msg)) {
        out = rpc_error(id, -32602, "Invalid params");
        goto json;
    }
    const char *text = jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "parts"), 0), "text");
    char ctx[64];
    pthread_mutex_lock(&f->mu);
    if (jstr(msg, "contextId"))
        cp(ctx, sizeof ctx, jstr(msg, "contextId"));
    else
        snprintf(ctx, sizeof ctx, "ctx-%d", ++f->next_ctx);
    pthread_mutex_unlock(&f->mu);
    const char *tid = jstr(msg, "taskId");
    if (tid) {
        pthread_mutex_lock(&f->mu);
        task *t = find_task(f, tid);
        if (!t) {
            out = rpc_error(id, -32001, "Task not found");
        } else if (t->state != 1) {
            out = rpc_error(id, -32004, "Task is in a terminal state");
        } else if (strcmp(t->ctx, ctx)) {
            out = rpc_error(id, -32602, "contextId does not match the task");
        } else if (!strcmp(method, "SendStreamingMessage") || !strcmp(method, "message/stream")) {
            /* Like the JS SDK: the snapshot (still input-required), then
             * the answer and the final status. */
            task t0 = *t;
            t->state = 2;
            snprintf(t->answer, sizeof t->answer, "Hello, %s", text);
            pthread_mutex_unlock(&f->mu);
            sbuf sb = {0};
            sse_event(&sb, 0, NULL, id, wrap(v10, "task", task_json(v10, &t0)));
            char hello[300];
            snprintf(hello, sizeof hello, "Hello, %s", text);
            sse_event(&sb, 1, NULL, id, artifact_update(v10, &t0, hello, 0, 1));
            sse_event(&sb, 2, NULL, id, status_update(v10, &t0, 2, 1));
            cJSON_Delete(req);
            return reply_sse(c, &sb, 0, 0, &f->stopping);
        } else {
            t->state = 2;
            snprintf(t->answer, sizeof t->answer, "Hello, %s", text);
            out = rpc_result(id, wrap(v10, "task", task_json(v10, t)));
        }
        pthread_mutex_unlock(&f->mu);
        goto json;
    }
    int stream = !strcmp(method, "SendStreamingMessage") || !strcmp(method, "message/stream");
    if (stream && (!strncmp(text, "stream", 6))) {
        ret = serve_stream(f, c, v10, id, text, ctx);
        cJSON_Delete(req);
        return ret;
    }
    int n = 0, st = 0;
    if (!strncmp(text, "task:", 5) || !strcmp(text, "ask") || !strcmp(text, "fail") ||
        !strcmp(text, "forever")) {
        pthread_mutex_lock(&f->mu);
        task *t = new_task(f, ctx, !strcmp(text, "ask") ? 1 : !strcmp(text, "fail") ? 3 : 0);
        if (t) {
            t->polls = strcmp(text, "forever") ? 2 : 1 << 30;
            cp(t->answer, sizeof t->answer, strncmp(text, "task:", 5) ? "" : text + 5);
            out = rpc_result(id, wrap(v10, "task", task_json(v10, t)));
        } else {
            out = rpc_error(id, -32603, "too many tasks");
        }
        pthread_mutex_unlock(&f->mu);
    } else if (sscanf(text, "rpcerr:%d", &n) == 1) {
        out = rpc_error(id, n, "scripted error");
    } else if (!strcmp(text, "badid")) {
        cJSON *wrong = cJSON_CreateNumber(987654);
        out = rpc_result(wrong, wrap(v10, "message", message(v10, "wrong id", ctx, NULL)));
        cJSON_Delete(wrong);
    } else if (sscanf(text, "http:%d", &n) == 1) {
        cJSON_Delete(req);
        return reply(c, n, "text/plain", strdup("scripted failure"), 16);
    } else if (sscanf(text, "flaky:%d:%d", &n, &st) == 2) {
        const char *mid = jstr(msg, "messageId");
        pthread_mutex_lock(&f->mu);
        int i = 0;
        while (i < f->nfl && strcmp(f->fl[i].mid, mid))
            i++;
        if (i == f->nfl && f->nfl < 64) cp(f->fl[f->nfl++].mid, sizeof f->fl[0].mid, mid);
        int tries = i < 64 ? ++f->fl[i].n : 99;
        pthread_mutex_unlock(&f->mu);
        if (tries <= n) {
            if (st) {
                cJSON_Delete(req);
                struct MHD_Response *r =
                    MHD_create_response_from_buffer(9, (void *)"try later", MHD_RESPMEM_PERSISTENT);
                MHD_add_response_header(r, "Content-Type", "text/plain");
                if (st == 429 || st == 503) MHD_add_response_header(r, "Retry-After", "1");
                enum MHD_Result ret2 = MHD_queue_response(c, (unsigned)st, r);
                MHD_destroy_response(r);
                return ret2;
            }
            out = rpc_error(id, -32603, "internal error");
        } else {
            out = rpc_result(id, wrap(v10, "message", message(v10, "recovered", ctx, NULL)));
        }
    } else if (sscanf(text, "slow:%d", &n) == 1) {
        ms_sleep(n);
        out = rpc_result(id, wrap(v10, "message", message(v10, "slow done", ctx, NULL)));
    } else if (!strcmp(text, "big")) {
        size_t big = 2u << 20;
        char *t = malloc(big + 1);
        memset(t, 'x', big);
        t[big] = 0;
        out = rpc_result(id, wrap(v10, "message", message(v10, t, ctx, NULL)));
        free(t);
    } else if (!strcmp(text, "garbage")) {
        cJSON_Delete(req);
        return reply(c, 200, "text/html", strdup("<html>oops</html>"), 17);
    } else {
        char echo[300];
        snprintf(echo, sizeof echo, "echo: %s", text);
        out = rpc_result(id, wrap(v10, "message", message(v10, echo, ctx, NULL)));
    }
json:
    cJSON_Delete(req);
    return reply_json(c, out);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    fa *f = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        cs->body = realloc(cs->body, cs->len + *upload_size + 1);
        memcpy(cs->body + cs->len, upload, *upload_size);
        cs->len += *upload_size;
        cs->body[cs->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET") && !strncmp(url, "/.well-known/", 13)) return serve_card(f, c, url);
    pthread_mutex_lock(&f->mu);
    int rst = f->rpc_status;
    pthread_mutex_unlock(&f->mu);
    if (!strcmp(method, "POST") && !strcmp(url, "/rpc") && !rst)
        return serve_rpc(f, c, url, cs->body ? cs->body : "", cs->len);
    if (rst) {
        record(f, c, url, "", NULL);
        return reply(c, rst, "text/plain", strdup("gone"), 4);
    }
    record(f, c, url, "", NULL);
    return reply(c, 404, "text/plain", strdup("not found"), 9);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

fa *fa_start(fa_card card, int speak, int streaming) {
    fa *f = calloc(1, sizeof *f);
    f->card = card;
    f->speak = speak;
    f->streaming = streaming;
    f->reqs = calloc(MAX_REQS, sizeof *f->reqs);
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, f, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, f, MHD_OPTION_END);
    if (!f->d) {
        free(f->reqs);
        free(f);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", di ? di->port : 0);
    return f;
}

void fa_stop(fa *f) {
    if (!f) return;
    f->stopping = 1;
    MHD_stop_daemon(f->d);
    pthread_mutex_destroy(&f->mu);
    free(f->reqs);
    free(f);
}

const char *fa_base(fa *f) {
    return f->base;
}

void fa_card_status(fa *f, int status) {
    pthread_mutex_lock(&f->mu);
    f->card_status = status;
    pthread_mutex_unlock(&f->mu);
}

void fa_set_endpoint(fa *f, const char *rpc_url) {
    pthread_mutex_lock(&f->mu);
    snprintf(f->endpoint, sizeof f->endpoint, "%s", rpc_url ? rpc_url : "");
    pthread_mutex_unlock(&f->mu);
}

void fa_rpc_status(fa *f, int status) {
    pthread_mutex_lock(&f->mu);
    f->rpc_status = status;
    pthread_mutex_unlock(&f->mu);
}

int fa_count(fa *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->nreqs;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fa_get(fa *f, int i, fa_req *out) {
    pthread_mutex_lock(&f->mu);
    int ok = i >= 0 && i < f->nreqs;
    if (ok) *out = f->reqs[i];
    pthread_mutex_unlock(&f->mu);
    return ok ? 0 : -1;
}

int fa_count_method(fa *f, const char *method) {
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (int i = 0; i < f->nreqs; i++)
        n += !strcmp(f->reqs[i].method, method);
    pthread_mutex_unlock(&f->mu);
    return n;
}
