/* OTLP/HTTP JSON for routerd's message traces: pure builders (no host, no
 * network) so they can be unit-tested and fuzzed.
 *
 * One message gives one trace: a root span "message" (the event's span_id)
 * and children "receive", "route", "backend" (span id = backend_span_id,
 * the parent id the agent saw in traceparent) and "send", placed by the
 * event's stage timestamps. The JSON follows the OTLP protobuf JSON mapping:
 * lowerCamelCase names, trace and span ids as hex, 64-bit integers as
 * strings, enums as numbers. */
#ifndef ROUTERD_OTLP_JSON_H
#define ROUTERD_OTLP_JSON_H

#include <routerd/plugin.h>

#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"

/* Span kinds and status codes of opentelemetry.proto.trace.v1. */
enum { OTLP_KIND_INTERNAL = 1, OTLP_KIND_SERVER = 2, OTLP_KIND_CLIENT = 3 };
enum { OTLP_STATUS_UNSET = 0, OTLP_STATUS_OK = 1, OTLP_STATUS_ERROR = 2 };

/* What a trace needs from the event, copied (one allocation). */
typedef struct otlp_trace {
    struct otlp_trace *next; /* queue link */
    rd_event_type type;
    char trace_id[33], span_id[17], backend_span_id[17];
    const char *persona, *status, *failure_class, *transport, *backend, *chat_id_hash;
    const char *caller; /* the calling agent of an inbound message (1.3), or NULL */
    const char *corr;   /* the correlation id when it is not the trace id (an inbound task) */
    const char *error;  /* send failure detail (redacted), or NULL */
    int64_t update_id;
    double latency_ms;
    int64_t ts, t_received, t_routed, t_backend_start, t_backend_end, t_send_start, t_send_end;
    int nspans;
} otlp_trace;

/* True for lowercase or uppercase hex of exactly n digits, not all zero
 * (an all-zero id is invalid in W3C trace context and OTLP). */
bool otlp_valid_id(const char *s, size_t n);

/* A failed round trip: always exported whatever the sample ratio. */
bool otlp_is_error(const rd_event *ev);

/* Deterministic ratio sampling from the trace id: the low 56 bits (the
 * random part under W3C trace context level 2) compared with
 * ratio * 2^56. The same trace id always gets the same answer, so any
 * process can recompute it. */
bool otlp_sampled(const char *trace_id, double ratio);

/* Copies what the trace needs. error: send failure detail or NULL. NULL
 * when the event has no valid trace or span id (or out of memory). */
otlp_trace *otlp_trace_new(const rd_event *ev, const char *error);
void otlp_trace_free(otlp_trace *t);

/* Resource attributes: parallel arrays of keys and string values. */
typedef struct otlp_kv {
    char **keys, **vals;
    size_t n;
} otlp_kv;
void otlp_kv_free(otlp_kv *kv);
/* Adds or replaces key. Returns 0, -1 when out of memory. */
int otlp_kv_set(otlp_kv *kv, const char *key, const char *val);
const char *otlp_kv_get(const otlp_kv *kv, const char *key);
/* Parses "k1=v1,k2=v2" as in OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_EXPORTER_OTLP_HEADERS: blanks around items trimmed, values
 * percent-decoded, later keys win, empty items ignored. Returns the number
 * of items that had no '=' or an empty key (they are skipped). */
int otlp_kv_parse(otlp_kv *kv, const char *text);

/* The request document around the spans. */
void otlp_json_begin(sbuf *b, const otlp_kv *resource, const char *scope_version);
/* Appends the spans of t (comma-separated from earlier ones when !*first). */
void otlp_json_trace(sbuf *b, const otlp_trace *t, const char *env, bool *first);
void otlp_json_end(sbuf *b);

#endif
