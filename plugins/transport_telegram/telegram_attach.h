/*
 * Files in Telegram messages, the pure part: what a message carries (photo,
 * document, voice, ...) read from its JSON with every number range-checked,
 * and which send method an outgoing file takes. No host, no I/O.
 */
#ifndef TELEGRAM_ATTACH_H
#define TELEGRAM_ATTACH_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TG_MK_PHOTO = 0,
    TG_MK_DOCUMENT,
    TG_MK_VOICE,
    TG_MK_AUDIO,
    TG_MK_VIDEO,
    TG_MK_VIDEO_NOTE,
    TG_MK_STICKER,
    TG_MK_ANIMATION,
    TG_MK_UNSUPPORTED, /* location, contact, poll, ...: answered with the notice */
    TG_MK__COUNT
} tg_media_kind;

/* Photo sizes kept per message; Telegram sends 3-5. */
#define TG_PHOTO_SIZES 8
/* Longest file_id / file_path accepted (Telegram's are < 200). */
#define TG_FILE_ID_MAX 256
/* Largest size Telegram lets a bot upload (2000 MB with a local server). */
#define TG_FILE_SIZE_MAX (INT64_C(2000) << 20)

typedef struct tg_photo_size {
    char file_id[TG_FILE_ID_MAX];
    int64_t file_size; /* 0 = unknown */
    int64_t pixels;    /* width * height */
} tg_photo_size;

typedef struct tg_media {
    tg_media_kind kind;
    char what[24]; /* payload key: "photo", "voice", "location", ... */
    char file_id[TG_FILE_ID_MAX];
    int64_t file_size;               /* 0 = unknown */
    char mime[128];                  /* from the message, else by kind */
    char name[128];                  /* file_name, sanitized; else a name by kind */
    int64_t width, height, duration; /* 0 = absent or out of range */
    char group[72];                  /* media_group_id; "" = none */
    int invalid;                     /* a file without a usable file_id, or a hostile size */
    tg_photo_size photo[TG_PHOTO_SIZES];
    size_t nphoto;
} tg_media;

/* Reads the file a message carries. NULL when it carries none (text or a
 * service message); otherwise a malloc()ed tg_media, possibly with invalid
 * set or kind TG_MK_UNSUPPORTED. */
tg_media *tg_media_parse(const cJSON *msg);
const char *tg_media_kind_name(tg_media_kind k);

/* The photo size to fetch: the largest whose known size fits max_bytes,
 * else -1. */
int tg_media_pick_photo(const tg_media *m, int64_t max_bytes);

/* Whether s has min..max bytes, each a letter, a digit or one of extra. */
int tg_chars_ok(const char *s, size_t min, size_t max, const char *extra);

/* Whether s is a plausible MIME type ("type/subtype", token characters). */
int tg_mime_ok(const char *s);

/* ------------------------------------------------------------------------ */
/* Outgoing files                                                            */

typedef enum {
    TG_OUT_PHOTO = 0,
    TG_OUT_DOCUMENT,
    TG_OUT_VOICE,
    TG_OUT_AUDIO,
    TG_OUT_VIDEO,
    TG_OUT_ANIMATION,
} tg_out_kind;

/* Photos larger than this go as documents (Telegram's sendPhoto limit). */
#define TG_PHOTO_UPLOAD_MAX (INT64_C(10) << 20)

/* The send method for a file from its kind (when given) and MIME type;
 * len is the byte size (0 = a URL). */
tg_out_kind tg_out_kind_of(const char *kind, const char *mime, size_t len);
const char *tg_out_method(tg_out_kind k); /* "sendPhoto" */
const char *tg_out_field(tg_out_kind k);  /* "photo", the upload field */
/* InputMedia "type" for sendMediaGroup. */
const char *tg_out_media_type(tg_out_kind k);
/* Whether files of these kinds can share one sendMediaGroup (2-10 of them,
 * photos and videos mixed, or all documents, or all audio). */
int tg_out_groupable(const tg_out_kind *k, size_t n);

#endif
