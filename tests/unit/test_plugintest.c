/* The plugin test kit (routerd/plugintest.h) on built plugins loaded by
 * path: the mock backend, a probe backend using every observable host
 * call, the inbound A2A server, and the loader's refusals. */
#include <routerd/plugintest.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static char err[512];

static void load(const char *path) {
    rdpt_reset();
    if (rdpt_load(path, RD_KIND_BACKEND, err, sizeof err)) fail_msg("%s", err);
}

static rdpt_reply call(void *self, const char *text, int64_t deadline_ms) {
    rdpt_reply r;
    rdpt_request rq = {.chat_id = 7, .user_id = 7, .text = text, .deadline_ms = deadline_ms};
    assert_int_equal(rdpt_call(self, &rq, &r), 0);
    return r;
}

static void shutdown_clean(void *self) {
    rdpt_shutdown(self);
    if (rdpt_teardown_ok(err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rdpt_misuses(NULL, 0), 0);
}

/* The configuration is refused with routerd's own messages. */
static void test_schema_like_routerd(void **state) {
    (void)state;
    load(PROBE_SO);
    assert_int_equal(rdpt_section("greting = x\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown key 'greting' (did you mean 'greeting'?)"));
    rd_status st;
    rd_error e;
    assert_null(rdpt_start(&st, &e));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(e.msg, "did you mean 'greeting'"));
    assert_int_equal(rdpt_section("loud = maybe\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "expected true or false"));
    assert_int_equal(rdpt_section("level = medium\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "'medium' is not one of: low high"));
    assert_int_equal(rdpt_section("wait = 5x\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "expected a duration"));
    assert_int_equal(rdpt_section("wait = 2m\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(rdpt_section("[router]\n", err, sizeof err), -1);
    /* plugin and sha256 are the host's keys, accepted in any section. */
    assert_int_equal(rdpt_section("plugin = probe\nloud = ON ; shout\ntags =\n", err, sizeof err),
                     0);
    void *self = rdpt_start(&st, &e);
    assert_non_null(self);
    rdpt_reply r = call(self, "you", 0);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "hi THERE: you");
    rdpt_reply_free(&r);
    r = call(self, "tags", 0); /* an empty list is an empty array */
    assert_string_equal(r.text, ".");
    rdpt_reply_free(&r);
    r = call(self, "level", 0); /* an absent enum without default is -1 */
    assert_string_equal(r.text, "0");
    rdpt_reply_free(&r);
    r = call(self, "bound", 0); /* cfg_bind: the default duration, the absent enum */
    assert_string_equal(r.text, "1000 -1");
    rdpt_reply_free(&r);
    shutdown_clean(self);

    rdpt_set("tags", " a, b ,,c ");
    rdpt_set("level", "high");
    rdpt_set("wait", "250ms");
    rdpt_set("greeting", "line\nbreak"); /* as ${VAR} could bring it */
    self = rdpt_start(&st, &e);
    assert_non_null(self);
    r = call(self, "tags", 0);
    assert_string_equal(r.text, "abc.");
    rdpt_reply_free(&r);
    r = call(self, "level", 0);
    assert_string_equal(r.text, "2");
    rdpt_reply_free(&r);
    r = call(self, "bound", 0);
    assert_string_equal(r.text, "250 1");
    rdpt_reply_free(&r);
    r = call(self, "caf\xc3 \xff", 0); /* routerd hands backends valid UTF-8 */
    assert_string_equal(r.text, "line\nbreak THERE: caf\xef\xbf\xbd \xef\xbf\xbd");
    rdpt_reply_free(&r);
    r = call(self, "x", 0);
    assert_string_equal(r.text, "line\nbreak THERE: x"); /* loud stays set */
    rdpt_reply_free(&r);
    shutdown_clean(self);
}

static void test_attachments_choices_pending(void **state) {
    (void)state;
    load(PROBE_SO);
    rd_status st;
    void *self = rdpt_start(&st, NULL);
    assert_non_null(self);
    rdpt_reply r = call(self, "file", 0);
    assert_int_equal(r.st, RD_OK);
    assert_int_equal(r.nfiles, 1);
    assert_string_equal(r.files[0].mime, "text/plain");
    assert_string_equal(r.files[0].name, "a.txt");
    assert_int_equal(r.files[0].len, 3);
    assert_memory_equal(r.files[0].data, "abc", 3);
    rdpt_reply_free(&r);
    rdpt_set_attach_limits(0, 0);
    r = call(self, "file", 0);
    assert_int_equal(r.st, RD_E_FULL);
    assert_int_equal(r.nfiles, 0);
    rdpt_reply_free(&r);
    r = call(self, "choose", 0);
    assert_string_equal(r.text, "sure?");
    assert_non_null(r.choices);
    assert_string_equal(r.choices[0], "yes");
    assert_string_equal(r.choices[1], "no");
    assert_null(r.choices[2]);
    rdpt_reply_free(&r);
    r = call(self, "pending", 5000);
    assert_true(r.pending);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, "done later");
    assert_int_equal(r.late_ms, 0);
    rdpt_reply_free(&r);
    r = call(self, "slow", 100);
    assert_int_equal(r.st, RD_E_TIMEOUT);
    assert_true(r.late_ms >= 100);
    rdpt_reply_free(&r);
    shutdown_clean(self);
}

/* What routerd refuses or the kit reports as a plugin bug. */
static void test_plugin_bugs(void **state) {
    (void)state;
    load(PROBE_SO);
    rdpt_set("misread", "true");
    rd_status st;
    rd_error e;
    assert_null(rdpt_start(&st, &e));
    assert_int_equal(st, RD_E_CONFIG);
    assert_non_null(strstr(e.msg, "cfg_str(\"greting\"): the key is not declared in the plugin"));
    assert_int_equal(rdpt_misuses(NULL, 0), 1);

    load(PROBE_SO);
    rdpt_set("late", "true");
    void *self = rdpt_start(&st, &e);
    assert_non_null(self);
    rdpt_shutdown(self);
    assert_int_equal(rdpt_teardown_ok(err, sizeof err), -1);
    /* Each late call counted once, whichever host call it goes through. */
    assert_non_null(
        strstr(err, "2 host calls after stop(): first host->log after stop() returned"));

    /* An older host: its table ends before the newer calls. */
    assert_int_equal(rdpt_set_host_minor(1), 0);
    assert_false(RD_HAS(rdpt_host(), cfg_bind));
    assert_true(RD_HAS(rdpt_host(), kv_add));
    assert_int_equal(rdpt_set_host_minor(RD_ABI_MINOR + 1), -1);
    rdpt_reset();
    assert_true(RD_HAS(rdpt_host(), reply_choices));
    assert_int_equal(rdpt_load(BAD_DIR "/no_handle.so", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "backend without ops.handle"));
    assert_int_equal(rdpt_load(BAD_DIR "/wrong_major.so", 0, err, sizeof err), -1);
    assert_int_equal(rdpt_load(PROBE_SO, RD_KIND_SINK, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a backend plugin, not a sink"));
}

/* The mock backend, as its manifest section configures it. */
static void test_mock_backend(void **state) {
    (void)state;
    load(MOCK_SO);
    assert_int_equal(rdpt_section("mode = eco\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "did you mean 'echo'"));
    assert_int_equal(rdpt_section("fail_fatal = 2\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(rdpt_section("mode = echo\nprefix = \">> \"\n", err, sizeof err), 0);
    rd_status st;
    rd_error e;
    void *self = rdpt_start(&st, &e);
    if (!self) fail_msg("%s", e.msg);
    rdpt_reply r = call(self, "hello", 2000);
    assert_int_equal(r.st, RD_OK);
    assert_string_equal(r.text, ">> hello");
    assert_int_equal(r.late_ms, 0);
    rdpt_reply_free(&r);
    shutdown_clean(self);

    assert_int_equal(
        rdpt_section("mode = fixed\nreply = one\\ntwo\nfail_fatal = 1\n", err, sizeof err), 0);
    self = rdpt_start(&st, &e);
    assert_non_null(self);
    r = call(self, "hello", 2000);
    assert_int_equal(r.st, RD_E_FATAL);
    assert_string_equal(r.err.klass, "fatal");
    rdpt_reply_free(&r);
    shutdown_clean(self);

    /* Latency longer than the deadline: cut short at the deadline. */
    assert_int_equal(rdpt_section("latency_ms = 3000\n", err, sizeof err), 0);
    self = rdpt_start(&st, &e);
    assert_non_null(self);
    r = call(self, "slow", 100);
    assert_int_equal(r.st, RD_OK);
    assert_true(r.elapsed_ms >= 100 && r.elapsed_ms < 2000);
    rdpt_reply_free(&r);
    shutdown_clean(self);
}

/* An inbound plugin goes through the loader and the [inbound.NAME] schema
 * like the other kinds. */
static void test_inbound_kind(void **state) {
    (void)state;
    rdpt_reset();
    assert_int_equal(rdpt_load(INBOUND_SO, RD_KIND_BACKEND, err, sizeof err), -1);
    assert_non_null(strstr(err, "is an inbound plugin, not a backend"));
    assert_int_equal(rdpt_load(BAD_DIR "/inbound_no_intercept.so", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "inbound without ops.intercept"));
    assert_int_equal(rdpt_load(BAD_DIR "/inbound_old_ops.so", RD_KIND_INBOUND, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "inbound without ops.intercept"));
    if (rdpt_load(INBOUND_SO, RD_KIND_INBOUND, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(rdpt_plugin()->kind, RD_KIND_INBOUND);
    assert_string_equal(rdpt_host()->info(rdpt_ctx(), "kind"), "inbound");
    /* the daemon's messages, in the daemon's section kind */
    assert_int_equal(rdpt_section("listen = 127.0.0.1:1\nhumans = a=main:1\ncallers = "
                                  "c=0123456789abcdef\nanswer_timout = 1h\n",
                                  err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "[inbound.test] unknown key 'answer_timout'"));
    assert_non_null(strstr(err, "did you mean 'answer_timeout'"));
    assert_int_equal(rdpt_section("plugin = a2a\nhumans = a=main:1\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "listen"));
    assert_int_equal(rdpt_section("plugin = a2a\nsha256 = " /* the host's keys */
                                  "0000000000000000000000000000000000000000000000000000000000000000"
                                  "\nlisten = 127.0.0.1:1\nhumans = a=main:1\n"
                                  "callers = c=0123456789abcdef\n",
                                  err, sizeof err),
                     0);
    rdpt_reset();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_like_routerd),
        cmocka_unit_test(test_attachments_choices_pending),
        cmocka_unit_test(test_plugin_bugs),
        cmocka_unit_test(test_mock_backend),
        cmocka_unit_test(test_inbound_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
