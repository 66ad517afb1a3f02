/* Claims ABI major 2 under the v1 symbol name. */
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
RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = 2,
                                               .abi_minor = 0,
                                               .size = sizeof(rd_plugin),
                                               .kind = RD_KIND_BACKEND,
                                               .name = "wrong_major",
                                               .version = "1",
                                               .ops = &ops};
