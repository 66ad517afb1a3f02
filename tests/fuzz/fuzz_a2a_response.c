/* JSON-RPC response and agent card parsing: arbitrary bytes as a response
 * (with and without an expected id) folded into a track, and as a card. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "a2a_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    char err[160];
    a2a_track t = {0};
    for (int pass = 0; pass < 2; pass++) {
        a2a_rpc r;
        if (a2a_rpc_parse(s, size, pass ? "rd-1" : NULL, &r, err, sizeof err) == 0) {
            if (r.is_error) {
                (void)a2a_classify_rpc(r.code);
                (void)a2a_rpc_code_name(r.code);
            } else {
                a2a_track_apply(&t, &r.res);
                a2a_track_apply(&t, &r.res);
            }
            a2a_rpc_free(&r);
        }
    }
    char *txt = a2a_track_artifact_text(&t);
    free(txt);
    a2a_track_free(&t);
    a2a_card c;
    if (a2a_card_parse(s, size, "http://agent:1/a/.well-known/agent-card.json", &c, err,
                       sizeof err) == 0) {
        if (!c.url_v10 && !c.url_v03) abort();
        a2a_card_free(&c);
    }
    return 0;
}
