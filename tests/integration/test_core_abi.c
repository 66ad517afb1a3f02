/* The plugin ABI's promises, from the plugin side, through the real
 * binary: an old (1.1) option layout still loads, an undeclared key stops
 * the start, RD_PF_SERIAL is never overlapped, hostile text arrives valid,
 * requests and replies carry the transport and update id, and attachments
 * and choices make the round trip through the mock and the console. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PD ROUTERD_ABI_PLUGIN_DIR

static rt_fix *fx;
static char *last_err; /* stderr of the last run_probe() */

static int setup(void **state) {
    (void)state;
    fx = rt_fix_new(NULL);
    return fx ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    rt_fix_free(fx);
    free(last_err);
    return 0;
}

static char *manifest(const char *name, const char *body) {
    return rt_manifest(fx->dir, name, 0, "rate_limit_per_minute = 0\n%s", body);
}

/* The number after key= in the first line containing key. */
static int value_of(const char *out, const char *key) {
    const char *p = strstr(out, key);
    if (!p) fail_msg("no '%s' in output:\n%s", key, out);
    return atoi(p + strlen(key));
}

/* Runs a probe manifest to its end; returns stdout (owned by the caller). */
static char *run_probe(const char *name, const char *body) {
    char *m = manifest(name, body);
    rt_proc *p = rt_start(m, NULL, NULL);
    int rc = rt_wait(p, 60000);
    if (rc != 0) fail_msg("exit %d\nstderr:\n%s", rc, rt_stderr(p));
    char *out = strdup(rt_stdout(p));
    free(last_err);
    last_err = strdup(rt_stderr(p));
    rt_free(p);
    free(m);
    return out;
}

/* Sends one line through the console and checks the whole answer. */
static void console_answers(const char *name, const char *body, const char *line,
                            const char *want) {
    char *m = manifest(name, body);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, line);
    rt_close_stdin(p);
    int rc = rt_wait(p, 20000);
    if (rc != 0) fail_msg("%s: exit %d\nstderr:\n%s", name, rc, rt_stderr(p));
    assert_string_equal(rt_stdout(p), want);
    rt_free(p);
    free(m);
}

static void old_layout_loads(void **state) {
    (void)state;
    console_answers("old",
                    "[transport.console]\nplugin = console\n"
                    "[backend.old]\nplugin = " PD "/backend_old_layout.so\n"
                    "greeting = \"hi: \"\ntone = loud\ntimes = 2\n"
                    "[persona.p]\nbackend = old\nchats = *\n",
                    "x\n", "hi: xhi: x!\n");
    /* Its keys are checked with the old stride too. */
    char *m =
        manifest("old_bad", "[transport.console]\nplugin = console\n"
                            "[backend.old]\nplugin = " PD "/backend_old_layout.so\ntimes = 9\n"
                            "[persona.p]\nbackend = old\nchats = *\n");
    const char *args[] = {"--check-config", NULL};
    rt_proc *p = rt_start(m, args, NULL);
    assert_int_equal(rt_wait(p, 20000), 78);
    assert_non_null(strstr(rt_stderr(p), "[backend.old] times: 9 is out of range [1, 3]"));
    rt_free(p);
    free(m);
}

static void undeclared_key_fails_start(void **state) {
    (void)state;
    static const char *const whens[] = {"create", "start"};
    for (int i = 0; i < 2; i++) {
        char body[1024], name[32];
        snprintf(body, sizeof body,
                 "[transport.console]\nplugin = console\n"
                 "[backend.bad]\nplugin = " PD "/backend_undeclared.so\nwhen = %s\n"
                 "[persona.p]\nbackend = bad\nchats = *\n",
                 whens[i]);
        snprintf(name, sizeof name, "undeclared_%s", whens[i]);
        char *m = manifest(name, body);
        rt_proc *p = rt_start(m, NULL, NULL);
        int rc = rt_wait(p, 20000);
        const char *err = rt_stderr(p);
        if (rc != 78) fprintf(stderr, "%s: rc=%d stderr=%s\n", name, rc, err);
        assert_int_equal(rc, 78);
        assert_non_null(strstr(err, "[backend.bad]"));
        assert_non_null(strstr(err, "plugin 'undeclared' reads its configuration wrongly"));
        assert_non_null(strstr(err, "\"undeclared_key\"): the key is not declared"));
        assert_string_equal(rt_stdout(p), "");
        rt_free(p);
        free(m);
    }
    /* The same plugin reading only what it declared starts. */
    console_answers("undeclared_never",
                    "[transport.console]\nplugin = console\n"
                    "[backend.bad]\nplugin = " PD "/backend_undeclared.so\nwhen = never\n"
                    "[persona.p]\nbackend = bad\nchats = *\n",
                    "ok\n", "ok\n");
}

/* Each run pairs a serial plugin with a plain one: the serial side never
 * overlaps, the plain side does (so the probe can see overlap at all). */
static void serial_never_overlaps(void **state) {
    (void)state;
    char *out =
        run_probe("serial_backend", "[transport.probe]\nplugin = " PD "/transport_probe.so\n"
                                    "[backend.probe]\nplugin = " PD "/backend_probe_serial.so\n"
                                    "[persona.p]\nbackend = probe\nchats = *\n");
    assert_int_equal(value_of(out, "backend probe_serial max_handle_overlap="), 1);
    assert_true(value_of(out, "transport probe max_send_overlap=") > 1);
    assert_int_equal(rt_count(out, "send update="), 16);
    free(out);
    out = run_probe("serial_transport",
                    "[transport.probe]\nplugin = " PD "/transport_probe_serial.so\n"
                    "[backend.probe]\nplugin = " PD "/backend_probe.so\n"
                    "[persona.p]\nbackend = probe\nchats = *\n");
    assert_int_equal(value_of(out, "transport probe_serial max_send_overlap="), 1);
    assert_true(value_of(out, "backend probe max_handle_overlap=") > 1);
    assert_int_equal(rt_count(out, "send update="), 16);
    free(out);
}

/* Invalid UTF-8 and NUL bytes from a transport reach the backend valid;
 * the backend's invalid reply reaches the transport valid; every request
 * names its transport and every reply its update. */
static void hostile_text_arrives_valid(void **state) {
    (void)state;
    char *out = run_probe("hostile", "[transport.tg]\nplugin = " PD "/transport_probe.so\n"
                                     "hostile = true\nmessages = 6\nchats = 3\nhold_ms = 0\n"
                                     "[backend.probe]\nplugin = " PD "/backend_probe.so\n"
                                     "bad_reply = true\nhold_ms = 0\n"
                                     "[persona.p]\nbackend = probe\nchats = *\n");
    assert_int_equal(rt_count(out, "send update="), 6);
    assert_int_equal(rt_count(out, "valid=1 answers=1"), 6);
    assert_int_equal(rt_count(out, "rq transport=tg valid=1"), 6);
    assert_int_equal(value_of(out, " bad="), 0);
    /* One U+FFFD per ill-formed part, the NUL included. */
    assert_non_null(strstr(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz"));
    free(out);
}

/* Attachments in: copied and handed over; one without data and url is
 * refused at submit(), and so is a message past max_attachments or
 * max_attachment_bytes. Attachments out: reply_attach is bounded by the
 * same limits. */
static void attachment_limits(void **state) {
    (void)state;
    char *out = run_probe("attach", "max_attachments = 3\n"
                                    "[transport.tg]\nplugin = " PD "/transport_probe.so\n"
                                    "messages = 3\nchats = 1\nfiles = 2\nbroken_file = true\n"
                                    "hold_ms = 0\n"
                                    "[backend.probe]\nplugin = " PD "/backend_probe.so\n"
                                    "reply_files = 4\nhold_ms = 0\n"
                                    "[persona.p]\nbackend = probe\nchats = *\n");
    /* The first message (two files and a broken one) is refused whole. */
    assert_non_null(strstr(out, "submit update=1 status=-5"));
    assert_non_null(strstr(last_err, "update 1 refused: an attachment has neither data nor url"));
    assert_int_equal(rt_count(out, "send update="), 2);
    assert_int_equal(rt_count(out, "natt=2 [a.txt text/plain 3] [a.txt text/plain 3]"), 2);
    /* Three of the four reply files fit; the fourth is RD_E_FULL (-6). */
    assert_int_equal(rt_count(out, "attach=0,0,0,-6"), 2);
    assert_int_equal(rt_count(out, "natt=3 text=rq"), 2);
    free(out);
    /* Two files of 3 bytes against a limit of one file, then of 5 bytes. */
    static const char *const limits[][2] = {
        {"max_attachments = 1", "more than [router] max_attachments = 1"},
        {"max_attachment_bytes = 5", "larger than [router] max_attachment_bytes = 5"}};
    for (size_t i = 0; i < 2; i++) {
        char body[1024], name[32];
        snprintf(body, sizeof body,
                 "%s\n[transport.tg]\nplugin = " PD "/transport_probe.so\n"
                 "messages = 1\nchats = 1\nfiles = 2\nhold_ms = 0\n"
                 "[backend.probe]\nplugin = " PD "/backend_probe.so\n"
                 "[persona.p]\nbackend = probe\nchats = *\n",
                 limits[i][0]);
        snprintf(name, sizeof name, "attach_limit_%zu", i);
        out = run_probe(name, body);
        assert_non_null(strstr(out, "submit update=1 status=-5"));
        assert_non_null(strstr(last_err, limits[i][1]));
        free(out);
    }
}

/* Through the mock and the console: a file in, the same file back, the
 * mock's choices shown, and a pick coming back as a choice. */
static void attachments_and_choices_round_trip(void **state) {
    (void)state;
    char *f = rt_write_file(fx->dir, "note.txt", "hello file");
    char *m = manifest("round_trip", "[transport.console]\nplugin = console\n"
                                     "[backend.mock]\nplugin = mock\nattachments = echo\n"
                                     "choices = yes, no\n"
                                     "[persona.p]\nbackend = mock\nchats = *\n");
    rt_proc *p = rt_start(m, NULL, NULL);
    char line[512];
    snprintf(line, sizeof line, "see <file:%s>\n", f);
    rt_write(p, line);
    assert_true(rt_wait_stdout(p, "[choices: 1) yes 2) no]\n", 20000));
    rt_write(p, "#2\n");
    assert_true(rt_wait_stdout(p, "echo: picked: no\n", 20000));
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "echo: see \n"
                                      "[file: note.txt (text/plain, 10 bytes)]\n"
                                      "[choices: 1) yes 2) no]\n"
                                      "echo: picked: no\n"
                                      "[choices: 1) yes 2) no]\n");
    rt_free(p);
    free(m);
    free(f);
}

/* A script line offers its own choices; a pick goes through the script. */
static void script_choices(void **state) {
    (void)state;
    char *script = rt_write_file(fx->dir, "shop.txt",
                                 "^order => Which size? {choices: small | medium|large}\n"
                                 "^(small|medium|large)$ => A {text} one.\n");
    char body[1024];
    snprintf(body, sizeof body,
             "[transport.console]\nplugin = console\n"
             "[backend.mock]\nplugin = mock\nmode = script\nscript = %s\n"
             "[persona.p]\nbackend = mock\nchats = *\n",
             script);
    char *m = manifest("script_choices", body);
    rt_proc *p = rt_start(m, NULL, NULL);
    rt_write(p, "order\n");
    assert_true(rt_wait_stdout(p, "[choices: 1) small 2) medium 3) large]\n", 20000));
    rt_write(p, "#3\n");
    rt_close_stdin(p);
    assert_int_equal(rt_wait(p, 20000), 0);
    assert_string_equal(rt_stdout(p), "Which size?\n"
                                      "[choices: 1) small 2) medium 3) large]\n"
                                      "A large one.\n");
    rt_free(p);
    free(m);
    free(script);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(old_layout_loads),
        cmocka_unit_test(undeclared_key_fails_start),
        cmocka_unit_test(serial_never_overlaps),
        cmocka_unit_test(hostile_text_arrives_valid),
        cmocka_unit_test(attachment_limits),
        cmocka_unit_test(attachments_and_choices_round_trip),
        cmocka_unit_test(script_choices),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
