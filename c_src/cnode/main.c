/*
 * main.c: the tether_cnode program. The command line, plugin loading and
 * the keygen subcommand live in cnode/cli.c (tether_cli_main), which
 * programs embedding a node reuse; see tether/cli.h.
 */
#include "tether/cli.h"

int main(int argc, char **argv)
{
    static const tether_cli_t cli = {.prog = "tether_cnode"};
    return tether_cli_main(argc, argv, &cli);
}
