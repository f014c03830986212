/* cli.h - the `shoal` command line: verbs, options, exit codes.
 * Exit codes (a contract): 0 success, 1 the run failed, 2 usage or
 * config error (including an unreachable Redis). */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

#define SHOAL_EXIT_OK 0
#define SHOAL_EXIT_FAILED 1
#define SHOAL_EXIT_USAGE 2

int shoal_cli_main(int argc, char **argv);

#endif
