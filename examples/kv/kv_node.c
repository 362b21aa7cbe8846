/*
 * kv_node.c: the kv service as a standalone program linking libtether:
 * the same flags as tether_cnode (tether_cli_main), with kv started by
 * the init hook instead of --load. Prints "kv_node: NAME ready".
 */
#include "tether/tether.h"

int main(int argc, char **argv)
{
    static const tether_cli_t cli = {
        .prog = "kv_node",
        .init = tether_plugin_init, /* kv.c */
        .about = "Hosts the kv service (see examples/README.md).\n",
    };
    return tether_cli_main(argc, argv, &cli);
}
