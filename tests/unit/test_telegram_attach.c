/*
 * The pure part of the telegram transport's files: reading what a message
 * carries with hostile numbers and strings, the photo size picked, names and
 * MIME types, and the send method an outgoing file takes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "telegram_attach.h"
#include "telegram_parse.h"

static tg_media *parse(const char *json) {
    cJSON *m = tg_json_parse(json, strlen(json));
    assert_non_null(m);
    tg_media *r = tg_media_parse(m);
    cJSON_Delete(m);
    return r;
}

static void test_none_and_kinds(void **state) {
    (void)state;
    assert_null(parse("{\"text\":\"hi\"}"));
    assert_null(parse("{\"new_chat_members\":[]}"));
    tg_media *m = parse("{\"voice\":{\"file_id\":\"AbC-_9\",\"duration\":4,\"file_size\":10}}");
    assert_int_equal(m->kind, TG_MK_VOICE);
    assert_false(m->invalid);
    assert_string_equal(m->file_id, "AbC-_9");
    assert_int_equal(m->file_size, 10);
    assert_int_equal(m->duration, 4);
    assert_string_equal(m->mime, "audio/ogg");
    assert_string_equal(m->name, "voice.ogg");
    free(m);
    /* An animation carries a document too: it is an animation. */
    m = parse("{\"animation\":{\"file_id\":\"a\"},\"document\":{\"file_id\":\"a\"}}");
    assert_int_equal(m->kind, TG_MK_ANIMATION);
    free(m);
    m = parse("{\"sticker\":{\"file_id\":\"s\",\"is_animated\":true}}");
    assert_string_equal(m->mime, "application/x-tgsticker");
    free(m);
    m = parse("{\"poll\":{\"id\":\"1\"}}");
    assert_int_equal(m->kind, TG_MK_UNSUPPORTED);
    assert_string_equal(m->what, "poll");
    free(m);
    m = parse("{\"photo\":[{\"file_id\":\"p\"}],\"media_group_id\":\"123456789\"}");
    assert_string_equal(m->group, "123456789");
    free(m);
}

static void test_hostile_numbers_and_strings(void **state) {
    (void)state;
    static const char *const invalid[] = {
        "{\"document\":{\"file_id\":\"d\",\"file_size\":-1}}",
        "{\"document\":{\"file_id\":\"d\",\"file_size\":1e300}}",
        "{\"document\":{\"file_id\":\"d\",\"file_size\":99999999999999999999999}}",
        "{\"document\":{\"file_id\":\"d\",\"file_size\":\"12x\"}}",
        "{\"document\":{\"file_id\":\"d\",\"file_size\":1.5}}",
        "{\"document\":{\"file_id\":\"../x\"}}",
        "{\"document\":{\"file_id\":\"\"}}",
        "{\"document\":{\"file_id\":12}}",
        "{\"document\":\"d\"}",
        "{\"photo\":{}}",
        "{\"photo\":[{\"file_id\":\"p\",\"file_size\":-3}]}",
        "{\"photo\":[]}",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        tg_media *m = parse(invalid[i]);
        assert_non_null(m);
        assert_true(m->invalid);
        assert_int_equal(m->file_size, 0);
        free(m);
    }
    /* Dimensions out of range read as absent; the file is still fine. */
    tg_media *m = parse("{\"video\":{\"file_id\":\"v\",\"width\":-5,\"height\":1e12,"
                        "\"duration\":99999999999}}");
    assert_false(m->invalid);
    assert_int_equal(m->width, 0);
    assert_int_equal(m->height, 0);
    assert_int_equal(m->duration, 0);
    free(m);
    /* A long file_id is refused, a long group id ignored. */
    char big[320];
    memset(big, 'a', 300);
    big[300] = 0;
    char json[1400];
    snprintf(json, sizeof json, "{\"voice\":{\"file_id\":\"%s\"},\"media_group_id\":\"%s\"}", big,
             big);
    m = parse(json);
    assert_true(m->invalid);
    assert_string_equal(m->group, "");
    free(m);
}

static void test_names_and_mime(void **state) {
    (void)state;
    tg_media *m = parse("{\"document\":{\"file_id\":\"d\",\"file_name\":\"../etc/pass\\nwd\","
                        "\"mime_type\":\"text/plain; charset=x\"}}");
    assert_string_equal(m->name, "_._etc_pass_wd");
    assert_string_equal(m->mime, "application/octet-stream"); /* not a bare type */
    free(m);
    /* Cut at a character boundary: 200 two-byte characters. */
    char json[1024] = "{\"document\":{\"file_id\":\"d\",\"file_name\":\"";
    for (int i = 0; i < 200; i++)
        strcat(json, "\xC3\xA9");
    strcat(json, "\"}}");
    m = parse(json);
    size_t n = strlen(m->name);
    assert_true(n < sizeof m->name);
    assert_int_equal(n % 2, 0);
    free(m);
    assert_true(tg_mime_ok("image/jpeg"));
    assert_true(tg_mime_ok("application/vnd.ms-excel"));
    assert_false(tg_mime_ok("image"));
    assert_false(tg_mime_ok("/jpeg"));
    assert_false(tg_mime_ok("a/b/c"));
    assert_false(tg_mime_ok("text/html\r\nX: y"));
    assert_false(tg_mime_ok(NULL));
}

static void test_photo_pick(void **state) {
    (void)state;
    tg_media *m =
        parse("{\"photo\":[{\"file_id\":\"s\",\"width\":90,\"height\":90,\"file_size\":100},"
              "{\"file_id\":\"m\",\"width\":320,\"height\":320,\"file_size\":1000},"
              "{\"file_id\":\"l\",\"width\":1280,\"height\":1280,\"file_size\":10000}]}");
    assert_string_equal(m->photo[tg_media_pick_photo(m, 20000)].file_id, "l");
    assert_string_equal(m->photo[tg_media_pick_photo(m, 5000)].file_id, "m");
    assert_string_equal(m->photo[tg_media_pick_photo(m, 100)].file_id, "s");
    assert_int_equal(tg_media_pick_photo(m, 99), -1);
    assert_int_equal(m->width, 1280);
    free(m);
}

static void test_out_kinds(void **state) {
    (void)state;
    assert_int_equal(tg_out_kind_of(NULL, "image/jpeg", 1000), TG_OUT_PHOTO);
    assert_int_equal(tg_out_kind_of(NULL, "image/jpeg", (size_t)TG_PHOTO_UPLOAD_MAX + 1),
                     TG_OUT_DOCUMENT);
    assert_int_equal(tg_out_kind_of(NULL, "image/svg+xml", 10), TG_OUT_DOCUMENT);
    assert_int_equal(tg_out_kind_of(NULL, "image/gif", 10), TG_OUT_ANIMATION);
    assert_int_equal(tg_out_kind_of("voice", "audio/mpeg", 10), TG_OUT_VOICE);
    assert_int_equal(tg_out_kind_of(NULL, "audio/ogg", 10), TG_OUT_VOICE);
    assert_int_equal(tg_out_kind_of("audio", "audio/ogg", 10), TG_OUT_AUDIO);
    assert_int_equal(tg_out_kind_of(NULL, "audio/mpeg", 10), TG_OUT_AUDIO);
    assert_int_equal(tg_out_kind_of(NULL, "video/mp4", 10), TG_OUT_VIDEO);
    assert_int_equal(tg_out_kind_of(NULL, NULL, 10), TG_OUT_DOCUMENT);
    assert_int_equal(tg_out_kind_of("document", "image/png", 10), TG_OUT_DOCUMENT);
    assert_int_equal(tg_out_kind_of(NULL, "IMAGE/PNG", 0), TG_OUT_PHOTO); /* a URL */
    assert_string_equal(tg_out_method(TG_OUT_VOICE), "sendVoice");
    assert_string_equal(tg_out_field(TG_OUT_DOCUMENT), "document");
    tg_out_kind v[] = {TG_OUT_PHOTO, TG_OUT_VIDEO, TG_OUT_PHOTO};
    assert_true(tg_out_groupable(v, 3));
    assert_false(tg_out_groupable(v, 1));
    tg_out_kind d[] = {TG_OUT_DOCUMENT, TG_OUT_DOCUMENT};
    assert_true(tg_out_groupable(d, 2));
    tg_out_kind mix[] = {TG_OUT_PHOTO, TG_OUT_DOCUMENT};
    assert_false(tg_out_groupable(mix, 2));
    tg_out_kind voice[] = {TG_OUT_VOICE, TG_OUT_VOICE};
    assert_false(tg_out_groupable(voice, 2));
    tg_out_kind many[11] = {0};
    assert_false(tg_out_groupable(many, 11));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_and_kinds), cmocka_unit_test(test_hostile_numbers_and_strings),
        cmocka_unit_test(test_names_and_mime), cmocka_unit_test(test_photo_pick),
        cmocka_unit_test(test_out_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
