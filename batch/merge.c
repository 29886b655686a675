/* Merging the results of a sharded run: an index of the batch's lines (the hash of each Id), one
 * pass over each shard's results recording where each line's result is, then the report and the
 * merged file in batch order, read back from the shards' files by offset. */
#include "merge.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ndjson.h"
#include "shard.h"

#define LIST_MAX 1000

typedef struct line_slot {
    uint64_t id_hash; /* of the batch line's Id; 0: no Id */
    uint32_t file;    /* where its first result is (results_paths index) */
    uint32_t results; /* result lines found for it */
    off_t offset;     /* of that first result line */
    bool request;     /* a request line (not blank) */
} line_slot;

/* The Id's hash in a slot (shard_id_hash); 0 is kept for "no Id". */
static uint64_t hash_id(const char *id)
{
    uint64_t v = shard_id_hash(id, strlen(id));
    return v ? v : 1;
}

static void list_add(json_t *report, const char *name, json_t *entry)
{
    char count_name[64];
    snprintf(count_name, sizeof count_name, "%sCount", name);
    json_int_t n = json_integer_value(json_object_get(report, count_name)) + 1;
    json_object_set_new(report, count_name, json_integer(n));
    json_t *list = json_object_get(report, name);
    if (json_array_size(list) < LIST_MAX)
        json_array_append_new(list, entry);
    else
        json_decref(entry);
}

/* The batch's request lines, indexed by line number: slots[line], *nslots = last line + 1. */
static line_slot *index_batch(const char *path, long *nslots, long *requests, enroll_error *err)
{
    ndjson_reader reader;
    if (ndjson_open(&reader, path, 0, err) != 0)
        return NULL;
    line_slot *slots = NULL;
    long cap = 0;
    const char *text;
    size_t len;
    long line;
    ndjson_status st;
    *nslots = 0;
    *requests = 0;
    while ((st = ndjson_next(&reader, &text, &len, &line)) != NDJSON_EOF) {
        if (st == NDJSON_ERROR) {
            enroll_error_set(err, HSE_BATCH_UNREADABLE, NULL, "cannot read %s after line %ld", path,
                             line);
            free(slots);
            ndjson_close(&reader);
            return NULL;
        }
        if (line >= cap) {
            long grown = cap ? cap * 2 : 1024;
            while (grown <= line)
                grown *= 2;
            line_slot *more = realloc(slots, (size_t)grown * sizeof *slots);
            if (more == NULL) {
                enroll_error_set(err, HSE_OUT_OF_MEMORY, NULL, "out of memory");
                free(slots);
                ndjson_close(&reader);
                return NULL;
            }
            memset(more + cap, 0, (size_t)(grown - cap) * sizeof *more);
            slots = more;
            cap = grown;
        }
        char *id = st == NDJSON_LINE ? shard_line_id(text, len) : NULL;
        slots[line].id_hash = id ? hash_id(id) : 0;
        slots[line].request = true;
        free(id);
        (*requests)++;
        *nslots = line + 1;
    }
    ndjson_close(&reader);
    return slots;
}

/* One shard's results: each line's slot learns where its result is. */
static int scan_results(const char *path, uint32_t file, line_slot *slots, long nslots,
                        json_t *report, enroll_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "cannot read %s", path);
        return -1;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n;
    long number = 0;
    off_t offset = 0;
    while ((n = getline(&text, &cap, f)) > 0) {
        number++;
        off_t here = offset;
        offset += n;
        json_t *result = json_loadb(text, (size_t)n, 0, NULL);
        json_t *line_value = json_object_get(result, "Line");
        const char *id = json_string_value(json_object_get(result, "Id"));
        long line = json_is_integer(line_value) ? (long)json_integer_value(line_value) : -1;
        const char *why = NULL;
        if (result == NULL)
            why = "not a JSON result line";
        else if (line < 1 || line >= nslots || !slots[line].request)
            why = "no such request line in the batch";
        else if ((id != NULL ? hash_id(id) : 0) != slots[line].id_hash && id != NULL)
            why = "the batch line has another Id (a result of another batch?)";
        if (why != NULL) {
            list_add(report, "Strays",
                     json_pack("{s:s, s:I, s:s?, s:s}", "File", path, "Line", (json_int_t)number,
                               "Id", id, "Why", why));
        } else {
            if (slots[line].results++ == 0) {
                slots[line].file = file;
                slots[line].offset = here;
            }
            const char *status = json_string_value(json_object_get(result, "Status"));
            const char *counter = status == NULL                   ? NULL
                                  : strcmp(status, "issued") == 0  ? "Issued"
                                  : strcmp(status, "failed") == 0  ? "Failed"
                                  : strcmp(status, "pending") == 0 ? "Pending"
                                                                   : NULL;
            if (counter != NULL && slots[line].results == 1)
                json_object_set_new(
                    report, counter,
                    json_integer(json_integer_value(json_object_get(report, counter)) + 1));
        }
        json_decref(result);
    }
    free(text);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "cannot read %s", path);
        return -1;
    }
    return 0;
}

/* The Id of batch line `line` (for the report), re-read from the batch: malloc'd or NULL. */
static char *batch_line_id(ndjson_reader *reader, long line)
{
    const char *text;
    size_t len;
    long at;
    ndjson_status st;
    while ((st = ndjson_next(reader, &text, &len, &at)) != NDJSON_EOF && st != NDJSON_ERROR) {
        if (at == line)
            return st == NDJSON_LINE ? shard_line_id(text, len) : NULL;
        if (at > line)
            break;
    }
    return NULL;
}

json_t *merge_results(const char *batch_path, const char *const *results_paths, size_t count,
                      FILE *merged, enroll_error *err)
{
    if (batch_path == NULL || (results_paths == NULL && count > 0) || err == NULL)
        return NULL;
    enroll_error_clear(err);
    long nslots = 0, requests = 0;
    line_slot *slots = index_batch(batch_path, &nslots, &requests, err);
    if (slots == NULL && err->code[0] != '\0')
        return NULL;
    json_t *report =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:[], s:I, s:[], s:I, s:[], s:I}", "Lines",
                  (json_int_t)requests, "Results", (json_int_t)0, "Issued", (json_int_t)0, "Failed",
                  (json_int_t)0, "Pending", (json_int_t)0, "Missing", "MissingCount", (json_int_t)0,
                  "Doubled", "DoubledCount", (json_int_t)0, "Strays", "StraysCount", (json_int_t)0);
    for (size_t i = 0; i < count; i++)
        if (scan_results(results_paths[i], (uint32_t)i, slots, nslots, report, err) != 0) {
            json_decref(report);
            free(slots);
            return NULL;
        }
    /* Missing and doubled lines, in batch order, with their Ids read back from the batch. */
    ndjson_reader reader;
    bool reread = ndjson_open(&reader, batch_path, 0, err) == 0;
    json_int_t results = 0;
    for (long line = 1; line < nslots; line++) {
        if (!slots[line].request)
            continue;
        results += slots[line].results > 0;
        if (slots[line].results == 1)
            continue;
        char *id = reread ? batch_line_id(&reader, line) : NULL;
        if (slots[line].results == 0) {
            list_add(report, "Missing",
                     json_pack("{s:I, s:s?}", "Line", (json_int_t)line, "Id", id));
        } else {
            list_add(report, "Doubled",
                     json_pack("{s:I, s:s?, s:I}", "Line", (json_int_t)line, "Id", id, "Results",
                               (json_int_t)slots[line].results));
        }
        free(id);
    }
    if (reread)
        ndjson_close(&reader);
    enroll_error_clear(err);
    json_object_set_new(report, "Results", json_integer(results));
    json_object_set_new(
        report, "Exact",
        json_boolean(json_integer_value(json_object_get(report, "MissingCount")) == 0 &&
                     json_integer_value(json_object_get(report, "DoubledCount")) == 0 &&
                     json_integer_value(json_object_get(report, "StraysCount")) == 0));
    /* The merged file: each line's first result, copied from its shard's file. */
    if (merged != NULL) {
        FILE **files = calloc(count ? count : 1, sizeof *files);
        char *text = NULL;
        size_t cap = 0;
        int failed = files == NULL;
        for (long line = 1; line < nslots && !failed; line++) {
            if (slots[line].results == 0)
                continue;
            uint32_t f = slots[line].file;
            if (files[f] == NULL && (files[f] = fopen(results_paths[f], "r")) == NULL)
                failed = 1;
            else if (fseeko(files[f], slots[line].offset, SEEK_SET) != 0 ||
                     getline(&text, &cap, files[f]) <= 0 || fputs(text, merged) == EOF ||
                     (text[strlen(text) - 1] != '\n' && fputc('\n', merged) == EOF))
                failed = 1;
        }
        for (size_t i = 0; files != NULL && i < count; i++)
            if (files[i] != NULL)
                fclose(files[i]);
        free(files);
        free(text);
        if (failed || fflush(merged) != 0) {
            enroll_error_set(err, HSE_RESULTS_UNREADABLE, NULL, "cannot write the merged results");
            json_decref(report);
            report = NULL;
        }
    }
    free(slots);
    return report;
}
