/* Unit tests: Bot API JSON, updates, addressing, escaping, UTF-8 repair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <routerd/plugin.h>

#include "telegram_parse.h"

static void test_big_ints_exact(void **state) {
    (void)state;
    const char *j = "{\"a\":1234567890123456789,\"b\":-1001234567890,\"c\":\"42\",\"d\":1.5,"
                    "\"e\":\"x\",\"f\":9007199254740993,\"g\":\"-9223372036854775808\","
                    "\"s\":\"12345678901234567890 stays text\",\"h\":1e3}";
    cJSON *o = tg_json_parse(j, strlen(j));
    assert_non_null(o);
    int64_t v = 0;
    assert_true(tg_json_i64(o, "a", &v));
    assert_true(v == 1234567890123456789LL);
    assert_true(tg_json_i64(o, "b", &v));
    assert_true(v == -1001234567890LL);
    assert_true(tg_json_i64(o, "c", &v));
    assert_int_equal(v, 42);
    assert_false(tg_json_i64(o, "d", &v));
    assert_false(tg_json_i64(o, "e", &v));
    /* 2^53 + 1 is not representable as a double: must come out exact. */
    assert_true(tg_json_i64(o, "f", &v));
    assert_true(v == 9007199254740993LL);
    assert_true(tg_json_i64(o, "g", &v));
    assert_true(v == INT64_MIN);
    assert_true(tg_json_i64(o, "h", &v));
    assert_int_equal(v, 1000);
    assert_string_equal(cJSON_GetObjectItem(o, "s")->valuestring,
                        "12345678901234567890 stays text");
    assert_false(tg_json_i64(o, "missing", &v));
    cJSON_Delete(o);
    assert_null(tg_json_parse("{\"a\":", 5));
    /* Escaped quotes inside strings do not confuse the number scan. */
    const char *k = "{\"t\":\"a\\\"1234567890123456789\",\"n\":1234567890123456789}";
    o = tg_json_parse(k, strlen(k));
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "t")->valuestring, "a\"1234567890123456789");
    assert_true(tg_json_i64(o, "n", &v));
    assert_true(v == 1234567890123456789LL);
    cJSON_Delete(o);
}

static void test_resp_envelope(void **state) {
    (void)state;
    tg_resp r;
    const char *ok = "{\"ok\":true,\"result\":{\"message_id\":5}}";
    assert_int_equal(tg_resp_parse(ok, strlen(ok), &r), 0);
    assert_true(r.ok);
    int64_t id = 0;
    assert_true(tg_json_i64(r.result, "message_id", &id));
    assert_int_equal(id, 5);
    tg_resp_free(&r);

    const char *e429 = "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: "
                       "retry after 7\",\"parameters\":{\"retry_after\":7}}";
    assert_int_equal(tg_resp_parse(e429, strlen(e429), &r), 0);
    assert_false(r.ok);
    assert_int_equal(r.error_code, 429);
    assert_int_equal(r.retry_after, 7);
    assert_string_equal(r.description, "Too Many Requests: retry after 7");
    tg_resp_free(&r);

    const char *mig = "{\"ok\":false,\"error_code\":\"400\",\"description\":\"Bad Request: group "
                      "chat was upgraded to a supergroup chat\",\"parameters\":"
                      "{\"migrate_to_chat_id\":-1001234567890123}}";
    assert_int_equal(tg_resp_parse(mig, strlen(mig), &r), 0);
    assert_int_equal(r.error_code, 400);
    assert_true(r.migrate_to == -1001234567890123LL);
    tg_resp_free(&r);

    assert_int_equal(tg_resp_parse("<html>502</html>", 16, &r), -1);
    assert_int_equal(tg_resp_parse("{\"result\":[]}", 13, &r), -1);
    assert_int_equal(tg_resp_parse("[1,2]", 5, &r), -1);
    assert_int_equal(tg_resp_parse("", 0, &r), -1);
    assert_int_equal(tg_resp_parse("{\"ok\":true,\"res", 15, &r), -1);
}

static int parse_update(const char *json, tg_update *u) {
    cJSON *o = tg_json_parse(json, strlen(json));
    int rc = tg_update_parse(o, u);
    cJSON_Delete(o);
    return rc;
}

static void test_update_shapes(void **state) {
    (void)state;
    tg_update u;
    assert_int_equal(
        parse_update("{\"update_id\":900000001,\"message\":{\"message_id\":57,"
                     "\"message_thread_id\":3,\"is_topic_message\":true,\"from\":{\"id\":1111,"
                     "\"is_bot\":false,\"first_name\":\"Ann\",\"username\":\"ann\","
                     "\"language_code\":\"en\"},\"chat\":{\"id\":-1001234567890,\"type\":"
                     "\"supergroup\",\"title\":\"Team\",\"is_forum\":true},\"date\":1767225600,"
                     "\"text\":\"/ask@my_bot hi\"}}",
                     &u),
        0);
    assert_int_equal(u.update_id, 900000001);
    assert_int_equal(u.kind, TG_UPD_MESSAGE);
    assert_true(u.chat_id == -1001234567890LL);
    assert_int_equal(u.chat_type, TG_CHAT_SUPERGROUP);
    assert_int_equal(u.user_id, 1111);
    assert_int_equal(u.message_id, 57);
    assert_int_equal(u.thread_id, 3);
    assert_string_equal(u.text, "/ask@my_bot hi");
    assert_string_equal(u.username, "ann");
    assert_string_equal(u.language, "en");
    tg_update_free(&u);

    /* A reply in a thread that is not a topic keeps no thread id. */
    assert_int_equal(parse_update("{\"update_id\":\"2\",\"edited_message\":{\"message_id\":\"9\","
                                  "\"message_thread_id\":4,\"chat\":{\"id\":\"77\",\"type\":"
                                  "\"private\"},\"from\":{\"id\":77},\"caption\":\"photo cap\","
                                  "\"reply_to_message\":{\"from\":{\"id\":555}}}}",
                                  &u),
                     0);
    assert_int_equal(u.kind, TG_UPD_EDITED_MESSAGE);
    assert_int_equal(u.update_id, 2);
    assert_int_equal(u.chat_id, 77);
    assert_int_equal(u.message_id, 9);
    assert_int_equal(u.thread_id, 0);
    assert_true(u.is_caption);
    assert_string_equal(u.text, "photo cap");
    assert_int_equal(u.reply_to_user_id, 555);
    tg_update_free(&u);

    assert_int_equal(parse_update("{\"update_id\":3,\"channel_post\":{\"message_id\":1,\"chat\":"
                                  "{\"id\":-100555,\"type\":\"channel\"},\"sender_chat\":"
                                  "{\"id\":-100555},\"text\":\"news\"}}",
                                  &u),
                     0);
    assert_int_equal(u.kind, TG_UPD_CHANNEL_POST);
    assert_int_equal(u.chat_type, TG_CHAT_CHANNEL);
    assert_int_equal(u.user_id, -100555);
    tg_update_free(&u);

    /* A press without its message has no chat to answer in. */
    assert_int_equal(parse_update("{\"update_id\":4,\"callback_query\":{\"id\":\"x\"}}", &u), 0);
    assert_int_equal(u.kind, TG_UPD_CALLBACK_QUERY);
    assert_string_equal(u.payload, "callback_query");
    assert_true(u.invalid);
    assert_string_equal(u.cb_id, "x");
    tg_update_free(&u);
    assert_int_equal(
        parse_update("{\"update_id\":4,\"callback_query\":{\"id\":\"77\",\"from\":{\"id\":5,"
                     "\"username\":\"ann\"},\"message\":{\"message_id\":12,\"from\":{\"id\":9},"
                     "\"chat\":{\"id\":-100,\"type\":\"supergroup\"},\"text\":\"pick\"},"
                     "\"data\":\"b1.x\"}}",
                     &u),
        0);
    assert_int_equal(u.kind, TG_UPD_CALLBACK_QUERY);
    assert_false(u.invalid);
    assert_int_equal(u.chat_id, -100);
    assert_int_equal(u.user_id, 5); /* who pressed, not who wrote the message */
    assert_int_equal(u.message_id, 12);
    assert_null(u.text);
    assert_string_equal(u.cb_id, "77");
    assert_string_equal(u.cb_data, "b1.x");
    assert_string_equal(u.username, "ann");
    tg_update_free(&u);
    /* Data longer than Telegram's 64 bytes is not kept. */
    assert_int_equal(parse_update("{\"update_id\":4,\"callback_query\":{\"id\":\"1\",\"data\":"
                                  "\"0123456789012345678901234567890123456789012345678901234567890"
                                  "12345\",\"message\":{\"message_id\":1,\"chat\":{\"id\":3}}}}",
                                  &u),
                     0);
    assert_string_equal(u.cb_data, "");
    tg_update_free(&u);

    assert_int_equal(parse_update("{\"update_id\":5,\"message\":{\"text\":\"no chat\"}}", &u), 0);
    assert_true(u.invalid);
    tg_update_free(&u);

    assert_int_equal(parse_update("{\"update_id\":6}", &u), 0);
    assert_int_equal(u.kind, TG_UPD_OTHER);
    tg_update_free(&u);

    assert_int_equal(parse_update("{\"message\":{}}", &u), -1);
    assert_int_equal(parse_update("{\"update_id\":1.5,\"message\":{}}", &u), -1);
    assert_int_equal(tg_update_parse(NULL, &u), -1);
}

static tg_update mk(tg_kind kind, tg_chat_type ct, int64_t chat, const char *text) {
    tg_update u;
    memset(&u, 0, sizeof u);
    u.update_id = 1;
    u.kind = kind;
    u.chat_type = ct;
    u.chat_id = chat;
    u.user_id = 42;
    u.message_id = 7;
    if (text) {
        u.text = strdup(text);
        u.text_len = strlen(text);
    }
    return u;
}

static const tg_route_cfg rcfg = {.bot_username = "routerd_test_bot",
                                  .bot_id = 999,
                                  .group_all = 0,
                                  .channel_posts = 0,
                                  .edited_messages = 1};

/* Routes text from a chat; returns the reason or NULL and the text. */
static const char *route(tg_chat_type ct, const char *text, const tg_route_cfg *c, char *out,
                         uint32_t *flags) {
    tg_update u = mk(TG_UPD_MESSAGE, ct, ct == TG_CHAT_PRIVATE ? 42 : -100, text);
    tg_routed r;
    const char *why = tg_route(&u, c ? c : &rcfg, &r);
    if (!why) {
        strcpy(out, r.text);
        if (flags) *flags = r.flags;
        free(r.text);
    }
    tg_update_free(&u);
    return why;
}

/* Integers from the network: refused or read as none out of range. */
/* ABI 1.3: the message an update answers: the one it quotes, or for a
 * button press the message carrying the button. */
static void test_reply_to(void **state) {
    (void)state;
    tg_update u;
    assert_int_equal(
        parse_update("{\"update_id\":1,\"message\":{\"message_id\":60,\"chat\":{\"id\":"
                     "15,\"type\":\"private\"},\"from\":{\"id\":15},\"text\":\"yes\","
                     "\"reply_to_message\":{\"message_id\":41,\"from\":{\"id\":99,"
                     "\"is_bot\":true},\"text\":\"Question?\"}}}",
                     &u),
        0);
    assert_int_equal(u.reply_to_id, 41);
    assert_int_equal(u.reply_to_user_id, 99);
    tg_update_free(&u);
    /* No quote, or an id out of range: none. */
    assert_int_equal(
        parse_update("{\"update_id\":2,\"message\":{\"message_id\":61,\"chat\":{\"id\":"
                     "15},\"text\":\"hi\"}}",
                     &u),
        0);
    assert_int_equal(u.reply_to_id, 0);
    tg_update_free(&u);
    assert_int_equal(
        parse_update("{\"update_id\":3,\"message\":{\"message_id\":62,\"chat\":{\"id\":"
                     "15},\"text\":\"hi\",\"reply_to_message\":{\"message_id\":-4}}}",
                     &u),
        0);
    assert_int_equal(u.reply_to_id, 0);
    tg_update_free(&u);
    assert_int_equal(
        parse_update("{\"update_id\":4,\"message\":{\"message_id\":63,\"chat\":{\"id\":"
                     "15},\"text\":\"hi\",\"reply_to_message\":{\"message_id\":"
                     "\"99999999999999999999\"}}}",
                     &u),
        0);
    assert_int_equal(u.reply_to_id, 0);
    tg_update_free(&u);
    /* A press answers the message with the button, not what that message
     * itself quotes. */
    assert_int_equal(
        parse_update("{\"update_id\":5,\"callback_query\":{\"id\":\"c1\",\"from\":{\"id\":15},"
                     "\"message\":{\"message_id\":70,\"from\":{\"id\":99},\"chat\":{\"id\":15,"
                     "\"type\":\"private\"},\"text\":\"Approve?\",\"reply_to_message\":{"
                     "\"message_id\":69}},\"data\":\"b1.x\"}}",
                     &u),
        0);
    assert_int_equal(u.kind, TG_UPD_CALLBACK_QUERY);
    assert_int_equal(u.message_id, 70);
    assert_int_equal(u.reply_to_id, 70);
    tg_update_free(&u);
}

static void test_integer_bounds(void **state) {
    (void)state;
    tg_update u;
    assert_int_equal(parse_update("{\"update_id\":9223372036854775807,\"message\":{}}", &u), -1);
    assert_int_equal(parse_update("{\"update_id\":9007199254740992,\"message\":{}}", &u), -1);
    assert_int_equal(parse_update("{\"update_id\":-1,\"message\":{}}", &u), -1);
    assert_int_equal(parse_update("{\"update_id\":\"18446744073709551616\"}", &u), -1);
    assert_int_equal(parse_update("{\"update_id\":9007199254740991,\"message\":{\"message_id\":"
                                  "-3,\"chat\":{\"id\":-9007199254740991,\"type\":\"group\"},"
                                  "\"from\":{\"id\":9223372036854775807},\"is_topic_message\":"
                                  "true,\"message_thread_id\":0,\"text\":\"x\"}}",
                                  &u),
                     0);
    assert_true(u.update_id == 9007199254740991LL);
    assert_false(u.invalid);
    assert_true(u.chat_id == -9007199254740991LL);
    assert_int_equal(u.message_id, 0);
    assert_int_equal(u.user_id, 0);
    assert_int_equal(u.thread_id, 0);
    tg_update_free(&u);
    assert_int_equal(parse_update("{\"update_id\":1,\"message\":{\"chat\":{\"id\":"
                                  "-9223372036854775808}}}",
                                  &u),
                     0);
    assert_true(u.invalid);
    tg_update_free(&u);
    /* Migrations: only group -> another group id. */
    assert_int_equal(parse_update("{\"update_id\":2,\"message\":{\"chat\":{\"id\":-5},"
                                  "\"migrate_to_chat_id\":-100777}}",
                                  &u),
                     0);
    assert_true(u.migrate_to == -100777);
    tg_update_free(&u);
    assert_int_equal(parse_update("{\"update_id\":2,\"message\":{\"chat\":{\"id\":-5},"
                                  "\"migrate_to_chat_id\":100777,\"migrate_from_chat_id\":-5}}",
                                  &u),
                     0);
    assert_int_equal(u.migrate_to, 0);
    assert_int_equal(u.migrate_from, 0);
    tg_update_free(&u);

    tg_resp r;
    const char *e = "{\"ok\":false,\"error_code\":9223372036854775807,\"description\":\"x\","
                    "\"parameters\":{\"retry_after\":9223372036854775807,\"migrate_to_chat_id\":"
                    "42}}";
    assert_int_equal(tg_resp_parse(e, strlen(e), &r), 0);
    assert_int_equal(r.error_code, 0);
    assert_true(r.retry_after == TG_RETRY_AFTER_MAX_S);
    assert_true(r.retry_after_raw == INT64_MAX);
    assert_int_equal(r.migrate_to, 0);
    tg_resp_free(&r);
    e = "{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":-5}}";
    assert_int_equal(tg_resp_parse(e, strlen(e), &r), 0);
    assert_int_equal(r.retry_after, 0);
    tg_resp_free(&r);

    int c = 0;
    assert_true(tg_secs_to_ms(INT64_MAX, 3600, &c) == 3600000);
    assert_true(c);
    assert_true(tg_secs_to_ms(INT64_MIN, 3600, &c) == 0);
    assert_true(c);
    assert_true(tg_secs_to_ms(7, 3600, &c) == 7000);
    assert_false(c);
    int64_t out;
    assert_false(tg_add_ok(INT64_MAX, 1, &out));
    assert_false(tg_mul_ok(INT64_MAX / 999, 1000, &out));
    assert_string_equal(tg_code_label(429), "429");
    assert_string_equal(tg_code_label(418), "4xx");
    assert_string_equal(tg_code_label(599), "5xx");
    assert_string_equal(tg_code_label(INT64_MAX), "other");
    assert_string_equal(tg_code_label(-400), "other");
}

static void test_addressing(void **state) {
    (void)state;
    char out[256];
    uint32_t fl = 0;
    assert_null(route(TG_CHAT_PRIVATE, "hello @someone", NULL, out, &fl));
    assert_string_equal(out, "hello @someone");
    assert_int_equal(fl, 0);
    assert_string_equal(route(TG_CHAT_SUPERGROUP, "just chatting", NULL, out, NULL),
                        "not_addressed");
    assert_null(route(TG_CHAT_SUPERGROUP, "@routerd_test_bot what is 2+2?", NULL, out, &fl));
    assert_string_equal(out, "what is 2+2?");
    assert_true(fl & RD_MSG_GROUP);
    assert_null(route(TG_CHAT_GROUP, "@Routerd_Test_Bot, hi", NULL, out, NULL));
    assert_string_equal(out, "hi");
    assert_null(route(TG_CHAT_GROUP, "hey @routerd_test_bot, what now?", NULL, out, NULL));
    assert_string_equal(out, "hey, what now?");
    assert_null(route(TG_CHAT_GROUP, "ask @routerd_test_bot about X", NULL, out, NULL));
    assert_string_equal(out, "ask about X");
    assert_null(route(TG_CHAT_GROUP, "thanks @routerd_test_bot", NULL, out, NULL));
    assert_string_equal(out, "thanks");
    /* Not a whole-word mention. */
    assert_string_equal(route(TG_CHAT_GROUP, "mail a@routerd_test_bot.com", NULL, out, NULL),
                        "not_addressed");
    assert_string_equal(route(TG_CHAT_GROUP, "@routerd_test_bots hi", NULL, out, NULL),
                        "not_addressed");
    /* A bare mention keeps its text rather than becoming empty. */
    assert_null(route(TG_CHAT_GROUP, "@routerd_test_bot", NULL, out, NULL));
    assert_string_equal(out, "@routerd_test_bot");
    /* Commands. */
    assert_null(route(TG_CHAT_SUPERGROUP, "/ask@routerd_test_bot hi", NULL, out, &fl));
    assert_string_equal(out, "/ask hi");
    assert_true(fl & RD_MSG_COMMAND);
    assert_null(route(TG_CHAT_SUPERGROUP, "/ask hi", NULL, out, &fl));
    assert_string_equal(out, "/ask hi");
    assert_string_equal(route(TG_CHAT_SUPERGROUP, "/ask@other_bot hi", NULL, out, NULL),
                        "other_bot_command");
    assert_string_equal(route(TG_CHAT_PRIVATE, "/start@other_bot", NULL, out, NULL),
                        "other_bot_command");
    assert_null(route(TG_CHAT_PRIVATE, "/start@routerd_test_bot", NULL, out, &fl));
    assert_string_equal(out, "/start");
    /* With the bot's registered commands known, a plain /cmd in a group is
     * for this bot only when registered; addressed ones always are. */
    static const char *const cmds[] = {"new", "persona", "help", NULL};
    tg_route_cfg known = rcfg;
    known.commands = cmds;
    assert_null(route(TG_CHAT_SUPERGROUP, "/help me", &known, out, &fl));
    assert_string_equal(out, "/help me");
    assert_null(route(TG_CHAT_GROUP, "/Persona", &known, out, NULL));
    assert_string_equal(route(TG_CHAT_SUPERGROUP, "/ask hi", &known, out, NULL), "not_addressed");
    assert_string_equal(route(TG_CHAT_SUPERGROUP, "/helpme", &known, out, NULL), "not_addressed");
    assert_null(route(TG_CHAT_SUPERGROUP, "/ask@routerd_test_bot hi", &known, out, NULL));
    assert_string_equal(out, "/ask hi");
    assert_string_equal(route(TG_CHAT_SUPERGROUP, "/help@other_bot", &known, out, NULL),
                        "other_bot_command");
    assert_null(route(TG_CHAT_PRIVATE, "/ask hi", &known, out, NULL));
    /* A reply to the bot or a mention still addresses it. */
    assert_null(route(TG_CHAT_SUPERGROUP, "/ask @routerd_test_bot hi", &known, out, NULL));
    /* group_mode = all: everything, mentions still stripped. */
    tg_route_cfg all = rcfg;
    all.group_all = 1;
    assert_null(route(TG_CHAT_GROUP, "just chatting", &all, out, NULL));
    assert_string_equal(out, "just chatting");
    assert_null(route(TG_CHAT_GROUP, "@routerd_test_bot go", &all, out, NULL));
    assert_string_equal(out, "go");
}

static void test_route_kinds(void **state) {
    (void)state;
    tg_routed r;
    tg_update u = mk(TG_UPD_MESSAGE, TG_CHAT_SUPERGROUP, -100, "no mention here");
    u.reply_to_user_id = 999; /* a reply to the bot */
    assert_null(tg_route(&u, &rcfg, &r));
    assert_string_equal(r.text, "no mention here");
    free(r.text);
    tg_update_free(&u);

    u = mk(TG_UPD_EDITED_MESSAGE, TG_CHAT_PRIVATE, 42, "edited");
    assert_null(tg_route(&u, &rcfg, &r));
    assert_true(r.flags & RD_MSG_EDITED);
    free(r.text);
    tg_route_cfg noedit = rcfg;
    noedit.edited_messages = 0;
    assert_string_equal(tg_route(&u, &noedit, &r), "edits_off");
    tg_update_free(&u);

    u = mk(TG_UPD_CHANNEL_POST, TG_CHAT_CHANNEL, -100777, "@routerd_test_bot post");
    assert_string_equal(tg_route(&u, &rcfg, &r), "channel_posts_off");
    tg_route_cfg ch = rcfg;
    ch.channel_posts = 1;
    assert_null(tg_route(&u, &ch, &r));
    assert_string_equal(r.text, "post");
    free(r.text);
    tg_update_free(&u);

    u = mk(TG_UPD_MESSAGE, TG_CHAT_PRIVATE, 42, NULL);
    assert_string_equal(tg_route(&u, &rcfg, &r), "no_text");
    tg_update_free(&u);
    u = mk(TG_UPD_MESSAGE, TG_CHAT_PRIVATE, 42, " \n ");
    assert_string_equal(tg_route(&u, &rcfg, &r), "no_text");
    tg_update_free(&u);
    u = mk(TG_UPD_MESSAGE, TG_CHAT_PRIVATE, 999, "me");
    u.user_id = 999;
    assert_string_equal(tg_route(&u, &rcfg, &r), "own_message");
    tg_update_free(&u);
    u = mk(TG_UPD_OTHER, TG_CHAT_UNKNOWN, 0, NULL);
    assert_string_equal(tg_route(&u, &rcfg, &r), "unsupported");
    u.kind = TG_UPD_MESSAGE;
    u.invalid = 1;
    assert_string_equal(tg_route(&u, &rcfg, &r), "invalid");
    /* Before getMe no username is known: only private chats go through. */
    tg_route_cfg anon = {0};
    anon.edited_messages = 1;
    u = mk(TG_UPD_MESSAGE, TG_CHAT_GROUP, -5, "@routerd_test_bot hi");
    assert_string_equal(tg_route(&u, &anon, &r), "not_addressed");
    tg_update_free(&u);
}

static void test_escaping(void **state) {
    (void)state;
    size_t n;
    char *s = tg_escape_markdown_v2("Price: 3.50 (approx) - ok! a_b *c* [d] ~e~ `f` >g #h +i =j "
                                    "|k| {l} \\m",
                                    strlen("Price: 3.50 (approx) - ok! a_b *c* [d] ~e~ `f` >g #h "
                                           "+i =j |k| {l} \\m"),
                                    &n);
    assert_string_equal(s, "Price: 3\\.50 \\(approx\\) \\- ok\\! a\\_b \\*c\\* \\[d\\] \\~e\\~ "
                           "\\`f\\` \\>g \\#h \\+i \\=j \\|k\\| \\{l\\} \\\\m");
    assert_int_equal(n, strlen(s));
    free(s);
    s = tg_escape_markdown_v2("héllo 😀", strlen("héllo 😀"), NULL);
    assert_string_equal(s, "héllo 😀");
    free(s);
    s = tg_escape_html("<b>Tom & \"Jerry\"</b> 😀", strlen("<b>Tom & \"Jerry\"</b> 😀"), &n);
    assert_string_equal(s, "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; 😀");
    free(s);
}

static void test_secret_compare(void **state) {
    (void)state;
    assert_true(tg_secret_equal("abc-DEF_123", "abc-DEF_123"));
    assert_false(tg_secret_equal("abc-DEF_123", "abc-DEF_124"));
    assert_false(tg_secret_equal("abc", "abcd"));
    assert_false(tg_secret_equal("", "x"));
    assert_false(tg_secret_equal(NULL, "x"));
}

static void test_utf8(void **state) {
    (void)state;
    size_t n;
    char *s = tg_utf8_sanitize("ok\xC0\xAFz", 5, &n);
    assert_string_equal(s, "ok\xEF\xBF\xBD\xEF\xBF\xBDz");
    free(s);
    s = tg_utf8_sanitize("a\0b", 3, &n);
    assert_string_equal(s, "a\xEF\xBF\xBD"
                           "b");
    free(s);
    s = tg_utf8_sanitize("\xED\xA0\x80", 3, &n); /* a UTF-16 surrogate in UTF-8 */
    assert_int_equal(n, 9);
    free(s);
    s = tg_utf8_sanitize("\xF0\x9F\x98", 3, &n); /* truncated emoji */
    assert_int_equal(n, 9);
    free(s);
    s = tg_utf8_sanitize("é€😀", strlen("é€😀"), &n);
    assert_string_equal(s, "é€😀");
    free(s);
    assert_int_equal(tg_utf16_len("a€😀", strlen("a€😀")), 4);
    assert_int_equal(tg_utf16_len("", 0), 0);
    assert_true(tg_is_blank(" \n\t", 3));
    assert_false(tg_is_blank(" x ", 3));
    assert_true(tg_mentions("Hi @Bot_x!", 10, "bot_x"));
    assert_false(tg_mentions("Hi @Bot_xy", 10, "bot_x"));
    assert_false(tg_mentions("Hi", 2, ""));
}

/* The journal keeps each update of a batch as Telegram sent it: the spans
 * of the "result" array's objects, or -1 when the text does not line up. */
static void test_result_spans(void **state) {
    (void)state;
    size_t off[8], len[8];
    const char *body = " { \"ok\" : true, \"x\":{\"result\":[{\"no\":1}]},\"note\":\"]}[{\\\"\","
                       " \"result\" : [ {\"update_id\":1,\"t\":\"a}]\\\"[{\"} ,\n"
                       "{\"update_id\":2,\"m\":{\"e\":[1,{\"k\":[]}]}}\t] , \"result\":[{}]}";
    int n = tg_json_result_spans(body, strlen(body), off, len, 8);
    assert_int_equal(n, 2);
    assert_memory_equal(body + off[0], "{\"update_id\":1,\"t\":\"a}]\\\"[{\"}", len[0]);
    assert_int_equal(len[0], strlen("{\"update_id\":1,\"t\":\"a}]\\\"[{\"}"));
    assert_memory_equal(body + off[1], "{\"update_id\":2,\"m\":{\"e\":[1,{\"k\":[]}]}}", len[1]);
    /* as many as parsed, no more */
    assert_int_equal(tg_json_result_spans(body, strlen(body), off, len, 1), -1);
    const char *empty = "{\"ok\":true,\"result\":[ ]}";
    assert_int_equal(tg_json_result_spans(empty, strlen(empty), off, len, 8), 0);
    const char *bad[] = {
        "",
        "[]",
        "{\"ok\":true}",
        "{\"ok\":true,\"result\":true}",
        "{\"result\":[1,{}]}",       /* not an object */
        "{\"result\":[{},]}",        /* broken */
        "{\"result\":[{\"a\":\"}]}", /* unterminated string */
        "{\"result\":[{\"a\":1}",    /* cut */
        /* a key with escapes may be "result" to a parser: not trusted */
        "{\"res\\u0075lt\":[{\"a\":1}],\"result\":[{\"b\":2}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(tg_json_result_spans(bad[i], strlen(bad[i]), off, len, 8), -1);
}

/* The store keys sort as their numbers: the same text as "%c/%019lld". */
static void test_key19(void **state) {
    (void)state;
    const int64_t v[] = {0, 1, 9, 10, 1234567, 999999999999999999LL, INT64_MAX};
    char got[40], want[40];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        tg_key19(got, sizeof got, 'j', v[i]);
        snprintf(want, sizeof want, "j/%019lld", (long long)v[i]);
        assert_string_equal(got, want);
    }
    tg_key19(got, sizeof got, 'r', -5); /* below 0: 0 */
    assert_string_equal(got, "r/0000000000000000000");
    tg_key19(got, 6, 'w', 42); /* cut like snprintf */
    assert_string_equal(got, "w/000");
    memset(got, 'x', sizeof got);
    tg_key19(got, 0, 'w', 42); /* no room: nothing written */
    assert_int_equal(got[0], 'x');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key19),          cmocka_unit_test(test_result_spans),
        cmocka_unit_test(test_big_ints_exact), cmocka_unit_test(test_resp_envelope),
        cmocka_unit_test(test_update_shapes),  cmocka_unit_test(test_addressing),
        cmocka_unit_test(test_route_kinds),    cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_secret_compare), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_integer_bounds), cmocka_unit_test(test_reply_to),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
