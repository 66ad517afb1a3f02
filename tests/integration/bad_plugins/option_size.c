/* Claims an rd_option smaller than the ABI 1.0 layout. */
#include <routerd/plugin.h>

static const rd_option opts[] = {{.key = "x", .type = RD_OPT_STRING, .help = "x"}, {0}};
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
RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = RD_ABI_MAJOR,
                                               .abi_minor = RD_ABI_MINOR,
                                               .size = sizeof(rd_plugin),
                                               .option_size = 16,
                                               .kind = RD_KIND_BACKEND,
                                               .name = "option_size",
                                               .version = "1",
                                               .options = opts,
                                               .ops = &ops};
