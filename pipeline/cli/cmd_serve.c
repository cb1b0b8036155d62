#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/serve/serve.h"

static void print_serve_help(void)
{
    puts("usage: apiary serve -c CONFIG [--set KEY=VALUE]...\n"
         "\n"
         "Serve the registry's model (serve.model, default champion, of registry.uri and\n"
         "registry.model_name) over HTTP on serve.host:serve.port:\n"
         "  POST /v1/predict                 JPEG or PNG body, or multipart/form-data files\n"
         "  /v2/...                          KServe v2 inference protocol: health, metadata,\n"
         "                                   POST /v2/models/NAME/infer\n"
         "  GET  /metrics                    Prometheus metrics\n"
         "docs/openapi.yaml describes every endpoint. When the alias moves to another\n"
         "version, the new model is loaded in the background and swapped in without\n"
         "dropping requests. SIGTERM or SIGINT stops accepting connections, lets\n"
         "requests in flight finish and exits with code 0.\n"
         "\n"
         "  -c, --config FILE   YAML config; the serve section sets the limits\n"
         "                      (apiary config keys lists them)\n"
         "  --set KEY=VALUE     override one config key, for example --set serve.port=9000\n"
         "  -h, --help          show this help");
}

/* Exit code for a failed start: a setting that cannot work is a config error. */
static int start_failure_code(const ap_error *err)
{
    if (err->code == AP_ERR_INVALID) {
        AP_ERROR("serve failed: %s", err->message);
        return AP_EXIT_USAGE;
    }
    return ap_cli_report("serve", err);
}

int ap_cmd_serve(int argc, char **argv)
{
    ap_cli_options options;
    if (!ap_cli_parse(argc, argv, 0, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_serve_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;

    /* Block the stop signals before any thread starts, so that every
     * thread inherits the mask and only sigwait below receives them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    ap_server *server = NULL;
    ap_error err = {0};
    if (ap_server_start(&cfg, &server, &err) != AP_OK)
        return start_failure_code(&err);
    int received = 0;
    if (sigwait(&stop_signals, &received) != 0)
        AP_ERROR("serve: waiting for a stop signal failed; stopping");
    else
        AP_INFO("serve: received %s", received == SIGTERM ? "SIGTERM" : "SIGINT");
    ap_server_stop(server);
    return AP_EXIT_OK;
}
