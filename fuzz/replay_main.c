/* The regression run of a fuzz target (what ctest calls fuzz_replay_<name>): every file of each
 * corpus directory named on the command line goes once through the target's
 * LLVMFuzzerTestOneInput, in name order. A missing, unreadable or empty directory fails. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support.h"

/* Runs one file; the buffer is exactly its size, so a read past the input is caught by ASan. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    int bad = ferror(f) || buf == NULL;
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        return -1;
    }
    unsigned char *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int replay_dir(const char *dir)
{
    struct dirent **entries;
    int n = scandir(dir, &entries, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot read the corpus directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int files = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        if (rc == 0 && entries[i]->d_name[0] != '.' &&
            snprintf(path, sizeof path, "%s/%s", dir, entries[i]->d_name) < (int)sizeof path &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = replay_file(path);
            files++;
        }
        free(entries[i]);
    }
    free(entries);
    if (rc == 0 && files == 0) {
        fprintf(stderr, "replay: the corpus directory %s holds no input\n", dir);
        return -1;
    }
    if (rc == 0)
        printf("replay: %d inputs of %s ran\n", files, dir);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int rc;
        if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
            rc = replay_file(argv[i]);
        else
            rc = replay_dir(argv[i]);
        if (rc != 0)
            return 1;
    }
    return 0;
}
