/* Pure A2A code: request bodies in both dialects, responses and stream
 * events in both shapes, cards (0.3, 1.0, hybrid, leaked oneof wrappers,
 * relative URLs, security), task tracking and failure classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a2a_parse.h"

static const char *gs(const cJSON *o, const char *path) {
    /* "a.b.c" (array index as a number) */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(cur))
            cur = cJSON_GetArrayItem(cur, atoi(t));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, t);
        if (!cur) return NULL;
    }
    if (cJSON_IsString(cur)) return cur->valuestring;
    if (cJSON_IsTrue(cur)) return "true";
    if (cJSON_IsFalse(cur)) return "false";
    return cur ? "<other>" : NULL;
}

static void test_build_send_v10(void **state) {
    (void)state;
    const char *modes[] = {"text/plain", NULL};
    a2a_send s = {.text = "hi \"there\"",
                  .message_id = "m-1",
                  .context_id = "ctx-9",
                  .task_id = "t-3",
                  .tenant = "acme",
                  .return_immediately = 1,
                  .accepted_output_modes = modes};
    char *body = a2a_build_send(A2A_D_V10, 0, "rd-1", &s);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    assert_string_equal(gs(j, "jsonrpc"), "2.0");
    assert_string_equal(gs(j, "id"), "rd-1");
    assert_string_equal(gs(j, "method"), "SendMessage");
    assert_string_equal(gs(j, "params.tenant"), "acme");
    assert_string_equal(gs(j, "params.message.role"), "ROLE_USER");
    assert_string_equal(gs(j, "params.message.messageId"), "m-1");
    assert_string_equal(gs(j, "params.message.contextId"), "ctx-9");
    assert_string_equal(gs(j, "params.message.taskId"), "t-3");
    assert_string_equal(gs(j, "params.message.parts.0.text"), "hi \"there\"");
    assert_null(gs(j, "params.message.kind"));
    assert_null(gs(j, "params.message.parts.0.kind"));
    assert_string_equal(gs(j, "params.configuration.returnImmediately"), "true");
    assert_string_equal(gs(j, "params.configuration.acceptedOutputModes.0"), "text/plain");
    cJSON_Delete(j);
    free(body);

    /* Every text comes back as it went: quotes, escapes, control
     * characters, multi-byte characters; modes and ids too. */
    const char *odd = "q\"b\\s/\n\t\r\x01\x1f\x7f é 😀 </script>";
    const char *odd_modes[] = {"text/plain", "application/\"x\"", NULL};
    a2a_send s3 = {.text = odd,
                   .message_id = "m\"3",
                   .context_id = "c\\x",
                   .accepted_output_modes = odd_modes};
    for (int d = 0; d < 2; d++) {
        body = a2a_build_send(d ? A2A_D_V03 : A2A_D_V10, d, "id\"\n", &s3);
        j = cJSON_Parse(body);
        assert_non_null(j);
        assert_string_equal(gs(j, "id"), "id\"\n");
        assert_string_equal(gs(j, "params.message.parts.0.text"), odd);
        assert_string_equal(gs(j, "params.message.messageId"), "m\"3");
        assert_string_equal(gs(j, "params.message.contextId"), "c\\x");
        assert_string_equal(gs(j, "params.configuration.acceptedOutputModes.1"),
                            "application/\"x\"");
        /* the modes alone: no blocking while streaming (0.3), no
         * returnImmediately unasked (1.0) */
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "params"),
                                                                "configuration")),
                         1);
        cJSON_Delete(j);
        free(body);
    }

    /* streaming, no context: no ids, no returnImmediately */
    a2a_send s2 = {.text = "x", .message_id = "m-2", .return_immediately = 1};
    body = a2a_build_send(A2A_D_V10, 1, "rd-2", &s2);
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "method"), "SendStreamingMessage");
    assert_null(gs(j, "params.message.contextId"));
    assert_null(gs(j, "params.message.taskId"));
    assert_null(gs(j, "params.configuration"));
    assert_null(gs(j, "params.tenant"));
    cJSON_Delete(j);
    free(body);
}

static void test_build_send_v03(void **state) {
    (void)state;
    a2a_send s = {.text = "hello", .message_id = "m-1", .context_id = "c", .tenant = "ignored"};
    char *body = a2a_build_send(A2A_D_V03, 0, "rd-7", &s);
    cJSON *j = cJSON_Parse(body);
    assert_string_equal(gs(j, "method"), "message/send");
    assert_string_equal(gs(j, "params.message.kind"), "message");
    assert_string_equal(gs(j, "params.message.role"), "user");
    assert_string_equal(gs(j, "params.message.parts.0.kind"), "text");
    assert_string_equal(gs(j, "params.message.parts.0.text"), "hello");
    assert_string_equal(gs(j, "params.message.contextId"), "c");
    assert_null(gs(j, "params.tenant"));
    /* 0.2 requires acceptedOutputModes; blocking is explicit */
    assert_non_null(gs(j, "params.configuration.acceptedOutputModes"));
    assert_string_equal(gs(j, "params.configuration.blocking"), "true");
    cJSON_Delete(j);
    free(body);
    s.return_immediately = 1;
    body = a2a_build_send(A2A_D_V03, 0, "rd-8", &s);
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "params.configuration.blocking"), "false");
    cJSON_Delete(j);
    free(body);
    body = a2a_build_send(A2A_D_V03, 1, "rd-9", &s);
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "method"), "message/stream");
    cJSON_Delete(j);
    free(body);
}

static void test_build_task_ops(void **state) {
    (void)state;
    struct {
        a2a_dialect d;
        a2a_op op;
        const char *method;
    } cases[] = {
        {A2A_D_V10, A2A_OP_GET, "GetTask"},
        {A2A_D_V10, A2A_OP_CANCEL, "CancelTask"},
        {A2A_D_V10, A2A_OP_SUBSCRIBE, "SubscribeToTask"},
        {A2A_D_V03, A2A_OP_GET, "tasks/get"},
        {A2A_D_V03, A2A_OP_CANCEL, "tasks/cancel"},
        {A2A_D_V03, A2A_OP_SUBSCRIBE, "tasks/resubscribe"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *b = a2a_build_task_op(cases[i].d, cases[i].op, "x", "task-1", "ten");
        cJSON *j = cJSON_Parse(b);
        assert_string_equal(gs(j, "method"), cases[i].method);
        assert_string_equal(gs(j, "params.id"), "task-1");
        const cJSON *hl = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "params"), "historyLength");
        if (cases[i].op == A2A_OP_GET)
            assert_int_equal((int)cJSON_GetNumberValue(hl), A2A_POLL_HISTORY);
        else
            assert_null(hl);
        if (cases[i].d == A2A_D_V10)
            assert_string_equal(gs(j, "params.tenant"), "ten");
        else
            assert_null(gs(j, "params.tenant"));
        cJSON_Delete(j);
        free(b);
    }
    assert_null(a2a_build_task_op(A2A_D_V10, A2A_OP_SEND, "x", "t", NULL));
}

static void parse_ok(const char *json, const char *id, a2a_rpc *r) {
    char err[128] = "";
    int rc = a2a_rpc_parse(json, strlen(json), id, r, err, sizeof err);
    if (rc) fail_msg("parse failed: %s: %s", err, json);
}

static void test_message_both_shapes(void **state) {
    (void)state;
    a2a_rpc r;
    parse_ok(
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"kind\":\"message\",\"messageId\":\"m\","
        "\"role\":\"agent\",\"contextId\":\"c1\",\"parts\":[{\"kind\":\"text\",\"text\":\"Hel\"},"
        "{\"kind\":\"data\",\"data\":{\"x\":1}},{\"kind\":\"text\",\"text\":\"lo\"}]}}",
        "a", &r);
    assert_int_equal(r.res.kind, A2A_R_MESSAGE);
    assert_string_equal(r.res.text, "Hel\n```json\n{\n  \"x\": 1\n}\n```\nlo"); /* a block */
    assert_string_equal(r.res.context_id, "c1");
    assert_true(r.res.agent_role);
    a2a_rpc_free(&r);
    parse_ok(
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"message\":{\"messageId\":\"m\","
        "\"role\":\"ROLE_AGENT\",\"contextId\":\"c2\",\"parts\":[{\"text\":\"hi\",\"mediaType\":"
        "\"text/plain\"},{\"url\":\"https://x/f.pdf\",\"filename\":\"f.pdf\"}]}}}",
        "a", &r);
    assert_int_equal(r.res.kind, A2A_R_MESSAGE);
    assert_string_equal(r.res.text, "hi"); /* the file is in media */
    assert_string_equal(r.res.media.files[0].url, "https://x/f.pdf");
    assert_string_equal(r.res.media.files[0].name, "f.pdf");
    assert_string_equal(r.res.context_id, "c2");
    a2a_rpc_free(&r);
    /* 0.3 file part */
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"message\",\"role\":\"agent\","
             "\"parts\":[{\"kind\":\"file\",\"file\":{\"uri\":\"https://y\",\"name\":\"n\"}}]}}",
             "1", &r);
    assert_string_equal(r.res.text, "");
    assert_string_equal(r.res.media.files[0].url, "https://y");
    a2a_rpc_free(&r);
}

static void test_task_both_shapes(void **state) {
    (void)state;
    a2a_rpc r;
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"kind\":\"task\",\"id\":\"t1\","
             "\"contextId\":\"c\",\"status\":{\"state\":\"input-required\",\"message\":{\"kind\":"
             "\"message\",\"role\":\"agent\",\"parts\":[{\"kind\":\"text\",\"text\":\"Name?\"}]}},"
             "\"history\":[{\"role\":\"user\",\"parts\":[{\"text\":\"u\"}]},{\"role\":\"agent\","
             "\"parts\":[{\"text\":\"h\"}]}]}}",
             "a", &r);
    assert_int_equal(r.res.kind, A2A_R_TASK);
    assert_string_equal(r.res.task_id, "t1");
    assert_int_equal(r.res.state, A2A_TS_INPUT_REQUIRED);
    assert_string_equal(r.res.status_text, "Name?");
    assert_string_equal(r.res.history_text, "h");
    a2a_rpc_free(&r);
    /* 1.0 SendMessage wrapper */
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"task\":{\"id\":\"t2\",\"contextId\":"
             "\"c\",\"status\":{\"state\":\"TASK_STATE_COMPLETED\"},\"artifacts\":[{\"artifactId\":"
             "\"a1\",\"parts\":[{\"text\":\"one\"}]},{\"artifactId\":\"a2\",\"parts\":[{\"text\":"
             "\"two\"}]}]}}}",
             "a", &r);
    assert_int_equal(r.res.kind, A2A_R_TASK);
    assert_int_equal(r.res.state, A2A_TS_COMPLETED);
    assert_int_equal(r.res.narts, 2);
    assert_string_equal(r.res.arts[1].text, "two");
    a2a_rpc_free(&r);
    /* 1.0 GetTask: a bare Task, no kind, no wrapper */
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"id\":\"t3\",\"status\":{\"state\":"
             "\"TASK_STATE_WORKING\"}}}",
             "a", &r);
    assert_int_equal(r.res.kind, A2A_R_TASK);
    assert_int_equal(r.res.state, A2A_TS_WORKING);
    a2a_rpc_free(&r);
}

static void test_stream_events(void **state) {
    (void)state;
    a2a_rpc r;
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"kind\":\"status-update\",\"taskId\":"
             "\"t\",\"contextId\":\"c\",\"status\":{\"state\":\"completed\"},\"final\":true}}",
             "s", &r);
    assert_int_equal(r.res.kind, A2A_R_STATUS);
    assert_true(r.res.final);
    assert_int_equal(r.res.state, A2A_TS_COMPLETED);
    a2a_rpc_free(&r);
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"statusUpdate\":{\"taskId\":\"t\","
             "\"contextId\":\"c\",\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}",
             "s", &r);
    assert_int_equal(r.res.kind, A2A_R_STATUS);
    assert_false(r.res.final);
    a2a_rpc_free(&r);
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"artifactUpdate\":{\"taskId\":\"t\","
             "\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"text\":\"x\"}]},\"append\":true,"
             "\"lastChunk\":true}}}",
             "s", &r);
    assert_int_equal(r.res.kind, A2A_R_ARTIFACT);
    assert_true(r.res.append);
    assert_true(r.res.last_chunk);
    assert_string_equal(r.res.arts[0].id, "a");
    a2a_rpc_free(&r);
    parse_ok(
        "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"kind\":\"artifact-update\",\"taskId\":"
        "\"t\",\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"y\"}]}}"
        "}",
        "s", &r);
    assert_int_equal(r.res.kind, A2A_R_ARTIFACT);
    assert_false(r.res.append); /* omitted = false */
    a2a_rpc_free(&r);
}

static void test_errors_and_protocol(void **state) {
    (void)state;
    a2a_rpc r;
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":-32001,\"message\":\"nope\","
             "\"data\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":"
             "\"TASK_NOT_FOUND\"}]}}",
             "a", &r);
    assert_true(r.is_error);
    assert_int_equal(r.code, -32001);
    assert_string_equal(r.reason, "TASK_NOT_FOUND");
    a2a_rpc_free(&r);
    /* null id on errors is accepted (parse errors) */
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}", "a",
             &r);
    assert_int_equal(r.code, -32700);
    a2a_rpc_free(&r);
    const char *bad[] = {
        "",
        "not json",
        "[1,2]",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"result\":{\"kind\":\"message\",\"parts\":[]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"kind\":\"mystery\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"foo\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":\"boom\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"kind\":",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[128] = "";
        assert_int_equal(a2a_rpc_parse(bad[i], strlen(bad[i]), "a", &r, err, sizeof err), -1);
        assert_true(err[0] != 0);
    }
    /* numeric ids compare as text */
    parse_ok("{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"role\":\"agent\",\"parts\":[]}}", "42",
             &r);
    a2a_rpc_free(&r);
}

static void test_states(void **state) {
    (void)state;
    assert_int_equal(a2a_state_parse("working"), A2A_TS_WORKING);
    assert_int_equal(a2a_state_parse("TASK_STATE_INPUT_REQUIRED"), A2A_TS_INPUT_REQUIRED);
    assert_int_equal(a2a_state_parse("input_required"), A2A_TS_INPUT_REQUIRED);
    assert_int_equal(a2a_state_parse("AUTH-REQUIRED"), A2A_TS_AUTH_REQUIRED);
    assert_int_equal(a2a_state_parse("cancelled"), A2A_TS_CANCELED);
    assert_int_equal(a2a_state_parse("TASK_STATE_UNSPECIFIED"), A2A_TS_UNKNOWN);
    assert_int_equal(a2a_state_parse("unknown"), A2A_TS_UNKNOWN);
    assert_int_equal(a2a_state_parse(NULL), A2A_TS_UNKNOWN);
    assert_true(a2a_state_terminal(A2A_TS_REJECTED));
    assert_false(a2a_state_terminal(A2A_TS_INPUT_REQUIRED));
    assert_true(a2a_state_interrupted(A2A_TS_AUTH_REQUIRED));
    assert_string_equal(a2a_state_name(A2A_TS_INPUT_REQUIRED), "input-required");
}

static void test_classification(void **state) {
    (void)state;
    assert_int_equal(a2a_classify_rpc(-32700), A2A_C_FATAL);
    assert_int_equal(a2a_classify_rpc(-32600), A2A_C_FATAL);
    assert_int_equal(a2a_classify_rpc(-32601), A2A_C_FATAL);
    assert_int_equal(a2a_classify_rpc(-32602), A2A_C_FATAL);
    assert_int_equal(a2a_classify_rpc(-32603), A2A_C_TRANSIENT);
    for (int c = -32009; c <= -32001; c++)
        assert_int_equal(a2a_classify_rpc(c), A2A_C_FATAL);
    assert_int_equal(a2a_classify_rpc(-32050), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_rpc(-32099), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_rpc(7), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_http(401), A2A_C_FATAL);
    assert_int_equal(a2a_classify_http(403), A2A_C_FATAL);
    assert_int_equal(a2a_classify_http(404), A2A_C_FATAL);
    assert_int_equal(a2a_classify_http(408), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_http(429), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_http(500), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_http(503), A2A_C_TRANSIENT);
    assert_int_equal(a2a_classify_http(0), A2A_C_TRANSIENT);
    assert_string_equal(a2a_class_name(A2A_C_PROTOCOL), "protocol");
    assert_string_equal(a2a_class_name(A2A_C_TIMEOUT), "timeout");
    assert_string_equal(a2a_rpc_code_name(-32601), "method not found");
}

static void test_urls(void **state) {
    (void)state;
    struct {
        const char *base, *ref, *want;
    } c[] = {
        {"http://h:1/.well-known/agent-card.json", "/rpc", "http://h:1/rpc"},
        {"http://h:1/a/.well-known/agent-card.json", "rpc", "http://h:1/a/.well-known/rpc"},
        {"http://h:1/x", "https://other/y", "https://other/y"},
        {"https://h/x", "//cdn/z", "https://cdn/z"},
        {"http://h:1", "rpc", "http://h:1/rpc"},
        {"http://h:1/p?q=/x", "/r", "http://h:1/r"},
        {"http://h:1/x", "", "http://h:1/x"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *u = a2a_url_resolve(c[i].base, c[i].ref);
        assert_string_equal(u, c[i].want);
        free(u);
    }
}

static int card(const char *json, a2a_card *c) {
    char err[200] = "";
    int rc = a2a_card_parse(json, strlen(json), "http://a:9/.well-known/agent-card.json", c, err,
                            sizeof err);
    if (rc) print_message("card error: %s\n", err);
    return rc;
}

static void test_card_v03(void **state) {
    (void)state;
    a2a_card c;
    assert_int_equal(
        card("{\"protocolVersion\":\"0.3.0\",\"name\":\"n\",\"url\":\"http://a:9/rpc\","
             "\"preferredTransport\":\"JSONRPC\",\"capabilities\":{\"streaming\":true},"
             "\"defaultInputModes\":[\"text\"],\"securitySchemes\":{\"b\":{\"type\":\"http\","
             "\"scheme\":\"bearer\"}},\"security\":[{\"b\":[]}],\"skills\":[]}",
             &c),
        0);
    assert_int_equal(c.preferred, A2A_D_V03);
    assert_string_equal(c.url_v03, "http://a:9/rpc");
    assert_null(c.url_v10);
    assert_true(c.streaming);
    assert_true(c.text_input);
    assert_true(c.auth_required);
    assert_true(c.auth_bearer);
    assert_string_equal(c.name, "n");
    a2a_card_free(&c);
    /* 0.2: no preferredTransport; JSON-RPC in additionalInterfaces when the
     * main URL is gRPC; no security */
    assert_int_equal(card("{\"url\":\"http://a:9/rpc\"}", &c), 0);
    assert_string_equal(c.url_v03, "http://a:9/rpc");
    assert_false(c.streaming);
    assert_false(c.auth_required);
    a2a_card_free(&c);
    assert_int_equal(card("{\"url\":\"grpc://a:9\",\"preferredTransport\":\"GRPC\","
                          "\"additionalInterfaces\":[{\"url\":\"http://a:9/j\",\"transport\":"
                          "\"JSONRPC\"}],\"defaultInputModes\":[\"image/png\"]}",
                          &c),
                     0);
    assert_string_equal(c.url_v03, "http://a:9/j");
    assert_false(c.text_input);
    a2a_card_free(&c);
}

/* HTTP+JSON: a 1.0 REST interface is read (a 0.3 one is not: other
 * shapes); requests map to routes; errors to their JSON-RPC codes. */
static void test_rest_binding(void **state) {
    (void)state;
    a2a_card c;
    assert_int_equal(
        card("{\"name\":\"n\",\"supportedInterfaces\":[{\"url\":\"http://a:9/r03\","
             "\"protocolBinding\":\"HTTP+JSON\",\"protocolVersion\":\"0.3\"},{\"url\":\"/r\","
             "\"protocolBinding\":\"HTTP+JSON\",\"protocolVersion\":\"1.0\",\"tenant\":\"t 1\"}]}",
             &c),
        0);
    assert_int_equal(c.preferred, A2A_D_V10);
    assert_null(c.url_v10);
    assert_null(c.url_v03);
    assert_string_equal(c.url_rest, "http://a:9/r");
    assert_string_equal(c.tenant_rest, "t 1");
    a2a_card_free(&c);
    /* only 0.3 REST (a 0.3 card): spoken in 0.3 */
    char err[160];
    const char *j = "{\"url\":\"http://a/api\",\"preferredTransport\":\"HTTP+JSON\"}";
    assert_int_equal(a2a_card_parse(j, strlen(j), "http://a/c", &c, err, sizeof err), 0);
    assert_int_equal(c.preferred, A2A_D_V03);
    assert_string_equal(c.url_rest03, "http://a/api");
    assert_null(c.url_rest);
    a2a_card_free(&c);
    /* only gRPC: refused */
    j = "{\"url\":\"http://a/g\",\"preferredTransport\":\"GRPC\"}";
    assert_int_equal(a2a_card_parse(j, strlen(j), "http://a/c", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "no JSON-RPC interface"));

    a2a_send s = {.text = "hi",
                  .message_id = "m1",
                  .context_id = "c1",
                  .tenant = "t 1",
                  .return_immediately = 1};
    char *rpc = a2a_build_send(A2A_D_V10, 0, "1", &s);
    char *path, *body;
    assert_int_equal(a2a_rest_request(A2A_OP_SEND, rpc, &path, &body), 0);
    assert_string_equal(path, "/t%201/message:send");
    assert_non_null(strstr(body, "\"messageId\":\"m1\""));
    assert_null(strstr(body, "jsonrpc"));
    free(path), free(body), free(rpc);
    rpc = a2a_build_task_op(A2A_D_V10, A2A_OP_GET, "2", "task/1", NULL);
    assert_int_equal(a2a_rest_request(A2A_OP_GET, rpc, &path, &body), 0);
    assert_string_equal(path, "/tasks/task%2F1?historyLength=4");
    assert_null(body);
    free(path), free(rpc);
    rpc = a2a_build_task_op(A2A_D_V10, A2A_OP_CANCEL, "3", "t9", NULL);
    assert_int_equal(a2a_rest_request(A2A_OP_CANCEL, rpc, &path, &body), 0);
    assert_string_equal(path, "/tasks/t9:cancel");
    assert_string_equal(body, "{}");
    free(path), free(body), free(rpc);
    assert_int_equal(a2a_rest_request(A2A_OP_GET, "not json", &path, &body), -1);
    /* hostile lengths: refused, never a cut or overflowing path */
    char big[700];
    memset(big, '/', sizeof big - 1);
    big[sizeof big - 1] = 0;
    rpc = a2a_build_task_op(A2A_D_V10, A2A_OP_CANCEL, "4", big, NULL);
    assert_int_equal(a2a_rest_request(A2A_OP_CANCEL, rpc, &path, &body), -1);
    free(rpc);
    big[300] = 0;
    rpc = a2a_build_task_op(A2A_D_V10, A2A_OP_SUBSCRIBE, "5", big, big);
    assert_int_equal(a2a_rest_request(A2A_OP_SUBSCRIBE, rpc, &path, &body), -1);
    free(rpc);
    assert_null(a2a_rest_list_path("c", big, 20));
    big[256] = 0;
    rpc = a2a_build_task_op(A2A_D_V10, A2A_OP_SUBSCRIBE, "6", big, big);
    assert_int_equal(a2a_rest_request(A2A_OP_SUBSCRIBE, rpc, &path, &body), 0);
    assert_true(strlen(path) == 1 + 256 * 3 + 7 + 256 * 3 + 10);
    free(path), free(body), free(rpc);
    path = a2a_rest_list_path("c 1", NULL, 20);
    assert_string_equal(path, "/tasks?historyLength=20&contextId=c%201");
    free(path);

    /* a bare result reads like a JSON-RPC one */
    const char *task = "{\"task\":{\"id\":\"t1\",\"contextId\":\"c1\",\"status\":{\"state\":"
                       "\"TASK_STATE_WORKING\"}}}";
    char *w = a2a_rest_wrap(task, strlen(task));
    a2a_rpc r;
    assert_int_equal(a2a_rpc_parse(w, strlen(w), NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.res.kind, A2A_R_TASK);
    assert_int_equal(r.res.state, A2A_TS_WORKING);
    a2a_rpc_free(&r);
    free(w);

    int code;
    char *msg;
    const char *e = "{\"error\":{\"code\":404,\"status\":\"NOT_FOUND\",\"message\":\"gone\","
                    "\"details\":[{\"@type\":\"x\",\"reason\":\"TASK_NOT_FOUND\"}]}}";
    assert_int_equal(a2a_rest_error(e, strlen(e), &code, &msg), 0);
    assert_int_equal(code, A2A_ERR_TASK_NOT_FOUND);
    assert_string_equal(msg, "gone");
    free(msg);
    e = "{\"error\":{\"code\":400,\"details\":[{\"reason\":\"VERSION_NOT_SUPPORTED\"}]}}";
    assert_int_equal(a2a_rest_error(e, strlen(e), &code, &msg), 0);
    assert_int_equal(code, A2A_ERR_VERSION_NOT_SUPPORTED);
    assert_null(msg);
    /* no reason, a gateway page, nothing: not an A2A error */
    e = "{\"error\":{\"code\":404,\"message\":\"no route\"}}";
    assert_int_equal(a2a_rest_error(e, strlen(e), &code, &msg), -1);
    assert_int_equal(a2a_rest_error("<html>", 6, &code, &msg), -1);
    assert_int_equal(a2a_rest_error(NULL, 0, &code, &msg), -1);
}

static void test_card_v10_and_hybrid(void **state) {
    (void)state;
    a2a_card c;
    assert_int_equal(
        card(
            "{\"name\":\"n\",\"supportedInterfaces\":[{\"url\":\"http://a:9/"
            "g\",\"protocolBinding\":"
            "\"GRPC\",\"protocolVersion\":\"1.0\"},{\"url\":\"http://a:9/j\",\"protocolBinding\":"
            "\"JSONRPC\",\"protocolVersion\":\"1.0\",\"tenant\":\"t1\"}],\"capabilities\":{},"
            "\"securitySchemes\":{\"k\":{\"apiKeySecurityScheme\":{\"location\":\"header\","
            "\"name\":\"X-Key\"}}},\"securityRequirements\":[{\"schemes\":{\"k\":{\"list\":[]}}}]}",
            &c),
        0);
    assert_int_equal(c.preferred, A2A_D_V10);
    assert_string_equal(c.url_v10, "http://a:9/j");
    assert_string_equal(c.tenant, "t1");
    assert_true(c.other_bindings);
    assert_string_equal(c.apikey_name, "X-Key");
    assert_string_equal(c.apikey_in, "header");
    assert_true(c.auth_required);
    a2a_card_free(&c);
    /* hybrid from a dual server: relative URLs, both versions */
    assert_int_equal(
        card("{\"protocolVersion\":\"0.3.0\",\"url\":\"http://a:9/old\",\"preferredTransport\":"
             "\"JSONRPC\",\"supportedInterfaces\":[{\"url\":\"/rpc\",\"protocolBinding\":"
             "\"JSONRPC\",\"protocolVersion\":\"1.0\"},{\"url\":\"/rpc03\",\"protocolBinding\":"
             "\"JSONRPC\",\"protocolVersion\":\"0.3\"}]}",
             &c),
        0);
    assert_int_equal(c.preferred, A2A_D_V10);
    assert_string_equal(c.url_v10, "http://a:9/rpc");
    assert_string_equal(c.url_v03, "http://a:9/rpc03");
    a2a_card_free(&c);
    /* JS 1.3.0 leaks {scheme:{$case,value}}; an empty alternative makes auth optional */
    assert_int_equal(
        card("{\"supportedInterfaces\":[{\"url\":\"/j\",\"protocolBinding\":\"JSONRPC\"}],"
             "\"securitySchemes\":{\"b\":{\"scheme\":{\"$case\":\"httpAuthSecurityScheme\","
             "\"value\":{\"scheme\":\"Bearer\"}}}},\"securityRequirements\":[{}]}",
             &c),
        0);
    assert_true(c.auth_bearer);
    assert_false(c.auth_required);
    assert_string_equal(c.url_v10, "http://a:9/j");
    a2a_card_free(&c);
}

static void test_card_errors(void **state) {
    (void)state;
    a2a_card c;
    char err[200];
    const char *gr = "{\"supportedInterfaces\":[{\"url\":\"x\",\"protocolBinding\":\"GRPC\"}]}";
    assert_int_equal(a2a_card_parse(gr, strlen(gr), "http://a/c", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "no JSON-RPC"));
    assert_int_equal(a2a_card_parse("<html>", 6, "http://a/c", &c, err, sizeof err), -1);
    assert_string_equal(err, "not JSON");
    assert_int_equal(a2a_card_parse("{}", 2, "http://a/c", &c, err, sizeof err), -1);
    assert_int_equal(a2a_card_parse("[]", 2, "http://a/c", &c, err, sizeof err), -1);
}

static a2a_result res_of(const char *json) {
    a2a_rpc r;
    parse_ok(json, NULL, &r);
    a2a_result out = r.res;
    memset(&r.res, 0, sizeof r.res);
    a2a_rpc_free(&r);
    return out;
}

static void apply(a2a_track *t, const char *json) {
    a2a_result r = res_of(json);
    a2a_track_apply(t, &r);
    a2a_result_free(&r);
}

static void test_track_stream_assembly(void **state) {
    (void)state;
    a2a_track t = {0};
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"task\",\"id\":\"t\",\"contextId\":\"c\","
              "\"status\":{\"state\":\"submitted\"}}}");
    assert_false(a2a_track_done(&t));
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"status-update\",\"taskId\":\"t\",\"status\":"
              "{\"state\":\"working\",\"message\":{\"role\":\"agent\",\"parts\":[{\"kind\":"
              "\"text\",\"text\":\"thinking\"}]}},\"final\":false}}");
    assert_string_equal(t.status_text, "thinking");
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"Hel\"}]}}}");
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"b\",\"parts\":[{\"kind\":\"text\",\"text\":\"other\"}]}}}");
    apply(&t,
          "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"append\":true,"
          "\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"lo\"}]}}}");
    char *txt = a2a_track_artifact_text(&t);
    assert_string_equal(txt, "Hello\nother");
    free(txt);
    /* a replacing (non-append) update */
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"b\",\"parts\":[{\"kind\":\"text\",\"text\":\"B\"}]}}}");
    txt = a2a_track_artifact_text(&t);
    assert_string_equal(txt, "Hello\nB");
    free(txt);
    assert_false(a2a_track_done(&t));
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"status-update\",\"taskId\":\"t\",\"status\":"
              "{\"state\":\"completed\"},\"final\":true}}");
    assert_true(a2a_track_done(&t));
    assert_null(t.status_text);
    assert_string_equal(t.context_id, "c");
    a2a_track_free(&t);

    /* 1.0: no final flag; done on an interrupted state */
    apply(&t, "{\"id\":1,\"result\":{\"task\":{\"id\":\"t\",\"status\":{\"state\":"
              "\"TASK_STATE_WORKING\"}}}}");
    apply(&t, "{\"id\":1,\"result\":{\"statusUpdate\":{\"taskId\":\"t\",\"status\":{\"state\":"
              "\"TASK_STATE_INPUT_REQUIRED\"}}}}");
    assert_true(a2a_track_done(&t));
    a2a_track_free(&t);

    /* a plain message ends it */
    apply(&t, "{\"id\":1,\"result\":{\"message\":{\"role\":\"ROLE_AGENT\",\"contextId\":\"k\","
              "\"parts\":[{\"text\":\"m\"}]}}}");
    assert_true(t.got_message);
    assert_true(a2a_track_done(&t));
    assert_string_equal(t.message_text, "m");
    assert_string_equal(t.context_id, "k");
    a2a_track_free(&t);

    /* a Task snapshot replaces artifacts */
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"old\"}]}}}");
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"task\",\"id\":\"t\",\"status\":{\"state\":"
              "\"completed\"},\"artifacts\":[{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\","
              "\"text\":\"new\"}]}]}}");
    txt = a2a_track_artifact_text(&t);
    assert_string_equal(txt, "new");
    free(txt);
    a2a_track_free(&t);
}

/* The reply cap: appends beyond max_text are dropped and the track marked
 * cut; replacing an artifact gives its bytes back; 200,000 appends stay
 * fast (linear). */
static void test_track_cap(void **state) {
    (void)state;
    a2a_track t = {.max_text = 10};
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"12345678\"}]}}}");
    assert_false(t.cut);
    apply(
        &t,
        "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"append\":true,"
        "\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"9abc\"}]}}}");
    assert_true(t.cut);
    char *txt = a2a_track_artifact_text(&t);
    assert_string_equal(txt, "123456789a");
    free(txt);
    /* a replacing update frees its old bytes under the cap */
    apply(&t, "{\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"taskId\":\"t\",\"artifact\":"
              "{\"artifactId\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"xy\"}]}}}");
    txt = a2a_track_artifact_text(&t);
    assert_string_equal(txt, "xy");
    free(txt);
    a2a_track_free(&t);
    assert_int_equal(t.max_text, 10); /* kept for the next exchange */
    /* a message is capped too */
    apply(&t, "{\"id\":1,\"result\":{\"message\":{\"role\":\"ROLE_AGENT\","
              "\"parts\":[{\"text\":\"0123456789abcdef\"}]}}}");
    assert_string_equal(t.message_text, "0123456789");
    assert_true(t.cut);
    a2a_track_free(&t);

    /* many small appends: linear, so this takes milliseconds */
    a2a_track big = {.max_text = 1u << 20};
    a2a_result r = {.kind = A2A_R_ARTIFACT, .append = 1, .narts = 1};
    a2a_artifact art = {.id = "a", .text = "0123456789"};
    r.arts = &art;
    for (int i = 0; i < 200000; i++)
        a2a_track_apply(&big, &r);
    assert_int_equal(big.arts[0].len, 1u << 20);
    assert_int_equal(strlen(big.arts[0].text), 1u << 20);
    assert_true(big.cut);
    /* artifacts are bounded in number too */
    a2a_track many = {0};
    char id[16];
    for (int i = 0; i < A2A_MAX_ARTIFACTS + 10; i++) {
        snprintf(id, sizeof id, "x%d", i);
        art.id = id;
        r.append = 0;
        a2a_track_apply(&many, &r);
    }
    assert_int_equal(many.narts, A2A_MAX_ARTIFACTS);
    assert_true(many.cut);
    a2a_track_free(&many);
    a2a_track_free(&big);
}

/* JSON-RPC error codes outside int, fractional or huge, are internal
 * errors, never undefined conversions. */
static void test_hostile_error_codes(void **state) {
    (void)state;
    const char *codes[] = {"1e300", "-1e300", "2147483648", "-2147483649", "-32601.5", "\"x\""};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"error\":{\"code\":%s,\"message\":\"m\"}}",
                 codes[i]);
        a2a_rpc r;
        assert_int_equal(a2a_rpc_parse(body, strlen(body), "1", &r, NULL, 0), 0);
        assert_true(r.is_error);
        assert_int_equal(r.code, A2A_ERR_INTERNAL);
        a2a_rpc_free(&r);
    }
    const char *ok = "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"error\":{\"code\":-2147483648}}";
    a2a_rpc r;
    assert_int_equal(a2a_rpc_parse(ok, strlen(ok), "1", &r, NULL, 0), 0);
    assert_int_equal(r.code, -2147483647 - 1);
    a2a_rpc_free(&r);
}

/* ListTasks: the task whose history holds our messageId. */
static void test_list_tasks(void **state) {
    (void)state;
    char *b = a2a_build_list_tasks("rd-1", "ctx-9", "ten", 20);
    cJSON *j = cJSON_Parse(b);
    assert_string_equal(gs(j, "method"), "ListTasks");
    assert_string_equal(gs(j, "params.contextId"), "ctx-9");
    assert_string_equal(gs(j, "params.tenant"), "ten");
    cJSON_Delete(j);
    free(b);
    const char *resp =
        "{\"jsonrpc\":\"2.0\",\"id\":\"rd-1\",\"result\":{\"tasks\":["
        "{\"id\":\"t1\",\"history\":[{\"messageId\":\"m-other\",\"role\":\"ROLE_USER\"}]},"
        "{\"id\":\"t2\",\"history\":[{\"messageId\":\"m-mine\",\"role\":\"ROLE_USER\"}]}]}}";
    char *task = NULL;
    int code = 0;
    assert_int_equal(a2a_list_find(resp, strlen(resp), "rd-1", "m-mine", &task, &code, NULL, 0), 0);
    assert_string_equal(task, "t2");
    free(task);
    assert_int_equal(a2a_list_find(resp, strlen(resp), "rd-1", "m-none", &task, &code, NULL, 0), 1);
    assert_null(task);
    const char *err = "{\"jsonrpc\":\"2.0\",\"id\":\"rd-1\",\"error\":{\"code\":-32601}}";
    assert_int_equal(a2a_list_find(err, strlen(err), "rd-1", "m", &task, &code, NULL, 0), -1);
    assert_int_equal(code, -32601);
    assert_int_equal(a2a_list_find("nope", 4, "rd-1", "m", &task, &code, NULL, 0), -1);
}

/* Data parts as compact JSON, inline files as a placeholder line. */
static void test_data_and_raw_parts(void **state) {
    (void)state;
    a2a_rpc r;
    /* 0.3: data as a fenced, indented JSON block; file bytes decoded */
    parse_ok("{\"id\":1,\"result\":{\"kind\":\"message\",\"role\":\"agent\",\"parts\":["
             "{\"kind\":\"text\",\"text\":\"Result:\"},"
             "{\"kind\":\"data\",\"data\":{\"temp\":21.5,\"unit\":\"C\"}},"
             "{\"kind\":\"file\",\"file\":{\"bytes\":\"aGVsbG8h\",\"name\":\"a.txt\","
             "\"mimeType\":\"text/plain\"}},"
             "{\"kind\":\"file\",\"file\":{\"uri\":\"https://f.example/r.pdf\",\"name\":\"r.pdf\","
             "\"mimeType\":\"application/pdf\"}},"
             "{\"kind\":\"text\",\"text\":\"end\"}]}}",
             NULL, &r);
    assert_string_equal(r.res.text,
                        "Result:\n```json\n{\n  \"temp\": 21.5,\n  \"unit\": \"C\"\n}\n```\nend");
    assert_int_equal(r.res.media.nfiles, 2);
    assert_int_equal(r.res.media.files[0].len, 6);
    assert_memory_equal(r.res.media.files[0].data, "hello!", 6);
    assert_string_equal(r.res.media.files[0].name, "a.txt");
    assert_string_equal(r.res.media.files[0].mime, "text/plain");
    assert_null(r.res.media.files[0].url);
    assert_null(r.res.media.files[1].data);
    assert_string_equal(r.res.media.files[1].url, "https://f.example/r.pdf");
    assert_string_equal(r.res.media.files[1].mime, "application/pdf");
    assert_null(r.res.media.choices);
    a2a_rpc_free(&r);
    /* 1.0: raw (padding missing, URL-safe alphabet), url, data of any type */
    parse_ok(
        "{\"id\":1,\"result\":{\"message\":{\"role\":\"ROLE_AGENT\",\"parts\":["
        "{\"data\":[1,2]},{\"raw\":\"_-8\",\"mediaType\":\"image/png\",\"filename\":\"p.png\"},"
        "{\"url\":\"https://f.example/x\",\"filename\":\"x\"},"
        "{\"raw\":\"not base64!\",\"filename\":\"bad\"}]}}}",
        NULL, &r);
    assert_string_equal(r.res.text, "```json\n[1, 2]\n```");
    assert_int_equal(r.res.media.nfiles, 3);
    assert_int_equal(r.res.media.files[0].len, 2);
    assert_memory_equal(r.res.media.files[0].data, "\xff\xef", 2);
    assert_string_equal(r.res.media.files[0].name, "p.png");
    assert_string_equal(r.res.media.files[1].url, "https://f.example/x");
    assert_true(r.res.media.files[2].dropped);
    assert_null(r.res.media.files[2].data);
    a2a_rpc_free(&r);
    /* large data is cut at a line end before A2A_DATA_SHOWN, fence closed */
    char big[8000];
    int n = snprintf(big, sizeof big, "{\"id\":1,\"result\":{\"message\":{\"parts\":[{\"data\":[");
    for (int i = 0; i < 600; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "%s{\"k\":%d}", i ? "," : "", i);
    snprintf(big + n, sizeof big - (size_t)n, "]}]}}}");
    parse_ok(big, NULL, &r);
    size_t tl = strlen(r.res.text);
    assert_true(tl <= A2A_DATA_SHOWN + 20);
    assert_true(tl > A2A_DATA_SHOWN / 2);
    assert_non_null(strstr(r.res.text, "\n...\n```")); /* cut at a line end */
    assert_true(!strncmp(r.res.text, "```json\n[{\n", 10));
    a2a_rpc_free(&r);
    /* one long line (numbers): cut inside it */
    n = snprintf(big, sizeof big, "{\"id\":1,\"result\":{\"message\":{\"parts\":[{\"data\":[");
    for (int i = 0; i < 600; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "%s%d", i ? "," : "", i);
    snprintf(big + n, sizeof big - (size_t)n, "]}]}}}");
    parse_ok(big, NULL, &r);
    assert_int_equal(strlen(r.res.text), 8 + A2A_DATA_SHOWN + 8);
    assert_non_null(strstr(r.res.text, "\n...\n```"));
    a2a_rpc_free(&r);
    /* choices: a data part {"choices": [...]} is not shown as JSON */
    parse_ok("{\"id\":1,\"result\":{\"kind\":\"task\",\"id\":\"t\",\"status\":{\"state\":"
             "\"input-required\",\"message\":{\"kind\":\"message\",\"role\":\"agent\",\"parts\":["
             "{\"kind\":\"text\",\"text\":\"Proceed?\"},"
             "{\"kind\":\"data\",\"data\":{\"choices\":[\"yes\",\"\",7,\"no\"]}}]}}}}",
             NULL, &r);
    assert_string_equal(r.res.status_text, "Proceed?");
    assert_non_null(r.res.status_media.choices);
    assert_string_equal(r.res.status_media.choices[0], "yes");
    assert_string_equal(r.res.status_media.choices[1], "no");
    assert_null(r.res.status_media.choices[2]);
    a2a_rpc_free(&r);
    /* too many files: the rest ignored */
    char many[4000];
    n = snprintf(many, sizeof many, "{\"id\":1,\"result\":{\"message\":{\"parts\":[");
    for (int i = 0; i < A2A_MAX_FILES + 5; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "%s{\"raw\":\"AA==\"}", i ? "," : "");
    snprintf(many + n, sizeof many - (size_t)n, "]}}}");
    parse_ok(many, NULL, &r);
    assert_int_equal(r.res.media.nfiles, A2A_MAX_FILES);
    assert_int_equal(r.res.media.files[0].len, 1);
    a2a_rpc_free(&r);
}

/* Files in a track: artifact appends add files, replacements drop them,
 * inline bytes count against max_text. */
static void test_track_files(void **state) {
    (void)state;
    a2a_track t = {.max_text = 10};
    a2a_rpc r;
    parse_ok("{\"id\":1,\"result\":{\"artifactUpdate\":{\"taskId\":\"t\",\"artifact\":{"
             "\"artifactId\":\"a\",\"parts\":[{\"raw\":\"aGVsbG8h\",\"filename\":\"one\"}]}}}}",
             NULL, &r);
    a2a_track_apply(&t, &r.res);
    a2a_rpc_free(&r);
    assert_int_equal(t.narts, 1);
    assert_int_equal(t.arts[0].media.nfiles, 1);
    assert_int_equal(t.file_bytes, 6);
    /* appended: 6 more bytes do not fit the cap of 10: kept as a name */
    parse_ok("{\"id\":1,\"result\":{\"artifactUpdate\":{\"taskId\":\"t\",\"append\":true,"
             "\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"raw\":\"aGVsbG8h\","
             "\"filename\":\"two\"}]}}}}",
             NULL, &r);
    a2a_track_apply(&t, &r.res);
    a2a_rpc_free(&r);
    assert_int_equal(t.arts[0].media.nfiles, 2);
    assert_true(t.arts[0].media.files[1].dropped);
    assert_null(t.arts[0].media.files[1].data);
    assert_int_equal(t.arts[0].media.files[1].len, 6);
    assert_int_equal(t.file_bytes, 6);
    /* replaced: the bytes are given back */
    parse_ok("{\"id\":1,\"result\":{\"artifactUpdate\":{\"taskId\":\"t\",\"artifact\":{"
             "\"artifactId\":\"a\",\"parts\":[{\"text\":\"x\"}]}}}}",
             NULL, &r);
    a2a_track_apply(&t, &r.res);
    a2a_rpc_free(&r);
    assert_int_equal(t.arts[0].media.nfiles, 0);
    assert_int_equal(t.file_bytes, 0);
    /* a message's files and a status's choices */
    parse_ok("{\"id\":1,\"result\":{\"statusUpdate\":{\"taskId\":\"t\",\"status\":{\"state\":"
             "\"TASK_STATE_INPUT_REQUIRED\",\"message\":{\"parts\":[{\"data\":{\"choices\":"
             "[\"a\",\"b\"]}}]}}}}}",
             NULL, &r);
    a2a_track_apply(&t, &r.res);
    a2a_rpc_free(&r);
    assert_string_equal(t.status_media.choices[1], "b");
    assert_null(t.status_text);
    a2a_track_free(&t);
    assert_int_equal(t.max_text, 10);
}

/* Files sent: 1.0 raw/url with mediaType and filename, 0.3 kind file with
 * bytes/uri, mimeType and name; no text part for a file without caption;
 * the REST body carries the same parts. */
static void test_build_send_files(void **state) {
    (void)state;
    a2a_out_file f[2] = {{.mime = "image/jpeg", .name = "p.jpg", .data = "\xff\xd8\xff", .len = 3},
                         {.mime = "text/plain", .url = "https://f.example/a.txt"}};
    a2a_send s = {.text = "look", .message_id = "m", .files = f, .nfiles = 2};
    char *body = a2a_build_send(A2A_D_V10, 0, "1", &s);
    cJSON *j = cJSON_Parse(body);
    assert_string_equal(gs(j, "params.message.parts.0.text"), "look");
    assert_string_equal(gs(j, "params.message.parts.1.raw"), "/9j/");
    assert_string_equal(gs(j, "params.message.parts.1.mediaType"), "image/jpeg");
    assert_string_equal(gs(j, "params.message.parts.1.filename"), "p.jpg");
    assert_string_equal(gs(j, "params.message.parts.2.url"), "https://f.example/a.txt");
    assert_null(gs(j, "params.message.parts.2.raw"));
    cJSON_Delete(j);
    char *path = NULL, *rest = NULL;
    assert_int_equal(a2a_rest_request(A2A_OP_SEND, body, &path, &rest), 0);
    j = cJSON_Parse(rest);
    assert_string_equal(gs(j, "message.parts.1.raw"), "/9j/");
    assert_string_equal(gs(j, "message.parts.1.filename"), "p.jpg");
    cJSON_Delete(j);
    free(path);
    free(rest);
    free(body);

    s.text = "";
    body = a2a_build_send(A2A_D_V03, 0, "1", &s);
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "params.message.parts.0.kind"), "file");
    assert_string_equal(gs(j, "params.message.parts.0.file.bytes"), "/9j/");
    assert_string_equal(gs(j, "params.message.parts.0.file.mimeType"), "image/jpeg");
    assert_string_equal(gs(j, "params.message.parts.0.file.name"), "p.jpg");
    assert_string_equal(gs(j, "params.message.parts.1.file.uri"), "https://f.example/a.txt");
    assert_null(gs(j, "params.message.parts.2.kind"));
    cJSON_Delete(j);
    free(body);
}

/* The 0.3 HTTP+JSON binding: proto-named requests under /v1, answers
 * normalized to the shapes the parser reads, {code, message} errors. */
static void test_rest03_binding(void **state) {
    (void)state;
    a2a_out_file f = {.mime = "image/png", .name = "p.png", .data = "\x89PNG", .len = 4};
    a2a_send s = {.text = "hi",
                  .message_id = "m1",
                  .context_id = "c1",
                  .task_id = "t1",
                  .files = &f,
                  .nfiles = 1,
                  .return_immediately = 1};
    char *rpc = a2a_build_send(A2A_D_V03, 0, "1", &s);
    char *path, *body;
    assert_int_equal(a2a_rest03_request(A2A_OP_SEND, rpc, &path, &body), 0);
    assert_string_equal(path, "/v1/message:send");
    cJSON *j = cJSON_Parse(body);
    assert_string_equal(gs(j, "request.messageId"), "m1");
    assert_string_equal(gs(j, "request.contextId"), "c1");
    assert_string_equal(gs(j, "request.taskId"), "t1");
    assert_string_equal(gs(j, "request.role"), "ROLE_USER");
    assert_string_equal(gs(j, "request.content.0.text"), "hi");
    assert_string_equal(gs(j, "request.content.1.file.fileWithBytes"), "iVBORw==");
    assert_string_equal(gs(j, "request.content.1.file.mimeType"), "image/png");
    assert_string_equal(gs(j, "configuration.blocking"), "false");
    cJSON_Delete(j);
    free(path);
    free(body);
    free(rpc);
    rpc = a2a_build_task_op(A2A_D_V03, A2A_OP_GET, "2", "task/1", NULL);
    assert_int_equal(a2a_rest03_request(A2A_OP_GET, rpc, &path, &body), 0);
    assert_string_equal(path, "/v1/tasks/task%2F1?historyLength=4");
    assert_null(body);
    free(path);
    free(rpc);
    rpc = a2a_build_task_op(A2A_D_V03, A2A_OP_CANCEL, "3", "t", NULL);
    assert_int_equal(a2a_rest03_request(A2A_OP_CANCEL, rpc, &path, &body), 0);
    assert_string_equal(path, "/v1/tasks/t:cancel");
    free(path);
    free(body);
    free(rpc);

    /* answers: a message, a task with a status update, files and data */
    const char *msg = "{\"msg\":{\"messageId\":\"a\",\"role\":\"ROLE_AGENT\",\"contextId\":\"c\","
                      "\"content\":[{\"text\":\"Hi\"},{\"file\":{\"fileWithBytes\":\"aGk=\","
                      "\"mimeType\":\"text/plain\"}},{\"data\":{\"data\":{\"k\":1}}}]}}";
    char *n = a2a_rest03_normalize(msg, strlen(msg));
    char *w = a2a_rest_wrap(n, strlen(n));
    a2a_rpc r;
    parse_ok(w, NULL, &r);
    assert_int_equal(r.res.kind, A2A_R_MESSAGE);
    assert_string_equal(r.res.text, "Hi\n```json\n{\n  \"k\": 1\n}\n```");
    assert_int_equal(r.res.media.nfiles, 1);
    assert_memory_equal(r.res.media.files[0].data, "hi", 2);
    assert_string_equal(r.res.media.files[0].mime, "text/plain");
    a2a_rpc_free(&r);
    free(n);
    free(w);
    const char *task = "{\"id\":\"t\",\"contextId\":\"c\",\"status\":{\"state\":"
                       "\"TASK_STATE_INPUT_REQUIRED\",\"update\":{\"role\":\"ROLE_AGENT\","
                       "\"content\":[{\"text\":\"Name?\"}]}},\"artifacts\":[{\"artifactId\":"
                       "\"x\",\"parts\":[{\"text\":\"part\"}]}]}";
    n = a2a_rest03_normalize(task, strlen(task));
    w = a2a_rest_wrap(n, strlen(n));
    parse_ok(w, NULL, &r);
    assert_int_equal(r.res.kind, A2A_R_TASK);
    assert_int_equal(r.res.state, A2A_TS_INPUT_REQUIRED);
    assert_string_equal(r.res.status_text, "Name?");
    assert_string_equal(r.res.arts[0].text, "part");
    a2a_rpc_free(&r);
    free(n);
    free(w);
    const char *ev = "{\"statusUpdate\":{\"taskId\":\"t\",\"final\":true,\"status\":{\"state\":"
                     "\"TASK_STATE_CANCELLED\",\"update\":{\"content\":[{\"text\":\"x\"}]}}}}";
    n = a2a_rest03_normalize(ev, strlen(ev));
    w = a2a_rest_wrap(n, strlen(n));
    parse_ok(w, NULL, &r);
    assert_int_equal(r.res.kind, A2A_R_STATUS);
    assert_int_equal(r.res.state, A2A_TS_CANCELED);
    assert_true(r.res.final);
    assert_string_equal(r.res.status_text, "x");
    a2a_rpc_free(&r);
    free(n);
    free(w);
    assert_null(a2a_rest03_normalize("nope", 4));
    /* errors: the JSON-RPC error object itself */
    int code;
    char *m;
    const char *e = "{\"code\":-32001,\"message\":\"Task not found\"}";
    assert_int_equal(a2a_rest_error(e, strlen(e), &code, &m), 0);
    assert_int_equal(code, A2A_ERR_TASK_NOT_FOUND);
    assert_string_equal(m, "Task not found");
    free(m);
    e = "{\"code\":200,\"message\":\"no\"}";
    assert_int_equal(a2a_rest_error(e, strlen(e), &code, &m), -1);
    free(m);
}

/* Push configs in both dialects and both bindings; pushed bodies. */
static void test_push_config(void **state) {
    (void)state;
    char *b = a2a_build_push_set(A2A_D_V10, "7", "t/1", "ten", "https://r.example/a2a/x/push",
                                 "tok", "sec");
    cJSON *j = cJSON_Parse(b);
    assert_string_equal(gs(j, "method"), "CreateTaskPushNotificationConfig");
    assert_string_equal(gs(j, "params.taskId"), "t/1");
    assert_string_equal(gs(j, "params.tenant"), "ten");
    assert_string_equal(gs(j, "params.url"), "https://r.example/a2a/x/push");
    assert_string_equal(gs(j, "params.token"), "tok");
    assert_string_equal(gs(j, "params.authentication.scheme"), "Bearer");
    assert_string_equal(gs(j, "params.authentication.credentials"), "sec");
    cJSON_Delete(j);
    char *path, *body;
    assert_int_equal(a2a_rest_push_request(0, b, &path, &body), 0);
    assert_string_equal(path, "/ten/tasks/t%2F1/pushNotificationConfigs");
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "url"), "https://r.example/a2a/x/push");
    assert_string_equal(gs(j, "authentication.credentials"), "sec");
    assert_null(gs(j, "tenant"));
    cJSON_Delete(j);
    free(path);
    free(body);
    free(b);

    b = a2a_build_push_set(A2A_D_V03, "8", "t1", "ignored", "https://r/p", "tok", "sec");
    j = cJSON_Parse(b);
    assert_string_equal(gs(j, "method"), "tasks/pushNotificationConfig/set");
    assert_null(gs(j, "params.tenant"));
    assert_string_equal(gs(j, "params.pushNotificationConfig.url"), "https://r/p");
    assert_string_equal(gs(j, "params.pushNotificationConfig.token"), "tok");
    assert_string_equal(gs(j, "params.pushNotificationConfig.authentication.schemes.0"), "Bearer");
    cJSON_Delete(j);
    assert_int_equal(a2a_rest_push_request(1, b, &path, &body), 0);
    assert_string_equal(path, "/v1/tasks/t1/pushNotificationConfigs");
    j = cJSON_Parse(body);
    assert_string_equal(gs(j, "name"), "tasks/t1/pushNotificationConfigs/");
    assert_string_equal(gs(j, "pushNotificationConfig.authentication.credentials"), "sec");
    cJSON_Delete(j);
    free(path);
    free(body);
    free(b);
    assert_int_equal(a2a_rest_push_request(0, "{\"params\":{}}", &path, &body), -1);

    /* the task a push names, every shape */
    const char *const bodies[] = {
        "{\"task\":{\"id\":\"A\",\"status\":{}}}",
        "{\"statusUpdate\":{\"taskId\":\"A\"}}",
        "{\"artifactUpdate\":{\"taskId\":\"A\"}}",
        "{\"kind\":\"task\",\"id\":\"A\",\"status\":{}}",
        "{\"kind\":\"status-update\",\"taskId\":\"A\"}",
        "{\"id\":\"A\",\"status\":{\"state\":\"completed\"}}",
        "{\"jsonrpc\":\"2.0\",\"result\":{\"task\":{\"id\":\"A\"}}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *id = a2a_push_task_id(bodies[i], strlen(bodies[i]));
        assert_non_null(id);
        assert_string_equal(id, "A");
        free(id);
    }
    assert_null(a2a_push_task_id("{\"id\":\"A\"}", 10));
    assert_null(a2a_push_task_id("[1]", 3));
    assert_null(a2a_push_task_id(NULL, 0));
}

/* The agent's order decides the dialect; required extensions are read. */
static void test_card_order_and_extensions(void **state) {
    (void)state;
    const char *card =
        "{\"name\":\"x\",\"supportedInterfaces\":["
        "{\"url\":\"http://a/grpc\",\"protocolBinding\":\"GRPC\",\"protocolVersion\":\"1.0\"},"
        "{\"url\":\"http://a/v03\",\"protocolBinding\":\"JSONRPC\",\"protocolVersion\":\"0.3\"},"
        "{\"url\":\"http://a/v10\",\"protocolBinding\":\"JSONRPC\",\"protocolVersion\":\"1.0\"}],"
        "\"capabilities\":{\"extensions\":[{\"uri\":\"https://ext/optional\"},"
        "{\"uri\":\"https://ext/needed\",\"required\":true}]}}";
    a2a_card c;
    char err[128];
    assert_int_equal(a2a_card_parse(card, strlen(card), "http://a/card", &c, err, sizeof err), 0);
    assert_int_equal(c.preferred, A2A_D_V03);
    assert_string_equal(c.url_v03, "http://a/v03");
    assert_string_equal(c.url_v10, "http://a/v10");
    assert_string_equal(c.required_ext, "https://ext/needed");
    a2a_card_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_send_v10),
        cmocka_unit_test(test_build_send_v03),
        cmocka_unit_test(test_build_task_ops),
        cmocka_unit_test(test_message_both_shapes),
        cmocka_unit_test(test_task_both_shapes),
        cmocka_unit_test(test_stream_events),
        cmocka_unit_test(test_errors_and_protocol),
        cmocka_unit_test(test_states),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_card_v03),
        cmocka_unit_test(test_card_v10_and_hybrid),
        cmocka_unit_test(test_rest_binding),
        cmocka_unit_test(test_card_errors),
        cmocka_unit_test(test_track_stream_assembly),
        cmocka_unit_test(test_track_cap),
        cmocka_unit_test(test_hostile_error_codes),
        cmocka_unit_test(test_list_tasks),
        cmocka_unit_test(test_data_and_raw_parts),
        cmocka_unit_test(test_track_files),
        cmocka_unit_test(test_build_send_files),
        cmocka_unit_test(test_rest03_binding),
        cmocka_unit_test(test_push_config),
        cmocka_unit_test(test_card_order_and_extensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
