/*
 * test/engine_peer.h: a second engine with a session to a node's engine,
 * its bytes handed over directly (header only, static, no Criterion), for
 * the tests and fuzz targets that drive a C-node's cluster engine
 * (tether__cluster_engine) as a BEAM member would: test_cluster.c and
 * fuzz/fuzz_rpc.c.
 */
#ifndef TETHER_TEST_ENGINE_PEER_H
#define TETHER_TEST_ENGINE_PEER_H

#include <stdint.h>
#include <string.h>

#include "core/engine.h"
#include "tether/error.h"

#define EP_PUMP_ROUNDS  64
#define EP_HEARTBEAT_MS 100
#define EP_TTL_MS       500
#define EP_SEED         0x33

/* Moves SEND actions between ne (called ne_name) and pe (called pe_name)
 * until both are quiet or EP_PUMP_ROUNDS pass; other actions are
 * released. */
static inline void ep_pump(tether_engine_t *ne, const char *ne_name,
                           tether_engine_t *pe, const char *pe_name)
{
    for (int round = 0; round < EP_PUMP_ROUNDS; round++) {
        tether_action_t a;
        int any = 0;
        while (tether_engine_next_action(ne, &a)) {
            if (a.kind == TETHER_ACT_SEND && strcmp(a.peer, pe_name) == 0)
                (void)tether_engine_recv(pe, ne_name, a.u.send.bytes.ptr,
                                         a.u.send.bytes.len);
            tether_engine_action_release(&a);
            any = 1;
        }
        while (tether_engine_next_action(pe, &a)) {
            if (a.kind == TETHER_ACT_SEND && strcmp(a.peer, ne_name) == 0)
                (void)tether_engine_recv(ne, pe_name, a.u.send.bytes.ptr,
                                         a.u.send.bytes.len);
            tether_engine_action_release(&a);
            any = 1;
        }
        if (!any)
            return;
    }
}

/* Makes the engine pe_name (cookie, EP_HEARTBEAT_MS, EP_TTL_MS, fixed
 * seed), brings the link to ne up and pumps until both sessions are up.
 * Returns 0 with the new engine in *out (the caller frees it), the
 * engine's own error, or TETHER_EPROTO when no session came up. */
static inline int ep_peer_new(tether_engine_t *ne, const char *ne_name,
                              const char *pe_name, const char *cookie,
                              tether_engine_t **out)
{
    tether_engine_config_t cfg;
    tether_engine_t *pe = NULL;
    int rc;

    *out = NULL;
    tether_engine_config_default(&cfg);
    cfg.name = pe_name;
    cfg.incarnation = 1;
    cfg.heartbeat_ms = EP_HEARTBEAT_MS;
    cfg.ttl_ms = EP_TTL_MS;
    cfg.cookie = (const uint8_t *)cookie;
    cfg.cookie_len = strlen(cookie);
    memset(cfg.seed, EP_SEED, sizeof cfg.seed);
    rc = tether_engine_new(&cfg, &pe);
    if (rc != 0)
        return rc;
    (void)tether_engine_tick(pe, 0);
    (void)tether_engine_peer_up(ne, pe_name);
    (void)tether_engine_peer_up(pe, ne_name);
    ep_pump(ne, ne_name, pe, pe_name);
    if (!tether_engine_session_up(pe, ne_name) ||
        !tether_engine_session_up(ne, pe_name)) {
        tether_engine_free(pe);
        return TETHER_EPROTO;
    }
    *out = pe;
    return 0;
}

#endif /* TETHER_TEST_ENGINE_PEER_H */
