/* The communicator: the single-process backend, the launcher environment,
 * and, in jobs this test starts with mpirun when it is installed, the MPI
 * collectives and a collective that times out naming the missing rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/parallel/comm.h"
#include "tests/unit/check.h"

#define REDUCED_COUNT 1000
/* Exit code of a job whose processes saw the expected timeout. */
#define TIMEOUT_EXPECTED_CODE 42

static void clear_launcher_env(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE",
                                        "PMI_RANK", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

static void single_process_backend(void)
{
    clear_launcher_env();
    ap_comm *comm = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_comm_open(5, &comm, &err), AP_OK);
    if (comm == NULL)
        return;
    CHECK(strcmp(ap_comm_backend(comm), "single") == 0);
    CHECK_INT_EQ(ap_comm_rank(comm), 0);
    CHECK_INT_EQ(ap_comm_size(comm), 1);
    CHECK_INT_EQ(ap_comm_local_rank(comm), 0);
    CHECK_INT_EQ(ap_comm_local_size(comm), 1);

    float values[3] = {1.0f, 2.0f, 3.0f};
    CHECK_INT_EQ(ap_comm_allreduce_sum(comm, values, 3, "test sum", &err), AP_OK);
    CHECK_NEAR(values[0], 1.0, 0.0);
    CHECK_NEAR(values[2], 3.0, 0.0);
    CHECK_INT_EQ(ap_comm_broadcast(comm, values, sizeof(values), 0, "test broadcast", &err), AP_OK);
    CHECK_INT_EQ(ap_comm_broadcast(comm, values, sizeof(values), 1, "test broadcast", &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "root rank 1");
    CHECK_INT_EQ(ap_comm_barrier(comm, "test barrier", &err), AP_OK);
    CHECK(!ap_comm_failed(comm));
    CHECK_INT_EQ(ap_comm_close(comm, &err), AP_OK);
}

static void open_rejects_zero_timeout(void)
{
    ap_comm *comm = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_comm_open(0, &comm, &err), AP_ERR_INVALID);
    CHECK(comm == NULL);
    CHECK_STR_CONTAINS(err.message, "timeout");
}

static void launcher_environment(void)
{
    clear_launcher_env();
    CHECK_INT_EQ(ap_comm_launcher_rank(), 0);
    CHECK_INT_EQ(ap_comm_launcher_size(), 1);

    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    CHECK_INT_EQ(ap_comm_launcher_size(), 4);
    CHECK_INT_EQ(ap_comm_launcher_rank(), 2);

    setenv("OMPI_COMM_WORLD_SIZE", "4x", 1);
    setenv("OMPI_COMM_WORLD_RANK", "-1", 1);
    CHECK_INT_EQ(ap_comm_launcher_size(), 1);
    CHECK_INT_EQ(ap_comm_launcher_rank(), 0);

    clear_launcher_env();
    setenv("PMI_SIZE", "3", 1);
    setenv("PMI_RANK", "1", 1);
    CHECK_INT_EQ(ap_comm_launcher_size(), 3);
    CHECK_INT_EQ(ap_comm_launcher_rank(), 1);

    clear_launcher_env();
    setenv("PMIX_RANK", "5", 1);
    CHECK_INT_EQ(ap_comm_launcher_rank(), 5);
    clear_launcher_env();
}

#ifndef APIARY_HAVE_MPI
/* Two processes that each trained alone would overwrite each other's run. */
static void launched_without_mpi(void)
{
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    ap_comm *comm = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_comm_open(5, &comm, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "built without MPI");
    clear_launcher_env();
}
#endif

/* In a job of 3: sums, a broadcast from the last rank, a barrier. */
static int run_collectives(void)
{
    ap_comm *comm = NULL;
    ap_error err = {0};
    if (ap_comm_open(30, &comm, &err) != AP_OK) {
        fprintf(stderr, "ap_comm_open: %s\n", err.message);
        return 1;
    }
    int rank = ap_comm_rank(comm);
    CHECK(strcmp(ap_comm_backend(comm), "mpi") == 0);
    CHECK_INT_EQ(ap_comm_size(comm), 3);
    CHECK_INT_EQ(ap_comm_local_size(comm), 3);
    CHECK_INT_EQ(ap_comm_local_rank(comm), rank);

    static float values[REDUCED_COUNT];
    for (int i = 0; i < REDUCED_COUNT; i++)
        values[i] = (float)(rank + 1 + i);
    CHECK_INT_EQ(ap_comm_allreduce_sum(comm, values, REDUCED_COUNT, "test sum", &err), AP_OK);
    CHECK_NEAR(values[0], 6.0, 0.0);
    CHECK_NEAR(values[REDUCED_COUNT - 1], 6.0 + 3.0 * (REDUCED_COUNT - 1), 0.0);

    char text[32] = "";
    if (rank == 2)
        snprintf(text, sizeof(text), "from rank 2");
    CHECK_INT_EQ(ap_comm_broadcast(comm, text, sizeof(text), 2, "test broadcast", &err), AP_OK);
    CHECK(strcmp(text, "from rank 2") == 0);
    CHECK_INT_EQ(ap_comm_barrier(comm, "test barrier", &err), AP_OK);
    CHECK(!ap_comm_failed(comm));
    CHECK_INT_EQ(ap_comm_close(comm, &err), AP_OK);
    return check_finish();
}

/* In a job of 3, rank 2 never joins the sum: ranks 0 and 1 must time out,
 * name rank 2, and end the job with TIMEOUT_EXPECTED_CODE. */
static int run_timeout(void)
{
    ap_comm *comm = NULL;
    ap_error err = {0};
    if (ap_comm_open(2, &comm, &err) != AP_OK) {
        fprintf(stderr, "ap_comm_open: %s\n", err.message);
        return 1;
    }
    CHECK_INT_EQ(ap_comm_barrier(comm, "test barrier", &err), AP_OK);
    if (ap_comm_rank(comm) == 2) {
        sleep(60);
        return 1;
    }
    float value = 1.0f;
    CHECK_INT_EQ(ap_comm_allreduce_sum(comm, &value, 1, "test sum", &err), AP_ERR_BACKEND);
    CHECK_STR_CONTAINS(err.message, "test sum timed out after 2 s");
    CHECK_STR_CONTAINS(err.message, "rank 2 never reached it");
    CHECK(ap_comm_failed(comm));
    printf("rank %d: %s\n", ap_comm_rank(comm), err.message);
    fflush(stdout);
    CHECK_INT_EQ(ap_comm_barrier(comm, "test barrier", &err), AP_ERR_BACKEND);
    CHECK_STR_CONTAINS(err.message, "an earlier collective failed");
    ap_comm_abort(comm, check_finish() == 0 ? TIMEOUT_EXPECTED_CODE : 1);
}

#ifdef APIARY_HAVE_MPI
/* Runs this test binary under mpirun with 3 processes and mode; returns the
 * exit code and puts the output in output. */
static int run_job(const char *mode, char *output, size_t output_size)
{
    char self[4096], log[4200], command[8800];
    ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    const char *dir = check_temp_dir("parallel-comm");
    if (length <= 0 || dir == NULL)
        return -1;
    self[length] = '\0';
    snprintf(log, sizeof(log), "%s/job.log", dir);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    snprintf(command, sizeof(command),
             "timeout 120 mpirun --oversubscribe -np 3 '%s' %s > '%s' 2>&1", self, mode, log);
    int code = system(command);
    FILE *file = fopen(log, "r");
    size_t used = file != NULL ? fread(output, 1, output_size - 1, file) : 0;
    output[used] = '\0';
    if (file != NULL)
        fclose(file);
    return WIFEXITED(code) ? WEXITSTATUS(code) : -1;
}
#endif

static void mpi_jobs(void)
{
#ifndef APIARY_HAVE_MPI
    printf("SKIP the MPI jobs: apiary was built without MPI\n");
#else
    if (system("command -v mpirun > /dev/null 2>&1") != 0) {
        printf("SKIP the MPI jobs: mpirun is not installed\n");
        return;
    }
    static char output[65536];
    int code = run_job("--collectives", output, sizeof(output));
    CHECK_INT_EQ(code, 0);
    if (code != 0)
        fprintf(stderr, "%s\n", output);

    time_t start = time(NULL);
    code = run_job("--timeout", output, sizeof(output));
    double seconds = difftime(time(NULL), start);
    CHECK_INT_EQ(code, TIMEOUT_EXPECTED_CODE);
    CHECK_STR_CONTAINS(output, "rank 2 never reached it");
    /* 2 s of timeout plus the start and abort of the job, far below rank 2's 60 s sleep. */
    CHECK(seconds < 30.0);
    if (code != TIMEOUT_EXPECTED_CODE)
        fprintf(stderr, "%s\n", output);
#endif
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--collectives") == 0)
        return run_collectives();
    if (argc > 1 && strcmp(argv[1], "--timeout") == 0)
        return run_timeout();
    single_process_backend();
    open_rejects_zero_timeout();
    launcher_environment();
#ifndef APIARY_HAVE_MPI
    launched_without_mpi();
#endif
    mpi_jobs();
    return check_finish();
}
