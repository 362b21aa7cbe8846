/*
 * Criterion suite for cnode/channel.c without sockets: the channel
 * configuration checks, how the `tether_channel` process classifies its
 * mailbox (tether__channels_parse) for good, truncated and garbage
 * input, and the public API of tether/messaging.h on a node that was
 * never started: errors for each bad argument, local delivery, garbage
 * in the mailbox counted and ignored; and a batch sealed by a peer
 * engine with a session: opened, delivered once, replays and
 * retransmissions refused or dropped as duplicates.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "cnode/channel.h"
#include "cnode/cluster.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "tether/tether.h"
#include "test/engine_peer.h"
#include "test/unstarted_node.h"

#define SELF "c1@127.0.0.1"
#define PEER "b1@127.0.0.1"

static tether_node_t *new_node(void)
{
    return unstarted_node(SELF);
}

static const tether_messaging_channel_t wide[] = {{"wide", 4}, {"default", 2}};

static tether_node_t *cluster_node(void)
{
    tether_node_t *node = new_node();
    tether_cluster_config_t cfg = {.channels = wide, .nchannels = 2};
    cr_assert_eq(tether_cluster_start(node, &cfg), 0);
    return node;
}

Test(channel, configuration_checks)
{
    tether_messaging_channel_t c[TETHER_MESSAGING_CHANNELS_MAX + 1];
    char names[TETHER_MESSAGING_CHANNELS_MAX + 1][8];
    for (size_t i = 0; i <= TETHER_MESSAGING_CHANNELS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "c%zu", i);
        c[i] = (tether_messaging_channel_t){names[i], 1};
    }
    cr_assert_eq(tether__channels_check(NULL, 0), 0);
    cr_assert_eq(tether__channels_check(c, TETHER_MESSAGING_CHANNELS_MAX), 0);
    cr_assert_eq(tether__channels_check(c, TETHER_MESSAGING_CHANNELS_MAX + 1),
                 TETHER_EINVAL, "too many");
    cr_assert_eq(tether__channels_check(NULL, 1), TETHER_EINVAL);
    tether_messaging_channel_t twice[] = {{"a", 1}, {"a", 2}};
    cr_assert_eq(tether__channels_check(twice, 2), TETHER_EINVAL);
    tether_messaging_channel_t zero[] = {{"a", 0}};
    cr_assert_eq(tether__channels_check(zero, 1), TETHER_EINVAL);
    tether_messaging_channel_t wider[] = {
        {"a", TETHER_MESSAGING_PARALLELISM_MAX + 1}};
    cr_assert_eq(tether__channels_check(wider, 1), TETHER_EINVAL);
    tether_messaging_channel_t unnamed[] = {{"", 1}};
    cr_assert_eq(tether__channels_check(unnamed, 1), TETHER_EINVAL);
    char longname[MAXATOMLEN_UTF8 + 1];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    tether_messaging_channel_t toolong[] = {{longname, 1}};
    cr_assert_eq(tether__channels_check(toolong, 1), TETHER_EINVAL);

    tether_node_t *node = new_node();
    tether_cluster_config_t bad = {.channels = zero, .nchannels = 1};
    cr_assert_eq(tether_cluster_start(node, &bad), TETHER_EINVAL);
    tether_node_free(node);
}

/* ---- the mailbox ------------------------------------------------------ */

static void env_msg(ei_x_buff *x, const char *from, const char *bytes, long n)
{
    ei_x_new_with_version(x);
    ei_x_encode_tuple_header(x, 5);
    ei_x_encode_atom(x, "tether_channel_env");
    ei_x_encode_atom(x, from);
    ei_x_encode_atom(x, "default");
    ei_x_encode_long(x, 0);
    ei_x_encode_binary(x, bytes, n);
}

Test(channel, parses_its_mailbox)
{
    ei_x_buff x;
    tether_channels_msg_t m;
    env_msg(&x, PEER, "sealed", 6);
    cr_assert_eq(tether__channels_parse(x.buff, (size_t)x.index, &m),
                 TETHER_CHANNELS_MSG_ENV);
    cr_assert_str_eq(m.from, PEER);
    cr_assert_eq(m.len, 6);
    cr_assert_eq(memcmp(m.bytes, "sealed", 6), 0);
    for (int n = 0; n < x.index; n++)
        cr_assert_eq(tether__channels_parse(x.buff, (size_t)n, &m),
                     TETHER_CHANNELS_MSG_BAD, "truncated to %d", n);
    ei_x_free(&x);

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "tether_member");
    ei_x_encode_atom(&x, "down");
    ei_x_encode_atom(&x, PEER);
    cr_assert_eq(tether__channels_parse(x.buff, (size_t)x.index, &m),
                 TETHER_CHANNELS_MSG_MEMBER);
    cr_assert(!m.up);
    ei_x_free(&x);

    const char *bad_shapes[][3] = {
        {"tether_member", "sideways", PEER},
        {"tether_member", "up", "no_host"},
        {"$tether_held", PEER, "not a binary"},
        {"unknown", PEER, PEER},
    };
    for (size_t i = 0; i < sizeof bad_shapes / sizeof bad_shapes[0]; i++) {
        ei_x_new_with_version(&x);
        ei_x_encode_tuple_header(&x, 3);
        for (int j = 0; j < 3; j++)
            ei_x_encode_atom(&x, bad_shapes[i][j]);
        cr_assert_eq(tether__channels_parse(x.buff, (size_t)x.index, &m),
                     TETHER_CHANNELS_MSG_BAD, "shape %zu", i);
        ei_x_free(&x);
    }
    const char garbage[] = "\x83\x68\x05\x64\xff\xff";
    cr_assert_eq(tether__channels_parse(garbage, sizeof garbage - 1, &m),
                 TETHER_CHANNELS_MSG_BAD);
    cr_assert_eq(tether__channels_parse(NULL, 0, &m), TETHER_CHANNELS_MSG_BAD);
}

/* ---- the API on a node that was never started ------------------------- */

static int got;

static void sink(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    int idx = 1;
    long v;
    (void)self;
    (void)arg;
    cr_assert_eq(ei_decode_long(msg->data, &idx, &v), 0);
    got += (int)v;
}

static void event(tether_node_t *node, const char *peer, const char *channel,
                  bool up, void *ctx)
{
    (void)node;
    (void)peer;
    (void)channel;
    (void)up;
    (void)ctx;
}

Test(channel, api_errors_and_local_delivery)
{
    cr_assert_eq(tether_messaging_parallelism(NULL, "default"), TETHER_ECLOSED);
    tether_node_t *node = cluster_node();
    tether_procs_t *procs = tether_node_procs(node);
    cr_assert_eq(tether_messaging_parallelism(node, "default"), 2,
                 "an entry `default` resizes it");
    cr_assert_eq(tether_messaging_parallelism(node, "wide"), 4);
    cr_assert_eq(tether_messaging_parallelism(node, "nope"), TETHER_ENOTFOUND);
    cr_assert_eq(tether_messaging_parallelism(node, NULL), TETHER_ENOTFOUND);

    tether_proc_t *p;
    tether_proc_spec_t spec = {sink, NULL, NULL};
    cr_assert_eq(tether_proc_spawn(procs, &spec, &p), 0);
    cr_assert_eq(tether_proc_register(p, "sink"), 0);

    char msg[16];
    int mlen = 0;
    ei_encode_version(msg, &mlen);
    ei_encode_long(msg, &mlen, 5);
    tether_messaging_opts_t on_wide = {.channel = "wide"};
    cr_assert_eq(tether_messaging_forward_name(node, SELF, "sink", msg,
                                               (size_t)mlen, &on_wide),
                 0);
    (void)tether_procs_run(procs, 0);
    cr_assert_eq(got, 5, "delivered here at once");
    cr_assert_eq(tether_messaging_forward_name(node, SELF, "nobody", msg,
                                               (size_t)mlen, NULL),
                 TETHER_ENOTFOUND);
    tether_messaging_opts_t nope = {.channel = "nope"};
    cr_assert_eq(tether_messaging_forward_name(node, PEER, "sink", msg,
                                               (size_t)mlen, &nope),
                 TETHER_ENOTFOUND, "unknown channel");
    cr_assert_eq(tether_messaging_forward_name(node, PEER, "sink", msg,
                                               (size_t)mlen, NULL),
                 TETHER_ECLOSED, "not a member, no ack");
    cr_assert_eq(tether_messaging_forward_name(node, "no_host", "sink", msg,
                                               (size_t)mlen, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_messaging_forward_name(node, PEER, "sink", msg,
                                               (size_t)mlen - 1, NULL),
                 TETHER_EINVAL, "not one term");
    tether_messaging_opts_t bad_key = {
        .partition_key = "\x83\x61", .partition_key_len = 2, .channel = "wide"};
    cr_assert_eq(tether_messaging_forward_name(node, PEER, "sink", msg,
                                               (size_t)mlen, &bad_key),
                 TETHER_EINVAL, "a truncated key");
    /* With ack a non-member is fine: kept until acknowledged. */
    tether_messaging_opts_t ack = {.ack = true, .channel = "wide"};
    cr_assert_eq(tether_messaging_forward_name(node, PEER, "sink", msg,
                                               (size_t)mlen, &ack),
                 0);

    cr_assert_eq(tether_messaging_on_up(node, NULL, NULL, NULL, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_messaging_on_up(node, "no_host", NULL, event, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_messaging_on_down(node, PEER, "nope", event, NULL),
                 TETHER_ENOTFOUND);
    for (int i = 0; i < TETHER_MESSAGING_CALLBACKS_MAX; i++)
        cr_assert_eq(tether_messaging_on_down(node, PEER, "wide", event, NULL),
                     0);
    cr_assert_eq(tether_messaging_on_up(node, NULL, NULL, event, NULL),
                 TETHER_ETOOBIG);
    tether_node_free(node);
}

Test(channel, mailbox_garbage_is_counted_and_ignored)
{
    tether_node_t *node = cluster_node();
    tether_procs_t *procs = tether_node_procs(node);
    tether_messaging_stats_t s;
    ei_x_buff x;

    const char garbage[] = "\x83\x68\x03\xff\xff";
    tether_procs_reg_send_in(procs, NULL, TETHER_MESSAGING_PROCESS, garbage,
                             sizeof garbage - 1);
    /* Well-formed, but no session with b1: the engine refuses it. */
    env_msg(&x, PEER, "forged", 6);
    tether_procs_reg_send_in(procs, NULL, TETHER_MESSAGING_PROCESS, x.buff,
                             (size_t)x.index);
    ei_x_free(&x);
    /* Held envelopes are opened already: a malformed one is counted. */
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "$tether_held");
    ei_x_encode_atom(&x, PEER);
    ei_x_encode_binary(&x, "\x83\x6a", 2);
    tether_procs_reg_send_in(procs, NULL, TETHER_MESSAGING_PROCESS, x.buff,
                             (size_t)x.index);
    ei_x_free(&x);
    (void)tether_procs_run(procs, 0);
    cr_assert_eq(tether_messaging_stats(node, &s), 0);
    cr_assert_eq(s.malformed, 2);
    cr_assert_eq(s.refused, 1);
    cr_assert_eq(s.delivered, 0);
    tether_node_free(node);
}

/* ---- batches from a peer with a session --------------------------------- */

/* {tether_channel, {data, default, 0, 7, 1, [{1, {m, sink, 7, true}},
 * {2, {m, nobody, 8, true}}]}}, sealed by the peer's engine pe and put
 * in the mailbox of `tether_channel` as the peer's lane sends it. */
static void send_batch(tether_node_t *node, tether_engine_t *pe)
{
    ei_x_buff in, env;
    uint8_t *sealed = NULL;
    size_t slen = 0;
    const char *to[] = {"sink", "nobody"};

    ei_x_new_with_version(&in);
    ei_x_encode_tuple_header(&in, 2);
    ei_x_encode_atom(&in, "tether_channel");
    ei_x_encode_tuple_header(&in, 6);
    ei_x_encode_atom(&in, "data");
    ei_x_encode_atom(&in, "default");
    ei_x_encode_long(&in, 0);
    ei_x_encode_long(&in, 7);
    ei_x_encode_long(&in, 1);
    ei_x_encode_list_header(&in, 2);
    for (int i = 0; i < 2; i++) {
        ei_x_encode_tuple_header(&in, 2);
        ei_x_encode_long(&in, i + 1);
        ei_x_encode_tuple_header(&in, 4);
        ei_x_encode_atom(&in, "m");
        ei_x_encode_atom(&in, to[i]);
        ei_x_encode_long(&in, 7 + i);
        ei_x_encode_boolean(&in, 1);
    }
    ei_x_encode_empty_list(&in);
    cr_assert_eq(tether_engine_seal(pe, SELF, TETHER_MSG_SHELL,
                                    (const uint8_t *)in.buff, (size_t)in.index,
                                    &sealed, &slen),
                 0);
    env_msg(&env, PEER, (const char *)sealed, (long)slen);
    tether_procs_reg_send_in(tether_node_procs(node), NULL,
                             TETHER_MESSAGING_PROCESS, env.buff,
                             (size_t)env.index);
    /* The same envelope again: a replay, refused by the engine. */
    tether_procs_reg_send_in(tether_node_procs(node), NULL,
                             TETHER_MESSAGING_PROCESS, env.buff,
                             (size_t)env.index);
    (void)tether_procs_run(tether_node_procs(node), 0);
    free(sealed);
    ei_x_free(&env);
    ei_x_free(&in);
}

Test(channel, a_peers_batch_is_opened_delivered_once_and_counted)
{
    tether_node_t *node = cluster_node();
    tether_engine_t *pe = NULL;
    tether_messaging_stats_t s;
    tether_proc_t *p;
    tether_proc_spec_t spec = {sink, NULL, NULL};

    cr_assert_eq(
        ep_peer_new(tether__cluster_engine(node), SELF, PEER, "secret", &pe),
        0);
    cr_assert_eq(tether_proc_spawn(tether_node_procs(node), &spec, &p), 0);
    cr_assert_eq(tether_proc_register(p, "sink"), 0);
    got = 0;
    send_batch(node, pe);
    cr_assert_eq(got, 7, "delivered to `sink`");
    cr_assert_eq(tether_messaging_stats(node, &s), 0);
    cr_assert_eq(s.delivered, 1);
    cr_assert_eq(s.noproc, 1, "`nobody` has no process");
    cr_assert_eq(s.refused, 1, "the replayed envelope");
    /* A retransmission (sealed afresh): duplicates, delivered no more. */
    send_batch(node, pe);
    cr_assert_eq(got, 7);
    cr_assert_eq(tether_messaging_stats(node, &s), 0);
    cr_assert_eq(s.duplicates, 2);
    cr_assert_eq(s.delivered, 1);
    tether_engine_free(pe);
    tether_node_free(node);
}
