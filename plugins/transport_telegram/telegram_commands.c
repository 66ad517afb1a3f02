/*
 * Bot commands: the list registered with setMyCommands at start (the
 * router's /new and /persona, then the manifest's `commands`), which in
 * groups also decides which plain /cmd (without @botname) is addressed to
 * this bot.
 */
#include "telegram.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Telegram's limits: 100 commands, names 1-32 of a-z 0-9 _, descriptions
 * 1-256 characters. */
#define CMDS_MAX 100
#define NAME_MAX_LEN 32
#define DESC_MAX_LEN 256

struct tg_cmds {
    char *name[CMDS_MAX + 1]; /* NULL-terminated */
    char *desc[CMDS_MAX];
    size_t n;
};

static const char *const builtin[][2] = {
    {"new", "Start a new conversation"},
    {"persona", "Show or switch the persona answering this chat"},
};

static int valid_name(const char *s, size_t n) {
    if (n < 1 || n > NAME_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int put(tg_cmds *c, const char *name, size_t nl, const char *desc) {
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->name[i]) == nl && !strncmp(c->name[i], name, nl)) {
            /* The manifest may word a built-in command its own way. */
            char *d = strdup(desc);
            if (!d) return -1;
            free(c->desc[i]);
            c->desc[i] = d;
            return 1;
        }
    if (c->n == CMDS_MAX) return -2;
    c->name[c->n] = strndup(name, nl);
    c->desc[c->n] = strdup(desc);
    if (!c->name[c->n] || !c->desc[c->n]) return -1;
    c->n++;
    c->name[c->n] = NULL;
    return 0;
}

/* "/name: description" -> name (length in *nl) and description; NULL
 * when the entry is not of that form. */
static const char *entry_name(const char *e, size_t *nl, const char **desc) {
    const char *colon = strchr(e, ':');
    const char *name = e[0] == '/' ? e + 1 : e;
    if (!colon || colon <= name) return NULL;
    size_t n = (size_t)(colon - name);
    while (n && name[n - 1] == ' ')
        n--;
    if (!valid_name(name, n)) return NULL;
    const char *d = colon + 1;
    while (*d == ' ' || *d == '\t')
        d++;
    *nl = n;
    *desc = d;
    return name;
}

rd_status tg_cmds_create(tg *t, rd_error *err) {
    tg_cmds *c = calloc(1, sizeof *c);
    if (!c) {
        t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
        return RD_E_INTERNAL;
    }
    t->cmds = c;
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (put(c, builtin[i][0], strlen(builtin[i][0]), builtin[i][1]) < 0) goto oom;
    const char *const *list = t->c.k.commands; /* empty when absent */
    for (size_t i = 0; list && list[i]; i++) {
        const char *e = list[i], *desc;
        if (!*e) continue;
        size_t nl;
        const char *name = entry_name(e, &nl, &desc);
        if (!name) {
            t->h->error(err, RD_E_CONFIG, "fatal",
                        "commands: '%.60s' is not NAME: DESCRIPTION with NAME 1-32 of a-z 0-9 _",
                        e);
            return RD_E_CONFIG;
        }
        size_t dl = utf8_chars(desc);
        if (dl < 1 || dl > DESC_MAX_LEN) {
            t->h->error(err, RD_E_CONFIG, "fatal",
                        "commands: the description of /%.*s must be 1-256 characters", (int)nl,
                        name);
            return RD_E_CONFIG;
        }
        for (size_t j = 0; j < i; j++) {
            size_t pl;
            const char *pd, *prev = entry_name(list[j], &pl, &pd);
            if (prev && pl == nl && !strncmp(prev, name, nl)) {
                t->h->error(err, RD_E_CONFIG, "fatal", "commands: /%.*s is listed twice", (int)nl,
                            name);
                return RD_E_CONFIG;
            }
        }
        int r = put(c, name, nl, desc);
        if (r == -2) {
            t->h->error(err, RD_E_CONFIG, "fatal", "commands: more than %d (Telegram's limit)",
                        CMDS_MAX);
            return RD_E_CONFIG;
        }
        if (r < 0) goto oom;
    }
    return RD_OK;
oom:
    t->h->error(err, RD_E_INTERNAL, "fatal", "out of memory");
    return RD_E_INTERNAL;
}

void tg_cmds_free(tg *t) {
    tg_cmds *c = t->cmds;
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->name[i]);
        free(c->desc[i]);
    }
    free(c);
    t->cmds = NULL;
}

const char *const *tg_cmds_names(tg *t) {
    return t->cmds ? (const char *const *)t->cmds->name : NULL;
}

char *tg_cmds_body(tg *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "commands");
    for (size_t i = 0; t->cmds && i < t->cmds->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "command", t->cmds->name[i]);
        cJSON_AddStringToObject(e, "description", t->cmds->desc[i]);
        cJSON_AddItemToArray(arr, e);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
