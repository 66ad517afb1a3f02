/* Puts something in the reserved descriptor fields. */
#include <routerd/plugin.h>

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
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "reserved_set", .version = "1", .ops = &ops,
                 .reserved = {&ops});
