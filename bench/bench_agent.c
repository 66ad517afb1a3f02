/* See bench_agent.h. Delayed answers: the connection is suspended and a
 * timer thread resumes it when its delay has passed (all delays are equal,
 * so a FIFO is ordered by deadline). In task mode the same timer settles
 * the tasks of non-blocking sends (a second FIFO), and one pusher thread
 * posts their push notifications through a curl multi handle. */
#include "bench_agent.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
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
    /* stream mode: the events of a message/stream, written by sse_read() */
    struct bench_agent *a;
    cJSON *sse_id;
    char *sse_text, *sse_buf;
    size_t sse_len, sse_off;
    long sse_n;
    int sse_phase; /* 1: the task and a partial answer written, 2: all */
} conn;

/* A task of a non-blocking send (task mode); freed once it completed and
 * a tasks/get returned it completed. */
typedef struct task {
    long n; /* id "bt-<n>", index in the table */
    char *text;
    long long t_in, due; /* monotonic us */
    int done;
    char *push_url, *token, *auth; /* auth: "<scheme> <credentials>" */
    struct task *next;             /* pending, by deadline */
} task;

/* One push notification to send: the completed task, posted by the pusher. */
typedef struct push_job {
    char *body;
    struct curl_slist *hd;
    char *url;
    struct push_job *next;
} push_job;

/* Pushes in flight at once, each on a reused easy handle; their
 * connections stay open for the next pushes (routerd's admin server
 * allows 32 per client address). */
#define PUSH_CONNS 16

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
    /* task mode */
    int tasks;
    task **tab; /* by n; NULL: unknown or freed */
    long ntab, captab;
    task *th, *tt;     /* pending tasks, by deadline */
    push_job *ph, *pt; /* pushes waiting for a free handle */
    CURLM *multi;
    pthread_t pusher;
    atomic_long polls, pushes, pushes_ok, streams;
    long long lag_sum, lag_max; /* completion to fetch, us (under mu) */
    long lag_n;
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

/* Records how long text "c<C>-m<K>" was held (a->mu held). */
static void track_held(bench_agent *a, const char *in, long long t_in) {
    int c, k;
    if (a->held && sscanf(in, "c%d-m%d", &c, &k) == 2 && c >= 0 && c < a->chats && k >= 0 &&
        k < a->per_chat)
        a->held[(size_t)c * (size_t)a->per_chat + (size_t)k] = now_us() - t_in;
}

/* The text of a message/send request's first part, or "?". */
static const char *send_text(const cJSON *req) {
    const cJSON *text = NULL;
    cJSON *params = req ? cJSON_GetObjectItem(req, "params") : NULL;
    cJSON *msg = params ? cJSON_GetObjectItem(params, "message") : NULL;
    cJSON *parts = msg ? cJSON_GetObjectItem(msg, "parts") : NULL;
    if (cJSON_IsArray(parts) && cJSON_GetArraySize(parts) > 0)
        text = cJSON_GetObjectItem(cJSON_GetArrayItem(parts, 0), "text");
    return cJSON_IsString(text) ? text->valuestring : "?";
}

/* A 0.3 Task: working, or completed with the answer as an artifact. */
static cJSON *task_json(long n, const char *text, int done) {
    char id[32];
    snprintf(id, sizeof id, "bt-%ld", n);
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "kind", "task");
    cJSON_AddStringToObject(t, "id", id);
    cJSON_AddStringToObject(t, "contextId", "bench-context");
    cJSON *st = cJSON_AddObjectToObject(t, "status");
    cJSON_AddStringToObject(st, "state", done ? "completed" : "working");
    if (done) {
        char out_text[512];
        snprintf(out_text, sizeof out_text, "echo: %s", text);
        cJSON *art = cJSON_CreateObject();
        cJSON_AddStringToObject(art, "artifactId", "a1");
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "kind", "text");
        cJSON_AddStringToObject(p, "text", out_text);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(art, "parts"), p);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(t, "artifacts"), art);
    }
    return t;
}

static void task_free(task *t) {
    if (!t) return;
    free(t->text);
    free(t->push_url);
    free(t->token);
    free(t->auth);
    free(t);
}

static void job_free(push_job *j) {
    free(j->body);
    free(j->url);
    curl_slist_free_all(j->hd);
    free(j);
}

/* Queues the push of a completed task (a->mu held); the pusher sends it. */
static void push_queue(bench_agent *a, const task *t) {
    if (a->stopping) return; /* the pusher is gone */
    push_job *j = calloc(1, sizeof *j);
    cJSON *tj = task_json(t->n, t->text, 1);
    j->body = cJSON_PrintUnformatted(tj);
    cJSON_Delete(tj);
    j->url = strdup(t->push_url);
    j->hd = curl_slist_append(NULL, "Content-Type: application/json");
    char h[1024];
    if (t->auth) {
        snprintf(h, sizeof h, "Authorization: %s", t->auth);
        j->hd = curl_slist_append(j->hd, h);
    }
    if (t->token) {
        snprintf(h, sizeof h, "X-A2A-Notification-Token: %s", t->token);
        j->hd = curl_slist_append(j->hd, h);
    }
    if (a->pt)
        a->pt->next = j;
    else
        a->ph = j;
    a->pt = j;
    curl_multi_wakeup(a->multi);
}

/* The earliest pending task reached its deadline (a->mu held). */
static void task_complete(bench_agent *a) {
    task *t = a->th;
    a->th = t->next;
    if (!a->th) a->tt = NULL;
    t->next = NULL;
    t->done = 1;
    track_held(a, t->text, t->t_in);
    atomic_fetch_sub(&a->inflight, 1);
    if (t->push_url) push_queue(a, t);
}

static void *timer_loop(void *arg) {
    bench_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stopping) {
        if (!a->head && !a->th) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        int is_task = a->th && (!a->head || a->th->due < a->head->due);
        long long left = (is_task ? a->th->due : a->head->due) - now_us();
        if (left > 0) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_sec += left / 1000000;
            dl.tv_nsec += (left % 1000000) * 1000;
            if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&a->cv, &a->mu, &dl);
            continue;
        }
        if (is_task) {
            task_complete(a);
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

/* The JSON-RPC answer to id carrying item (taken) under key. */
static char *rpc_answer(const cJSON *id, const char *key, cJSON *item) {
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "jsonrpc", "2.0");
    cJSON_AddItemToObject(res, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(res, key, item);
    char *out = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    return out;
}

static char *rpc_result(const cJSON *id, cJSON *result) {
    return rpc_answer(id, "result", result);
}

static char *rpc_error(const cJSON *id, int code, const char *msg) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    return rpc_answer(id, "error", e);
}

static char *answer(bench_agent *a, const conn *cs) {
    cJSON *req = cJSON_Parse(cs->body ? cs->body : "");
    cJSON *id = req ? cJSON_GetObjectItem(req, "id") : NULL;
    const char *in = send_text(req);
    char out_text[512];
    snprintf(out_text, sizeof out_text, "echo: %s", in);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "kind", "message");
    cJSON_AddStringToObject(m, "messageId", "bench-reply");
    cJSON_AddStringToObject(m, "role", "agent");
    cJSON_AddStringToObject(m, "contextId", "bench-context");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", out_text);
    cJSON *arr = cJSON_AddArrayToObject(m, "parts");
    cJSON_AddItemToArray(arr, p);
    char *out = rpc_result(id, m);
    pthread_mutex_lock(&a->mu);
    track_held(a, in, cs->t_in);
    pthread_mutex_unlock(&a->mu);
    cJSON_Delete(req);
    return out;
}

/* A call reached the agent: counted, in flight from now on. */
static void arrive(bench_agent *a, conn *cs) {
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
}

/* The task named by "bt-<n>" (a->mu held), or NULL. */
static task *task_find(bench_agent *a, const cJSON *id) {
    long n;
    int used = 0;
    if (!cJSON_IsString(id) || sscanf(id->valuestring, "bt-%ld%n", &n, &used) != 1 ||
        id->valuestring[used] || n < 0 || n >= a->ntab)
        return NULL;
    return a->tab[n];
}

/* message/send with blocking:false: a working Task at once, settled by
 * the timer at arrival + delay. */
static char *task_send(bench_agent *a, conn *cs, const cJSON *req) {
    arrive(a, cs);
    task *t = calloc(1, sizeof *t);
    t->text = strdup(send_text(req));
    t->t_in = cs->t_in;
    t->due = cs->t_in + (long long)a->delay_ms * 1000;
    pthread_mutex_lock(&a->mu);
    if (a->ntab == a->captab) {
        a->captab = a->captab ? a->captab * 2 : 1024;
        a->tab = realloc(a->tab, (size_t)a->captab * sizeof *a->tab);
    }
    t->n = a->ntab;
    a->tab[a->ntab++] = t;
    if (a->tt)
        a->tt->next = t;
    else
        a->th = t;
    a->tt = t;
    pthread_cond_signal(&a->cv);
    cJSON *tj = task_json(t->n, t->text, 0);
    pthread_mutex_unlock(&a->mu);
    return rpc_result(cJSON_GetObjectItem(req, "id"), tj);
}

/* tasks/get: working before the deadline, then completed; a completed
 * task is forgotten once fetched. */
static char *task_get(bench_agent *a, const cJSON *req) {
    atomic_fetch_add(&a->polls, 1);
    const cJSON *id = cJSON_GetObjectItem(req, "id");
    pthread_mutex_lock(&a->mu);
    task *t = task_find(a, cJSON_GetObjectItem(cJSON_GetObjectItem(req, "params"), "id"));
    if (!t) {
        pthread_mutex_unlock(&a->mu);
        return rpc_error(id, -32001, "Task not found");
    }
    cJSON *tj = task_json(t->n, t->text, t->done);
    if (t->done) {
        long long lag = now_us() - t->due;
        a->lag_sum += lag;
        if (lag > a->lag_max) a->lag_max = lag;
        a->lag_n++;
        a->tab[t->n] = NULL;
        task_free(t);
    }
    pthread_mutex_unlock(&a->mu);
    return rpc_result(id, tj);
}

static char *dup_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItem(o, name);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

/* tasks/pushNotificationConfig/set: kept on the task; a task already
 * completed is pushed at once. */
static char *task_push_set(bench_agent *a, const cJSON *req) {
    const cJSON *id = cJSON_GetObjectItem(req, "id");
    const cJSON *params = cJSON_GetObjectItem(req, "params");
    const cJSON *cfg = cJSON_GetObjectItem(params, "pushNotificationConfig");
    const cJSON *tid = cJSON_GetObjectItem(params, "taskId");
    const cJSON *url = cJSON_GetObjectItem(cfg, "url");
    if (!cJSON_IsString(url)) return rpc_error(id, -32602, "Invalid params");
    pthread_mutex_lock(&a->mu);
    task *t = task_find(a, tid);
    if (!t) {
        pthread_mutex_unlock(&a->mu);
        return rpc_error(id, -32001, "Task not found");
    }
    free(t->push_url);
    free(t->token);
    free(t->auth);
    t->push_url = strdup(url->valuestring);
    t->token = dup_str(cfg, "token");
    t->auth = NULL;
    const cJSON *au = cJSON_GetObjectItem(cfg, "authentication");
    const cJSON *scheme = cJSON_GetArrayItem(cJSON_GetObjectItem(au, "schemes"), 0);
    const cJSON *cred = cJSON_GetObjectItem(au, "credentials");
    if (cJSON_IsString(scheme) && cJSON_IsString(cred) &&
        asprintf(&t->auth, "%s %s", scheme->valuestring, cred->valuestring) < 0)
        t->auth = NULL;
    if (t->done) push_queue(a, t);
    pthread_mutex_unlock(&a->mu);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToObject(res, "taskId", cJSON_Duplicate(tid, 1));
    cJSON_AddItemToObject(res, "pushNotificationConfig", cJSON_Duplicate(cfg, 1));
    return rpc_result(id, res);
}

/* A JSON-RPC call in task mode, answered at once; -1 for a blocking
 * message/send, which takes the default path. */
static int task_rpc(bench_agent *a, struct MHD_Connection *c, conn *cs) {
    cJSON *req = cJSON_Parse(cs->body ? cs->body : "");
    const cJSON *m = cJSON_GetObjectItem(req, "method");
    const char *method = cJSON_IsString(m) ? m->valuestring : "";
    char *out;
    if (!strcmp(method, "message/send")) {
        const cJSON *cfg = cJSON_GetObjectItem(cJSON_GetObjectItem(req, "params"), "configuration");
        if (!cJSON_IsFalse(cJSON_GetObjectItem(cfg, "blocking"))) {
            cJSON_Delete(req);
            return -1;
        }
        out = task_send(a, cs, req);
    } else if (!strcmp(method, "tasks/get")) {
        out = task_get(a, req);
    } else if (!strcmp(method, "tasks/pushNotificationConfig/set")) {
        out = task_push_set(a, req);
    } else {
        out = rpc_error(cJSON_GetObjectItem(req, "id"), -32601, "Method not found");
    }
    cJSON_Delete(req);
    return reply(c, 200, out);
}

/* Suspends c until the delay passed since cs arrived; the timer resumes
 * it (a->mu held). */
static void park_locked(bench_agent *a, conn *cs, struct MHD_Connection *c) {
    cs->parked = 1;
    cs->c = c;
    cs->due = cs->t_in + (long long)a->delay_ms * 1000;
    MHD_suspend_connection(c);
    if (a->tail)
        a->tail->next = cs;
    else
        a->head = cs;
    a->tail = cs;
    pthread_cond_signal(&a->cv);
}

/* Appends the SSE event "data: <JSON-RPC result>" to the stream's buffer. */
static void sse_add(conn *cs, cJSON *result) {
    char *ev = rpc_result(cs->sse_id, result);
    size_t n = strlen(ev);
    cs->sse_buf = realloc(cs->sse_buf, cs->sse_len + n + 9);
    memcpy(cs->sse_buf + cs->sse_len, "data: ", 6);
    memcpy(cs->sse_buf + cs->sse_len + 6, ev, n);
    memcpy(cs->sse_buf + cs->sse_len + 6 + n, "\n\n", 3);
    cs->sse_len += n + 8;
    free(ev);
}

/* A 0.3 artifact-update of the task's one artifact, replacing its text. */
static cJSON *artifact_update(const conn *cs, const char *text, int last) {
    char id[32];
    snprintf(id, sizeof id, "bs-%ld", cs->sse_n);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "kind", "artifact-update");
    cJSON_AddStringToObject(u, "taskId", id);
    cJSON_AddStringToObject(u, "contextId", "bench-context");
    cJSON *art = cJSON_AddObjectToObject(u, "artifact");
    cJSON_AddStringToObject(art, "artifactId", "answer");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "kind", "text");
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(art, "parts"), p);
    cJSON_AddBoolToObject(u, "append", 0);
    cJSON_AddBoolToObject(u, "lastChunk", last);
    return u;
}

/* The stream's task ("task", its id under "id") or a status update of it
 * ("status-update", "taskId") in state. */
static cJSON *task_state(const conn *cs, const char *kind, const char *id_key, const char *state) {
    char id[32];
    snprintf(id, sizeof id, "bs-%ld", cs->sse_n);
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "kind", kind);
    cJSON_AddStringToObject(t, id_key, id);
    cJSON_AddStringToObject(t, "contextId", "bench-context");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(t, "status"), "state", state);
    return t;
}

/* The stream's body: the task and a partial answer at once, then (the
 * connection parked until the delay passed) the answer and the final
 * status. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    conn *cs = cls;
    bench_agent *a = cs->a;
    (void)pos;
    for (;;) {
        if (cs->sse_off < cs->sse_len) {
            size_t k = cs->sse_len - cs->sse_off < max ? cs->sse_len - cs->sse_off : max;
            memcpy(buf, cs->sse_buf + cs->sse_off, k);
            cs->sse_off += k;
            return (ssize_t)k;
        }
        free(cs->sse_buf);
        cs->sse_buf = NULL;
        cs->sse_len = cs->sse_off = 0;
        if (cs->sse_phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&a->mu);
        if (!cs->ready && a->delay_ms > 0 && !a->stopping) {
            if (!cs->parked) park_locked(a, cs, cs->c);
            pthread_mutex_unlock(&a->mu);
            return 0; /* suspended: the timer resumes it */
        }
        track_held(a, cs->sse_text, cs->t_in);
        pthread_mutex_unlock(&a->mu);
        char out[512];
        snprintf(out, sizeof out, "echo: %s", cs->sse_text);
        sse_add(cs, artifact_update(cs, out, 1));
        cJSON *st = task_state(cs, "status-update", "taskId", "completed");
        cJSON_AddBoolToObject(st, "final", 1);
        sse_add(cs, st);
        cs->sse_phase = 2;
        atomic_fetch_sub(&a->inflight, 1);
    }
}

/* message/stream in stream mode; -1 for anything else (the default path). */
static int stream_rpc(bench_agent *a, struct MHD_Connection *c, conn *cs) {
    cJSON *req = cJSON_Parse(cs->body ? cs->body : "");
    const cJSON *m = cJSON_GetObjectItem(req, "method");
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "message/stream")) {
        cJSON_Delete(req);
        return -1;
    }
    arrive(a, cs);
    cs->a = a;
    cs->c = c;
    cs->sse_id = cJSON_Duplicate(cJSON_GetObjectItem(req, "id"), 1);
    cs->sse_text = strdup(send_text(req));
    cs->sse_n = atomic_fetch_add(&a->streams, 1);
    cJSON_Delete(req);
    sse_add(cs, task_state(cs, "task", "id", "working"));
    sse_add(cs, artifact_update(cs, "working on it", 0));
    cs->sse_phase = 1;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, cs, NULL);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
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
        char *card, base[sizeof a->url];
        pthread_mutex_lock(&a->mu);
        snprintf(base, sizeof base, "%s", a->url);
        pthread_mutex_unlock(&a->mu);
        if (asprintf(&card,
                     "{\"name\":\"bench\",\"description\":\"benchmark agent\",\"version\":\"1\","
                     "\"url\":\"%s/\",\"preferredTransport\":\"JSONRPC\","
                     "\"protocolVersion\":\"0.3.0\",\"capabilities\":{\"streaming\":%s%s},"
                     "\"defaultInputModes\":[\"text/plain\"],\"defaultOutputModes\":"
                     "[\"text/plain\"],\"skills\":[]}",
                     base, a->tasks == BENCH_AGENT_STREAM ? "true" : "false",
                     a->tasks == BENCH_AGENT_TASKS ? ",\"pushNotifications\":true" : "") < 0)
            return MHD_NO;
        return reply(c, 200, card);
    }
    if (!cs->parked && a->tasks == BENCH_AGENT_STREAM) {
        int r = stream_rpc(a, c, cs);
        if (r >= 0) return (enum MHD_Result)r;
    }
    if (!cs->parked && a->tasks == BENCH_AGENT_TASKS) {
        int r = task_rpc(a, c, cs);
        if (r >= 0) return (enum MHD_Result)r;
        /* a blocking send: a delayed Message, as in the default mode */
    }
    if (!cs->parked) {
        arrive(a, cs);
        if (a->delay_ms > 0) {
            pthread_mutex_lock(&a->mu);
            park_locked(a, cs, c);
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
    if (cs) {
        free(cs->body);
        free(cs->sse_text);
        free(cs->sse_buf);
        cJSON_Delete(cs->sse_id);
    }
    free(cs);
    *ptr = NULL;
}

/* Sends the queued pushes, PUSH_CONNS at a time, until the agent stops. */
static void *push_loop(void *arg) {
    bench_agent *a = arg;
    CURL *all[PUSH_CONNS], *idle[PUSH_CONNS];
    int nidle = PUSH_CONNS;
    for (int i = 0; i < PUSH_CONNS; i++)
        all[i] = idle[i] = curl_easy_init();
    for (;;) {
        push_job *start[PUSH_CONNS];
        int nstart = 0;
        pthread_mutex_lock(&a->mu);
        int stop = a->stopping;
        while (!stop && nstart < nidle && a->ph) {
            start[nstart++] = a->ph;
            a->ph = a->ph->next;
            if (!a->ph) a->pt = NULL;
        }
        pthread_mutex_unlock(&a->mu);
        if (stop) break;
        for (int i = 0; i < nstart; i++) {
            CURL *e = idle[--nidle];
            push_job *j = start[i];
            curl_easy_setopt(e, CURLOPT_URL, j->url);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hd);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
            curl_easy_setopt(e, CURLOPT_PRIVATE, j);
            curl_multi_add_handle(a->multi, e);
            atomic_fetch_add(&a->pushes, 1);
        }
        int running;
        curl_multi_perform(a->multi, &running);
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(a->multi, &q))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            long code = 0;
            if (msg->data.result == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (code >= 200 && code < 300) atomic_fetch_add(&a->pushes_ok, 1);
            push_job *j = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
            curl_multi_remove_handle(a->multi, e);
            curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
            job_free(j);
            idle[nidle++] = e;
        }
        pthread_mutex_lock(&a->mu);
        int more = nidle > 0 && a->ph;
        pthread_mutex_unlock(&a->mu);
        /* a new push wakes it (curl_multi_wakeup) */
        if (!more) curl_multi_poll(a->multi, NULL, 0, 1000, NULL);
    }
    for (int i = 0; i < PUSH_CONNS; i++) {
        push_job *j = NULL;
        curl_easy_getinfo(all[i], CURLINFO_PRIVATE, (char **)&j);
        if (j) {
            curl_multi_remove_handle(a->multi, all[i]);
            job_free(j);
        }
        curl_easy_cleanup(all[i]);
    }
    return NULL;
}

bench_agent *bench_agent_start(int delay_ms) {
    return bench_agent_start_tasks(delay_ms, 0);
}

bench_agent *bench_agent_start_tasks(int delay_ms, int tasks) {
    bench_agent *a = calloc(1, sizeof *a);
    a->delay_ms = delay_ms;
    a->tasks = tasks;
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
    pthread_mutex_lock(&a->mu); /* the daemon's threads read it */
    snprintf(a->url, sizeof a->url, "http://127.0.0.1:%u", i->port);
    pthread_mutex_unlock(&a->mu);
    pthread_create(&a->timer, NULL, timer_loop, a);
    if (tasks == BENCH_AGENT_TASKS) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        a->multi = curl_multi_init();
        curl_multi_setopt(a->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)PUSH_CONNS);
        pthread_create(&a->pusher, NULL, push_loop, a);
    }
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
    if (a->tasks == BENCH_AGENT_TASKS) {
        curl_multi_wakeup(a->multi);
        pthread_join(a->pusher, NULL);
        for (push_job *j = a->ph, *nx; j; j = nx) {
            nx = j->next;
            job_free(j);
        }
    }
    MHD_stop_daemon(a->d);
    if (a->tasks == BENCH_AGENT_TASKS) {
        for (long i = 0; i < a->ntab; i++)
            task_free(a->tab[i]);
        free(a->tab);
        curl_multi_cleanup(a->multi);
        curl_global_cleanup();
    }
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

long bench_agent_polls(bench_agent *a) {
    return atomic_load(&a->polls);
}

long bench_agent_pushes(bench_agent *a, long *ok) {
    if (ok) *ok = atomic_load(&a->pushes_ok);
    return atomic_load(&a->pushes);
}

long bench_agent_fetch_lag(bench_agent *a, double *avg_ms, double *max_ms) {
    pthread_mutex_lock(&a->mu);
    long n = a->lag_n;
    *avg_ms = n ? (double)a->lag_sum / (double)n / 1000.0 : -1;
    *max_ms = n ? (double)a->lag_max / 1000.0 : -1;
    pthread_mutex_unlock(&a->mu);
    return n;
}
