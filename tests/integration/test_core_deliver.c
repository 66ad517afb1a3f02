/* ABI 1.3 through the real binary: an inbound instance (abi_plugins/
 * inbound_probe.c) delivers into a Telegram chat (fake Bot API) in order
 * with the replies routed there, gets the message id back, asks with
 * force_reply, takes the answer quoting it (or pressing its button)
 * before the backend (and the update is acknowledged: a restart does not
 * offer it again), also when given while routerd was down, lets other
 * messages route; a delivery to an unknown transport or during the drain
 * is refused, one queued before the drain goes out, and a waiter that gave
 * up is never touched (run under ASan). The console transport tells 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "727272:AAinboundSecret-part_z"
#define PROBE ROUTERD_ABI_PLUGIN_DIR "/inbound_probe.so"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};
static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};
static rt_fix_spec plain = {.fx = &fx};

static void manifest_with(int latency_ms, const char *probe_keys) {
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\ndrain_timeout_s = 15\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntyping = false\ntimeout = 1\n"
                    "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\nlatency_ms = %d\n"
                    "[persona.p]\nbackend = echo\nchats = *\n"
                    "[sink.log]\nplugin = jsonlog\nlevel = debug\n"
                    "[inbound.probe]\nplugin = " PROBE "\n%s",
                    ftg_base(F), latency_ms, probe_keys);
}

static void manifest(int latency_ms) {
    manifest_with(latency_ms, "");
}

/* Posts a command to the probe (see inbound_probe.c). */
static void command(const char *text) {
    assert_int_equal(rt_http("POST", rt_fix_url(fx, "/inbound_probe"), text, NULL, NULL), 202);
}

/* The number after key in the first line of stdout starting with line. */
static long long field(rt_proc *p, const char *line, const char *key) {
    const char *l = strstr(rt_stdout(p), line);
    if (!l) fail_msg("no '%s' in stdout:\n%s", line, rt_stdout(p));
    const char *v = strstr(l, key);
    assert_non_null(v);
    return atoll(v + strlen(key));
}

static void expect_sent(int64_t chat, size_t nth, const char *text, ftg_rec **keep) {
    ftg_rec *r = ftg_wait_sent(F, chat, nth, 10000);
    if (!r) fail_msg("chat %lld: no message #%zu ('%s')", (long long)chat, nth, text);
    assert_string_equal(r->text, text);
    if (keep)
        *keep = r;
    else
        ftg_recs_free(r, 1);
}

static void test_deliver_intercept_order(void **state) {
    (void)state;
    manifest(700);
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    assert_true(rt_wait_stdout(p, "inbound started", 5000));
    /* Readiness counts the inbound instance. */
    char *health = NULL;
    assert_int_equal(rt_http("GET", rt_fix_url(fx, "/healthz"), NULL, NULL, &health), 200);
    assert_non_null(strstr(health, "inbound.probe"));
    free(health);

    /* A delivery queues behind the message the backend is answering. */
    ftg_add_text(F, 15, "first");
    assert_true(rt_wait_stdout(p, "offered chat=15 reply_to=0 transport=tg text=first", 10000));
    command("q1 tg 15 0 1 Question one?");
    assert_true(rt_wait_stdout(p, "deliver q1 ", 10000));
    assert_int_equal(field(p, "deliver q1 ", "status="), 0);
    long long sent = field(p, "deliver q1 ", "sent_id=");
    expect_sent(15, 0, "echo: first", NULL);
    ftg_rec *q;
    expect_sent(15, 1, "Question one?", &q);
    assert_int_equal(sent, q->message_id);
    assert_true(sent > 0);
    /* A question asks for a reply. */
    assert_non_null(q->reply_markup);
    assert_non_null(strstr(q->reply_markup, "\"force_reply\":true"));
    ftg_recs_free(q, 1);

    /* The answer quoting it goes to the probe, not the backend. */
    char raw[768];
    snprintf(
        raw, sizeof raw,
        "\"message\":{\"message_id\":900,\"date\":1,\"chat\":{\"id\":15,\"type\":\"private\"},"
        "\"from\":{\"id\":15,\"is_bot\":false,\"first_name\":\"Ann\"},\"text\":\"yes please\","
        "\"reply_to_message\":{\"message_id\":%lld,\"date\":1,\"chat\":{\"id\":15,"
        "\"type\":\"private\"},\"from\":{\"id\":727272,\"is_bot\":true,\"first_name\":\"bot\"},"
        "\"text\":\"Question one?\"}}",
        sent);
    ftg_add_raw(F, raw);
    char taken[160];
    snprintf(taken, sizeof taken, "taken chat=15 reply_to=%lld choice=0 text=yes please", sent);
    assert_true(rt_wait_stdout(p, taken, 10000));

    /* A message quoting nothing of the probe routes to the backend; the
     * answer before it never did. */
    ftg_add_text(F, 15, "what's up");
    expect_sent(15, 2, "echo: what's up", NULL);

    /* A question with buttons: its id is the keyboard's message, and a
     * press answers it. */
    command("q4 tg 15 0 2 Ship it?");
    assert_true(rt_wait_stdout(p, "deliver q4 ", 10000));
    long long kb = field(p, "deliver q4 ", "sent_id=");
    ftg_rec *k;
    expect_sent(15, 3, "Ship it?", &k);
    assert_int_equal(kb, k->message_id);
    assert_null(strstr(k->reply_markup, "force_reply"));
    cJSON *mk = cJSON_Parse(k->reply_markup);
    cJSON *no = cJSON_GetArrayItem(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard"), 1), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(no, "text")->valuestring, "No");
    ftg_add_callback(F, 15, 15, kb,
                     cJSON_GetObjectItemCaseSensitive(no, "callback_data")->valuestring);
    cJSON_Delete(mk);
    ftg_recs_free(k, 1);
    snprintf(taken, sizeof taken, "taken chat=15 reply_to=%lld choice=1 text=No", kb);
    assert_true(rt_wait_stdout(p, taken, 10000));

    /* Unknown transport: refused at once. */
    command("q2 nope 15 0 0 hello");
    assert_true(rt_wait_stdout(p, "deliver q2 ", 10000));
    assert_int_equal(field(p, "deliver q2 ", "status="), -4);

    /* A caller that stops waiting: told so; the message still goes out in
     * order, and nothing writes to the caller afterwards. */
    ftg_add_text(F, 15, "slow one");
    assert_true(rt_wait_stdout(p, "text=slow one", 10000));
    command("q3 tg 15 1 0 late note");
    assert_true(rt_wait_stdout(p, "deliver q3 ", 10000));
    assert_int_equal(field(p, "deliver q3 ", "status="), -3);
    expect_sent(15, 4, "echo: slow one", NULL);
    expect_sent(15, 5, "late note", NULL);
    assert_null(ftg_wait_sent(F, 15, 6, 300));

    /* Events: the delivery under its own correlation id, the answer. */
    assert_true(rt_wait_stderr(p, "\"correlation_id\":\"q1\"", 5000));
    const char *log = rt_stderr(p);
    assert_non_null(strstr(log, "\"status\":\"delivered\""));
    assert_non_null(strstr(log, "\"status\":\"answered\""));
    assert_non_null(strstr(log, "\"backend\":\"inbound.probe\""));
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    assert_non_null(strstr(rt_stdout(p), "inbound stopped"));
    assert_null(strstr(rt_stderr(p), "AAinboundSecret"));

    /* Acknowledged: a restart offers nothing of it again. */
    p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    ftg_add_text(F, 15, "again");
    expect_sent(15, 6, "echo: again", NULL);
    assert_null(strstr(rt_stdout(p), "yes please"));
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
}

/* An answer given while routerd was down waits for the inbound instance's
 * start (slow here), which delivers into that same chat meanwhile: the
 * answer is taken, not routed, and nothing waits for the other. */
static void test_answer_while_down(void **state) {
    (void)state;
    manifest(0);
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    command("q1 tg 30 0 1 Deploy now?");
    assert_true(rt_wait_stdout(p, "deliver q1 ", 10000));
    long long sent = field(p, "deliver q1 ", "sent_id=");
    assert_true(sent > 0);
    assert_int_equal(rt_fix_stop(fx, 20000), 0);

    char raw[512];
    snprintf(raw, sizeof raw,
             "\"message\":{\"message_id\":901,\"date\":1,\"chat\":{\"id\":30,\"type\":\"private\"},"
             "\"from\":{\"id\":30,\"is_bot\":false},\"text\":\"go ahead\",\"reply_to_message\":{"
             "\"message_id\":%lld,\"chat\":{\"id\":30},\"from\":{\"id\":727272,\"is_bot\":true}}}",
             sent);
    ftg_add_raw(F, raw);
    manifest_with(0, "start_delay_ms = 1500\nstart_command = s1 tg 30 10000 0 Back online.\n");
    p = rt_fix_start(fx, env, 20000);
    assert_non_null(p);
    assert_int_equal(field(p, "deliver s1 ", "status="), 0);
    char taken[128];
    snprintf(taken, sizeof taken, "taken chat=30 reply_to=%lld choice=0 text=go ahead", sent);
    assert_true(rt_wait_stdout(p, taken, 10000));
    expect_sent(30, 0, "Deploy now?", NULL);
    expect_sent(30, 1, "Back online.", NULL);
    assert_null(ftg_wait_sent(F, 30, 2, 500));
    assert_int_equal(rt_fix_stop(fx, 20000), 0);
}

static void test_drain(void **state) {
    (void)state;
    manifest(1500);
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);
    assert_true(rt_wait_stdout(p, "inbound started", 5000));
    ftg_add_text(F, 20, "busy");
    assert_true(rt_wait_stdout(p, "text=busy", 10000));
    command("d1 tg 20 0 0 queued note");
    assert_true(rt_wait_stdout(p, "calling d1", 5000));
    rt_sleep_ms(200); /* queued behind "busy" by now */
    rt_signal(p, SIGTERM);
    assert_true(rt_wait_stdout(p, "quiesced", 5000));
    command("d2 tg 20 0 0 too late");
    assert_true(rt_wait_stdout(p, "deliver d2 ", 10000));
    assert_int_equal(field(p, "deliver d2 ", "status="), -4);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_int_equal(field(p, "deliver d1 ", "status="), 0);
    expect_sent(20, 0, "echo: busy", NULL);
    expect_sent(20, 1, "queued note", NULL);
    assert_null(ftg_wait_sent(F, 20, 2, 200));
}

static void test_console_sent_id(void **state) {
    (void)state;
    rt_fix_manifest(fx, "[transport.con]\nplugin = console\n"
                        "[backend.echo]\nplugin = mock\n[persona.p]\nbackend = echo\nchats = *\n"
                        "[inbound.probe]\nplugin = " PROBE "\n");
    rt_proc *p = rt_fix_start(fx, NULL, 15000);
    assert_non_null(p);
    command("c1 con 1 0 1 hello console");
    assert_true(rt_wait_stdout(p, "deliver c1 ", 10000));
    assert_int_equal(field(p, "deliver c1 ", "status="), 0);
    assert_int_equal(field(p, "deliver c1 ", "sent_id="), 0);
    assert_non_null(strstr(rt_stdout(p), "hello console\n"));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_deliver_intercept_order, &fix),
        RT_FIX_TEST(test_answer_while_down, &fix),
        RT_FIX_TEST(test_drain, &fix),
        RT_FIX_TEST(test_console_sent_id, &plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
