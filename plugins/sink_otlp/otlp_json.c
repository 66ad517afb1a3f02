/* OTLP JSON builders, sampler and attribute-list parsing. */
#include "otlp_json.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool otlp_valid_id(const char *s, size_t n) {
    if (!s || strlen(s) != n) return false;
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i])) return false;
        if (s[i] != '0') nonzero = true;
    }
    return nonzero;
}

bool otlp_is_error(const rd_event *ev) {
    if (ev->type == RD_EV_SEND_FAILED) return true;
    if (ev->failure_class && *ev->failure_class) return true;
    const char *s = ev->status;
    return s && (!strcmp(s, "failed") || !strcmp(s, "send_failed") || !strcmp(s, "abandoned"));
}

bool otlp_sampled(const char *trace_id, double ratio) {
    if (!(ratio > 0)) return false; /* also NaN */
    if (ratio >= 1) return true;
    if (!trace_id || strlen(trace_id) != 32) return false;
    uint64_t r = 0;
    for (int i = 32 - 14; i < 32; i++) {
        char c = trace_id[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0) return false;
        r = (r << 4) | (uint64_t)v;
    }
    uint64_t threshold = (uint64_t)(ratio * 72057594037927936.0); /* 2^56 */
    return r < threshold;
}

static size_t sl(const char *s) {
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

static void lower_copy(char *dst, const char *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = 0;
}

otlp_trace *otlp_trace_new(const rd_event *ev, const char *error) {
    if (!otlp_valid_id(ev->trace_id, 32) || !otlp_valid_id(ev->span_id, 16)) return NULL;
    size_t n = sizeof(otlp_trace) + sl(ev->persona) + sl(ev->status) + sl(ev->failure_class) +
               sl(ev->transport) + sl(ev->backend) + sl(ev->chat_id_hash) + sl(error);
    const char *caller = RD_HAS(ev, caller) ? ev->caller : NULL;
    /* A delivery or an answer is correlated by its inbound task id. */
    const char *corr = ev->correlation_id && strcasecmp(ev->correlation_id, ev->trace_id)
                           ? ev->correlation_id
                           : NULL;
    n += sl(caller) + sl(corr);
    otlp_trace *t = calloc(1, n);
    if (!t) return NULL;
    char *p = (char *)(t + 1);
    t->type = ev->type;
    lower_copy(t->trace_id, ev->trace_id, 32);
    lower_copy(t->span_id, ev->span_id, 16);
    if (otlp_valid_id(ev->backend_span_id, 16))
        lower_copy(t->backend_span_id, ev->backend_span_id, 16);
    t->persona = put(&p, ev->persona);
    t->status = put(&p, ev->status);
    t->failure_class = put(&p, ev->failure_class && *ev->failure_class ? ev->failure_class : NULL);
    t->transport = put(&p, ev->transport);
    t->backend = put(&p, ev->backend);
    t->chat_id_hash = put(&p, ev->chat_id_hash);
    t->caller = put(&p, caller);
    t->corr = put(&p, corr);
    t->error = put(&p, error);
    t->update_id = ev->update_id;
    t->latency_ms = ev->latency_ms;
    t->ts = ev->ts_ns;
    t->t_received = ev->t_received_ns;
    t->t_routed = ev->t_routed_ns;
    t->t_backend_start = ev->t_backend_start_ns;
    t->t_backend_end = ev->t_backend_end_ns;
    t->t_send_start = ev->t_send_start_ns;
    t->t_send_end = ev->t_send_end_ns;
    t->nspans = 2; /* message and receive */
    if (t->t_routed && (t->t_backend_start || t->t_send_start)) t->nspans++;
    if (t->t_backend_start && t->backend_span_id[0]) t->nspans++;
    if (t->t_send_start) t->nspans++;
    return t;
}

void otlp_trace_free(otlp_trace *t) {
    free(t);
}

/* ---- key=value lists ----------------------------------------------------- */

void otlp_kv_free(otlp_kv *kv) {
    for (size_t i = 0; i < kv->n; i++) {
        free(kv->keys[i]);
        free(kv->vals[i]);
    }
    free(kv->keys);
    free(kv->vals);
    *kv = (otlp_kv){0};
}

const char *otlp_kv_get(const otlp_kv *kv, const char *key) {
    for (size_t i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) return kv->vals[i];
    return NULL;
}

int otlp_kv_set(otlp_kv *kv, const char *key, const char *val) {
    char *v = strdup(val ? val : "");
    if (!v) return -1;
    for (size_t i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) {
            free(kv->vals[i]);
            kv->vals[i] = v;
            return 0;
        }
    char *k = strdup(key);
    char **nk = realloc(kv->keys, (kv->n + 1) * sizeof *nk);
    if (nk) kv->keys = nk;
    char **nv = nk ? realloc(kv->vals, (kv->n + 1) * sizeof *nv) : NULL;
    if (nv) kv->vals = nv;
    if (!k || !nk || !nv) {
        free(k);
        free(v);
        return -1;
    }
    kv->keys[kv->n] = k;
    kv->vals[kv->n] = v;
    kv->n++;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Trims blanks and percent-decodes s[0, n) into a new string. */
static char *decode(const char *s, size_t n, bool pct) {
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (pct && s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

int otlp_kv_parse(otlp_kv *kv, const char *text) {
    int bad = 0;
    const char *p = text ? text : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        char *k = eq ? decode(p, (size_t)(eq - p), true) : NULL;
        char *v = eq ? decode(eq + 1, len - (size_t)(eq - p) - 1, true) : NULL;
        bool blank = true;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)p[i])) blank = false;
        if (k && v && *k) {
            otlp_kv_set(kv, k, v);
        } else if (!blank) {
            bad++;
        }
        free(k);
        free(v);
        p += len;
        if (*p == ',') p++;
    }
    return bad;
}

/* ---- JSON ------------------------------------------------------------------ */

static void attr_str(sbuf *b, bool *first, const char *key, const char *val) {
    if (!val) return;
    sbuf_puts(b, *first ? "{\"key\":" : ",{\"key\":");
    *first = false;
    sbuf_json_str(b, key);
    sbuf_puts(b, ",\"value\":{\"stringValue\":");
    sbuf_json_str(b, val);
    sbuf_puts(b, "}}");
}

static void attr_int(sbuf *b, bool *first, const char *key, int64_t val) {
    sbuf_puts(b, *first ? "{\"key\":" : ",{\"key\":");
    *first = false;
    sbuf_json_str(b, key);
    sbuf_printf(b, ",\"value\":{\"intValue\":\"%" PRId64 "\"}}", val);
}

static void attr_double(sbuf *b, bool *first, const char *key, double val) {
    if (!isfinite(val)) return;
    sbuf_puts(b, *first ? "{\"key\":" : ",{\"key\":");
    *first = false;
    sbuf_json_str(b, key);
    sbuf_printf(b, ",\"value\":{\"doubleValue\":%.3f}}", val);
}

void otlp_json_begin(sbuf *b, const otlp_kv *resource, const char *scope_version) {
    sbuf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    bool first = true;
    for (size_t i = 0; resource && i < resource->n; i++)
        attr_str(b, &first, resource->keys[i], resource->vals[i]);
    sbuf_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"routerd\"");
    if (scope_version) {
        sbuf_puts(b, ",\"version\":");
        sbuf_json_str(b, scope_version);
    }
    sbuf_puts(b, "},\"spans\":[");
}

void otlp_json_end(sbuf *b) {
    sbuf_puts(b, "]}]}]}");
}

typedef struct span_out {
    const char *name, *span_id, *parent;
    int kind;
    int64_t start, end;
    int status;
    const char *status_msg;
} span_out;

/* Opens a span object up to its attribute list. */
static void span_open(sbuf *b, const otlp_trace *t, const span_out *s, bool *first) {
    if (!*first) sbuf_putc(b, ',');
    *first = false;
    int64_t start = s->start, end = s->end < s->start ? s->start : s->end;
    sbuf_printf(b, "{\"traceId\":\"%s\",\"spanId\":\"%s\"", t->trace_id, s->span_id);
    if (s->parent) sbuf_printf(b, ",\"parentSpanId\":\"%s\"", s->parent);
    sbuf_puts(b, ",\"name\":");
    sbuf_json_str(b, s->name);
    sbuf_printf(
        b, ",\"kind\":%d,\"startTimeUnixNano\":\"%" PRId64 "\",\"endTimeUnixNano\":\"%" PRId64 "\"",
        s->kind, start, end);
    if (s->status != OTLP_STATUS_UNSET) {
        sbuf_printf(b, ",\"status\":{\"code\":%d", s->status);
        if (s->status_msg) {
            sbuf_puts(b, ",\"message\":");
            sbuf_json_str(b, s->status_msg);
        }
        sbuf_putc(b, '}');
    }
    sbuf_puts(b, ",\"attributes\":[");
}

static void span_close(sbuf *b) {
    sbuf_puts(b, "]}");
}

/* Child span ids: derived from the root id and the stage, so they are
 * stable and distinct (the backend span keeps the id the agent saw). */
static void child_id(const otlp_trace *t, int stage, char out[17]) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = t->span_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (uint64_t)stage) * 1099511628211ULL;
    for (;;) {
        h ^= h >> 29;
        if (!h) h = 1;
        snprintf(out, 17, "%016" PRIx64, h);
        if (strcmp(out, t->span_id) && strcmp(out, t->backend_span_id)) break;
        h = h * 1099511628211ULL + 1; /* never equal to the ids the core made */
    }
}

void otlp_json_trace(sbuf *b, const otlp_trace *t, const char *env, bool *first) {
    bool err = t->type == RD_EV_SEND_FAILED || t->failure_class ||
               (t->status && (!strcmp(t->status, "failed") || !strcmp(t->status, "send_failed") ||
                              !strcmp(t->status, "abandoned")));
    int64_t start = t->t_received ? t->t_received : t->ts;
    int64_t end = t->t_send_end ? t->t_send_end : t->ts;
    if (end < start) end = start;
    char msg[128];
    snprintf(msg, sizeof msg, "%s%s%s", t->status ? t->status : "failed",
             t->failure_class ? ": " : "", t->failure_class ? t->failure_class : "");

    span_out root = {.name = "message",
                     .span_id = t->span_id,
                     .kind = OTLP_KIND_SERVER,
                     .start = start,
                     .end = end,
                     .status = err ? OTLP_STATUS_ERROR : OTLP_STATUS_UNSET,
                     .status_msg = err ? msg : NULL};
    span_open(b, t, &root, first);
    bool a = true;
    attr_str(b, &a, "routerd.persona", t->persona);
    attr_str(b, &a, "routerd.env", env);
    attr_int(b, &a, "routerd.update_id", t->update_id);
    attr_str(b, &a, "routerd.status", t->status);
    attr_str(b, &a, "routerd.failure_class", t->failure_class);
    attr_str(b, &a, "routerd.transport", t->transport);
    attr_str(b, &a, "routerd.backend", t->backend);
    attr_str(b, &a, "routerd.chat_id_hash", t->chat_id_hash);
    attr_str(b, &a, "routerd.caller", t->caller);
    attr_str(b, &a, "routerd.correlation_id", t->corr);
    if (t->type != RD_EV_RECEIVED) attr_double(b, &a, "routerd.latency_ms", t->latency_ms);
    span_close(b);

    char id[17];
    /* receive: intake up to the routing decision (or the rejection). */
    child_id(t, 1, id);
    span_out rx = {.name = "receive",
                   .span_id = id,
                   .parent = t->span_id,
                   .kind = OTLP_KIND_INTERNAL,
                   .start = start,
                   .end = t->t_routed ? t->t_routed : end};
    span_open(b, t, &rx, first);
    a = true;
    attr_str(b, &a, "routerd.transport", t->transport);
    attr_int(b, &a, "routerd.update_id", t->update_id);
    span_close(b);

    /* route: queued until a worker hands it to the backend (or sends a
     * notice). */
    int64_t route_end = t->t_backend_start ? t->t_backend_start : t->t_send_start;
    if (t->t_routed && route_end) {
        child_id(t, 2, id);
        span_out rt = {.name = "route",
                       .span_id = id,
                       .parent = t->span_id,
                       .kind = OTLP_KIND_INTERNAL,
                       .start = t->t_routed,
                       .end = route_end};
        span_open(b, t, &rt, first);
        a = true;
        attr_str(b, &a, "routerd.persona", t->persona);
        span_close(b);
    }

    if (t->t_backend_start && t->backend_span_id[0]) {
        int64_t bend = t->t_backend_end  ? t->t_backend_end
                       : t->t_send_start ? t->t_send_start
                                         : end;
        span_out be = {.name = "backend",
                       .span_id = t->backend_span_id,
                       .parent = t->span_id,
                       .kind = OTLP_KIND_CLIENT,
                       .start = t->t_backend_start,
                       .end = bend,
                       .status = t->failure_class ? OTLP_STATUS_ERROR : OTLP_STATUS_UNSET,
                       .status_msg = t->failure_class};
        span_open(b, t, &be, first);
        a = true;
        attr_str(b, &a, "routerd.backend", t->backend);
        attr_str(b, &a, "routerd.persona", t->persona);
        attr_str(b, &a, "routerd.failure_class", t->failure_class);
        span_close(b);
    }

    if (t->t_send_start) {
        bool send_err =
            t->type == RD_EV_SEND_FAILED || (t->status && !strcmp(t->status, "send_failed"));
        child_id(t, 3, id);
        span_out tx = {.name = "send",
                       .span_id = id,
                       .parent = t->span_id,
                       .kind = OTLP_KIND_CLIENT,
                       .start = t->t_send_start,
                       .end = t->t_send_end ? t->t_send_end : end,
                       .status = send_err ? OTLP_STATUS_ERROR : OTLP_STATUS_UNSET,
                       .status_msg = send_err ? (t->error ? t->error : "send_failed") : NULL};
        span_open(b, t, &tx, first);
        a = true;
        attr_str(b, &a, "routerd.transport", t->transport);
        span_close(b);
    }
}
