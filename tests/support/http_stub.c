/* See http_stub.h. */
#include "http_stub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

struct hs {
    struct MHD_Daemon *d;
    hs_handler fn;
    void *arg;
    int port;
    char base[64];
    atomic_int conns; /* connections accepted */
};

/* One request's state: the raw body, or the parts of a multipart one. */
typedef struct body {
    char *buf;
    size_t len;
    struct MHD_PostProcessor *pp;
    hs_part *parts;
    size_t nparts;
} body;

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
    (void)kind, (void)transfer_encoding;
    body *b = cls;
    if (!key) return MHD_YES;
    if (off == 0 || !b->nparts) {
        hs_part *n = realloc(b->parts, (b->nparts + 1) * sizeof *n);
        if (!n) return MHD_NO;
        b->parts = n;
        hs_part *x = &b->parts[b->nparts++];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "%s", key);
        x->filename = filename ? strdup(filename) : NULL;
        x->content_type = strdup(content_type ? content_type : "");
        x->data = calloc(1, 1);
        if (!x->content_type || !x->data || (filename && !x->filename)) return MHD_NO;
    }
    hs_part *x = &b->parts[b->nparts - 1];
    char *n = realloc(x->data, x->len + size + 1);
    if (!n) return MHD_NO;
    memcpy(n + x->len, data, size);
    x->data = n;
    x->len += size;
    x->data[x->len] = 0;
    return MHD_YES;
}

static void body_free(body *b) {
    if (b->pp) MHD_destroy_post_processor(b->pp);
    for (size_t i = 0; i < b->nparts; i++) {
        free(b->parts[i].filename);
        free(b->parts[i].content_type);
        free(b->parts[i].data);
    }
    free(b->parts);
    free(b->buf);
    free(b);
}

typedef struct cut {
    char *body;
    size_t len, limit;
} cut;

/* limit < len: the connection breaks there; limit == len: a chunked body. */
static ssize_t cut_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    cut *c = cls;
    if (pos >= c->limit)
        return c->limit < c->len ? MHD_CONTENT_READER_END_WITH_ERROR
                                 : MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = c->limit - (size_t)pos;
    if (n > max) n = max;
    memcpy(buf, c->body + pos, n);
    return (ssize_t)n;
}

static void cut_free(void *cls) {
    cut *c = cls;
    free(c->body);
    free(c);
}

typedef struct strm {
    ssize_t (*fn)(void *arg, char *buf, size_t max);
    void (*free_fn)(void *arg);
    void *arg;
} strm;

static ssize_t strm_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    strm *st = cls;
    ssize_t n = st->fn(st->arg, buf, max);
    return n == HS_END     ? MHD_CONTENT_READER_END_OF_STREAM
           : n == HS_BREAK ? MHD_CONTENT_READER_END_WITH_ERROR
                           : n;
}

static void strm_free(void *cls) {
    strm *st = cls;
    if (st->free_fn) st->free_fn(st->arg);
    free(st);
}

/* Adds the "Name: value\n" lines of h. */
static void add_headers(struct MHD_Response *r, const char *h) {
    while (*h) {
        const char *end = strchr(h, '\n'), *colon = strchr(h, ':');
        if (!end) end = h + strlen(h);
        if (colon && colon < end) {
            char name[128], value[512];
            snprintf(name, sizeof name, "%.*s", (int)(colon - h), h);
            colon++;
            while (*colon == ' ')
                colon++;
            snprintf(value, sizeof value, "%.*s", (int)(end - colon), colon);
            MHD_add_response_header(r, name, value);
        }
        h = *end ? end + 1 : end;
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    hs *s = cls;
    body *b = *con_cls;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return MHD_NO;
        *con_cls = b;
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        if (ct && !strncasecmp(ct, "multipart/form-data", 19))
            b->pp = MHD_create_post_processor(conn, 64 * 1024, on_part, b);
        return MHD_YES;
    }
    if (*upload_size && b->pp) {
        /* A malformed body still gets an answer, from the parts read. */
        MHD_post_process(b->pp, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        char *n = realloc(b->buf, b->len + *upload_size + 1);
        if (!n) return MHD_NO;
        memcpy(n + b->len, upload, *upload_size);
        b->buf = n;
        b->len += *upload_size;
        b->buf[b->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    hs_req rq = {method, url, b->buf ? b->buf : "", b->len, b->parts, b->nparts, conn};
    hs_resp rs = {0};
    s->fn(s->arg, &rq, &rs);
    if (rs.drop) {
        free(rs.body);
        if (rs.custom) MHD_destroy_response(rs.custom);
        if (rs.stream && rs.stream_free) rs.stream_free(rs.stream_arg);
        return MHD_NO;
    }
    struct MHD_Response *r = rs.custom;
    size_t len = !rs.body ? 0 : rs.body_len ? rs.body_len : strlen(rs.body);
    if (r) {
        free(rs.body);
    } else if (rs.stream) {
        free(rs.body);
        strm *st = malloc(sizeof *st);
        if (!st) {
            if (rs.stream_free) rs.stream_free(rs.stream_arg);
            return MHD_NO;
        }
        *st = (strm){rs.stream, rs.stream_free, rs.stream_arg};
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, strm_reader, st, strm_free);
        if (!r) {
            strm_free(st);
            return MHD_NO;
        }
    } else if ((rs.cut_at && rs.cut_at < len) || (rs.chunked && rs.body)) {
        cut *c = malloc(sizeof *c);
        if (!c) {
            free(rs.body);
            return MHD_NO;
        }
        *c = (cut){rs.body, len, rs.chunked ? len : rs.cut_at};
        r = MHD_create_response_from_callback(rs.chunked ? MHD_SIZE_UNKNOWN : len, 4096, cut_reader,
                                              c, cut_free);
        if (!r) {
            cut_free(c);
            return MHD_NO;
        }
    } else {
        r = MHD_create_response_from_buffer(len, rs.body ? rs.body : (char *)"",
                                            rs.body ? MHD_RESPMEM_MUST_FREE
                                                    : MHD_RESPMEM_PERSISTENT);
    }
    if (!r) return MHD_NO;
    if (!rs.content_type || rs.content_type[0])
        MHD_add_response_header(r, "Content-Type",
                                rs.content_type ? rs.content_type : "application/json");
    add_headers(r, rs.headers);
    if (rs.retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rs.retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)(rs.status ? rs.status : 500), r);
    MHD_destroy_response(r);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    body *b = *con_cls;
    if (b) body_free(b);
    *con_cls = NULL;
}

static void on_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                    enum MHD_ConnectionNotificationCode code) {
    (void)c, (void)socket_context;
    hs *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&s->conns, 1);
}

int hs_connections(const hs *s) {
    return atomic_load(&((hs *)s)->conns);
}

hs *hs_start(hs_handler fn, void *arg, unsigned timeout_s) {
    return hs_start_port(fn, arg, timeout_s, 0);
}

hs *hs_start_port(hs_handler fn, void *arg, unsigned timeout_s, int port) {
    if (port < 0 || port > 65535) return NULL;
    hs *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fn = fn;
    s->arg = arg;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL,
        NULL, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a, MHD_OPTION_NOTIFY_COMPLETED,
        completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_conn, s, MHD_OPTION_CONNECTION_TIMEOUT,
        timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    return s;
}

void hs_stop(hs *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    free(s);
}

const char *hs_base(const hs *s) {
    return s->base;
}

int hs_port(const hs *s) {
    return s->port;
}

const char *hs_header(const hs_req *rq, const char *name) {
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *hs_arg(const hs_req *rq, const char *name) {
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value) {
    (void)kind;
    char **h = cls;
    size_t old = *h ? strlen(*h) : 0, add = strlen(key) + strlen(value ? value : "") + 3;
    char *n = realloc(*h, old + add + 1);
    if (!n) return MHD_NO;
    char *p = n + old;
    for (const char *k = key; *k; k++)
        *p++ = (char)((*k >= 'A' && *k <= 'Z') ? *k + 32 : *k);
    sprintf(p, ": %s\n", value ? value : "");
    *h = n;
    return MHD_YES;
}

char *hs_headers(const hs_req *rq) {
    char *h = NULL;
    MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, add_header, &h);
    return h ? h : strdup("");
}

typedef struct arg_cb {
    void (*fn)(void *arg, const char *key, const char *value);
    void *arg;
} arg_cb;

static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    (void)kind;
    arg_cb *a = cls;
    if (key) a->fn(a->arg, key, value ? value : "");
    return MHD_YES;
}

void hs_args(const hs_req *rq, void (*fn)(void *arg, const char *key, const char *value),
             void *arg) {
    arg_cb a = {fn, arg};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, each_arg, &a);
}

int hs_fd(const hs_req *rq) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

int hs_gone(int fd) {
    if (fd < 0) return 0;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}
