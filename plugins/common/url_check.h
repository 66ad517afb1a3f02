/* Checks of URLs read from a manifest. */
#ifndef ROUTERD_COMMON_URL_CHECK_H
#define ROUTERD_COMMON_URL_CHECK_H

#include <stdbool.h>

/* True when u starts with http:// or https:// (the scheme in any case, as
 * RFC 3986 and libcurl read it). NULL is not a URL. */
bool url_is_http(const char *u);

#endif
