/*
 * fuzz_maps.c: libFuzzer target for the replicated maps (core/maps.c)
 * behind the engine.
 *
 * Per input, two engines a@fuzz and b@fuzz (fixed seeds and cookie, a
 * maps module each, both hosting the map `m`) join over a perfect
 * in-memory link, and a writes three keys. The input is then records
 * [len, len bytes]..., each an ETF payload that b sends a as a maps
 * message (tether_engine_send, TETHER_MSG_MAPS), so a's envelope opens
 * it and the module decodes it ({map_put, ...}, {map_digest, ...},
 * {map_hashes, ...}, {map_pull, ...}, {map_hosts, ...}: forged entries,
 * stamps, digests, bucket numbers), pumped in turn with a tick between
 * records; b also loads each record as a persisted log record
 * (tether_maps_load: what a torn or forged log file holds).
 *
 * Checked, any violation aborts: every key and value a holds, and every
 * one its `changed` hook is given, is one valid term (the NIF decodes
 * them), a map never holds more live keys than entries, and a's own
 * writes keep working after the records. Then the link drops and
 * everything is freed (leaks show up under ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/maps.h"
#include "fuzz_common.h"

#define SEED_BASE 0x70
#define SEQ_MAX   64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct maps_pair {
    fz_pair_t p;
    tether_maps_t *m[FZ_ENGINES];
    tether_map_t *map[FZ_ENGINES];
} maps_pair_t;

static void changed(void *ctx, tether_map_t *map, const uint8_t *key,
                    size_t klen, const uint8_t *val, size_t vlen)
{
    (void)ctx;
    (void)map;
    if (tether__etf_validate((const char *)key, klen) != 0 ||
        (val && tether__etf_validate((const char *)val, vlen) != 0))
        abort();
}

static int attach(void *ctx, int i, tether_engine_t *e)
{
    maps_pair_t *x = ctx;
    tether_maps_config_t cfg = {.sync_ms = 5 * FZ_HEARTBEAT_MS,
                                .changed = changed};
    const uint8_t name[] = {131, 119, 1, 'm'};
    int rc = tether_maps_new(&cfg, e, &x->m[i]);

    return rc < 0
               ? rc
               : tether_maps_host(x->m[i], name, sizeof name, NULL, &x->map[i]);
}

static void check_entry(void *ctx, const uint8_t *key, size_t klen,
                        const uint8_t *val, size_t vlen)
{
    (void)ctx;
    if (tether__etf_validate((const char *)key, klen) != 0 ||
        tether__etf_validate((const char *)val, vlen) != 0)
        abort();
}

static void check(void *ctx)
{
    maps_pair_t *x = ctx;

    tether_maps_visit(x->map[0], check_entry, NULL);
    if (tether_maps_size(x->map[0]) > tether__maps_entries(x->map[0]))
        abort();
}

/* a writes small integer key k := v. */
static void put(maps_pair_t *x, uint8_t k, uint8_t v)
{
    const uint8_t key[] = {131, 97, k}, val[] = {131, 97, v};

    if (tether_maps_write(x->m[0], x->map[0], key, sizeof key, val, sizeof val,
                          NULL, NULL) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    maps_pair_t x;
    size_t off = 0;
    int records = 0;

    memset(&x, 0, sizeof x);
    if (fz_pair_new(&x.p, SEED_BASE, attach, &x) != 0)
        abort();
    fz_run(&x.p, 5 * FZ_HEARTBEAT_MS);
    for (uint8_t k = 1; k <= 3; k++)
        put(&x, k, k);
    fz_run(&x.p, FZ_TICK_MS);
    while (off < size && records < SEQ_MAX) {
        size_t len = data[off++];
        if (len > size - off)
            len = size - off;
        (void)tether_engine_send(x.p.e[1], FZ_NAMES[0], TETHER_MSG_MAPS,
                                 data + off, len, 0);
        /* The same bytes as a persisted record read back from a log. */
        (void)tether_maps_load(x.map[1], data + off, len);
        off += len;
        records++;
        fz_run(&x.p, FZ_TICK_MS);
        check(&x);
    }
    put(&x, 9, 9);
    {
        const uint8_t key[] = {131, 97, 9};
        const uint8_t *v;
        size_t vlen;
        if (!tether_maps_get(x.map[0], key, sizeof key, &v, &vlen))
            abort(); /* our own write is always the latest here */
    }
    fz_run(&x.p, 10 * FZ_TICK_MS);
    check(&x);
    fz_pair_cut(&x.p);
    fz_pair_free(&x.p); /* the modules go with their engines */
    return 0;
}
