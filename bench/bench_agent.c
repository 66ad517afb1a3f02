/* See bench_agent.h. Delayed answers: the connection is suspended and a
 * timer thread resumes it when its delay has passed (all delays are equal,
 * so a FIFO is ordered by deadline). */
#include "bench_agent.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct conn {
    char *body;
    size_t len;
    long long t_in, due; /* monotonic us */
    int parked, ready;
    struct MHD_Connection *c;
    struct conn *next;
} conn;

struct bench_agent {
    struct MHD_Daemon *d;
    int delay_ms;
    char url[64];
    atomic_long requests, inflight, max_inflight;
    atomic_llong last_in; /* monotonic us of the latest request's arrival */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn *head, *tail; /* parked, by deadline */
    int stopping;
    pthread_t timer;
    int chats, per_chat;
    long long *held; /* chats * per_chat, -1 = not seen */
    char *sample;
};

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, char *body) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void *timer_loop(void *arg) {
    bench_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        if (!a->head) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        long long left = a->head->due - now_us();
        if (left > 0) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_sec += left / 1000000;
            dl.tv_nsec += (left % 1000000) * 1000;
            if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&a->cv, &a->mu, &dl);
            continue;
        }
        conn *cs = a->head;
        a->head = cs->next;
        if (!a->head) a->tail = NULL;
        cs->ready = 1;
        MHD_resume_connection(cs->c);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static char *answer(bench_agent *a, const conn *cs) {
    cJSON *req = cJSON_Parse(cs->body ? cs->body : "");
    cJSON *id = req ? cJSON_GetObjectItem(req, "id") : NULL;
    const cJSON *text = NULL;
    cJSON *params = req ? cJSON_GetObjectItem(req, "params") : NULL;
    cJSON *msg = params ? cJSON_GetObjectItem(params, "message") : NULL;
    cJSON *parts = msg ? cJSON_GetObjectItem(msg, "parts") : NULL;
    if (cJSON_IsArray(parts) && cJSON_GetArraySize(parts) > 0)
        text = cJSON_GetObjectItem(cJSON_GetArrayItem(parts, 0), "text");
    const char *in = cJSON_IsString(text) ? text->valuestring : "?";
    char out_text[512];
    snprintf(out_text, sizeof out_text, "echo: %s", in);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "jsonrpc", "2.0");
    cJSON_AddItemToObject(res, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON *m = cJSON_AddObjectToObject(res, "result");
    cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "messageId", "bench-reply");
    cJSON_AddStringToObject(m, "role", "agent");
    cJSON_AddStringToObject(m, "contextId", "bench-context");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", out_text);
    cJSON *arr = cJSON_AddArrayToObject(m, "parts");
    cJSON_AddItemToArray(arr, p);
    char *out = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    int c, k;
    pthread_mutex_lock(&a->mu);
    if (a->held && sscanf(in, "c%d-m%d", &c, &k) == 2 && c >= 0 && c < a->chats && k >= 0 &&
        k < a->per_chat)
        a->held[(size_t)c * (size_t)a->per_chat + (size_t)k] = now_us() - cs->t_in;
    pthread_mutex_unlock(&a->mu);
    cJSON_Delete(req);
    return out;
}

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *up,
                              size_t *up_size, void **ptr) {
    bench_agent *a = cls;
    (void)version;
    conn *cs = *ptr;
    if (!cs) {
        *ptr = calloc(1, sizeof *cs);
        return MHD_YES;
    }
    if (*up_size) {
        cs->body = realloc(cs->body, cs->len + *up_size + 1);
        memcpy(cs->body + cs->len, up, *up_size);
        cs->len += *up_size;
        cs->body[cs->len] = 0;
        *up_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET") && strstr(url, "/.well-known/agent")) {
        char *card;
        if (asprintf(&card,
                     "{\"name\":\"bench\",\"description\":\"benchmark agent\",\"version\":\"1\","
                     "\"url\":\"%s/\",\"preferredTransport\":\"JSONRPC\","
                     "\"protocolVersion\":\"0.3.0\",\"capabilities\":{\"streaming\":false},"
                     "\"defaultInputModes\":[\"text/plain\"],\"defaultOutputModes\":"
                     "[\"text/plain\"],\"skills\":[]}",
                     a->url) < 0)
            return MHD_NO;
        return reply(c, 200, card);
    }
    if (!cs->parked) {
        cs->t_in = now_us();
        atomic_store(&a->last_in, cs->t_in);
        long now = atomic_fetch_add(&a->inflight, 1) + 1;
        long prev = atomic_load(&a->max_inflight);
        while (now > prev && !atomic_compare_exchange_weak(&a->max_inflight, &prev, now)) {
        }
        atomic_fetch_add(&a->requests, 1);
        pthread_mutex_lock(&a->mu);
        if (!a->sample && cs->body) a->sample = strdup(cs->body);
        pthread_mutex_unlock(&a->mu);
        if (a->delay_ms > 0) {
            cs->parked = 1;
            cs->c = c;
            cs->due = cs->t_in + (long long)a->delay_ms * 1000;
            MHD_suspend_connection(c);
            pthread_mutex_lock(&a->mu);
            if (a->tail)
                a->tail->next = cs;
            else
                a->head = cs;
            a->tail = cs;
            pthread_cond_signal(&a->cv);
            pthread_mutex_unlock(&a->mu);
            return MHD_YES;
        }
    } else if (!cs->ready) {
        return MHD_YES;
    }
    char *out = answer(a, cs);
    atomic_fetch_sub(&a->inflight, 1);
    return reply(c, 200, out);
}

static void on_done(void *cls, struct MHD_Connection *c, void **ptr,
                    enum MHD_RequestTerminationCode t) {
    (void)cls, (void)c, (void)t;
    conn *cs = *ptr;
    if (cs) free(cs->body);
    free(cs);
    *ptr = NULL;
}

bench_agent *bench_agent_start(int delay_ms) {
    bench_agent *a = calloc(1, sizeof *a);
    a->delay_ms = delay_ms;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        on_req, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
        on_done, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)30000, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)2, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_END);
    if (!a->d) {
        free(a);
        return NULL;
    }
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(a->url, sizeof a->url, "http://127.0.0.1:%u", i->port);
    pthread_create(&a->timer, NULL, timer_loop, a);
    return a;
}

void bench_agent_stop(bench_agent *a) {
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    /* Parked connections must be resumed before the daemon stops. */
    for (conn *cs = a->head; cs; cs = cs->next) {
        cs->ready = 1;
        MHD_resume_connection(cs->c);
    }
    a->head = a->tail = NULL;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->timer, NULL);
    MHD_stop_daemon(a->d);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->held);
    free(a->sample);
    free(a);
}

const char *bench_agent_url(bench_agent *a) {
    return a->url;
}

long bench_agent_requests(bench_agent *a) {
    return atomic_load(&a->requests);
}

long long bench_agent_last_arrival_us(bench_agent *a) {
    return atomic_load(&a->last_in);
}

long bench_agent_max_inflight(bench_agent *a) {
    return atomic_load(&a->max_inflight);
}

void bench_agent_track(bench_agent *a, int chats, int per_chat) {
    size_t n = (size_t)chats * (size_t)per_chat;
    long long *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = -1;
    pthread_mutex_lock(&a->mu);
    free(a->held);
    a->held = h;
    a->chats = chats;
    a->per_chat = per_chat;
    pthread_mutex_unlock(&a->mu);
}

long long bench_agent_held_us(bench_agent *a, int c, int k) {
    pthread_mutex_lock(&a->mu);
    long long v = -1;
    if (a->held && c >= 0 && c < a->chats && k >= 0 && k < a->per_chat)
        v = a->held[(size_t)c * (size_t)a->per_chat + (size_t)k];
    pthread_mutex_unlock(&a->mu);
    return v;
}

char *bench_agent_sample(bench_agent *a) {
    pthread_mutex_lock(&a->mu);
    char *s = a->sample ? strdup(a->sample) : NULL;
    pthread_mutex_unlock(&a->mu);
    return s;
}
