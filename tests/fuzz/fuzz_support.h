#ifndef APIARY_TESTS_FUZZ_SUPPORT_H
#define APIARY_TESTS_FUZZ_SUPPORT_H

/* Shared by the fuzz targets in this folder. Each target defines
 * LLVMFuzzerTestOneInput. It links either with libFuzzer (APIARY_FUZZ=ON,
 * clang) or with replay_main.c, which runs it once on every file of its
 * corpus. A target aborts through FUZZ_REQUIRE when a property that must hold
 * for every input fails, so both drivers report the input. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Print the message with the target's file and line, then abort. */
#define FUZZ_REQUIRE(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

void fuzz_fail(const char *file, int line, const char *condition, const char *format, ...)
    __attribute__((format(printf, 4, 5), noreturn));

/* Print what an input led to when APIARY_FUZZ_VERBOSE is set, for checking
 * that a seed reaches the code it was written for. */
void fuzz_note(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Return a copy of data with a terminating NUL byte. Aborts when memory runs out. */
char *fuzz_text(const uint8_t *data, size_t size);

/* A private folder made on the first call and removed at exit, under
 * APIARY_TEST_TMP, TMPDIR or /tmp. Targets write their files there. */
const char *fuzz_temp_dir(void);

/* Join fuzz_temp_dir() and name into a static buffer that the next call reuses. */
const char *fuzz_temp_path(const char *name);

/* Write size bytes to path, replacing it. Aborts on failure, because a
 * target that cannot write its input file tests nothing. */
void fuzz_write_file(const char *path, const void *data, size_t size);

/* Create the folder path, whose parent must exist. An existing folder is fine. */
void fuzz_make_folder(const char *path);

/* Remove path and everything below it. A missing path is fine. */
void fuzz_remove_tree(const char *path);

/* Split data at the first occurrence of separator: the part before goes to
 * *head, the part after to *tail. Without the separator, everything is the
 * head and the tail is empty. */
void fuzz_split(const uint8_t *data, size_t size, const char *separator, const uint8_t **head,
                size_t *head_size, const uint8_t **tail, size_t *tail_size);

#endif
