/* The inbound_a2a plugin over real HTTP on 127.0.0.1 with the plugin test
 * kit as host: the card, auth, skills, dedupe, and a question's whole
 * life (send, deliver, answer by intercept, GetTask) in both dialects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "harness.h"
#include "inbound_fixture.h"

/* The card: both dialects' fields, one skill per human, no chat ids. */
static void test_card(void **state) {
    (void)state;
    ib_up(NULL);
    ib_http r = ib_get("/.well-known/agent-card.json", NULL);
    assert_int_equal(r.status, 200);
    cJSON *c = cJSON_Parse(r.body);
    assert_non_null(c);
    assert_string_equal(jstr(c, "name"), "routerd");
    assert_string_equal(jstr(c, "protocolVersion"), "0.3.0");
    assert_string_equal(jstr(c, "preferredTransport"), "JSONRPC");
    assert_string_equal(jstr(c, "url"), ib_base);
    assert_string_equal(jstr(c, "supportedInterfaces.0.protocolBinding"), "JSONRPC");
    assert_string_equal(jstr(c, "supportedInterfaces.0.protocolVersion"), "1.0");
    assert_string_equal(jstr(c, "supportedInterfaces.1.protocolVersion"), "0.3");
    assert_true(cJSON_IsTrue(jpath(c, "capabilities.streaming")));
    assert_string_equal(jstr(c, "securitySchemes.bearer.type"), "http");
    assert_string_equal(jstr(c, "securitySchemes.bearer.scheme"), "bearer");
    assert_string_equal(jstr(c, "securitySchemes.apiKey.in"), "header");
    assert_string_equal(jstr(c, "securitySchemes.apiKey.name"), "X-API-Key");
    assert_non_null(jpath(c, "security.0.bearer"));
    assert_non_null(jpath(c, "security.1.apiKey"));
    assert_int_equal(cJSON_GetArraySize(jpath(c, "skills")), 3);
    assert_string_equal(jstr(c, "skills.0.id"), "alice");
    assert_string_equal(jstr(c, "skills.0.name"), "alice");
    assert_string_equal(jstr(c, "skills.0.tags.0"), "human");
    assert_non_null(strstr(jstr(c, "skills.0.description"), "Ask alice (a person)"));
    assert_string_equal(jstr(c, "skills.2.id"), "bob");
    /* never where the people are */
    assert_null(strstr(r.body, "12345"));
    assert_null(strstr(r.body, "100987"));
    assert_null(strstr(r.body, "main"));
    assert_null(strstr(r.body, "tg2"));
    cJSON_Delete(c);
    ib_http_free(&r);

    /* a 1.0 client gets the 1.0 scheme shapes; the old path works too */
    const char *v10[] = {"A2A-Version: 1.0", NULL};
    r = ib_get("/.well-known/agent.json", v10);
    assert_int_equal(r.status, 200);
    c = cJSON_Parse(r.body);
    assert_string_equal(jstr(c, "securitySchemes.bearer.httpAuthSecurityScheme.scheme"), "Bearer");
    assert_string_equal(jstr(c, "securitySchemes.apiKey.apiKeySecurityScheme.name"), "X-API-Key");
    assert_non_null(jpath(c, "securityRequirements.0.schemes.bearer"));
    cJSON_Delete(c);
    ib_http_free(&r);
    r = ib_get("/nothing", NULL);
    assert_int_equal(r.status, 404);
    ib_http_free(&r);
    ib_down();
}

static const char *GET = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tasks/get\",\"params\":"
                         "{\"id\":\"x\"}}";

/* Missing and wrong credentials: 401 with WWW-Authenticate, a JSON-RPC
 * error, nothing else; either header carries a good token. */
static void test_auth(void **state) {
    (void)state;
    ib_up(NULL);
    const char *wrong[] = {"X-API-Key: planner-token-01234567890", NULL};
    ib_http r[3] = {ib_post(NULL, GET, NULL), ib_post("nope", GET, NULL),
                    ib_post(NULL, GET, wrong)};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].status, 401);
        assert_non_null(strcasestr(r[i].headers, "WWW-Authenticate: Bearer"));
        cJSON *j = cJSON_Parse(r[i].body);
        assert_non_null(jpath(j, "error.code"));
        assert_string_equal(jstr(j, "error.message"), "unauthorized");
        assert_null(jpath(j, "result"));
        cJSON_Delete(j);
        ib_http_free(&r[i]);
    }
    const char *key[] = {"X-API-Key: " TOK_A, NULL};
    ib_http ok = ib_post(NULL, GET, key);
    assert_int_equal(ok.status, 200);
    assert_non_null(strstr(ok.body, "-32001")); /* authenticated: the task is unknown */
    ib_http_free(&ok);
    const char *pv[] = {"unauthorized", NULL};
    assert_int_equal((int)rdpt_metric("routerd_inbound_requests_total", pv), 3);
    ib_down();
}

static void expect_error(cJSON *j, int code, const char *msg) {
    const cJSON *c = jpath(j, "error.code");
    if (!cJSON_IsNumber(c)) {
        char *s = cJSON_PrintUnformatted(j);
        fail_msg("expected error %d, got %s", code, s);
    }
    assert_int_equal(c->valueint, code);
    if (msg) assert_string_equal(jstr(j, "error.message"), msg);
}

static cJSON *send_raw(const char *tok, const char *skill, const char *mid) {
    return ib_call(
        tok, "message/send",
        "{\"message\":{\"kind\":\"message\",\"role\":\"user\",\"messageId\":\"%s\","
        "\"parts\":[{\"kind\":\"text\",\"text\":\"hi\"}],\"metadata\":{\"skill\":\"%s\"}}}",
        mid, skill);
}

/* A human the caller may not reach and one that does not exist look the
 * same; nothing is delivered. */
static void test_forbidden_skill(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *a = send_raw(TOK_P, "bob", "m1"), *b = send_raw(TOK_P, "nobody", "m2");
    expect_error(a, -32602, "unknown or forbidden skill");
    expect_error(b, -32602, "unknown or forbidden skill");
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* the auditor may reach bob */
    cJSON *t = ib_send(TOK_A, 0, "m3", "bob", "hello bob", "", 1);
    assert_string_equal(jstr(t, "status.state"), "input-required");
    cJSON_Delete(t);
    assert_int_equal(rdpt_delivered(), 1);
    /* without a skill: only a caller with one human may leave it out */
    cJSON *n = ib_call(TOK_P, "message/send",
                       "{\"message\":{\"role\":\"user\",\"messageId\":\"m4\",\"parts\":[{\"kind\":"
                       "\"text\",\"text\":\"x\"}]}}");
    expect_error(n, -32602, NULL);
    cJSON_Delete(n);
    ib_down();
}

/* Bad params: each refused with -32602 before anything is stored. */
static void test_bad_params(void **state) {
    (void)state;
    ib_up(
        (const char *const[]){"max_text_bytes", "10", "max_id_bytes", "8", "max_parts", "3", NULL});
    const char *bodies[] = {
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"0123456789X\"}]"
        ","
        "\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"\"}],"
        "\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"kind\":\"file\",\"file\":{\"uri\":"
        "\"http://x/\"}}],\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"url\":\"http://x/\"}],"
        "\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"parts\":[{\"text\":\"x\"}],\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"text\":\"x\"}],"
        "\"metadata\":{\"skill\":\"alice\",\"choices\":[]}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"text\":\"x\"}],"
        "\"metadata\":{\"skill\":\"alice\",\"choices\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\","
        "\"h\",\"i\",\"j\",\"k\"]}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"text\":\"x\"}],"
        "\"metadata\":{\"skill\":\"alice\",\"choices\":[\"0123456789012345678901234567890123456789"
        "01234567890123456789012345\"]}}}",
        "{\"message\":\"x\"}",
        "{\"message\":{\"messageId\":\"123456789\",\"parts\":[{\"text\":" /* max_id_bytes + 1 */
        "\"x\"}],\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"contextId\":\"123456789\",\"parts\":[{\"text\":"
        "\"x\"}],\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"text\":\"\xff\xfe\"}],"
        "\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[],\"metadata\":{\"skill\":\"alice\"}}}",
        "{\"message\":{\"messageId\":\"a\",\"parts\":[{\"text\":\"x\"}],"
        "\"metadata\":{\"skill\":\"alice\",\"expect_answer\":\"no\"}}}",
        "{\"message\":{\"messageId\":7,\"parts\":[{\"text\":\"x\"}],"
        "\"metadata\":{\"skill\":\"alice\"}}}",
    };
    cJSON *j;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        j = ib_call(TOK_P, "SendMessage", "%s", bodies[i]);
        expect_error(j, -32602, NULL);
        cJSON_Delete(j);
    }
    /* a taskId past max_id_bytes is no task of the caller's */
    j = ib_call(TOK_P, "SendMessage",
                "{\"message\":{\"messageId\":\"a\",\"taskId\":\"123456789\",\"parts\":[{"
                "\"text\":\"x\"}],\"metadata\":{\"skill\":\"alice\"}}}");
    expect_error(j, -32001, NULL);
    cJSON_Delete(j);
    /* max_parts + 1 parts */
    j = ib_call(TOK_P, "SendMessage",
                "{\"message\":{\"messageId\":\"a\",\"metadata\":{\"skill\":\"alice\"},"
                "\"parts\":[{\"text\":\"a\"},{\"text\":\"b\"},{\"text\":\"c\"},"
                "{\"text\":\"d\"}]}}");
    expect_error(j, -32602, "message.parts must hold 1 to max_parts parts");
    cJSON_Delete(j);
    j = ib_call(TOK_P, "message/frobnicate", "{}");
    expect_error(j, -32601, NULL);
    cJSON_Delete(j);
    ib_http r = ib_post(TOK_P, "{not json", NULL);
    j = cJSON_Parse(r.body);
    expect_error(j, -32700, NULL);
    cJSON_Delete(j);
    ib_http_free(&r);
    assert_int_equal(rdpt_kv_count("t/"), 0);
    assert_int_equal(rdpt_delivered(), 0);
    /* At the limits: taken. A JSON-RPC id past max_id_bytes is answered as null. */
    j = ib_call(TOK_P, "SendMessage",
                "{\"message\":{\"messageId\":\"12345678\",\"contextId\":\"abcdefgh\","
                "\"metadata\":{\"skill\":\"alice\"},\"parts\":[{\"text\":\"a\"},"
                "{\"text\":\"b\"},{\"text\":\"c\"}]}}");
    assert_string_equal(jstr(j, "result.task.contextId"), "abcdefgh");
    assert_string_equal(jstr(j, "result.task.history.0.parts.0.text"), "a\nb\nc");
    cJSON_Delete(j);
    r = ib_post(TOK_P,
                "{\"jsonrpc\":\"2.0\",\"id\":\"123456789\",\"method\":\"GetTask\","
                "\"params\":{\"id\":\"x\"}}",
                NULL);
    j = cJSON_Parse(r.body);
    assert_true(cJSON_IsNull(jpath(j, "id")));
    expect_error(j, -32001, NULL);
    cJSON_Delete(j);
    ib_http_free(&r);
    ib_down();
}

/* max_header_bytes: a request whose headers do not fit is refused by the
 * HTTP server; one that fits is served. */
static void test_header_limit(void **state) {
    (void)state;
    ib_up((const char *const[]){"max_header_bytes", "8192", NULL});
    char *big = malloc(12000);
    strcpy(big, "X-Padding: ");
    memset(big + 11, 'p', 10000);
    big[10011] = 0;
    ib_http r = ib_get("/.well-known/agent-card.json", (const char *const[]){big, NULL});
    assert_int_equal(r.status, 431);
    ib_http_free(&r);
    big[11 + 2000] = 0;
    r = ib_get("/.well-known/agent-card.json", (const char *const[]){big, NULL});
    assert_int_equal(r.status, 200);
    ib_http_free(&r);
    free(big);
    ib_down();
}

/* A retried messageId gives the same task and asks once. */
static void test_dedupe(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *a = ib_send(TOK_P, 1, "same-id", "alice", "Ship it?", "", 1);
    cJSON *b = ib_send(TOK_P, 1, "same-id", "alice", "Ship it?", "", 1);
    assert_string_equal(jstr(a, "id"), jstr(b, "id"));
    assert_int_equal(rdpt_delivered(), 1);
    /* the same messageId from another caller is another task */
    cJSON *c = ib_send(TOK_A, 1, "same-id", "alice", "Ship it?", "", 1);
    assert_string_not_equal(jstr(a, "id"), jstr(c, "id"));
    assert_int_equal(rdpt_delivered(), 2);
    /* a taskId that is not the caller's: not found */
    char body[512];
    snprintf(body, sizeof body,
             "{\"message\":{\"messageId\":\"other\",\"taskId\":\"%s\",\"parts\":[{\"text\":\"x\"}],"
             "\"metadata\":{\"skill\":\"alice\"}}}",
             jstr(c, "id"));
    cJSON *j = ib_call(TOK_P, "SendMessage", "%s", body);
    expect_error(j, -32001, NULL);
    cJSON_Delete(j);
    /* and neither is GetTask */
    j = ib_call(TOK_P, "GetTask", "{\"id\":\"%s\"}", jstr(c, "id"));
    expect_error(j, -32001, NULL);
    cJSON_Delete(j);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    ib_down();
}

/* send -> delivered question -> input-required -> answer by reply_to ->
 * completed with the answer as artifact; v10 picks the dialect. */
static void lifecycle(int v10) {
    ib_up(NULL);
    cJSON *t = ib_send(TOK_P, v10, "q-1", "alice", "Ship it?", "\"choices\":[\"yes\",\"no\"]", 1);
    const char *id = jstr(t, "id");
    assert_string_equal(jstr(t, "status.state"),
                        v10 ? "TASK_STATE_INPUT_REQUIRED" : "input-required");
    assert_string_equal(jstr(t, "status.message.role"), v10 ? "ROLE_AGENT" : "agent");
    assert_string_equal(jstr(t, "status.message.parts.0.text"),
                        "Question from planner:\n\nShip it?");
    if (v10) {
        assert_null(jpath(t, "kind"));
        assert_null(jpath(t, "status.message.parts.0.kind"));
    } else {
        assert_string_equal(jstr(t, "kind"), "task");
        assert_string_equal(jstr(t, "status.message.parts.0.kind"), "text");
    }
    /* history: the caller's message and the question, nothing else */
    assert_int_equal(cJSON_GetArraySize(jpath(t, "history")), 2);
    assert_string_equal(jstr(t, "history.0.messageId"), "q-1");

    rdpt_delivery *d;
    assert_int_equal(rdpt_deliveries(&d), 1);
    assert_string_equal(d[0].transport, "main");
    assert_int_equal(d[0].chat_id, 12345);
    assert_string_equal(d[0].text, "Question from planner:\n\nShip it?");
    assert_true(d[0].flags & RD_OUT_QUESTION);
    assert_string_equal(d[0].choices[0], "yes");
    assert_string_equal(d[0].choices[1], "no");
    assert_null(d[0].choices[2]);
    assert_string_equal(d[0].correlation_id, id);
    int64_t sent = d[0].sent_id;
    rdpt_deliveries_free(d, 1);

    /* another chat's message and one in this chat quoting something else
     * while another question waits are not answers */
    assert_int_equal(
        rdpt_intercept(ib_self,
                       &(rdpt_request){.chat_id = 999, .transport = "main", .text = "yes"}),
        0);
    /* a press of the question's button answers it */
    assert_int_equal(rdpt_intercept(ib_self, &(rdpt_request){.chat_id = 12345,
                                                             .transport = "main",
                                                             .text = "yes",
                                                             .flags = RD_MSG_CHOICE,
                                                             .reply_to = sent}),
                     1);
    cJSON *g = ib_get_task(TOK_P, v10, id);
    assert_string_equal(jstr(g, "status.state"), v10 ? "TASK_STATE_COMPLETED" : "completed");
    assert_string_equal(jstr(g, "artifacts.0.parts.0.text"), "yes");
    assert_string_not_equal(jstr(g, "artifacts.0.metadata.answered_at"), "(none)");
    assert_string_equal(jstr(g, "metadata.skill"), "alice");
    cJSON_Delete(g);
    cJSON_Delete(t);
    assert_int_equal((int)rdpt_metric("routerd_inbound_answer_seconds", NULL), 1);
    assert_int_equal((int)rdpt_metric("routerd_inbound_pending", NULL), 0);
    const char *ok[] = {"planner", v10 ? "SendMessage" : "message/send", "ok", NULL};
    assert_int_equal((int)rdpt_metric("routerd_inbound_requests_total", ok), 1);
    ib_down();
}

static void test_lifecycle_v03(void **state) {
    (void)state;
    lifecycle(0);
}

static void test_lifecycle_v10(void **state) {
    (void)state;
    lifecycle(1);
}

/* Tokens: masked by the host's redaction (the list's NAME=TOKEN items). */
static void test_token_masked(void **state) {
    (void)state;
    ib_up(NULL);
    char out[256];
    rdpt_host()->redact(rdpt_ctx(), "callers = planner=" TOK_P ", auditor=" TOK_A, out, sizeof out);
    assert_null(strstr(out, TOK_P));
    assert_null(strstr(out, TOK_A));
    ib_down();
}

/* Configuration refused at start, with the key and item that is wrong
 * (never the token). */
static void test_config_refused(void **state) {
    (void)state;
    ib_up(NULL);
    ib_down();
    const char *bad[][2] = {
        {"humans", "alice=main"},
        {"humans", "alice=main:12x"},
        {"humans", "alice=main:1, alice=main:2"},
        {"humans", "al ice=main:1"},
        {"humans", "alice=main:99999999999999999999"},
        {"humans", "alice=mian:12345"}, /* the router has "main" and "ops" */
        {"callers", "planner=short"},
        {"callers", "planner=tok-with-a\ttab-inside-0123"}, /* white space inside */
        {"callers", "planner=" TOK_P ", auditor=" TOK_P},
        {"callers", "planner=" TOK_P ", planner=" TOK_A},
        {"allow", "planner:carol"},
        {"allow", "nobody:alice"},
        {"listen", "127.0.0.1"},
        {"listen", "example.org:80"},
        {"public_url", "ftp://x/"},
    };
    char listen[40];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", rt_free_port());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rdpt_reset();
        rdpt_set("listen", listen);
        rdpt_set("humans", "alice=main:12345");
        rdpt_set("callers", "planner=" TOK_P ", auditor=" TOK_A);
        rdpt_set(bad[i][0], bad[i][1]);
        rdpt_info("transports", "main,ops");
        rd_status st;
        rd_error e = {0};
        void *self = rdpt_start(&st, &e);
        if (self) fail_msg("%s = %s was accepted", bad[i][0], bad[i][1]);
        assert_int_equal(st, RD_E_CONFIG);
        if (!strstr(e.msg, bad[i][0])) fail_msg("%s: '%s' does not name the key", bad[i][0], e.msg);
        assert_null(strstr(e.msg, TOK_P));
    }
    /* The transport list in the error helps with a typo. */
    rdpt_reset();
    rdpt_set("listen", listen);
    rdpt_set("humans", "alice=mian:12345");
    rdpt_set("callers", "planner=" TOK_P);
    rdpt_info("transports", "main,ops");
    rd_status st;
    rd_error e = {0};
    assert_null(rdpt_start(&st, &e));
    assert_non_null(strstr(e.msg, "'mian'"));
    assert_non_null(strstr(e.msg, "main,ops"));
}

/* A host before ABI 1.3 (no deliver()) is refused with the reason. */
static void test_old_host(void **state) {
    (void)state;
    char err[256];
    extern const rd_plugin routerd_plugin_v1;
    assert_int_equal(rdpt_use(&routerd_plugin_v1, err, sizeof err), 0);
    rdpt_reset();
    rdpt_set("listen", "127.0.0.1:1");
    rdpt_set("humans", "alice=main:12345");
    rdpt_set("callers", "planner=" TOK_P);
    rdpt_set_host_minor(2);
    rd_status st;
    rd_error e = {0};
    assert_null(rdpt_start(&st, &e));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(e.msg, "ABI 1.3"));
    rdpt_reset();
}

/* The built inbound_a2a.so loads by path, as plugin authors' tests do. */
static void test_load_by_path(void **state) {
    (void)state;
    char err[512];
    rdpt_reset();
    assert_int_equal(
        rdpt_load(ROUTERD_PLUGIN_DIR "/inbound_a2a.so", RD_KIND_INBOUND, err, sizeof err), 0);
    assert_int_equal(rdpt_plugin()->kind, RD_KIND_INBOUND);
    assert_int_equal(
        rdpt_load(ROUTERD_PLUGIN_DIR "/inbound_a2a.so", RD_KIND_BACKEND, err, sizeof err), -1);
    char listen[40];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", rt_free_port());
    rdpt_set("listen", listen);
    rdpt_set("humans", "alice=main:12345");
    rdpt_set("callers", "planner=" TOK_P);
    rdpt_set("allow", "planner:*");
    rd_status st;
    void *self = rdpt_start(&st, NULL);
    assert_non_null(self);
    assert_int_equal(rdpt_intercept(self, &(rdpt_request){.chat_id = 1, .text = "x"}), 0);
    rdpt_shutdown(self);
    assert_int_equal(rdpt_teardown_ok(err, sizeof err), 0);
    rdpt_reset();
}

/* Finished tasks are forgotten after task_retention: task, dedupe key. */
static void test_retention(void **state) {
    (void)state;
    ib_up((const char *const[]){"task_retention", "60s", NULL});
    cJSON *t = ib_send(TOK_P, 0, "old", "alice", "x", "\"expect_answer\":false", 1);
    assert_string_equal(jstr(t, "status.state"), "completed");
    cJSON *o = ib_send(TOK_P, 0, "open", "alice", "still open?", "", 1);
    assert_int_equal(rdpt_kv_count("t/"), 2);
    assert_int_equal(rdpt_kv_count("m/"), 2);
    rdpt_shutdown(ib_self);
    rdpt_wall_advance_ms(120000);
    rdpt_new_run();
    ib_restart();
    long long end = rdpt_now_ms() + 3000;
    while (rdpt_kv_count("t/") != 1 && rdpt_now_ms() < end)
        rdpt_sleep_ms(20);
    assert_int_equal(rdpt_kv_count("t/"), 1); /* the open one stays */
    assert_int_equal(rdpt_kv_count("m/"), 1);
    cJSON *g = ib_call(TOK_P, "tasks/get", "{\"id\":\"%s\"}", jstr(t, "id"));
    expect_error(g, -32001, NULL);
    cJSON_Delete(g);
    cJSON_Delete(t);
    cJSON_Delete(o);
    ib_down();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_forbidden_skill),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_lifecycle_v03),
        cmocka_unit_test(test_lifecycle_v10),
        cmocka_unit_test(test_token_masked),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_old_host),
        cmocka_unit_test(test_load_by_path),
        cmocka_unit_test(test_retention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
