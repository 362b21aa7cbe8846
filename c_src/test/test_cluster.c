/*
 * Criterion suite for cnode/cluster.c without sockets: how the `tether'
 * process classifies its mailbox (tether__cluster_parse) for good,
 * truncated, oversized and garbage input, and the process itself on a
 * node that was never started: bad input is counted and ignored, engine
 * bytes that are garbage are refused by the engine, configuration checks,
 * and the public membership query.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <ei.h>

#include "cnode/cluster.h"
#include "cnode/node.h"
#include "tether/tether.h"

#define SELF   "c1@127.0.0.1"
#define PEER   "b1@127.0.0.1"
#define BUF_SZ 4096

/* A 131-prefixed term built with ei into buf; returns its length. */
typedef struct term {
    char buf[BUF_SZ];
    size_t len;
} term_t;

static void t_done(term_t *t, ei_x_buff *x)
{
    cr_assert_leq((size_t)x->index, sizeof t->buf);
    memcpy(t->buf, x->buff, (size_t)x->index);
    t->len = (size_t)x->index;
    ei_x_free(x);
}

/* {'$tether', From, <<Bytes>>} */
static void data_msg(term_t *t, const char *from, const char *bytes, long n)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether");
    ei_x_encode_atom(&x, from);
    ei_x_encode_binary(&x, bytes, n);
    t_done(t, &x);
}

static void restart_msg(term_t *t, const char *from)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "$tether_restart");
    ei_x_encode_atom(&x, from);
    t_done(t, &x);
}

/* {'$gen_call', {Pid, Tag}, members} */
static void call_msg(term_t *t)
{
    ei_x_buff x;
    erlang_pid pid = {.num = 1, .serial = 0, .creation = 1};
    strcpy(pid.node, PEER);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$gen_call");
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_pid(&x, &pid);
    ei_x_encode_long(&x, 7);
    ei_x_encode_atom(&x, "members");
    t_done(t, &x);
}

static int parse(const term_t *t, tether_cluster_msg_t *m)
{
    return tether__cluster_parse(t->buf, t->len, m);
}

Test(cluster, parses_engine_bytes)
{
    term_t t;
    tether_cluster_msg_t m;
    data_msg(&t, PEER, "\x01\x02\x03", 3);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_DATA);
    cr_assert_str_eq(m.from, PEER);
    cr_assert_eq(m.len, 3);
    cr_assert_eq(memcmp(m.bytes, "\x01\x02\x03", 3), 0);
    /* The bytes point into the buffer, inside its bounds. */
    cr_assert_geq((const char *)m.bytes, t.buf);
    cr_assert_leq((const char *)m.bytes + m.len, t.buf + t.len);
    data_msg(&t, PEER, "", 0);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_DATA);
    cr_assert_eq(m.len, 0);
}

Test(cluster, parses_restart_call_wake_exit)
{
    term_t t;
    tether_cluster_msg_t m;
    restart_msg(&t, PEER);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_RESTART);
    cr_assert_str_eq(m.from, PEER);

    call_msg(&t);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_CALL);
    int idx = m.req_index;
    char a[MAXATOMLEN_UTF8];
    cr_assert_eq(ei_decode_atom(t.buf, &idx, a), 0);
    cr_assert_str_eq(a, "members");

    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, "$tether_wake");
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_WAKE);

    erlang_pid pid = {.num = 2, .creation = 1};
    strcpy(pid.node, PEER);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "EXIT");
    ei_x_encode_pid(&x, &pid);
    ei_x_encode_atom(&x, "normal");
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_EXIT);
}

Test(cluster, rejects_truncated_input)
{
    term_t t;
    tether_cluster_msg_t m;
    data_msg(&t, PEER, "abcdef", 6);
    for (size_t n = 0; n < t.len; n++)
        cr_assert_eq(tether__cluster_parse(t.buf, n, &m),
                     TETHER_CLUSTER_MSG_BAD, "prefix of %zu bytes", n);
    cr_assert_eq(tether__cluster_parse(NULL, 10, &m), TETHER_CLUSTER_MSG_BAD);
}

Test(cluster, rejects_trailing_and_oversized_lengths)
{
    term_t t;
    tether_cluster_msg_t m;
    data_msg(&t, PEER, "abcdef", 6);
    /* A trailing byte. */
    t.buf[t.len] = 0;
    cr_assert_eq(tether__cluster_parse(t.buf, t.len + 1, &m),
                 TETHER_CLUSTER_MSG_BAD);
    /* The binary claims more bytes than there are (BINARY_EXT length is
     * the 4 bytes before the last 6). */
    size_t lenpos = t.len - 6 - 4;
    cr_assert_eq((unsigned char)t.buf[lenpos - 1], ERL_BINARY_EXT);
    t.buf[lenpos] = 0x7f;
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    t.buf[lenpos] = 0;
    t.buf[lenpos + 3] = 7;
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    /* No version byte. */
    data_msg(&t, PEER, "abc", 3);
    cr_assert_eq(tether__cluster_parse(t.buf + 1, t.len - 1, &m),
                 TETHER_CLUSTER_MSG_BAD);
}

Test(cluster, rejects_wrong_shapes)
{
    term_t t;
    tether_cluster_msg_t m;
    ei_x_buff x;

    /* Not a binary. */
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether");
    ei_x_encode_atom(&x, PEER);
    ei_x_encode_atom(&x, "not_a_binary");
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);

    /* A bitstring, not a binary. */
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether");
    ei_x_encode_atom(&x, PEER);
    ei_x_encode_bitstring(&x, "\xe0", 0, 3);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);

    /* From is not an atom, or not a node name. */
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether");
    ei_x_encode_string(&x, PEER);
    ei_x_encode_binary(&x, "a", 1);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    data_msg(&t, "nohost", "a", 1);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    data_msg(&t, "@host", "a", 1);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    data_msg(&t, "name@", "a", 1);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);

    /* Wrong arities and tags. */
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "$tether");
    ei_x_encode_atom(&x, PEER);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether_restart");
    ei_x_encode_atom(&x, PEER);
    ei_x_encode_atom(&x, PEER);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$gen_call");
    ei_x_encode_atom(&x, "not_from");
    ei_x_encode_atom(&x, "members");
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "other");
    ei_x_encode_atom(&x, PEER);
    ei_x_encode_binary(&x, "a", 1);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);

    /* Other terms. */
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, "hello");
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, 42);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 0);
    t_done(&t, &x);
    cr_assert_eq(parse(&t, &m), TETHER_CLUSTER_MSG_BAD);
}

Test(cluster, rejects_garbage_bytes)
{
    tether_cluster_msg_t m;
    unsigned char buf[256];
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(seed % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (unsigned char)(seed >> 16);
        }
        if (n > 0 && round % 2 == 0)
            buf[0] = 131;
        int k = tether__cluster_parse((const char *)buf, n, &m);
        cr_assert(k >= TETHER_CLUSTER_MSG_BAD && k <= TETHER_CLUSTER_MSG_EXIT);
        seed = seed * 1103515245u + 12345u;
    }
}

/* ---- the process on a node that was never started ------------------- */

static tether_node_t *new_node(void)
{
    tether_node_config_t cfg = {
        .name = SELF,
        .cookie = "secret",
        .log_level = TETHER_LOG_ERROR,
    };
    tether_node_t *node = NULL;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    return node;
}

/* Delivers a term to the registered `tether' and runs the mailbox. */
static void deliver(tether_node_t *node, const char *buf, size_t len)
{
    tether_procs_t *procs = tether_node_procs(node);
    tether_procs_reg_send_in(procs, NULL, "tether", buf, len);
    (void)tether_procs_run(procs, 0);
}

Test(cluster, process_counts_and_ignores_bad_input)
{
    tether_node_t *node = new_node();
    tether_cluster_config_t cfg = {.heartbeat_ms = 100, .ttl_ms = 500};
    cr_assert_eq(tether_cluster_start(node, &cfg), 0);
    cr_assert_eq(tether_cluster_start(node, &cfg), TETHER_EEXIST);
    cr_assert_eq(tether__cluster_bad_input(node), 0);

    term_t t;
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_atom(&x, "hello");
    t_done(&t, &x);
    deliver(node, t.buf, t.len);
    data_msg(&t, PEER, "x", 1);
    deliver(node, t.buf, t.len - 1); /* truncated */
    const char garbage[] = "\x83\x68\x03\xff\xff";
    deliver(node, garbage, sizeof garbage - 1);
    cr_assert_eq(tether__cluster_bad_input(node), 3);

    /* Well-formed, but the bytes are no hello or envelope: the engine
     * refuses them (counted there), the process carries on. */
    const tether_engine_stats_t *st = tether__cluster_engine_stats(node);
    cr_assert_not_null(st);
    uint64_t g0 = st->recv_garbage + st->recv_rejected + st->recv_unknown;
    data_msg(&t, PEER, "garbage bytes", 13);
    deliver(node, t.buf, t.len);
    data_msg(&t, PEER, "", 0);
    deliver(node, t.buf, t.len);
    st = tether__cluster_engine_stats(node);
    cr_assert_geq(st->recv_garbage + st->recv_rejected + st->recv_unknown,
                  g0 + 2);
    /* A restart from a node never up changes nothing. */
    restart_msg(&t, PEER);
    deliver(node, t.buf, t.len);
    cr_assert_eq(tether__cluster_bad_input(node), 3);

    const char *m[4];
    cr_assert_eq(tether_cluster_members(node, m, 4), 1);
    cr_assert_str_eq(m[0], SELF);
    cr_assert_eq(tether_cluster_members(node, NULL, 0), 1);
    cr_assert_eq(tether_cluster_is_member(node, SELF), 1);
    cr_assert_eq(tether_cluster_is_member(node, PEER), 0);
    tether_node_free(node);
}

Test(cluster, configuration_checks)
{
    tether_node_t *node = new_node();
    const char *m[1];
    cr_assert_eq(tether_cluster_members(node, m, 1), TETHER_ENOTFOUND);
    cr_assert_eq(tether_cluster_is_member(node, SELF), TETHER_ENOTFOUND);
    tether_cluster_config_t bad_ttl = {.heartbeat_ms = 1000, .ttl_ms = 1000};
    cr_assert_eq(tether_cluster_start(node, &bad_ttl), TETHER_EINVAL);
    const char *seeds[] = {"no_host"};
    tether_cluster_config_t bad_seed = {.join = seeds, .njoin = 1};
    cr_assert_eq(tether_cluster_start(node, &bad_seed), TETHER_EINVAL);
    tether_cluster_trust_t tr = {.node = "x"};
    tether_cluster_config_t bad_trust = {.trust = &tr, .ntrust = 1};
    cr_assert_eq(tether_cluster_start(node, &bad_trust), TETHER_EINVAL);
    cr_assert_eq(tether_cluster_start(node, NULL), TETHER_EINVAL);
    /* Nothing was left behind: a good start still works, with seeds (the
     * join asks to connect; a host that is no IPv4 literal is not dialled,
     * so no socket is opened). */
    const char *good[] = {"b1@unresolvable.invalid", SELF};
    tether_cluster_config_t ok = {.join = good, .njoin = 2};
    cr_assert_eq(tether_cluster_start(node, &ok), 0);
    cr_assert_eq(tether_cluster_members(node, m, 1), 1);
    tether_node_free(node);
}
