/*
 * cnode/cluster.c: the C-node's cluster process `tether` (see
 * tether/cluster.h), the C twin of the BEAM's tether_server.
 *
 * One C process owns one engine (core/engine.h) and does its I/O on the
 * node's loop thread:
 *   - mailbox: {'$tether', From, Bytes} -> engine recv (a connected node
 *     not yet reported up is reported up first, since its first message
 *     may be handled before the connection event);
 *     {'$tether_restart', From} -> peer down (if up) and up again;
 *     '$gen_call' requests -> the local API; anything else -> bad_input.
 *   - connection events: the runtime's hook (node.h) queues them and
 *     wakes the process with '$tether_wake'; they are applied in order
 *     before the next message.
 *   - time: one node timer at the engine's next deadline, and one for
 *     seed retries (every 3 heartbeats, next seed in turn, until a join
 *     has been answered and we have company, or we left).
 *   - actions: SEND goes out as REG_SEND {'$tether', OurNode, Bytes} to
 *     `tether` on the peer only over an existing connection (dropped
 *     otherwise: the engine retries); CONNECT dials; DELIVER (member
 *     events) is logged at info level.
 *
 * Engine states: RUNNING (joined or alone) -> LEFT (after leave; a later
 * join restarts the engine with a new incarnation and announces the
 * restart, as tether_server does). The process traps exits; if it is
 * killed, its on_exit frees everything and clears the node's hooks.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <sodium.h>

#include "cnode/cluster.h"
#include "cnode/builtins.h"
#include "cnode/node.h"
#include "core/codec.h"
#include "core/engine.h"
#include "tether/term.h"

#define SEED_RETRY_HBS   3 /* heartbeats between seed attempts */
#define EVENTS_INITIAL   16
#define TIMER_MIN_MS     1
#define MEMBERS_LIST_MAX TETHER_ENGINE_PEERS_MAX
#define MEMBER_SUB       1 /* engine subscriber id: member events, logged */

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

typedef struct conn_event {
    bool up;
    name_t peer;
} conn_event_t;

typedef struct cluster {
    tether_node_t *node;
    tether_proc_t *proc;
    erlang_pid pid;
    tether_engine_t *eng;
    uint64_t start_ms; /* monotonic ms at engine time 0 */
    uint64_t last_inc; /* incarnation of the current engine */
    bool timer_on;
    tether_timer_id_t timer;
    uint64_t timer_at;
    bool seed_timer_on;
    tether_timer_id_t seed_timer;
    /* Configuration (copied). */
    uint32_t hb_ms, ttl_ms;
    bool has_secret, has_identity;
    uint8_t secret[TETHER_CLUSTER_KEY_BYTES];
    uint8_t identity[TETHER_CLUSTER_KEY_BYTES];
    tether_cluster_trust_t *trust; /* node names copied into trust_names */
    name_t *trust_names;
    size_t ntrust;
    name_t *seeds;
    size_t nseeds, seed_next;
    /* Peers reported up to the engine. */
    name_t *up;
    size_t nup, capup;
    /* Connection events not applied yet. */
    conn_event_t *evs;
    size_t nev, capev;
    bool wake_pending;
    uint64_t bad_input;
} cluster_t;

#define LOG(node, lvl, ...) tether__node_log((node), (lvl), __VA_ARGS__)

/* ---- parsing ---------------------------------------------------------- */

/* Decodes a node name atom (name@host) at *idx into out. 0 or -1. */
static int decode_node(const char *buf, int *idx, name_t out)
{
    if (tether__etf_decode_name(buf, idx, out) < 0)
        return -1;
    const char *at = strchr(out, '@');
    if (at == NULL || at == out || at[1] == '\0')
        return -1;
    return 0;
}

int tether__cluster_parse(const char *buf, size_t len,
                          tether_cluster_msg_t *out)
{
    int idx = 0, ver, arity, type, size;
    char tag[MAXATOMLEN_UTF8];

    memset(out, 0, sizeof *out);
    out->kind = TETHER_CLUSTER_MSG_BAD;
    if (buf == NULL || len > INT32_MAX || !tether_term_valid(buf, len) ||
        ei_decode_version(buf, &idx, &ver) < 0)
        return out->kind;
    if (ei_get_type(buf, &idx, &type, &size) < 0)
        return out->kind;
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT ||
        type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_UTF8_EXT) {
        if (ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                              NULL) == 0 &&
            strcmp(tag, "$tether_wake") == 0)
            out->kind = TETHER_CLUSTER_MSG_WAKE;
        return out->kind;
    }
    if (ei_decode_tuple_header(buf, &idx, &arity) < 0 || arity < 2 ||
        arity > 3 ||
        ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL, NULL) <
            0)
        return out->kind;
    if (strcmp(tag, "$tether") == 0 && arity == 3) {
        if (decode_node(buf, &idx, out->from) < 0 ||
            ei_get_type(buf, &idx, &type, &size) < 0 ||
            type != ERL_BINARY_EXT || size < 0)
            return out->kind;
        /* BINARY_EXT: tag, 4-byte length, the bytes (bounds checked). */
        out->bytes = (const uint8_t *)buf + idx + 5;
        out->len = (size_t)size;
        out->kind = TETHER_CLUSTER_MSG_DATA;
    } else if (strcmp(tag, "$tether_restart") == 0 && arity == 2) {
        if (decode_node(buf, &idx, out->from) < 0)
            return out->kind;
        out->kind = TETHER_CLUSTER_MSG_RESTART;
    } else if (strcmp(tag, "$gen_call") == 0 && arity == 3) {
        int f = idx, farity;
        erlang_pid pid;
        if (ei_decode_tuple_header(buf, &f, &farity) < 0 || farity != 2 ||
            ei_decode_pid(buf, &f, &pid) < 0 || ei_skip_term(buf, &f) < 0)
            return out->kind;
        out->from_index = idx;
        out->req_index = f;
        out->kind = TETHER_CLUSTER_MSG_CALL;
    } else if (strcmp(tag, "EXIT") == 0 && arity == 3) {
        out->kind = TETHER_CLUSTER_MSG_EXIT;
    }
    return out->kind;
}

/* ---- the up set and events -------------------------------------------- */

static ssize_t up_find(const cluster_t *cl, const char *peer)
{
    for (size_t i = 0; i < cl->nup; i++)
        if (strcmp(cl->up[i], peer) == 0)
            return (ssize_t)i;
    return -1;
}

static void up_remove(cluster_t *cl, size_t i)
{
    cl->nup--;
    if (i != cl->nup)
        memcpy(cl->up[i], cl->up[cl->nup], sizeof(name_t));
}

/* Reports peer up to the engine unless it already was. */
static void peer_up(cluster_t *cl, const char *peer)
{
    if (up_find(cl, peer) >= 0 || strlen(peer) > TETHER_NODE_NAME_MAX)
        return;
    if (cl->nup == cl->capup) {
        size_t cap = cl->capup ? cl->capup * 2 : EVENTS_INITIAL;
        name_t *p = realloc(cl->up, cap * sizeof *p);
        if (p == NULL)
            return; /* retried on the peer's next message */
        cl->up = p;
        cl->capup = cap;
    }
    if (tether_engine_peer_up(cl->eng, peer) < 0)
        return;
    snprintf(cl->up[cl->nup++], sizeof(name_t), "%s", peer);
}

static void peer_down(cluster_t *cl, const char *peer)
{
    ssize_t i = up_find(cl, peer);
    if (i < 0)
        return;
    (void)tether_engine_peer_down(cl->eng, peer);
    up_remove(cl, (size_t)i);
}

/* Reports a connected peer up if it is not yet (see the file comment). */
static void ensure_up(cluster_t *cl, const char *peer)
{
    if (up_find(cl, peer) < 0 && tether__node_connected(cl->node, peer))
        peer_up(cl, peer);
}

/* The runtime's connection hook: queue and wake the process. */
static void on_conn(tether_node_t *node, const char *peer, bool up, void *ctx)
{
    cluster_t *cl = ctx;
    (void)node;
    if (strlen(peer) > TETHER_NODE_NAME_MAX)
        return;
    if (cl->nev == cl->capev) {
        size_t cap = cl->capev ? cl->capev * 2 : EVENTS_INITIAL;
        conn_event_t *p = realloc(cl->evs, cap * sizeof *p);
        if (p == NULL)
            return; /* a lost up is recovered by ensure_up, a down by TTL */
        cl->evs = p;
        cl->capev = cap;
    }
    cl->evs[cl->nev].up = up;
    snprintf(cl->evs[cl->nev].peer, sizeof(name_t), "%s", peer);
    cl->nev++;
    if (!cl->wake_pending) {
        char wake[TETHER_ATOM_TERM_MAX];
        size_t n = tether_term_atom(wake, sizeof wake, "$tether_wake");
        if (n > 0 && tether_procs_send(tether_node_procs(cl->node), NULL,
                                       &cl->pid, wake, n) == 0)
            cl->wake_pending = true;
    }
}

/* ---- time and actions ------------------------------------------------- */

static void run(cluster_t *cl);

static void tick(cluster_t *cl)
{
    uint64_t now = tether_node_now_ms();
    (void)tether_engine_tick(cl->eng,
                             now > cl->start_ms ? now - cl->start_ms : 0);
}

static void on_timer(tether_node_t *node, void *arg)
{
    cluster_t *cl = arg;
    (void)node;
    cl->timer_on = false;
    tick(cl);
    run(cl);
}

/* One timer, at the engine's next deadline. */
static void arm(cluster_t *cl)
{
    uint64_t at = cl->start_ms + tether_engine_next_deadline(cl->eng);
    uint64_t now = tether_node_now_ms();
    if (at < now + TIMER_MIN_MS)
        at = now + TIMER_MIN_MS;
    if (cl->timer_on && cl->timer_at == at)
        return;
    if (cl->timer_on)
        (void)tether_node_timer_cancel(cl->node, cl->timer);
    cl->timer_on = tether_node_timer_add(cl->node, at - now, on_timer, cl,
                                         &cl->timer) == 0;
    cl->timer_at = at;
}

/* Sends {'$tether', OurNode, Bytes} to `tether` on peer, if connected. */
static void send_bytes(cluster_t *cl, const char *peer, const uint8_t *data,
                       size_t len)
{
    ei_x_buff x;
    if (len > INT32_MAX || ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, "$tether") == 0 &&
        tether__etf_encode_name(&x, tether_node_name(cl->node)) == 0 &&
        ei_x_encode_binary(&x, data, (long)len) == 0)
        (void)tether__node_reg_send_noconnect(cl->node, &cl->pid, peer,
                                              TETHER_CLUSTER_PROCESS, x.buff,
                                              (size_t)x.index);
    ei_x_free(&x);
}

/* Logs a member event {tether_member, up | down, Node} (engine ETF). */
static void log_member_event(cluster_t *cl, const uint8_t *data, size_t len)
{
    const char *b = (const char *)data;
    int idx = 0, ver, arity;
    char tag[MAXATOMLEN_UTF8], what[MAXATOMLEN_UTF8];
    name_t who;
    if (len > INT32_MAX || !tether_term_valid(b, len) ||
        ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 ||
        ei_decode_atom(b, &idx, tag) < 0 || ei_decode_atom(b, &idx, what) < 0 ||
        tether__etf_decode_name(b, &idx, who) < 0)
        return;
    LOG(cl->node, TETHER_LOG_INFO, "cluster: member '%s' %s", who, what);
}

/* Carries out every pending action, then arms the timer. */
static void run(cluster_t *cl)
{
    tether_engine_action_t a;
    while (tether_engine_next_action(cl->eng, &a)) {
        switch (a.kind) {
        case TETHER_ACTION_SEND:
            send_bytes(cl, a.peer, a.data, a.len);
            break;
        case TETHER_ACTION_CONNECT:
            if (!tether__node_connected(cl->node, a.peer))
                (void)tether__node_connect(cl->node, a.peer);
            break;
        case TETHER_ACTION_DELIVER:
            log_member_event(cl, a.data, a.len);
            break;
        default:
            break;
        }
        tether_engine_action_release(&a);
    }
    arm(cl);
}

/* Applies the queued connection events in order. */
static void apply_events(cluster_t *cl)
{
    cl->wake_pending = false;
    if (cl->nev == 0)
        return;
    tick(cl);
    for (size_t i = 0; i < cl->nev; i++) {
        if (cl->evs[i].up)
            peer_up(cl, cl->evs[i].peer);
        else
            peer_down(cl, cl->evs[i].peer);
    }
    cl->nev = 0;
    run(cl);
}

/* ---- engine life cycle ------------------------------------------------ */

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void send_restart(tether_node_t *node, const char *peer, void *ctx)
{
    cluster_t *cl = ctx;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "$tether_restart") == 0 &&
        tether__etf_encode_name(&x, tether_node_name(node)) == 0)
        (void)tether__node_reg_send_noconnect(node, &cl->pid, peer,
                                              TETHER_CLUSTER_PROCESS, x.buff,
                                              (size_t)x.index);
    ei_x_free(&x);
}

static void up_each(tether_node_t *node, const char *peer, void *ctx)
{
    (void)node;
    peer_up(ctx, peer);
}

static void seed_retry(cluster_t *cl);

static void on_seed_timer(tether_node_t *node, void *arg)
{
    cluster_t *cl = arg;
    (void)node;
    cl->seed_timer_on = false;
    tick(cl);
    seed_retry(cl);
    run(cl);
}

/* Joins the next seed (in turn, round after round) until a join has
 * been answered and we have company, or we left. */
static void seed_retry(cluster_t *cl)
{
    const char *self = tether_node_name(cl->node);
    const char *m[2];
    if (cl->nseeds == 0 || tether_engine_has_left(cl->eng))
        return;
    if (!tether_engine_join_pending(cl->eng) &&
        tether_engine_members(cl->eng, m, 2) > 1)
        return;
    for (size_t tries = 0; tries < cl->nseeds; tries++) {
        const char *seed = cl->seeds[cl->seed_next];
        cl->seed_next = (cl->seed_next + 1) % cl->nseeds;
        if (strcmp(seed, self) == 0)
            continue;
        (void)tether_engine_join(cl->eng, seed);
        break;
    }
    if (!cl->seed_timer_on)
        cl->seed_timer_on = tether_node_timer_add(
                                cl->node, (uint64_t)SEED_RETRY_HBS * cl->hb_ms,
                                on_seed_timer, cl, &cl->seed_timer) == 0;
}

/*
 * Creates a fresh engine (a new incarnation), announces the restart to
 * every connected node, reports them up and starts on the seeds.
 * Returns 0 or a TETHER_E* code (the old engine, if any, is kept then).
 */
static int engine_start(cluster_t *cl)
{
    tether_engine_config_t cfg;
    tether_engine_t *eng = NULL;
    const tether_node_config_t *ncfg = tether__node_config(cl->node);
    uint64_t inc = realtime_us();
    int rc;

    if (inc <= cl->last_inc)
        inc = cl->last_inc + 1;
    tether_engine_config_default(&cfg);
    cfg.name = tether_node_name(cl->node);
    cfg.incarnation = inc;
    cfg.heartbeat_ms = cl->hb_ms;
    cfg.ttl_ms = cl->ttl_ms;
    randombytes_buf(cfg.seed, sizeof cfg.seed);
    if (cl->has_secret)
        cfg.cluster_secret = cl->secret;
    if (cl->has_identity)
        cfg.identity_seed = cl->identity;
    if (!cl->has_secret && !cl->has_identity) {
        cfg.cookie = (const uint8_t *)ncfg->cookie;
        cfg.cookie_len = strlen(ncfg->cookie);
    }
    rc = tether_engine_new(&cfg, &eng);
    sodium_memzero(cfg.seed, sizeof cfg.seed);
    if (rc < 0)
        return rc;
    rc = tether_engine_subscribe(eng, MEMBER_SUB);
    if (rc < 0) {
        tether_engine_free(eng);
        return rc;
    }
    for (size_t i = 0; i < cl->ntrust; i++) {
        rc = tether_engine_trust_add(eng, cl->trust_names[i],
                                     cl->trust[i].public_key);
        if (rc < 0) {
            LOG(cl->node, TETHER_LOG_ERROR, "cluster: cannot trust '%s': %s",
                cl->trust_names[i], tether_strerror(rc));
            tether_engine_free(eng);
            return rc;
        }
    }
    tether_engine_free(cl->eng);
    cl->eng = eng;
    cl->last_inc = inc;
    cl->nup = 0;
    cl->nev = 0;
    cl->start_ms = tether_node_now_ms();
    tether__node_foreach_peer(cl->node, send_restart, cl);
    tick(cl);
    tether__node_foreach_peer(cl->node, up_each, cl);
    cl->seed_next = 0;
    seed_retry(cl);
    run(cl);
    return 0;
}

/* ---- calls ------------------------------------------------------------ */

static const char *error_atom(int rc)
{
    switch (rc) {
    case TETHER_EINVAL:
        return "invalid";
    case TETHER_ENOMEM:
        return "enomem";
    case TETHER_ENOTFOUND:
        return "not_found";
    case TETHER_ECLOSED:
        return "closed";
    case TETHER_ETOOBIG:
        return "too_big";
    case TETHER_EEXIST:
        return "exists";
    default:
        return "unknown";
    }
}

static int encode_error(ei_x_buff *x, int rc)
{
    return ei_x_encode_tuple_header(x, 2) < 0 ||
                   ei_x_encode_atom(x, "error") < 0 ||
                   ei_x_encode_atom(x, error_atom(rc)) < 0
               ? -1
               : 0;
}

static int encode_ok_or_error(ei_x_buff *x, int rc)
{
    if (rc >= 0)
        return ei_x_encode_atom(x, "ok");
    return encode_error(x, rc);
}

static int encode_names(ei_x_buff *x, char *const *v, size_t n)
{
    if (n > 0 && ei_x_encode_list_header(x, (long)n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (tether__etf_encode_name(x, v[i]) < 0)
            return -1;
    return ei_x_encode_empty_list(x);
}

static int encode_members(cluster_t *cl, ei_x_buff *x)
{
    const char *m[MEMBERS_LIST_MAX];
    size_t n = tether_engine_members(cl->eng, m, MEMBERS_LIST_MAX);
    if (n > MEMBERS_LIST_MAX)
        n = MEMBERS_LIST_MAX;
    return encode_names(x, (char *const *)m, n);
}

static int encode_partitions(cluster_t *cl, ei_x_buff *x)
{
    const tether_partition_table_t *t = tether_engine_partitions(cl->eng);
    if (t->n > 0 && ei_x_encode_list_header(x, (long)t->n) < 0)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        const tether_partition_t *p = &t->v[i];
        if (ei_x_encode_map_header(x, 5) < 0 ||
            ei_x_encode_atom(x, "ref") < 0 ||
            ei_x_encode_tuple_header(x, 2) < 0 ||
            ei_x_encode_atom(x, "tether_partition") < 0 ||
            ei_x_encode_ulonglong(x, p->ref) < 0 ||
            ei_x_encode_atom(x, "mode") < 0 ||
            ei_x_encode_atom(
                x, p->mode == TETHER_PARTITION_DROP ? "drop" : "defer") < 0 ||
            ei_x_encode_atom(x, "healed") < 0 ||
            ei_x_encode_boolean(x, p->healed) < 0 ||
            ei_x_encode_atom(x, "a") < 0 || encode_names(x, p->a, p->na) < 0 ||
            ei_x_encode_atom(x, "b") < 0 || encode_names(x, p->b, p->nb) < 0)
            return -1;
    }
    return ei_x_encode_empty_list(x);
}

static int encode_info(cluster_t *cl, ei_x_buff *x)
{
    const tether_engine_stats_t *st = tether_engine_stats(cl->eng);
    const struct {
        const char *k;
        uint64_t v;
    } stats[] = {
        {"recv", st->recv},
        {"recv_garbage", st->recv_garbage},
        {"recv_rejected", st->recv_rejected},
        {"recv_bad_term", st->recv_bad_term},
        {"recv_unknown", st->recv_unknown},
        {"recv_stale", st->recv_stale},
        {"sent", st->sent},
        {"send_no_session", st->send_no_session},
        {"part_dropped", st->part_dropped},
        {"part_skipped", st->part_skipped},
        {"part_deferred", st->part_deferred},
        {"hellos_sent", st->hellos_sent},
        {"sessions_up", st->sessions_up},
        {"member_events", st->member_events},
        {"ticks", st->ticks},
    };
    size_t ns = sizeof stats / sizeof stats[0];
    if (ei_x_encode_map_header(x, 6) < 0 || ei_x_encode_atom(x, "name") < 0 ||
        tether__etf_encode_name(x, tether_node_name(cl->node)) < 0 ||
        ei_x_encode_atom(x, "incarnation") < 0 ||
        ei_x_encode_ulonglong(x, tether_engine_incarnation(cl->eng)) < 0 ||
        ei_x_encode_atom(x, "left") < 0 ||
        ei_x_encode_boolean(x, tether_engine_has_left(cl->eng)) < 0 ||
        ei_x_encode_atom(x, "join_pending") < 0 ||
        ei_x_encode_boolean(x, tether_engine_join_pending(cl->eng)) < 0 ||
        ei_x_encode_atom(x, "bad_input") < 0 ||
        ei_x_encode_ulonglong(x, cl->bad_input) < 0 ||
        ei_x_encode_atom(x, "stats") < 0 ||
        ei_x_encode_map_header(x, (long)ns) < 0)
        return -1;
    for (size_t i = 0; i < ns; i++)
        if (ei_x_encode_atom(x, stats[i].k) < 0 ||
            ei_x_encode_ulonglong(x, stats[i].v) < 0)
            return -1;
    return 0;
}

/* Frees a heap array of n names. */
static void free_names(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Decodes a proper list of 1..TETHER_PARTITION_GROUP_MAX node atoms. */
static int decode_names(const char *buf, int *idx, char ***out, size_t *n)
{
    int count;
    char **v;
    if (tether__etf_list(buf, idx, &count) < 0 || count <= 0 ||
        count > TETHER_PARTITION_GROUP_MAX)
        return -1;
    v = calloc((size_t)count, sizeof *v);
    if (v == NULL)
        return -1;
    for (int i = 0; i < count; i++) {
        name_t name;
        if (tether__etf_decode_name(buf, idx, name) < 0 ||
            (v[i] = strdup(name)) == NULL) {
            free_names(v, (size_t)i);
            return -1;
        }
    }
    if (tether__etf_list_end(buf, idx, count) < 0) {
        free_names(v, (size_t)count);
        return -1;
    }
    *out = v;
    *n = (size_t)count;
    return 0;
}

/* {partition, A, B, Mode} (header and tag already read). */
static int call_partition(cluster_t *cl, const char *buf, int idx, ei_x_buff *x)
{
    char **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    char mode[MAXATOMLEN_UTF8];
    uint64_t ref = 0;
    int rc = TETHER_EINVAL;

    if (decode_names(buf, &idx, &a, &na) == 0 &&
        decode_names(buf, &idx, &b, &nb) == 0 &&
        ei_decode_atom_as(buf, &idx, mode, sizeof mode, ERLANG_UTF8, NULL,
                          NULL) == 0 &&
        (strcmp(mode, "drop") == 0 || strcmp(mode, "defer") == 0))
        rc = tether_engine_partition(
            cl->eng, (const char *const *)a, na, (const char *const *)b, nb,
            strcmp(mode, "drop") == 0 ? TETHER_PARTITION_DROP
                                      : TETHER_PARTITION_DEFER,
            &ref);
    free_names(a, na);
    free_names(b, nb);
    if (rc < 0)
        return encode_error(x, rc);
    return ei_x_encode_tuple_header(x, 2) < 0 ||
                   ei_x_encode_atom(x, "ok") < 0 ||
                   ei_x_encode_tuple_header(x, 2) < 0 ||
                   ei_x_encode_atom(x, "tether_partition") < 0 ||
                   ei_x_encode_ulonglong(x, ref) < 0
               ? -1
               : 0;
}

/* {heal, {tether_partition, Ref}}. */
static int call_heal(cluster_t *cl, const char *buf, int idx, ei_x_buff *x)
{
    char tag[MAXATOMLEN_UTF8];
    unsigned long long ref;
    int rc = TETHER_ENOTFOUND;
    if (tether__etf_expect_tuple(buf, &idx, 2) == 0 &&
        ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                          NULL) == 0 &&
        strcmp(tag, "tether_partition") == 0 &&
        ei_decode_ulonglong(buf, &idx, &ref) == 0)
        rc = tether_engine_heal(cl->eng, ref);
    return encode_ok_or_error(x, rc);
}

/* Answers one '$gen_call' request (at buf[idx]) into x. */
static int handle_call(cluster_t *cl, const char *buf, int idx, ei_x_buff *x)
{
    char tag[MAXATOMLEN_UTF8];
    int type, size, arity;

    tick(cl);
    if (ei_get_type(buf, &idx, &type, &size) < 0)
        return -1;
    if (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT) {
        if (ei_decode_tuple_header(buf, &idx, &arity) < 0 || arity < 1 ||
            ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                              NULL) < 0)
            return encode_error(x, TETHER_EINVAL);
        if (strcmp(tag, "join") == 0 && arity == 2) {
            name_t node;
            int rc = decode_node(buf, &idx, node) < 0 ? TETHER_EINVAL : 0;
            /* As tether_server: joining ourselves is ok and changes
             * nothing; after a leave, a join starts a new incarnation. */
            if (rc == 0 && strcmp(node, tether_node_name(cl->node)) == 0)
                return encode_ok_or_error(x, 0);
            if (rc == 0 && tether_engine_has_left(cl->eng))
                rc = engine_start(cl);
            if (rc == 0)
                rc = tether_engine_join(cl->eng, node);
            return encode_ok_or_error(x, rc);
        }
        if (strcmp(tag, "partition") == 0 && arity == 4)
            return call_partition(cl, buf, idx, x);
        if (strcmp(tag, "heal") == 0 && arity == 2)
            return call_heal(cl, buf, idx, x);
        return encode_error(x, TETHER_EINVAL);
    }
    if (ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL, NULL) <
        0)
        return encode_error(x, TETHER_EINVAL);
    if (strcmp(tag, "members") == 0)
        return encode_members(cl, x);
    if (strcmp(tag, "leave") == 0) {
        (void)tether_engine_leave(cl->eng);
        cl->nseeds = 0;
        return ei_x_encode_atom(x, "ok");
    }
    if (strcmp(tag, "heal_all") == 0) {
        tether_engine_heal_all(cl->eng);
        return ei_x_encode_atom(x, "ok");
    }
    if (strcmp(tag, "partitions") == 0)
        return encode_partitions(cl, x);
    if (strcmp(tag, "info") == 0)
        return encode_info(cl, x);
    return encode_error(x, TETHER_EINVAL);
}

/* ---- the process ------------------------------------------------------ */

static void handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    cluster_t *cl = arg;
    tether_cluster_msg_t m;

    (void)self;
    apply_events(cl);
    switch (tether__cluster_parse(msg->data, msg->len, &m)) {
    case TETHER_CLUSTER_MSG_DATA:
        tick(cl);
        ensure_up(cl, m.from);
        /* Refused input is counted by the engine; nothing to do here. */
        (void)tether_engine_recv(cl->eng, m.from, m.bytes, m.len);
        run(cl);
        break;
    case TETHER_CLUSTER_MSG_RESTART:
        tick(cl);
        peer_down(cl, m.from);
        ensure_up(cl, m.from);
        run(cl);
        break;
    case TETHER_CLUSTER_MSG_CALL: {
        ei_x_buff x;
        if (ei_x_new_with_version(&x) < 0)
            break;
        if (handle_call(cl, msg->data, m.req_index, &x) == 0)
            (void)tether__gen_reply(cl->proc, msg->data, m.from_index, x.buff,
                                    (size_t)x.index);
        ei_x_free(&x);
        run(cl);
        break;
    }
    case TETHER_CLUSTER_MSG_WAKE:
    case TETHER_CLUSTER_MSG_EXIT:
        break;
    default:
        cl->bad_input++;
        break;
    }
}

static void cluster_free(cluster_t *cl)
{
    if (cl == NULL)
        return;
    tether_engine_free(cl->eng);
    sodium_memzero(cl->secret, sizeof cl->secret);
    sodium_memzero(cl->identity, sizeof cl->identity);
    free(cl->trust);
    free(cl->trust_names);
    free(cl->seeds);
    free(cl->up);
    free(cl->evs);
    free(cl);
}

static void on_exit_fn(tether_proc_t *self, const char *reason,
                       size_t reason_len, void *arg)
{
    cluster_t *cl = arg;
    (void)self;
    (void)reason;
    (void)reason_len;
    if (cl->timer_on)
        (void)tether_node_timer_cancel(cl->node, cl->timer);
    if (cl->seed_timer_on)
        (void)tether_node_timer_cancel(cl->node, cl->seed_timer);
    tether__node_set_conn_hook(cl->node, NULL, NULL);
    if (tether__node_cluster(cl->node) == cl)
        tether__node_set_cluster(cl->node, NULL);
    cluster_free(cl);
}

/* Copies and checks the configuration. */
static int configure(cluster_t *cl, const tether_cluster_config_t *cfg)
{
    uint32_t hb =
        cfg->heartbeat_ms ? cfg->heartbeat_ms : TETHER_CLUSTER_HB_MS_DEFAULT;
    uint32_t ttl = cfg->ttl_ms;
    if (ttl == 0)
        ttl = (uint64_t)hb * 5 > TETHER_CLUSTER_TTL_MS_DEFAULT
                  ? (hb > UINT32_MAX / 5 ? UINT32_MAX : hb * 5)
                  : TETHER_CLUSTER_TTL_MS_DEFAULT;
    if (ttl <= hb || cfg->njoin > TETHER_CLUSTER_SEEDS_MAX ||
        cfg->ntrust > TETHER_CLUSTER_TRUST_MAX ||
        (cfg->njoin > 0 && cfg->join == NULL) ||
        (cfg->ntrust > 0 && cfg->trust == NULL))
        return TETHER_EINVAL;
    cl->hb_ms = hb;
    cl->ttl_ms = ttl;
    if (cfg->cluster_secret) {
        memcpy(cl->secret, cfg->cluster_secret, sizeof cl->secret);
        cl->has_secret = true;
    }
    if (cfg->identity_seed) {
        memcpy(cl->identity, cfg->identity_seed, sizeof cl->identity);
        cl->has_identity = true;
    }
    if (cfg->njoin > 0) {
        cl->seeds = calloc(cfg->njoin, sizeof *cl->seeds);
        if (cl->seeds == NULL)
            return TETHER_ENOMEM;
        for (size_t i = 0; i < cfg->njoin; i++) {
            const char *s = cfg->join[i];
            if (s == NULL || strlen(s) > TETHER_NODE_NAME_MAX ||
                !tether_node_name_valid(s))
                return TETHER_EINVAL;
            snprintf(cl->seeds[i], sizeof(name_t), "%s", s);
        }
        cl->nseeds = cfg->njoin;
    }
    if (cfg->ntrust > 0) {
        cl->trust = calloc(cfg->ntrust, sizeof *cl->trust);
        cl->trust_names = calloc(cfg->ntrust, sizeof *cl->trust_names);
        if (cl->trust == NULL || cl->trust_names == NULL)
            return TETHER_ENOMEM;
        for (size_t i = 0; i < cfg->ntrust; i++) {
            const char *n = cfg->trust[i].node;
            if (n == NULL || strlen(n) > TETHER_NODE_NAME_MAX ||
                !tether_node_name_valid(n))
                return TETHER_EINVAL;
            snprintf(cl->trust_names[i], sizeof(name_t), "%s", n);
            memcpy(cl->trust[i].public_key, cfg->trust[i].public_key,
                   TETHER_CLUSTER_KEY_BYTES);
            cl->trust[i].node = cl->trust_names[i];
        }
        cl->ntrust = cfg->ntrust;
    }
    return 0;
}

int tether_cluster_start(tether_node_t *node,
                         const tether_cluster_config_t *cfg)
{
    tether_procs_t *procs;
    cluster_t *cl;
    int rc;

    if (node == NULL || cfg == NULL)
        return TETHER_EINVAL;
    procs = tether_node_procs(node);
    if (tether__node_cluster(node) != NULL ||
        tether_procs_whereis(procs, TETHER_CLUSTER_PROCESS) != NULL)
        return TETHER_EEXIST;
    if (tether__crypto_init() < 0)
        return TETHER_EIO;
    cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return TETHER_ENOMEM;
    cl->node = node;
    rc = configure(cl, cfg);
    if (rc < 0) {
        cluster_free(cl);
        return rc;
    }
    tether_proc_spec_t spec = {handler, on_exit_fn, cl};
    rc = tether_proc_spawn(procs, &spec, &cl->proc);
    if (rc < 0) {
        cluster_free(cl);
        return rc;
    }
    /* From here the process owns cl: on_exit frees it. */
    cl->pid = *tether_proc_pid(cl->proc);
    (void)tether_proc_trap_exit(cl->proc, true);
    tether__node_set_cluster(node, cl);
    tether__node_set_conn_hook(node, on_conn, cl);
    rc = tether_proc_register(cl->proc, TETHER_CLUSTER_PROCESS);
    if (rc == 0)
        rc = engine_start(cl);
    if (rc < 0) {
        tether_proc_exit(cl->proc, NULL, 0);
        return rc;
    }
    LOG(node, TETHER_LOG_DEBUG, "cluster: started, heartbeat %u ms, ttl %u ms",
        cl->hb_ms, cl->ttl_ms);
    return 0;
}

int tether_cluster_members(tether_node_t *node, const char **out, size_t cap)
{
    cluster_t *cl = node ? tether__node_cluster(node) : NULL;
    if (cl == NULL || cl->eng == NULL)
        return TETHER_ENOTFOUND;
    return (int)tether_engine_members(cl->eng, out, out ? cap : 0);
}

int tether_cluster_is_member(tether_node_t *node, const char *name)
{
    cluster_t *cl = node ? tether__node_cluster(node) : NULL;
    if (cl == NULL || cl->eng == NULL)
        return TETHER_ENOTFOUND;
    return name != NULL && tether_engine_is_member(cl->eng, name) ? 1 : 0;
}

uint64_t tether__cluster_bad_input(const tether_node_t *node)
{
    const cluster_t *cl = node ? tether__node_cluster(node) : NULL;
    return cl ? cl->bad_input : 0;
}

const tether_engine_stats_t *
tether__cluster_engine_stats(const tether_node_t *node)
{
    const cluster_t *cl = node ? tether__node_cluster(node) : NULL;
    return cl && cl->eng ? tether_engine_stats(cl->eng) : NULL;
}
