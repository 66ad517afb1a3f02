/* Admission: whether a chat may reach the router through a transport (the
 * allowlist), which persona answers it (the manifest's map and /persona
 * choices kept in the store), and whether its rate limits let a message
 * through. router.c calls in; nothing here calls router.c. */
#include "admission.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Persona overrides set with /persona (chat id -> persona index), and the
 * manifest's chat -> persona map. Both resize with their entries; overrides
 * also keep a use order for expiry and the size bound. */
typedef struct ovr {
    struct ovr *next;          /* bucket chain */
    struct ovr *lprev, *lnext; /* use order, least recent first */
    int64_t chat_id;
    int idx;
    int64_t used_ms;
} ovr;
typedef struct idmap {
    ovr **b;
    size_t nb, n;
    ovr *lru_head, *lru_tail;
} idmap;
#define MAP_MIN 64
static idmap otab, mtab;

static size_t map_slot(const idmap *m, int64_t id) {
    return mix64((uint64_t)id) & (m->nb - 1);
}

static void map_resize(idmap *m, size_t nb) {
    ovr **nbk = xcalloc(nb, sizeof *nbk);
    for (size_t i = 0; i < m->nb; i++) {
        ovr *o = m->b[i];
        while (o) {
            ovr *n = o->next;
            size_t s = mix64((uint64_t)o->chat_id) & (nb - 1);
            o->next = nbk[s];
            nbk[s] = o;
            o = n;
        }
    }
    free(m->b);
    m->b = nbk;
    m->nb = nb;
}

static ovr *map_find(const idmap *m, int64_t id) {
    if (!m->nb) return NULL;
    for (ovr *o = m->b[map_slot(m, id)]; o; o = o->next)
        if (o->chat_id == id) return o;
    return NULL;
}

static void lru_unlink(idmap *m, ovr *o) {
    if (o->lprev)
        o->lprev->lnext = o->lnext;
    else if (m->lru_head == o)
        m->lru_head = o->lnext;
    if (o->lnext)
        o->lnext->lprev = o->lprev;
    else if (m->lru_tail == o)
        m->lru_tail = o->lprev;
    o->lprev = o->lnext = NULL;
}

static void map_touch(idmap *m, ovr *o, int64_t now) {
    o->used_ms = now;
    if (m->lru_tail == o) return;
    lru_unlink(m, o);
    o->lprev = m->lru_tail;
    if (m->lru_tail)
        m->lru_tail->lnext = o;
    else
        m->lru_head = o;
    m->lru_tail = o;
}

static void map_set(idmap *m, int64_t id, int idx) {
    ovr *o = map_find(m, id);
    if (!o) {
        if (m->n >= m->nb) map_resize(m, m->nb ? m->nb * 2 : MAP_MIN);
        o = xcalloc(1, sizeof *o);
        o->chat_id = id;
        size_t s = map_slot(m, id);
        o->next = m->b[s];
        m->b[s] = o;
        m->n++;
    }
    o->idx = idx;
    map_touch(m, o, mono_ms());
}

static void map_del(idmap *m, ovr *o) {
    ovr **pp = &m->b[map_slot(m, o->chat_id)];
    while (*pp && *pp != o)
        pp = &(*pp)->next;
    if (*pp) *pp = o->next;
    lru_unlink(m, o);
    m->n--;
    free(o);
    if (m->nb > MAP_MIN && m->n < m->nb / 4) map_resize(m, m->nb / 2);
}

static void map_free(idmap *m) {
    for (size_t i = 0; m->b && i < m->nb; i++) {
        ovr *o = m->b[i];
        while (o) {
            ovr *n = o->next;
            free(o);
            o = n;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

static int persona_index(const char *tag) {
    for (size_t i = 0; i < R.npersonas; i++)
        if (!strcmp(R.personas[i].tag, tag)) return (int)i;
    return -1;
}

static int load_override(void *arg, const char *key, const void *val, size_t len) {
    (void)arg, (void)len;
    int64_t id;
    int idx = persona_index(val);
    if (!parse_i64(key + 8, &id) && idx >= 0 && R.personas[idx].selectable) map_set(&otab, id, idx);
    return 0;
}

static void forget_overrides(int64_t *ids, size_t n, const char *why) {
    for (size_t i = 0; i < n; i++) {
        char key[40];
        snprintf(key, sizeof key, "persona:%" PRId64, ids[i]);
        store_del(R.st, "core", key);
    }
    if (n) LOGI("%zu /persona choice(s) forgotten (%s)", n, why);
}

/* Drops the least recently used overrides past persona_overrides_max. */
static void overrides_bound(void) {
    int64_t ids[256];
    size_t n = 0;
    pthread_mutex_lock(&R.mu);
    while (otab.n > (size_t)R.max_overrides && n < 256) {
        ids[n++] = otab.lru_head->chat_id;
        map_del(&otab, otab.lru_head);
    }
    series_set(R.m_overrides, (double)otab.n);
    pthread_mutex_unlock(&R.mu);
    forget_overrides(ids, n, "persona_overrides_max reached");
}

/* The manifest's chat -> persona map, then the /persona choices in the
 * store, bounded to persona_overrides_max. */
void admission_init(void) {
    for (size_t i = 0; i < R.npersonas; i++)
        for (char **c = R.personas[i].chats; c && *c; c++) {
            int64_t id;
            if (!parse_i64(*c, &id)) map_set(&mtab, id, (int)i);
        }
    if (R.persona_cmd) store_scan(R.st, "core", "persona:", load_override, NULL);
    if (otab.n > (size_t)R.max_overrides) overrides_bound();
}

void admission_fini(void) {
    map_free(&otab);
    map_free(&mtab);
}

bool admission_allowed(const rd_ctx *tr, int64_t id) {
    if (!tr->allow) return true;
    size_t lo = 0, hi = tr->nallow;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tr->allow[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tr->nallow && tr->allow[lo] == id;
}

/* The persona the manifest gives a chat, ignoring /persona choices. */
static persona *manifest_persona_locked(int64_t chat_id) {
    ovr *o = map_find(&mtab, chat_id);
    return o ? &R.personas[o->idx] : R.default_persona;
}

persona *admission_persona_locked(int64_t chat_id) {
    ovr *o = map_find(&otab, chat_id);
    if (o) {
        map_touch(&otab, o, mono_ms());
        return &R.personas[o->idx];
    }
    return manifest_persona_locked(chat_id);
}

int admission_rate_locked(bucket *chat_rl, persona *p, int64_t now) {
    int rl = bucket_take(chat_rl, p->chat_limit, now);
    if (rl == 1 && p->total_limit > 0) rl = bucket_take(&p->total, p->total_limit, now);
    return rl;
}

bool admission_is_persona_cmd(const job *j) {
    if (!R.persona_cmd || strncmp(j->text, "/persona", 8)) return false;
    char c = j->text[8];
    return c == 0 || c == ' ' || c == '@' || c == '\t' || c == '\n';
}

char *admission_persona_command(job *j) {
    const char *arg = j->text + strlen("/persona");
    if (*arg == '@') arg += strcspn(arg, " \t");
    while (*arg == ' ' || *arg == '\t')
        arg++;
    char *name = xstrndup(arg, strcspn(arg, " \t\r\n"));
    /* The persona was resolved at intake; a switch queued before this
     * command in the same chat has run since. */
    pthread_mutex_lock(&R.mu);
    persona *now = admission_persona_locked(j->chat_id);
    pthread_mutex_unlock(&R.mu);
    if (now) j->p = now;
    char list[1024];
    size_t off = 0;
    list[0] = 0;
    for (size_t i = 0; i < R.npersonas && off < sizeof list; i++) {
        persona *p = &R.personas[i];
        if (!p->selectable) continue;
        /* A Markdown list (transports render it), readable as plain text. */
        off +=
            (size_t)snprintf(list + off, sizeof list - off, "%s- %s%s%s%s", off ? "\n" : "", p->tag,
                             p->description ? ": " : "", p->description ? p->description : "",
                             p == j->p ? " (current)" : "");
    }
    char *reply;
    if (!*name) {
        reply = xasprintf("Current persona: %s\nAvailable:\n%s\n\nSwitch with /persona NAME.",
                          j->p->tag, list);
    } else {
        int idx = persona_index(name);
        if (idx < 0 || !R.personas[idx].selectable) {
            reply = xasprintf("Unknown persona '%s'. Available:\n%s", name, list);
        } else {
            char key[40];
            snprintf(key, sizeof key, "persona:%" PRId64, j->chat_id);
            pthread_mutex_lock(&R.mu);
            /* Back to what the manifest gives: no override to keep. */
            bool plain = manifest_persona_locked(j->chat_id) == &R.personas[idx];
            ovr *o = map_find(&otab, j->chat_id);
            if (plain && o)
                map_del(&otab, o);
            else if (!plain)
                map_set(&otab, j->chat_id, idx);
            pthread_mutex_unlock(&R.mu);
            if (plain)
                store_del(R.st, "core", key);
            else
                store_put(R.st, "core", key, name, strlen(name));
            overrides_bound();
            reply = xasprintf("Persona switched to %s.", name);
        }
    }
    free(name);
    return reply;
}

void admission_sweep(int64_t now) {
    int64_t ids[256];
    size_t nids = 0;
    pthread_mutex_lock(&R.mu);
    if (R.override_idle_ms > 0)
        while (otab.lru_head && now - otab.lru_head->used_ms > R.override_idle_ms && nids < 256) {
            ids[nids++] = otab.lru_head->chat_id;
            map_del(&otab, otab.lru_head);
        }
    series_set(R.m_overrides, (double)otab.n);
    pthread_mutex_unlock(&R.mu);
    forget_overrides(ids, nids, "unused for persona_override_idle_days");
}

/* A replica that starts leading takes the /persona choices that other
 * replicas stored meanwhile (the store is shared). */
static int reload_override(void *arg, const char *key, const void *val, size_t len) {
    pthread_mutex_lock(&R.mu);
    load_override(arg, key, val, len);
    pthread_mutex_unlock(&R.mu);
    return 0;
}

void admission_reload_overrides(void) {
    if (R.persona_cmd) store_scan(R.st, "core", "persona:", reload_override, NULL);
}
