/* Non-cryptographic hashing for tables, identifiers and change checks. */
#ifndef ROUTERD_COMMON_HASH_MIX_H
#define ROUTERD_COMMON_HASH_MIX_H

#include <stddef.h>
#include <stdint.h>

/* Scrambles all 64 bits of x (the MurmurHash3 finaliser): nearby inputs
 * give unrelated outputs, and the low bits are fit for table indexes. */
uint64_t hash_mix64(uint64_t x);

/* FNV-1a over n bytes, continuing from h (HASH_FNV1A_SEED to start). */
#define HASH_FNV1A_SEED 0xcbf29ce484222325ULL
uint64_t hash_fnv1a(uint64_t h, const void *data, size_t n);

#endif
