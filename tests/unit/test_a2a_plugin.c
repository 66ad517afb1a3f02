/* The a2a backend in-process, with a fake host, against the fake agent in
 * both dialects: discovery, messages, tasks, input-required, streams,
 * conversations, every failure class with its metric and notice, retries
 * with a stable messageId, deadlines with cancel, auth, dialect fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_a2a.h"
#include "harness.h"
#include "fake_host.h"

static fa2a *agent;
static void *be;

static const char *const FAILS = "routerd_a2a_failures_total";
static const char *FAILURE = "Sorry, the agent could not answer right now.";
static const char *TIMEOUT = "Sorry, the agent took too long to answer.";

/* Starts the fake agent and the plugin; cfg is "key=value" pairs. */
static void up(fa2a_opts o, const char *const *cfg) {
    ah_reset();
    agent = fa2a_start(&o);
    assert_non_null(agent);
    ah_cfg("url", fa2a_url(agent));
    ah_cfg("retry_base_ms", "20");
    ah_cfg("retry_max_ms", "100");
    ah_cfg("poll_interval_ms", "30");
    ah_cfg("poll_max_interval_ms", "100");
    ah_cfg("failure_notice", FAILURE);
    ah_cfg("timeout_notice", TIMEOUT);
    for (int i = 0; cfg && cfg[i]; i += 2)
        ah_cfg(cfg[i], cfg[i + 1]);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    if (!be) fail_msg("launch failed: %s", err.msg);
}

static void down(void) {
    ah_shutdown(be);
    be = NULL;
    /* exactly-once: no message's work ran twice, whatever the test did */
    if (fa2a_executions(agent, NULL) > 1)
        fail_msg("a message ran %d times", fa2a_executions(agent, NULL));
    fa2a_stop(agent);
    agent = NULL;
}

static double failures(const char *klass) {
    const char *v[] = {klass, NULL};
    return ah_metric(FAILS, v);
}

/* Calls and checks an OK reply. */
static void expect_reply(int64_t chat, const char *text, const char *want) {
    ah_result r = ah_call(be, chat, text, 20000, NULL);
    if (r.st != RD_OK) fail_msg("'%s': status %d (%s: %s)", text, r.st, r.err.klass, r.err.msg);
    assert_string_equal(r.text, want);
    ah_result_free(&r);
}

/* Calls and checks a failure: its class, notice and metric. */
static void expect_fail(int64_t chat, const char *text, int64_t deadline, const char *klass,
                        const char *notice) {
    double before = failures(klass);
    ah_result r = ah_call(be, chat, text, deadline, NULL);
    if (r.st == RD_OK) fail_msg("'%s' succeeded: %s", text, r.text);
    assert_string_equal(r.err.klass, klass);
    assert_string_equal(r.text, notice);
    assert_true(strlen(r.err.msg) > 0);
    assert_null(strchr(r.text, '{')); /* never raw JSON to users */
    assert_true(failures(klass) == before + 1);
    ah_result_free(&r);
}

static void test_message_v10(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    assert_true(ah_wait_ready(1, 5000));
    ah_result r = ah_call(be, 7, "hello there", 20000,
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "echo: hello there");
    ah_result_free(&r);
    fa_req q;
    assert_int_equal(fa2a_last(agent, NULL, &q), 0);
    assert_string_equal(q.method, "SendMessage");
    assert_string_equal(q.a2a_version, "1.0");
    assert_string_equal(q.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_string_equal(q.text, "hello there");
    assert_string_equal(q.context_id, ""); /* the agent assigns it */
    /* messageId: the correlation id in UUID form */
    assert_int_equal(strlen(q.message_id), 36);
    assert_int_equal(q.message_id[8], '-');
    assert_string_equal(q.accept, "application/json");
    /* the agent's contextId is kept for the chat and persona */
    char *kv = ah_kv("conv:7:helper");
    assert_non_null(kv);
    assert_non_null(strstr(kv, "\"ctx-1\""));
    free(kv);
    const char *v[] = {"message", NULL};
    assert_true(ah_metric("routerd_a2a_replies_total", v) == 1);
    down();
}

static void test_message_v03_old_card(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V03, .card_mode = FA_CARD_OLD}, NULL);
    assert_true(ah_wait_ready(1, 5000));
    expect_reply(1, "hi", "echo: hi");
    fa_req q;
    assert_int_equal(fa2a_last(agent, NULL, &q), 0);
    assert_string_equal(q.method, "message/send");
    assert_string_equal(q.a2a_version, "");     /* 0.3 requests carry no 1.0 header */
    assert_true(fa2a_card_fetches(agent) >= 2); /* agent-card.json 404, then agent.json */
    down();
}

/* Conversations: the context goes on every later message of that chat;
 * two chats never share one. */
static void test_conversation_per_chat(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_BOTH}, NULL);
    expect_reply(10, "ctx", "ctx=none task=none");
    expect_reply(10, "ctx", "ctx=ctx-1 task=none");
    expect_reply(11, "ctx", "ctx=none task=none");
    expect_reply(11, "ctx", "ctx=ctx-2 task=none");
    expect_reply(10, "ctx", "ctx=ctx-1 task=none");
    /* a new plugin instance (a restart) reads it back from the store */
    ah_shutdown(be);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_non_null(be);
    expect_reply(10, "ctx", "ctx=ctx-1 task=none");
    /* /new starts over */
    expect_reply(10, "/new", "Started a new conversation.");
    char *kv = ah_kv("conv:10:helper");
    assert_null(kv);
    expect_reply(10, "ctx", "ctx=none task=none");
    expect_reply(10, "/new@routerd_bot", "Started a new conversation.");
    down();
}

static void test_task_polled_both_dialects(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, NULL);
        expect_reply(3, "task 200", "done: task 200");
        const char *get = d == FA_V10 ? "GetTask" : "tasks/get";
        assert_true(fa2a_count(agent, get) >= 1);
        fa_req q;
        assert_int_equal(fa2a_last(agent, get, &q), 0);
        assert_int_equal(q.history_length, 4); /* a short history on every poll */
        assert_int_equal(fa2a_req(agent, 0, &q), 0);
        assert_int_equal(q.blocking, 0); /* non-blocking send, then polling */
        const char *v[] = {"completed", NULL};
        assert_true(ah_metric("routerd_a2a_replies_total", v) == 1);
        char *kv = ah_kv("conv:3:helper");
        assert_null(strstr(kv, "task")); /* a finished task is not kept */
        free(kv);
        down();
    }
}

static void test_blocking_send(void **state) {
    (void)state;
    const char *cfg[] = {"blocking", "true", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    expect_reply(3, "task 100", "done: task 100");
    assert_int_equal(fa2a_count(agent, "GetTask"), 0);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    assert_int_not_equal(q.blocking, 0); /* 1.0: blocking is the default, not said */
    down();
}

static void test_input_required(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, NULL);
        expect_reply(4, "ask", "What is your name?");
        char *kv = ah_kv("conv:4:helper");
        assert_non_null(strstr(kv, "\"task\":\"task-1\""));
        free(kv);
        expect_reply(4, "Bob", "Hello, Bob!");
        fa_req q;
        assert_int_equal(fa2a_last(agent, NULL, &q), 0);
        assert_string_equal(q.task_id, "task-1");
        assert_string_equal(q.context_id, "ctx-1");
        kv = ah_kv("conv:4:helper");
        assert_null(strstr(kv, "task-1"));
        free(kv);
        /* the next message starts a new task in the same context */
        expect_reply(4, "ctx", "ctx=ctx-1 task=none");
        down();
    }
}

/* A stored task the agent forgot (-32001) or finished (-32004): dropped,
 * and the message is resent in the same context. */
static void test_stale_task_resent(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    ah_kv_put("conv:5:helper", "{\"context\":\"ctx-77\",\"task\":\"task-404\"}");
    expect_reply(5, "ctx", "ctx=ctx-77 task=none");
    assert_int_equal(fa2a_count(agent, "SendMessage"), 2);
    /* a completed task */
    expect_reply(6, "ask", "What is your name?");
    expect_reply(6, "Ann", "Hello, Ann!");
    ah_kv_put("conv:6:helper", "{\"context\":\"ctx-2\",\"task\":\"task-1\"}");
    expect_reply(6, "ctx", "ctx=ctx-2 task=none");
    char *kv = ah_kv("conv:6:helper");
    assert_null(strstr(kv, "task-1"));
    free(kv);
    down();
}

static void test_auth_required(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, NULL);
        expect_reply(4, "authreq", "Please sign in at https://auth.example/login");
        char *kv = ah_kv("conv:4:helper");
        assert_non_null(strstr(kv, "\"task\":\"task-1\""));
        free(kv);
        expect_reply(4, "signed in", "Hello, signed in!");
        const char *v[] = {"auth_required", NULL};
        assert_true(ah_metric("routerd_a2a_replies_total", v) == 1);
        down();
    }
}

/* The agent moved its endpoint: the old one answers 404, the card names the
 * new one, and the message is resent there. */
static void test_endpoint_moved(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    expect_reply(1, "before", "echo: before");
    int cards = fa2a_card_fetches(agent);
    fa2a_move(agent, "/v2/rpc");
    expect_reply(1, "after", "echo: after");
    assert_int_equal(fa2a_card_fetches(agent), cards + 1);
    expect_reply(1, "again", "echo: again");
    assert_int_equal(fa2a_card_fetches(agent), cards + 1);
    assert_true(ah_logged("/v2/rpc"));
    down();
}

/* A stream whose agent keeps the connection open after the last event:
 * the answer does not wait for the close. */
static void test_stream_final_without_close(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", NULL};
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d, .streaming = 1, .linger_ms = 4000}, cfg);
        long long t0 = rt_now_ms();
        expect_reply(1, "task", "done: task");
        expect_reply(1, "plain", "echo: plain");
        assert_true(rt_now_ms() - t0 < 3000);
        down();
    }
}

static void test_task_failed_rejected(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V03}, NULL);
    expect_fail(1, "fail", 20000, "fatal",
                "The agent could not complete this request.\nthe tool crashed");
    expect_fail(1, "reject", 20000, "fatal",
                "The agent could not complete this request.\nI will not do that");
    assert_int_equal(fa2a_count(agent, "message/send"), 2); /* not retried */
    const char *v[] = {"rejected", NULL};
    assert_true(ah_metric("routerd_a2a_replies_total", v) == 1);
    down();
}

static void test_rpc_error_classes(void **state) {
    (void)state;
    const char *cfg[] = {"retries", "2", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    /* an internal error may come after the work ran: never sent again */
    expect_fail(1, "rpcerr -32603", 20000, "transient", FAILURE);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    fa2a_clear(agent);
    expect_fail(1, "rpcerr -32050", 20000, "transient", FAILURE);
    fa2a_clear(agent);
    expect_fail(1, "rpcerr -32602", 20000, "fatal", FAILURE);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1); /* no retry */
    fa2a_clear(agent);
    expect_fail(1, "rpcerr -32004", 20000, "fatal", FAILURE);
    expect_fail(1, "rpcerr -32006", 20000, "fatal", FAILURE);
    expect_fail(1, "rpcerr -32600", 20000, "fatal", FAILURE);
    fa2a_clear(agent);
    /* method not found: one switch to 0.3, then fatal */
    expect_fail(1, "rpcerr -32601", 20000, "fatal", FAILURE);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    assert_true(ah_logged("classification=fatal"));
    down();
}

static void test_http_failures(void **state) {
    (void)state;
    const char *cfg[] = {"retries", "1", NULL};
    up((fa2a_opts){.speaks = FA_BOTH}, cfg);
    expect_fail(1, "http 503", 20000, "transient", FAILURE);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 2);
    expect_fail(1, "http 429", 20000, "transient", FAILURE);
    expect_fail(1, "http 401", 20000, "fatal", FAILURE);
    expect_fail(1, "http 403", 20000, "fatal", FAILURE);
    int cards = fa2a_card_fetches(agent);
    expect_fail(1, "http 404", 20000, "fatal", FAILURE);
    assert_true(fa2a_card_fetches(agent) > cards); /* re-discovered first */
    expect_fail(1, "malformed", 20000, "protocol", FAILURE);
    expect_fail(1, "badid", 20000, "protocol", FAILURE);
    assert_true(ah_logged("JSON-RPC id mismatch"));
    assert_true(ah_logged("HTTP 401 (check token / api_key), WWW-Authenticate: Bearer"));
    down();
}

static void test_oversized(void **state) {
    (void)state;
    const char *cfg[] = {"max_response_bytes", "1048576", "stream", "true", NULL};
    up((fa2a_opts){.speaks = FA_V03, .streaming = 1}, cfg);
    expect_fail(1, "big", 20000, "protocol", FAILURE);
    expect_fail(1, "bigevent", 20000, "protocol", FAILURE);
    expect_reply(1, "still fine", "echo: still fine");
    down();
}

/* Transient failures are retried with the same messageId. */
static void test_flaky_same_message_id(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    expect_reply(2, "flaky 2", "recovered after 2");
    assert_int_equal(fa2a_count(agent, "SendMessage"), 3);
    fa_req a, b, c;
    fa2a_req(agent, 0, &a);
    fa2a_req(agent, 1, &b);
    fa2a_req(agent, 2, &c);
    assert_string_equal(a.message_id, b.message_id);
    assert_string_equal(b.message_id, c.message_id);
    assert_string_not_equal(a.rpc_id, b.rpc_id);
    const char *v[] = {"agent", NULL};
    assert_true(ah_metric("routerd_a2a_retries_total", v) == 2);
    /* a later message gets a new id */
    expect_reply(2, "next", "echo: next");
    fa2a_req(agent, 3, &b);
    assert_string_not_equal(a.message_id, b.message_id);
    down();
}

static void test_deadlines(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    long long t0 = rt_now_ms();
    expect_fail(1, "slow 5000", 700, "timeout", TIMEOUT);
    assert_true(rt_now_ms() - t0 < 3000);
    /* a task still working at the deadline is canceled */
    expect_fail(2, "hang", 600, "timeout", TIMEOUT);
    assert_int_equal(fa2a_count(agent, "CancelTask"), 1);
    char *kv = ah_kv("conv:2:helper");
    assert_non_null(kv);
    assert_null(strstr(kv, "task")); /* context kept, task dropped */
    assert_non_null(strstr(kv, "ctx-"));
    free(kv);
    /* timeout_s bounds it too */
    ah_shutdown(be);
    ah_cfg("timeout_s", "1");
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    t0 = rt_now_ms();
    expect_fail(3, "hang", 0, "timeout", TIMEOUT);
    assert_true(rt_now_ms() - t0 < 4000);
    down();
}

static void test_streams(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", "progress", "true", "progress_interval_ms", "100", NULL};
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d, .streaming = 1, .chunk_delay_ms = 2}, cfg);
        const char *sm = d == FA_V10 ? "SendStreamingMessage" : "message/stream";
        ah_result r = ah_call(be, 1, "task", 20000, NULL);
        assert_int_equal(r.st, RD_OK);
        assert_string_equal(r.text, "done: task");
        assert_true(r.progress >= 1); /* partial answers were offered */
        ah_result_free(&r);
        fa_req q;
        assert_int_equal(fa2a_last(agent, sm, &q), 0);
        assert_string_equal(q.accept, "text/event-stream");
        assert_int_equal(fa2a_count(agent, d == FA_V10 ? "GetTask" : "tasks/get"), 0);
        expect_reply(1, "plain words", "echo: plain words");
        expect_reply(1, "ask", "What is your name?");
        expect_reply(1, "Zoe", "Hello, Zoe!");
        expect_fail(1, "fail", 20000, "fatal",
                    "The agent could not complete this request.\nthe tool crashed");
        /* broken stream: re-attach (or poll) and get the answer */
        expect_reply(1, "drop", "after drop");
        /* an error event mid-stream: the task is polled */
        expect_reply(1, "streamerr", "after error");
        /* an error before the stream: a JSON body */
        expect_fail(1, "rpcerr -32602", 20000, "fatal", FAILURE);
        down();
    }
}

typedef struct {
    int64_t update;
    ah_result r;
} side_call;

static void *flood_main(void *arg) {
    side_call *sc = arg;
    sc->r = ah_call_update(be, 1, "flood 40", 20000, NULL, sc->update);
    return NULL;
}

/* A stream's partial answers wait for the transport (here 1.5 s each) and
 * its task record for a commit; neither holds up the other chats' calls,
 * and the answer comes after them. */
static void test_stream_side_work(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", "progress", "true", "progress_interval_ms", "100", NULL};
    up((fa2a_opts){.speaks = FA_V10, .streaming = 1, .chunk_delay_ms = 5}, cfg);
    rdpt_set_progress_delay_ms(1500);
    side_call sc = {.update = 0x99};
    pthread_t th;
    pthread_create(&th, NULL, flood_main, &sc);
    long long t0 = rt_now_ms();
    while (fa2a_count(agent, "SendStreamingMessage") < 1 && rt_now_ms() - t0 < 5000)
        rt_sleep_ms(5);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendStreamingMessage", &q), 0);
    char key[128];
    snprintf(key, sizeof key, "msg:0000000000000099:%s", q.message_id);
    /* the task is recorded while its stream goes on */
    char *kv = NULL;
    while (rt_now_ms() - t0 < 5000) {
        kv = ah_kv(key);
        if (kv && strstr(kv, "\"s\":\"task\"")) break;
        free(kv);
        kv = NULL;
        rt_sleep_ms(5);
    }
    assert_non_null(kv);
    free(kv);
    rt_sleep_ms(200); /* a partial answer is being shown now */
    long long t1 = rt_now_ms();
    for (int i = 0; i < 2; i++)
        expect_reply(2, "plain words", "echo: plain words");
    long long took = rt_now_ms() - t1;
    pthread_join(th, NULL);
    fprintf(stderr,
            "another chat answered twice in %lld ms; the stream: %d (%s), %d partial answers\n",
            took, sc.r.st, sc.r.err.msg, sc.r.progress);
    assert_true(took < 1000);
    assert_int_equal(sc.r.st, RD_OK);
    assert_int_equal(strlen(sc.r.text), 40 * 1024);
    assert_true(sc.r.progress >= 1 && sc.r.progress <= 3); /* the newest of each wait */
    assert_true(sc.r.reply.elapsed_ms >= 1450);            /* the answer after them */
    ah_result_free(&sc.r);
    kv = ah_kv(key);
    assert_non_null(kv);
    assert_non_null(strstr(kv, "\"s\":\"done\""));
    free(kv);
    down();
}

typedef struct {
    int64_t chat;
    ah_result r;
} poll_call;

static void *partial_main(void *arg) {
    poll_call *pc = arg;
    pc->r = ah_call(be, pc->chat, "partialtask 1000", 20000, NULL);
    return NULL;
}

/* A polled task's partial answers hold up no finisher either; four are
 * shown at once, and the answer comes after them. */
static void test_polled_progress(void **state) {
    (void)state;
    const char *cfg[] = {"progress", "true", "progress_interval_ms", "100", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    rdpt_set_progress_delay_ms(1500);
    enum { N = 4 };
    poll_call pc[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        pc[i] = (poll_call){.chat = 10 + i};
        pthread_create(&th[i], NULL, partial_main, &pc[i]);
    }
    long long t0 = rt_now_ms();
    while (fa2a_count(agent, "GetTask") < N && rt_now_ms() - t0 < 5000)
        rt_sleep_ms(5);
    rt_sleep_ms(100); /* partial answers are being shown now */
    long long t1 = rt_now_ms();
    for (int i = 0; i < 2; i++)
        expect_reply(2, "plain words", "echo: plain words");
    long long took = rt_now_ms() - t1;
    fprintf(stderr, "another chat answered twice in %lld ms\n", took);
    assert_true(took < 1000);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(pc[i].r.st, RD_OK);
        assert_string_equal(pc[i].r.text, "done: partialtask 1000");
        assert_int_equal(pc[i].r.progress, 1);
        assert_string_equal(pc[i].r.last_progress, "working on it");
        /* done at 1 s, answered once its partial answer was shown */
        assert_true(pc[i].r.reply.elapsed_ms >= 1450);
        ah_result_free(&pc[i].r);
    }
    down();
}

/* A card without streaming: stream = true still sends + polls. */
static void test_stream_not_capable(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", NULL};
    up((fa2a_opts){.speaks = FA_V03, .streaming = 0}, cfg);
    expect_reply(1, "task", "done: task");
    assert_int_equal(fa2a_count(agent, "message/stream"), 0);
    down();
}

/* The card says 1.0, the agent speaks 0.3: one -32601, then 0.3 for good. */
static void test_dialect_fallback(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V03, .card = FA_V10}, NULL);
    expect_reply(1, "one", "echo: one");
    expect_reply(1, "two", "echo: two");
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    assert_int_equal(fa2a_count(agent, "message/send"), 2);
    const char *v[] = {"agent", NULL};
    assert_true(ah_metric("routerd_a2a_dialect_fallbacks_total", v) == 1);
    down();
    /* forced: no fallback */
    const char *cfg[] = {"dialect", "1.0", NULL};
    up((fa2a_opts){.speaks = FA_V03, .card = FA_V03}, cfg);
    expect_fail(1, "one", 20000, "fatal", FAILURE);
    assert_int_equal(fa2a_count(agent, "message/send"), 0);
    down();
    /* hybrid card with relative URLs: 1.0 preferred */
    up((fa2a_opts){.speaks = FA_BOTH, .card = FA_BOTH}, NULL);
    expect_reply(1, "x", "echo: x");
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    down();
}

static void test_card_problems(void **state) {
    (void)state;
    char why[512];
    up((fa2a_opts){.card_mode = FA_CARD_NONE}, NULL);
    assert_true(ah_wait_ready(0, 3000));
    ah_result r = ah_call(be, 1, "hi", 5000, NULL);
    assert_int_not_equal(r.st, RD_OK);
    assert_string_equal(r.err.klass, "fatal");
    assert_non_null(strstr(r.err.msg, "/.well-known/agent-card.json"));
    assert_non_null(strstr(r.err.msg, "/.well-known/agent.json"));
    assert_string_equal(r.text, FAILURE);
    ah_result_free(&r);
    for (int i = 0; i < 100; i++) {
        ah_ready(why, sizeof why);
        if (strstr(why, fa2a_url(agent))) break;
        rt_sleep_ms(20);
    }
    assert_non_null(strstr(why, fa2a_url(agent)));
    down();

    up((fa2a_opts){.card_mode = FA_CARD_INVALID}, NULL);
    for (int i = 0; i < 100 && !ah_logged("invalid agent card"); i++)
        rt_sleep_ms(20);
    assert_true(ah_logged("invalid agent card at http://127.0.0.1:"));
    assert_int_equal(ah_ready(NULL, 0), 0);
    down();

    up((fa2a_opts){.card_mode = FA_CARD_NO_JSONRPC}, NULL);
    for (int i = 0; i < 100 && !ah_logged("no JSON-RPC"); i++)
        rt_sleep_ms(20);
    assert_true(ah_logged("no JSON-RPC interface"));
    down();

    /* card_url = none: straight to JSON-RPC at url */
    ah_reset();
    agent = fa2a_start(&(fa2a_opts){.speaks = FA_V03, .card_mode = FA_CARD_NONE});
    char rpc[128];
    snprintf(rpc, sizeof rpc, "%s/rpc", fa2a_url(agent));
    ah_cfg("url", rpc);
    ah_cfg("card_url", "none");
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_int_equal(ah_ready(NULL, 0), 1);
    expect_reply(1, "hi", "echo: hi"); /* 1.0 first, -32601, then 0.3 */
    assert_int_equal(fa2a_card_fetches(agent), 0);
    down();
}

/* An agent that starts after the router: discovery retries until it can. */
static void test_late_agent(void **state) {
    (void)state;
    ah_reset();
    int port = rt_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ah_cfg("url", url);
    ah_cfg("connect_timeout_s", "1");
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_non_null(be);
    char why[512] = "";
    for (int i = 0; i < 150 && !strstr(why, url); i++) {
        rt_sleep_ms(20);
        assert_int_equal(ah_ready(why, sizeof why), 0);
    }
    assert_non_null(strstr(why, url));
    /* a message now fails as transient, naming the card URL */
    ah_result r = ah_call(be, 1, "early", 3000, NULL);
    assert_string_equal(r.err.klass, "transient");
    ah_result_free(&r);
    agent = fa2a_start(&(fa2a_opts){.speaks = FA_V10, .port = port});
    assert_non_null(agent);
    assert_true(ah_wait_ready(1, 8000));
    expect_reply(1, "late", "echo: late");
    down();
}

/* The agent moves: a connection failure re-discovers the card. */
static void test_agent_restarts(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    expect_reply(1, "a", "echo: a");
    int port = fa2a_port(agent);
    fa2a_stop(agent);
    ah_result r = ah_call(be, 1, "down", 2000, NULL);
    assert_string_equal(r.err.klass, "transient");
    ah_result_free(&r);
    assert_true(ah_wait_ready(0, 3000));
    agent = fa2a_start(&(fa2a_opts){.speaks = FA_V03, .port = port});
    assert_non_null(agent);
    assert_true(ah_wait_ready(1, 8000));
    expect_reply(1, "b", "echo: b");
    down();
}

static void test_auth(void **state) {
    (void)state;
    const char *cfg[] = {"token", "s3cret", NULL};
    up((fa2a_opts){.speaks = FA_V10, .token = "s3cret"}, cfg);
    expect_reply(1, "hi", "echo: hi");
    fa_req q;
    fa2a_last(agent, NULL, &q);
    assert_string_equal(q.authorization, "Bearer s3cret");
    assert_false(ah_logged("s3cret"));
    down();
    /* the wrong token: fatal, and the card's requirement is checked */
    const char *bad[] = {"token", "wrong", NULL};
    up((fa2a_opts){.speaks = FA_V03, .token = "right"}, bad);
    expect_fail(1, "hi", 20000, "fatal", FAILURE);
    down();
    up((fa2a_opts){.speaks = FA_V03, .token = "right"}, NULL);
    assert_true(ah_wait_ready(1, 5000));
    assert_true(ah_logged("requires authentication"));
    down();
    const char *key[] = {"api_key_header", "X-API-Key", "api_key", "k3y", NULL};
    up((fa2a_opts){.speaks = FA_V10, .api_key_header = "X-API-Key", .api_key = "k3y"}, key);
    expect_reply(1, "hi", "echo: hi");
    fa2a_last(agent, NULL, &q);
    assert_string_equal(q.api_key, "k3y");
    assert_false(ah_logged("names the API key header"));
    down();
    const char *other[] = {"api_key_header", "X-Other", "api_key", "k3y", NULL};
    up((fa2a_opts){.speaks = FA_V10, .api_key_header = "X-API-Key", .api_key = "k3y"}, other);
    assert_true(ah_wait_ready(1, 5000));
    assert_true(ah_logged("names the API key header 'X-API-Key'"));
    down();
}

/* Without notices configured the plugin appends nothing, so the router's
 * own failure_notice reaches the user, as for every backend. */
static void test_default_notice_is_the_routers(void **state) {
    (void)state;
    const char *cfg[] = {"failure_notice", "", "timeout_notice", "", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    expect_fail(1, "rpcerr -32602", 20000, "fatal", "");
    expect_fail(1, "slow 3000", 500, "timeout", "");
    down();
    /* timeout_notice unset: failure_notice serves timeouts too */
    const char *cfg2[] = {"failure_notice", "Agent trouble.", "timeout_notice", "", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg2);
    expect_fail(1, "slow 3000", 500, "timeout", "Agent trouble.");
    down();
}

static void test_bad_config(void **state) {
    (void)state;
    const char *cases[][4] = {
        {"url", "ftp://x", NULL, NULL},
        {"url", "http://x", "card_url", "file:///etc/passwd"},
        {"url", "http://x", "api_key", "k"},
        {"url", "http://x", "rpc_url", "nope"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ah_reset();
        ah_cfg(cases[i][0], cases[i][1]);
        if (cases[i][2]) ah_cfg(cases[i][2], cases[i][3]);
        rd_status st;
        rd_error err;
        assert_null(ah_launch(&st, &err));
        assert_int_equal(st, RD_E_CONFIG);
        assert_true(strlen(err.msg) > 0);
    }
}

/* The keys are bound with cfg_bind: a host older than ABI 1.2 is refused
 * at start, and a bound key reaches the instance. */
static void test_needs_bind(void **state) {
    (void)state;
    ah_reset();
    ah_cfg("url", "http://127.0.0.1:1");
    rdpt_set_host_minor(1);
    rd_status st;
    rd_error err;
    assert_null(ah_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "ABI 1.2"));
    rdpt_set_host_minor(RD_ABI_MINOR);
    up((fa2a_opts){.speaks = FA_V10}, (const char *const[]){"new_reply", "Fresh start.", NULL});
    expect_reply(5, "/new", "Fresh start.");
    down();
}

typedef struct {
    int chat;
    int64_t update; /* != 0: a message for a plain answer, under this update */
    int ok;
} par;

static void *par_main(void *arg) {
    par *p = arg;
    char text[32], want[48];
    int task = p->chat % 2 && !p->update;
    snprintf(text, sizeof text, "%s %d", task ? "task 100" : "m", p->chat);
    snprintf(want, sizeof want, task ? "done: %s" : "echo: %s", text);
    ah_result r = p->update ? ah_call_update(be, p->chat, text, 20000, NULL, p->update)
                            : ah_call(be, p->chat, text, 20000, NULL);
    p->ok = r.st == RD_OK && !strcmp(r.text, want);
    ah_result_free(&r);
    return NULL;
}

/* Many chats at once, messages and polled tasks mixed. */
static void test_concurrent_chats(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    enum { N = 64 };
    pthread_t th[N];
    par p[N];
    for (int i = 0; i < N; i++) {
        p[i] = (par){.chat = 100 + i};
        pthread_create(&th[i], NULL, par_main, &p[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_true(p[i].ok);
    }
    down();
}

/* A finisher held up (here every commit takes 2 s: a stalled disk) does
 * not hold up the calls queued behind it: the other finisher takes them.
 * Chat 2 comes 0.2 s after chat 1, whose "sent" record is being committed:
 * with both finishers at work its own two records are written about 4 s
 * after it came; waiting behind chat 1's commits, nearly 8 s. */
static void test_finisher_held_up(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    expect_reply(9, "warm", "echo: warm"); /* the card is read */
    rdpt_kv_delay(2000);
    pthread_t t1, t2;
    par p1 = {.chat = 1, .update = 880001}, p2 = {.chat = 2, .update = 880002};
    pthread_create(&t1, NULL, par_main, &p1);
    rdpt_sleep_ms(200);
    long long t0 = rdpt_now_ms();
    pthread_create(&t2, NULL, par_main, &p2);
    pthread_join(t2, NULL);
    long long took = rdpt_now_ms() - t0;
    pthread_join(t1, NULL);
    rdpt_kv_delay(0);
    assert_true(p1.ok && p2.ok);
    if (took < 3900 || took >= 5000)
        fail_msg("chat 2 answered after %lld ms: its two records take 4 s", took);
    down();
}

/* ---- exactly-once ------------------------------------------------------- */

/* A send that outlives http_timeout_s (an agent that answers a
 * non-blocking send only when done) is waited for, never sent again. */
static void test_send_outlives_http_timeout(void **state) {
    (void)state;
    const char *cfg[] = {"http_timeout_s", "1", NULL};
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, cfg);
        expect_reply(1, "slowtask 2500", "done: slowtask 2500");
        assert_int_equal(fa2a_count(agent, d == FA_V10 ? "SendMessage" : "message/send"), 1);
        assert_int_equal(fa2a_executions(agent, NULL), 1);
        down();
    }
}

/* Failures after the request reached the agent are not retried; what
 * provably never arrived, or what the agent asked to repeat, is. */
static void test_unknown_outcome_not_resent(void **state) {
    (void)state;
    const char *cfg[] = {"retries", "3", NULL};
    up((fa2a_opts){.speaks = FA_V03}, cfg);
    expect_fail(1, "http 502", 20000, "transient", FAILURE);
    expect_fail(1, "http 500", 20000, "transient", FAILURE);
    expect_fail(1, "malformed", 20000, "protocol", FAILURE);
    assert_int_equal(fa2a_count(agent, "message/send"), 3);
    assert_true(ah_logged("may have reached the agent"));
    fa2a_clear(agent);
    expect_reply(1, "flaky 2", "recovered after 2"); /* 503: asked to repeat */
    assert_int_equal(fa2a_count(agent, "message/send"), 3);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    down();
    /* connection refused: never arrived, retried up to the limit */
    ah_reset();
    int port = rt_free_port();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ah_cfg("url", url);
    ah_cfg("card_url", "none");
    ah_cfg("dialect", "0.3");
    ah_cfg("retries", "2");
    ah_cfg("retry_base_ms", "20");
    ah_cfg("failure_notice", FAILURE);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_non_null(be);
    ah_result r = ah_call(be, 1, "hello", 10000, NULL);
    assert_int_equal(r.st, RD_E_RETRY);
    ah_result_free(&r);
    const char *v[] = {"agent", NULL};
    assert_true(ah_metric("routerd_a2a_retries_total", v) == 2);
    ah_shutdown(be);
    be = NULL;
}

/* The messageId of a re-delivered update is the same; its answer is
 * repeated from the record without running the agent again. */
/* The update again, after a restart: answered from its record, the agent
 * not asked again. */
static void assert_answered_from_record(int64_t update, const char *mid) {
    ah_result r = ah_call_update(be, 5, "task 100", 20000, NULL, update);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "done: task 100");
    ah_result_free(&r);
    assert_int_equal(fa2a_executions(agent, mid), 1);
    assert_true(ah_logged("was answered before"));
}

static void test_redelivered_answer_repeated(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    ah_result r = ah_call_update(be, 5, "task 100", 20000, NULL, 777001);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "done: task 100");
    ah_result_free(&r);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    char mid[96];
    snprintf(mid, sizeof mid, "%s", q.message_id);
    assert_int_equal(strlen(mid), 36);
    /* a plugin restarted over the same store */
    ah_shutdown(be);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_answered_from_record(777001, mid);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    /* another update: another id */
    r = ah_call_update(be, 5, "task 100", 20000, NULL, 777002);
    ah_result_free(&r);
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    assert_string_not_equal(q.message_id, mid);
    /* the same update seen by the console (no meta): a random id */
    r = ah_call(be, 5, "hello", 20000, NULL);
    ah_result_free(&r);
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    assert_int_equal(strlen(q.message_id), 36);
    down();
}

/* A messageId outlives the process (records, agents that deduplicate):
 * the same update must keep its id from one version to the next. These
 * are the ids routerd has always given these updates. */
static void test_message_ids_stable(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    const struct {
        int64_t update;
        const char *mid;
    } want[] = {
        {777001, "fc4bcee8-0f10-8401-a71d-504d5250e6f3"},
        {3000000001LL, "aa79801b-db3d-879f-b6ba-30eb7b36e136"},       /* above INT_MAX */
        {999999999999999LL, "b1ea4832-8fab-842a-853b-6f7a529003c3"},  /* the largest below 10^15 */
        {1000000000000001LL, "f0fef26b-209b-82b9-82c4-4a7038e3d427"}, /* printed by cJSON */
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        ah_result r = ah_call_update(be, 5, "hello", 20000, NULL, want[i].update);
        assert_int_equal(r.st, RD_OK);
        ah_result_free(&r);
        fa_req q;
        assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
        assert_string_equal(q.message_id, want[i].mid);
    }
    down();
}

/* Records are keyed by update, then messageId; a record an earlier
 * version left under msg:<messageId> is still found after an upgrade. */
static void test_record_keys(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    rdpt_kv_snapshot(); /* the store as an earlier version would leave it */
    ah_result r = ah_call_update(be, 5, "task 100", 20000, NULL, 0x1234f);
    assert_int_equal(r.st, RD_OK);
    ah_result_free(&r);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    char key[160], okey[128];
    snprintf(key, sizeof key, "msg:000000000001234f:%s", q.message_id);
    snprintf(okey, sizeof okey, "msg:%s", q.message_id);
    char *rec = rdpt_kv_get(key);
    assert_non_null(rec);
    assert_non_null(strstr(rec, "\"s\":\"done\""));
    assert_null(rdpt_kv_get(okey));
    /* the next update's record sorts after it */
    r = ah_call_update(be, 5, "task 100", 20000, NULL, 0x12350);
    ah_result_free(&r);
    assert_int_equal(rdpt_kv_count("msg:000000000001234f:"), 1);
    assert_int_equal(rdpt_kv_count("msg:0000000000012350:"), 1);
    ah_shutdown(be);
    rdpt_kv_restore();
    rdpt_kv_set(okey, rec);
    free(rec);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_answered_from_record(0x1234f, q.message_id);
    assert_int_equal(rdpt_kv_count("msg:000000000001234f:"), 0);
    down();
}

static void *stop_later(void *arg) {
    rt_sleep_ms((int)(intptr_t)arg);
    ah_hard_stop(1);
    return NULL;
}

/* A hard stop (drain timeout) while a task runs leaves it running; the
 * re-delivered update after the restart resumes it: one execution, the
 * answer once. */
static void test_task_resumed_after_restart(void **state) {
    (void)state;
    const char *sub[] = {"false", "true"};
    for (int d = FA_V10; d <= FA_V03; d++) {
        for (int strm = 0; strm < 2; strm++) {
            const char *cfg[] = {"stream", sub[strm], NULL};
            up((fa2a_opts){.speaks = (fa_dialect)d, .streaming = strm}, cfg);
            pthread_t th;
            pthread_create(&th, NULL, stop_later, (void *)(intptr_t)400);
            ah_result r = ah_call_update(be, 9, "task 2500", 20000, NULL, 4242);
            pthread_join(th, NULL);
            assert_int_not_equal(r.st, RD_OK); /* abandoned */
            ah_result_free(&r);
            assert_int_equal(fa2a_count(agent, d == FA_V10 ? "CancelTask" : "tasks/cancel"), 0);
            ah_shutdown(be);
            ah_hard_stop(0);
            rd_status st;
            rd_error err;
            be = ah_launch(&st, &err);
            r = ah_call_update(be, 9, "task 2500", 20000, NULL, 4242);
            if (r.st != RD_OK) fail_msg("resume: %s", r.err.msg);
            assert_string_equal(r.text, "done: task 2500");
            ah_result_free(&r);
            const char *sm = d == FA_V10 ? (strm ? "SendStreamingMessage" : "SendMessage")
                                         : (strm ? "message/stream" : "message/send");
            assert_int_equal(fa2a_count(agent, sm), 1);
            assert_int_equal(fa2a_executions(agent, NULL), 1);
            assert_true(ah_logged("resuming it instead of sending again"));
            down();
        }
    }
}

/* A call that begins after a hard stop records and sends nothing: the
 * re-delivered update after the restart is sent then and answered (0.3,
 * where a "sent" record would only give the failure notice). */
static void test_hard_stop_before_send(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V03}, NULL);
    ah_hard_stop(1);
    ah_result r = ah_call_update(be, 4, "task 100", 20000, NULL, 515);
    assert_int_equal(r.st, RD_E_RETRY);
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "message/send"), 0);
    ah_shutdown(be);
    ah_hard_stop(0);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    r = ah_call_update(be, 4, "task 100", 20000, NULL, 515);
    if (r.st != RD_OK) fail_msg("after the restart: %s", r.err.msg);
    assert_string_equal(r.text, "done: task 100");
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "message/send"), 1);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    assert_false(ah_logged("not sent again"));
    down();
}

/* The connection dies after the request was written and before any
 * answer: the agent may have run the work, so the send is not repeated,
 * neither by curl (which silently repeats a request whose reused
 * connection died) nor by the plugin; the user is told instead. */
static void test_dead_connection_not_repeated(void **state) {
    (void)state;
    for (int v = 0; v < 2; v++) {
        up((fa2a_opts){.speaks = v ? FA_V10 : FA_V03}, NULL);
        assert_true(ah_wait_ready(1, 5000));
        /* a first exchange leaves a kept-alive connection to reuse */
        expect_reply(5, "hello", "echo: hello");
        const char *send = v ? "SendMessage" : "message/send";
        int before = fa2a_count(agent, send);
        ah_result r = ah_call_update(be, 5, "vanish", 20000, NULL, 77);
        /* Its outcome is unknown: the user is told, the send is not
         * repeated on another connection nor later. */
        assert_int_equal(r.st, RD_E_RETRY);
        assert_string_equal(r.text, FAILURE);
        ah_result_free(&r);
        r = ah_call_update(be, 5, "vanish", 20000, NULL, 77);
        assert_int_equal(r.st, RD_E_RETRY);
        ah_result_free(&r);
        assert_int_equal(fa2a_count(agent, send) - before, 1);
        assert_int_equal(fa2a_executed_messages(agent), 2); /* hello, vanish */
        assert_int_equal(fa2a_executions(agent, NULL), 1);  /* each once */
        assert_true(ah_logged("not repeating"));
        down();
    }
}

/* A send cut by a hard stop before the agent answered: after the restart
 * the 1.0 task is found with ListTasks and followed; in 0.3 it cannot be
 * found and the message is not sent again. */
static void test_unknown_send_recovered(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    pthread_t th;
    pthread_create(&th, NULL, stop_later, (void *)(intptr_t)300);
    ah_result r = ah_call_update(be, 3, "slowtask 2500", 20000, NULL, 99);
    pthread_join(th, NULL);
    assert_int_not_equal(r.st, RD_OK);
    ah_result_free(&r);
    ah_shutdown(be);
    ah_hard_stop(0);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    r = ah_call_update(be, 3, "slowtask 2500", 20000, NULL, 99);
    if (r.st != RD_OK) fail_msg("recover: %s", r.err.msg);
    assert_string_equal(r.text, "done: slowtask 2500");
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    assert_int_equal(fa2a_count(agent, "ListTasks"), 1);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    down();

    up((fa2a_opts){.speaks = FA_V03}, NULL);
    pthread_create(&th, NULL, stop_later, (void *)(intptr_t)300);
    r = ah_call_update(be, 3, "slowtask 1500", 20000, NULL, 99);
    pthread_join(th, NULL);
    ah_result_free(&r);
    ah_shutdown(be);
    ah_hard_stop(0);
    be = ah_launch(&st, &err);
    r = ah_call_update(be, 3, "slowtask 1500", 20000, NULL, 99);
    assert_int_equal(r.st, RD_E_FATAL);
    assert_string_equal(r.text, FAILURE);
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "message/send"), 1);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    assert_true(ah_logged("not sent again"));
    down();
    /* resend_unknown: an agent that deduplicates gets the same messageId */
    const char *cfg[] = {"resend_unknown", "true", NULL};
    up((fa2a_opts){.speaks = FA_V03, .dedup = 1}, cfg);
    pthread_create(&th, NULL, stop_later, (void *)(intptr_t)300);
    r = ah_call_update(be, 3, "slowtask 1000", 20000, NULL, 99);
    pthread_join(th, NULL);
    ah_result_free(&r);
    ah_shutdown(be);
    ah_hard_stop(0);
    be = ah_launch(&st, &err);
    r = ah_call_update(be, 3, "slowtask 1000", 20000, NULL, 99);
    assert_int_equal(r.st, RD_OK);
    ah_result_free(&r);
    fa_req a, b;
    assert_int_equal(fa2a_req(agent, 0, &a), 0);
    assert_int_equal(fa2a_req(agent, 1, &b), 0);
    assert_string_equal(a.message_id, b.message_id);
    down();
}

/* ---- conversations that heal -------------------------------------------- */

static void test_context_forgotten(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, NULL);
        expect_reply(4, "ctx", "ctx=none task=none");
        expect_reply(4, "ctx", "ctx=ctx-1 task=none");
        fa2a_forget_contexts(agent);
        /* the rejected id is dropped and the message sent once without it */
        expect_reply(4, "ctx", "ctx=none task=none");
        expect_reply(4, "ctx", "ctx=ctx-2 task=none");
        assert_true(ah_logged("rejected contextId ctx-1"));
        assert_int_equal(fa2a_executions(agent, NULL), 1);
        down();
    }
}

/* ---- limits ------------------------------------------------------------- */

static void test_reply_cap(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", "max_reply_bytes", "4096", NULL};
    up((fa2a_opts){.speaks = FA_V03, .streaming = 1, .chunk_delay_ms = 1}, cfg);
    ah_result r = ah_call(be, 1, "flood 40", 20000, NULL);
    assert_int_equal(r.st, RD_OK);
    const char *cut = "\n[The answer was too long and was cut here.]";
    size_t n = strlen(r.text), cl = strlen(cut);
    assert_int_equal(n, 4096 + cl);
    assert_string_equal(r.text + 4096, cut);
    ah_result_free(&r);
    assert_true(ah_logged("exceeded max_reply_bytes"));
    down();
}

/* Credentials go only to the card's origin unless allowed. */
static void test_credentials_origin(void **state) {
    (void)state;
    fa2a_opts o = {.speaks = FA_V10, .token = "s3cret"};
    agent = fa2a_start(&o);
    char url[64], other[64];
    /* the router knows the agent as localhost; the card names 127.0.0.1 */
    snprintf(url, sizeof url, "http://localhost:%d", fa2a_port(agent));
    snprintf(other, sizeof other, "http://127.0.0.1:%d", fa2a_port(agent));
    for (int allow = 0; allow < 2; allow++) {
        ah_reset();
        ah_cfg("url", url);
        ah_cfg("token", "s3cret");
        ah_cfg("failure_notice", FAILURE);
        if (allow) ah_cfg("credential_origins", other);
        rd_status st;
        rd_error err;
        be = ah_launch(&st, &err);
        assert_non_null(be);
        assert_true(ah_wait_ready(1, 5000));
        fa2a_clear(agent);
        ah_result r = ah_call(be, 1, "hi", 10000, NULL);
        fa_req q;
        assert_int_equal(fa2a_last(agent, NULL, &q), 0);
        if (allow) {
            assert_int_equal(r.st, RD_OK);
            assert_string_equal(q.authorization, "Bearer s3cret");
        } else {
            assert_int_equal(r.st, RD_E_FATAL);
            assert_string_equal(q.authorization, "");
            assert_true(ah_logged("on another origin"));
        }
        ah_result_free(&r);
        ah_shutdown(be);
        be = NULL;
    }
    fa2a_stop(agent);
    agent = NULL;
    /* header values with CR or LF are refused at start */
    ah_reset();
    ah_cfg("url", "http://127.0.0.1:1");
    ah_cfg("token", "abc\r\nX-Evil: 1");
    rd_status st;
    rd_error err;
    assert_null(ah_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "line break"));
}

/* A refused stream turns streaming off for that endpoint only for a while
 * (stream_retry_s), never for good. */
static void test_stream_refusal_expires(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", "stream_retry_s", "1", NULL};
    up((fa2a_opts){.speaks = FA_V10, .streaming = 1, .refuse_streams = 1}, cfg);
    expect_reply(1, "one", "echo: one");
    assert_int_equal(fa2a_count(agent, "SendStreamingMessage"), 1);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    expect_reply(2, "two", "echo: two"); /* another chat: no stream tried */
    assert_int_equal(fa2a_count(agent, "SendStreamingMessage"), 1);
    rt_sleep_ms(1200);
    expect_reply(1, "three", "echo: three"); /* expired: tried again */
    assert_int_equal(fa2a_count(agent, "SendStreamingMessage"), 2);
    assert_true(ah_logged("using send + poll there for 1 s"));
    down();
}

/* OAuth 2.0 client credentials against the fake's token endpoint: the
 * tokenUrl from the card, scopes and audience, one token for many calls,
 * renewed before it expires and on 401; the secret is never logged. */
static void test_oauth_client_credentials(void **state) {
    (void)state;
    const char *cfg[] = {"oauth_client_id",
                         "router",
                         "oauth_client_secret",
                         "S3cr3t-oauth",
                         "oauth_scopes",
                         "agent.read, agent.write",
                         "oauth_audience",
                         "https://agent.example",
                         "oauth_refresh_margin_s",
                         "1",
                         NULL};
    up((fa2a_opts){.speaks = FA_V10,
                   .oauth_client_id = "router",
                   .oauth_client_secret = "S3cr3t-oauth",
                   .token_ttl_s = 3},
       cfg);
    assert_true(ah_wait_ready(1, 5000));
    expect_reply(1, "one", "echo: one");
    expect_reply(1, "two", "echo: two");
    char scope[128], aud[128];
    assert_int_equal(fa2a_token_requests(agent, scope, sizeof scope, aud, sizeof aud), 1);
    assert_string_equal(scope, "agent.read agent.write");
    assert_string_equal(aud, "https://agent.example");
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    assert_string_equal(q.authorization, "Bearer tok-1");
    /* within the margin of its expiry: renewed before use, no 401 seen */
    rt_sleep_ms(2200);
    int before = fa2a_count(agent, NULL);
    expect_reply(1, "three", "echo: three");
    assert_int_equal(fa2a_token_requests(agent, NULL, 0, NULL, 0), 2);
    assert_int_equal(fa2a_count(agent, NULL), before + 1);
    assert_int_equal(fa2a_last(agent, "SendMessage", &q), 0);
    assert_string_equal(q.authorization, "Bearer tok-2");
    /* revoked: the 401 renews it and the call is repeated once */
    fa2a_revoke_token(agent);
    expect_reply(1, "four", "echo: four");
    assert_int_equal(fa2a_token_requests(agent, NULL, 0, NULL, 0), 3);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    assert_true(ah_logged("renewing the OAuth token"));
    assert_false(ah_logged("S3cr3t-oauth"));
    assert_false(ah_logged("tok-"));
    down();
    /* a wrong secret: a fatal failure naming the endpoint's answer */
    const char *bad[] = {"oauth_client_id", "router", "oauth_client_secret", "wrong", NULL};
    up((fa2a_opts){.speaks = FA_V10, .oauth_client_id = "router", .oauth_client_secret = "right"},
       bad);
    expect_fail(1, "hi", 10000, "fatal", FAILURE);
    assert_true(ah_logged("HTTP 401 (invalid_client)"));
    assert_int_equal(fa2a_count(agent, "SendMessage"), 0);
    assert_false(ah_logged("wrong"));
    down();
}

static void *authorize_later(void *arg) {
    rt_sleep_ms((int)(intptr_t)arg);
    fa2a_authorize(agent);
    return NULL;
}

/* In-task authorization with auth_required_wait_s: the request is shown
 * at once, the task is polled, and the sign-in done out of band lets it
 * complete within the same message. */
static void test_auth_required_continues(void **state) {
    (void)state;
    const char *cfg[] = {"auth_required_wait_s", "10", NULL};
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, cfg);
        pthread_t th;
        pthread_create(&th, NULL, authorize_later, (void *)(intptr_t)600);
        ah_result r = ah_call(be, 1, "authreq", 20000, NULL);
        pthread_join(th, NULL);
        assert_int_equal(r.st, RD_OK);
        assert_string_equal(r.text, "done: authreq");
        assert_true(r.progress >= 1);
        assert_non_null(strstr(r.last_progress, "Please sign in"));
        ah_result_free(&r);
        assert_true(fa2a_count(agent, d == FA_V10 ? "GetTask" : "tasks/get") >= 1);
        down();
    }
}

/* A card requiring an extension routerd lacks: refused (not ready, the
 * reason names it) by default; used with a loud log under warn. */
static void test_required_extension(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10, .required_ext = "https://ext.example/needed"}, NULL);
    rt_sleep_ms(500);
    char why[300];
    assert_int_equal(ah_ready(why, sizeof why), 0);
    assert_non_null(strstr(why, "requires the extension https://ext.example/needed"));
    down();
    const char *cfg[] = {"required_extensions", "warn", NULL};
    up((fa2a_opts){.speaks = FA_V10, .required_ext = "https://ext.example/needed"}, cfg);
    assert_true(ah_wait_ready(1, 5000));
    expect_reply(1, "hi", "echo: hi");
    assert_true(ah_logged("requires the extension https://ext.example/needed"));
    down();
}

/* Card redirects: followed within the origin; to another origin only when
 * credential_origins lists it. */
static void test_card_redirects(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10, .card_redirect = "/cards/agent.json"}, NULL);
    assert_true(ah_wait_ready(1, 5000));
    expect_reply(1, "hi", "echo: hi");
    down();
    int port = rt_free_port();
    char loc[96], origin[64];
    snprintf(loc, sizeof loc, "http://localhost:%d/cards/agent.json", port);
    snprintf(origin, sizeof origin, "http://localhost:%d", port);
    for (int allow = 0; allow < 2; allow++) {
        const char *cfg[] = {"credential_origins", allow ? origin : "", NULL};
        up((fa2a_opts){.speaks = FA_V10, .port = port, .card_redirect = loc}, allow ? cfg : NULL);
        if (allow) {
            assert_true(ah_wait_ready(1, 5000));
        } else {
            rt_sleep_ms(500);
            char why[300];
            assert_int_equal(ah_ready(why, sizeof why), 0);
            assert_non_null(strstr(why, "redirected to another origin"));
        }
        down();
    }
}

/* Cache-Control max-age and ETag: the card is read again when it expires,
 * with If-None-Match (304 keeps it), and a moved endpoint is picked up
 * before any call fails. */
/* HTTP+JSON binding: a card offering only REST is used over REST routes,
 * with bare ProtoJSON bodies, polls by GET and errors read from their
 * ErrorInfo reason. */
static void test_rest_send_poll(void **state) {
    (void)state;
    const char *cfg[] = {"retries", "2", NULL};
    up((fa2a_opts){.speaks = FA_V10, .rest = 1}, cfg);
    assert_true(ah_wait_ready(1, 5000));
    assert_true(ah_logged("HTTP+JSON http://127.0.0.1:"));
    expect_reply(1, "hello", "echo: hello");
    fa_req q;
    assert_int_equal(fa2a_last(agent, NULL, &q), 0);
    assert_string_equal(q.method, "SendMessage");
    assert_string_equal(q.path, "POST /rest/message:send");
    assert_string_equal(q.a2a_version, "1.0");
    assert_string_equal(q.text, "hello");
    assert_int_equal(q.blocking, 0);
    /* the conversation goes on */
    expect_reply(1, "ctx", "ctx=ctx-1 task=none");
    /* a task: polled with GET /tasks/{id} */
    expect_reply(1, "task 200", "done: task 200");
    assert_true(fa2a_count(agent, "GetTask") >= 1);
    assert_int_equal(fa2a_last(agent, "GetTask", &q), 0);
    assert_int_equal(strncmp(q.path, "GET /rest/tasks/task-", 21), 0);
    assert_int_equal(q.history_length, 4);
    assert_string_equal(q.task_id, q.path + 16);
    /* input-required and its answer on the same task */
    expect_reply(1, "ask", "What is your name?");
    expect_reply(1, "Zoe", "Hello, Zoe!");
    expect_fail(1, "fail", 20000, "fatal",
                "The agent could not complete this request.\nthe tool crashed");
    /* failure classes: errors as HTTP statuses with a reason */
    fa2a_clear(agent);
    expect_fail(1, "rpcerr -32603", 20000, "transient", FAILURE);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1); /* may have run: not resent */
    expect_fail(1, "rpcerr -32602", 20000, "fatal", FAILURE);
    expect_fail(1, "rpcerr -32004", 20000, "fatal", FAILURE);
    assert_true(ah_logged("HTTP 400, error -32004"));
    fa2a_clear(agent);
    /* a version refusal does not switch to 0.3: REST is 1.0 only */
    expect_fail(1, "rpcerr -32009", 20000, "fatal", FAILURE);
    assert_int_equal(fa2a_count(agent, NULL), 1);
    expect_fail(1, "http 500", 20000, "transient", FAILURE);
    expect_fail(1, "malformed", 20000, "protocol", FAILURE);
    fa2a_clear(agent);
    expect_reply(1, "flaky 2", "recovered after 2"); /* 503: asked to repeat */
    assert_int_equal(fa2a_count(agent, "SendMessage"), 3);
    down();
}

/* Streams over REST: events are bare StreamResponses; a dropped stream is
 * re-attached; an error event ends it. */
static void test_rest_stream(void **state) {
    (void)state;
    const char *cfg[] = {"stream", "true", NULL};
    up((fa2a_opts){.speaks = FA_V10, .rest = 1, .streaming = 1, .chunk_delay_ms = 2}, cfg);
    assert_true(ah_wait_ready(1, 5000));
    expect_reply(1, "task", "done: task");
    fa_req q;
    assert_int_equal(fa2a_last(agent, "SendStreamingMessage", &q), 0);
    assert_string_equal(q.path, "POST /rest/message:stream");
    assert_string_equal(q.accept, "text/event-stream");
    assert_int_equal(fa2a_count(agent, "GetTask"), 0);
    expect_reply(1, "plain words", "echo: plain words");
    expect_reply(1, "drop", "after drop");
    expect_reply(1, "streamerr", "after error");
    expect_fail(1, "rpcerr -32602", 20000, "fatal", FAILURE);
    down();
}

/* The deadline cancels a REST task with POST /tasks/{id}:cancel; a send
 * that outlives http_timeout_s is waited for, never repeated. */
static void test_rest_cancel_and_long_send(void **state) {
    (void)state;
    const char *cfg[] = {"http_timeout_s", "1", NULL};
    up((fa2a_opts){.speaks = FA_V10, .rest = 1}, cfg);
    assert_true(ah_wait_ready(1, 5000));
    expect_fail(2, "hang", 600, "timeout", TIMEOUT);
    assert_int_equal(fa2a_count(agent, "CancelTask"), 1);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "CancelTask", &q), 0);
    assert_int_equal(strncmp(q.path, "POST /rest/tasks/task-", 22), 0);
    assert_non_null(strstr(q.path, ":cancel"));
    expect_reply(1, "slowtask 2500", "done: slowtask 2500");
    assert_int_equal(fa2a_count(agent, "SendMessage"), 2);
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    down();
    /* binding = rest with card_url = none: REST routes under url */
    fa2a_opts o = {.speaks = FA_V10, .rest = 1};
    agent = fa2a_start(&o);
    assert_non_null(agent);
    ah_reset();
    char url[96];
    snprintf(url, sizeof url, "%s/rest/", fa2a_url(agent));
    ah_cfg("url", url);
    ah_cfg("card_url", "none");
    ah_cfg("binding", "rest");
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_non_null(be);
    expect_reply(1, "hi", "echo: hi");
    assert_int_equal(fa2a_last(agent, NULL, &q), 0);
    assert_string_equal(q.path, "POST /rest/message:send");
    down();
}

/* A REST send cut by a crash is found again with GET /tasks?contextId=
 * after the restart, never sent twice. */
static void test_rest_unknown_send_recovered(void **state) {
    (void)state;
    up((fa2a_opts){.speaks = FA_V10, .rest = 1}, NULL);
    assert_true(ah_wait_ready(1, 5000));
    pthread_t th;
    pthread_create(&th, NULL, stop_later, (void *)(intptr_t)300);
    ah_result r = ah_call_update(be, 3, "slowtask 2500", 20000, NULL, 99);
    pthread_join(th, NULL);
    assert_int_not_equal(r.st, RD_OK);
    ah_result_free(&r);
    ah_shutdown(be);
    ah_hard_stop(0);
    rd_status st;
    rd_error err;
    be = ah_launch(&st, &err);
    assert_true(ah_wait_ready(1, 5000));
    r = ah_call_update(be, 3, "slowtask 2500", 20000, NULL, 99);
    if (r.st != RD_OK) fail_msg("recover: %s", r.err.msg);
    assert_string_equal(r.text, "done: slowtask 2500");
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    assert_int_equal(fa2a_count(agent, "ListTasks"), 1);
    fa_req q;
    assert_int_equal(fa2a_last(agent, "ListTasks", &q), 0);
    assert_string_equal(q.path, "GET /rest/tasks");
    assert_int_equal(fa2a_executions(agent, NULL), 1);
    down();
}

static void test_card_refresh(void **state) {
    (void)state;
    const char *cfg[] = {"card_refresh_min_s", "1", NULL};
    up((fa2a_opts){.speaks = FA_V10, .card_max_age = 1}, cfg);
    assert_true(ah_wait_ready(1, 5000));
    long long end = rt_now_ms() + 8000;
    while (fa2a_card_not_modified(agent) < 1 && rt_now_ms() < end)
        rt_sleep_ms(50);
    assert_true(fa2a_card_not_modified(agent) >= 1);
    expect_reply(1, "hi", "echo: hi");
    fa2a_move(agent, "/rpc2");
    end = rt_now_ms() + 8000;
    while (!ah_logged("/rpc2") && rt_now_ms() < end)
        rt_sleep_ms(50);
    assert_true(ah_logged("/rpc2"));
    expect_reply(1, "moved", "echo: moved");
    assert_int_equal(ah_ready(NULL, 0), 1);
    down();
}

/* ---- files, data and choices (ABI 1.2) ---------------------------------- */

static const char *const DATA_BLOCK = "```json\n{\n  \"total\": 3\n}\n```";
static const char *const FILES =
    "hello.txt|text/plain|10|hello file|-\n"
    "report.pdf|application/pdf|0|-|https://files.example/report.pdf\n";

/* Checks one answer carrying media_parts() of the fake agent. */
static void expect_files(int64_t chat, const char *text, const char *want_text) {
    ah_result r = ah_call(be, chat, text, 20000, NULL);
    if (r.st != RD_OK) fail_msg("'%s': status %d (%s)", text, r.st, r.err.msg);
    char want[300];
    snprintf(want, sizeof want, "%s\n%s", want_text, DATA_BLOCK);
    assert_string_equal(r.text, want);
    assert_non_null(r.files);
    assert_string_equal(r.files, FILES);
    assert_null(r.choices);
    ah_result_free(&r);
}

/* File parts reach the host as attachments (bytes decoded, URLs as
 * URLs), data parts as a JSON block: messages, polled tasks, streams,
 * both dialects and REST. */
static void test_files_in_replies(void **state) {
    (void)state;
    for (int mode = 0; mode < 4; mode++) {
        fa2a_opts o = {.speaks = mode == 1 ? FA_V03 : FA_V10, .streaming = 1};
        if (mode == 3) o.rest = 1;
        const char *cfg[] = {"stream", mode == 2 ? "true" : "false", NULL};
        up(o, cfg);
        expect_files(7, "files", "here are files");
        expect_files(7, "filetask 50", "done: filetask 50");
        down();
    }
}

/* A host without reply_attach: files as lines of text; the
 * record of a message answered keeps those lines for a re-delivery. */
static void test_files_without_attach(void **state) {
    (void)state;
    ah_no_media(1);
    up((fa2a_opts){.speaks = FA_V03}, NULL);
    const char *want = "here are files\n```json\n{\n  \"total\": 3\n}\n```\n"
                       "[file: hello.txt (text/plain, 10 bytes)]\n"
                       "report.pdf: https://files.example/report.pdf";
    expect_reply(8, "files", want);
    down();
    ah_no_media(0);
    /* attached, and the re-delivered update repeats the record's lines */
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    ah_result r = ah_call_update(be, 8, "files", 20000, NULL, 501);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.files, FILES);
    ah_result_free(&r);
    r = ah_call_update(be, 8, "files", 20000, NULL, 501);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, want);
    assert_null(r.files);
    ah_result_free(&r);
    assert_int_equal(fa2a_count(agent, "SendMessage"), 1);
    down();
}

/* A file beyond max_reply_bytes is not attached: a line of text, logged. */
static void test_file_over_cap(void **state) {
    (void)state;
    const char *cfg[] = {"max_reply_bytes", "1024", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    ah_result r = ah_call(be, 12, "bigfile", 20000, NULL);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text,
                        "a big one\n[file: big.bin (application/octet-stream, 3000 bytes)]");
    assert_null(r.files);
    ah_result_free(&r);
    assert_true(ah_logged("over max_reply_bytes; shown as text"));
    down();
}

/* Choices of an input-required question become buttons; a pick
 * (RD_MSG_CHOICE) continues the task. Without reply_choices: a list. */
static void test_choices(void **state) {
    (void)state;
    for (int d = FA_V10; d <= FA_V03; d++) {
        up((fa2a_opts){.speaks = (fa_dialect)d}, NULL);
        ah_result r = ah_call(be, 9, "choose", 20000, NULL);
        assert_int_equal(r.st, RD_OK);
        assert_string_equal(r.text, "Proceed?");
        assert_non_null(r.choices);
        assert_string_equal(r.choices, "yes\nno\n");
        ah_result_free(&r);
        r = ah_call_files(be, 9, "yes", RD_MSG_CHOICE, NULL, 0);
        assert_int_equal(r.st, RD_OK);
        assert_string_equal(r.text, "Hello, yes!");
        ah_result_free(&r);
        fa_req q;
        assert_int_equal(fa2a_last(agent, NULL, &q), 0);
        assert_string_equal(q.task_id, "task-1");
        assert_string_equal(q.text, "yes");
        down();
    }
    /* choices without a question: the notice carries the buttons */
    up((fa2a_opts){.speaks = FA_V03}, NULL);
    ah_result r = ah_call(be, 9, "chooseonly", 20000, NULL);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "The agent needs more information to continue.");
    assert_string_equal(r.choices, "yes\nno\n");
    ah_result_free(&r);
    down();
    ah_no_media(1);
    up((fa2a_opts){.speaks = FA_V10}, NULL);
    expect_reply(9, "choose", "Proceed?\n- yes\n- no");
    expect_reply(9, "no", "Hello, no!");
    down();
    ah_no_media(0);
}

/* Attachments of a request go as file parts (base64 bytes with media
 * type and name, or a URL) in both dialects and over REST; one over
 * max_request_bytes is left out and the agent told so. */
static void test_attachments_sent(void **state) {
    (void)state;
    static const char jpeg[] = "\xff\xd8\xff\xe0JPEG";
    rd_attachment photo = {.size = sizeof photo,
                           .kind = "photo",
                           .mime = "image/jpeg",
                           .name = "p.jpg",
                           .data = jpeg,
                           .len = sizeof jpeg - 1};
    rd_attachment link = {.size = sizeof link, .mime = "text/plain", .url = "https://x.example/a"};
    const rd_attachment *one[] = {&photo};
    const rd_attachment *two[] = {&link, &photo};
    for (int mode = 0; mode < 3; mode++) {
        fa2a_opts o = {.speaks = mode == 1 ? FA_V03 : FA_V10};
        if (mode == 2) o.rest = 1;
        up(o, NULL);
        ah_result r = ah_call_files(be, 10, "look", 0, one, 1);
        assert_int_equal(r.st, RD_OK);
        assert_string_equal(r.text, "echo: look");
        ah_result_free(&r);
        fa_req q;
        assert_int_equal(fa2a_last(agent, NULL, &q), 0);
        assert_string_equal(q.text, "look");
        assert_int_equal(q.nfiles, 1);
        assert_string_equal(q.file_name, "p.jpg");
        assert_string_equal(q.file_mime, "image/jpeg");
        assert_int_equal(q.file_len, (int)sizeof jpeg - 1);
        assert_memory_equal(q.file_data, jpeg, sizeof jpeg - 1);
        /* no caption: the file alone; a URL stays a URL */
        r = ah_call_files(be, 10, "", 0, two, 2);
        assert_int_equal(r.st, RD_OK);
        ah_result_free(&r);
        assert_int_equal(fa2a_last(agent, NULL, &q), 0);
        assert_int_equal(q.nfiles, 2);
        assert_string_equal(q.file_url, "https://x.example/a");
        assert_string_equal(q.text, "");
        down();
    }
    /* too large for max_request_bytes: left out, named in the text */
    const char *cfg[] = {"max_request_bytes", "65536", NULL};
    up((fa2a_opts){.speaks = FA_V10}, cfg);
    size_t n = 100000;
    char *big = calloc(1, n);
    rd_attachment huge = {
        .size = sizeof huge, .mime = "video/mp4", .name = "v.mp4", .data = big, .len = n};
    const rd_attachment *h1[] = {&huge, &photo};
    ah_result r = ah_call_files(be, 11, "watch", 0, h1, 2);
    assert_int_equal(r.st, RD_OK);
    ah_result_free(&r);
    free(big);
    fa_req q;
    assert_int_equal(fa2a_last(agent, NULL, &q), 0);
    assert_int_equal(q.nfiles, 1);
    assert_string_equal(q.file_name, "p.jpg");
    assert_string_equal(q.text,
                        "watch\n[file v.mp4 (video/mp4, 100000 bytes) not sent: too large]");
    assert_true(ah_logged("left out: over max_request_bytes"));
    down();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_outlives_http_timeout),
        cmocka_unit_test(test_unknown_outcome_not_resent),
        cmocka_unit_test(test_redelivered_answer_repeated),
        cmocka_unit_test(test_message_ids_stable),
        cmocka_unit_test(test_record_keys),
        cmocka_unit_test(test_task_resumed_after_restart),
        cmocka_unit_test(test_hard_stop_before_send),
        cmocka_unit_test(test_dead_connection_not_repeated),
        cmocka_unit_test(test_unknown_send_recovered),
        cmocka_unit_test(test_context_forgotten),
        cmocka_unit_test(test_reply_cap),
        cmocka_unit_test(test_credentials_origin),
        cmocka_unit_test(test_stream_refusal_expires),
        cmocka_unit_test(test_oauth_client_credentials),
        cmocka_unit_test(test_auth_required_continues),
        cmocka_unit_test(test_required_extension),
        cmocka_unit_test(test_card_redirects),
        cmocka_unit_test(test_card_refresh),
        cmocka_unit_test(test_rest_send_poll),
        cmocka_unit_test(test_rest_stream),
        cmocka_unit_test(test_rest_unknown_send_recovered),
        cmocka_unit_test(test_rest_cancel_and_long_send),
        cmocka_unit_test(test_message_v10),
        cmocka_unit_test(test_message_v03_old_card),
        cmocka_unit_test(test_conversation_per_chat),
        cmocka_unit_test(test_task_polled_both_dialects),
        cmocka_unit_test(test_blocking_send),
        cmocka_unit_test(test_input_required),
        cmocka_unit_test(test_stale_task_resent),
        cmocka_unit_test(test_auth_required),
        cmocka_unit_test(test_endpoint_moved),
        cmocka_unit_test(test_stream_final_without_close),
        cmocka_unit_test(test_task_failed_rejected),
        cmocka_unit_test(test_rpc_error_classes),
        cmocka_unit_test(test_http_failures),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_flaky_same_message_id),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_stream_side_work),
        cmocka_unit_test(test_polled_progress),
        cmocka_unit_test(test_stream_not_capable),
        cmocka_unit_test(test_dialect_fallback),
        cmocka_unit_test(test_card_problems),
        cmocka_unit_test(test_late_agent),
        cmocka_unit_test(test_agent_restarts),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_default_notice_is_the_routers),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_concurrent_chats),
        cmocka_unit_test(test_finisher_held_up),
        cmocka_unit_test(test_files_in_replies),
        cmocka_unit_test(test_files_without_attach),
        cmocka_unit_test(test_needs_bind),
        cmocka_unit_test(test_file_over_cap),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_attachments_sent),
    };
    if (getenv("A2A_TEST")) cmocka_set_test_filter(getenv("A2A_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
