#include "pipeline/train/run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"

/* The pid recorded by the lock's holder, or 0 when it cannot be read. */
static long holder_pid(int fd)
{
    char text[32];
    ssize_t got = pread(fd, text, sizeof(text) - 1, 0);
    if (got <= 0)
        return 0;
    text[got] = '\0';
    char *end;
    long pid = strtol(text, &end, 10);
    return end != text && pid > 0 ? pid : 0;
}

static ap_status record_pid(int fd, const char *path, ap_error *err)
{
    char text[32];
    int length = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)length, 0) != length)
        return ap_error_set(err, AP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return AP_OK;
}

ap_status ap_run_lock(const char *run_dir, int *fd, ap_error *err)
{
    *fd = -1;
    char path[AP_PATH_MAX + 64];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, AP_RUN_LOCK_FILE, err);
    if (status != AP_OK)
        return status;
    int lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lock_fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot open lock file %s: %s", path, strerror(errno));
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int error = errno;
        long pid = holder_pid(lock_fd);
        close(lock_fd);
        if (error != EWOULDBLOCK)
            return ap_error_set(err, AP_ERR_IO, "cannot lock %s: %s", path, strerror(error));
        char holder[48] = "another process";
        if (pid > 0)
            snprintf(holder, sizeof(holder), "process %ld", pid);
        return ap_error_set(err, AP_ERR_IO,
                            "run folder %s is locked by %s, which is training it now; wait for "
                            "it to finish, or choose another run_name (--set run_name=NAME)",
                            run_dir, holder);
    }
    status = record_pid(lock_fd, path, err);
    if (status != AP_OK) {
        close(lock_fd);
        return status;
    }
    *fd = lock_fd;
    return AP_OK;
}

void ap_run_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
