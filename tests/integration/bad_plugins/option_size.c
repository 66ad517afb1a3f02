/* Claims an rd_option smaller than the ABI 1.0 layout. */
#include "stub_ops.h"

static const rd_option opts[] = {{.key = "x", .type = RD_OPT_STRING, .help = "x"}, {0}};
RD_EXPORT const rd_plugin routerd_plugin_v1 = {.abi_major = RD_ABI_MAJOR,
                                               .abi_minor = RD_ABI_MINOR,
                                               .size = sizeof(rd_plugin),
                                               .option_size = 16,
                                               .kind = RD_KIND_BACKEND,
                                               .name = "option_size",
                                               .version = "1",
                                               .options = opts,
                                               .ops = &ops};
