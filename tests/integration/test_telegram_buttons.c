/*
 * The real routerd with the telegram transport against the fake Bot API
 * server and a mock backend that offers choices: the reply carries an
 * inline keyboard, a press reaches the backend as a choice and its answer
 * quotes the button message, a forged press reaches nobody, an edit gets
 * the notice instead of a second agent run, and the bot's commands are
 * registered.
 */
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

#define TOKEN "717171:AAbuttonsSecret-part_q"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

/* callback_data of button i of a recorded keyboard (malloc). */
static char *button_data(const ftg_rec *r, int i, const char *label) {
    assert_non_null(r->reply_markup);
    cJSON *mk = cJSON_Parse(r->reply_markup);
    cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mk, "inline_keyboard"), i);
    cJSON *b = cJSON_GetArrayItem(row, 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(b, "text")->valuestring, label);
    char *d = strdup(cJSON_GetObjectItemCaseSensitive(b, "callback_data")->valuestring);
    cJSON_Delete(mk);
    return d;
}

static void test_buttons_end_to_end(void **state) {
    (void)state;
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\ndrain_timeout_s = 10\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntyping = false\ntimeout = 1\n"
                    "commands = help: What I can do\n"
                    "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\nchoices = Yes, No\n"
                    "[persona.p]\nbackend = echo\nchats = *\n",
                    ftg_base(F));
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);

    /* Commands registered at start. */
    assert_int_equal(ftg_wait_count(F, "setMyCommands", 1, 10000), 1);
    ftg_rec *c;
    size_t nc = ftg_records(F, "setMyCommands", 1, &c);
    assert_non_null(strstr(c[0].body, "\"command\":\"new\""));
    assert_non_null(strstr(c[0].body, "\"command\":\"persona\""));
    assert_non_null(strstr(c[0].body, "\"command\":\"help\""));
    ftg_recs_free(c, nc);

    /* The backend's choices arrive as buttons. */
    ftg_add_text(F, 15, "Continue?");
    ftg_rec *r = ftg_wait_sent(F, 15, 0, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "echo: Continue?");
    int64_t msg = r->message_id;
    char *no = button_data(r, 1, "No");
    char *yes = button_data(r, 0, "Yes");
    ftg_recs_free(r, 1);

    /* A forged press goes nowhere but is answered. */
    char forged[80];
    snprintf(forged, sizeof forged, "%s", no);
    forged[strlen(forged) - 2] ^= 1;
    ftg_add_callback(F, 15, 15, msg, forged);
    /* The same button pressed in another chat. */
    ftg_add_callback(F, 16, 16, msg, yes);
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 2, 10000), 2);

    /* The real press reaches the backend as a choice. */
    ftg_add_callback(F, 15, 15, msg, no);
    r = ftg_wait_sent(F, 15, 1, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "echo: picked: No");
    assert_int_equal(r->reply_to, msg);
    ftg_recs_free(r, 1);
    assert_int_equal(ftg_wait_count(F, "answerCallbackQuery", 3, 10000), 3);
    assert_int_equal(ftg_wait_count(F, "editMessageReplyMarkup", 1, 10000), 1);
    /* Nothing was answered for the refused presses. */
    assert_null(ftg_wait_sent(F, 16, 0, 300));
    assert_null(ftg_wait_sent(F, 15, 2, 300));

    /* An edit: the notice, not a second agent run. */
    ftg_msg e = {.chat_id = 15, .text = "Continue??", .kind = "edited_message", .message_id = 1};
    ftg_add_message(F, &e);
    r = ftg_wait_sent(F, 15, 2, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "Edits aren't re-sent to the agent; send a new message instead.");
    ftg_recs_free(r, 1);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    /* The bot token never reached the log. */
    assert_null(strstr(rt_stderr(p), "AAbuttonsSecret"));
    assert_null(strstr(rt_stdout(p), "AAbuttonsSecret"));
    free(no);
    free(yes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_buttons_end_to_end, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
