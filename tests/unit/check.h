#ifndef APIARY_TESTS_CHECK_H
#define APIARY_TESTS_CHECK_H

/* Minimal test helpers: each CHECK prints both values on failure and counts
 * it; a test's main returns check_finish(), so ctest sees the verdict. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);              \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_INT_EQ(actual, expected)                                                             \
    do {                                                                                           \
        long long check_a = (long long)(actual), check_e = (long long)(expected);                  \
        if (check_a != check_e) {                                                                  \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #actual,     \
                    check_a, check_e);                                                             \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(actual, expected, tolerance)                                                    \
    do {                                                                                           \
        double check_a = (double)(actual), check_e = (double)(expected);                           \
        if (!(fabs(check_a - check_e) <= (tolerance))) {                                           \
            fprintf(stderr, "%s:%d: %s == %.9g, expected %.9g (tolerance %g)\n", __FILE__,         \
                    __LINE__, #actual, check_a, check_e, (double)(tolerance));                     \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                       \
    do {                                                                                           \
        const char *check_h = (haystack), *check_n = (needle);                                     \
        if (check_h == NULL || strstr(check_h, check_n) == NULL) {                                 \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,         \
                    check_h ? check_h : "(null)", check_n);                                        \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

static inline int check_finish(void)
{
    if (check_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    return 0;
}

/* A fresh folder for one test under APIARY_TEST_TMP (or /tmp). */
static inline const char *check_temp_dir(const char *name)
{
    static char path[4096];
    const char *root = getenv("APIARY_TEST_TMP");
    snprintf(path, sizeof(path), "%s/%s-XXXXXX", root ? root : "/tmp", name);
    if (root) {
        char command[4200];
        snprintf(command, sizeof(command), "mkdir -p '%s'", root);
        if (system(command) != 0)
            return NULL;
    }
    return mkdtemp(path);
}

/* The folder of labelled images for tests, or NULL when it is missing. */
static inline const char *check_data_dir(void)
{
    const char *dir = getenv("APIARY_DATA_DIR");
    return dir != NULL && dir[0] != '\0' ? dir : NULL;
}

#endif
