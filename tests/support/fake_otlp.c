/* Stand-in OTLP/HTTP collector: see fake_otlp.h. */
#include "fake_otlp.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
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
    struct MHD_Daemon *d;
    char base[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int status, delay_ms;
    char *answer, *retry_after; /* 2xx body; Retry-After of any answer */
    rec *recs;
    size_t n, cap;
};

typedef struct conn {
    char *body;
    size_t len;
} conn;

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

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body,
                             const char *retry_after) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    fotlp *f = cls;
    conn *cs = *con_cls;
    if (!cs) {
        *con_cls = calloc(1, sizeof(conn));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        char *n = realloc(cs->body, cs->len + *upload_size + 1);
        if (!n) return MHD_NO;
        memcpy(n + cs->len, upload, *upload_size);
        cs->body = n;
        cs->len += *upload_size;
        cs->body[cs->len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    char *headers = NULL;
    MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, &headers);
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    int status;
    pthread_mutex_lock(&f->mu);
    int delay = f->delay_ms;
    if (strcmp(method, "POST") || strcmp(url, "/v1/traces"))
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
        f->recs[f->n++] = (rec){.path = strdup(url),
                                .headers = headers ? headers : strdup(""),
                                .body = cs->body ? cs->body : strdup(""),
                                .body_len = cs->len,
                                .status = status};
        headers = NULL;
        cs->body = NULL;
        pthread_cond_broadcast(&f->cv);
    }
    char *answer = strdup(f->answer ? f->answer : "{}");
    char *retry = f->retry_after ? strdup(f->retry_after) : NULL;
    pthread_mutex_unlock(&f->mu);
    free(headers);
    /* An empty ExportTraceServiceResponse means "all accepted". */
    enum MHD_Result ret = reply(
        c, status, status / 100 == 2 ? answer : "{\"code\":14,\"message\":\"unavailable\"}", retry);
    free(answer);
    free(retry);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

fotlp *fotlp_start(void) {
    fotlp *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->status = 200;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, f,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!f->d) {
        free(f);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", di ? di->port : 0);
    return f;
}

void fotlp_stop(fotlp *f) {
    if (!f) return;
    MHD_stop_daemon(f->d);
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
    return f->base;
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
