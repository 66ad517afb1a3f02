/* The inbound_a2a plugin in-process on the plugin test kit, spoken to over
 * real HTTP on 127.0.0.1: set-up, JSON-RPC calls, SSE capture, JSON paths.
 * Shared by the test_inbound_*.c files. */
#ifndef TESTS_INBOUND_FIXTURE_H
#define TESTS_INBOUND_FIXTURE_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>

#define TOK_P "planner-token-0123456789"
#define TOK_A "auditor-token-9876543210"

/* The instance under test and its listener. */
extern void *ib_self;
extern char ib_base[64];

/* A fresh machine and the plugin started with the usual humans, callers
 * and allow list; extra: key, value pairs (NULL-terminated) set on top. */
void ib_up(const char *const *extra);
/* Starts the plugin again on the same configuration and store. */
void ib_restart(void);
void ib_down(void);

typedef struct ib_http {
    long status;
    char *body;
    char headers[2048];
} ib_http;

/* POST / with a bearer token (NULL = none) and more header lines. */
ib_http ib_post(const char *token, const char *body, const char *const *headers);
ib_http ib_get(const char *path, const char *const *headers);
void ib_http_free(ib_http *r);

/* A JSON-RPC call by caller token: the parsed response (free with
 * cJSON_Delete), HTTP status in *status when not NULL. */
cJSON *ib_call(const char *token, const char *method, const char *params_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A send in dialect v10 (1 = SendMessage, 0 = message/send): text to
 * skill (NULL = none), metadata extra (JSON members, "" = none), blocking
 * as given. Returns the Task object (detached from the envelope). */
cJSON *ib_send(const char *token, int v10, const char *msg_id, const char *skill, const char *text,
               const char *meta_extra, int blocking);
/* GetTask in a dialect: the Task. */
cJSON *ib_get_task(const char *token, int v10, const char *id);

/* Value at a dotted path ("result.status.state", "parts.0.text"). */
const cJSON *jpath(const cJSON *o, const char *path);
const char *jstr(const cJSON *o, const char *path);

/* An SSE stream read on its own thread. */
typedef struct ib_sse {
    pthread_t th;
    pthread_mutex_t mu;
    char *buf;
    size_t len;
    int done;
    long status;
    char *body, *token;
} ib_sse;
ib_sse *ib_sse_open(const char *token, const char *body);
/* Waits until the text received so far contains needle: 1, or 0. */
int ib_sse_wait(ib_sse *s, const char *needle, int timeout_ms);
int ib_sse_wait_done(ib_sse *s, int timeout_ms);
/* The text received so far (a copy, malloc). */
char *ib_sse_text(ib_sse *s);
void ib_sse_close(ib_sse *s);

#endif
