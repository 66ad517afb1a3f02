/*
 * Agents reach people, end to end: the real routerd with the telegram
 * transport against the fake Bot API, the mock backend as the persona and
 * an [inbound.people] A2A server; the calling agent is
 * tests/interop/inbound_client.mjs on the official @a2a-js/sdk client, in
 * the 1.0 dialect and in 0.3 (the SDK's compat transport). The person
 * answers through the fake Bot API: a message quoting the question, the
 * next message while one question is pending, or a button press.
 *
 * Cases: /healthz with an inbound instance; an answer reaches the agent by
 * polling and by streaming (both dialects), with the events and log lines
 * it leaves; buttons; a notification (bearer and API key); an expired
 * question and its metrics; two questions in one chat answered out of
 * order, with re-attached streams; a wrong or missing token (401), a
 * forbidden or unknown skill (-32602), another caller's task (-32001),
 * cancel; limits (503, 429, 413, media type, broken JSON); retried and
 * raced messageIds making no second question; a group chat; kill -9 with
 * questions pending, an answer while down and one after the restart, each
 * question sent once. Exits 77 (skipped) when node, npm or the npm
 * packages are not available.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"
#include "test_inbound_util.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TG_TOKEN "727272:AAinboundBotSecret-x_q"
#define PLANNER "planner-T0ken-3f9a1c77"
#define AUDITOR "auditor-T0ken-81bd20e4"
/* The people's chats; never in the card, the logs or the answers. */
#define ALICE 7700501
#define BOB 7700502
#define ONCALL (-1007700503LL) /* a supergroup */

static rt_fix *fx;
static ftg *F;
static rt_fix_spec fix = {.fx = &fx, .tg_token = TG_TOKEN, .tg = &F};
static const char *const env[] = {"TG_TOKEN=" TG_TOKEN, "PLANNER_TOKEN=" PLANNER,
                                  "AUDITOR_TOKEN=" AUDITOR, NULL};

static int inport; /* the inbound listener */

/* ------------------------------------------------------------------------ */
/* routerd                                                                   */

/* The manifest: telegram in, an echoing persona, metrics, and the people
 * alice, bob (planner may reach them) and oncall (auditor only). */
static void manifest(const char *inbound_extra) {
    inport = rt_free_port();
    snprintf(ie_base, sizeof ie_base, "http://127.0.0.1:%d", inport);
    assert_non_null(
        rt_fix_manifest(fx,
                        "rate_limit_per_minute = 0\ndrain_timeout_s = 5\n"
                        "[transport.main]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                        "throttle = off\ntyping = false\ntimeout = 1\n"
                        "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\n"
                        "[persona.p]\nbackend = echo\nchats = *\n"
                        "[sink.metrics]\nplugin = prometheus\n"
                        "[sink.log]\nplugin = jsonlog\npath = %s/events.jsonl\n"
                        "[inbound.people]\nplugin = a2a\nlisten = 127.0.0.1:%d\nname = routerd\n"
                        "description = People reachable through routerd\n"
                        "humans = alice=main:%d, bob=main:%d, oncall=main:%lld\n"
                        "callers = planner=${PLANNER_TOKEN}, auditor=${AUDITOR_TOKEN}\n"
                        "allow = planner:alice+bob, auditor:oncall\n%s",
                        ftg_base(F), fx->dir, inport, ALICE, BOB, (long long)ONCALL,
                        inbound_extra ? inbound_extra : ""));
}

/* Starts (or restarts) routerd and waits for the card (readiness has a
 * case of its own, test_ready). */
static rt_proc *start(void) {
    rt_proc *p = rt_fix_start(fx, env, 0);
    assert_non_null(p);
    ie_tg = F;
    ie_routerd = p;
    char url[128];
    snprintf(url, sizeof url, "%s/.well-known/agent-card.json", ie_base);
    if (!rt_wait_http(url, 200, 15000)) {
        fprintf(stderr, "no card at %s\nstderr:\n%s\n", url, rt_stderr(p));
        fail_msg("the inbound listener did not come up");
    }
    /* The transport polls: the bot's commands are registered at start. */
    assert_true(ftg_wait_count(F, "setMyCommands", 1, 10000) >= 1);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                     */

/* The value of the first series of name whose labels contain every one of
 * want (NULL-terminated), or -1. */
static double metric(const char *text, const char *name, const char *const *want) {
    size_t n = strlen(name);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, n) || (l[n] != '{' && l[n] != ' ')) continue;
        const char *eol = strchr(l, '\n');
        size_t len = eol ? (size_t)(eol - l) : strlen(l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        int ok = 1;
        for (size_t i = 0; want && want[i]; i++)
            ok = ok && strstr(line, want[i]);
        if (ok) return strtod(strrchr(line, ' ') + 1, NULL);
    }
    return -1;
}

/* One question, answered; what the agent sees, by polling (ask) or
 * streaming (stream), in one dialect. quote: the person quotes the
 * question; otherwise it is the only one pending and the next message
 * answers it. */
static void one_answer(const char *dialect, const char *mode, int quote, char *id, size_t idn) {
    char text[128], answer[128];
    snprintf(text, sizeof text, "Ship release %s via %s?", dialect, mode);
    snprintf(answer, sizeof answer, "Yes, ship it (%s %s)", dialect, mode);
    rt_proc *c = cli_start(PLANNER, (const char *const[]){mode, "--dialect", dialect, "--skill",
                                                          "alice", "--text", text, NULL});
    char *mk = NULL;
    int64_t q = question(ALICE, qtext("planner", text), 15000, &mk);
    /* A question waits for an answer: Telegram's force_reply. */
    assert_non_null(mk);
    assert_non_null(strstr(mk, "force_reply"));
    free(mk);
    assert_true(rt_wait_stdout(c, "\"input-required\"", 10000));
    if (quote)
        ftg_add_reply(F, ALICE, q, answer);
    else
        ftg_add_text(F, ALICE, answer);
    cJSON *l = cli_done(c, 0);

    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), answer);
    assert_true(cJSON_IsString(jget(ev(l, "final", -1), "task.answeredAt")));
    snprintf(id, idn, "%s", evs(l, "final", -1, "task.id"));
    int v10 = !strcmp(dialect, "1.0");
    if (!strcmp(mode, "ask")) {
        /* Blocking send: back once delivered, the question as status. */
        assert_string_equal(evs(l, "sent", 0, "task.state"), "input-required");
        assert_string_equal(evs(l, "sent", 0, "task.statusText"), qtext("planner", text));
        assert_string_equal(evs(l, "sent", 0, "task.statusRole"), "agent");
        /* History: the caller's message and the question, nothing else. */
        const cJSON *h = jget(ev(l, "final", -1), "task.history");
        assert_true(cJSON_GetArraySize(h) <= 2);
        const cJSON *m;
        cJSON_ArrayForEach(m, h) {
            const char *t = jstr(m, "text");
            assert_true(!strcmp(t, text) || !strcmp(t, qtext("planner", text)));
        }
        assert_non_null(wire(l, v10 ? "SendMessage" : "message/send"));
        assert_non_null(wire(l, v10 ? "GetTask" : "tasks/get"));
        assert_true(wire_state(l, v10 ? "GetTask" : "tasks/get",
                               v10 ? "TASK_STATE_COMPLETED" : "completed"));
    } else {
        /* The Task first, then input-required, the answer, completed. */
        assert_string_equal(evs(l, "stream", 0, "kind"), "task");
        int seen_ir = 0, seen_art = 0, last_completed = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, l) {
            if (strcmp(jstr(e, "event"), "stream")) continue;
            const char *k = jstr(e, "kind");
            if ((!strcmp(k, "status") || !strcmp(k, "task")) &&
                !strcmp(jstr(e, "state"), "input-required"))
                seen_ir = 1;
            if (!strcmp(k, "artifact")) {
                assert_true(seen_ir);
                assert_string_equal(jstr(e, "text"), answer);
                seen_art = 1;
            }
            last_completed = !strcmp(k, "status") && !strcmp(jstr(e, "state"), "completed");
        }
        assert_true(seen_ir && seen_art && last_completed);
        const cJSON *w = wire(l, v10 ? "SendStreamingMessage" : "message/stream");
        assert_non_null(w);
        assert_non_null(strstr(jstr(w, "contentType"), "text/event-stream"));
        if (!v10) { /* 0.3 marks the last event final */
            const cJSON *fin = cJSON_GetObjectItemCaseSensitive(w, "finals");
            assert_true(cJSON_IsTrue(cJSON_GetArrayItem(fin, cJSON_GetArraySize(fin) - 1)));
        }
        assert_true(wire_state(l, v10 ? "SendStreamingMessage" : "message/stream",
                               v10 ? "TASK_STATE_INPUT_REQUIRED" : "input-required"));
    }
    /* The answer went to the agent, not to the persona. */
    char echo[160];
    snprintf(echo, sizeof echo, "echo: %s", answer);
    assert_int_equal(sent_count(ALICE, echo), 0);
    assert_int_equal(sent_count(ALICE, qtext("planner", text)), 1);
    cJSON_Delete(l);
}

/* /healthz turns 200 once every instance is ready, the inbound one too
 * (it counts for readiness like a backend: docs/plugin-guide.md). */
static void test_ready(void **state) {
    (void)state;
    manifest(NULL);
    start();
    if (!rt_wait_http(rt_fix_url(fx, "/healthz"), 200, 10000)) {
        char *body = NULL;
        rt_http("GET", rt_fix_url(fx, "/healthz"), NULL, NULL, &body);
        fprintf(stderr, "/healthz: %s\n", body ? body : "-");
        free(body);
        fail_msg("routerd with an [inbound] section never got ready");
    }
}

static void test_answer_poll_and_stream(void **state) {
    (void)state;
    manifest(NULL);
    start();
    char ids[4][96];
    one_answer("1.0", "ask", 1, ids[0], sizeof ids[0]);
    one_answer("0.3", "ask", 0, ids[1], sizeof ids[1]);
    one_answer("1.0", "stream", 0, ids[2], sizeof ids[2]);
    one_answer("0.3", "stream", 1, ids[3], sizeof ids[3]);
    /* Nothing pending now: the person's next message is the persona's. */
    expect_echo(ALICE, 0, "thanks");
    assert_int_equal(sent_prefix(ALICE, "echo: "), 1);
    /* Metrics: calls per caller, method and dialect; four answer times. */
    char *body = NULL;
    assert_int_equal(rt_http("GET", rt_fix_url(fx, "/metrics"), NULL, NULL, &body), 200);
    const char *const ok10[] = {"caller=\"planner\"", "method=\"SendMessage\"", "outcome=\"ok\"",
                                NULL};
    const char *const ok03[] = {"caller=\"planner\"", "method=\"message/stream\"", "outcome=\"ok\"",
                                NULL};
    assert_true(metric(body, "routerd_inbound_requests_total", ok10) >= 1);
    assert_true(metric(body, "routerd_inbound_requests_total", ok03) >= 1);
    assert_true(metric(body, "routerd_inbound_answer_seconds_count", NULL) == 4);
    assert_true(metric(body, "routerd_inbound_pending", NULL) == 0);
    free(body);
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    /* No token and no chat id in the log. */
    const char *err = rt_stderr(fx->p);
    assert_null(strstr(err, PLANNER));
    assert_null(strstr(err, "AAinboundBotSecret"));
    assert_null(strstr(err, "7700501"));
    /* The events: each question delivered under its task id, each answer
     * taken by the inbound instance under that same id, both naming the
     * caller; log lines name caller and task. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/events.jsonl", fx->dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int delivered = 0, answered = 0, answered_task = 0, named = 0;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        assert_null(strstr(line, PLANNER));
        assert_null(strstr(line, "7700501"));
        int inb = strstr(line, "\"backend\":\"inbound.people\"") != NULL;
        int caller = strstr(line, "\"caller\":\"planner\"") != NULL;
        int is_answer = inb && strstr(line, "\"status\":\"answered\"") != NULL;
        answered += is_answer;
        for (int i = 0; i < 4; i++) {
            char want[512];
            snprintf(want, sizeof want, "\"correlation_id\":\"%s\"", ids[i]);
            delivered +=
                inb && caller && strstr(line, want) && strstr(line, "\"status\":\"delivered\"");
            answered_task += is_answer && caller && strstr(line, want);
            snprintf(want, sizeof want, "task %s from planner", ids[i]);
            named += strstr(line, want) != NULL;
        }
    }
    fclose(f);
    assert_int_equal(delivered, 4);
    assert_int_equal(answered, 4);
    assert_int_equal(answered_task, 4);
    assert_true(named >= 8); /* stored, delivered, answered */
}

static void test_buttons(void **state) {
    (void)state;
    manifest(NULL);
    start();
    /* 1.0, polling: the choices are buttons; the press is the answer. */
    rt_proc *c = cli_start(PLANNER, (const char *const[]){"ask", "--skill", "alice", "--text",
                                                          "Roll back the canary?", "--choices",
                                                          "[\"Approve\",\"Reject\"]", NULL});
    char *mk = NULL;
    int64_t q = question(ALICE, qtext("planner", "Roll back the canary?"), 15000, &mk);
    assert_non_null(mk);
    assert_non_null(strstr(mk, "inline_keyboard"));
    assert_non_null(strstr(mk, "\"Approve\""));
    assert_non_null(strstr(mk, "\"Reject\""));
    free(mk);
    assert_true(rt_wait_stdout(c, "\"input-required\"", 10000));
    assert_true(ftg_press_button(F, ALICE, ALICE, q, "Reject") > 0);
    cJSON *l = cli_done(c, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "Reject");
    char id[96];
    snprintf(id, sizeof id, "%s", evs(l, "final", -1, "task.id"));
    cJSON_Delete(l);
    assert_true(ftg_wait_count(F, "answerCallbackQuery", 1, 10000) >= 1);

    /* A second press on the answered question is taken and dropped: no
     * persona run, the answer stays. */
    assert_true(ftg_press_button(F, ALICE, ALICE, q, "Approve") > 0);
    assert_true(ftg_wait_count(F, "answerCallbackQuery", 2, 10000) >= 2);
    expect_echo(ALICE, 0, "sync point");
    assert_int_equal(sent_prefix(ALICE, "echo: "), 1);
    l = cli(PLANNER, (const char *const[]){"get", "--task", id, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "Reject");
    cJSON_Delete(l);

    /* 0.3, streaming, to bob. */
    c = cli_start(PLANNER, (const char *const[]){"stream", "--dialect", "0.3", "--skill", "bob",
                                                 "--text", "Page the DBA now?", "--choices",
                                                 "[\"Now\",\"Later\"]", NULL});
    q = question(BOB, qtext("planner", "Page the DBA now?"), 15000, NULL);
    assert_true(rt_wait_stdout(c, "\"input-required\"", 10000));
    assert_true(ftg_press_button(F, BOB, BOB, q, "Later") > 0);
    l = cli_done(c, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "stream", -1, "state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "Later");
    const cJSON *w = wire(l, "message/stream");
    assert_non_null(w);
    const cJSON *meta = jget(w, "meta.choices");
    assert_int_equal(cJSON_GetArraySize(meta), 2);
    cJSON_Delete(l);
    assert_int_equal(sent_prefix(BOB, "echo: "), 0);
}

static void test_notification(void **state) {
    (void)state;
    manifest(NULL);
    start();
    /* Bearer, 1.0: completes once delivered, nothing to answer. */
    cJSON *l = cli(PLANNER,
                   (const char *const[]){"ask", "--notify", "--skill", "bob", "--text",
                                         "FYI: the deploy finished", NULL},
                   0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_int_equal((int)jnum(ev(l, "final", -1), "task.artifacts"), 0);
    cJSON_Delete(l);
    char *mk = NULL;
    question(BOB, "Message from planner:\n\nFYI: the deploy finished", 5000, &mk);
    assert_true(!mk || !strstr(mk, "force_reply"));
    free(mk);
    /* API key, 0.3. */
    l = cli(PLANNER,
            (const char *const[]){"ask", "--dialect", "0.3", "--auth", "apikey", "--notify",
                                  "--skill", "bob", "--text", "FYI: rollback done", NULL},
            0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_true(wire_state(l, "message/send", "completed") ||
                wire_state(l, "tasks/get", "completed"));
    cJSON_Delete(l);
    question(BOB, "Message from planner:\n\nFYI: rollback done", 5000, NULL);
    /* Nothing pending: bob's message is the persona's. */
    expect_echo(BOB, 0, "ok noted");
}

static void test_expired_question(void **state) {
    (void)state;
    manifest("answer_timeout = 2s\n");
    start();
    cJSON *l =
        cli(PLANNER,
            (const char *const[]){"ask", "--skill", "alice", "--text", "Anyone awake?", NULL}, 0);
    assert_string_equal(evs(l, "sent", 0, "task.state"), "input-required");
    assert_string_equal(evs(l, "final", -1, "task.state"), "failed");
    assert_non_null(strstr(evs(l, "final", -1, "task.statusText"), "no answer within"));
    assert_true(wire_state(l, "GetTask", "TASK_STATE_FAILED"));
    cJSON_Delete(l);
    l = cli(PLANNER,
            (const char *const[]){"stream", "--dialect", "0.3", "--skill", "bob", "--text",
                                  "Still there?", NULL},
            0);
    assert_string_equal(evs(l, "stream", -1, "state"), "failed");
    assert_true(wire_state(l, "message/stream", "failed"));
    cJSON_Delete(l);
    /* A late answer quoting the expired question is the persona's. */
    int64_t q = question(ALICE, qtext("planner", "Anyone awake?"), 1000, NULL);
    expect_echo(ALICE, q, "sorry, was away");

    char url[96], *body = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", fx->port);
    assert_int_equal(rt_http("GET", url, NULL, NULL, &body), 200);
    assert_true(metric(body, "routerd_inbound_expired_total",
                       (const char *const[]){"caller=\"planner\"", NULL}) >= 2);
    assert_true(metric(body, "routerd_inbound_pending", NULL) == 0);
    assert_true(metric(body, "routerd_inbound_requests_total",
                       (const char *const[]){"caller=\"planner\"", NULL}) >= 1);
    free(body);
}

static void test_two_questions_out_of_order(void **state) {
    (void)state;
    manifest(NULL);
    start();
    cJSON *a = cli(PLANNER,
                   (const char *const[]){"ask", "--no-poll", "--skill", "alice", "--text",
                                         "First: restart the cache?", NULL},
                   0);
    cJSON *b = cli(PLANNER,
                   (const char *const[]){"ask", "--no-poll", "--dialect", "0.3", "--skill", "alice",
                                         "--text", "Second: rotate the keys?", NULL},
                   0);
    char ida[96], idb[96];
    snprintf(ida, sizeof ida, "%s", evs(a, "final", -1, "task.id"));
    snprintf(idb, sizeof idb, "%s", evs(b, "final", -1, "task.id"));
    assert_string_equal(evs(a, "final", -1, "task.state"), "input-required");
    assert_string_equal(evs(b, "final", -1, "task.state"), "input-required");
    assert_string_not_equal(ida, idb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    int64_t q1 = question(ALICE, qtext("planner", "First: restart the cache?"), 5000, NULL);
    int64_t q2 = question(ALICE, qtext("planner", "Second: rotate the keys?"), 5000, NULL);

    /* Two pending, no quote: not an answer, the persona's. */
    expect_echo(ALICE, 0, "which one?");

    /* The agent re-attaches to the first (1.0 SubscribeToTask) and polls
     * the second (0.3 tasks/get); the person answers the second first. */
    rt_proc *s1 = cli_start(PLANNER, (const char *const[]){"subscribe", "--task", ida, NULL});
    rt_proc *s2 =
        cli_start(PLANNER, (const char *const[]){"wait", "--dialect", "0.3", "--task", idb, NULL});
    assert_true(rt_wait_stdout(s1, "\"input-required\"", 10000));
    assert_true(rt_wait_stdout(s2, "\"input-required\"", 10000));
    ftg_add_reply(F, ALICE, q2, "keys: yes");
    cJSON *l2 = cli_done(s2, 0);
    assert_string_equal(evs(l2, "final", -1, "task.answer"), "keys: yes");
    assert_non_null(wire(l2, "tasks/get"));
    cJSON_Delete(l2);
    /* Only one left: it is answered with or without a quote. */
    ftg_add_reply(F, ALICE, q1, "cache: no");
    cJSON *l1 = cli_done(s1, 0);
    assert_string_equal(evs(l1, "stream", 0, "kind"), "task");
    assert_string_equal(evs(l1, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l1, "final", -1, "task.answer"), "cache: no");
    assert_non_null(wire(l1, "SubscribeToTask"));
    cJSON_Delete(l1);
    assert_int_equal(sent_prefix(ALICE, "echo: "), 1);
}

static void test_refused(void **state) {
    (void)state;
    manifest(NULL);
    rt_proc *p = start();

    /* The card: public, both dialects, both schemes, people as skills,
     * never a chat id. */
    cJSON *l = cli(NULL, (const char *const[]){"card", NULL}, 0);
    const cJSON *card = ev(l, "card", 0);
    assert_int_equal((int)jnum(card, "http"), 200);
    assert_int_equal((int)jnum(card, "legacyHttp"), 200);
    assert_true(cJSON_IsTrue(jget(card, "card.capabilities.streaming")));
    assert_non_null(jget(card, "card.securitySchemes.bearer"));
    assert_non_null(jget(card, "card.securitySchemes.apiKey"));
    assert_string_equal(jstr(card, "card.preferredTransport"), "JSONRPC");
    assert_true(strlen(jstr(card, "card.url")) > 0);
    assert_true(strlen(jstr(card, "card.protocolVersion")) > 0);
    assert_true(cJSON_GetArraySize(jget(card, "card.supportedInterfaces")) >= 1);
    const cJSON *skills = jget(card, "skills");
    assert_int_equal(cJSON_GetArraySize(skills), 3);
    const cJSON *sk;
    cJSON_ArrayForEach(sk, jget(card, "card.skills")) {
        char *tags = cJSON_PrintUnformatted(jget(sk, "tags"));
        assert_non_null(tags);
        assert_non_null(strstr(tags, "\"human\""));
        free(tags);
    }
    char *txt = cJSON_PrintUnformatted(card);
    assert_null(strstr(txt, "7700501"));
    assert_null(strstr(txt, "7700503"));
    free(txt);
    cJSON_Delete(l);

    /* Wrong token, no token: 401 with WWW-Authenticate, a JSON-RPC body. */
    for (int i = 0; i < 2; i++) {
        l = cli(i ? NULL : "not-the-token",
                (const char *const[]){"ask", "--skill", "alice", "--text", "let me in", NULL}, 2);
        const cJSON *e = ev(l, "error", 0);
        assert_non_null(e);
        assert_int_equal((int)jnum(e, "http"), 401);
        assert_int_equal(strncmp(jstr(e, "wwwAuthenticate"), "Bearer", 6), 0);
        assert_true(cJSON_IsNumber(jget(e, "code")));
        cJSON_Delete(l);
    }
    /* A chat the caller may not reach and one that does not exist: the
     * same error, in both dialects. */
    const char *const forb[][2] = {{"oncall", "1.0"}, {"nobody", "1.0"}, {"oncall", "0.3"}};
    for (int i = 0; i < 3; i++) {
        l = cli(PLANNER,
                (const char *const[]){"ask", "--dialect", forb[i][1], "--skill", forb[i][0],
                                      "--text", "let me in", NULL},
                2);
        assert_int_equal((int)jnum(ev(l, "error", 0), "code"), -32602);
        assert_string_equal(jstr(ev(l, "error", 0), "message"), "unknown or forbidden skill");
        cJSON_Delete(l);
    }
    assert_int_equal(sent_prefix(ONCALL, ""), 0);
    assert_int_equal(sent_prefix(ALICE, ""), 0);

    /* A task is its creator's only: TaskNotFound for anyone else. */
    l = cli(PLANNER,
            (const char *const[]){"ask", "--no-poll", "--skill", "alice", "--text",
                                  "Cancel me later?", NULL},
            0);
    char id[96];
    snprintf(id, sizeof id, "%s", evs(l, "final", -1, "task.id"));
    cJSON_Delete(l);
    int64_t q = question(ALICE, qtext("planner", "Cancel me later?"), 5000, NULL);
    const char *const *other[] = {
        (const char *const[]){"get", "--task", id, NULL},
        (const char *const[]){"cancel", "--task", id, NULL},
        (const char *const[]){"ask", "--task-id", id, "--skill", "oncall", "--text", "mine?", NULL},
        (const char *const[]){"subscribe", "--task", id, NULL},
        (const char *const[]){"subscribe", "--dialect", "0.3", "--task", id, NULL},
    };
    for (int i = 0; i < 5; i++) {
        l = cli(AUDITOR, other[i], 2);
        assert_int_equal((int)jnum(ev(l, "error", 0), "code"), -32001);
        cJSON_Delete(l);
    }
    /* The creator cancels; a stream held on the task ends canceled; a
     * terminal task is not cancelable. */
    rt_proc *sub = cli_start(PLANNER, (const char *const[]){"subscribe", "--task", id, NULL});
    assert_true(rt_wait_stdout(sub, "\"input-required\"", 10000));
    l = cli(PLANNER, (const char *const[]){"cancel", "--dialect", "0.3", "--task", id, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "canceled");
    assert_true(wire_state(l, "tasks/cancel", "canceled"));
    cJSON_Delete(l);
    l = cli_done(sub, 0);
    assert_string_equal(evs(l, "stream", -1, "state"), "canceled");
    cJSON_Delete(l);
    l = cli(PLANNER, (const char *const[]){"cancel", "--task", id, NULL}, 2);
    assert_int_equal((int)jnum(ev(l, "error", 0), "code"), -32002);
    cJSON_Delete(l);
    /* Nothing pending: a quote of the canceled question is the persona's. */
    expect_echo(ALICE, q, "too late?");

    /* Tokens masked: the log and --print-config. */
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_null(strstr(rt_stderr(p), PLANNER));
    assert_null(strstr(rt_stderr(p), AUDITOR));
    rt_proc *pc = rt_start(fx->manifest, (const char *const[]){"--print-config", NULL}, env);
    assert_int_equal(rt_wait(pc, 15000), 0);
    assert_non_null(strstr(rt_stdout(pc), "callers"));
    assert_null(strstr(rt_stdout(pc), PLANNER));
    assert_null(strstr(rt_stdout(pc), AUDITOR));
    rt_free(pc);
}

/* Limits answer with HTTP statuses a client can act on. */
static void test_limits(void **state) {
    (void)state;
    manifest("rate_limit_per_minute = 3\nmax_pending_per_chat = 1\nmax_body_bytes = 1024\n");
    start();
    cJSON *l = cli(PLANNER,
                   (const char *const[]){"ask", "--no-poll", "--skill", "alice", "--text",
                                         "One at a time?", NULL},
                   0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "input-required");
    cJSON_Delete(l);
    /* alice's chat is full: 503 + Retry-After, nothing sent. */
    l = cli(PLANNER,
            (const char *const[]){"ask", "--dialect", "0.3", "--skill", "alice", "--text",
                                  "And another?", NULL},
            2);
    const cJSON *e = ev(l, "error", 0);
    assert_int_equal((int)jnum(e, "http"), 503);
    assert_true(atoi(jstr(e, "retryAfter")) > 0);
    cJSON_Delete(l);
    assert_int_equal(sent_count(ALICE, qtext("planner", "And another?")), 0);
    /* The third new task this minute is the last one planner may send. */
    l = cli(PLANNER,
            (const char *const[]){"ask", "--no-poll", "--skill", "bob", "--text", "Bob, ok?", NULL},
            0);
    cJSON_Delete(l);
    l = cli(PLANNER,
            (const char *const[]){"ask", "--notify", "--skill", "bob", "--text", "Too many", NULL},
            2);
    e = ev(l, "error", 0);
    assert_int_equal((int)jnum(e, "http"), 429);
    assert_true(atoi(jstr(e, "retryAfter")) > 0);
    cJSON_Delete(l);
    assert_int_equal(sent_prefix(BOB, "Message from planner"), 0);
    /* Another caller has its own budget; a body over max_body_bytes is 413. */
    char big[1400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    l = cli(AUDITOR, (const char *const[]){"ask", "--skill", "oncall", "--text", big, NULL}, 2);
    assert_int_equal((int)jnum(ev(l, "error", 0), "http"), 413);
    cJSON_Delete(l);
    /* Not JSON: -32005 for another media type, -32700 for a broken body. */
    char url[96], *body = NULL;
    snprintf(url, sizeof url, "%s/", ie_base);
    const char *const h1[] = {"Authorization: Bearer " AUDITOR, "Content-Type: text/plain", NULL};
    assert_int_equal(rt_http("POST", url, "{}", h1, &body), 200);
    assert_non_null(strstr(body, "-32005"));
    free(body);
    const char *const h2[] = {"X-API-Key: " AUDITOR, "Content-Type: application/json", NULL};
    assert_int_equal(rt_http("POST", url, "{\"jsonrpc\":", h2, &body), 200);
    assert_non_null(strstr(body, "-32700"));
    free(body);
    assert_int_equal(sent_prefix(ONCALL, ""), 0);
}

static void test_dedupe(void **state) {
    (void)state;
    manifest(NULL);
    start();
    const char *const args[] = {"ask",    "--no-poll",           "--skill",
                                "bob",    "--message-id",        "m-42",
                                "--text", "Is the on-call set?", NULL};
    cJSON *a = cli(PLANNER, args, 0);
    cJSON *b = cli(PLANNER, args, 0);
    assert_string_equal(evs(a, "final", -1, "task.id"), evs(b, "final", -1, "task.id"));
    /* The same messageId from the other dialect: the same task. */
    const char *const args03[] = {
        "ask",  "--no-poll", "--dialect",           "0.3", "--skill", "bob", "--message-id",
        "m-42", "--text",    "Is the on-call set?", NULL};
    cJSON *c = cli(PLANNER, args03, 0);
    assert_string_equal(evs(a, "final", -1, "task.id"), evs(c, "final", -1, "task.id"));
    /* Two retries at once: still the one task. */
    const char *const again[] = {"ask",    "--no-poll",           "--skill",
                                 "bob",    "--message-id",        "m-42",
                                 "--text", "Is the on-call set?", NULL};
    rt_proc *r1 = cli_start(PLANNER, again), *r2 = cli_start(PLANNER, again);
    cJSON *x1 = cli_done(r1, 0), *x2 = cli_done(r2, 0);
    assert_string_equal(evs(x1, "final", -1, "task.id"), evs(a, "final", -1, "task.id"));
    assert_string_equal(evs(x2, "final", -1, "task.id"), evs(a, "final", -1, "task.id"));
    cJSON_Delete(x1);
    cJSON_Delete(x2);
    /* Another caller's messageId space is its own. */
    cJSON *d = cli(AUDITOR,
                   (const char *const[]){"ask", "--no-poll", "--skill", "oncall", "--message-id",
                                         "m-42", "--text", "Is the on-call set?", NULL},
                   0);
    assert_string_not_equal(evs(a, "final", -1, "task.id"), evs(d, "final", -1, "task.id"));
    char id[96];
    snprintf(id, sizeof id, "%s", evs(a, "final", -1, "task.id"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(d);
    question(BOB, qtext("planner", "Is the on-call set?"), 5000, NULL);
    question(ONCALL, qtext("auditor", "Is the on-call set?"), 5000, NULL);
    rt_sleep_ms(300);
    assert_int_equal(sent_count(BOB, qtext("planner", "Is the on-call set?")), 1);
    ftg_add_text(F, BOB, "yes, Carol");
    cJSON *l = cli(PLANNER, (const char *const[]){"wait", "--task", id, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "yes, Carol");
    cJSON_Delete(l);
    /* A new messageId sent twice at the same moment: one task, one question. */
    const char *const race[] = {"ask",    "--no-poll", "--skill", "alice", "--message-id",
                                "race-7", "--text",    "Race?",   NULL};
    rt_proc *q1p = cli_start(PLANNER, race), *q2p = cli_start(PLANNER, race);
    cJSON *y1 = cli_done(q1p, 0), *y2 = cli_done(q2p, 0);
    assert_string_equal(evs(y1, "final", -1, "task.id"), evs(y2, "final", -1, "task.id"));
    cJSON_Delete(y1);
    cJSON_Delete(y2);
    question(ALICE, qtext("planner", "Race?"), 5000, NULL);
    rt_sleep_ms(300);
    assert_int_equal(sent_count(ALICE, qtext("planner", "Race?")), 1);
    /* A retry after the answer: the answered task, still no second question. */
    l = cli(PLANNER, args, 0);
    assert_string_equal(evs(l, "final", -1, "task.id"), id);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    cJSON_Delete(l);
    assert_int_equal(sent_count(BOB, qtext("planner", "Is the on-call set?")), 1);
}

/* A group chat: only messages addressed to the bot reach routerd, so the
 * person answers by replying to the question or with its buttons. */
static void test_group_chat(void **state) {
    (void)state;
    manifest(NULL);
    start();
    rt_proc *c = cli_start(AUDITOR, (const char *const[]){"ask", "--skill", "oncall", "--text",
                                                          "Who takes the 2am page?", NULL});
    char *mk = NULL;
    int64_t q = question(ONCALL, qtext("auditor", "Who takes the 2am page?"), 15000, &mk);
    assert_non_null(mk);
    assert_non_null(strstr(mk, "force_reply"));
    free(mk);
    assert_true(rt_wait_stdout(c, "\"input-required\"", 10000));
    /* Chatter in the group, not addressed to the bot: not an answer. */
    ftg_msg chatter = {.chat_id = ONCALL, .user_id = 4242, .text = "brb"};
    ftg_add_message(F, &chatter);
    ftg_msg reply = {
        .chat_id = ONCALL, .user_id = 4243, .text = "I will", .reply_to_message_id = q};
    ftg_add_message(F, &reply);
    cJSON *l = cli_done(c, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "I will");
    cJSON_Delete(l);
    /* Buttons in the group, pressed by a member. */
    c = cli_start(AUDITOR, (const char *const[]){"stream", "--skill", "oncall", "--text",
                                                 "Escalate to the vendor?", "--choices",
                                                 "[\"Escalate\",\"Wait\"]", NULL});
    q = question(ONCALL, qtext("auditor", "Escalate to the vendor?"), 15000, NULL);
    assert_true(rt_wait_stdout(c, "\"input-required\"", 10000));
    assert_true(ftg_press_button(F, ONCALL, 4242, q, "Wait") > 0);
    l = cli_done(c, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "Wait");
    cJSON_Delete(l);
    assert_int_equal(sent_prefix(ONCALL, "echo: "), 0);
}

static void test_kill9_restart(void **state) {
    (void)state;
    manifest(NULL);
    rt_proc *p = start();
    const char *const qa[] = {"ask",
                              "--no-poll",
                              "--skill",
                              "alice",
                              "--message-id",
                              "keep-1",
                              "--text",
                              "Approve the schema change?",
                              NULL};
    cJSON *a = cli(PLANNER, qa, 0);
    cJSON *b = cli(PLANNER,
                   (const char *const[]){"ask", "--no-poll", "--dialect", "0.3", "--skill", "bob",
                                         "--text", "Can you take the pager tonight?", NULL},
                   0);
    cJSON *c = cli(PLANNER,
                   (const char *const[]){"ask", "--no-poll", "--skill", "alice", "--text",
                                         "Is the freeze over?", NULL},
                   0);
    char ida[96], idb[96], idc[96];
    snprintf(ida, sizeof ida, "%s", evs(a, "final", -1, "task.id"));
    snprintf(idb, sizeof idb, "%s", evs(b, "final", -1, "task.id"));
    snprintf(idc, sizeof idc, "%s", evs(c, "final", -1, "task.id"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    int64_t qa_id = question(ALICE, qtext("planner", "Approve the schema change?"), 5000, NULL);
    question(BOB, qtext("planner", "Can you take the pager tonight?"), 5000, NULL);
    int64_t qc_id = question(ALICE, qtext("planner", "Is the freeze over?"), 5000, NULL);
    /* One answered before the crash. */
    ftg_add_reply(F, ALICE, qc_id, "freeze is over");
    cJSON *l = cli(PLANNER, (const char *const[]){"wait", "--task", idc, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.answer"), "freeze is over");
    cJSON_Delete(l);

    rt_signal(p, SIGKILL);
    assert_int_equal(rt_wait(p, 10000), 128 + SIGKILL);
    /* Alice answers while routerd is down: Telegram keeps the update. */
    ftg_add_reply(F, ALICE, qa_id, "approved");
    start();

    /* Nothing lost: the answer given before the crash, the one given while
     * down, and the question still open. */
    l = cli(PLANNER, (const char *const[]){"get", "--task", idc, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "freeze is over");
    cJSON_Delete(l);
    l = cli(PLANNER, (const char *const[]){"wait", "--dialect", "0.3", "--task", ida, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "approved");
    cJSON_Delete(l);
    /* The agent retries its first message: the same task, no new question. */
    l = cli(PLANNER, qa, 0);
    assert_string_equal(evs(l, "final", -1, "task.id"), ida);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    cJSON_Delete(l);
    l = cli(PLANNER, (const char *const[]){"get", "--task", idb, NULL}, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "input-required");
    cJSON_Delete(l);

    /* An answer after the restart completes the last one; the agent
     * re-attached to its stream (0.3 tasks/resubscribe). */
    rt_proc *wb = cli_start(
        PLANNER, (const char *const[]){"subscribe", "--dialect", "0.3", "--task", idb, NULL});
    assert_true(rt_wait_stdout(wb, "\"input-required\"", 10000));
    ftg_add_text(F, BOB, "yes, I have it");
    l = cli_done(wb, 0);
    assert_string_equal(evs(l, "final", -1, "task.state"), "completed");
    assert_string_equal(evs(l, "final", -1, "task.answer"), "yes, I have it");
    assert_non_null(wire(l, "tasks/resubscribe"));
    cJSON_Delete(l);

    /* Each question reached its chat exactly once; no answer was echoed. */
    assert_int_equal(sent_count(ALICE, qtext("planner", "Approve the schema change?")), 1);
    assert_int_equal(sent_count(BOB, qtext("planner", "Can you take the pager tonight?")), 1);
    assert_int_equal(sent_count(ALICE, qtext("planner", "Is the freeze over?")), 1);
    assert_int_equal(sent_prefix(ALICE, "echo: "), 0);
    assert_int_equal(sent_prefix(BOB, "echo: "), 0);
}

/* ------------------------------------------------------------------------ */

int main(void) {
    int rc = ie_setup_node();
    if (rc) return rc;
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_ready, &fix),
        RT_FIX_TEST(test_answer_poll_and_stream, &fix),
        RT_FIX_TEST(test_buttons, &fix),
        RT_FIX_TEST(test_notification, &fix),
        RT_FIX_TEST(test_expired_question, &fix),
        RT_FIX_TEST(test_two_questions_out_of_order, &fix),
        RT_FIX_TEST(test_refused, &fix),
        RT_FIX_TEST(test_limits, &fix),
        RT_FIX_TEST(test_dedupe, &fix),
        RT_FIX_TEST(test_group_chat, &fix),
        RT_FIX_TEST(test_kill9_restart, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
