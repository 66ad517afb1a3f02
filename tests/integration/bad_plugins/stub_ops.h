/* The do-nothing backend ops the broken plugins share: each file breaks
 * one thing about its descriptor or options, not its code. */
#ifndef BAD_PLUGIN_STUB_OPS_H
#define BAD_PLUGIN_STUB_OPS_H

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

#endif
