/*
 * cnode/cluster.c: the C-node's cluster process `tether` (see
 * tether/cluster.h), the C twin of the BEAM's tether_server.
 *
 * One C process owns one engine (core/engine.h) and does its I/O on the
 * node's loop thread:
 *   - mailbox: {'$tether', From, Bytes} -> engine recv (a connected node
 *     not yet reported up is reported up first, since its first message
 *     may be handled before the connection event);
 *     '$gen_call' requests -> the local API; anything else -> bad_input.
 *   - connection events: the runtime's hook (node.h) queues them and
 *     wakes the process with '$tether_wake'; they are applied in order
 *     before the next message.
 *   - time: one node timer at the engine's next deadline (the engine
 *     joins the --join seeds itself, in turn, until one answers).
 *   - actions (run(), the one switch over the engine's typed actions):
 *     SEND goes out as REG_SEND {'$tether', OurNode, Bytes} to `tether`
 *     on the peer only over an existing connection (dropped otherwise:
 *     the engine retries); CONNECT dials; MEMBER events are logged at
 *     info level, SERVICE events at debug level; a MESSAGE is a
 *     tether_rpc request (or answer) a defer partition held, started
 *     in order once the actions are drained; REG_LOST logs the lost name
 *     and forgets it.
 *
 * Engine states: RUNNING (joined or alone) -> LEFT (after leave; a later
 * join restarts the engine with a new incarnation, as tether_server
 * does; the engine's restart notice tells the peers). The process traps exits;
 * if it is killed, its on_exit frees everything and clears the node's hooks.
 */
#include <limits.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <sodium.h>

#include "cnode/cluster.h"
#include "cnode/api.h"
#include "cnode/channel.h"
#include "cnode/builtins.h"
#include "cnode/datalog.h"
#include "cnode/internal.h"
#include "cnode/node.h"
#include "cnode/datalog.h"
#include "core/codec.h"
#include "core/election.h"
#include "core/engine.h"
#include "core/maps.h"
#include "core/registry.h"
#include "core/reminders.h"
#include "core/ring.h"
#include "core/service_table.h"
#include "tether/service.h"
#include "tether/term.h"

#define EVENTS_INITIAL   16
#define TIMER_MIN_MS     1
#define MEMBERS_LIST_MAX TETHER_ENGINE_PEERS_MAX
/* The engine message type of the Erlang side's module traffic: terms
 * {Tag, Term}; tether_rpc requests use it. */
#define MSG_ERLANG   TETHER_MSG_SHELL
#define SERVICES_MAX 256 /* services one C-node announces */
#define NAMES_MAX    256 /* names one C-node registers cluster-wide */
#define CANDS_MAX    256 /* names one C-node campaigns for */

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

typedef struct conn_event {
    bool up;
    name_t peer;
} conn_event_t;

/* A service this node announces (tether_cluster_service_register). */
typedef struct announced {
    char name[TETHER_NAME_MAX];
    char *meta; /* 131-prefixed */
    size_t meta_len;
} announced_t;

/* A local process registered in the cluster registry, and the monitor
 * the `tether` process holds on it. */
typedef struct reg_name {
    char name[TETHER_NAME_MAX];
    erlang_pid pid;
    erlang_ref mon;
} reg_name_t;

/* A candidacy of this node (tether_cluster_lead): a local C process, or
 * the `tether` process itself (--lead), which then has no monitor. Kept
 * across engine restarts. A quorum candidacy refused for want of a
 * quorum is kept when it was made at start (`retry`): it campaigns again
 * whenever a member comes up, until the engine takes it. */
typedef struct cand {
    uint8_t *name; /* canonical ETF (core/ring.h) */
    size_t nlen;
    erlang_pid pid;
    erlang_ref mon;
    bool monitored;
    bool active; /* the engine holds it (else it waits to retry) */
    bool retry;
    int64_t priority;
    bool quorum;
    name_t *voters;
    size_t nvoters;
} cand_t;

/* A reminders call waiting for its REMINDER_REPLY (by ref): from an
 * Erlang caller (from) or from C (done for writes, got for reads). */
typedef struct rm_wait {
    uint64_t ref;
    tether_from_t *from;
    tether_cluster_remind_done_fn done;
    tether_cluster_reminder_got_fn got;
    void *ctx;
} rm_wait_t;

/* A tether_rpc request held by a defer partition and delivered by the
 * engine on heal, waiting for run() (outside the engine) to start it. */
typedef struct pending_req {
    struct pending_req *next;
    name_t from;
    size_t len;
    char etf[];
} pending_req_t;

typedef struct tether_cluster {
    tether_node_t *node;
    tether_proc_t *proc;
    erlang_pid pid;
    tether_engine_t *eng;
    uint64_t start_ms; /* monotonic ms at engine time 0 */
    uint64_t last_inc; /* incarnation of the current engine */
    bool timer_on;
    tether_timer_id_t timer;
    uint64_t timer_at;
    /* Configuration (copied). */
    uint32_t hb_ms, ttl_ms, ring_size, lease_ms;
    uint64_t defer_max_bytes;
    bool has_secret, has_identity;
    uint8_t secret[TETHER_CLUSTER_KEY_BYTES];
    uint8_t identity[TETHER_CLUSTER_KEY_BYTES];
    tether_cluster_trust_t *trust; /* node names copied into trust_names */
    name_t *trust_names;
    size_t ntrust;
    name_t *seeds;
    size_t nseeds;
    /* Peers reported up to the engine. */
    name_t *up;
    size_t nup, capup;
    /* Connection events not applied yet. */
    conn_event_t *evs;
    size_t nev, capev;
    bool wake_pending;
    uint64_t bad_input;
    /* The cluster service table (core/service_table.h), the registry and
     * the tether_rpc requests. */
    tether_svctab_t *svc;       /* the service table of eng */
    tether_registry_t *reg;     /* the name registry of eng */
    tether_ring_module_t *ring; /* the cluster ring of eng */
    tether_election_t *el;      /* the election of eng */
    cand_t *cands;              /* CANDS_MAX, allocated at the first */
    size_t ncands;
    bool cands_retry; /* a member came up: retry waiting ones */
    struct {
        tether_cluster_shard_fn fn;
        void *ctx;
    } shard_subs[TETHER_CLUSTER_SHARD_SUBS_MAX];
    reg_name_t names[NAMES_MAX];
    size_t nnames;
    announced_t services[SERVICES_MAX];
    size_t nservices;
    pending_req_t *pending, **pending_tail;
    bool starting;    /* rpc_start_pending is running (answers call run()) */
    unsigned running; /* run() is on the stack (tether__cluster_kick) */
    /* Replicated maps (core/maps.h): the module of eng, and the maps
     * hosted here (canonical names), hosted again by a fresh engine; a
     * persisted one has its log. */
    tether_maps_t *maps;
    struct {
        uint8_t name[TETHER_MAPS_NAME_MAX];
        size_t nlen;
        struct map_log *log; /* NULL: not persisted */
    } hosted[TETHER_CLUSTER_MAPS_MAX];
    size_t nhosted;
    char data_dir[TETHER_CLUSTER_DATA_DIR_MAX + 1]; /* "" until set */
    /* C subscribers of hosted maps (tether_cluster_map_subscribe). */
    struct {
        size_t map; /* index in hosted */
        tether_cluster_map_event_fn fn;
        void *ctx;
    } map_subs[TETHER_CLUSTER_MAP_SUBS_MAX];
    size_t nmap_subs;
    /* Reminders (core/reminders.h): the module of eng, its C
     * subscribers, the calls waiting for an answer, and the log (with a
     * data_dir; rlog_on while it is writable). */
    tether_reminders_t *rm;
    uint32_t rm_replicas;
    struct {
        tether_cluster_reminder_fn fn;
        void *ctx;
    } rm_subs[TETHER_CLUSTER_REMINDER_SUBS_MAX];
    size_t nrm_subs;
    rm_wait_t *rm_waits;
    size_t nrm_waits, caprm_waits;
    uint64_t rm_next_ref;
    char *rm_dir;            /* the data_dir given, or NULL */
    char *rlog_path;         /* DIR/reminders-NODE.log */
    tether_datalog_t *rlog;  /* open once read back */
    bool rlog_on;
} cluster_t;

/* A caller of tether_cluster_map_sync waiting for sequence `seq`. */
typedef struct map_waiter {
    struct map_waiter *next;
    uint64_t seq;
    tether_cluster_map_synced_fn fn;
    void *ctx;
} map_waiter_t;

/*
 * A persisted map's log (cnode/datalog.h). Records are appended on the
 * loop thread as the engine yields them (one write(2) each); fdatasync
 * runs on a worker, one at a time: what is appended while one runs is
 * synced by the next (group commit), and the waiters whose records it
 * covers are called back on the loop. Owned by the cluster; when the
 * cluster goes while a sync runs, the sync's done frees it (cl NULL).
 */
typedef struct map_log {
    cluster_t *cl;
    tether_datalog_t *log;
    bool syncing;
    uint64_t upto; /* what the running sync covers */
    int rc;        /* its result (set on the worker) */
    map_waiter_t *waiters;
} map_log_t;

#define LOG(node, lvl, ...) tether__node_log((node), (lvl), __VA_ARGS__)

/* Persisted maps (with the maps API below). */
static void map_store(cluster_t *cl, const tether_action_t *a);
static void map_event(cluster_t *cl, const tether_action_t *a);
static tether_map_t *map_of(cluster_t *cl, const char *name, size_t len);
static void map_log_load(cluster_t *cl, size_t i, tether_map_t *map);
static void map_log_drop(map_log_t *ml);

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
        arity > 5 ||
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
    } else if (strcmp(tag, "DOWN") == 0 && arity == 5) {
        if (ei_decode_ref(buf, &idx, &out->ref) < 0)
            return out->kind;
        out->kind = TETHER_CLUSTER_MSG_DOWN;
    } else if (strcmp(tag, "$tether_reg_ping") == 0 && arity == 3) {
        out->ref_index = idx;
        if (ei_skip_term(buf, &idx) < 0)
            return out->kind;
        out->ref_end = idx;
        if (decode_node(buf, &idx, out->from) < 0)
            return out->kind;
        out->kind = TETHER_CLUSTER_MSG_REG_PING;
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

static uint64_t realtime_us(void);

/* Passes the time to the engine, and the wall clock with it. */
static void tick(cluster_t *cl)
{
    uint64_t now = tether_node_now_ms();
    (void)tether_engine_tick(cl->eng,
                             now > cl->start_ms ? now - cl->start_ms : 0);
    tether_engine_set_wall(cl->eng, realtime_us() / 1000u);
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

static void rpc_start_pending(cluster_t *cl);
static void rpc_hold(cluster_t *cl, const char *from, const tether_bytes_t *b);
static void name_lost(cluster_t *cl, const tether_bytes_t *name);
static void leader_event(cluster_t *cl, const tether_action_t *a);
static bool cands_retry(cluster_t *cl);
static void cands_stopped(cluster_t *cl);
static void cands_restart(cluster_t *cl);

/* A join through a->peer ended: a refusal or silence is logged. */
static void join_result(cluster_t *cl, const tether_action_t *a)
{
    if (a->u.join.status == TETHER_JOIN_OK)
        LOG(cl->node, TETHER_LOG_INFO, "cluster: joined through '%s'", a->peer);
    else if (a->u.join.status == TETHER_JOIN_REFUSED)
        LOG(cl->node, TETHER_LOG_ERROR,
            "cluster: '%s' refused our join: its %s is %llu, ours %llu",
            a->peer, a->u.join.param, (unsigned long long)a->u.join.theirs,
            (unsigned long long)a->u.join.ours);
}

/* This node gained or lost a shard of the ring: its subscribers hear. */
static void shard_event(cluster_t *cl, const tether_action_t *a)
{
    LOG(cl->node, TETHER_LOG_DEBUG, "cluster: shard %u %s (generation %llu)",
        (unsigned)a->u.shard.shard,
        a->u.shard.acquired ? "acquired" : "released",
        (unsigned long long)a->u.shard.generation);
    for (size_t i = 0; i < TETHER_CLUSTER_SHARD_SUBS_MAX; i++)
        if (cl->shard_subs[i].fn != NULL)
            cl->shard_subs[i].fn(cl->node, a->u.shard.generation,
                                 a->u.shard.shard, a->u.shard.acquired,
                                 cl->shard_subs[i].ctx);
}

static void reminder_event(cluster_t *cl, const tether_action_t *a);
static void rm_flush(cluster_t *cl);
static void rm_compact_maybe(cluster_t *cl);

/* Carries out one action of the engine: the C-node's one place that
 * turns engine output into I/O, logs and state. */
static void act(cluster_t *cl, const tether_action_t *a)
{
    switch (a->kind) {
    case TETHER_ACT_SEND:
        /* A reminder acknowledgement may be among them: what was logged
         * is on disk before anything leaves. */
        rm_flush(cl);
        send_bytes(cl, a->peer, a->u.send.bytes.ptr, a->u.send.bytes.len);
        break;
    case TETHER_ACT_CONNECT:
        if (!tether__node_connected(cl->node, a->peer))
            (void)tether__node_connect(cl->node, a->peer);
        break;
    case TETHER_ACT_MEMBER:
        LOG(cl->node, TETHER_LOG_INFO, "cluster: member '%s' %s", a->peer,
            a->u.member.up ? "up" : "down");
        cl->cands_retry = cl->cands_retry || a->u.member.up;
        tether__channels_member(cl->node, a->peer, a->u.member.up);
        break;
    case TETHER_ACT_MESSAGE:
        /* Held by a defer partition: messaging's go to its process. */
        if (tether__channels_owns((const char *)a->u.message.etf.ptr,
                                  a->u.message.etf.len))
            tether__channels_held(cl->node, a->peer,
                                  (const char *)a->u.message.etf.ptr,
                                  a->u.message.etf.len);
        else
            rpc_hold(cl, a->peer, &a->u.message.etf);
        break;
    case TETHER_ACT_REG_LOST:
        name_lost(cl, &a->u.reg_lost.name);
        break;
    case TETHER_ACT_REG_RESOLVE:
        /* Our names are registered with `notify`: no resolver to run. */
        break;
    case TETHER_ACT_SERVICE:
        LOG(cl->node, TETHER_LOG_DEBUG, "cluster: an instance on '%s' %s",
            a->peer, a->u.service.up ? "came or changed" : "went");
        break;
    case TETHER_ACT_JOIN:
        join_result(cl, a);
        break;
    case TETHER_ACT_SHARD:
        shard_event(cl, a);
        break;
    case TETHER_ACT_LEADER:
        leader_event(cl, a);
        break;
    case TETHER_ACT_MAP:
        map_event(cl, a);
        break;
    case TETHER_ACT_MAP_STORE:
        map_store(cl, a);
        break;
    case TETHER_ACT_REMINDER:
    case TETHER_ACT_REMINDER_REPLY:
    case TETHER_ACT_REMINDER_STORE:
        reminder_event(cl, a);
        break;
    case TETHER_ACT_LOG:
        LOG(cl->node,
            a->u.log.level == TETHER_ACT_LOG_ERROR     ? TETHER_LOG_ERROR
            : a->u.log.level == TETHER_ACT_LOG_WARNING ? TETHER_LOG_WARNING
                                                       : TETHER_LOG_INFO,
            "cluster: %.*s", (int)a->u.log.text.len,
            (const char *)a->u.log.text.ptr);
        break;
    }
}

/* Carries out a batch in order (after making the log durable) and
 * empties it. */
static void run_batch(cluster_t *cl, tether_action_t *batch, size_t *n)
{
    rm_flush(cl);
    for (size_t i = 0; i < *n; i++) {
        act(cl, &batch[i]);
        tether_engine_action_release(&batch[i]);
    }
    *n = 0;
}

/* Carries out every pending action, starting held requests in order as
 * they come, then arms the timer. An answer given at once calls run()
 * again: rpc_start_pending() keeps that from recursing further. Waiting
 * candidacies campaign again once the actions that brought a member up
 * are drained (their own actions are drained in turn). Actions are taken
 * in batches: a batch's reminder records (STORE) are appended to the log
 * as they are taken and made durable with one fdatasync before the batch
 * is carried out, so an acknowledgement never leaves before what it
 * acknowledges is on disk, and a burst of fires costs one sync, not one
 * per record (which kept the loop from its heartbeats). */
static void run(cluster_t *cl)
{
    tether_action_t a, *batch = NULL, *nb;
    size_t n = 0, cap = 0;

    cl->running++;
    for (;;) {
        rpc_start_pending(cl);
        while (tether_engine_next_action(cl->eng, &a)) {
            if (a.kind == TETHER_ACT_REMINDER_STORE) {
                reminder_event(cl, &a);
                tether_engine_action_release(&a);
                continue;
            }
            if (n == cap) {
                nb = realloc(batch, (cap ? cap * 2 : EVENTS_INITIAL) *
                                        sizeof *batch);
                if (nb == NULL) { /* out of memory: no batching */
                    run_batch(cl, batch, &n);
                    rm_flush(cl);
                    act(cl, &a);
                    tether_engine_action_release(&a);
                    continue;
                }
                batch = nb;
                cap = cap ? cap * 2 : EVENTS_INITIAL;
            }
            batch[n++] = a;
        }
        if (n > 0) {
            run_batch(cl, batch, &n);
            continue;
        }
        if (!cands_retry(cl))
            break;
    }
    free(batch);
    rm_flush(cl);
    rm_compact_maybe(cl);
    cl->running--;
    arm(cl);
}

void tether__cluster_kick(tether_node_t *node)
{
    cluster_t *cl = node ? node->cluster : NULL;
    if (cl == NULL || cl->eng == NULL || cl->running > 0)
        return;
    tick(cl);
    run(cl);
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

/* ---- tether_rpc: calls from BEAM members (src/tether_rpc.erl) ------- */

/*
 * A BEAM member calls erpc:call(ThisNode, tether_rpc, execute, [From,
 * Envelope]); Envelope is {tether_rpc, Request} sealed by From's engine:
 *   {call, ReplyTo, M, F, A}          run the C function M:F/length(A)
 *   {svc_call, ReplyTo, Service, F, A} the same for Service:F/length(A)
 *                                     if this node announces Service, else
 *                                     the outcome service_not_available
 *   {cast, M, F, A}                   run it, answer nothing
 *   {abcast, Name, Msg}               Msg to the local registered Name
 * execute/2 answers {sealed, Envelope} ({tether_rpc, {reply, ReplyTo,
 * Outcome}} sealed for From; Outcome as api.h's INNER shapes), deferred
 * (a defer partition holds the request or the answer), {refused, Reason}
 * (the request did not run) or {no_answer, Reason} (it ran, but its
 * answer could not be sealed: a drop partition came in between, say). A request
 * a defer partition held reaches the engine's module hook on heal instead; it
 * runs then and its answer goes back through the engine as an ordinary module
 * message.
 */

static const char *error_atom(int rc);

typedef enum job_kind { JOB_FAST, JOB_DEFERRED, JOB_CAST } job_kind_t;

/* A request whose function runs; freed when its outcome is handled. */
typedef struct rpc_job {
    job_kind_t kind;
    tether_call_t *outer; /* FAST: the erpc call of execute/2 */
    name_t peer;          /* the caller's node */
    size_t alias_len;
    char alias[]; /* ReplyTo, without 131 */
} rpc_job_t;

/* Completes execute/2 with the atom `a`. */
static void outer_atom(tether_call_t *outer, const char *a)
{
    (void)tether_call_return_atom(outer, a);
}

/* Completes execute/2 with {Tag, Reason}: {refused, R} (the request did
 * not run) or {no_answer, R} (it ran; its answer could not be sealed). */
static void outer_tagged(tether_call_t *outer, const char *tag,
                         const char *reason)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0 || ei_x_encode_tuple_header(&x, 2) < 0 ||
        ei_x_encode_atom(&x, tag) < 0 || ei_x_encode_atom(&x, reason) < 0) {
        ei_x_free(&x);
        (void)tether_call_raise_atom(outer, TETHER_ERROR, "system_limit");
        return;
    }
    (void)tether_call_return(outer, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

static void outer_refused(tether_call_t *outer, const char *reason)
{
    outer_tagged(outer, "refused", reason);
}

/* Sends the answer of a finished request: sealed back through execute/2
 * (FAST) or as a module message (DEFERRED). */
static void rpc_answer(tether_node_t *node, rpc_job_t *job, const char *outcome,
                       size_t olen)
{
    cluster_t *cl = node->cluster;
    ei_x_buff x;
    int rc = TETHER_ENOMEM;
    uint8_t *sealed = NULL;
    size_t slen = 0;

    if (ei_x_new_with_version(&x) == 0 &&
        ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "tether_rpc") == 0 &&
        ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, "reply") == 0 &&
        ei_x_append_buf(&x, job->alias, (int)job->alias_len) == 0 &&
        ei_x_append_buf(&x, outcome + 1, (int)(olen - 1)) == 0)
        rc = 0;
    if (rc == 0 && (cl == NULL || cl->eng == NULL))
        rc = TETHER_ECLOSED;
    if (job->kind == JOB_FAST) {
        if (rc == 0)
            rc = tether_engine_seal(cl->eng, job->peer, MSG_ERLANG,
                                    (const uint8_t *)x.buff, (size_t)x.index,
                                    &sealed, &slen);
        if (rc == 0) {
            ei_x_buff r;
            if (ei_x_new_with_version(&r) == 0 &&
                ei_x_encode_tuple_header(&r, 2) == 0 &&
                ei_x_encode_atom(&r, "sealed") == 0 &&
                ei_x_encode_binary(&r, sealed, (long)slen) == 0)
                (void)tether_call_return(job->outer, r.buff, (size_t)r.index);
            else
                outer_tagged(job->outer, "no_answer", "enomem");
            ei_x_free(&r);
        } else if (rc == TETHER_EAGAIN) {
            outer_atom(job->outer, "deferred");
        } else {
            outer_tagged(job->outer, "no_answer", error_atom(rc));
        }
        free(sealed);
    } else if (rc == 0) {
        /* Refused sends are counted by the engine (nodedown: the caller
         * times out or sees the connection go). */
        (void)tether_engine_send(cl->eng, job->peer, MSG_ERLANG,
                                 (const uint8_t *)x.buff, (size_t)x.index, 0);
        run(cl);
    }
    ei_x_free(&x);
}

/* The outcome of a request's function (tether__call_invoke's callback). */
static void rpc_done(tether_node_t *node, void *ctx, const char *outcome,
                     size_t len)
{
    rpc_job_t *job = ctx;
    if (job->kind != JOB_CAST)
        rpc_answer(node, job, outcome, len);
    free(job);
}

static rpc_job_t *job_new(job_kind_t kind, tether_call_t *outer,
                          const char *peer, const char *alias, size_t alias_len)
{
    rpc_job_t *job = calloc(1, sizeof *job + alias_len);
    if (job == NULL)
        return NULL;
    job->kind = kind;
    job->outer = outer;
    snprintf(job->peer, sizeof job->peer, "%s", peer);
    if (alias_len > 0)
        memcpy(job->alias, alias, alias_len);
    job->alias_len = alias_len;
    return job;
}

/* Skips one term at b[*idx]; its bytes are b[start, *idx). 0 or -1. */
static int term_range(const char *b, int *idx, int *start)
{
    *start = *idx;
    return ei_skip_term(b, idx);
}

/* Skips an argument list (proper list, [] or string) at b[*idx]; its
 * bytes are b[start, *idx). 0 or -1. */
static int args_range(const char *b, int *idx, int *start)
{
    int t, sz;
    if (ei_get_type(b, idx, &t, &sz) < 0 ||
        (t != ERL_LIST_EXT && t != ERL_NIL_EXT && t != ERL_STRING_EXT))
        return -1;
    return term_range(b, idx, start);
}

/* Copies b[start, end) behind a version byte into a fresh buffer. */
static char *with_version(const char *b, int start, int end, size_t *len)
{
    char *t = malloc((size_t)(end - start) + 1);
    if (t == NULL)
        return NULL;
    t[0] = (char)131;
    memcpy(t + 1, b + start, (size_t)(end - start));
    *len = (size_t)(end - start) + 1;
    return t;
}

/* 1 if this node announces the service named by the atom `name` (the
 * table's key is the canonical encoding ei writes, as the NIF's). */
static int announces(cluster_t *cl, const char *name)
{
    ei_x_buff n;
    int rc = TETHER_ENOMEM;
    if (cl->svc == NULL || ei_x_new_with_version(&n) < 0)
        return 0;
    if (ei_x_encode_atom(&n, name) == 0)
        rc = tether_svctab_local(cl->svc, (const uint8_t *)n.buff,
                                 (size_t)n.index, NULL, NULL);
    ei_x_free(&n);
    return rc == 0;
}

/* Runs M:F(Args) for a request (M, F and the args list at b[idx...]). */
static int rpc_invoke(cluster_t *cl, rpc_job_t *job, const char *m,
                      const char *f, const char *b, int a0, int a1)
{
    size_t alen;
    char *args = with_version(b, a0, a1, &alen);
    int rc;
    if (args == NULL)
        return TETHER_ENOMEM;
    rc = tether__call_invoke(cl->node, m, f, args, alen, rpc_done, job);
    free(args);
    return rc;
}

/*
 * Starts one opened request (b: len authenticated bytes, checked here,
 * that should hold {tether_rpc, Request}). outer is execute/2's call
 * (FAST) or NULL (the deferred path).
 * Returns 0 when the request was taken (outer is then completed, at once
 * or later), or -1 for a malformed request (outer not completed).
 */
static int rpc_request(cluster_t *cl, const char *from, const char *b,
                       size_t len, tether_call_t *outer)
{
    char tag[MAXATOMLEN_UTF8], m[MAXATOMLEN_UTF8], f[MAXATOMLEN_UTF8];
    int idx = 0, ver, arity, a0 = 0, a1, r0 = 0, r1, s0 = 0;
    job_kind_t kind = outer ? JOB_FAST : JOB_DEFERRED;
    rpc_job_t *job;

    if (!tether_term_valid(b, len) || ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 ||
        ei_decode_atom(b, &idx, tag) < 0 || strcmp(tag, "tether_rpc") != 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 ||
        ei_decode_atom(b, &idx, tag) < 0)
        return -1;
    if (strcmp(tag, "call") == 0 && arity == 5) {
        if (term_range(b, &idx, &r0) < 0)
            return -1;
        r1 = idx;
        if (ei_decode_atom(b, &idx, m) < 0 || ei_decode_atom(b, &idx, f) < 0 ||
            args_range(b, &idx, &a0) < 0)
            return -1;
        a1 = idx;
    } else if (strcmp(tag, "svc_call") == 0 && arity == 5) {
        if (term_range(b, &idx, &r0) < 0)
            return -1;
        r1 = idx;
        if (term_range(b, &idx, &s0) < 0 || ei_decode_atom(b, &idx, f) < 0 ||
            args_range(b, &idx, &a0) < 0)
            return -1;
        a1 = idx;
        int si = s0;
        if (ei_decode_atom(b, &si, m) < 0 || !announces(cl, m)) {
            /* Not ours (or not a C service name): the caller tries the
             * next instance. */
            char na[TETHER_ATOM_TERM_MAX];
            size_t nl =
                tether_term_atom(na, sizeof na, "service_not_available");
            job = job_new(kind, outer, from, b + r0, (size_t)(r1 - r0));
            if (job == NULL)
                goto nomem;
            rpc_done(cl->node, job, na, nl);
            return 0;
        }
    } else if (strcmp(tag, "cast") == 0 && arity == 4) {
        if (ei_decode_atom(b, &idx, m) < 0 || ei_decode_atom(b, &idx, f) < 0 ||
            args_range(b, &idx, &a0) < 0)
            return -1;
        a1 = idx;
        job = job_new(JOB_CAST, NULL, from, NULL, 0);
        if (job == NULL)
            goto nomem;
        if (rpc_invoke(cl, job, m, f, b, a0, a1) < 0)
            free(job);
        if (outer)
            outer_refused(outer, "no_reply");
        return 0;
    } else if (strcmp(tag, "abcast") == 0 && arity == 3) {
        int m0;
        size_t mlen;
        if (ei_decode_atom(b, &idx, m) < 0 || term_range(b, &idx, &m0) < 0)
            return -1;
        char *msg = with_version(b, m0, idx, &mlen);
        if (msg != NULL)
            (void)tether_send_name(cl->node, m, NULL, msg, mlen);
        free(msg);
        if (outer)
            outer_refused(outer, "no_reply");
        return 0;
    } else {
        return -1;
    }
    job = job_new(kind, outer, from, b + r0, (size_t)(r1 - r0));
    if (job == NULL)
        goto nomem;
    if (rpc_invoke(cl, job, m, f, b, a0, a1) < 0) {
        free(job);
        return -1;
    }
    return 0;
nomem:
    if (outer)
        outer_refused(outer, "enomem");
    return 0;
}

/* tether_rpc:execute(From, Envelope), the fast path (see above). */
static void rpc_execute(tether_call_t *call, const char *args, int index,
                        int argc, void *ctx)
{
    tether_node_t *node = tether_call_node(call);
    cluster_t *cl = node->cluster;
    name_t from;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0, *bytes = NULL;
    long blen = 0;
    int t, sz, rc;

    (void)ctx;
    (void)argc;
    if (tether__etf_decode_name(args, &index, from) < 0 ||
        ei_get_type(args, &index, &t, &sz) < 0 || t != ERL_BINARY_EXT ||
        (bytes = malloc(sz > 0 ? (size_t)sz : 1)) == NULL ||
        ei_decode_binary(args, &index, bytes, &blen) < 0) {
        free(bytes);
        if (cl)
            cl->bad_input++;
        outer_refused(call, "badarg");
        return;
    }
    if (cl == NULL || cl->eng == NULL) {
        free(bytes);
        outer_refused(call, "not_distributed");
        return;
    }
    tick(cl);
    ensure_up(cl, from);
    rc = tether_engine_open(cl->eng, from, bytes, (size_t)blen, &type, &payload,
                            &plen);
    if (rc == TETHER_EAGAIN)
        outer_atom(call, "deferred");
    else if (rc < 0)
        outer_refused(call, error_atom(rc));
    else if (type != MSG_ERLANG ||
             rpc_request(cl, from, (const char *)payload, plen, call) < 0) {
        cl->bad_input++;
        outer_refused(call, "badarg");
    }
    free(bytes);
    run(cl);
}

/* A MESSAGE action: a request (or an answer) that a defer partition
 * held. Queued for rpc_start_pending(); rpc_request() checks the bytes
 * with tether_term_valid() (any nesting ei handles, funs included)
 * before decoding them. */
static void rpc_hold(cluster_t *cl, const char *from, const tether_bytes_t *b)
{
    pending_req_t *p = malloc(sizeof *p + b->len);
    if (p == NULL)
        return;
    p->next = NULL;
    snprintf(p->from, sizeof p->from, "%s", from);
    p->len = b->len;
    memcpy(p->etf, b->ptr, b->len);
    *cl->pending_tail = p;
    cl->pending_tail = &p->next;
}

/* Starts the held requests in order. An answer given at once calls run(),
 * which calls this again: the flag keeps that from recursing once per
 * request (a heal may release a whole defer queue). */
static void rpc_start_pending(cluster_t *cl)
{
    if (cl->starting)
        return;
    cl->starting = true;
    while (cl->pending != NULL) {
        pending_req_t *p = cl->pending;
        cl->pending = p->next;
        if (cl->pending == NULL)
            cl->pending_tail = &cl->pending;
        /* Answers ({reply, ...}) are for callers on BEAM nodes only. */
        if (rpc_request(cl, p->from, p->etf, p->len, NULL) < 0)
            cl->bad_input++;
        free(p);
    }
    cl->starting = false;
}

static void pending_clear(cluster_t *cl)
{
    while (cl->pending != NULL) {
        pending_req_t *p = cl->pending;
        cl->pending = p->next;
        free(p);
    }
    cl->pending_tail = &cl->pending;
}

/* ---- services --------------------------------------------------------- */

/* The pid an announced service is registered with: its registered C
 * process if there is one, else the `tether` process. */
static int service_pid(cluster_t *cl, const char *name, ei_x_buff *x)
{
    tether_proc_t *p = tether_procs_whereis(tether_node_procs(cl->node), name);
    const erlang_pid *pid = p ? tether_proc_pid(p) : &cl->pid;
    return ei_x_encode_pid(x, pid);
}

/* Puts one announced service into the engine's table. */
static int service_put(cluster_t *cl, const announced_t *a)
{
    ei_x_buff n, pid;
    int rc = TETHER_ENOMEM;
    if (cl->svc == NULL)
        return TETHER_ENOTFOUND;
    if (ei_x_new_with_version(&n) < 0)
        return TETHER_ENOMEM;
    if (ei_x_new_with_version(&pid) < 0) {
        ei_x_free(&n);
        return TETHER_ENOMEM;
    }
    if (ei_x_encode_atom(&n, a->name) == 0 &&
        service_pid(cl, a->name, &pid) == 0)
        rc = tether_svctab_register(cl->svc, (const uint8_t *)n.buff,
                                    (size_t)n.index, (const uint8_t *)pid.buff,
                                    (size_t)pid.index, (const uint8_t *)a->meta,
                                    a->meta_len);
    ei_x_free(&n);
    ei_x_free(&pid);
    return rc;
}

/* ---- names in the cluster registry (core/registry.h) ----------------- */

/* Puts one name of a local process into the registry (as the NIF keys
 * names: ei's atom encoding, which is the NIF's canonical one). */
static int name_put(cluster_t *cl, const reg_name_t *n)
{
    ei_x_buff k, pid;
    int rc = TETHER_ENOMEM;
    if (cl->reg == NULL)
        return TETHER_ENOTFOUND;
    if (ei_x_new_with_version(&k) < 0)
        return TETHER_ENOMEM;
    if (ei_x_new_with_version(&pid) < 0) {
        ei_x_free(&k);
        return TETHER_ENOMEM;
    }
    if (ei_x_encode_atom(&k, n->name) == 0 &&
        ei_x_encode_pid(&pid, &n->pid) == 0)
        rc = tether_registry_register(
            cl->reg, (const uint8_t *)k.buff, (size_t)k.index,
            (const uint8_t *)pid.buff, (size_t)pid.index, TETHER_REG_NOTIFY,
            realtime_us() / 1000u);
    ei_x_free(&k);
    ei_x_free(&pid);
    return rc;
}

/* Takes name i out of our list, and drops our monitor of its process
 * unless that monitor has fired. */
static void name_forget(cluster_t *cl, size_t i, bool monitored)
{
    if (monitored && tether_proc_demonitor(cl->proc, &cl->names[i].mon) < 0)
        LOG(cl->node, TETHER_LOG_DEBUG, "cluster: no monitor of '%s' held",
            cl->names[i].name);
    cl->names[i] = cl->names[--cl->nnames];
}

/* Takes name i out of the registry and of our list (its process exited:
 * the monitor has fired). */
static void name_drop(cluster_t *cl, size_t i)
{
    ei_x_buff k;
    if (cl->reg != NULL && ei_x_new_with_version(&k) == 0) {
        /* Already gone (lost a conflict): nothing more to remove. */
        if (ei_x_encode_atom(&k, cl->names[i].name) == 0 &&
            tether_registry_unregister(cl->reg, (const uint8_t *)k.buff,
                                       (size_t)k.index) < 0)
            LOG(cl->node, TETHER_LOG_DEBUG, "cluster: name '%s' was not held",
                cl->names[i].name);
        ei_x_free(&k);
    }
    name_forget(cl, i, false);
}

/*
 * tether:sync/0 on a BEAM member pings every member's `tether` process:
 * {'$tether_reg_ping', Ref, From}. The answer {'$tether_reg_pong', Ref,
 * OurNode} goes out after every engine message we sent before it (one
 * connection, in order), which is what sync waits for.
 */
static void reg_ping(cluster_t *cl, const char *buf,
                     const tether_cluster_msg_t *m)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, "$tether_reg_pong") == 0 &&
        ei_x_append_buf(&x, buf + m->ref_index, m->ref_end - m->ref_index) ==
            0 &&
        tether__etf_encode_name(&x, tether_node_name(cl->node)) == 0)
        (void)tether__node_reg_send_noconnect(cl->node, &cl->pid, m->from,
                                              TETHER_CLUSTER_PROCESS, x.buff,
                                              (size_t)x.index);
    ei_x_free(&x);
}

/* A monitored registrant went down: its name leaves the registry. A
 * DOWN of another monitor is ignored. */
static void names_down(cluster_t *cl, const erlang_ref *ref)
{
    for (size_t i = 0; i < cl->nnames; i++)
        if (ei_cmp_refs(&cl->names[i].mon, (erlang_ref *)ref) == 0) {
            LOG(cl->node, TETHER_LOG_DEBUG,
                "cluster: '%s' exited; its name leaves the registry",
                cl->names[i].name);
            name_drop(cl, i);
            run(cl);
            return;
        }
}

/* Our registration of name (its ETF: an atom, as name_put made it) lost
 * a conflict and the engine removed it: log it and forget the name. */
static void name_lost(cluster_t *cl, const tether_bytes_t *etf)
{
    const char *b = (const char *)etf->ptr;
    char name[MAXATOMLEN_UTF8];
    int idx = 0, ver;
    if (etf->len > INT32_MAX || !tether_term_valid(b, etf->len) ||
        ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_atom(b, &idx, name) < 0)
        return;
    LOG(cl->node, TETHER_LOG_WARNING,
        "cluster: the name '%s' lost a conflict after a heal", name);
    for (size_t i = 0; i < cl->nnames; i++)
        if (strcmp(cl->names[i].name, name) == 0) {
            name_forget(cl, i, true);
            break;
        }
}

/* ---- engine life cycle ------------------------------------------------ */

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void up_each(tether_node_t *node, const char *peer, void *ctx)
{
    (void)node;
    peer_up(ctx, peer);
}

/*
 * Creates a fresh engine (a new incarnation, with the seeds to join),
 * reports every connected node up (the engine's restart notice tells
 * them) and puts our names and services in. Returns 0 or a TETHER_E*
 * code (the old engine, if any, is kept then).
 */
static int rm_new(cluster_t *cl, tether_ring_module_t *ring,
                  tether_engine_t *eng, tether_reminders_t **out);
static void rm_stopped(cluster_t *cl);
static void rm_started(cluster_t *cl);

static int engine_start(cluster_t *cl)
{
    tether_engine_config_t cfg;
    tether_engine_t *eng = NULL;
    const tether_node_config_t *ncfg = tether__node_config(cl->node);
    const char *seeds[TETHER_ENGINE_SEEDS_MAX];
    uint64_t inc = realtime_us();
    int rc;

    if (inc <= cl->last_inc)
        inc = cl->last_inc + 1;
    tether_engine_config_default(&cfg);
    cfg.name = tether_node_name(cl->node);
    cfg.incarnation = inc;
    cfg.heartbeat_ms = cl->hb_ms;
    cfg.ttl_ms = cl->ttl_ms;
    cfg.defer_max_bytes = (size_t)cl->defer_max_bytes;
    for (size_t i = 0; i < cl->nseeds && i < TETHER_ENGINE_SEEDS_MAX; i++)
        seeds[i] = cl->seeds[i];
    cfg.seeds = seeds;
    cfg.nseeds = cl->nseeds < TETHER_ENGINE_SEEDS_MAX ? cl->nseeds
                                                      : TETHER_ENGINE_SEEDS_MAX;
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
    /* The service table and the registry are modules of eng: they go
     * with it. */
    tether_svctab_t *svc = NULL;
    tether_svctab_config_t scfg;
    tether_svctab_config_default(&scfg);
    rc = tether_svctab_new(&scfg, eng, &svc);
    tether_registry_t *reg = NULL;
    tether_registry_config_t rcfg;
    tether_registry_config_default(&rcfg);
    if (rc == 0)
        rc = tether_registry_new(&rcfg, eng, &reg);
    tether_ring_module_t *ring = NULL;
    tether_ring_config_t ring_cfg = {.shards = cl->ring_size};
    if (rc == 0)
        rc = tether_ring_module_new(&ring_cfg, eng, &ring);
    /* One thread runs the engine and reads the election: no lock hooks.
     * Its round is the heartbeat, as on the BEAM. */
    tether_election_t *el = NULL;
    tether_election_config_t el_cfg = {.lease_ms = cl->lease_ms,
                                       .round_ms = cl->hb_ms};
    if (rc == 0)
        rc = tether_election_new(&el_cfg, eng, &el);
    /* The maps: one thread reads and writes them, no lock hooks. */
    tether_maps_t *maps = NULL;
    tether_maps_config_t mcfg = {.sync_ms = 0};
    if (rc == 0)
        rc = tether_maps_new(&mcfg, eng, &maps);
    for (size_t i = 0; rc == 0 && i < cl->nhosted; i++) {
        tether_map_opts_t mopts = {.persist = cl->hosted[i].log != NULL};
        tether_map_t *map = NULL;
        rc = tether_maps_host(maps, cl->hosted[i].name, cl->hosted[i].nlen,
                              &mopts, &map);
        if (rc == 0 && cl->hosted[i].log != NULL)
            map_log_load(cl, i, map); /* a fresh engine: read it again */
        for (size_t k = 0; rc == 0 && k < cl->nmap_subs; k++)
            if (cl->map_subs[k].map == i)
                tether_maps_set_notify(map, 1);
    }
    tether_reminders_t *rm = NULL;
    if (rc == 0)
        rc = rm_new(cl, ring, eng, &rm);
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
    cands_stopped(cl);
    rm_stopped(cl);
    tether_engine_free(cl->eng);
    pending_clear(cl);
    cl->eng = eng;
    cl->svc = svc;
    cl->reg = reg;
    cl->ring = ring;
    cl->el = el;
    cl->maps = maps;
    cl->rm = rm;
    cl->last_inc = inc;
    cl->nup = 0;
    cl->nev = 0;
    cl->start_ms = tether_node_now_ms();
    tick(cl);
    tether__node_foreach_peer(cl->node, up_each, cl);
    for (size_t i = 0; i < cl->nnames; i++)
        if ((rc = name_put(cl, &cl->names[i])) < 0)
            LOG(cl->node, TETHER_LOG_ERROR, "cluster: name '%s': %s",
                cl->names[i].name, tether_strerror(rc));
    for (size_t i = 0; i < cl->nservices; i++)
        if ((rc = service_put(cl, &cl->services[i])) < 0)
            LOG(cl->node, TETHER_LOG_ERROR, "cluster: service '%s': %s",
                cl->services[i].name, tether_strerror(rc));
    cands_restart(cl);
    rm_started(cl);
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
    tether_engine_stat_t stats[TETHER_ENGINE_STATS_N];
    size_t ns = TETHER_ENGINE_STATS_N;

    tether_engine_stats_list(tether_engine_stats(cl->eng), stats);
    if (ei_x_encode_map_header(x, 7) < 0 ||
        ei_x_encode_atom(x, "registry") < 0 ||
        ei_x_encode_map_header(x, 2) < 0 || ei_x_encode_atom(x, "count") < 0 ||
        ei_x_encode_ulonglong(x, cl->reg ? tether_registry_count(cl->reg) : 0) <
            0 ||
        ei_x_encode_atom(x, "digest") < 0 ||
        ei_x_encode_ulonglong(x, cl->reg ? tether_registry_digest(cl->reg)
                                         : 0) < 0 ||
        ei_x_encode_atom(x, "name") < 0 ||
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
        if (ei_x_encode_atom(x, stats[i].name) < 0 ||
            ei_x_encode_ulonglong(x, stats[i].value) < 0)
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
/* The ring hash of the term at buf[*idx] (advanced past it). */
static int key_at(const char *buf, int *idx, uint64_t *h)
{
    int start = *idx, rc;
    char *etf;

    if (ei_skip_term(buf, idx) < 0)
        return TETHER_EINVAL;
    etf = malloc((size_t)(*idx - start) + 1);
    if (etf == NULL)
        return TETHER_ENOMEM;
    etf[0] = (char)TETHER_ETF_VERSION;
    memcpy(etf + 1, buf + start, (size_t)(*idx - start));
    rc = tether_ring_hash_term((const uint8_t *)etf, (size_t)(*idx - start) + 1,
                               h);
    free(etf);
    return rc;
}

/* A list of up to n owners of shard, as atoms. */
static int encode_owners(cluster_t *cl, uint32_t shard, unsigned long n,
                         ei_x_buff *x)
{
    const tether_ring_t *r = tether_ring_module_table(cl->ring);
    size_t members = tether_ring_members(r, NULL, 0), got;
    const char **v;
    int rc;

    if (n > members)
        n = members;
    v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL)
        return encode_error(x, TETHER_ENOMEM);
    got = tether_ring_owners(r, shard, n, v);
    rc = encode_names(x, (char *const *)v, got);
    free(v);
    return rc;
}

/*
 * The ring queries, answered as the BEAM facade answers them: {place,
 * Key} -> Node | undefined, {owners, Key, N} -> [Node], {shard, Key} ->
 * Shard, {is_owner, Key} -> boolean(), {shard_owners, Shard, N} ->
 * [Node]; {error, invalid} for a bad key, N or shard, as for every bad
 * request.
 */
static int call_ring(cluster_t *cl, const char *tag, const char *buf, int idx,
                     ei_x_buff *x)
{
    const tether_ring_t *r = tether_ring_module_table(cl->ring);
    uint32_t shards = tether_ring_shards(r);
    unsigned long n = 1, s = 0;
    uint64_t h = 0;
    uint32_t shard;

    if (strcmp(tag, "shard_owners") == 0) {
        if (ei_decode_ulong(buf, &idx, &s) < 0 || s >= shards ||
            ei_decode_ulong(buf, &idx, &n) < 0 || n == 0)
            return encode_error(x, TETHER_EINVAL);
        return encode_owners(cl, (uint32_t)s, n, x);
    }
    if (key_at(buf, &idx, &h) < 0 ||
        (strcmp(tag, "owners") == 0 &&
         (ei_decode_ulong(buf, &idx, &n) < 0 || n == 0)))
        return encode_error(x, TETHER_EINVAL);
    shard = tether_ring_shard_of_hash(h, shards);
    if (strcmp(tag, "shard") == 0)
        return ei_x_encode_ulong(x, shard);
    if (strcmp(tag, "is_owner") == 0)
        return ei_x_encode_boolean(x, tether_ring_module_owns(cl->ring, shard));
    if (strcmp(tag, "owners") == 0)
        return encode_owners(cl, shard, n, x);
    {
        const char *p = tether_ring_primary(r, shard);
        return p == NULL ? ei_x_encode_atom(x, "undefined")
                         : tether__etf_encode_name(x, p);
    }
}

/* ---- election (core/election.h) -------------------------------------- */

/* Why the outcomes of tether/cluster.h can be the engine's as they are. */
_Static_assert(TETHER_CLUSTER_LEADER == TETHER_ELECTION_LEADER &&
                   TETHER_CLUSTER_FOLLOWER == TETHER_ELECTION_FOLLOWER &&
                   TETHER_CLUSTER_NO_QUORUM == TETHER_ELECTION_NO_QUORUM &&
                   TETHER_CLUSTER_VOTERS_MISMATCH ==
                       TETHER_ELECTION_VOTERS_MISMATCH &&
                   TETHER_CLUSTER_VOTERS_MAX == TETHER_ELECTION_VOTERS_MAX,
               "tether/cluster.h and core/election.h disagree");

/* The engine's time now (what the election's readers check leases
 * against). */
static uint64_t engine_now(const cluster_t *cl)
{
    uint64_t now = tether_node_now_ms();
    return now > cl->start_ms ? now - cl->start_ms : 0;
}

/* The canonical encoding of the 131-prefixed term etf[0..len) into out
 * (TETHER_ELECTION_NAME_MAX bytes): the name both shells use. 0 or
 * TETHER_EINVAL (not one term, a closure, too large). */
static int name_canon(const char *etf, size_t len, uint8_t *out, size_t *olen)
{
    if (etf == NULL || len > INT32_MAX || !tether_term_valid(etf, len) ||
        tether_ring_canon((const uint8_t *)etf, len, out,
                          TETHER_ELECTION_NAME_MAX, olen) < 0)
        return TETHER_EINVAL;
    return 0;
}

/* The name at buf[*idx] of a call (advanced past it), canonical. */
static int name_at(const char *buf, int *idx, uint8_t *out, size_t *olen)
{
    int start = *idx, rc;
    size_t len;
    char *etf;

    if (ei_skip_term(buf, idx) < 0)
        return TETHER_EINVAL;
    etf = with_version(buf, start, *idx, &len);
    if (etf == NULL)
        return TETHER_ENOMEM;
    rc = name_canon(etf, len, out, olen);
    free(etf);
    return rc;
}

static ssize_t cand_find(const cluster_t *cl, const uint8_t *name, size_t n)
{
    for (size_t i = 0; i < cl->ncands; i++)
        if (cl->cands[i].nlen == n && memcmp(cl->cands[i].name, name, n) == 0)
            return (ssize_t)i;
    return -1;
}

static void cand_remove(cluster_t *cl, size_t i)
{
    free(cl->cands[i].name);
    free(cl->cands[i].voters);
    cl->cands[i] = cl->cands[--cl->ncands];
}

/* Drops candidacy i and our monitor of its process. */
static void cand_forget(cluster_t *cl, size_t i)
{
    if (cl->cands[i].monitored &&
        tether_proc_demonitor(cl->proc, &cl->cands[i].mon) < 0)
        LOG(cl->node, TETHER_LOG_DEBUG, "cluster: no monitor of a candidate");
    cand_remove(cl, i);
}

/* Campaigns with candidacy c on the current engine: 0 with *outcome
 * (and *fence when leading), or a TETHER_E* code. */
static int cand_campaign(cluster_t *cl, cand_t *c, int *outcome,
                         uint64_t *fence)
{
    const char *voters[TETHER_ELECTION_VOTERS_MAX];
    tether_election_opts_t o = {.priority = c->priority,
                                .quorum = c->quorum,
                                .voters = voters,
                                .nvoters = c->nvoters};
    ei_x_buff pid;
    int rc = TETHER_ENOMEM;

    if (cl->el == NULL)
        return TETHER_ENOTFOUND;
    for (size_t i = 0; i < c->nvoters; i++)
        voters[i] = c->voters[i];
    if (ei_x_new_with_version(&pid) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_pid(&pid, &c->pid) == 0)
        rc = tether_election_lead(cl->el, c->name, c->nlen,
                                  (const uint8_t *)pid.buff, (size_t)pid.index,
                                  &o, outcome, fence);
    ei_x_free(&pid);
    if (rc == 0)
        c->active = *outcome == TETHER_ELECTION_LEADER ||
                    *outcome == TETHER_ELECTION_FOLLOWER;
    return rc;
}

/* Tells candidate c of a transition: {tether_leader, Name, {elected,
 * Fence} | revoked} to its process, or a log line for the `tether`
 * process itself (a --lead candidacy). */
static void cand_tell(cluster_t *cl, const cand_t *c, bool elected,
                      uint64_t fence)
{
    ei_x_buff x;

    if (ei_cmp_pids((erlang_pid *)&c->pid, &cl->pid) == 0) {
        char *text = NULL;
        int idx = 1; /* past the version byte */
        if (ei_s_print_term(&text, (const char *)c->name, &idx) < 0) {
            free(text);
            text = NULL;
        }
        if (elected)
            LOG(cl->node, TETHER_LOG_INFO,
                "cluster: leading %.200s with fence %llu", text ? text : "?",
                (unsigned long long)fence);
        else
            LOG(cl->node, TETHER_LOG_INFO, "cluster: no longer leading %.200s",
                text ? text : "?");
        free(text);
        return;
    }
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, "tether_leader") == 0 &&
        ei_x_append_buf(&x, (const char *)c->name + 1, (int)c->nlen - 1) == 0 &&
        (elected ? ei_x_encode_tuple_header(&x, 2) == 0 &&
                       ei_x_encode_atom(&x, "elected") == 0 &&
                       ei_x_encode_ulonglong(&x, fence) == 0
                 : ei_x_encode_atom(&x, "revoked") == 0))
        (void)tether_procs_send(tether_node_procs(cl->node), &cl->pid, &c->pid,
                                x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* A LEADER action: our candidate of the name hears. */
static void leader_event(cluster_t *cl, const tether_action_t *a)
{
    ssize_t i = cand_find(cl, a->u.leader.name.ptr, a->u.leader.name.len);
    if (i >= 0)
        cand_tell(cl, &cl->cands[i], a->u.leader.elected != 0,
                  a->u.leader.fence);
}

/* Waiting candidacies campaign again (see cand_t); true if one did and
 * its actions may need draining. */
static bool cands_retry(cluster_t *cl)
{
    bool any = false;
    if (!cl->cands_retry)
        return false;
    cl->cands_retry = false;
    for (size_t i = 0; i < cl->ncands; i++) {
        cand_t *c = &cl->cands[i];
        int outcome = 0;
        uint64_t fence = 0;
        if (c->active || !c->retry ||
            cand_campaign(cl, c, &outcome, &fence) < 0 || !c->active)
            continue;
        any = true;
        if (outcome == TETHER_ELECTION_LEADER)
            cand_tell(cl, c, true, fence);
    }
    return any;
}

/* The engine goes: a candidate that leads on it is told `revoked`. */
static void cands_stopped(cluster_t *cl)
{
    uint64_t now = engine_now(cl);
    for (size_t i = 0; i < cl->ncands; i++)
        if (cl->el != NULL && cl->cands[i].active &&
            tether_election_fence(cl->el, cl->cands[i].name, cl->cands[i].nlen,
                                  now, NULL) == TETHER_ELECTION_LEADER)
            cand_tell(cl, &cl->cands[i], false, 0);
}

/* A fresh engine runs: every candidacy campaigns on it again; one it
 * refuses is told `revoked` and forgotten (unless it waits to retry). */
static void cands_restart(cluster_t *cl)
{
    for (size_t i = 0; i < cl->ncands;) {
        cand_t *c = &cl->cands[i];
        int outcome = 0, rc;
        uint64_t fence = 0;
        c->active = false;
        rc = cand_campaign(cl, c, &outcome, &fence);
        if (rc == 0 && outcome == TETHER_ELECTION_LEADER)
            cand_tell(cl, c, true, fence);
        if (c->active || (rc == 0 && c->retry)) {
            i++;
            continue;
        }
        cand_tell(cl, c, false, 0);
        cand_forget(cl, i);
    }
}

/* A monitored candidate exited: it resigns. Other DOWNs are ignored. */
static void cands_down(cluster_t *cl, const erlang_ref *ref)
{
    for (size_t i = 0; i < cl->ncands; i++) {
        cand_t *c = &cl->cands[i];
        if (!c->monitored || ei_cmp_refs(&c->mon, (erlang_ref *)ref) != 0)
            continue;
        if (c->active && cl->el != NULL)
            (void)tether_election_resign(cl->el, c->name, c->nlen);
        cand_remove(cl, i);
        run(cl);
        return;
    }
}

/* {candidates, Name} -> [{Node, Priority}], best first. */
static int encode_candidates(cluster_t *cl, const uint8_t *name, size_t n,
                             ei_x_buff *x)
{
    size_t count = tether_election_candidates(cl->el, name, n, NULL, 0);
    tether_election_candidate_t *v =
        count > 0 ? malloc(count * sizeof *v) : NULL;
    int rc = 0;

    if (count > 0 && v == NULL)
        return encode_error(x, TETHER_ENOMEM);
    if (count > 0)
        count = tether_election_candidates(cl->el, name, n, v, count);
    if (count > 0 && ei_x_encode_list_header(x, (long)count) < 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < count; i++)
        if (ei_x_encode_tuple_header(x, 2) < 0 ||
            tether__etf_encode_name(x, v[i].node) < 0 ||
            ei_x_encode_longlong(x, v[i].priority) < 0)
            rc = -1;
    free(v);
    return rc == 0 ? ei_x_encode_empty_list(x) : -1;
}

/* {leader, Name} -> {ok, Node, Pid} | {error, no_leader}. */
static int encode_leader(cluster_t *cl, const uint8_t *name, size_t n,
                         ei_x_buff *x)
{
    char node[TETHER_NODE_NAME_MAX + 1];
    uint8_t pid[TETHER_ELECTION_PID_MAX];
    size_t plen = 0;

    if (tether_election_leader(cl->el, name, n, engine_now(cl), node, pid,
                               sizeof pid, &plen, NULL) < 0 ||
        plen < 2 || pid[0] != TETHER_ETF_VERSION ||
        !tether_term_valid((const char *)pid, plen))
        return ei_x_encode_tuple_header(x, 2) < 0 ||
                       ei_x_encode_atom(x, "error") < 0 ||
                       ei_x_encode_atom(x, "no_leader") < 0
                   ? -1
                   : 0;
    return ei_x_encode_tuple_header(x, 3) < 0 ||
                   ei_x_encode_atom(x, "ok") < 0 ||
                   tether__etf_encode_name(x, node) < 0 ||
                   ei_x_append_buf(x, (const char *)pid + 1, (int)plen - 1) < 0
               ? -1
               : 0;
}

/*
 * The election's queries, answered as the BEAM facade answers them:
 * {leader, Name}, {is_leader, Name}, {fence, Name}, {candidates, Name};
 * {error, invalid} for a name that cannot be one (as for every bad
 * request).
 */
static int call_election(cluster_t *cl, const char *tag, const char *buf,
                         int idx, ei_x_buff *x)
{
    uint8_t name[TETHER_ELECTION_NAME_MAX];
    size_t n = 0;
    uint64_t fence = 0;
    int st;

    if (cl->el == NULL)
        return encode_error(x, TETHER_ENOTFOUND);
    if (name_at(buf, &idx, name, &n) < 0)
        return encode_error(x, TETHER_EINVAL);
    if (strcmp(tag, "candidates") == 0)
        return encode_candidates(cl, name, n, x);
    if (strcmp(tag, "leader") == 0)
        return encode_leader(cl, name, n, x);
    st = tether_election_fence(cl->el, name, n, engine_now(cl), &fence);
    if (strcmp(tag, "is_leader") == 0)
        return ei_x_encode_boolean(x, st == TETHER_ELECTION_LEADER);
    if (st == TETHER_ELECTION_LEADER)
        return ei_x_encode_tuple_header(x, 2) < 0 ||
                       ei_x_encode_atom(x, "ok") < 0 ||
                       ei_x_encode_ulonglong(x, fence) < 0
                   ? -1
                   : 0;
    return ei_x_encode_tuple_header(x, 2) < 0 ||
                   ei_x_encode_atom(x, "error") < 0 ||
                   ei_x_encode_atom(x, st == TETHER_ELECTION_NO_QUORUM
                                           ? "no_quorum"
                                           : "not_leader") < 0
               ? -1
               : 0;
}

/* The canonical encoding of the term at buf[*idx] (advanced past it)
 * into a malloc'd *out of at most max bytes. */
static int term_canon_at(const char *buf, int *idx, size_t max, uint8_t **out,
                         size_t *olen)
{
    int start = *idx, rc;
    size_t len;
    char *etf;

    *out = NULL;
    if (ei_skip_term(buf, idx) < 0)
        return TETHER_EINVAL;
    etf = with_version(buf, start, *idx, &len);
    *out = malloc(max);
    if (etf == NULL || *out == NULL) {
        free(etf);
        free(*out);
        *out = NULL;
        return TETHER_ENOMEM;
    }
    rc = len <= INT32_MAX && tether_term_valid(etf, len) &&
                 tether_ring_canon((const uint8_t *)etf, len, *out, max,
                                   olen) == 0
             ? 0
             : TETHER_EINVAL;
    free(etf);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Appends one ETF value (131-prefixed) to x as a term. */
static int append_term(ei_x_buff *x, const uint8_t *etf, size_t len)
{
    return ei_x_append_buf(x, (const char *)etf + 1, (int)len - 1);
}

typedef struct map_list {
    ei_x_buff *x;
    int rc;
} map_list_t;

static void map_pair(void *ctx, const uint8_t *key, size_t klen,
                     const uint8_t *val, size_t vlen)
{
    map_list_t *l = ctx;

    if (l->rc == 0 &&
        (ei_x_encode_list_header(l->x, 1) < 0 ||
         ei_x_encode_tuple_header(l->x, 2) < 0 ||
         append_term(l->x, key, klen) < 0 || append_term(l->x, val, vlen) < 0))
        l->rc = -1;
}

/*
 * The maps' queries, answered as the BEAM facade answers them:
 * {map_get, Name, Key} -> {ok, Value} | not_found | {error, no_such_map},
 * {map_to_list, Name} -> [{Key, Value}] | {error, no_such_map}.
 */
static int call_map(cluster_t *cl, const char *tag, const char *buf, int idx,
                    ei_x_buff *x)
{
    uint8_t name[TETHER_MAPS_NAME_MAX], *key = NULL;
    size_t n = 0, klen = 0, vlen;
    const uint8_t *val;
    tether_map_t *map;
    map_list_t l = {x, 0};
    int rc;

    if (name_at(buf, &idx, name, &n) < 0)
        return encode_error(x, TETHER_EINVAL);
    map = cl->maps ? tether_maps_find(cl->maps, name, n) : NULL;
    if (map == NULL)
        return ei_x_encode_tuple_header(x, 2) < 0 ||
                       ei_x_encode_atom(x, "error") < 0 ||
                       ei_x_encode_atom(x, "no_such_map") < 0
                   ? -1
                   : 0;
    if (strcmp(tag, "map_to_list") == 0) {
        tether_maps_visit(map, map_pair, &l);
        return l.rc < 0 ? -1 : ei_x_encode_empty_list(x);
    }
    if (term_canon_at(buf, &idx, TETHER_MAPS_KEY_MAX, &key, &klen) < 0)
        return ei_x_encode_atom(x, "not_found");
    if (!tether_maps_get(map, key, klen, &val, &vlen))
        rc = ei_x_encode_atom(x, "not_found");
    else
        rc = ei_x_encode_tuple_header(x, 2) < 0 ||
                     ei_x_encode_atom(x, "ok") < 0 ||
                     append_term(x, val, vlen) < 0
                 ? -1
                 : 0;
    free(key);
    return rc;
}

static int call_reminder(cluster_t *cl, const char *buf, int idx,
                         int from_index, ei_x_buff *x);
static int encode_reminder_info(cluster_t *cl, ei_x_buff *x);

/* Answers one call into x (returns 0), or takes it to answer later
 * (returns 1: a reminders call waiting for a majority); -1 when x could
 * not be written. */
static int handle_call(cluster_t *cl, const char *buf, int idx, int from_index,
                       ei_x_buff *x)
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
        if ((strcmp(tag, "place") == 0 && arity == 2) ||
            (strcmp(tag, "owners") == 0 && arity == 3) ||
            (strcmp(tag, "shard") == 0 && arity == 2) ||
            (strcmp(tag, "is_owner") == 0 && arity == 2) ||
            (strcmp(tag, "shard_owners") == 0 && arity == 3))
            return call_ring(cl, tag, buf, idx, x);
        if ((strcmp(tag, "map_get") == 0 && arity == 3) ||
            (strcmp(tag, "map_to_list") == 0 && arity == 2))
            return call_map(cl, tag, buf, idx, x);
        if (strcmp(tag, "heal") == 0 && arity == 2)
            return call_heal(cl, buf, idx, x);
        if (strcmp(tag, "reminder") == 0 && arity == 2)
            return call_reminder(cl, buf, idx, from_index, x);
        if (arity == 2 &&
            (strcmp(tag, "leader") == 0 || strcmp(tag, "is_leader") == 0 ||
             strcmp(tag, "fence") == 0 || strcmp(tag, "candidates") == 0))
            return call_election(cl, tag, buf, idx, x);
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
    if (strcmp(tag, "ring_size") == 0)
        return ei_x_encode_ulong(x, cl->ring_size);
    if (strcmp(tag, "reminder_info") == 0)
        return encode_reminder_info(cl, x);
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
    case TETHER_CLUSTER_MSG_CALL: {
        ei_x_buff x;
        if (ei_x_new_with_version(&x) < 0)
            break;
        if (handle_call(cl, msg->data, m.req_index, m.from_index, &x) == 0)
            (void)tether__gen_reply(cl->proc, msg->data, m.from_index, x.buff,
                                    (size_t)x.index);
        ei_x_free(&x);
        run(cl);
        break;
    }
    case TETHER_CLUSTER_MSG_DOWN:
        /* A registrant's monitor or a candidate's: each ignores the
         * other's. */
        names_down(cl, &m.ref);
        cands_down(cl, &m.ref);
        break;
    case TETHER_CLUSTER_MSG_REG_PING:
        reg_ping(cl, msg->data, &m);
        break;
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
    tether_engine_free(cl->eng); /* svc, reg, ring, el, maps, rm with it */
    pending_clear(cl);
    for (size_t i = 0; i < cl->nrm_waits; i++)
        tether_from_free(cl->rm_waits[i].from);
    free(cl->rm_waits);
    tether__datalog_close(cl->rlog);
    free(cl->rlog_path);
    free(cl->rm_dir);
    while (cl->ncands > 0)
        cand_remove(cl, cl->ncands - 1);
    free(cl->cands);
    for (size_t i = 0; i < cl->nservices; i++)
        free(cl->services[i].meta);
    sodium_memzero(cl->secret, sizeof cl->secret);
    sodium_memzero(cl->identity, sizeof cl->identity);
    free(cl->trust);
    free(cl->trust_names);
    free(cl->seeds);
    free(cl->up);
    free(cl->evs);
    for (size_t i = 0; i < cl->nhosted; i++)
        map_log_drop(cl->hosted[i].log);
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
    tether__node_set_conn_hook(cl->node, NULL, NULL);
    if (cl->node->cluster == cl)
        cl->node->cluster = NULL;
    cluster_free(cl);
}

/* Copies n node names (each checked) into a fresh array *out, which
 * the caller frees (also after an error). 0, TETHER_EINVAL or
 * TETHER_ENOMEM. */
static int copy_node_names(const char *const *in, size_t n, name_t **out)
{
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *s = in[i];
        if (s == NULL || strlen(s) > TETHER_NODE_NAME_MAX ||
            !tether_node_name_valid(s))
            return TETHER_EINVAL;
        snprintf((*out)[i], sizeof(name_t), "%s", s);
    }
    return 0;
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
    cl->ring_size =
        cfg->ring_size ? cfg->ring_size : TETHER_RING_DEFAULT_SHARDS;
    if (cl->ring_size > TETHER_RING_SHARDS_MAX ||
        (cl->ring_size & (cl->ring_size - 1)) != 0)
        return TETHER_EINVAL;
    cl->lease_ms = cfg->election_lease_ms ? cfg->election_lease_ms
                                          : TETHER_ELECTION_DEFAULT_LEASE_MS;
    if (cfg->defer_max_bytes > TETHER_ENGINE_DEFER_BYTES_MAX ||
        tether__channels_check(cfg->channels, cfg->nchannels) < 0)
        return TETHER_EINVAL;
    cl->defer_max_bytes = cfg->defer_max_bytes; /* 0: the engine's default */
    if (cfg->reminder_replicas > TETHER_CLUSTER_REMINDER_REPLICAS_MAX)
        return TETHER_EINVAL;
    cl->rm_replicas = cfg->reminder_replicas; /* 0: the module's default */
    if (cfg->data_dir != NULL) {
        if (*cfg->data_dir == '\0')
            return TETHER_EINVAL;
        cl->rm_dir = strdup(cfg->data_dir);
        if (cl->rm_dir == NULL)
            return TETHER_ENOMEM;
    }
    if (cfg->cluster_secret) {
        memcpy(cl->secret, cfg->cluster_secret, sizeof cl->secret);
        cl->has_secret = true;
    }
    if (cfg->identity_seed) {
        memcpy(cl->identity, cfg->identity_seed, sizeof cl->identity);
        cl->has_identity = true;
    }
    if (cfg->njoin > 0) {
        int rc = copy_node_names(cfg->join, cfg->njoin, &cl->seeds);
        if (rc < 0)
            return rc;
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
    if (node->cluster != NULL ||
        tether_procs_whereis(procs, TETHER_CLUSTER_PROCESS) != NULL)
        return TETHER_EEXIST;
    if (tether__crypto_init() < 0)
        return TETHER_EIO;
    cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return TETHER_ENOMEM;
    cl->node = node;
    cl->pending_tail = &cl->pending;
    cl->rm_next_ref = 1;
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
    node->cluster = cl;
    tether__node_set_conn_hook(node, on_conn, cl);
    rc = tether_proc_register(cl->proc, TETHER_CLUSTER_PROCESS);
    if (rc == 0)
        rc = engine_start(cl);
    /* Messaging (channel.c): kept when the cluster stops, as is
     * tether_rpc:execute/2. */
    if (rc == 0) {
        rc = tether__channels_start(node, cfg->channels, cfg->nchannels);
        if (rc == TETHER_EEXIST)
            rc = 0;
    }
    /* Kept when the cluster stops: it then refuses (not_distributed). */
    if (rc == 0) {
        rc = tether_function_register(node, "tether_rpc", "execute", 2,
                                      rpc_execute, NULL);
        if (rc == TETHER_EEXIST)
            rc = 0;
    }
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
    cluster_t *cl = node ? node->cluster : NULL;
    if (cl == NULL || cl->eng == NULL)
        return TETHER_ENOTFOUND;
    return (int)tether_engine_members(cl->eng, out, out ? cap : 0);
}

int tether_cluster_is_member(tether_node_t *node, const char *name)
{
    cluster_t *cl = node ? node->cluster : NULL;
    if (cl == NULL || cl->eng == NULL)
        return TETHER_ENOTFOUND;
    return name != NULL && tether_engine_is_member(cl->eng, name) ? 1 : 0;
}

uint64_t tether__cluster_bad_input(const tether_node_t *node)
{
    const cluster_t *cl = node ? node->cluster : NULL;
    return cl ? cl->bad_input : 0;
}

const tether_engine_stats_t *
tether__cluster_engine_stats(const tether_node_t *node)
{
    const cluster_t *cl = node ? node->cluster : NULL;
    return cl && cl->eng ? tether_engine_stats(cl->eng) : NULL;
}

int tether_cluster_service_register(tether_node_t *node, const char *name,
                                    const char *meta, size_t meta_len)
{
    /* #{}: the version byte and a map of no pairs. */
    static const char empty_map[] = {(char)131, (char)ERL_MAP_EXT, 0, 0, 0, 0};
    cluster_t *cl = node ? node->cluster : NULL;
    size_t i;
    int rc;

    if (name == NULL || name[0] == '\0' ||
        strnlen(name, TETHER_NAME_MAX) >= TETHER_NAME_MAX ||
        (meta != NULL && !tether_term_valid(meta, meta_len)))
        return TETHER_EINVAL;
    if (cl == NULL)
        return TETHER_ENOTFOUND;
    if (meta == NULL) {
        meta = empty_map;
        meta_len = sizeof empty_map;
    }
    for (i = 0; i < cl->nservices; i++)
        if (strcmp(cl->services[i].name, name) == 0)
            break;
    if (i == SERVICES_MAX)
        return TETHER_ETOOBIG;
    char *copy = malloc(meta_len);
    if (copy == NULL)
        return TETHER_ENOMEM;
    memcpy(copy, meta, meta_len);
    announced_t a = {.meta = copy, .meta_len = meta_len};
    snprintf(a.name, sizeof a.name, "%s", name);
    rc = service_put(cl, &a);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    if (i < cl->nservices)
        free(cl->services[i].meta);
    else
        cl->nservices++;
    cl->services[i] = a;
    run(cl);
    return 0;
}

int tether_cluster_service_unregister(tether_node_t *node, const char *name)
{
    cluster_t *cl = node ? node->cluster : NULL;
    ei_x_buff n;
    size_t i;

    if (name == NULL)
        return TETHER_EINVAL;
    if (cl == NULL)
        return TETHER_ENOTFOUND;
    for (i = 0; i < cl->nservices; i++)
        if (strcmp(cl->services[i].name, name) == 0)
            break;
    if (i == cl->nservices)
        return TETHER_ENOTFOUND;
    free(cl->services[i].meta);
    cl->services[i] = cl->services[--cl->nservices];
    if (cl->svc != NULL && ei_x_new_with_version(&n) == 0) {
        /* Not in the table (a full table refused it): nothing to do. */
        if (ei_x_encode_atom(&n, name) == 0 &&
            tether_svctab_unregister(cl->svc, (const uint8_t *)n.buff,
                                     (size_t)n.index) < 0)
            LOG(node, TETHER_LOG_DEBUG, "cluster: service '%s' was not listed",
                name);
        ei_x_free(&n);
    }
    run(cl);
    return 0;
}

int tether_cluster_register_name(tether_node_t *node, const char *name)
{
    cluster_t *cl = node ? node->cluster : NULL;
    tether_proc_t *p;
    reg_name_t n;
    int rc;

    if (name == NULL || name[0] == '\0' ||
        strnlen(name, TETHER_NAME_MAX) >= TETHER_NAME_MAX)
        return TETHER_EINVAL;
    if (cl == NULL)
        return TETHER_ENOTFOUND;
    p = tether_procs_whereis(tether_node_procs(node), name);
    if (p == NULL)
        return TETHER_ENOTFOUND;
    if (cl->nnames == NAMES_MAX)
        return TETHER_ETOOBIG;
    for (size_t i = 0; i < cl->nnames; i++)
        if (strcmp(cl->names[i].name, name) == 0)
            return TETHER_EEXIST;
    memset(&n, 0, sizeof n);
    snprintf(n.name, sizeof n.name, "%s", name);
    n.pid = *tether_proc_pid(p);
    rc = name_put(cl, &n);
    if (rc < 0)
        return rc;
    if ((rc = tether_proc_monitor(cl->proc, &n.pid, &n.mon)) < 0) {
        LOG(node, TETHER_LOG_ERROR, "cluster: cannot monitor '%s': %s", name,
            tether_strerror(rc));
    }
    cl->names[cl->nnames++] = n;
    run(cl);
    return 0;
}

tether_engine_t *tether__cluster_engine(const tether_node_t *node)
{
    cluster_t *cl = node ? node->cluster : NULL;
    return cl ? cl->eng : NULL;
}

/* ---- the ring (tether/cluster.h) -------------------------------------- */

/* The cluster of node with its ring, or NULL. */
static cluster_t *with_ring(const tether_node_t *node)
{
    cluster_t *cl = node->cluster;
    return cl != NULL && cl->ring != NULL ? cl : NULL;
}

int tether_cluster_shard(tether_node_t *node, const char *key, size_t len,
                         uint32_t *shard)
{
    cluster_t *cl = with_ring(node);
    uint64_t h;
    int rc;

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    if (key == NULL || shard == NULL)
        return TETHER_EINVAL;
    rc = tether_ring_hash_term((const uint8_t *)key, len, &h);
    if (rc < 0)
        return TETHER_EINVAL;
    *shard = tether_ring_shard_of_hash(
        h, tether_ring_shards(tether_ring_module_table(cl->ring)));
    return 0;
}

int tether_cluster_owners(tether_node_t *node, const char *key, size_t len,
                          const char **out, size_t n)
{
    uint32_t shard;
    int rc = tether_cluster_shard(node, key, len, &shard);

    if (rc < 0)
        return rc;
    if (out == NULL || n == 0)
        return TETHER_EINVAL;
    return (int)tether_ring_owners(
        tether_ring_module_table(with_ring(node)->ring), shard, n, out);
}

int tether_cluster_place(tether_node_t *node, const char *key, size_t len,
                         const char **owner)
{
    int rc = tether_cluster_owners(node, key, len, owner, 1);

    return rc == 0 ? TETHER_ENOTFOUND : rc < 0 ? rc : 0;
}

int tether_cluster_is_owner(tether_node_t *node, const char *key, size_t len)
{
    uint32_t shard;
    int rc = tether_cluster_shard(node, key, len, &shard);

    if (rc < 0)
        return rc;
    return tether_ring_module_owns(with_ring(node)->ring, shard);
}

uint32_t tether_cluster_ring_size(const tether_node_t *node)
{
    cluster_t *cl = with_ring(node);

    return cl == NULL ? 0
                      : tether_ring_shards(tether_ring_module_table(cl->ring));
}

int tether_cluster_subscribe_shards(tether_node_t *node,
                                    tether_cluster_shard_fn fn, void *ctx,
                                    uint64_t *generation, uint32_t *owned,
                                    size_t cap, size_t *nowned)
{
    cluster_t *cl = with_ring(node);
    size_t free_slot = TETHER_CLUSTER_SHARD_SUBS_MAX, n = 0;
    uint32_t shards;

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    if (fn == NULL || generation == NULL || nowned == NULL ||
        (cap > 0 && owned == NULL))
        return TETHER_EINVAL;
    for (size_t i = 0; i < TETHER_CLUSTER_SHARD_SUBS_MAX; i++) {
        if (cl->shard_subs[i].fn == fn && cl->shard_subs[i].ctx == ctx)
            return TETHER_EEXIST;
        if (cl->shard_subs[i].fn == NULL &&
            free_slot == TETHER_CLUSTER_SHARD_SUBS_MAX)
            free_slot = i;
    }
    if (free_slot == TETHER_CLUSTER_SHARD_SUBS_MAX)
        return TETHER_ETOOBIG;
    /* Events not carried out yet belong to generations after the
     * snapshot: run them first, so the snapshot and the events add up. */
    run(cl);
    shards = tether_ring_shards(tether_ring_module_table(cl->ring));
    for (uint32_t s = 0; s < shards; s++)
        if (tether_ring_module_owns(cl->ring, s)) {
            if (n < cap)
                owned[n] = s;
            n++;
        }
    *nowned = n;
    *generation = tether_ring_module_generation(cl->ring);
    cl->shard_subs[free_slot].fn = fn;
    cl->shard_subs[free_slot].ctx = ctx;
    return 0;
}

int tether_cluster_unsubscribe_shards(tether_node_t *node,
                                      tether_cluster_shard_fn fn, void *ctx)
{
    cluster_t *cl = node->cluster;

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    for (size_t i = 0; i < TETHER_CLUSTER_SHARD_SUBS_MAX; i++)
        if (cl->shard_subs[i].fn == fn && cl->shard_subs[i].ctx == ctx) {
            cl->shard_subs[i].fn = NULL;
            return 0;
        }
    return TETHER_ENOTFOUND;
}

/* ---- the election (tether/cluster.h) ---------------------------------- */

/* Checks a candidacy's options and copies them into c. */
static int cand_options(cand_t *c, const tether_cluster_lead_opts_t *o)
{
    int rc;

    if (o == NULL)
        return 0;
    if (o->quorum &&
        (o->nvoters == 0 || o->nvoters > TETHER_ELECTION_VOTERS_MAX ||
         o->voters == NULL))
        return TETHER_EINVAL;
    if (!o->quorum && o->nvoters > 0)
        return TETHER_EINVAL;
    c->priority = o->priority;
    c->quorum = o->quorum != 0;
    if (o->nvoters == 0)
        return 0;
    rc = copy_node_names(o->voters, o->nvoters, &c->voters);
    if (rc == 0)
        c->nvoters = o->nvoters;
    return rc;
}

/*
 * The candidacy of proc (NULL: the `tether` process) for name. With
 * retry (the --lead flags), a quorum candidacy without a quorum yet is
 * kept and campaigns again as members come up: *outcome says
 * NO_QUORUM, and 0 is returned with the candidacy held.
 */
static int lead(tether_node_t *node, const char *proc, const char *name,
                size_t len, const tether_cluster_lead_opts_t *o, bool retry,
                int *outcome, uint64_t *fence)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_ELECTION_NAME_MAX];
    cand_t c = {0};
    tether_proc_t *p = NULL;
    int rc;

    if (outcome == NULL || fence == NULL ||
        name_canon(name, len, canon, &c.nlen) < 0)
        return TETHER_EINVAL;
    if (cl == NULL || cl->el == NULL)
        return TETHER_ENOTFOUND;
    if (proc != NULL &&
        (p = tether_procs_whereis(tether_node_procs(node), proc)) == NULL)
        return TETHER_ENOTFOUND;
    if (cand_find(cl, canon, c.nlen) >= 0)
        return TETHER_EEXIST;
    if (cl->ncands == CANDS_MAX)
        return TETHER_ETOOBIG;
    if (cl->cands == NULL &&
        (cl->cands = calloc(CANDS_MAX, sizeof *cl->cands)) == NULL)
        return TETHER_ENOMEM;
    c.pid = p ? *tether_proc_pid(p) : cl->pid;
    c.retry = retry;
    rc = cand_options(&c, o);
    if (rc == 0 && (c.name = malloc(c.nlen)) == NULL)
        rc = TETHER_ENOMEM;
    if (rc == 0) {
        memcpy(c.name, canon, c.nlen);
        rc = cand_campaign(cl, &c, outcome, fence);
    }
    if (rc < 0 || (!c.active && !(retry && c.quorum))) {
        free(c.name);
        free(c.voters);
        return rc;
    }
    if (p != NULL) {
        rc = tether_proc_monitor(cl->proc, &c.pid, &c.mon);
        if (rc < 0)
            LOG(node, TETHER_LOG_ERROR,
                "cluster: cannot monitor candidate '%s': %s", proc,
                tether_strerror(rc));
        c.monitored = rc == 0;
    }
    cl->cands[cl->ncands++] = c;
    run(cl);
    return 0;
}

int tether_cluster_lead(tether_node_t *node, const char *proc, const char *name,
                        size_t len, const tether_cluster_lead_opts_t *o,
                        int *outcome, uint64_t *fence)
{
    return lead(node, proc, name, len, o, false, outcome, fence);
}

int tether__cluster_lead_at_start(tether_node_t *node, const char *name,
                                  size_t len,
                                  const tether_cluster_lead_opts_t *o,
                                  int *outcome, uint64_t *fence)
{
    return lead(node, NULL, name, len, o, true, outcome, fence);
}

int tether_cluster_resign(tether_node_t *node, const char *name, size_t len)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_ELECTION_NAME_MAX];
    size_t n;
    ssize_t i;

    if (name_canon(name, len, canon, &n) < 0)
        return TETHER_EINVAL;
    if (cl == NULL || (i = cand_find(cl, canon, n)) < 0)
        return TETHER_ENOTFOUND;
    if (cl->cands[i].active && cl->el != NULL)
        (void)tether_election_resign(cl->el, canon, n);
    cand_forget(cl, (size_t)i);
    run(cl);
    return 0;
}

int tether_cluster_fence(tether_node_t *node, const char *name, size_t len,
                         uint64_t *fence)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_ELECTION_NAME_MAX];
    size_t n;

    if (name_canon(name, len, canon, &n) < 0)
        return TETHER_EINVAL;
    if (cl == NULL || cl->el == NULL)
        return TETHER_ENOTFOUND;
    return tether_election_fence(cl->el, canon, n, engine_now(cl), fence);
}

int tether_cluster_leader(tether_node_t *node, const char *name, size_t len,
                          char *leader, size_t cap, uint64_t *fence)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_ELECTION_NAME_MAX];
    char who[TETHER_NODE_NAME_MAX + 1];
    size_t n;
    int rc;

    if (leader == NULL || name_canon(name, len, canon, &n) < 0)
        return TETHER_EINVAL;
    if (cl == NULL || cl->el == NULL)
        return TETHER_ENOTFOUND;
    rc = tether_election_leader(cl->el, canon, n, engine_now(cl), who, NULL, 0,
                                NULL, fence);
    if (rc < 0)
        return rc;
    if (strlen(who) >= cap)
        return TETHER_ETOOBIG;
    memcpy(leader, who, strlen(who) + 1);
    return 0;
}

/* ------------------------------------------------------------- maps API */

/* ---- persisted maps --------------------------------------------------- */

/* The hosted entry of a map's canonical name, or -1. */
static int hosted_index(const cluster_t *cl, const uint8_t *name, size_t n)
{
    for (size_t i = 0; i < cl->nhosted; i++)
        if (cl->hosted[i].nlen == n && memcmp(cl->hosted[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

/* Calls back the waiters whose records are on disk (all of them, with
 * rc, when the sync failed). */
static void map_log_wake(map_log_t *ml, int rc)
{
    map_waiter_t **pp = &ml->waiters;

    while (*pp) {
        map_waiter_t *w = *pp;
        if (rc == 0 && w->seq > tether__datalog_synced(ml->log)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->fn(w->ctx, rc);
        free(w);
    }
}

static void map_log_sync_work(void *arg)
{
    map_log_t *ml = arg;

    ml->rc = tether__datalog_sync(ml->log);
}

static void map_log_kick(map_log_t *ml);

/* On the loop: the sync is done. */
static void map_log_sync_done(tether_node_t *node, void *arg)
{
    map_log_t *ml = arg;

    (void)node;
    ml->syncing = false;
    if (ml->cl == NULL) { /* the cluster went meanwhile */
        map_log_drop(ml);
        return;
    }
    if (ml->rc == 0)
        tether__datalog_synced_to(ml->log, ml->upto);
    else
        LOG(ml->cl->node, TETHER_LOG_ERROR, "cluster: map log sync: %s",
            tether_strerror(ml->rc));
    map_log_wake(ml, ml->rc);
    map_log_kick(ml);
}

/* Starts a sync on a worker unless one runs or nothing is unsynced. */
static void map_log_kick(map_log_t *ml)
{
    if (ml->syncing ||
        tether__datalog_appended(ml->log) == tether__datalog_synced(ml->log))
        return;
    ml->upto = tether__datalog_appended(ml->log);
    ml->syncing = true;
    if (tether_node_submit(ml->cl->node, map_log_sync_work, map_log_sync_done,
                           ml) < 0) {
        /* No pool (stopping): sync here, once. */
        map_log_sync_work(ml);
        map_log_sync_done(ml->cl->node, ml);
    }
}

/* Frees a log (its waiters hear TETHER_ECLOSED), or, while a sync runs,
 * leaves it to the sync's done. NULL is a no-op. */
static void map_log_drop(map_log_t *ml)
{
    if (ml == NULL)
        return;
    if (ml->syncing) {
        ml->cl = NULL;
        return;
    }
    map_log_wake(ml, TETHER_ECLOSED);
    tether__datalog_close(ml->log);
    free(ml);
}

/* DataDir/NodeName/map-<16 hex digits of the name's hash>.log */
static int map_log_path(const cluster_t *cl, const uint8_t *name, size_t n,
                        char *out, size_t cap)
{
    const char *dir = cl->data_dir[0] ? cl->data_dir
                                      : TETHER_CLUSTER_DATA_DIR_DEFAULT;
    uint64_t h = tether__fnv1a(TETHER_FNV_OFFSET, name, n);
    int w = snprintf(out, cap, "%s/%s/map-%016llx.log", dir,
                     tether_node_name(cl->node), (unsigned long long)h);

    return w < 0 || (size_t)w >= cap ? TETHER_ETOOBIG : 0;
}

static int load_record(void *ctx, const uint8_t *rec, size_t len)
{
    int rc = tether_maps_load(ctx, rec, len);

    return rc == TETHER_EPROTO ? 0 : rc; /* a refused record is skipped */
}

static int dump_map(void *ctx, tether_datalog_put_fn put, void *put_ctx)
{
    return tether_maps_dump(ctx, put, put_ctx);
}

/*
 * Reads hosted map i's log into map and compacts it (on the loop thread,
 * at hosting or engine start: the one time the log is read whole). A torn
 * tail or corrupted records cost one log line (and a copy of the file);
 * the rest is kept.
 */
static void map_log_load(cluster_t *cl, size_t i, tether_map_t *map)
{
    map_log_t *ml = cl->hosted[i].log;
    char path[PATH_MAX];
    tether_datalog_info_t info;
    int rc;

    if (map_log_path(cl, cl->hosted[i].name, cl->hosted[i].nlen, path,
                     sizeof path) < 0)
        return;
    rc = tether__datalog_load(path, load_record, map, &info);
    if (rc < 0) {
        LOG(cl->node, TETHER_LOG_ERROR, "cluster: map log %s not read: %s",
            path, tether_strerror(rc));
        return;
    }
    if (info.corrupt > 0) {
        LOG(cl->node, TETHER_LOG_ERROR,
            "cluster: map log %s is corrupted: %llu records read, %llu "
            "skipped; the file is kept as %s.corrupt",
            path, (unsigned long long)info.records,
            (unsigned long long)info.corrupt, path);
        if (tether__datalog_keep_corrupt(path) < 0)
            return; /* no copy: do not compact what could not be read */
    } else if (info.torn_at >= 0) {
        LOG(cl->node, TETHER_LOG_WARNING,
            "cluster: map log %s: torn last record at byte %lld skipped; "
            "%llu records read",
            path, (long long)info.torn_at, (unsigned long long)info.records);
    }
    if (!ml->syncing && tether__datalog_compact(ml->log, dump_map, map) < 0)
        LOG(cl->node, TETHER_LOG_ERROR, "cluster: map log %s not compacted",
            path);
}

/* A TETHER_ACT_MAP_STORE: append the record; sync in the background;
 * compact when the log holds twice the map's entries (and 1,000 more). */
static void map_store(cluster_t *cl, const tether_action_t *a)
{
    int i = hosted_index(cl, a->u.map_store.name.ptr, a->u.map_store.name.len);
    map_log_t *ml = i < 0 ? NULL : cl->hosted[i].log;
    tether_map_t *map;
    int rc;

    if (ml == NULL)
        return;
    rc = tether__datalog_append(ml->log, a->u.map_store.rec.ptr,
                                a->u.map_store.rec.len, NULL);
    if (rc < 0) {
        LOG(cl->node, TETHER_LOG_ERROR, "cluster: map log append: %s",
            tether_strerror(rc));
        return;
    }
    map = tether_maps_find(cl->maps, a->u.map_store.name.ptr,
                           a->u.map_store.name.len);
    if (!ml->syncing && map != NULL &&
        tether__datalog_since_compact(ml->log) >
            2 * tether__maps_entries(map) + 1000) {
        if (tether__datalog_compact(ml->log, dump_map, map) < 0)
            LOG(cl->node, TETHER_LOG_ERROR, "cluster: map log not compacted");
        map_log_wake(ml, 0); /* the compacted file was synced whole */
    }
    map_log_kick(ml);
}

int tether_cluster_set_data_dir(tether_node_t *node, const char *dir)
{
    cluster_t *cl = node ? node->cluster : NULL;
    struct stat st;
    size_t n;

    if (cl == NULL || dir == NULL || (n = strlen(dir)) == 0 ||
        n > TETHER_CLUSTER_DATA_DIR_MAX)
        return TETHER_EINVAL;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return TETHER_EINVAL;
    for (size_t i = 0; i < cl->nhosted; i++)
        if (cl->hosted[i].log != NULL)
            return TETHER_EEXIST; /* logs are open under the old one */
    memcpy(cl->data_dir, dir, n + 1);
    return 0;
}

static int map_host(tether_node_t *node, const char *name, size_t len,
                    bool persist)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_MAPS_NAME_MAX];
    tether_map_opts_t opts = {.persist = persist};
    tether_map_t *map;
    map_log_t *ml = NULL;
    char path[PATH_MAX];
    size_t n;
    int rc;

    if (name_canon(name, len, canon, &n) < 0)
        return TETHER_EINVAL;
    if (cl == NULL || cl->maps == NULL)
        return TETHER_ENOTFOUND;
    if (tether_maps_find(cl->maps, canon, n) != NULL)
        return 0;
    if (cl->nhosted == TETHER_CLUSTER_MAPS_MAX)
        return TETHER_ETOOBIG;
    if (persist) {
        rc = map_log_path(cl, canon, n, path, sizeof path);
        if (rc < 0)
            return rc;
        ml = calloc(1, sizeof *ml);
        if (ml == NULL)
            return TETHER_ENOMEM;
        ml->cl = cl;
        rc = tether__datalog_open(path, &ml->log);
        if (rc < 0) {
            LOG(cl->node, TETHER_LOG_ERROR, "cluster: map log %s: %s", path,
                tether_strerror(rc));
            free(ml);
            return rc;
        }
    }
    rc = tether_maps_host(cl->maps, canon, n, &opts, &map);
    if (rc < 0) {
        map_log_drop(ml);
        return rc;
    }
    memcpy(cl->hosted[cl->nhosted].name, canon, n);
    cl->hosted[cl->nhosted].nlen = n;
    cl->hosted[cl->nhosted].log = ml;
    if (ml != NULL)
        map_log_load(cl, cl->nhosted, map);
    cl->nhosted++;
    run(cl);
    return 0;
}

int tether_cluster_map_host(tether_node_t *node, const char *name, size_t len)
{
    return map_host(node, name, len, false);
}

int tether_cluster_map_host_persist(tether_node_t *node, const char *name,
                                    size_t len)
{
    return map_host(node, name, len, true);
}

/* ---- iteration and subscriptions ------------------------------------- */

typedef struct foreach_ctx {
    tether_cluster_map_fn fn;
    void *ctx;
} foreach_ctx_t;

static void foreach_pair(void *ctx, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    foreach_ctx_t *f = ctx;

    f->fn(f->ctx, (const char *)key, klen, (const char *)val, vlen);
}

int tether_cluster_map_foreach(tether_node_t *node, const char *name,
                               size_t nlen, tether_cluster_map_fn fn, void *ctx)
{
    cluster_t *cl = node ? node->cluster : NULL;
    tether_map_t *map;
    foreach_ctx_t f = {fn, ctx};

    if (fn == NULL)
        return TETHER_EINVAL;
    map = map_of(cl, name, nlen);
    if (map == NULL)
        return TETHER_ENOTFOUND;
    tether_maps_visit(map, foreach_pair, &f);
    return 0;
}

/* A TETHER_ACT_MAP (only for maps with subscribers): to each of them. */
static void map_event(cluster_t *cl, const tether_action_t *a)
{
    int i = hosted_index(cl, a->u.map.name.ptr, a->u.map.name.len);

    /* Backwards: a subscriber may unsubscribe itself from its callback. */
    for (size_t k = cl->nmap_subs; i >= 0 && k-- > 0;) {
        if (k >= cl->nmap_subs || cl->map_subs[k].map != (size_t)i)
            continue;
        cl->map_subs[k].fn(cl->map_subs[k].ctx,
                           (const char *)a->u.map.name.ptr, a->u.map.name.len,
                           (const char *)a->u.map.key.ptr, a->u.map.key.len,
                           a->u.map.removed ? NULL
                                            : (const char *)a->u.map.value.ptr,
                           a->u.map.value.len);
    }
}

/* The hosted index of the ETF name, or a negative error. */
static int hosted_of(cluster_t *cl, const char *name, size_t nlen)
{
    uint8_t canon[TETHER_MAPS_NAME_MAX];
    size_t n;
    int i;

    if (name_canon(name, nlen, canon, &n) < 0)
        return TETHER_EINVAL;
    i = cl && cl->maps ? hosted_index(cl, canon, n) : -1;
    return i < 0 ? TETHER_ENOTFOUND : i;
}

int tether_cluster_map_subscribe(tether_node_t *node, const char *name,
                                 size_t nlen, tether_cluster_map_event_fn fn,
                                 void *ctx)
{
    cluster_t *cl = node ? node->cluster : NULL;
    int i = fn ? hosted_of(cl, name, nlen) : TETHER_EINVAL;

    if (i < 0)
        return i;
    for (size_t k = 0; k < cl->nmap_subs; k++)
        if (cl->map_subs[k].map == (size_t)i && cl->map_subs[k].fn == fn &&
            cl->map_subs[k].ctx == ctx)
            return 0;
    if (cl->nmap_subs == TETHER_CLUSTER_MAP_SUBS_MAX)
        return TETHER_ETOOBIG;
    cl->map_subs[cl->nmap_subs].map = (size_t)i;
    cl->map_subs[cl->nmap_subs].fn = fn;
    cl->map_subs[cl->nmap_subs++].ctx = ctx;
    tether_maps_set_notify(
        tether_maps_find(cl->maps, cl->hosted[i].name, cl->hosted[i].nlen), 1);
    return 0;
}

int tether_cluster_map_unsubscribe(tether_node_t *node, const char *name,
                                   size_t nlen, tether_cluster_map_event_fn fn,
                                   void *ctx)
{
    cluster_t *cl = node ? node->cluster : NULL;
    int i = hosted_of(cl, name, nlen), left = 0;

    if (i < 0)
        return i;
    for (size_t k = 0; k < cl->nmap_subs;) {
        if (cl->map_subs[k].map == (size_t)i && cl->map_subs[k].fn == fn &&
            cl->map_subs[k].ctx == ctx) {
            /* Order kept: events reach the others in subscription order. */
            memmove(&cl->map_subs[k], &cl->map_subs[k + 1],
                    (cl->nmap_subs - k - 1) * sizeof cl->map_subs[0]);
            cl->nmap_subs--;
            continue;
        }
        left += cl->map_subs[k].map == (size_t)i;
        k++;
    }
    if (left == 0)
        tether_maps_set_notify(tether_maps_find(cl->maps, cl->hosted[i].name,
                                                cl->hosted[i].nlen),
                               0);
    return 0;
}

int tether_cluster_map_sync(tether_node_t *node, const char *name, size_t nlen,
                            tether_cluster_map_synced_fn fn, void *ctx)
{
    cluster_t *cl = node ? node->cluster : NULL;
    uint8_t canon[TETHER_MAPS_NAME_MAX];
    map_log_t *ml;
    map_waiter_t *w;
    size_t n;
    int i;

    if (fn == NULL || name_canon(name, nlen, canon, &n) < 0)
        return TETHER_EINVAL;
    i = cl ? hosted_index(cl, canon, n) : -1;
    if (i < 0 || cl->hosted[i].log == NULL)
        return TETHER_ENOTFOUND;
    ml = cl->hosted[i].log;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return TETHER_ENOMEM;
    w->seq = tether__datalog_appended(ml->log);
    w->fn = fn;
    w->ctx = ctx;
    w->next = ml->waiters;
    ml->waiters = w;
    if (w->seq <= tether__datalog_synced(ml->log))
        map_log_wake(ml, 0);
    else
        map_log_kick(ml);
    return 0;
}

/* The hosted map of the ETF name, or NULL. */
static tether_map_t *map_of(cluster_t *cl, const char *name, size_t len)
{
    uint8_t canon[TETHER_MAPS_NAME_MAX];
    size_t n;

    if (cl == NULL || cl->maps == NULL || name_canon(name, len, canon, &n) < 0)
        return NULL;
    return tether_maps_find(cl->maps, canon, n);
}

/* The canonical bytes of an ETF key, at most max of them, into a
 * malloc'd *out. 0, TETHER_EINVAL (not one term, or a closure),
 * TETHER_ETOOBIG or TETHER_ENOMEM. */
static int key_canon(const char *key, size_t len, size_t max, uint8_t **out,
                     size_t *klen)
{
    int rc;

    *out = NULL;
    if (key == NULL || len > INT32_MAX || !tether_term_valid(key, len))
        return TETHER_EINVAL;
    *out = malloc(max);
    if (*out == NULL)
        return TETHER_ENOMEM;
    rc = tether_ring_canon((const uint8_t *)key, len, *out, max, klen);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        return rc == TETHER_ETOOBIG ? rc : TETHER_EINVAL;
    }
    return 0;
}

static int map_write(tether_node_t *node, const char *name, size_t nlen,
                     const char *key, size_t klen, const char *val, size_t vlen)
{
    cluster_t *cl = node ? node->cluster : NULL;
    tether_map_t *map = map_of(cl, name, nlen);
    uint8_t *k;
    size_t kl = 0;
    int rc;

    if (map == NULL)
        return TETHER_ENOTFOUND;
    if (key_canon(key, klen, TETHER_MAPS_KEY_MAX, &k, &kl) < 0)
        return TETHER_EINVAL;
    tick(cl);
    rc = tether_maps_write(cl->maps, map, k, kl, (const uint8_t *)val, vlen,
                           NULL, NULL);
    free(k);
    run(cl);
    return rc;
}

int tether_cluster_map_put(tether_node_t *node, const char *name, size_t nlen,
                           const char *key, size_t klen, const char *val,
                           size_t vlen)
{
    if (val == NULL || vlen == 0)
        return TETHER_EINVAL;
    return map_write(node, name, nlen, key, klen, val, vlen);
}

int tether_cluster_map_remove(tether_node_t *node, const char *name,
                              size_t nlen, const char *key, size_t klen)
{
    return map_write(node, name, nlen, key, klen, NULL, 0);
}

int tether_cluster_map_get(tether_node_t *node, const char *name, size_t nlen,
                           const char *key, size_t klen, char *out, size_t cap,
                           size_t *vlen)
{
    cluster_t *cl = node ? node->cluster : NULL;
    tether_map_t *map = map_of(cl, name, nlen);
    const uint8_t *v;
    size_t kl = 0, n;
    uint8_t *k;
    int found;

    if (map == NULL)
        return TETHER_ENOTFOUND;
    if (key_canon(key, klen, TETHER_MAPS_KEY_MAX, &k, &kl) < 0)
        return TETHER_EINVAL;
    found = tether_maps_get(map, k, kl, &v, &n);
    free(k);
    if (!found)
        return 0;
    *vlen = n;
    if (n > cap)
        return TETHER_ETOOBIG;
    memcpy(out, v, n);
    return 1;
}

/* -------------------------------------------------------- reminders */

/* Log records appended before the log is looked at for compaction: it is
 * rewritten when it holds more than twice the records the module holds
 * (as tether_reminder.erl does). */
#define RM_COMPACT_MIN 10000

/* The module, or NULL (no cluster, or between engines). */
static cluster_t *with_rm(const tether_node_t *node)
{
    cluster_t *cl = node ? node->cluster : NULL;
    return cl != NULL && cl->rm != NULL ? cl : NULL;
}

/* Creates the reminders module of a fresh engine. A node whose log holds
 * records arms nothing for one TTL: it may be restarting into a cluster
 * whose primaries are alive (tether_reminder:engine_opts/1 does the
 * same). */
static int rm_new(cluster_t *cl, tether_ring_module_t *ring,
                  tether_engine_t *eng, tether_reminders_t **out)
{
    tether_reminders_config_t cfg = {.ring = ring,
                                     .replicas = cl->rm_replicas};
    struct stat st;

    if (cl->rm_dir != NULL && cl->rlog_path == NULL) {
        const char *node = tether_node_name(cl->node);
        size_t n = strlen(cl->rm_dir) + strlen(node) + sizeof "/reminders-.log";
        cl->rlog_path = malloc(n);
        if (cl->rlog_path == NULL)
            return TETHER_ENOMEM;
        snprintf(cl->rlog_path, n, "%s/reminders-%s.log", cl->rm_dir, node);
    }
    if (cl->rlog_path != NULL && stat(cl->rlog_path, &st) == 0 &&
        st.st_size > 0)
        cfg.settle_ms = cl->ttl_ms;
    return tether_reminders_new(&cfg, eng, out);
}

static void rm_log_off(cluster_t *cl, const char *what)
{
    LOG(cl->node, TETHER_LOG_ERROR,
        "cluster: reminder log %s not writable (%s): reminders are not "
        "persisted",
        cl->rlog_path, what);
    cl->rlog_on = false;
}

typedef struct rm_dump {
    tether_datalog_put_fn put;
    void *put_ctx;
    int rc;
} rm_dump_t;

static void rm_dump_one(void *ctx, const uint8_t *rec, size_t len)
{
    rm_dump_t *d = ctx;
    if (d->rc == 0)
        d->rc = d->put(d->put_ctx, rec, len);
}

/* The dump a compaction writes: every record the module holds (live ones
 * and tombstones). */
static int rm_dump(void *ctx, tether_datalog_put_fn put, void *put_ctx)
{
    cluster_t *cl = ctx;
    rm_dump_t d = {put, put_ctx, 0};

    tether_reminders_each(cl->rm, rm_dump_one, &d);
    return d.rc;
}

/* Rewrites the log with what the module holds, then appends to it. */
static void rm_rewrite(cluster_t *cl)
{
    int rc = 0;

    if (cl->rlog == NULL)
        rc = tether__datalog_open(cl->rlog_path, &cl->rlog);
    if (rc == 0)
        rc = tether__datalog_compact(cl->rlog, rm_dump, cl);
    if (rc < 0)
        rm_log_off(cl, rc == TETHER_EIO ? strerror(errno) : tether_strerror(rc));
    else
        cl->rlog_on = true;
}

/* Feeds one record back; one the module refuses is counted there
 * (load_errors) and the rest still load. */
static int rm_load_one(void *ctx, const uint8_t *rec, size_t len)
{
    (void)tether_reminders_load(ctx, rec, len);
    return 0;
}

/* A fresh engine's module: the log is read into it and compacted (a
 * damaged log is copied aside first), and it learns how many subscribers
 * there are. */
static void rm_started(cluster_t *cl)
{
    tether_datalog_info_t info = {0};
    int rc;

    if (cl->rm == NULL)
        return;
    if (cl->rlog_path != NULL) {
        rc = tether__datalog_load(cl->rlog_path, rm_load_one, cl->rm, &info);
        if (rc < 0)
            LOG(cl->node, TETHER_LOG_WARNING,
                "cluster: reminder log %s not read: %s", cl->rlog_path,
                rc == TETHER_EIO ? strerror(errno) : tether_strerror(rc));
        if (info.corrupt > 0 || info.torn_at >= 0 ||
            tether_reminders_stats(cl->rm)->load_errors > 0) {
            LOG(cl->node, TETHER_LOG_WARNING,
                "cluster: reminder log %s: %llu records kept, %llu corrupt, "
                "%llu refused, torn at byte %lld",
                cl->rlog_path, (unsigned long long)info.records,
                (unsigned long long)info.corrupt,
                (unsigned long long)tether_reminders_stats(cl->rm)->load_errors,
                (long long)info.torn_at);
            if (info.corrupt > 0 &&
                tether__datalog_keep_corrupt(cl->rlog_path) < 0)
                LOG(cl->node, TETHER_LOG_WARNING,
                    "cluster: reminder log %s not copied aside: %s",
                    cl->rlog_path, strerror(errno));
        }
        rm_rewrite(cl);
    }
    tether_reminders_subscribers(cl->rm, cl->nrm_subs);
}

/* Makes what the log was given durable before anything that tells
 * another node (or a caller) that this node holds it. */
static void rm_flush(cluster_t *cl)
{
    uint64_t upto;

    if (!cl->rlog_on ||
        (upto = tether__datalog_appended(cl->rlog)) ==
            tether__datalog_synced(cl->rlog))
        return;
    if (tether__datalog_sync(cl->rlog) < 0)
        rm_log_off(cl, strerror(errno));
    else
        tether__datalog_synced_to(cl->rlog, upto);
}

static void rm_compact_maybe(cluster_t *cl)
{
    const tether_reminders_stats_t *st;
    uint64_t since;

    if (!cl->rlog_on || cl->rm == NULL ||
        (since = tether__datalog_since_compact(cl->rlog)) < RM_COMPACT_MIN)
        return;
    st = tether_reminders_stats(cl->rm);
    if (since > 2 * (st->pending + st->tombs))
        rm_rewrite(cl);
}

/* Reserves room for one more waiting call. 0 or TETHER_ENOMEM. */
static int rm_wait_reserve(cluster_t *cl)
{
    size_t cap;
    rm_wait_t *v;

    if (cl->nrm_waits < cl->caprm_waits)
        return 0;
    cap = cl->caprm_waits ? cl->caprm_waits * 2 : EVENTS_INITIAL;
    v = realloc(cl->rm_waits, cap * sizeof *v);
    if (v == NULL)
        return TETHER_ENOMEM;
    cl->rm_waits = v;
    cl->caprm_waits = cap;
    return 0;
}

/* Encodes a REMINDER_REPLY's answer as the BEAM server replies it. */
static int encode_rm_reply(ei_x_buff *x, const tether_action_t *a)
{
    switch (a->u.reminder_reply.status) {
    case TETHER_REMINDER_OK:
        return ei_x_encode_atom(x, "ok");
    case TETHER_REMINDER_NOT_FOUND:
        return ei_x_encode_atom(x, "not_found");
    case TETHER_REMINDER_FOUND:
        return ei_x_encode_tuple_header(x, 3) < 0 ||
                       ei_x_encode_atom(x, "ok") < 0 ||
                       ei_x_encode_longlong(x,
                                            a->u.reminder_reply.fire_at) < 0 ||
                       append_term(x, a->u.reminder_reply.payload.ptr,
                                   a->u.reminder_reply.payload.len) < 0
                   ? -1
                   : 0;
    default:
        return ei_x_encode_tuple_header(x, 2) < 0 ||
                       ei_x_encode_atom(x, "error") < 0 ||
                       ei_x_encode_atom(x, "timeout") < 0
                   ? -1
                   : 0;
    }
}

/* Answers the call waiting for a REMINDER_REPLY. */
static void rm_answer(cluster_t *cl, const tether_action_t *a)
{
    int st = a->u.reminder_reply.status;
    rm_wait_t w;
    size_t i;

    for (i = 0; i < cl->nrm_waits; i++)
        if (cl->rm_waits[i].ref == a->u.reminder_reply.ref)
            break;
    if (i == cl->nrm_waits)
        return;
    w = cl->rm_waits[i];
    cl->rm_waits[i] = cl->rm_waits[--cl->nrm_waits];
    if (w.from != NULL) {
        ei_x_buff x;
        if (ei_x_new_with_version(&x) == 0 && encode_rm_reply(&x, a) == 0)
            (void)tether_reply(w.from, x.buff, (size_t)x.index);
        else
            tether_from_free(w.from);
        ei_x_free(&x);
    } else if (w.done != NULL) {
        w.done(cl->node, st == TETHER_REMINDER_OK ? 0 : TETHER_ETIMEDOUT,
               w.ctx);
    } else if (w.got != NULL) {
        w.got(cl->node,
              st == TETHER_REMINDER_FOUND       ? 1
              : st == TETHER_REMINDER_NOT_FOUND ? 0
                                                : TETHER_ETIMEDOUT,
              a->u.reminder_reply.fire_at,
              (const char *)a->u.reminder_reply.payload.ptr,
              a->u.reminder_reply.payload.len, w.ctx);
    }
}

/* The engine stopped (a leave, then a join): every waiting call is
 * answered {error, not_distributed} (an Erlang caller, as the BEAM
 * server answers) or TETHER_ECLOSED (C). */
static void rm_stopped(cluster_t *cl)
{
    rm_wait_t *v = cl->rm_waits;
    size_t n = cl->nrm_waits;

    cl->rm = NULL;
    cl->rm_waits = NULL;
    cl->nrm_waits = cl->caprm_waits = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].from != NULL) {
            ei_x_buff x;
            if (ei_x_new_with_version(&x) == 0 &&
                ei_x_encode_tuple_header(&x, 2) == 0 &&
                ei_x_encode_atom(&x, "error") == 0 &&
                ei_x_encode_atom(&x, "not_distributed") == 0)
                (void)tether_reply(v[i].from, x.buff, (size_t)x.index);
            else
                tether_from_free(v[i].from);
            ei_x_free(&x);
        } else if (v[i].done != NULL) {
            v[i].done(cl->node, TETHER_ECLOSED, v[i].ctx);
        } else if (v[i].got != NULL) {
            v[i].got(cl->node, TETHER_ECLOSED, 0, NULL, 0, v[i].ctx);
        }
    }
    free(v);
}

/* A reminder fires here: every C subscriber hears (a copy of the table,
 * since a callback may unsubscribe). */
static void rm_deliver(cluster_t *cl, const tether_action_t *a)
{
    size_t n = cl->nrm_subs;
    __typeof__(cl->rm_subs[0]) subs[TETHER_CLUSTER_REMINDER_SUBS_MAX];

    memcpy(subs, cl->rm_subs, n * sizeof subs[0]);
    for (size_t i = 0; i < n; i++)
        subs[i].fn(cl->node, (const char *)a->u.reminder.key.ptr,
                   a->u.reminder.key.len,
                   (const char *)a->u.reminder.payload.ptr,
                   a->u.reminder.payload.len, a->u.reminder.fence,
                   subs[i].ctx);
}

static void reminder_event(cluster_t *cl, const tether_action_t *a)
{
    int rc;

    switch (a->kind) {
    case TETHER_ACT_REMINDER:
        rm_flush(cl);
        rm_deliver(cl, a);
        break;
    case TETHER_ACT_REMINDER_REPLY:
        /* Our own replica's record is on disk before the caller hears. */
        rm_flush(cl);
        rm_answer(cl, a);
        break;
    default:
        if (!cl->rlog_on)
            break;
        rc = tether__datalog_append(cl->rlog, a->u.reminder_store.rec.ptr,
                                    a->u.reminder_store.rec.len, NULL);
        if (rc < 0)
            rm_log_off(cl, rc == TETHER_EIO ? strerror(errno)
                                            : tether_strerror(rc));
        break;
    }
}

/* The error of a refused write, as the BEAM answers it. */
static const char *rm_error_atom(int rc)
{
    if (rc == TETHER_ECLOSED)
        return "left";
    if (rc == TETHER_ETOOBIG)
        return "payload_too_large";
    return error_atom(rc);
}

static int encode_atom_error(ei_x_buff *x, const char *reason)
{
    return ei_x_encode_tuple_header(x, 2) < 0 ||
                   ei_x_encode_atom(x, "error") < 0 ||
                   ei_x_encode_atom(x, reason) < 0
               ? -1
               : 0;
}

/* Records a waiting call (room reserved). */
static void rm_wait_add(cluster_t *cl, uint64_t ref, tether_from_t *from,
                        tether_cluster_remind_done_fn done,
                        tether_cluster_reminder_got_fn got, void *ctx)
{
    cl->rm_waits[cl->nrm_waits++] =
        (rm_wait_t){.ref = ref, .from = from, .done = done, .got = got,
                    .ctx = ctx};
}

/*
 * {reminder, Req} from an Erlang caller, with the BEAM server's shapes:
 * {set, Key, FireAtMs, Payload, Skip}, {cancel, Key} -> ok | {error, _}
 * once a majority answered; {get, Key} -> {ok, FireAtMs, Payload} |
 * not_found | {error, _}. Anything else: {error, badarg}.
 */
static int call_reminder(cluster_t *cl, const char *buf, int idx,
                         int from_index, ei_x_buff *x)
{
    char tag[MAXATOMLEN_UTF8], skip[MAXATOMLEN_UTF8];
    uint8_t *key = NULL;
    char *payload = NULL;
    size_t klen = 0, plen = 0, pl = 0;
    long long at = 0;
    int arity, start, rc, type, size;
    uint64_t ref = cl->rm_next_ref;
    int64_t fire_at = 0;
    const uint8_t *p = NULL;
    tether_from_t *from;

    if (cl->rm == NULL)
        return encode_atom_error(x, "not_distributed");
    if (ei_decode_tuple_header(buf, &idx, &arity) < 0 || arity < 2 ||
        ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                          NULL) < 0 ||
        !((strcmp(tag, "set") == 0 && arity == 5) ||
          (strcmp(tag, "cancel") == 0 && arity == 2) ||
          (strcmp(tag, "get") == 0 && arity == 2)))
        return encode_atom_error(x, "badarg");
    rc = term_canon_at(buf, &idx, TETHER_REMINDER_KEY_MAX, &key, &klen);
    if (rc < 0)
        return encode_atom_error(x, rc == TETHER_ENOMEM ? "enomem" : "bad_key");
    if (rm_wait_reserve(cl) < 0) {
        free(key);
        return encode_atom_error(x, "enomem");
    }
    tick(cl);
    if (strcmp(tag, "set") == 0) {
        if (ei_get_type(buf, &idx, &type, &size) < 0 ||
            (type != ERL_SMALL_INTEGER_EXT && type != ERL_INTEGER_EXT &&
             type != ERL_SMALL_BIG_EXT) ||
            ei_decode_longlong(buf, &idx, &at) < 0 ||
            term_range(buf, &idx, &start) < 0 ||
            ei_decode_atom_as(buf, &idx, skip, sizeof skip, ERLANG_UTF8, NULL,
                              NULL) < 0 ||
            (strcmp(skip, "true") != 0 && strcmp(skip, "false") != 0)) {
            free(key);
            return encode_atom_error(x, "badarg");
        }
        /* Back over Skip to cut the Payload's bytes. */
        {
            int end = start;
            (void)ei_skip_term(buf, &end);
            payload = with_version(buf, start, end, &plen);
        }
        rc = payload == NULL
                 ? TETHER_ENOMEM
                 : tether_reminders_set(cl->rm, key, klen, (int64_t)at,
                                        (const uint8_t *)payload, plen,
                                        strcmp(skip, "true") == 0
                                            ? TETHER_REMINDER_SKIP
                                            : 0,
                                        ref);
        free(payload);
    } else if (strcmp(tag, "cancel") == 0) {
        rc = tether_reminders_cancel(cl->rm, key, klen, ref);
    } else {
        rc = tether_reminders_get(cl->rm, key, klen, ref, &fire_at, &p, &pl);
        if (rc == 1) {
            free(key);
            return ei_x_encode_tuple_header(x, 3) < 0 ||
                           ei_x_encode_atom(x, "ok") < 0 ||
                           ei_x_encode_longlong(x, fire_at) < 0 ||
                           append_term(x, p, pl) < 0
                       ? -1
                       : 0;
        }
        if (rc == 0) {
            free(key);
            return ei_x_encode_atom(x, "not_found");
        }
    }
    free(key);
    if (rc < 0)
        return encode_atom_error(x, rm_error_atom(rc));
    cl->rm_next_ref++;
    from = tether__from_new(cl->node, &cl->pid, buf, from_index);
    if (from == NULL)
        return encode_atom_error(x, "enomem");
    rm_wait_add(cl, ref, from, NULL, NULL, NULL);
    return 1;
}

/* reminder_info: the module's counters and overhead_bytes. */
static int encode_reminder_info(cluster_t *cl, ei_x_buff *x)
{
    tether_reminders_stat_t v[TETHER_REMINDERS_STATS_N];

    if (cl->rm == NULL)
        return encode_atom_error(x, "not_distributed");
    tether_reminders_stats_list(tether_reminders_stats(cl->rm), v);
    if (ei_x_encode_map_header(x, TETHER_REMINDERS_STATS_N + 2) < 0 ||
        ei_x_encode_atom(x, "overhead_bytes") < 0 ||
        ei_x_encode_ulonglong(x, tether_reminders_overhead(cl->rm)) < 0 ||
        ei_x_encode_atom(x, "persisted") < 0 ||
        ei_x_encode_boolean(x, cl->rlog_on) < 0)
        return -1;
    for (size_t i = 0; i < TETHER_REMINDERS_STATS_N; i++)
        if (ei_x_encode_atom(x, v[i].name) < 0 ||
            ei_x_encode_ulonglong(x, v[i].value) < 0)
            return -1;
    return 0;
}

/* The start of a call from C on key: its canonical bytes into a malloc'd
 * *k, room for its waiting entry, its ref, and the time passed to the
 * engine. 0 or an error (nothing to free then). */
static int rm_begin(cluster_t *cl, const char *key, size_t klen, uint8_t **k,
                    size_t *kl, uint64_t *ref)
{
    int rc = key_canon(key, klen, TETHER_CLUSTER_REMINDER_KEY_MAX, k, kl);

    if (rc < 0)
        return rc;
    if ((rc = rm_wait_reserve(cl)) < 0) {
        free(*k);
        *k = NULL;
        return rc;
    }
    *ref = cl->rm_next_ref++;
    tick(cl);
    return 0;
}

/* A write from C: set (cancel false) or cancel. */
static int rm_write(tether_node_t *node, const char *key, size_t klen,
                    bool cancel, int64_t fire_at, const char *payload,
                    size_t plen, unsigned flags,
                    tether_cluster_remind_done_fn done, void *ctx)
{
    cluster_t *cl = with_rm(node);
    uint64_t ref;
    uint8_t *k;
    size_t kl = 0;
    int rc;

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    if ((flags & ~TETHER_CLUSTER_REMINDER_SKIP) != 0)
        return TETHER_EINVAL;
    if (!cancel) {
        if (plen > TETHER_CLUSTER_REMINDER_PAYLOAD_MAX)
            return TETHER_ETOOBIG;
        if (payload == NULL || !tether_term_valid(payload, plen))
            return TETHER_EINVAL;
    }
    if ((rc = rm_begin(cl, key, klen, &k, &kl, &ref)) < 0)
        return rc;
    rc = cancel ? tether_reminders_cancel(cl->rm, k, kl, ref)
                : tether_reminders_set(cl->rm, k, kl, fire_at,
                                       (const uint8_t *)payload, plen,
                                       (flags & TETHER_CLUSTER_REMINDER_SKIP)
                                           ? TETHER_REMINDER_SKIP
                                           : 0,
                                       ref);
    free(k);
    if (rc == 0)
        rm_wait_add(cl, ref, NULL, done, NULL, ctx);
    run(cl);
    return rc;
}

int tether_cluster_remind(tether_node_t *node, const char *key, size_t klen,
                          int64_t fire_at_ms, const char *payload, size_t plen,
                          unsigned flags, tether_cluster_remind_done_fn done,
                          void *ctx)
{
    return rm_write(node, key, klen, false, fire_at_ms, payload, plen, flags,
                    done, ctx);
}

int tether_cluster_remind_after(tether_node_t *node, const char *key,
                                size_t klen, uint64_t delay_ms,
                                const char *payload, size_t plen,
                                unsigned flags,
                                tether_cluster_remind_done_fn done, void *ctx)
{
    uint64_t now = realtime_us() / 1000u;

    if (delay_ms > (uint64_t)INT64_MAX - now)
        return TETHER_EINVAL;
    return rm_write(node, key, klen, false, (int64_t)(now + delay_ms),
                    payload, plen, flags, done, ctx);
}

int tether_cluster_cancel_reminder(tether_node_t *node, const char *key,
                                   size_t klen,
                                   tether_cluster_remind_done_fn done,
                                   void *ctx)
{
    return rm_write(node, key, klen, true, 0, NULL, 0, 0, done, ctx);
}

int tether_cluster_reminder(tether_node_t *node, const char *key, size_t klen,
                            tether_cluster_reminder_got_fn got, void *ctx)
{
    cluster_t *cl = with_rm(node);
    int64_t fire_at = 0;
    const uint8_t *p = NULL;
    size_t kl = 0, pl = 0;
    uint64_t ref;
    uint8_t *k;
    int rc;

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    if (got == NULL)
        return TETHER_EINVAL;
    if ((rc = rm_begin(cl, key, klen, &k, &kl, &ref)) < 0)
        return rc;
    rc = tether_reminders_get(cl->rm, k, kl, ref, &fire_at, &p, &pl);
    free(k);
    if (rc == 1 || rc == 0)
        got(node, rc, fire_at, (const char *)p, pl, ctx);
    else if (rc == 2)
        rm_wait_add(cl, ref, NULL, NULL, got, ctx);
    run(cl);
    return rc < 0 ? rc : 0;
}

int tether_cluster_subscribe_reminders(tether_node_t *node,
                                       tether_cluster_reminder_fn fn,
                                       void *ctx)
{
    cluster_t *cl = with_rm(node);

    if (fn == NULL)
        return TETHER_EINVAL;
    if (cl == NULL)
        return TETHER_ENOTFOUND;
    for (size_t i = 0; i < cl->nrm_subs; i++)
        if (cl->rm_subs[i].fn == fn && cl->rm_subs[i].ctx == ctx)
            return TETHER_EEXIST;
    if (cl->nrm_subs == TETHER_CLUSTER_REMINDER_SUBS_MAX)
        return TETHER_ETOOBIG;
    cl->rm_subs[cl->nrm_subs].fn = fn;
    cl->rm_subs[cl->nrm_subs++].ctx = ctx;
    tick(cl);
    tether_reminders_subscribers(cl->rm, cl->nrm_subs);
    run(cl);
    return 0;
}

int tether_cluster_unsubscribe_reminders(tether_node_t *node,
                                         tether_cluster_reminder_fn fn,
                                         void *ctx)
{
    cluster_t *cl = with_rm(node);

    if (cl == NULL)
        return TETHER_ENOTFOUND;
    for (size_t i = 0; i < cl->nrm_subs; i++)
        if (cl->rm_subs[i].fn == fn && cl->rm_subs[i].ctx == ctx) {
            memmove(&cl->rm_subs[i], &cl->rm_subs[i + 1],
                    (cl->nrm_subs - i - 1) * sizeof cl->rm_subs[0]);
            cl->nrm_subs--;
            tether_reminders_subscribers(cl->rm, cl->nrm_subs);
            return 0;
        }
    return TETHER_ENOTFOUND;
}
