/* Incremental Server-Sent Events parser (WHATWG event-stream rules): bytes
 * arrive in arbitrary pieces; complete events are handed to a callback.
 * Pure code, no I/O: unit-tested and fuzzed on its own. */
#ifndef A2A_SSE_H
#define A2A_SSE_H

#include <stddef.h>

/* One dispatched event. `event` is the event: field ("message" when absent),
 * `data` the data: lines joined with '\n' (NUL-terminated, len excludes the
 * NUL). Both are borrowed for the call. Return nonzero to stop parsing. */
typedef int (*a2a_sse_fn)(void *arg, const char *event, const char *data, size_t len);

typedef struct a2a_sse {
    a2a_sse_fn fn;
    void *arg;
    size_t max; /* cap on one line and on one event's data */
    char *line; /* current, incomplete line */
    size_t llen, lcap;
    char *data; /* data of the event being assembled */
    size_t dlen, dcap;
    int have_data;  /* a data: field was seen (even an empty one) */
    char event[64]; /* event type of the event being assembled */
    int after_cr;   /* the previous chunk ended in CR: skip a leading LF */
    int started;    /* past the optional UTF-8 BOM */
    int stopped;    /* the callback asked to stop */
    int failed;     /* a line or event exceeded max */
    size_t events;  /* events dispatched so far */
} a2a_sse;

enum { A2A_SSE_OK = 0, A2A_SSE_STOPPED = 1, A2A_SSE_TOO_BIG = -1, A2A_SSE_NOMEM = -2 };

void a2a_sse_init(a2a_sse *p, size_t max, a2a_sse_fn fn, void *arg);
/* Feeds n bytes. Returns A2A_SSE_OK, A2A_SSE_STOPPED once the callback
 * returned nonzero (later bytes are ignored), or a negative error. */
int a2a_sse_feed(a2a_sse *p, const char *buf, size_t n);
/* End of stream: a final line without terminator is processed, but an
 * event not closed by a blank line is discarded, as the standard says. */
int a2a_sse_finish(a2a_sse *p);
void a2a_sse_free(a2a_sse *p);

#endif
