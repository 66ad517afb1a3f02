/* JSON-RPC response and agent card parsing: arbitrary bytes as a response
 * (with and without an expected id) folded into a track, and as a card;
 * as a REST answer of either binding (wrapped, or read as an error), as a
 * pushed notification, and as the JSON-RPC body a REST request is derived
 * from. */
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
        if (!c.url_v10 && !c.url_v03 && !c.url_rest && !c.url_rest03) abort();
        a2a_card_free(&c);
    }
    char *w = a2a_rest_wrap(s, size);
    a2a_rpc r;
    if (w && a2a_rpc_parse(w, strlen(w), NULL, &r, err, sizeof err) == 0) a2a_rpc_free(&r);
    free(w);
    char *n = a2a_rest03_normalize(s, size); /* the 0.3 binding's shapes */
    w = n ? a2a_rest_wrap(n, strlen(n)) : NULL;
    if (w && a2a_rpc_parse(w, strlen(w), NULL, &r, err, sizeof err) == 0) a2a_rpc_free(&r);
    free(w);
    free(n);
    char *pt = a2a_push_task_id(s, size); /* a pushed body */
    if (pt && strlen(pt) > 512) abort();
    free(pt);
    int code;
    char *msg;
    if (a2a_rest_error(s, size, &code, &msg) == 0) {
        if (code > -32001 && code != A2A_ERR_INVALID_PARAMS) abort();
        free(msg);
    }
    char *body = malloc(size + 1);
    if (body) {
        memcpy(body, s, size);
        body[size] = 0;
        for (int op = A2A_OP_SEND; op <= A2A_OP_SUBSCRIBE; op++) {
            char *path, *rb;
            if (a2a_rest_request((a2a_op)op, body, &path, &rb) == 0) {
                if (path[0] != '/' && path[0] != 0) abort();
                free(path);
                free(rb);
            }
            if (a2a_rest03_request((a2a_op)op, body, &path, &rb) == 0) {
                if (strncmp(path, "/v1/", 4)) abort();
                free(path);
                free(rb);
            }
        }
        free(body);
    }
    return 0;
}
