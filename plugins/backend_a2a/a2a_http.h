/* HTTP for the a2a backend: a pool of reusable curl easy handles (each
 * keeps its connections alive between calls) sharing DNS and TLS sessions,
 * one exchange per call, with an optional SSE sink for streams; and an
 * event loop making the same exchanges without a thread each. */
#ifndef A2A_HTTP_H
#define A2A_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "a2a_sse.h"

typedef struct a2a_http a2a_http;

/* ca_file: PEM certificate authorities instead of the system's (NULL:
 * the system's); copied. */
a2a_http *a2a_http_new(size_t max_idle, const char *ca_file);
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
    /* Headers few answers carry (a refusal, a redirect, the card's
     * validator) are allocated when they come, so thousands of exchanges
     * in flight do not each hold room for them; NULL when absent. */
    char *www_auth; /* WWW-Authenticate, cut to 159 bytes */
    char *location; /* Location (redirects); NULL also when over 511 bytes */
    char *etag;     /* ETag; NULL also when over 127 bytes or unusable */
    long max_age;   /* Cache-Control max-age (0 for no-cache/no-store), -1 when not said */
    char errbuf[CURL_ERROR_SIZE];
} a2a_http_resp;

/* Performs one exchange. Returns 0 when an HTTP answer arrived completely
 * (any status), -1 otherwise (see cc, too_big, aborted). */
int a2a_http_do(a2a_http *h, const a2a_http_req *rq, a2a_http_resp *out);
/* Frees the body and the headers kept; r can be filled again. */
void a2a_http_resp_free(a2a_http_resp *r);

/* An event loop: one thread owning a curl multi handle, for exchanges that
 * must not park a thread each. Exchanges share its connection cache
 * (keep-alive, HTTP/2 multiplexing). Callbacks (fn, and the request's
 * sse_fn, before_send_fn, abort_fn) run on the loop thread and must not
 * block. */
typedef struct a2a_loop a2a_loop;
typedef struct a2a_lop a2a_lop;
/* rc: as a2a_http_do() for an exchange; 0 for a timer. */
typedef void (*a2a_loop_fn)(void *arg, int rc);

/* max_host_conns: CURLMOPT_MAX_HOST_CONNECTIONS (0 = no limit); max_idle:
 * idle connections kept for reuse (CURLMOPT_MAXCONNECTS; 0 = curl's
 * default); both split among the multi handles. max_connecting: exchanges
 * connecting at once (0 = no limit); the others wait their turn in order,
 * their time waiting counted in their timeout_ms. now(): a monotonic clock
 * in ms. */
a2a_loop *a2a_loop_new(a2a_http *h, long max_host_conns, long max_idle, long max_connecting,
                       int64_t (*now)(void));
int a2a_loop_start(a2a_loop *l);
/* Starts one exchange; rq (and what it points to) and out must stay valid
 * until fn(arg, rc) runs on the loop thread, once. abort_fn is polled
 * every 100 ms; a stopped loop ends every exchange as aborted. -1 when the
 * exchange could not be started (fn is not called). */
int a2a_loop_submit(a2a_loop *l, const a2a_http_req *rq, a2a_http_resp *out, a2a_loop_fn fn,
                    void *arg);
/* Runs fn(arg, 0) on the loop thread after ms, or earlier once
 * abort_of->abort_fn (when abort_of is given) says stop or the loop stops. */
int a2a_loop_after(a2a_loop *l, int64_t ms, const a2a_http_req *abort_of, a2a_loop_fn fn,
                   void *arg);
/* Asks the loop to poll every abort_fn within a few ms instead of at its
 * next 100 ms tick (a timer whose abort_fn now says stop runs at once).
 * Any thread; pokes made before the loop looks are one. */
void a2a_loop_poke(a2a_loop *l);
/* Exchanges in flight. */
size_t a2a_loop_active(a2a_loop *l);
/* Ends every exchange and timer (as aborted) and joins the thread. */
void a2a_loop_stop(a2a_loop *l);
void a2a_loop_free(a2a_loop *l);

#endif
