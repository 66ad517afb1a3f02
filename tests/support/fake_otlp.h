/*
 * A stand-in OpenTelemetry collector for tests: libmicrohttpd on
 * 127.0.0.1 (ephemeral port), in-process. Accepts POST /v1/traces with
 * Content-Type application/json (404 for other paths, 415 for other
 * types), records every request's body and headers, and can answer with a
 * chosen status or after a delay to play a failing or slow collector.
 */
#ifndef FAKE_OTLP_H
#define FAKE_OTLP_H

#include <stddef.h>

typedef struct fotlp fotlp;

fotlp *fotlp_start(void);
void fotlp_stop(fotlp *f);
const char *fotlp_base(fotlp *f); /* "http://127.0.0.1:PORT" */
/* Answer accepted requests with this status (200 by default); a non-2xx
 * answer is still recorded. */
void fotlp_set_status(fotlp *f, int status);
/* Body of 2xx answers (default "{}", NULL restores it) and a Retry-After
 * header for every answer (NULL = none). */
void fotlp_set_answer(fotlp *f, const char *body, const char *retry_after);
/* Hold each answer this long (ms). */
void fotlp_set_delay(fotlp *f, int ms);
/* Requests recorded so far (any path). */
int fotlp_count(fotlp *f);
/* Copies (malloc) of request i's body, path and header value (NULL if
 * absent; names case-insensitive). */
char *fotlp_body(fotlp *f, int i);
char *fotlp_path(fotlp *f, int i);
char *fotlp_header(fotlp *f, int i, const char *name);
/* Writes the bodies of accepted requests (2xx answered) to
 * dir/payload-NNNNN.json; returns how many, -1 on error. */
int fotlp_write_bodies(fotlp *f, const char *dir);
/* Waits until at least n requests were recorded; 1 reached, 0 timeout. */
int fotlp_wait_count(fotlp *f, int n, int timeout_ms);

#endif
