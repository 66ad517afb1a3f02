/* See fake_a2a.h. Written from the A2A specification (1.0 proto and 0.3
 * types); one thread per connection so slow answers and streams can block. */
#include "fake_a2a.h"
#include "http_stub.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { K_MESSAGE, K_TASK, K_ASK, K_FAIL, K_REJECT, K_HANG, K_DROP, K_STREAMERR, K_AUTH, K_FLOOD };
enum { S_SUBMITTED, S_WORKING, S_INPUT, S_COMPLETED, S_FAILED, S_REJECTED, S_CANCELED, S_AUTH };

typedef struct task {
    char id[32], ctx[96];
    int kind;
    long long done_at; /* K_TASK, K_DROP, K_STREAMERR: completed from then on */
    int answered;      /* K_ASK: the follow-up came */
    int canceled;
    char answer[300];
    char msg_id[96], text[256]; /* the user message that created it */
    int flood;                  /* K_FLOOD: 1 KiB appends to stream */
    int files;                  /* "filetask": the answer carries media_parts() */
    int partial;                /* "partialtask": "working on it" while working */
    int choose;                 /* "choose": the question offers choices (2: only them) */
    struct task *next;
} task;

typedef struct attempt {
    char msg_id[96];
    int n;
    struct attempt *next;
} attempt;

struct fa2a {
    hs *srv;
    fa2a_opts o;
    char url[64];
    int port;
    pthread_mutex_t mu;
    fa_req *reqs;
    int nreq, capreq;
    int card_fetches;
    task *tasks;
    attempt *attempts;
    int next_ctx, next_task;
    attempt *execs;  /* executions per messageId */
    int forget_mark; /* contexts ctx-1..ctx-<mark> are forgotten */
    /* OAuth: the one valid access token, its expiry, what was asked */
    char tok[32];
    long long tok_exp;
    int tok_requests, tok_seq;
    char last_scope[128], last_audience[128];
    int card_version, not_modified; /* ETag "v<version>"; 304 answers */
    char rpc_path[32];
    atomic_int stopping;
    atomic_int pushers;               /* push threads running */
    int pushes, push_ok, push_status; /* under mu */
};

/* The request being answered came over the REST binding (set around
 * rpc() on the connection's thread): replies lose the JSON-RPC envelope. */
static _Thread_local int tl_rest;
static _Thread_local const char *tl_path;

/* The request being answered and its reply. */
typedef struct {
    const hs_req *rq;
    hs_resp *rs;
} conn;

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms, waking early when the fake stops. */
static void pause_ms(fa2a *f, long long ms) {
    while (ms > 0 && !atomic_load(&f->stopping)) {
        long long s = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)s * 1000000L};
        nanosleep(&ts, NULL);
        ms -= s;
    }
}

/* ---- shapes ------------------------------------------------------------- */

static const char *state_str(int v10, int s) {
    static const char *const v03[] = {"submitted", "working",  "input-required", "completed",
                                      "failed",    "rejected", "canceled",       "auth-required"};
    static const char *const v1[] = {"TASK_STATE_SUBMITTED",      "TASK_STATE_WORKING",
                                     "TASK_STATE_INPUT_REQUIRED", "TASK_STATE_COMPLETED",
                                     "TASK_STATE_FAILED",         "TASK_STATE_REJECTED",
                                     "TASK_STATE_CANCELED",       "TASK_STATE_AUTH_REQUIRED"};
    return v10 ? v1[s] : v03[s];
}

static cJSON *text_part(int v10, const char *text) {
    cJSON *p = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", text);
    return p;
}

/* A file part in either dialect: base64 bytes (url 0) or a URL. */
static cJSON *file_part(int v10, const char *value, int url, const char *mime, const char *name) {
    cJSON *p = cJSON_CreateObject(), *d = p;
    if (!v10) {
        cJSON_AddStringToObject(p, "kind", "file");
        d = cJSON_AddObjectToObject(p, "file");
    }
    cJSON_AddStringToObject(d, url ? (v10 ? "url" : "uri") : (v10 ? "raw" : "bytes"), value);
    cJSON_AddStringToObject(d, v10 ? "mediaType" : "mimeType", mime);
    cJSON_AddStringToObject(d, v10 ? "filename" : "name", name);
    return p;
}

/* A file part with bytes ("hello file", hello.txt), a file part with a
 * URL (report.pdf) and a data part {"total": 3}. */
static void media_parts(int v10, cJSON *parts) {
    cJSON_AddItemToArray(parts, file_part(v10, "aGVsbG8gZmlsZQ==", 0, "text/plain", "hello.txt"));
    cJSON_AddItemToArray(parts, file_part(v10, "https://files.example/report.pdf", 1,
                                          "application/pdf", "report.pdf"));
    cJSON *p = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(p, "kind", "data");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(p, "data"), "total", 3);
    cJSON_AddItemToArray(parts, p);
}

static cJSON *message(int v10, const char *text, const char *ctx, const char *task_id) {
    static atomic_int seq;
    char id[32];
    snprintf(id, sizeof id, "agent-msg-%d", atomic_fetch_add(&seq, 1) + 1);
    cJSON *m = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "messageId", id);
    cJSON_AddStringToObject(m, "role", v10 ? "ROLE_AGENT" : "agent");
    if (ctx) cJSON_AddStringToObject(m, "contextId", ctx);
    if (task_id) cJSON_AddStringToObject(m, "taskId", task_id);
    cJSON *parts = cJSON_AddArrayToObject(m, "parts");
    cJSON_AddItemToArray(parts, text_part(v10, text));
    return m;
}

static int task_state(const task *t, long long now) {
    if (t->canceled) return S_CANCELED;
    switch (t->kind) {
    case K_ASK:
        return t->answered ? S_COMPLETED : S_INPUT;
    case K_AUTH:
        return t->answered ? S_COMPLETED : S_AUTH;
    case K_FAIL:
        return S_FAILED;
    case K_REJECT:
        return S_REJECTED;
    case K_HANG:
        return S_WORKING;
    default:
        return now >= t->done_at ? S_COMPLETED : S_WORKING;
    }
}

static int terminal(int s) {
    return s == S_COMPLETED || s == S_FAILED || s == S_REJECTED || s == S_CANCELED;
}

static cJSON *status(int v10, const task *t, int s) {
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "state", state_str(v10, s));
    const char *note = s == S_INPUT      ? "What is your name?"
                       : s == S_AUTH     ? "Please sign in at https://auth.example/login"
                       : s == S_FAILED   ? "the tool crashed"
                       : s == S_REJECTED ? "I will not do that"
                                         : NULL;
    if (s == S_INPUT && t->choose) note = "Proceed?";
    if (note) {
        cJSON *m = message(v10, note, t->ctx, t->id);
        if (s == S_INPUT && t->choose) {
            cJSON *p = cJSON_CreateObject();
            if (!v10) cJSON_AddStringToObject(p, "kind", "data");
            cJSON *ch = cJSON_AddArrayToObject(cJSON_AddObjectToObject(p, "data"), "choices");
            cJSON_AddItemToArray(ch, cJSON_CreateString("yes"));
            cJSON_AddItemToArray(ch, cJSON_CreateString("no"));
            cJSON_AddItemToArray(cJSON_GetObjectItem(m, "parts"), p);
            if (t->choose == 2) cJSON_DeleteItemFromArray(cJSON_GetObjectItem(m, "parts"), 0);
        }
        cJSON_AddItemToObject(st, "message", m);
    }
    cJSON_AddStringToObject(st, "timestamp", "2026-01-01T00:00:00Z");
    return st;
}

static cJSON *artifact(int v10, const char *text) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "artifactId", "answer");
    cJSON_AddStringToObject(a, "name", "answer");
    cJSON *parts = cJSON_AddArrayToObject(a, "parts");
    cJSON_AddItemToArray(parts, text_part(v10, text));
    return a;
}

static cJSON *task_json(int v10, const task *t, long long now) {
    int s = task_state(t, now);
    cJSON *j = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(j, "kind", "task");
    cJSON_AddStringToObject(j, "id", t->id);
    cJSON_AddStringToObject(j, "contextId", t->ctx);
    cJSON_AddItemToObject(j, "status", status(v10, t, s));
    if (s == S_COMPLETED) {
        cJSON *arts = cJSON_AddArrayToObject(j, "artifacts");
        cJSON *a = artifact(v10, t->answer);
        if (t->files) media_parts(v10, cJSON_GetObjectItem(a, "parts"));
        cJSON_AddItemToArray(arts, a);
    } else if (t->partial && s == S_WORKING) {
        cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "artifacts"),
                             artifact(v10, "working on it"));
    }
    return j;
}

static cJSON *wrap(int v10, const char *key, cJSON *inner) {
    if (!v10) return inner;
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, key, inner);
    return w;
}

static cJSON *status_update(int v10, const task *t, int s, int final) {
    cJSON *u = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(u, "kind", "status-update");
    cJSON_AddStringToObject(u, "taskId", t->id);
    cJSON_AddStringToObject(u, "contextId", t->ctx);
    cJSON_AddItemToObject(u, "status", status(v10, t, s));
    if (!v10) cJSON_AddBoolToObject(u, "final", final);
    return wrap(v10, "statusUpdate", u);
}

static cJSON *artifact_update(int v10, const task *t, const char *text, int append, int last) {
    cJSON *u = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(u, "kind", "artifact-update");
    cJSON_AddStringToObject(u, "taskId", t->id);
    cJSON_AddStringToObject(u, "contextId", t->ctx);
    cJSON_AddItemToObject(u, "artifact", artifact(v10, text));
    if (append || !v10) cJSON_AddBoolToObject(u, "append", append);
    if (last || !v10) cJSON_AddBoolToObject(u, "lastChunk", last);
    return wrap(v10, "artifactUpdate", u);
}

static char *envelope(const cJSON *id, cJSON *result) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(r, "result", result);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static char *error_body(int v10, const cJSON *id, int code, const char *msg) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    if (v10) {
        cJSON *data = cJSON_AddArrayToObject(e, "data");
        cJSON *info = cJSON_CreateObject();
        cJSON_AddStringToObject(info, "@type", "type.googleapis.com/google.rpc.ErrorInfo");
        cJSON_AddStringToObject(info, "reason", code == -32001 ? "TASK_NOT_FOUND" : "ERROR");
        cJSON_AddStringToObject(info, "domain", "a2a-protocol.org");
        cJSON_AddItemToArray(data, info);
    }
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* ---- HTTP replies ------------------------------------------------------- */

static int send_body(conn *c, unsigned status, const char *ctype, char *body) {
    c->rs->status = (int)status;
    c->rs->content_type = ctype;
    c->rs->body = body;
    if (status == 401)
        snprintf(c->rs->headers, sizeof c->rs->headers,
                 "WWW-Authenticate: Bearer realm=\"fake\"\n");
    if (status == 429) c->rs->retry_after = 1;
    return 0;
}

static const char *const rest_reasons[] = {"TASK_NOT_FOUND",
                                           "TASK_NOT_CANCELABLE",
                                           "PUSH_NOTIFICATION_NOT_SUPPORTED",
                                           "UNSUPPORTED_OPERATION",
                                           "CONTENT_TYPE_NOT_SUPPORTED",
                                           "INVALID_AGENT_RESPONSE",
                                           "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
                                           "EXTENSION_SUPPORT_REQUIRED",
                                           "VERSION_NOT_SUPPORTED"};

/* A JSON-RPC error as the REST binding carries it: an HTTP status and a
 * google.rpc.Status body with the A2A ErrorInfo reason. */
static char *rest_error(const cJSON *err, unsigned *status) {
    int code = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(err, "code"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
    const char *reason = code <= -32001 && code >= -32009 ? rest_reasons[-32001 - code]
                         : code == -32602                 ? "INVALID_PARAMS"
                                                          : NULL;
    *status = code == -32001 ? 404 : code == -32603 || code == -32006 ? 500 : 400;
    if (code == -32601) *status = 501;
    cJSON *r = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddNumberToObject(e, "code", *status);
    cJSON_AddStringToObject(e, "status",
                            *status == 404   ? "NOT_FOUND"
                            : *status == 500 ? "INTERNAL"
                                             : "INVALID_ARGUMENT");
    cJSON_AddStringToObject(e, "message", msg ? msg : "error");
    cJSON *d = cJSON_AddArrayToObject(e, "details");
    if (reason) {
        cJSON *info = cJSON_CreateObject();
        cJSON_AddStringToObject(info, "@type", "type.googleapis.com/google.rpc.ErrorInfo");
        cJSON_AddStringToObject(info, "reason", reason);
        cJSON_AddStringToObject(info, "domain", "a2a-protocol.org");
        cJSON_AddItemToArray(d, info);
    }
    char *out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return out;
}

static int send_json(conn *c, unsigned status, char *body) {
    cJSON *env = tl_rest && status == 200 ? cJSON_Parse(body) : NULL;
    if (env && cJSON_GetObjectItem(env, "jsonrpc")) {
        /* REST: the bare result, or the error as an HTTP status */
        cJSON *res = cJSON_GetObjectItem(env, "result");
        free(body);
        if (res) {
            body = cJSON_PrintUnformatted(res);
        } else {
            body = rest_error(cJSON_GetObjectItem(env, "error"), &status);
        }
    }
    cJSON_Delete(env);
    return send_body(c, status, "application/json", body);
}

static int send_text(conn *c, unsigned status, const char *ctype, const char *text) {
    return send_body(c, status, ctype, strdup(text));
}

/* A stream: pieces written one per reader call, with a pause between. */
typedef struct {
    fa2a *f;
    char **piece;
    size_t *plen;
    int n, cap, i;
    size_t off;
    int drop;             /* end with a broken connection */
    task *held;           /* hang: hold the stream open while this task works */
    int wait_at;          /* before piece wait_at (when > 0), pause ... */
    long long wait_until; /* ... until then: the task's work */
    cJSON *id;            /* JSON-RPC id every event echoes */
    int rest;             /* REST binding: events without the envelope */
} stream;

static stream *stream_new(fa2a *f, const cJSON *id) {
    stream *s = calloc(1, sizeof *s);
    s->f = f;
    s->id = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
    s->rest = tl_rest;
    return s;
}

static void piece(stream *s, const char *p, size_t n) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->piece = realloc(s->piece, (size_t)s->cap * sizeof *s->piece);
        s->plen = realloc(s->plen, (size_t)s->cap * sizeof *s->plen);
    }
    s->piece[s->n] = malloc(n ? n : 1);
    memcpy(s->piece[s->n], p, n);
    s->plen[s->n++] = n;
}

/* Adds one event in one of several awkward framings. */
static void event(stream *s, const char *name, cJSON *payload, int style) {
    if (s->rest && cJSON_GetObjectItem(payload, "result")) {
        cJSON *res = cJSON_DetachItemFromObject(payload, "result");
        cJSON_Delete(payload);
        payload = res;
    } else if (s->rest && cJSON_GetObjectItem(payload, "jsonrpc")) {
        unsigned st;
        char *e = rest_error(cJSON_GetObjectItem(payload, "error"), &st);
        cJSON_Delete(payload);
        payload = cJSON_Parse(e);
        free(e);
    } else if (!s->rest && !cJSON_GetObjectItem(payload, "jsonrpc")) {
        cJSON *env = cJSON_CreateObject();
        cJSON_AddStringToObject(env, "jsonrpc", "2.0");
        cJSON_AddItemToObject(env, "id", cJSON_Duplicate(s->id, 1));
        cJSON_AddItemToObject(env, "result", payload);
        payload = env;
    }
    char *json = style == 3 ? cJSON_Print(payload) : cJSON_PrintUnformatted(payload);
    cJSON_Delete(payload);
    size_t cap = strlen(json) * 2 + 128;
    char *ev = malloc(cap);
    size_t n = 0;
    const char *nl = style == 2 ? "\r\n" : "\n";
    if (style == 4) n += (size_t)snprintf(ev + n, cap - n, ": keep-alive\n\n:another comment\n");
    if (name) n += (size_t)snprintf(ev + n, cap - n, "event: %s%s", name, nl);
    if (style == 3) {
        /* pretty JSON: one data: line per line (and one without the space) */
        int first = 1;
        char *save = NULL; /* strtok_r: streams are written on several threads at once */
        for (char *line = strtok_r(json, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            n += (size_t)snprintf(ev + n, cap - n, first ? "data:%s\n" : "data: %s\n", line);
            first = 0;
        }
    } else {
        n += (size_t)snprintf(ev + n, cap - n, "data: %s%s", json, nl);
    }
    n += (size_t)snprintf(ev + n, cap - n, "%s", nl);
    free(json);
    switch (style) {
    case 1: /* the first bytes one by one */
        for (size_t i = 0; i < n; i++) {
            if (i < 16) {
                piece(s, ev + i, 1);
            } else {
                piece(s, ev + i, n - i);
                break;
            }
        }
        break;
    case 2: { /* CRLF, cut between every CR and its LF */
        size_t start = 0;
        for (size_t i = 0; i < n; i++) {
            if (ev[i] == '\r') {
                piece(s, ev + start, i + 1 - start);
                start = i + 1;
            }
        }
        if (start < n) piece(s, ev + start, n - start);
        break;
    }
    case 4: /* 7-byte pieces */
        for (size_t i = 0; i < n; i += 7)
            piece(s, ev + i, n - i < 7 ? n - i : 7);
        break;
    default:
        piece(s, ev, n);
    }
    free(ev);
}

static ssize_t stream_read(void *cls, char *buf, size_t max) {
    stream *s = cls;
    if (s->i >= s->n) {
        if (s->held) {
            /* hang: keep the stream open and silent while the task works */
            while (!atomic_load(&s->f->stopping)) {
                pthread_mutex_lock(&s->f->mu);
                int canceled = s->held->canceled;
                pthread_mutex_unlock(&s->f->mu);
                if (canceled) break;
                pause_ms(s->f, 20);
            }
        }
        if (!s->drop && s->f->o.linger_ms) pause_ms(s->f, s->f->o.linger_ms);
        return s->drop ? HS_BREAK : HS_END;
    }
    int delay = s->f->o.chunk_delay_ms > 0 ? s->f->o.chunk_delay_ms : 5;
    if (s->off == 0 && s->i > 0) pause_ms(s->f, delay);
    if (s->off == 0 && s->wait_at > 0 && s->i == s->wait_at)
        pause_ms(s->f, s->wait_until - mono_ms());
    size_t left = s->plen[s->i] - s->off;
    size_t k = left < max ? left : max;
    memcpy(buf, s->piece[s->i] + s->off, k);
    s->off += k;
    if (s->off == s->plen[s->i]) {
        s->i++;
        s->off = 0;
    }
    return (ssize_t)k;
}

static void stream_free(void *cls) {
    stream *s = cls;
    for (int i = 0; i < s->n; i++)
        free(s->piece[i]);
    free(s->piece);
    free(s->plen);
    cJSON_Delete(s->id);
    free(s);
}

static int send_stream(conn *c, stream *s) {
    c->rs->status = 200;
    c->rs->content_type = "text/event-stream";
    snprintf(c->rs->headers, sizeof c->rs->headers, "Cache-Control: no-cache\n");
    c->rs->stream = stream_read;
    c->rs->stream_free = stream_free;
    c->rs->stream_arg = s;
    return 0;
}

/* ---- agent card --------------------------------------------------------- */

static char *card_json(fa2a *f) {
    const fa2a_opts *o = &f->o;
    fa_dialect shape = o->card ? o->card : o->speaks;
    char rpc[96], base[sizeof f->url];
    char path[32];
    pthread_mutex_lock(&f->mu);
    snprintf(path, sizeof path, "%s", f->rpc_path);
    snprintf(base, sizeof base, "%s", f->url);
    pthread_mutex_unlock(&f->mu);
    snprintf(rpc, sizeof rpc, "%s%s", base, path);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", "fake agent");
    cJSON_AddStringToObject(c, "description", "scripted A2A agent for routerd tests");
    cJSON_AddStringToObject(c, "version", "1.0.0");
    if (o->rest) {
        char u[128];
        snprintf(u, sizeof u, "%s/rest", base);
        cJSON *ifs = cJSON_AddArrayToObject(c, "supportedInterfaces");
        cJSON *i = cJSON_CreateObject();
        cJSON_AddStringToObject(i, "url", u);
        cJSON_AddStringToObject(i, "protocolBinding", "HTTP+JSON");
        cJSON_AddStringToObject(i, "protocolVersion", "1.0");
        cJSON_AddItemToArray(ifs, i);
    } else if (o->card_mode == FA_CARD_NO_JSONRPC) {
        cJSON *ifs = cJSON_AddArrayToObject(c, "supportedInterfaces");
        cJSON *i = cJSON_CreateObject();
        cJSON_AddStringToObject(i, "url", "127.0.0.1:1");
        cJSON_AddStringToObject(i, "protocolBinding", "GRPC");
        cJSON_AddStringToObject(i, "protocolVersion", "1.0");
        cJSON_AddItemToArray(ifs, i);
    } else {
        if (shape == FA_V03 || shape == FA_BOTH) {
            cJSON_AddStringToObject(c, "protocolVersion", "0.3.0");
            cJSON_AddStringToObject(c, "url", rpc);
            cJSON_AddStringToObject(c, "preferredTransport", "JSONRPC");
        }
        if (shape == FA_V10 || shape == FA_BOTH) {
            cJSON *ifs = cJSON_AddArrayToObject(c, "supportedInterfaces");
            for (int v = 0; v < (shape == FA_BOTH ? 2 : 1); v++) {
                cJSON *i = cJSON_CreateObject();
                /* the hybrid card uses a relative URL, as JS SDK samples do */
                cJSON_AddStringToObject(i, "url", shape == FA_BOTH ? path : rpc);
                cJSON_AddStringToObject(i, "protocolBinding", "JSONRPC");
                cJSON_AddStringToObject(i, "protocolVersion", v == 0 ? "1.0" : "0.3");
                cJSON_AddItemToArray(ifs, i);
            }
        }
    }
    cJSON *caps = cJSON_AddObjectToObject(c, "capabilities");
    cJSON_AddBoolToObject(caps, "streaming", o->streaming);
    if (o->push) cJSON_AddBoolToObject(caps, "pushNotifications", 1);
    if (o->required_ext) {
        cJSON *ext = cJSON_CreateObject();
        cJSON_AddStringToObject(ext, "uri", o->required_ext);
        cJSON_AddBoolToObject(ext, "required", 1);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(caps, "extensions"), ext);
    }
    cJSON *in = cJSON_AddArrayToObject(c, "defaultInputModes");
    cJSON_AddItemToArray(in, cJSON_CreateString("text/plain"));
    cJSON *out = cJSON_AddArrayToObject(c, "defaultOutputModes");
    cJSON_AddItemToArray(out, cJSON_CreateString("text/plain"));
    cJSON_AddArrayToObject(c, "skills");
    if (o->oauth_client_id) {
        int v10 = shape == FA_V10;
        char tu[96];
        snprintf(tu, sizeof tu, "%s/oauth/token", base);
        cJSON *ss = cJSON_AddObjectToObject(c, "securitySchemes");
        cJSON *s = cJSON_AddObjectToObject(ss, "oauth");
        cJSON *flows = cJSON_AddObjectToObject(
            v10 ? cJSON_AddObjectToObject(s, "oauth2SecurityScheme") : s, "flows");
        if (!v10) cJSON_AddStringToObject(s, "type", "oauth2");
        cJSON *cc = cJSON_AddObjectToObject(flows, "clientCredentials");
        cJSON_AddStringToObject(cc, "tokenUrl", tu);
        cJSON_AddObjectToObject(cc, "scopes");
    } else if (o->token || o->api_key_header) {
        cJSON *ss = cJSON_AddObjectToObject(c, "securitySchemes");
        int v10 = shape == FA_V10;
        cJSON *req = cJSON_AddArrayToObject(c, v10 ? "securityRequirements" : "security");
        cJSON *alt = cJSON_CreateObject();
        cJSON_AddItemToArray(req, alt);
        if (o->token) {
            cJSON *s = cJSON_AddObjectToObject(ss, "bearer");
            if (v10) {
                cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "httpAuthSecurityScheme"),
                                        "scheme", "Bearer");
                cJSON_AddArrayToObject(
                    cJSON_AddObjectToObject(cJSON_AddObjectToObject(alt, "schemes"), "bearer"),
                    "list");
            } else {
                cJSON_AddStringToObject(s, "type", "http");
                cJSON_AddStringToObject(s, "scheme", "bearer");
                cJSON_AddArrayToObject(alt, "bearer");
            }
        } else {
            cJSON *s = cJSON_AddObjectToObject(ss, "apikey");
            if (v10) {
                cJSON *k = cJSON_AddObjectToObject(s, "apiKeySecurityScheme");
                cJSON_AddStringToObject(k, "location", "header");
                cJSON_AddStringToObject(k, "name", o->api_key_header);
                cJSON_AddArrayToObject(
                    cJSON_AddObjectToObject(cJSON_AddObjectToObject(alt, "schemes"), "apikey"),
                    "list");
            } else {
                cJSON_AddStringToObject(s, "type", "apiKey");
                cJSON_AddStringToObject(s, "in", "header");
                cJSON_AddStringToObject(s, "name", o->api_key_header);
                cJSON_AddArrayToObject(alt, "apikey");
            }
        }
    }
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

/* ---- JSON-RPC ----------------------------------------------------------- */

static const char *const m10[] = {"SendMessage", "SendStreamingMessage", "GetTask", "CancelTask",
                                  "SubscribeToTask"};
static const char *const m03[] = {"message/send", "message/stream", "tasks/get", "tasks/cancel",
                                  "tasks/resubscribe"};
enum { OP_SEND, OP_STREAM, OP_GET, OP_CANCEL, OP_SUBSCRIBE };

static void copy(char *dst, size_t sz, const char *src) {
    snprintf(dst, sz, "%s", src ? src : "");
}

static const char *hdr(conn *c, const char *name) {
    return hs_header(c->rq, name);
}

static void record(fa2a *f, conn *c, const char *method, const cJSON *req) {
    fa_req r;
    memset(&r, 0, sizeof r);
    r.blocking = -1;
    copy(r.method, sizeof r.method, method);
    const cJSON *id = cJSON_GetObjectItem(req, "id");
    if (cJSON_IsString(id)) copy(r.rpc_id, sizeof r.rpc_id, id->valuestring);
    const cJSON *params = cJSON_GetObjectItem(req, "params");
    const cJSON *m = cJSON_GetObjectItem(params, "message");
    copy(r.message_id, sizeof r.message_id,
         cJSON_GetStringValue(cJSON_GetObjectItem(m, "messageId")));
    copy(r.context_id, sizeof r.context_id,
         cJSON_GetStringValue(cJSON_GetObjectItem(m, "contextId")));
    const char *tid = cJSON_GetStringValue(cJSON_GetObjectItem(m, "taskId"));
    if (!tid) tid = cJSON_GetStringValue(cJSON_GetObjectItem(params, "id"));
    copy(r.task_id, sizeof r.task_id, tid);
    const cJSON *parts = cJSON_GetObjectItem(m, "parts"), *p;
    copy(r.text, sizeof r.text,
         cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(parts, 0), "text")));
    cJSON_ArrayForEach(p, parts) {
        const cJSON *fp = cJSON_GetObjectItem(p, "file");
        int v03 = fp != NULL;
        const cJSON *d = v03 ? fp : p;
        const char *b = cJSON_GetStringValue(cJSON_GetObjectItem(d, v03 ? "bytes" : "raw"));
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItem(d, v03 ? "uri" : "url"));
        if (!b && !u) continue;
        if (r.nfiles++) continue; /* the first file is recorded */
        copy(r.file_name, sizeof r.file_name,
             cJSON_GetStringValue(cJSON_GetObjectItem(d, v03 ? "name" : "filename")));
        copy(r.file_mime, sizeof r.file_mime,
             cJSON_GetStringValue(cJSON_GetObjectItem(d, v03 ? "mimeType" : "mediaType")));
        copy(r.file_url, sizeof r.file_url, u);
        size_t bl = b ? strlen(b) : 0;
        if (b && bl % 4 == 0 && bl / 4 * 3 < sizeof r.file_data) {
            int n =
                EVP_DecodeBlock((unsigned char *)r.file_data, (const unsigned char *)b, (int)bl);
            size_t pad = bl && b[bl - 1] == '=' ? (bl > 1 && b[bl - 2] == '=' ? 2 : 1) : 0;
            r.file_len = n >= (int)pad ? n - (int)pad : -1;
        } else if (b) {
            r.file_len = -1; /* not base64, or too long to record */
        }
    }
    const cJSON *hl = cJSON_GetObjectItem(params, "historyLength");
    r.history_length = cJSON_IsNumber(hl) ? hl->valueint : -1;
    const cJSON *cfg = cJSON_GetObjectItem(params, "configuration");
    const cJSON *b = cJSON_GetObjectItem(cfg, "blocking");
    const cJSON *ri = cJSON_GetObjectItem(cfg, "returnImmediately");
    if (cJSON_IsBool(b)) r.blocking = cJSON_IsTrue(b);
    if (cJSON_IsBool(ri)) r.blocking = !cJSON_IsTrue(ri);
    copy(r.a2a_version, sizeof r.a2a_version, hdr(c, "A2A-Version"));
    copy(r.traceparent, sizeof r.traceparent, hdr(c, "traceparent"));
    copy(r.authorization, sizeof r.authorization, hdr(c, "Authorization"));
    if (f->o.api_key_header) copy(r.api_key, sizeof r.api_key, hdr(c, f->o.api_key_header));
    copy(r.accept, sizeof r.accept, hdr(c, "Accept"));
    if (tl_path) copy(r.path, sizeof r.path, tl_path);
    pthread_mutex_lock(&f->mu);
    if (f->nreq == f->capreq) {
        f->capreq = f->capreq ? f->capreq * 2 : 64;
        f->reqs = realloc(f->reqs, (size_t)f->capreq * sizeof *f->reqs);
    }
    f->reqs[f->nreq++] = r;
    pthread_mutex_unlock(&f->mu);
}

static task *find_task(fa2a *f, const char *id) {
    for (task *t = f->tasks; t; t = t->next)
        if (id && !strcmp(t->id, id)) return t;
    return NULL;
}

/* One execution of the work a message asked for. */
static void executed(fa2a *f, const char *msg_id) {
    pthread_mutex_lock(&f->mu);
    attempt *e = f->execs;
    while (e && strcmp(e->msg_id, msg_id ? msg_id : ""))
        e = e->next;
    if (!e) {
        e = calloc(1, sizeof *e);
        copy(e->msg_id, sizeof e->msg_id, msg_id);
        e->next = f->execs;
        f->execs = e;
    }
    e->n++;
    pthread_mutex_unlock(&f->mu);
}

static task *new_task(fa2a *f, int kind, const char *ctx, long long work_ms, const char *answer) {
    task *t = calloc(1, sizeof *t);
    snprintf(t->id, sizeof t->id, "task-%d", ++f->next_task);
    copy(t->ctx, sizeof t->ctx, ctx);
    t->kind = kind;
    t->done_at = mono_ms() + work_ms;
    copy(t->answer, sizeof t->answer, answer);
    t->next = f->tasks;
    f->tasks = t;
    return t;
}

/* Builds the stream of a task from its current state to its end. */
static void task_stream(fa2a *f, stream *s, int v10, task *t, int fresh) {
    pthread_mutex_lock(&f->mu);
    task snap = *t;
    pthread_mutex_unlock(&f->mu);
    long long now = mono_ms();
    if (fresh) {
        /* the task as created: submitted */
        task sub = snap;
        sub.done_at = now + 1000000;
        cJSON *tj = task_json(v10, &sub, now);
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(tj, "status"), "state",
                                  cJSON_CreateString(state_str(v10, S_SUBMITTED)));
        event(s, NULL, wrap(v10, "task", tj), 1);
    } else {
        event(s, NULL, wrap(v10, "task", task_json(v10, &snap, now)), 0);
    }
    int st = task_state(&snap, now);
    if (st == S_INPUT || st == S_AUTH || snap.kind == K_FAIL || snap.kind == K_REJECT) {
        event(s, NULL, status_update(v10, &snap, st, 1), 2);
        return;
    }
    if (terminal(st) && !fresh) return;
    event(s, NULL, status_update(v10, &snap, S_WORKING, 0), 4);
    if (snap.kind == K_HANG) {
        s->held = t;
        return;
    }
    if (snap.kind == K_DROP && fresh) {
        s->drop = 1;
        return;
    }
    if (snap.kind == K_STREAMERR && fresh) {
        char *e = error_body(v10, s->id, -32603, "internal error while streaming");
        cJSON *ej = cJSON_Parse(e);
        free(e);
        event(s, "error", ej, 0);
        return;
    }
    if (snap.kind == K_FLOOD) {
        char kb[1025];
        memset(kb, 'z', 1024);
        kb[1024] = 0;
        for (int i = 0; i < snap.flood; i++)
            event(s, NULL, artifact_update(v10, &snap, kb, i > 0, i == snap.flood - 1), 0);
        pthread_mutex_lock(&f->mu);
        t->done_at = now;
        task fin = *t;
        pthread_mutex_unlock(&f->mu);
        event(s, NULL, status_update(v10, &fin, S_COMPLETED, 1), 0);
        return;
    }
    /* a long task: the answer comes once its work is done */
    int waits = fresh && snap.kind == K_TASK && snap.done_at > now;
    if (waits) {
        s->wait_at = s->n;
        s->wait_until = snap.done_at;
    }
    /* the answer in three chunks */
    size_t n = strlen(snap.answer), a = n / 3, b = 2 * n / 3;
    char p1[300], p2[300], p3[300];
    snprintf(p1, sizeof p1, "%.*s", (int)a, snap.answer);
    snprintf(p2, sizeof p2, "%.*s", (int)(b - a), snap.answer + a);
    snprintf(p3, sizeof p3, "%s", snap.answer + b);
    event(s, NULL, artifact_update(v10, &snap, p1, 0, 0), 3);
    event(s, NULL, artifact_update(v10, &snap, p2, 1, 0), 2);
    cJSON *last = artifact_update(v10, &snap, p3, 1, 1);
    if (snap.files) {
        cJSON *u = v10 ? cJSON_GetObjectItem(last, "artifactUpdate") : last;
        media_parts(v10, cJSON_GetObjectItem(cJSON_GetObjectItem(u, "artifact"), "parts"));
    }
    event(s, NULL, last, 0);
    pthread_mutex_lock(&f->mu);
    if (!waits) t->done_at = now; /* completed once the stream says so */
    task done = *t;
    pthread_mutex_unlock(&f->mu);
    event(s, NULL, status_update(v10, &done, S_COMPLETED, 1), 4);
}

static char *arg_after(const char *text, const char *word) {
    size_t n = strlen(word);
    if (strncmp(text, word, n) || (text[n] && text[n] != ' ')) return NULL;
    return (char *)(text[n] ? text + n + 1 : text + n);
}

/* 1.0 ListTasks: the tasks of a context, each with its history (the user
 * message that created it). */
static char *list_tasks(fa2a *f, const cJSON *id, const cJSON *params) {
    const char *ctx = cJSON_GetStringValue(cJSON_GetObjectItem(params, "contextId"));
    cJSON *res = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(res, "tasks");
    long long now = mono_ms();
    pthread_mutex_lock(&f->mu);
    for (task *t = f->tasks; t; t = t->next) {
        if (ctx && *ctx && strcmp(ctx, t->ctx)) continue;
        cJSON *tj = task_json(1, t, now);
        cJSON *h = cJSON_AddArrayToObject(tj, "history");
        cJSON *um = cJSON_CreateObject();
        cJSON_AddStringToObject(um, "messageId", t->msg_id);
        cJSON_AddStringToObject(um, "role", "ROLE_USER");
        cJSON_AddStringToObject(um, "contextId", t->ctx);
        cJSON_AddStringToObject(um, "taskId", t->id);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(um, "parts"), text_part(1, t->text));
        cJSON_AddItemToArray(h, um);
        cJSON_AddItemToArray(arr, tj);
    }
    pthread_mutex_unlock(&f->mu);
    return envelope(id, res);
}

/* ---- push notifications ------------------------------------------------ */

typedef struct {
    fa2a *f;
    int v10;
    char task[32], url[256], token[128], auth[256];
} pusher;

static size_t discard(char *p, size_t n, size_t m, void *arg) {
    (void)p, (void)arg;
    return n * m;
}

/* Waits for the task to settle, then POSTs it to the webhook once. */
static void *push_main(void *arg) {
    pusher *pu = arg;
    fa2a *f = pu->f;
    cJSON *tj = NULL;
    for (int i = 0; i < 3000 && !atomic_load(&f->stopping); i++) {
        pthread_mutex_lock(&f->mu);
        task *t = find_task(f, pu->task);
        long long now = mono_ms();
        int st = t ? task_state(t, now) : S_FAILED;
        if (t && (terminal(st) || st == S_INPUT || st == S_AUTH)) tj = task_json(pu->v10, t, now);
        pthread_mutex_unlock(&f->mu);
        if (tj || !t) break;
        pause_ms(f, 20);
    }
    if (tj) {
        cJSON *w = wrap(pu->v10, "task", tj);
        char *body = cJSON_PrintUnformatted(w);
        cJSON_Delete(w);
        CURL *cu = curl_easy_init();
        struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
        char h1[300], h2[200];
        snprintf(h1, sizeof h1, "Authorization: %s", pu->auth);
        snprintf(h2, sizeof h2, "X-A2A-Notification-Token: %s",
                 f->o.push_bad_token ? "0123456789abcdef0123456789abcdef" : pu->token);
        hd = curl_slist_append(hd, h1);
        hd = curl_slist_append(hd, h2);
        curl_easy_setopt(cu, CURLOPT_URL, pu->url);
        curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
        long status = 0;
        if (curl_easy_perform(cu) == CURLE_OK)
            curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hd);
        curl_easy_cleanup(cu);
        free(body);
        pthread_mutex_lock(&f->mu);
        f->pushes++;
        f->push_status = (int)status;
        if (status >= 200 && status < 300) f->push_ok++;
        pthread_mutex_unlock(&f->mu);
    }
    atomic_fetch_sub(&f->pushers, 1);
    free(pu);
    return NULL;
}

/* CreateTaskPushNotificationConfig / tasks/pushNotificationConfig/set */
static char *push_set(fa2a *f, const cJSON *id, const cJSON *params, int v10) {
    const cJSON *cfg = v10 ? params : cJSON_GetObjectItem(params, "pushNotificationConfig");
    const char *tid = cJSON_GetStringValue(cJSON_GetObjectItem(params, "taskId"));
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "url"));
    const cJSON *au = cJSON_GetObjectItem(cfg, "authentication");
    const char *scheme =
        v10 ? cJSON_GetStringValue(cJSON_GetObjectItem(au, "scheme"))
            : cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(au, "schemes"), 0));
    const char *cred = cJSON_GetStringValue(cJSON_GetObjectItem(au, "credentials"));
    const char *tok = cJSON_GetStringValue(cJSON_GetObjectItem(cfg, "token"));
    if (f->o.push_refuse)
        return error_body(v10, id, -32003, "Push notifications are not supported");
    pthread_mutex_lock(&f->mu);
    int known = tid && find_task(f, tid) != NULL;
    pthread_mutex_unlock(&f->mu);
    if (!known) return error_body(v10, id, -32001, "Task not found");
    if (!url || strncmp(url, "http", 4)) return error_body(v10, id, -32602, "Invalid params");
    pusher *pu = calloc(1, sizeof *pu);
    pu->f = f;
    pu->v10 = v10;
    copy(pu->task, sizeof pu->task, tid);
    copy(pu->url, sizeof pu->url, url);
    copy(pu->token, sizeof pu->token, tok);
    snprintf(pu->auth, sizeof pu->auth, "%s %s", scheme ? scheme : "", cred ? cred : "");
    atomic_fetch_add(&f->pushers, 1);
    pthread_t th;
    if (pthread_create(&th, NULL, push_main, pu)) {
        atomic_fetch_sub(&f->pushers, 1);
        free(pu);
    } else {
        pthread_detach(th);
    }
    return envelope(id, cJSON_Duplicate(params, 1));
}

int fa2a_pushes(fa2a *f, int *delivered, int *last_status) {
    pthread_mutex_lock(&f->mu);
    int n = f->pushes;
    if (delivered) *delivered = f->push_ok;
    if (last_status) *last_status = f->push_status;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static int rpc(fa2a *f, conn *c, const char *body, size_t len) {
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return send_json(c, 200, error_body(0, NULL, -32700, "Parse error"));
    const cJSON *id = cJSON_GetObjectItem(req, "id");
    const char *method = cJSON_GetStringValue(cJSON_GetObjectItem(req, "method"));
    if (method && !strcmp(method, "ListTasks") && (f->o.speaks & FA_V10)) {
        record(f, c, method, req);
        int lr = send_json(c, 200, list_tasks(f, id, cJSON_GetObjectItem(req, "params")));
        cJSON_Delete(req);
        return lr;
    }
    if (method && f->o.push &&
        ((!strcmp(method, "CreateTaskPushNotificationConfig") && (f->o.speaks & FA_V10)) ||
         (!strcmp(method, "tasks/pushNotificationConfig/set") && (f->o.speaks & FA_V03)))) {
        record(f, c, method, req);
        int pr = send_json(c, 200,
                           push_set(f, id, cJSON_GetObjectItem(req, "params"), method[0] == 'C'));
        cJSON_Delete(req);
        return pr;
    }
    int op = -1, v10 = 0;
    for (int i = 0; method && i < 5; i++) {
        if (!strcmp(method, m10[i])) op = i, v10 = 1;
        if (!strcmp(method, m03[i])) op = i, v10 = 0;
    }
    record(f, c, method, req);
    int ret;
    int speaks = f->o.speaks ? f->o.speaks : FA_BOTH;
    const char *ver = hdr(c, "A2A-Version");
    const char *ctype = hdr(c, "Content-Type");
    if (!(tl_rest && op >= 2) && (!ctype || strncasecmp(ctype, "application/json", 16))) {
        ret = send_json(c, 200, error_body(v10, id, -32005, "Content type not supported"));
    } else if (op < 0 || (v10 && !(speaks & FA_V10)) || (!v10 && !(speaks & FA_V03))) {
        ret = send_json(c, 200, error_body(v10, id, -32601, "Method not found"));
    } else if (v10 && speaks == FA_V10 && (!ver || strcmp(ver, "1.0"))) {
        ret = send_json(c, 200, error_body(v10, id, -32009, "Version not supported"));
    } else {
        const cJSON *params = cJSON_GetObjectItem(req, "params");
        long long now = mono_ms();
        if (op == OP_GET || op == OP_CANCEL || op == OP_SUBSCRIBE) {
            const char *tid = cJSON_GetStringValue(cJSON_GetObjectItem(params, "id"));
            pthread_mutex_lock(&f->mu);
            task *t = find_task(f, tid);
            char *out = NULL;
            int stream_it = 0;
            if (!t) {
                out = error_body(v10, id, -32001, "Task not found");
            } else if (op == OP_CANCEL && terminal(task_state(t, now))) {
                out = error_body(v10, id, -32002, "Task cannot be canceled");
            } else if (op == OP_SUBSCRIBE) {
                stream_it = 1;
            } else {
                if (op == OP_CANCEL) t->canceled = 1;
                out = envelope(id, task_json(v10, t, now));
            }
            pthread_mutex_unlock(&f->mu);
            if (stream_it) {
                /* re-attach: the current task, then wait for its end */
                stream *s = stream_new(f, id);
                long long until;
                pthread_mutex_lock(&f->mu);
                until = t->done_at;
                pthread_mutex_unlock(&f->mu);
                pause_ms(f, until - mono_ms());
                task_stream(f, s, v10, t, 0);
                ret = send_stream(c, s);
            } else {
                ret = send_json(c, 200, out);
            }
            cJSON_Delete(req);
            return ret;
        }
        /* send / stream */
        const cJSON *m = cJSON_GetObjectItem(params, "message");
        const char *text = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "parts"), 0), "text"));
        const char *ctx_in = cJSON_GetStringValue(cJSON_GetObjectItem(m, "contextId"));
        const char *tid = cJSON_GetStringValue(cJSON_GetObjectItem(m, "taskId"));
        const char *msg_id = cJSON_GetStringValue(cJSON_GetObjectItem(m, "messageId"));
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(m, "role"));
        const cJSON *cfg = cJSON_GetObjectItem(params, "configuration");
        int blocking = v10 ? !cJSON_IsTrue(cJSON_GetObjectItem(cfg, "returnImmediately"))
                           : !cJSON_IsFalse(cJSON_GetObjectItem(cfg, "blocking"));
        int streaming = op == OP_STREAM;
        if (!text) text = "";
        if (streaming && f->o.refuse_streams) {
            ret = send_json(c, 200, error_body(v10, id, -32004, "Streaming is not supported"));
            cJSON_Delete(req);
            return ret;
        }
        if (!msg_id || !*msg_id || !role || strcmp(role, v10 ? "ROLE_USER" : "user") ||
            (!v10 && !cJSON_IsString(cJSON_GetObjectItem(m, "kind")))) {
            ret = send_json(c, 200, error_body(v10, id, -32602, "Invalid params"));
            cJSON_Delete(req);
            return ret;
        }
        char ctx[96];
        char *a;
        pthread_mutex_lock(&f->mu);
        int cn = 0, forgotten = ctx_in && sscanf(ctx_in, "ctx-%d", &cn) == 1 && cn >= 1 &&
                                cn <= f->forget_mark;
        if (ctx_in && *ctx_in)
            copy(ctx, sizeof ctx, ctx_in);
        else
            snprintf(ctx, sizeof ctx, "ctx-%d", ++f->next_ctx);
        pthread_mutex_unlock(&f->mu);
        if (forgotten) {
            ret =
                send_json(c, 200, error_body(v10, id, -32602, "Invalid params: unknown contextId"));
            cJSON_Delete(req);
            return ret;
        }

        if (tid && *tid) {
            pthread_mutex_lock(&f->mu);
            task *t = find_task(f, tid);
            char *out = NULL;
            if (!t) {
                out = error_body(v10, id, -32001, "Task not found");
            } else if (terminal(task_state(t, now))) {
                out = error_body(v10, id, -32004, "Task is in a terminal state");
            }
            /* Like the JS SDK: the answer starts from the task as it was
             * (still input-required), then moves on. */
            task before = t ? *t : (task){0};
            if (!out && (t->kind == K_ASK || t->kind == K_AUTH)) {
                pthread_mutex_unlock(&f->mu);
                executed(f, msg_id);
                pthread_mutex_lock(&f->mu);
                t->answered = 1;
                snprintf(t->answer, sizeof t->answer, "Hello, %s!", text);
            }
            task snap = t ? *t : (task){0};
            pthread_mutex_unlock(&f->mu);
            if (out) {
                ret = send_json(c, 200, out);
            } else if (streaming) {
                stream *s = stream_new(f, id);
                event(s, NULL, wrap(v10, "task", task_json(v10, &before, now)), 0);
                event(s, NULL, artifact_update(v10, &snap, snap.answer, 0, 1), 2);
                event(s, NULL, status_update(v10, &snap, task_state(&snap, now), 1), 0);
                ret = send_stream(c, s);
            } else {
                const task *shown = blocking ? &snap : &before;
                ret =
                    send_json(c, 200, envelope(id, wrap(v10, "task", task_json(v10, shown, now))));
            }
            cJSON_Delete(req);
            return ret;
        }

        char answer[300];
        snprintf(answer, sizeof answer, "done: %s", text);
        int kind = -1, choose = 0, files = 0, partial = 0;
        long long work = 300;
        if ((a = arg_after(text, "task"))) {
            kind = K_TASK;
            if (*a) work = atoll(a);
        } else if (arg_after(text, "ask")) {
            kind = K_ASK;
        } else if (arg_after(text, "choose") || arg_after(text, "chooseonly")) {
            kind = K_ASK;
            choose = arg_after(text, "choose") ? 1 : 2;
        } else if ((a = arg_after(text, "partialtask"))) {
            kind = K_TASK;
            partial = 1;
            if (*a) work = atoll(a);
        } else if ((a = arg_after(text, "filetask"))) {
            kind = K_TASK;
            files = 1;
            if (*a) work = atoll(a);
        } else if (arg_after(text, "authreq")) {
            kind = K_AUTH;
        } else if (arg_after(text, "fail")) {
            kind = K_FAIL;
        } else if (arg_after(text, "reject")) {
            kind = K_REJECT;
        } else if (arg_after(text, "hang")) {
            kind = K_HANG;
        } else if (arg_after(text, "drop")) {
            kind = streaming ? K_DROP : K_TASK;
            snprintf(answer, sizeof answer, "after drop");
        } else if (arg_after(text, "streamerr")) {
            kind = streaming ? K_STREAMERR : K_TASK;
            snprintf(answer, sizeof answer, "after error");
        } else if ((a = arg_after(text, "flood")) && streaming) {
            kind = K_FLOOD;
        } else if ((a = arg_after(text, "slowtask"))) {
            /* an agent that ignores non-blocking: answers when done */
            kind = K_TASK;
            work = *a ? atoll(a) : 300;
            blocking = 1;
        }
        if (kind >= 0) {
            pthread_mutex_lock(&f->mu);
            task *t = NULL;
            if (f->o.dedup) /* a messageId seen before: the same task again */
                for (task *x = f->tasks; x && !t; x = x->next)
                    if (!strcmp(x->msg_id, msg_id)) t = x;
            if (!t) {
                t = new_task(f, kind, ctx, work, answer);
                copy(t->msg_id, sizeof t->msg_id, msg_id);
                copy(t->text, sizeof t->text, text);
                if (kind == K_FLOOD) t->flood = atoi(a);
                t->choose = choose;
                t->files = files;
                t->partial = partial;
                pthread_mutex_unlock(&f->mu);
                executed(f, msg_id);
            } else {
                pthread_mutex_unlock(&f->mu);
            }
            if (streaming) {
                stream *s = stream_new(f, id);
                task_stream(f, s, v10, t, 1);
                ret = send_stream(c, s);
            } else {
                if (blocking) {
                    /* wait for the task to settle, as a blocking send must */
                    for (;;) {
                        pthread_mutex_lock(&f->mu);
                        int st = task_state(t, mono_ms());
                        pthread_mutex_unlock(&f->mu);
                        if (terminal(st) || st == S_INPUT || st == S_AUTH ||
                            atomic_load(&f->stopping))
                            break;
                        pause_ms(f, 10);
                    }
                }
                pthread_mutex_lock(&f->mu);
                cJSON *tj = task_json(v10, t, mono_ms());
                pthread_mutex_unlock(&f->mu);
                if (!blocking && kind == K_TASK)
                    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(tj, "status"), "state",
                                              cJSON_CreateString(state_str(v10, S_SUBMITTED)));
                ret = send_json(c, 200, envelope(id, wrap(v10, "task", tj)));
            }
            cJSON_Delete(req);
            return ret;
        }

        /* answers that are not tasks */
        char reply[400];
        int with_files = 0;
        snprintf(reply, sizeof reply, "echo: %s", text);
        if ((a = arg_after(text, "rpcerr"))) {
            int code = atoi(a);
            /* an internal or server error: the work ran (and failed) */
            if (code == -32603 || (code <= -32010 && code >= -32099)) executed(f, msg_id);
            ret = send_json(c, 200, error_body(v10, id, code, "scripted error"));
        } else if ((a = arg_after(text, "http"))) {
            int st = atoi(a);
            if (st >= 500 && st != 503) executed(f, msg_id); /* behind a gateway */
            ret = send_text(c, (unsigned)st, "text/html",
                            "<html><body><h1>Bad Gateway</h1>{\"not\":\"json-rpc\"}</body></html>");
        } else if (arg_after(text, "badid") && (executed(f, msg_id), 1)) {
            cJSON *other = cJSON_CreateString("not-your-id");
            ret = send_json(c, 200,
                            envelope(other, wrap(v10, "message", message(v10, "x", ctx, NULL))));
            cJSON_Delete(other);
        } else if (arg_after(text, "malformed") && (executed(f, msg_id), 1)) {
            ret =
                send_text(c, 200, "application/json", "{\"jsonrpc\":\"2.0\",\"result\":{\"kind\":");
        } else if ((arg_after(text, "big") || (arg_after(text, "bigevent") && !streaming)) &&
                   (executed(f, msg_id), 1)) {
            size_t n = 2u << 20;
            char *big = malloc(n + 1);
            memset(big, 'x', n);
            big[n] = 0;
            char *out = envelope(id, wrap(v10, "message", message(v10, big, ctx, NULL)));
            free(big);
            ret = send_json(c, 200, out);
        } else if (arg_after(text, "bigevent") && (executed(f, msg_id), 1)) {
            size_t n = 2u << 20;
            char *big = malloc(n + 1);
            memset(big, 'y', n);
            big[n] = 0;
            stream *s = stream_new(f, id);
            cJSON *env = cJSON_CreateObject();
            cJSON_AddStringToObject(env, "jsonrpc", "2.0");
            cJSON_AddItemToObject(env, "id", cJSON_Duplicate(id, 1));
            cJSON_AddItemToObject(env, "result",
                                  wrap(v10, "message", message(v10, big, ctx, NULL)));
            free(big);
            event(s, NULL, env, 0);
            ret = send_stream(c, s);
        } else if ((a = arg_after(text, "flaky"))) {
            int n = atoi(a), seen;
            pthread_mutex_lock(&f->mu);
            attempt *at = f->attempts;
            while (at && strcmp(at->msg_id, msg_id))
                at = at->next;
            if (!at) {
                at = calloc(1, sizeof *at);
                copy(at->msg_id, sizeof at->msg_id, msg_id);
                at->next = f->attempts;
                f->attempts = at;
            }
            seen = ++at->n;
            pthread_mutex_unlock(&f->mu);
            if (seen <= n) {
                ret = send_text(c, 503, "text/plain", "temporarily overloaded");
            } else {
                executed(f, msg_id);
                snprintf(reply, sizeof reply, "recovered after %d", n);
                goto plain;
            }
        } else if (arg_after(text, "vanish")) {
            /* The work runs, then the connection dies before any answer. */
            executed(f, msg_id);
            c->rs->drop = 1;
            ret = 0;
        } else {
            executed(f, msg_id);
            if ((a = arg_after(text, "slow"))) {
                pause_ms(f, atoll(a));
                snprintf(reply, sizeof reply, "slow done");
            } else if (arg_after(text, "ctx")) {
                snprintf(reply, sizeof reply, "ctx=%s task=%s", ctx_in && *ctx_in ? ctx_in : "none",
                         tid && *tid ? tid : "none");
            } else if (arg_after(text, "files")) {
                snprintf(reply, sizeof reply, "here are files");
                with_files = 1;
            } else if (arg_after(text, "bigfile")) {
                snprintf(reply, sizeof reply, "a big one");
                with_files = 2;
            }
        plain:;
            cJSON *msg = message(v10, reply, ctx, NULL);
            if (with_files == 1) media_parts(v10, cJSON_GetObjectItem(msg, "parts"));
            if (with_files == 2) { /* 3000 bytes (base64 of 4000 A) */
                static char zeros[4001];
                memset(zeros, 'A', 4000);
                cJSON *p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "raw", zeros);
                cJSON_AddStringToObject(p, "filename", "big.bin");
                cJSON_AddItemToArray(cJSON_GetObjectItem(msg, "parts"), p);
            }
            if (streaming) {
                stream *s = stream_new(f, id);
                cJSON *env = cJSON_CreateObject();
                cJSON_AddStringToObject(env, "jsonrpc", "2.0");
                cJSON_AddItemToObject(env, "id", cJSON_Duplicate(id, 1));
                cJSON_AddItemToObject(env, "result", wrap(v10, "message", msg));
                event(s, NULL, env, 1);
                ret = send_stream(c, s);
            } else {
                ret = send_json(c, 200, envelope(id, wrap(v10, "message", msg)));
            }
        }
    }
    cJSON_Delete(req);
    return ret;
}

/* ---- OAuth token endpoint ----------------------------------------------- */

static void b64(const char *in, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)in[i] << 16 |
                     (i + 1 < n ? (unsigned)(unsigned char)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned char)in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* The value of name in a form body, %XX and + decoded, into out. */
static void form_value(const char *body, const char *name, char *out, size_t sz) {
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) || p[nl] != '=') continue;
        size_t o = 0;
        for (const char *q = p + nl + 1; *q && *q != '&' && o + 1 < sz; q++) {
            if (*q == '+') {
                out[o++] = ' ';
            } else if (*q == '%' && q[1] && q[2]) {
                char hx[3] = {q[1], q[2], 0};
                out[o++] = (char)strtol(hx, NULL, 16);
                q += 2;
            } else {
                out[o++] = *q;
            }
        }
        out[o] = 0;
        return;
    }
}

static int token_endpoint(fa2a *f, conn *c) {
    char pair[256], want[400], grant[64];
    snprintf(pair, sizeof pair, "%s:%s", f->o.oauth_client_id,
             f->o.oauth_client_secret ? f->o.oauth_client_secret : "");
    strcpy(want, "Basic ");
    b64(pair, want + 6);
    const char *auth = hdr(c, "Authorization");
    const char *body = c->rq->body;
    form_value(body, "grant_type", grant, sizeof grant);
    pthread_mutex_lock(&f->mu);
    f->tok_requests++;
    form_value(body, "scope", f->last_scope, sizeof f->last_scope);
    form_value(body, "audience", f->last_audience, sizeof f->last_audience);
    pthread_mutex_unlock(&f->mu);
    if (!auth || strcmp(auth, want))
        return send_text(c, 401, "application/json", "{\"error\":\"invalid_client\"}");
    if (strcmp(grant, "client_credentials"))
        return send_text(c, 400, "application/json", "{\"error\":\"unsupported_grant_type\"}");
    int ttl = f->o.token_ttl_s > 0 ? f->o.token_ttl_s : 3600;
    char out[160];
    pthread_mutex_lock(&f->mu);
    snprintf(f->tok, sizeof f->tok, "tok-%d", ++f->tok_seq);
    f->tok_exp = mono_ms() + ttl * 1000LL;
    snprintf(out, sizeof out,
             "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%d}", f->tok, ttl);
    pthread_mutex_unlock(&f->mu);
    return send_text(c, 200, "application/json", out);
}

/* ---- routing ---------------------------------------------------------- */

/* The REST binding: the request becomes the JSON-RPC call it stands for,
 * answered by rpc() in REST mode. */
static int rest(fa2a *f, conn *c, const char *url, const char *method) {
    const char *p = url + 5; /* "/..." */
    const char *rm = NULL;
    cJSON *params = NULL;
    char tid[128] = "";
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (get && !strcmp(p, "/tasks")) {
        rm = "ListTasks";
    } else if (post && !strcmp(p, "/message:send")) {
        rm = "SendMessage";
    } else if (post && !strcmp(p, "/message:stream")) {
        rm = "SendStreamingMessage";
    } else if (!strncmp(p, "/tasks/", 7) && strlen(p + 7) < sizeof tid) {
        snprintf(tid, sizeof tid, "%s", p + 7);
        char *colon = strchr(tid, ':');
        if (colon) *colon++ = 0;
        if (get && !colon) rm = "GetTask";
        if (post && colon && !strcmp(colon, "cancel")) rm = "CancelTask";
        if (colon && !strcmp(colon, "subscribe")) rm = "SubscribeToTask";
    }
    if (!rm) return send_text(c, 404, "text/plain", "no such REST route");
    if (!strcmp(rm, "SendMessage") || !strcmp(rm, "SendStreamingMessage")) {
        params = cJSON_ParseWithLength(c->rq->body, c->rq->body_len);
        if (!params) {
            return send_text(c, 400, "application/json",
                             "{\"error\":{\"code\":400,\"message\":\"bad JSON\"}}");
        }
    } else if (!strcmp(rm, "ListTasks")) {
        params = cJSON_CreateObject();
        const char *cx = hs_arg(c->rq, "contextId");
        if (cx) cJSON_AddStringToObject(params, "contextId", cx);
    } else {
        params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "id", tid);
        const char *hl = hs_arg(c->rq, "historyLength");
        if (hl) cJSON_AddNumberToObject(params, "historyLength", atoi(hl));
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "jsonrpc", "2.0");
    cJSON_AddStringToObject(req, "id", "rest");
    cJSON_AddStringToObject(req, "method", rm);
    cJSON_AddItemToObject(req, "params", params);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    char path[160];
    snprintf(path, sizeof path, "%s %s", method, url);
    tl_rest = 1;
    tl_path = path;
    int r = rpc(f, c, body, strlen(body));
    tl_rest = 0;
    tl_path = NULL;
    free(body);
    return r;
}

static int answer(fa2a *f, conn *c, const char *url, const char *method) {
    if (f->o.rest && !strncmp(url, "/rest/", 6)) return rest(f, c, url, method);
    if (!strcmp(method, "GET")) {
        int new_path = !strcmp(url, "/.well-known/agent-card.json");
        int old_path = !strcmp(url, "/.well-known/agent.json");
        if (f->o.card_redirect && new_path) {
            c->rs->status = 301;
            c->rs->content_type = "";
            snprintf(c->rs->headers, sizeof c->rs->headers, "Location: %s\n", f->o.card_redirect);
            return 0;
        }
        if (f->o.card_redirect && !strcmp(url, "/cards/agent.json")) new_path = 1;
        if (!new_path && !old_path) return send_text(c, 404, "text/plain", "not found");
        pthread_mutex_lock(&f->mu);
        f->card_fetches++;
        pthread_mutex_unlock(&f->mu);
        fa_card mode = f->o.card_mode;
        if (mode == FA_CARD_NONE || (mode == FA_CARD_OLD && new_path) ||
            (mode != FA_CARD_OLD && old_path))
            return send_text(c, 404, "text/plain", "not found");
        if (mode == FA_CARD_INVALID)
            return send_text(c, 200, "application/json", "<html>this is not a card</html>");
        char etag[32];
        pthread_mutex_lock(&f->mu);
        snprintf(etag, sizeof etag, "\"v%d\"", f->card_version);
        pthread_mutex_unlock(&f->mu);
        const char *inm = hdr(c, "If-None-Match");
        int same = inm && !strcmp(inm, etag);
        if (same) {
            pthread_mutex_lock(&f->mu);
            f->not_modified++;
            pthread_mutex_unlock(&f->mu);
            c->rs->content_type = "";
        } else {
            c->rs->body = card_json(f);
        }
        c->rs->status = same ? 304 : 200;
        int n = snprintf(c->rs->headers, sizeof c->rs->headers, "ETag: %s\n", etag);
        if (f->o.card_max_age > 0)
            snprintf(c->rs->headers + n, sizeof c->rs->headers - (size_t)n,
                     "Cache-Control: public, max-age=%d\n", f->o.card_max_age);
        return 0;
    }
    if (strcmp(method, "POST")) return send_text(c, 405, "text/plain", "method not allowed");
    if (f->o.oauth_client_id && !strcmp(url, "/oauth/token")) return token_endpoint(f, c);
    if (f->o.oauth_client_id) {
        const char *auth = hdr(c, "Authorization");
        pthread_mutex_lock(&f->mu);
        int ok = auth && f->tok[0] && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, f->tok) &&
                 mono_ms() < f->tok_exp;
        pthread_mutex_unlock(&f->mu);
        if (!ok) {
            cJSON *req = cJSON_ParseWithLength(c->rq->body, c->rq->body_len);
            record(f, c, req ? cJSON_GetStringValue(cJSON_GetObjectItem(req, "method")) : "?", req);
            cJSON_Delete(req);
            return send_text(c, 401, "application/json", "{\"error\":\"invalid_token\"}");
        }
    }
    if (f->o.token) {
        const char *auth = hdr(c, "Authorization");
        char want[256];
        snprintf(want, sizeof want, "Bearer %s", f->o.token);
        if (!auth || strcmp(auth, want)) {
            cJSON *req = cJSON_ParseWithLength(c->rq->body, c->rq->body_len);
            record(f, c, req ? cJSON_GetStringValue(cJSON_GetObjectItem(req, "method")) : "?", req);
            cJSON_Delete(req);
            return send_text(c, 401, "application/json", "{\"error\":\"unauthorized\"}");
        }
    }
    if (f->o.api_key_header) {
        const char *k = hdr(c, f->o.api_key_header);
        if (!k || strcmp(k, f->o.api_key)) return send_text(c, 403, "text/plain", "forbidden");
    }
    pthread_mutex_lock(&f->mu);
    int here = !strcmp(url, f->rpc_path);
    pthread_mutex_unlock(&f->mu);
    if (!here) return send_text(c, 404, "text/plain", "no such endpoint");
    return rpc(f, c, c->rq->body, c->rq->body_len);
}

static void on_req(void *arg, const hs_req *rq, hs_resp *rs) {
    conn c = {rq, rs};
    answer(arg, &c, rq->url, rq->method);
}

fa2a *fa2a_start(const fa2a_opts *o) {
    fa2a *f = calloc(1, sizeof *f);
    if (o) f->o = *o;
    if (!f->o.speaks) f->o.speaks = FA_BOTH;
    snprintf(f->rpc_path, sizeof f->rpc_path, "/rpc");
    pthread_mutex_init(&f->mu, NULL);
    f->srv = hs_start_port(on_req, f, 0, f->o.port);
    if (!f->srv) {
        pthread_mutex_destroy(&f->mu);
        free(f);
        return NULL;
    }
    pthread_mutex_lock(&f->mu); /* the server's threads read them */
    f->port = hs_port(f->srv);
    snprintf(f->url, sizeof f->url, "%s", hs_base(f->srv));
    pthread_mutex_unlock(&f->mu);
    return f;
}

void fa2a_stop(fa2a *f) {
    if (!f) return;
    atomic_store(&f->stopping, 1);
    hs_stop(f->srv);
    while (atomic_load(&f->pushers) > 0) /* they end within their 5 s timeout */
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    while (f->tasks) {
        task *t = f->tasks;
        f->tasks = t->next;
        free(t);
    }
    while (f->attempts) {
        attempt *a = f->attempts;
        f->attempts = a->next;
        free(a);
    }
    while (f->execs) {
        attempt *a = f->execs;
        f->execs = a->next;
        free(a);
    }
    free(f->reqs);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

const char *fa2a_url(fa2a *f) {
    return f->url;
}

int fa2a_port(fa2a *f) {
    return f->port;
}

int fa2a_count(fa2a *f, const char *method) {
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (int i = 0; i < f->nreq; i++)
        if (!method || !strcmp(f->reqs[i].method, method)) n++;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fa2a_req(fa2a *f, int i, fa_req *out) {
    pthread_mutex_lock(&f->mu);
    int ok = i >= 0 && i < f->nreq;
    if (ok) *out = f->reqs[i];
    pthread_mutex_unlock(&f->mu);
    return ok ? 0 : -1;
}

int fa2a_last(fa2a *f, const char *method, fa_req *out) {
    pthread_mutex_lock(&f->mu);
    int rc = -1;
    for (int i = f->nreq - 1; i >= 0; i--) {
        if (!method || !strcmp(f->reqs[i].method, method)) {
            *out = f->reqs[i];
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int fa2a_connections(fa2a *f) {
    return hs_connections(f->srv);
}

int fa2a_card_fetches(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->card_fetches;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fa2a_card_not_modified(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->not_modified;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void fa2a_move(fa2a *f, const char *path) {
    pthread_mutex_lock(&f->mu);
    f->card_version++;
    snprintf(f->rpc_path, sizeof f->rpc_path, "%s", path);
    pthread_mutex_unlock(&f->mu);
}

int fa2a_executions(fa2a *f, const char *message_id) {
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (attempt *e = f->execs; e; e = e->next) {
        if (message_id && !strcmp(e->msg_id, message_id)) n = e->n;
        if (!message_id && e->n > n) n = e->n;
    }
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fa2a_executed_messages(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    int n = 0;
    for (attempt *e = f->execs; e; e = e->next)
        n++;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fa2a_token_requests(fa2a *f, char *scope, size_t ssz, char *audience, size_t asz) {
    pthread_mutex_lock(&f->mu);
    int n = f->tok_requests;
    if (scope) snprintf(scope, ssz, "%s", f->last_scope);
    if (audience) snprintf(audience, asz, "%s", f->last_audience);
    pthread_mutex_unlock(&f->mu);
    return n;
}

void fa2a_revoke_token(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    f->tok[0] = 0;
    pthread_mutex_unlock(&f->mu);
}

void fa2a_authorize(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    for (task *t = f->tasks; t; t = t->next)
        if (t->kind == K_AUTH) t->answered = 1;
    pthread_mutex_unlock(&f->mu);
}

void fa2a_forget_contexts(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    f->forget_mark = f->next_ctx;
    pthread_mutex_unlock(&f->mu);
}

void fa2a_clear(fa2a *f) {
    pthread_mutex_lock(&f->mu);
    f->nreq = 0;
    pthread_mutex_unlock(&f->mu);
}

/* ---- the earlier fake's API --------------------------------------------- */

fa *fa_start(int card, int speak, int streaming) {
    fa2a_opts o = {.speaks = (fa_dialect)(speak ? speak : FA_BOTH), .streaming = streaming};
    switch (card) {
    case FA_CARD_V10:
        o.card = FA_V10;
        break;
    case FA_CARD_V03:
        o.card = FA_V03;
        break;
    case FA_CARD_LEGACY:
        o.card = FA_V03;
        o.card_mode = FA_CARD_OLD;
        break;
    case FA_CARD_HYBRID:
        o.card = FA_BOTH;
        break;
    case FA_CARD_NO_RPC:
        o.card_mode = FA_CARD_NO_JSONRPC;
        break;
    case FA_CARD_INVALID:
        o.card_mode = FA_CARD_INVALID;
        break;
    default:
        break;
    }
    return fa2a_start(&o);
}

void fa_stop(fa *f) {
    fa2a_stop(f);
}

const char *fa_base(fa *f) {
    return fa2a_url(f);
}

int fa_count(fa *f) {
    return fa2a_count(f, NULL);
}

int fa_get(fa *f, int i, fa_req *out) {
    return fa2a_req(f, i, out);
}

int fa_count_method(fa *f, const char *method) {
    return fa2a_count(f, method);
}
