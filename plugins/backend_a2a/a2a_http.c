/* See a2a_http.h. Handles go back to the pool (curl_pool.h) after each
 * call, so the most recently used one (with a warm connection) is picked
 * first and a burst of hundreds of calls costs one handle each, created
 * once. */
#include "a2a_http.h"
#include "curl_pool.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct a2a_http {
    easy_pool pool;
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
};

static void share_lock(CURL *c, curl_lock_data d, curl_lock_access a, void *arg) {
    (void)c, (void)a;
    a2a_http *h = arg;
    pthread_mutex_lock(&h->share_mu[d]);
}

static void share_unlock(CURL *c, curl_lock_data d, void *arg) {
    (void)c;
    a2a_http *h = arg;
    pthread_mutex_unlock(&h->share_mu[d]);
}

a2a_http *a2a_http_new(size_t max_idle) {
    a2a_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&h->share_mu[i], NULL);
    easy_pool_init(&h->pool, max_idle ? max_idle : 64);
    h->share = curl_share_init();
    if (h->share) {
        curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
        curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    return h;
}

void a2a_http_free(a2a_http *h) {
    if (!h) return;
    easy_pool_destroy(&h->pool);
    if (h->share) curl_share_cleanup(h->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&h->share_mu[i]);
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
    int prereqs; /* connections the request was about to be written on */
} xfer;

static size_t on_header(char *b, size_t sz, size_t n, void *arg) {
    xfer *x = arg;
    size_t len = sz * n;
    const char *colon = memchr(b, ':', len);
    if (!colon) {
        /* a new status line (redirect, 100-continue): forget old headers */
        if (len > 5 && !strncmp(b, "HTTP/", 5)) {
            x->out->ctype[0] = 0;
            x->out->www_auth[0] = 0;
            x->out->location[0] = 0;
            x->out->etag[0] = 0;
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
        int ok = vlen < sizeof x->out->etag;
        for (size_t k = 0; ok && k < vlen; k++)
            ok = (unsigned char)v[k] >= 0x20 && v[k] != 0x7f;
        if (ok) {
            memcpy(x->out->etag, v, vlen);
            x->out->etag[vlen] = 0;
        }
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
        if (vlen < sizeof x->out->location) {
            memcpy(x->out->location, v, vlen);
            x->out->location[vlen] = 0;
        }
    } else if (nlen == 16 && !strncasecmp(b, "WWW-Authenticate", 16)) {
        size_t k = vlen < sizeof x->out->www_auth - 1 ? vlen : sizeof x->out->www_auth - 1;
        memcpy(x->out->www_auth, v, k);
        x->out->www_auth[k] = 0;
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

int a2a_http_do(a2a_http *h, const a2a_http_req *rq, a2a_http_resp *out) {
    memset(out, 0, sizeof *out);
    out->max_age = -1;
    CURL *c = acquire(h);
    if (!c) {
        out->cc = CURLE_OUT_OF_MEMORY;
        snprintf(out->errbuf, sizeof out->errbuf, "cannot create a curl handle");
        return -1;
    }
    xfer x = {.rq = rq, .out = out};
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_SHARE, h->share);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, rq->headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, &x);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 0L);
    /* Streams can be silent for minutes (no heartbeats): no low-speed
     * limit, but TCP keep-alive notices a dead peer. */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
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
    out->cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    long reqsz = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &reqsz);
    out->req_sent = reqsz > 0 || out->status > 0 || out->repeat_refused;
    if (out->cc == CURLE_FILESIZE_EXCEEDED) out->too_big = 1;
    if (x.sse_init) {
        if (out->cc == CURLE_OK) {
            if (a2a_sse_finish(&x.sse) < 0) out->too_big = 1;
        }
        a2a_sse_free(&x.sse);
    }
    int ok = out->cc == CURLE_OK || (out->cc == CURLE_WRITE_ERROR && out->sse_stopped);
    if (ok && out->sse_stopped) out->cc = CURLE_OK;
    if (!out->body && !out->is_sse) out->body = calloc(1, 1);
    /* curl closes a connection whose transfer was cut; the handle stays good. */
    release(h, c, 1);
    return ok && !out->too_big ? 0 : -1;
}

void a2a_http_resp_free(a2a_http_resp *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
