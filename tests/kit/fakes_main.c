/* routerd_fakes: the test fakes as a program, for scripts (smoke, soak,
 * supervisor tests). Starts a fake Telegram Bot API and a fake A2A agent on
 * 127.0.0.1, prints their addresses, then obeys one command per line on
 * stdin and answers on stdout:
 *   send CHAT TEXT     queue a user message          -> ok UPDATE_ID
 *   wait N MS          wait for N replies sent       -> count N
 *   replies            every reply so far            -> reply CHAT TEXT ... end
 *   confirmed          offset routerd confirmed      -> offset N
 *   pending            updates not yet confirmed     -> pending N
 *   quit               stop (so does end of input)
 * Usage: routerd_fakes [BOT_TOKEN]   (default: $TELEGRAM_BOT_TOKEN) */
#include "fake_a2a.h"
#include "fake_telegram.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_text(const char *t) {
    for (; t && *t; t++) {
        if (*t == '\n')
            fputs("\\n", stdout);
        else if (*t == '\\')
            fputs("\\\\", stdout);
        else
            putchar(*t);
    }
}

int main(int argc, char **argv) {
    const char *env = getenv("TELEGRAM_BOT_TOKEN");
    const char *token = argc > 1 ? argv[1] : env && *env ? env : "123456:smoke-token";
    ftg *tg = ftg_start(token);
    fa2a_opts o = {0};
    fa2a *ag = fa2a_start(&o);
    if (!tg || !ag) {
        fprintf(stderr, "routerd_fakes: cannot start the fake servers\n");
        return 1;
    }
    printf("TELEGRAM_API_BASE=%s\nA2A_BASE_URL=%s\nREADY\n", ftg_base(tg), fa2a_url(ag));
    fflush(stdout);
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char *cmd = strtok(line, " ");
        if (!cmd) continue;
        if (!strcmp(cmd, "send")) {
            char *chat = strtok(NULL, " ");
            char *text = strtok(NULL, "");
            if (!chat || !text) {
                puts("error: send CHAT TEXT");
            } else {
                int64_t id = ftg_add_text(tg, strtoll(chat, NULL, 10), text);
                printf("ok %" PRId64 "\n", id);
            }
        } else if (!strcmp(cmd, "wait")) {
            char *n = strtok(NULL, " "), *ms = strtok(NULL, " ");
            size_t got = ftg_wait_count(tg, "sendMessage", n ? strtoull(n, NULL, 10) : 1,
                                        ms ? atoi(ms) : 10000);
            printf("count %zu\n", got);
        } else if (!strcmp(cmd, "replies")) {
            ftg_rec *r = NULL;
            size_t n = ftg_records(tg, "sendMessage", 1, &r);
            for (size_t i = 0; i < n; i++) {
                printf("reply %" PRId64 " ", r[i].chat_id);
                print_text(r[i].text);
                putchar('\n');
            }
            puts("end");
            ftg_recs_free(r, n);
        } else if (!strcmp(cmd, "confirmed")) {
            printf("offset %" PRId64 "\n", ftg_confirmed_offset(tg));
        } else if (!strcmp(cmd, "pending")) {
            printf("pending %zu\n", ftg_unconfirmed(tg));
        } else if (!strcmp(cmd, "quit")) {
            break;
        } else {
            printf("error: unknown command %s\n", cmd);
        }
        fflush(stdout);
    }
    fa2a_stop(ag);
    ftg_stop(tg);
    return 0;
}
