/* Atomic output files: temp file + fsync + rename + directory fsync, with O_CLOEXEC everywhere. */
#include "output.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int output_dir_open(output_dir *dir, const char *path, bool create, enroll_error *err)
{
    memset(dir, 0, sizeof *dir);
    dir->fd = -1;
    if (create && mkdir(path, 0750) != 0 && errno != EEXIST) {
        enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot create output directory %s: %s", path,
                         strerror(errno));
        return -1;
    }
    dir->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir->fd < 0) {
        enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot open output directory %s: %s", path,
                         strerror(errno));
        return -1;
    }
    dir->path = strdup(path);
    dir->sync = true;
    return 0;
}

int output_open_private(int dirfd, const char *dir_path, const char *name, int extra_flags,
                        bool truncate, hse_code code_else, enroll_error *err)
{
    char shown[4200];
    snprintf(shown, sizeof shown, "%s%s%s", dir_path ? dir_path : "", dir_path ? "/" : "", name);
    /* O_NONBLOCK: a FIFO planted there must not hang the open; it is refused below. */
    int fd = openat(dirfd, name,
                    O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | extra_flags, 0600);
    if (fd < 0) {
        if (errno == ELOOP)
            enroll_error_set(err, HSE_UNSAFE_OUTPUT, NULL,
                             "%s is a symbolic link: refusing to write through it (remove it)",
                             shown);
        else if (errno == ENXIO)
            enroll_error_set(err, HSE_UNSAFE_OUTPUT, NULL, "%s is not a regular file", shown);
        else
            enroll_error_set(err, code_else, NULL, "cannot create %s: %s", shown, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_nlink > 1)
        bad = "a hard link (it has other names): refusing to write through it";
    if (bad != NULL) {
        enroll_error_set(err, HSE_UNSAFE_OUTPUT, NULL, "%s is %s", shown, bad);
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) ||
        (truncate && ftruncate(fd, 0) != 0)) {
        enroll_error_set(err, code_else, NULL, "cannot create %s: %s", shown, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool earlier_output(const char *name)
{
    if (strcmp(name, "results.ndjson") == 0 || strcmp(name, "journal.ndjson") == 0)
        return true;
    static const char *const ext[] = {".pfx", ".pem", ".der", ".p8"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && name[0] != '.' && strcmp(name + n - e, ext[i]) == 0)
            return true;
    }
    return false;
}

/* Calls fn for each earlier output of dir (stops at its first non-zero answer). */
static int each_earlier(const output_dir *dir, int (*fn)(const char *name, void *ctx), void *ctx)
{
    int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!earlier_output(e->d_name))
            continue;
        /* A run writes files: a directory of that name is no earlier output (it is in the way
         * of this run's file, which then fails DELIVERY_FAILED on its own). */
        struct stat st;
        if (e->d_type == DT_DIR ||
            (e->d_type == DT_UNKNOWN && fstatat(dir->fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             S_ISDIR(st.st_mode)))
            continue;
        rc = fn(e->d_name, ctx);
    }
    closedir(d);
    return rc;
}

typedef struct earlier_count {
    size_t count;
    char *first;
    size_t first_size;
} earlier_count;

static int count_one(const char *name, void *ctx)
{
    earlier_count *c = ctx;
    if (c->count++ == 0 && c->first != NULL)
        snprintf(c->first, c->first_size, "%s", name);
    return 0;
}

size_t output_dir_earlier(const output_dir *dir, char *first, size_t first_size)
{
    earlier_count c = {0, first, first_size};
    if (first != NULL && first_size > 0)
        first[0] = '\0';
    each_earlier(dir, count_one, &c);
    return c.count;
}

typedef struct move_ctx {
    const output_dir *dir;
    int aside_fd;
    size_t moved;
    enroll_error *err;
} move_ctx;

static int move_one(const char *name, void *ctx)
{
    move_ctx *m = ctx;
    if (renameat(m->dir->fd, name, m->aside_fd, name) != 0) {
        enroll_error_set(m->err, HSE_OUTPUT_DIR, NULL, "cannot move %s/%s aside: %s", m->dir->path,
                         name, strerror(errno));
        return -1;
    }
    m->moved++;
    return 0;
}

int output_dir_move_aside(const output_dir *dir, const char *aside, size_t *moved,
                          enroll_error *err)
{
    *moved = 0;
    if (mkdirat(dir->fd, aside, 0750) != 0) {
        enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot create %s/%s: %s", dir->path, aside,
                         strerror(errno));
        return -1;
    }
    move_ctx m = {dir, openat(dir->fd, aside, O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0, err};
    if (m.aside_fd < 0) {
        enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot open %s/%s: %s", dir->path, aside,
                         strerror(errno));
        return -1;
    }
    /* Entries renamed away while the directory is read may hide others: read it again until
     * none is left (each pass moves at least one, or fails). */
    int rc = 0;
    size_t before;
    do {
        before = m.moved;
        rc = each_earlier(dir, move_one, &m);
    } while (rc == 0 && m.moved > before);
    if (rc == 0 && dir->sync && (fsync(m.aside_fd) != 0 || fsync(dir->fd) != 0))
        rc = -1;
    close(m.aside_fd);
    *moved = m.moved;
    if (rc != 0 && err->code[0] == '\0')
        enroll_error_set(err, HSE_OUTPUT_DIR, NULL, "cannot move the earlier outputs of %s aside",
                         dir->path);
    return rc;
}

void output_dir_close(output_dir *dir)
{
    if (dir->fd >= 0)
        close(dir->fd);
    free(dir->path);
    dir->fd = -1;
    dir->path = NULL;
}

bool output_name_is_safe(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* DISK_FULL when the file system is full, WRITE_FAILED for any other failure to write into the
 * directory (read-only, immutable, no permission, I/O error): both stop a run, which resumes
 * once this is fixed. Reads errno. */
static hse_code write_error_code(void)
{
    return errno == ENOSPC || errno == EDQUOT ? HSE_DISK_FULL : HSE_WRITE_FAILED;
}

/* The final rename failed: about this one name (a directory or another non-file in the way)
 * DELIVERY_FAILED; about the directory or the file system, as write_error_code. */
static hse_code rename_error_code(int e)
{
    switch (e) {
    case EISDIR:
    case ENOTEMPTY:
    case EEXIST:
    case ENOTDIR:
    case EBUSY:
    case ENAMETOOLONG:
        return HSE_DELIVERY_FAILED;
    default:
        errno = e;
        return write_error_code();
    }
}

int output_write_atomic(const output_dir *dir, const char *name, const void *data, size_t len,
                        mode_t mode, enroll_error *err)
{
    char tmp[256];
    static _Atomic unsigned long counter;
    snprintf(tmp, sizeof tmp, ".%s.%ld.%lu.tmp", name, (long)getpid(), counter++);
    int fd = openat(dir->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        enroll_error_set(err, write_error_code(), NULL, "cannot create %s/%s: %s", dir->path, name,
                         strerror(errno));
        return -1;
    }
    int saved = 0;
    bool renaming = false;
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 || (dir->sync && fsync(fd) != 0))
        saved = errno;
    if (close(fd) != 0 && saved == 0)
        saved = errno;
    if (saved == 0 && renameat(dir->fd, tmp, dir->fd, name) != 0) {
        saved = errno;
        renaming = true;
    }
    if (saved != 0) {
        unlinkat(dir->fd, tmp, 0);
        errno = saved;
        enroll_error_set(err, renaming ? rename_error_code(saved) : write_error_code(), NULL,
                         "cannot write %s/%s: %s", dir->path, name, strerror(saved));
        return -1;
    }
    if (dir->sync && fsync(dir->fd) != 0) {
        enroll_error_set(err, write_error_code(), NULL, "cannot sync directory %s: %s", dir->path,
                         strerror(errno));
        return -1;
    }
    return 0;
}
