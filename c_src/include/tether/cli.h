/*
 * tether/cli.h: the tether_cnode command line, reusable by programs that
 * embed a node (examples/kv/kv_node.c).
 *
 * tether_cli_main() parses the same flags as tether_cnode:
 *
 *   the node     --name, --sname, --cookie, --cookie-file, --listen,
 *                --epmd-port, --proto-dist, --ssl-dist-optfile,
 *                --setuptime, --visible, --ticktime, --workers,
 *                --busy-poll-us, --load, --log-level, --dial-log-ms,
 *                --help, --version
 *   the cluster  --join, --cluster-secret-file, --identity, --trust,
 *                --heartbeat-ms, --ttl-ms, --ring-size, --service,
 *                --register, --lead, --lead-priority, --election-voter,
 *                --election-lease-ms, --defer-max-bytes, --map,
 *                --channel, --map-persist, --data-dir,
 *                --reminder-replicas, --no-cluster
 *   keygen       the subcommand `keygen --secret-out FILE --public-out
 *                FILE`
 *
 * It starts the node and its cluster process (tether/cluster.h, unless
 * --no-cluster), runs `init` (if not NULL), loads the plugins, prints
 * "PROG: NAME ready" and runs until SIGINT or SIGTERM. Node names are
 * checked as erl checks them (the part before '@' of letters, digits, '_'
 * and '-'). A bad flag, or flags that contradict each other (a cluster
 * flag with --no-cluster, --lead-priority or --election-voter without
 * --lead), print one line ending "(try 'PROG --help')" and return 2; a
 * failure to start (cookie, epmd, name taken, plugin) prints one line and
 * returns 1; a clean stop returns 0.
 */
#ifndef TETHER_CLI_H
#define TETHER_CLI_H

#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tether_cli {
    const char *prog;                 /* e.g. "tether_cnode" */
    int (*init)(tether_node_t *node); /* registers services; may be NULL */
    const char *about;                /* extra --help text; may be NULL */
} tether_cli_t;

/* Runs the program; returns the process exit status. */
int tether_cli_main(int argc, char **argv, const tether_cli_t *cli);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CLI_H */
