/* See a2a_parse.h. Parsing is lenient on purpose: agents in the wild mix
 * 0.3 and 1.0 shapes, leak internal oneof wrappers and omit defaults. */
#include "a2a_parse.h"
#include "sbuf.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s) {
    return s ? strdup(s) : NULL;
}

static void seterr(char *err, size_t errsz, const char *fmt, ...) {
    if (!err || !errsz) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

static const cJSON *obj(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}

static const cJSON *arr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsArray(v) ? v : NULL;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* A non-empty string member, or NULL (ProtoJSON "" means absent). */
static const char *nstr(const cJSON *o, const char *k) {
    const char *s = str(o, k);
    return s && *s ? s : NULL;
}

static int flag(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsString(v) && v->valuestring) return !strcasecmp(v->valuestring, "true");
    return 0;
}

static int has(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) && cJSON_GetObjectItemCaseSensitive(o, k) != NULL;
}

/* ---- names -------------------------------------------------------------- */

const char *a2a_dialect_name(a2a_dialect d) {
    return d == A2A_D_V10 ? "1.0" : d == A2A_D_V03 ? "0.3" : "auto";
}

static const char *const state_names[] = {
    "none",          "unknown",   "submitted", "working",  "input-required",
    "auth-required", "completed", "failed",    "canceled", "rejected",
};

a2a_state a2a_state_parse(const char *s) {
    if (!s || !*s) return A2A_TS_UNKNOWN;
    if (!strncasecmp(s, "TASK_STATE_", 11)) s += 11;
    char norm[32];
    size_t n = 0;
    for (; *s && n < sizeof norm - 1; s++)
        norm[n++] = *s == '_' ? '-' : (char)tolower((unsigned char)*s);
    norm[n] = 0;
    if (!strcmp(norm, "cancelled")) return A2A_TS_CANCELED;
    for (int i = A2A_TS_SUBMITTED; i <= A2A_TS_REJECTED; i++)
        if (!strcmp(norm, state_names[i])) return (a2a_state)i;
    return A2A_TS_UNKNOWN;
}

const char *a2a_state_name(a2a_state s) {
    return (unsigned)s <= A2A_TS_REJECTED ? state_names[s] : "unknown";
}

int a2a_state_terminal(a2a_state s) {
    return s == A2A_TS_COMPLETED || s == A2A_TS_FAILED || s == A2A_TS_CANCELED ||
           s == A2A_TS_REJECTED;
}

int a2a_state_interrupted(a2a_state s) {
    return s == A2A_TS_INPUT_REQUIRED || s == A2A_TS_AUTH_REQUIRED;
}

/* ---- classification ----------------------------------------------------- */

const char *a2a_class_name(a2a_class c) {
    switch (c) {
    case A2A_C_OK:
        return "ok";
    case A2A_C_TRANSIENT:
        return "transient";
    case A2A_C_FATAL:
        return "fatal";
    case A2A_C_TIMEOUT:
        return "timeout";
    case A2A_C_PROTOCOL:
        return "protocol";
    }
    return "fatal";
}

a2a_class a2a_classify_rpc(int code) {
    switch (code) {
    case A2A_ERR_PARSE:
    case A2A_ERR_INVALID_REQUEST:
    case A2A_ERR_METHOD_NOT_FOUND:
    case A2A_ERR_INVALID_PARAMS:
        return A2A_C_FATAL;
    case A2A_ERR_INTERNAL:
        return A2A_C_TRANSIENT;
    default:
        break;
    }
    if (code <= -32001 && code >= -32009) return A2A_C_FATAL; /* A2A-defined errors */
    return A2A_C_TRANSIENT; /* server-defined: like an internal error */
}

a2a_class a2a_classify_http(long status) {
    if (status == 0) return A2A_C_TRANSIENT;
    if (status == 408 || status == 425 || status == 429 || status >= 500) return A2A_C_TRANSIENT;
    if (status >= 400) return A2A_C_FATAL;
    return A2A_C_PROTOCOL; /* 1xx/2xx/3xx that could not be used */
}

const char *a2a_rpc_code_name(int code) {
    switch (code) {
    case A2A_ERR_PARSE:
        return "parse error";
    case A2A_ERR_INVALID_REQUEST:
        return "invalid request";
    case A2A_ERR_METHOD_NOT_FOUND:
        return "method not found";
    case A2A_ERR_INVALID_PARAMS:
        return "invalid params";
    case A2A_ERR_INTERNAL:
        return "internal error";
    case A2A_ERR_TASK_NOT_FOUND:
        return "task not found";
    case A2A_ERR_TASK_NOT_CANCELABLE:
        return "task not cancelable";
    case A2A_ERR_PUSH_NOT_SUPPORTED:
        return "push notifications not supported";
    case A2A_ERR_UNSUPPORTED_OPERATION:
        return "unsupported operation";
    case A2A_ERR_CONTENT_TYPE:
        return "content type not supported";
    case A2A_ERR_INVALID_AGENT_RESPONSE:
        return "invalid agent response";
    case A2A_ERR_EXTENDED_CARD:
        return "extended card not configured";
    case A2A_ERR_EXTENSION_REQUIRED:
        return "extension support required";
    case A2A_ERR_VERSION_NOT_SUPPORTED:
        return "version not supported";
    default:
        return "server error";
    }
}

/* ---- URLs --------------------------------------------------------------- */

char *a2a_url_resolve(const char *base, const char *ref) {
    if (!ref || !*ref) return xstrdup(base);
    if (!base || strstr(ref, "://")) return xstrdup(ref);
    const char *sep = strstr(base, "://");
    sbuf b = {0};
    if (ref[0] == '/' && ref[1] == '/') {
        /* scheme-relative */
        if (sep) sbuf_putn(&b, base, (size_t)(sep - base) + 1);
        sbuf_puts(&b, ref);
        return sbuf_take(&b, NULL);
    }
    const char *auth = sep ? sep + 3 : base;
    const char *path = auth + strcspn(auth, "/?#");
    if (ref[0] == '/') {
        sbuf_putn(&b, base, (size_t)(path - base));
        sbuf_puts(&b, ref);
        return sbuf_take(&b, NULL);
    }
    /* relative path: replace the last segment of base's path */
    size_t plen = strcspn(path, "?#");
    const char *last = NULL;
    for (const char *p = path; p < path + plen; p++)
        if (*p == '/') last = p;
    if (last) {
        sbuf_putn(&b, base, (size_t)(last - base) + 1);
    } else {
        sbuf_putn(&b, base, (size_t)(path - base));
        sbuf_putc(&b, '/');
    }
    sbuf_puts(&b, ref);
    return sbuf_take(&b, NULL);
}

/* ---- agent card --------------------------------------------------------- */

void a2a_card_free(a2a_card *c) {
    if (!c) return;
    free(c->name);
    free(c->url_v10);
    free(c->tenant);
    free(c->url_v03);
    free(c->url_rest);
    free(c->url_rest03);
    free(c->tenant_rest);
    free(c->apikey_name);
    free(c->apikey_in);
    free(c->oauth_token_url);
    free(c->required_ext);
    memset(c, 0, sizeof *c);
}

static int is_jsonrpc(const char *binding) {
    return binding && (!strcasecmp(binding, "JSONRPC") || !strcasecmp(binding, "JSON-RPC") ||
                       !strcasecmp(binding, "JSON_RPC"));
}

/* One security scheme, in any of the shapes seen: 0.3 {type,...}, 1.0
 * {httpAuthSecurityScheme:{...}}, or a leaked {scheme:{$case,value}}. */
static void card_scheme(a2a_card *c, const cJSON *s) {
    const cJSON *wrap = obj(s, "scheme");
    const char *kase = str(wrap, "$case");
    if (kase) {
        const cJSON *v = obj(wrap, "value");
        cJSON *tmp = cJSON_CreateObject();
        if (!tmp) return;
        cJSON_AddItemReferenceToObject(tmp, kase, (cJSON *)(v ? v : wrap));
        card_scheme(c, tmp);
        cJSON_Delete(tmp);
        return;
    }
    const char *type = str(s, "type");
    const cJSON *h = obj(s, "httpAuthSecurityScheme");
    const cJSON *k = obj(s, "apiKeySecurityScheme");
    if (h || (type && !strcasecmp(type, "http"))) {
        const char *scheme = str(h ? h : s, "scheme");
        if (scheme && !strcasecmp(scheme, "basic"))
            c->auth_basic = 1;
        else
            c->auth_bearer = 1;
    } else if (k || (type && !strcasecmp(type, "apiKey"))) {
        const char *name = str(k ? k : s, "name");
        const char *in = str(k ? k : s, k ? "location" : "in");
        if (!in) in = str(k ? k : s, "in");
        if (!c->apikey_name && name) {
            c->apikey_name = strdup(name);
            c->apikey_in = strdup(in ? in : "header");
        }
    } else if (obj(s, "oauth2SecurityScheme") || obj(s, "openIdConnectSecurityScheme") ||
               (type && (!strcasecmp(type, "oauth2") || !strcasecmp(type, "openIdConnect")))) {
        c->auth_oauth = 1;
        const cJSON *o2 = obj(s, "oauth2SecurityScheme");
        const cJSON *flows = obj(o2 ? o2 : s, "flows");
        const char *tu = nstr(obj(flows, "clientCredentials"), "tokenUrl");
        if (tu && !c->oauth_token_url) c->oauth_token_url = strdup(tu);
    } else if (obj(s, "mtlsSecurityScheme") || (type && !strcasecmp(type, "mutualTLS"))) {
        c->auth_mtls = 1;
    }
}

static int requirements_listed(const cJSON *root) {
    const cJSON *r = arr(root, "securityRequirements");
    if (!r) r = arr(root, "security");
    if (!r) return -1; /* not said */
    const cJSON *e;
    cJSON_ArrayForEach(e, r) {
        /* {} (anonymous allowed) as an alternative makes auth optional */
        if (cJSON_IsObject(e) && !e->child) return 0;
        const cJSON *schemes = obj(e, "schemes");
        if (schemes && !schemes->child) return 0;
    }
    return cJSON_GetArraySize(r) > 0;
}

int a2a_card_parse(const char *json, size_t len, const char *card_url, a2a_card *out, char *err,
                   size_t errsz) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        seterr(err, errsz, "not JSON");
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        seterr(err, errsz, "not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    out->name = xstrdup(str(root, "name"));

    /* 1.0: supportedInterfaces in the agent's preference order: the first
     * JSON-RPC entry decides the dialect. */
    const cJSON *ifs = arr(root, "supportedInterfaces"), *e;
    a2a_dialect first = A2A_D_UNKNOWN;
    cJSON_ArrayForEach(e, ifs) {
        const char *binding = str(e, "protocolBinding");
        if (!binding) binding = str(e, "transport");
        const char *url = str(e, "url");
        const char *ver = str(e, "protocolVersion");
        if (!is_jsonrpc(binding)) {
            if (binding) out->other_bindings = 1;
            if (url && binding && !strcasecmp(binding, "HTTP+JSON")) {
                if (ver && ver[0] == '0') {
                    if (!out->url_rest03) out->url_rest03 = a2a_url_resolve(card_url, url);
                } else if (!out->url_rest) {
                    out->url_rest = a2a_url_resolve(card_url, url);
                    out->tenant_rest = xstrdup(nstr(e, "tenant"));
                }
            }
            continue;
        }
        if (!url) continue;
        int v03 = ver && ver[0] == '0';
        if (!first) first = v03 ? A2A_D_V03 : A2A_D_V10;
        if (v03 && !out->url_v03) {
            out->url_v03 = a2a_url_resolve(card_url, url);
        } else if (!v03 && !out->url_v10) {
            out->url_v10 = a2a_url_resolve(card_url, url);
            out->tenant = xstrdup(nstr(e, "tenant"));
        }
    }
    /* 0.2/0.3: url + preferredTransport, additionalInterfaces. */
    const char *top = nstr(root, "url");
    const char *pref = str(root, "preferredTransport");
    const char *pv = str(root, "protocolVersion");
    int top_v10 = pv && pv[0] == '1';
    if (top && (!pref || is_jsonrpc(pref))) {
        char **slot = top_v10 && !ifs ? &out->url_v10 : &out->url_v03;
        if (!*slot) *slot = a2a_url_resolve(card_url, top);
    } else if (top) {
        out->other_bindings = 1;
        if (!strcasecmp(pref, "HTTP+JSON") && !top_v10 && !out->url_rest03)
            out->url_rest03 = a2a_url_resolve(card_url, top);
    }
    cJSON_ArrayForEach(e, arr(root, "additionalInterfaces")) {
        const char *t = str(e, "transport");
        const char *url = str(e, "url");
        if (!is_jsonrpc(t)) {
            if (t) out->other_bindings = 1;
            if (t && url && !strcasecmp(t, "HTTP+JSON") && !out->url_rest03)
                out->url_rest03 = a2a_url_resolve(card_url, url);
            continue;
        }
        if (url && !out->url_v03) out->url_v03 = a2a_url_resolve(card_url, url);
    }
    out->preferred = first             ? first
                     : out->url_v10    ? A2A_D_V10
                     : out->url_v03    ? A2A_D_V03
                     : out->url_rest   ? A2A_D_V10
                     : out->url_rest03 ? A2A_D_V03
                                       : A2A_D_UNKNOWN;

    out->streaming = flag(obj(root, "capabilities"), "streaming");
    out->push = flag(obj(root, "capabilities"), "pushNotifications");
    /* Extensions the agent requires: none is supported by routerd. */
    cJSON_ArrayForEach(e, arr(obj(root, "capabilities"), "extensions")) {
        const char *uri = nstr(e, "uri");
        if (uri && flag(e, "required") && !out->required_ext) out->required_ext = strdup(uri);
    }

    const cJSON *modes = arr(root, "defaultInputModes");
    out->text_input = 1;
    if (modes && cJSON_GetArraySize(modes) > 0) {
        out->text_input = 0;
        cJSON_ArrayForEach(e, modes) {
            const char *m = cJSON_IsString(e) ? e->valuestring : NULL;
            if (m && (!strncasecmp(m, "text", 4) || !strcmp(m, "*/*") || !strcmp(m, "*")))
                out->text_input = 1;
        }
    }

    const cJSON *schemes = obj(root, "securitySchemes");
    int nschemes = 0;
    for (const cJSON *s = schemes ? schemes->child : NULL; s; s = s->next) {
        if (!cJSON_IsObject(s)) continue;
        nschemes++;
        card_scheme(out, s);
    }
    int req = requirements_listed(root);
    out->auth_required = req > 0 || (req < 0 && nschemes > 0);
    cJSON_Delete(root);

    if (out->preferred == A2A_D_UNKNOWN) {
        seterr(err, errsz, "%s",
               out->other_bindings ? "the agent offers no JSON-RPC interface, nor an HTTP+JSON one "
                                     "(only gRPC?)"
                                   : "no JSON-RPC interface URL (url / supportedInterfaces)");
        a2a_card_free(out); /* nothing to free for the caller on failure */
        return -1;
    }
    return 0;
}

/* ---- requests ----------------------------------------------------------- */

static const char *const methods[2][5] = {
    {"SendMessage", "SendStreamingMessage", "GetTask", "CancelTask", "SubscribeToTask"},
    {"message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe"},
};

const char *a2a_method(a2a_dialect d, a2a_op op) {
    if ((unsigned)op > A2A_OP_SUBSCRIBE) return NULL;
    return methods[d == A2A_D_V03 ? 1 : 0][op];
}

static cJSON *envelope(a2a_dialect d, a2a_op op, const char *rpc_id, cJSON **params) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddStringToObject(r, "id", rpc_id ? rpc_id : "1");
    cJSON_AddStringToObject(r, "method", a2a_method(d, op));
    *params = cJSON_AddObjectToObject(r, "params");
    return r;
}

static char *finish(cJSON *r) {
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* A file part: inline bytes as base64 (1.0 raw, 0.3 file.bytes), else the
 * URL (1.0 url, 0.3 file.uri). */
static cJSON *file_part(int v03, const a2a_out_file *f) {
    cJSON *p = cJSON_CreateObject();
    cJSON *dst = p;
    if (v03) {
        cJSON_AddStringToObject(p, "kind", "file");
        dst = cJSON_AddObjectToObject(p, "file");
    }
    if (f->data) {
        char *b64 =
            f->len <= (size_t)INT32_MAX / 4 * 3 - 3 ? malloc((f->len + 2) / 3 * 4 + 1) : NULL;
        if (b64) EVP_EncodeBlock((unsigned char *)b64, f->data, (int)f->len);
        cJSON_AddStringToObject(dst, v03 ? "bytes" : "raw", b64 ? b64 : "");
        free(b64);
    } else {
        cJSON_AddStringToObject(dst, v03 ? "uri" : "url", f->url ? f->url : "");
    }
    if (f->mime && *f->mime) cJSON_AddStringToObject(dst, v03 ? "mimeType" : "mediaType", f->mime);
    if (f->name && *f->name) cJSON_AddStringToObject(dst, v03 ? "name" : "filename", f->name);
    return p;
}

static void put_modes(sbuf *b, const char *const *modes, size_t n) {
    sbuf_puts(b, "\"acceptedOutputModes\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sbuf_putc(b, ',');
        sbuf_json_str(b, modes[i]);
    }
    sbuf_putc(b, ']');
}

/* Written as text: the one request of every message, built without a
 * JSON tree (the text is valid UTF-8, as the host hands it over). */
char *a2a_build_send(a2a_dialect d, int stream, const char *rpc_id, const a2a_send *s) {
    int v03 = d == A2A_D_V03;
    sbuf b = {0};
    sbuf_json_field(&b, "{\"jsonrpc\":\"2.0\",\"id\":", rpc_id ? rpc_id : "1");
    sbuf_json_field(&b, ",\"method\":", a2a_method(d, stream ? A2A_OP_STREAM : A2A_OP_SEND));
    sbuf_puts(&b, ",\"params\":{");
    if (!v03 && s->tenant && *s->tenant) {
        sbuf_json_field(&b, "\"tenant\":", s->tenant);
        sbuf_putc(&b, ',');
    }
    sbuf_puts(&b, v03 ? "\"message\":{\"kind\":\"message\",\"role\":\"user\""
                      : "\"message\":{\"role\":\"ROLE_USER\"");
    sbuf_json_field(&b, ",\"messageId\":", s->message_id ? s->message_id : "");
    if (s->context_id && *s->context_id) sbuf_json_field(&b, ",\"contextId\":", s->context_id);
    if (s->task_id && *s->task_id) sbuf_json_field(&b, ",\"taskId\":", s->task_id);
    sbuf_puts(&b, ",\"parts\":[");
    /* A file without caption goes without a text part (parts must not be
     * empty, so a lone empty text stays). */
    int parts = 0;
    if ((s->text && *s->text) || !s->nfiles) {
        sbuf_json_field(
            &b, v03 ? "{\"kind\":\"text\",\"text\":" : "{\"text\":", s->text ? s->text : "");
        sbuf_putc(&b, '}');
        parts++;
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        cJSON *p = file_part(v03, &s->files[i]);
        char *txt = p ? cJSON_PrintUnformatted(p) : NULL;
        cJSON_Delete(p);
        if (!txt) {
            sbuf_free(&b);
            return NULL;
        }
        if (parts++) sbuf_putc(&b, ',');
        sbuf_puts(&b, txt);
        free(txt);
    }
    sbuf_puts(&b, "]}");

    size_t nmodes = 0;
    while (s->accepted_output_modes && s->accepted_output_modes[nmodes])
        nmodes++;
    if (v03) {
        /* 0.2 requires acceptedOutputModes; empty means "anything". */
        sbuf_puts(&b, ",\"configuration\":{");
        put_modes(&b, s->accepted_output_modes, nmodes);
        if (!stream)
            sbuf_puts(&b, s->return_immediately ? ",\"blocking\":false" : ",\"blocking\":true");
        sbuf_putc(&b, '}');
    } else if (nmodes || (s->return_immediately && !stream)) {
        sbuf_puts(&b, ",\"configuration\":{");
        if (nmodes) put_modes(&b, s->accepted_output_modes, nmodes);
        if (s->return_immediately && !stream)
            sbuf_puts(&b, nmodes ? ",\"returnImmediately\":true" : "\"returnImmediately\":true");
        sbuf_putc(&b, '}');
    }
    sbuf_puts(&b, "}}");
    return sbuf_take(&b, NULL);
}

char *a2a_build_task_op(a2a_dialect d, a2a_op op, const char *rpc_id, const char *task_id,
                        const char *tenant) {
    if (op < A2A_OP_GET || op > A2A_OP_SUBSCRIBE) return NULL;
    cJSON *params;
    cJSON *r = envelope(d, op, rpc_id, &params);
    if (d != A2A_D_V03 && tenant && *tenant) cJSON_AddStringToObject(params, "tenant", tenant);
    cJSON_AddStringToObject(params, "id", task_id ? task_id : "");
    /* Polls ask for a short history: enough for an answer only found
     * there, never the whole conversation. */
    if (op == A2A_OP_GET) cJSON_AddNumberToObject(params, "historyLength", A2A_POLL_HISTORY);
    return finish(r);
}

char *a2a_build_push_set(a2a_dialect d, const char *rpc_id, const char *task_id, const char *tenant,
                         const char *url, const char *token, const char *bearer) {
    int v03 = d == A2A_D_V03;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddStringToObject(r, "id", rpc_id ? rpc_id : "1");
    cJSON_AddStringToObject(
        r, "method", v03 ? "tasks/pushNotificationConfig/set" : "CreateTaskPushNotificationConfig");
    cJSON *params = cJSON_AddObjectToObject(r, "params");
    if (!v03 && tenant && *tenant) cJSON_AddStringToObject(params, "tenant", tenant);
    cJSON_AddStringToObject(params, "taskId", task_id ? task_id : "");
    cJSON *cfg = v03 ? cJSON_AddObjectToObject(params, "pushNotificationConfig") : params;
    cJSON_AddStringToObject(cfg, "url", url ? url : "");
    cJSON_AddStringToObject(cfg, "token", token ? token : "");
    cJSON *auth = cJSON_AddObjectToObject(cfg, "authentication");
    if (v03)
        cJSON_AddItemToArray(cJSON_AddArrayToObject(auth, "schemes"), cJSON_CreateString("Bearer"));
    else
        cJSON_AddStringToObject(auth, "scheme", "Bearer");
    cJSON_AddStringToObject(auth, "credentials", bearer ? bearer : "");
    return finish(r);
}

char *a2a_push_task_id(const char *json, size_t len) {
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *o = root;
    const cJSON *res = obj(o, "result");
    if (res) o = res;
    const char *id = NULL, *w;
    const cJSON *x;
    if ((x = obj(o, "task")))
        id = nstr(x, "id");
    else if ((x = obj(o, "statusUpdate")) || (x = obj(o, "artifactUpdate")) ||
             (x = obj(o, "message")))
        id = nstr(x, "taskId");
    else if ((w = str(o, "kind")) && !strcmp(w, "task"))
        id = nstr(o, "id");
    else if (!(id = nstr(o, "taskId")) && has(o, "status"))
        id = nstr(o, "id");
    char *r = id && strlen(id) <= 512 ? strdup(id) : NULL;
    cJSON_Delete(root);
    return r;
}

char *a2a_build_list_tasks(const char *rpc_id, const char *context_id, const char *tenant,
                           int history_length) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddStringToObject(r, "id", rpc_id ? rpc_id : "1");
    cJSON_AddStringToObject(r, "method", "ListTasks");
    cJSON *params = cJSON_AddObjectToObject(r, "params");
    if (tenant && *tenant) cJSON_AddStringToObject(params, "tenant", tenant);
    if (context_id && *context_id) cJSON_AddStringToObject(params, "contextId", context_id);
    cJSON_AddNumberToObject(params, "pageSize", 100);
    cJSON_AddNumberToObject(params, "historyLength", history_length);
    return finish(r);
}

int a2a_list_find(const char *json, size_t len, const char *expect_id, const char *message_id,
                  char **task_id, int *code, char *err, size_t errsz) {
    *task_id = NULL;
    *code = 0;
    a2a_rpc probe;
    if (a2a_rpc_parse(json, len, expect_id, &probe, err, errsz) == 0 && probe.is_error) {
        *code = probe.code;
        seterr(err, errsz, "error %d", probe.code);
        a2a_rpc_free(&probe);
        return -1;
    }
    if (probe.res.kind) a2a_rpc_free(&probe);
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    const cJSON *tasks = arr(res, "tasks"), *t;
    if (!tasks) {
        seterr(err, errsz, "no tasks list in the ListTasks response");
        cJSON_Delete(root);
        return -1;
    }
    int rc = 1;
    cJSON_ArrayForEach(t, tasks) {
        const char *id = nstr(t, "id");
        const cJSON *h = arr(t, "history"), *m;
        cJSON_ArrayForEach(m, h) {
            const char *mid = str(m, "messageId");
            if (id && mid && message_id && !strcmp(mid, message_id)) {
                *task_id = strdup(id);
                rc = *task_id ? 0 : -1;
                goto out;
            }
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- responses ---------------------------------------------------------- */

static void sb_line(sbuf *b) {
    if (b->len && b->p[b->len - 1] != '\n') sbuf_putc(b, '\n');
}

void a2a_media_free(a2a_media *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nfiles; i++) {
        free(m->files[i].name);
        free(m->files[i].mime);
        free(m->files[i].url);
        free(m->files[i].data);
    }
    free(m->files);
    for (size_t i = 0; m->choices && m->choices[i]; i++)
        free(m->choices[i]);
    free(m->choices);
    memset(m, 0, sizeof *m);
}

int a2a_media_empty(const a2a_media *m) {
    return !m || (!m->nfiles && !m->choices);
}

/* Decodes standard or URL-safe base64, whitespace and missing padding
 * allowed. malloc()ed bytes in *out, or -1 when it is not base64. */
static int b64_decode(const char *s, unsigned char **out, size_t *outlen) {
    size_t n = strlen(s);
    *out = NULL;
    *outlen = 0;
    if (n > (size_t)INT32_MAX - 4) return -1;
    char *clean = malloc(n + 4);
    if (!clean) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
        clean[k++] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    while (k % 4)
        clean[k++] = '=';
    size_t pad = 0;
    while (pad < 2 && k > pad && clean[k - 1 - pad] == '=')
        pad++;
    unsigned char *buf = malloc(k / 4 * 3 + 1);
    int r = buf ? EVP_DecodeBlock(buf, (const unsigned char *)clean, (int)k) : -1;
    free(clean);
    if (r < 0 || (size_t)r < pad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = (size_t)r - pad; /* EVP_DecodeBlock counts padding as zero bytes */
    return 0;
}

/* The choices of a data part {"choices": ["yes", "no"]}, or NULL. */
static char **choices_of(const cJSON *data) {
    const cJSON *list = arr(data, "choices"), *c;
    if (!list) return NULL;
    char **v = calloc(A2A_MAX_CHOICES + 1, sizeof *v);
    size_t n = 0;
    cJSON_ArrayForEach(c, list) {
        if (!v || n >= A2A_MAX_CHOICES) break;
        if (!cJSON_IsString(c) || !c->valuestring || !*c->valuestring) continue;
        if (strlen(c->valuestring) > A2A_CHOICE_MAX) continue;
        if (!(v[n] = strdup(c->valuestring))) break;
        n++;
    }
    if (!n) {
        free(v);
        return NULL;
    }
    return v;
}

/* A data part as a fenced JSON block: indented by two spaces, cut at a
 * line end before A2A_DATA_SHOWN bytes. */
static void data_block(sbuf *b, const cJSON *data) {
    char *j = cJSON_Print(data);
    if (!j) return;
    sbuf o = {0};
    /* cJSON indents with tabs and puts one after ':'; strings never hold
     * a raw tab (it is escaped). */
    for (const char *q = j; *q; q++) {
        if (*q != '\t')
            sbuf_putc(&o, *q);
        else if (q > j && q[-1] == ':')
            sbuf_putc(&o, ' ');
        else
            sbuf_puts(&o, "  ");
    }
    free(j);
    if (o.failed || !o.p) {
        sbuf_free(&o);
        return;
    }
    sb_line(b);
    sbuf_puts(b, "```json\n");
    if (o.len > A2A_DATA_SHOWN) {
        size_t k = A2A_DATA_SHOWN;
        while (k > A2A_DATA_SHOWN / 2 && o.p[k] != '\n')
            k--;
        if (o.p[k] != '\n') /* one long line: cut on a UTF-8 boundary */
            for (k = A2A_DATA_SHOWN; k > 0 && ((unsigned char)o.p[k] & 0xC0) == 0x80; k--)
                ;
        sbuf_putn(b, o.p, k);
        sbuf_puts(b, "\n...");
    } else {
        sbuf_putn(b, o.p, o.len);
    }
    sbuf_puts(b, "\n```");
    sbuf_free(&o);
}

static void add_file(a2a_media *m, const cJSON *p, const cJSON *file, const char *b64,
                     const char *url) {
    if (m->nfiles >= A2A_MAX_FILES) return;
    a2a_file *v = realloc(m->files, (m->nfiles + 1) * sizeof *v);
    if (!v) return;
    m->files = v;
    a2a_file *f = &v[m->nfiles];
    memset(f, 0, sizeof *f);
    f->name = xstrdup(file ? nstr(file, "name") : nstr(p, "filename"));
    f->mime = xstrdup(file ? nstr(file, "mimeType") : nstr(p, "mediaType"));
    if (b64) {
        if (b64_decode(b64, &f->data, &f->len)) {
            f->dropped = 1;
            f->len = strlen(b64) / 4 * 3;
        }
    } else {
        f->url = xstrdup(url);
    }
    m->nfiles++;
}

/* Text of a parts array: text parts concatenated (streamed chunks are
 * stored as extra parts of one artifact, so no separator), data parts as
 * fenced JSON blocks (see data_block). File parts (1.0 raw / url, 0.3
 * file.bytes / file.uri) and a data part holding choices go to m. */
static char *parts_text(const cJSON *parts, a2a_media *m) {
    sbuf b = {0};
    const cJSON *p;
    int block = 0; /* the last part was a line of its own */
    cJSON_ArrayForEach(p, parts) {
        if (!cJSON_IsObject(p)) continue;
        const char *kind = str(p, "kind");
        const char *text = str(p, "text");
        if (text && (!kind || !strcmp(kind, "text"))) {
            if (block && *text) sb_line(&b);
            block = 0;
            sbuf_puts(&b, text);
            continue;
        }
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(p, "data");
        if (data && (!kind || !strcmp(kind, "data")) && !text) {
            char **ch = m && !m->choices ? choices_of(data) : NULL;
            if (ch) {
                m->choices = ch;
                continue;
            }
            data_block(&b, data);
            block = 1;
            continue;
        }
        const cJSON *file = obj(p, "file");
        const char *inline_b64 = file ? str(file, "bytes") : str(p, "raw");
        const char *url = file ? nstr(file, "uri") : nstr(p, "url");
        if (m && (inline_b64 || url)) add_file(m, p, file, inline_b64, url);
    }
    return sbuf_take(&b, NULL); /* "" for no text */
}

static int is_agent(const char *role) {
    return !role || !strcasecmp(role, "agent") || !strcasecmp(role, "ROLE_AGENT");
}

static void parse_message(const cJSON *m, a2a_result *r) {
    r->kind = A2A_R_MESSAGE;
    r->text = parts_text(arr(m, "parts"), &r->media);
    r->context_id = xstrdup(nstr(m, "contextId"));
    r->task_id = xstrdup(nstr(m, "taskId"));
    r->agent_role = is_agent(str(m, "role"));
}

static void parse_status(const cJSON *st, a2a_result *r) {
    r->state = a2a_state_parse(str(st, "state"));
    const cJSON *m = obj(st, "message");
    if (m) {
        char *t = parts_text(arr(m, "parts"), &r->status_media);
        if (t && *t)
            r->status_text = t;
        else
            free(t);
    }
}

static void parse_artifact(const cJSON *a, a2a_artifact *out) {
    out->id = strdup(nstr(a, "artifactId") ? nstr(a, "artifactId") : "");
    out->text = parts_text(arr(a, "parts"), &out->media);
}

static void parse_task(const cJSON *t, a2a_result *r) {
    r->kind = A2A_R_TASK;
    r->task_id = xstrdup(nstr(t, "id"));
    r->context_id = xstrdup(nstr(t, "contextId"));
    parse_status(obj(t, "status"), r);
    if (r->state == A2A_TS_NONE) r->state = A2A_TS_UNKNOWN;
    const cJSON *arts = arr(t, "artifacts"), *a;
    int n = cJSON_GetArraySize(arts);
    if (n > 0) {
        r->arts = calloc((size_t)n, sizeof *r->arts);
        cJSON_ArrayForEach(a, arts) {
            if (cJSON_IsObject(a) && r->arts) parse_artifact(a, &r->arts[r->narts++]);
        }
    }
    const cJSON *h = arr(t, "history");
    for (int i = cJSON_GetArraySize(h) - 1; i >= 0; i--) {
        const cJSON *m = cJSON_GetArrayItem(h, i);
        const char *role = str(m, "role");
        if (cJSON_IsObject(m) && role && is_agent(role)) {
            a2a_media md = {0};
            char *txt = parts_text(arr(m, "parts"), &md);
            if ((txt && *txt) || !a2a_media_empty(&md)) {
                r->history_text = txt;
                r->history_media = md;
                break;
            }
            free(txt);
            a2a_media_free(&md);
        }
    }
}

static void parse_status_update(const cJSON *u, a2a_result *r) {
    r->kind = A2A_R_STATUS;
    r->task_id = xstrdup(nstr(u, "taskId"));
    r->context_id = xstrdup(nstr(u, "contextId"));
    parse_status(obj(u, "status"), r);
    if (r->state == A2A_TS_NONE) r->state = A2A_TS_UNKNOWN;
    r->final = flag(u, "final");
}

static void parse_artifact_update(const cJSON *u, a2a_result *r) {
    r->kind = A2A_R_ARTIFACT;
    r->task_id = xstrdup(nstr(u, "taskId"));
    r->context_id = xstrdup(nstr(u, "contextId"));
    const cJSON *a = obj(u, "artifact");
    r->arts = calloc(1, sizeof *r->arts);
    if (r->arts) {
        parse_artifact(a, &r->arts[0]);
        r->narts = 1;
    }
    r->append = flag(u, "append");
    r->last_chunk = flag(u, "lastChunk");
}

/* Discriminates on 0.3 `kind`, then the 1.0 wrapper key, then on shape. */
static int parse_result(const cJSON *res, a2a_result *r) {
    if (!cJSON_IsObject(res)) return -1;
    const char *kind = str(res, "kind");
    if (kind) {
        if (!strcmp(kind, "message")) return parse_message(res, r), 0;
        if (!strcmp(kind, "task")) return parse_task(res, r), 0;
        if (!strcmp(kind, "status-update")) return parse_status_update(res, r), 0;
        if (!strcmp(kind, "artifact-update")) return parse_artifact_update(res, r), 0;
        return -1;
    }
    const cJSON *w;
    if ((w = obj(res, "task"))) return parse_task(w, r), 0;
    if ((w = obj(res, "message"))) return parse_message(w, r), 0;
    if ((w = obj(res, "statusUpdate"))) return parse_status_update(w, r), 0;
    if ((w = obj(res, "artifactUpdate"))) return parse_artifact_update(w, r), 0;
    if (has(res, "id") && has(res, "status")) return parse_task(res, r), 0;
    if (has(res, "parts") || has(res, "role")) return parse_message(res, r), 0;
    if (has(res, "artifact")) return parse_artifact_update(res, r), 0;
    if (has(res, "status")) return parse_status_update(res, r), 0;
    return -1;
}

void a2a_result_free(a2a_result *r) {
    if (!r) return;
    free(r->task_id);
    free(r->context_id);
    free(r->status_text);
    free(r->text);
    for (size_t i = 0; i < r->narts; i++) {
        free(r->arts[i].id);
        free(r->arts[i].text);
        a2a_media_free(&r->arts[i].media);
    }
    free(r->arts);
    free(r->history_text);
    a2a_media_free(&r->media);
    a2a_media_free(&r->status_media);
    a2a_media_free(&r->history_media);
    memset(r, 0, sizeof *r);
}

void a2a_rpc_free(a2a_rpc *r) {
    if (!r) return;
    free(r->message);
    free(r->reason);
    a2a_result_free(&r->res);
    memset(r, 0, sizeof *r);
}

int a2a_rpc_parse(const char *json, size_t len, const char *expect_id, a2a_rpc *out, char *err,
                  size_t errsz) {
    memset(out, 0, sizeof *out);
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!root) {
        seterr(err, errsz, "response is not JSON");
        return -1;
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        seterr(err, errsz, "response is not a JSON object");
        goto out;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (expect_id && id && !cJSON_IsNull(id)) {
        char num[64];
        const char *got = NULL;
        if (cJSON_IsString(id)) {
            got = id->valuestring;
        } else if (cJSON_IsNumber(id)) {
            snprintf(num, sizeof num, "%.17g", id->valuedouble);
            got = num;
        }
        if (!got || strcmp(got, expect_id)) {
            seterr(err, errsz, "JSON-RPC id mismatch");
            goto out;
        }
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (e && !cJSON_IsNull(e)) {
        if (!cJSON_IsObject(e)) {
            seterr(err, errsz, "JSON-RPC error is not an object");
            goto out;
        }
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
        out->is_error = 1;
        /* A code outside int (or fractional) is hostile: an internal error. */
        double cv = cJSON_IsNumber(code) ? code->valuedouble : 0;
        out->code = cJSON_IsNumber(code) && cv >= -2147483648.0 && cv <= 2147483647.0 &&
                            cv == (double)(int)cv
                        ? (int)cv
                        : A2A_ERR_INTERNAL;
        out->message = xstrdup(str(e, "message"));
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "data"), *d;
        if (cJSON_IsArray(data)) {
            cJSON_ArrayForEach(d, data) {
                const char *reason = str(d, "reason");
                if (reason) {
                    out->reason = strdup(reason);
                    break;
                }
            }
        }
        rc = 0;
        goto out;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (!res) {
        seterr(err, errsz, "neither result nor error in the response");
        goto out;
    }
    if (parse_result(res, &out->res)) {
        a2a_result_free(&out->res);
        seterr(err, errsz, "unrecognised result shape");
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) a2a_rpc_free(out);
    return rc;
}

/* ---- tracking ----------------------------------------------------------- */

static void set_str(char **dst, const char *src) {
    if (!src) return;
    char *c = strdup(src);
    if (!c) return;
    free(*dst);
    *dst = c;
}

/* Frees a media of the track, giving its inline bytes back to the cap. */
static void media_drop(a2a_track *t, a2a_media *m) {
    for (size_t i = 0; i < m->nfiles; i++)
        if (m->files[i].data)
            t->file_bytes -= m->files[i].len <= t->file_bytes ? m->files[i].len : t->file_bytes;
    a2a_media_free(m);
}

/* Copies src's files onto dst's (inline bytes only while the track's
 * files stay under max_text) and its choices over dst's. */
static void media_add(a2a_track *t, a2a_media *dst, const a2a_media *src) {
    for (size_t i = 0; i < src->nfiles && dst->nfiles < A2A_MAX_FILES; i++) {
        const a2a_file *f = &src->files[i];
        a2a_file *v = realloc(dst->files, (dst->nfiles + 1) * sizeof *v);
        if (!v) return;
        dst->files = v;
        a2a_file *c = &v[dst->nfiles++];
        memset(c, 0, sizeof *c);
        c->name = xstrdup(f->name);
        c->mime = xstrdup(f->mime);
        c->url = xstrdup(f->url);
        c->len = f->len;
        c->dropped = f->dropped;
        if (!f->data) continue;
        size_t room = t->file_bytes < t->max_text ? t->max_text - t->file_bytes : 0;
        if ((t->max_text && f->len > room) || !(c->data = malloc(f->len ? f->len : 1))) {
            c->dropped = 1;
            continue;
        }
        memcpy(c->data, f->data, f->len);
        t->file_bytes += f->len;
    }
    if (src->choices) {
        size_t n = 0;
        while (src->choices[n])
            n++;
        char **v = calloc(n + 1, sizeof *v);
        for (size_t i = 0; v && i < n; i++)
            v[i] = strdup(src->choices[i]);
        if (!v) return;
        for (size_t i = 0; dst->choices && dst->choices[i]; i++)
            free(dst->choices[i]);
        free(dst->choices);
        dst->choices = v;
    }
}

static void media_set(a2a_track *t, a2a_media *dst, const a2a_media *src) {
    media_drop(t, dst);
    media_add(t, dst, src);
}

static void arts_clear(a2a_track *t) {
    for (size_t i = 0; i < t->narts; i++) {
        media_drop(t, &t->arts[i].media);
        t->text_bytes -= t->arts[i].len <= t->text_bytes ? t->arts[i].len : t->text_bytes;
        free(t->arts[i].id);
        free(t->arts[i].text);
    }
    free(t->arts);
    t->arts = NULL;
    t->narts = 0;
}

/* How much of n more bytes the cap admits; marks the track cut. */
static size_t admit(a2a_track *t, size_t n) {
    if (!t->max_text) return n;
    size_t room = t->text_bytes < t->max_text ? t->max_text - t->text_bytes : 0;
    if (n > room) {
        t->cut = 1;
        return room;
    }
    return n;
}

/* Appends n bytes to an artifact's text, growing it geometrically. */
static int art_add(a2a_track *t, a2a_artifact *x, const char *s, size_t n) {
    n = admit(t, n);
    if (x->len + n + 1 > x->cap) {
        size_t c = x->cap ? x->cap : 64;
        while (c < x->len + n + 1)
            c *= 2;
        char *p = realloc(x->text, c);
        if (!p) return -1;
        x->text = p;
        x->cap = c;
    }
    if (n) memcpy(x->text + x->len, s, n);
    x->len += n;
    x->text[x->len] = 0;
    t->text_bytes += n;
    return 0;
}

static void art_upsert(a2a_track *t, const a2a_artifact *a, int append) {
    const char *id = a->id ? a->id : "";
    const char *txt = a->text ? a->text : "";
    size_t n = strlen(txt);
    for (size_t i = 0; i < t->narts; i++) {
        a2a_artifact *x = &t->arts[i];
        if (strcmp(x->id, id)) continue;
        if (!append) {
            t->text_bytes -= x->len <= t->text_bytes ? x->len : t->text_bytes;
            x->len = 0;
            x->text[0] = 0;
            media_drop(t, &x->media);
        }
        art_add(t, x, txt, n);
        media_add(t, &x->media, &a->media);
        return;
    }
    if (t->narts >= A2A_MAX_ARTIFACTS) {
        t->cut = 1;
        return;
    }
    a2a_artifact *nv = realloc(t->arts, (t->narts + 1) * sizeof *nv);
    if (!nv) return;
    t->arts = nv;
    a2a_artifact x = {.id = strdup(id)};
    if (!x.id || art_add(t, &x, txt, n)) {
        free(x.id);
        free(x.text);
        return;
    }
    media_add(t, &x.media, &a->media);
    nv[t->narts++] = x;
}

/* A message's text under the cap. */
static void set_capped(a2a_track *t, char **dst, const char *src) {
    size_t n = strlen(src);
    size_t k = admit(t, n);
    char *c = malloc(k + 1);
    if (!c) return;
    memcpy(c, src, k);
    c[k] = 0;
    free(*dst);
    *dst = c;
    t->text_bytes += k;
}

void a2a_track_apply(a2a_track *t, const a2a_result *r) {
    t->updates++;
    switch (r->kind) {
    case A2A_R_MESSAGE:
        if (t->task_id && r->task_id && !strcmp(t->task_id, r->task_id)) {
            /* an agent message inside a task: the latest thing it said */
            if (r->agent_role && ((r->text && *r->text) || !a2a_media_empty(&r->media))) {
                set_str(&t->history_text, r->text);
                media_set(t, &t->history_media, &r->media);
            }
            break;
        }
        t->got_message = 1;
        t->ended = 1;
        set_capped(t, &t->message_text, r->text ? r->text : "");
        media_set(t, &t->message_media, &r->media);
        set_str(&t->context_id, r->context_id);
        break;
    case A2A_R_TASK:
        set_str(&t->task_id, r->task_id);
        set_str(&t->context_id, r->context_id);
        t->state = r->state;
        free(t->status_text);
        t->status_text = r->status_text ? strdup(r->status_text) : NULL;
        media_set(t, &t->status_media, &r->status_media);
        arts_clear(t);
        for (size_t i = 0; i < r->narts; i++)
            art_upsert(t, &r->arts[i], 0);
        if (r->history_text) {
            set_str(&t->history_text, r->history_text);
            media_set(t, &t->history_media, &r->history_media);
        }
        break;
    case A2A_R_STATUS:
        if (!t->task_id) set_str(&t->task_id, r->task_id);
        if (!t->context_id) set_str(&t->context_id, r->context_id);
        t->state = r->state;
        free(t->status_text);
        t->status_text = r->status_text ? strdup(r->status_text) : NULL;
        media_set(t, &t->status_media, &r->status_media);
        if (r->final) t->ended = 1;
        break;
    case A2A_R_ARTIFACT:
        if (!t->task_id) set_str(&t->task_id, r->task_id);
        if (!t->context_id) set_str(&t->context_id, r->context_id);
        for (size_t i = 0; i < r->narts; i++)
            art_upsert(t, &r->arts[i], r->append);
        break;
    case A2A_R_NONE:
        t->updates--;
        break;
    }
}

void a2a_track_free(a2a_track *t) {
    if (!t) return;
    free(t->task_id);
    free(t->context_id);
    free(t->status_text);
    arts_clear(t);
    free(t->history_text);
    free(t->message_text);
    a2a_media_free(&t->message_media);
    a2a_media_free(&t->status_media);
    a2a_media_free(&t->history_media);
    size_t cap = t->max_text;
    memset(t, 0, sizeof *t);
    t->max_text = cap;
}

char *a2a_track_artifact_text(const a2a_track *t) {
    sbuf b = {0};
    for (size_t i = 0; i < t->narts; i++) {
        const char *s = t->arts[i].text;
        if (!s || !*s) continue;
        if (b.len) sbuf_putc(&b, '\n');
        sbuf_puts(&b, s);
    }
    if (!b.len) {
        sbuf_free(&b);
        return NULL;
    }
    return sbuf_take(&b, NULL);
}

int a2a_track_done(const a2a_track *t) {
    return t->got_message || t->ended || a2a_state_terminal(t->state) ||
           a2a_state_interrupted(t->state);
}

/* ---- the HTTP+JSON (REST) binding --------------------------------------- */

/* Appends s percent-encoded as one path segment (or query value). */
static void seg(char *out, size_t sz, const char *s) {
    size_t n = strlen(out);
    for (; *s && n + 4 < sz; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            n += (size_t)snprintf(out + n, sz - n, "%%%02X", ch);
        }
    }
    out[n] = 0;
}

/* The end of a REST request: *path set, or -1 with *body freed. */
static int route_done(int ok, const char *p, char **path, char **body) {
    if (!ok) {
        free(*body);
        *body = NULL;
        return -1;
    }
    *path = strdup(p);
    return 0;
}

/* Appends the route of a task operation (both bindings): /tasks/{id}
 * with ?historyLength for a poll, :cancel or :subscribe with body {}. */
static int task_route(char *p, size_t sz, a2a_op op, const char *id, const cJSON *params,
                      char **body) {
    if (!id || strlen(id) > 512) return -1;
    strcat(p, "/tasks/");
    seg(p, sz, id);
    if (op == A2A_OP_GET) {
        const cJSON *hl = cJSON_GetObjectItem(params, "historyLength");
        if (cJSON_IsNumber(hl))
            snprintf(p + strlen(p), sz - strlen(p), "?historyLength=%d", hl->valueint);
    } else {
        strcat(p, op == A2A_OP_CANCEL ? ":cancel" : ":subscribe");
        *body = strdup("{}");
    }
    return 0;
}

int a2a_rest_request(a2a_op op, const char *rpc_body, char **path, char **body) {
    *path = *body = NULL;
    cJSON *r = rpc_body ? cJSON_Parse(rpc_body) : NULL;
    cJSON *params = cJSON_GetObjectItem(r, "params");
    if (!cJSON_IsObject(params)) {
        cJSON_Delete(r);
        return -1;
    }
    const char *tenant = nstr(params, "tenant");
    const char *id = nstr(params, "id");
    /* bounded ids: even all percent-encoded, the path fits */
    char p[4096] = "";
    if (tenant && strlen(tenant) > 256) {
        cJSON_Delete(r);
        return -1;
    }
    if (tenant) {
        strcat(p, "/");
        seg(p, sizeof p, tenant);
    }
    int ok = 1;
    switch (op) {
    case A2A_OP_SEND:
    case A2A_OP_STREAM:
        strcat(p, op == A2A_OP_SEND ? "/message:send" : "/message:stream");
        *body = cJSON_PrintUnformatted(params);
        break;
    case A2A_OP_GET:
    case A2A_OP_CANCEL:
    case A2A_OP_SUBSCRIBE:
        ok = task_route(p, sizeof p, op, id, params, body) == 0;
        break;
    default:
        ok = 0;
    }
    cJSON_Delete(r);
    return route_done(ok, p, path, body);
}

/* ---- the 0.3 HTTP+JSON binding ----------------------------------------- */

/* A 0.3 JSON-RPC part as a 0.3 proto part. */
static cJSON *part03_to_proto(const cJSON *p) {
    cJSON *o = cJSON_CreateObject();
    const char *text = str(p, "text");
    const cJSON *f = obj(p, "file");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(p, "data");
    if (text) {
        cJSON_AddStringToObject(o, "text", text);
    } else if (f) {
        cJSON *fo = cJSON_AddObjectToObject(o, "file");
        const char *b = str(f, "bytes"), *u = str(f, "uri"), *mt = str(f, "mimeType");
        if (b) cJSON_AddStringToObject(fo, "fileWithBytes", b);
        if (u) cJSON_AddStringToObject(fo, "fileWithUri", u);
        if (mt) cJSON_AddStringToObject(fo, "mimeType", mt);
    } else if (d) {
        cJSON_AddItemToObject(cJSON_AddObjectToObject(o, "data"), "data", cJSON_Duplicate(d, 1));
    }
    return o;
}

int a2a_rest03_request(a2a_op op, const char *rpc_body, char **path, char **body) {
    *path = *body = NULL;
    cJSON *r = rpc_body ? cJSON_Parse(rpc_body) : NULL;
    cJSON *params = cJSON_GetObjectItem(r, "params");
    if (!cJSON_IsObject(params)) {
        cJSON_Delete(r);
        return -1;
    }
    char p[2048] = "/v1";
    int ok = 1;
    if (op == A2A_OP_SEND || op == A2A_OP_STREAM) {
        strcat(p, op == A2A_OP_SEND ? "/message:send" : "/message:stream");
        const cJSON *m = obj(params, "message"), *x;
        cJSON *b = cJSON_CreateObject();
        cJSON *rq = cJSON_AddObjectToObject(b, "request");
        static const char *const ids[] = {"messageId", "contextId", "taskId"};
        for (int i = 0; i < 3; i++)
            if (nstr(m, ids[i])) cJSON_AddStringToObject(rq, ids[i], nstr(m, ids[i]));
        cJSON_AddStringToObject(rq, "role", "ROLE_USER");
        cJSON *content = cJSON_AddArrayToObject(rq, "content");
        cJSON_ArrayForEach(x, arr(m, "parts")) cJSON_AddItemToArray(content, part03_to_proto(x));
        const cJSON *cfg = obj(params, "configuration");
        if (cfg) cJSON_AddItemToObject(b, "configuration", cJSON_Duplicate(cfg, 1));
        *body = cJSON_PrintUnformatted(b);
        cJSON_Delete(b);
    } else if (op == A2A_OP_GET || op == A2A_OP_CANCEL || op == A2A_OP_SUBSCRIBE) {
        ok = task_route(p, sizeof p, op, nstr(params, "id"), params, body) == 0;
    } else {
        ok = 0;
    }
    cJSON_Delete(r);
    return route_done(ok, p, path, body);
}

static void rename_item(cJSON *o, const char *from, const char *to) {
    cJSON *x = cJSON_DetachItemFromObjectCaseSensitive(o, from);
    if (x) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, to);
        cJSON_AddItemToObject(o, to, x);
    }
}

/* 0.3 proto parts -> 1.0 parts, in place. */
static void norm03_parts(cJSON *parts) {
    cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        cJSON *f = cJSON_GetObjectItemCaseSensitive(p, "file");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(p, "data");
        if (cJSON_IsObject(f)) {
            cJSON *b = cJSON_DetachItemFromObjectCaseSensitive(f, "fileWithBytes");
            cJSON *u = cJSON_DetachItemFromObjectCaseSensitive(f, "fileWithUri");
            cJSON *mt = cJSON_DetachItemFromObjectCaseSensitive(f, "mimeType");
            cJSON_DeleteItemFromObjectCaseSensitive(p, "file");
            if (b) cJSON_AddItemToObject(p, "raw", b);
            if (u) cJSON_AddItemToObject(p, "url", u);
            if (mt) cJSON_AddItemToObject(p, "mediaType", mt);
        } else if (cJSON_IsObject(d) && cJSON_GetObjectItemCaseSensitive(d, "data")) {
            cJSON *inner = cJSON_DetachItemFromObjectCaseSensitive(d, "data");
            cJSON_ReplaceItemInObjectCaseSensitive(p, "data", inner);
        }
    }
}

static void norm03_message(cJSON *m) {
    if (!cJSON_IsObject(m)) return;
    rename_item(m, "content", "parts");
    norm03_parts(cJSON_GetObjectItemCaseSensitive(m, "parts"));
}

static void norm03_status(cJSON *st) {
    if (!cJSON_IsObject(st)) return;
    rename_item(st, "update", "message");
    norm03_message(cJSON_GetObjectItemCaseSensitive(st, "message"));
}

static void norm03_task(cJSON *t) {
    cJSON *x;
    if (!cJSON_IsObject(t)) return;
    norm03_status(cJSON_GetObjectItemCaseSensitive(t, "status"));
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(t, "artifacts"))
        norm03_parts(cJSON_GetObjectItemCaseSensitive(x, "parts"));
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(t, "history")) norm03_message(x);
}

char *a2a_rest03_normalize(const char *json, size_t len) {
    cJSON *r = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return NULL;
    }
    rename_item(r, "msg", "message");
    cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "message"))) norm03_message(x);
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "task"))) norm03_task(x);
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "statusUpdate")))
        norm03_status(cJSON_GetObjectItemCaseSensitive(x, "status"));
    if ((x = cJSON_GetObjectItemCaseSensitive(r, "artifactUpdate")))
        norm03_parts(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(x, "artifact"), "parts"));
    if (has(r, "id") && has(r, "status")) norm03_task(r); /* a bare Task (GetTask) */
    char *out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return out;
}

int a2a_rest_push_request(int v03, const char *rpc_body, char **path, char **body) {
    *path = *body = NULL;
    cJSON *r = rpc_body ? cJSON_Parse(rpc_body) : NULL;
    cJSON *params = cJSON_GetObjectItem(r, "params");
    const char *id = nstr(params, "taskId");
    const char *tenant = nstr(params, "tenant");
    if (!id || strlen(id) > 512 || (tenant && strlen(tenant) > 256)) {
        cJSON_Delete(r);
        return -1;
    }
    char p[4096] = "";
    if (v03) {
        strcat(p, "/v1");
    } else if (tenant) {
        strcat(p, "/");
        seg(p, sizeof p, tenant);
    }
    strcat(p, "/tasks/");
    seg(p, sizeof p, id);
    strcat(p, "/pushNotificationConfigs");
    cJSON *b;
    if (v03) {
        b = cJSON_CreateObject();
        char name[600];
        snprintf(name, sizeof name, "tasks/%s/pushNotificationConfigs/", id);
        cJSON_AddStringToObject(b, "name", name);
        cJSON *cfg = cJSON_DetachItemFromObjectCaseSensitive(params, "pushNotificationConfig");
        if (cfg) cJSON_AddItemToObject(b, "pushNotificationConfig", cfg);
    } else {
        b = cJSON_DetachItemFromObjectCaseSensitive(r, "params");
        cJSON_DeleteItemFromObjectCaseSensitive(b, "tenant");
    }
    *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    cJSON_Delete(r);
    *path = strdup(p);
    return 0;
}

char *a2a_rest_list_path(const char *context_id, const char *tenant, int history_length) {
    char p[4096] = "";
    if (tenant && strlen(tenant) > 256) return NULL;
    if (tenant && *tenant) {
        strcat(p, "/");
        seg(p, sizeof p, tenant);
    }
    snprintf(p + strlen(p), sizeof p - strlen(p), "/tasks?historyLength=%d", history_length);
    if (context_id && *context_id && strlen(context_id) < 512) {
        strcat(p, "&contextId=");
        seg(p, sizeof p, context_id);
    }
    return strdup(p);
}

char *a2a_rest_wrap(const char *json, size_t len) {
    static const char pre[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":";
    char *out = malloc(sizeof pre + len + 2);
    if (!out) return NULL;
    memcpy(out, pre, sizeof pre - 1);
    memcpy(out + sizeof pre - 1, json, len);
    memcpy(out + sizeof pre - 1 + len, "}", 2);
    return out;
}

int a2a_rest_error(const char *json, size_t len, int *code, char **msg) {
    static const struct {
        const char *reason;
        int code;
    } map[] = {
        {"TASK_NOT_FOUND", A2A_ERR_TASK_NOT_FOUND},
        {"TASK_NOT_CANCELABLE", A2A_ERR_TASK_NOT_CANCELABLE},
        {"PUSH_NOTIFICATION_NOT_SUPPORTED", A2A_ERR_PUSH_NOT_SUPPORTED},
        {"UNSUPPORTED_OPERATION", A2A_ERR_UNSUPPORTED_OPERATION},
        {"CONTENT_TYPE_NOT_SUPPORTED", A2A_ERR_CONTENT_TYPE},
        {"INVALID_AGENT_RESPONSE", A2A_ERR_INVALID_AGENT_RESPONSE},
        {"EXTENDED_AGENT_CARD_NOT_CONFIGURED", A2A_ERR_EXTENDED_CARD},
        {"EXTENSION_SUPPORT_REQUIRED", A2A_ERR_EXTENSION_REQUIRED},
        {"VERSION_NOT_SUPPORTED", A2A_ERR_VERSION_NOT_SUPPORTED},
        {"INVALID_PARAMS", A2A_ERR_INVALID_PARAMS},
    };
    *code = 0;
    *msg = NULL;
    cJSON *r = json ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *c03 = cJSON_GetObjectItem(r, "code");
    if (cJSON_IsNumber(c03) && c03->valuedouble <= -32001 && c03->valuedouble >= -32768) {
        /* the 0.3 binding: the JSON-RPC error object itself */
        *code = (int)c03->valuedouble;
        *msg = xstrdup(str(r, "message"));
        cJSON_Delete(r);
        return 0;
    }
    const cJSON *e = cJSON_GetObjectItem(r, "error");
    const cJSON *d;
    int found = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(e, "details")) {
        const char *reason = nstr(d, "reason");
        for (size_t i = 0; reason && !found && i < sizeof map / sizeof map[0]; i++) {
            if (!strcmp(reason, map[i].reason)) {
                *code = map[i].code;
                found = 1;
            }
        }
        if (found) break;
    }
    if (found) *msg = xstrdup(nstr(e, "message"));
    cJSON_Delete(r);
    return found ? 0 : -1;
}
