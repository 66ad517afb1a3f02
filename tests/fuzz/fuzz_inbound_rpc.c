/* The inbound A2A server's request handling: arbitrary bytes as the
 * JSON-RPC body of an authenticated caller, through ib_rpc() as the
 * listener calls it (body NUL-terminated, then counted), in both dialects,
 * on the plugin test kit's in-memory store. Each input runs as a caller
 * allowed two humans, then as one allowed all (same store: retries and
 * other callers' tasks), then the store goes back to its seeded state.
 * The first caller is always over its rate limit, the human "oncall" has
 * no room left: a new task for them is refused with 429 or 503.
 *
 * Seeded tasks: "@T1@" in an input stands for a submitted task of the
 * first caller, "@T2@" a canceled one of it, "@T3@" one of the second
 * caller, so that GetTask, CancelTask and the subscriptions reach real
 * tasks. Answers must be one JSON-RPC envelope (or a stream's first
 * event), with a status and outcome the listener knows. */
#include <routerd/plugintest.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound.h"

extern const rd_plugin routerd_plugin_v1;

#define TOK_P "tok-planner-0123456789abcdef"
#define TOK_A "tok-auditor-0123456789abcdef"

static ib *b;
static char tid[3][IB_ID_MAX + 1];

static void die(const char *what) {
    fprintf(stderr, "fuzz_inbound_rpc: %s\n", what);
    abort();
}

static ib_answer call(ib_caller *c, const char *body) {
    ib_answer a = {0};
    ib_rpc(b, c, body, strlen(body), &a);
    return a;
}

static void answer_free(ib_answer *a) {
    free(a->body);
    free(a->task_id);
    free(a->rpc_id);
    free(a->first);
}

/* A task of caller c sent in the 0.3 dialect; its id into out. */
static void seed(ib_caller *c, const char *mid, char *out) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"message/send\",\"params\":{\"message\":"
             "{\"messageId\":\"%s\",\"role\":\"user\",\"parts\":[{\"kind\":\"text\",\"text\":"
             "\"seed\"}],\"metadata\":{\"skill\":\"oncall\"}},\"configuration\":{\"blocking\":"
             "false}}}",
             mid);
    ib_answer a = call(c, body);
    cJSON *o = a.body ? cJSON_Parse(a.body) : NULL;
    const cJSON *id = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "result"), "id");
    if (!cJSON_IsString(id) || strlen(id->valuestring) > IB_ID_MAX) die("seeding a task failed");
    strcpy(out, id->valuestring);
    cJSON_Delete(o);
    answer_free(&a);
}

static void setup(void) {
    char err[256];
    if (rdpt_use(&routerd_plugin_v1, err, sizeof err)) die(err);
    rdpt_reset();
    rdpt_info("instance", "people");
    rdpt_info("transports", "main,tg2");
    rdpt_set("listen", "127.0.0.1:9"); /* never opened: start() is not called */
    rdpt_set("humans", "alice=main:12345, oncall=main:-100987, bob=tg2:555");
    rdpt_set("callers", "planner=" TOK_P ", auditor=" TOK_A);
    rdpt_set("allow", "planner:alice+oncall, auditor:*");
    rdpt_set("send_wait", "0s"); /* no waiting for a delivery nobody makes */
    rdpt_set("rate_limit_per_minute", "60");
    rdpt_set("max_pending_per_chat", "2"); /* the seeded two: oncall is full */
    rdpt_set_now_ms(1700000000000);
    void *self = NULL;
    rd_error e = {0};
    if (rdpt_plugin()->ops->create(rdpt_host(), rdpt_ctx(), &self, &e) != RD_OK) die(e.msg);
    b = self;
    if (b->ncallers != 2 || ib_auth_headers(b, "Bearer " TOK_P, NULL) != &b->callers[0])
        die("the callers are not as configured");
    seed(&b->callers[0], "seed-1", tid[0]);
    seed(&b->callers[0], "seed-2", tid[1]);
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"CancelTask\",\"params\":{\"id\":\"%s\"}}",
             tid[1]);
    ib_answer a = call(&b->callers[0], body);
    if (a.outcome != OC_OK) die("canceling a seeded task failed");
    answer_free(&a);
    seed(&b->callers[1], "seed-3", tid[2]);
    rdpt_kv_snapshot();
}

/* The input with @T1@..@T3@ replaced by the seeded ids, NUL-terminated
 * like the listener's body; *len its length. */
static char *expand(const uint8_t *data, size_t size, size_t *len) {
    char *out = malloc(size * (IB_ID_MAX / 4 + 1) + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        if (i + 4 <= size && data[i] == '@' && data[i + 1] == 'T' && data[i + 2] >= '1' &&
            data[i + 2] <= '3' && data[i + 3] == '@') {
            const char *id = tid[data[i + 2] - '1'];
            memcpy(out + n, id, strlen(id));
            n += strlen(id);
            i += 4;
        } else {
            out[n++] = (char)data[i++];
        }
    }
    out[n] = 0;
    *len = n;
    return out;
}

static void check(ib_caller *c, const char *body, size_t len) {
    ib_answer a = {0};
    ib_rpc(b, c, body, len, &a);
    if (!a.method || a.outcome >= OC_N) die("no method label or outcome");
    if (a.http != 200 && a.http != 429 && a.http != 503) die("an HTTP status out of the set");
    if ((a.http != 200) != (a.retry_after > 0)) die("Retry-After without a refusal or none");
    if (a.stream) {
        if (a.body || !a.task_id || !a.first || strncmp(a.first, "data: {", 7))
            die("a stream without its task or first event");
        ib_task t;
        if (ib_task_load(b, a.task_id, &t) == 0) { /* what the stream sends next */
            free(ib_event_status(&t, a.v10, a.rpc_id));
            free(ib_event_artifact(&t, a.v10, a.rpc_id));
            ib_task_free(&t);
        }
    } else {
        cJSON *o = a.body ? cJSON_Parse(a.body) : NULL;
        const cJSON *ver = cJSON_GetObjectItem(o, "jsonrpc");
        int res = cJSON_HasObjectItem(o, "result"), err = cJSON_HasObjectItem(o, "error");
        if (!cJSON_IsString(ver) || strcmp(ver->valuestring, "2.0") || res == err ||
            !cJSON_HasObjectItem(o, "id"))
            die("an answer that is not one JSON-RPC envelope");
        if (res != (a.outcome == OC_OK)) die("the outcome disagrees with the answer");
        if (a.http != 200 && res) die("a result with an error status");
        cJSON_Delete(o);
    }
    ib_count(b, c->name, a.method, a.outcome);
    answer_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!b) setup();
    /* The clock stands still: the first caller is out of tokens (429),
     * the second has a full bucket for every input. */
    b->callers[0].bucket = 0.5;
    b->callers[1].bucket = 60;
    b->callers[0].bucket_ms = b->callers[1].bucket_ms = 1700000000000;
    size_t len;
    char *body = expand(data, size, &len); /* NUL bytes inside stay, as over HTTP */
    if (!body) return 0;
    check(&b->callers[0], body, len);
    check(&b->callers[1], body, len);
    free(body);
    rdpt_kv_restore();
    return 0;
}
