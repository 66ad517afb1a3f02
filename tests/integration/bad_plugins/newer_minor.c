/* Built against a newer minor ABI than the host speaks. */
#include "stub_ops.h"

RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = RD_ABI_MAJOR,
                                               .abi_minor = RD_ABI_MINOR + 1,
                                               .size = sizeof(rd_plugin),
                                               .kind = RD_KIND_BACKEND,
                                               .name = "newer_minor",
                                               .version = "1",
                                               .ops = &ops};
