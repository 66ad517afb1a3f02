/* config_build against the built console and mock plugins: a valid
 * manifest, and every cross-section check with its message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "harness.h"
#include "router.h"

#include <stdlib.h>
#include <string.h>

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle)); \
    } while (0)

static char *dir;  /* temp dir of this run */
static char *path; /* the manifest of the current case */
static char err[2048];

static int group_setup(void **state) {
    (void)state;
    dir = rt_tmpdir();
    return dir ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    plugins_unload_all();
    metrics_free_all();
    rt_rmtree(dir);
    free(dir);
    return 0;
}

/* config_build fills the global R; free it and start from zero again. */
static int reset(void **state) {
    (void)state;
    config_free();
    memset(&R, 0, sizeof R);
    free(path);
    path = NULL;
    return 0;
}

/* Writes the manifest (with @DIR@ replaced) and builds it. */
static int build(const char *text) {
    free(path);
    path = NULL;
    char *t = xstrdup(text), *at;
    while ((at = strstr(t, "@DIR@"))) {
        *at = 0;
        char *n = xasprintf("%s%s%s", t, dir, at + 5);
        free(t);
        t = n;
    }
    path = rt_write_file(dir, "routerd.ini", t);
    free(t);
    err[0] = 0;
    return config_build(path, ROUTERD_PLUGIN_DIR, err, sizeof err);
}

static const char *build_err(const char *text) {
    if (build(text) == 0) fail_msg("manifest accepted:\n%s", text);
    assert_true(err[0] != 0);
    return err;
}

/* "path:line:" of the current manifest. */
static const char *at(int line) {
    static char buf[1200];
    snprintf(buf, sizeof buf, "%s:%d:", path, line);
    return buf;
}

#define ROUTER                                                                                     \
    "[router]\n"                                                                                   \
    "env = test\n"                                                                                 \
    "admin_listen = 127.0.0.1:0\n"                                                                 \
    "state_dir = @DIR@/state\n"                                                                    \
    "queue_depth = 64\n"

#define TRANSPORT                                                                                  \
    "\n[transport.main]\n"                                                                         \
    "plugin = console\n"

#define BACKEND                                                                                    \
    "\n[backend.helper]\n"                                                                         \
    "plugin = mock\n"                                                                              \
    "mode = echo\n"                                                                                \
    "prefix = \"echo: \"\n"

#define PERSONA                                                                                    \
    "\n[persona.helper]\n"                                                                         \
    "backend = helper\n"                                                                           \
    "chats = *\n"

static void valid_manifest(void **state) {
    (void)state;
    if (build(ROUTER "chat_hash_key = k3y-for-hashing\n" TRANSPORT
                     "allowlist = 42, 7, -100\n" BACKEND PERSONA
                     "\n[persona.other]\nbackend = helper\nchats = 5\n"
                     "selectable = yes\nchat_rate_limit_per_minute = 3\n"))
        fail_msg("refused: %s", err);
    assert_string_equal(R.env, "test");
    assert_string_equal(R.admin_listen, "127.0.0.1:0");
    assert_int_equal(R.queue_depth, 64);
    assert_int_equal(R.rate_limit, 20);      /* default */
    assert_int_equal(R.drain_timeout_s, 30); /* default */
    assert_string_equal(R.plugin_dir, ROUTERD_PLUGIN_DIR);
    assert_int_equal(R.nctx, 2);
    assert_int_equal(R.ntr, 1);
    rd_ctx *tr = R.tr[0];
    assert_string_equal(tr->name, "transport.main");
    assert_string_equal(tr->inst, "main");
    assert_int_equal(tr->kind, RD_KIND_TRANSPORT);
    assert_string_equal(tr->desc->name, "console");
    assert_int_equal(tr->nallow, 3);
    assert_int_equal(tr->allow[0], -100); /* sorted for bsearch */
    assert_int_equal(tr->allow[1], 7);
    assert_int_equal(tr->allow[2], 42);
    rd_ctx *be = R.ctx[1];
    assert_string_equal(be->name, "backend.helper");
    assert_string_equal(cfg_find(&be->cfg, "prefix")->str, "echo: ");
    assert_true(cfg_find(&be->cfg, "latency_ms")->have);
    assert_false(cfg_find(&be->cfg, "latency_ms")->set);
    assert_int_equal(R.npersonas, 2);
    assert_ptr_equal(R.default_persona, &R.personas[0]);
    assert_string_equal(R.personas[0].tag, "helper");
    assert_ptr_equal(R.personas[0].backend, be);
    assert_true(R.personas[0].is_default);
    assert_int_equal(R.personas[0].chat_limit, 20);
    assert_false(R.personas[1].is_default);
    assert_true(R.personas[1].selectable);
    assert_true(R.persona_cmd);
    assert_int_equal(R.personas[1].chat_limit, 3);
    assert_int_equal(strlen(R.persona_sha), 64);
    assert_int_equal(strlen(R.allow_sha), 64);
    assert_int_equal(strlen(R.mf->sha256), 64);

    /* --print-config: secrets masked, quoting kept, defaults marked. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print(f);
    fclose(f);
    assert_null(strstr(buf, "k3y-for-hashing"));
    assert_contains(buf, "chat_hash_key = ***");
    assert_contains(buf, "prefix = \"echo: \"");
    assert_contains(buf, "allowlist = -100, 7, 42");
    assert_contains(buf, "drain_timeout_s = 30   ; default");
    free(buf);
}

static void dev_manifest_from_repo(void **state) {
    (void)state;
    char *p = xasprintf("%s/conf.d/dev.ini", ROUTERD_SOURCE_DIR);
    int rc = config_build(p, ROUTERD_PLUGIN_DIR, err, sizeof err);
    free(p);
    if (rc) fail_msg("conf.d/dev.ini refused: %s", err);
    assert_string_equal(R.env, "dev");
    assert_int_equal(R.rate_limit, 0);
    assert_non_null(R.default_persona);
    /* The README's /persona works there: two selectable personas. */
    assert_true(R.persona_cmd);
    size_t selectable = 0;
    for (size_t i = 0; i < R.npersonas; i++)
        if (R.personas[i].selectable && R.personas[i].description) selectable++;
    assert_int_equal(selectable, 2);
}

static void no_router_section_uses_defaults(void **state) {
    (void)state;
    if (build(TRANSPORT BACKEND PERSONA)) fail_msg("refused: %s", err);
    assert_string_equal(R.env, "dev");
    assert_int_equal(R.queue_depth, 256);
}

static void unknown_key(void **state) {
    (void)state;
    const char *e = build_err(ROUTER TRANSPORT BACKEND "prefx = x\n" PERSONA);
    assert_contains(e, at(14));
    assert_contains(e, "[backend.helper]");
    assert_contains(e, "unknown key 'prefx'");
    assert_contains(e, "did you mean 'prefix'");
    reset(NULL);
    e = build_err(ROUTER "queue_dept = 5\n" TRANSPORT BACKEND PERSONA);
    assert_contains(e, at(6));
    assert_contains(e, "[router] unknown key 'queue_dept' (did you mean 'queue_depth'?)");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT BACKEND PERSONA "chatz = 1\n");
    assert_contains(e, at(18));
    assert_contains(e, "[persona.helper] unknown key 'chatz' (did you mean 'chats'?)");
    reset(NULL);
    /* allowlist is reserved for transports only. */
    e = build_err(ROUTER TRANSPORT BACKEND "allowlist = 1\n" PERSONA);
    assert_contains(e, "[backend.helper] unknown key 'allowlist'");
}

static void bad_values(void **state) {
    (void)state;
    const char *e = build_err(ROUTER "log_level = verbose\n" TRANSPORT BACKEND PERSONA);
    assert_contains(e, at(6));
    assert_contains(e, "[router] log_level: 'verbose' is not one of");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT BACKEND "latency_ms = -5\n" PERSONA);
    assert_contains(e, "[backend.helper] latency_ms: -5 is out of range");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT BACKEND "\n[persona.helper]\nbackend = helper\nchats = *, x1\n");
    assert_contains(e, at(17));
    assert_contains(e, "[persona.helper] chats: 'x1' is not a chat id");
}

static void missing_plugin_key_and_unknown_plugin(void **state) {
    (void)state;
    const char *e = build_err(ROUTER "\n[transport.main]\nchat_id = 3\n" BACKEND PERSONA);
    assert_contains(e, at(7));
    assert_contains(e, "[transport.main] missing required key 'plugin'");
    reset(NULL);
    e = build_err(ROUTER "\n[transport.main]\nplugin = consol\n" BACKEND PERSONA);
    assert_contains(e, at(8));
    assert_contains(e, "[transport.main] plugin:");
    assert_contains(e, "no transport plugin 'consol'");
    reset(NULL);
    /* The right name but the wrong kind. */
    e = build_err(ROUTER "\n[transport.main]\nplugin = mock\n" BACKEND PERSONA);
    assert_contains(e, "no transport plugin 'mock'");
    reset(NULL);
    e = build_err(ROUTER "\n[transport.main]\nplugin = Console\n" BACKEND PERSONA);
    assert_contains(e, "'Console' is not a plugin name");
    reset(NULL);
    /* A path to the .so works too, and its kind is checked. */
    if (build(ROUTER "\n[transport.main]\nplugin = " ROUTERD_PLUGIN_DIR
                     "/transport_console.so\n" BACKEND PERSONA))
        fail_msg("plugin path refused: %s", err);
    assert_string_equal(R.tr[0]->desc->name, "console");
    reset(NULL);
    e = build_err(ROUTER "\n[transport.main]\nplugin = " ROUTERD_PLUGIN_DIR
                         "/backend_mock.so\n" BACKEND PERSONA);
    assert_contains(e, "is a backend plugin, not a transport");
}

static void persona_missing_backend(void **state) {
    (void)state;
    const char *e = build_err(ROUTER TRANSPORT BACKEND "\n[persona.helper]\nchats = *\n");
    assert_contains(e, at(15)); /* the section header: the key is absent */
    assert_contains(e, "[persona.helper] missing required key 'backend'");
}

static void dangling_persona_backend(void **state) {
    (void)state;
    const char *e =
        build_err(ROUTER TRANSPORT BACKEND "\n[persona.helper]\nchats = *\nbackend = helpr\n");
    assert_contains(e, at(17));
    assert_contains(e, "[persona.helper] backend: no [backend.helpr] section");
    assert_contains(e, "did you mean 'helper'");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT BACKEND "\n[persona.helper]\nbackend = zzzzzzzzzz\n");
    assert_contains(e, "no [backend.zzzzzzzzzz] section");
    assert_null(strstr(e, "did you mean"));
    reset(NULL);
    /* A transport of that name is not a backend. */
    e = build_err(ROUTER TRANSPORT BACKEND "\n[persona.helper]\nbackend = main\n");
    assert_contains(e, "no [backend.main] section");
}

static void undefined_variable(void **state) {
    (void)state;
    unsetenv("RT_CFG_UNDEFINED");
    const char *e =
        build_err(ROUTER "failure_notice = ${RT_CFG_UNDEFINED}\n" TRANSPORT BACKEND PERSONA);
    assert_contains(e, at(6));
    assert_contains(e, "[router] failure_notice");
    assert_contains(e, "${RT_CFG_UNDEFINED} is not set");
    reset(NULL);
    setenv("RT_CFG_DEFINED", "Try later", 1);
    if (build(ROUTER "failure_notice = ${RT_CFG_DEFINED}!\n" TRANSPORT BACKEND PERSONA))
        fail_msg("refused: %s", err);
    assert_string_equal(R.failure_notice, "Try later!");
    unsetenv("RT_CFG_DEFINED");
}

static void two_default_personas(void **state) {
    (void)state;
    const char *e = build_err(ROUTER TRANSPORT BACKEND PERSONA
                              "\n[persona.second]\nbackend = helper\nchats = 1, *\n");
    assert_contains(e, at(21));
    assert_contains(e, "[persona.second] chats: * is already taken by [persona.helper]");
}

static void chat_mapped_twice(void **state) {
    (void)state;
    const char *e =
        build_err(ROUTER TRANSPORT BACKEND "\n[persona.a]\nbackend = helper\nchats = 42, 43\n"
                                           "\n[persona.b]\nbackend = helper\nchats = 7, 42\n");
    assert_contains(e, at(21));
    assert_contains(e, "[persona.b] chats: chat 42 is already mapped to [persona.a]");
}

static void allowlist_not_integer(void **state) {
    (void)state;
    const char *e = build_err(ROUTER TRANSPORT "allowlist = 1, abc, 3\n" BACKEND PERSONA);
    assert_contains(e, at(9));
    assert_contains(e, "[transport.main] allowlist: 'abc' is not a chat id");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT "allowlist = 12345678901234567890\n" BACKEND PERSONA);
    assert_contains(e, "is not a chat id");
    reset(NULL);
    /* An empty allowlist means everyone. */
    if (build(ROUTER TRANSPORT "allowlist =\n" BACKEND PERSONA)) fail_msg("refused: %s", err);
    assert_null(R.tr[0]->allow);
}

static void no_transport(void **state) {
    (void)state;
    const char *e = build_err(ROUTER BACKEND PERSONA);
    assert_contains(e, path);
    assert_contains(e, "no [transport.NAME] section");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT PERSONA);
    assert_contains(e, "no [backend.NAME] section");
    reset(NULL);
    e = build_err(ROUTER TRANSPORT BACKEND);
    assert_contains(e, "no [persona.NAME] section");
}

static void manifest_errors_pass_through(void **state) {
    (void)state;
    const char *e = build_err(ROUTER "env = again\n" TRANSPORT BACKEND PERSONA);
    assert_contains(e, at(6));
    assert_contains(e, "duplicate key");
    reset(NULL);
    char *missing = xasprintf("%s/does-not-exist.ini", dir);
    assert_int_equal(config_build(missing, ROUTERD_PLUGIN_DIR, err, sizeof err), -1);
    assert_contains(err, missing);
    free(missing);
}

/* The persona map hash, computed from a build of the same personas. */
static char *persona_sha_of(const char *personas) {
    char *text = xasprintf(ROUTER TRANSPORT BACKEND "%s", personas);
    if (build(text)) fail_msg("refused: %s", err);
    free(text);
    char *sha = xstrdup(R.persona_sha);
    reset(NULL);
    return sha;
}

static void pinned_persona_map(void **state) {
    (void)state;
    const char *ps = "\n[persona.a]\nbackend = helper\nchats = 42, 7\n"
                     "\n[persona.b]\nbackend = helper\nchats = *\n";
    char *sha = persona_sha_of(ps);
    /* Same map written in another order and style: same hash. */
    char *sha2 = persona_sha_of("\n[persona.b]\nchats = *\nbackend = helper\n"
                                "\n[persona.a]\nbackend = helper\nchats = 7,42\n");
    assert_string_equal(sha, sha2);
    /* A different map: a different hash. */
    char *sha3 = persona_sha_of("\n[persona.a]\nbackend = helper\nchats = 42\n"
                                "\n[persona.b]\nbackend = helper\nchats = *\n");
    assert_string_not_equal(sha, sha3);

    char *text = xasprintf(
        "[router]\nstate_dir = @DIR@/s\npersona_map_sha256 = %s\n" TRANSPORT BACKEND "%s", sha, ps);
    if (build(text)) fail_msg("matching pin refused: %s", err);
    free(text);
    reset(NULL);

    text =
        xasprintf("[router]\nstate_dir = @DIR@/s\npersona_map_sha256 = %s\n" TRANSPORT BACKEND "%s",
                  sha3, ps);
    const char *e = build_err(text);
    free(text);
    assert_contains(e, at(3));
    assert_contains(e, "persona_map_sha256");
    assert_contains(e, sha3); /* what the manifest pins */
    assert_contains(e, sha);  /* what the personas hash to */
    free(sha);
    free(sha2);
    free(sha3);
}

static void pinned_allowlist(void **state) {
    (void)state;
    if (build(ROUTER TRANSPORT "allowlist = 3, 1\n" BACKEND PERSONA)) fail_msg("%s", err);
    char *sha = xstrdup(R.allow_sha);
    reset(NULL);
    char *text = xasprintf(
        "[router]\nallowlist_sha256 = %s\n" TRANSPORT "allowlist = 1,3\n" BACKEND PERSONA, sha);
    if (build(text)) fail_msg("matching pin refused: %s", err);
    reset(NULL);
    free(text);
    text = xasprintf(
        "[router]\nallowlist_sha256 = %s\n" TRANSPORT "allowlist = 1,3,4\n" BACKEND PERSONA, sha);
    const char *e = build_err(text);
    free(text);
    assert_contains(e, at(2));
    assert_contains(e, "allowlist_sha256");
    free(sha);
}

#define T(fn) cmocka_unit_test_teardown(fn, reset)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(valid_manifest),
        T(dev_manifest_from_repo),
        T(no_router_section_uses_defaults),
        T(unknown_key),
        T(bad_values),
        T(missing_plugin_key_and_unknown_plugin),
        T(persona_missing_backend),
        T(dangling_persona_backend),
        T(undefined_variable),
        T(two_default_personas),
        T(chat_mapped_twice),
        T(allowlist_not_integer),
        T(no_transport),
        T(manifest_errors_pass_through),
        T(pinned_persona_map),
        T(pinned_allowlist),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
