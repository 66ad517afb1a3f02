/* See url_check.h. */
#include "url_check.h"

#include <strings.h>

bool url_is_http(const char *u) {
    return u && (!strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8));
}
