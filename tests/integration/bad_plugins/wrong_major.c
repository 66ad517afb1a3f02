/* Claims ABI major 2 under the v1 symbol name. */
#include "stub_ops.h"

RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = 2,
                                               .abi_minor = 0,
                                               .size = sizeof(rd_plugin),
                                               .kind = RD_KIND_BACKEND,
                                               .name = "wrong_major",
                                               .version = "1",
                                               .ops = &ops};
