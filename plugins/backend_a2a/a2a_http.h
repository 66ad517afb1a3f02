/* HTTP for the a2a backend: a pool of reusable curl easy handles (each
 * keeps its connections alive between calls) sharing DNS and TLS sessions,
 * one exchange per call, with an optional SSE sink for streams. */
#ifndef A2A_HTTP_H
#define A2A_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "a2a_sse.h"

typedef struct a2a_http a2a_http;

a2a_http *a2a_http_new(size_t max_idle);
void a2a_http_free(a2a_http *h);

typedef struct a2a_http_req {
    const char *url;
    const char *body;           /* NULL: GET; else POST of this JSON */
    struct curl_slist *headers; /* borrowed */
    long connect_timeout_ms;
    long timeout_ms;  /* whole exchange; 0 = none */
    size_t max_bytes; /* body cap (and SSE event cap) */
    /* Streams: when set and the answer is text/event-stream, its events go
     * to sse_fn instead of the body buffer. */
    a2a_sse_fn sse_fn;
    void *sse_arg;
    /* Polled about once a second; nonzero aborts the exchange. */
    int (*abort_fn)(void *arg);
    void *abort_arg;
    /* Called once the connection is ready, just before the first byte of
     * the request is written (again for a request repeated on another
     * connection); abort_fn is asked first. */
    void (*before_send_fn)(void *arg);
    void *before_send_arg;
    /* Not to be repeated: when a reused connection dies before any answer,
     * curl writes the request again on a new one; the agent may already
     * have acted on the first, so the exchange ends instead (repeat_refused). */
    int no_repeat;
} a2a_http_req;

typedef struct a2a_http_resp {
    CURLcode cc;
    long status;     /* 0 when no HTTP answer */
    char ctype[128]; /* Content-Type, lower case, parameters cut */
    char *body;      /* NUL-terminated (non-SSE answers) */
    size_t len;
    int too_big;        /* body or one SSE event exceeded max_bytes */
    int is_sse;         /* the answer was an event stream */
    int sse_stopped;    /* the SSE callback ended the stream early (normal) */
    int aborted;        /* abort_fn asked to stop */
    long retry_after_s; /* 0..86400; a date or junk reads as 0 */
    int req_sent;       /* request bytes left for the peer: it may have acted */
    int repeat_refused; /* no_repeat: the connection died after the request left */
    char www_auth[160];
    char location[512]; /* Location header (redirects), "" when none or too long */
    char etag[128];     /* ETag, "" when none or unusable */
    long max_age;       /* Cache-Control max-age (0 for no-cache/no-store), -1 when not said */
    char errbuf[CURL_ERROR_SIZE];
} a2a_http_resp;

/* Performs one exchange. Returns 0 when an HTTP answer arrived completely
 * (any status), -1 otherwise (see cc, too_big, aborted). */
int a2a_http_do(a2a_http *h, const a2a_http_req *rq, a2a_http_resp *out);
void a2a_http_resp_free(a2a_http_resp *r);

#endif
