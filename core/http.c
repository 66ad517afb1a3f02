/* Admin HTTP server: /healthz, /livez and routes that plugins register.
 *
 * Hostile clients are expected. MHD's epoll loop keeps a slow socket from
 * costing a thread; on top of it this file bounds how long a connection
 * may take to send its headers and its whole request (MHD's own timeout is
 * an idle timer that every byte resets), caps connections per client
 * address and in total by closing the oldest connection that has not sent
 * a request yet (so a probe always finds room), and decides route, method,
 * secret header and Content-Length from the headers, before any body byte
 * is read. */
#include "lease.h"
#include "router.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct route {
    char *method, *path;
    char *auth_header, *auth_secret; /* NULL = no secret header */
    rd_http_fn fn;
    void *arg;
    rd_ctx *ctx;
} route;

static route *routes;
static size_t nroutes;
static pthread_rwlock_t routes_mu = PTHREAD_RWLOCK_INITIALIZER;
static struct MHD_Daemon *mhd;
static http_limits lim;

/* ---- refusals: counted by reason, logged once per minute per reason ---- */
enum {
    RF_PER_IP,
    RF_TOTAL,
    RF_HEADER_TIMEOUT,
    RF_REQUEST_TIMEOUT,
    RF_NOT_FOUND,
    RF_METHOD,
    RF_UNAUTHORIZED,
    RF_TOO_LARGE,
    RF_BAD_REQUEST,
    RF_N
};
static const char *const rf_name[RF_N] = {
    "per_ip_limit",       "connection_limit", "header_timeout", "request_timeout", "not_found",
    "method_not_allowed", "unauthorized",     "too_large",      "bad_request"};
static rd_series *rf_series[RF_N];
static struct {
    int64_t last_ms;
    long suppressed;
} rf_log[RF_N];
static pthread_mutex_t rf_mu = PTHREAD_MUTEX_INITIALIZER;

static void refused(int why, const char *detail) {
    if (rf_series[why]) series_add(rf_series[why], 1);
    int64_t now = mono_ms();
    pthread_mutex_lock(&rf_mu);
    bool say = !rf_log[why].last_ms || now - rf_log[why].last_ms >= 60000;
    long more = rf_log[why].suppressed;
    if (say) {
        rf_log[why].last_ms = now;
        rf_log[why].suppressed = 0;
    } else {
        rf_log[why].suppressed++;
    }
    pthread_mutex_unlock(&rf_mu);
    if (say)
        LOGW("admin server: %s (%s)%s", detail, rf_name[why],
             more ? "; more of these were not logged" : "");
}

/* ---- connection registry ------------------------------------------------ */
typedef struct aconn {
    struct aconn *prev, *next; /* open order: oldest first */
    int fd;
    int family;
    unsigned char ip[16];
    int64_t since_ms; /* waiting for a request since (open or end of the last one) */
    int64_t req_ms;   /* headers complete at; 0 = no request in progress */
    bool closing;     /* shut down by us; MHD closes it on its next read */
} aconn;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static aconn *chead, *ctail;
static size_t nlive; /* connections not closing */
static pthread_t reaper;
static bool reaper_on, reaper_stop;
static pthread_cond_t reaper_cv = PTHREAD_COND_INITIALIZER;

static bool same_ip(const aconn *a, const aconn *b) {
    return a->family == b->family && !memcmp(a->ip, b->ip, sizeof a->ip);
}

/* shutdown() rather than close(): MHD still owns the descriptor and
 * closes it after telling us (NOTIFY_CLOSED, under conns_mu), so the
 * number cannot be reused under our feet. */
static void close_locked(aconn *a) {
    if (a->closing) return;
    a->closing = true;
    nlive--;
    shutdown(a->fd, SHUT_RDWR);
}

/* The oldest connection without a request, waiting since before `by`. */
static aconn *oldest_waiting_locked(const aconn *like, int64_t by) {
    for (aconn *a = chead; a; a = a->next)
        if (!a->closing && !a->req_ms && (!like || same_ip(a, like)) && a->since_ms <= by) return a;
    return NULL;
}

static void ip_text(const aconn *a, char *out, size_t n) {
    if (!inet_ntop(a->family, a->ip, out, (socklen_t)n)) snprintf(out, n, "?");
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        aconn *a = *socket_context;
        if (!a) return;
        pthread_mutex_lock(&conns_mu);
        if (a->prev)
            a->prev->next = a->next;
        else
            chead = a->next;
        if (a->next)
            a->next->prev = a->prev;
        else
            ctail = a->prev;
        if (!a->closing) nlive--;
        pthread_mutex_unlock(&conns_mu);
        free(a);
        *socket_context = NULL;
        return;
    }
    aconn *a = xcalloc(1, sizeof *a);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    a->fd = fi ? fi->connect_fd : -1;
    if (ai && ai->client_addr) {
        a->family = ai->client_addr->sa_family;
        if (a->family == AF_INET)
            memcpy(a->ip, &((const struct sockaddr_in *)ai->client_addr)->sin_addr, 4);
        else if (a->family == AF_INET6)
            memcpy(a->ip, &((const struct sockaddr_in6 *)ai->client_addr)->sin6_addr, 16);
    }
    a->since_ms = mono_ms();
    *socket_context = a;
    char ip[INET6_ADDRSTRLEN];
    int why = -1;
    pthread_mutex_lock(&conns_mu);
    a->prev = ctail;
    if (ctail) {
        ctail->next = a;
    } else {
        chead = a;
        pthread_cond_signal(&reaper_cv); /* it sleeps while there is none */
    }
    ctail = a;
    nlive++;
    size_t same = 0;
    for (aconn *o = chead; o; o = o->next)
        if (!o->closing && same_ip(o, a)) same++;
    if (same > (size_t)lim.max_conns_per_ip) {
        /* Connections given less than the grace to send their request
         * are spared: a proxy opening many at once (pushes from an agent)
         * loses none, while a client that only holds connections open
         * loses its oldest once they have had their chance. With no grace
         * the new one itself qualifies. */
        aconn *v = oldest_waiting_locked(a, a->since_ms - lim.grace_ms);
        if (v) {
            close_locked(v);
            why = RF_PER_IP;
        }
    }
    if (nlive > (size_t)lim.max_conns) {
        aconn *v = oldest_waiting_locked(NULL, INT64_MAX);
        close_locked(v ? v : a);
        why = RF_TOTAL;
    }
    pthread_mutex_unlock(&conns_mu);
    if (why >= 0) {
        ip_text(a, ip, sizeof ip);
        char d[160];
        snprintf(d, sizeof d,
                 why == RF_PER_IP ? "more than %d connections from %s; the oldest idle one closed"
                                  : "more than %d connections (last from %s); the oldest idle one "
                                    "closed",
                 why == RF_PER_IP ? lim.max_conns_per_ip : lim.max_conns, ip);
        refused(why, d);
    }
}

static void *reaper_main(void *arg) {
    pthread_setname_np(pthread_self(), "rd-http-reaper");
    (void)arg;
    pthread_mutex_lock(&conns_mu);
    while (!reaper_stop) {
        if (!chead) { /* nothing to time out: an idle router does not tick */
            pthread_cond_wait(&reaper_cv, &conns_mu);
            continue;
        }
        struct timespec dl = deadline_in(CLOCK_REALTIME, 200 * 1000);
        pthread_cond_timedwait(&reaper_cv, &conns_mu, &dl);
        int64_t now = mono_ms();
        int nh = 0, nr = 0;
        for (aconn *a = chead; a; a = a->next) {
            if (a->closing) continue;
            if (!a->req_ms && now - a->since_ms > (int64_t)lim.header_timeout_s * 1000) {
                close_locked(a);
                nh++;
            } else if (a->req_ms && now - a->req_ms > (int64_t)lim.request_timeout_s * 1000) {
                close_locked(a);
                nr++;
            }
        }
        if (nh || nr) {
            pthread_mutex_unlock(&conns_mu);
            char d[128];
            if (nh) {
                snprintf(d, sizeof d,
                         "%d connection(s) sent no complete request headers within %d s", nh,
                         lim.header_timeout_s);
                refused(RF_HEADER_TIMEOUT, d);
                for (int i = 1; i < nh; i++)
                    if (rf_series[RF_HEADER_TIMEOUT]) series_add(rf_series[RF_HEADER_TIMEOUT], 1);
            }
            if (nr) {
                snprintf(d, sizeof d, "%d request(s) not complete within %d s", nr,
                         lim.request_timeout_s);
                refused(RF_REQUEST_TIMEOUT, d);
                for (int i = 1; i < nr; i++)
                    if (rf_series[RF_REQUEST_TIMEOUT]) series_add(rf_series[RF_REQUEST_TIMEOUT], 1);
            }
            pthread_mutex_lock(&conns_mu);
        }
    }
    pthread_mutex_unlock(&conns_mu);
    return NULL;
}

static void mark_request(struct MHD_Connection *c, bool started) {
    const union MHD_ConnectionInfo *si =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    aconn *a = si ? si->socket_context : NULL;
    if (!a) return;
    pthread_mutex_lock(&conns_mu);
    if (started) {
        a->req_ms = mono_ms();
        if (!a->req_ms) a->req_ms = 1;
    } else {
        a->req_ms = 0;
        a->since_ms = mono_ms();
    }
    pthread_mutex_unlock(&conns_mu);
}

/* ---- routes ------------------------------------------------------------- */
typedef struct conn_state {
    route rt; /* copied at header time; fn NULL = answered already */
    char *body;
    size_t len, cap;
} conn_state;

static rd_status add_route(rd_ctx *ctx, const char *method, const char *path, const char *header,
                           const char *secret, rd_http_fn fn, void *arg) {
    if (!method || !path || path[0] != '/' || !fn) return RD_E_CONFIG;
    if ((header == NULL) != (secret == NULL) || (header && (!*header || !*secret))) {
        log_msg(ctx ? ctx->name : "core", RD_LOG_ERROR,
                "HTTP route %s %s: a secret header needs a name and a non-empty value", method,
                path);
        return RD_E_CONFIG;
    }
    pthread_rwlock_wrlock(&routes_mu);
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path) && !strcasecmp(routes[i].method, method)) {
            pthread_rwlock_unlock(&routes_mu);
            log_msg(ctx ? ctx->name : "core", RD_LOG_ERROR, "HTTP route %s %s is already taken",
                    method, path);
            return RD_E_CONFIG;
        }
    routes = xrealloc(routes, (nroutes + 1) * sizeof *routes);
    routes[nroutes++] = (route){xstrdup(method),
                                xstrdup(path),
                                header ? xstrdup(header) : NULL,
                                secret ? xstrdup(secret) : NULL,
                                fn,
                                arg,
                                ctx};
    pthread_rwlock_unlock(&routes_mu);
    return RD_OK;
}

rd_status http_add_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                         void *arg) {
    return add_route(ctx, method, path, NULL, NULL, fn, arg);
}

rd_status http_add_route_auth(rd_ctx *ctx, const char *method, const char *path, const char *header,
                              const char *secret, rd_http_fn fn, void *arg) {
    if (!header || !secret) return RD_E_CONFIG;
    return add_route(ctx, method, path, header, secret, fn, arg);
}

/* Constant time whatever the lengths: compares digests. */
bool http_secret_equal(const char *given, const char *want) {
    if (!given || !want) return false;
    char a[65], b[65];
    sha256_hex(given, strlen(given), a);
    sha256_hex(want, strlen(want), b);
    return CRYPTO_memcmp(a, b, 64) == 0;
}

static const char *req_header(const rd_http_req *req, const char *name) {
    return MHD_lookup_connection_value(req->impl, MHD_HEADER_KIND, name);
}

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *type, char *body,
                               size_t len, int retry_after) {
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type ? type : "text/plain");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, int status, const char *text) {
    return respond(c, status, NULL, xstrdup(text), strlen(text), 0);
}

static void healthz(struct MHD_Connection *c) {
    size_t cap = 256, off = 0;
    char *b = xmalloc(cap);
    bool ok = !atomic_load(&R.draining) && store_healthy(R.st);
    int role = lease_role(); /* a healthy standby is ready: it takes over at once */
    off += (size_t)snprintf(b, cap,
                            "{\"status\":\"%%s\",\"draining\":%s,\"role\":\"%s\","
                            "\"store\":\"%s\",\"plugins\":{",
                            atomic_load(&R.draining) ? "true" : "false",
                            role == 0 ? "standby" : "active",
                            store_healthy(R.st) ? "ok" : "unavailable");
    bool first = true;
    for (size_t i = 0; i < R.nctx; i++) {
        rd_ctx *x = R.ctx[i];
        if (x->kind == RD_KIND_SINK) continue;
        bool r = atomic_load(&x->ready);
        ok = ok && r;
        size_t need = strlen(x->name) + 64;
        if (off + need >= cap) b = xrealloc(b, cap = (off + need) * 2);
        off += (size_t)snprintf(b + off, cap - off, "%s\"%s\":\"%s\"", first ? "" : ",", x->name,
                                r ? "ready" : "starting");
        first = false;
    }
    if (off + 8 >= cap) b = xrealloc(b, cap = off + 16);
    off += (size_t)snprintf(b + off, cap - off, "}}\n");
    char *out = xasprintf(b, ok ? "ok" : "unavailable");
    free(b);
    respond(c, ok ? 200 : 503, "application/json", out, strlen(out), 0);
}

static void livez(struct MHD_Connection *c) {
    int64_t age = 0;
    const char *phase = "";
    bool ok = router_live(&age, &phase);
    char *out = xasprintf("{\"status\":\"%s\",\"phase\":\"%s\",\"main_loop_age_ms\":%lld}\n",
                          ok ? "ok" : "stalled", phase, (long long)age);
    respond(c, ok ? 200 : 503, "application/json", out, strlen(out), 0);
}

/* Content-Length, strictly: digits only, no overflow. -1 when absent,
 * -2 when malformed. */
static int64_t content_length(struct MHD_Connection *c) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v) return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!*v) return -2;
    int64_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++) {
        if (n > (INT64_MAX - 9) / 10) return -2;
        n = n * 10 + (*v - '0');
    }
    while (*v == ' ' || *v == '\t')
        v++;
    return *v ? -2 : n;
}

/* First call, headers complete, no body read yet: answer now or accept. */
static enum MHD_Result on_headers(struct MHD_Connection *c, const char *url, const char *method,
                                  conn_state *cs) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (get && !strcmp(url, "/healthz")) {
        healthz(c);
        return MHD_YES;
    }
    if (get && !strcmp(url, "/livez")) {
        livez(c);
        return MHD_YES;
    }
    if (strlen(url) > 2048) {
        refused(RF_BAD_REQUEST, "request path longer than 2048 bytes");
        return respond_text(c, 414, "path too long\n");
    }
    route rt = {0};
    bool path_known = false, authorized = false;
    pthread_rwlock_rdlock(&routes_mu);
    for (size_t i = 0; i < nroutes; i++) {
        if (strcmp(routes[i].path, url)) continue;
        path_known = true;
        if (!strcasecmp(routes[i].method, method) || (get && !strcmp(routes[i].method, "GET"))) {
            rt = routes[i];
            authorized =
                !rt.auth_header ||
                http_secret_equal(MHD_lookup_connection_value(c, MHD_HEADER_KIND, rt.auth_header),
                                  rt.auth_secret);
        }
    }
    pthread_rwlock_unlock(&routes_mu);
    if (!rt.fn) {
        if (path_known) {
            refused(RF_METHOD, "request with a method the path does not take");
            return respond_text(c, 405, "method not allowed\n");
        }
        refused(RF_NOT_FOUND, "request for an unknown path");
        return respond_text(c, 404, "not found\n");
    }
    if (!authorized) {
        refused(RF_UNAUTHORIZED, "request without the route's secret header");
        return respond_text(c, 401, "unauthorized\n");
    }
    int64_t cl = content_length(c);
    if (cl == -2) {
        refused(RF_BAD_REQUEST, "malformed Content-Length");
        return respond_text(c, 400, "bad Content-Length\n");
    }
    if (cl > (int64_t)lim.max_body) {
        refused(RF_TOO_LARGE, "body larger than admin_max_body_bytes announced");
        return respond_text(c, 413, "body too large\n");
    }
    rt.auth_secret = NULL; /* not needed past this point */
    cs->rt = rt;
    if (cl > 0) {
        cs->cap = (size_t)cl + 1;
        cs->body = xmalloc(cs->cap);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    conn_state *cs = *con_cls;
    if (!cs) {
        mark_request(c, true);
        *con_cls = cs = xcalloc(1, sizeof *cs);
        return on_headers(c, url, method, cs);
    }
    if (!cs->rt.fn) { /* answered from the headers; a body is not kept */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (*upload_size > lim.max_body - cs->len) {
            /* Chunked or lying about its length: stop reading at once. */
            refused(RF_TOO_LARGE, "body grew past admin_max_body_bytes");
            return MHD_NO;
        }
        if (cs->len + *upload_size + 1 > cs->cap) {
            cs->cap = cs->len + *upload_size + 1;
            cs->body = xrealloc(cs->body, cs->cap);
        }
        memcpy(cs->body + cs->len, upload, *upload_size);
        cs->len += *upload_size;
        cs->body[cs->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    rd_http_req req = {.size = sizeof req,
                       .method = method,
                       .path = url,
                       .body = cs->body ? cs->body : "",
                       .body_len = cs->len,
                       .header = req_header,
                       .impl = c};
    rd_http_resp resp = {.size = sizeof resp, .status = 200};
    rd_http_fn fn = cs->rt.fn;
    cs->rt.fn = NULL;
    fn(cs->rt.arg, &req, &resp);
    if (resp.status < 100 || resp.status > 599) resp.status = 500;
    return respond(c, resp.status, resp.content_type, resp.body, resp.body_len, resp.retry_after_s);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)toe;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
    mark_request(c, false);
}

/* Percent-decoding that keeps "%00" as written: a NUL must never cut a
 * path short so that it matches a shorter route. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls, (void)c;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && r[1] && r[2] &&
            (hi = (r[1] >= '0' && r[1] <= '9')               ? r[1] - '0'
                  : (r[1] | 32) >= 'a' && (r[1] | 32) <= 'f' ? (r[1] | 32) - 'a' + 10
                                                             : -1) >= 0 &&
            (lo = (r[2] >= '0' && r[2] <= '9')               ? r[2] - '0'
                  : (r[2] | 32) >= 'a' && (r[2] | 32) <= 'f' ? (r[2] | 32) - 'a' + 10
                                                             : -1) >= 0 &&
            (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

int http_parse_listen(const char *listen, struct sockaddr_storage *ss, bool *wildcard, char *err,
                      size_t errsz) {
    if (!listen || !*listen || !strcmp(listen, "off")) return 1;
    memset(ss, 0, sizeof *ss);
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        snprintf(err, errsz, "admin_listen '%s': expected HOST:PORT (or off)", listen);
        return -1;
    }
    int64_t port;
    const char *p = colon + 1;
    if (!*p || strspn(p, "0123456789") != strlen(p) || parse_i64(p, &port) || port > 65535) {
        snprintf(err, errsz, "admin_listen '%s': port must be a number from 0 to 65535", listen);
        return -1;
    }
    char *host = xstrndup(listen, (size_t)(colon - listen));
    char *h = host;
    if (h[0] == '[') {
        size_t n = strlen(h);
        if (n < 2 || h[n - 1] != ']') {
            snprintf(err, errsz, "admin_listen '%s': an IPv6 host goes in brackets: [::1]:PORT",
                     listen);
            free(host);
            return -1;
        }
        h[n - 1] = 0;
        h++;
    }
    if (!*h) {
        snprintf(err, errsz,
                 "admin_listen '%s': name the host (127.0.0.1:%s for this machine only, "
                 "0.0.0.0:%s for every interface)",
                 listen, p, p);
        free(host);
        return -1;
    }
    if (!strcmp(h, "*")) h = "0.0.0.0";
    if (!strcmp(h, "localhost")) h = "127.0.0.1";
    if (strchr(h, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &a6->sin6_addr) != 1) goto badhost;
        *wildcard = IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, h, &a4->sin_addr) != 1) goto badhost;
        *wildcard = a4->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    free(host);
    return 0;
badhost:
    snprintf(err, errsz, "admin_listen '%s': '%s' is not an IP address", listen, h);
    free(host);
    return -1;
}

int http_start(const char *listen, const http_limits *limits, char *err, size_t errsz) {
    struct sockaddr_storage ss;
    bool wildcard = false;
    int pr = http_parse_listen(listen, &ss, &wildcard, err, errsz);
    if (pr) return pr < 0 ? -1 : 0;
    lim = *limits;
    rd_metric *m = metric_family(RD_METRIC_COUNTER, "routerd_admin_refused_total",
                                 "Admin server connections closed and requests refused, by reason.",
                                 (const char *const[]){"reason", NULL}, NULL, 0);
    for (int i = 0; i < RF_N; i++)
        rf_series[i] = metric_series(m, (const char *const[]){rf_name[i]});
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_INTERNAL_THREAD;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    /* MHD's own cap only backs ours up: evicted sockets linger until MHD
     * reads their end, and a full MHD stops accepting. */
    mhd = MHD_start_daemon(
        flags, port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        NULL, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)2, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)lim.request_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(lim.max_conns + 64),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
    if (!mhd) {
        snprintf(err, errsz, "admin_listen %s: cannot listen (address in use or not local?)",
                 listen);
        return -1;
    }
    if (wildcard)
        LOGW("admin server listens on every interface (%s): /healthz, /livez, /metrics and plugin "
             "routes are reachable from other hosts",
             listen);
    reaper_stop = false;
    reaper_on = pthread_create(&reaper, NULL, reaper_main, NULL) == 0;
    return 0;
}

void http_stop(void) {
    if (mhd) MHD_stop_daemon(mhd);
    mhd = NULL;
    if (reaper_on) {
        pthread_mutex_lock(&conns_mu);
        reaper_stop = true;
        pthread_cond_signal(&reaper_cv);
        pthread_mutex_unlock(&conns_mu);
        pthread_join(reaper, NULL);
        reaper_on = false;
    }
    for (size_t i = 0; i < nroutes; i++) {
        free(routes[i].method);
        free(routes[i].path);
        free(routes[i].auth_header);
        if (routes[i].auth_secret)
            OPENSSL_cleanse(routes[i].auth_secret, strlen(routes[i].auth_secret));
        free(routes[i].auth_secret);
    }
    free(routes);
    routes = NULL;
    nroutes = 0;
}
