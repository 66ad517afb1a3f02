/* See backoff.h. */
#include "backoff.h"

int64_t backoff_jitter_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t rnd) {
    int64_t d = base_ms;
    for (int i = 0; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms) d = max_ms;
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t)(rnd % (uint64_t)(half + 1)) : 0);
}
