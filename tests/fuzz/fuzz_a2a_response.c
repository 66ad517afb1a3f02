/* Fuzz target: JSON-RPC responses and agent cards as the a2a backend reads
 * them. Invariants: kinds are in range, strings are NUL-terminated, a card
 * either fails with a reason or yields an endpoint and a dialect. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "a2a.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    a2a_result r;
    a2a_parse_response(s, size, &r);
    if (r.kind < A2A_R_INVALID || r.kind > A2A_R_ARTIFACT) __builtin_trap();
    if (r.state < A2A_TS_UNKNOWN || r.state > A2A_TS_REJECTED) __builtin_trap();
    if (r.text) (void)strlen(r.text);
    if (r.status_text) (void)strlen(r.status_text);
    if (strlen(r.errmsg) >= sizeof r.errmsg) __builtin_trap();
    for (const char *p = r.errmsg; *p; p++)
        if (*p < 32 || *p > 126) __builtin_trap();
    a2a_result_free(&r);

    a2a_card c;
    char why[96] = "";
    if (a2a_card_parse(s, size, &c, why, sizeof why) == 0) {
        if (!c.rpc_url || (c.dialect != A2A_V10 && c.dialect != A2A_V03)) __builtin_trap();
        a2a_card_free(&c);
    } else if (!why[0] || c.rpc_url) {
        __builtin_trap();
    }
    return 0;
}
