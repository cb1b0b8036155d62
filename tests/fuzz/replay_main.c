/* A main for fuzz targets built without libFuzzer. It runs the target once
 * on every file named on the command line and on every file inside each
 * named folder (not recursive). Every compiler and every build thus checks
 * the corpus and its crash regressions. */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_support.h"

#define REPLAY_MAX_BYTES (64u << 20)

static int run_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    struct stat info;
    if (file == NULL || fstat(fileno(file), &info) != 0) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        if (file != NULL)
            fclose(file);
        return 1;
    }
    if (info.st_size > REPLAY_MAX_BYTES) {
        fprintf(stderr, "replay: %s is over %u bytes\n", path, REPLAY_MAX_BYTES);
        fclose(file);
        return 1;
    }
    /* Exactly size bytes, so AddressSanitizer catches a read past the input. */
    size_t size = (size_t)info.st_size;
    uint8_t *data = malloc(size > 0 ? size : 1);
    if (data == NULL)
        abort();
    bool failed = fread(data, 1, size, file) != size;
    fclose(file);
    if (failed) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return 1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Run every regular file of folder, in name order so a run is repeatable. */
static int run_folder(const char *folder, int *count)
{
    DIR *handle = opendir(folder);
    if (handle == NULL) {
        fprintf(stderr, "replay: cannot open folder %s: %s\n", folder, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t name_count = 0, capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(handle)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        if (name_count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            names = realloc(names, capacity * sizeof(*names));
            if (names == NULL)
                abort();
        }
        names[name_count] = strdup(entry->d_name);
        if (names[name_count++] == NULL)
            abort();
    }
    closedir(handle);
    if (name_count > 1)
        qsort(names, name_count, sizeof(*names), compare_names);

    int failures = 0;
    for (size_t i = 0; i < name_count; i++) {
        char path[4096];
        struct stat info;
        snprintf(path, sizeof(path), "%s/%s", folder, names[i]);
        if (stat(path, &info) == 0 && S_ISREG(info.st_mode)) {
            failures += run_file(path);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return failures;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
        return 2;
    }
    int failures = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat info;
        if (stat(argv[i], &info) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failures++;
        } else if (S_ISDIR(info.st_mode)) {
            failures += run_folder(argv[i], &count);
        } else {
            failures += run_file(argv[i]);
            count++;
        }
    }
    printf("replay: %d inputs, %d unreadable\n", count, failures);
    return failures > 0 || count == 0 ? 1 : 0;
}
