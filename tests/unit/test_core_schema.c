/* schema_apply: typed values, defaults, required keys, unknown keys and
 * secret registration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core.h"
#include "option_v11.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle)); \
    } while (0)

static const char *const modes[] = {"fast", "slow", "auto", NULL};

static const rd_option opts[] = {
    {"name", RD_OPT_STRING, RD_OPT_REQUIRED, NULL, "who we are", 0, 0, NULL, 0, 0},
    {"count", RD_OPT_INT, 0, "5", "how many", 1, 10, NULL, 0, 0},
    {"offset", RD_OPT_INT, 0, NULL, "unbounded", 0, 0, NULL, 0, 0},
    {"flag", RD_OPT_BOOL, 0, "false", "a switch", 0, 0, NULL, 0, 0},
    {"ratio", RD_OPT_DOUBLE, 0, "0.5", "a share", 0, 1, NULL, 0, 0},
    {"mode", RD_OPT_ENUM, 0, "fast", "speed", 0, 0, modes, 0, 0},
    {"tags", RD_OPT_LIST, 0, NULL, "labels", 0, 0, NULL, 0, 0},
    {"token", RD_OPT_STRING, RD_OPT_SECRET, NULL, "api token", 0, 0, NULL, 0, 0},
    {0},
};

static const char *const reserved[] = {"plugin", "allowlist", NULL};

static char err[1024];
static manifest *mf;
static cfg_set cs;

static int teardown(void **state) {
    (void)state;
    cfg_free(&cs);
    manifest_free(mf);
    mf = NULL;
    return 0;
}

/* Parses "[backend.x]\n" + body and applies the schema; returns the rc. */
static int apply_with(const char *body, const rd_option *o, const char *const *res) {
    cfg_free(&cs);
    manifest_free(mf);
    char *text = xasprintf("[backend.x]\n%s", body);
    mf = manifest_parse_string("t.ini", text, err, sizeof err);
    free(text);
    if (!mf) fail_msg("manifest refused: %s", err);
    err[0] = 0;
    return schema_apply(mf, &mf->sec[0], o, res, &cs, err, sizeof err);
}

static int apply(const char *body) {
    return apply_with(body, opts, reserved);
}

static void apply_ok(const char *body) {
    if (apply(body)) fail_msg("refused: %s", err);
}

static const char *apply_err(const char *body) {
    if (!apply(body)) fail_msg("accepted:\n%s", body);
    assert_true(err[0] != 0);
    return err;
}

static void all_types(void **state) {
    (void)state;
    apply_ok("name = helper\n"
             "count = 7\n"
             "offset = -123456789012\n"
             "flag = yes\n"
             "ratio = 0.25\n"
             "mode = slow\n"
             "tags = a, b ,, c ,\n");
    assert_int_equal(cs.n, 8);
    cfg_val *v = cfg_find(&cs, "name");
    assert_string_equal(v->str, "helper");
    assert_true(v->set && v->have);
    v = cfg_find(&cs, "count");
    assert_int_equal(v->i, 7);
    assert_true(v->d == 7.0);
    assert_int_equal(cfg_find(&cs, "offset")->i, -123456789012LL);
    assert_int_equal(cfg_find(&cs, "flag")->i, 1);
    assert_true(cfg_find(&cs, "ratio")->d == 0.25);
    v = cfg_find(&cs, "mode");
    assert_string_equal(v->str, "slow");
    assert_int_equal(v->i, 1); /* index in choices */
    char **l = cfg_find(&cs, "tags")->list;
    assert_non_null(l);
    assert_string_equal(l[0], "a");
    assert_string_equal(l[1], "b");
    assert_string_equal(l[2], "c");
    assert_null(l[3]);
    assert_null(cfg_find(&cs, "nope"));
}

static void defaults_set_and_have(void **state) {
    (void)state;
    apply_ok("name = n\n");
    cfg_val *v = cfg_find(&cs, "count");
    assert_false(v->set);
    assert_true(v->have);
    assert_int_equal(v->i, 5);
    assert_string_equal(v->str, "5");
    v = cfg_find(&cs, "ratio");
    assert_true(v->d == 0.5);
    assert_false(v->set);
    v = cfg_find(&cs, "mode");
    assert_string_equal(v->str, "fast");
    assert_int_equal(v->i, 0);
    assert_false(cfg_find(&cs, "flag")->i);
    /* No default and not written: neither set nor have. */
    v = cfg_find(&cs, "offset");
    assert_false(v->set);
    assert_false(v->have);
    assert_null(v->str);
    assert_false(cfg_find(&cs, "tags")->have);
    /* Writing the default value still counts as set. */
    apply_ok("name = n\ncount = 5\n");
    assert_true(cfg_find(&cs, "count")->set);
    /* Keys are marked used so the caller can find the leftovers. */
    assert_true(section_get(&mf->sec[0], "count")->used);
}

static void int_bounds(void **state) {
    (void)state;
    apply_ok("name = n\ncount = 1\n");
    assert_int_equal(cfg_find(&cs, "count")->i, 1);
    apply_ok("name = n\ncount = 10\n");
    assert_int_equal(cfg_find(&cs, "count")->i, 10);
    const char *e = apply_err("name = n\n\ncount = 11\n");
    assert_string_equal(e, "t.ini:4: [backend.x] count: 11 is out of range [1, 10]");
    e = apply_err("name = n\ncount = 0\n");
    assert_contains(e, "0 is out of range [1, 10]");
    const char *bad[] = {"abc", "1.5", "7x", "1e3", "99999999999999999999", "\"\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[128];
        snprintf(body, sizeof body, "name = n\ncount = %s\n", bad[i]);
        e = apply_err(body);
        assert_contains(e, "t.ini:3: [backend.x] count: expected an integer");
    }
    /* min == max == 0 means unbounded. */
    apply_ok("name = n\noffset = 9223372036854775807\n");
    assert_int_equal(cfg_find(&cs, "offset")->i, INT64_MAX);
}

static void bool_words(void **state) {
    (void)state;
    const char *yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "ON"};
    const char *no[] = {"false", "no", "off", "0", "FALSE", "No", "Off"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        char body[64];
        snprintf(body, sizeof body, "name = n\nflag = %s\n", yes[i]);
        apply_ok(body);
        assert_int_equal(cfg_find(&cs, "flag")->i, 1);
        snprintf(body, sizeof body, "name = n\nflag = %s\n", no[i]);
        apply_ok(body);
        assert_int_equal(cfg_find(&cs, "flag")->i, 0);
        assert_true(cfg_find(&cs, "flag")->set);
    }
    const char *e = apply_err("name = n\nflag = maybe\n");
    assert_string_equal(e, "t.ini:3: [backend.x] flag: expected true or false");
    apply_err("name = n\nflag = 2\n");
    apply_err("name = n\nflag = y\n");
}

static void double_values(void **state) {
    (void)state;
    apply_ok("name = n\nratio = 1\n");
    assert_true(cfg_find(&cs, "ratio")->d == 1.0);
    apply_ok("name = n\nratio = 1e-3\n");
    assert_true(cfg_find(&cs, "ratio")->d == 1e-3);
    const char *e = apply_err("name = n\nratio = 1.5\n");
    assert_contains(e, "t.ini:3: [backend.x] ratio: 1.5 is out of range [0, 1]");
    e = apply_err("name = n\nratio = -0.1\n");
    assert_contains(e, "out of range");
    const char *bad[] = {"x", "0.5abc", "nan", "inf", "-inf", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[64];
        snprintf(body, sizeof body, "name = n\nratio = %s\n", bad[i]);
        e = apply_err(body);
        assert_contains(e, "ratio: expected a number");
    }
}

static void enum_values(void **state) {
    (void)state;
    apply_ok("name = n\nmode = auto\n");
    assert_int_equal(cfg_find(&cs, "mode")->i, 2);
    const char *e = apply_err("name = n\nmode = sloww\n");
    assert_string_equal(e, "t.ini:3: [backend.x] mode: 'sloww' is not one of: fast slow auto (did "
                           "you mean 'slow'?)");
    e = apply_err("name = n\nmode = Fast\n"); /* choices are case-sensitive */
    assert_contains(e, "did you mean 'fast'");
    e = apply_err("name = n\nmode = xxxxxxxxxxxx\n");
    assert_contains(e, "'xxxxxxxxxxxx' is not one of: fast slow auto");
    assert_null(strstr(e, "did you mean"));
}

static void list_values(void **state) {
    (void)state;
    apply_ok("name = n\ntags = one\n");
    char **l = cfg_find(&cs, "tags")->list;
    assert_string_equal(l[0], "one");
    assert_null(l[1]);
    apply_ok("name = n\ntags = \" , ,\"\n");
    l = cfg_find(&cs, "tags")->list;
    assert_non_null(l);
    assert_null(l[0]);
    apply_ok("name = n\ntags = 1,2,3,4,5,6,7,8,9,10\n");
    l = cfg_find(&cs, "tags")->list;
    for (int i = 0; i < 10; i++) {
        char want[4];
        snprintf(want, sizeof want, "%d", i + 1);
        assert_string_equal(l[i], want);
    }
    assert_null(l[10]);
}

static void required_missing(void **state) {
    (void)state;
    /* The message points at the section header since the key is absent. */
    const char *e = apply_err("count = 3\n");
    assert_string_equal(e, "t.ini:1: [backend.x] missing required key 'name' (who we are)");
    /* Without help text the type is named instead. */
    static const rd_option o[] = {
        {"port", RD_OPT_INT, RD_OPT_REQUIRED, NULL, NULL, 0, 0, NULL, 0, 0}, {0}};
    assert_int_equal(apply_with("", o, NULL), -1);
    assert_string_equal(err, "t.ini:1: [backend.x] missing required key 'port' (int)");
}

/* plugin.h: RD_OPT_REQUIRED "must be present (a default does not count)". */
static void required_ignores_default(void **state) {
    (void)state;
    static const rd_option o[] = {
        {"port", RD_OPT_INT, RD_OPT_REQUIRED, "80", "port", 0, 0, NULL, 0, 0}, {0}};
    assert_int_equal(apply_with("", o, NULL), -1);
    assert_contains(err, "missing required key 'port'");
    assert_int_equal(apply_with("port = 81\n", o, NULL), 0);
    assert_int_equal(cfg_find(&cs, "port")->i, 81);
}

static void required_but_empty(void **state) {
    (void)state;
    const char *e = apply_err("count = 3\nname = \"\"\n");
    assert_string_equal(e, "t.ini:3: [backend.x] name: required key is empty");
    setenv("RT_SCHEMA_EMPTY", "", 1);
    e = apply_err("name = ${RT_SCHEMA_EMPTY}\n");
    assert_contains(e, "t.ini:2: [backend.x] name: required key is empty");
    assert_contains(e, "check the environment");
    unsetenv("RT_SCHEMA_EMPTY");
}

static void unknown_keys(void **state) {
    (void)state;
    const char *e = apply_err("name = n\n\nnane = m\n");
    assert_string_equal(e, "t.ini:4: [backend.x] unknown key 'nane' (did you mean 'name'?)");
    e = apply_err("name = n\ncuont = 3\n");
    assert_contains(e, "did you mean 'count'");
    /* Reserved keys are candidates too. */
    e = apply_err("name = n\nplugn = mock\n");
    assert_contains(e, "unknown key 'plugn' (did you mean 'plugin'?)");
    /* Nothing close: no suggestion. */
    e = apply_err("name = n\nzzzzzzzzzzzz = 1\n");
    assert_string_equal(e, "t.ini:3: [backend.x] unknown key 'zzzzzzzzzzzz'");
}

static void reserved_keys_accepted(void **state) {
    (void)state;
    apply_ok("plugin = mock\nallowlist = 1, 2\nname = n\n");
    assert_string_equal(cfg_find(&cs, "name")->str, "n");
    /* Without the reserved list the same keys are unknown. */
    assert_int_equal(apply_with("plugin = mock\nname = n\n", opts, NULL), -1);
    assert_contains(err, "unknown key 'plugin'");
}

static void no_options(void **state) {
    (void)state;
    assert_int_equal(apply_with("plugin = mock\n", NULL, reserved), 0);
    assert_int_equal(cs.n, 0);
    assert_int_equal(apply_with("extra = 1\n", NULL, reserved), -1);
    assert_contains(err, "unknown key 'extra'");
}

static void bad_default_is_reported(void **state) {
    (void)state;
    static const rd_option o[] = {{"n", RD_OPT_INT, 0, "ten", "a number", 0, 0, NULL, 0, 0}, {0}};
    assert_int_equal(apply_with("", o, NULL), -1);
    assert_contains(err, "t.ini:1: [backend.x] n: expected an integer");
    assert_contains(err, "default");
}

static void secrets_are_registered(void **state) {
    (void)state;
    apply_ok("name = n\ntoken = s3cr3t-Token-Value\n");
    char out[256];
    redact("GET /bots3cr3t-Token-Value/getMe failed", out, sizeof out);
    assert_string_equal(out, "GET /bot***/getMe failed");
    /* Non-secret values are not masked. */
    redact("name is n, count 5", out, sizeof out);
    assert_string_equal(out, "name is n, count 5");
}

static void suggestions(void **state) {
    (void)state;
    const char *const keys[] = {"timeout_s", "token", "base_url", "workers"};
    assert_string_equal(suggest("tokn", keys, 4), "token");
    assert_string_equal(suggest("TOKEN", keys, 4), "token");
    assert_string_equal(suggest("base_ulr", keys, 4), "base_url");
    assert_string_equal(suggest("time", keys, 4), "timeout_s");  /* prefix */
    assert_string_equal(suggest("wrokers", keys, 4), "workers"); /* a swap is one edit */
    assert_null(suggest("xyz", keys, 4));
    assert_null(suggest("anything", keys, 0));
}

/* Runs fn in a child so a memory error fails only this test. */
static void in_child(void (*fn)(void)) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("child died (status 0x%x): memory error in schema_apply", st);
}

static void many_reserved_child(void) {
    static const char *const many[] = {"r1", "r2", "r3",  "r4",  "r5",  "r6", "r7",
                                       "r8", "r9", "r10", "r11", "r12", NULL};
    static const rd_option o[] = {{"key", RD_OPT_STRING, 0, NULL, NULL, 0, 0, NULL, 0, 0}, {0}};
    char e[256];
    manifest *m = manifest_parse_string("t.ini", "[backend.x]\nr12 = 1\nr11x = 2\n", e, sizeof e);
    cfg_set c = {0};
    int rc = schema_apply(m, &m->sec[0], o, many, &c, e, sizeof e);
    int ok = rc == -1 && strstr(e, "unknown key 'r11x' (did you mean 'r11'?)");
    cfg_free(&c);
    manifest_free(m);
    _exit(ok ? 0 : 3);
}

/* The candidate array for suggestions has room for only 8 reserved keys. */
static void many_reserved_keys(void **state) {
    (void)state;
    in_child(many_reserved_child);
}

/* A plugin's config struct covering every bound type. */
typedef struct {
    const char *name;
    int64_t count;
    int flag;
    double ratio;
    int mode;
    const char *const *tags;
    int64_t wait_ms;
    const char *url;
    int unset_mode;
} bconf;

static const rd_option bound[] = {
    {"name", RD_OPT_STRING, 0, NULL, "who", 0, 0, NULL, RD_BIND(bconf, name)},
    {"count", RD_OPT_INT, 0, "5", "how many", 1, 10, NULL, RD_BIND(bconf, count)},
    {"flag", RD_OPT_BOOL, 0, "false", "a switch", 0, 0, NULL, RD_BIND(bconf, flag)},
    {"ratio", RD_OPT_DOUBLE, 0, "0.5", "a share", 0, 1, NULL, RD_BIND(bconf, ratio)},
    {"mode", RD_OPT_ENUM, 0, "fast", "speed", 0, 0, modes, RD_BIND(bconf, mode)},
    {"tags", RD_OPT_LIST, 0, NULL, "labels", 0, 0, NULL, RD_BIND(bconf, tags)},
    {"wait", RD_OPT_DURATION, 0, "30", "a pause", 0, 3600, NULL, RD_BIND(bconf, wait_ms)},
    {"url", RD_OPT_URL, 0, NULL, "where", 0, 0, NULL, RD_BIND(bconf, url)},
    {"other_mode", RD_OPT_ENUM, 0, NULL, "no default", 0, 0, modes, RD_BIND(bconf, unset_mode)},
    {"loose", RD_OPT_STRING, 0, "x", "not bound", 0, 0, NULL, 0, 0},
    {0},
};

static void bind_every_type(void **state) {
    (void)state;
    if (apply_with("name = n\nflag = on\nmode = auto\nwait = 250ms\nurl = https://a.example/x\n",
                   bound, NULL))
        fail_msg("refused: %s", err);
    bconf c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(cfg_bind_set(&cs, &c, sizeof c, err, sizeof err), 0);
    assert_string_equal(c.name, "n");
    assert_int_equal(c.count, 5);
    assert_int_equal(c.flag, 1);
    assert_true(c.ratio == 0.5);
    assert_int_equal(c.mode, 2);
    assert_non_null(c.tags); /* absent list: empty, never NULL */
    assert_null(c.tags[0]);
    assert_int_equal(c.wait_ms, 250);
    assert_string_equal(c.url, "https://a.example/x");
    assert_int_equal(c.unset_mode, -1);
    /* Defaults: a bare number is seconds; the strings are the set's own. */
    if (apply_with("tags = a, b\n", bound, NULL)) fail_msg("refused: %s", err);
    assert_int_equal(cfg_bind_set(&cs, &c, sizeof c, err, sizeof err), 0);
    assert_null(c.name);
    assert_null(c.url);
    assert_int_equal(c.wait_ms, 30000);
    assert_string_equal(c.tags[0], "a");
    assert_string_equal(c.tags[1], "b");
    assert_null(c.tags[2]);
    assert_ptr_equal(c.tags, cfg_find(&cs, "tags")->list);
}

static void bind_outside_conf_refused(void **state) {
    (void)state;
    if (apply_with("name = n\n", bound, NULL)) fail_msg("refused: %s", err);
    bconf c;
    memset(&c, 0x5a, sizeof c);
    size_t short_size = offsetof(bconf, unset_mode); /* the last member does not fit */
    assert_int_equal(cfg_bind_set(&cs, &c, short_size, err, sizeof err), -1);
    assert_contains(err, "option 'other_mode'");
    assert_contains(err, "outside");
    /* Nothing written when one binding is wrong. */
    const char *poison;
    memset(&poison, 0x5a, sizeof poison);
    assert_ptr_equal(c.name, poison);
}

static void bind_wrong_size_refused(void **state) {
    (void)state;
    static const rd_option o[] = {
        {"count", RD_OPT_INT, 0, "5", "how many", 0, 0, NULL, RD_BIND(bconf, flag)}, {0}};
    if (apply_with("", o, NULL)) fail_msg("refused: %s", err);
    bconf c = {0};
    assert_int_equal(cfg_bind_set(&cs, &c, sizeof c, err, sizeof err), -1);
    assert_contains(err, "option 'count'");
    assert_contains(err, "needs 8");
    assert_int_equal(bind_member_size(RD_OPT_LIST), sizeof(char **));
    assert_int_equal(bind_member_size(RD_OPT_ENUM), sizeof(int));
}

/* An option array built with the 1.1 layout (no offset/bind_len) is
 * walked with its own stride and reads as unbound. */
static void old_layout_stride(void **state) {
    (void)state;
    assert_int_equal(sizeof(option_v11), RD_OPTION_SIZE_V1);
    static const option_v11 o[] = {
        {"alpha", RD_OPT_STRING, 0, "a", "first", 0, 0, NULL},
        {"beta", RD_OPT_INT, 0, "2", "second", 0, 9, NULL},
        {"gamma", RD_OPT_ENUM, 0, "slow", "third", 0, 0, modes},
        {0},
    };
    cfg_free(&cs);
    manifest_free(mf);
    mf = manifest_parse_string("t.ini", "[backend.x]\nbeta = 7\n", err, sizeof err);
    assert_non_null(mf);
    assert_int_equal(schema_apply_sized(mf, &mf->sec[0], (const rd_option *)(const void *)o,
                                        sizeof *o, NULL, &cs, err, sizeof err),
                     0);
    assert_int_equal(cs.n, 3);
    assert_string_equal(cfg_find(&cs, "alpha")->str, "a");
    assert_int_equal(cfg_find(&cs, "beta")->i, 7);
    assert_int_equal(cfg_find(&cs, "gamma")->i, 1);
    for (size_t i = 0; i < cs.n; i++)
        assert_int_equal(cs.v[i].opt->bind_len, 0);
    int dummy = 0;
    assert_int_equal(cfg_bind_set(&cs, &dummy, sizeof dummy, err, sizeof err), 0);
    /* The descriptor decides the stride: 1.1 descriptors end before option_size. */
    rd_plugin d = {.size = (uint32_t)offsetof(rd_plugin, option_size), .option_size = 999};
    assert_int_equal(plugin_option_size(&d), RD_OPTION_SIZE_V1);
    d.size = sizeof d;
    assert_int_equal(plugin_option_size(&d), 999);
    d.options = (const rd_option *)(const void *)o;
    d.option_size = sizeof *o;
    assert_string_equal(opt_at(&d, 2)->key, "gamma");
    assert_null(opt_at(&d, 3)->key);
}

static void absent_enum_is_minus_one(void **state) {
    (void)state;
    static const rd_option o[] = {{"m", RD_OPT_ENUM, 0, NULL, "", 0, 0, modes, 0, 0}, {0}};
    if (apply_with("", o, NULL)) fail_msg("refused: %s", err);
    assert_int_equal(cfg_find(&cs, "m")->i, -1);
    assert_false(cfg_find(&cs, "m")->have);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(all_types, teardown),
        cmocka_unit_test_teardown(defaults_set_and_have, teardown),
        cmocka_unit_test_teardown(int_bounds, teardown),
        cmocka_unit_test_teardown(bool_words, teardown),
        cmocka_unit_test_teardown(double_values, teardown),
        cmocka_unit_test_teardown(enum_values, teardown),
        cmocka_unit_test_teardown(list_values, teardown),
        cmocka_unit_test_teardown(required_missing, teardown),
        cmocka_unit_test_teardown(required_ignores_default, teardown),
        cmocka_unit_test_teardown(required_but_empty, teardown),
        cmocka_unit_test_teardown(unknown_keys, teardown),
        cmocka_unit_test_teardown(reserved_keys_accepted, teardown),
        cmocka_unit_test_teardown(no_options, teardown),
        cmocka_unit_test_teardown(bad_default_is_reported, teardown),
        cmocka_unit_test_teardown(secrets_are_registered, teardown),
        cmocka_unit_test(suggestions),
        cmocka_unit_test(many_reserved_keys),
        cmocka_unit_test_teardown(bind_every_type, teardown),
        cmocka_unit_test_teardown(bind_outside_conf_refused, teardown),
        cmocka_unit_test_teardown(bind_wrong_size_refused, teardown),
        cmocka_unit_test_teardown(old_layout_stride, teardown),
        cmocka_unit_test_teardown(absent_enum_is_minus_one, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
