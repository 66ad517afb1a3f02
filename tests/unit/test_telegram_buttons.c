/*
 * In-process tests of the telegram transport's buttons and conversation
 * hygiene against the fake Bot API: choices sent as an inline keyboard, a
 * press coming back as a choice, forged / foreign / expired presses
 * refused, edited messages in each edits mode, setMyCommands and which
 * group commands are addressed to the bot.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "fake_telegram.h"
#include "telegram_parse.h"
#include "fake_host.h"

#define TOKEN "123456:AAtestSecretPart-xyz"
#define SECRET "AAtestSecretPart-xyz"
#define HOOK_SECRET "hook-Secret_42"

static ftg *F;
static void *S;

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

static rd_status send_choices(int64_t chat, int64_t reply_to, const char *text,
                              const char *const *choices) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .reply_to = reply_to,
                       .text = text,
                       .text_len = strlen(text),
                       .correlation_id = "cid-b",
                       .update_id = -1,
                       .choices = choices};
    rd_error e = {0};
    return th_ops()->send(S, &out, &e);
}

/* The last sendMessage: its message id and the callback_data of button i
 * (copied to data); the labels shown are checked by the callers. */
static cJSON *last_keyboard(int64_t *msg_id) {
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_true(n >= 1);
    *msg_id = r[n - 1].message_id;
    assert_non_null(r[n - 1].reply_markup);
    cJSON *mk = cJSON_Parse(r[n - 1].reply_markup);
    ftg_recs_free(r, n);
    cJSON *kb = cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard");
    assert_true(cJSON_IsArray(kb));
    return mk;
}

static const char *button(cJSON *mk, int i, const char *field) {
    cJSON *kb = cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard");
    cJSON *row = cJSON_GetArrayItem(kb, i);
    assert_int_equal(cJSON_GetArraySize(row), 1); /* one button per row */
    cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(row, 0), field);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* Waits until n updates were submitted or skipped. */
static size_t wait_seen(size_t n) {
    long long end = th_now_ms() + 5000;
    while (th_submitted() + th_skipped() < n && th_now_ms() < end)
        th_sleep_ms(5);
    return th_submitted() + th_skipped();
}

static th_msg last_msg(th_msg **all, size_t *n) {
    *n = th_msgs(all, 1);
    assert_true(*n >= 1);
    return (*all)[*n - 1];
}

static void test_button_round_trip(void **state) {
    (void)state;
    S = th_launch_ok();
    static const char *const choices[] = {"Yes", "No, thanks", NULL};
    assert_int_equal(send_choices(42, 7, "Continue?", choices), RD_OK);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard")),
                     2);
    assert_string_equal(button(mk, 0, "text"), "Yes");
    assert_string_equal(button(mk, 1, "text"), "No, thanks");
    const char *data = button(mk, 1, "callback_data");
    assert_true(strlen(data) <= 64);
    /* The data names the choice; it does not carry it. */
    assert_null(strstr(data, "thanks"));

    ftg_add_callback(F, 42, 42, msg, data);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t n;
    th_msg got = last_msg(&m, &n);
    assert_false(got.skipped);
    assert_string_equal(got.text, "No, thanks");
    assert_true(got.flags & RD_MSG_CHOICE);
    assert_false(got.flags & RD_MSG_GROUP);
    assert_int_equal(got.chat_id, 42);
    assert_int_equal(got.user_id, 42);
    assert_int_equal(got.message_id, msg); /* the answer quotes the button message */
    assert_non_null(strstr(got.meta, "callback_query"));
    th_msgs_free(m, n);
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 1, 5000), 1);
    /* The keyboard is taken away once a choice is made. */
    assert_int_equal(ftg_wait_count(F, "editMessageReplyMarkup", 1, 5000), 1);
    ftg_rec *r;
    n = ftg_records(F, "editMessageReplyMarkup", 1, &r);
    char want[64];
    snprintf(want, sizeof want, "\"message_id\":%lld", (long long)msg);
    assert_non_null(strstr(r[0].body, want));
    assert_int_equal(r[0].chat_id, 42);
    assert_non_null(strstr(r[0].body, "\"inline_keyboard\":[]"));
    ftg_recs_free(r, n);
    n = ftg_records(F, "answerCallbackQuery", 1, &r);
    assert_non_null(strstr(r[0].body, "\"callback_query_id\":\"cq"));
    assert_null(strstr(r[0].body, "\"text\""));
    ftg_recs_free(r, n);
    th_ack_all(S);
    cJSON_Delete(mk);

    /* A restart keeps the key and the choices: the other button works. */
    th_shutdown(S);
    th_new_run();
    S = th_launch_ok();
    ftg_add_callback(F, 42, 42, msg, button(mk = last_keyboard(&msg), 0, "callback_data"));
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    got = last_msg(&m, &n);
    assert_string_equal(got.text, "Yes");
    th_msgs_free(m, n);
    cJSON_Delete(mk);
}

static void test_labels_and_bounds(void **state) {
    (void)state;
    th_cfg("buttons_max", "3");
    th_cfg("button_label_max", "10");
    S = th_launch_ok();
    static const char *const choices[] = {
        "  ", "A rather long choice text", "b", "\xF0\x9F\x91\x8D ok", "four", "five", NULL};
    assert_int_equal(send_choices(42, 0, "pick", choices), RD_OK);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    /* Blank choices are left out; at most buttons_max buttons. */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard")),
                     3);
    assert_string_equal(button(mk, 0, "text"), "A rather \xE2\x80\xA6");
    assert_string_equal(button(mk, 1, "text"), "b");
    assert_string_equal(button(mk, 2, "text"), "\xF0\x9F\x91\x8D ok");
    /* The press sends the whole choice, not the cut label. */
    ftg_add_callback(F, 42, 42, msg, button(mk, 0, "callback_data"));
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t n;
    assert_string_equal(last_msg(&m, &n).text, "A rather long choice text");
    th_msgs_free(m, n);
    cJSON_Delete(mk);
    assert_true(th_log_has("left out"));

    /* A long reply: the keyboard goes with its last part only. */
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (size_t i = 100; i < sizeof big - 1; i += 100)
        big[i] = ' ';
    static const char *const two[] = {"one", "two", NULL};
    assert_int_equal(send_choices(42, 0, big, two), RD_OK);
    ftg_rec *r;
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_true(n >= 3);
    assert_null(r[n - 2].reply_markup);
    assert_non_null(r[n - 1].reply_markup);
    ftg_recs_free(r, n);

    /* Telegram refusing the keyboard does not cost the reply. */
    ftg_fail_body(F, "sendMessage", 400,
                  "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: "
                  "BUTTON_DATA_INVALID\"}",
                  1);
    assert_int_equal(send_choices(42, 0, "still sent", two), RD_OK);
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_string_equal(r[n - 1].text, "still sent");
    assert_null(r[n - 1].reply_markup);
    ftg_recs_free(r, n);
    assert_true(th_log_has("without its buttons"));
}

/* Waits until the stored choices of a button know the message showing
 * them (recorded just after the send returned). */
static void wait_shown(const char *data) {
    long long exp = 0;
    char ref[16] = "";
    assert_int_equal(sscanf(data, "b1.%lld.%8[A-Za-z0-9_-].", &exp, ref), 2);
    char key[64];
    snprintf(key, sizeof key, "b/%010lld/%s", exp, ref);
    long long end = th_now_ms() + 10000;
    for (;;) {
        char *v = th_kv_get(key);
        int shown = v && strstr(v, "\"msg\":");
        free(v);
        if (shown) return;
        assert_true(th_now_ms() < end);
        th_sleep_ms(10);
    }
}

/* A reply Telegram refuses for longer than the send budget waits in the
 * outbox with its keyboard, and its buttons work once it is delivered. */
static void test_keyboard_through_outbox(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    S = th_launch_ok();
    ftg_flood(F, 42, 2500);
    static const char *const choices[] = {"later", NULL};
    assert_int_equal(send_choices(42, 3, "Delayed question", choices), RD_OK);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 0);
    assert_int_equal(ftg_wait_count(F, "sendMessage", 1, 20000), 1);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    assert_string_equal(button(mk, 0, "text"), "later");
    wait_shown(button(mk, 0, "callback_data"));
    ftg_add_callback(F, 42, 42, msg + 1, button(mk, 0, "callback_data"));
    ftg_add_callback(F, 42, 42, msg, button(mk, 0, "callback_data"));
    cJSON_Delete(mk);
    assert_int_equal(wait_seen(2), 2);
    th_msg *m;
    size_t n = th_msgs(&m, 1);
    /* The message id was recorded on delivery: only the real one counts. */
    assert_string_equal(m[0].why, "callback_forged");
    assert_false(m[1].skipped);
    assert_string_equal(m[1].text, "later");
    th_msgs_free(m, n);
}

static void test_forged_presses_refused(void **state) {
    (void)state;
    S = th_launch_ok();
    static const char *const choices[] = {"alpha", "beta", NULL};
    assert_int_equal(send_choices(42, 0, "Which?", choices), RD_OK);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    char data[80];
    snprintf(data, sizeof data, "%s", button(mk, 0, "callback_data"));
    cJSON_Delete(mk);

    char bad[80];
    snprintf(bad, sizeof bad, "%s", data);
    size_t l = strlen(bad);
    bad[l - 1] = bad[l - 1] == 'A' ? 'B' : 'A'; /* tampered MAC */
    ftg_add_callback(F, 42, 42, msg, bad);
    /* Another index under the same MAC. */
    snprintf(bad, sizeof bad, "%s", data);
    char *after_ref = strchr(strchr(bad + 3, '.') + 1, '.');
    assert_int_equal(after_ref[1], '0');
    after_ref[1] = '1';
    ftg_add_callback(F, 42, 42, msg, bad);
    /* The same button replayed in another chat, and on another message. */
    ftg_add_callback(F, 43, 43, msg, data);
    ftg_add_callback(F, 42, 42, msg + 1, data);
    ftg_add_callback(F, 42, 42, msg, "garbage");
    ftg_add_callback(F, 42, 42, msg, NULL);
    assert_int_equal(wait_seen(6), 6);
    assert_int_equal(th_submitted(), 0);
    th_msg *m;
    size_t n = th_msgs(&m, 1);
    for (size_t i = 0; i < n; i++) {
        assert_true(m[i].skipped);
        assert_string_equal(m[i].why, "callback_forged");
    }
    th_msgs_free(m, n);
    assert_int_equal(th_metric("routerd_telegram_updates_ignored_total", "callback_forged", NULL),
                     6);
    /* Each one is still answered, so the client stops its spinner. */
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 6, 5000), 6);
    ftg_rec *r;
    n = ftg_records(F, "answerCallbackQuery", 1, &r);
    assert_non_null(strstr(r[0].body, "not valid"));
    ftg_recs_free(r, n);
    assert_int_equal(ftg_count(F, "editMessageReplyMarkup", 0), 0);
    assert_true(th_log_has("button press refused"));
    th_ack_all(S);

    /* The real one still works. */
    ftg_add_callback(F, 42, 42, msg, data);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
}

static void test_expired_press_refused(void **state) {
    (void)state;
    th_cfg("buttons_expiry_s", "60");
    S = th_launch_ok();
    static const char *const choices[] = {"now", NULL};
    assert_int_equal(send_choices(42, 0, "Quick!", choices), RD_OK);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    th_wall_advance_ms(61000);
    ftg_add_callback(F, 42, 42, msg, button(mk, 0, "callback_data"));
    cJSON_Delete(mk);
    assert_int_equal(wait_seen(1), 1);
    assert_int_equal(th_submitted(), 0);
    th_msg *m;
    size_t n = th_msgs(&m, 1);
    assert_string_equal(m[0].why, "callback_expired");
    th_msgs_free(m, n);
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 1, 5000), 1);
    ftg_rec *r;
    n = ftg_records(F, "answerCallbackQuery", 1, &r);
    assert_non_null(strstr(r[0].body, "expired"));
    ftg_recs_free(r, n);
    /* The next keyboard sweeps the expired choices from the store. */
    assert_int_equal(th_kv_count("b/"), 1);
    th_shutdown(S);
    th_new_run();
    S = th_launch_ok();
    assert_int_equal(send_choices(42, 0, "Again", choices), RD_OK);
    assert_int_equal(th_kv_count("b/"), 1);
}

static void test_press_via_webhook(void **state) {
    (void)state;
    th_cfg("mode", "webhook");
    th_cfg("secret_token", HOOK_SECRET);
    S = th_launch_ok();
    long long end = th_now_ms() + 3000;
    while (!th_ready() && th_now_ms() < end)
        th_sleep_ms(5);
    static const char *const choices[] = {"red", "green", NULL};
    assert_int_equal(send_choices(-1005, 0, "Colour?", choices), RD_OK);
    int64_t msg;
    cJSON *mk = last_keyboard(&msg);
    char body[512];
    snprintf(body, sizeof body,
             "{\"update_id\":500,\"callback_query\":{\"id\":\"q1\",\"from\":{\"id\":77},"
             "\"message\":{\"message_id\":%lld,\"chat\":{\"id\":-1005,\"type\":\"supergroup\"}},"
             "\"data\":\"%s\"}}",
             (long long)msg, button(mk, 1, "callback_data"));
    cJSON_Delete(mk);
    assert_int_equal(th_http_post("/telegram/main", HOOK_SECRET, body, NULL), 200);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t n;
    th_msg got = last_msg(&m, &n);
    assert_string_equal(got.text, "green");
    assert_true(got.flags & RD_MSG_CHOICE);
    assert_true(got.flags & RD_MSG_GROUP);
    assert_int_equal(got.user_id, 77);
    th_msgs_free(m, n);
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 1, 5000), 1);
}

/* ------------------------------------------------------------------------ */
/* Edited messages                                                           */

static void add_edit(int64_t chat, int64_t message_id, const char *text) {
    ftg_msg e = {.chat_id = chat, .text = text, .kind = "edited_message", .message_id = message_id};
    ftg_add_message(F, &e);
}

static void test_edits_note(void **state) {
    (void)state;
    th_cfg("edits_notice", "**Edits** are not re-sent.");
    S = th_launch_ok();
    add_edit(42, 5, "fixed typo");
    assert_int_equal(wait_seen(1), 1);
    assert_int_equal(th_submitted(), 0);
    th_msg *m;
    size_t n = th_msgs(&m, 1);
    assert_string_equal(m[0].why, "edit_noted");
    th_msgs_free(m, n);
    assert_int_equal(ftg_wait_count(F, "sendMessage", 1, 5000), 1);
    ftg_rec *r;
    n = ftg_records(F, "sendMessage", 1, &r);
    /* The notice is rendered like any reply: Markdown to entities. */
    assert_string_equal(r[0].text, "Edits are not re-sent.");
    assert_non_null(r[0].entities);
    assert_non_null(strstr(r[0].entities, "\"bold\""));
    assert_int_equal(r[0].reply_to, 5);
    assert_int_equal(r[0].chat_id, 42);
    ftg_recs_free(r, n);
}

static void test_edits_answer_and_ignore(void **state) {
    (void)state;
    th_cfg("edits", "answer");
    S = th_launch_ok();
    add_edit(42, 5, "fixed typo");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t n;
    th_msg got = last_msg(&m, &n);
    assert_string_equal(got.text, "fixed typo");
    assert_true(got.flags & RD_MSG_EDITED);
    th_msgs_free(m, n);
    th_ack_all(S);
    th_shutdown(S);

    th_cfg("edits", "ignore");
    th_new_run();
    S = th_launch_ok();
    add_edit(42, 6, "again");
    assert_int_equal(wait_seen(1), 1);
    assert_int_equal(th_submitted(), 0);
    n = th_msgs(&m, 1);
    assert_string_equal(m[0].why, "edits_off");
    th_msgs_free(m, n);
    /* Telegram is not even asked for edits. */
    ftg_rec *r;
    n = ftg_records(F, "getUpdates", 1, &r);
    assert_null(strstr(r[n - 1].body, "edited_message"));
    assert_non_null(strstr(r[n - 1].body, "callback_query"));
    ftg_recs_free(r, n);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 0);
}

static void test_edits_older_key(void **state) {
    (void)state;
    th_cfg("edited_messages", "false");
    S = th_launch_ok();
    add_edit(42, 5, "x");
    assert_int_equal(wait_seen(1), 1);
    assert_int_equal(th_submitted(), 0);
    th_ack_all(S);
    th_shutdown(S);
    /* true meant "route edits again"; edits wins when both are written. */
    th_cfg("edited_messages", "true");
    th_new_run();
    S = th_launch_ok();
    add_edit(42, 6, "y");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_ack_all(S);
    th_shutdown(S);
    th_cfg("edits", "note");
    th_new_run();
    S = th_launch_ok();
    add_edit(42, 7, "z");
    assert_int_equal(wait_seen(1), 1);
    assert_int_equal(th_submitted(), 0);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */

static void test_set_my_commands(void **state) {
    (void)state;
    th_cfg("commands", "help: Show what I can do, /weather: Forecast for a city, new: Start over");
    S = th_launch_ok();
    assert_int_equal(ftg_wait_count(F, "setMyCommands", 1, 5000), 1);
    ftg_rec *r;
    size_t n = ftg_records(F, "setMyCommands", 1, &r);
    cJSON *o = cJSON_Parse(r[0].body);
    ftg_recs_free(r, n);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "commands");
    assert_int_equal(cJSON_GetArraySize(c), 4);
    static const char *const want[][2] = {{"new", "Start over"},
                                          {"persona", NULL},
                                          {"help", "Show what I can do"},
                                          {"weather", "Forecast for a city"}};
    for (int i = 0; i < 4; i++) {
        cJSON *e = cJSON_GetArrayItem(c, i);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "command")->valuestring,
                            want[i][0]);
        if (want[i][1])
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "description")->valuestring,
                                want[i][1]);
    }
    cJSON_Delete(o);

    /* Groups: a plain registered command is for this bot, others are not. */
    static const char *const texts[] = {"/help", "/foo bar", "/persona@other_bot x",
                                        "/persona@routerd_test_bot x", "/weather Paris"};
    for (size_t i = 0; i < 5; i++) {
        ftg_msg g = {.chat_id = -100200, .text = texts[i]};
        ftg_add_message(F, &g);
    }
    assert_int_equal(wait_seen(5), 5);
    th_msg *m;
    n = th_msgs(&m, 1);
    assert_int_equal(n, 5);
    assert_false(m[0].skipped);
    assert_string_equal(m[0].text, "/help");
    assert_true(m[0].flags & RD_MSG_COMMAND);
    assert_true(m[1].skipped);
    assert_string_equal(m[1].why, "not_addressed");
    assert_true(m[2].skipped);
    assert_string_equal(m[2].why, "other_bot_command");
    assert_false(m[3].skipped);
    assert_string_equal(m[3].text, "/persona x");
    assert_false(m[4].skipped);
    th_msgs_free(m, n);
    /* In a private chat every command is for the bot. */
    ftg_add_text(F, 42, "/foo");
    assert_int_equal(th_wait_submitted(4, 5000), 4);
}

static void test_commands_config(void **state) {
    (void)state;
    static const char *const bad[] = {"Help: capital", "help", "help:", "a-b: dash",
                                      "x: one, x: two"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_cfg("commands", bad[i]);
        rd_status st;
        rd_error err = {0};
        void *self = th_launch(&st, &err);
        assert_null(self);
        assert_int_equal(st, RD_E_CONFIG);
        assert_non_null(strstr(err.msg, "commands"));
    }
    /* A refused setMyCommands is a warning, not a failed start. */
    th_cfg("commands", "help: Show help");
    ftg_fail_body(F, "setMyCommands", 400,
                  "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: "
                  "BOT_COMMANDS_TOO_MUCH\"}",
                  1);
    S = th_launch_ok();
    long long end = th_now_ms() + 5000;
    while (!th_log_has("setMyCommands: ") && th_now_ms() < end)
        th_sleep_ms(10);
    assert_true(th_log_has("BOT_COMMANDS_TOO_MUCH"));
    ftg_add_text(F, 42, "still here");
    assert_int_equal(th_wait_submitted(1, 5000), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_button_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_through_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_presses_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_press_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_press_via_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edits_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edits_answer_and_ignore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edits_older_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_my_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
