/* The example backend of docs/plugin-guide.md, built out of tree by a test. */
#include <routerd/plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    const char *greeting;
} hello;

static const rd_option opts[] = {
    {.key = "greeting", .type = RD_OPT_STRING, .def = "Hello", .help = "put before the text"},
    {0},
};

static rd_status create(const rd_host *h, rd_ctx *ctx, void **self, rd_error *err) {
    hello *p = calloc(1, sizeof *p);
    if (!p) return RD_E_INTERNAL;
    p->h = h;
    p->ctx = ctx;
    p->greeting = h->cfg_str(ctx, "greeting"); /* validated and defaulted */
    *self = p;
    (void)err;
    return RD_OK;
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
    p->h->reply_append(rp, p->greeting, strlen(p->greeting));
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
