/* Helpers shared by the sinks' integration tests. */
#include "test_sinks_util.h"

#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

char *sk_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char tmp[65536];
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        memcpy(buf + len, tmp, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    else
        buf[len] = 0;
    return buf;
}

int sk_run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, p)) > 0)
        fwrite(tmp, 1, n, m);
    fclose(m);
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool sk_have(const char *prog) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return sk_run(cmd, NULL) == 0;
}

bool sk_has_number(const char *hay, const char *num) {
    size_t n = strlen(num);
    for (const char *p = hay; (p = strstr(p, num)); p++) {
        bool before = p > hay && isdigit((unsigned char)p[-1]);
        bool after = isdigit((unsigned char)p[n]);
        if (!before && !after) return true;
    }
    return false;
}

double sk_metric(const char *text, const char *name, const char *const *labels) {
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (line[0] != '#' && len > nl && !strncmp(line, name, nl) &&
            (line[nl] == '{' || line[nl] == ' ')) {
            char *l = strndup(line, len);
            bool all = true;
            for (size_t i = 0; labels && labels[i]; i++)
                if (!strstr(l, labels[i])) all = false;
            const char *v = strrchr(l, ' ');
            if (all && v) sum += strtod(v + 1, NULL);
            free(l);
        }
        line = eol ? eol + 1 : NULL;
    }
    return sum;
}

static const char *const mandatory_str[] = {"ts", "level", "event", "env", "build_sha", NULL};
static const char *const nullable[] = {"correlation_id", "chat_id_hash", "persona_tag", "status",
                                       NULL};

cJSON *sk_log_line(const char *line, const char *env, char *why, size_t whysz) {
    cJSON *o = cJSON_Parse(line);
    if (!o || !cJSON_IsObject(o)) {
        snprintf(why, whysz, "not a JSON object: %.200s", line);
        cJSON_Delete(o);
        return NULL;
    }
    for (int i = 0; mandatory_str[i]; i++)
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, mandatory_str[i]))) {
            snprintf(why, whysz, "%s missing or not a string: %.200s", mandatory_str[i], line);
            goto bad;
        }
    for (int i = 0; nullable[i]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, nullable[i]);
        if (!v || !(cJSON_IsString(v) || cJSON_IsNull(v))) {
            snprintf(why, whysz, "%s missing or mistyped: %.200s", nullable[i], line);
            goto bad;
        }
    }
    cJSON *lat = cJSON_GetObjectItemCaseSensitive(o, "latency_ms");
    if (!lat || !(cJSON_IsNumber(lat) || cJSON_IsNull(lat))) {
        snprintf(why, whysz, "latency_ms missing or mistyped: %.200s", line);
        goto bad;
    }
    regex_t re;
    regcomp(&re, "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z$",
            REG_EXTENDED | REG_NOSUB);
    int m = regexec(&re, cJSON_GetObjectItem(o, "ts")->valuestring, 0, NULL, 0);
    regfree(&re);
    if (m) {
        snprintf(why, whysz, "ts is not RFC 3339 UTC with ms: %.200s", line);
        goto bad;
    }
    const char *lv = cJSON_GetObjectItem(o, "level")->valuestring;
    if (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error")) {
        snprintf(why, whysz, "unknown level: %.200s", line);
        goto bad;
    }
    const char *ev = cJSON_GetObjectItem(o, "event")->valuestring;
    if (strcmp(ev, "log") && strcmp(ev, "received") && strcmp(ev, "rejected") &&
        strcmp(ev, "replied") && strcmp(ev, "send_failed")) {
        snprintf(why, whysz, "unknown event: %.200s", line);
        goto bad;
    }
    if (env && strcmp(cJSON_GetObjectItem(o, "env")->valuestring, env)) {
        snprintf(why, whysz, "env is not %s: %.200s", env, line);
        goto bad;
    }
    if (strcmp(ev, "log")) { /* message events name their message */
        cJSON *c = cJSON_GetObjectItem(o, "correlation_id");
        cJSON *h = cJSON_GetObjectItem(o, "chat_id_hash");
        if (!cJSON_IsString(c) || strlen(c->valuestring) != 32 || !cJSON_IsString(h) ||
            strlen(h->valuestring) < 16) {
            snprintf(why, whysz, "message event without ids: %.200s", line);
            goto bad;
        }
    }
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

const char *sk_src(const char *rel) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", ROUTERD_SOURCE_DIR, rel);
    return b;
}
