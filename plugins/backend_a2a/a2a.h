/* a2a backend internals: pure parsers and builders (no host, no network),
 * shared by the plugin, its unit tests and fuzz targets. */
#ifndef ROUTERD_A2A_H
#define ROUTERD_A2A_H

#include <stddef.h>

/* Wire dialects. AUTO only appears in configuration. */
enum { A2A_AUTO = 0, A2A_V10 = 1, A2A_V03 = 2 };

/* ---- agent card ---- */
typedef struct {
    char *rpc_url; /* JSON-RPC endpoint */
    char *tenant;  /* 1.0 interface tenant, or NULL */
    int dialect;   /* A2A_V10 or A2A_V03 */
    int streaming; /* capabilities.streaming */
} a2a_card;

/* Parses a card leniently. Returns 0 and fills out, or -1 with a short
 * reason in why (no card text copied into it). */
int a2a_card_parse(const char *json, size_t len, a2a_card *out, char *why, size_t whysz);
void a2a_card_free(a2a_card *c);

/* ---- requests ---- */
typedef struct {
    int dialect;
    int stream;
    long id;
    const char *text;
    const char *message_id;
    const char *context_id; /* NULL or "" = none */
    const char *task_id;    /* NULL or "" = none */
    const char *tenant;     /* 1.0 only; NULL = none */
} a2a_send;

/* malloc()ed JSON-RPC body. */
char *a2a_build_send(const a2a_send *s);
/* op: 0 = get, 1 = cancel. */
char *a2a_build_task_op(int dialect, int op, long id, const char *task_id, const char *tenant);
const char *a2a_method(int dialect, int op); /* 0 send, 1 stream, 2 get, 3 cancel */

/* ---- responses ---- */
typedef enum {
    A2A_TS_UNKNOWN = 0,
    A2A_TS_SUBMITTED,
    A2A_TS_WORKING,
    A2A_TS_INPUT_REQUIRED,
    A2A_TS_AUTH_REQUIRED,
    A2A_TS_COMPLETED,
    A2A_TS_FAILED,
    A2A_TS_CANCELED,
    A2A_TS_REJECTED,
} a2a_state;

typedef enum {
    A2A_R_INVALID = 0, /* not a JSON-RPC response we understand */
    A2A_R_ERROR,       /* JSON-RPC error: code/errmsg */
    A2A_R_MESSAGE,
    A2A_R_TASK,
    A2A_R_STATUS, /* streaming status update */
    A2A_R_ARTIFACT,
} a2a_kind;

typedef struct {
    a2a_kind kind;
    int id_kind; /* response id: 0 absent or null, 1 number (id), 2 other */
    long id;
    int code;         /* A2A_R_ERROR */
    char errmsg[160]; /* A2A_R_ERROR, sanitised, short */
    char *context_id, *task_id;
    a2a_state state;   /* TASK / STATUS */
    int final;         /* 0.3 status-update final */
    char *text;        /* MESSAGE: its text; TASK: artifacts' text; ARTIFACT: the chunk */
    char *status_text; /* TASK / STATUS: status.message text */
    char *artifact_id;
    int append, last_chunk;
} a2a_result;

/* Parses one JSON-RPC response (a whole body or one SSE data payload). */
void a2a_parse_response(const char *json, size_t len, a2a_result *r);
void a2a_result_free(a2a_result *r);
int a2a_state_terminal(a2a_state s);
int a2a_state_interrupted(a2a_state s);
int a2a_state_active(a2a_state s);
a2a_state a2a_state_parse(const char *s);

/* ---- failure classification ---- */
/* "transient", "fatal", "timeout", "protocol" */
const char *a2a_class_http(long status);
const char *a2a_class_rpc(int code);

/* ---- SSE ---- */
typedef void (*a2a_sse_fn)(void *arg, const char *event, const char *data, size_t len);

typedef struct {
    char *line;
    size_t llen, lcap;
    char *data;
    size_t dlen, dcap;
    int have_data;
    char event[32];
    int last_cr;
    size_t max; /* cap on one event's data, 0 = none */
    int overflow;
} a2a_sse;

void a2a_sse_init(a2a_sse *p, size_t max_event);
/* Feeds bytes; calls fn once per complete event. Returns -1 once an event
 * exceeds max (the parser stays failed), else 0. */
int a2a_sse_feed(a2a_sse *p, const char *buf, size_t n, a2a_sse_fn fn, void *arg);
void a2a_sse_free(a2a_sse *p);

#endif
