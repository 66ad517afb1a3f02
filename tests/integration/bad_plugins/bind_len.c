/* Binds an INT option to an int member (an INT is written as int64_t). */
#include <routerd/plugin.h>

typedef struct {
    int count;
} conf;

static const rd_option opts[] = {
    {.key = "count", .type = RD_OPT_INT, .def = "1", .help = "n", RD_BIND(conf, count)}, {0}};
static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    (void)h, (void)c, (void)e;
    *self = 0;
    return RD_OK;
}
static rd_status handle(void *s, const rd_request *rq, rd_reply *rp, rd_error *e) {
    (void)s, (void)rq, (void)rp, (void)e;
    return RD_OK;
}
static const rd_ops ops = {.size = sizeof ops, .create = create, .handle = handle};
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "bind_len", .version = "1", .options = opts,
                 .ops = &ops);
