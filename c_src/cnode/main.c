/*
 * main.c: the tether_cnode program: command-line parsing and start-up.
 *
 * Every flag is checked before anything starts; a bad flag prints one
 * clear line to stderr and exits with status 2 (the convention of
 * getopt-based tools for usage errors). A failure to start (cookie file,
 * listen, epmd, name taken) prints one line and exits with status 1.
 * Once listening and registered, one line "tether_cnode: NAME ready" goes
 * to stdout (flushed) so scripts can wait for it. SIGINT and SIGTERM stop
 * the node gracefully: every connection and the epmd socket are closed,
 * so peers see nodedown at once.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/node.h"
#include "tether/tether.h"

#define NAME_BUF_MAX   (TETHER_ATOM_MAX + 32)
#define COOKIE_BUF_MAX (TETHER_NODE_COOKIE_MAX + 2)
#define PATH_BUF_MAX   4096
#define TICKTIME_MAX   86400u

static const char usage_text[] =
    "Usage: tether_cnode --name NAME [OPTION]...\n"
    "Run a tether C-node: a peer that speaks the Erlang distribution\n"
    "protocol and hosts C services.\n"
    "\n"
    "  -n, --name NAME          node name, name@host (no host: @127.0.0.1)\n"
    "  -c, --cookie COOKIE      the distribution cookie\n"
    "  -C, --cookie-file FILE   read the cookie from FILE\n"
    "                           (default: ~/.erlang.cookie)\n"
    "  -l, --listen ADDR:PORT   listen address (default 127.0.0.1:0,\n"
    "                           port 0 = any free port)\n"
    "  -e, --epmd-port N        epmd port (default: $ERL_EPMD_PORT or 4369)\n"
    "      --visible            publish as a normal (visible) node;\n"
    "                           hidden by default\n"
    "  -t, --ticktime SECONDS   net_ticktime (default 60): ticks every\n"
    "                           SECONDS/4, a silent peer is dropped after\n"
    "                           SECONDS\n"
    "  -L, --log-level LEVEL    error, warning, info (default) or debug\n"
    "  -h, --help               print this help and exit\n"
    "  -V, --version            print the version and exit\n"
    "\n"
    "Built-in registered processes:\n"
    "  net_kernel  answers is_auth, so net_adm:ping/1 returns pong\n"
    "  echo        the test service; it accepts\n"
    "                {echo, FromPid, Term}    -> FromPid ! Term\n"
    "                {spawn, FromPid, Name}   -> a new echo process\n"
    "                                            registered as Name;\n"
    "                                            FromPid ! {spawned, Name, "
    "Pid}\n"
    "                {stop, Reason}           -> exits with Reason\n"
    "                {link, Pid} / {unlink, Pid}\n"
    "                {trap_exit, true|false}\n"
    "                {get_exits, FromPid}     -> FromPid ! {exits,\n"
    "                                            [{From, Reason}]}\n"
    "                {monitor, FromPid, Target}\n"
    "                                         -> FromPid ! {monitoring, Ref},\n"
    "                                            later the 'DOWN' message\n"
    "                gen_server:call(Echo, ping) -> pong\n"
    "\n"
    "Prints 'tether_cnode: NAME ready' on stdout once registered.\n";

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Prints "tether_cnode: <message> (try ...)" to stderr; returns 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("tether_cnode: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (try 'tether_cnode --help')\n", stderr);
    return 2;
}

/* Parses a decimal in [lo, hi]; returns 0 or -1. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    char *end;
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Reads the cookie from path (first line, trailing blanks removed). */
static int read_cookie(const char *path, char *cookie, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "tether_cnode: cannot read cookie file '%s': %s\n",
                path, strerror(errno));
        return -1;
    }
    size_t n = fread(cookie, 1, cap - 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "tether_cnode: cannot read cookie file '%s'\n", path);
        return -1;
    }
    cookie[n] = '\0';
    char *nl = strpbrk(cookie, "\r\n");
    if (nl)
        *nl = '\0';
    n = strlen(cookie);
    while (n > 0 && (cookie[n - 1] == ' ' || cookie[n - 1] == '\t'))
        cookie[--n] = '\0';
    if (n == 0) {
        fprintf(stderr, "tether_cnode: cookie file '%s' is empty\n", path);
        return -1;
    }
    if (n >= cap - 2) {
        fprintf(stderr, "tether_cnode: cookie in '%s' is too long\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_VISIBLE = 256 };
    static const struct option options[] = {
        {"name", required_argument, NULL, 'n'},
        {"cookie", required_argument, NULL, 'c'},
        {"cookie-file", required_argument, NULL, 'C'},
        {"listen", required_argument, NULL, 'l'},
        {"epmd-port", required_argument, NULL, 'e'},
        {"visible", no_argument, NULL, OPT_VISIBLE},
        {"ticktime", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static char name[NAME_BUF_MAX];
    static char cookie[COOKIE_BUF_MAX];
    static char listen_addr[64] = TETHER_NODE_LISTEN_ADDR_DEFAULT;
    const char *name_arg = NULL, *cookie_arg = NULL, *cookie_file = NULL;
    tether_node_config_t cfg = {.log_level = TETHER_LOG_INFO};
    unsigned long v;

    const char *env_port = getenv("ERL_EPMD_PORT");
    if (env_port && *env_port) {
        if (parse_uint(env_port, 1, 65535, &v) < 0) {
            fprintf(stderr, "tether_cnode: bad ERL_EPMD_PORT '%s'\n", env_port);
            return 2;
        }
        cfg.epmd_port = (uint16_t)v;
    }

    opterr = 0; /* we print our own message, naming the flag */
    for (;;) {
        int c = getopt_long(argc, argv, ":n:c:C:l:e:t:L:hV", options, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'n':
            name_arg = optarg;
            break;
        case 'c':
            cookie_arg = optarg;
            break;
        case 'C':
            cookie_file = optarg;
            break;
        case 'l': {
            const char *colon = strrchr(optarg, ':');
            size_t alen = colon ? (size_t)(colon - optarg) : 0;
            if (colon == NULL || alen == 0 || alen >= sizeof listen_addr ||
                parse_uint(colon + 1, 0, 65535, &v) < 0)
                return usage_error("bad --listen '%s' (want ADDR:PORT)",
                                   optarg);
            memcpy(listen_addr, optarg, alen);
            listen_addr[alen] = '\0';
            cfg.listen_port = (uint16_t)v;
            break;
        }
        case 'e':
            if (parse_uint(optarg, 1, 65535, &v) < 0)
                return usage_error("bad --epmd-port '%s'", optarg);
            cfg.epmd_port = (uint16_t)v;
            break;
        case OPT_VISIBLE:
            cfg.visible = true;
            break;
        case 't':
            if (parse_uint(optarg, 1, TICKTIME_MAX, &v) < 0)
                return usage_error("bad --ticktime '%s' (seconds, 1..86400)",
                                   optarg);
            cfg.ticktime_s = (unsigned)v;
            break;
        case 'L': {
            int lvl = tether_log_level_parse(optarg);
            if (lvl < 0)
                return usage_error(
                    "bad --log-level '%s' (error|warning|info|debug)", optarg);
            cfg.log_level = lvl;
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case 'V':
            printf("tether_cnode %s\n", tether_version());
            return 0;
        case ':':
            fprintf(stderr, "tether_cnode: option '%s' needs a value\n",
                    argv[optind - 1]);
            return 2;
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (name_arg == NULL)
        return usage_error("%s", "--name is required");
    if (cookie_arg && cookie_file)
        return usage_error("%s", "give --cookie or --cookie-file, not both");

    if (strchr(name_arg, '@'))
        snprintf(name, sizeof name, "%s", name_arg);
    else
        snprintf(name, sizeof name, "%s@127.0.0.1", name_arg);
    if (strlen(name_arg) >= TETHER_ATOM_MAX - 16)
        return usage_error("node name '%s' is too long", name_arg);

    if (cookie_arg) {
        if (strlen(cookie_arg) > TETHER_NODE_COOKIE_MAX || !*cookie_arg)
            return usage_error("%s", "bad --cookie (empty or too long)");
        snprintf(cookie, sizeof cookie, "%s", cookie_arg);
    } else {
        char path[PATH_BUF_MAX];
        if (cookie_file == NULL) {
            const char *home = getenv("HOME");
            if (home == NULL || !*home) {
                fprintf(stderr, "tether_cnode: no --cookie given and $HOME "
                                "is not set\n");
                return 1;
            }
            snprintf(path, sizeof path, "%s/.erlang.cookie", home);
            cookie_file = path;
        }
        if (read_cookie(cookie_file, cookie, sizeof cookie) < 0)
            return 1;
    }

    cfg.name = name;
    cfg.cookie = cookie;
    cfg.listen_addr = listen_addr;
    tether_node_t *node = NULL;
    const char *why = NULL;
    int rc = tether_node_new(&cfg, &node, &why);
    explicit_bzero(cookie, sizeof cookie);
    if (rc < 0) {
        if (rc == TETHER_EINVAL)
            return usage_error("%s", why ? why : "bad configuration");
        fprintf(stderr, "tether_cnode: %s\n", why ? why : tether_strerror(rc));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (tether_node_handle_signals(node) < 0) {
        fprintf(stderr, "tether_cnode: cannot set up signal handling\n");
        tether_node_free(node);
        return 1;
    }
    rc = tether_node_start(node);
    if (rc < 0) {
        /* tether_node_start logged the reason. */
        tether_node_free(node);
        return 1;
    }
    printf("tether_cnode: %s ready\n", tether_node_name(node));
    fflush(stdout);
    rc = tether_node_run(node);
    tether_node_free(node);
    return rc < 0 ? 1 : 0;
}
