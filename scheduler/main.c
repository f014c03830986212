/* main.c - the `shoal` binary: hands argv to the CLI dispatcher. */
#include "scheduler/cli.h"

int main(int argc, char **argv)
{
	return shoal_cli_main(argc, argv);
}
