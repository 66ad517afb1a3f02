/* Token bucket: capacity and refill are both `per_minute`. */
#include "core.h"

static void refill(bucket *b, int per_minute, int64_t now_ms) {
    if (b->last_ms == 0) {
        b->tokens = per_minute;
        b->last_ms = now_ms;
        return;
    }
    double add = (double)(now_ms - b->last_ms) * per_minute / 60000.0;
    if (add > 0) {
        b->tokens += add;
        if (b->tokens > per_minute) b->tokens = per_minute;
        b->last_ms = now_ms;
    }
}

int bucket_take(bucket *b, int per_minute, int64_t now_ms) {
    if (per_minute <= 0) return 1;
    refill(b, per_minute, now_ms);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        b->noticed = false;
        return 1;
    }
    if (b->noticed) return -1;
    b->noticed = true;
    return 0;
}

bool bucket_full(const bucket *b, int per_minute, int64_t now_ms) {
    if (per_minute <= 0 || b->last_ms == 0) return true;
    double t = b->tokens + (double)(now_ms - b->last_ms) * per_minute / 60000.0;
    return t >= per_minute;
}
