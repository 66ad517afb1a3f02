/* The inbound_a2a plugin's task flow on the kit over HTTP: several
 * questions in a chat, expiry, cancel, notifications, limits, a restart on
 * the same store, refused deliveries and SSE streams. */
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

static int64_t sent_id_of(size_t i) {
    rdpt_delivery *d;
    size_t n = rdpt_deliveries(&d);
    int64_t id = i < n ? d[i].sent_id : -1;
    rdpt_deliveries_free(d, n);
    return id;
}

/* The i-th answered() call named task id for the planner, from inside
 * intercept(); n calls in all. */
static void expect_answered(size_t n, size_t i, const char *id) {
    rdpt_answered *a;
    size_t got = rdpt_answers(&a);
    assert_int_equal(got, n);
    assert_string_equal(a[i].correlation_id, id);
    assert_string_equal(a[i].caller, "planner");
    assert_true(a[i].inside);
    rdpt_answers_free(a, got);
}

static int answer(int64_t chat, int64_t reply_to, const char *text) {
    return rdpt_intercept(
        ib_self,
        &(rdpt_request){.chat_id = chat, .transport = "main", .text = text, .reply_to = reply_to});
}

static char *state_of(const char *tok, const char *id) {
    cJSON *t = ib_get_task(tok, 0, id);
    char *s = strdup(jstr(t, "status.state"));
    cJSON_Delete(t);
    return s;
}

static void expect_state(const char *id, const char *want) {
    char *s = state_of(TOK_P, id);
    assert_string_equal(s, want);
    free(s);
}

/* Two questions in one chat answered out of order by their reply_to; a
 * plain message while both wait is not an answer; once one is left, the
 * next message answers it. */
static void test_two_pending(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *a = ib_send(TOK_P, 0, "a", "alice", "first?", "", 1);
    cJSON *b = ib_send(TOK_P, 0, "b", "alice", "second?", "", 1);
    int64_t sa = sent_id_of(0), sb = sent_id_of(1);
    assert_true(sa > 0 && sb > 0 && sa != sb);
    /* deliveries name the caller they are sent for (events show it) */
    rdpt_delivery *d;
    size_t nd = rdpt_deliveries(&d);
    assert_int_equal(nd, 2);
    assert_string_equal(d[0].caller, "planner");
    assert_string_equal(d[1].correlation_id, jstr(b, "id"));
    rdpt_deliveries_free(d, nd);
    assert_int_equal(answer(12345, 0, "which one?"), 0); /* two wait: routes on */
    assert_int_equal(answer(12345, 777, "quote of another message"), 0);
    rdpt_answered *none;
    assert_int_equal(rdpt_answers(&none), 0); /* not taken: nothing named */
    rdpt_answers_free(none, 0);
    assert_int_equal(answer(12345, sb, "B"), 1);
    expect_answered(1, 0, jstr(b, "id")); /* the host's event names task and caller */
    expect_state(jstr(a, "id"), "input-required");
    expect_state(jstr(b, "id"), "completed");
    /* a button of another message (a persona's reply) is that message's */
    assert_int_equal(rdpt_intercept(ib_self, &(rdpt_request){.chat_id = 12345,
                                                             .transport = "main",
                                                             .text = "Yes",
                                                             .flags = RD_MSG_CHOICE,
                                                             .reply_to = 778}),
                     0);
    assert_int_equal(answer(12345, 0, "A"), 1); /* exactly one left */
    expect_answered(2, 1, jstr(a, "id"));
    cJSON *ga = ib_get_task(TOK_P, 0, jstr(a, "id"));
    assert_string_equal(jstr(ga, "artifacts.0.parts.0.text"), "A");
    assert_int_equal(answer(12345, 0, "hello persona"), 0); /* none left */
    cJSON_Delete(ga);
    cJSON_Delete(a);
    cJSON_Delete(b);
    ib_down();
}

/* A blocking send returns at send_wait when the delivery takes longer:
 * the task as it is; it moves on once delivered. */
static void test_slow_delivery(void **state) {
    (void)state;
    ib_up((const char *const[]){"send_wait", "300ms", NULL});
    rdpt_deliver_result(RD_OK, 3001, 1200);
    long long t0 = rt_now_ms();
    cJSON *t = ib_send(TOK_P, 1, "slow", "alice", "x", "", 1);
    assert_true(rt_now_ms() - t0 < 1100);
    assert_string_equal(jstr(t, "status.state"), "TASK_STATE_SUBMITTED");
    assert_int_equal(rdpt_wait_delivered(1, 5000), 1);
    rt_sleep_ms(100);
    expect_state(jstr(t, "id"), "input-required");
    cJSON_Delete(t);
    ib_down();
}

/* A request of a routerd before 1.3 has no reply_to: only the
 * one-pending rule can match it. */
static void test_short_request(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *a = ib_send(TOK_P, 0, "a", "alice", "first?", "", 1);
    cJSON *b = ib_send(TOK_P, 0, "b", "alice", "second?", "", 1);
    rd_request rq = {.size = (uint32_t)offsetof(rd_request, reply_to),
                     .chat_id = 12345,
                     .text = "x",
                     .text_len = 1,
                     .correlation_id = "c",
                     .transport = "main",
                     .reply_to = sent_id_of(1)}; /* beyond size: not read */
    assert_int_equal(rdpt_intercept_rq(ib_self, &rq), 0);
    rd_request full = rq;
    full.size = sizeof full;
    assert_int_equal(rdpt_intercept_rq(ib_self, &full), 1);
    expect_state(jstr(b, "id"), "completed");
    assert_int_equal(rdpt_intercept_rq(ib_self, &rq), 1); /* one left */
    expect_state(jstr(a, "id"), "completed");
    cJSON_Delete(a);
    cJSON_Delete(b);
    ib_down();
}

/* A question unanswered at answer_timeout fails with the reason. */
static void test_expiry(void **state) {
    (void)state;
    ib_up((const char *const[]){"answer_timeout", "1s", NULL});
    cJSON *t = ib_send(TOK_P, 1, "e", "alice", "quick?", "", 1);
    const char *id = jstr(t, "id");
    long long end = rt_now_ms() + 5000;
    char *s = NULL;
    while (rt_now_ms() < end) {
        free(s);
        s = state_of(TOK_P, id);
        if (!strcmp(s, "failed")) break;
        rt_sleep_ms(50);
    }
    assert_string_equal(s, "failed");
    free(s);
    cJSON *g = ib_get_task(TOK_P, 1, id);
    assert_string_equal(jstr(g, "status.state"), "TASK_STATE_FAILED");
    assert_string_equal(jstr(g, "status.message.parts.0.text"), "no answer within 1s");
    cJSON_Delete(g);
    const char *pv[] = {"planner", NULL};
    assert_int_equal((int)rdpt_metric("routerd_inbound_expired_total", pv), 1);
    assert_int_equal(answer(12345, 0, "late"), 0);
    cJSON_Delete(t);
    ib_down();
}

/* CancelTask: the caller's own open task only; a late button press for
 * the canceled question is taken and dropped. */
static void test_cancel(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *t = ib_send(TOK_P, 0, "c", "alice", "cancel me?", "\"choices\":[\"ok\"]", 1);
    const char *id = jstr(t, "id");
    cJSON *j = ib_call(TOK_A, "tasks/cancel", "{\"id\":\"%s\"}", id);
    assert_int_equal(jpath(j, "error.code")->valueint, -32001);
    cJSON_Delete(j);
    j = ib_call(TOK_P, "CancelTask", "{\"id\":\"%s\"}", id);
    assert_string_equal(jstr(j, "result.status.state"), "TASK_STATE_CANCELED");
    cJSON_Delete(j);
    j = ib_call(TOK_P, "tasks/cancel", "{\"id\":\"%s\"}", id);
    assert_int_equal(jpath(j, "error.code")->valueint, -32002);
    cJSON_Delete(j);
    int64_t sent = sent_id_of(0);
    assert_int_equal(rdpt_intercept(ib_self, &(rdpt_request){.chat_id = 12345,
                                                             .transport = "main",
                                                             .text = "ok",
                                                             .flags = RD_MSG_CHOICE,
                                                             .reply_to = sent}),
                     1);
    expect_answered(1, 0, id); /* a dropped late press still names its task */
    expect_state(id, "canceled");
    /* a plain message is not taken */
    assert_int_equal(answer(12345, 0, "hi"), 0);
    cJSON_Delete(t);
    ib_down();
}

/* expect_answer false: "Message from", no force-reply, completed once
 * delivered, no artifact. */
static void test_notification(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *t = ib_send(TOK_P, 0, "n", "oncall", "FYI: deployed", "\"expect_answer\":false", 1);
    assert_string_equal(jstr(t, "status.state"), "completed");
    assert_null(jpath(t, "artifacts"));
    rdpt_delivery *d;
    assert_int_equal(rdpt_deliveries(&d), 1);
    assert_string_equal(d[0].text, "Message from planner:\n\nFYI: deployed");
    assert_false(d[0].flags & RD_OUT_QUESTION);
    assert_int_equal(d[0].chat_id, -100987);
    rdpt_deliveries_free(d, 1);
    assert_int_equal(
        rdpt_intercept(ib_self,
                       &(rdpt_request){.chat_id = -100987, .transport = "main", .text = "thanks"}),
        0);
    cJSON_Delete(t);
    ib_down();
}

/* New tasks past rate_limit_per_minute: 429 with Retry-After; a retry
 * of a known messageId is not a new task. */
static void test_rate_limit(void **state) {
    (void)state;
    ib_up((const char *const[]){"rate_limit_per_minute", "2", NULL});
    cJSON *a = ib_send(TOK_P, 0, "r1", "alice", "1", "", 0);
    cJSON *b = ib_send(TOK_P, 0, "r2", "alice", "2", "", 0);
    const char *body = "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"message/send\",\"params\":{"
                       "\"message\":{\"messageId\":\"r3\",\"parts\":[{\"kind\":\"text\",\"text\":"
                       "\"3\"}],\"metadata\":{\"skill\":\"alice\"}}}}";
    ib_http r = ib_post(TOK_P, body, NULL);
    assert_int_equal(r.status, 429);
    assert_non_null(strcasestr(r.headers, "Retry-After: "));
    assert_non_null(strstr(r.body, "rate limit"));
    ib_http_free(&r);
    cJSON *again = ib_send(TOK_P, 0, "r1", "alice", "1", "", 0);
    assert_string_equal(jstr(again, "id"), jstr(a, "id"));
    /* another caller has its own bucket */
    cJSON *c = ib_send(TOK_A, 0, "r3", "alice", "3", "", 0);
    const char *lv[] = {"planner", "rate_limited", NULL};
    assert_int_equal((int)rdpt_metric("routerd_inbound_requests_total", lv), 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(again);
    ib_down();
}

/* Bodies over max_body_bytes: 413, announced or not. Open tasks past
 * max_pending_per_chat: 503. */
static void test_limits(void **state) {
    (void)state;
    ib_up((const char *const[]){"max_body_bytes", "1024", "max_pending_per_chat", "1", NULL});
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char body[3200];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tasks/get\",\"params\":{\"id\":\"%s\"}}",
             big);
    ib_http r = ib_post(TOK_P, body, NULL);
    assert_int_equal(r.status, 413);
    ib_http_free(&r);
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    r = ib_post(TOK_P, body, chunked);
    assert_int_equal(r.status, 413);
    ib_http_free(&r);
    cJSON *a = ib_send(TOK_P, 0, "l1", "alice", "1", "", 0);
    const char *b2 = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"message/send\",\"params\":{"
                     "\"message\":{\"messageId\":\"l2\",\"parts\":[{\"kind\":\"text\",\"text\":"
                     "\"2\"}],\"metadata\":{\"skill\":\"alice\"}}}}";
    r = ib_post(TOK_P, b2, NULL);
    assert_int_equal(r.status, 503);
    ib_http_free(&r);
    /* another chat still has room */
    cJSON *c = ib_send(TOK_P, 0, "l3", "oncall", "3", "", 0);
    cJSON_Delete(a);
    cJSON_Delete(c);
    ib_down();
}

/* A transport that refuses the message fails the task; one that cannot
 * take it now keeps it submitted and the question is delivered later. */
static void test_refused_and_retried(void **state) {
    (void)state;
    ib_up(NULL);
    rdpt_deliver_result(RD_E_FATAL, 0, 0);
    cJSON *t = ib_send(TOK_P, 0, "f", "alice", "x", "", 1);
    assert_string_equal(jstr(t, "status.state"), "failed");
    assert_non_null(strstr(jstr(t, "status.message.parts.0.text"), "could not be delivered"));
    cJSON_Delete(t);
    rdpt_deliver_result(RD_E_UNAVAILABLE, 0, 0);
    t = ib_send(TOK_P, 0, "u", "alice", "y", "", 0);
    assert_string_equal(jstr(t, "status.state"), "submitted");
    size_t n = rdpt_delivered();
    rdpt_wait_delivered(n + 1, 3000);
    rdpt_deliver_result(RD_OK, 5000, 0);
    long long end = rt_now_ms() + 5000;
    char *s = NULL;
    while (rt_now_ms() < end) {
        free(s);
        s = state_of(TOK_P, jstr(t, "id"));
        if (!strcmp(s, "input-required")) break;
        rt_sleep_ms(20);
    }
    assert_string_equal(s, "input-required");
    free(s);
    cJSON_Delete(t);
    ib_down();
}

/* A restart on the same store keeps the waiting question (answered after
 * it by reply_to) and delivers the one stored but never sent. */
static void test_restart(void **state) {
    (void)state;
    ib_up(NULL);
    cJSON *a = ib_send(TOK_P, 0, "p1", "alice", "before?", "", 1);
    int64_t sa = sent_id_of(0);
    rdpt_deliver_result(RD_E_UNAVAILABLE, 2001, 0);
    cJSON *b = ib_send(TOK_P, 0, "p2", "alice", "unsent?", "", 0);
    rdpt_shutdown(ib_self);
    rdpt_new_run(); /* a new process: the store stays; deliveries succeed again */
    ib_restart();
    assert_int_equal(rdpt_wait_delivered(1, 5000), 1);
    rdpt_delivery *d;
    rdpt_deliveries(&d);
    assert_string_equal(d[0].text, "Question from planner:\n\nunsent?");
    assert_string_equal(d[0].correlation_id, jstr(b, "id"));
    rdpt_deliveries_free(d, 1);
    long long end = rt_now_ms() + 3000;
    char *s = NULL;
    while (rt_now_ms() < end) {
        free(s);
        s = state_of(TOK_P, jstr(b, "id"));
        if (!strcmp(s, "input-required")) break;
        rt_sleep_ms(20);
    }
    free(s);
    assert_int_equal(answer(12345, sa, "after"), 1);
    cJSON *g = ib_get_task(TOK_P, 0, jstr(a, "id"));
    assert_string_equal(jstr(g, "artifacts.0.parts.0.text"), "after");
    cJSON_Delete(g);
    /* the retried messageId still finds its task after the restart */
    cJSON *again = ib_send(TOK_P, 0, "p1", "alice", "before?", "", 1);
    assert_string_equal(jstr(again, "id"), jstr(a, "id"));
    assert_int_equal(rdpt_delivered(), 1);
    cJSON_Delete(again);
    cJSON_Delete(a);
    cJSON_Delete(b);
    ib_down();
}

/* message/stream and SendStreamingMessage: the Task, input-required, the
 * answer as artifact-update, the final status; re-subscribe starts with
 * the current Task. */
static void stream(int v10) {
    ib_up(NULL);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"%s\",\"params\":{\"message\":{"
             "\"messageId\":\"st\",\"role\":\"%s\",\"parts\":[{%s\"text\":\"Stream?\"}],"
             "\"metadata\":{\"skill\":\"alice\"}}}}",
             v10 ? "SendStreamingMessage" : "message/stream", v10 ? "ROLE_USER" : "user",
             v10 ? "" : "\"kind\":\"text\",");
    ib_sse *s = ib_sse_open(TOK_P, body);
    const char *ir = v10 ? "TASK_STATE_INPUT_REQUIRED" : "\"input-required\"";
    assert_true(ib_sse_wait(s, ir, 5000));
    assert_int_equal(rdpt_delivered(), 1);
    rdpt_delivery *d;
    rdpt_deliveries(&d);
    char id[64];
    snprintf(id, sizeof id, "%s", d[0].correlation_id);
    int64_t sent = d[0].sent_id;
    rdpt_deliveries_free(d, 1);

    /* a second stream re-attached to the same task */
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":\"s2\",\"method\":\"%s\",\"params\":{\"id\":\"%s\"}}",
             v10 ? "SubscribeToTask" : "tasks/resubscribe", id);
    ib_sse *r = ib_sse_open(TOK_P, body);
    assert_true(ib_sse_wait(r, ir, 5000));

    assert_int_equal(answer(12345, sent, "streamed answer"), 1);
    assert_true(ib_sse_wait_done(s, 5000));
    assert_true(ib_sse_wait_done(r, 5000));
    char *text = ib_sse_text(s);
    const char *order[] = {
        v10 ? "{\"task\":" : "\"kind\":\"task\"",
        v10 ? "\"statusUpdate\"" : "\"kind\":\"status-update\"",
        ir,
        v10 ? "\"artifactUpdate\"" : "\"kind\":\"artifact-update\"",
        "streamed answer",
        v10 ? "TASK_STATE_COMPLETED" : "\"state\":\"completed\"",
    };
    const char *at = text;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(at, order[i]);
        if (!p)
            fail_msg("'%s' missing after position %zu in:\n%s", order[i], (size_t)(at - text),
                     text);
        at = p;
    }
    if (!v10) assert_non_null(strstr(text, "\"final\":true"));
    assert_non_null(strstr(text, "\"id\":\"s1\""));
    assert_int_equal(strncmp(text, "data: ", 6), 0);
    free(text);
    text = ib_sse_text(r);
    assert_non_null(strstr(text, "\"id\":\"s2\""));
    assert_non_null(strstr(text, "streamed answer"));
    free(text);
    ib_sse_close(s);
    ib_sse_close(r);

    /* another caller cannot attach */
    cJSON *j = ib_call(TOK_A, v10 ? "SubscribeToTask" : "tasks/resubscribe", "{\"id\":\"%s\"}", id);
    assert_int_equal(jpath(j, "error.code")->valueint, -32001);
    cJSON_Delete(j);
    ib_down();
}

static void test_stream_v03(void **state) {
    (void)state;
    stream(0);
}

static void test_stream_v10(void **state) {
    (void)state;
    stream(1);
}

/* A stream open while the plugin stops ends; stop does not hang. */
static void test_stop_with_stream(void **state) {
    (void)state;
    ib_up(NULL);
    const char *body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"message/stream\",\"params\":{"
                       "\"message\":{\"messageId\":\"x\",\"parts\":[{\"kind\":\"text\",\"text\":"
                       "\"wait\"}],\"metadata\":{\"skill\":\"alice\"}}}}";
    ib_sse *s = ib_sse_open(TOK_P, body);
    assert_true(ib_sse_wait(s, "input-required", 5000));
    long long t0 = rt_now_ms();
    ib_down();
    assert_true(rt_now_ms() - t0 < 5000);
    assert_true(ib_sse_wait_done(s, 5000));
    ib_sse_close(s);
}

/* The same messageId sent at once on four connections: one task, one
 * question. */
typedef struct racer {
    pthread_t th;
    char id[64];
} racer;

static void *race(void *arg) {
    racer *r = arg;
    cJSON *t = ib_send(TOK_P, 1, "race", "alice", "once?", "", 0);
    snprintf(r->id, sizeof r->id, "%s", jstr(t, "id"));
    cJSON_Delete(t);
    return NULL;
}

static void test_concurrent_dedupe(void **state) {
    (void)state;
    ib_up(NULL);
    racer r[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&r[i].th, NULL, race, &r[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(r[i].th, NULL);
    for (int i = 1; i < 4; i++)
        assert_string_equal(r[i].id, r[0].id);
    assert_int_equal(rdpt_kv_count("t/"), 1);
    rt_sleep_ms(300);
    assert_int_equal(rdpt_delivered(), 1);
    ib_down();
}

/* Streams past max_streams: 503; historyLength 0: no history. */
static void test_stream_limit_history(void **state) {
    (void)state;
    ib_up((const char *const[]){"max_streams", "0", NULL});
    cJSON *t = ib_send(TOK_P, 1, "h", "alice", "x", "", 1);
    char body[256];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"SubscribeToTask\",\"params\":{\"id\":"
             "\"%s\"}}",
             jstr(t, "id"));
    ib_http r = ib_post(TOK_P, body, NULL);
    assert_int_equal(r.status, 503);
    ib_http_free(&r);
    cJSON *g = ib_call(TOK_P, "GetTask", "{\"id\":\"%s\",\"historyLength\":0}", jstr(t, "id"));
    assert_null(jpath(g, "result.history"));
    assert_string_equal(jstr(g, "result.status.state"), "TASK_STATE_INPUT_REQUIRED");
    cJSON_Delete(g);
    g = ib_call(TOK_P, "GetTask", "{\"id\":\"%s\",\"historyLength\":1}", jstr(t, "id"));
    assert_int_equal(cJSON_GetArraySize(jpath(g, "result.history")), 1);
    assert_string_equal(jstr(g, "result.history.0.role"), "ROLE_AGENT");
    cJSON_Delete(g);
    cJSON_Delete(t);
    ib_down();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_pending),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_notification),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_refused_and_retried),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_stream_v03),
        cmocka_unit_test(test_stream_v10),
        cmocka_unit_test(test_stop_with_stream),
        cmocka_unit_test(test_concurrent_dedupe),
        cmocka_unit_test(test_stream_limit_history),
        cmocka_unit_test(test_short_request),
        cmocka_unit_test(test_slow_delivery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
