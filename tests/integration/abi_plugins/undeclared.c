/* Reads a key it never declared, in create() or start() (`when`). */
#include <routerd/plugin.h>

#include <stdlib.h>

typedef struct {
    int when; /* 0 create, 1 start, 2 never */
} conf;

static const char *const whens[] = {"create", "start", "never", NULL};
static const rd_option opts[] = {{.key = "when",
                                  .type = RD_OPT_ENUM,
                                  .def = "create",
                                  .help = "when to misread",
                                  .choices = whens,
                                  RD_BIND(conf, when)},
                                 {0}};

typedef struct {
    const rd_host *h;
    rd_ctx *ctx;
    conf cf;
} self_t;

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    self_t *s = calloc(1, sizeof *s);
    s->h = h;
    s->ctx = c;
    *self = s;
    rd_status st = h->cfg_bind(c, &s->cf, sizeof s->cf, e);
    if (st == RD_OK && s->cf.when == 0) (void)h->cfg_str(c, "undeclared_key");
    return st;
}
static rd_status start(void *self, rd_error *e) {
    self_t *s = self;
    (void)e;
    if (s->cf.when == 1) (void)s->h->cfg_int(s->ctx, "undeclared_key");
    s->h->ready(s->ctx, 1, NULL);
    return RD_OK;
}
static void destroy(void *self) {
    free(self);
}
static rd_status handle(void *s, const rd_request *rq, rd_reply *rp, rd_error *e) {
    self_t *x = s;
    (void)e;
    x->h->reply_append(rp, rq->text, rq->text_len);
    return RD_OK;
}
static const rd_ops ops = {
    .size = sizeof ops, .create = create, .start = start, .destroy = destroy, .handle = handle};
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "undeclared", .version = "1", .options = opts,
                 .ops = &ops);
