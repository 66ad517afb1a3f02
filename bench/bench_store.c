/*
 * Store growth over simulated months: a million distinct chats arrive
 * evenly over `days` days (plus a share of returning chats each day), each
 * with a conversation row as the a2a backend writes it, against the SQLite
 * store with the router's upkeep run once a simulated day. Prints the rows,
 * the database and WAL sizes and the resident memory as days pass: with
 * retention_days they level off once the oldest conversations expire.
 *
 *   bench_store [CHATS] [DAYS] [RETENTION_DAYS]     (1000000 200 90)
 */
#include "core.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t sim_now;

static int64_t sim_clock(void) {
    return sim_now;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}

static int count_cb(void *arg, const char *k, const void *v, size_t n) {
    (void)k, (void)v, (void)n;
    ++*(long *)arg;
    return 0;
}

int main(int argc, char **argv) {
    long chats = argc > 1 ? atol(argv[1]) : 1000000;
    int days = argc > 2 ? atoi(argv[2]) : 200;
    int keep = argc > 3 ? atoi(argv[3]) : 90;
    if (chats < 1 || days < 1 || keep < 0) {
        fprintf(stderr, "usage: bench_store [CHATS] [DAYS] [RETENTION_DAYS]\n");
        return 64;
    }
    char tmpl[] = "/tmp/routerd-bench-store.XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return 1;
    char *state = xasprintf("%s/state", dir), *db = xasprintf("%s/routerd.db", state);
    char *wal = xasprintf("%s-wal", db);
    sim_now = 1700000000;
    store_opts o = {.sync_full = false,
                    .lease_ms = 10000,
                    .retention_s = (int64_t)keep * 86400,
                    .wal_limit_b = 64 << 20,
                    .now = sim_clock};
    char err[512];
    store *st = store_open_with("sqlite", state, NULL, &o, err, sizeof err);
    if (!st) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%ld chats over %d days, retention_days = %d\n", chats, days, keep);
    printf("%5s %10s %12s %10s %9s\n", "day", "rows", "db bytes", "wal bytes", "RSS KiB");
    long next = 0;
    const char *val = "{\"context\":\"0b6f9a8e-3c1d-4f2a-9e7b-5d8c1a2b3c4d\"}";
    for (int d = 1; d <= days; d++) {
        sim_now += 86400;
        long first = next, upto = (long)((double)chats * d / days);
        /* New chats today, and a fifth as many returning ones. */
        long returning = (upto - first) / 5;
        long n = upto - first + returning;
        rd_kv_op ops[500];
        char keys[500][48];
        long done = 0;
        while (done < n) {
            size_t k = 0;
            for (; k < 500 && done < n; k++, done++) {
                long chat = done < upto - first ? first + done
                                                : (long)(rand_u64() % (uint64_t)(next ? next : 1));
                snprintf(keys[k], sizeof keys[k], "conv:%ld:helper", chat);
                ops[k] =
                    (rd_kv_op){.op = RD_KV_PUT, .key = keys[k], .val = val, .val_len = strlen(val)};
            }
            if (store_txn(st, "backend.helper", ops, k) != RD_OK) {
                fprintf(stderr, "day %d: write failed\n", d);
                return 1;
            }
        }
        next = upto;
        store_maintain(st, sim_now);
        if (d % 10 == 0 || d == days) {
            long rows = 0;
            store_scan(st, "backend.helper", "conv:", count_cb, &rows);
            printf("%5d %10ld %12lld %10lld %9ld\n", d, rows, file_size(db), file_size(wal),
                   rss_kib());
            fflush(stdout);
        }
    }
    store_close(st);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(cmd);
    free(state);
    free(db);
    free(wal);
    return 0;
}
