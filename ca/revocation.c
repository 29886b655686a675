/* The embedded CA's revocation list (see revocation.h): an in-memory index of revoked.ndjson,
 * read on open and brought up to date from the file's end before each append. */
#include "ca/revocation.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/idset.h"

static const char *const reason_names[] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", NULL,
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
};
#define REASON_COUNT (int)(sizeof reason_names / sizeof reason_names[0])

int revocation_reason_parse(const char *text)
{
    if (text == NULL || *text == '\0')
        return -1;
    if (isdigit((unsigned char)*text)) {
        char *end;
        long n = strtol(text, &end, 10);
        if (*end != '\0' || n < 0 || n >= REASON_COUNT || reason_names[n] == NULL ||
            n == REVOKE_REMOVE_FROM_CRL)
            return -1;
        return (int)n;
    }
    for (int i = 0; i < REASON_COUNT; i++)
        if (reason_names[i] != NULL && i != REVOKE_REMOVE_FROM_CRL &&
            strcasecmp(text, reason_names[i]) == 0)
            return i;
    return -1;
}

const char *revocation_reason_name(int reason)
{
    if (reason < 0 || reason >= REASON_COUNT || reason_names[reason] == NULL)
        return "unspecified";
    return reason_names[reason];
}

static int bn_norm(BIGNUM *bn, char out[REVOCATION_SERIAL_MAX])
{
    if (bn == NULL || BN_is_zero(bn) || BN_is_negative(bn)) {
        BN_free(bn);
        return -1;
    }
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    int ok = hex != NULL && strlen(hex) < REVOCATION_SERIAL_MAX;
    if (ok)
        strcpy(out, hex);
    OPENSSL_free(hex);
    return ok ? 0 : -1;
}

int revocation_serial_norm(const char *serial, char out[REVOCATION_SERIAL_MAX])
{
    if (serial == NULL)
        return -1;
    if (serial[0] == '0' && (serial[1] == 'x' || serial[1] == 'X'))
        serial += 2;
    char digits[2 * REVOCATION_SERIAL_MAX];
    size_t n = 0;
    for (const char *p = serial; *p; p++) {
        if (*p == ':')
            continue;
        if (!isxdigit((unsigned char)*p) || n + 1 >= sizeof digits)
            return -1;
        digits[n++] = *p;
    }
    digits[n] = '\0';
    if (n == 0)
        return -1;
    BIGNUM *bn = NULL;
    if (BN_hex2bn(&bn, digits) != (int)n)
        return -1;
    return bn_norm(bn, out);
}

int revocation_serial_of(const ASN1_INTEGER *serial, char out[REVOCATION_SERIAL_MAX])
{
    return bn_norm(ASN1_INTEGER_to_BN(serial, NULL), out);
}

struct revocation_list {
    pthread_mutex_t lock;
    char *path;
    int fd;         /* O_RDWR | O_APPEND */
    off_t read_end; /* bytes read and indexed (whole lines) */
    revocation_entry *entries;
    size_t count, cap;
    size_t *slots; /* open addressing over idset_hash(serial): index + 1, 0 empty */
    size_t slot_cap;
};

static size_t *slot_of(revocation_list *list, const char *serial)
{
    size_t mask = list->slot_cap - 1;
    for (size_t i = (size_t)idset_hash(serial) & mask;; i = (i + 1) & mask) {
        size_t *s = &list->slots[i];
        if (*s == 0 || strcmp(list->entries[*s - 1].serial, serial) == 0)
            return s;
    }
}

static int index_entry(revocation_list *list, const revocation_entry *e)
{
    if (2 * (list->count + 1) > list->slot_cap) {
        size_t cap = list->slot_cap ? 2 * list->slot_cap : 64;
        size_t *slots = calloc(cap, sizeof *slots);
        if (slots == NULL)
            return -1;
        free(list->slots);
        list->slots = slots;
        list->slot_cap = cap;
        for (size_t i = 0; i < list->count; i++)
            *slot_of(list, list->entries[i].serial) = i + 1;
    }
    size_t *slot = slot_of(list, e->serial);
    if (*slot != 0)
        return 0; /* recorded twice (never written so, but read tolerantly): the first counts */
    if (list->count == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 64;
        revocation_entry *grown = realloc(list->entries, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        list->entries = grown;
        list->cap = cap;
    }
    list->entries[list->count++] = *e;
    *slot = list->count;
    return 0;
}

static time_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
        return 0;
    return timegm(&tm);
}

static void format_iso(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void parse_line(revocation_list *list, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    revocation_entry e;
    memset(&e, 0, sizeof e);
    const char *serial = json_string_value(json_object_get(o, "Serial"));
    if (serial != NULL && revocation_serial_norm(serial, e.serial) == 0) {
        e.revoked = parse_iso(json_string_value(json_object_get(o, "Revoked")));
        e.reason = revocation_reason_parse(json_string_value(json_object_get(o, "Reason")));
        if (e.reason < 0)
            e.reason = REVOKE_UNSPECIFIED;
        e.keyfactor_id = json_integer_value(json_object_get(o, "KeyfactorID"));
        index_entry(list, &e);
    }
    json_decref(o);
}

/* Reads whole lines from read_end to the end of the file (the caller holds list->lock). */
static void read_new(revocation_list *list)
{
    struct stat st;
    if (fstat(list->fd, &st) != 0 || st.st_size <= list->read_end)
        return;
    size_t n = (size_t)(st.st_size - list->read_end);
    char *buf = malloc(n);
    if (buf == NULL)
        return;
    ssize_t got = pread(list->fd, buf, n, list->read_end);
    if (got > 0) {
        size_t start = 0;
        for (size_t i = 0; i < (size_t)got; i++) {
            if (buf[i] != '\n')
                continue;
            if (i > start)
                parse_line(list, buf + start, i - start);
            start = i + 1;
        }
        list->read_end += (off_t)start; /* a torn tail stays unread */
    }
    free(buf);
}

revocation_list *revocation_open(const char *home, enroll_error *err)
{
    revocation_list *list = calloc(1, sizeof *list);
    if (list == NULL || asprintf(&list->path, "%s/%s", home, REVOCATION_FILE) < 0) {
        free(list);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&list->lock, NULL);
    list->fd = open(list->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (list->fd < 0) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, NULL, "cannot open %s: %s", list->path,
                         strerror(errno));
        revocation_close(list);
        return NULL;
    }
    read_new(list);
    return list;
}

void revocation_close(revocation_list *list)
{
    if (list == NULL)
        return;
    if (list->fd >= 0)
        close(list->fd);
    pthread_mutex_destroy(&list->lock);
    free(list->entries);
    free(list->slots);
    free(list->path);
    free(list);
}

void revocation_refresh(revocation_list *list)
{
    pthread_mutex_lock(&list->lock);
    read_new(list);
    pthread_mutex_unlock(&list->lock);
}

static int write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

int revocation_add(revocation_list *list, const revocation_entry *entry, revocation_entry *existing,
                   enroll_error *err)
{
    revocation_entry e = *entry;
    if (revocation_serial_norm(entry->serial, e.serial) != 0) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, NULL, "\"%.80s\" is not a serial number",
                         entry->serial);
        return -1;
    }
    pthread_mutex_lock(&list->lock);
    int rc = -1;
    if (flock(list->fd, LOCK_EX) != 0) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, NULL, "cannot lock %s: %s", list->path,
                         strerror(errno));
        goto done;
    }
    read_new(list);
    size_t *slot = list->slot_cap ? slot_of(list, e.serial) : NULL;
    if (slot != NULL && *slot != 0) {
        if (existing != NULL)
            *existing = list->entries[*slot - 1];
        rc = 1;
        goto unlock;
    }
    struct stat st;
    bool torn = fstat(list->fd, &st) == 0 && st.st_size > list->read_end;
    char when[32];
    format_iso(e.revoked, when, sizeof when);
    char *line = NULL;
    int len = e.keyfactor_id > 0
                  ? asprintf(&line,
                             "%s{\"Serial\":\"%s\",\"Revoked\":\"%s\",\"Reason\":\"%s\","
                             "\"KeyfactorID\":%lld}\n",
                             torn ? "\n" : "", e.serial, when, revocation_reason_name(e.reason),
                             e.keyfactor_id)
                  : asprintf(&line, "%s{\"Serial\":\"%s\",\"Revoked\":\"%s\",\"Reason\":\"%s\"}\n",
                             torn ? "\n" : "", e.serial, when, revocation_reason_name(e.reason));
    if (len < 0 || write_all(list->fd, line, (size_t)len) != 0 || fdatasync(list->fd) != 0) {
        enroll_error_set(err, HSE_CA_REVOKE_FAILED, NULL, "cannot append to %s: %s", list->path,
                         strerror(errno));
    } else {
        read_new(list); /* indexes the line just written (and the torn one it ended, ignored) */
        rc = 0;
    }
    free(line);
unlock:
    flock(list->fd, LOCK_UN);
done:
    pthread_mutex_unlock(&list->lock);
    return rc;
}

bool revocation_find(revocation_list *list, const char *serial, revocation_entry *out)
{
    char norm[REVOCATION_SERIAL_MAX];
    if (revocation_serial_norm(serial, norm) != 0)
        return false;
    pthread_mutex_lock(&list->lock);
    bool found = false;
    if (list->slot_cap > 0) {
        size_t *slot = slot_of(list, norm);
        if (*slot != 0) {
            found = true;
            if (out != NULL)
                *out = list->entries[*slot - 1];
        }
    }
    pthread_mutex_unlock(&list->lock);
    return found;
}

revocation_entry *revocation_snapshot(revocation_list *list, size_t *count)
{
    pthread_mutex_lock(&list->lock);
    revocation_entry *copy = malloc((list->count ? list->count : 1) * sizeof *copy);
    *count = 0;
    if (copy != NULL) {
        if (list->count > 0)
            memcpy(copy, list->entries, list->count * sizeof *copy);
        *count = list->count;
    }
    pthread_mutex_unlock(&list->lock);
    return copy;
}

long long revocation_size(revocation_list *list)
{
    pthread_mutex_lock(&list->lock);
    long long n = (long long)list->read_end;
    pthread_mutex_unlock(&list->lock);
    return n;
}
