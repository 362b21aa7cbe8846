/*
 * main.c: the tether_cnode program: command-line parsing and start-up.
 *
 * Every flag is checked before anything starts; a bad flag prints one
 * clear line to stderr and exits with status 2 (the convention of
 * getopt-based tools for usage errors).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "tether/tether.h"

static const char usage_text[] =
    "Usage: tether_cnode [OPTION]...\n"
    "Run a tether C-node: a peer that speaks the Erlang distribution\n"
    "protocol and hosts C services.\n"
    "\n"
    "  -h, --help       print this help and exit\n"
    "  -V, --version    print the version and exit\n";

static void usage(FILE *out)
{
    fputs(usage_text, out);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };

    opterr = 0; /* we print our own message, naming the flag */
    for (;;) {
        int c = getopt_long(argc, argv, ":hV", options, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("tether_cnode %s\n", tether_version());
            return 0;
        case ':':
            fprintf(stderr, "tether_cnode: option '%s' needs a value\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr,
                    "tether_cnode: unknown option '%s' "
                    "(try 'tether_cnode --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr,
                "tether_cnode: unexpected argument '%s' "
                "(try 'tether_cnode --help')\n",
                argv[optind]);
        return 2;
    }
    fprintf(stderr, "tether_cnode: nothing to do yet (see --help)\n");
    return 2;
}
