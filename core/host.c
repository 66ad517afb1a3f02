/* The host API table handed to plugins. */
#include "build_info.h"
#include "lease.h"
#include "router.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

rd_ctx *ctx_new(rd_kind kind, const char *name, const char *inst) {
    rd_ctx *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->name = xstrdup(name);
    c->inst = xstrdup(inst);
    wm_init(&c->wm);
    pthread_mutex_init(&c->serial_mu, NULL);
    return c;
}

void ctx_free(rd_ctx *c) {
    if (!c) return;
    cfg_free(&c->cfg);
    wm_free(&c->wm);
    pthread_mutex_destroy(&c->serial_mu);
    free(c->allow);
    free(c->name);
    free(c->inst);
    free(c);
}

static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void h_vlog(rd_ctx *ctx, rd_log_level lvl, const char *fmt, va_list ap) {
    if (lvl > RD_LOG_ERROR) lvl = RD_LOG_ERROR;
    log_vmsg(ctx ? ctx->name : "plugin", lvl, fmt, ap);
}

static void h_log(rd_ctx *ctx, rd_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    h_vlog(ctx, lvl, fmt, ap);
    va_end(ap);
}

/* Getter misuse is a plugin bug: logged, and remembered so the start fails. */
static void cfg_misuse(rd_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cfg_misuse(rd_ctx *ctx, const char *fmt, ...) {
    char msg[sizeof ctx->cfg_bug_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_msg(ctx->name, RD_LOG_ERROR, "plugin bug: %s", msg);
    if (!atomic_exchange(&ctx->cfg_bug, 1)) memcpy(ctx->cfg_bug_msg, msg, sizeof ctx->cfg_bug_msg);
}

#define T(x) (1u << RD_OPT_##x)

/* The declared option behind a getter call, or NULL (misuse, logged). */
static cfg_val *lookup(rd_ctx *ctx, const char *key, const char *getter, unsigned types) {
    if (!ctx) return NULL;
    cfg_val *v = key ? cfg_find(&ctx->cfg, key) : NULL;
    if (!v) {
        cfg_misuse(ctx, "%s(\"%s\"): the key is not declared in the plugin's options", getter,
                   key ? key : "(null)");
        return NULL;
    }
    if (!(types & (1u << v->opt->type))) {
        cfg_misuse(ctx, "%s(\"%s\"): the key is a %s option", getter, key,
                   opt_type_name(v->opt->type));
        return NULL;
    }
    return v;
}

/* The text as written (an ENUM's choice). */
static const char *h_cfg_str(rd_ctx *ctx, const char *key) {
    cfg_val *v = lookup(ctx, key, "cfg_str", T(STRING) | T(URL) | T(ENUM));
    return v && v->have ? v->str : NULL;
}

/* An ENUM's index (-1 when absent), a DURATION in milliseconds. */
static int64_t h_cfg_int(rd_ctx *ctx, const char *key) {
    cfg_val *v = lookup(ctx, key, "cfg_int", T(INT) | T(ENUM) | T(DURATION) | T(BOOL));
    if (!v) return 0;
    return v->have || v->opt->type == RD_OPT_ENUM ? v->i : 0;
}

static int h_cfg_bool(rd_ctx *ctx, const char *key) {
    cfg_val *v = lookup(ctx, key, "cfg_bool", T(BOOL));
    return v && v->have ? (int)v->i : 0;
}

static double h_cfg_double(rd_ctx *ctx, const char *key) {
    cfg_val *v = lookup(ctx, key, "cfg_double", T(DOUBLE) | T(INT));
    return v && v->have ? v->d : 0;
}

/* Lists are split when the schema is applied: nothing is written here, so
 * concurrent calls are safe. */
static const char *const *h_cfg_list(rd_ctx *ctx, const char *key) {
    static const char *const empty[] = {NULL};
    cfg_val *v = lookup(ctx, key, "cfg_list", T(LIST));
    return v && v->list ? (const char *const *)v->list : empty;
}

static rd_status h_cfg_bind(rd_ctx *ctx, void *conf, size_t conf_size, rd_error *err) {
    char msg[256];
    if (!ctx || !conf) {
        h_error(err, RD_E_CONFIG, "fatal", "cfg_bind: no config struct");
        return RD_E_CONFIG;
    }
    if (cfg_bind_set(&ctx->cfg, conf, conf_size, msg, sizeof msg)) {
        h_error(err, RD_E_CONFIG, "fatal", "cfg_bind: %s (a plugin bug)", msg);
        return RD_E_CONFIG;
    }
    return RD_OK;
}

static int h_cfg_isset(rd_ctx *ctx, const char *key) {
    cfg_val *v = lookup(ctx, key, "cfg_isset", ~0u);
    return v && v->set;
}

static const char *h_info(rd_ctx *ctx, const char *what) {
    if (!strcmp(what, "env")) return R.env;
    if (!strcmp(what, "version")) return ROUTERD_VERSION;
    if (!strcmp(what, "build_sha")) return ROUTERD_BUILD_SHA;
    if (!strcmp(what, "instance")) return ctx ? ctx->inst : NULL;
    if (!strcmp(what, "kind")) return ctx ? kind_name(ctx->kind) : NULL;
    if (!strcmp(what, "manifest_sha256")) return R.mf ? R.mf->sha256 : NULL;
    if (!strcmp(what, "state_dir")) return R.state_dir;
    if (!strcmp(what, "admin_listen")) return R.admin_listen;
    if (!strcmp(what, "lease_ms")) return lease_ms_info();
    if (!strcmp(what, "store")) return R.st ? store_kind(R.st) : NULL;
    if (!strcmp(what, "transports")) return R.tr_names;
    return NULL;
}

static int64_t h_now_ms(void) {
    return mono_ms();
}

static int64_t h_wall_ns(void) {
    return wall_ns();
}

static rd_metric *h_metric(rd_ctx *ctx, rd_metric_type type, const char *name, const char *help,
                           const char *const *labels, const double *buckets, size_t nb) {
    (void)ctx;
    return metric_family(type, name, help, labels, buckets, nb);
}

static void h_metrics_visit(rd_ctx *ctx, rd_metric_visit_fn fn, void *arg) {
    (void)ctx;
    metrics_visit(fn, arg);
}

static void h_ready(rd_ctx *ctx, int ok, const char *reason) {
    if (!ctx) return;
    int was = atomic_exchange(&ctx->ready, ok ? 1 : 0);
    if (was != (ok ? 1 : 0))
        log_msg(ctx->name, ok ? RD_LOG_INFO : RD_LOG_WARN, "%s%s%s", ok ? "ready" : "not ready",
                reason && *reason ? ": " : "", reason ? reason : "");
}

static rd_status h_submit(rd_ctx *ctx, const rd_inbound *in) {
    if (!ctx || ctx->kind != RD_KIND_TRANSPORT || !in) return RD_E_INTERNAL;
    return router_submit(ctx, in);
}

static void h_skip(rd_ctx *ctx, int64_t id, const char *why) {
    if (ctx && ctx->kind == RD_KIND_TRANSPORT) router_skip(ctx, id, why);
}

static int64_t h_watermark(rd_ctx *ctx) {
    return ctx ? router_watermark(ctx) : -1;
}

static void h_request_stop(rd_ctx *ctx) {
    (void)ctx;
    atomic_store(&R.stop_requested, true);
}

static int h_stopping(rd_ctx *ctx) {
    (void)ctx;
    return atomic_load(&R.draining);
}

static rd_status h_deliver(rd_ctx *ctx, const char *transport, const rd_outbound *out,
                           int64_t timeout_ms, int64_t *sent_id, rd_error *err) {
    return router_deliver(ctx, transport, out, timeout_ms, sent_id, err);
}

static void h_answered(rd_ctx *ctx, const char *correlation_id, const char *caller) {
    router_answered(ctx, correlation_id, caller);
}

static int h_cancelled(rd_reply *r) {
    (void)r;
    return atomic_load(&R.hard_stop);
}

static rd_status h_kv_get(rd_ctx *ctx, const char *key, char **v, size_t *len) {
    return store_get(R.st, ctx->name, key, v, len);
}

/* Writes of an instance that asked for leadership commit only while it
 * leads (checked again inside the store's transaction). */
static rd_status kv_write(rd_ctx *ctx, const rd_kv_op *ops, size_t n, bool lazy, uint64_t *seq) {
    store_fence f;
    char key[128];
    bool fenced = false;
    if (!lease_fence(ctx, &f, key, sizeof key, &fenced)) return RD_E_UNAVAILABLE;
    return lazy ? store_txn_lazy(R.st, ctx->name, ops, n, fenced ? &f : NULL, seq)
                : store_txn_fenced(R.st, ctx->name, ops, n, fenced ? &f : NULL);
}

static rd_status h_kv_put(rd_ctx *ctx, const char *key, const void *v, size_t len) {
    rd_kv_op op = {.op = RD_KV_PUT, .key = key, .val = v, .val_len = len};
    return kv_write(ctx, &op, 1, false, NULL);
}

static rd_status h_kv_del(rd_ctx *ctx, const char *key) {
    rd_kv_op op = {.op = RD_KV_DEL, .key = key};
    return kv_write(ctx, &op, 1, false, NULL);
}

static rd_status h_kv_txn(rd_ctx *ctx, const rd_kv_op *ops, size_t n) {
    return kv_write(ctx, ops, n, false, NULL);
}

static rd_status h_kv_txn_lazy(rd_ctx *ctx, const rd_kv_op *ops, size_t n, uint64_t *seq) {
    return kv_write(ctx, ops, n, true, seq);
}

static rd_status h_kv_sync(rd_ctx *ctx, uint64_t seq, int64_t wait_ms) {
    (void)ctx;
    return store_sync(R.st, seq, wait_ms < 0 ? 0 : wait_ms);
}

static rd_status h_kv_add(rd_ctx *ctx, const char *key, const void *v, size_t len) {
    return store_add(R.st, ctx->name, key, v, len);
}

static rd_status h_kv_scan(rd_ctx *ctx, const char *prefix, rd_kv_visit_fn fn, void *arg) {
    return store_scan(R.st, ctx->name, prefix, fn, arg);
}

static size_t h_redact(rd_ctx *ctx, const char *src, char *dst, size_t dstsz) {
    (void)ctx;
    return redact(src, dst, dstsz);
}

static void h_error(rd_error *err, rd_status code, const char *klass, const char *fmt, ...) {
    if (!err) return;
    err->code = code;
    snprintf(err->klass, sizeof err->klass, "%s", klass ? klass : "");
    /* Redact the whole text, then cut: a secret cut in two would not match. */
    char *raw = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    redact(n < 0 ? "" : raw, err->msg, sizeof err->msg);
    if (n >= 0) free(raw);
}

const rd_host host_api = {
    .size = sizeof(rd_host),
    .abi_minor = RD_ABI_MINOR,
    .log = h_log,
    .vlog = h_vlog,
    .cfg_str = h_cfg_str,
    .cfg_int = h_cfg_int,
    .cfg_bool = h_cfg_bool,
    .cfg_double = h_cfg_double,
    .cfg_list = h_cfg_list,
    .cfg_isset = h_cfg_isset,
    .info = h_info,
    .now_ms = h_now_ms,
    .wall_ns = h_wall_ns,
    .metric = h_metric,
    .series = metric_series,
    .add = series_add,
    .set = series_set,
    .observe = series_observe,
    .metrics_visit = h_metrics_visit,
    .http_route = http_add_route,
    .ready = h_ready,
    .submit = h_submit,
    .skip = h_skip,
    .watermark = h_watermark,
    .request_stop = h_request_stop,
    .stopping = h_stopping,
    .reply_append = router_reply_append,
    .reply_progress = router_reply_progress,
    .complete = router_complete,
    .cancelled = h_cancelled,
    .kv_get = h_kv_get,
    .kv_put = h_kv_put,
    .kv_del = h_kv_del,
    .kv_txn = h_kv_txn,
    .kv_scan = h_kv_scan,
    .redact = h_redact,
    .error = h_error,
    .http_route_auth = http_add_route_auth,
    .lead = lease_lead,
    .claim = lease_claim,
    .kv_add = h_kv_add,
    .cfg_bind = h_cfg_bind,
    .reply_attach = router_reply_attach,
    .reply_choices = router_reply_choices,
    .deliver = h_deliver,
    .answered = h_answered,
    .send_done = router_send_done,
    .kv_txn_lazy = h_kv_txn_lazy,
    .kv_sync = h_kv_sync,
};
