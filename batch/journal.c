/* The run journal (see journal.h): buffered appends, group commit, and a reader that trusts only
 * lines whose CRC-32 (zlib) matches. */
#include "journal.h"
#include "json_out.h"
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FLUSH_AT (256u * 1024u) /* write (not sync) the buffer once it holds this much */

struct journal {
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t synced_cond;
    char *buf;
    size_t len, cap;
    uint64_t appended; /* last sequence number handed out */
    uint64_t written;  /* records up to here are in the file (not necessarily on disk) */
    uint64_t synced;   /* records up to here are on disk */
    bool syncing;
    bool failed;
    enroll_error err;
};

static journal *journal_new(int fd)
{
    journal *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->fd = fd;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->synced_cond, NULL);
    return j;
}

journal *journal_create(const char *path, enroll_error *err)
{
    /* Never through a symbolic link (O_EXCL refuses any existing name), mode 0600. */
    int fd = output_open_private(AT_FDCWD, NULL, path, O_EXCL | O_APPEND, false, HSE_JOURNAL_FAILED,
                                 err);
    if (fd < 0)
        return NULL;
    journal *j = journal_new(fd);
    if (j == NULL) {
        close(fd);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
    }
    return j;
}

journal *journal_reopen(const char *path, off_t good_end, enroll_error *err)
{
    int fd = output_open_private(AT_FDCWD, NULL, path, O_APPEND, false, HSE_JOURNAL_FAILED, err);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, good_end) != 0 || fdatasync(fd) != 0) {
        enroll_error_set(err, HSE_JOURNAL_FAILED, NULL, "cannot reopen the journal %s: %s", path,
                         strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    journal *j = journal_new(fd);
    if (j == NULL) {
        close(fd);
        enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
    }
    return j;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Marks the journal failed (under the lock). */
static void fail_locked(journal *j, const char *what)
{
    if (!j->failed)
        enroll_error_set(&j->err,
                         errno == ENOSPC || errno == EDQUOT ? HSE_DISK_FULL : HSE_JOURNAL_FAILED,
                         NULL, "cannot %s the journal: %s", what, strerror(errno));
    j->failed = true;
    pthread_cond_broadcast(&j->synced_cond);
}

uint64_t journal_append(journal *j, const char *type, json_t *record)
{
    json_object_set_new(record, "T", json_string(type));
    char *text = json_out_compact(record); /* json_dumps(record, JSON_COMPACT), faster */
    json_object_del(record, "T");
    if (text == NULL)
        return 0;
    size_t tlen = strlen(text);
    uLong crc = crc32(0L, (const Bytef *)text, (uInt)tlen);
    pthread_mutex_lock(&j->lock);
    uint64_t seq = 0;
    if (!j->failed) {
        size_t need = j->len + tlen + 10;
        if (need > j->cap) {
            size_t cap = need * 2;
            char *grown = realloc(j->buf, cap);
            if (grown == NULL) {
                pthread_mutex_unlock(&j->lock);
                free(text);
                return 0;
            }
            j->buf = grown;
            j->cap = cap;
        }
        j->len += (size_t)snprintf(j->buf + j->len, 10, "%08lx ", crc & 0xffffffffUL);
        memcpy(j->buf + j->len, text, tlen);
        j->len += tlen;
        j->buf[j->len++] = '\n';
        seq = ++j->appended;
        /* A large buffer is written out by the appender, unless a sync is taking it anyway. */
        if (j->len >= FLUSH_AT && !j->syncing) {
            if (write_all(j->fd, j->buf, j->len) != 0)
                fail_locked(j, "write");
            j->len = 0;
            j->written = j->appended;
        }
    }
    pthread_mutex_unlock(&j->lock);
    free(text);
    return seq;
}

int journal_sync(journal *j, uint64_t seq)
{
    pthread_mutex_lock(&j->lock);
    while (!j->failed && j->synced < seq) {
        if (j->syncing) {
            pthread_cond_wait(&j->synced_cond, &j->lock);
            continue;
        }
        /* This thread syncs for everyone: take the buffer, write and fsync without the lock. */
        j->syncing = true;
        char *buf = j->buf;
        size_t len = j->len;
        uint64_t target = j->appended;
        j->buf = NULL;
        j->len = j->cap = 0;
        pthread_mutex_unlock(&j->lock);
        int rc = len > 0 ? write_all(j->fd, buf, len) : 0;
        const char *what = "write";
        if (rc == 0) {
            rc = fdatasync(j->fd);
            what = "sync";
        }
        free(buf);
        pthread_mutex_lock(&j->lock);
        j->syncing = false;
        if (rc != 0)
            fail_locked(j, what);
        else
            j->synced = j->written = target;
        pthread_cond_broadcast(&j->synced_cond);
    }
    int rc = j->failed ? -1 : 0;
    pthread_mutex_unlock(&j->lock);
    return rc;
}

const enroll_error *journal_failed(journal *j)
{
    pthread_mutex_lock(&j->lock);
    const enroll_error *e = j->failed ? &j->err : NULL;
    pthread_mutex_unlock(&j->lock);
    return e;
}

int journal_close(journal *j)
{
    if (j == NULL)
        return 0;
    pthread_mutex_lock(&j->lock);
    uint64_t last = j->appended;
    pthread_mutex_unlock(&j->lock);
    int rc = journal_sync(j, last);
    if (close(j->fd) != 0)
        rc = -1;
    free(j->buf);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->synced_cond);
    free(j);
    return rc;
}

/* The record of one journal line (n bytes with its newline), or NULL when the line is bad:
 * 8 hex digits, a space, JSON with a "T" member, a newline, and the CRC of the JSON. */
static json_t *line_record(const char *line, ssize_t n)
{
    if (n < 11 || line[n - 1] != '\n' || line[8] != ' ')
        return NULL;
    char *end;
    unsigned long want = strtoul(line, &end, 16);
    if (end != line + 8)
        return NULL;
    const char *text = line + 9;
    size_t tlen = (size_t)n - 10;
    if ((crc32(0L, (const Bytef *)text, (uInt)tlen) & 0xffffffffUL) != want)
        return NULL;
    json_t *record = json_loadb(text, tlen, 0, NULL);
    if (json_string_value(json_object_get(record, "T")) == NULL) {
        json_decref(record);
        return NULL;
    }
    return record;
}

/* One pass over the journal: every good line is visited (when visit is set) unless stop_at_bad,
 * which stops at the first bad line (the rest is only checked). */
static int scan(const char *path, int (*visit)(void *ctx, const char *type, json_t *record),
                void *ctx, bool stop_at_bad, journal_damage *out, enroll_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_JOURNAL_UNREADABLE, NULL, "cannot read the journal %s: %s", path,
                         strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    off_t pos = 0;
    long number = 0, pending_bad = 0, first_pending = 0;
    bool bad_seen = false;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        number++;
        pos += n;
        json_t *record = line_record(line, n);
        if (record == NULL) {
            if (pending_bad++ == 0)
                first_pending = number;
            bad_seen = true;
            continue;
        }
        if (pending_bad > 0) { /* bad lines with a good one after them: damage */
            if (out->first_bad_line == 0)
                out->first_bad_line = first_pending;
            out->bad_lines += pending_bad;
            pending_bad = 0;
        }
        out->good_lines++;
        out->good_end = pos;
        if (visit != NULL && !(stop_at_bad && bad_seen)) {
            int v = visit(ctx, json_string_value(json_object_get(record, "T")), record);
            if (v != 0) {
                json_decref(record);
                rc = -1;
                if (err->code[0] == '\0')
                    enroll_error_set(err, HSE_JOURNAL_UNREADABLE, NULL,
                                     "the journal %s is not usable", path);
                break;
            }
        }
        json_decref(record);
    }
    free(line);
    if (fseeko(f, 0, SEEK_END) == 0) {
        off_t size = ftello(f);
        out->torn = size > out->good_end ? size - out->good_end : 0;
    }
    fclose(f);
    return rc;
}

int journal_check(const char *path, journal_damage *out, enroll_error *err)
{
    return scan(path, NULL, NULL, true, out, err);
}

int journal_read_salvage(const char *path,
                         int (*visit)(void *ctx, const char *type, json_t *record), void *ctx,
                         journal_damage *out, enroll_error *err)
{
    return scan(path, visit, ctx, false, out, err);
}

int journal_read(const char *path, int (*visit)(void *ctx, const char *type, json_t *record),
                 void *ctx, off_t *good_end, off_t *torn, enroll_error *err)
{
    journal_damage d;
    if (journal_check(path, &d, err) != 0)
        return -1;
    if (d.first_bad_line > 0) {
        enroll_error_set(err, HSE_JOURNAL_DAMAGED, NULL,
                         "the journal %s is damaged: line %ld fails its check and good records "
                         "follow it (%ld bad line%s in all); --resume --salvage keeps every record "
                         "that can be verified",
                         path, d.first_bad_line, d.bad_lines, d.bad_lines == 1 ? "" : "s");
        return -1;
    }
    if (scan(path, visit, ctx, true, &d, err) != 0)
        return -1;
    *good_end = d.good_end;
    *torn = d.torn;
    return 0;
}
