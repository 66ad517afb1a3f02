/* The example backend of docs/plugin-guide.md, built out of tree by a test. */
#include <routerd/plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *greeting; /* written by cfg_bind() */
} hello_conf;

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    hello_conf cf;
} hello;

static const rd_option opts[] = {
    {.key = "greeting",
     .type = RD_OPT_STRING,
     .def = "Hello",
     .help = "put before the text",
     RD_BIND(hello_conf, greeting)},
    {0},
};

static rd_status create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    if (!RD_HAS(h, cfg_bind)) {
        h->error(err, RD_E_CONFIG, "fatal", "needs a routerd speaking plugin ABI 1.2");
        return RD_E_CONFIG;
    }
    hello *p = calloc(1, sizeof *p);
    if (!p) return RD_E_INTERNAL;
    p->h = h;
    p->ctx = ctx;
    *self = p;
    /* Validated and defaulted; the strings stay valid until destroy(). */
    return h->cfg_bind(ctx, &p->cf, sizeof p->cf, err);
}

static rd_status start(void *self, rd_error *err) {
    hello *p = self;
    (void)err;
    p->h->ready(p->ctx, 1, NULL); /* /healthz waits for this */
    return RD_OK;
}

static rd_status handle(void *self, const rd_request *rq, rd_reply *rp, rd_error *err) {
    hello *p = self;
    (void)err;
    p->h->reply_append(rp, p->cf.greeting, strlen(p->cf.greeting));
    p->h->reply_append(rp, ", ", 2);
    p->h->reply_append(rp, rq->text, rq->text_len);
    return RD_OK;
}

static void destroy(void *self) {
    free(self);
}

static const rd_ops ops = {
    .size = sizeof(rd_ops),
    .create = create,
    .start = start,
    .destroy = destroy,
    .handle = handle,
};

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "hello", .version = "1.0.0", .summary = "greets",
                 .options = opts, .ops = &ops);
