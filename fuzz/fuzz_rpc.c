/*
 * fuzz_rpc.c: libFuzzer target for the C-node's `tether_rpc:execute/2`
 * (cnode/cluster.c: rpc_execute, rpc_request), the function a BEAM member
 * calls with erpc to run a sealed request on the C-node, reached through
 * the node's function table with tether__call_invoke() (cnode/api.h), as
 * erpc's process would run it.
 *
 * Per input, a node c1@127.0.0.1 is made (never started: no socket) with
 * a cluster (tether_cluster_start: its engine, and execute/2 registered),
 * the C functions fz:echo/1 and fz:raise/1, and the announced C service
 * `svc` (svc:echo/1). The input runs inside one turn of the node's loop.
 * The first byte picks a mode (byte % 4); the rest is the mode's input:
 *
 *   0  args: the bytes are execute/2's argument list as erpc would pass
 *      it (131-prefixed; anything: malformed, wrong arity, not a list).
 *   1  envelope: the arguments are [b1@127.0.0.1, <<Bytes>>], as if the
 *      BEAM member b1 called execute(node(), Envelope) with garbled,
 *      forged or replayed envelope bytes (no session: all are refused).
 *   2  request (only with the cluster engine hook, see below): the bytes
 *      are an engine payload that b1's engine, with a real session to the
 *      node's engine, seals as the Erlang module type (0x20); execute/2
 *      opens it and rpc_request decodes it ({tether_rpc, {call, ReplyTo,
 *      M, F, A}}, {svc_call, ...}, {cast, ...}, {abcast, ...}). A
 *      {sealed, Envelope} answer must open at b1 as one term
 *      {tether_rpc, {reply, ...}}.
 *   3  module path (hook only, as 2): b1's engine sends the bytes as an
 *      ordinary engine message of the Erlang type, the node's engine hands
 *      them to the cluster's opaque module hook (the path of a request a
 *      defer partition held), and the next execute/2 call (with garbage)
 *      starts it from the cluster's queue, outside the engine.
 *
 * Every outcome must be one valid term in execute/2's INNER shapes, and
 * must arrive exactly once. Modes 2 and 3 drive the session of the node's
 * cluster engine with b1 directly through tether__cluster_engine() (the
 * node has no distribution connection, so the engine's own sends go
 * nowhere).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "cnode/api.h"
#include "cnode/cluster.h"
#include "cnode/node.h"
#include "core/engine.h"
#include "tether/tether.h"
#include "tether/term.h"
#include "test/engine_peer.h"

#define SELF          "c1@127.0.0.1"
#define PEER          "b1@127.0.0.1"
#define COOKIE        "fuzzcookie"
#define MSG_ERLANG    TETHER_MSG_SHELL /* cluster.c's MSG_ERLANG */
#define OUTCOME_CALLS 1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One input's run. */
typedef struct fuzz_run {
    const uint8_t *in;
    size_t len;
    int mode;
    int calls;           /* done callbacks seen */
    tether_engine_t *pe; /* b1's engine (mode 2) */
} fuzz_run_t;

static void fz_echo(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    int start = idx;
    char *t;
    (void)argc;
    (void)ctx;
    if (ei_skip_term(args, &idx) < 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return;
    }
    t = malloc((size_t)(idx - start) + 1);
    if (t == NULL) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "system_limit");
        return;
    }
    t[0] = (char)131;
    memcpy(t + 1, args + start, (size_t)(idx - start));
    (void)tether_call_return(call, t, (size_t)(idx - start) + 1);
    free(t);
}

static void fz_raise(tether_call_t *call, const char *args, int idx, int argc,
                     void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    (void)tether_call_raise_atom(call, TETHER_EXIT, "boom");
}

/* Makes b1's engine and a session with the node's; returns it or NULL. */
static tether_engine_t *peer_new(tether_node_t *node)
{
    tether_engine_t *ne = tether__cluster_engine(node), *pe = NULL;

    if (ne == NULL)
        return NULL;
    if (ep_peer_new(ne, SELF, PEER, COOKIE, &pe) == TETHER_EPROTO)
        abort(); /* the in-memory set-up must always work */
    return pe;
}

/* Checks a {sealed, Bin} answer (value of a {return, V} outcome at
 * b[idx]): Bin must open at b1 as {tether_rpc, {reply, ...}}. */
static void check_sealed(fuzz_run_t *r, const char *b, int idx)
{
    char tag[MAXATOMLEN_UTF8];
    const uint8_t *payload = NULL;
    uint8_t *bin, type = 0;
    size_t plen = 0;
    long blen = 0;
    int arity, t, sz, pidx = 0, ver;

    if (r->pe == NULL || ei_decode_tuple_header(b, &idx, &arity) < 0 ||
        arity != 2 || ei_decode_atom(b, &idx, tag) < 0 ||
        strcmp(tag, "sealed") != 0)
        return;
    if (ei_get_type(b, &idx, &t, &sz) < 0 || t != ERL_BINARY_EXT)
        abort();
    bin = malloc(sz > 0 ? (size_t)sz : 1);
    if (bin == NULL)
        return;
    if (ei_decode_binary(b, &idx, bin, &blen) < 0 ||
        tether_engine_open(r->pe, SELF, bin, (size_t)blen, &type, &payload,
                           &plen) != 0 ||
        type != MSG_ERLANG || !tether_term_valid((const char *)payload, plen) ||
        ei_decode_version((const char *)payload, &pidx, &ver) < 0 ||
        ei_decode_tuple_header((const char *)payload, &pidx, &arity) < 0 ||
        arity != 2 || ei_decode_atom((const char *)payload, &pidx, tag) < 0 ||
        strcmp(tag, "tether_rpc") != 0 ||
        ei_decode_tuple_header((const char *)payload, &pidx, &arity) < 0 ||
        arity != 3 || ei_decode_atom((const char *)payload, &pidx, tag) < 0 ||
        strcmp(tag, "reply") != 0)
        abort(); /* the answer is sealed for b1 and well-formed */
    free(bin);
}

/* execute/2's outcome: one term in the INNER shapes, exactly once. */
static void done(tether_node_t *node, void *ctx, const char *term, size_t len)
{
    fuzz_run_t *r = ctx;
    char tag[MAXATOMLEN_UTF8];
    int idx = 0, ver, arity;

    r->calls++;
    if (r->calls > OUTCOME_CALLS || !tether_term_valid(term, len) ||
        ei_decode_version(term, &idx, &ver) < 0 ||
        ei_decode_tuple_header(term, &idx, &arity) < 0 ||
        ei_decode_atom(term, &idx, tag) < 0)
        abort();
    if (strcmp(tag, "return") == 0 && arity == 2)
        check_sealed(r, term, idx);
    else if (!((strcmp(tag, "throw") == 0 && arity == 2) ||
               (strcmp(tag, "exit") == 0 && arity == 2) ||
               (strcmp(tag, "error") == 0 && arity == 3)))
        abort();
    (void)node;
}

/* Builds [b1@127.0.0.1, <<bytes>>] into x. */
static int envelope_args(ei_x_buff *x, const uint8_t *bytes, size_t len)
{
    if (ei_x_new_with_version(x) < 0)
        return -1;
    if (ei_x_encode_list_header(x, 2) < 0 || ei_x_encode_atom(x, PEER) < 0 ||
        ei_x_encode_binary(x, bytes, (long)len) < 0 ||
        ei_x_encode_empty_list(x) < 0) {
        ei_x_free(x);
        return -1;
    }
    return 0;
}

/* Runs one input on the loop thread, then stops the loop. */
static void run_input(tether_node_t *node, void *arg)
{
    fuzz_run_t *r = arg;
    uint8_t *sealed = NULL;
    size_t slen = 0;
    ei_x_buff x;
    int rc;

    if (r->mode == 0) {
        rc = tether__call_invoke(node, "tether_rpc", "execute",
                                 (const char *)r->in, r->len, done, r);
        if (rc < 0 && r->calls != 0)
            abort(); /* a refusal never calls back */
        goto out;
    }
    if (r->mode == 2 && r->len > 0) {
        r->pe = peer_new(node);
        if (r->pe != NULL && tether_engine_seal(r->pe, SELF, MSG_ERLANG, r->in,
                                                r->len, &sealed, &slen) != 0)
            abort(); /* the session is up: sealing cannot fail */
    } else if (r->mode == 3 && r->len > 0) {
        r->pe = peer_new(node);
        if (r->pe != NULL) {
            if (tether_engine_send(r->pe, SELF, MSG_ERLANG, r->in, r->len, 0) !=
                0)
                abort(); /* the session is up: sending cannot fail */
            ep_pump(tether__cluster_engine(node), SELF, r->pe, PEER);
        }
        /* The garbage envelope below runs the cluster's queue. */
    }
    if (sealed != NULL)
        rc = envelope_args(&x, sealed, slen);
    else
        rc = envelope_args(&x, r->in, r->len);
    free(sealed);
    if (rc < 0)
        goto out;
    rc = tether__call_invoke(node, "tether_rpc", "execute", x.buff,
                             (size_t)x.index, done, r);
    ei_x_free(&x);
    if (rc < 0 || r->calls != 1)
        abort(); /* well-formed arguments always get an outcome at once */
out:
    tether_node_stop(node);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tether_node_config_t ncfg = {
        .name = SELF,
        .cookie = COOKIE,
        .log_level = TETHER_LOG_ERROR,
    };
    tether_cluster_config_t ccfg = {.heartbeat_ms = EP_HEARTBEAT_MS,
                                    .ttl_ms = EP_TTL_MS};
    tether_node_t *node = NULL;
    fuzz_run_t r;

    if (size < 1)
        return 0;
    memset(&r, 0, sizeof r);
    r.mode = data[0] % 4;
    r.in = data + 1;
    r.len = size - 1;
    if (tether_node_new(&ncfg, &node, NULL) != 0)
        return 0;
    if (tether_function_register(node, "fz", "echo", 1, fz_echo, NULL) != 0 ||
        tether_function_register(node, "fz", "raise", 1, fz_raise, NULL) != 0 ||
        tether_function_register(node, "svc", "echo", 1, fz_echo, NULL) != 0 ||
        tether_cluster_start(node, &ccfg) != 0 ||
        tether_cluster_service_register(node, "svc", NULL, 0) != 0 ||
        tether_node_post(node, run_input, &r) != 0)
        abort();
    (void)tether_node_run(node);
    tether_engine_free(r.pe);
    tether_node_free(node);
    return 0;
}
