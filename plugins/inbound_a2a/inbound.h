/* inbound_a2a: routerd as an A2A server for the people behind its chats.
 * Calling agents send a question to a human (a skill); the question is
 * stored, delivered into that person's chat through host->deliver(), and
 * the person's reply, taken by intercept(), completes the task.
 *
 * Files, bottom first (a file calls only those above it in this list):
 *   inbound_task.c  tasks in the store, state changes, matching answers,
 *                   the sender and expiry threads
 *   inbound_rpc.c   JSON-RPC in the 1.0 and 0.3 dialects, the card
 *   inbound_http.c  the listener: limits, auth, SSE streams
 *   inbound.c       options, configuration, lifecycle, descriptor */
#ifndef INBOUND_A2A_H
#define INBOUND_A2A_H

#include <routerd/plugin.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define IB_ID_MAX 128  /* a task id looked up (ours are 36 bytes) */
#define IB_NAME_MAX 64 /* human, caller and transport names */
#define IB_CHOICES_MAX 10
#define IB_CHOICE_MAX 64

/* The keys, written by cfg_bind(); members are named after them. */
typedef struct ib_conf {
    const char *listen, *public_url, *name, *description;
    const char *const *humans, *const *callers, *const *allow;
    int64_t rate_limit_per_minute, answer_timeout, max_pending, max_pending_per_chat,
        max_text_bytes, max_answer_bytes, max_body_bytes, max_streams, max_connections,
        http_timeout, send_wait, deliver_timeout, retry_delay, min_token_bytes, task_retention,
        rescan_interval, max_id_bytes, max_parts, max_header_bytes;
} ib_conf;

typedef struct ib_human {
    char *name, *transport;
    int64_t chat;
} ib_human;

typedef struct ib_caller {
    char *name;
    const char *token; /* host-owned */
    size_t token_len;
    unsigned char token_sha[32]; /* SHA-256 of token, made once: ib_auth() compares these */
    unsigned char *allow;        /* one flag per human */
    size_t nallowed;
    double bucket; /* rate limit tokens, under ib.mu */
    int64_t bucket_ms;
} ib_caller;

typedef enum { TS_SUBMITTED, TS_INPUT, TS_COMPLETED, TS_FAILED, TS_CANCELED, TS_N } ib_state;

/* What requests_total counts as outcome. */
typedef enum {
    OC_OK,
    OC_INVALID,
    OC_NOT_FOUND,
    OC_UNAUTHORIZED,
    OC_RATE_LIMITED,
    OC_FULL,
    OC_TOO_LARGE,
    OC_ERROR,
    OC_N
} ib_outcome;

typedef struct ib {
    const rd_host *h;
    rd_ctx *ctx;
    ib_conf cf;
    const char *inst;
    ib_human *humans;
    size_t nhumans;
    ib_caller *callers;
    size_t ncallers;
    char *public_url; /* ends without '/' */
    char *rpc_path;   /* the path of public_url ("" = none besides "/") */
    struct sockaddr_storage addr;
    int shared_store; /* postgresql: other replicas change tasks too */

    struct MHD_Daemon *mhd;
    int listen_fd;      /* handed back by quiesce, -1 = none */
    pthread_mutex_t mu; /* task changes, rate buckets, gen */
    pthread_cond_t cv;  /* gen moved or stopping */
    uint64_t gen;
    int stopping, kick;
    int64_t earliest_ms; /* the first open deadline known (wall ms); 0 = none */
    pthread_t sender, timer;
    int sender_on, timer_on;
    int64_t warned_ms; /* sender thread: the last 'not possible now' warning */
    atomic_int streams;

    /* Metrics. */
    rd_metric *m_req;
    pthread_mutex_t smu; /* the series cache below */
    struct ib_series *series;
    size_t nseries;
    rd_series *pending_s, *answer_s;
    rd_series **expired_s; /* per caller */
} ib;

/* A task as stored under t/<id>. */
typedef struct ib_task {
    char *id, *ctx_id, *caller, *skill, *transport, *msg_id, *text, *sent, *answer, *reason;
    char **choices; /* NULL-terminated; NULL = none */
    int64_t chat, sent_id, created_ms, updated_ms, deadline_ms, delivered_ms, answered_ms;
    int notify;
    ib_state state;
} ib_task;

/* ---- inbound.c ---- */
/* humans, callers and allow from b->cf into b (b->h, b->cf set): 0, or -1
 * with err set; what was parsed stays for ib_free_lists() either way. */
int ib_parse_lists(ib *b, rd_error *err);
void ib_free_lists(ib *b);

/* ---- inbound_task.c ---- */
const char *ib_state_name(ib_state s, int v10);
int ib_terminal(ib_state s);
void ib_task_free(ib_task *t);
/* Loads t/<id>: 0, or -1 when absent or unreadable. */
int ib_task_load(ib *b, const char *id, ib_task *t);
/* A new task from a caller's message (fields set but id and times):
 * RD_OK created (*t filled), RD_E_DUPLICATE the caller sent this messageId
 * before (*t is that task), else a store failure. */
rd_status ib_task_create(ib *b, ib_task *t);
/* Cancels a caller's task: 0 done, -1 unknown, -2 already terminal, -3 the
 * store refused (or another replica held the task). */
int ib_task_cancel(ib *b, const char *id, const char *caller, ib_task *out);
/* Waits until gen moves past *seen or ms pass (or stop): the new gen. */
uint64_t ib_wait(ib *b, uint64_t seen, int64_t ms);
uint64_t ib_gen(ib *b);
int ib_stopping(ib *b);
/* The dedupe key of a caller's messageId. */
void ib_mkey(const char *caller, const char *msg_id, char *k, size_t sz);
int64_t ib_wall_ms(ib *b);
void ib_iso(int64_t wall_ms, char *out, size_t sz);
void ib_kick_sender(ib *b);
int ib_threads_start(ib *b, rd_error *err);
void ib_threads_stop(ib *b);
int ib_intercept(void *self, const rd_request *rq);
void ib_count_pending(ib *b);

/* ---- inbound_rpc.c ---- */
typedef struct ib_answer {
    int http;        /* HTTP status */
    int retry_after; /* > 0: Retry-After */
    char *body;      /* JSON (malloc) */
    ib_outcome outcome;
    const char *method; /* label value */
    /* A stream to open instead of body: */
    int stream, v10;
    char *task_id, *rpc_id; /* rpc_id: the request id as JSON text */
    char *first;            /* the first event: the Task as the call saw it */
    ib_state first_state;
} ib_answer;
/* Handles one authenticated JSON-RPC request body from caller. */
void ib_rpc(ib *b, ib_caller *caller, const char *body, size_t len, ib_answer *a);
/* The error body for a request refused before it was read (id null). */
char *ib_rpc_error_body(int code, const char *msg);
char *ib_card(ib *b, int v10);
/* One SSE "data:" event for the task's state change, in a dialect. */
char *ib_event_task(const ib_task *t, int v10, const char *rpc_id);
char *ib_event_status(const ib_task *t, int v10, const char *rpc_id);
char *ib_event_artifact(const ib_task *t, int v10, const char *rpc_id);

/* ---- inbound_http.c ---- */
int ib_http_start(ib *b, rd_error *err);
void ib_http_quiesce(ib *b);
void ib_http_stop(ib *b);
/* routerd_inbound_requests_total{instance,caller,method,outcome} += 1 */
void ib_count(ib *b, const char *caller, const char *method, ib_outcome oc);
/* SHA-256 of a NUL-terminated token. */
void ib_token_digest(const char *token, unsigned char out[32]);
/* Constant time: the caller whose token this is, or NULL. */
ib_caller *ib_auth(ib *b, const char *bearer, const char *api_key);
/* The same from the raw Authorization ("Bearer <token>") and X-API-Key
 * header values (either may be NULL), as the listener reads them. */
ib_caller *ib_auth_headers(ib *b, const char *authorization, const char *api_key);

#endif
