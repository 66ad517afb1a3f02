/* Fuzz target: OTLP JSON builder and key=value list parsing. Input: a
 * header byte (stage mask, event type), then NUL-separated fields (persona,
 * status, failure class, send error, key=value list). Invariants: the
 * request is JSON with exactly nspans spans, all in the trace, children
 * under the root; the list parser never keeps an empty key. The whole
 * input read as a collector's answer: refused spans stay within the batch,
 * Retry-After within its cap. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otlp_answer.h"
#include "otlp_json.h"

static char *field(const uint8_t **p, const uint8_t *end) {
    const uint8_t *s = *p, *z = memchr(s, 0, (size_t)(end - s));
    size_t n = z ? (size_t)(z - s) : (size_t)(end - s);
    char *out = malloc(n + 1);
    memcpy(out, s, n);
    out[n] = 0;
    *p = z ? z + 1 : end;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    otlp_answer a;
    int64_t batch = size % 600;
    otlp_answer_parse((const char *)data, size, batch, &a);
    if (a.rejected < 0 || a.rejected > batch || strlen(a.message) >= sizeof a.message)
        __builtin_trap();
    char *ra = strndup((const char *)data, size);
    int64_t ms = otlp_retry_after_ms(ra, 30000);
    if (ms < -1 || ms > 30000) __builtin_trap();
    free(ra);
    if (size < 2) return 0;
    uint8_t mask = data[0];
    const uint8_t *p = data + 2, *end = data + size;
    char *persona = field(&p, end), *status = field(&p, end), *klass = field(&p, end);
    char *error = field(&p, end), *kvtext = field(&p, end);
    int64_t t0 = 1795000000000000000LL + (int64_t)data[1] * 997;
    rd_event ev = {.size = sizeof ev,
                   .type = data[1] & 1 ? RD_EV_REJECTED : RD_EV_REPLIED,
                   .ts_ns = t0 + 50000,
                   .persona = *persona ? persona : NULL,
                   .status = status,
                   .failure_class = klass,
                   .update_id = (int64_t)size,
                   .latency_ms = data[1],
                   .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                   .span_id = "00f067aa0ba902b7",
                   .backend_span_id = "b7ad6b7169203331"};
    /* Stages in any combination and order: the builder must cope. */
    int64_t *stage[] = {&ev.t_received_ns,    &ev.t_routed_ns,     &ev.t_backend_start_ns,
                        &ev.t_backend_end_ns, &ev.t_send_start_ns, &ev.t_send_end_ns};
    for (int i = 0; i < 6; i++)
        if (mask & (1u << i)) *stage[i] = t0 + (int64_t)((mask >> i) & 3) * 1000 * (i + 1);
    otlp_trace *t = otlp_trace_new(&ev, *error ? error : NULL);
    if (!t) __builtin_trap();
    otlp_kv kv = {0};
    otlp_kv_parse(&kv, kvtext);
    for (size_t i = 0; i < kv.n; i++)
        if (!kv.keys[i][0]) __builtin_trap();
    sbuf b = {0};
    otlp_json_begin(&b, &kv, "1.0");
    bool first = true;
    otlp_json_trace(&b, t, persona, &first);
    otlp_json_end(&b);
    cJSON *o = cJSON_ParseWithLength(b.p, b.len);
    if (!o) __builtin_trap();
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cJSON *spans = cJSON_GetObjectItem(ss, "spans"), *s;
    if (cJSON_GetArraySize(spans) != t->nspans) __builtin_trap();
    int roots = 0;
    cJSON_ArrayForEach(s, spans) {
        if (strcmp(cJSON_GetObjectItem(s, "traceId")->valuestring, ev.trace_id)) __builtin_trap();
        cJSON *parent = cJSON_GetObjectItem(s, "parentSpanId");
        if (!parent)
            roots++;
        else if (strcmp(parent->valuestring, ev.span_id))
            __builtin_trap();
        long long st = strtoll(cJSON_GetObjectItem(s, "startTimeUnixNano")->valuestring, NULL, 10);
        long long en = strtoll(cJSON_GetObjectItem(s, "endTimeUnixNano")->valuestring, NULL, 10);
        if (en < st) __builtin_trap();
    }
    if (roots != 1) __builtin_trap();
    cJSON_Delete(o);
    sbuf_free(&b);
    otlp_kv_free(&kv);
    otlp_trace_free(t);
    free(persona), free(status), free(klass), free(error), free(kvtext);
    return 0;
}
