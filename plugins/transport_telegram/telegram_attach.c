/* Files in Telegram messages, the pure part; see telegram_attach.h. */
#include "telegram_attach.h"
#include "telegram_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[TG_MK__COUNT] = {"photo",   "document",  "voice",
                                                     "audio",   "video",     "video_note",
                                                     "sticker", "animation", "unsupported"};

const char *tg_media_kind_name(tg_media_kind k) {
    return k >= 0 && k < TG_MK__COUNT ? kind_names[k] : "unsupported";
}

/* Content a user sends that carries no file routerd can hand on. */
static const char *const unsupported[] = {"location", "contact", "poll",    "dice",       "venue",
                                          "game",     "story",   "invoice", "paid_media", NULL};

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

int tg_chars_ok(const char *s, size_t min, size_t max, const char *extra) {
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c)))
            return 0;
    }
    return 1;
}

/* file_ids are URL-safe base64 in practice; anything else is not one. */
static int file_id_ok(const char *s) {
    return tg_chars_ok(s, 1, TG_FILE_ID_MAX - 1, "_-");
}

/* A number within [0, max]: 1 and *out set; absent: 1 and 0; else 0. */
static int bounded(const cJSON *o, const char *key, int64_t max, int64_t *out) {
    *out = 0;
    if (!cJSON_GetObjectItemCaseSensitive(o, key)) return 1;
    int64_t v;
    if (!tg_json_i64(o, key, &v) || v < 0 || v > max) return 0;
    *out = v;
    return 1;
}

int tg_mime_ok(const char *s) {
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s || !slash[1] || strlen(s) >= 128) return 0;
    char type[128];
    memcpy(type, s, (size_t)(slash - s));
    type[slash - s] = 0;
    return tg_chars_ok(type, 1, 127, "!#$&^_.+-") && tg_chars_ok(slash + 1, 1, 127, "!#$&^_.+-");
}

/* A file name safe to show and to pass on: no path separators or control
 * characters, at most sizeof m->name - 1 bytes cut at a character. */
static void set_name(char *dst, size_t dstsz, const char *src) {
    size_t o = 0;
    for (size_t i = 0; src[i] && o + 1 < dstsz; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[o++] = c < 0x20 || c == 0x7F || c == '/' || c == '\\' ? '_' : (char)c;
    }
    while (o > 0 && src[o] && ((unsigned char)src[o] & 0xC0) == 0x80)
        o--; /* never end inside a UTF-8 sequence */
    dst[o] = 0;
    if (dst[0] == '.') dst[0] = '_'; /* no "..", no hidden files */
}

static void defaults(tg_media *m, const cJSON *o) {
    const char *mime = "application/octet-stream", *name = "file";
    switch (m->kind) {
    case TG_MK_PHOTO:
        mime = "image/jpeg", name = "photo.jpg";
        break;
    case TG_MK_VOICE:
        mime = "audio/ogg", name = "voice.ogg";
        break;
    case TG_MK_AUDIO:
        mime = "audio/mpeg", name = "audio.mp3";
        break;
    case TG_MK_VIDEO:
        mime = "video/mp4", name = "video.mp4";
        break;
    case TG_MK_VIDEO_NOTE:
        mime = "video/mp4", name = "video_note.mp4";
        break;
    case TG_MK_ANIMATION:
        mime = "video/mp4", name = "animation.mp4";
        break;
    case TG_MK_STICKER:
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "is_video")))
            mime = "video/webm", name = "sticker.webm";
        else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "is_animated")))
            mime = "application/x-tgsticker", name = "sticker.tgs";
        else
            mime = "image/webp", name = "sticker.webp";
        break;
    default:
        break;
    }
    const char *given = json_str(o, "mime_type");
    snprintf(m->mime, sizeof m->mime, "%s", tg_mime_ok(given) ? given : mime);
    const char *fn = json_str(o, "file_name");
    if (fn && *fn)
        set_name(m->name, sizeof m->name, fn);
    else
        snprintf(m->name, sizeof m->name, "%s", name);
}

/* Width, height and duration: kept for the backend when in range. */
static void dims(tg_media *m, const cJSON *o) {
    if (!bounded(o, "width", 100000, &m->width)) m->width = 0;
    if (!bounded(o, "height", 100000, &m->height)) m->height = 0;
    if (!bounded(o, "duration", 10000000, &m->duration)) m->duration = 0;
}

static void parse_photo(tg_media *m, const cJSON *arr) {
    const cJSON *p;
    cJSON_ArrayForEach(p, arr) {
        if (m->nphoto == TG_PHOTO_SIZES) break;
        const char *id = json_str(p, "file_id");
        int64_t size, w, h;
        if (!file_id_ok(id) || !bounded(p, "file_size", TG_FILE_SIZE_MAX, &size) ||
            !bounded(p, "width", 100000, &w) || !bounded(p, "height", 100000, &h))
            continue;
        tg_photo_size *s = &m->photo[m->nphoto++];
        snprintf(s->file_id, sizeof s->file_id, "%s", id);
        s->file_size = size;
        s->pixels = w * h;
        if (s->pixels >= m->width * m->height) m->width = w, m->height = h;
    }
    if (m->nphoto == 0) m->invalid = 1;
}

tg_media *tg_media_parse(const cJSON *msg) {
    if (!cJSON_IsObject(msg)) return NULL;
    const cJSON *o = NULL;
    int kind = -1;
    /* Animations come with a "document" too: look for them first. */
    static const tg_media_kind order[] = {TG_MK_ANIMATION, TG_MK_PHOTO,   TG_MK_VOICE,
                                          TG_MK_AUDIO,     TG_MK_VIDEO,   TG_MK_VIDEO_NOTE,
                                          TG_MK_STICKER,   TG_MK_DOCUMENT};
    for (size_t i = 0; i < sizeof order / sizeof order[0] && kind < 0; i++) {
        o = cJSON_GetObjectItemCaseSensitive(msg, kind_names[order[i]]);
        if (o) kind = (int)order[i];
    }
    const char *other = NULL;
    for (size_t i = 0; kind < 0 && unsupported[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(msg, unsupported[i])) other = unsupported[i];
    if (kind < 0 && !other) return NULL;
    tg_media *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    const char *g = json_str(msg, "media_group_id");
    if (g && strlen(g) < sizeof m->group) snprintf(m->group, sizeof m->group, "%s", g);
    if (other) {
        m->kind = TG_MK_UNSUPPORTED;
        snprintf(m->what, sizeof m->what, "%s", other);
        return m;
    }
    m->kind = (tg_media_kind)kind;
    snprintf(m->what, sizeof m->what, "%s", kind_names[kind]);
    if (m->kind == TG_MK_PHOTO) {
        if (!cJSON_IsArray(o))
            m->invalid = 1;
        else
            parse_photo(m, o);
        defaults(m, o);
        return m;
    }
    const char *id = json_str(o, "file_id");
    if (!cJSON_IsObject(o) || !file_id_ok(id) ||
        !bounded(o, "file_size", TG_FILE_SIZE_MAX, &m->file_size)) {
        m->invalid = 1;
        m->file_size = 0;
    } else {
        snprintf(m->file_id, sizeof m->file_id, "%s", id);
    }
    dims(m, o);
    defaults(m, o);
    return m;
}

int tg_media_pick_photo(const tg_media *m, int64_t max_bytes) {
    int best = -1;
    for (size_t i = 0; i < m->nphoto; i++) {
        const tg_photo_size *s = &m->photo[i];
        if (s->file_size > max_bytes) continue;
        if (best < 0 || s->pixels > m->photo[best].pixels ||
            (s->pixels == m->photo[best].pixels && s->file_size > m->photo[best].file_size))
            best = (int)i;
    }
    return best;
}

/* ------------------------------------------------------------------------ */
/* Outgoing                                                                  */

tg_out_kind tg_out_kind_of(const char *kind, const char *mime, size_t len) {
    if (kind) {
        if (!strcmp(kind, "voice")) return TG_OUT_VOICE;
        if (!strcmp(kind, "document")) return TG_OUT_DOCUMENT;
        if (!strcmp(kind, "animation")) return TG_OUT_ANIMATION;
        if (!strcmp(kind, "audio")) return TG_OUT_AUDIO;
        if (!strcmp(kind, "video")) return TG_OUT_VIDEO;
        if (!strcmp(kind, "photo") && (int64_t)len <= TG_PHOTO_UPLOAD_MAX) return TG_OUT_PHOTO;
    }
    if (!mime) return TG_OUT_DOCUMENT;
    if (!strncasecmp(mime, "image/", 6)) {
        if (!strcasecmp(mime, "image/gif")) return TG_OUT_ANIMATION;
        /* Telegram re-encodes photos; other images, or large ones, stay files. */
        int photo = !strcasecmp(mime, "image/jpeg") || !strcasecmp(mime, "image/png") ||
                    !strcasecmp(mime, "image/webp");
        return photo && (int64_t)len <= TG_PHOTO_UPLOAD_MAX ? TG_OUT_PHOTO : TG_OUT_DOCUMENT;
    }
    if (!strncasecmp(mime, "audio/ogg", 9) || !strncasecmp(mime, "audio/opus", 10))
        return kind && !strcmp(kind, "audio") ? TG_OUT_AUDIO : TG_OUT_VOICE;
    if (!strncasecmp(mime, "audio/", 6)) return TG_OUT_AUDIO;
    if (!strncasecmp(mime, "video/", 6)) return TG_OUT_VIDEO;
    return TG_OUT_DOCUMENT;
}

const char *tg_out_method(tg_out_kind k) {
    static const char *const m[] = {"sendPhoto", "sendDocument", "sendVoice",
                                    "sendAudio", "sendVideo",    "sendAnimation"};
    return k >= 0 && k <= TG_OUT_ANIMATION ? m[k] : "sendDocument";
}

const char *tg_out_field(tg_out_kind k) {
    static const char *const f[] = {"photo", "document", "voice", "audio", "video", "animation"};
    return k >= 0 && k <= TG_OUT_ANIMATION ? f[k] : "document";
}

const char *tg_out_media_type(tg_out_kind k) {
    return tg_out_field(k);
}

int tg_out_groupable(const tg_out_kind *k, size_t n) {
    if (n < 2 || n > 10) return 0;
    int visual = 1, docs = 1, audio = 1;
    for (size_t i = 0; i < n; i++) {
        visual &= k[i] == TG_OUT_PHOTO || k[i] == TG_OUT_VIDEO;
        docs &= k[i] == TG_OUT_DOCUMENT;
        audio &= k[i] == TG_OUT_AUDIO;
    }
    return visual || docs || audio;
}
