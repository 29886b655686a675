/* The run journal: an append-only file of checksummed records of each request's progress, one
 * line each ("<crc32 of the JSON, 8 hex> <JSON>\n"), with group commit (records are buffered;
 * journal_sync makes a record durable, and one fdatasync serves every thread waiting for it).
 * A bad line (torn, or failing its check) followed only by bad bytes is a torn tail, cut when the
 * journal is reopened; a bad line followed by a good one is damage, which reading refuses unless
 * it is asked to salvage (skip every bad line, keep every good one). */
#ifndef HSMENROLL_BATCH_JOURNAL_H
#define HSMENROLL_BATCH_JOURNAL_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "formats/error.h"

typedef struct journal journal;

/* Creates path (mode 0600; it must not exist) for appending. NULL with err (JOURNAL_FAILED). */
journal *journal_create(const char *path, enroll_error *err);
/* Opens an existing journal for appending after cutting it to good_end bytes (what
 * journal_read found good). NULL with err. */
journal *journal_reopen(const char *path, off_t good_end, enroll_error *err);

/* Appends a record (takes no reference); its type goes in as member "T". Returns its sequence
 * number (> 0), or 0 when the journal has failed (a write error: err of journal_failed). */
uint64_t journal_append(journal *j, const char *type, json_t *record);
/* Returns once every record up to seq is on disk (0), or -1 when writing failed. Thread-safe:
 * callers arriving while a sync runs wait for it, then share the next one. */
int journal_sync(journal *j, uint64_t seq);
/* Why the journal failed (write or fsync error), or NULL. */
const enroll_error *journal_failed(journal *j);
/* Syncs what is buffered and closes. 0, or -1 when something could not be written. */
int journal_close(journal *j);

/* Calls visit for each good record, in order, with its type ("T") and the record. visit returns
 * 0 to go on, -1 to stop with an error. *good_end gets the size of the good prefix, *torn the
 * number of bytes after it (a torn or corrupt tail). 0, or -1 with err (unreadable, visit failed,
 * or JOURNAL_DAMAGED: a bad line before a good one; nothing is visited then). */
int journal_read(const char *path, int (*visit)(void *ctx, const char *type, json_t *record),
                 void *ctx, off_t *good_end, off_t *torn, enroll_error *err);

/* What a check of the whole journal found. */
typedef struct journal_damage {
    long first_bad_line; /* the first bad line followed by a good one (1-based); 0: no damage */
    long bad_lines;      /* bad lines followed by a good one */
    long good_lines;     /* lines whose check holds */
    off_t good_end;      /* the end of the last good line */
    off_t torn;          /* bytes after it */
} journal_damage;

/* Checks every line of the journal at path (nothing is visited). 0, or -1 with err
 * (unreadable). */
int journal_check(const char *path, journal_damage *out, enroll_error *err);
/* Visits every good record, skipping every bad line (--salvage); *out as journal_check.
 * 0, or -1 with err (unreadable, or visit failed). */
int journal_read_salvage(const char *path,
                         int (*visit)(void *ctx, const char *type, json_t *record), void *ctx,
                         journal_damage *out, enroll_error *err);

#endif
