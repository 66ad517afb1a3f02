/*
 * In-process tests of formatted replies against the fake Bot API server
 * (which refuses entities that break Telegram's rules): a Markdown reply
 * arrives as text + the exact entities, long formatted replies arrive as
 * parts that pass the checker, notices are rendered too, format = plain
 * and link_preview = off reach the wire.
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
#include "telegram_format.h"
#include "telegram_parse.h"
#include "fake_host.h"
#include "tg_entity_check.h"

#define TOKEN "123456:AAtestSecretPart-xyz"
#define SECRET "AAtestSecretPart-xyz"

static ftg *F;
static void *S;
static int async_mode;

static int setup(void **state) {
    (void)state;
    F = th_fake_api(TOKEN, "5");
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

static rd_status send_text(int64_t chat, const char *text, uint32_t flags, int64_t edit_of) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .reply_to = 9,
                       .text = text,
                       .text_len = strlen(text),
                       .flags = flags,
                       .correlation_id = "cid-f",
                       .edit_of = edit_of};
    rd_error e = {0};
    /* the second run: as a 1.4 router sends (out->done, send_done()) */
    if (async_mode) return rdpt_send(S, &out, &e);
    return th_ops()->send(S, &out, &e);
}

static const char *const REPLY = "## Result\n\n"
                                 "The **answer** is `42`, see [docs](https://example.com/d).\n\n"
                                 "```python\nprint(42)\n```\n\n"
                                 "> ~~old~~ *new*\n\n"
                                 "- one\n- two";

static const char *const REPLY_TEXT = "Result\n\n"
                                      "The answer is 42, see docs.\n\n"
                                      "print(42)\n\n"
                                      "old new\n\n"
                                      "\xE2\x80\xA2 one\n\xE2\x80\xA2 two";

static const char *const REPLY_ENTS =
    "[{\"type\":\"bold\",\"offset\":0,\"length\":6},"
    "{\"type\":\"bold\",\"offset\":12,\"length\":6},"
    "{\"type\":\"code\",\"offset\":22,\"length\":2},"
    "{\"type\":\"text_link\",\"offset\":30,\"length\":4,\"url\":\"https://example.com/d\"},"
    "{\"type\":\"pre\",\"offset\":37,\"length\":9,\"language\":\"python\"},"
    "{\"type\":\"blockquote\",\"offset\":48,\"length\":7},"
    "{\"type\":\"strikethrough\",\"offset\":48,\"length\":3},"
    "{\"type\":\"italic\",\"offset\":52,\"length\":3}]";

static void test_formatted_reply(void **state) {
    (void)state;
    launch();
    assert_int_equal(send_text(42, REPLY, 0, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].text, REPLY_TEXT);
    assert_non_null(r[0].entities);
    assert_string_equal(r[0].entities, REPLY_ENTS);
    /* Entities instead of a parse mode; previews stay on by default. */
    assert_null(r[0].parse_mode);
    assert_false(r[0].link_preview_disabled);
    assert_null(strstr(r[0].body, "link_preview_options"));
    assert_int_equal(r[0].reply_to, 9);
    ftg_recs_free(r, n);
}

static void test_notice_rendered(void **state) {
    (void)state;
    launch();
    assert_int_equal(send_text(42, "Sorry, **the agent failed**. Try `/new`.", RD_OUT_NOTICE, 0),
                     RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, "Sorry, the agent failed. Try /new.");
    assert_string_equal(r[0].entities, "[{\"type\":\"bold\",\"offset\":7,\"length\":16},"
                                       "{\"type\":\"code\",\"offset\":29,\"length\":4}]");
    ftg_recs_free(r, n);
}

static void test_plain_and_no_preview(void **state) {
    (void)state;
    th_cfg("format", "plain");
    th_cfg("link_preview", "off");
    launch();
    assert_int_equal(send_text(42, REPLY, 0, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, REPLY);
    assert_null(r[0].entities);
    assert_null(r[0].parse_mode);
    assert_true(r[0].link_preview_disabled);
    assert_non_null(strstr(r[0].body, "\"link_preview_options\":{\"is_disabled\":true}"));
    ftg_recs_free(r, n);
}

static void test_parse_mode_wins(void **state) {
    (void)state;
    /* An explicit parse_mode keeps the text for Telegram to parse. */
    th_cfg("parse_mode", "HTML");
    launch();
    assert_int_equal(send_text(42, "<b>x</b> **y**", 0, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, "<b>x</b> **y**");
    assert_string_equal(r[0].parse_mode, "HTML");
    assert_null(r[0].entities);
    ftg_recs_free(r, n);
}

static void test_formatted_split(void **state) {
    (void)state;
    launch();
    /* ~12,000 units: prose with bold and links, a long code block, a quote,
     * emoji (surrogate pairs) everywhere. */
    size_t cap = 256 * 1024, len = 0;
    char *md = malloc(cap);
    for (int i = 0; i < 60; i++)
        len += (size_t)snprintf(
            md + len, cap - len,
            "Para %d with **bold \xF0\x9F\x98\x80 text** and [a link](https://e.org/%d)"
            " and `code`.\n\n",
            i, i);
    len += (size_t)snprintf(md + len, cap - len, "```rust\n");
    for (int i = 0; i < 250; i++)
        len +=
            (size_t)snprintf(md + len, cap - len, "let v%03d = \"\xF0\x9F\x8E\x89\"; // line\n", i);
    len += (size_t)snprintf(md + len, cap - len, "```\n\n> quoted *tail* \xF0\x9F\x91\x8D\n");
    assert_int_equal(send_text(42, md, 0, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_true(n >= 3);
    int pre_parts = 0, code_lines = 0;
    for (size_t i = 0; i < n; i++) {
        /* The fake accepted every part on the first try. */
        assert_int_equal(r[i].status, 200);
        assert_null(tgc_check(r[i].text, strlen(r[i].text), r[i].entities, 4096));
        assert_true(tg_utf16_len(r[i].text, strlen(r[i].text)) <= 4096);
        assert_int_equal(r[i].reply_to, i == 0 ? 9 : 0);
        if (r[i].entities && strstr(r[i].entities, "\"language\":\"rust\"")) pre_parts++;
        for (const char *s = r[i].text; (s = strstr(s, "let v")); s++) {
            assert_int_equal(atoi(s + 5), code_lines);
            code_lines++;
        }
    }
    /* The code block spans parts: each carries its own pre entity. */
    assert_true(pre_parts >= 2);
    assert_int_equal(code_lines, 250);
    assert_non_null(strstr(r[n - 1].entities, "blockquote"));
    ftg_recs_free(r, n);
    free(md);
}

static void test_entities_refused_fallback(void **state) {
    (void)state;
    launch();
    /* Telegram refusing a part's entities costs one more call, and the
     * part still arrives, as plain rendered text. */
    ftg_fail(F, "sendMessage", FTG_FAULT_ENTITIES, 0, 1);
    assert_int_equal(send_text(42, "a **b** c", 0, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].status, 400);
    assert_string_equal(r[0].entities, "[{\"type\":\"bold\",\"offset\":2,\"length\":1}]");
    assert_int_equal(r[1].status, 200);
    assert_string_equal(r[1].text, "a b c");
    assert_null(r[1].entities);
    ftg_recs_free(r, n);
}

/* An outage after the first part: the rest waits in the outbox and goes
 * out later, each part once, with its own entities (the outbox keeps the
 * Markdown whole and skips the parts already delivered). */
static void test_outbox_keeps_parts(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    launch();
    size_t cap = 64 * 1024, len = 0;
    char *md = malloc(cap);
    len += (size_t)snprintf(md + len, cap - len, "**Intro**\n\n```sh\n");
    for (int i = 0; i < 800; i++)
        len += (size_t)snprintf(md + len, cap - len, "echo line %03d \xF0\x9F\x98\x80\n", i);
    len += (size_t)snprintf(md + len, cap - len, "```\n\n_done_");
    tg_part *want = NULL;
    size_t nw = tg_format(md, len, 1, 4096, &want);
    assert_true(nw >= 3);
    /* The first request succeeds, the next 30 fail. */
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 0, 1);
    ftg_fail(F, "sendMessage", FTG_FAULT_500, 0, 30);
    assert_int_equal(send_text(42, md, 0, 0), RD_OK);
    long long end = th_now_ms() + 20000;
    while (ftg_count(F, "sendMessage", 1) < nw && th_now_ms() < end)
        th_sleep_ms(50);
    th_sleep_ms(300);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, nw);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(r[i].text, want[i].text);
        char *j = tg_entities_json(&want[i]);
        assert_non_null(r[i].entities);
        assert_string_equal(r[i].entities, j);
        free(j);
        assert_int_equal(r[i].reply_to, i == 0 ? 9 : 0);
    }
    ftg_recs_free(r, n);
    tg_parts_free(want, nw);
    free(md);
}

static void test_final_edit_formats(void **state) {
    (void)state;
    launch();
    /* Progress showed the raw head; the final edit applies the entities
     * even though the text Telegram shows might have been the same. */
    rd_outbound prog = {.size = sizeof prog,
                        .chat_id = 42,
                        .text = "**done**",
                        .text_len = 8,
                        .correlation_id = "cid-f"};
    int64_t id = 0;
    rd_error e = {0};
    assert_int_equal(th_ops()->progress(S, &prog, &id, &e), RD_OK);
    assert_true(id > 0);
    assert_int_equal(send_text(42, "**done**", RD_OUT_FINAL_EDIT, id), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "editMessageText", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, "done");
    assert_string_equal(r[0].entities, "[{\"type\":\"bold\",\"offset\":0,\"length\":4}]");
    ftg_recs_free(r, n);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_formatted_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notice_rendered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_and_no_preview, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_mode_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_formatted_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entities_refused_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_keeps_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_edit_formats, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("blocking send()", tests, NULL, NULL);
    async_mode = 1;
    return failed +
           cmocka_run_group_tests_name("send() finishing later (ABI 1.4)", tests, NULL, NULL);
}
