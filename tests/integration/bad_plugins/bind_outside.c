/* Hands cfg_bind() a struct smaller than its bindings reach. */
#include <routerd/plugin.h>

#include <stdlib.h>

typedef struct {
    const char *name;
    int64_t count;
} conf;

static const rd_option opts[] = {
    {.key = "name", .type = RD_OPT_STRING, .def = "x", .help = "s", RD_BIND(conf, name)},
    {.key = "count", .type = RD_OPT_INT, .def = "1", .help = "n", RD_BIND(conf, count)},
    {0}};
static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    conf *cf = calloc(1, sizeof *cf);
    *self = cf;
    /* Wrong on purpose: only the first member's size. */
    rd_status st = h->cfg_bind(c, cf, sizeof cf->name, e);
    if (st != RD_OK) free(cf); /* the host does not destroy() what create() refused */
    return st;
}
static void destroy(void *s) {
    free(s);
}
static rd_status handle(void *s, const rd_request *rq, rd_reply *rp, rd_error *e) {
    (void)s, (void)rq, (void)rp, (void)e;
    return RD_OK;
}
static const rd_ops ops = {
    .size = sizeof ops, .create = create, .destroy = destroy, .handle = handle};
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "bind_outside", .version = "1", .options = opts,
                 .ops = &ops);
