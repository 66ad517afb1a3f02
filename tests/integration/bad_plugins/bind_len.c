/* Binds an INT option to an int member (an INT is written as int64_t). */
#include "stub_ops.h"

typedef struct {
    int count;
} conf;

static const rd_option opts[] = {
    {.key = "count", .type = RD_OPT_INT, .def = "1", .help = "n", RD_BIND(conf, count)}, {0}};
RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "bind_len", .version = "1", .options = opts,
                 .ops = &ops);
