/* See a2a_http.h. Handles go back to the pool (curl_pool.h) after each
 * call, so the most recently used one (with a warm connection) is picked
 * first and a burst of hundreds of calls costs one handle each, created
 * once. The event loop keeps a pool of its own: its handles
 * find their connections in the multi handles' caches instead. */
#include "a2a_http.h"
#include "curl_pool.h"

#include <ctype.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct a2a_http {
    easy_pool pool;
    curl_share_locked share;
    char *ca_file;
};

a2a_http *a2a_http_new(size_t max_idle, const char *ca_file) {
    a2a_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (ca_file && !(h->ca_file = strdup(ca_file))) {
        free(h);
        return NULL;
    }
    easy_pool_init(&h->pool, max_idle ? max_idle : 64);
    curl_share_locked_init(&h->share);
    easy_pool_share(&h->pool, h->share.sh);
    return h;
}

void a2a_http_free(a2a_http *h) {
    if (!h) return;
    easy_pool_destroy(&h->pool);
    curl_share_locked_free(&h->share);
    free(h->ca_file);
    free(h);
}

static CURL *acquire(a2a_http *h) {
    CURL *c = easy_pool_get(&h->pool);
    if (c) curl_easy_reset(c); /* keeps live connections and caches */
    return c;
}

static void release(a2a_http *h, CURL *c, int keep) {
    if (keep)
        easy_pool_put(&h->pool, c);
    else if (c)
        curl_easy_cleanup(c);
}

typedef struct {
    const a2a_http_req *rq;
    a2a_http_resp *out;
    size_t cap;
    int decided; /* SSE or buffer, decided at the first body byte */
    a2a_sse sse;
    int sse_init;
    int prereqs;     /* connections the request was about to be written on */
    int *connecting; /* the loop's count while this one connects; NULL after */
} xfer;

/* *dst becomes a copy of v[0..n), or NULL when n is 0 (or no memory: the
 * header is then as good as absent). */
static void keep_header(char **dst, const char *v, size_t n) {
    free(*dst);
    *dst = NULL;
    if (!n) return;
    char *p = malloc(n + 1);
    if (!p) return;
    memcpy(p, v, n);
    p[n] = 0;
    *dst = p;
}

static size_t on_header(char *b, size_t sz, size_t n, void *arg) {
    xfer *x = arg;
    size_t len = sz * n;
    const char *colon = memchr(b, ':', len);
    if (!colon) {
        /* a new status line (redirect, 100-continue): forget old headers */
        if (len > 5 && !strncmp(b, "HTTP/", 5)) {
            x->out->ctype[0] = 0;
            keep_header(&x->out->www_auth, NULL, 0);
            keep_header(&x->out->location, NULL, 0);
            keep_header(&x->out->etag, NULL, 0);
            x->out->max_age = -1;
            x->out->retry_after_s = 0;
        }
        return len;
    }
    size_t nlen = (size_t)(colon - b);
    const char *v = colon + 1;
    const char *end = b + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
    if (nlen == 12 && !strncasecmp(b, "Content-Type", 12)) {
        size_t k = 0;
        for (; k < vlen && k < sizeof x->out->ctype - 1 && v[k] != ';' && v[k] != ' '; k++)
            x->out->ctype[k] = (char)tolower((unsigned char)v[k]);
        x->out->ctype[k] = 0;
    } else if (nlen == 11 && !strncasecmp(b, "Retry-After", 11)) {
        /* delta-seconds only; hostile values are clamped, not trusted */
        char num[24];
        size_t k = vlen < sizeof num - 1 ? vlen : sizeof num - 1;
        memcpy(num, v, k);
        num[k] = 0;
        char *e;
        long long s = strtoll(num, &e, 10);
        x->out->retry_after_s = e == num || *e || s < 0 ? 0 : s > 86400 ? 86400 : (long)s;
    } else if (nlen == 4 && !strncasecmp(b, "ETag", 4)) {
        int ok = vlen < 128;
        for (size_t k = 0; ok && k < vlen; k++)
            ok = (unsigned char)v[k] >= 0x20 && v[k] != 0x7f;
        if (ok) keep_header(&x->out->etag, v, vlen);
    } else if (nlen == 13 && !strncasecmp(b, "Cache-Control", 13)) {
        char cc[256];
        size_t k = vlen < sizeof cc - 1 ? vlen : sizeof cc - 1;
        for (size_t i = 0; i < k; i++)
            cc[i] = (char)tolower((unsigned char)v[i]);
        cc[k] = 0;
        const char *m = strstr(cc, "max-age=");
        if (strstr(cc, "no-store") || strstr(cc, "no-cache")) {
            x->out->max_age = 0;
        } else if (m) {
            /* hostile: digits only, clamped to a year */
            long long n = 0;
            const char *d = m + 8;
            for (; *d >= '0' && *d <= '9' && n <= 31536000; d++)
                n = n * 10 + (*d - '0');
            if (d > m + 8) x->out->max_age = n > 31536000 ? 31536000 : (long)n;
        }
    } else if (nlen == 8 && !strncasecmp(b, "Location", 8)) {
        keep_header(&x->out->location, v, vlen < 512 ? vlen : 0);
    } else if (nlen == 16 && !strncasecmp(b, "WWW-Authenticate", 16)) {
        keep_header(&x->out->www_auth, v, vlen < 159 ? vlen : 159);
    }
    return len;
}

static size_t on_body(char *b, size_t sz, size_t n, void *arg) {
    xfer *x = arg;
    size_t len = sz * n;
    a2a_http_resp *o = x->out;
    if (!x->decided) {
        x->decided = 1;
        if (x->rq->sse_fn && !strcmp(o->ctype, "text/event-stream")) {
            o->is_sse = 1;
            a2a_sse_init(&x->sse, x->rq->max_bytes, x->rq->sse_fn, x->rq->sse_arg);
            x->sse_init = 1;
        }
    }
    if (o->is_sse) {
        int rc = a2a_sse_feed(&x->sse, b, len);
        if (rc == A2A_SSE_STOPPED) {
            o->sse_stopped = 1;
            return 0; /* ends the transfer; not an error for the caller */
        }
        if (rc < 0) {
            o->too_big = 1;
            return 0;
        }
        return len;
    }
    if (x->rq->max_bytes && o->len + len > x->rq->max_bytes) {
        o->too_big = 1;
        return 0;
    }
    if (o->len + len + 1 > x->cap) {
        size_t c = x->cap ? x->cap : 4096;
        while (c < o->len + len + 1)
            c *= 2;
        char *p = realloc(o->body, c);
        if (!p) return 0;
        o->body = p;
        x->cap = c;
    }
    memcpy(o->body + o->len, b, len);
    o->len += len;
    o->body[o->len] = 0;
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    xfer *x = arg;
    if (x->rq->abort_fn && x->rq->abort_fn(x->rq->abort_arg)) {
        x->out->aborted = 1;
        return 1;
    }
    return 0;
}

/* The connection is up and nothing of the request is written yet: a stop
 * seen now provably sends nothing. */
static int on_prereq(void *arg, char *ip, char *lip, int port, int lport) {
    (void)ip, (void)lip, (void)port, (void)lport;
    xfer *x = arg;
    if (x->connecting) { /* connected: the next queued exchange may start */
        --*x->connecting;
        x->connecting = NULL;
    }
    if (x->rq->abort_fn && x->rq->abort_fn(x->rq->abort_arg)) {
        x->out->aborted = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    if (++x->prereqs > 1 && x->rq->no_repeat) {
        x->out->repeat_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    if (x->rq->before_send_fn) x->rq->before_send_fn(x->rq->before_send_arg);
    return CURL_PREREQFUNC_OK;
}

/* Sets c up for one exchange described by x. */
static void setup(a2a_http *h, CURL *c, xfer *x) {
    const a2a_http_req *rq = x->rq;
    a2a_http_resp *out = x->out;
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (h->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, rq->headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 0L);
    /* Streams can be silent for minutes (no heartbeats): no low-speed
     * limit, but TCP keep-alive notices a dead peer. */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 15L);
    /* No Accept-Encoding: libcurl 7.88 formats the line a byte at a time,
     * twice (about 12,000 instructions a request), and a compressed stream
     * is one a proxy may hold back to fill its buffer. */
    /* A declared oversized body fails at once; streams are capped per event. */
    if (rq->max_bytes && !rq->sse_fn)
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_bytes);
    if (rq->body) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(rq->body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
}

/* Fills the answer of a finished exchange from its result cc. */
static int finish(CURL *c, xfer *x, CURLcode cc) {
    a2a_http_resp *out = x->out;
    out->cc = cc;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    long reqsz = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &reqsz);
    out->req_sent = reqsz > 0 || out->status > 0 || out->repeat_refused;
    if (out->cc == CURLE_FILESIZE_EXCEEDED) out->too_big = 1;
    if (x->sse_init) {
        if (out->cc == CURLE_OK) {
            if (a2a_sse_finish(&x->sse) < 0) out->too_big = 1;
        }
        a2a_sse_free(&x->sse);
        x->sse_init = 0;
    }
    int ok = out->cc == CURLE_OK || (out->cc == CURLE_WRITE_ERROR && out->sse_stopped);
    if (ok && out->sse_stopped) out->cc = CURLE_OK;
    if (!out->body && !out->is_sse) out->body = calloc(1, 1);
    return ok && !out->too_big ? 0 : -1;
}

static void resp_init(a2a_http_resp *out) {
    memset(out, 0, sizeof *out);
    out->max_age = -1;
}

int a2a_http_do(a2a_http *h, const a2a_http_req *rq, a2a_http_resp *out) {
    resp_init(out);
    CURL *c = acquire(h);
    if (!c) {
        out->cc = CURLE_OUT_OF_MEMORY;
        snprintf(out->errbuf, sizeof out->errbuf, "cannot create a curl handle");
        return -1;
    }
    xfer x = {.rq = rq, .out = out};
    setup(h, c, &x);
    int rc = finish(c, &x, curl_easy_perform(c));
    /* curl closes a connection whose transfer was cut; the handle stays good. */
    release(h, c, 1);
    return rc;
}

/* ---- the event loop ------------------------------------------------------
 * One thread owns a curl multi handle driven by epoll
 * (curl_multi_socket_action), so an exchange in flight costs a socket and
 * an easy handle, not a thread. Other threads hand it exchanges and timers
 * through a locked list and an eventfd. */

#define LOOP_SHARDS 8

struct a2a_lop {
    struct a2a_lop *next, *prev; /* incoming list, then the active list */
    struct shard *sh;
    xfer x;
    CURL *c;
    a2a_loop_fn fn; /* exchange done, or timer due */
    void *arg;
    int64_t due_ms;    /* timers */
    int64_t queued_ms; /* exchanges: handed over at */
    int timer;
    int forbid; /* its connection closes at the end */
};

struct a2a_loop {
    a2a_http *h;
    easy_pool pool; /* handles used with the multi handle only */
    int ep, evfd;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    a2a_lop *in; /* handed over, not yet taken by the loop (under mu) */
    int stop;    /* under mu */
    int64_t (*now)(void);
    /* Several multi handles on the one thread: curl 7.88 walks every
     * connection of a multi handle's cache each time a transfer is removed,
     * so thousands of connections in flight cost that many steps per
     * answer; shards divide the walk. Each has its own connection cache. */
    struct shard {
        a2a_loop *l;
        CURLM *m;
        int64_t due; /* curl's timeout, -1: none */
        int idx;
        size_t n; /* exchanges in it */
        /* At least as many as the idle connections in its cache: every
         * exchange that ended and could keep its connection, less those
         * that looked for one. 0 = none to find. */
        size_t idle_max;
        int mux; /* an exchange here ran over HTTP/2: connections are shared */
    } sh[LOOP_SHARDS];
    a2a_lop *active;  /* exchanges in the multi handle (loop thread only) */
    a2a_lop **timers; /* min-heap by due_ms (loop thread only) */
    size_t ntimers, tcap;
    atomic_size_t nactive;
    size_t busiest;     /* most exchanges at once since the last trim (loop thread) */
    int64_t idle_since; /* no exchange in flight since then; 0 = busy (loop thread) */
    atomic_int poke;    /* a2a_loop_poke(): scan the abort_fns soon */
    int64_t last_scan;  /* of the abort_fns (loop thread) */
    /* Exchanges still connecting, at most max_connecting; the others wait
     * in order, without a curl handle (loop thread). */
    int connecting, max_connecting;
    a2a_lop *wait_head, *wait_tail;
    size_t idle_per_shard; /* CURLMOPT_MAXCONNECTS of each shard; 0 = curl's */
};

/* A socket curl watches is marked (curl_multi_assign) once added to the
 * epoll set, so a new one costs one epoll_ctl, not a failed MOD first. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp) {
    (void)e;
    struct shard *sh = arg;
    a2a_loop *l = sh->l;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.u64 = ((uint64_t)(unsigned)sh->idx << 32) | (uint32_t)s};
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    int op = sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->ep, op, s, &ev) != 0) {
        if (errno == ENOENT)
            epoll_ctl(l->ep, EPOLL_CTL_ADD, s, &ev);
        else if (errno == EEXIST)
            epoll_ctl(l->ep, EPOLL_CTL_MOD, s, &ev);
    }
    if (!sockp) curl_multi_assign(sh->m, s, sh);
    return 0;
}

static int on_timer(CURLM *m, long ms, void *arg) {
    (void)m;
    struct shard *sh = arg;
    sh->due = ms < 0 ? -1 : sh->l->now() + ms;
    return 0;
}

a2a_loop *a2a_loop_new(a2a_http *h, long max_host_conns, long max_idle, long max_connecting,
                       int64_t (*now)(void)) {
    a2a_loop *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->h = h;
    l->now = now;
    l->max_connecting = max_connecting > 0 && max_connecting < INT_MAX ? (int)max_connecting : 0;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&l->mu, NULL);
    easy_pool_init(&l->pool, 256);
    easy_pool_share(&l->pool, h->share.sh);
    int ok = l->ep >= 0 && l->evfd >= 0;
    for (int i = 0; i < LOOP_SHARDS; i++) {
        struct shard *sh = &l->sh[i];
        sh->l = l;
        sh->idx = i;
        sh->due = -1;
        sh->m = curl_multi_init();
        if (!sh->m) {
            ok = 0;
            continue;
        }
        curl_multi_setopt(sh->m, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(sh->m, CURLMOPT_SOCKETDATA, sh);
        curl_multi_setopt(sh->m, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(sh->m, CURLMOPT_TIMERDATA, sh);
        /* HTTP/2 streams share a connection when the agent speaks it. */
        curl_multi_setopt(sh->m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
        /* the bound is the instance's: split among the shards */
        if (max_host_conns > 0)
            curl_multi_setopt(sh->m, CURLMOPT_MAX_HOST_CONNECTIONS,
                              (max_host_conns + LOOP_SHARDS - 1) / LOOP_SHARDS);
        /* curl's own bound is four times the transfers added: after a
         * burst every connection would stay open, each with its socket
         * and about 5 KiB. Connections in use are never closed for it. */
        if (max_idle > 0) {
            l->idle_per_shard = (size_t)(max_idle + LOOP_SHARDS - 1) / LOOP_SHARDS;
            curl_multi_setopt(sh->m, CURLMOPT_MAXCONNECTS, (long)l->idle_per_shard);
        }
    }
    if (!ok) {
        a2a_loop_free(l);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->evfd, &ev);
    return l;
}

static void heap_swap(a2a_lop **a, size_t i, size_t j) {
    a2a_lop *t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static int heap_push(a2a_loop *l, a2a_lop *o) {
    if (l->ntimers == l->tcap) {
        size_t nc = l->tcap ? l->tcap * 2 : 64;
        a2a_lop **t = realloc(l->timers, nc * sizeof *t);
        if (!t) return -1;
        l->timers = t;
        l->tcap = nc;
    }
    size_t i = l->ntimers++;
    l->timers[i] = o;
    while (i && l->timers[(i - 1) / 2]->due_ms > l->timers[i]->due_ms) {
        heap_swap(l->timers, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

static a2a_lop *heap_pop(a2a_loop *l) {
    if (!l->ntimers) return NULL;
    a2a_lop *top = l->timers[0];
    l->timers[0] = l->timers[--l->ntimers];
    size_t i = 0;
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->ntimers && l->timers[a]->due_ms < l->timers[m]->due_ms) m = a;
        if (b < l->ntimers && l->timers[b]->due_ms < l->timers[m]->due_ms) m = b;
        if (m == i) break;
        heap_swap(l->timers, i, m);
        i = m;
    }
    return top;
}

static void active_unlink(a2a_loop *l, a2a_lop *o) {
    if (o->prev)
        o->prev->next = o->next;
    else
        l->active = o->next;
    if (o->next) o->next->prev = o->prev;
    o->next = o->prev = NULL;
}

/* Ends an exchange: its answer is filled, the handle goes back to the
 * pool and the owner is told, on the loop thread. */
static void op_end(a2a_loop *l, a2a_lop *o, CURLcode cc) {
    if (o->x.connecting) {
        l->connecting--;
        o->x.connecting = NULL;
    }
    curl_multi_remove_handle(o->sh->m, o->c);
    o->sh->n--;
    /* curl keeps at most idle_per_shard in the cache, in use or not */
    if (!o->forbid && (!l->idle_per_shard || o->sh->idle_max < l->idle_per_shard))
        o->sh->idle_max++;
    long ver = 0;
    if (!o->sh->mux && curl_easy_getinfo(o->c, CURLINFO_HTTP_VERSION, &ver) == CURLE_OK &&
        ver >= CURL_HTTP_VERSION_2_0)
        o->sh->mux = 1;
    active_unlink(l, o);
    atomic_fetch_sub(&l->nactive, 1);
    int rc = finish(o->c, &o->x, cc);
    easy_pool_put(&l->pool, o->c);
    a2a_loop_fn fn = o->fn;
    void *arg = o->arg;
    free(o);
    fn(arg, rc);
}

/* Ends an exchange that never got a curl handle (aborted while waiting,
 * no handle to be had, or its time spent waiting). */
static void wait_end(a2a_loop *l, a2a_lop *o, CURLcode cc, const char *why) {
    a2a_http_resp *out = o->x.out;
    out->cc = cc;
    snprintf(out->errbuf, sizeof out->errbuf, "%s", why);
    if (!out->body) out->body = calloc(1, 1);
    atomic_fetch_sub(&l->nactive, 1);
    a2a_loop_fn fn = o->fn;
    void *arg = o->arg;
    free(o);
    fn(arg, -1);
}

/* Starts waiting exchanges while fewer than max_connecting connect: a
 * burst of thousands opens connections at the pace they come up, and
 * later exchanges find the connections earlier ones freed. */
static void admit(a2a_loop *l) {
    while (l->wait_head && (!l->max_connecting || l->connecting < l->max_connecting)) {
        a2a_lop *o = l->wait_head;
        l->wait_head = o->next;
        if (!l->wait_head) l->wait_tail = NULL;
        o->next = NULL;
        const a2a_http_req *rq = o->x.rq;
        /* the time spent waiting counts against the exchange's own */
        long left = rq->timeout_ms;
        if (left > 0) {
            left -= (long)(l->now() - o->queued_ms);
            if (left <= 0) {
                wait_end(l, o, CURLE_OPERATION_TIMEDOUT, "timed out waiting to connect");
                continue;
            }
        }
        CURL *c = easy_pool_get(&l->pool);
        if (!c) {
            wait_end(l, o, CURLE_OUT_OF_MEMORY, "cannot create a curl handle");
            continue;
        }
        curl_easy_reset(c);
        o->c = c;
        setup(l->h, c, &o->x);
        if (left > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, left);
        curl_easy_setopt(c, CURLOPT_PRIVATE, o);
        /* No progress callback: the loop asks every exchange's abort_fn
         * at each tick (scan_aborts), idle or not. */
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
        /* Answers are small JSON: curl's smallest receive buffer per
         * exchange keeps thousands in flight cheap (its default is 16
         * KiB); a large answer takes more reads. */
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1024L);
        l->connecting++;
        o->x.connecting = &l->connecting;
        o->next = l->active;
        if (l->active) l->active->prev = o;
        l->active = o;
        /* the least busy shard, the first of equals: at a low rate every
         * exchange goes to the first and reuses its warm connections */
        o->sh = &l->sh[0];
        for (int i = 1; i < LOOP_SHARDS; i++)
            if (l->sh[i].n < o->sh->n) o->sh = &l->sh[i];
        /* With more in flight than the shard keeps idle, curl would close
         * a connection as this one comes back, after walking its whole
         * cache for the oldest idle one (every connection in use: O(n) per
         * answer). This one closes instead, without the walk. */
        if (l->idle_per_shard && o->sh->n >= l->idle_per_shard) {
            curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
            o->forbid = 1;
        }
        /* Looking for an idle connection walks every connection of the
         * shard (all in use during a burst): skipped when none can be
         * idle. Never once HTTP/2 was seen, whose connections serve
         * several exchanges at once. */
        if (!o->sh->mux && !o->sh->idle_max)
            curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
        else if (o->sh->idle_max)
            o->sh->idle_max--;
        o->sh->n++;
        if (curl_multi_add_handle(o->sh->m, o->c) != CURLM_OK) {
            snprintf(o->x.out->errbuf, sizeof o->x.out->errbuf, "cannot start the exchange");
            op_end(l, o, CURLE_FAILED_INIT);
        }
    }
}

static void take_incoming(a2a_loop *l) {
    pthread_mutex_lock(&l->mu);
    a2a_lop *in = l->in;
    l->in = NULL;
    pthread_mutex_unlock(&l->mu);
    /* the list is newest first: keep the order they were handed over */
    a2a_lop *rev = NULL;
    while (in) {
        a2a_lop *n = in->next;
        in->next = rev;
        rev = in;
        in = n;
    }
    while (rev) {
        a2a_lop *o = rev;
        rev = rev->next;
        o->next = o->prev = NULL;
        if (o->timer) {
            if (heap_push(l, o) != 0) {
                a2a_loop_fn fn = o->fn;
                void *arg = o->arg;
                free(o);
                fn(arg, 0); /* no memory for the heap: run it now */
            }
            continue;
        }
        if (l->wait_tail)
            l->wait_tail->next = o;
        else
            l->wait_head = o;
        l->wait_tail = o;
    }
    admit(l);
}

static void reap(struct shard *sh) {
    a2a_loop *l = sh->l;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sh->m, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        char *p = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
        CURLcode cc = msg->data.result;
        if (p) op_end(l, (a2a_lop *)p, cc);
    }
}

/* A hard stop is seen by polling each exchange's abort_fn (an idle
 * exchange gets no progress callback from the multi interface). */
static void scan_aborts(a2a_loop *l, int all) {
    for (a2a_lop **w = &l->wait_head, *prev = NULL; *w;) {
        a2a_lop *o = *w;
        const a2a_http_req *rq = o->x.rq;
        if (all || (rq->abort_fn && rq->abort_fn(rq->abort_arg))) {
            *w = o->next;
            if (l->wait_tail == o) l->wait_tail = prev;
            o->x.out->aborted = 1;
            wait_end(l, o, CURLE_ABORTED_BY_CALLBACK, "aborted before it started");
            continue;
        }
        prev = o;
        w = &o->next;
    }
    a2a_lop *o = l->active;
    while (o) {
        a2a_lop *n = o->next;
        const a2a_http_req *rq = o->x.rq;
        if (all || (rq->abort_fn && rq->abort_fn(rq->abort_arg))) {
            o->x.out->aborted = 1;
            op_end(l, o, CURLE_ABORTED_BY_CALLBACK);
        }
        o = n;
    }
    /* timers of stopped calls run now: their owner sees the stop */
    size_t k = 0;
    for (size_t i = 0; i < l->ntimers; i++) {
        a2a_lop *t = l->timers[i];
        if (all || (t->x.rq && t->x.rq->abort_fn && t->x.rq->abort_fn(t->x.rq->abort_arg)))
            t->due_ms = 0, k++;
    }
    if (k) { /* re-heapify: due times only went down to 0 */
        a2a_lop **v = l->timers;
        size_t n = l->ntimers;
        l->ntimers = 0;
        for (size_t i = 0; i < n; i++)
            heap_push(l, v[i]);
    }
}

static void run_timers(a2a_loop *l, int64_t now) {
    while (l->ntimers && l->timers[0]->due_ms <= now) {
        a2a_lop *t = heap_pop(l);
        a2a_loop_fn fn = t->fn;
        void *arg = t->arg;
        free(t);
        fn(arg, 0);
    }
}

#define LOOP_TICK_MS 100
/* Pokes bring the scan forward, but a burst of them scans at most this
 * often: each scan walks every exchange and timer. */
#define LOOP_POKE_GAP_MS 5
/* With no exchange in flight nothing needs the tick: new work wakes the
 * loop through its eventfd. */
#define LOOP_IDLE_TICK_MS 1000
/* A burst of this many exchanges at once, then a second without any, and
 * the memory freed since goes back to the system (glibc otherwise keeps
 * it in its arenas: 10,000 calls leave over 150 MiB behind). */
#define LOOP_TRIM_BURST 1024
#define LOOP_TRIM_IDLE_MS 1000

static void trim_after_burst(a2a_loop *l, int64_t now) {
    size_t n = atomic_load(&l->nactive);
    if (n) {
        if (n > l->busiest) l->busiest = n;
        l->idle_since = 0;
        return;
    }
    if (!l->idle_since) l->idle_since = now;
    if (l->busiest < LOOP_TRIM_BURST || now - l->idle_since < LOOP_TRIM_IDLE_MS) return;
    l->busiest = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void *loop_main(void *arg) {
    pthread_setname_np(pthread_self(), "a2a-loop");
    a2a_loop *l = arg;
    struct epoll_event evs[256];
    int64_t next_scan = l->now() + LOOP_TICK_MS;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        take_incoming(l);
        if (stop) break;
        int64_t now = l->now();
        if (l->active && next_scan > now + LOOP_TICK_MS) next_scan = now + LOOP_TICK_MS;
        if (atomic_exchange(&l->poke, 0)) {
            int64_t soon = l->last_scan + LOOP_POKE_GAP_MS;
            if (soon < now) soon = now;
            if (soon < next_scan) next_scan = soon;
        }
        int64_t wait = next_scan - now;
        for (int i = 0; i < LOOP_SHARDS; i++)
            if (l->sh[i].due >= 0 && l->sh[i].due - now < wait) wait = l->sh[i].due - now;
        if (l->ntimers && l->timers[0]->due_ms - now < wait) wait = l->timers[0]->due_ms - now;
        if (wait < 0) wait = 0;
        int n = epoll_wait(l->ep, evs, 256, (int)wait);
        int running;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == UINT64_MAX) { /* wake_loop(): seen to at the top */
                uint64_t v;                      /* one read empties the counter */
                ssize_t r = read(l->evfd, &v, sizeof v);
                (void)r;
                continue;
            }
            int f = 0;
            if (evs[i].events & EPOLLIN) f |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT) f |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) f |= CURL_CSELECT_ERR;
            struct shard *sh = &l->sh[(evs[i].data.u64 >> 32) % LOOP_SHARDS];
            curl_multi_socket_action(sh->m, (curl_socket_t)(uint32_t)evs[i].data.u64, f, &running);
        }
        now = l->now();
        for (int i = 0; i < LOOP_SHARDS; i++) {
            struct shard *sh = &l->sh[i];
            if (sh->due >= 0 && now >= sh->due) {
                sh->due = -1;
                curl_multi_socket_action(sh->m, CURL_SOCKET_TIMEOUT, 0, &running);
            }
            reap(sh);
        }
        if (now >= next_scan) {
            l->last_scan = now;
            scan_aborts(l, 0);
            trim_after_burst(l, now);
            /* a trim may still be due after a large burst */
            next_scan = now + (l->active || l->busiest >= LOOP_TRIM_BURST ? LOOP_TICK_MS
                                                                          : LOOP_IDLE_TICK_MS);
        }
        run_timers(l, l->now());
    }
    /* Stopping: every exchange and timer still held ends as aborted. */
    scan_aborts(l, 1);
    run_timers(l, INT64_MAX);
    return NULL;
}

int a2a_loop_start(a2a_loop *l) {
    pthread_mutex_lock(&l->mu);
    l->started = 1;
    pthread_mutex_unlock(&l->mu);
    if (pthread_create(&l->th, NULL, loop_main, l) == 0) return 0;
    pthread_mutex_lock(&l->mu);
    l->started = 0;
    pthread_mutex_unlock(&l->mu);
    return -1;
}

/* Ends the loop's wait (epoll_wait on the eventfd). */
static void wake_loop(a2a_loop *l) {
    uint64_t one = 1;
    ssize_t w = write(l->evfd, &one, sizeof one);
    (void)w; /* a full counter already wakes the loop */
}

/* -1 once the loop stopped: nothing would run it. */
static int hand_over(a2a_loop *l, a2a_lop *o) {
    pthread_mutex_lock(&l->mu);
    if (l->stop || !l->started) {
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    /* The loop takes the whole list at once: only the first of a batch
     * needs to wake it. */
    int first = !l->in;
    o->next = l->in;
    l->in = o;
    pthread_mutex_unlock(&l->mu);
    if (first) wake_loop(l);
    return 0;
}

int a2a_loop_submit(a2a_loop *l, const a2a_http_req *rq, a2a_http_resp *out, a2a_loop_fn fn,
                    void *arg) {
    resp_init(out);
    a2a_lop *o = calloc(1, sizeof *o);
    if (!o) return -1;
    o->fn = fn;
    o->arg = arg;
    o->x.rq = rq;
    o->x.out = out;
    o->queued_ms = l->now();
    atomic_fetch_add(&l->nactive, 1);
    if (hand_over(l, o) == 0) return 0;
    atomic_fetch_sub(&l->nactive, 1);
    free(o);
    return -1;
}

int a2a_loop_after(a2a_loop *l, int64_t ms, const a2a_http_req *abort_of, a2a_loop_fn fn,
                   void *arg) {
    a2a_lop *o = calloc(1, sizeof *o);
    if (!o) return -1;
    o->timer = 1;
    o->fn = fn;
    o->arg = arg;
    o->x.rq = abort_of;
    o->due_ms = l->now() + (ms > 0 ? ms : 0);
    if (hand_over(l, o) == 0) return 0;
    free(o);
    return -1;
}

void a2a_loop_poke(a2a_loop *l) {
    if (!l || atomic_exchange(&l->poke, 1)) return; /* the loop has been told */
    wake_loop(l);
}

size_t a2a_loop_active(a2a_loop *l) {
    return atomic_load(&l->nactive);
}

void a2a_loop_stop(a2a_loop *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    int started = l->started;
    l->stop = 1;
    pthread_mutex_unlock(&l->mu);
    if (!started) return;
    wake_loop(l);
    pthread_join(l->th, NULL);
    pthread_mutex_lock(&l->mu);
    l->started = 0;
    pthread_mutex_unlock(&l->mu);
}

void a2a_loop_free(a2a_loop *l) {
    if (!l) return;
    a2a_loop_stop(l);
    for (int i = 0; i < LOOP_SHARDS; i++)
        if (l->sh[i].m) curl_multi_cleanup(l->sh[i].m);
    easy_pool_destroy(&l->pool);
    if (l->ep >= 0) close(l->ep);
    if (l->evfd >= 0) close(l->evfd);
    free(l->timers);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void a2a_http_resp_free(a2a_http_resp *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
    keep_header(&r->www_auth, NULL, 0);
    keep_header(&r->location, NULL, 0);
    keep_header(&r->etag, NULL, 0);
}
