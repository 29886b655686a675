/* The users of `hsmenroll serve`: loading and validating the credentials file, checking a name
 * and password (PBKDF2-HMAC-SHA256, constant-time compare, per-user cache of a fast digest) and
 * parsing HTTP Basic Authorization headers. Every password-derived buffer is wiped. */
#include "serve/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/jsonobj.h"
#include "formats/base64.h"
#include "formats/kdf.h"

#define CREDENTIALS_CODE     HSE_SERVE_CREDENTIALS
#define HASH_PREFIX          "pbkdf2-sha256$"
#define HASH_FORMAT          "pbkdf2-sha256$ITER$SALT$HASH"
#define HASH_BYTES           32
#define SALT_MIN_BYTES       8
#define SALT_MAX_BYTES       64
#define NEW_SALT_BYTES       16
#define ITERATIONS_MIN       1000u
#define ITERATIONS_MAX       10000000u
#define CREDENTIALS_MAX_SIZE (4u * 1024 * 1024)

struct serve_user {
    char *name;
    char **roles;
    size_t role_count;
    char **permissions;
    size_t permission_count;
    unsigned iterations;
    unsigned char salt[SALT_MAX_BYTES];
    size_t salt_len;
    unsigned char hash[HASH_BYTES];
    /* SHA-256(salt || password) of the last password that passed PBKDF2; guarded by
     * serve_credentials.cache_lock. */
    bool cache_valid;
    unsigned char cache_digest[HASH_BYTES];
};

struct serve_credentials {
    serve_user *users;
    size_t user_count;
    pthread_mutex_t cache_lock;
    /* What an unknown name is checked against, at the largest iteration count of the file, so
     * that it costs one PBKDF2 too; known names are padded up to the same count. */
    unsigned dummy_iterations;
    unsigned char dummy_salt[NEW_SALT_BYTES];
    unsigned char dummy_hash[HASH_BYTES];
    /* PBKDF2 iterations computed by serve_credentials_check (atomic; serve_credentials_work). */
    unsigned long long work;
};

/* ---- errors ---- */

/* Fills err with code SERVE_CREDENTIALS, field json_path, and "FILE: JSON_PATH: text". */
static void credentials_error(enroll_error *err, const char *file, const char *json_path,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void credentials_error(enroll_error *err, const char *file, const char *json_path,
                              const char *fmt, ...)
{
    char text[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    bool has_path = json_path != NULL && *json_path != '\0';
    enroll_error_set(err, CREDENTIALS_CODE, json_path, "%s: %s%s%s", file,
                     has_path ? json_path : "", has_path ? ": " : "", text);
}

/* Copies at most 40 bytes of src into dst (64 bytes) for a message, control characters replaced
 * by '?', "..." appended when cut. */
static void printable_copy(char dst[64], const char *src)
{
    size_t n = 0;
    for (; src[n] != '\0' && n < 40; n++) {
        unsigned char c = (unsigned char)src[n];
        dst[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    strcpy(dst + n, src[n] != '\0' ? "..." : "");
}

/* The text of a JSON syntax error without the " near '...'" part and any other quoted piece of
 * the file, which could be a password or a hash. */
static void json_error_text(char dst[160], const char *text)
{
    snprintf(dst, 160, "%s", text);
    char *cut = strstr(dst, " near");
    if (cut != NULL)
        *cut = '\0';
    cut = strchr(dst, '\'');
    if (cut != NULL)
        *cut = '\0';
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == ':'))
        dst[--n] = '\0';
}

/* ---- loading ---- */

/* Sets slots[i] to the member of obj whose key is names[i] (NULL-terminated) in any case.
 * Refuses unknown keys and a key given twice. json_path is the object's path ("" for the
 * document). 0 or -1. */
static int take_members(json_t *obj, const char *const *names, json_t **slots, const char *file,
                        const char *json_path, enroll_error *err)
{
    jobj_key_check check = {0};
    if (jobj_check_keys(obj, names, &check)) {
        char shown[64], member_path[128];
        printable_copy(shown, check.key);
        bool unknown = check.known_index < 0;
        snprintf(member_path, sizeof member_path, "%s%s%s", json_path, *json_path ? "." : "",
                 unknown ? shown : names[check.known_index]);
        credentials_error(err, file, member_path,
                          unknown ? "unknown key" : "given twice (key names are case-insensitive)");
        return -1;
    }
    for (size_t i = 0; names[i] != NULL; i++)
        slots[i] = jobj_get(obj, names[i]);
    return 0;
}

/* Reads the whole file behind fd (at most CREDENTIALS_MAX_SIZE bytes). Returns a malloc'd
 * buffer to wipe and free, or NULL with err filled. */
static char *read_credentials_file(int fd, const struct stat *st, const char *file, size_t *len,
                                   enroll_error *err)
{
    if ((unsigned long long)st->st_size > CREDENTIALS_MAX_SIZE) {
        credentials_error(err, file, NULL, "larger than %u bytes", CREDENTIALS_MAX_SIZE);
        return NULL;
    }
    size_t capacity = (size_t)st->st_size + 1;
    char *buf = malloc(capacity);
    if (buf == NULL) {
        credentials_error(err, file, NULL, "out of memory");
        return NULL;
    }
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, capacity - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            credentials_error(err, file, NULL, "cannot be read (%s)", strerror(errno));
            break;
        }
        if (n == 0) {
            *len = used;
            return buf;
        }
        used += (size_t)n;
        if (used == capacity) {
            credentials_error(err, file, NULL, "grew while it was read");
            break;
        }
    }
    OPENSSL_cleanse(buf, capacity);
    free(buf);
    return NULL;
}

/* Parses "pbkdf2-sha256$ITER$SALT$HASH" into user. Returns NULL, or why it is not one (a text
 * that never quotes the hash). */
static const char *parse_password_hash(const char *text, serve_user *user)
{
    if (strncmp(text, HASH_PREFIX, strlen(HASH_PREFIX)) != 0)
        return "it does not start with " HASH_PREFIX;
    const char *iter = text + strlen(HASH_PREFIX);
    const char *salt = strchr(iter, '$');
    const char *hash = salt ? strchr(salt + 1, '$') : NULL;
    if (hash == NULL || strchr(hash + 1, '$') != NULL)
        return "it does not have four $-separated parts";
    size_t iter_len = (size_t)(salt - iter);
    unsigned long iterations = 0;
    bool digits = iter_len >= 1 && iter_len <= 8 && iter[0] != '0';
    for (size_t i = 0; digits && i < iter_len; i++) {
        digits = iter[i] >= '0' && iter[i] <= '9';
        iterations = iterations * 10 + (unsigned long)(iter[i] - '0');
    }
    if (!digits || iterations < ITERATIONS_MIN || iterations > ITERATIONS_MAX)
        return "ITER is not a number from 1000 to 10000000";
    salt++;
    size_t salt_len = 0;
    unsigned char *salt_bytes =
        base64_decode(salt, (size_t)(hash - salt), BASE64_CANONICAL, &salt_len);
    bool salt_ok = salt_bytes != NULL && salt_len >= SALT_MIN_BYTES && salt_len <= SALT_MAX_BYTES;
    if (salt_ok) {
        memcpy(user->salt, salt_bytes, salt_len);
        user->salt_len = salt_len;
    }
    if (salt_bytes != NULL) {
        OPENSSL_cleanse(salt_bytes, salt_len);
        free(salt_bytes);
    }
    if (!salt_ok)
        return "SALT is not padded base64 of 8 to 64 bytes";
    hash++;
    size_t hash_len = 0;
    unsigned char *hash_bytes = base64_decode(hash, strlen(hash), BASE64_CANONICAL, &hash_len);
    bool hash_ok = hash_bytes != NULL && hash_len == HASH_BYTES;
    if (hash_ok)
        memcpy(user->hash, hash_bytes, HASH_BYTES);
    if (hash_bytes != NULL) {
        OPENSSL_cleanse(hash_bytes, hash_len);
        free(hash_bytes);
    }
    if (!hash_ok)
        return "HASH is not padded base64 of 32 bytes";
    user->iterations = (unsigned)iterations;
    return NULL;
}

/* Copies an optional array of non-empty strings (Roles, Permissions). 0 or -1. */
static int load_string_list(json_t *array, const char *file, const char *json_path, char ***items,
                            size_t *count, enroll_error *err)
{
    *items = NULL;
    *count = 0;
    if (array == NULL)
        return 0;
    if (!json_is_array(array)) {
        credentials_error(err, file, json_path, "not an array of strings");
        return -1;
    }
    size_t n = json_array_size(array);
    if (n == 0)
        return 0;
    *items = calloc(n, sizeof **items);
    if (*items == NULL) {
        credentials_error(err, file, json_path, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(array, i);
        char item_path[128];
        snprintf(item_path, sizeof item_path, "%s[%zu]", json_path, i);
        if (!json_is_string(item)) {
            credentials_error(err, file, item_path, "not a string");
            return -1;
        }
        if (json_string_length(item) == 0) {
            credentials_error(err, file, item_path, "empty");
            return -1;
        }
        (*items)[i] = strdup(json_string_value(item));
        if ((*items)[i] == NULL) {
            credentials_error(err, file, item_path, "out of memory");
            return -1;
        }
        (*count)++;
    }
    return 0;
}

/* Checks a user name: a non-empty string without colon or control character. NULL or why not. */
static const char *check_user_name(json_t *name)
{
    if (!json_is_string(name))
        return "not a string";
    const char *text = json_string_value(name);
    size_t len = json_string_length(name);
    if (len == 0)
        return "empty";
    if (strlen(text) != len)
        return "holds a NUL character";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            return "holds a control character";
        if (c == ':')
            return "holds a colon, which HTTP Basic authentication cannot carry";
    }
    return NULL;
}

/* Loads Users[index] into creds->users[index]. 0 or -1. */
static int load_user(serve_credentials *creds, size_t index, json_t *entry, const char *file,
                     enroll_error *err)
{
    char user_path[64], member_path[96];
    snprintf(user_path, sizeof user_path, "Users[%zu]", index);
    if (!json_is_object(entry)) {
        credentials_error(err, file, user_path, "not an object");
        return -1;
    }
    static const char *const names[] = {"Name", "Password", "Roles", "Permissions", NULL};
    json_t *members[4];
    if (take_members(entry, names, members, file, user_path, err) != 0)
        return -1;
    serve_user *user = &creds->users[index];

    snprintf(member_path, sizeof member_path, "%s.Name", user_path);
    const char *why = members[0] ? check_user_name(members[0]) : "missing";
    if (why != NULL) {
        credentials_error(err, file, member_path, "%s", why);
        return -1;
    }
    const char *name = json_string_value(members[0]);
    for (size_t j = 0; j < index; j++) {
        if (strcasecmp(creds->users[j].name, name) == 0) {
            credentials_error(err, file, member_path,
                              "user \"%s\" is already Users[%zu] (names are compared "
                              "case-insensitively)",
                              name, j);
            return -1;
        }
    }
    user->name = strdup(name);
    if (user->name == NULL) {
        credentials_error(err, file, member_path, "out of memory");
        return -1;
    }

    snprintf(member_path, sizeof member_path, "%s.Password", user_path);
    if (members[1] == NULL) {
        credentials_error(err, file, member_path, "missing");
        return -1;
    }
    if (!json_is_string(members[1])) {
        credentials_error(err, file, member_path, "not a string");
        return -1;
    }
    why = parse_password_hash(json_string_value(members[1]), user);
    if (why != NULL) {
        credentials_error(err, file, member_path, "not a " HASH_FORMAT " hash: %s", why);
        return -1;
    }

    snprintf(member_path, sizeof member_path, "%s.Roles", user_path);
    if (load_string_list(members[2], file, member_path, &user->roles, &user->role_count, err))
        return -1;
    snprintf(member_path, sizeof member_path, "%s.Permissions", user_path);
    if (load_string_list(members[3], file, member_path, &user->permissions, &user->permission_count,
                         err))
        return -1;
    return 0;
}

/* Builds the credentials from the parsed document. NULL with err filled on error. */
static serve_credentials *credentials_from_json(json_t *doc, const char *file, enroll_error *err)
{
    if (!json_is_object(doc)) {
        credentials_error(err, file, NULL, "not a JSON object");
        return NULL;
    }
    static const char *const names[] = {"Users", NULL};
    json_t *users;
    if (take_members(doc, names, &users, file, "", err) != 0)
        return NULL;
    if (users == NULL) {
        credentials_error(err, file, "Users", "missing");
        return NULL;
    }
    if (!json_is_array(users)) {
        credentials_error(err, file, "Users", "not an array");
        return NULL;
    }
    if (json_array_size(users) == 0) {
        credentials_error(err, file, "Users", "empty: nobody could log in");
        return NULL;
    }
    serve_credentials *creds = calloc(1, sizeof *creds);
    if (creds == NULL || pthread_mutex_init(&creds->cache_lock, NULL) != 0) {
        free(creds);
        credentials_error(err, file, NULL, "out of memory");
        return NULL;
    }
    creds->users = calloc(json_array_size(users), sizeof *creds->users);
    if (creds->users == NULL) {
        serve_credentials_free(creds);
        credentials_error(err, file, NULL, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(users); i++) {
        creds->user_count = i + 1; /* so that free releases what a failing entry holds */
        if (load_user(creds, i, json_array_get(users, i), file, err) != 0) {
            serve_credentials_free(creds);
            return NULL;
        }
        if (creds->users[i].iterations > creds->dummy_iterations)
            creds->dummy_iterations = creds->users[i].iterations;
    }
    if (RAND_bytes(creds->dummy_salt, sizeof creds->dummy_salt) != 1 ||
        RAND_bytes(creds->dummy_hash, sizeof creds->dummy_hash) != 1) {
        serve_credentials_free(creds);
        credentials_error(err, file, NULL, "no random bytes for the dummy hash");
        return NULL;
    }
    return creds;
}

serve_credentials *serve_credentials_load(const char *path, enroll_error *err)
{
    if (path == NULL) {
        enroll_error_set(err, CREDENTIALS_CODE, NULL, "no credentials file given");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        credentials_error(err, path, NULL, "cannot be read (%s)", strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        credentials_error(err, path, NULL, "not a regular file");
        close(fd);
        return NULL;
    }
    if ((st.st_mode & 007) != 0) {
        credentials_error(err, path, NULL,
                          "holds password hashes but is accessible by others (mode %04o): "
                          "chmod o-rwx it",
                          (unsigned)(st.st_mode & 07777));
        close(fd);
        return NULL;
    }
    size_t len = 0;
    char *text = read_credentials_file(fd, &st, path, &len, err);
    close(fd);
    if (text == NULL)
        return NULL;
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(text, len);
    free(text);
    if (doc == NULL) {
        char reason[160];
        json_error_text(reason, jerr.text);
        credentials_error(err, path, NULL, "not valid JSON at line %d column %d (%s)", jerr.line,
                          jerr.column, reason);
        return NULL;
    }
    serve_credentials *creds = credentials_from_json(doc, path, err);
    json_decref(doc);
    return creds;
}

/* Frees an array of count strings. */
static void free_string_list(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

void serve_credentials_free(serve_credentials *creds)
{
    if (creds == NULL)
        return;
    for (size_t i = 0; creds->users != NULL && i < creds->user_count; i++) {
        serve_user *user = &creds->users[i];
        free(user->name);
        free_string_list(user->roles, user->role_count);
        free_string_list(user->permissions, user->permission_count);
        OPENSSL_cleanse(user, sizeof *user);
    }
    free(creds->users);
    pthread_mutex_destroy(&creds->cache_lock);
    OPENSSL_cleanse(creds, sizeof *creds);
    free(creds);
}

/* ---- checking ---- */

/* PBKDF2-HMAC-SHA256 of password into out (32 bytes), by the bundles' derivation
 * (formats/kdf.c, four times as fast as PKCS5_PBKDF2_HMAC). 0 or -1. */
static int derive_key(const char *password, size_t password_len, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, unsigned char out[HASH_BYTES])
{
    return kdf_pbkdf2_hmac_sha256(password, password_len, salt, salt_len, iterations, out,
                                  HASH_BYTES);
}

/* SHA-256(salt || password) into out, the key of the per-user cache. 0 or -1. */
static int cache_digest(const serve_user *user, const char *password, size_t password_len,
                        unsigned char out[HASH_BYTES])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int out_len = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, user->salt, user->salt_len) == 1 &&
             EVP_DigestUpdate(ctx, password, password_len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == HASH_BYTES;
    EVP_MD_CTX_free(ctx); /* wipes the digest state */
    return ok ? 0 : -1;
}

const serve_user *serve_credentials_find(const serve_credentials *creds, const char *name)
{
    if (creds == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < creds->user_count; i++)
        if (strcmp(creds->users[i].name, name) == 0)
            return &creds->users[i];
    return NULL;
}

/* Splits "DOMAIN\\user" and "user@domain" (one separator, both parts non-empty) into its parts;
 * false for a name without a domain. */
static bool split_domain(const char *name, char *user, char *domain, size_t size)
{
    const char *bs = strchr(name, '\\'), *at = strchr(name, '@');
    const char *u, *d;
    size_t ul, dl;
    if (bs != NULL && at == NULL && strchr(bs + 1, '\\') == NULL) {
        d = name, dl = (size_t)(bs - name), u = bs + 1, ul = strlen(u);
    } else if (at != NULL && bs == NULL && strchr(at + 1, '@') == NULL) {
        u = name, ul = (size_t)(at - name), d = at + 1, dl = strlen(d);
    } else {
        return false;
    }
    if (ul == 0 || dl == 0 || ul >= size || dl >= size)
        return false;
    memcpy(user, u, ul), user[ul] = '\0';
    memcpy(domain, d, dl), domain[dl] = '\0';
    return true;
}

/* The entry named exactly name (every entry compared: no early exit), or NULL. */
static serve_user *user_named(const serve_credentials *creds, const char *name)
{
    serve_user *user = NULL;
    for (size_t i = 0; i < creds->user_count; i++)
        if (strcmp(creds->users[i].name, name) == 0)
            user = &creds->users[i];
    return user;
}

/* The entry a Basic user name stands for. Keyfactor's Go clients send "DOMAIN\\user", the Python
 * SDK "user@domain": an entry named exactly as sent first; then one naming the same user and
 * domain in the other form (the domain compared without regard to case); then the bare user
 * name, when the file has it without a domain. */
static serve_user *user_for_basic_name(const serve_credentials *creds, const char *name)
{
    serve_user *user = user_named(creds, name);
    char u[256], d[256], eu[256], ed[256];
    if (user != NULL || !split_domain(name, u, d, sizeof u))
        return user;
    for (size_t i = 0; i < creds->user_count; i++)
        if (split_domain(creds->users[i].name, eu, ed, sizeof eu) && strcmp(eu, u) == 0 &&
            strcasecmp(ed, d) == 0 && user == NULL)
            user = &creds->users[i];
    return user != NULL ? user : user_named(creds, u);
}

const serve_user *serve_credentials_check(serve_credentials *creds, const char *name,
                                          const char *password)
{
    if (creds == NULL || name == NULL || password == NULL)
        return NULL;
    serve_user *user = user_for_basic_name(creds, name);
    size_t password_len = strlen(password);
    unsigned char derived[HASH_BYTES];

    if (user == NULL) {
        if (derive_key(password, password_len, creds->dummy_salt, sizeof creds->dummy_salt,
                       creds->dummy_iterations, derived) == 0)
            (void)CRYPTO_memcmp(derived, creds->dummy_hash, HASH_BYTES);
        __atomic_add_fetch(&creds->work, creds->dummy_iterations, __ATOMIC_RELAXED);
        OPENSSL_cleanse(derived, sizeof derived);
        return NULL;
    }

    unsigned char digest[HASH_BYTES], cached[HASH_BYTES];
    bool have_digest = cache_digest(user, password, password_len, digest) == 0;
    pthread_mutex_lock(&creds->cache_lock);
    bool cache_valid = user->cache_valid;
    memcpy(cached, user->cache_digest, sizeof cached);
    pthread_mutex_unlock(&creds->cache_lock);
    bool match = have_digest && cache_valid && CRYPTO_memcmp(digest, cached, HASH_BYTES) == 0;

    if (!match) {
        match = derive_key(password, password_len, user->salt, user->salt_len, user->iterations,
                           derived) == 0 &&
                CRYPTO_memcmp(derived, user->hash, HASH_BYTES) == 0;
        /* Padding up to the largest iteration count of the file: a known name costs what an
         * unknown one costs (which is checked at that count), whatever this user's count is, so
         * the time of a failed login tells nothing about which names exist. */
        if (creds->dummy_iterations > user->iterations) {
            unsigned char pad[HASH_BYTES];
            if (derive_key(password, password_len, creds->dummy_salt, sizeof creds->dummy_salt,
                           creds->dummy_iterations - user->iterations, pad) == 0)
                (void)CRYPTO_memcmp(pad, creds->dummy_hash, HASH_BYTES);
            OPENSSL_cleanse(pad, sizeof pad);
        }
        unsigned long long done = user->iterations;
        if (creds->dummy_iterations > user->iterations)
            done += creds->dummy_iterations - user->iterations;
        __atomic_add_fetch(&creds->work, done, __ATOMIC_RELAXED);
        if (match && have_digest) {
            pthread_mutex_lock(&creds->cache_lock);
            memcpy(user->cache_digest, digest, sizeof digest);
            user->cache_valid = true;
            pthread_mutex_unlock(&creds->cache_lock);
        }
    }
    OPENSSL_cleanse(derived, sizeof derived);
    OPENSSL_cleanse(digest, sizeof digest);
    OPENSSL_cleanse(cached, sizeof cached);
    return match ? user : NULL;
}

unsigned long long serve_credentials_work(const serve_credentials *creds)
{
    return creds ? __atomic_load_n(&creds->work, __ATOMIC_RELAXED) : 0;
}

const char *serve_user_name(const serve_user *user)
{
    return user ? user->name : NULL;
}

/* Whether items holds wanted, compared case-insensitively. */
static bool list_contains(char *const *items, size_t count, const char *wanted)
{
    if (wanted == NULL)
        return false;
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(items[i], wanted) == 0)
            return true;
    return false;
}

bool serve_user_has_role(const serve_user *user, const char *role)
{
    return user != NULL && list_contains(user->roles, user->role_count, role);
}

bool serve_user_has_permission(const serve_user *user, const char *permission)
{
    return user != NULL && list_contains(user->permissions, user->permission_count, permission);
}

/* ---- hashing ---- */

char *serve_password_hash(const char *password, unsigned iterations)
{
    if (password == NULL || iterations < ITERATIONS_MIN || iterations > ITERATIONS_MAX)
        return NULL;
    unsigned char salt[NEW_SALT_BYTES], derived[HASH_BYTES];
    char *salt64 = NULL, *hash64 = NULL, *result = NULL;
    if (RAND_bytes(salt, sizeof salt) == 1 &&
        derive_key(password, strlen(password), salt, sizeof salt, iterations, derived) == 0) {
        salt64 = base64_encode(salt, sizeof salt);
        hash64 = base64_encode(derived, sizeof derived);
    }
    if (salt64 != NULL && hash64 != NULL) {
        size_t size = strlen(HASH_PREFIX) + 8 + 1 + strlen(salt64) + 1 + strlen(hash64) + 1;
        result = malloc(size);
        if (result != NULL)
            snprintf(result, size, HASH_PREFIX "%u$%s$%s", iterations, salt64, hash64);
    }
    OPENSSL_cleanse(derived, sizeof derived);
    if (hash64 != NULL)
        OPENSSL_cleanse(hash64, strlen(hash64));
    free(hash64);
    free(salt64);
    return result;
}

/* ---- HTTP Basic ---- */

int basic_auth_parse(const char *header_value, char **user, char **password)
{
    if (user != NULL)
        *user = NULL;
    if (password != NULL)
        *password = NULL;
    if (header_value == NULL || user == NULL || password == NULL)
        return -1;
    const char *p = header_value;
    p += strspn(p, " \t");
    if (strncasecmp(p, "Basic", 5) != 0 || (p[5] != ' ' && p[5] != '\t'))
        return -1;
    p += 5;
    p += strspn(p, " \t");
    size_t token_len = strcspn(p, " \t");
    if (p[token_len + strspn(p + token_len, " \t")] != '\0')
        return -1;
    size_t decoded_len = 0;
    unsigned char *decoded = base64_decode(p, token_len, BASE64_CANONICAL, &decoded_len);
    if (decoded == NULL)
        return -1;
    int rc = -1;
    const unsigned char *colon = memchr(decoded, ':', decoded_len);
    if (colon != NULL && memchr(decoded, '\0', decoded_len) == NULL) {
        size_t user_len = (size_t)(colon - decoded);
        *user = strndup((const char *)decoded, user_len);
        *password = strndup((const char *)colon + 1, decoded_len - user_len - 1);
        if (*user != NULL && *password != NULL) {
            rc = 0;
        } else {
            free(*user);
            if (*password != NULL)
                OPENSSL_cleanse(*password, strlen(*password));
            free(*password);
            *user = NULL;
            *password = NULL;
        }
    }
    OPENSSL_cleanse(decoded, decoded_len + 1);
    free(decoded);
    return rc;
}
