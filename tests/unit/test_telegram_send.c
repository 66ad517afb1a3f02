/*
 * In-process tests of the telegram transport's replies against the fake
 * Bot API server: reply fields, splitting, retries (429, 5xx, dropped
 * connections), permanent errors, migration, markup, progress edits,
 * typing indicators, pacing, a chat's replies kept in order while the
 * router does not wait for each (ABI 1.7), and the send loop's
 * connections kept between bursts.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "telegram_parse.h"
#include "fake_host.h"
#include "harness.h"

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

static rd_status send_text(int64_t chat, int64_t reply_to, int64_t thread, const char *text,
                           uint32_t flags, int64_t edit_of, rd_error *err) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .thread_id = thread,
                       .reply_to = reply_to,
                       .text = text,
                       .text_len = strlen(text),
                       .flags = flags,
                       .correlation_id = "cid-1",
                       .edit_of = edit_of};
    rd_error e = {0};
    /* the second run: as a 1.4 router sends (out->done, send_done()) */
    if (async_mode) return rdpt_send(S, &out, err ? err : &e);
    return th_ops()->send(S, &out, err ? err : &e);
}

static void test_reply_fields(void **state) {
    (void)state;
    launch();
    assert_int_equal(send_text(42, 7, 3, "hi there", 0, 0, NULL), RD_OK);
    assert_int_equal(send_text(-1001234567890123, 0, 0, "big id", 0, 0, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].chat_id, 42);
    assert_int_equal(r[0].reply_to, 7);
    assert_true(r[0].allow_without_reply);
    assert_int_equal(r[0].thread_id, 3);
    assert_string_equal(r[0].text, "hi there");
    /* Ids beyond 2^53 travel exactly (the fake parses strings exactly). */
    assert_non_null(strstr(r[1].body, "\"chat_id\":-1001234567890123"));
    assert_int_equal(r[1].reply_to, 0);
    assert_null(strstr(r[1].body, "reply_parameters"));
    ftg_recs_free(r, n);
    assert_int_equal(th_metric("routerd_telegram_messages_sent_total", "sendMessage", NULL), 2);

    /* Blank text is refused without a call; invalid UTF-8 is repaired. */
    rd_error err = {0};
    assert_int_equal(send_text(42, 0, 0, " \n ", 0, 0, &err), RD_E_FATAL);
    assert_int_equal(send_text(42, 0, 0, "bad \xC3( byte", 0, 0, NULL), RD_OK);
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 3);
    assert_string_equal(r[2].text, "bad \xEF\xBF\xBD( byte");
    ftg_recs_free(r, n);
    if (!async_mode) return;
    /* A whole message of 4,000 two-byte characters: the loop reads its
     * 8 KB echo through a 4 KiB buffer, and takes the id from it. */
    char big[8001];
    for (int i = 0; i < 4000; i++)
        memcpy(big + 2 * i, "\xD0\xAF", 2);
    big[8000] = 0;
    rd_outbound o = {.size = sizeof o, .chat_id = 42, .text = big, .text_len = 8000};
    rd_status st;
    rd_send *s = rdpt_send_start(S, &o, &st, &err);
    assert_int_equal(st, RD_PENDING);
    int64_t id = 0;
    assert_int_equal(rdpt_send_wait(s, &err, &id), RD_OK);
    assert_true(id > 0);
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 4);
    assert_string_equal(r[3].text, big);
    ftg_recs_free(r, n);
}

static char *long_text(size_t *chars) {
    /* 10,000 characters: Latin, CJK, emoji (surrogate pairs), combining. */
    static const char *const unit[] = {"Hello world, this is routerd. ",
                                       "你好，世界。这是测试。",
                                       "😀🎉👍🏽 ",
                                       "e\xCC\x81t\xC3\xA9 ",
                                       "\n",
                                       "\n\n"};
    static const size_t unit_chars[] = {30, 11, 5, 6, 1, 2};
    size_t cap = 64 * 1024, len = 0, k = 0, c = 0;
    char *text = malloc(cap);
    while (c < 10000) {
        size_t i = (k * 7 + k / 3) % 6;
        k++;
        strcpy(text + len, unit[i]);
        len += strlen(unit[i]);
        c += unit_chars[i];
    }
    text[len] = 0;
    *chars = c;
    return text;
}

static void test_long_reply_split(void **state) {
    (void)state;
    /* Plain: the parts must join to the exact text (formatted splitting is
     * in test_formatted_split). */
    th_cfg("format", "plain");
    launch();
    size_t chars;
    char *text = long_text(&chars);
    assert_true(chars >= 10000);
    assert_int_equal(send_text(42, 5, 0, text, 0, 0, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_true(n >= 3);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* The fake answered 200: within 4096 UTF-16 units, valid UTF-8. */
        assert_int_equal(r[i].status, 200);
        assert_true(tg_utf16_len(r[i].text, strlen(r[i].text)) <= 4096);
        assert_int_equal(r[i].reply_to, i == 0 ? 5 : 0);
        total += strlen(r[i].text);
    }
    char *joined = calloc(1, total + 1);
    for (size_t i = 0; i < n; i++)
        strcat(joined, r[i].text);
    assert_string_equal(joined, text);
    free(joined);
    ftg_recs_free(r, n);
    free(text);
}

static void test_retry_429(void **state) {
    (void)state;
    launch();
    ftg_fail(F, "sendMessage", FTG_FAULT_429, 1, 1);
    long long t0 = th_now_ms();
    assert_int_equal(send_text(42, 0, 0, "after the wait", 0, 0, NULL), RD_OK);
    long long dt = th_now_ms() - t0;
    assert_true(dt >= 1000);
    assert_true(dt < 3000);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 1);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 2);
    assert_int_equal(th_metric("routerd_telegram_retries_total", "429", NULL), 1);
    assert_int_equal(th_metric("routerd_telegram_api_errors_total", "sendMessage", "429"), 1);
}

static void test_retry_5xx_and_drops(void **state) {
    (void)state;
    launch();
    ftg_fail(F, "sendMessage", FTG_FAULT_500, 0, 2);
    /* curl itself retries once when a reused connection dies without an
     * answer; the second drop is on a fresh connection and ours to retry. */
    ftg_fail(F, "sendMessage", FTG_FAULT_DROP, 0, 2);
    ftg_fail(F, "sendMessage", FTG_FAULT_502_HTML, 0, 1);
    assert_int_equal(send_text(42, 0, 0, "persist", 0, 0, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, "persist");
    ftg_recs_free(r, n);
    assert_int_equal(th_metric("routerd_telegram_retries_total", "5xx", NULL), 3);
    assert_int_equal(th_metric("routerd_telegram_retries_total", "network", NULL), 1);
    /* A 200 whose body is cut counts as delivered: resending would
     * duplicate the message. */
    ftg_fail(F, "sendMessage", FTG_FAULT_TRUNCATED, 0, 1);
    assert_int_equal(send_text(42, 0, 0, "once only", 0, 0, NULL), RD_OK);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 7);
}

static void test_permanent_errors(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "2");
    th_cfg("outbox_max", "0");
    launch();
    ftg_chat_error(F, 666, 403, "Forbidden: bot was blocked by the user", 0);
    rd_error err = {0};
    assert_int_equal(send_text(666, 0, 0, "anyone?", 0, 0, &err), RD_E_FATAL);
    assert_non_null(strstr(err.msg, "blocked"));
    assert_int_equal(ftg_count(F, "sendMessage", 0), 1); /* not retried */
    assert_int_equal(th_metric("routerd_telegram_send_failures_total", "403", NULL), 1);
    ftg_chat_error(F, 667, 400, "Bad Request: chat not found", 0);
    assert_int_equal(send_text(667, 0, 0, "anyone?", 0, 0, &err), RD_E_FATAL);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 2);
    /* Without an outbox, transient errors past the retry budget come back
     * as RD_E_RETRY. */
    ftg_fail(F, "sendMessage", FTG_FAULT_500, 0, 1000);
    long long t0 = th_now_ms();
    assert_int_equal(send_text(42, 0, 0, "budget", 0, 0, &err), RD_E_RETRY);
    assert_true(th_now_ms() - t0 < 4000);
    assert_true(th_log_has("retry budget"));
}

static void test_migration(void **state) {
    (void)state;
    launch();
    ftg_chat_error(F, -500, 400, "Bad Request: group chat was upgraded to a supergroup chat",
                   -1001234567890);
    assert_int_equal(send_text(-500, 0, 0, "to the supergroup", 0, 0, NULL), RD_OK);
    assert_int_equal(send_text(-500, 0, 0, "again", 0, 0, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_int_equal(n, 3); /* one refused, then two straight to the new id */
    assert_int_equal(r[0].chat_id, -500);
    assert_int_equal(r[1].chat_id, -1001234567890);
    assert_int_equal(r[2].chat_id, -1001234567890);
    assert_int_equal(r[2].status, 200);
    ftg_recs_free(r, n);
    assert_true(th_log_has("allowlist"));
}

static void test_markup(void **state) {
    (void)state;
    th_cfg("parse_mode", "MarkdownV2");
    launch();
    /* Agent text is markup; when Telegram cannot parse it, plain text. */
    assert_int_equal(send_text(42, 0, 0, "Costs 3.50 - done!", 0, 0, NULL), RD_OK);
    /* Notices are escaped to show literally. */
    assert_int_equal(send_text(42, 0, 0, "Sorry (try again).", RD_OUT_NOTICE, 0, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 0, &r);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].status, 400);
    assert_int_equal(r[1].status, 200);
    assert_null(r[1].parse_mode);
    assert_string_equal(r[1].text, "Costs 3.50 - done!");
    assert_int_equal(r[2].status, 200);
    assert_string_equal(r[2].parse_mode, "MarkdownV2");
    assert_string_equal(r[2].text, "Sorry \\(try again\\)\\.");
    ftg_recs_free(r, n);
    th_shutdown(S);
    S = NULL;

    th_cfg("parse_mode", "HTML");
    th_cfg("escape_replies", "true");
    launch();
    assert_int_equal(send_text(42, 0, 0, "a <b> & c", 0, 0, NULL), RD_OK);
    n = ftg_records(F, "sendMessage", 0, &r);
    assert_int_equal(r[n - 1].status, 200);
    assert_string_equal(r[n - 1].text, "a &lt;b&gt; &amp; c");
    assert_string_equal(r[n - 1].parse_mode, "HTML");
    ftg_recs_free(r, n);
}

/* ABI 1.3: send() tells the id of the last message it sent (the one with
 * the markup), 0 when the reply waits in the outbox; a question without
 * choices asks for a reply (force_reply, selective when it quotes). */
static rd_status send_out(int64_t chat, int64_t reply_to, const char *text, uint32_t flags,
                          const char *const *choices, int64_t *sent_id, uint32_t size) {
    rd_outbound out = {.size = size ? size : sizeof out,
                       .chat_id = chat,
                       .reply_to = reply_to,
                       .text = text,
                       .text_len = strlen(text),
                       .flags = flags,
                       .correlation_id = "task-1",
                       .update_id = -1,
                       .choices = choices,
                       .sent_id = sent_id};
    rd_error e = {0};
    return th_ops()->send(S, &out, &e);
}

static void test_sent_id_and_question(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "1");
    launch();
    int64_t id = -1;
    assert_int_equal(send_out(42, 0, "Ready to deploy?", RD_OUT_QUESTION, NULL, &id, 0), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_true(id > 0);
    assert_int_equal(id, r[0].message_id);
    assert_non_null(r[0].reply_markup);
    assert_non_null(strstr(r[0].reply_markup, "\"force_reply\":true"));
    assert_null(strstr(r[0].reply_markup, "selective"));
    ftg_recs_free(r, n);

    /* Quoting someone: only that person is asked (groups). */
    assert_int_equal(send_out(-100, 7, "Which one?", RD_OUT_QUESTION, NULL, &id, 0), RD_OK);
    /* Choices: the keyboard, not force_reply. */
    static const char *const yes_no[] = {"yes", "no", NULL};
    int64_t id2 = -1;
    assert_int_equal(send_out(42, 0, "Approve?", RD_OUT_QUESTION, yes_no, &id2, 0), RD_OK);
    /* Not a question: no markup; no sent_id asked: fine. */
    assert_int_equal(send_out(42, 0, "FYI", 0, NULL, NULL, 0), RD_OK);
    /* A 1.2 caller's struct ends before sent_id: nothing is written. */
    int64_t untouched = 99;
    assert_int_equal(send_out(42, 0, "old caller", 0, NULL, &untouched,
                              (uint32_t)offsetof(rd_outbound, sent_id)),
                     RD_OK);
    assert_int_equal(untouched, 99);
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 5);
    assert_int_equal(id, r[1].message_id);
    assert_int_equal(r[1].reply_to, 7);
    assert_non_null(strstr(r[1].reply_markup, "\"force_reply\":true,\"selective\":true"));
    assert_int_equal(id2, r[2].message_id);
    assert_non_null(strstr(r[2].reply_markup, "inline_keyboard"));
    assert_null(strstr(r[2].reply_markup, "force_reply"));
    assert_null(r[3].reply_markup);
    ftg_recs_free(r, n);

    /* Split in parts: the id of the last one, which carries the markup. */
    size_t chars;
    char *text = long_text(&chars);
    assert_int_equal(send_out(42, 0, text, RD_OUT_QUESTION, NULL, &id, 0), RD_OK);
    free(text);
    n = ftg_records(F, "sendMessage", 1, &r);
    assert_true(n > 6);
    assert_int_equal(id, r[n - 1].message_id);
    assert_non_null(strstr(r[n - 1].reply_markup, "force_reply"));
    assert_null(r[n - 2].reply_markup);
    ftg_recs_free(r, n);

    /* Telegram refuses for longer than the budget: the outbox keeps it and
     * the id is not known (0). */
    size_t before = ftg_count(F, "sendMessage", 1);
    ftg_flood(F, 42, 2500);
    id = -1;
    assert_int_equal(send_out(42, 0, "Later?", RD_OUT_QUESTION, NULL, &id, 0), RD_OK);
    assert_int_equal(id, 0);
    assert_int_equal(ftg_wait_count(F, "sendMessage", before + 1, 20000), before + 1);
}

static rd_status progress(int64_t chat, const char *text, int64_t edit_of, int64_t *id) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .reply_to = 11,
                       .text = text,
                       .text_len = strlen(text),
                       .edit_of = edit_of};
    rd_error err = {0};
    return th_ops()->progress(S, &out, id, &err);
}

static void test_progress_edits(void **state) {
    (void)state;
    th_cfg("edit_interval_ms", "300");
    launch();
    int64_t id = 0;
    assert_int_equal(progress(42, "Thinking", 0, &id), RD_OK);
    assert_true(id > 0);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 1);
    int64_t id2 = 0;
    /* Too soon: skipped, same message kept. */
    assert_int_equal(progress(42, "Thinking.", id, &id2), RD_OK);
    assert_int_equal(id2, id);
    assert_int_equal(ftg_count(F, "editMessageText", 0), 0);
    th_sleep_ms(350);
    assert_int_equal(progress(42, "Thinking..", id, &id2), RD_OK);
    assert_int_equal(ftg_count(F, "editMessageText", 1), 1);
    th_sleep_ms(350);
    /* Identical text: no call at all. */
    assert_int_equal(progress(42, "Thinking..", id, &id2), RD_OK);
    assert_int_equal(ftg_count(F, "editMessageText", 0), 1);
    /* The final reply replaces the progress message. */
    assert_int_equal(send_text(42, 11, 0, "The answer is 42.", RD_OUT_FINAL_EDIT, id, NULL), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "editMessageText", 1, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[1].message_id, id);
    assert_string_equal(r[1].text, "The answer is 42.");
    ftg_recs_free(r, n);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 1);
    /* A final text equal to what is shown needs no edit; "not modified"
     * from the server counts as success too. */
    int64_t id3 = 0;
    assert_int_equal(progress(43, "Same", 0, &id3), RD_OK);
    assert_int_equal(send_text(43, 0, 0, "Same", RD_OUT_FINAL_EDIT, id3, NULL), RD_OK);
    assert_int_equal(ftg_count(F, "editMessageText", 0), 2);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 2);
    /* An edit of a message that is gone falls back to a new message. */
    assert_int_equal(send_text(44, 0, 0, "fresh", RD_OUT_FINAL_EDIT, 999999, NULL), RD_OK);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 3);
    /* A progress edit Telegram refused leaves the older text shown: a
     * final reply equal to the refused text is still edited in. */
    int64_t id4 = 0;
    assert_int_equal(progress(45, "Step 1", 0, &id4), RD_OK);
    th_sleep_ms(350);
    ftg_fail(F, "editMessageText", FTG_FAULT_500, 0, 1);
    assert_int_equal(progress(45, "Step 1, step 2", id4, &id2), RD_OK);
    assert_int_equal(send_text(45, 0, 0, "Step 1, step 2", RD_OUT_FINAL_EDIT, id4, NULL), RD_OK);
    n = ftg_records(F, "editMessageText", 1, &r);
    assert_true(n >= 1);
    assert_int_equal(r[n - 1].message_id, id4);
    assert_string_equal(r[n - 1].text, "Step 1, step 2");
    ftg_recs_free(r, n);
}

static void test_typing(void **state) {
    (void)state;
    th_cfg("typing", "true");
    th_cfg("typing_interval_ms", "1000");
    launch();
    rd_outbound w = {.size = sizeof w, .chat_id = 42, .thread_id = 5};
    /* A reply within the first 400 ms needs no indicator. */
    th_ops()->activity(S, &w, 1);
    th_sleep_ms(100);
    th_ops()->activity(S, &w, 0);
    th_sleep_ms(600);
    assert_int_equal(ftg_count(F, "sendChatAction", 0), 0);
    long long t0 = th_now_ms();
    th_ops()->activity(S, &w, 1);
    assert_int_equal(ftg_wait_count(F, "sendChatAction", 1, 1000), 1);
    assert_true(th_now_ms() - t0 >= 350);
    assert_int_equal(ftg_wait_count(F, "sendChatAction", 2, 1500), 2);
    th_ops()->activity(S, &w, 0);
    th_sleep_ms(100);
    size_t n = ftg_count(F, "sendChatAction", 1);
    th_sleep_ms(1200);
    assert_int_equal(ftg_count(F, "sendChatAction", 1), n);
    ftg_rec *r;
    n = ftg_records(F, "sendChatAction", 1, &r);
    assert_non_null(strstr(r[0].body, "\"action\":\"typing\""));
    assert_int_equal(r[0].thread_id, 5);
    ftg_recs_free(r, n);
    /* A failing chat action never fails anything else. */
    ftg_fail(F, "sendChatAction", FTG_FAULT_500, 0, 10);
    th_ops()->activity(S, &w, 1);
    assert_int_equal(send_text(42, 0, 0, "reply", 0, 0, NULL), RD_OK);
    th_ops()->activity(S, &w, 0);
}

/* Hundreds of chats typing at once, more than the loop takes per batch,
 * and started at different times: each gets one indicator per interval,
 * and a chat that stops gets no more. */
static void test_typing_many(void **state) {
    (void)state;
    th_cfg("typing", "true");
    th_cfg("typing_interval_ms", "4000"); /* rounds apart on a loaded machine */
    launch();
    enum { N = 600 };
    static rd_outbound w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (rd_outbound){.size = sizeof w[i], .chat_id = 1000 + i};
        th_ops()->activity(S, &w[i], 1);
        if (i == N / 2) th_sleep_ms(200); /* the second half comes due later */
    }
    assert_int_equal(ftg_wait_count(F, "sendChatAction", N, 3500), N);
    for (int i = 0; i < N; i += 2)
        th_ops()->activity(S, &w[i], 0);
    assert_int_equal(ftg_wait_count(F, "sendChatAction", N + N / 2, 8000), N + N / 2);
    th_sleep_ms(400);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendChatAction", 0, &r);
    assert_int_equal(n, N + N / 2);
    int seen[N] = {0};
    for (size_t k = 0; k < n; k++) {
        int64_t c = r[k].chat_id - 1000;
        assert_true(c >= 0 && c < N);
        seen[c]++;
        if (k >= N) assert_int_equal(c % 2, 1); /* the second round: only the chats typing */
    }
    ftg_recs_free(r, n);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], i % 2 ? 2 : 1);
    for (int i = 1; i < N; i += 2)
        th_ops()->activity(S, &w[i], 0);
}

/* With no chat waiting for its indicator the typing thread sleeps until
 * activity() wakes it: no periodic wake-ups on an idle router. */
static void test_typing_idle(void **state) {
    (void)state;
    th_cfg("typing", "true");
    th_cfg("typing_interval_ms", "1000");
    launch();
    rd_outbound w = {.size = sizeof w, .chat_id = 42};
    th_ops()->activity(S, &w, 1);
    assert_int_equal(ftg_wait_count(F, "sendChatAction", 1, 1500), 1);
    th_ops()->activity(S, &w, 0);
    th_sleep_ms(1200); /* the wait computed while the chat was active ends */
    long before = rt_thread_wakeups(0, "tg-typing");
    assert_true(before >= 0);
    th_sleep_ms(2500);
    assert_int_equal(rt_thread_wakeups(0, "tg-typing"), before);
    /* And it still wakes for the next chat. */
    th_ops()->activity(S, &w, 1);
    assert_int_equal(ftg_wait_count(F, "sendChatAction", 2, 1500), 2);
    assert_true(rt_thread_wakeups(0, "tg-typing") > before); /* the count sees wake-ups */
    th_ops()->activity(S, &w, 0);
}

static void test_slow_answer(void **state) {
    (void)state;
    th_cfg("request_timeout_s", "1");
    launch();
    /* The server takes longer than our timeout: we time out and send again
     * (at least once delivery: the slow one may have gone through too). */
    ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 1500, 1);
    long long t0 = th_now_ms();
    assert_int_equal(send_text(42, 0, 0, "slowly", 0, 0, NULL), RD_OK);
    assert_true(th_now_ms() - t0 >= 1000);
    assert_true(ftg_wait_count(F, "sendMessage", 1, 3000) >= 1);
    assert_int_equal(th_metric("routerd_telegram_retries_total", "network", NULL), 1);
}

typedef struct sender {
    int64_t chat;
    int count;
} sender;

static void *send_many(void *arg) {
    sender *s = arg;
    for (int i = 0; i < s->count; i++) {
        char t[32];
        snprintf(t, sizeof t, "m%d", i);
        send_text(s->chat, 0, 0, t, 0, 0, NULL);
    }
    return NULL;
}

static void test_pacing(void **state) {
    (void)state;
    th_cfg("throttle", "on");
    th_cfg("throttle_chat_interval_ms", "250");
    th_cfg("throttle_group_per_minute", "3");
    launch();
    sender a = {42, 3}, b = {43, 3};
    pthread_t ta, tb;
    long long t0 = th_now_ms();
    pthread_create(&ta, NULL, send_many, &a);
    pthread_create(&tb, NULL, send_many, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    long long dt = th_now_ms() - t0;
    /* Two chats in parallel: ~2 intervals, not 5. */
    assert_true(dt >= 450 && dt < 1200);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 6);
    /* The k-th message to a chat leaves no earlier than its slot, k
     * intervals after the start. (Gaps between arrivals can be shorter
     * when an earlier request was slow on a loaded machine.) */
    int k42 = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].chat_id != 42) continue;
        assert_true(r[i].t_ms >= t0 + 250LL * k42 - 10);
        k42++;
    }
    assert_int_equal(k42, 3);
    ftg_recs_free(r, n);
    /* A group gets at most 3 per minute here: the 4th would wait. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_text(-77, 0, 0, "g", 0, 0, NULL), RD_OK);
    assert_true(th_metric("routerd_telegram_throttle_wait_seconds", NULL, NULL) > 0);
}

/* A partial answer does not wait for the chat's slot (the backend's
 * thread would): it is not sent, and the next one is once the slot is
 * free. Replies still wait for theirs. */
static void test_progress_waits_for_no_slot(void **state) {
    (void)state;
    th_cfg("throttle", "on");
    th_cfg("throttle_chat_interval_ms", "1000");
    launch();
    assert_int_equal(send_text(42, 0, 0, "first", 0, 0, NULL), RD_OK);
    long long t0 = th_now_ms();
    int64_t id = -1;
    assert_int_equal(progress(42, "Thinking", 0, &id), RD_OK);
    assert_true(th_now_ms() - t0 < 500);
    assert_int_equal(id, 0);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 1);
    th_sleep_ms(1100);
    assert_int_equal(progress(42, "Thinking more", 0, &id), RD_OK);
    assert_true(id > 0);
    assert_int_equal(ftg_count(F, "sendMessage", 0), 2);
    /* a reply waits for the slot the partial answer took */
    t0 = th_now_ms();
    assert_int_equal(send_text(42, 0, 0, "The answer.", RD_OUT_FINAL_EDIT, id, NULL), RD_OK);
    assert_true(th_now_ms() - t0 >= 900);
}

/* ABI 1.5 (RD_PF_NOWAIT_SEND): asked not to wait, one plain message goes
 * to the send loop; a reply in several parts, with choices or behind the
 * outbox would wait, so it is refused with nothing sent, and the second
 * try sends it once. */
static void test_nowait(void **state) {
    (void)state;
    if (!async_mode) skip(); /* the flag comes with out->done only */
    launch();
    size_t refused = rdpt_nowait_refused();
    assert_int_equal(send_text(42, 1, 0, "plain", 0, 0, NULL), RD_OK);
    assert_int_equal(rdpt_nowait_refused(), refused);
    size_t chars;
    char *text = long_text(&chars);
    assert_int_equal(send_text(42, 2, 0, text, 0, 0, NULL), RD_OK);
    free(text);
    assert_int_equal(rdpt_nowait_refused(), refused + 1);
    static const char *const yes_no[] = {"yes", "no", NULL};
    rd_outbound out = {.size = sizeof out,
                       .chat_id = 43,
                       .text = "Approve?",
                       .flags = RD_OUT_QUESTION,
                       .update_id = -1,
                       .choices = yes_no};
    rd_error e = {0};
    assert_int_equal(rdpt_send(S, &out, &e), RD_OK);
    assert_int_equal(rdpt_nowait_refused(), refused + 2);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1 + 3 + 1); /* plain, the long one's three parts, the question */
    assert_string_equal(r[0].text, "plain");
    assert_int_equal(r[1].reply_to, 2);
    assert_string_equal(r[4].text, "Approve?");
    assert_non_null(r[4].reply_markup);
    ftg_recs_free(r, n);
}

typedef struct long_send {
    char *text;
    rd_status st;
} long_send;

static void *send_long(void *arg) {
    long_send *l = arg;
    rd_outbound out = {.size = sizeof out, .chat_id = 42, .reply_to = 3, .text = l->text};
    rd_error e = {0};
    l->st = rdpt_send(S, &out, &e);
    return NULL;
}

/* Chat 42's first reply refused with a 429 (retry after retry_s), and
 * its second handed over while the first waits: both pending. */
static void first_waits_second_behind(int retry_s, rd_send **s1, rd_send **s2) {
    ftg_fail(F, "sendMessage", FTG_FAULT_429, retry_s, 1);
    rd_status st;
    rd_error e = {0};
    rd_outbound o1 = {.size = sizeof o1, .chat_id = 42, .reply_to = 1, .text = "first"};
    *s1 = rdpt_send_start(S, &o1, &st, &e);
    assert_int_equal(st, RD_PENDING);
    long long until = th_now_ms() + 5000;
    while (ftg_count(F, "sendMessage", 0) < 1 && th_now_ms() < until)
        rdpt_sleep_ms(5);
    rd_outbound o2 = {.size = sizeof o2, .chat_id = 42, .reply_to = 2, .text = "second"};
    *s2 = rdpt_send_start(S, &o2, &st, &e);
    assert_int_equal(st, RD_PENDING);
}

/* RD_PF_ORDERED_SEND: replies handed over without waiting for the one
 * before go out in the order send() took them, even while the first waits
 * out a 429; another chat's reply is not held up behind them; a reply
 * that takes the blocking way (three parts) goes after them, and no
 * partial answer shows ahead of them. */
static void test_ordered_replies(void **state) {
    (void)state;
    if (!async_mode) skip(); /* a blocking send() is in order by itself */
    assert_true(th_plugin()->flags & RD_PF_ORDERED_SEND);
    launch();
    long long t0 = th_now_ms();
    rd_send *s1, *s2;
    first_waits_second_behind(1, &s1, &s2);
    rd_status st;
    rd_error e = {0};
    long_send l = {.text = long_text(&(size_t){0})};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, send_long, &l), 0);
    rd_outbound o3 = {.size = sizeof o3, .chat_id = 43, .reply_to = 9, .text = "elsewhere"};
    rd_send *s3 = rdpt_send_start(S, &o3, &st, &e);
    assert_int_equal(st, RD_PENDING);
    assert_int_equal(rdpt_send_wait(s3, &e, NULL), RD_OK);
    assert_true(th_now_ms() - t0 < 900); /* not behind chat 42's wait */
    rd_outbound pg = {.size = sizeof pg, .chat_id = 42, .text = "partial", .text_len = 7};
    int64_t shown = -1;
    assert_int_equal(th_ops()->progress(S, &pg, &shown, &e), RD_OK);
    assert_int_equal(shown, 0); /* nothing shown ahead of the replies going out */
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(rdpt_send_wait(s1, &e, &id1), RD_OK);
    assert_int_equal(rdpt_send_wait(s2, &e, &id2), RD_OK);
    pthread_join(th, NULL);
    free(l.text);
    assert_int_equal(l.st, RD_OK);
    assert_true(id1 > 0 && id2 > id1);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r), k = 0;
    assert_int_equal(n, 1 + 1 + 1 + 3);
    for (size_t i = 0; i < n; i++) {
        if (r[i].chat_id != 42) continue;
        if (k == 0) assert_string_equal(r[i].text, "first");
        if (k == 0) assert_true(r[i].t_ms - t0 >= 1000);
        if (k == 1) assert_string_equal(r[i].text, "second");
        if (k >= 2) assert_int_equal(r[i].reply_to, k == 2 ? 3 : 0);
        k++;
    }
    assert_int_equal(k, 5);
    assert_int_equal(ftg_count_text(F, "partial"), 0);
    ftg_recs_free(r, n);
}

typedef struct stopper {
    void *s;
} stopper;

static void *stop_it(void *arg) {
    th_shutdown(((stopper *)arg)->s);
    return NULL;
}

/* A stop while a chat's first reply waits out a long 429 and its second
 * waits behind it: each ends exactly once, both kept for after the restart
 * in their order (the outbox), none sent out of turn. */
static void test_ordered_replies_at_stop(void **state) {
    (void)state;
    if (!async_mode) skip();
    launch();
    rd_send *s1, *s2;
    first_waits_second_behind(3, &s1, &s2);
    rd_error e = {0};
    stopper sp = {S};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_it, &sp), 0);
    rd_status st1 = rdpt_send_wait(s1, &e, NULL), st2 = rdpt_send_wait(s2, &e, NULL);
    pthread_join(th, NULL);
    S = NULL;
    assert_true(st1 == RD_OK || st1 == RD_E_RETRY);
    assert_true(st2 == RD_OK || st2 == RD_E_RETRY);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 0);
    assert_int_equal(rdpt_pending_sends(), 0);
    /* kept: after the restart they go out, in their order */
    assert_int_equal(th_kv_count("o/"), (size_t)(st1 == RD_OK) + (st2 == RD_OK));
    ftg_clear_faults(F);
    th_new_run();
    launch();
    size_t want = (size_t)(st1 == RD_OK) + (st2 == RD_OK);
    assert_int_equal(ftg_wait_count(F, "sendMessage", want, 10000), want);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, want);
    if (n == 2) {
        assert_string_equal(r[0].text, "first");
        assert_string_equal(r[1].text, "second");
    }
    ftg_recs_free(r, n);
}

/* A burst's connections stay open for the next one. curl's own bound on
 * idle connections (four per transfer in curl at that moment) would close
 * most of them as the burst thins out, and the next burst would open them
 * again. */
static void test_connections_kept(void **state) {
    (void)state;
    if (!async_mode) skip(); /* the loop's connections */
    launch();
    enum { N = 12 };
    int first = 0;
    for (int round = 0; round < 2; round++) {
        ftg_fail(F, "sendMessage", FTG_FAULT_SLOW, 300, N); /* all N at once */
        rd_send *s[N];
        rd_status st;
        rd_error e = {0};
        for (int i = 0; i < N; i++) {
            rd_outbound o = {.size = sizeof o, .chat_id = 100 + i, .reply_to = 1, .text = "hi"};
            s[i] = rdpt_send_start(S, &o, &st, &e);
            assert_int_equal(st, RD_PENDING);
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(rdpt_send_wait(s[i], &e, NULL), RD_OK);
        if (round == 0) first = ftg_connections(F);
    }
    assert_true(first >= N);
    assert_true(ftg_connections(F) - first <= 1);
    assert_int_equal(ftg_count(F, "sendMessage", 1), 2 * N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reply_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_reply_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_5xx_and_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_markup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_waits_for_no_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typing_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typing_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pacing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_id_and_question, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nowait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordered_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordered_replies_at_stop, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("blocking send()", tests, NULL, NULL);
    async_mode = 1;
    return failed +
           cmocka_run_group_tests_name("send() finishing later (ABI 1.4)", tests, NULL, NULL);
}
