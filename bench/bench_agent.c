/* See bench_agent.h. One thread per connection so that slow replies can be
 * in flight by the hundreds, as a real agent farm would allow. */
#include "bench_agent.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_agent {
    struct MHD_Daemon *d;
    int delay_ms;
    char url[64];
    atomic_long requests, inflight, max_inflight;
};

typedef struct {
    char *body;
    size_t len;
} conn;

static enum MHD_Result reply(struct MHD_Connection *c, int status, char *body) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
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
    long now = atomic_fetch_add(&a->inflight, 1) + 1;
    long prev = atomic_load(&a->max_inflight);
    while (now > prev && !atomic_compare_exchange_weak(&a->max_inflight, &prev, now)) {
    }
    atomic_fetch_add(&a->requests, 1);
    if (a->delay_ms > 0) {
        struct timespec ts = {a->delay_ms / 1000, (long)(a->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    cJSON *req = cJSON_Parse(cs->body ? cs->body : "");
    cJSON *id = req ? cJSON_GetObjectItem(req, "id") : NULL;
    const cJSON *text = NULL;
    cJSON *params = req ? cJSON_GetObjectItem(req, "params") : NULL;
    cJSON *msg = params ? cJSON_GetObjectItem(params, "message") : NULL;
    cJSON *parts = msg ? cJSON_GetObjectItem(msg, "parts") : NULL;
    if (cJSON_IsArray(parts) && cJSON_GetArraySize(parts) > 0)
        text = cJSON_GetObjectItem(cJSON_GetArrayItem(parts, 0), "text");
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
    cJSON_AddStringToObject(p, "text", cJSON_IsString(text) ? text->valuestring : "?");
    cJSON *arr = cJSON_AddArrayToObject(m, "parts");
    cJSON_AddItemToArray(arr, p);
    char *out = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    cJSON_Delete(req);
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
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, on_req, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)4000, MHD_OPTION_END);
    if (!a->d) {
        free(a);
        return NULL;
    }
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(a->url, sizeof a->url, "http://127.0.0.1:%u", i->port);
    return a;
}

void bench_agent_stop(bench_agent *a) {
    MHD_stop_daemon(a->d);
    free(a);
}

const char *bench_agent_url(bench_agent *a) {
    return a->url;
}

long bench_agent_requests(bench_agent *a) {
    return atomic_load(&a->requests);
}

long bench_agent_max_inflight(bench_agent *a) {
    return atomic_load(&a->max_inflight);
}
