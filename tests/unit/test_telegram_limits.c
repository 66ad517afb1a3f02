/*
 * In-process tests of the telegram transport at its limits, against the
 * fake Bot API server and the fake host: update ids and delays anywhere in
 * the 64-bit range, stored state an older build left out of range, error
 * codes as metric labels, the outbox after a long 429, group migrations and
 * the bound on per-chat state.
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
#define WH_SECRET "wh-secret_1"

static ftg *F;
static void *S;
static int async_mode;

static int setup(void **state) {
    (void)state;
    F = th_fake_api(TOKEN, "1");
    S = NULL;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    th_fake_api_stop(F, S, SECRET);
    S = NULL;
    F = NULL;
    return 0;
}

static void launch(void) {
    S = th_launch_ok();
}

static void restart(void) {
    th_shutdown(S);
    S = NULL;
    th_new_run();
    launch();
}

static rd_status send_to(int64_t chat, int64_t reply_to, const char *text, const char *cid) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .reply_to = reply_to,
                       .text = text,
                       .text_len = strlen(text),
                       .correlation_id = cid};
    rd_error e = {0};
    /* the second run: as a 1.4 router sends (out->done, send_done()) */
    if (async_mode) return rdpt_send(S, &out, &e);
    return th_ops()->send(S, &out, &e);
}

/* Replies delivered (HTTP 200) with exactly this text. */
static int delivered(const char *text, int64_t *chat, long long *t_ms) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].text || strcmp(r[i].text, text)) continue;
        k++;
        if (chat) *chat = r[i].chat_id;
        if (t_ms) *t_ms = r[i].t_ms;
    }
    ftg_recs_free(r, n);
    return k;
}

static int wait_delivered(const char *text, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    int k;
    while (!(k = delivered(text, NULL, NULL)) && th_now_ms() < end)
        th_sleep_ms(20);
    return k;
}

static int journal_empty(void) {
    return th_kv_count("j/") == 0;
}

static int outbox_empty(void) {
    return th_kv_count("o/") == 0;
}

static int wait_until(int (*cond)(void), int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (!cond() && th_now_ms() < end)
        th_sleep_ms(10);
    return cond();
}

#define MSG(chat, text)                                                                            \
    "\"message\":{\"message_id\":7,\"from\":{\"id\":" #chat ",\"is_bot\":false,\"first_name\":"    \
    "\"T\"},\"chat\":{\"id\":" #chat ",\"type\":\"private\"},\"date\":1,\"text\":\"" text "\"}"

/* ------------------------------------------------------------------------ */
/* Integers                                                                  */

/* Long polling: extreme ids are refused and logged; the updates around
 * them reach the core with increasing ids and are confirmed. */
static void test_longpoll_extreme_ids(void **state) {
    (void)state;
    launch();
    th_echo_start(S, "echo: ");
    ftg_add_text(F, 42, "before");
    ftg_add_with_id(F, "9223372036854775807", MSG(42, "max"));
    ftg_add_with_id(F, "9007199254740992", MSG(42, "two to the 53"));
    ftg_add_with_id(F, "-5", MSG(42, "negative"));
    ftg_add_with_id(F, "9223372036854775808", MSG(42, "past int64"));
    ftg_add_with_id(F, "1e300", MSG(42, "huge double"));
    assert_int_equal(wait_delivered("echo: before", 5000), 1);
    int64_t last = ftg_add_text(F, 42, "after");
    assert_int_equal(wait_delivered("echo: after", 5000), 1);
    th_ack_all(S);
    assert_true(wait_until(journal_empty, 3000));
    /* Confirmed up to the last valid update. */
    long long end = th_now_ms() + 3000;
    while (ftg_confirmed_offset(F) < last + 1 && th_now_ms() < end)
        th_sleep_ms(20);
    assert_int_equal(ftg_confirmed_offset(F), last + 1);
    th_msg *m;
    size_t n = th_msgs(&m, 1);
    assert_int_equal(n, 2);
    assert_int_equal(m[1].id, last);
    th_msgs_free(m, n);
    assert_int_equal(th_violations(), 0);
    assert_true(th_metric("routerd_telegram_updates_ignored_total", "bad_update_id", NULL) >= 3);
    assert_true(th_log_has("update_id 9223372036854775807 is outside"));
    assert_true(th_metric("routerd_telegram_updates_ignored_total", "no_update_id", NULL) == 0);
    /* The refused ones stay with the server, which keeps offering them:
     * polled at a calm pace, not in a hot loop. */
    size_t p0 = ftg_count(F, "getUpdates", 0);
    th_sleep_ms(1500);
    assert_true(ftg_count(F, "getUpdates", 0) - p0 <= 4);
    /* The stored state is in range: a restart goes on normally. */
    restart();
    th_echo_start(S, "echo: ");
    ftg_add_text(F, 42, "after restart");
    assert_int_equal(wait_delivered("echo: after restart", 5000), 1);
    assert_int_equal(th_violations(), 0);
}

/* Webhook: an extreme id is answered 200 (no endless retries) and refused;
 * the updates after it are not swallowed as duplicates. */
static void test_webhook_extreme_ids(void **state) {
    (void)state;
    th_cfg("mode", "webhook");
    th_cfg("secret_token", WH_SECRET);
    launch();
    th_echo_start(S, "echo: ");
    const char *bad[] = {"9223372036854775807", "9007199254740992", "-1", "18446744073709551615"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"update_id\":%s,%s}", bad[i], MSG(42, "bad"));
        assert_int_equal(th_http_post("/telegram/main", WH_SECRET, body, NULL), 200);
    }
    assert_int_equal(th_submitted(), 0);
    ftg_msg m = {.chat_id = 42, .text = "good"};
    int64_t id = 0;
    char *u = ftg_build_update(F, &m, &id);
    assert_int_equal(th_http_post("/telegram/main", WH_SECRET, u, NULL), 200);
    free(u);
    assert_int_equal(th_wait_submitted(1, 3000), 1);
    th_msg *msgs;
    size_t n = th_msgs(&msgs, 1);
    assert_int_equal(n, 1);
    assert_int_equal(msgs[0].id, id);
    th_msgs_free(msgs, n);
    assert_int_equal(wait_delivered("echo: good", 5000), 1);
    assert_int_equal(th_metric("routerd_telegram_updates_ignored_total", "bad_update_id", NULL), 4);
    /* Survives a restart too. */
    restart();
    th_echo_start(S, "echo: ");
    m.text = "good again";
    u = ftg_build_update(F, &m, &id);
    assert_int_equal(th_http_post("/telegram/main", WH_SECRET, u, NULL), 200);
    free(u);
    assert_int_equal(th_wait_submitted(1, 3000), 1);
    assert_int_equal(th_violations(), 0);
}

/* An older build stored a sequence at INT64_MAX: the next start repairs it
 * instead of overflowing, and the journal is pruned again. */
static void test_stored_state_out_of_range(void **state) {
    (void)state;
    char meta0[512];
    snprintf(meta0, sizeof meta0,
             "{\"v\":1,\"api_base\":\"%s\",\"bot_id\":123456,\"offset\":"
             "-9223372036854775808,\"last_seq\":9223372036854775807,\"handled\":"
             "9223372036854775807}",
             ftg_base(F));
    th_kv_set("meta", meta0);
    th_kv_set("j/9223372036854775807", "{\"update_id\":1,\"message\":{}}");
    launch();
    th_echo_start(S, "echo: ");
    ftg_add_text(F, 42, "one");
    ftg_add_text(F, 42, "two");
    assert_int_equal(wait_delivered("echo: two", 5000), 1);
    th_ack_all(S);
    assert_true(wait_until(journal_empty, 3000));
    assert_int_equal(th_violations(), 0);
    char *meta = th_kv_get("meta");
    assert_non_null(meta);
    assert_null(strstr(meta, "9223372036854775807"));
    free(meta);
    assert_true(th_log_has("out of range"));
}

/* retry_after anywhere in the 64-bit range: clamped to retry_after_max_s
 * (and logged), never a negative or wrapped wait. */
static void test_retry_after_extremes(void **state) {
    (void)state;
    th_cfg("retry_after_max_s", "2");
    launch();
    ftg_fail_body(F, "sendMessage", 429,
                  "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\","
                  "\"parameters\":{\"retry_after\":9223372036854775807}}",
                  1);
    long long t0 = th_now_ms();
    assert_int_equal(send_to(42, 0, "clamped", "c1"), RD_OK);
    long long dt = th_now_ms() - t0;
    assert_true(dt >= 1900);
    assert_true(dt < 6000);
    assert_int_equal(delivered("clamped", NULL, NULL), 1);
    assert_true(th_log_has("retry_after 9223372036854775807 s is out of range"));
    /* Negative and fractional: a short default wait. */
    ftg_fail_body(F, "sendMessage", 429,
                  "{\"ok\":false,\"error_code\":429,\"description\":\"x\","
                  "\"parameters\":{\"retry_after\":-9223372036854775808}}",
                  1);
    ftg_fail_body(F, "sendMessage", 429,
                  "{\"ok\":false,\"error_code\":429,\"description\":\"x\","
                  "\"parameters\":{\"retry_after\":0.5}}",
                  1);
    t0 = th_now_ms();
    assert_int_equal(send_to(42, 0, "after two", "c2"), RD_OK);
    dt = th_now_ms() - t0;
    assert_true(dt >= 1500);
    assert_true(dt < 6000);
    assert_int_equal(delivered("after two", NULL, NULL), 1);
}

/* Error codes become metric labels from a fixed set. */
static void test_error_code_labels(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    th_cfg("outbox_max", "0");
    launch();
    ftg_fail_body(F, "sendMessage", 400,
                  "{\"ok\":false,\"error_code\":7777777,\"description\":\"Bad Request: odd\"}", 1);
    ftg_fail_body(F, "sendMessage", 400,
                  "{\"ok\":false,\"error_code\":418,\"description\":\"teapot\"}", 1);
    ftg_fail_body(F, "sendMessage", 400,
                  "{\"ok\":false,\"error_code\":-3,\"description\":\"negative\"}", 1);
    ftg_fail_body(F, "sendMessage", 299, "{\"ok\":false,\"description\":\"odd status\"}", 1);
    for (int i = 0; i < 4; i++)
        send_to(42, 0, "x", "c");
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "7777777"), 0);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "-3"), 0);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "418"), 0);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "400"), 2);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "4xx"), 1);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "other"), 1);
    assert_int_equal(th_metric("routerd_telegram_send_failures_total", "7777777", NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Outbox                                                                    */

/* A 429 longer than the send budget: the reply waits in the store and
 * arrives after the wait, not before; a later reply to that chat queues
 * behind it; other chats are not held up. */
static void test_outbox_long_429(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    launch();
    ftg_flood(F, 42, 3000);
    long long t0 = th_now_ms();
    assert_int_equal(send_to(42, 5, "first", "c-first"), RD_OK);
    assert_true(th_now_ms() - t0 < 2500);
    assert_int_equal(th_kv_count("o/"), 1);
    assert_int_equal(send_to(42, 6, "second", "c-second"), RD_OK);
    assert_int_equal(th_kv_count("o/"), 2);
    assert_int_equal(send_to(43, 0, "other chat", "c-other"), RD_OK);
    assert_int_equal(delivered("other chat", NULL, NULL), 1);
    assert_int_equal(wait_delivered("second", 10000), 1);
    long long ta = 0, tb = 0;
    assert_int_equal(delivered("first", NULL, &ta), 1);
    assert_int_equal(delivered("second", NULL, &tb), 1);
    assert_true(ta >= ftg_flood_end(F));
    assert_true(tb >= ta);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    for (size_t i = 0; i < n; i++)
        if (r[i].text && !strcmp(r[i].text, "first")) assert_int_equal(r[i].reply_to, 5);
    ftg_recs_free(r, n);
    assert_true(wait_until(outbox_empty, 2000));
    assert_int_equal(th_metric("routerd_telegram_outbox_total", "delivered", NULL), 2);
    /* Not hammered while it waited. */
    assert_true(ftg_count(F, "sendMessage", 0) - ftg_count(F, "sendMessage", 1) <= 4);
}

/* A restart during the wait: the reply is delivered once, after it. */
static void test_outbox_restart(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    launch();
    ftg_flood(F, 42, 3000);
    assert_int_equal(send_to(42, 9, "survives", "c-restart"), RD_OK);
    assert_int_equal(th_kv_count("o/"), 1);
    restart();
    assert_int_equal(wait_delivered("survives", 10000), 1);
    long long ta = 0;
    delivered("survives", NULL, &ta);
    assert_true(ta >= ftg_flood_end(F));
    th_sleep_ms(500);
    restart();
    th_sleep_ms(500);
    assert_int_equal(delivered("survives", NULL, NULL), 1);
    assert_int_equal(th_kv_count("o/"), 0);
}

/* An outage longer than the budget: the reply waits in the outbox and goes
 * out once Telegram answers again, once. */
static void test_outbox_outage(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    launch();
    ftg_fail(F, "sendMessage", FTG_FAULT_500, 0, 40);
    long long t0 = th_now_ms();
    assert_int_equal(send_to(42, 0, "after the outage", "c-outage"), RD_OK);
    assert_true(th_now_ms() - t0 < 3000);
    assert_int_equal(wait_delivered("after the outage", 20000), 1);
    assert_true(wait_until(outbox_empty, 2000));
    th_sleep_ms(300);
    assert_int_equal(delivered("after the outage", NULL, NULL), 1);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 41);
}

/* What Telegram refuses past outbox_expiry_s is dropped, counted, logged. */
static void test_outbox_expiry(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    th_cfg("outbox_expiry_s", "1");
    launch();
    ftg_flood(F, 42, 4000);
    assert_int_equal(send_to(42, 0, "too late", "c-late"), RD_OK);
    assert_true(wait_until(outbox_empty, 5000));
    assert_int_equal(th_metric("routerd_telegram_outbox_expired_total", NULL, NULL), 1);
    assert_true(th_log_has("c-late expired"));
    th_sleep_ms(4000 - 1000);
    assert_int_equal(delivered("too late", NULL, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* Group migration                                                           */

static int64_t core_chat_of(const char *text) {
    th_msg *m;
    size_t n = th_msgs(&m, 0);
    int64_t chat = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].text && !strcmp(m[i].text, text)) chat = m[i].chat_id;
    th_msgs_free(m, n);
    return chat;
}

static void test_migration_mid_conversation(void **state) {
    (void)state;
    th_cfg("group_mode", "all");
    launch();
    th_echo_start(S, "echo: ");
    ftg_msg g = {.chat_id = -500, .chat_type = "group", .user_id = 77, .text = "in the group"};
    ftg_add_message(F, &g);
    int64_t chat = 0;
    assert_int_equal(wait_delivered("echo: in the group", 5000), 1);
    delivered("echo: in the group", &chat, NULL);
    assert_int_equal(chat, -500);
    /* The upgrade: a service message in each chat. */
    ftg_add_raw(F, "\"message\":{\"message_id\":20,\"from\":{\"id\":77,\"is_bot\":false,"
                   "\"first_name\":\"T\"},\"chat\":{\"id\":-500,\"type\":\"group\"},\"date\":1,"
                   "\"migrate_to_chat_id\":-1001234567890}");
    ftg_add_raw(F, "\"message\":{\"message_id\":1,\"from\":{\"id\":77,\"is_bot\":false,"
                   "\"first_name\":\"T\"},\"chat\":{\"id\":-1001234567890,\"type\":"
                   "\"supergroup\"},\"date\":1,\"migrate_from_chat_id\":-500}");
    ftg_msg sg = {.chat_id = -1001234567890, .user_id = 77, .text = "in the supergroup"};
    ftg_add_message(F, &sg);
    assert_int_equal(wait_delivered("echo: in the supergroup", 5000), 1);
    /* The core keeps seeing the old id (allowlist, persona, conversation),
     * replies go to the new one. */
    assert_int_equal(core_chat_of("in the supergroup"), -500);
    delivered("echo: in the supergroup", &chat, NULL);
    assert_int_equal(chat, -1001234567890);
    assert_true(th_log_has("group -500 was upgraded to supergroup -1001234567890"));
    /* Across a restart. */
    restart();
    th_echo_start(S, "echo: ");
    sg.text = "after restart";
    ftg_add_message(F, &sg);
    assert_int_equal(wait_delivered("echo: after restart", 5000), 1);
    assert_int_equal(core_chat_of("after restart"), -500);
    delivered("echo: after restart", &chat, NULL);
    assert_int_equal(chat, -1001234567890);
    assert_int_equal(th_metric("routerd_telegram_tracked_chats", "migrations", NULL), 1);
}

/* Learned from a refused send: the next messages from the new id speak as
 * the old group; contradicting or hostile migrations are refused. */
static void test_migration_from_send_error(void **state) {
    (void)state;
    th_cfg("group_mode", "all");
    launch();
    ftg_chat_error(F, -600, 400, "Bad Request: group chat was upgraded to a supergroup chat",
                   -1009999);
    assert_int_equal(send_to(-600, 0, "hello group", "c"), RD_OK);
    int64_t chat = 0;
    delivered("hello group", &chat, NULL);
    assert_int_equal(chat, -1009999);
    ftg_msg sg = {.chat_id = -1009999, .user_id = 77, .text = "from the new id"};
    ftg_add_message(F, &sg);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    assert_int_equal(core_chat_of("from the new id"), -600);
    /* A positive or out-of-range target is no migration. */
    ftg_add_raw(F, "\"message\":{\"message_id\":3,\"chat\":{\"id\":-700,\"type\":\"group\"},"
                   "\"date\":1,\"migrate_to_chat_id\":700}");
    ftg_add_raw(F, "\"message\":{\"message_id\":4,\"chat\":{\"id\":-701,\"type\":\"group\"},"
                   "\"date\":1,\"migrate_to_chat_id\":-9223372036854775808}");
    /* A second, contradicting migration of -600 is refused. */
    ftg_add_raw(F, "\"message\":{\"message_id\":5,\"chat\":{\"id\":-600,\"type\":\"group\"},"
                   "\"date\":1,\"migrate_to_chat_id\":-1008888}");
    ftg_msg after = {.chat_id = -700, .chat_type = "group", .user_id = 77, .text = "still -700"};
    ftg_add_message(F, &after);
    assert_int_equal(th_wait_submitted(2, 5000), 2);
    assert_int_equal(core_chat_of("still -700"), -700);
    assert_int_equal(th_metric("routerd_telegram_tracked_chats", "migrations", NULL), 1);
    assert_true(th_log_has("contradicts a known one"));
}

/* ------------------------------------------------------------------------ */
/* Per-chat state                                                            */

static void test_chat_cache_bound(void **state) {
    (void)state;
    th_cfg("chat_cache_max", "16");
    launch();
    for (int i = 0; i < 100; i++) {
        rd_outbound out = {.size = sizeof out,
                           .chat_id = 5000 + i,
                           .text = "partial",
                           .text_len = 7,
                           .correlation_id = "p"};
        int64_t id = 0;
        rd_error e = {0};
        assert_int_equal(th_ops()->progress(S, &out, &id, &e), RD_OK);
    }
    double n = th_metric("routerd_telegram_tracked_chats", "chats", NULL);
    assert_true(n >= 1);
    assert_true(n <= 16);
    assert_true(th_log_has("chat_cache_max (16) reached"));
}

/* Migrations are bounded by migrations_max: the oldest go, in the store
 * too. */
static void test_migrations_bound(void **state) {
    (void)state;
    th_cfg("migrations_max", "16");
    launch();
    for (int i = 0; i < 20; i++) {
        char p[256];
        snprintf(p, sizeof p,
                 "\"message\":{\"message_id\":3,\"chat\":{\"id\":%d,\"type\":\"group\"},"
                 "\"date\":1,\"migrate_to_chat_id\":%lld}",
                 -1000 - i, -1000000000000LL - i);
        ftg_add_raw(F, p);
    }
    long long end = th_now_ms() + 5000;
    while (th_skipped() < 20 && th_now_ms() < end)
        th_sleep_ms(10);
    assert_int_equal(th_skipped(), 20);
    assert_int_equal(th_metric("routerd_telegram_tracked_chats", "migrations", NULL), 16);
    assert_int_equal(th_kv_count("m/"), 16);
    assert_null(th_kv_get("m/-1000"));
    char *v = th_kv_get("m/-1019");
    assert_non_null(v);
    free(v);
    assert_true(th_log_has("migrations_max (16) reached"));
    /* After a restart the newest are still known. */
    restart();
    assert_int_equal(th_metric("routerd_telegram_tracked_chats", "migrations", NULL), 16);
}

/* A full outbox refuses further replies, counted and logged. */
static void test_outbox_bound(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    th_cfg("outbox_max", "1");
    launch();
    ftg_flood(F, 0, 5000);
    assert_int_equal(send_to(42, 0, "kept", "c-kept"), RD_OK);
    assert_int_equal(send_to(43, 0, "no room", "c-noroom"), RD_E_RETRY);
    assert_int_equal(th_kv_count("o/"), 1);
    assert_int_equal(th_metric("routerd_telegram_outbox_total", "full", NULL), 1);
    assert_true(th_log_has("cannot wait in the outbox: full"));
    assert_int_equal(wait_delivered("kept", 10000), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_longpoll_extreme_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_extreme_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_state_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_extremes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_code_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_long_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_mid_conversation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_send_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_bound, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("blocking send()", tests, NULL, NULL);
    async_mode = 1;
    return failed +
           cmocka_run_group_tests_name("send() finishing later (ABI 1.4)", tests, NULL, NULL);
}
