/* Plugin loading: dlopen, descriptor checks, cache by path. */
#include "core.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static plugin_so **cache;
static size_t ncache;

const char *kind_name(rd_kind k) {
    switch (k) {
    case RD_KIND_TRANSPORT:
        return "transport";
    case RD_KIND_BACKEND:
        return "backend";
    case RD_KIND_SINK:
        return "sink";
    case RD_KIND_INBOUND:
        return "inbound";
    }
    return "unknown";
}

/* Checks everything the host relies on; returns a problem or NULL. */
static const char *check_desc(const rd_plugin *d, rd_kind want, char *tmp, size_t tmpsz) {
    if (d->abi_major != RD_ABI_MAJOR) {
        snprintf(tmp, tmpsz, "built for plugin ABI %u.x, this routerd speaks %d.x (rebuild it)",
                 d->abi_major, RD_ABI_MAJOR);
        return tmp;
    }
    if (d->abi_minor > RD_ABI_MINOR) {
        snprintf(tmp, tmpsz, "needs plugin ABI 1.%u, this routerd speaks 1.%d (upgrade routerd)",
                 d->abi_minor, RD_ABI_MINOR);
        return tmp;
    }
    if (d->size < offsetof(rd_plugin, reserved)) return "descriptor is too small";
    if (!d->name || !*d->name) return "descriptor has no name";
    if (!d->ops || d->ops->size < offsetof(rd_ops, flush) + sizeof(void *))
        return "ops table missing or too small";
    if (RD_HAS(d, reserved))
        for (size_t i = 0; i < 4; i++)
            if (d->reserved[i]) return "reserved descriptor fields must be NULL";
    size_t osz = plugin_option_size(d);
    if (osz < RD_OPTION_SIZE_V1) {
        snprintf(tmp, tmpsz, "option_size %zu is smaller than the ABI 1.0 rd_option (%zu bytes)",
                 osz, (size_t)RD_OPTION_SIZE_V1);
        return tmp;
    }
    if (want && d->kind != want) {
        snprintf(tmp, tmpsz, "is a%s %s plugin, not a%s %s", d->kind == RD_KIND_INBOUND ? "n" : "",
                 kind_name(d->kind), want == RD_KIND_INBOUND ? "n" : "", kind_name(want));
        return tmp;
    }
    const rd_ops *o = d->ops;
    if (!o->create) return "ops.create is missing";
    if (d->kind == RD_KIND_BACKEND && !o->handle) return "backend without ops.handle";
    if (d->kind == RD_KIND_TRANSPORT && !o->send) return "transport without ops.send";
    if (d->kind == RD_KIND_SINK && !o->event) return "sink without ops.event";
    /* intercept exists only when the plugin's ops table is a 1.3 one. */
    if (d->kind == RD_KIND_INBOUND &&
        (o->size < offsetof(rd_ops, intercept) + sizeof o->intercept || !o->intercept))
        return "inbound without ops.intercept";
    if (d->kind < RD_KIND_TRANSPORT || d->kind > RD_KIND_INBOUND) return "unknown plugin kind";
    /* options may be NULL: a plugin without keys. */
    for (size_t i = 0; d->options && opt_at(d, i)->key; i++) {
        const rd_option *opt = opt_at(d, i);
        if (opt->type < RD_OPT_STRING || opt->type > RD_OPT_URL) {
            snprintf(tmp, tmpsz, "option '%s' has an unknown type", opt->key);
            return tmp;
        }
        if (opt->type == RD_OPT_ENUM && !opt->choices) {
            snprintf(tmp, tmpsz, "enum option '%s' has no choices", opt->key);
            return tmp;
        }
        /* The binding members exist only when the element size covers them. */
        if (osz < offsetof(rd_option, bind_len) + sizeof opt->bind_len || !opt->bind_len) continue;
        size_t want = bind_member_size(opt->type);
        if (opt->bind_len != want) {
            snprintf(tmp, tmpsz,
                     "option '%s' is bound to a %u-byte member, a %s option needs %zu bytes (%s)",
                     opt->key, opt->bind_len, opt_type_name(opt->type), want,
                     opt->type == RD_OPT_STRING || opt->type == RD_OPT_URL     ? "const char *"
                     : opt->type == RD_OPT_INT || opt->type == RD_OPT_DURATION ? "int64_t"
                     : opt->type == RD_OPT_DOUBLE                              ? "double"
                     : opt->type == RD_OPT_LIST ? "const char *const *"
                                                : "int");
            return tmp;
        }
    }
    return NULL;
}

static int check_pin(const char *path, const char *have, const char *pin, char *err, size_t errsz) {
    if (!pin || !strcasecmp(have, pin)) return 0;
    snprintf(err, errsz, "%s: SHA-256 is %s, the manifest pins %s", path, have, pin);
    return -1;
}

const rd_plugin *plugin_dlopen(const char *path, const char *real, rd_kind want, void **dl,
                               char *err, size_t errsz) {
    dlerror();
    *dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!*dl) {
        const char *e = dlerror();
        snprintf(err, errsz, "%s: cannot load plugin: %s", path, e ? e : "unknown error");
        return NULL;
    }
    const rd_plugin *d = dlsym(*dl, RD_PLUGIN_SYMBOL);
    char tmp[256];
    const char *p = d ? check_desc(d, want, tmp, sizeof tmp) : NULL;
    if (!d)
        snprintf(err, errsz,
                 "%s: not a routerd ABI %d plugin (no symbol %s; built for another ABI major?)",
                 path, RD_ABI_MAJOR, RD_PLUGIN_SYMBOL);
    else if (p)
        snprintf(err, errsz, "%s: plugin '%s' refused: %s", path, d->name ? d->name : "?", p);
    if (!d || p) {
        dlclose(*dl);
        *dl = NULL;
        return NULL;
    }
    return d;
}

static plugin_so *open_path(const char *path, rd_kind want, const char *pin, char *err,
                            size_t errsz) {
    char real[4096];
    if (!realpath(path, real)) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < ncache; i++)
        if (!strcmp(cache[i]->path, real)) {
            char tmp[256];
            const char *p = check_desc(cache[i]->desc, want, tmp, sizeof tmp);
            if (p) {
                snprintf(err, errsz, "%s: %s", path, p);
                return NULL;
            }
            if (check_pin(path, cache[i]->sha256, pin, err, errsz)) return NULL;
            return cache[i];
        }
    /* Before dlopen runs any of its code: who may write it, and is it the
     * file the manifest pins? */
    char folder[4096], sha[65];
    snprintf(folder, sizeof folder, "%s", real);
    char *slash = strrchr(folder, '/');
    if (slash) *(slash == folder ? slash + 1 : slash) = 0;
    if (check_not_writable(folder, true, err, errsz) ||
        check_not_writable(real, false, err, errsz) || sha256_file_hex(real, sha, err, errsz) ||
        check_pin(path, sha, pin, err, errsz))
        return NULL;
    void *dl;
    const rd_plugin *d = plugin_dlopen(path, real, want, &dl, err, errsz);
    if (!d) return NULL;
    for (size_t i = 0; i < ncache; i++)
        if (cache[i]->desc->kind == d->kind && !strcmp(cache[i]->desc->name, d->name)) {
            snprintf(err, errsz, "%s: a %s plugin named '%s' is already loaded from %s", path,
                     kind_name(d->kind), d->name, cache[i]->path);
            dlclose(dl);
            return NULL;
        }
    plugin_so *so = xcalloc(1, sizeof *so);
    so->path = xstrdup(real);
    so->dl = dl;
    so->desc = d;
    memcpy(so->sha256, sha, sizeof so->sha256);
    cache = xrealloc(cache, (ncache + 1) * sizeof *cache);
    cache[ncache++] = so;
    return so;
}

char *plugin_find(const char *plugin_dirs, const char *file) {
    char **dirs = split_list(plugin_dirs ? plugin_dirs : "");
    char *found = NULL;
    struct stat st;
    for (size_t i = 0; dirs[i] && !found; i++) {
        char *path = xasprintf("%s/%s", dirs[i], file);
        if (stat(path, &st) == 0)
            found = path;
        else
            free(path);
    }
    free_list(dirs);
    return found;
}

/* "D1/file, D2/file" for messages. */
static char *looked_in(const char *plugin_dirs, const char *file) {
    char **dirs = split_list(plugin_dirs ? plugin_dirs : "");
    char *out = xstrdup("");
    for (size_t i = 0; dirs[i]; i++) {
        char *next = xasprintf("%s%s%s/%s", out, i ? ", " : "", dirs[i], file);
        free(out);
        out = next;
    }
    free_list(dirs);
    return out;
}

plugin_so *plugin_load(const char *plugin_dir, rd_kind kind, const char *name_or_path,
                       const char *pin, char *err, size_t errsz) {
    if (strchr(name_or_path, '/')) return open_path(name_or_path, kind, pin, err, errsz);
    for (const char *c = name_or_path; *c; c++)
        if (!(*c == '_' || *c == '-' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))) {
            snprintf(err, errsz, "'%s' is not a plugin name (lowercase letters, digits, _ -)",
                     name_or_path);
            return NULL;
        }
    char *file = xasprintf("%s_%s.so", kind_name(kind), name_or_path);
    /* The first folder of the list that has the file wins. */
    char *path = plugin_find(plugin_dir, file);
    if (!path) {
        char *where = looked_in(plugin_dir, file);
        snprintf(err, errsz, "no %s plugin '%s' (looked for %s)", kind_name(kind), name_or_path,
                 *where ? where : file);
        free(where);
        free(file);
        return NULL;
    }
    free(file);
    plugin_so *so = open_path(path, kind, pin, err, errsz);
    if (so && strcmp(so->desc->name, name_or_path)) {
        snprintf(err, errsz, "%s: declares name '%s', expected '%s'", path, so->desc->name,
                 name_or_path);
        so = NULL;
    }
    free(path);
    return so;
}

void plugins_unload_all(void) {
    for (size_t i = 0; i < ncache; i++) {
        /* Plugins are never unloaded while the process runs; at exit the
         * handles are closed so leak checkers see a clean state. */
        dlclose(cache[i]->dl);
        free(cache[i]->path);
        free(cache[i]);
    }
    free(cache);
    cache = NULL;
    ncache = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_plugin(const rd_plugin *d, bool md, FILE *out) {
    if (md) {
        fprintf(out, "### %s `%s` (%s)\n\n%s\n\n", kind_name(d->kind), d->name, d->version,
                d->summary ? d->summary : "");
        fprintf(out, "| key | type | default | required | secret | description |\n");
        fprintf(out, "| --- | --- | --- | --- | --- | --- |\n");
        fprintf(out, "| `plugin` | string | | yes | | `%s` or a path to the .so |\n", d->name);
        if (d->kind == RD_KIND_TRANSPORT)
            fprintf(out, "| `allowlist` | list | | | | chat ids allowed; empty = everyone |\n");
        fprintf(out, "| `sha256` | string | | | | pin: the .so's SHA-256; any other file is "
                     "refused before it is loaded |\n");
    } else {
        fprintf(out, "%s %s %s: %s\n", kind_name(d->kind), d->name, d->version,
                d->summary ? d->summary : "");
    }
    for (size_t oi = 0; d->options && opt_at(d, oi)->key; oi++) {
        const rd_option *o = opt_at(d, oi);
        char type[160];
        if (o->type == RD_OPT_ENUM) {
            int off = snprintf(type, sizeof type, md ? "one of" : "enum:");
            for (size_t i = 0; o->choices[i] && off > 0 && (size_t)off < sizeof type; i++)
                off += snprintf(type + off, sizeof type - (size_t)off, "%s%s", i ? "|" : " ",
                                o->choices[i]);
        } else {
            snprintf(type, sizeof type, "%s", opt_type_name(o->type));
        }
        if (md)
            fprintf(out, "| `%s` | %s | %s%s%s | %s | %s | %s |\n", o->key, type,
                    o->def && *o->def ? "`" : "", o->def ? o->def : "",
                    o->def && *o->def ? "`" : "", o->flags & RD_OPT_REQUIRED ? "yes" : "",
                    o->flags & RD_OPT_SECRET ? "yes" : "", o->help ? o->help : "");
        else
            fprintf(out, "    %-22s %-14s%s%s%s%s  %s\n", o->key, type,
                    o->flags & RD_OPT_REQUIRED ? " required" : "",
                    o->flags & RD_OPT_SECRET ? " secret" : "", o->def ? " default=" : "",
                    o->def ? o->def : "", o->help ? o->help : "");
    }
    fputc('\n', out);
}

/* Appends dir's .so files whose names no earlier folder had. */
static int list_dir(const char *dir, char ***names, size_t *n, size_t first) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "routerd: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    size_t before = *n;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= 3 || strcmp(e->d_name + l - 3, ".so")) continue;
        bool shadowed = false;
        for (size_t i = first; i < before && !shadowed; i++)
            shadowed = !strcmp(strrchr((*names)[i], '/') + 1, e->d_name);
        if (shadowed) continue;
        *names = xrealloc(*names, (*n + 1) * sizeof **names);
        (*names)[(*n)++] = xasprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(*names + before, *n - before, sizeof **names, cmp_str);
    return 0;
}

/* What the Markdown reference says before the plugins. */
static void print_md_intro(FILE *out) {
    fprintf(out,
            "# Plugin reference\n\n"
            "Generated by `routerd --list-plugins --markdown` from the plugins' option tables "
            "(plugin ABI %d.%d). Each plugin is configured in a manifest section named after its "
            "kind: `[transport.NAME]` receives chat messages and sends replies, "
            "`[backend.NAME]` answers them, `[sink.NAME]` observes events and metrics, and "
            "`[inbound.NAME]` (ABI 1.3) takes work from outside on a listener of its own, sends it "
            "into chats (`host->deliver()`) and takes the answers before routing "
            "(`intercept()`). Writing a plugin: [plugin-guide.md](plugin-guide.md).\n\n",
            RD_ABI_MAJOR, RD_ABI_MINOR);
}

int plugin_list(const char *plugin_dir, bool markdown, FILE *out) {
    char **dirs = split_list(plugin_dir ? plugin_dir : "");
    char **names = NULL;
    size_t n = 0;
    int bad = 0;
    for (size_t i = 0; dirs[i]; i++)
        bad += list_dir(dirs[i], &names, &n, 0) != 0;
    bool several = dirs[0] && dirs[1];
    free_list(dirs);
    if (markdown) print_md_intro(out);
    for (size_t i = 0; i < n; i++) {
        char err[512];
        plugin_so *so = open_path(names[i], 0, NULL, err, sizeof err);
        if (so) {
            print_plugin(so->desc, markdown, out);
            /* With several folders, say which one a name resolves to. */
            if (several && !markdown) fprintf(out, "    (%s)\n\n", names[i]);
        } else {
            fprintf(stderr, "routerd: %s\n", err);
            bad++;
        }
        free(names[i]);
    }
    free(names);
    return bad ? -1 : 0;
}

const char *plugin_check_desc(const rd_plugin *d, rd_kind want, char *tmp, size_t tmpsz) {
    return check_desc(d, want, tmp, tmpsz);
}
