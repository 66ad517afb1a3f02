/*
 * A small HTTP server for the test fakes: libmicrohttpd on 127.0.0.1 (an
 * ephemeral port), a thread per connection, the request body collected
 * (multipart/form-data parsed into parts), and one callback per request
 * that fills a response. The callback runs on the connection's own thread,
 * so it may block (a long poll held open). The fakes keep their protocol
 * logic; the plumbing lives here once.
 */
#ifndef HTTP_STUB_H
#define HTTP_STUB_H

#include <stddef.h>
#include <sys/types.h>

struct MHD_Connection;
struct MHD_Response;

/* One part of a multipart/form-data body, in the order received. */
typedef struct hs_part {
    char name[64];      /* form field */
    char *filename;     /* NULL for a plain field, else the upload's file name */
    char *content_type; /* the part's Content-Type, "" when none */
    char *data;         /* NUL-terminated (uploads may hold NULs: use len) */
    size_t len;
} hs_part;

typedef struct hs_req {
    const char *method, *url;
    /* The whole body, NUL-terminated ("" when none, and for multipart
     * bodies, which arrive as parts instead). */
    const char *body;
    size_t body_len;
    const hs_part *parts; /* multipart/form-data only */
    size_t nparts;
    struct MHD_Connection *conn; /* for what the helpers below do not cover */
} hs_req;

typedef struct hs_resp {
    int status;                  /* 0 = 500 */
    char *body;                  /* malloc()ed, taken by the stub; NULL = empty */
    size_t body_len;             /* 0 = strlen(body); set for binary bodies */
    int chunked;                 /* send body without Content-Length */
    const char *content_type;    /* NULL = application/json, "" = none */
    int retry_after;             /* > 0 adds Retry-After */
    size_t cut_at;               /* > 0: the connection breaks after this many body bytes */
    int drop;                    /* close the connection without an answer */
    struct MHD_Response *custom; /* made by the handler: queued instead of body */
    char headers[512];           /* more headers, "Name: value\n" lines */
    /* A body of unknown length written as it goes (instead of body): called
     * on the connection's thread with room for max bytes; returns how many
     * it wrote, HS_END or HS_BREAK (the connection breaks). stream_free
     * (may be NULL) gets stream_arg when the response is done. */
    ssize_t (*stream)(void *arg, char *buf, size_t max);
    void (*stream_free)(void *arg);
    void *stream_arg;
} hs_resp;

enum { HS_END = -1, HS_BREAK = -2 };

typedef void (*hs_handler)(void *arg, const hs_req *rq, hs_resp *rs);
typedef struct hs hs;

/* NULL when the server cannot start. timeout_s closes idle connections.
 * The server polls with poll(), not select(), so socket numbers above
 * FD_SETSIZE (a benchmark holding many sockets) work. */
hs *hs_start(hs_handler fn, void *arg, unsigned timeout_s);
/* The same on a given port (0 = ephemeral). */
hs *hs_start_port(hs_handler fn, void *arg, unsigned timeout_s, int port);
/* Stops accepting, waits for the connection threads, frees. */
void hs_stop(hs *s);
const char *hs_base(const hs *s); /* "http://127.0.0.1:PORT" */
int hs_port(const hs *s);
/* Connections accepted so far. */
int hs_connections(const hs *s);

/* A request header (case-insensitive name) or NULL. */
const char *hs_header(const hs_req *rq, const char *name);
/* A query argument of the URL or NULL. */
const char *hs_arg(const hs_req *rq, const char *name);
/* Every request header as "name: value\n" lines, names lowercased (malloc). */
char *hs_headers(const hs_req *rq);
/* Calls fn for each query argument of the URL. */
void hs_args(const hs_req *rq, void (*fn)(void *arg, const char *key, const char *value),
             void *arg);
/* The connection's socket, or -1. */
int hs_fd(const hs_req *rq);
/* 1 when the client has closed its end of socket fd (it gave up, or was
 * killed): a handler holding a request open checks this to let go. */
int hs_gone(int fd);

#endif
