/* routerd -c A --diff-config B: the promotion gate between environments.
 * Compares the two manifests' key sets (section + key; values are never
 * read, so secrets cannot show), and checks that every key a plugin
 * requires is present in both. */
#include "config.h"
#include "core.h"

#include <stdlib.h>
#include <string.h>

static bool has_key(manifest *m, const char *sec, const char *key) {
    mf_section *s = manifest_section(m, sec);
    return s && section_get(s, key);
}

static void print_side(FILE *out, manifest *from, manifest *other, char sign, size_t *count,
                       const char *label) {
    for (size_t i = 0; i < from->nsec; i++) {
        mf_section *s = &from->sec[i];
        bool header = false;
        for (size_t k = 0; k < s->nkv; k++) {
            if (has_key(other, s->name, s->kv[k].key)) continue;
            if (!header) {
                fprintf(out, "[%s] %s%s\n", s->name, label,
                        manifest_section(other, s->name) ? "" : " (whole section)");
                header = true;
            }
            fprintf(out, "  %c %s\n", sign, s->kv[k].key);
            (*count)++;
        }
    }
}

static size_t count_keys(manifest *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->nsec; i++)
        n += m->sec[i].nkv;
    return n;
}

/* Keys a plugin (or the persona schema) marks required but the section
 * lacks. Returns the number of problems printed. */
static int check_required(manifest *m, const char *plugin_dir, FILE *out) {
    int bad = 0;
    for (size_t i = 0; i < m->nsec; i++) {
        mf_section *s = &m->sec[i];
        const rd_option *opts = NULL;
        size_t osz = sizeof(rd_option);
        const char *what = NULL;
        if (!strcmp(s->kind, "persona")) {
            opts = persona_opts;
            what = "persona";
        } else if (strcmp(s->kind, "router")) {
            rd_kind kind = !strcmp(s->kind, "transport") ? RD_KIND_TRANSPORT
                           : !strcmp(s->kind, "backend") ? RD_KIND_BACKEND
                           : !strcmp(s->kind, "inbound") ? RD_KIND_INBOUND
                                                         : RD_KIND_SINK;
            mf_kv *pk = section_get(s, "plugin");
            if (!pk || !*pk->val) {
                fprintf(out, "%s: [%s] missing required key 'plugin'\n", m->path, s->name);
                bad++;
                continue;
            }
            if (strchr(pk->val, '$')) continue; /* chosen by the environment */
            char err[768];
            plugin_so *so = plugin_load(plugin_dir, kind, pk->val, NULL, err, sizeof err);
            if (!so) {
                fprintf(out, "%s: [%s] cannot check required keys: %s\n", m->path, s->name, err);
                bad++;
                continue;
            }
            opts = so->desc->options;
            osz = plugin_option_size(so->desc);
            what = so->desc->name;
        }
        for (size_t k = 0; opts && opt_step(opts, osz, k)->key; k++) {
            const rd_option *o = opt_step(opts, osz, k);
            if ((o->flags & RD_OPT_REQUIRED) && !section_get(s, o->key)) {
                fprintf(out, "%s: [%s] missing key '%s' required by %s\n", m->path, s->name, o->key,
                        what);
                bad++;
            }
        }
    }
    return bad;
}

int diff_config(const char *a, const char *b, double max_pct, const char *plugin_dir, FILE *out) {
    char err[1024];
    manifest *ma = manifest_load_raw(a, err, sizeof err);
    if (!ma) {
        fprintf(stderr, "routerd: %s\n", err);
        return EX_CONFIG_;
    }
    manifest *mb = manifest_load_raw(b, err, sizeof err);
    if (!mb) {
        fprintf(stderr, "routerd: %s\n", err);
        manifest_free(ma);
        return EX_CONFIG_;
    }
    fprintf(out, "--- %s\n+++ %s\n", a, b);
    size_t added = 0, removed = 0;
    print_side(out, ma, mb, '-', &removed, "removed");
    print_side(out, mb, ma, '+', &added, "added");
    size_t na = count_keys(ma), nb = count_keys(mb);
    size_t uni = na + added; /* A's keys plus those only in B */
    (void)nb;
    double pct = uni ? 100.0 * (double)(added + removed) / (double)uni : 0.0;
    int missing = check_required(ma, plugin_dir, out) + check_required(mb, plugin_dir, out);
    bool over = pct > max_pct;
    fprintf(out, "drift: %.1f %% (%zu added + %zu removed of %zu keys; max %.1f %%)%s\n", pct,
            added, removed, uni, max_pct,
            over      ? ": FAIL"
            : missing ? ": FAIL (required keys missing)"
                      : ": ok");
    manifest_free(ma);
    manifest_free(mb);
    return over || missing ? 1 : 0;
}
