/*
 * In-process tests of the telegram transport's intake against the fake Bot
 * API server and a fake host: handshake, long polling, ordering, journal,
 * restart and crash, back-pressure, faults, id-space resets, quiesce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"
#include "fake_host.h"

#define TOKEN "123456:AAtestSecretPart-xyz"
#define SECRET "AAtestSecretPart-xyz"

static ftg *F;

static int setup(void **state) {
    (void)state;
    F = ftg_start(TOKEN);
    assert_non_null(F);
    th_reset();
    th_cfg("token", TOKEN);
    th_cfg("api_base", ftg_base(F));
    th_cfg("timeout", "5");
    th_cfg("throttle", "off");
    th_cfg("typing", "false");
    th_cfg("retry_base_ms", "20");
    th_cfg("retry_max_ms", "200");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    /* The token must never reach a log line or an error. */
    assert_false(th_leaked(SECRET));
    ftg_stop(F);
    F = NULL;
    return 0;
}

static void *launch(void) {
    rd_status st;
    rd_error err = {0};
    void *self = th_launch(&st, &err);
    if (!self) fprintf(stderr, "launch failed: %d %s\n", st, err.msg);
    assert_non_null(self);
    return self;
}

static int wait_until(int (*cond)(void), int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (!cond() && th_now_ms() < end)
        th_sleep_ms(5);
    return cond();
}

static int no_unconfirmed(void) {
    return ftg_unconfirmed(F) == 0;
}

static int journal_empty(void) {
    return th_kv_count("j/") == 0;
}

static int one_poll_held(void) {
    return ftg_polls_active(F) == 1;
}

static void test_handshake_and_routing(void **state) {
    (void)state;
    ftg_set_bot(F, 123456, "routerd_test_bot");
    void *self = launch();
    th_echo_start(self, "echo: ");
    int64_t a = ftg_add_text(F, 42, "hello");
    ftg_add_raw(F, "\"inline_query\":{\"id\":\"1\",\"query\":\"x\"}");
    ftg_add_text(F, -100500, "just chatting");
    ftg_msg g = {.chat_id = -100500, .user_id = 77, .text = "@routerd_test_bot what is 2+2?"};
    ftg_add_message(F, &g);
    ftg_msg topic = {
        .chat_id = -100600, .user_id = 77, .text = "/ask@routerd_test_bot topic q", .thread_id = 9};
    ftg_add_message(F, &topic);
    int64_t last = ftg_add_text(F, 43, "second chat");
    assert_int_equal(th_wait_submitted(4, 5000), 4);
    assert_true(wait_until(no_unconfirmed, 5000));
    assert_int_equal(ftg_wait_count(F, "sendMessage", 4, 5000), 4);
    assert_true(th_ready());

    th_msg *m;
    size_t n = th_msgs(&m, 1);
    assert_int_equal(n, 6);
    /* The core sees Telegram's update ids, in order. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i].id, a + (int64_t)i);
    assert_int_equal(m[5].id, last);
    assert_string_equal(m[0].text, "hello");
    assert_int_equal(m[0].chat_id, 42);
    assert_int_equal(m[0].user_id, 42);
    assert_non_null(strstr(m[0].meta, "\"update_id\":"));
    assert_non_null(strstr(m[0].meta, "\"chat_type\":\"private\""));
    assert_true(m[1].skipped);
    assert_string_equal(m[1].why, "unsupported");
    assert_true(m[2].skipped);
    assert_string_equal(m[2].why, "not_addressed");
    assert_string_equal(m[3].text, "what is 2+2?");
    assert_true(m[3].flags & RD_MSG_GROUP);
    assert_string_equal(m[4].text, "/ask topic q");
    assert_true(m[4].flags & RD_MSG_COMMAND);
    assert_int_equal(m[4].thread_id, 9);
    th_msgs_free(m, n);

    ftg_rec *r;
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 4);
    assert_int_equal(r[0].chat_id, 42);
    assert_string_equal(r[0].text, "echo: hello");
    assert_true(r[0].reply_to > 0);
    assert_true(r[0].allow_without_reply);
    assert_null(r[0].parse_mode);
    assert_int_equal(r[2].chat_id, -100600);
    assert_int_equal(r[2].thread_id, 9);
    ftg_recs_free(r, n);

    /* Handled updates leave the journal. */
    assert_true(wait_until(journal_empty, 3000));
    assert_int_equal(th_metric("routerd_telegram_updates_total", "message", NULL), 5);
    assert_int_equal(th_metric("routerd_telegram_updates_total", "other", NULL), 1);
    assert_int_equal(th_metric("routerd_telegram_updates_ignored_total", "not_addressed", NULL), 1);
    assert_int_equal(th_violations(), 0);

    /* getUpdates carried the configured parameters. */
    n = ftg_records(F, "getUpdates", 0, &r);
    assert_true(n >= 2);
    assert_non_null(strstr(
        r[n - 1].body, "\"allowed_updates\":[\"message\",\"edited_message\",\"callback_query\"]"));
    assert_non_null(strstr(r[n - 1].body, "\"timeout\":5"));
    assert_non_null(strstr(r[n - 1].body, "\"offset\":"));
    ftg_recs_free(r, n);
    /* deleteWebhook ran at start (delete_webhook defaults to true). */
    assert_int_equal(ftg_count(F, "deleteWebhook", 1), 1);
    th_shutdown(self);
}

static void test_bad_token_and_base(void **state) {
    (void)state;
    rd_status st;
    rd_error err = {0};
    th_cfg("token", "123456:WrongSecret");
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "401"));
    assert_null(strstr(err.msg, "WrongSecret"));

    th_cfg("token", TOKEN);
    char base[128];
    snprintf(base, sizeof base, "%s/wrong", ftg_base(F));
    th_cfg("api_base", base);
    memset(&err, 0, sizeof err);
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "404"));

    th_cfg("token", "not-a-token");
    assert_null(th_launch(&st, &err));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(err.msg, "token"));
    assert_false(th_leaked("WrongSecret"));
}

/* key = val must stop the start with a configuration error naming `want`;
 * then key is set back to `then` (NULL = removed). */
static void refused_then(const char *key, const char *val, const char *want, const char *then) {
    rd_status st;
    rd_error err = {0};
    th_cfg(key, val);
    void *self = th_launch(&st, &err);
    if (self) th_shutdown(self);
    assert_null(self);
    assert_int_equal(st, RD_E_CONFIG);
    if (!strstr(err.msg, want)) fail_msg("%s = %s: '%s' lacks '%s'", key, val, err.msg, want);
    th_cfg(key, then);
}

static void refused(const char *key, const char *val, const char *want) {
    refused_then(key, val, want, NULL);
}

static int poll_with_timeout_2(void) {
    ftg_rec *r;
    size_t n = ftg_records(F, "getUpdates", 0, &r);
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        found = r[i].body && strstr(r[i].body, "\"timeout\":2") != NULL;
    ftg_recs_free(r, n);
    return found;
}

/* The keys are bound with cfg_bind (ABI 1.2): the schema refuses what the
 * getters used to, with the daemon's messages, and the checks it cannot
 * express still run after the bind. */
static void test_config_keys_checked(void **state) {
    (void)state;
    refused("timout", "5", "unknown key 'timout' (did you mean 'timeout'?)");
    refused("limit", "many", "limit: expected an integer");
    refused("limit", "101", "limit: 101 is out of range [1, 100]");
    refused("channel_posts", "maybe", "channel_posts: expected true or false");
    refused("mode", "push", "mode: 'push' is not one of: longpoll webhook");
    refused_then("timeout", "soon", "timeout: expected a duration", "5");
    refused_then("timeout", "51", "timeout: 51 is out of range [0s, 50s]", "5");
    refused("request_timeout_s", "500ms", "request_timeout_s: 500ms is out of range [1s, 600s]");
    refused_then("retry_base_ms", "1s", "retry_base_ms: expected an integer", "20");
    refused_then("api_base", "ftp://example.com",
                 "api_base: expected an absolute http:// or https://", ftg_base(F));
    /* Checks after the bind keep their messages. */
    refused("webhook_path", "hook", "webhook_path: must start with '/'");
    refused("edits_notice", "", "edits_notice: empty, but edits = note sends it");
    th_cfg("mode", "webhook");
    refused("secret_token", "bad secret!", "secret_token: 1-256 characters");
    th_cfg("secret_token", "s3cret");
    refused("webhook_url", "ftp://example.com/tg", "webhook_url: must be an http(s) URL");
    th_cfg("secret_token", NULL);
    refused("webhook_url", NULL, "secret_token: required in webhook mode");
    th_cfg("mode", NULL);
    /* The plugin binds its keys: a host older than ABI 1.2 is refused. */
    rdpt_set_host_minor(1);
    refused("limit", "10", "needs a routerd speaking plugin ABI 1.2");
    rdpt_set_host_minor(RD_ABI_MINOR);

    /* A bare number is still seconds (setup polls with timeout = 5); a
     * written unit is read too. */
    th_cfg("timeout", "2s");
    th_cfg("request_timeout_s", "1m");
    th_cfg("webhook_url", ""); /* empty is allowed: leave the webhook alone */
    void *self = launch();
    assert_true(wait_until(poll_with_timeout_2, 5000));
    th_shutdown(self);
}

static void test_quiesce_cuts_long_poll(void **state) {
    (void)state;
    th_cfg("timeout", "30");
    void *self = launch();
    assert_true(wait_until(one_poll_held, 5000));
    th_sleep_ms(200);
    long long ms = th_shutdown_timed(self);
    /* No waiting out a 30 s poll. */
    assert_true(ms < 1000);
}

static void test_restart_replays_unhandled(void **state) {
    (void)state;
    void *self = launch();
    int64_t first = 0;
    for (int i = 0; i < 5; i++) {
        char t[32];
        snprintf(t, sizeof t, "m%d", i);
        int64_t id = ftg_add_text(F, 42, t);
        if (!i) first = id;
    }
    assert_int_equal(th_wait_submitted(5, 5000), 5);
    /* Only the first two are handled when we stop. */
    th_ack_upto(self, first + 1);
    th_shutdown(self);
    assert_int_equal(th_kv_count("j/"), 3);

    th_new_run();
    self = launch();
    ftg_add_text(F, 42, "m5");
    assert_int_equal(th_wait_submitted(4, 5000), 4);
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    assert_int_equal(n, 4);
    /* The three unhandled ones first, then the new one; nothing twice. */
    assert_int_equal(m[0].id, first + 2);
    assert_string_equal(m[0].text, "m2");
    assert_string_equal(m[2].text, "m4");
    assert_string_equal(m[3].text, "m5");
    th_msgs_free(m, n);
    th_ack_all(self);
    assert_true(wait_until(journal_empty, 3000));
    th_shutdown(self);
    assert_int_equal(th_violations(), 0);

    /* A clean restart with everything handled submits nothing. */
    th_new_run();
    self = launch();
    th_sleep_ms(300);
    assert_int_equal(th_submitted(), 0);
    th_shutdown(self);
}

static void test_crash_loses_nothing(void **state) {
    (void)state;
    void *self = launch();
    for (int i = 0; i < 10; i++)
        ftg_add_text(F, 100 + i, "crash me");
    assert_int_equal(th_wait_submitted(10, 5000), 10);
    assert_true(wait_until(no_unconfirmed, 5000));
    /* kill -9 now: the store is as it is; nothing was handled. */
    th_kv_snapshot();
    th_shutdown(self);
    th_kv_restore();
    assert_int_equal(ftg_unconfirmed(F), 0); /* Telegram forgot them already */

    th_new_run();
    self = launch();
    assert_int_equal(th_wait_submitted(10, 5000), 10);
    th_sleep_ms(200);
    assert_int_equal(th_submitted(), 10);
    th_shutdown(self);
}

/* The core's watermark is contiguous: with the first two updates still in
 * work, eight later ones answered, a crash must replay only the two. */
static void test_crash_with_holes(void **state) {
    (void)state;
    void *self = launch();
    for (int i = 0; i < 10; i++)
        ftg_add_text(F, 200 + i, "hole");
    assert_int_equal(th_wait_submitted(10, 5000), 10);
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    for (size_t i = 2; i < n; i++) {
        rd_outbound out = {.size = sizeof out,
                           .chat_id = m[i].chat_id,
                           .reply_to = m[i].message_id,
                           .text = "answered",
                           .text_len = 8};
        rd_error err = {0};
        assert_int_equal(th_ops()->send(self, &out, &err), RD_OK);
    }
    int64_t first = m[0].id;
    th_msgs_free(m, n);
    long long end = th_now_ms() + 2000;
    while (th_kv_count("r/") < 8 && th_now_ms() < end)
        th_sleep_ms(5);
    assert_int_equal(th_kv_count("r/"), 8);
    th_kv_snapshot(); /* kill -9 here */
    th_shutdown(self);
    th_kv_restore();

    th_new_run();
    self = launch();
    assert_int_equal(th_wait_submitted(2, 5000), 2);
    th_sleep_ms(300);
    n = th_msgs(&m, 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].id, first);
    assert_int_equal(m[1].id, first + 1);
    th_msgs_free(m, n);
    assert_true(th_log_has("answered before the last stop"));
    /* Once handled, nothing of it stays in the store. */
    th_ack_all(self);
    end = th_now_ms() + 2000;
    while ((th_kv_count("j/") || th_kv_count("r/")) && th_now_ms() < end)
        th_sleep_ms(5);
    assert_int_equal(th_kv_count("j/"), 0);
    assert_int_equal(th_kv_count("r/"), 0);
    th_shutdown(self);
}

static size_t polls(void) {
    return ftg_count(F, "getUpdates", 0);
}

static void test_backpressure(void **state) {
    (void)state;
    th_cfg("limit", "10");
    th_set_full(1);
    void *self = launch();
    for (int i = 0; i < 30; i++) {
        char t[32];
        snprintf(t, sizeof t, "bp%d", i);
        ftg_add_text(F, 1 + i % 3, t);
    }
    th_sleep_ms(300);
    size_t p1 = polls();
    th_sleep_ms(500);
    /* Stopped fetching: Telegram keeps the rest. */
    assert_int_equal(polls(), p1);
    assert_int_equal(th_submitted(), 0);
    assert_true(ftg_unconfirmed(F) >= 20);
    th_set_full(0);
    assert_int_equal(th_wait_submitted(30, 5000), 30);
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    for (size_t i = 0; i < n; i++) {
        char t[32];
        snprintf(t, sizeof t, "bp%zu", i);
        assert_string_equal(m[i].text, t);
    }
    th_msgs_free(m, n);
    assert_int_equal(th_violations(), 0);
    th_shutdown(self);
}

static void test_fetch_faults(void **state) {
    (void)state;
    /* Faults first, then the updates: they only come through once every
     * fault has been survived. */
    ftg_fail(F, "getUpdates", FTG_FAULT_500, 0, 2);
    ftg_fail(F, "getUpdates", FTG_FAULT_DROP, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_MALFORMED, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_TRUNCATED, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_CUT, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_502_HTML, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_409, 0, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_429, 1, 1);
    ftg_fail(F, "getUpdates", FTG_FAULT_SLOW, 300, 1);
    for (int i = 0; i < 6; i++)
        ftg_add_text(F, 7, "through the storm");
    long long t0 = th_now_ms();
    void *self = launch();
    assert_int_equal(th_wait_submitted(6, 15000), 6);
    /* The 429 (retry_after 1) was honoured. */
    assert_true(th_now_ms() - t0 >= 1000);
    th_sleep_ms(300);
    assert_int_equal(th_submitted(), 6);
    assert_int_equal(th_violations(), 0);
    assert_true(th_log_has("409"));
    assert_true(th_log_has("Another process is polling"));
    assert_true(th_log_has("not Bot API JSON"));
    assert_true(th_metric("routerd_telegram_api_errors_total", "getUpdates", "malformed") >= 1);
    assert_true(th_metric("routerd_telegram_api_errors_total", "getUpdates", "500") >= 2);
    assert_true(th_metric("routerd_telegram_api_errors_total", "getUpdates", "network") >= 1);
    th_shutdown(self);
}

static void test_id_space_reset(void **state) {
    (void)state;
    void *self = launch();
    for (int i = 0; i < 3; i++)
        ftg_add_text(F, 5, "before");
    assert_int_equal(th_wait_submitted(3, 5000), 3);
    th_ack_all(self);
    assert_true(wait_until(journal_empty, 3000));
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    int64_t last = m[2].id;
    th_msgs_free(m, n);
    th_shutdown(self);

    /* The server now counts from 500: our stored offset is far past it. */
    ftg_set_next_update_id(F, 500);
    for (int i = 0; i < 3; i++)
        ftg_add_text(F, 5, "after");
    th_new_run();
    size_t p0 = polls();
    self = launch();
    assert_int_equal(th_wait_submitted(3, 5000), 3);
    n = th_msgs(&m, 0);
    /* Ids the core sees still go up. */
    assert_int_equal(m[0].id, last + 1);
    assert_int_equal(m[2].id, last + 3);
    th_msgs_free(m, n);
    assert_true(wait_until(no_unconfirmed, 3000));
    th_sleep_ms(300);
    /* Not a hot loop re-asking the same offset. */
    assert_true(polls() - p0 < 10);
    assert_int_equal(th_metric("routerd_telegram_id_space_resets_total", NULL, NULL), 1);
    assert_true(th_log_has("reset"));
    ftg_add_text(F, 5, "later");
    assert_int_equal(th_wait_submitted(4, 5000), 4);
    assert_int_equal(th_violations(), 0);
    th_shutdown(self);
}

static size_t polls_before;

/* A poll without an offset since polls_before. A long poll of the last
 * run that the server reads late may still carry the old offset, so the
 * newest record is not the one to look at. */
static int poll_without_offset(void) {
    ftg_rec *r;
    size_t n = ftg_records(F, "getUpdates", 0, &r);
    int ok = 0;
    for (size_t i = polls_before; i < n && !ok; i++)
        ok = !strstr(r[i].body, "\"offset\"");
    ftg_recs_free(r, n);
    return ok;
}

static void test_api_base_change(void **state) {
    (void)state;
    void *self = launch();
    ftg_add_text(F, 5, "one");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_ack_all(self);
    th_shutdown(self);
    /* Same server under another name: the stored offset is not reused. */
    char base[128];
    snprintf(base, sizeof base, "http://localhost:%s", strrchr(ftg_base(F), ':') + 1);
    th_cfg("api_base", base);
    th_new_run();
    polls_before = polls();
    self = launch();
    assert_true(wait_until(poll_without_offset, 3000));
    assert_true(th_log_has("api_base changed"));
    th_shutdown(self);
}

static void test_refetch_after_base_change(void **state) {
    (void)state;
    void *self = launch();
    assert_true(wait_until(one_poll_held, 5000));
    /* The batch is journaled, but no later poll reaches the server to
     * confirm it (a crash right after journaling, say). */
    ftg_fail(F, "getUpdates", FTG_FAULT_DROP, 0, 100000);
    const char *const texts[] = {"twice?", "twice?", "twice?"};
    ftg_add_texts(F, 8, texts, 3);
    assert_int_equal(th_wait_submitted(3, 5000), 3);
    th_shutdown(self);
    assert_int_equal(ftg_unconfirmed(F), 3);
    ftg_clear_faults(F);
    /* Same server, other spelling: the offset is not trusted, the server
     * sends the three again, and they are taken once. */
    char base[128];
    snprintf(base, sizeof base, "http://localhost:%s", strrchr(ftg_base(F), ':') + 1);
    th_cfg("api_base", base);
    th_new_run();
    self = launch();
    assert_int_equal(th_wait_submitted(3, 5000), 3);
    assert_true(wait_until(no_unconfirmed, 5000));
    th_sleep_ms(300);
    assert_int_equal(th_submitted(), 3);
    assert_true(th_log_has("already journaled"));
    th_shutdown(self);
}

static int journal_holds_three(void) {
    return th_kv_count("j/") == 3;
}

static int journal_holds_two(void) {
    return th_kv_count("j/") == 2;
}

static int journal_holds_one(void) {
    return th_kv_count("j/") == 1;
}

/* Three updates journaled, a long poll held (up to timeout = 5 s), the
 * first one acked and its watermark written (on the poll's tick). */
static int64_t three_journaled_first_acked(void *self) {
    int64_t first = ftg_add_text(F, 7, "a");
    ftg_add_text(F, 7, "b");
    ftg_add_text(F, 7, "c");
    assert_int_equal(th_wait_submitted(3, 5000), 3);
    assert_true(wait_until(no_unconfirmed, 5000));
    assert_true(wait_until(journal_holds_three, 3000));
    assert_true(wait_until(one_poll_held, 5000));
    th_ack_upto(self, first);
    assert_true(wait_until(journal_holds_two, 3000));
    return first;
}

/* An ack does not wake the long poll: with no update after it, the
 * poll's tick stores it, long before the poll returns. */
static void test_ack_soon_after_a_write_is_stored(void **state) {
    (void)state;
    void *self = launch();
    int64_t first = three_journaled_first_acked(self);
    th_ack_upto(self, first + 1);
    assert_true(wait_until(journal_holds_one, 1000));
    assert_int_equal(ftg_polls_active(F), 1); /* a poll still held */
    th_shutdown(self);
}

/* The journal's write of a new update also stores the watermark (and
 * prunes what it covers) when the last write of the watermark was too
 * recent for one of its own: no synced write of its own at a steady rate. */
static void test_watermark_rides_on_the_journal(void **state) {
    (void)state;
    void *self = launch();
    int64_t first = three_journaled_first_acked(self);
    /* Within TG_PERSIST_GAP_MS of that write: */
    th_ack_upto(self, first + 1);
    ftg_add_text(F, 7, "d");
    assert_int_equal(th_wait_submitted(4, 5000), 4);
    assert_int_equal(th_kv_count("j/"), 2); /* "c" and "d": "b" went in d's commit */
    char *meta = th_kv_get("meta");
    assert_non_null(meta);
    char want[64];
    snprintf(want, sizeof want, "\"handled\":%lld", (long long)(first + 1));
    th_shutdown(self);
    assert_non_null(strstr(meta, want));
    free(meta);
}

static void test_journal_failure(void **state) {
    (void)state;
    void *self = launch();
    th_kv_fail(1);
    ftg_add_text(F, 9, "store is down");
    th_sleep_ms(500);
    /* Not journaled, so not confirmed and not submitted. */
    assert_int_equal(th_submitted(), 0);
    assert_int_equal(ftg_unconfirmed(F), 1);
    assert_true(th_log_has("cannot journal"));
    th_kv_fail(0);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_sleep_ms(300);
    assert_int_equal(th_submitted(), 1);
    th_shutdown(self);
}

/* The journal is committed without a sync of its own: no offset may
 * confirm its updates to Telegram before a sync covers it. */
static void test_journal_synced_before_confirming(void **state) {
    (void)state;
    void *self = launch();
    rdpt_kv_sync_fail(1);
    ftg_add_text(F, 9, "disk cannot sync");
    /* Routed at once, before it is on disk... */
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_sleep_ms(400);
    /* ...but not confirmed while the sync fails. */
    assert_int_equal(ftg_unconfirmed(F), 1);
    assert_true(th_log_has("cannot sync the journal"));
    rdpt_kv_sync_fail(0);
    assert_true(wait_until(no_unconfirmed, 5000));
    assert_int_equal(th_submitted(), 1);
    th_shutdown(self);
}

/* A host older than ABI 1.6 has no lazy commit: each journal commit is
 * synced, and nothing waits for kv_sync(). */
static void test_journal_on_an_older_host(void **state) {
    (void)state;
    rdpt_set_host_minor(5);
    void *self = launch();
    rdpt_kv_sync_fail(1);
    ftg_add_text(F, 9, "synced as it is written");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    assert_true(wait_until(no_unconfirmed, 5000));
    assert_false(th_log_has("cannot sync the journal"));
    th_shutdown(self);
    rdpt_set_host_minor(RD_ABI_MINOR);
}

static void test_confirm_on_stop(void **state) {
    (void)state;
    void *self = launch();
    ftg_add_text(F, 3, "x");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_ack_all(self);
    th_sleep_ms(100);
    th_shutdown(self);
    /* The poll that carried the new offset was cut short, so stop()
     * confirms with one short getUpdates. */
    ftg_rec *r;
    size_t n = ftg_records(F, "getUpdates", 0, &r), confirms = 0;
    for (size_t i = 0; i < n; i++)
        confirms += strstr(r[i].body, "\"limit\":1,\"timeout\":0") != NULL;
    ftg_recs_free(r, n);
    assert_int_equal(confirms, 1);
    assert_int_equal(ftg_unconfirmed(F), 0);
}

/* The fake behaves like the server for other clients too: numbers as
 * strings (python-telegram-bot 13), query-string parameters, offsets. */
static void test_fake_server_semantics(void **state) {
    (void)state;
    int64_t a = ftg_add_text(F, 1, "one");
    ftg_add_text(F, 1, "two");
    ftg_add_text(F, 1, "three");
    char url[256], body[128], *resp = NULL;
    snprintf(url, sizeof url, "%s/bot%s/getUpdates", ftg_base(F), TOKEN);
    const char *const json[] = {"Content-Type: application/json", NULL};
    snprintf(body, sizeof body, "{\"offset\":\"%lld\",\"limit\":\"1\",\"timeout\":\"0\"}",
             (long long)(a + 1));
    assert_int_equal(rt_http("POST", url, body, json, &resp), 200);
    /* Below the offset is confirmed; at most `limit` served. */
    assert_null(strstr(resp, "\"one\""));
    assert_non_null(strstr(resp, "\"two\""));
    assert_null(strstr(resp, "\"three\""));
    free(resp);
    assert_int_equal(ftg_unconfirmed(F), 2);
    snprintf(url, sizeof url, "%s/bot%s/getUpdates?offset=-1", ftg_base(F), TOKEN);
    assert_int_equal(rt_http("GET", url, NULL, NULL, &resp), 200);
    assert_non_null(strstr(resp, "\"three\""));
    free(resp);
    assert_int_equal(ftg_unconfirmed(F), 1);
    snprintf(url, sizeof url, "%s/bot%s/sendMessage", ftg_base(F), TOKEN);
    assert_int_equal(rt_http("POST", url, "{\"chat_id\":\"55\",\"text\":\"hi\"}", json, &resp),
                     200);
    free(resp);
    snprintf(url, sizeof url, "%s/bot1:wrong/getMe", ftg_base(F));
    assert_int_equal(rt_http("GET", url, NULL, NULL, &resp), 401);
    free(resp);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].chat_id, 55);
    ftg_recs_free(r, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fake_server_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_and_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_token_and_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_keys_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_cuts_long_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_soon_after_a_write_is_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watermark_rides_on_the_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_replays_unhandled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_with_holes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_space_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_base_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refetch_after_base_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_synced_before_confirming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_on_an_older_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirm_on_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
