/* A2A JSON in both dialects: cards, request bodies, responses, classes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "a2a.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int card(const char *json, a2a_card *c) {
    char why[128];
    return a2a_card_parse(json, strlen(json), c, why, sizeof why);
}

static void test_card_v10(void **state) {
    (void)state;
    a2a_card c;
    assert_int_equal(card("{\"supportedInterfaces\":[{\"url\":\"http://g\",\"protocolBinding\":"
                          "\"GRPC\",\"protocolVersion\":\"1.0\"},{\"url\":\"http://j\","
                          "\"protocolBinding\":\"JSONRPC\",\"protocolVersion\":\"1.0\","
                          "\"tenant\":\"t1\"}],\"capabilities\":{\"streaming\":true},"
                          "\"securitySchemes\":{\"x\":{\"scheme\":{\"$case\":1}}}}",
                          &c),
                     0);
    assert_string_equal(c.rpc_url, "http://j");
    assert_string_equal(c.tenant, "t1");
    assert_int_equal(c.dialect, A2A_V10);
    assert_true(c.streaming);
    a2a_card_free(&c);
    /* Hybrid: supportedInterfaces wins over the 0.3 url. */
    assert_int_equal(
        card("{\"url\":\"http://old\",\"supportedInterfaces\":[{\"url\":\"http://new\","
             "\"protocolBinding\":\"JSONRPC\",\"protocolVersion\":\"1.0\"}]}",
             &c),
        0);
    assert_string_equal(c.rpc_url, "http://new");
    assert_int_equal(c.dialect, A2A_V10);
    assert_false(c.streaming);
    a2a_card_free(&c);
    /* Only a 0.3 JSON-RPC entry listed. */
    assert_int_equal(card("{\"supportedInterfaces\":[{\"url\":\"http://o\",\"protocolBinding\":"
                          "\"JSONRPC\",\"protocolVersion\":\"0.3\"}]}",
                          &c),
                     0);
    assert_int_equal(c.dialect, A2A_V03);
    a2a_card_free(&c);
}

static void test_card_v03(void **state) {
    (void)state;
    a2a_card c;
    assert_int_equal(card("{\"protocolVersion\":\"0.3.0\",\"url\":\"http://a/rpc\"}", &c), 0);
    assert_string_equal(c.rpc_url, "http://a/rpc");
    assert_int_equal(c.dialect, A2A_V03);
    assert_null(c.tenant);
    a2a_card_free(&c);
    assert_int_equal(card("{\"url\":\"http://grpc\",\"preferredTransport\":\"GRPC\","
                          "\"additionalInterfaces\":[{\"url\":\"http://rest\",\"transport\":"
                          "\"HTTP+JSON\"},{\"url\":\"http://rpc\",\"transport\":\"JSONRPC\"}]}",
                          &c),
                     0);
    assert_string_equal(c.rpc_url, "http://rpc");
    a2a_card_free(&c);
}

static void test_card_invalid(void **state) {
    (void)state;
    a2a_card c;
    const char *bad[] = {"",
                         "[]",
                         "{\"name\":",
                         "{\"name\":\"x\"}",
                         "{\"url\":\"http://g\",\"preferredTransport\":\"GRPC\"}",
                         "{\"supportedInterfaces\":[{\"protocolBinding\":\"JSONRPC\"}]}",
                         "{\"supportedInterfaces\":\"nope\",\"url\":7}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[64] = "";
        assert_int_equal(a2a_card_parse(bad[i], strlen(bad[i]), &c, why, sizeof why), -1);
        assert_true(why[0]);
        assert_null(c.rpc_url);
    }
}

static cJSON *parse(char *s) {
    cJSON *j = cJSON_Parse(s);
    free(s);
    assert_non_null(j);
    return j;
}

static const char *str(const cJSON *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(cur))
            cur = cJSON_GetArrayItem(cur, atoi(k));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, k);
    }
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static void test_build_send(void **state) {
    (void)state;
    a2a_send s = {.dialect = A2A_V03,
                  .id = 5,
                  .text = "hi \"you\"",
                  .message_id = "m-1",
                  .context_id = "c-1",
                  .task_id = NULL};
    cJSON *j = parse(a2a_build_send(&s));
    assert_string_equal(str(j, "jsonrpc"), "2.0");
    assert_string_equal(str(j, "method"), "message/send");
    assert_int_equal(cJSON_GetObjectItem(j, "id")->valueint, 5);
    assert_string_equal(str(j, "params.message.kind"), "message");
    assert_string_equal(str(j, "params.message.role"), "user");
    assert_string_equal(str(j, "params.message.parts.0.kind"), "text");
    assert_string_equal(str(j, "params.message.parts.0.text"), "hi \"you\"");
    assert_string_equal(str(j, "params.message.messageId"), "m-1");
    assert_string_equal(str(j, "params.message.contextId"), "c-1");
    assert_null(str(j, "params.message.taskId"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "params"), "configuration"), "blocking")));
    cJSON_Delete(j);

    s.dialect = A2A_V10;
    s.task_id = "t-9";
    s.context_id = "";
    s.tenant = "ten";
    s.stream = 1;
    j = parse(a2a_build_send(&s));
    assert_string_equal(str(j, "method"), "SendStreamingMessage");
    assert_null(str(j, "params.message.kind"));
    assert_string_equal(str(j, "params.message.role"), "ROLE_USER");
    assert_null(str(j, "params.message.parts.0.kind"));
    assert_string_equal(str(j, "params.message.parts.0.text"), "hi \"you\"");
    assert_string_equal(str(j, "params.message.taskId"), "t-9");
    assert_null(str(j, "params.message.contextId"));
    assert_string_equal(str(j, "params.tenant"), "ten");
    cJSON_Delete(j);
    s.stream = 0;
    j = parse(a2a_build_send(&s));
    assert_string_equal(str(j, "method"), "SendMessage");
    assert_true(cJSON_IsFalse(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "params"), "configuration"),
                            "returnImmediately")));
    cJSON_Delete(j);
}

static void test_build_task_ops(void **state) {
    (void)state;
    cJSON *j = parse(a2a_build_task_op(A2A_V03, 0, 1, "t", NULL));
    assert_string_equal(str(j, "method"), "tasks/get");
    assert_string_equal(str(j, "params.id"), "t");
    cJSON_Delete(j);
    j = parse(a2a_build_task_op(A2A_V10, 1, 2, "t", "x"));
    assert_string_equal(str(j, "method"), "CancelTask");
    assert_string_equal(str(j, "params.tenant"), "x");
    cJSON_Delete(j);
    j = parse(a2a_build_task_op(A2A_V10, 0, 2, "t", NULL));
    assert_string_equal(str(j, "method"), "GetTask");
    cJSON_Delete(j);
}

static void resp(const char *json, a2a_result *r) {
    a2a_parse_response(json, strlen(json), r);
}

static void test_parse_message(void **state) {
    (void)state;
    a2a_result r;
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"message\",\"role\":\"agent\","
         "\"parts\":[{\"kind\":\"text\",\"text\":\"Hel\"},{\"kind\":\"data\",\"data\":{}},"
         "{\"kind\":\"text\",\"text\":\"lo\"}],\"contextId\":\"c\"}}",
         &r);
    assert_int_equal(r.kind, A2A_R_MESSAGE);
    assert_string_equal(r.text, "Hello");
    assert_string_equal(r.context_id, "c");
    a2a_result_free(&r);
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"message\":{\"role\":\"ROLE_AGENT\","
         "\"parts\":[{\"text\":\"one\"},{\"url\":\"http://f\"}],\"contextId\":\"c2\"}}}",
         &r);
    assert_int_equal(r.kind, A2A_R_MESSAGE);
    assert_string_equal(r.text, "one");
    assert_string_equal(r.context_id, "c2");
    a2a_result_free(&r);
}

static void test_parse_task(void **state) {
    (void)state;
    a2a_result r;
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"id\":\"t\",\"contextId\":\"c\","
         "\"status\":{\"state\":\"TASK_STATE_COMPLETED\"},\"artifacts\":[{\"artifactId\":\"a\","
         "\"parts\":[{\"text\":\"A\"},{\"text\":\"B\"}]},{\"parts\":[{\"data\":1}]},"
         "{\"parts\":[{\"text\":\"C\"}]}]}}}",
         &r);
    assert_int_equal(r.kind, A2A_R_TASK);
    assert_int_equal(r.state, A2A_TS_COMPLETED);
    assert_string_equal(r.text, "AB\nC");
    assert_string_equal(r.task_id, "t");
    a2a_result_free(&r);
    /* Bare 0.3 task, input-required with a question. */
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"task\",\"id\":\"t\","
         "\"contextId\":\"c\",\"status\":{\"state\":\"input-required\",\"message\":{\"kind\":"
         "\"message\",\"role\":\"agent\",\"parts\":[{\"kind\":\"text\",\"text\":\"Name?\"}]}}}}",
         &r);
    assert_int_equal(r.state, A2A_TS_INPUT_REQUIRED);
    assert_string_equal(r.status_text, "Name?");
    assert_true(a2a_state_interrupted(r.state));
    a2a_result_free(&r);
    /* Bare 1.0 task (GetTask): no wrapper, no kind; history fallback. */
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"id\":\"t\",\"status\":{\"state\":"
         "\"TASK_STATE_COMPLETED\"},\"history\":[{\"role\":\"ROLE_USER\",\"parts\":[{\"text\":"
         "\"q\"}]},{\"role\":\"ROLE_AGENT\",\"parts\":[{\"text\":\"ans\"}]}]}}",
         &r);
    assert_int_equal(r.kind, A2A_R_TASK);
    assert_null(r.text);
    assert_string_equal(r.status_text, "ans");
    a2a_result_free(&r);
}

static void test_parse_updates(void **state) {
    (void)state;
    a2a_result r;
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"status-update\",\"taskId\":\"t\","
         "\"contextId\":\"c\",\"status\":{\"state\":\"completed\"},\"final\":true}}",
         &r);
    assert_int_equal(r.kind, A2A_R_STATUS);
    assert_true(r.final);
    assert_int_equal(r.state, A2A_TS_COMPLETED);
    a2a_result_free(&r);
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"statusUpdate\":{\"taskId\":\"t\","
         "\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}",
         &r);
    assert_int_equal(r.kind, A2A_R_STATUS);
    assert_false(r.final);
    assert_int_equal(r.state, A2A_TS_WORKING);
    a2a_result_free(&r);
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"artifactUpdate\":{\"taskId\":\"t\","
         "\"artifact\":{\"artifactId\":\"a\",\"parts\":[{\"text\":\"x\"}]},\"append\":true,"
         "\"lastChunk\":true}}}",
         &r);
    assert_int_equal(r.kind, A2A_R_ARTIFACT);
    assert_string_equal(r.artifact_id, "a");
    assert_string_equal(r.text, "x");
    assert_true(r.append && r.last_chunk);
    a2a_result_free(&r);
    resp("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"artifact-update\",\"artifact\":"
         "{\"artifactId\":\"b\",\"parts\":[{\"kind\":\"text\",\"text\":\"y\"}]}}}",
         &r);
    assert_int_equal(r.kind, A2A_R_ARTIFACT);
    assert_false(r.append);
    a2a_result_free(&r);
}

static void test_parse_errors(void **state) {
    (void)state;
    a2a_result r;
    resp("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,\"message\":\"no\\n"
         "task\",\"data\":[{\"reason\":\"TASK_NOT_FOUND\"}]}}",
         &r);
    assert_int_equal(r.kind, A2A_R_ERROR);
    assert_int_equal(r.code, -32001);
    assert_string_equal(r.errmsg, "no?task");
    a2a_result_free(&r);
    const char *bad[] = {"",
                         "<html>",
                         "{}",
                         "{\"result\":5}",
                         "{\"error\":{\"message\":\"x\"}}",
                         "{\"result\":{\"kind\":\"weird\"}}",
                         "null",
                         "[1,2]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp(bad[i], &r);
        assert_int_equal(r.kind, A2A_R_INVALID);
        a2a_result_free(&r);
    }
}

static void test_states(void **state) {
    (void)state;
    assert_int_equal(a2a_state_parse("working"), A2A_TS_WORKING);
    assert_int_equal(a2a_state_parse("TASK_STATE_SUBMITTED"), A2A_TS_SUBMITTED);
    assert_int_equal(a2a_state_parse("TASK_STATE_AUTH_REQUIRED"), A2A_TS_AUTH_REQUIRED);
    assert_int_equal(a2a_state_parse("rejected"), A2A_TS_REJECTED);
    assert_int_equal(a2a_state_parse("TASK_STATE_UNSPECIFIED"), A2A_TS_UNKNOWN);
    assert_int_equal(a2a_state_parse(NULL), A2A_TS_UNKNOWN);
    assert_true(a2a_state_active(A2A_TS_UNKNOWN));
    assert_true(a2a_state_terminal(A2A_TS_CANCELED));
    assert_false(a2a_state_terminal(A2A_TS_INPUT_REQUIRED));
}

static void test_classes(void **state) {
    (void)state;
    assert_null(a2a_class_http(200));
    assert_string_equal(a2a_class_http(500), "transient");
    assert_string_equal(a2a_class_http(503), "transient");
    assert_string_equal(a2a_class_http(429), "transient");
    assert_string_equal(a2a_class_http(401), "fatal");
    assert_string_equal(a2a_class_http(403), "fatal");
    assert_string_equal(a2a_class_http(404), "fatal");
    assert_string_equal(a2a_class_rpc(-32603), "transient");
    assert_string_equal(a2a_class_rpc(-32050), "transient");
    assert_string_equal(a2a_class_rpc(-32601), "fatal");
    assert_string_equal(a2a_class_rpc(-32602), "fatal");
    assert_string_equal(a2a_class_rpc(-32004), "fatal");
    assert_string_equal(a2a_class_rpc(-32006), "protocol");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card_v10),       cmocka_unit_test(test_card_v03),
        cmocka_unit_test(test_card_invalid),   cmocka_unit_test(test_build_send),
        cmocka_unit_test(test_build_task_ops), cmocka_unit_test(test_parse_message),
        cmocka_unit_test(test_parse_task),     cmocka_unit_test(test_parse_updates),
        cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_states),
        cmocka_unit_test(test_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
