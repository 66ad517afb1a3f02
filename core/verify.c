/* Checks made before anything starts: the manifest's Ed25519 signature,
 * plugin file digests and the permissions of the plugin folder. */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *read_all(const char *path, size_t max, size_t *len, char *err, size_t errsz) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > max) {
            snprintf(err, errsz, "%s: larger than %zu bytes", path, max);
            fclose(f);
            free(buf);
            return NULL;
        }
        if (n == cap) buf = xrealloc(buf, (cap *= 2) + 1);
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errsz, "%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int sha256_file_hex(const char *path, char out[65], char *err, size_t errsz) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(md, buf, n);
    bool bad = ferror(f);
    fclose(f);
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    if (bad) {
        snprintf(err, errsz, "%s: read error", path);
        return -1;
    }
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
    return 0;
}

int check_not_writable(const char *path, bool want_dir, char *err, size_t errsz) {
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errsz, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (want_dir && !S_ISDIR(st.st_mode)) {
        snprintf(err, errsz, "%s: not a directory", path);
        return -1;
    }
    /* Anyone who can replace a plugin runs code inside routerd. */
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errsz,
                 "%s is writable by %s (mode %04o): refusing to load plugins from it "
                 "(chmod go-w)",
                 path, (st.st_mode & S_IWOTH) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* Standard base64 with blanks and newlines ignored; -1 when malformed. */
static long b64_decode(const char *in, unsigned char *out, size_t outsz) {
    size_t n = strlen(in);
    char *clean = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)in[i])) clean[k++] = in[i];
    clean[k] = 0;
    long r = -1;
    if (k && k % 4 == 0 && k / 4 * 3 <= outsz) {
        for (size_t i = 0; i < k; i++) {
            char c = clean[i];
            bool ok = isalnum((unsigned char)c) || c == '+' || c == '/' || (c == '=' && i >= k - 2);
            if (!ok) goto out;
        }
        int m = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)k);
        if (m < 0) goto out;
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        if (clean[k - 1] == '=') m--;
        if (clean[k - 2] == '=') m--;
        r = m;
    }
out:
    free(clean);
    return r;
}

static EVP_PKEY *load_key(const char *key, char *err, size_t errsz) {
    BIO *bio;
    if (!strncmp(key, "-----BEGIN", 10)) {
        bio = BIO_new_mem_buf(key, -1);
    } else {
        bio = BIO_new_file(key, "r");
        if (!bio) {
            snprintf(err, errsz, "manifest key %s: %s", key, strerror(errno));
            return NULL;
        }
    }
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    const char *what = strncmp(key, "-----BEGIN", 10) ? key : "(PEM text)";
    if (!pk) {
        snprintf(err, errsz, "manifest key %s: not a PEM public key", what);
        return NULL;
    }
    if (EVP_PKEY_id(pk) != EVP_PKEY_ED25519) {
        snprintf(err, errsz, "manifest key %s: not an Ed25519 public key", what);
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

int manifest_verify(const char *path, const char *key, char sha_out[65], char *err, size_t errsz) {
    size_t len = 0;
    char e2[512];
    char *data = read_all(path, 16u << 20, &len, e2, sizeof e2);
    if (!data) {
        snprintf(err, errsz, "%s: cannot read manifest for its signature: %s", path, e2);
        return -1;
    }
    sha256_hex(data, len, sha_out);
    const char *env = getenv("CONFIG_MANIFEST_SIGNATURE");
    char *sigtext = NULL;
    const char *from = "CONFIG_MANIFEST_SIGNATURE";
    char *sigpath = xasprintf("%s.sig", path);
    if (env && *env) {
        sigtext = xstrdup(env);
    } else {
        size_t sl;
        from = sigpath;
        sigtext = read_all(sigpath, 4096, &sl, e2, sizeof e2);
        if (!sigtext) {
            snprintf(err, errsz,
                     "%s: no signature (%s; set CONFIG_MANIFEST_SIGNATURE or write %s.sig) but "
                     "a manifest key is configured",
                     path, e2, path);
            free(sigpath);
            free(data);
            return -1;
        }
    }
    unsigned char sig[256];
    long sl = b64_decode(sigtext, sig, sizeof sig);
    free(sigtext);
    int rc = -1;
    EVP_PKEY *pk = NULL;
    if (sl != 64) {
        snprintf(err, errsz, "%s: signature from %s is not base64 of a 64-byte Ed25519 signature",
                 path, from);
        goto out;
    }
    if (!(pk = load_key(key, err, errsz))) goto out;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    /* Ed25519 signs the message itself: no separate digest. */
    int ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(md, sig, 64, (const unsigned char *)data, len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok) {
        snprintf(err, errsz,
                 "%s: signature from %s does not match the manifest (sha256 %s) and the "
                 "manifest key",
                 path, from, sha_out);
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(pk);
    free(sigpath);
    free(data);
    return rc;
}
