/* The inbound_a2a plugin with a store shared by replicas (postgresql): the
 * store is filled as a replica that died would leave it, and this one,
 * already running, takes over at its next rescan: an overdue question
 * fails, a stored question is delivered once its claim is free, and only
 * then; a task another replica is changing is left alone. With sqlite (one
 * process) nothing is rescanned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_host.h"
#include "harness.h"
#include "inbound_fixture.h"

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A task of planner's for alice (main:12345) as another replica stored it. */
static void put_task(const char *id, const char *state, int64_t deadline, int64_t sent_id) {
    int64_t now = wall_ms();
    char json[1024], k[128];
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"ctx\":\"%s\",\"caller\":\"planner\",\"skill\":\"alice\","
             "\"tr\":\"main\",\"mid\":\"%s\",\"text\":\"left?\",\"sent\":\"Question from "
             "planner:\\n\\nleft?\",\"chat\":\"12345\",\"sent_id\":\"%" PRId64 "\","
             "\"created\":\"%" PRId64 "\",\"updated\":\"%" PRId64 "\",\"deadline\":\"%" PRId64
             "\",\"delivered\":\"%" PRId64 "\",\"answered\":\"0\",\"notify\":false,"
             "\"state\":\"%s\"}",
             id, id, id, sent_id, now - 5000, now - 5000, deadline, sent_id ? now - 4000 : 0,
             state);
    snprintf(k, sizeof k, "t/%s", id);
    rdpt_kv_set(k, json);
    snprintf(k, sizeof k, "p/main/12345/%s", id);
    rdpt_kv_set(k, "");
    if (!strcmp(state, "submitted")) {
        snprintf(k, sizeof k, "s/%s", id);
        rdpt_kv_set(k, "");
    }
}

static char *state_of(const char *id) {
    cJSON *t = ib_get_task(TOK_P, 0, id);
    char *s = strdup(jstr(t, "status.state"));
    cJSON_Delete(t);
    return s;
}

static int wait_state(const char *id, const char *want, int timeout_ms) {
    long long end = rt_now_ms() + timeout_ms;
    for (;;) {
        char *s = state_of(id);
        int ok = !strcmp(s, want);
        free(s);
        if (ok) return 1;
        if (rt_now_ms() >= end) return 0;
        rt_sleep_ms(50);
    }
}

/* Started as a replica on a shared store (host->info "store"). */
static void up_shared(const char *store, const char *rescan) {
    ib_up((const char *const[]){"rescan_interval", rescan, NULL});
    ib_down();
    rdpt_new_run();
    rdpt_info("store", store);
    ib_restart();
    /* The timer's pass at start is over: what it finds later, a rescan did. */
    rt_sleep_ms(500);
}

static void test_rescan_takes_over(void **state) {
    (void)state;
    up_shared("postgresql", "300ms");
    /* The dead replica had claimed this one and not sent it yet. */
    rdpt_claim_other("d/dead-q", 1);
    put_task("dead-q", "submitted", wall_ms() + 3600000, 0);
    put_task("dead-x", "input-required", wall_ms() - 1000, 4242);
    assert_true(wait_state("dead-x", "failed", 3000));
    cJSON *g = ib_get_task(TOK_P, 0, "dead-x");
    assert_string_equal(jstr(g, "status.message.parts.0.text"), "no answer within 1d");
    cJSON_Delete(g);
    const char *pv[] = {"planner", NULL};
    assert_int_equal((int)rdpt_metric("routerd_inbound_expired_total", pv), 1);
    /* Still claimed: not sent over several rescans. */
    rt_sleep_ms(1000);
    assert_int_equal(rdpt_delivered(), 0);
    assert_true(wait_state("dead-q", "submitted", 0));
    /* The claim runs out: this replica sends it, once. */
    rdpt_claim_other("d/dead-q", 0);
    assert_int_equal(rdpt_wait_delivered(1, 3000), 1);
    assert_true(wait_state("dead-q", "input-required", 2000));
    rt_sleep_ms(1000);
    rdpt_delivery *d;
    size_t n = rdpt_deliveries(&d);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].transport, "main");
    assert_int_equal(d[0].chat_id, 12345);
    assert_string_equal(d[0].correlation_id, "dead-q");
    assert_string_equal(d[0].text, "Question from planner:\n\nleft?");
    int64_t sent = d[0].sent_id;
    rdpt_deliveries_free(d, n);
    /* The person answers here. */
    assert_int_equal(rdpt_intercept(ib_self, &(rdpt_request){.chat_id = 12345,
                                                             .transport = "main",
                                                             .text = "yes",
                                                             .reply_to = sent}),
                     1);
    assert_true(wait_state("dead-q", "completed", 0));
    assert_int_equal(rdpt_kv_count("p/"), 0);
    ib_down();
}

/* A question stored while this replica runs is sent by it at once, not
 * left to the rescan, and never twice. */
static void test_own_tasks_once(void **state) {
    (void)state;
    up_shared("postgresql", "200ms");
    cJSON *t = ib_send(TOK_P, 1, "own", "alice", "mine?", "", 1);
    assert_string_equal(jstr(t, "status.state"), "TASK_STATE_INPUT_REQUIRED");
    cJSON_Delete(t);
    rt_sleep_ms(800);
    assert_int_equal(rdpt_delivered(), 1);
    ib_down();
}

/* A task another replica is changing (its claim x/<task> held) is left
 * alone: an answer is not taken (it routes on), a cancel asks to retry;
 * once the claim is free both work as usual. */
static void test_task_held_elsewhere(void **state) {
    (void)state;
    up_shared("postgresql", "30s");
    cJSON *t = ib_send(TOK_P, 0, "held", "alice", "held?", "", 1);
    char *id = strdup(jstr(t, "id"));
    cJSON_Delete(t);
    assert_true(wait_state(id, "input-required", 2000));
    rdpt_delivery *d;
    size_t n = rdpt_deliveries(&d);
    assert_int_equal(n, 1);
    int64_t sent = d[0].sent_id;
    rdpt_deliveries_free(d, n);
    char key[64];
    snprintf(key, sizeof key, "x/%s", id);
    rdpt_claim_other(key, 1);
    rdpt_request rq = {.chat_id = 12345, .transport = "main", .text = "yes", .reply_to = sent};
    assert_int_equal(rdpt_intercept(ib_self, &rq), 0);
    assert_true(rdpt_logged("another replica held the task"));
    assert_true(wait_state(id, "input-required", 0));
    cJSON *c = ib_call(TOK_P, "tasks/cancel", "{\"id\":\"%s\"}", id);
    assert_int_equal((int)jpath(c, "error.code")->valuedouble, -32603);
    cJSON_Delete(c);
    rdpt_claim_other(key, 0);
    assert_int_equal(rdpt_intercept(ib_self, &rq), 1);
    assert_true(wait_state(id, "completed", 0));
    free(id);
    ib_down();
}

/* sqlite: one process owns the store; nothing is read again until start. */
static void test_no_rescan_with_sqlite(void **state) {
    (void)state;
    up_shared("sqlite", "200ms");
    put_task("gone", "input-required", wall_ms() - 1000, 4243);
    rt_sleep_ms(1000);
    assert_true(wait_state("gone", "input-required", 0));
    rdpt_shutdown(ib_self);
    rdpt_new_run();
    ib_restart();
    assert_true(wait_state("gone", "failed", 3000));
    ib_down();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rescan_takes_over),
        cmocka_unit_test(test_own_tasks_once),
        cmocka_unit_test(test_task_held_elsewhere),
        cmocka_unit_test(test_no_rescan_with_sqlite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
