/*
 * cnode/cli.c: the tether_cnode command line (see tether/cli.h), shared
 * by tether_cnode (cnode/main.c) and programs that embed a node.
 *
 * Every flag is checked before anything starts; a bad flag prints one
 * clear line to stderr and exits with status 2 (the convention of
 * getopt-based tools for usage errors). A failure to start (cookie file,
 * listen, epmd, name taken, a plugin that cannot be loaded or whose init
 * fails) prints one line and exits with status 1. Plugins are opened and
 * their entry point looked up before the node starts; their init runs
 * after it started. Once listening and registered, one line
 * "PROG: NAME ready" goes to stdout (flushed) so scripts can wait for it.
 * SIGINT and SIGTERM stop the node gracefully: every connection and the epmd
 * socket are closed, so peers see nodedown at once.
 */
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cnode/node.h"
#include "cnode/keyfile.h"
#include "cnode/resolve.h"
#include "cnode/cluster.h"
#include "core/keys.h"
#include "tether/cluster.h"
#include "tether/tether.h"

#define NAME_BUF_MAX      (TETHER_ATOM_MAX + 32)
#define COOKIE_BUF_MAX    (TETHER_NODE_COOKIE_MAX + 2)
#define PATH_BUF_MAX      4096
#define TICKTIME_MAX      86400u
#define PLUGINS_MAX       64
#define SERVICES_FLAG_MAX 64         /* --service */
#define MS_FLAG_MAX       86400000ul /* --heartbeat-ms, --ttl-ms: one day */
#define SETUPTIME_MAX     3600u

static const char usage_text[] =
    "Usage: %1$s --name NAME[@HOST] | --sname NAME[@HOST] [OPTION]...\n"
    "       %1$s keygen --secret-out FILE --public-out FILE\n"
    "Run a tether C-node: a peer that speaks the Erlang distribution\n"
    "protocol and hosts C services.\n"
    "\n"
    "  -n, --name NAME[@HOST]   a long node name, as erl -name: HOST is a\n"
    "                           host name or an IPv4/IPv6 address; without\n"
    "                           it this machine's fully qualified name (no\n"
    "                           domain: exits with status 1, as erl does)\n"
    "  -s, --sname NAME[@HOST]  a short node name, as erl -sname: HOST\n"
    "                           (no dots) defaults to this machine's short\n"
    "                           host name\n"
    "  -c, --cookie COOKIE      the distribution cookie\n"
    "  -C, --cookie-file FILE   read the cookie from FILE\n"
    "                           (default: ~/.erlang.cookie)\n"
    "  -l, --listen ADDR:PORT   listen address; [ADDR]:PORT for IPv6\n"
    "                           (default 127.0.0.1:0, or [::1]:0 under\n"
    "                           inet6_*; port 0 = any free port)\n"
    "      --proto-dist PROTO   inet_tcp (default), inet6_tcp, inet_tls or\n"
    "                           inet6_tls, as erl -proto_dist: IPv4 or IPv6\n"
    "                           (host names resolve to that family, epmd\n"
    "                           is reached on 127.0.0.1 or ::1), TCP or TLS\n"
    "      --ssl-dist-optfile FILE\n"
    "                           TLS options in OTP's own ssl_dist_optfile\n"
    "                           format ([{server, [...]}, {client, [...]}].),\n"
    "                           the file BEAM nodes get with\n"
    "                           -ssl_dist_optfile (required under *_tls)\n"
    "      --setuptime SECONDS  net_setuptime: a connection (name look-up,\n"
    "                           TLS and distribution handshakes) must be up\n"
    "                           within it (default 7)\n"
    "  -e, --epmd-port N        epmd port (default: $ERL_EPMD_PORT or 4369)\n"
    "      --visible            publish as a normal (visible) node;\n"
    "                           hidden by default\n"
    "  -t, --ticktime SECONDS   net_ticktime (default 60): ticks every\n"
    "                           SECONDS/4, a silent peer is dropped after\n"
    "                           SECONDS\n"
    "  -w, --workers N          worker threads (default: max(2, CPUs))\n"
    "      --busy-poll-us N     keep polling N microseconds after activity\n"
    "                           before sleeping (default 200; 0: never)\n"
    "      --load PATH.so       load a service plugin (repeatable): a shared\n"
    "                           object defining int tether_plugin_init(\n"
    "                           tether_node_t *); see tether/service.h\n"
    "  -L, --log-level LEVEL    error, warning, info (default) or debug\n"
    "      --dial-log-ms N      failed connections to one node: the first\n"
    "                           is logged, then one line with a count at\n"
    "                           most every N ms until one succeeds (default\n"
    "                           60000; the others at debug level)\n"

    "  -h, --help               print this help and exit\n"
    "  -V, --version            print the version and exit\n"
    "\n"
    "Cluster (the registered process `tether', the same wire format and keys\n"
    "as the tether OTP application, so C-nodes and BEAM nodes form one\n"
    "cluster; with no key option the cluster secret derives from the cookie):\n"
    "      --join NODE          join the cluster NODE belongs to (repeatable;\n"
    "                           seeds are tried in turn until one answers;\n"
    "                           no host: this node's host)\n"
    "      --cluster-secret-file FILE\n"
    "                           a 32-byte cluster secret, mode 0600 or\n"
    "                           stricter (the application env\n"
    "                           cluster_secret_file)\n"
    "      --identity FILE      this node's Ed25519 seed (32 bytes, 0600, as\n"
    "                           keygen writes it); then only --trust nodes\n"
    "                           (and secret holders) are trusted\n"
    "      --trust NODE=PUBFILE trust NODE's 32-byte public key (repeatable)\n"
    "      --heartbeat-ms N     heartbeat period (default 1000)\n"
    "      --ttl-ms N           lease length, > heartbeat (default\n"
    "                           max(5000, 5 x heartbeat)); a member silent\n"
    "                           that long is dropped\n"
    "      --ring-size N        shards of the consistent-hash ring, a power "
    "of\n"
    "                           two (default 64); every member must agree\n"
    "      --map NAME           host the replicated map named by the atom\n"
    "                           NAME (repeatable); {map_get, NAME, Key} and\n"
    "                           {map_to_list, NAME} on `tether' read it\n"
    "      --map-persist NAME   as --map, and every write this node applies\n"
    "                           is logged under --data-dir, read back at\n"
    "                           start (repeatable)\n"
    "      --data-dir DIR       where persisted maps keep their logs, in\n"
    "                           DIR/NODENAME/ (made 0700; default\n"
    "                           tether_data under the working directory),\n"
    "                           and where the reminders this node\n"
    "                           replicates persist, in\n"
    "                           DIR/reminders-NODE.log (fsync'ed before\n"
    "                           they are acknowledged; only when given:\n"
    "                           the application env data_dir); read back\n"
    "                           at start\n"
    "      --reminder-replicas N\n"
    "                           copies of each reminder, 1..8 (default 3;\n"
    "                           the application env reminder_replicas)\n"
    "      --lead NAME          campaign at start for the leadership of the\n"
    "                           atom NAME (repeatable), for a C service that\n"
    "                           should run as a singleton; transitions are\n"
    "                           logged, {leader, NAME} on `tether' says who\n"
    "                           leads\n"
    "      --lead-priority P    the priority of every --lead, a 64-bit\n"
    "                           integer (default 0; higher wins, ties go to\n"
    "                           the lowest node name)\n"
    "      --election-voter NODE\n"
    "                           a voter of quorum mode (repeatable, at most\n"
    "                           64): with any, every --lead leads only while\n"
    "                           a majority of these nodes grant it a lease;\n"
    "                           all candidates of a name need the same set\n"
    "      --election-lease-ms N\n"
    "                           quorum-mode lease (default 2000; the\n"
    "                           application env election_lease_ms)\n"
    "      --defer-max-bytes N  bytes a defer partition holds per peer and\n"
    "                           direction (default 67108864, 64 MiB; at most\n"
    "                           2^40; the application env defer_max_bytes);\n"
    "                           more is refused and counted (defer_overflow)\n"
    "      --channel NAME:PARALLELISM\n"
    "                           a messaging channel with PARALLELISM lanes\n"
    "                           per peer, 1..1024 (repeatable, at most 64;\n"
    "                           `default' always exists with 1): the\n"
    "                           application env channels; see\n"
    "                           tether/messaging.h\n"
    "      --service NAME       announce this node as an instance of the\n"
    "                           service NAME (repeatable): "
    "tether:call_service\n"
    "                           (NAME, Fun, Args, Opts) from any member runs\n"
    "                           the C function NAME:Fun/length(Args) here\n"
    "      --register NAME      put the local registered process NAME (a C\n"
    "                           service, say) in the cluster registry\n"
    "                           (repeatable): tether:whereis_name(NAME) and\n"
    "                           {via, tether, NAME} reach it from any member\n"
    "      --no-cluster         do not start the `tether' process\n"
    "  A bad value of any of these (or an unreadable key file) prints one\n"
    "  line and exits with status 2.\n"
    "\n"
    "keygen writes a new Ed25519 node identity: the 32-byte random seed to\n"
    "the --secret-out file and the 32-byte public key to the --public-out\n"
    "file, both created mode 0600; an existing file is never overwritten.\n"
    "\n"
    "Built-in registered processes:\n"
    "  net_kernel  answers is_auth, so net_adm:ping/1 returns pong\n"
    "  rex         rpc:block_call/4,5 and the {call, M, F, A, Gl} requests\n"
    "              of rpc; rpc:call, erpc:call, multicall and cast arrive\n"
    "              as spawn requests of erpc:execute_call/execute_cast and\n"
    "              reach the C functions plugins register (M:F/A; an\n"
    "              unknown one raises undef, as on the BEAM)\n"
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
    "  tether      the cluster member (unless --no-cluster); answers\n"
    "              gen_server:call({tether, NODE}, Req) for Req = members,\n"
    "              {join, Node}, leave, {partition, A, B, drop|defer},\n"
    "              {heal, Ref}, heal_all, partitions, info, the ring's\n"
    "              {place, Key} and friends, and the election's\n"
    "              {leader, Name}, {is_leader, Name}, {fence, Name},\n"
    "              {candidates, Name}, the reminders' {reminder, {set |\n"
    "              cancel | get, ...}} and reminder_info\n"
    "\n"
    "Prints '%1$s: NAME ready' on stdout once registered.\n";

static const char *prog = "tether_cnode";

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Prints "PROG: <message> (try ...)" to stderr; returns 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try '%s --help')\n", prog);
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

/* A milliseconds flag (lo..MS_FLAG_MAX) into *out: 0, or the usage
 * error's status 2 after its line. */
static int ms_flag(const char *flag, const char *arg, unsigned long lo,
                   uint32_t *out)
{
    unsigned long v;
    if (parse_uint(arg, lo, MS_FLAG_MAX, &v) < 0)
        return usage_error("bad %s '%s' (%lu..%lu)", flag, arg, lo,
                           MS_FLAG_MAX);
    *out = (uint32_t)v;
    return 0;
}

/* Parses a signed decimal that fits 64 bits; returns 0 or -1. */
static int parse_int64(const char *s, int64_t *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Reads the cookie from path (first line, trailing blanks removed). */
static int read_cookie(const char *path, char *cookie, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot read cookie file '%s': %s\n", prog, path,
                strerror(errno));
        return -1;
    }
    size_t n = fread(cookie, 1, cap - 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: cannot read cookie file '%s'\n", prog, path);
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
        fprintf(stderr, "%s: cookie file '%s' is empty\n", prog, path);
        return -1;
    }
    if (n >= cap - 2) {
        fprintf(stderr, "%s: cookie in '%s' is too long\n", prog, path);
        return -1;
    }
    return 0;
}

/*
 * Whether node is a name erl accepts (net_kernel's checks): the part
 * before '@' is letters, digits, '_' and '-'; the host after it is
 * non-empty and has no spaces or control characters (bytes 0x21..0xFF);
 * under short names (shortname) the host has no dots.
 */
static bool erl_name_valid(const char *node, bool shortname)
{
    const char *at = strchr(node, '@');
    if (at == NULL || at == node || at[1] == '\0')
        return false;
    for (const char *p = node; p < at; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
            return false;
    for (const unsigned char *h = (const unsigned char *)at + 1; *h; h++)
        if (*h < 0x21 || *h == 0x7f || (shortname && *h == '.'))
            return false;
    return tether_node_name_valid(node);
}

/* Writes a node name into out (NAME_BUF_MAX): name@host as given, or
 * name@HOST (this node's host) without one. 0 or -1 for a name erl
 * would refuse. */
static int full_name(const char *arg, const char *host, char *out)
{
    size_t al = strlen(arg), hl = strlen(host);
    if (al + 1 + hl >= TETHER_ATOM_MAX || al + 1 + hl >= NAME_BUF_MAX)
        return -1;
    memmove(out, arg, al + 1); /* arg may be out itself */
    if (strchr(out, '@') == NULL) {
        out[al] = '@';
        memcpy(out + al + 1, host, hl + 1);
    }
    return erl_name_valid(out, false) ? 0 : -1;
}

/*
 * This node's name from --name or --sname, as erl names a node: the host
 * given, or this machine's short (sname) or fully qualified (name) host
 * name. Prints one line on failure and returns the exit status (2: bad
 * flag, 1: the machine has no such name); 0 on success.
 */
static int node_name(const char *arg, bool shortname, char *out)
{
    const char *flag = shortname ? "--sname" : "--name";
    const char *at = strchr(arg, '@');
    char host[TETHER_HOST_MAX];
    if (at == arg || strlen(arg) >= TETHER_ATOM_MAX - 1)
        return usage_error("bad %s '%s'", flag, arg);
    if (at && shortname && strchr(at + 1, '.'))
        return usage_error("bad --sname '%s': the host of a short name has "
                           "no dots (use --name)",
                           arg);
    if (at) {
        snprintf(out, NAME_BUF_MAX, "%s", arg);
        return erl_name_valid(out, shortname)
                   ? 0
                   : usage_error("bad %s '%s' (want name@host: the name of "
                                 "letters, digits, '_' and '-', as erl)",
                                 flag, arg);
    }
    int rc = shortname ? tether__host_short(host, sizeof host)
                       : tether__host_fqdn(getenv("ERL_INET_ETC_DIR"), host,
                                           sizeof host);
    if (rc < 0) {
        char h[TETHER_HOST_MAX] = "?";
        if (gethostname(h, sizeof h) == 0)
            h[sizeof h - 1] = '\0';
        fprintf(stderr,
                "%s: cannot take %s node name '%s': %s '%s' has no %s; give "
                "%s %s@HOST%s\n",
                prog, shortname ? "a short" : "a long", arg,
                "this machine's host name", h,
                shortname ? "usable short form"
                          : "domain (erl -name refuses it too)",
                flag, arg, shortname ? "" : " or use --sname");
        return 1;
    }
    if (full_name(arg, host, out) < 0)
        return usage_error("bad %s '%s' (the name of letters, digits, '_' "
                           "and '-', as erl)",
                           flag, arg);
    return 0;
}

/* Reads a 32-byte key file (a secret must be 0600 or stricter); prints
 * one line naming the flag on error. Returns 0 or -1. */
static int read_key(const char *path, uint8_t *out, bool secret,
                    const char *flag)
{
    int rc = tether__keyfile_read(path, out, TETHER_CLUSTER_KEY_BYTES,
                                  secret ? TETHER_KEYFILE_SECRET : 0);
    const char *why;
    if (rc == 0)
        return 0;
    switch (rc) {
    case TETHER_ENOTFOUND:
        why = "no such file";
        break;
    case TETHER_EAUTH:
        why = "group or others may access it (chmod 600)";
        break;
    case TETHER_EINVAL:
        why = "not a regular file of exactly 32 bytes";
        break;
    default:
        why = strerror(errno);
        break;
    }
    usage_error("bad %s '%s': %s", flag, path, why);
    return -1;
}

/* `keygen --secret-out FILE --public-out FILE`: a new random identity. */
static int keygen_main(int argc, char **argv)
{
    static const struct option options[] = {
        {"secret-out", required_argument, NULL, 's'},
        {"public-out", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sk = NULL, *pk = NULL;
    optind = 1;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":s:p:h", options, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 's':
            sk = optarg;
            break;
        case 'p':
            pk = optarg;
            break;
        case 'h':
            printf("Usage: %s keygen --secret-out FILE --public-out FILE\n",
                   prog);
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown keygen option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (sk == NULL || pk == NULL)
        return usage_error("%s", "keygen needs --secret-out FILE and "
                                 "--public-out FILE");
    if (strcmp(sk, pk) == 0)
        return usage_error("%s", "--secret-out and --public-out must differ");
    if (tether__crypto_init() < 0) {
        fprintf(stderr, "%s: cannot initialize libsodium\n", prog);
        return 1;
    }
    uint8_t seed[TETHER_KEY_SEED_BYTES];
    randombytes_buf(seed, sizeof seed);
    int rc = tether__keyfile_write_identity(sk, pk, seed);
    sodium_memzero(seed, sizeof seed);
    if (rc == TETHER_EEXIST) {
        fprintf(stderr,
                "%s: refusing to overwrite '%s' or '%s': a file is "
                "already there\n",
                prog, sk, pk);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: cannot write the key files '%s', '%s': %s\n", prog,
                sk, pk,
                rc == TETHER_EIO ? strerror(errno) : tether_strerror(rc));
        return 1;
    }
    printf("%s: wrote identity secret seed to %s and public key to %s\n", prog,
           sk, pk);
    return 0;
}

typedef struct plugin {
    const char *path;
    void *handle;
    tether_plugin_init_fn init;
} plugin_t;

/* Opens every plugin and finds its entry point; prints one line on error. */
static int plugins_open(plugin_t *pl, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pl[i].handle = dlopen(pl[i].path, RTLD_NOW | RTLD_LOCAL);
        if (pl[i].handle == NULL) {
            fprintf(stderr, "%s: cannot load plugin '%s': %s\n", prog,
                    pl[i].path, dlerror());
            return -1;
        }
        void *sym = dlsym(pl[i].handle, TETHER_PLUGIN_INIT_SYMBOL);
        if (sym == NULL) {
            fprintf(stderr,
                    "%s: plugin '%s' has no entry point "
                    "'" TETHER_PLUGIN_INIT_SYMBOL "'\n",
                    prog, pl[i].path);
            return -1;
        }
        /* POSIX: a data pointer from dlsym converts to a function pointer. */
        memcpy(&pl[i].init, &sym, sizeof sym);
    }
    return 0;
}

static void plugins_close(plugin_t *pl, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pl[i].handle)
            dlclose(pl[i].handle);
}

/* Whether the option (getopt_long's value) configures the cluster
 * process, so that it contradicts --no-cluster. */
static bool needs_cluster(int c, int first_cluster_opt, int last_cluster_opt)
{
    return c >= first_cluster_opt && c <= last_cluster_opt;
}

int tether_cli_main(int argc, char **argv, const tether_cli_t *cli)
{
    enum {
        OPT_VISIBLE = 256,
        OPT_LOAD,
        OPT_NO_CLUSTER,
        OPT_BUSY_POLL,
        OPT_PROTO_DIST,
        OPT_OPTFILE,
        OPT_SETUPTIME,
        OPT_DIAL_LOG,
        /* The flags of the cluster process, from here to OPT_LEASE. */
        OPT_JOIN,
        OPT_SECRET_FILE,
        OPT_IDENTITY,
        OPT_TRUST,
        OPT_HB,
        OPT_TTL,
        OPT_RING_SIZE,
        OPT_SERVICE,
        OPT_REGISTER,
        OPT_LEAD,
        OPT_LEAD_PRIORITY,
        OPT_VOTER,
        OPT_DEFER_BYTES,
        OPT_MAP,
        OPT_CHANNEL,
        OPT_MAP_PERSIST,
        OPT_DATA_DIR,
        OPT_RM_REPLICAS,
        OPT_LEASE,
    };
    static const struct option options[] = {
        {"name", required_argument, NULL, 'n'},
        {"sname", required_argument, NULL, 's'},
        {"proto-dist", required_argument, NULL, OPT_PROTO_DIST},
        {"ssl-dist-optfile", required_argument, NULL, OPT_OPTFILE},
        {"setuptime", required_argument, NULL, OPT_SETUPTIME},
        {"cookie", required_argument, NULL, 'c'},
        {"cookie-file", required_argument, NULL, 'C'},
        {"listen", required_argument, NULL, 'l'},
        {"epmd-port", required_argument, NULL, 'e'},
        {"visible", no_argument, NULL, OPT_VISIBLE},
        {"ticktime", required_argument, NULL, 't'},
        {"workers", required_argument, NULL, 'w'},
        {"busy-poll-us", required_argument, NULL, OPT_BUSY_POLL},
        {"load", required_argument, NULL, OPT_LOAD},
        {"log-level", required_argument, NULL, 'L'},
        {"dial-log-ms", required_argument, NULL, OPT_DIAL_LOG},
        {"join", required_argument, NULL, OPT_JOIN},
        {"cluster-secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"identity", required_argument, NULL, OPT_IDENTITY},
        {"trust", required_argument, NULL, OPT_TRUST},
        {"heartbeat-ms", required_argument, NULL, OPT_HB},
        {"ttl-ms", required_argument, NULL, OPT_TTL},
        {"ring-size", required_argument, NULL, OPT_RING_SIZE},
        {"no-cluster", no_argument, NULL, OPT_NO_CLUSTER},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"register", required_argument, NULL, OPT_REGISTER},
        {"lead", required_argument, NULL, OPT_LEAD},
        {"map", required_argument, NULL, OPT_MAP},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"map-persist", required_argument, NULL, OPT_MAP_PERSIST},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"reminder-replicas", required_argument, NULL, OPT_RM_REPLICAS},
        {"lead-priority", required_argument, NULL, OPT_LEAD_PRIORITY},
        {"election-voter", required_argument, NULL, OPT_VOTER},
        {"election-lease-ms", required_argument, NULL, OPT_LEASE},
        {"defer-max-bytes", required_argument, NULL, OPT_DEFER_BYTES},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    static char name[NAME_BUF_MAX];
    static char cookie[COOKIE_BUF_MAX];
    static char listen_addr[64];
    static plugin_t plugins[PLUGINS_MAX];
    size_t nplugins = 0;
    const char *name_arg = NULL, *cookie_arg = NULL, *cookie_file = NULL;
    const char *sname_arg = NULL;
    static const char *join_args[TETHER_CLUSTER_SEEDS_MAX];
    tether_node_config_t cfg = {.log_level = TETHER_LOG_INFO};
    unsigned long v;
    static char seeds[TETHER_CLUSTER_SEEDS_MAX][NAME_BUF_MAX];
    static const char *seed_ptrs[TETHER_CLUSTER_SEEDS_MAX];
    static char trust_names[TETHER_CLUSTER_TRUST_MAX][NAME_BUF_MAX];
    static tether_cluster_trust_t trust[TETHER_CLUSTER_TRUST_MAX];
    static uint8_t secret[TETHER_CLUSTER_KEY_BYTES];
    static uint8_t identity[TETHER_CLUSTER_KEY_BYTES];
    tether_cluster_config_t ccfg = {.join = seed_ptrs, .trust = trust};
    bool cluster = true;
    static const char *services[SERVICES_FLAG_MAX];
    size_t nservices = 0;
    static const char *names[SERVICES_FLAG_MAX];
    size_t nnames = 0;
    static const char *leads[SERVICES_FLAG_MAX];
    size_t nleads = 0;
    static const char *maps[SERVICES_FLAG_MAX];
    static char chan_names[TETHER_MESSAGING_CHANNELS_MAX][TETHER_NAME_MAX];
    static tether_messaging_channel_t chans[TETHER_MESSAGING_CHANNELS_MAX];
    size_t nmaps = 0;
    static bool map_persist[SERVICES_FLAG_MAX];
    const char *data_dir = NULL;
    static char voters[TETHER_CLUSTER_VOTERS_MAX][NAME_BUF_MAX];
    static const char *voter_ptrs[TETHER_CLUSTER_VOTERS_MAX];
    tether_cluster_lead_opts_t lead_opts = {.voters = voter_ptrs};

    if (cli && cli->prog)
        prog = cli->prog;
    cfg.log_prefix = prog;
    if (argc > 1 && strcmp(argv[1], "keygen") == 0)
        return keygen_main(argc - 1, argv + 1);

    const char *env_port = getenv("ERL_EPMD_PORT");
    if (env_port && *env_port) {
        if (parse_uint(env_port, 1, 65535, &v) < 0) {
            return usage_error("bad ERL_EPMD_PORT '%s' (1..65535)", env_port);
        }
        cfg.epmd_port = (uint16_t)v;
    }

    const char *cluster_flag = NULL; /* the first flag needing it */
    const char *lead_flag = NULL;    /* the first flag needing --lead */
    opterr = 0; /* we print our own message, naming the flag */
    for (;;) {
        int longidx = -1;
        int c =
            getopt_long(argc, argv, ":n:s:c:C:l:e:t:w:L:hV", options, &longidx);
        if (c == -1)
            break;
        if (longidx >= 0 && cluster_flag == NULL &&
            needs_cluster(c, OPT_JOIN, OPT_LEASE))
            cluster_flag = options[longidx].name;
        if (longidx >= 0 && lead_flag == NULL &&
            (c == OPT_LEAD_PRIORITY || c == OPT_VOTER))
            lead_flag = options[longidx].name;
        switch (c) {
        case 'n':
            name_arg = optarg;
            break;
        case 's':
            sname_arg = optarg;
            break;
        case OPT_PROTO_DIST: {
            int pd = tether_proto_dist_parse(optarg);
            if (pd < 0)
                return usage_error("bad --proto-dist '%s' (inet_tcp, "
                                   "inet6_tcp, inet_tls or inet6_tls)",
                                   optarg);
            cfg.proto_dist = pd;
            break;
        }
        case OPT_OPTFILE:
            cfg.ssl_dist_optfile = optarg;
            break;
        case OPT_SETUPTIME:
            if (parse_uint(optarg, 1, SETUPTIME_MAX, &v) < 0)
                return usage_error("bad --setuptime '%s' (seconds, 1..%u)",
                                   optarg, SETUPTIME_MAX);
            cfg.hs_timeout_ms = (unsigned)v * 1000u;
            break;
        case 'c':
            cookie_arg = optarg;
            break;
        case 'C':
            cookie_file = optarg;
            break;
        case 'l':
            if (tether__hostport_parse(optarg, listen_addr, sizeof listen_addr,
                                       &cfg.listen_port) < 0)
                return usage_error("bad --listen '%s' (want ADDR:PORT or "
                                   "[ADDR6]:PORT)",
                                   optarg);
            cfg.listen_addr = listen_addr;
            break;
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
        case 'w':
            if (parse_uint(optarg, 1, 64, &v) < 0)
                return usage_error("bad --workers '%s' (1..64)", optarg);
            cfg.workers = (unsigned)v;
            break;
        case OPT_BUSY_POLL:
            if (parse_uint(optarg, 0, 1000000, &v) < 0)
                return usage_error("bad --busy-poll-us '%s' (0..1000000)",
                                   optarg);
            cfg.busy_poll_us = v == 0 ? TETHER_BUSY_POLL_OFF : (unsigned)v;
            break;
        case OPT_LOAD:
            if (nplugins == PLUGINS_MAX)
                return usage_error("too many --load (at most %d)", PLUGINS_MAX);
            if (*optarg == '\0')
                return usage_error("%s", "empty --load path");
            plugins[nplugins++].path = optarg;
            break;
        case OPT_DIAL_LOG: {
            uint32_t ms = 0;
            if (ms_flag("--dial-log-ms", optarg, 1, &ms) != 0)
                return 2;
            cfg.dial_log_ms = ms;
            break;
        }
        case 'L': {
            int lvl = tether_log_level_parse(optarg);
            if (lvl < 0)
                return usage_error(
                    "bad --log-level '%s' (error|warning|info|debug)", optarg);
            cfg.log_level = lvl;
            break;
        }
        case OPT_JOIN:
            if (ccfg.njoin == TETHER_CLUSTER_SEEDS_MAX)
                return usage_error("too many --join (at most %d)",
                                   TETHER_CLUSTER_SEEDS_MAX);
            join_args[ccfg.njoin++] = optarg; /* completed below */
            break;
        case OPT_SECRET_FILE:
            if (read_key(optarg, secret, true, "--cluster-secret-file") < 0)
                return 2;
            ccfg.cluster_secret = secret;
            break;
        case OPT_IDENTITY:
            if (read_key(optarg, identity, true, "--identity") < 0)
                return 2;
            ccfg.identity_seed = identity;
            break;
        case OPT_TRUST: {
            const char *eq = strchr(optarg, '=');
            size_t nl = eq ? (size_t)(eq - optarg) : 0;
            if (ccfg.ntrust == TETHER_CLUSTER_TRUST_MAX)
                return usage_error("too many --trust (at most %d)",
                                   TETHER_CLUSTER_TRUST_MAX);
            if (eq == NULL || nl == 0 || nl >= NAME_BUF_MAX || eq[1] == '\0')
                return usage_error("bad --trust '%s' (want NODE=PUBFILE)",
                                   optarg);
            memcpy(trust_names[ccfg.ntrust], optarg, nl); /* completed below */
            trust_names[ccfg.ntrust][nl] = '\0';
            if (read_key(eq + 1, trust[ccfg.ntrust].public_key, false,
                         "--trust") < 0)
                return 2;
            trust[ccfg.ntrust].node = trust_names[ccfg.ntrust];
            ccfg.ntrust++;
            break;
        }
        case OPT_HB:
            if (ms_flag("--heartbeat-ms", optarg, 1, &ccfg.heartbeat_ms) != 0)
                return 2;
            break;
        case OPT_TTL:
            if (ms_flag("--ttl-ms", optarg, 2, &ccfg.ttl_ms) != 0)
                return 2;
            break;
        case OPT_RING_SIZE:
            if (parse_uint(optarg, 1, 65536, &v) < 0 || (v & (v - 1)) != 0)
                return usage_error("bad --ring-size '%s' (a power of two, "
                                   "1..65536)",
                                   optarg);
            ccfg.ring_size = (uint32_t)v;
            break;
        case OPT_NO_CLUSTER:
            cluster = false;
            break;
        case OPT_SERVICE:
            if (nservices == SERVICES_FLAG_MAX)
                return usage_error("too many --service (at most %d)",
                                   SERVICES_FLAG_MAX);
            if (*optarg == '\0' || strlen(optarg) >= TETHER_NAME_MAX)
                return usage_error("bad --service '%s' (want an atom name)",
                                   optarg);
            services[nservices++] = optarg;
            break;
        case OPT_REGISTER:
            if (nnames == SERVICES_FLAG_MAX)
                return usage_error("too many --register (at most %d)",
                                   SERVICES_FLAG_MAX);
            if (*optarg == '\0' || strlen(optarg) >= TETHER_NAME_MAX)
                return usage_error("bad --register '%s' (want an atom name)",
                                   optarg);
            names[nnames++] = optarg;
            break;
        case OPT_MAP:
        case OPT_MAP_PERSIST:
            if (nmaps == SERVICES_FLAG_MAX)
                return usage_error("too many --map (at most %d)",
                                   SERVICES_FLAG_MAX);
            if (*optarg == '\0' || strlen(optarg) >= TETHER_NAME_MAX)
                return usage_error("bad --map '%s' (want an atom name)",
                                   optarg);
            map_persist[nmaps] = c == OPT_MAP_PERSIST;
            maps[nmaps++] = optarg;
            break;
        case OPT_DATA_DIR:
            if (*optarg == '\0' ||
                strlen(optarg) > TETHER_CLUSTER_DATA_DIR_MAX)
                return usage_error("bad --data-dir '%s' (want a directory "
                                   "path of 1..%d bytes)",
                                   optarg, TETHER_CLUSTER_DATA_DIR_MAX);
            data_dir = optarg;
            ccfg.data_dir = optarg; /* reminders persist only when given */
            break;
        case OPT_RM_REPLICAS:
            if (parse_uint(optarg, 1, TETHER_CLUSTER_REMINDER_REPLICAS_MAX,
                           &v) < 0)
                return usage_error("bad --reminder-replicas '%s' (1..%d)",
                                   optarg,
                                   TETHER_CLUSTER_REMINDER_REPLICAS_MAX);
            ccfg.reminder_replicas = (uint32_t)v;
            break;
        case OPT_LEAD:
            if (nleads == SERVICES_FLAG_MAX)
                return usage_error("too many --lead (at most %d)",
                                   SERVICES_FLAG_MAX);
            if (*optarg == '\0' || strlen(optarg) >= TETHER_NAME_MAX)
                return usage_error("bad --lead '%s' (want an atom name)",
                                   optarg);
            leads[nleads++] = optarg;
            break;
        case OPT_LEAD_PRIORITY:
            if (parse_int64(optarg, &lead_opts.priority) < 0)
                return usage_error("bad --lead-priority '%s' (a 64-bit "
                                   "integer)",
                                   optarg);
            break;
        case OPT_VOTER:
            if (lead_opts.nvoters == TETHER_CLUSTER_VOTERS_MAX)
                return usage_error("too many --election-voter (at most %d)",
                                   TETHER_CLUSTER_VOTERS_MAX);
            if (strlen(optarg) >= NAME_BUF_MAX)
                return usage_error("bad --election-voter '%s' (want "
                                   "name@host)",
                                   optarg);
            /* Completed with our host below, once it is known. */
            memcpy(voters[lead_opts.nvoters], optarg, strlen(optarg) + 1);
            voter_ptrs[lead_opts.nvoters] = voters[lead_opts.nvoters];
            lead_opts.nvoters++;
            lead_opts.quorum = 1;
            break;
        case OPT_LEASE:
            if (ms_flag("--election-lease-ms", optarg, 1,
                        &ccfg.election_lease_ms) != 0)
                return 2;
            break;
        case OPT_CHANNEL: {
            const char *colon = strrchr(optarg, ':');
            size_t nlen = colon ? (size_t)(colon - optarg) : 0;
            if (ccfg.nchannels == TETHER_MESSAGING_CHANNELS_MAX)
                return usage_error("too many --channel (at most %d)",
                                   TETHER_MESSAGING_CHANNELS_MAX);
            if (nlen == 0 || nlen >= TETHER_NAME_MAX ||
                parse_uint(colon + 1, 1, TETHER_MESSAGING_PARALLELISM_MAX, &v) <
                    0)
                return usage_error("bad --channel '%s' (want NAME:PARALLELISM,"
                                   " an atom name and 1..%d)",
                                   optarg, TETHER_MESSAGING_PARALLELISM_MAX);
            memcpy(chan_names[ccfg.nchannels], optarg, nlen);
            chan_names[ccfg.nchannels][nlen] = '\0';
            for (size_t i = 0; i < ccfg.nchannels; i++)
                if (strcmp(chans[i].name, chan_names[ccfg.nchannels]) == 0)
                    return usage_error("--channel '%s' given twice",
                                       chan_names[ccfg.nchannels]);
            chans[ccfg.nchannels].name = chan_names[ccfg.nchannels];
            chans[ccfg.nchannels].parallelism = (uint32_t)v;
            ccfg.channels = chans;
            ccfg.nchannels++;
            break;
        }
        case OPT_DEFER_BYTES:
            if (parse_uint(optarg, 1, 1ul << 40, &v) < 0)
                return usage_error("bad --defer-max-bytes '%s' (1..%lu)",
                                   optarg, 1ul << 40);
            ccfg.defer_max_bytes = v;
            break;
        case 'h':
            printf(usage_text, prog);
            if (cli && cli->about)
                printf("\n%s", cli->about);
            return 0;
        case 'V':
            printf("%s %s\n", prog, tether_version());
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (cluster_flag && !cluster)
        return usage_error("--%s contradicts --no-cluster: it configures the "
                           "cluster process (drop one of them)",
                           cluster_flag);
    if (lead_flag && nleads == 0)
        return usage_error("--%s applies to --lead candidacies, and there is "
                           "no --lead",
                           lead_flag);
    if (name_arg == NULL && sname_arg == NULL)
        return usage_error("%s", "--name or --sname is required");
    if (name_arg && sname_arg)
        return usage_error("%s", "give --name or --sname, not both");
    if (cfg.ssl_dist_optfile && cfg.proto_dist < TETHER_PROTO_INET_TLS)
        return usage_error("%s", "--ssl-dist-optfile needs --proto-dist "
                                 "inet_tls or inet6_tls");
    if (!cfg.ssl_dist_optfile && cfg.proto_dist >= TETHER_PROTO_INET_TLS)
        return usage_error("%s", "TLS distribution needs "
                                 "--ssl-dist-optfile FILE");
    if (cookie_arg && cookie_file)
        return usage_error("%s", "give --cookie or --cookie-file, not both");
    {
        uint32_t hb = ccfg.heartbeat_ms ? ccfg.heartbeat_ms
                                        : TETHER_CLUSTER_HB_MS_DEFAULT;
        if (ccfg.ttl_ms != 0 && ccfg.ttl_ms <= hb)
            return usage_error("--ttl-ms %u must be greater than the "
                               "heartbeat (%u ms)",
                               (unsigned)ccfg.ttl_ms, (unsigned)hb);
    }

    int st = node_name(name_arg ? name_arg : sname_arg, name_arg == NULL, name);
    if (st != 0)
        return st;
    /* --join and --trust names without a host are on ours. */
    const char *our_host = strchr(name, '@') + 1;
    for (size_t i = 0; i < ccfg.njoin; i++) {
        if (full_name(join_args[i], our_host, seeds[i]) < 0)
            return usage_error("bad --join '%s' (want name@host)",
                               join_args[i]);
        seed_ptrs[i] = seeds[i];
    }
    for (size_t i = 0; i < lead_opts.nvoters; i++) {
        if (full_name(voters[i], our_host, voters[i]) < 0)
            return usage_error("bad --election-voter '%s' (want name@host)",
                               voters[i]);
    }
    for (size_t i = 0; i < ccfg.ntrust; i++) {
        if (full_name(trust_names[i], our_host, trust_names[i]) < 0)
            return usage_error("bad --trust node '%s' (want name@host)",
                               trust_names[i]);
    }

    if (cookie_arg) {
        if (strlen(cookie_arg) > TETHER_NODE_COOKIE_MAX || !*cookie_arg)
            return usage_error("%s", "bad --cookie (empty or too long)");
        snprintf(cookie, sizeof cookie, "%s", cookie_arg);
    } else {
        char path[PATH_BUF_MAX];
        if (cookie_file == NULL) {
            const char *home = getenv("HOME");
            if (home == NULL || !*home) {
                fprintf(stderr, "%s: no --cookie given and $HOME is not set\n",
                        prog);
                return 1;
            }
            snprintf(path, sizeof path, "%s/.erlang.cookie", home);
            cookie_file = path;
        }
        if (read_cookie(cookie_file, cookie, sizeof cookie) < 0)
            return 1;
    }

    if (plugins_open(plugins, nplugins) < 0) {
        plugins_close(plugins, nplugins);
        return 1;
    }

    cfg.name = name;
    cfg.cookie = cookie;
    tether_node_t *node = NULL;
    const char *why = NULL;
    int rc = tether_node_new(&cfg, &node, &why);
    explicit_bzero(cookie, sizeof cookie);
    if (rc < 0) {
        plugins_close(plugins, nplugins);
        if (rc == TETHER_EINVAL)
            return usage_error("%s", why ? why : "bad configuration");
        fprintf(stderr, "%s: %s\n", prog, why ? why : tether_strerror(rc));
        return 1;
    }
    int status = 1;
    signal(SIGPIPE, SIG_IGN);
    if (tether_node_handle_signals(node) < 0) {
        fprintf(stderr, "%s: cannot set up signal handling\n", prog);
        goto done;
    }
    if (tether_node_start(node) < 0)
        goto done; /* tether_node_start logged the reason */
    if (cluster) {
        rc = tether_cluster_start(node, &ccfg);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot start the cluster process: %s\n", prog,
                    tether_strerror(rc));
            goto done;
        }
    }
    if (cli && cli->init) {
        rc = cli->init(node);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot start the services: %s\n", prog,
                    tether_strerror(rc));
            goto done;
        }
    }
    for (size_t i = 0; i < nplugins; i++) {
        rc = plugins[i].init(node);
        if (rc < 0) {
            fprintf(stderr, "%s: plugin '%s' failed to start: %s\n", prog,
                    plugins[i].path, tether_strerror(rc));
            goto done;
        }
    }
    for (size_t i = 0; i < nservices; i++) {
        rc = tether_cluster_service_register(node, services[i], NULL, 0);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot announce service '%s': %s\n", prog,
                    services[i], tether_strerror(rc));
            goto done;
        }
    }
    for (size_t i = 0; i < nnames; i++) {
        rc = tether_cluster_register_name(node, names[i]);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot register '%s' in the cluster: %s\n",
                    prog, names[i], tether_strerror(rc));
            goto done;
        }
    }
    if (data_dir != NULL) {
        rc = tether_cluster_set_data_dir(node, data_dir);
        if (rc < 0) {
            fprintf(stderr, "%s: bad --data-dir '%s': %s\n", prog, data_dir,
                    rc == TETHER_EINVAL ? "not a directory"
                                        : tether_strerror(rc));
            goto done;
        }
    }
    for (size_t i = 0; i < nmaps; i++) {
        char atom[TETHER_ATOM_TERM_MAX];
        size_t alen = tether_term_atom(atom, sizeof atom, maps[i]);
        rc = alen == 0        ? TETHER_EINVAL
             : map_persist[i] ? tether_cluster_map_host_persist(node, atom,
                                                                alen)
                              : tether_cluster_map_host(node, atom, alen);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot host the map '%s': %s\n", prog, maps[i],
                    tether_strerror(rc));
            goto done;
        }
    }
    for (size_t i = 0; i < nleads; i++) {
        char atom[TETHER_ATOM_TERM_MAX];
        size_t alen = tether_term_atom(atom, sizeof atom, leads[i]);
        int outcome = 0;
        uint64_t fence = 0;
        rc = alen == 0 ? TETHER_EINVAL
                       : tether__cluster_lead_at_start(
                             node, atom, alen, &lead_opts, &outcome, &fence);
        if (rc == 0 && outcome == TETHER_CLUSTER_VOTERS_MISMATCH)
            rc = TETHER_EINVAL;
        if (rc < 0) {
            fprintf(stderr, "%s: cannot campaign for '%s': %s\n", prog,
                    leads[i], tether_strerror(rc));
            goto done;
        }
    }
    printf("%s: %s ready\n", prog, tether_node_name(node));
    fflush(stdout);
    status = tether_node_run(node) < 0 ? 1 : 0;
done:
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(identity, sizeof identity);
    tether_node_free(node);
    /* Plugin code may run until the node is freed (terminate handlers). */
    plugins_close(plugins, nplugins);
    return status;
}
