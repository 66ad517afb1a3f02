/* A backend for the plugin test kit's own tests: it uses each host call a
 * test wants to observe, chosen by the request text. */
#define _POSIX_C_SOURCE 200809L
#include <routerd/plugin.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t wait_ms; /* bound */
    int level;       /* bound */
} probe_conf;

typedef struct {
    const rd_host *h;
    probe_conf cf;
    rd_ctx *ctx;
    const char *greeting;
    int loud, late;
} probe;

static const char *const levels[] = {"low", "high", NULL};

static const rd_option opts[] = {
    {.key = "greeting", .type = RD_OPT_STRING, .def = "hi", .help = "put first"},
    {.key = "loud", .type = RD_OPT_BOOL, .def = "false", .help = "upper-case the reply"},
    {.key = "tags", .type = RD_OPT_LIST, .help = "listed in the reply to 'tags'"},
    {.key = "level",
     .type = RD_OPT_ENUM,
     .choices = levels,
     .help = "a choice",
     RD_BIND(probe_conf, level)},
    {.key = "wait",
     .type = RD_OPT_DURATION,
     .def = "1s",
     .help = "a duration",
     .max = 60,
     RD_BIND(probe_conf, wait_ms)},
    {.key = "misread", .type = RD_OPT_BOOL, .def = "false", .help = "read an undeclared key"},
    {.key = "late", .type = RD_OPT_BOOL, .def = "false", .help = "log and write from destroy()"},
    {0}};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static rd_status create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    probe *p = calloc(1, sizeof *p);
    if (!p) return RD_E_INTERNAL;
    p->h = h;
    p->ctx = ctx;
    p->greeting = h->cfg_str(ctx, "greeting");
    p->loud = h->cfg_bool(ctx, "loud");
    p->late = h->cfg_bool(ctx, "late");
    if (h->cfg_bool(ctx, "misread")) (void)h->cfg_str(ctx, "greting");
    *self = p;
    return h->cfg_bind(ctx, &p->cf, sizeof p->cf, err);
}

typedef struct {
    probe *p;
    rd_reply *rp;
} later;

static void *complete_later(void *arg) {
    later *l = arg;
    sleep_ms(50);
    l->p->h->reply_append(l->rp, "done later", 10);
    l->p->h->complete(l->rp, RD_OK, NULL);
    free(l);
    return NULL;
}

static rd_status handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    probe *p = self;
    const rd_host *h = p->h;
    if (!strcmp(rq->text, "file")) {
        rd_attachment a = {
            .size = sizeof a, .mime = "text/plain", .name = "a.txt", .data = "abc", .len = 3};
        return h->reply_attach(rp, &a);
    }
    if (!strcmp(rq->text, "choose")) {
        h->reply_choices(rp, (const char *const[]){"yes", "no", NULL});
        h->reply_append(rp, "sure?", 5);
        return RD_OK;
    }
    if (!strcmp(rq->text, "tags")) {
        const char *const *t = h->cfg_list(p->ctx, "tags");
        for (; *t; t++)
            h->reply_append(rp, *t, strlen(*t));
        h->reply_append(rp, ".", 1);
        return RD_OK;
    }
    if (!strcmp(rq->text, "bound")) {
        char n[64];
        snprintf(n, sizeof n, "%lld %d", (long long)p->cf.wait_ms, p->cf.level);
        h->reply_append(rp, n, strlen(n));
        return RD_OK;
    }
    if (!strcmp(rq->text, "level")) {
        char n[8] = {(char)('0' + (int)h->cfg_int(p->ctx, "level") + 1), 0};
        h->reply_append(rp, n, 1); /* 0 = absent (-1), 1 = low, 2 = high */
        return RD_OK;
    }
    if (!strcmp(rq->text, "pending")) {
        later *l = malloc(sizeof *l);
        pthread_t th;
        if (!l) return RD_E_INTERNAL;
        *l = (later){p, rp};
        if (pthread_create(&th, NULL, complete_later, l)) return RD_E_INTERNAL;
        pthread_detach(th);
        return RD_PENDING;
    }
    if (!strcmp(rq->text, "slow")) {
        while (rq->deadline_ms && h->now_ms() < rq->deadline_ms + 150)
            sleep_ms(10);
        h->error(err, RD_E_TIMEOUT, "timeout", "too slow");
        return RD_E_TIMEOUT;
    }
    h->reply_append(rp, p->greeting, strlen(p->greeting));
    h->reply_append(rp, p->loud ? " THERE: " : " there: ", 8);
    h->reply_append(rp, rq->text, rq->text_len);
    return RD_OK;
}

static void destroy(void *self) {
    probe *p = self;
    if (!p) return;
    if (p->late) {
        p->h->log(p->ctx, RD_LOG_INFO, "bye");
        rd_kv_op op = {.op = RD_KV_PUT, .key = "bye", .val = "1", .val_len = 1};
        uint64_t seq = 0;
        if (RD_HAS(p->h, kv_txn_lazy) && p->h->kv_txn_lazy) p->h->kv_txn_lazy(p->ctx, &op, 1, &seq);
    }
    free(p);
}

static const rd_ops ops = {
    .size = sizeof ops, .create = create, .handle = handle, .destroy = destroy};

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "probe", .version = "1.0",
                 .summary = "exercises the plugin test kit", .options = opts, .ops = &ops);
