#ifndef APIARY_TESTS_S3_CHECK_H
#define APIARY_TESTS_S3_CHECK_H

/* Helpers shared by the blob store tests: a string equality check that
 * prints both strings, and a moto S3 server on loopback started through
 * tests/tools/s3_server.sh. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define CHECK_STR_EQ(actual, expected)                                                             \
    do {                                                                                           \
        const char *check_a = (actual), *check_e = (expected);                                     \
        if (check_a == NULL || strcmp(check_a, check_e) != 0) {                                    \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, \
                    check_a ? check_a : "(null)", check_e);                                        \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_CONTAINS(haystack, needle) CHECK_STR_CONTAINS(haystack, needle)

/* The tests/tools folder, found from this header's own path. */
static inline void s3_test_tools_dir(char *out, size_t size)
{
    snprintf(out, size, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash != NULL)
        snprintf(slash, size - (size_t)(slash - out), "/../tools");
}

/* Start moto in dir with the given buckets (space separated) and export its
 * endpoint and the user's credentials into the environment. Returns 0, 77
 * when moto is not installed, or 1. */
static inline int s3_test_server_start(const char *dir, const char *buckets)
{
    char tools[4096], command[16384];
    s3_test_tools_dir(tools, sizeof(tools));
    if (snprintf(command, sizeof(command), "'%s/s3_server.sh' start '%s' %d %s > '%s.out' 2>&1",
                 tools, dir, (int)getpid(), buckets, dir) >= (int)sizeof(command))
        return 1;
    int code = system(command);
    if (code == -1 || !WIFEXITED(code))
        return 1;
    if (WEXITSTATUS(code) != 0)
        return WEXITSTATUS(code) == 77 ? 77 : 1;

    char path[8192], line[4096];
    if (snprintf(path, sizeof(path), "%s/env", dir) >= (int)sizeof(path))
        return 1;
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return 1;
    while (fgets(line, sizeof(line), file) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *equals = strchr(line, '=');
        if (equals == NULL)
            continue;
        *equals = '\0';
        setenv(line, equals + 1, 1);
    }
    fclose(file);
    return 0;
}

static inline void s3_test_server_stop(const char *dir)
{
    char tools[4096], command[16384];
    s3_test_tools_dir(tools, sizeof(tools));
    if (snprintf(command, sizeof(command), "'%s/s3_server.sh' stop '%s' > /dev/null 2>&1", tools,
                 dir) >= (int)sizeof(command) ||
        system(command) != 0)
        fprintf(stderr, "could not stop the S3 server in %s\n", dir);
}

#endif
