/* nftw is an X/Open extension. */
#define _XOPEN_SOURCE 700

#include "tests/fuzz/fuzz_support.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char temp_dir[1024];

void fuzz_fail(const char *file, int line, const char *condition, const char *format, ...)
{
    fprintf(stderr, "%s:%d: %s failed: ", file, line, condition);
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    abort();
}

void fuzz_note(const char *format, ...)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("APIARY_FUZZ_VERBOSE") != NULL;
    if (!verbose)
        return;
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

char *fuzz_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        abort();
    if (size > 0)
        memcpy(text, data, size);
    text[size] = '\0';
    return text;
}

static int remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk)
{
    return remove(path);
}

void fuzz_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_temp_dir(void)
{
    if (temp_dir[0] != '\0')
        fuzz_remove_tree(temp_dir);
}

const char *fuzz_temp_dir(void)
{
    if (temp_dir[0] != '\0')
        return temp_dir;
    const char *root = getenv("APIARY_TEST_TMP");
    if (root == NULL || root[0] == '\0')
        root = getenv("TMPDIR");
    if (root == NULL || root[0] == '\0')
        root = "/tmp";
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", root, strerror(errno));
        abort();
    }
    snprintf(temp_dir, sizeof(temp_dir), "%s/apiary-fuzz-XXXXXX", root);
    if (mkdtemp(temp_dir) == NULL) {
        fprintf(stderr, "fuzz: cannot create a folder in %s: %s\n", root, strerror(errno));
        abort();
    }
    atexit(remove_temp_dir);
    return temp_dir;
}

const char *fuzz_temp_path(const char *name)
{
    static char path[2048];
    snprintf(path, sizeof(path), "%s/%s", fuzz_temp_dir(), name);
    return path;
}

void fuzz_write_file(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL || (size > 0 && fwrite(data, 1, size, file) != size) || fclose(file) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

void fuzz_make_folder(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
        abort();
    }
}

void fuzz_split(const uint8_t *data, size_t size, const char *separator, const uint8_t **head,
                size_t *head_size, const uint8_t **tail, size_t *tail_size)
{
    size_t length = strlen(separator);
    *head = data;
    *head_size = size;
    *tail = data + size;
    *tail_size = 0;
    for (size_t i = 0; length <= size && i <= size - length; i++) {
        if (memcmp(data + i, separator, length) == 0) {
            *head_size = i;
            *tail = data + i + length;
            *tail_size = size - i - length;
            return;
        }
    }
}
