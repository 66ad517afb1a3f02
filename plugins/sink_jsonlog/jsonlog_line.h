/* One JSON log line per event: a pure builder, testable without a host. */
#ifndef ROUTERD_JSONLOG_LINE_H
#define ROUTERD_JSONLOG_LINE_H

#include <routerd/plugin.h>

#include <stdbool.h>

#include "sbuf.h"

/* "2026-11-26T17:50:00.123Z" (RFC 3339, UTC, milliseconds); out >= 32. */
void jl_rfc3339(int64_t ts_ns, char *out, size_t outsz);
const char *jl_level_name(rd_log_level l);  /* "debug" ... "error" */
const char *jl_event_name(rd_event_type t); /* "log", "received", ... */
/* Parses "debug|info|warn|error" (also "warning"); -1 if unknown. */
int jl_level_parse(const char *s);

/* Appends one line for ev, ending in '\n'. msg replaces ev->msg (the
 * caller passes the redacted text; NULL = none). These fields are on every
 * line, null where they do not apply: ts level event correlation_id
 * chat_id_hash persona_tag status latency_ms env build_sha. source, msg,
 * transport, backend, failure_class, update_id, trace_id and span_id follow
 * when present. */
void jl_format(sbuf *b, const rd_event *ev, const char *msg, const char *env,
               const char *build_sha);

/* Appends a short human-readable line for a terminal, ending in '\n':
 * "15:04:05 [source] text" (the level after the time unless info). Log
 * lines and the events that went wrong (rejected, send failed, a reply
 * other than ok) are shown; returns false, appending nothing, for the
 * rest. Control characters (also C1 and escapes) become '?', so a peer's
 * text cannot drive the terminal. */
bool jl_human(sbuf *b, const rd_event *ev, const char *msg);

#endif
