/* Puts something in the reserved descriptor fields. */
#include "stub_ops.h"

RD_PLUGIN_DEFINE(.kind = RD_KIND_BACKEND, .name = "reserved_set", .version = "1", .ops = &ops,
                 .reserved = {&ops});
