/* Retry delays: exponential back-off with jitter. */
#ifndef ROUTERD_COMMON_BACKOFF_H
#define ROUTERD_COMMON_BACKOFF_H

#include <stdint.h>

/* The wait before retry `attempt` (0 for the first): base_ms doubled per
 * attempt and capped at max_ms, then a pick in [d/2, d] chosen by rnd, so
 * that clients failing together do not retry together. */
int64_t backoff_jitter_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t rnd);

#endif
