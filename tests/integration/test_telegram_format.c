/*
 * The real routerd with the telegram transport against the fake Bot API
 * server: an agent's Markdown reply, the router's failure notice and the
 * /persona listing all arrive as text + entities the fake accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_telegram.h"
#include "harness.h"
#include "tg_entity_check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "616161:AAformatSecret-part_z"

static rt_fix *fx;
static ftg *F;
static const char *const env[] = {"TG_TOKEN=" TOKEN, NULL};

static rt_fix_spec fix = {.fx = &fx, .tg_token = TOKEN, .tg = &F};

static void test_formatted_end_to_end(void **state) {
    (void)state;
    rt_fix_manifest(fx,
                    "rate_limit_per_minute = 0\ndrain_timeout_s = 10\n"
                    "failure_notice = \"**Sorry**, try `/new`.\"\n"
                    "[transport.tg]\nplugin = telegram\ntoken = ${TG_TOKEN}\napi_base = %s\n"
                    "throttle = off\ntyping = false\ntimeout = 1\nlink_preview = off\n"
                    "[backend.echo]\nplugin = mock\nprefix = \"echo: \"\n"
                    "[backend.broken]\nplugin = mock\nfail_fatal = 1\n"
                    "[persona.p]\nbackend = echo\nchats = 15\nselectable = true\n"
                    "description = \"the *echo* agent\"\n"
                    "[persona.b]\nbackend = broken\nchats = 16\n",
                    ftg_base(F));
    rt_proc *p = rt_fix_start(fx, env, 15000);
    assert_non_null(p);

    /* An agent reply. */
    ftg_add_text(F, 15, "say **hi** with `code` and [a link](https://example.org/x)");
    ftg_rec *r = ftg_wait_sent(F, 15, 0, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "echo: say hi with code and a link");
    assert_string_equal(r->entities, "[{\"type\":\"bold\",\"offset\":10,\"length\":2},"
                                     "{\"type\":\"code\",\"offset\":18,\"length\":4},"
                                     "{\"type\":\"text_link\",\"offset\":27,\"length\":6,"
                                     "\"url\":\"https://example.org/x\"}]");
    assert_null(r->parse_mode);
    assert_true(r->link_preview_disabled);
    ftg_recs_free(r, 1);

    /* The router's failure notice. */
    ftg_add_text(F, 16, "anything");
    r = ftg_wait_sent(F, 16, 0, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "Sorry, try /new.");
    assert_string_equal(r->entities, "[{\"type\":\"bold\",\"offset\":0,\"length\":5},"
                                     "{\"type\":\"code\",\"offset\":11,\"length\":4}]");
    ftg_recs_free(r, 1);

    /* The /persona listing: a list of personas, the description's
     * Markdown rendered. */
    ftg_add_text(F, 15, "/persona");
    r = ftg_wait_sent(F, 15, 1, 10000);
    assert_non_null(r);
    assert_string_equal(r->text, "Current persona: p\nAvailable:\n\n"
                                 "\xE2\x80\xA2 p: the echo agent (current)\n\n"
                                 "Switch with /persona NAME.");
    assert_string_equal(r->entities, "[{\"type\":\"italic\",\"offset\":40,\"length\":4}]");
    assert_null(tgc_check(r->text, strlen(r->text), r->entities, 4096));
    ftg_recs_free(r, 1);

    assert_int_equal(rt_fix_stop(fx, 20000), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        RT_FIX_TEST(test_formatted_end_to_end, &fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
