/* The host's config getters and cfg_bind on the real schema code: what
 * plugin.h promises for enums, durations, lists, undeclared keys and
 * getters of the wrong type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const modes[] = {"fast", "slow", "auto", NULL};

typedef struct {
    int mode;
    int64_t wait_ms;
    const char *const *tags;
} conf;

static const rd_option opts[] = {
    {"name", RD_OPT_STRING, 0, "n", "a string", 0, 0, NULL, 0, 0},
    {"mode", RD_OPT_ENUM, 0, "slow", "an enum", 0, 0, modes, RD_BIND(conf, mode)},
    {"other", RD_OPT_ENUM, 0, NULL, "an enum without default", 0, 0, modes, 0, 0},
    {"wait", RD_OPT_DURATION, 0, "1m", "a duration", 0, 0, NULL, RD_BIND(conf, wait_ms)},
    {"count", RD_OPT_INT, 0, "3", "an int", 0, 0, NULL, 0, 0},
    {"tags", RD_OPT_LIST, 0, "a, b, c", "a list", 0, 0, NULL, RD_BIND(conf, tags)},
    {"none", RD_OPT_LIST, 0, NULL, "an absent list", 0, 0, NULL, 0, 0},
    {"url", RD_OPT_URL, 0, NULL, "a url", 0, 0, NULL, 0, 0},
    {0},
};

static manifest *mf;
static rd_ctx *ctx;

static int setup(void **state) {
    (void)state;
    char err[512];
    mf = manifest_parse_string("t.ini", "[backend.x]\nwait = 1500ms\nurl = http://h.example/\n",
                               err, sizeof err);
    assert_non_null(mf);
    ctx = ctx_new(RD_KIND_BACKEND, "backend.x", "x");
    if (schema_apply(mf, &mf->sec[0], opts, NULL, &ctx->cfg, err, sizeof err)) fail_msg("%s", err);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ctx_free(ctx);
    manifest_free(mf);
    return 0;
}

static void enum_and_duration(void **state) {
    (void)state;
    assert_int_equal(host_api.cfg_int(ctx, "mode"), 1);
    assert_string_equal(host_api.cfg_str(ctx, "mode"), "slow");
    assert_int_equal(host_api.cfg_int(ctx, "other"), -1);
    assert_null(host_api.cfg_str(ctx, "other"));
    assert_int_equal(host_api.cfg_int(ctx, "wait"), 1500);
    assert_string_equal(host_api.cfg_str(ctx, "url"), "http://h.example/");
    assert_false(atomic_load(&ctx->cfg_bug));
}

static void bind_through_host(void **state) {
    (void)state;
    conf c;
    rd_error e = {0};
    assert_int_equal(host_api.cfg_bind(ctx, &c, sizeof c, &e), RD_OK);
    assert_int_equal(c.mode, 1);
    assert_int_equal(c.wait_ms, 1500);
    assert_string_equal(c.tags[2], "c");
    assert_int_equal(host_api.cfg_bind(ctx, &c, sizeof c - 1, &e), RD_E_CONFIG);
    assert_int_equal(e.code, RD_E_CONFIG);
    assert_non_null(strstr(e.msg, "option 'tags'"));
}

static void undeclared_key_is_a_bug(void **state) {
    (void)state;
    assert_null(host_api.cfg_str(ctx, "nmae"));
    assert_true(atomic_load(&ctx->cfg_bug));
    assert_non_null(strstr(ctx->cfg_bug_msg, "cfg_str(\"nmae\")"));
    assert_non_null(strstr(ctx->cfg_bug_msg, "not declared"));
    /* The first misuse is the one reported. */
    assert_int_equal(host_api.cfg_int(ctx, "nope"), 0);
    assert_non_null(strstr(ctx->cfg_bug_msg, "nmae"));
}

static void wrong_getter_is_a_bug(void **state) {
    (void)state;
    const char *const *l = host_api.cfg_list(ctx, "name");
    assert_non_null(l);
    assert_null(l[0]);
    assert_true(atomic_load(&ctx->cfg_bug));
    assert_non_null(strstr(ctx->cfg_bug_msg, "cfg_list(\"name\"): the key is a string option"));
}

static void each_wrong_getter(void **state) {
    (void)state;
    assert_int_equal(host_api.cfg_bool(ctx, "count"), 0);
    assert_true(atomic_exchange(&ctx->cfg_bug, 0));
    assert_true(host_api.cfg_double(ctx, "tags") == 0);
    assert_true(atomic_exchange(&ctx->cfg_bug, 0));
    assert_null(host_api.cfg_str(ctx, "count"));
    assert_true(atomic_exchange(&ctx->cfg_bug, 0));
    assert_int_equal(host_api.cfg_int(ctx, "name"), 0);
    assert_true(atomic_exchange(&ctx->cfg_bug, 0));
    assert_int_equal(host_api.cfg_isset(ctx, "zzz"), 0);
    assert_true(atomic_exchange(&ctx->cfg_bug, 0));
    /* The right ones do not complain. */
    assert_int_equal(host_api.cfg_isset(ctx, "wait"), 1);
    assert_int_equal(host_api.cfg_isset(ctx, "count"), 0);
    assert_true(host_api.cfg_double(ctx, "count") == 3);
    assert_false(atomic_load(&ctx->cfg_bug));
}

/* cfg_list from many threads at once returns the same precomputed array
 * (no lazy cache written on first use). */
static void *list_reader(void *arg) {
    const char *const **out = arg;
    for (int i = 0; i < 1000; i++) {
        const char *const *l = host_api.cfg_list(ctx, "tags");
        if (!*out) *out = l;
        if (l != *out || strcmp(l[1], "b")) return (void *)1;
        if (host_api.cfg_list(ctx, "none")[0]) return (void *)1;
    }
    return NULL;
}

static void lists_are_thread_safe(void **state) {
    (void)state;
    pthread_t th[4];
    const char *const *seen[4] = {0};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, list_reader, &seen[i]);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    assert_ptr_equal(seen[0], seen[3]);
    assert_ptr_equal(seen[0], (const char *const *)cfg_find(&ctx->cfg, "tags")->list);
    assert_false(atomic_load(&ctx->cfg_bug));
}

/* reply_choices keeps at most RD_CHOICES_MAX choices of 1 to
 * RD_CHOICE_MAX_BYTES bytes, as valid UTF-8. */
static void choices_bounded(void **state) {
    (void)state;
    char long_one[RD_CHOICE_MAX_BYTES + 2];
    memset(long_one, 'x', sizeof long_one - 1);
    long_one[sizeof long_one - 1] = 0;
    const char *in[16] = {"a", "", long_one, "b\xff"};
    char names[12][4];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        in[4 + i] = i < 11 ? names[i] : NULL;
    }
    char **c = choices_copy(in, "test");
    assert_non_null(c);
    assert_string_equal(c[0], "a");
    assert_string_equal(c[1], "b\xef\xbf\xbd");
    assert_string_equal(c[2], "c0");
    assert_string_equal(c[9], "c7");
    assert_null(c[RD_CHOICES_MAX]);
    choices_free(c);
    const char *none[] = {"", NULL};
    assert_null(choices_copy(none, "test"));
    assert_null(choices_copy(NULL, "test"));
}

/* Attachments are deep copies; members beyond an element's size read as
 * absent; the limits hold for the whole list. */
static void attachments_copied_and_bounded(void **state) {
    (void)state;
    R.max_attachments = 3;
    R.max_attachment_bytes = 10;
    char data[8] = "1234567", name[] = "n.txt";
    rd_attachment a = {
        .size = sizeof a, .mime = "text/plain", .name = name, .data = data, .len = 7};
    att_list l = {0};
    char why[160];
    assert_int_equal(att_add(&l, &a, why, sizeof why), RD_OK);
    data[0] = 'X', name[0] = 'X';
    assert_memory_equal(l.v[0]->data, "1234567", 7);
    assert_string_equal(l.v[0]->name, "n.txt");
    assert_null(l.v[0]->kind);
    assert_null(l.v[0]->url);
    /* 7 + 7 bytes > 10 */
    assert_int_equal(att_add(&l, &a, why, sizeof why), RD_E_FULL);
    assert_non_null(strstr(why, "max_attachment_bytes = 10"));
    rd_attachment u = {.size = sizeof u, .url = "https://files.example/a"};
    assert_int_equal(att_add(&l, &u, why, sizeof why), RD_OK);
    assert_int_equal(att_add(&l, &u, why, sizeof why), RD_OK);
    assert_int_equal(att_add(&l, &u, why, sizeof why), RD_E_FULL);
    assert_non_null(strstr(why, "max_attachments = 3"));
    assert_int_equal(l.n, 3);
    assert_null(l.v[3]);
    att_free(&l);
    /* A sender whose struct ends before data and url: neither is there. */
    rd_attachment old = u;
    old.size = (uint32_t)offsetof(rd_attachment, data);
    assert_int_equal(att_add(&l, &old, why, sizeof why), RD_E_FATAL);
    assert_non_null(strstr(why, "neither data nor url"));
    assert_int_equal(l.n, 0);
    att_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(enum_and_duration, setup, teardown),
        cmocka_unit_test_setup_teardown(bind_through_host, setup, teardown),
        cmocka_unit_test_setup_teardown(undeclared_key_is_a_bug, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_getter_is_a_bug, setup, teardown),
        cmocka_unit_test_setup_teardown(each_wrong_getter, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_are_thread_safe, setup, teardown),
        cmocka_unit_test(choices_bounded),
        cmocka_unit_test(attachments_copied_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
