/* rd_option as plugins built against ABI 1.0/1.1 lay it out: no offset
 * nor bind_len. Tests use it to check the host walks such arrays with
 * their own stride. */
#ifndef TEST_OPTION_V11_H
#define TEST_OPTION_V11_H

#include <routerd/plugin.h>

typedef struct {
    const char *key;
    rd_opt_type type;
    uint32_t flags;
    const char *def, *help;
    double min, max;
    const char *const *choices;
} option_v11;

#endif
