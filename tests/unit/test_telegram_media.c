/*
 * In-process tests of the telegram transport's files against the fake Bot
 * API server: every media kind in (bytes, MIME type, name, caption reach
 * the core), albums as one message, media off / too large / unsupported
 * answered with the notice, download retries, hostile sizes; files out by
 * kind to the right send method, captions, sendMediaGroup; and no log
 * line ever shows the token or a /file/bot URL.
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
#include "fake_host.h"

#define TOKEN "123456:AAtestSecretPart-xyz"
#define SECRET "AAtestSecretPart-xyz"
#define NOTICE "That one I cannot take."

static ftg *F;
static void *S;

static int setup(void **state) {
    (void)state;
    F = th_fake_api(TOKEN, "1");
    th_cfg("unsupported_notice", NOTICE);
    S = NULL;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    /* Neither the token nor the file route may show in a log or error. */
    assert_false(th_log_has("/file/bot"));
    assert_false(th_log_has("file/bot"));
    th_fake_api_stop(F, S, SECRET);
    S = NULL;
    F = NULL;
    return 0;
}

/* Deterministic bytes for a file. */
static unsigned char *bytes(size_t n, unsigned seed) {
    unsigned char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((i * 31u + seed * 7u) ^ (i >> 3));
    return b;
}

static void add_file(const char *id, size_t n, unsigned seed, long long claimed) {
    unsigned char *b = bytes(n, seed);
    ftg_add_file(F, id, b, n, claimed);
    free(b);
}

static int64_t add_media(int64_t chat, const char *media, const char *caption, const char *group) {
    ftg_msg m = {.chat_id = chat, .media = media, .caption = caption, .media_group_id = group};
    return ftg_add_message(F, &m);
}

/* Whether a copied attachment (f: data, len) holds file n/seed. */
#define same_bytes(f, n, seed) same_data((f)->data, (f)->len, n, seed)
static int same_data(const unsigned char *data, size_t len, size_t n, unsigned seed) {
    unsigned char *b = bytes(n, seed);
    int ok = len == n && memcmp(data, b, n) == 0;
    free(b);
    return ok;
}

/* Waits for the notice (a sendMessage with the configured text). */
static size_t wait_notices(size_t n) {
    long long end = th_now_ms() + 10000;
    for (;;) {
        ftg_rec *r;
        size_t k = ftg_records(F, "sendMessage", 1, &r), have = 0;
        for (size_t i = 0; i < k; i++)
            have += r[i].text && !strcmp(r[i].text, NOTICE);
        ftg_recs_free(r, k);
        if (have >= n || th_now_ms() > end) return have;
        th_sleep_ms(10);
    }
}

typedef struct kind_case {
    const char *media; /* with FILE as the file id */
    const char *caption;
    const char *kind, *mime, *name;
    size_t size;
} kind_case;

static void test_each_kind_in(void **state) {
    (void)state;
    static const kind_case cases[] = {
        {"\"document\":{\"file_id\":\"d1\",\"file_unique_id\":\"ud1\",\"file_name\":\"report.pdf\","
         "\"mime_type\":\"application/pdf\",\"file_size\":3000}",
         "the report", "document", "application/pdf", "report.pdf", 3000},
        {"\"voice\":{\"file_id\":\"v1\",\"file_unique_id\":\"uv1\",\"duration\":3,"
         "\"mime_type\":\"audio/ogg\",\"file_size\":1200}",
         NULL, "voice", "audio/ogg", "voice.ogg", 1200},
        {"\"audio\":{\"file_id\":\"a1\",\"file_unique_id\":\"ua1\",\"duration\":200,"
         "\"file_name\":\"song.mp3\",\"mime_type\":\"audio/mpeg\"}",
         "listen", "audio", "audio/mpeg", "song.mp3", 2500},
        {"\"video\":{\"file_id\":\"vi1\",\"file_unique_id\":\"uvi1\",\"width\":640,\"height\":480,"
         "\"duration\":5,\"mime_type\":\"video/mp4\",\"file_size\":4000}",
         "a clip", "video", "video/mp4", "video.mp4", 4000},
        {"\"video_note\":{\"file_id\":\"vn1\",\"file_unique_id\":\"uvn1\",\"length\":240,"
         "\"duration\":4}",
         NULL, "video_note", "video/mp4", "video_note.mp4", 1800},
        {"\"sticker\":{\"file_id\":\"s1\",\"file_unique_id\":\"us1\",\"type\":\"regular\","
         "\"width\":512,\"height\":512,\"is_animated\":false,\"is_video\":false}",
         NULL, "sticker", "image/webp", "sticker.webp", 700},
        {"\"animation\":{\"file_id\":\"an1\",\"file_unique_id\":\"uan1\",\"width\":320,"
         "\"height\":240,\"duration\":2,\"mime_type\":\"video/mp4\",\"file_name\":\"fun.mp4\"},"
         "\"document\":{\"file_id\":\"an1\",\"file_unique_id\":\"uan1\",\"mime_type\":\"video/"
         "mp4\"}",
         "gif", "animation", "video/mp4", "fun.mp4", 900},
        /* Photo: the largest size that fits max_media_bytes (6000 is over it). */
        {"\"photo\":[{\"file_id\":\"p_s\",\"file_unique_id\":\"ups\",\"width\":90,\"height\":60,"
         "\"file_size\":500},{\"file_id\":\"p_m\",\"file_unique_id\":\"upm\",\"width\":320,"
         "\"height\":240,\"file_size\":2000},{\"file_id\":\"p_l\",\"file_unique_id\":\"upl\","
         "\"width\":1280,\"height\":960,\"file_size\":6000}]",
         "look", "photo", "image/jpeg", "photo.jpg", 2000},
    };
    size_t n = sizeof cases / sizeof cases[0];
    static const char *const ids[] = {"d1", "v1", "a1", "vi1", "vn1", "s1", "an1", "p_m"};
    for (size_t i = 0; i < n; i++)
        add_file(ids[i], cases[i].size, (unsigned)i, -1);
    add_file("p_s", 500, 99, -1);
    add_file("p_l", 6000, 98, -1);
    th_cfg("max_media_bytes", "5000");
    S = th_launch_ok();
    for (size_t i = 0; i < n; i++)
        add_media(42, cases[i].media, cases[i].caption, NULL);
    assert_int_equal(th_wait_submitted(n, 15000), n);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(k, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m[i].nfiles, 1);
        assert_string_equal(m[i].files[0].kind, cases[i].kind);
        assert_string_equal(m[i].files[0].mime, cases[i].mime);
        assert_string_equal(m[i].files[0].name, cases[i].name);
        assert_true(same_bytes(&m[i].files[0], cases[i].size, (unsigned)i));
        assert_string_equal(m[i].text, cases[i].caption ? cases[i].caption : "");
        assert_non_null(strstr(m[i].meta, "\"files\":[{\"kind\""));
    }
    th_msgs_free(m, k);
    /* The photo sizes over the limit and the others were never fetched. */
    assert_int_equal(ftg_count(F, "download", 1), n);
    assert_int_equal(th_metric("routerd_telegram_media_received_total", "photo", NULL), 1);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", NULL, NULL), 0);
}

static void test_voice_media_off(void **state) {
    (void)state;
    add_file("v1", 1000, 1, -1);
    th_cfg("media", "off");
    S = th_launch_ok();
    int64_t mid = 777;
    ftg_msg msg = {.chat_id = 42,
                   .message_id = mid,
                   .media = "\"voice\":{\"file_id\":\"v1\",\"file_unique_id\":\"uv1\","
                            "\"duration\":3,\"mime_type\":\"audio/ogg\"}"};
    ftg_add_message(F, &msg);
    assert_int_equal(wait_notices(1), 1);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMessage", 1, &r);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].chat_id, 42);
    assert_int_equal(r[0].reply_to, mid);
    ftg_recs_free(r, n);
    /* Nothing fetched, nothing routed: skipped once the notice was stored. */
    assert_int_equal(ftg_count(F, "getFile", 0), 0);
    assert_int_equal(ftg_count(F, "download", 0), 0);
    assert_int_equal(th_submitted(), 0);
    assert_int_equal(th_skipped(), 1);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "media_off", NULL), 1);
    assert_true(th_log_has("voice not passed on (media_off)"));
}

static void test_too_large(void **state) {
    (void)state;
    th_cfg("max_media_bytes", "1000");
    /* 1: the message says 5000 bytes: no getFile, no download. */
    add_file("big1", 5000, 1, -1);
    /* 2: getFile says 5000: no download. */
    add_file("big2", 5000, 2, -1);
    /* 3: getFile says 500, the server sends 5000: cut at the cap. */
    add_file("big3", 5000, 3, 500);
    /* 4: no size anywhere, chunked: the write callback cuts it. */
    add_file("big4", 5000, 4, -2);
    S = th_launch_ok();
    add_media(42,
              "\"document\":{\"file_id\":\"big1\",\"file_unique_id\":\"u1\",\"file_size\":5000}",
              NULL, NULL);
    assert_int_equal(wait_notices(1), 1);
    assert_int_equal(ftg_count(F, "getFile", 0), 0);
    add_media(42, "\"document\":{\"file_id\":\"big2\",\"file_unique_id\":\"u2\"}", NULL, NULL);
    assert_int_equal(wait_notices(2), 2);
    assert_int_equal(ftg_count(F, "getFile", 1), 1);
    assert_int_equal(ftg_count(F, "download", 0), 0);
    add_media(42, "\"document\":{\"file_id\":\"big3\",\"file_unique_id\":\"u3\"}", "caption stays",
              NULL);
    assert_int_equal(wait_notices(3), 3);
    /* The caption still reaches the agent, without the file. */
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_string_equal(m[0].text, "caption stays");
    assert_int_equal(m[0].nfiles, 0);
    assert_non_null(strstr(m[0].meta, "\"refused\":\"too_large\""));
    th_msgs_free(m, k);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "too_large", NULL), 3);
    assert_true(th_log_has("over max_media_bytes 1000; cut"));
    add_media(42, "\"audio\":{\"file_id\":\"big4\",\"file_unique_id\":\"u4\"}", NULL, NULL);
    assert_int_equal(wait_notices(4), 4);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "too_large", NULL), 4);
    assert_int_equal(th_submitted(), 1);
}

static void test_unsupported_and_hostile(void **state) {
    (void)state;
    S = th_launch_ok();
    add_media(42, "\"location\":{\"latitude\":1.5,\"longitude\":2.5}", NULL, NULL);
    /* Hostile sizes and ids: refused, never fetched. */
    add_media(42, "\"document\":{\"file_id\":\"x1\",\"file_unique_id\":\"u\",\"file_size\":-5}",
              NULL, NULL);
    add_media(42,
              "\"document\":{\"file_id\":\"x2\",\"file_unique_id\":\"u\","
              "\"file_size\":99999999999999999999}",
              NULL, NULL);
    add_media(42, "\"voice\":{\"file_id\":\"../../etc\",\"file_unique_id\":\"u\"}", NULL, NULL);
    add_media(42, "\"photo\":{\"file_id\":\"notanarray\"}", NULL, NULL);
    assert_int_equal(wait_notices(5), 5);
    assert_int_equal(ftg_count(F, "getFile", 0), 0);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "unsupported", NULL), 1);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "invalid", NULL), 4);
    assert_int_equal(th_submitted(), 0);
    assert_int_equal(th_skipped(), 5);
}

static void test_download_retry(void **state) {
    (void)state;
    add_file("d1", 1500, 5, -1);
    add_file("gone", 100, 6, -1);
    ftg_fail(F, "download", FTG_FAULT_500, 0, 2);
    ftg_fail(F, "getFile", FTG_FAULT_500, 0, 1);
    S = th_launch_ok();
    add_media(42, "\"document\":{\"file_id\":\"d1\",\"file_unique_id\":\"u\"}", "retry me", NULL);
    assert_int_equal(th_wait_submitted(1, 15000), 1);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(m[0].nfiles, 1);
    assert_true(same_bytes(&m[0].files[0], 1500, 5));
    th_msgs_free(m, k);
    assert_int_equal(ftg_count(F, "download", 0), 3);
    /* A file Telegram no longer has: permanent, the notice. */
    add_media(42, "\"document\":{\"file_id\":\"nosuch\",\"file_unique_id\":\"u\"}", NULL, NULL);
    assert_int_equal(wait_notices(1), 1);
    assert_int_equal(th_metric("routerd_telegram_media_refused_total", "unavailable", NULL), 1);
}

static void test_backpressure_fetches_once(void **state) {
    (void)state;
    add_file("bp", 2000, 70, -1);
    S = th_launch_ok();
    th_set_full(1);
    add_media(42, "\"document\":{\"file_id\":\"bp\",\"file_unique_id\":\"u\"}", "wait", NULL);
    long long end = th_now_ms() + 5000;
    while (ftg_count(F, "download", 1) < 1 && th_now_ms() < end)
        th_sleep_ms(10);
    th_sleep_ms(600); /* several submit attempts against a full core */
    assert_int_equal(th_submitted(), 0);
    th_set_full(0);
    assert_int_equal(th_wait_submitted(1, 5000), 1);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_true(same_bytes(&m[0].files[0], 2000, 70));
    th_msgs_free(m, k);
    assert_int_equal(ftg_count(F, "getFile", 0), 1);
    assert_int_equal(ftg_count(F, "download", 0), 1);
}

/* Stopping does not wait for a download: the update stays journaled and
 * its file is fetched again after the restart. */
static void test_stop_during_slow_download(void **state) {
    (void)state;
    add_file("slow", 3000, 80, -1);
    ftg_fail(F, "download", FTG_FAULT_SLOW, 4000, 1);
    S = th_launch_ok();
    add_media(42, "\"document\":{\"file_id\":\"slow\",\"file_unique_id\":\"u\"}", "slow one", NULL);
    long long end = th_now_ms() + 5000;
    while (ftg_count(F, "getFile", 0) < 1 && th_now_ms() < end)
        th_sleep_ms(10);
    assert_int_equal(ftg_count(F, "getFile", 0), 1);
    th_sleep_ms(300); /* the download is under way, the server holds it */
    assert_true(th_shutdown_timed(S) < 2500);
    S = NULL;
    assert_int_equal(th_submitted(), 0);
    assert_int_equal(th_kv_count("j/"), 1);
    th_new_run();
    S = th_launch_ok();
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(k, 1);
    assert_string_equal(m[0].text, "slow one");
    assert_int_equal(m[0].nfiles, 1);
    assert_true(same_bytes(&m[0].files[0], 3000, 80));
    th_msgs_free(m, k);
}

/* Chat 42's photo downloads slowly; chat 43 sends text right after it,
 * then 42 sends text. Returns when 43's text is in, checking it did not
 * wait for the download. */
static int64_t slow_photo_then_texts(void) {
    add_file("pa", 2500, 90, -1);
    ftg_fail(F, "download", FTG_FAULT_SLOW, 2500, 1);
    S = th_launch_ok();
    long long t0 = th_now_ms();
    add_media(42, "\"photo\":[{\"file_id\":\"pa\",\"file_unique_id\":\"u\",\"width\":9}]",
              "A photo", NULL);
    ftg_add_text(F, 43, "B text");
    ftg_add_text(F, 42, "A text");
    assert_int_equal(th_wait_submitted(1, 2000), 1);
    assert_true(th_now_ms() - t0 < 2000);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 1);
    assert_int_equal(m[0].chat_id, 43);
    assert_string_equal(m[0].text, "B text");
    int64_t id = m[0].id;
    th_msgs_free(m, k);
    return id;
}

/* The chat's own messages: the photo with its file, then the text. */
static void check_chat_42(const th_msg *m) {
    assert_int_equal(m[0].chat_id, 42);
    assert_string_equal(m[0].text, "A photo");
    assert_int_equal(m[0].nfiles, 1);
    assert_true(same_bytes(&m[0].files[0], 2500, 90));
    assert_int_equal(m[1].chat_id, 42);
    assert_string_equal(m[1].text, "A text");
    assert_int_equal(m[1].nfiles, 0);
}

static void test_slow_download_holds_its_chat_only(void **state) {
    (void)state;
    slow_photo_then_texts();
    assert_int_equal(th_wait_submitted(3, 10000), 3);
    th_sleep_ms(200);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 3); /* nothing lost, nothing twice */
    check_chat_42(m + 1);
    th_msgs_free(m, k);
    assert_int_equal(ftg_count(F, "download", 0), 1);
    assert_int_equal(th_violations(), 0);
}

/* The other chat's update handled and acknowledged while the photo is
 * still downloading, then kill -9: the held updates are still journaled
 * and come back, the handled one does not. */
static void test_slow_download_crash_keeps_held(void **state) {
    (void)state;
    int64_t id = slow_photo_then_texts();
    th_ack_upto(S, id);
    long long end = th_now_ms() + 5000;
    while (th_kv_count("j/") > 2 && th_now_ms() < end)
        th_sleep_ms(10);
    assert_int_equal(th_kv_count("j/"), 2);
    th_kv_snapshot();
    th_shutdown(S);
    th_kv_restore();
    th_new_run();
    S = th_launch_ok();
    assert_int_equal(th_wait_submitted(2, 10000), 2);
    th_sleep_ms(200);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 2);
    check_chat_42(m);
    assert_true(m[0].id > id);
    th_msgs_free(m, k);
    assert_int_equal(th_violations(), 0);
}

/* A restart replays a chat's photo and text that reached the core before
 * it; the photo now downloads slowly. The replayed text keeps its id (a
 * backend may know it: a2a's messageId and exactly-once record), so the
 * other chat is not let past it this time. */
static void test_replayed_ids_kept(void **state) {
    (void)state;
    add_file("pb", 2000, 91, -1);
    S = th_launch_ok();
    add_media(42, "\"photo\":[{\"file_id\":\"pb\",\"file_unique_id\":\"u\",\"width\":9}]",
              "A photo", NULL);
    ftg_add_text(F, 42, "A text");
    assert_int_equal(th_wait_submitted(2, 5000), 2);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 2);
    int64_t id1 = m[0].id, id2 = m[1].id;
    th_msgs_free(m, k);
    /* a crash: nothing acknowledged */
    th_kv_snapshot();
    th_shutdown(S);
    th_kv_restore();
    th_new_run();
    ftg_fail(F, "download", FTG_FAULT_SLOW, 1500, 1);
    S = th_launch_ok();
    ftg_add_text(F, 43, "B text");
    assert_int_equal(th_wait_submitted(3, 10000), 3);
    th_sleep_ms(200);
    k = th_msgs(&m, 1);
    assert_int_equal(k, 3);
    int seen = 0;
    for (size_t i = 0; i < k; i++) {
        if (m[i].chat_id != 42) continue;
        assert_int_equal(m[i].id, seen ? id2 : id1);
        assert_string_equal(m[i].text, seen ? "A text" : "A photo");
        seen++;
    }
    assert_int_equal(seen, 2);
    th_msgs_free(m, k);
    assert_int_equal(th_violations(), 0);
}

static void test_album_one_message(void **state) {
    (void)state;
    for (unsigned i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "al%u", i);
        add_file(id, 800 + i * 100, 20 + i, -1);
    }
    th_cfg("album_wait_ms", "2000"); /* slack for a loaded machine */
    S = th_launch_ok();
    /* Two parts now, the third in a later batch; another chat in between. */
    add_media(42,
              "\"photo\":[{\"file_id\":\"al0\",\"file_unique_id\":\"u0\",\"width\":10,"
              "\"height\":10}]",
              NULL, "album-1");
    ftg_add_text(F, 43, "other chat");
    add_media(42,
              "\"photo\":[{\"file_id\":\"al1\",\"file_unique_id\":\"u1\",\"width\":10,"
              "\"height\":10}]",
              "the caption", "album-1");
    th_sleep_ms(300);
    add_media(42,
              "\"document\":{\"file_id\":\"al2\",\"file_unique_id\":\"u2\","
              "\"mime_type\":\"text/plain\",\"file_name\":\"notes.txt\"}",
              NULL, "album-1");
    ftg_add_text(F, 42, "after the album");
    assert_int_equal(th_wait_submitted(3, 15000), 3);
    th_sleep_ms(200);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    /* The other chat does not wait for the album; then the album (one
     * message, three files), its two absorbed parts skipped, then the
     * chat's next text. */
    assert_int_equal(k, 5);
    assert_false(m[0].skipped);
    assert_int_equal(m[0].chat_id, 43);
    assert_false(m[1].skipped);
    assert_int_equal(m[1].chat_id, 42);
    assert_int_equal(m[1].nfiles, 3);
    assert_string_equal(m[1].text, "the caption");
    assert_true(same_bytes(&m[1].files[0], 800, 20));
    assert_true(same_bytes(&m[1].files[1], 900, 21));
    assert_true(same_bytes(&m[1].files[2], 1000, 22));
    assert_string_equal(m[1].files[2].name, "notes.txt");
    assert_non_null(strstr(m[1].meta, "\"media_group_id\":\"album-1\""));
    for (size_t i = 2; i < 4; i++) {
        assert_true(m[i].skipped);
        assert_string_equal(m[i].why, "album_part");
    }
    assert_false(m[4].skipped);
    assert_int_equal(m[4].chat_id, 42);
    assert_string_equal(m[4].text, "after the album");
    th_msgs_free(m, k);
    assert_int_equal(th_violations(), 0);
}

/* Webhook mode: the photo's request is answered at once (journaled), the
 * other chat's update goes to the core during the download, and the
 * chat's own text waits for its photo. */
static void test_slow_download_webhook(void **state) {
    (void)state;
    th_cfg("mode", "webhook");
    th_cfg("secret_token", "hooksecret");
    add_file("wh", 2500, 90, -1); /* as check_chat_42() expects */
    ftg_fail(F, "download", FTG_FAULT_SLOW, 2500, 1);
    S = th_launch_ok();
    ftg_msg a = {.chat_id = 42,
                 .media = "\"photo\":[{\"file_id\":\"wh\",\"file_unique_id\":\"u\"}]",
                 .caption = "A photo"};
    ftg_msg b = {.chat_id = 43, .text = "B text"};
    ftg_msg a2 = {.chat_id = 42, .text = "A text"};
    char *ua = ftg_build_update(F, &a, NULL), *ub = ftg_build_update(F, &b, NULL),
         *ua2 = ftg_build_update(F, &a2, NULL);
    long long t0 = th_now_ms();
    assert_int_equal(th_http_post("/telegram/main", "hooksecret", ua, NULL), 200);
    assert_int_equal(th_http_post("/telegram/main", "hooksecret", ub, NULL), 200);
    assert_int_equal(th_http_post("/telegram/main", "hooksecret", ua2, NULL), 200);
    assert_true(th_now_ms() - t0 < 2000);
    free(ua);
    free(ub);
    free(ua2);
    assert_int_equal(th_wait_submitted(1, 2000), 1);
    assert_true(th_now_ms() - t0 < 2000);
    assert_int_equal(th_wait_submitted(3, 10000), 3);
    th_sleep_ms(200);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 3);
    assert_string_equal(m[0].text, "B text");
    check_chat_42(m + 1);
    th_msgs_free(m, k);
    assert_int_equal(th_violations(), 0);
}

/* In a group (group_mode = mention) only the captioned part is addressed
 * to the bot; the other parts' files are fetched for the album all the
 * same. */
static void test_album_group_parts_fetched(void **state) {
    (void)state;
    add_file("gp0", 600, 60, -1);
    add_file("gp1", 700, 61, -1);
    S = th_launch_ok();
    add_media(-100, "\"photo\":[{\"file_id\":\"gp0\",\"file_unique_id\":\"u0\"}]",
              "@routerd_test_bot look", "al-g");
    add_media(-100, "\"photo\":[{\"file_id\":\"gp1\",\"file_unique_id\":\"u1\"}]", NULL, "al-g");
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(k, 1);
    assert_int_equal(m[0].nfiles, 2);
    assert_true(same_bytes(&m[0].files[0], 600, 60));
    assert_true(same_bytes(&m[0].files[1], 700, 61));
    th_msgs_free(m, k);
}

static void test_album_crash_recollected(void **state) {
    (void)state;
    add_file("c0", 400, 40, -1);
    add_file("c1", 500, 41, -1);
    S = th_launch_ok();
    add_media(42, "\"photo\":[{\"file_id\":\"c0\",\"file_unique_id\":\"u0\"}]", "crash", "al-c");
    add_media(42, "\"photo\":[{\"file_id\":\"c1\",\"file_unique_id\":\"u1\"}]", NULL, "al-c");
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    /* kill -9 before the album was answered: the store as it is now. */
    th_kv_snapshot();
    th_shutdown(S);
    th_kv_restore();
    th_new_run();
    S = th_launch_ok();
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    th_sleep_ms(300);
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(k, 1);
    assert_int_equal(m[0].nfiles, 2);
    assert_string_equal(m[0].text, "crash");
    th_msgs_free(m, k);
}

static int one_skip(void) {
    return th_skipped() >= 1;
}

static void test_album_answered_not_again(void **state) {
    (void)state;
    add_file("g0", 400, 50, -1);
    add_file("g1", 500, 51, -1);
    S = th_launch_ok();
    /* Chat 43 stays unanswered: it holds the watermark back. */
    ftg_add_text(F, 43, "slow chat");
    ftg_msg m0 = {.chat_id = 42,
                  .message_id = 500,
                  .media = "\"photo\":[{\"file_id\":\"g0\",\"file_unique_id\":\"u0\"}]",
                  .caption = "pics",
                  .media_group_id = "g"};
    ftg_msg m1 = {.chat_id = 42,
                  .message_id = 501,
                  .media = "\"photo\":[{\"file_id\":\"g1\",\"file_unique_id\":\"u1\"}]",
                  .media_group_id = "g"};
    ftg_add_message(F, &m0);
    ftg_add_message(F, &m1);
    assert_int_equal(th_wait_submitted(2, 10000), 2);
    long long end = th_now_ms() + 5000;
    while (!one_skip() && th_now_ms() < end)
        th_sleep_ms(5);
    assert_int_equal(th_skipped(), 1);
    /* The album is answered; then kill -9. */
    rd_outbound out = {.size = sizeof out,
                       .chat_id = 42,
                       .reply_to = 500,
                       .text = "nice pictures",
                       .text_len = 13,
                       .update_id = -1};
    rd_error e = {0};
    assert_int_equal(th_ops()->send(S, &out, &e), RD_OK);
    end = th_now_ms() + 5000;
    while (th_kv_count("r/") < 2 && th_now_ms() < end)
        th_sleep_ms(10);
    assert_int_equal(th_kv_count("r/"), 2); /* the album and its absorbed part */
    th_kv_snapshot();
    th_shutdown(S);
    th_kv_restore();
    th_new_run();
    S = th_launch_ok();
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    th_sleep_ms(1500); /* longer than album_wait_ms */
    th_msg *m;
    size_t k = th_msgs(&m, 0);
    assert_int_equal(k, 1);
    assert_int_equal(m[0].chat_id, 43);
    th_msgs_free(m, k);
}

static void test_album_webhook(void **state) {
    (void)state;
    th_cfg("mode", "webhook");
    th_cfg("secret_token", "hooksecret");
    th_cfg("album_wait_ms", "3000"); /* slack for a loaded machine */
    add_file("w0", 300, 60, -1);
    add_file("w1", 400, 61, -1);
    S = th_launch_ok();
    ftg_msg m0 = {.chat_id = 42,
                  .media = "\"photo\":[{\"file_id\":\"w0\",\"file_unique_id\":\"u0\"}]",
                  .caption = "hooked",
                  .media_group_id = "wg"};
    ftg_msg m1 = {.chat_id = 42,
                  .media = "\"photo\":[{\"file_id\":\"w1\",\"file_unique_id\":\"u1\"}]",
                  .media_group_id = "wg"};
    char *u0 = ftg_build_update(F, &m0, NULL), *u1 = ftg_build_update(F, &m1, NULL);
    /* Each part is answered at once (journaled), not held for the album. */
    long long t0 = th_now_ms();
    assert_int_equal(th_http_post("/telegram/main", "hooksecret", u0, NULL), 200);
    assert_int_equal(th_http_post("/telegram/main", "hooksecret", u1, NULL), 200);
    assert_true(th_now_ms() - t0 < 1500); /* not held 2 s each */
    free(u0);
    free(u1);
    assert_int_equal(th_wait_submitted(1, 10000), 1);
    th_sleep_ms(300);
    th_msg *m;
    size_t k = th_msgs(&m, 1);
    assert_int_equal(k, 2);
    assert_int_equal(m[0].nfiles, 2);
    assert_string_equal(m[0].text, "hooked");
    assert_true(m[1].skipped);
    th_msgs_free(m, k);
}

/* ------------------------------------------------------------------------ */
/* Out                                                                       */

static rd_status send_files(int64_t chat, const char *text, const rd_attachment *const *a,
                            size_t n) {
    rd_outbound out = {.size = sizeof out,
                       .chat_id = chat,
                       .reply_to = 9,
                       .text = text,
                       .text_len = strlen(text),
                       .correlation_id = "cid-f",
                       .update_id = -1,
                       .attachments = a,
                       .nattachments = n};
    rd_error e = {0};
    return th_ops()->send(S, &out, &e);
}

static rd_attachment att(const char *kind, const char *mime, const char *name, const void *data,
                         size_t len) {
    return (rd_attachment){.size = sizeof(rd_attachment),
                           .kind = kind,
                           .mime = mime,
                           .name = name,
                           .data = data,
                           .len = len};
}

static void test_each_kind_out(void **state) {
    (void)state;
    S = th_launch_ok();
    unsigned char *b = bytes(2048, 7);
    static const struct {
        const char *kind, *mime, *method, *field;
    } cases[] = {
        {NULL, "image/jpeg", "sendPhoto", "photo"},
        {"voice", "audio/ogg", "sendVoice", "voice"},
        {NULL, "audio/ogg", "sendVoice", "voice"},
        {NULL, "audio/mpeg", "sendAudio", "audio"},
        {NULL, "video/mp4", "sendVideo", "video"},
        {NULL, "application/pdf", "sendDocument", "document"},
        {NULL, NULL, "sendDocument", "document"},
        {"document", "image/png", "sendDocument", "document"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rd_attachment a = att(cases[i].kind, cases[i].mime, "f.bin", b, 2048);
        const rd_attachment *pa[] = {&a};
        assert_int_equal(send_files(42, "**here** it is", pa, 1), RD_OK);
        ftg_rec *r;
        size_t n = ftg_records(F, cases[i].method, 1, &r);
        assert_true(n >= 1);
        ftg_rec *x = &r[n - 1];
        assert_int_equal(x->chat_id, 42);
        assert_int_equal(x->reply_to, 9);
        assert_string_equal(x->text, "here it is");
        assert_non_null(x->entities);
        assert_non_null(strstr(x->entities, "\"bold\""));
        assert_int_equal(x->nparts, 1);
        assert_string_equal(x->parts[0].field, cases[i].field);
        assert_string_equal(x->parts[0].filename, "f.bin");
        assert_int_equal(x->parts[0].len, 2048);
        assert_memory_equal(x->parts[0].data, b, 2048);
        ftg_recs_free(r, n);
    }
    /* No text message was needed: every caption fit. */
    assert_int_equal(ftg_count(F, "sendMessage", 0), 0);

    /* A URL goes as the URL string. */
    rd_attachment u = {.size = sizeof u, .mime = "image/png", .url = "https://example.org/a.png"};
    const rd_attachment *pu[] = {&u};
    assert_int_equal(send_files(42, "", pu, 1), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendPhoto", 1, &r);
    assert_int_equal(r[n - 1].nparts, 0);
    assert_non_null(strstr(r[n - 1].body, "\"photo\":\"https://example.org/a.png\""));
    ftg_recs_free(r, n);
    free(b);
}

/* The last two send* records (polls interleave with them). */
static void last_two_sends(ftg_rec *all, size_t n, ftg_rec **a, ftg_rec **b) {
    *a = *b = NULL;
    for (size_t i = n; i-- > 0;) {
        if (strncmp(all[i].method, "send", 4)) continue;
        if (!*b)
            *b = &all[i];
        else if (!*a)
            *a = &all[i];
    }
    assert_non_null(*a);
}

static void test_groups_and_long_captions(void **state) {
    (void)state;
    S = th_launch_ok();
    unsigned char *b = bytes(1000, 3);
    rd_attachment p1 = att(NULL, "image/jpeg", "1.jpg", b, 1000);
    rd_attachment p2 = att(NULL, "video/mp4", "2.mp4", b, 500);
    rd_attachment d1 = att(NULL, "application/pdf", "3.pdf", b, 300);
    /* Photo + video: one sendMediaGroup with the caption on the first. */
    const rd_attachment *g[] = {&p1, &p2};
    assert_int_equal(send_files(42, "two", g, 2), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMediaGroup", 1, &r);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].nparts, 2);
    assert_string_equal(r[0].parts[0].field, "file0");
    assert_string_equal(r[0].parts[1].field, "file1");
    assert_non_null(strstr(r[0].media, "\"type\":\"photo\""));
    assert_non_null(strstr(r[0].media, "\"type\":\"video\""));
    assert_non_null(strstr(r[0].media, "\"caption\":\"two\""));
    ftg_recs_free(r, n);
    /* Photo + PDF: two calls, in order. */
    const rd_attachment *mixed[] = {&p1, &d1};
    assert_int_equal(send_files(42, "mixed", mixed, 2), RD_OK);
    ftg_rec *all, *x, *y;
    size_t na = ftg_records(F, NULL, 1, &all);
    last_two_sends(all, na, &x, &y);
    assert_string_equal(x->method, "sendPhoto");
    assert_string_equal(x->text, "mixed");
    assert_string_equal(y->method, "sendDocument");
    assert_null(y->text);
    /* Only the first quotes the user's message. */
    assert_int_equal(x->reply_to, 9);
    assert_int_equal(y->reply_to, 0);
    ftg_recs_free(all, na);
    /* A text longer than a caption goes first as a message. */
    char longtext[1500];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = 0;
    const rd_attachment *one[] = {&d1};
    assert_int_equal(send_files(42, longtext, one, 1), RD_OK);
    na = ftg_records(F, NULL, 1, &all);
    last_two_sends(all, na, &x, &y);
    assert_string_equal(x->method, "sendMessage");
    assert_int_equal(strlen(x->text), 1499);
    assert_string_equal(y->method, "sendDocument");
    assert_null(y->text);
    ftg_recs_free(all, na);
    free(b);
}

static void test_files_with_choices(void **state) {
    (void)state;
    S = th_launch_ok();
    unsigned char *b = bytes(700, 8);
    rd_attachment p1 = att(NULL, "image/png", "chart.png", b, 700);
    const rd_attachment *one[] = {&p1};
    static const char *const choices[] = {"yes", "no", NULL};
    rd_outbound out = {.size = sizeof out,
                       .chat_id = 42,
                       .reply_to = 9,
                       .text = "Keep it?",
                       .text_len = 8,
                       .update_id = -1,
                       .attachments = one,
                       .nattachments = 1,
                       .choices = choices};
    rd_error e = {0};
    assert_int_equal(th_ops()->send(S, &out, &e), RD_OK);
    /* The file first without caption, then the text (where the buttons go). */
    ftg_rec *all, *x, *y;
    size_t na = ftg_records(F, NULL, 1, &all);
    last_two_sends(all, na, &x, &y);
    assert_string_equal(x->method, "sendPhoto");
    assert_null(x->text);
    assert_string_equal(y->method, "sendMessage");
    assert_string_equal(y->text, "Keep it?");
    assert_non_null(y->reply_markup);
    assert_non_null(strstr(y->reply_markup, "\"yes\""));
    ftg_recs_free(all, na);
    free(b);
}

static void test_many_files_and_photo_fallback(void **state) {
    (void)state;
    S = th_launch_ok();
    unsigned char *b = bytes(400, 9);
    /* Twelve photos: ten in one album, then two. */
    rd_attachment ph[12];
    const rd_attachment *pp[12];
    for (int i = 0; i < 12; i++) {
        ph[i] = att(NULL, "image/jpeg", "p.jpg", b, 400);
        pp[i] = &ph[i];
    }
    assert_int_equal(send_files(42, "twelve", pp, 12), RD_OK);
    ftg_rec *r;
    size_t n = ftg_records(F, "sendMediaGroup", 1, &r);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].nparts, 10);
    assert_int_equal(r[1].nparts, 2);
    assert_non_null(strstr(r[0].media, "\"caption\":\"twelve\""));
    assert_null(strstr(r[1].media, "caption"));
    ftg_recs_free(r, n);
    /* A photo Telegram will not take as a photo goes again as a document. */
    ftg_fail_body(F, "sendPhoto", 400,
                  "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: "
                  "PHOTO_INVALID_DIMENSIONS\"}",
                  1);
    const rd_attachment *one[] = {&ph[0]};
    assert_int_equal(send_files(42, "odd", one, 1), RD_OK);
    n = ftg_records(F, "sendDocument", 1, &r);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].text, "odd");
    assert_string_equal(r[0].parts[0].field, "document");
    ftg_recs_free(r, n);
    /* Refused for good (the chat is gone): not delivered, reported. */
    ftg_chat_error(F, 77, 403, "Forbidden: bot was blocked by the user", 0);
    rd_outbound out = {.size = sizeof out,
                       .chat_id = 77,
                       .text = "",
                       .update_id = -1,
                       .attachments = one,
                       .nattachments = 1};
    rd_error e = {0};
    assert_int_equal(th_ops()->send(S, &out, &e), RD_E_FATAL);
    assert_non_null(strstr(e.msg, "blocked"));
    free(b);
}

static void test_upload_retry_and_outbox(void **state) {
    (void)state;
    th_cfg("send_retry_budget_s", "2");
    S = th_launch_ok();
    unsigned char *b = bytes(600, 4);
    rd_attachment p1 = att(NULL, "image/jpeg", "1.jpg", b, 600);
    const rd_attachment *one[] = {&p1};
    /* A 429 and a 500 are waited out within the budget. */
    ftg_fail(F, "sendPhoto", FTG_FAULT_429, 1, 1);
    ftg_fail(F, "sendPhoto", FTG_FAULT_500, 0, 1);
    assert_int_equal(send_files(42, "patience", one, 1), RD_OK);
    assert_int_equal(ftg_count(F, "sendPhoto", 1), 1);
    assert_int_equal(ftg_count(F, "sendPhoto", 0), 3);
    /* Longer than the budget: the caption and a note go through the outbox. */
    ftg_fail(F, "sendPhoto", FTG_FAULT_429, 30, 1);
    assert_int_equal(send_files(42, "later", one, 1), RD_OK);
    assert_true(th_kv_count("o/") == 1);
    assert_int_equal(th_metric("routerd_telegram_send_failures_total", "file_not_kept", NULL), 1);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_kind_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_voice_media_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_and_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_download_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_fetches_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_during_slow_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_download_holds_its_chat_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_download_crash_keeps_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replayed_ids_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_album_one_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_download_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_album_group_parts_fetched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_album_crash_recollected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_album_answered_not_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_album_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_kind_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_long_captions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_with_choices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_files_and_photo_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_retry_and_outbox, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
