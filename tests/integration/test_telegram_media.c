/*
 * The real routerd with the telegram transport against the fake Bot API
 * server and the mock backend echoing attachments: a voice note, a
 * document and an album go in, reach the backend with their bytes, MIME
 * type and caption, and come back out by the right send method with the
 * same bytes; a file over max_media_bytes gets the notice without being
 * downloaded; routerd's output never shows the token or a /file/bot URL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "717171:AAmediaSecret-part_q"
#define SECRET "AAmediaSecret-part_q"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static unsigned char *bytes(size_t n, unsigned seed) {
    unsigned char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 13u + seed * 5u) ^ (i >> 2));
    return b;
}

static void add_file(const char *id, size_t n, unsigned seed) {
    unsigned char *b = bytes(n, seed);
    ftg_add_file(F, id, b, n, -1);
    free(b);
}

/* Waits until method was answered 200 n times; returns a copy of the last
 * (free with ftg_recs_free(r, 1)) or NULL. */
static ftg_rec *wait_method(const char *method, size_t n, int timeout_ms) {
    if (ftg_wait_count(F, method, n, timeout_ms) < n) return NULL;
    ftg_rec *r;
    size_t k = ftg_records(F, method, 1, &r);
    ftg_rec *one = calloc(1, sizeof *one);
    *one = r[k - 1];
    memset(&r[k - 1], 0, sizeof r[k - 1]);
    ftg_recs_free(r, k);
    return one;
}

static void same_part(const ftg_part *p, size_t n, unsigned seed, const char *type) {
    unsigned char *b = bytes(n, seed);
    assert_int_equal(p->len, n);
    assert_memory_equal(p->data, b, n);
    assert_string_equal(p->type, type);
    free(b);
}

static void test_files_round_trip(void **state) {
    (void)state;
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\ndrain_timeout_s = 10\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntyping = false\ntimeout = 1\nmax_media_bytes = 100000\n"
                    "unsupported_notice = \"Too much for me.\"\n"
                    "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\nattachments = echo\n"
                    "[persona.p]\nbackend = echo\nchats = 15\n",
                    ftg_base(F));
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);

    /* A voice note without caption: back as a voice note. */
    add_file("voice1", 3000, 1);
    ftg_msg v = {.chat_id = 15,
                 .media = "\"voice\":{\"file_id\":\"voice1\",\"file_unique_id\":\"u1\","
                          "\"duration\":2,\"mime_type\":\"audio/ogg\",\"file_size\":3000}"};
    ftg_add_message(F, &v);
    ftg_rec *r = wait_method("sendVoice", 1, 15000);
    assert_non_null(r);
    assert_int_equal(r->chat_id, 15);
    assert_int_equal(r->nparts, 1);
    same_part(&r->parts[0], 3000, 1, "audio/ogg");
    ftg_recs_free(r, 1);

    /* A document with caption: the caption reached the agent, the reply's
     * text is the caption of the file it sends back. */
    add_file("doc1", 5000, 2);
    ftg_msg d = {.chat_id = 15,
                 .caption = "read **this**",
                 .media = "\"document\":{\"file_id\":\"doc1\",\"file_unique_id\":\"u2\","
                          "\"file_name\":\"notes.pdf\",\"mime_type\":\"application/pdf\"}"};
    ftg_add_message(F, &d);
    r = wait_method("sendDocument", 1, 15000);
    assert_non_null(r);
    assert_string_equal(r->text, "echo: read this");
    assert_non_null(strstr(r->entities, "\"bold\""));
    assert_string_equal(r->parts[0].filename, "notes.pdf");
    same_part(&r->parts[0], 5000, 2, "application/pdf");
    ftg_recs_free(r, 1);

    /* An album: one request to the backend, one sendMediaGroup back. */
    add_file("al0", 1000, 3);
    add_file("al1", 1200, 4);
    ftg_msg a0 = {.chat_id = 15,
                  .caption = "two",
                  .media_group_id = "g1",
                  .media = "\"photo\":[{\"file_id\":\"al0\",\"file_unique_id\":\"u3\","
                           "\"width\":10,\"height\":10,\"file_size\":1000}]"};
    ftg_msg a1 = {.chat_id = 15,
                  .media_group_id = "g1",
                  .media = "\"photo\":[{\"file_id\":\"al1\",\"file_unique_id\":\"u4\","
                           "\"width\":10,\"height\":10,\"file_size\":1200}]"};
    ftg_add_message(F, &a0);
    ftg_add_message(F, &a1);
    r = wait_method("sendMediaGroup", 1, 15000);
    assert_non_null(r);
    assert_int_equal(r->nparts, 2);
    same_part(&r->parts[0], 1000, 3, "image/jpeg");
    same_part(&r->parts[1], 1200, 4, "image/jpeg");
    assert_non_null(strstr(r->media, "\"caption\":\"echo: two\""));
    ftg_recs_free(r, 1);
    assert_int_equal(ftg_count(F, "sendPhoto", 0), 0);

    /* Too large by the message: the notice, no download. */
    size_t downloads = ftg_count(F, "download", 0);
    ftg_msg big = {.chat_id = 15,
                   .media = "\"video\":{\"file_id\":\"big\",\"file_unique_id\":\"u5\","
                            "\"file_size\":500000,\"mime_type\":\"video/mp4\"}"};
    ftg_add_message(F, &big);
    long long end = rt_now_ms() + 15000;
    int noticed = 0;
    while (!noticed && rt_now_ms() < end) {
        ftg_rec *all;
        size_t n = ftg_records(F, "sendMessage", 1, &all);
        for (size_t i = 0; i < n; i++)
            noticed |= all[i].text && !strcmp(all[i].text, "Too much for me.");
        ftg_recs_free(all, n);
        rt_sleep_ms(20);
    }
    assert_true(noticed);
    assert_int_equal(ftg_count(F, "download", 0), downloads);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
    /* Nothing routerd printed holds the token or the file route. */
    assert_null(strstr(rt_stderr(p), SECRET));
    assert_null(strstr(rt_stdout(p), SECRET));
    assert_null(strstr(rt_stderr(p), "/file/bot"));
    assert_null(strstr(rt_stdout(p), "/file/bot"));
    assert_non_null(strstr(rt_stderr(p), "video not passed on (too_large)"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_files_round_trip, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
