/* Output files that appear whole or not at all: each is written to a temporary file in the same
 * directory, fsync'ed, renamed over its final name, and the directory is fsync'ed. */
#ifndef HSMENROLL_BATCH_OUTPUT_H
#define HSMENROLL_BATCH_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "formats/error.h"

typedef struct output_dir {
    int fd;     /* the directory, for openat/renameat */
    char *path; /* as given, for messages */
    bool sync;  /* fsync files and directory (default true) */
} output_dir;

/* Opens (creating it with mode 0750 when create is true and it is missing) the directory path.
 * Returns 0 or -1 with err (code OUTPUT_DIR). */
int output_dir_open(output_dir *dir, const char *path, bool create, enroll_error *err);
void output_dir_close(output_dir *dir);

/* What an earlier run left in dir: results.ndjson, journal.ndjson and bundles (*.pfx, *.pem,
 * *.der, *.p8). The number of such files, and the first one's name in first (when not NULL). */
size_t output_dir_earlier(const output_dir *dir, char *first, size_t first_size);

/* Moves what output_dir_earlier counts into a new subdirectory dir/aside (mode 0750), so a
 * new run starts clean and nothing of the earlier one is lost. 0 with *moved set, or -1 with err
 * (OUTPUT_DIR; what was moved stays moved). */
int output_dir_move_aside(const output_dir *dir, const char *aside, size_t *moved,
                          enroll_error *err);

/* Writes name inside dir atomically with the given mode (0600 for anything holding a key or a
 * password). Returns 0, or -1 with err (message naming the file and errno): DELIVERY_FAILED when
 * only this name is in the way (a directory of that name, ...), DISK_FULL when the file system is
 * full, WRITE_FAILED when the directory cannot be written (read-only, immutable, I/O error);
 * on failure no file of that name is created or changed and no temporary file is left behind. */
int output_write_atomic(const output_dir *dir, const char *name, const void *data, size_t len,
                        mode_t mode, enroll_error *err);

/* Opens dirfd/name (dirfd may be AT_FDCWD) for writing a private file: created with mode 0600,
 * never through a symbolic link, refused when it is a hard link (several names) or not a regular
 * file, its mode set to 0600 when it existed, and truncated (when truncate is true) only after
 * these checks. extra_flags adds e.g. O_APPEND or O_EXCL. what names the file in messages
 * ("results", "journal"). Returns the descriptor, or -1 with err: code UNSAFE_OUTPUT for a symbolic
 * link, a hard link or a non-regular file, else code_else with errno's text. */
int output_open_private(int dirfd, const char *dir_path, const char *name, int extra_flags,
                        bool truncate, hse_code code_else, enroll_error *err);

/* True when name is a safe file stem: 1-200 characters of [A-Za-z0-9._-], not starting with '.'. */
bool output_name_is_safe(const char *name);

#endif
