/* A backend built against the ABI 1.1 layout: its rd_option elements end
 * before `offset` and its descriptor before `option_size`. The host must
 * walk the options with the old stride and read nothing beyond them. */
#include <routerd/plugin.h>

#include <string.h>

#include "option_v11.h"

typedef struct {
    uint32_t abi_major, abi_minor, size;
    rd_kind kind;
    const char *name, *version, *summary;
    const option_v11 *options;
    const rd_ops *ops;
    uint32_t flags;
    const void *reserved[4];
} plugin_v11;

static const char *const tones[] = {"plain", "loud", NULL};
static const option_v11 opts[] = {
    {"greeting", RD_OPT_STRING, 0, "old: ", "put first", 0, 0, NULL},
    {"tone", RD_OPT_ENUM, 0, "plain", "how", 0, 0, tones},
    {"times", RD_OPT_INT, 0, "1", "repeats", 1, 3, NULL},
    {0},
};

static const rd_host *H;
static rd_ctx *C;

static rd_status create(const rd_host *h, rd_ctx *c, void **self, rd_error *e) {
    (void)e;
    H = h;
    C = c;
    *self = NULL;
    return RD_OK;
}

static rd_status handle(void *s, const rd_request *rq, rd_reply *rp, rd_error *e) {
    (void)s, (void)e;
    const char *g = H->cfg_str(C, "greeting");
    int64_t n = H->cfg_int(C, "times");
    for (int64_t i = 0; i < n; i++) {
        H->reply_append(rp, g, strlen(g));
        H->reply_append(rp, rq->text, rq->text_len);
    }
    if (H->cfg_int(C, "tone") == 1) H->reply_append(rp, "!", 1);
    return RD_OK;
}

static const rd_ops ops = {.size = sizeof ops, .create = create, .handle = handle};

__attribute__((visibility("default"))) extern const plugin_v11 routerd_plugin_v1;
__attribute__((visibility("default")))
const plugin_v11 routerd_plugin_v1 = {.abi_major = 1,
                                      .abi_minor = 1,
                                      .size = sizeof(plugin_v11),
                                      .kind = RD_KIND_BACKEND,
                                      .name = "old_layout",
                                      .version = "1.1",
                                      .summary = "a plugin of the 1.1 layout",
                                      .options = opts,
                                      .ops = &ops};
