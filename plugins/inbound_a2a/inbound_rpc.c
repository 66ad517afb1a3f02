/* JSON-RPC 2.0 in both A2A dialects, told apart by the method name (1.0
 * SendMessage..., 0.3 message/send...), answered in the dialect asked;
 * the agent card. Shapes: 1.0 ROLE_* and TASK_STATE_*, parts without
 * `kind`, results wrapped ({"task":...}); 0.3 `kind` discriminators and
 * lower-case states. */
#include "inbound.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

enum { OP_SEND, OP_STREAM, OP_GET, OP_CANCEL, OP_SUB };

static const struct {
    const char *name;
    int v10, op;
} methods[] = {
    {"SendMessage", 1, OP_SEND},      {"SendStreamingMessage", 1, OP_STREAM},
    {"GetTask", 1, OP_GET},           {"CancelTask", 1, OP_CANCEL},
    {"SubscribeToTask", 1, OP_SUB},   {"message/send", 0, OP_SEND},
    {"message/stream", 0, OP_STREAM}, {"tasks/get", 0, OP_GET},
    {"tasks/cancel", 0, OP_CANCEL},   {"tasks/resubscribe", 0, OP_SUB},
};

/* Error codes (A2A and JSON-RPC). */
enum {
    E_PARSE = -32700,
    E_REQUEST = -32600,
    E_METHOD = -32601,
    E_PARAMS = -32602,
    E_INTERNAL = -32603,
    E_SERVER = -32000,
    E_NOT_FOUND = -32001,
    E_NOT_CANCELABLE = -32002,
    E_UNSUPPORTED = -32004,
};

typedef struct call {
    ib *b;
    ib_caller *c;
    const cJSON *id;
    const cJSON *params;
    int v10, op;
    ib_answer *a;
} call;

/* ---- shapes ------------------------------------------------------------------ */

static cJSON *text_part(const char *text, int v10) {
    cJSON *p = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", text ? text : "");
    return p;
}

static cJSON *message(const ib_task *t, const char *mid, int agent, const char *text, int v10) {
    cJSON *m = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "messageId", mid);
    cJSON_AddStringToObject(
        m, "role", v10 ? (agent ? "ROLE_AGENT" : "ROLE_USER") : (agent ? "agent" : "user"));
    cJSON *parts = cJSON_AddArrayToObject(m, "parts");
    cJSON_AddItemToArray(parts, text_part(text, v10));
    cJSON_AddStringToObject(m, "taskId", t->id);
    cJSON_AddStringToObject(m, "contextId", t->ctx_id ? t->ctx_id : t->id);
    return m;
}

static cJSON *question(const ib_task *t, int v10) {
    char mid[IB_ID_MAX + 8];
    snprintf(mid, sizeof mid, "%s-q", t->id);
    return message(t, mid, 1, t->sent, v10);
}

static cJSON *status(const ib_task *t, int v10) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "state", ib_state_name(t->state, v10));
    if (t->state == TS_INPUT) cJSON_AddItemToObject(s, "message", question(t, v10));
    if (t->state == TS_FAILED && t->reason) {
        char mid[IB_ID_MAX + 8];
        snprintf(mid, sizeof mid, "%s-s", t->id);
        cJSON_AddItemToObject(s, "message", message(t, mid, 1, t->reason, v10));
    }
    char ts[40];
    ib_iso(t->updated_ms, ts, sizeof ts);
    cJSON_AddStringToObject(s, "timestamp", ts);
    return s;
}

static cJSON *artifact(const ib_task *t, int v10) {
    cJSON *a = cJSON_CreateObject();
    char aid[IB_ID_MAX + 16];
    snprintf(aid, sizeof aid, "%s-answer", t->id);
    cJSON_AddStringToObject(a, "artifactId", aid);
    cJSON_AddStringToObject(a, "name", "answer");
    cJSON *parts = cJSON_AddArrayToObject(a, "parts");
    cJSON_AddItemToArray(parts, text_part(t->answer, v10));
    char ts[40];
    ib_iso(t->answered_ms, ts, sizeof ts);
    cJSON *md = cJSON_AddObjectToObject(a, "metadata");
    cJSON_AddStringToObject(md, "answered_at", ts);
    return a;
}

static int answered(const ib_task *t) {
    return t->state == TS_COMPLETED && t->answer;
}

/* history: only the caller's own message and the question as sent. */
static cJSON *task(const ib_task *t, int v10, int hist) {
    cJSON *o = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(o, "kind", "task");
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "contextId", t->ctx_id ? t->ctx_id : t->id);
    cJSON_AddItemToObject(o, "status", status(t, v10));
    if (answered(t)) {
        cJSON *arts = cJSON_AddArrayToObject(o, "artifacts");
        cJSON_AddItemToArray(arts, artifact(t, v10));
    }
    cJSON *h = cJSON_CreateArray();
    cJSON_AddItemToArray(h, message(t, t->msg_id ? t->msg_id : "", 0, t->text, v10));
    if (t->delivered_ms) cJSON_AddItemToArray(h, question(t, v10));
    while (hist >= 0 && cJSON_GetArraySize(h) > hist)
        cJSON_DeleteItemFromArray(h, 0);
    if (cJSON_GetArraySize(h))
        cJSON_AddItemToObject(o, "history", h);
    else
        cJSON_Delete(h);
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "skill", t->skill);
    return o;
}

/* ---- envelopes ------------------------------------------------------------------ */

static char *envelope(const char *rpc_id, cJSON *result) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    cJSON *id = rpc_id ? cJSON_Parse(rpc_id) : NULL;
    cJSON_AddItemToObject(o, "id", id ? id : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "result", result);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *sse(char *json) {
    if (!json) return NULL;
    sbuf b = {0};
    sbuf_printf(&b, "data: %s\n\n", json);
    free(json);
    return sbuf_take(&b, NULL);
}

static cJSON *wrap(const char *key, cJSON *inner, int v10) {
    if (!v10) return inner;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, key, inner);
    return o;
}

char *ib_event_task(const ib_task *t, int v10, const char *rpc_id) {
    return sse(envelope(rpc_id, wrap("task", task(t, v10, -1), v10)));
}

char *ib_event_status(const ib_task *t, int v10, const char *rpc_id) {
    cJSON *e = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(e, "kind", "status-update");
    cJSON_AddStringToObject(e, "taskId", t->id);
    cJSON_AddStringToObject(e, "contextId", t->ctx_id ? t->ctx_id : t->id);
    cJSON_AddItemToObject(e, "status", status(t, v10));
    if (!v10) cJSON_AddBoolToObject(e, "final", ib_terminal(t->state));
    return sse(envelope(rpc_id, wrap("statusUpdate", e, v10)));
}

char *ib_event_artifact(const ib_task *t, int v10, const char *rpc_id) {
    cJSON *e = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(e, "kind", "artifact-update");
    cJSON_AddStringToObject(e, "taskId", t->id);
    cJSON_AddStringToObject(e, "contextId", t->ctx_id ? t->ctx_id : t->id);
    cJSON_AddItemToObject(e, "artifact", artifact(t, v10));
    cJSON_AddBoolToObject(e, "lastChunk", 1);
    return sse(envelope(rpc_id, wrap("artifactUpdate", e, v10)));
}

static const char *reason_of(int code) {
    switch (code) {
    case E_NOT_FOUND:
        return "TASK_NOT_FOUND";
    case E_NOT_CANCELABLE:
        return "TASK_NOT_CANCELABLE";
    case E_UNSUPPORTED:
        return "UNSUPPORTED_OPERATION";
    }
    return NULL;
}

static char *error_body(const cJSON *id, int code, const char *msg, int v10) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    cJSON_AddItemToObject(o, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    const char *r = v10 ? reason_of(code) : NULL;
    if (r) {
        cJSON *d = cJSON_AddArrayToObject(e, "data");
        cJSON *info = cJSON_CreateObject();
        cJSON_AddStringToObject(info, "@type", "type.googleapis.com/google.rpc.ErrorInfo");
        cJSON_AddStringToObject(info, "reason", r);
        cJSON_AddStringToObject(info, "domain", "a2a-protocol.org");
        cJSON_AddItemToArray(d, info);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *ib_rpc_error_body(int code, const char *msg) {
    return error_body(NULL, code, msg, 0);
}

static void fail(call *k, int code, const char *msg, ib_outcome oc) {
    k->a->body = error_body(k->id, code, msg, k->v10);
    k->a->outcome = oc;
}

static void fail_http(call *k, int http, int code, const char *msg, ib_outcome oc) {
    fail(k, code, msg, oc);
    k->a->http = http;
}

static void result(call *k, cJSON *res) {
    char *id = k->id ? cJSON_PrintUnformatted(k->id) : NULL;
    k->a->body = envelope(id, res);
    free(id);
    k->a->outcome = OC_OK;
}

/* ---- reading params ----------------------------------------------------------- */

static const cJSON *member(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

/* A string member of 1..max bytes: 1, absent 0, bad -1. */
static int str_member(const cJSON *o, const char *k, size_t max, const char **out) {
    const cJSON *v = member(o, k);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > max) return -1;
    *out = v->valuestring;
    return 1;
}

static int utf8_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* The message's text parts joined by a line break; NULL with *why set. */
static char *join_text(call *k, const cJSON *parts, const char **why) {
    int n = cJSON_IsArray(parts) ? cJSON_GetArraySize(parts) : 0;
    if (n < 1 || n > 64) return *why = "message.parts must hold 1 to 64 parts", NULL;
    sbuf b = {0};
    const cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        const cJSON *kind = member(p, "kind"), *text = member(p, "text");
        if (!cJSON_IsString(text) ||
            (kind && !(cJSON_IsString(kind) && !strcmp(kind->valuestring, "text")))) {
            sbuf_free(&b);
            return *why = "only text parts are supported (no file or data parts)", NULL;
        }
        if (b.len) sbuf_putc(&b, '\n');
        sbuf_puts(&b, text->valuestring);
        if (b.len > (size_t)k->b->cf.max_text_bytes) break;
    }
    size_t len = 0;
    char *s = sbuf_take(&b, &len);
    if (!s) return *why = "out of memory", NULL;
    if (!len) *why = "the message has no text";
    if (len > (size_t)k->b->cf.max_text_bytes) *why = "the text is longer than max_text_bytes";
    if (len && !utf8_ok(s, len)) *why = "the text is not valid UTF-8";
    if (!len || len > (size_t)k->b->cf.max_text_bytes || !utf8_ok(s, len)) {
        free(s);
        return NULL;
    }
    return s;
}

/* metadata.choices: 1..10 strings of 1..64 bytes; 0 absent, -1 bad. */
static int read_choices(const cJSON *md, char ***out) {
    const cJSON *c = member(md, "choices");
    *out = NULL;
    if (!c || cJSON_IsNull(c)) return 0;
    int n = cJSON_IsArray(c) ? cJSON_GetArraySize(c) : 0;
    if (n < 1 || n > IB_CHOICES_MAX) return -1;
    char **v = calloc((size_t)n + 1, sizeof *v);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, c) {
        size_t l = cJSON_IsString(e) ? strlen(e->valuestring) : 0;
        if (!v || !l || l > IB_CHOICE_MAX || !utf8_ok(e->valuestring, l)) break;
        if (!(v[i] = strdup(e->valuestring))) break;
        i++;
    }
    if (i == n) return *out = v, 1;
    for (int j = 0; v && j < i; j++)
        free(v[j]);
    free(v);
    return -1;
}

/* The human the caller asks for, or -1 (unknown and forbidden alike). */
static long find_skill(call *k, const char *skill) {
    ib *b = k->b;
    if (!skill) {
        if (k->c->nallowed != 1) return -2;
        for (size_t i = 0; i < b->nhumans; i++)
            if (k->c->allow[i]) return (long)i;
        return -1;
    }
    for (size_t i = 0; i < b->nhumans; i++)
        if (!strcmp(b->humans[i].name, skill)) return k->c->allow[i] ? (long)i : -1;
    return -1;
}

static long history_length(const cJSON *params) {
    const cJSON *h = member(params, "historyLength");
    if (!h) h = member(member(params, "configuration"), "historyLength");
    if (!cJSON_IsNumber(h) || h->valuedouble < 0) return -1;
    return h->valuedouble > 100 ? 100 : (long)h->valuedouble;
}

/* ---- limits -------------------------------------------------------------------- */

/* A token bucket per caller: 0 take one, else the seconds to wait. */
static int rate_take(ib *b, ib_caller *c) {
    double per_min = (double)b->cf.rate_limit_per_minute;
    if (per_min <= 0) return 0;
    int64_t now = b->h->now_ms();
    pthread_mutex_lock(&b->mu);
    if (!c->bucket_ms) c->bucket = per_min, c->bucket_ms = now;
    c->bucket += (double)(now - c->bucket_ms) * per_min / 60000.0;
    if (c->bucket > per_min) c->bucket = per_min;
    c->bucket_ms = now;
    int wait = 0;
    if (c->bucket >= 1)
        c->bucket -= 1;
    else
        wait = 1 + (int)((1 - c->bucket) * 60.0 / per_min);
    pthread_mutex_unlock(&b->mu);
    return wait;
}

static int count_visit(void *arg, const char *key, const void *val, size_t len) {
    (void)key, (void)val, (void)len;
    (*(int64_t *)arg)++;
    return 0;
}

static int64_t count(ib *b, const char *prefix) {
    int64_t n = 0;
    b->h->kv_scan(b->ctx, prefix, count_visit, &n);
    return n;
}

static int full(ib *b, const ib_human *hu) {
    char p[IB_NAME_MAX + 32];
    snprintf(p, sizeof p, "p/%s/%" PRId64 "/", hu->transport, hu->chat);
    return count(b, "p/") >= b->cf.max_pending || count(b, p) >= b->cf.max_pending_per_chat;
}

/* ---- methods ------------------------------------------------------------------ */

static void answer_task(call *k, const ib_task *t, int hist, int wrapped) {
    if (k->op == OP_STREAM || k->op == OP_SUB) {
        k->a->stream = 1;
        k->a->v10 = k->v10;
        k->a->task_id = strdup(t->id);
        k->a->rpc_id = k->id ? cJSON_PrintUnformatted(k->id) : NULL;
        k->a->first = ib_event_task(t, k->v10, k->a->rpc_id);
        k->a->first_state = t->state;
        k->a->outcome = OC_OK;
        return;
    }
    result(k, wrapped ? wrap("task", task(t, k->v10, hist), k->v10) : task(t, k->v10, hist));
}

/* A blocking send returns once the task left `submitted`, or at send_wait. */
static void wait_delivered(call *k, ib_task *t) {
    ib *b = k->b;
    int64_t end = b->h->now_ms() + b->cf.send_wait;
    uint64_t g = ib_gen(b);
    while (t->state == TS_SUBMITTED && b->h->now_ms() < end && !ib_stopping(b)) {
        g = ib_wait(b, g, end - b->h->now_ms());
        ib_task n;
        if (!ib_task_load(b, t->id, &n)) ib_task_free(t), *t = n;
    }
}

static int blocking(call *k) {
    const cJSON *cfg = member(k->params, "configuration");
    if (k->v10) return !cJSON_IsTrue(member(cfg, "returnImmediately"));
    return !cJSON_IsFalse(member(cfg, "blocking"));
}

static void sent_text(ib_task *t) {
    sbuf s = {0};
    sbuf_printf(&s, "%s from %s:\n\n%s", t->notify ? "Message" : "Question", t->caller, t->text);
    t->sent = sbuf_take(&s, NULL);
}

/* Checks the message into t; 0, or -1 after answering the error. */
static int read_message(call *k, const cJSON *msg, ib_task *t, const char **skill) {
    const char *why = NULL, *mid = NULL;
    const cJSON *md = member(msg, "metadata");
    if (!cJSON_IsObject(msg))
        why = "params.message must be an object";
    else if (str_member(msg, "messageId", IB_ID_MAX, &mid) != 1)
        why = "message.messageId must be a string of 1 to 128 bytes";
    else if (md && !cJSON_IsObject(md))
        why = "message.metadata must be an object";
    else if (str_member(md, "skill", IB_NAME_MAX, skill) < 0)
        why = "metadata.skill must be a human's name";
    else if (member(md, "expect_answer") && !cJSON_IsBool(member(md, "expect_answer")))
        why = "metadata.expect_answer must be true or false";
    else if (read_choices(md, &t->choices) < 0)
        why = "metadata.choices must be 1 to 10 strings of 1 to 64 bytes";
    if (!why) t->text = join_text(k, member(msg, "parts"), &why);
    t->msg_id = mid ? strdup(mid) : NULL;
    if (why) {
        fail(k, E_PARAMS, why, OC_INVALID);
        return -1;
    }
    t->notify = cJSON_IsFalse(member(md, "expect_answer"));
    const char *cid = NULL;
    if (str_member(msg, "contextId", IB_ID_MAX, &cid) >= 0 && cid) t->ctx_id = strdup(cid);
    return 0;
}

/* A retry of a messageId this caller sent before: its task. */
static int dedupe(call *k, const ib_task *t, ib_task *old) {
    ib *b = k->b;
    char *id = NULL;
    size_t n;
    char mk[IB_NAME_MAX + 80];
    ib_mkey(k->c->name, t->msg_id, mk, sizeof mk);
    if (b->h->kv_get(b->ctx, mk, &id, &n) != RD_OK || !id) return 0;
    int rc = ib_task_load(b, id, old) == 0;
    free(id);
    return rc;
}

static int task_id_given(call *k, const cJSON *msg) {
    const char *tid = NULL;
    if (str_member(msg, "taskId", IB_ID_MAX, &tid) < 0) {
        fail(k, E_NOT_FOUND, "task not found", OC_NOT_FOUND);
        return -1;
    }
    if (!tid) return 0;
    ib_task old = {0};
    int mine = !ib_task_load(k->b, tid, &old) && !strcmp(old.caller, k->c->name);
    ib_task_free(&old);
    if (!mine)
        fail(k, E_NOT_FOUND, "task not found", OC_NOT_FOUND);
    else
        fail(k, E_UNSUPPORTED, "a task takes one message: send a new one without taskId",
             OC_INVALID);
    return -1;
}

/* Admission of a new task: skill, rate, room. 0, or -1 answered. */
static int admit(call *k, const char *skill, ib_task *t) {
    ib *b = k->b;
    long hi = find_skill(k, skill);
    if (hi == -2) {
        fail(k, E_PARAMS, "metadata.skill is required (the human to ask)", OC_INVALID);
        return -1;
    }
    if (hi < 0) {
        fail(k, E_PARAMS, "unknown or forbidden skill", OC_INVALID);
        return -1;
    }
    int wait = rate_take(b, k->c);
    if (wait) {
        fail_http(k, 429, E_SERVER, "rate limit exceeded: retry later", OC_RATE_LIMITED);
        k->a->retry_after = wait;
        return -1;
    }
    const ib_human *hu = &b->humans[hi];
    if (full(b, hu)) {
        fail_http(k, 503, E_SERVER, "too many pending questions: retry later", OC_FULL);
        k->a->retry_after = 60;
        return -1;
    }
    t->skill = strdup(hu->name);
    t->transport = strdup(hu->transport);
    t->chat = hu->chat;
    t->caller = strdup(k->c->name);
    sent_text(t);
    return 0;
}

static void do_send(call *k) {
    ib *b = k->b;
    const cJSON *msg = member(k->params, "message");
    ib_task t = {0}, old;
    const char *skill = NULL;
    if (read_message(k, msg, &t, &skill)) goto out;
    if (dedupe(k, &t, &old)) {
        ib_task_free(&t);
        t = old;
    } else {
        if (task_id_given(k, msg) || admit(k, skill, &t)) goto out;
        rd_status st = ib_task_create(b, &t);
        if (st != RD_OK && st != RD_E_DUPLICATE) {
            fail(k, E_INTERNAL, "the task could not be stored", OC_ERROR);
            goto out;
        }
        if (st == RD_OK)
            b->h->log(b->ctx, RD_LOG_INFO, "task %s from %s: %s for %s stored", t.id, t.caller,
                      t.notify ? "notification" : "question", t.skill);
    }
    if (k->op == OP_SEND && blocking(k)) wait_delivered(k, &t);
    answer_task(k, &t, (int)history_length(k->params), 1);
out:
    ib_task_free(&t);
}

/* GetTask, CancelTask, SubscribeToTask: the caller's own task by id. */
static void do_task(call *k) {
    const char *id = NULL;
    if (str_member(k->params, "id", IB_ID_MAX + 8, &id) != 1 &&
        str_member(k->params, "name", IB_ID_MAX + 8, &id) != 1) {
        fail(k, E_PARAMS, "params.id must be a task id", OC_INVALID);
        return;
    }
    if (!strncmp(id, "tasks/", 6)) id += 6;
    ib_task t = {0};
    if (k->op == OP_CANCEL) {
        int rc = ib_task_cancel(k->b, id, k->c->name, &t);
        if (rc == 0)
            answer_task(k, &t, (int)history_length(k->params), 0);
        else if (rc == -2)
            fail(k, E_NOT_CANCELABLE, "task not cancelable: it is already finished", OC_INVALID);
        else
            fail(k, E_NOT_FOUND, "task not found", OC_NOT_FOUND);
        ib_task_free(&t);
        return;
    }
    if (ib_task_load(k->b, id, &t) || strcmp(t.caller, k->c->name)) {
        fail(k, E_NOT_FOUND, "task not found", OC_NOT_FOUND);
    } else {
        answer_task(k, &t, (int)history_length(k->params), 0);
    }
    ib_task_free(&t);
}

static const char *method_label(const cJSON *m) {
    for (size_t i = 0; cJSON_IsString(m) && i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(m->valuestring, methods[i].name)) return methods[i].name;
    return "other";
}

void ib_rpc(ib *b, ib_caller *caller, const char *body, size_t len, ib_answer *a) {
    call k = {.b = b, .c = caller, .a = a};
    a->http = 200;
    a->method = "other";
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!req) return fail(&k, E_PARSE, "parse error: the body is not JSON", OC_INVALID);
    const cJSON *id = member(req, "id"), *m = member(req, "method");
    if (id && (cJSON_IsString(id) ? strlen(id->valuestring) > IB_ID_MAX
                                  : !cJSON_IsNumber(id) && !cJSON_IsNull(id)))
        id = NULL;
    k.id = id;
    a->method = method_label(m);
    const cJSON *ver = member(req, "jsonrpc");
    if (!cJSON_IsObject(req) || !cJSON_IsString(ver) || strcmp(ver->valuestring, "2.0") ||
        !cJSON_IsString(m)) {
        fail(&k, E_REQUEST, "invalid request: expected a JSON-RPC 2.0 object", OC_INVALID);
    } else if (!strcmp(a->method, "other")) {
        fail(&k, E_METHOD, "method not found", OC_INVALID);
    } else {
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (!strcmp(m->valuestring, methods[i].name))
                k.v10 = methods[i].v10, k.op = methods[i].op;
        k.params = member(req, "params");
        if (!cJSON_IsObject(k.params))
            fail(&k, E_PARAMS, "params must be an object", OC_INVALID);
        else if (k.op == OP_SEND || k.op == OP_STREAM)
            do_send(&k);
        else
            do_task(&k);
    }
    cJSON_Delete(req);
}

/* ---- the card ------------------------------------------------------------------ */

static void add_schemes(cJSON *card, int v10) {
    cJSON *s = cJSON_AddObjectToObject(card, "securitySchemes");
    cJSON *be = cJSON_AddObjectToObject(s, "bearer"), *ak = cJSON_AddObjectToObject(s, "apiKey");
    if (v10) {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(be, "httpAuthSecurityScheme"), "scheme",
                                "Bearer");
        cJSON *k = cJSON_AddObjectToObject(ak, "apiKeySecurityScheme");
        cJSON_AddStringToObject(k, "location", "header");
        cJSON_AddStringToObject(k, "name", "X-API-Key");
    } else {
        cJSON_AddStringToObject(be, "type", "http");
        cJSON_AddStringToObject(be, "scheme", "bearer");
        cJSON_AddStringToObject(ak, "type", "apiKey");
        cJSON_AddStringToObject(ak, "in", "header");
        cJSON_AddStringToObject(ak, "name", "X-API-Key");
    }
    /* Either scheme alone is enough: two alternatives. */
    cJSON *sec = cJSON_AddArrayToObject(card, "security");
    cJSON *req = cJSON_AddArrayToObject(card, "securityRequirements");
    const char *names[] = {"bearer", "apiKey"};
    for (int i = 0; i < 2; i++) {
        cJSON *alt = cJSON_CreateObject();
        cJSON_AddArrayToObject(alt, names[i]);
        cJSON_AddItemToArray(sec, alt);
        cJSON *r = cJSON_CreateObject();
        cJSON *sch = cJSON_AddObjectToObject(r, "schemes");
        cJSON_AddArrayToObject(cJSON_AddObjectToObject(sch, names[i]), "list");
        cJSON_AddItemToArray(req, r);
    }
}

static void add_interfaces(ib *b, cJSON *card) {
    cJSON_AddStringToObject(card, "protocolVersion", "0.3.0");
    cJSON_AddStringToObject(card, "url", b->public_url);
    cJSON_AddStringToObject(card, "preferredTransport", "JSONRPC");
    cJSON *ai = cJSON_AddArrayToObject(card, "additionalInterfaces");
    cJSON *i0 = cJSON_CreateObject();
    cJSON_AddStringToObject(i0, "url", b->public_url);
    cJSON_AddStringToObject(i0, "transport", "JSONRPC");
    cJSON_AddItemToArray(ai, i0);
    cJSON *si = cJSON_AddArrayToObject(card, "supportedInterfaces");
    const char *vers[] = {"1.0", "0.3"};
    for (int i = 0; i < 2; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "url", b->public_url);
        cJSON_AddStringToObject(e, "protocolBinding", "JSONRPC");
        cJSON_AddStringToObject(e, "protocolVersion", vers[i]);
        cJSON_AddItemToArray(si, e);
    }
}

static void add_skills(ib *b, cJSON *card) {
    cJSON *sk = cJSON_AddArrayToObject(card, "skills");
    for (size_t i = 0; i < b->nhumans; i++) {
        const char *n = b->humans[i].name;
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "id", n);
        cJSON_AddStringToObject(s, "name", n);
        char d[256];
        snprintf(d, sizeof d,
                 "Ask %s (a person) a question; the answer comes back as the task's artifact "
                 "when %s replies.",
                 n, n);
        cJSON_AddStringToObject(s, "description", d);
        cJSON *tags = cJSON_AddArrayToObject(s, "tags");
        cJSON_AddItemToArray(tags, cJSON_CreateString("human"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(s, "inputModes"),
                             cJSON_CreateString("text/plain"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(s, "outputModes"),
                             cJSON_CreateString("text/plain"));
        cJSON_AddItemToArray(sk, s);
    }
}

/* Both dialects' fields; securitySchemes in the shape of the A2A-Version
 * asked for (1.x: 1.0, else 0.3). No chat ids, ever. */
char *ib_card(ib *b, int v10) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", b->cf.name);
    cJSON_AddStringToObject(c, "description", b->cf.description);
    cJSON_AddStringToObject(c, "version", "1.0.0");
    add_interfaces(b, c);
    cJSON *cap = cJSON_AddObjectToObject(c, "capabilities");
    cJSON_AddBoolToObject(cap, "streaming", 1);
    cJSON_AddBoolToObject(cap, "pushNotifications", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "defaultInputModes"),
                         cJSON_CreateString("text/plain"));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "defaultOutputModes"),
                         cJSON_CreateString("text/plain"));
    add_schemes(c, v10);
    add_skills(b, c);
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}
