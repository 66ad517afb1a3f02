/* The baseline the benchmarks compare routerd with: a minimal libcurl
 * client that makes the same HTTP calls routerd makes per message and
 * nothing else. It long-polls getUpdates (limit 100, the same timeout and
 * offset confirmation), posts the same JSON-RPC message/send body to the
 * agent and sends the answer with sendMessage, keeping per-chat order with
 * up to WORKERS calls in flight (threads started on demand, a keep-alive
 * agent connection per thread, Bot API connections pooled as routerd
 * pools them). No journal, routing, retries, typing,
 * metrics or logs.
 *
 *   BENCH_TOKEN=<token> bench_minimal API_BASE AGENT_URL WORKERS QUEUE_DEPTH [POLL_TIMEOUT_S]
 *
 * Runs until SIGTERM, then finishes what it fetched and exits 0. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct msg {
    int64_t update_id, message_id;
    char *text;
    struct msg *next;
} msg;

typedef struct chat {
    int64_t id;
    char *context; /* the agent's contextId, sent with the next message */
    msg *head, *tail;
    int busy, ready; /* being answered / in the ready list */
    struct chat *next_in_bucket, *next_ready;
} chat;

#define NBUCKETS 65536

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, space;
    chat *buckets[NBUCKETS];
    chat *ready_head, *ready_tail;
    long queued, queue_depth;
    long nready;                              /* chats in the ready list */
    int workers, max_workers, idle, starting; /* starting: created, not yet waiting */
    atomic_int stop;
    char *api, *agent;
    pthread_attr_t attr;
    atomic_long rpc_id;
    pthread_mutex_t pool_mu; /* Bot API handles shared by the workers, as routerd does */
    CURL *pool[16];
    int npool;
} G;

static CURL *easy_get(void) {
    CURL *c = NULL;
    pthread_mutex_lock(&G.pool_mu);
    if (G.npool > 0) c = G.pool[--G.npool];
    pthread_mutex_unlock(&G.pool_mu);
    return c ? c : curl_easy_init();
}

static void easy_put(CURL *c) {
    pthread_mutex_lock(&G.pool_mu);
    if (G.npool < (int)(sizeof G.pool / sizeof G.pool[0])) {
        G.pool[G.npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&G.pool_mu);
    if (c) curl_easy_cleanup(c);
}

typedef struct {
    char *buf;
    size_t len;
} buf;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    buf *b = ud;
    size_t k = size * n;
    char *nb = realloc(b->buf, b->len + k + 1);
    if (!nb) return 0;
    b->buf = nb;
    memcpy(b->buf + b->len, p, k);
    b->len += k;
    b->buf[b->len] = 0;
    return k;
}

/* One POST of a JSON body on a reused handle; the answer as parsed JSON. */
static cJSON *post(CURL *c, struct curl_slist *hdr, const char *url, const char *body,
                   long timeout_ms) {
    buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    cJSON *j = NULL;
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK &&
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
        j = cJSON_Parse(b.buf ? b.buf : "");
    free(b.buf);
    return j;
}

static chat *chat_of(int64_t id) {
    size_t h = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 48) & (NBUCKETS - 1);
    for (chat *c = G.buckets[h]; c; c = c->next_in_bucket)
        if (c->id == id) return c;
    chat *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->id = id;
    c->next_in_bucket = G.buckets[h];
    G.buckets[h] = c;
    return c;
}

static void make_ready(chat *c) {
    if (c->ready || c->busy || !c->head) return;
    c->ready = 1;
    G.nready++;
    c->next_ready = NULL;
    if (G.ready_tail)
        G.ready_tail->next_ready = c;
    else
        G.ready_head = c;
    G.ready_tail = c;
}

/* The body routerd's a2a backend sends (protocol 0.3, JSON-RPC). */
static char *a2a_body(const msg *m, const char *context) {
    char id[32], mid[64];
    snprintf(id, sizeof id, "rd-%ld", atomic_fetch_add(&G.rpc_id, 1) + 1);
    uint64_t x = (uint64_t)m->update_id * 0x9E3779B97F4A7C15ULL;
    snprintf(mid, sizeof mid, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(x >> 32),
             (unsigned)(x >> 16) & 0xffff, (unsigned)x & 0xffff, (unsigned)(x >> 48),
             (unsigned long long)(x & 0xffffffffffffULL));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jsonrpc", "2.0");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "method", "message/send");
    cJSON *p = cJSON_AddObjectToObject(o, "params");
    cJSON *mm = cJSON_AddObjectToObject(p, "message");
    cJSON_AddStringToObject(mm, "kind", "message");
    cJSON_AddStringToObject(mm, "role", "user");
    cJSON_AddStringToObject(mm, "messageId", mid);
    cJSON *parts = cJSON_AddArrayToObject(mm, "parts");
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "kind", "text");
    cJSON_AddStringToObject(part, "text", m->text);
    cJSON_AddItemToArray(parts, part);
    if (context) cJSON_AddStringToObject(mm, "contextId", context);
    cJSON *cfg = cJSON_AddObjectToObject(p, "configuration");
    cJSON_AddArrayToObject(cfg, "acceptedOutputModes");
    cJSON_AddBoolToObject(cfg, "blocking", 0);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *send_body(int64_t chat_id, int64_t reply_to, const char *text) {
    char num[32];
    cJSON *o = cJSON_CreateObject();
    snprintf(num, sizeof num, "%lld", (long long)chat_id);
    cJSON_AddRawToObject(o, "chat_id", num);
    cJSON_AddStringToObject(o, "text", text);
    cJSON *rp = cJSON_AddObjectToObject(o, "reply_parameters");
    snprintf(num, sizeof num, "%lld", (long long)reply_to);
    cJSON_AddRawToObject(rp, "message_id", num);
    cJSON_AddBoolToObject(rp, "allow_sending_without_reply", 1);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void answer(CURL *ca, struct curl_slist *hdr, const char *send_url, chat *c, const msg *m) {
    /* Only this worker touches the chat while it is busy. */
    char *body = a2a_body(m, c->context);
    cJSON *r = post(ca, hdr, G.agent, body, 600000);
    free(body);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(r, "result");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(res, "contextId");
    if (cJSON_IsString(ctx) && (!c->context || strcmp(c->context, ctx->valuestring))) {
        free(c->context);
        c->context = strdup(ctx->valuestring);
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(res, "parts");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(parts, 0), "text");
    char *out =
        send_body(c->id, m->message_id, cJSON_IsString(text) ? text->valuestring : "no answer");
    cJSON_Delete(r);
    CURL *ct = easy_get();
    cJSON_Delete(post(ct, hdr, send_url, out, 30000));
    easy_put(ct);
    free(out);
}

static void *worker(void *arg) {
    (void)arg;
    CURL *ca = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    char send_url[1024];
    snprintf(send_url, sizeof send_url, "%s/sendMessage", G.api);
    pthread_mutex_lock(&G.mu);
    G.starting--;
    for (;;) {
        while (!G.ready_head && !atomic_load(&G.stop)) {
            G.idle++;
            pthread_cond_wait(&G.work, &G.mu);
            G.idle--;
        }
        chat *c = G.ready_head;
        if (!c) break;
        G.ready_head = c->next_ready;
        if (!G.ready_head) G.ready_tail = NULL;
        c->ready = 0;
        G.nready--;
        c->busy = 1;
        msg *m = c->head;
        c->head = m->next;
        if (!c->head) c->tail = NULL;
        pthread_mutex_unlock(&G.mu);
        answer(ca, hdr, send_url, c, m);
        free(m->text);
        free(m);
        pthread_mutex_lock(&G.mu);
        c->busy = 0;
        G.queued--;
        make_ready(c);
        if (G.ready_head) pthread_cond_signal(&G.work);
        pthread_cond_signal(&G.space);
    }
    G.workers--;
    pthread_cond_broadcast(&G.space);
    pthread_mutex_unlock(&G.mu);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(ca);
    return NULL;
}

/* Queues one update's message (G.mu held). */
static void take(const cJSON *u) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(u, "message");
    const cJSON *chat_o = cJSON_GetObjectItemCaseSensitive(m, "chat");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(chat_o, "id");
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "message_id");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "text");
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(u, "update_id");
    if (!cJSON_IsNumber(id) || !cJSON_IsString(text)) return;
    msg *x = calloc(1, sizeof *x);
    if (!x) abort();
    x->update_id = cJSON_IsNumber(uid) ? (int64_t)uid->valuedouble : 0;
    x->message_id = cJSON_IsNumber(mid) ? (int64_t)mid->valuedouble : 0;
    x->text = strdup(text->valuestring);
    chat *c = chat_of((int64_t)id->valuedouble);
    if (c->tail)
        c->tail->next = x;
    else
        c->head = x;
    c->tail = x;
    G.queued++;
    make_ready(c);
    if (G.idle > 0) pthread_cond_signal(&G.work);
    /* More chats ready than idle workers: one more worker. */
    if (G.nready > G.idle + G.starting && G.workers < G.max_workers) {
        pthread_t th;
        if (pthread_create(&th, &G.attr, worker, NULL) == 0) {
            pthread_detach(th);
            G.workers++;
            G.starting++;
        }
    }
}

static void on_term(int sig) {
    (void)sig;
    atomic_store(&G.stop, 1);
}

int main(int argc, char **argv) {
    const char *token = getenv("BENCH_TOKEN");
    if (argc < 5 || !token) {
        fprintf(stderr, "usage: BENCH_TOKEN=... bench_minimal API_BASE AGENT_URL WORKERS "
                        "QUEUE_DEPTH [POLL_TIMEOUT_S]\n");
        return 64;
    }
    if (asprintf(&G.api, "%s/bot%s", argv[1], token) < 0) return 1;
    G.agent = argv[2];
    G.max_workers = atoi(argv[3]);
    G.queue_depth = atol(argv[4]);
    long poll_timeout = argc > 5 ? atol(argv[5]) : 1;
    if (G.max_workers < 1 || G.queue_depth < 1) return 64;
    pthread_mutex_init(&G.mu, NULL);
    pthread_mutex_init(&G.pool_mu, NULL);
    pthread_cond_init(&G.work, NULL);
    pthread_cond_init(&G.space, NULL);
    pthread_attr_init(&G.attr);
    pthread_attr_setstacksize(&G.attr, 512 * 1024); /* as routerd's workers */
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    char url[1024], body[256];
    snprintf(url, sizeof url, "%s/getUpdates", G.api);
    int64_t offset = 0;
    while (!atomic_load(&G.stop)) {
        pthread_mutex_lock(&G.mu);
        while (G.queued >= G.queue_depth && !atomic_load(&G.stop))
            pthread_cond_wait(&G.space, &G.mu);
        pthread_mutex_unlock(&G.mu);
        char off[48] = "";
        if (offset) snprintf(off, sizeof off, "\"offset\":%lld,", (long long)offset);
        snprintf(body, sizeof body,
                 "{%s\"limit\":100,\"timeout\":%ld,\"allowed_updates\":[\"message\","
                 "\"edited_message\"]}",
                 off, poll_timeout);
        cJSON *r = post(c, hdr, url, body, (poll_timeout + 10) * 1000);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(r, "result");
        pthread_mutex_lock(&G.mu);
        const cJSON *u;
        cJSON_ArrayForEach(u, res) {
            const cJSON *uid = cJSON_GetObjectItemCaseSensitive(u, "update_id");
            if (cJSON_IsNumber(uid) && (int64_t)uid->valuedouble >= offset)
                offset = (int64_t)uid->valuedouble + 1;
            take(u);
        }
        pthread_mutex_unlock(&G.mu);
        if (!r) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        cJSON_Delete(r);
    }
    /* Drain: workers finish what was fetched, then leave. */
    pthread_mutex_lock(&G.mu);
    pthread_cond_broadcast(&G.work);
    while (G.workers > 0 || G.queued > 0) {
        pthread_cond_broadcast(&G.work);
        pthread_cond_wait(&G.space, &G.mu);
    }
    pthread_mutex_unlock(&G.mu);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    while (G.npool > 0)
        curl_easy_cleanup(G.pool[--G.npool]);
    curl_global_cleanup();
    free(G.api);
    return 0;
}
