/* Stand-in OTLP/HTTP collector: see fake_otlp.h. */
#include "fake_otlp.h"
#include "http_stub.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct rec {
    char *path, *headers, *body; /* headers: "name: value\n" lines, names lowercased */
    size_t body_len;
    int status;
} rec;

struct fotlp {
    hs *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int status, delay_ms;
    char *answer, *retry_after; /* 2xx body; Retry-After of any answer */
    rec *recs;
    size_t n, cap;
};

static void handler(void *arg, const hs_req *rq, hs_resp *rs) {
    fotlp *f = arg;
    const char *ct = hs_header(rq, "Content-Type");
    int status;
    pthread_mutex_lock(&f->mu);
    int delay = f->delay_ms;
    if (strcmp(rq->method, "POST") || strcmp(rq->url, "/v1/traces"))
        status = 404;
    else if (!ct || strncasecmp(ct, "application/json", 16))
        status = 415;
    else
        status = f->status;
    pthread_mutex_unlock(&f->mu);
    if (delay > 0) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char *headers = hs_headers(rq);
    pthread_mutex_lock(&f->mu);
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        rec *nr = realloc(f->recs, cap * sizeof *nr);
        if (nr) {
            f->recs = nr;
            f->cap = cap;
        }
    }
    if (f->n < f->cap) {
        char *b = malloc(rq->body_len + 1);
        if (b) memcpy(b, rq->body, rq->body_len + 1);
        f->recs[f->n++] = (rec){.path = strdup(rq->url),
                                .headers = headers,
                                .body = b ? b : strdup(""),
                                .body_len = b ? rq->body_len : 0,
                                .status = status};
        headers = NULL;
        pthread_cond_broadcast(&f->cv);
    }
    /* An empty ExportTraceServiceResponse means "all accepted". */
    rs->status = status;
    rs->body = strdup(status / 100 != 2 ? "{\"code\":14,\"message\":\"unavailable\"}"
                      : f->answer       ? f->answer
                                        : "{}");
    rs->retry_after = f->retry_after ? atoi(f->retry_after) : 0;
    pthread_mutex_unlock(&f->mu);
    free(headers);
}

fotlp *fotlp_start(void) {
    fotlp *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->status = 200;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->srv = hs_start(handler, f, 60);
    if (!f->srv) {
        free(f);
        return NULL;
    }
    return f;
}

void fotlp_stop(fotlp *f) {
    if (!f) return;
    hs_stop(f->srv);
    for (size_t i = 0; i < f->n; i++) {
        free(f->recs[i].path);
        free(f->recs[i].headers);
        free(f->recs[i].body);
    }
    free(f->recs);
    free(f->answer);
    free(f->retry_after);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

const char *fotlp_base(fotlp *f) {
    return hs_base(f->srv);
}

void fotlp_set_status(fotlp *f, int status) {
    pthread_mutex_lock(&f->mu);
    f->status = status;
    pthread_mutex_unlock(&f->mu);
}

void fotlp_set_answer(fotlp *f, const char *body, const char *retry_after) {
    pthread_mutex_lock(&f->mu);
    free(f->answer);
    free(f->retry_after);
    f->answer = body ? strdup(body) : NULL;
    f->retry_after = retry_after ? strdup(retry_after) : NULL;
    pthread_mutex_unlock(&f->mu);
}

void fotlp_set_delay(fotlp *f, int ms) {
    pthread_mutex_lock(&f->mu);
    f->delay_ms = ms;
    pthread_mutex_unlock(&f->mu);
}

int fotlp_count(fotlp *f) {
    pthread_mutex_lock(&f->mu);
    int n = (int)f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static char *copy_field(fotlp *f, int i, int which) {
    char *out = NULL;
    pthread_mutex_lock(&f->mu);
    if (i >= 0 && (size_t)i < f->n) {
        const char *s = which == 0 ? f->recs[i].body : f->recs[i].path;
        out = strdup(s);
    }
    pthread_mutex_unlock(&f->mu);
    return out;
}

char *fotlp_body(fotlp *f, int i) {
    return copy_field(f, i, 0);
}

char *fotlp_path(fotlp *f, int i) {
    return copy_field(f, i, 1);
}

char *fotlp_header(fotlp *f, int i, const char *name) {
    char *out = NULL;
    pthread_mutex_lock(&f->mu);
    if (i >= 0 && (size_t)i < f->n) {
        size_t nl = strlen(name);
        for (const char *p = f->recs[i].headers; p && *p;) {
            const char *eol = strchr(p, '\n');
            size_t ll = eol ? (size_t)(eol - p) : strlen(p);
            if (ll > nl + 1 && !strncasecmp(p, name, nl) && p[nl] == ':') {
                const char *v = p + nl + 1;
                while (*v == ' ')
                    v++;
                out = strndup(v, (size_t)(p + ll - v));
                break;
            }
            p += ll + (eol ? 1 : 0);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return out;
}

int fotlp_write_bodies(fotlp *f, const char *dir) {
    int k = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        if (f->recs[i].status / 100 != 2) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/payload-%05d.json", dir, k);
        FILE *fp = fopen(path, "w");
        if (!fp) {
            k = -1;
            break;
        }
        fwrite(f->recs[i].body, 1, f->recs[i].body_len, fp);
        fclose(fp);
        k++;
    }
    pthread_mutex_unlock(&f->mu);
    return k;
}

int fotlp_wait_count(fotlp *f, int n, int timeout_ms) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    dl.tv_sec += dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while ((int)f->n < n && rc == 0)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &dl);
    int ok = (int)f->n >= n;
    pthread_mutex_unlock(&f->mu);
    return ok;
}
