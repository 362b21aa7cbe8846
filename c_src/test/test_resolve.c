/*
 * Criterion suite for cnode/resolve.c: address literals, "ADDR:PORT"
 * parsing, resolv.conf's domain line, this machine's names, and look-ups
 * on the resolver threads answered on a running node's loop (no network:
 * localhost comes from /etc/hosts, .invalid never resolves).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/node.h"
#include "cnode/resolve.h"

Test(resolve, hostport_parse)
{
    char a[64];
    uint16_t port = 1;
    cr_assert_eq(tether__hostport_parse("127.0.0.1:4369", a, sizeof a, &port),
                 0);
    cr_assert_str_eq(a, "127.0.0.1");
    cr_assert_eq(port, 4369);
    cr_assert_eq(tether__hostport_parse("[::1]:0", a, sizeof a, &port), 0);
    cr_assert_str_eq(a, "::1");
    cr_assert_eq(port, 0);
    cr_assert_eq(tether__hostport_parse("[::]:65535", a, sizeof a, &port), 0);
    cr_assert_str_eq(a, "::");
    cr_assert_eq(port, 65535);
    static const char *const bad[] = {
        "127.0.0.1", ":80",     "127.0.0.1:", "::1:80",
        "[::1]80",   "[::1:80", "[]:80",      "1.2.3.4:65536",
        "a:-1",      "a:1x",    "a:0000080",  "[::1]:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(tether__hostport_parse(bad[i], a, sizeof a, &port),
                     TETHER_EINVAL, "accepted '%s'", bad[i]);
    cr_assert_eq(tether__hostport_parse("1.2.3.4:1", a, 4, &port),
                 TETHER_EINVAL, "address longer than the buffer");
}

Test(resolve, literals_of_each_family)
{
    tether_addr_t a;
    char s[TETHER_ADDR_STR_MAX];
    cr_assert_eq(tether__addr_literal("127.0.0.1", AF_INET, 4369, &a), 0);
    tether__addr_format((struct sockaddr *)&a.ss, s, sizeof s);
    cr_assert_str_eq(s, "127.0.0.1:4369");
    cr_assert_eq(tether__addr_literal("::1", AF_INET6, 80, &a), 0);
    tether__addr_format((struct sockaddr *)&a.ss, s, sizeof s);
    cr_assert_str_eq(s, "[::1]:80");
    /* Under inet6 an IPv4 literal is mapped, as inet:getaddr/2 does. */
    cr_assert_eq(tether__addr_literal("127.0.0.1", AF_INET6, 1, &a), 0);
    tether__addr_format((struct sockaddr *)&a.ss, s, sizeof s);
    cr_assert_str_eq(s, "[::ffff:127.0.0.1]:1");
    tether__addr_set_port(&a, 2);
    tether__addr_format((struct sockaddr *)&a.ss, s, sizeof s);
    cr_assert_str_eq(s, "[::ffff:127.0.0.1]:2");
    cr_assert_eq(tether__addr_literal("::1", AF_INET, 1, &a), TETHER_ENOTFOUND);
    cr_assert_eq(tether__addr_literal("localhost", AF_INET, 1, &a),
                 TETHER_ENOTFOUND, "a name is not a literal");
    cr_assert_eq(tether__addr_literal("", AF_INET, 1, &a), TETHER_ENOTFOUND);
}

Test(resolve, resolv_conf_domain_line)
{
    char path[] = "/tmp/tether_resolv_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *text = "# domain commented.out\n"
                       "nameserver 10.0.0.1\n"
                       "domain first.example\n"
                       "search a.example b.example\n"
                       "domain two words\n"
                       "domain\tlast.example # trailing comment\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char d[64];
    cr_assert_eq(tether__resolv_domain(path, d, sizeof d), 0);
    cr_assert_str_eq(d, "last.example");
    FILE *f = fopen(path, "w");
    fputs("search only.example\n", f);
    fclose(f);
    cr_assert_eq(tether__resolv_domain(path, d, sizeof d), TETHER_ENOTFOUND);
    unlink(path);
    cr_assert_eq(tether__resolv_domain(path, d, sizeof d), TETHER_ENOTFOUND);
}

Test(resolve, short_host_name_is_gethostname_up_to_a_dot)
{
    char h[256], s[256];
    cr_assert_eq(gethostname(h, sizeof h), 0);
    cr_assert_eq(tether__host_short(s, sizeof s), 0);
    cr_assert_eq(strncmp(h, s, strlen(s)), 0);
    cr_assert(h[strlen(s)] == '\0' || h[strlen(s)] == '.');
    cr_assert_null(strchr(s, '.'));
    cr_assert_eq(tether__host_short(s, 1), TETHER_ENOTFOUND);
}

Test(resolve, fqdn_takes_the_resolv_conf_domain)
{
    char dir[] = "/tmp/tether_etc_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64], fq[256], s[256];
    snprintf(path, sizeof path, "%s/resolv.conf", dir);
    FILE *f = fopen(path, "w");
    fputs("domain tether.test\n", f);
    fclose(f);
    cr_assert_eq(tether__host_short(s, sizeof s), 0);
    cr_assert_eq(tether__host_fqdn(dir, fq, sizeof fq), 0);
    char want[300];
    snprintf(want, sizeof want, "%s.tether.test", s);
    cr_assert_str_eq(fq, want);
    cr_assert_eq(tether__host_fqdn(dir, fq, 4), TETHER_ENOTFOUND);
    unlink(path);
    rmdir(dir);
}

/* ---- look-ups answered on the loop -------------------------------- */

typedef struct {
    const char *host;
    int family;
    int rc;
    uint64_t id;
    char addr[TETHER_ADDR_STR_MAX];
    char why[128];
    bool on_loop;
} lookup_t;

static lookup_t *current;

static void answered(tether_node_t *node, uint64_t id, int rc,
                     const tether_addr_t *addr, const char *why)
{
    current->id = id;
    current->rc = rc;
    current->on_loop = tether_node_on_loop(node);
    if (addr)
        tether__addr_format((const struct sockaddr *)&addr->ss, current->addr,
                            sizeof current->addr);
    if (why)
        snprintf(current->why, sizeof current->why, "%s", why);
    tether_node_stop(node);
}

static void ask(tether_node_t *node, void *arg)
{
    lookup_t *l = arg;
    cr_assert_eq(tether__resolve_start(node, l->host, l->family, 42, answered),
                 0);
}

static tether_node_t *new_node(void)
{
    tether_node_config_t cfg = {
        .name = "r@127.0.0.1", .cookie = "c", .log_level = TETHER_LOG_ERROR};
    tether_node_t *node;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    return node;
}

static void lookup(lookup_t *l)
{
    tether_node_t *node = new_node();
    current = l;
    l->rc = 1;
    cr_assert_eq(tether_node_post(node, ask, l), 0);
    cr_assert_eq(tether_node_run(node), 0);
    tether_node_free(node);
}

Test(resolve, localhost_resolves_off_the_loop)
{
    lookup_t l = {.host = "localhost", .family = AF_INET};
    lookup(&l);
    cr_assert_eq(l.rc, 0, "%s", l.why);
    cr_assert_eq(l.id, 42);
    cr_assert(l.on_loop, "the answer runs on the loop thread");
    cr_assert_str_eq(l.addr, "127.0.0.1:0");
}

Test(resolve, unknown_host_is_reported)
{
    lookup_t l = {.host = "no-such-host.invalid", .family = AF_INET};
    lookup(&l);
    cr_assert_eq(l.rc, TETHER_ENOTFOUND);
    cr_assert_neq(l.why[0], '\0');
}

Test(resolve, free_with_a_look_up_under_way)
{
    /* The node goes before the answer runs: nothing leaks (LeakSanitizer)
     * and nothing runs after the free. */
    tether_node_t *node = new_node();
    lookup_t l = {.host = "localhost", .family = AF_INET};
    current = &l;
    cr_assert_eq(tether__resolve_start(node, "localhost", AF_INET, 7, answered),
                 0);
    tether_node_free(node);
    cr_assert_eq(l.id, 0);
}
