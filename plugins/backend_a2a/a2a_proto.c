/* A2A JSON shapes in both dialects: agent card, request bodies, responses
 * and failure classes. Lenient on input: unknown fields are ignored and
 * both dialects' spellings are accepted wherever they cannot clash. */
#include "a2a.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static char *dup_or_null(const char *s) {
    return s && *s ? strdup(s) : NULL;
}

static void set_why(char *why, size_t n, const char *s) {
    if (why && n) snprintf(why, n, "%s", s);
}

/* ------------------------------------------------------------------ card */

static int starts_with(const char *s, const char *p) {
    return s && !strncmp(s, p, strlen(p));
}

int a2a_card_parse(const char *json, size_t len, a2a_card *out, char *why, size_t whysz) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        set_why(why, whysz, "card is not a JSON object");
        return -1;
    }
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(root, "capabilities");
    out->streaming = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(caps, "streaming"));

    /* 1.0: supportedInterfaces in preference order; 1.x JSON-RPC first,
     * then a 0.3 JSON-RPC entry. */
    const cJSON *si = cJSON_GetObjectItemCaseSensitive(root, "supportedInterfaces");
    const cJSON *e, *v03 = NULL, *v10 = NULL;
    cJSON_ArrayForEach(e, si) {
        const char *b = jstr(e, "protocolBinding");
        const char *pv = jstr(e, "protocolVersion");
        if (!jstr(e, "url") || !b || strcmp(b, "JSONRPC")) continue;
        if (!v10 && (!pv || starts_with(pv, "1."))) v10 = e;
        if (!v03 && (starts_with(pv, "0.3") || starts_with(pv, "0.2"))) v03 = e;
    }
    if (v10 || v03) {
        const cJSON *pick = v10 ? v10 : v03;
        out->rpc_url = strdup(jstr(pick, "url"));
        out->tenant = dup_or_null(jstr(pick, "tenant"));
        out->dialect = v10 ? A2A_V10 : A2A_V03;
        cJSON_Delete(root);
        return 0;
    }
    /* 0.2/0.3: url is the preferredTransport endpoint (JSONRPC by default). */
    const char *url = jstr(root, "url");
    const char *pt = jstr(root, "preferredTransport");
    if (url && (!pt || !strcmp(pt, "JSONRPC"))) {
        out->rpc_url = strdup(url);
    } else {
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "additionalInterfaces")) {
            const char *t = jstr(e, "transport");
            if (t && !strcmp(t, "JSONRPC") && jstr(e, "url")) {
                out->rpc_url = strdup(jstr(e, "url"));
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (!out->rpc_url) {
        set_why(why, whysz, "card offers no JSON-RPC interface");
        return -1;
    }
    out->dialect = A2A_V03;
    return 0;
}

void a2a_card_free(a2a_card *c) {
    free(c->rpc_url);
    free(c->tenant);
    memset(c, 0, sizeof *c);
}

/* -------------------------------------------------------------- requests */

const char *a2a_method(int dialect, int op) {
    static const char *const m03[] = {"message/send", "message/stream", "tasks/get",
                                      "tasks/cancel"};
    static const char *const m10[] = {"SendMessage", "SendStreamingMessage", "GetTask",
                                      "CancelTask"};
    return dialect == A2A_V10 ? m10[op] : m03[op];
}

static cJSON *envelope(long id, const char *method, cJSON **params) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddNumberToObject(r, "id", (double)id);
    cJSON_AddStringToObject(r, "method", method);
    *params = cJSON_AddObjectToObject(r, "params");
    return r;
}

static char *finish(cJSON *r) {
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

char *a2a_build_send(const a2a_send *s) {
    int v10 = s->dialect == A2A_V10;
    cJSON *params;
    cJSON *r = envelope(s->id, a2a_method(s->dialect, s->stream ? 1 : 0), &params);
    if (v10 && s->tenant && *s->tenant) cJSON_AddStringToObject(params, "tenant", s->tenant);
    cJSON *m = cJSON_AddObjectToObject(params, "message");
    if (!v10) cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "role", v10 ? "ROLE_USER" : "user");
    cJSON *parts = cJSON_AddArrayToObject(m, "parts");
    cJSON *p = cJSON_CreateObject();
    if (!v10) cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", s->text ? s->text : "");
    cJSON_AddItemToArray(parts, p);
    cJSON_AddStringToObject(m, "messageId", s->message_id);
    if (s->context_id && *s->context_id) cJSON_AddStringToObject(m, "contextId", s->context_id);
    if (s->task_id && *s->task_id) cJSON_AddStringToObject(m, "taskId", s->task_id);
    cJSON *cfg = cJSON_AddObjectToObject(params, "configuration");
    cJSON *modes = cJSON_AddArrayToObject(cfg, "acceptedOutputModes");
    cJSON_AddItemToArray(modes, cJSON_CreateString("text/plain"));
    if (!s->stream) {
        if (v10)
            cJSON_AddBoolToObject(cfg, "returnImmediately", 0);
        else
            cJSON_AddBoolToObject(cfg, "blocking", 1);
    }
    return finish(r);
}

char *a2a_build_task_op(int dialect, int op, long id, const char *task_id, const char *tenant) {
    cJSON *params;
    cJSON *r = envelope(id, a2a_method(dialect, op ? 3 : 2), &params);
    cJSON_AddStringToObject(params, "id", task_id);
    if (dialect == A2A_V10 && tenant && *tenant) cJSON_AddStringToObject(params, "tenant", tenant);
    return finish(r);
}

/* ------------------------------------------------------------- responses */

a2a_state a2a_state_parse(const char *s) {
    if (!s) return A2A_TS_UNKNOWN;
    if (!strncmp(s, "TASK_STATE_", 11)) s += 11;
    static const struct {
        const char *a, *b;
        a2a_state st;
    } t[] = {
        {"submitted", "SUBMITTED", A2A_TS_SUBMITTED},
        {"working", "WORKING", A2A_TS_WORKING},
        {"input-required", "INPUT_REQUIRED", A2A_TS_INPUT_REQUIRED},
        {"auth-required", "AUTH_REQUIRED", A2A_TS_AUTH_REQUIRED},
        {"completed", "COMPLETED", A2A_TS_COMPLETED},
        {"failed", "FAILED", A2A_TS_FAILED},
        {"canceled", "CANCELED", A2A_TS_CANCELED},
        {"cancelled", "CANCELLED", A2A_TS_CANCELED},
        {"rejected", "REJECTED", A2A_TS_REJECTED},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].a) || !strcmp(s, t[i].b)) return t[i].st;
    return A2A_TS_UNKNOWN;
}

int a2a_state_terminal(a2a_state s) {
    return s == A2A_TS_COMPLETED || s == A2A_TS_FAILED || s == A2A_TS_CANCELED ||
           s == A2A_TS_REJECTED;
}

int a2a_state_interrupted(a2a_state s) {
    return s == A2A_TS_INPUT_REQUIRED || s == A2A_TS_AUTH_REQUIRED;
}

int a2a_state_active(a2a_state s) {
    return !a2a_state_terminal(s) && !a2a_state_interrupted(s);
}

typedef struct {
    char *b;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *s, const char *t, size_t n) {
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

/* Text parts in order; file/data parts are skipped. */
static void parts_text(const cJSON *parts, sbuf *out) {
    const cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        const char *k = jstr(p, "kind");
        if (k && strcmp(k, "text")) continue;
        const char *t = jstr(p, "text");
        if (t) sb_add(out, t, strlen(t));
    }
}

static char *message_text(const cJSON *m) {
    sbuf s = {0};
    parts_text(cJSON_GetObjectItemCaseSensitive(m, "parts"), &s);
    return s.b;
}

static void fill_status(const cJSON *status, a2a_result *r) {
    r->state = a2a_state_parse(jstr(status, "state"));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(status, "message");
    if (cJSON_IsObject(m)) r->status_text = message_text(m);
}

static void fill_task(const cJSON *t, a2a_result *r) {
    r->kind = A2A_R_TASK;
    r->task_id = dup_or_null(jstr(t, "id"));
    r->context_id = dup_or_null(jstr(t, "contextId"));
    fill_status(cJSON_GetObjectItemCaseSensitive(t, "status"), r);
    sbuf s = {0};
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(t, "artifacts")) {
        size_t before = s.n;
        if (before) sb_add(&s, "\n", 1);
        size_t mark = s.n;
        parts_text(cJSON_GetObjectItemCaseSensitive(a, "parts"), &s);
        if (s.n == mark && s.b) s.n = before, s.b[s.n] = 0; /* no text: drop separator */
    }
    r->text = s.b;
    if (!r->status_text && r->state == A2A_TS_COMPLETED && !r->text) {
        /* Fall back to the last agent message of the history. */
        const cJSON *h, *last = NULL;
        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(t, "history")) {
            const char *role = jstr(h, "role");
            if (role && (!strcmp(role, "agent") || !strcmp(role, "ROLE_AGENT"))) last = h;
        }
        if (last) r->status_text = message_text(last);
    }
}

static void fill_message(const cJSON *m, a2a_result *r) {
    r->kind = A2A_R_MESSAGE;
    r->context_id = dup_or_null(jstr(m, "contextId"));
    r->task_id = dup_or_null(jstr(m, "taskId"));
    r->text = message_text(m);
}

static void fill_status_update(const cJSON *u, a2a_result *r) {
    r->kind = A2A_R_STATUS;
    r->task_id = dup_or_null(jstr(u, "taskId"));
    r->context_id = dup_or_null(jstr(u, "contextId"));
    r->final = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, "final"));
    fill_status(cJSON_GetObjectItemCaseSensitive(u, "status"), r);
}

static void fill_artifact_update(const cJSON *u, a2a_result *r) {
    r->kind = A2A_R_ARTIFACT;
    r->task_id = dup_or_null(jstr(u, "taskId"));
    r->context_id = dup_or_null(jstr(u, "contextId"));
    r->append = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, "append"));
    r->last_chunk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, "lastChunk"));
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(u, "artifact");
    r->artifact_id = dup_or_null(jstr(a, "artifactId"));
    sbuf s = {0};
    parts_text(cJSON_GetObjectItemCaseSensitive(a, "parts"), &s);
    r->text = s.b;
}

/* Keeps printable ASCII of an agent error message, for logs only. */
static void copy_errmsg(char *dst, size_t n, const char *src) {
    size_t o = 0;
    for (; src && *src && o + 1 < n; src++)
        dst[o++] = (*src >= 32 && *src < 127) ? *src : '?';
    dst[o] = 0;
}

void a2a_parse_response(const char *json, size_t len, a2a_result *r) {
    memset(r, 0, sizeof *r);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) goto out;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (cJSON_IsNumber(id)) {
        r->id_kind = 1;
        r->id = (long)id->valuedouble;
    } else if (id && !cJSON_IsNull(id)) {
        r->id_kind = 2;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsObject(err)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
        if (!cJSON_IsNumber(c)) goto out;
        r->kind = A2A_R_ERROR;
        r->code = (int)c->valuedouble;
        copy_errmsg(r->errmsg, sizeof r->errmsg, jstr(err, "message"));
        goto out;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (!cJSON_IsObject(res)) goto out;
    const cJSON *w;
    const char *kind = jstr(res, "kind");
    if (kind) {
        if (!strcmp(kind, "task"))
            fill_task(res, r);
        else if (!strcmp(kind, "message"))
            fill_message(res, r);
        else if (!strcmp(kind, "status-update"))
            fill_status_update(res, r);
        else if (!strcmp(kind, "artifact-update"))
            fill_artifact_update(res, r);
    } else if (cJSON_IsObject(w = cJSON_GetObjectItemCaseSensitive(res, "task"))) {
        fill_task(w, r);
    } else if (cJSON_IsObject(w = cJSON_GetObjectItemCaseSensitive(res, "message"))) {
        fill_message(w, r);
    } else if (cJSON_IsObject(w = cJSON_GetObjectItemCaseSensitive(res, "statusUpdate"))) {
        fill_status_update(w, r);
    } else if (cJSON_IsObject(w = cJSON_GetObjectItemCaseSensitive(res, "artifactUpdate"))) {
        fill_artifact_update(w, r);
    } else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(res, "status")) && jstr(res, "id")) {
        fill_task(res, r); /* bare Task (GetTask / CancelTask) */
    } else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(res, "parts"))) {
        fill_message(res, r);
    }
out:
    cJSON_Delete(root);
}

void a2a_result_free(a2a_result *r) {
    free(r->context_id);
    free(r->task_id);
    free(r->text);
    free(r->status_text);
    free(r->artifact_id);
    memset(r, 0, sizeof *r);
}

/* -------------------------------------------------------- classification */

const char *a2a_class_http(long st) {
    if (st >= 200 && st < 300) return NULL;
    if (st == 408 || st == 429 || st >= 500) return "transient";
    if (st <= 0) return "transient";
    return "fatal";
}

const char *a2a_class_rpc(int code) {
    switch (code) {
    case -32700:
    case -32600:
    case -32601:
    case -32602:
    case -32001:
    case -32003:
    case -32004:
    case -32005:
    case -32007:
    case -32008:
    case -32009:
        return "fatal";
    case -32006:
        return "protocol";
    default:
        return "transient"; /* -32603 and other server-defined codes */
    }
}
