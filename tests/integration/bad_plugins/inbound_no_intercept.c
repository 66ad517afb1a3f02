/* An inbound plugin without the intercept op it is required to have. */
#include <routerd/plugin.h>

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    (void)h, (void)c, (void)e;
    *self = 0;
    return RD_OK;
}
static const rd_ops ops = {.size = sizeof ops, .create = create};
RD_PLUGIN_DEFINE(.kind = RD_KIND_INBOUND, .name = "inbound_no_intercept", .version = "1",
                 .ops = &ops);
