/* An inbound plugin whose ops table is a 1.2 one: intercept lies beyond
 * its size, so the host must not read it even though it is set. */
#include <routerd/plugin.h>

#include <stddef.h>

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    (void)h, (void)c, (void)e;
    *self = 0;
    return RD_OK;
}
static int intercept(void *self, const rd_request *rq) {
    (void)self, (void)rq;
    return 0;
}
static const rd_ops ops = {
    .size = offsetof(rd_ops, intercept), .create = create, .intercept = intercept};
RD_PLUGIN_DEFINE(.kind = RD_KIND_INBOUND, .name = "inbound_old_ops", .version = "1", .ops = &ops);
