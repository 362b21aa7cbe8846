/*
 * fuzz_service.c: libFuzzer target for the service table module
 * (core/service_table.c, over core/owner_table.c) behind the engine, and
 * for the engine's direct path (tether_engine_seal / tether_engine_open,
 * core/engine.c).
 *
 * Per input, two engines a@fuzz and b@fuzz are made from fixed seeds and a
 * fixed cookie, each with a service table; b joins a over a perfect
 * in-memory link and the pair is pumped (virtual clock, no real time or
 * randomness) until both are members of each other with a session. Each
 * then registers one instance of its own, so b holds a's set and a holds
 * b's. The first input byte picks a mode
 * (byte % 4); the rest is the mode's input:
 *
 *   0  service: the bytes are an ETF payload that a legitimately sends as
 *      a service message (tether_engine_send, TETHER_MSG_SERVICE), so b's
 *      envelope opens it and its table decodes it ({svc_add, ...},
 *      {svc_sync, [...]}, {svc_digest, C, H}, {svc_pull}, ...).
 *   1  open raw: the bytes go to tether_engine_open(b, "a@fuzz", ...), as
 *      if a handed them over on the direct path (hellos, forged, garbled
 *      or replayed envelopes).
 *   2  seal and mutate: the input is [type, pos_lo, pos_hi, xor, payload]:
 *      a seals payload with tether_engine_seal() as message type
 *      0x20 + type % 0xe0; the envelope with one byte changed (at pos,
 *      xor'ed with xor, never 0) must be refused by tether_engine_open()
 *      at b, and the genuine envelope must then open with the same type
 *      and payload. Anything else aborts.
 *   3  sequence: the input is records [len, len bytes]..., each a service
 *      payload sent a -> b and pumped in turn (so add, del, sync and pull
 *      orders are explored, not only single messages).
 *
 * Afterwards the pair keeps running a few digest rounds (so pulls and
 * syncs triggered by the input are exchanged) and both tables must be
 * consistent (foreach, names, lookup and count agree); then the
 * connection drops, after which each table must hold only its own
 * instance, and everything is freed: leaks show up under ASan.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/engine.h"
#include "core/service_table.h"
#include "fuzz_common.h"

#define SEED_BASE  0x50
#define MUTATE_HDR 4   /* type, pos_lo, pos_hi, xor */
#define SEQ_MAX    64  /* records of a sequence input */
#define ETF_MAX    256 /* bytes of the instances registered at set-up */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The established pair and a service table on each engine. */
typedef struct pair {
    fz_pair_t p;
    tether_svctab_t *s[FZ_ENGINES];
} pair_t;

/* fz_attach_fn: a service table on engine i. */
static int attach_table(void *ctx, int i, tether_engine_t *e)
{
    pair_t *p = ctx;
    tether_svctab_config_t scfg;

    tether_svctab_config_default(&scfg);
    scfg.digest_ms = FZ_DIGEST_MS;
    return tether_svctab_new(&scfg, e, &p->s[i]);
}

static void pair_free(pair_t *p)
{
    fz_pair_free(&p->p); /* the tables go with their engines */
    for (int i = 0; i < FZ_ENGINES; i++)
        p->s[i] = NULL;
}

/* Registers engine i's own instance `svc_<i>` with a pid of its node and
 * the meta #{}. Returns 0 or -1. */
static int register_own(pair_t *p, int i)
{
    char name[16] = "svc_a";
    ei_x_buff n, pid, meta;
    erlang_pid ep;
    int rc = -1;

    name[4] = (char)('a' + i);
    memset(&ep, 0, sizeof ep);
    snprintf(ep.node, sizeof ep.node, "%s", FZ_NAMES[i]);
    ep.num = 100 + (unsigned)i;
    ep.creation = 1;
    if (ei_x_new_with_version(&n) < 0)
        return -1;
    if (ei_x_new_with_version(&pid) < 0) {
        ei_x_free(&n);
        return -1;
    }
    if (ei_x_new_with_version(&meta) < 0) {
        ei_x_free(&n);
        ei_x_free(&pid);
        return -1;
    }
    if (ei_x_encode_atom(&n, name) == 0 && ei_x_encode_pid(&pid, &ep) == 0 &&
        ei_x_encode_map_header(&meta, 0) == 0 && n.index <= ETF_MAX &&
        tether_svctab_register(p->s[i], (const uint8_t *)n.buff,
                               (size_t)n.index, (const uint8_t *)pid.buff,
                               (size_t)pid.index, (const uint8_t *)meta.buff,
                               (size_t)meta.index) == 0)
        rc = 0;
    ei_x_free(&n);
    ei_x_free(&pid);
    ei_x_free(&meta);
    return rc;
}

/* Makes the established pair with one own instance registered on each
 * side; returns 0 or -1 (then p is freed). */
static int pair_new(pair_t *p)
{
    if (fz_pair_new(&p->p, SEED_BASE, attach_table, p) != 0) {
        pair_free(p);
        return -1;
    }
    if (register_own(p, 0) != 0 || register_own(p, 1) != 0)
        abort();
    fz_run(&p->p, FZ_SETTLE_MS / 2);
    if (tether_svctab_count(p->s[0]) != 2 || tether_svctab_count(p->s[1]) != 2)
        abort(); /* both tables hold both instances */
    return 0;
}

/* Mode 2: seal, mutate one byte, open both; see the file comment. */
static void seal_mutate(pair_t *p, const uint8_t *in, size_t n)
{
    uint8_t *sealed = NULL, *bad, type, got_type = 0;
    const uint8_t *payload = NULL;
    size_t slen = 0, plen = 0, pos;
    int rc;

    if (n <= MUTATE_HDR)
        return;
    type = (uint8_t)(TETHER_MSG_MODULE_MIN + in[0] % (256 - 0x20));
    if (type == TETHER_MSG_SHELL)
        type = TETHER_MSG_SERVICE; /* opened, never dispatched: any type */
    rc = tether_engine_seal(p->p.e[0], FZ_NAMES[1], type, in + MUTATE_HDR,
                            n - MUTATE_HDR, &sealed, &slen);
    if (rc != 0) {
        if (sealed != NULL)
            abort(); /* nothing is handed out on refusal */
        return;
    }
    if (sealed == NULL || slen <= n - MUTATE_HDR)
        abort();
    bad = malloc(slen);
    if (bad == NULL) {
        free(sealed);
        return;
    }
    memcpy(bad, sealed, slen);
    pos = ((size_t)in[1] | (size_t)in[2] << 8) % slen;
    bad[pos] ^= in[3] ? in[3] : 1;
    rc = tether_engine_open(p->p.e[1], FZ_NAMES[0], bad, slen, &got_type,
                            &payload, &plen);
    if (rc >= 0 || payload != NULL || plen != 0)
        abort(); /* a changed byte must never open */
    /* A forgery refused must not block the genuine envelope. */
    rc = tether_engine_open(p->p.e[1], FZ_NAMES[0], sealed, slen, &got_type,
                            &payload, &plen);
    if (rc != 0 || got_type != type || plen != n - MUTATE_HDR ||
        payload < sealed || payload + plen > sealed + slen ||
        memcmp(payload, in + MUTATE_HDR, plen) != 0)
        abort();
    /* And it opens once only. */
    rc = tether_engine_open(p->p.e[1], FZ_NAMES[0], sealed, slen, &got_type,
                            &payload, &plen);
    if (rc >= 0 || payload != NULL)
        abort();
    free(bad);
    free(sealed);
}

/* Mode 3: length-prefixed service payloads, pumped one after another. */
static void sequence(pair_t *p, const uint8_t *in, size_t n)
{
    size_t off = 0;

    for (int k = 0; k < SEQ_MAX && off < n; k++) {
        size_t len = in[off++];
        if (len == 0 || len > n - off)
            len = n - off;
        if (len == 0)
            break;
        (void)tether_engine_send(p->p.e[0], FZ_NAMES[1], TETHER_MSG_SERVICE,
                                 in + off, len, 0);
        off += len;
        fz_run(&p->p, FZ_TICK_MS);
    }
}

/* Table consistency after the input: every read-only view agrees. */
typedef struct tally {
    const tether_svctab_t *t;
    size_t instances, by_name;
} tally_t;

static void count_inst(void *ctx, const uint8_t *name, size_t nlen,
                       const char *owner, const uint8_t *pid, size_t plen,
                       const uint8_t *meta, size_t mlen)
{
    tally_t *c = ctx;

    if (nlen == 0 || plen == 0 || mlen == 0 || owner == NULL ||
        fz_index_of(owner) < 0 || name == NULL || pid == NULL || meta == NULL)
        abort(); /* only the pair's own names own instances */
    c->instances++;
}

static void count_name(void *ctx, const uint8_t *name, size_t nlen,
                       size_t instances)
{
    tally_t *c = ctx;

    if (instances == 0 ||
        tether_svctab_lookup(c->t, name, nlen, NULL, NULL) != instances)
        abort();
    c->by_name += instances;
}

static void check_table(const tether_svctab_t *t)
{
    tally_t c = {t, 0, 0};

    tether_svctab_foreach(t, count_inst, &c);
    tether_svctab_names(t, count_name, &c);
    if (c.instances != tether_svctab_count(t) || c.by_name != c.instances)
        abort();
    (void)tether_svctab_digest(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pair_t p; /* large (the queue): not on the stack */
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;

    if (size < 1 || pair_new(&p) != 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        if (size > 1)
            (void)tether_engine_send(p.p.e[0], FZ_NAMES[1], TETHER_MSG_SERVICE,
                                     data + 1, size - 1, 0);
        break;
    case 1:
        if (tether_engine_open(p.p.e[1], FZ_NAMES[0], data + 1, size - 1, &type,
                               &payload, &plen) == 0 &&
            (payload < data + 1 || payload + plen > data + size))
            abort(); /* the payload lies inside the input */
        break;
    case 2:
        seal_mutate(&p, data + 1, size - 1);
        break;
    default:
        sequence(&p, data + 1, size - 1);
        break;
    }
    fz_run(&p.p, FZ_AFTER_MS);
    for (int i = 0; i < FZ_ENGINES; i++)
        check_table(p.s[i]);
    fz_pair_cut(&p.p);
    if (tether_svctab_count(p.s[1]) != 1 || tether_svctab_count(p.s[0]) != 1)
        abort(); /* a peer's instances go with its connection */
    pair_free(&p);
    return 0;
}
