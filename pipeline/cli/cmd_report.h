#ifndef APIARY_CLI_CMD_REPORT_H
#define APIARY_CLI_CMD_REPORT_H

/* apiary report render --input REPORT.json [--html FILE] [--markdown FILE]:
 * render a validation report as a self-contained HTML page and as Markdown.
 * argv starts after the subcommand name. Returns a process exit code. */
int ap_cmd_report(int argc, char **argv);

#endif
