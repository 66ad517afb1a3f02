/* Admin HTTP server: /healthz, /livez and routes that plugins register. */
#include "lease.h"
#include "router.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1024 * 1024)

typedef struct route {
    char *method, *path;
    rd_http_fn fn;
    void *arg;
    rd_ctx *ctx;
} route;

static route *routes;
static size_t nroutes;
static pthread_rwlock_t routes_mu = PTHREAD_RWLOCK_INITIALIZER;
static struct MHD_Daemon *mhd;

typedef struct conn_state {
    char *body;
    size_t len;
    bool too_big;
} conn_state;

rd_status http_add_route(rd_ctx *ctx, const char *method, const char *path, rd_http_fn fn,
                         void *arg) {
    if (!method || !path || path[0] != '/' || !fn) return RD_E_CONFIG;
    pthread_rwlock_wrlock(&routes_mu);
    for (size_t i = 0; i < nroutes; i++)
        if (!strcmp(routes[i].path, path) && !strcasecmp(routes[i].method, method)) {
            pthread_rwlock_unlock(&routes_mu);
            log_msg(ctx ? ctx->name : "core", RD_LOG_ERROR, "HTTP route %s %s is already taken",
                    method, path);
            return RD_E_CONFIG;
        }
    routes = xrealloc(routes, (nroutes + 1) * sizeof *routes);
    routes[nroutes++] = (route){xstrdup(method), xstrdup(path), fn, arg, ctx};
    pthread_rwlock_unlock(&routes_mu);
    return RD_OK;
}

static const char *req_header(const rd_http_req *req, const char *name) {
    return MHD_lookup_connection_value(req->impl, MHD_HEADER_KIND, name);
}

static enum MHD_Result respond(struct MHD_Connection *c, int status, const char *type, char *body,
                               size_t len, int retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", MHD_RESPMEM_MUST_FREE);
    if (!body) {
        MHD_destroy_response(r);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
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
        size_t need = strlen(x->name) + strlen(x->ready_reason) * 2 + 64;
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
    int64_t age = mono_ms() - atomic_load(&R.heartbeat_ms);
    bool ok = age < 10000;
    char *out = xasprintf("{\"status\":\"%s\",\"main_loop_age_ms\":%lld}\n", ok ? "ok" : "stalled",
                          (long long)age);
    respond(c, ok ? 200 : 503, "application/json", out, strlen(out), 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    conn_state *cs = *con_cls;
    if (!cs) {
        *con_cls = xcalloc(1, sizeof *cs);
        return MHD_YES;
    }
    if (*upload_size) {
        if (cs->len + *upload_size > MAX_BODY) {
            cs->too_big = true;
        } else {
            cs->body = xrealloc(cs->body, cs->len + *upload_size + 1);
            memcpy(cs->body + cs->len, upload, *upload_size);
            cs->len += *upload_size;
            cs->body[cs->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_big) return respond(c, 413, NULL, xstrdup("body too large\n"), 15, 0);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (get && !strcmp(url, "/healthz")) {
        healthz(c);
        return MHD_YES;
    }
    if (get && !strcmp(url, "/livez")) {
        livez(c);
        return MHD_YES;
    }
    route rt = {0};
    bool path_known = false;
    pthread_rwlock_rdlock(&routes_mu);
    for (size_t i = 0; i < nroutes; i++) {
        if (strcmp(routes[i].path, url)) continue;
        path_known = true;
        if (!strcasecmp(routes[i].method, method) || (get && !strcmp(routes[i].method, "GET")))
            rt = routes[i];
    }
    pthread_rwlock_unlock(&routes_mu);
    if (!rt.fn) {
        if (path_known) return respond(c, 405, NULL, xstrdup("method not allowed\n"), 19, 0);
        return respond(c, 404, NULL, xstrdup("not found\n"), 10, 0);
    }
    rd_http_req req = {.size = sizeof req,
                       .method = method,
                       .path = url,
                       .body = cs->body ? cs->body : "",
                       .body_len = cs->len,
                       .header = req_header,
                       .impl = c};
    rd_http_resp resp = {.size = sizeof resp, .status = 200};
    rt.fn(rt.arg, &req, &resp);
    return respond(c, resp.status, resp.content_type, resp.body, resp.body_len, resp.retry_after_s);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

int http_start(const char *listen, char *err, size_t errsz) {
    if (!listen || !*listen || !strcmp(listen, "off")) return 0;
    const char *colon = strrchr(listen, ':');
    if (!colon) {
        snprintf(err, errsz, "admin_listen '%s': expected HOST:PORT", listen);
        return -1;
    }
    char *host = xstrndup(listen, (size_t)(colon - listen));
    int64_t port;
    if (parse_i64(colon + 1, &port) || port < 0 || port > 65535) {
        snprintf(err, errsz, "admin_listen '%s': bad port", listen);
        free(host);
        return -1;
    }
    struct sockaddr_storage ss = {0};
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_INTERNAL_THREAD;
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strcspn(h, "]")] = 0;
    }
    if (!*h || !strcmp(h, "*")) h = "0.0.0.0";
    if (strchr(h, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &a6->sin6_addr) != 1) goto badhost;
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (!strcmp(h, "localhost")) h = "127.0.0.1";
        if (inet_pton(AF_INET, h, &a4->sin_addr) != 1) goto badhost;
    }
    mhd =
        MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_END);
    if (!mhd) {
        snprintf(err, errsz, "admin_listen %s: cannot listen (address in use or not local?)",
                 listen);
        free(host);
        return -1;
    }
    free(host);
    return 0;
badhost:
    snprintf(err, errsz, "admin_listen '%s': '%s' is not an IP address", listen, h);
    free(host);
    return -1;
}

void http_stop(void) {
    if (mhd) MHD_stop_daemon(mhd);
    mhd = NULL;
    for (size_t i = 0; i < nroutes; i++) {
        free(routes[i].method);
        free(routes[i].path);
    }
    free(routes);
    routes = NULL;
    nroutes = 0;
}
