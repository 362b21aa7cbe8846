/*
 * sim/sim.c: the deterministic cluster simulator (see sim.h).
 *
 * The simulator plays the shell for every engine: it owns the virtual
 * clock, the connections (one per pair, with an epoch so bytes of a cut
 * connection never arrive on the next one) and the network (a heap of
 * in-flight messages ordered by delivery time, then by send order).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/election.h"
#include "core/module.h"
#include "core/reminders.h"
#include "core/engine.h"
#include "core/maps.h"
#include "core/registry.h"
#include "core/relay.h"
#include "core/ring.h"
#include "sim/rng.h"
#include "sim/sim.h"
#include "tether/error.h"

#define SIM_NAME_MAX      32
#define SIM_REFS_MAX      48
#define SIM_QUIET_MARGIN  1000 /* ms of checked run after the bound */
#define SIM_DEFAULT_STEPS 3000
#define SIM_REG_NAMES     8  /* the pool of registry names */
#define SIM_MAP_KEYS      16 /* the pool of map keys */
#define SIM_RING_SHARDS   64
#define SIM_EL_NAMES      3   /* {el, 0}, {el, 1}: default mode; {el, 2}: */
#define SIM_EL_QUORUM     2   /* quorum mode */
#define SIM_EL_VOTERS     5   /* voters: the first 3 or 5 nodes */
#define SIM_EL_SKEW       40  /* ms each wall clock may be off, either way */
#define SIM_RM_KEYS       16  /* the pool of reminder keys */
#define SIM_RM_MAX        512 /* reminder writes tracked per run */
#define SIM_RM_REPLICAS   3

static uint64_t steps_total;

uint64_t tether_sim_steps_total(void)
{
    return steps_total;
}

typedef struct simnode {
    char name[SIM_NAME_MAX];
    tether_engine_t *eng;       /* NULL while crashed */
    tether_registry_t *reg;     /* with eng */
    tether_ring_module_t *ring; /* with eng */
    tether_election_t *el;      /* with eng */
    tether_reminders_t *rm;     /* with eng */
    tether_maps_t *maps;        /* with eng */
    tether_map_t *map;          /* the map every node hosts */
    int el_cand[SIM_EL_NAMES];  /* a candidate of this incarnation */
    int64_t el_prio[SIM_EL_NAMES];
    int el_leading[SIM_EL_NAMES]; /* as its actions said */
    uint64_t el_fence[SIM_EL_NAMES];
    uint64_t inc; /* current (or last) incarnation */
    int left;     /* this incarnation left */
    uint64_t last_tick;
    int ticked;
} simnode_t;

/* One election established (an ELECTED, or a lead that led at once):
 * by whom, with what fence, and the incarnation of every node its view
 * listed live then (0: not live), which acknowledged the fence. */
typedef struct el_est {
    int node;
    uint64_t inc, fence;
    uint64_t live_inc[TETHER_SIM_NODES_MAX];
} el_est_t;

/* One reminder write of the run (a set, or a cancel when cancel is set):
 * when issued and acknowledged (0: not), its fire time (sim time), the
 * Fence its deliveries carried, how often and when first delivered, and
 * the crashes and leaves of the run when it was acknowledged, and how
 * many replicas the writer's view of the ring had then. */
typedef struct rm_write {
    int key, cancel;
    uint64_t issued, acked, fire_at, fence, first;
    int delivered;
    uint64_t losses_at_ack;
    int replicas_at_ack; /* copies the writer's ring asked for (R or fewer) */
    int churn_at_ack;    /* a partition or churn around the ack: the
                            replicas outside the acking majority may not
                            get it before those are lost */
} rm_write_t;

typedef struct msg {
    uint64_t at, seq;
    int src, dst;
    uint32_t epoch;
    uint8_t *data;
    size_t len;
} msg_t;

typedef struct sim {
    tether_sim_config_t cfg;
    tether_sim_result_t *res;
    tether_sim_rng_t rng;
    uint64_t now;
    int n;
    simnode_t nodes[TETHER_SIM_NODES_MAX];
    uint8_t conn[TETHER_SIM_NODES_MAX][TETHER_SIM_NODES_MAX];
    uint32_t epoch[TETHER_SIM_NODES_MAX][TETHER_SIM_NODES_MAX];
    uint64_t seen_left[TETHER_SIM_NODES_MAX][TETHER_SIM_NODES_MAX];
    /* Defer hold: j saw i live across a defer partition on connection
     * epoch hold_epoch and incarnation hold_inc (0: no hold). */
    uint64_t hold_inc[TETHER_SIM_NODES_MAX][TETHER_SIM_NODES_MAX];
    uint32_t hold_epoch[TETHER_SIM_NODES_MAX][TETHER_SIM_NODES_MAX];
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];

    msg_t *heap;
    size_t hn, hcap;
    uint64_t msg_seq;

    uint64_t *seen; /* open-addressed set of accepted envelopes, 0 empty */
    size_t seen_n, seen_cap;

    uint8_t *user_seen; /* bitmap of delivered module message ids */
    uint8_t *user_from, *user_to; /* each id's sender and destination */
    uint64_t user_next, user_cap;

    uint64_t refs[SIM_REFS_MAX];
    size_t nrefs;

    int chaos;
    int checking; /* agreement is enforced */
    const char *expect[TETHER_SIM_NODES_MAX + 1];
    size_t nexpect;
    int touched;           /* node the current step touched, -1 none */
    uint64_t reg_pid_next; /* registry pids are never reused */
    uint64_t map_value;    /* the last value a map write made */

    el_est_t *est[SIM_EL_NAMES]; /* default names: every establishment */
    size_t nest[SIM_EL_NAMES], capest[SIM_EL_NAMES];
    uint64_t q_fence_max; /* the quorum name's highest fence established */
    rm_write_t rm[SIM_RM_MAX];
    int nrm;
    uint64_t last_chaos;  /* sim time of the last chaos operation */
    uint64_t last_member; /* ... of the last member up or down anywhere */
    struct {
        int node;
        uint64_t inc, since, until;
    } qlast; /* the quorum name's last leadership seen, and its lease */
} sim_t;

/* --------------------------------------------------------- failures */

static void fail(sim_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(sim_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail(sim_t *s, const char *fmt, ...)
{
    va_list ap;
    int off;

    if (s->res->failed)
        return;
    s->res->failed = 1;
    s->res->fail_step = s->res->steps;
    off = snprintf(s->res->reason, sizeof s->res->reason,
                   "step %llu t=%llums: ", (unsigned long long)s->res->steps,
                   (unsigned long long)s->now);
    if (off < 0 || (size_t)off >= sizeof s->res->reason)
        return;
    va_start(ap, fmt);
    vsnprintf(s->res->reason + off, sizeof s->res->reason - (size_t)off, fmt,
              ap);
    va_end(ap);
}

static void note(sim_t *s, const char *fmt, ...)
{
    va_list ap;

    if (!s->cfg.verbose)
        return;
    fprintf(stderr, "[%llu t=%llu] ", (unsigned long long)s->res->steps,
            (unsigned long long)s->now);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------- network */

static int msg_less(const msg_t *a, const msg_t *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(sim_t *s, msg_t m)
{
    size_t i;

    if (s->hn == s->hcap) {
        size_t cap = s->hcap ? s->hcap * 2 : 256;
        msg_t *v = realloc(s->heap, cap * sizeof *v);
        if (v == NULL)
            return TETHER_ENOMEM;
        s->heap = v;
        s->hcap = cap;
    }
    i = s->hn++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!msg_less(&m, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = m;
    return 0;
}

static msg_t heap_pop(sim_t *s)
{
    msg_t top = s->heap[0], last = s->heap[--s->hn];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->hn)
            break;
        if (c + 1 < s->hn && msg_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!msg_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->hn > 0)
        s->heap[i] = last;
    return top;
}

static int find_node(const sim_t *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static uint64_t delay(sim_t *s)
{
    return s->cfg.delay_min_ms +
           tether_sim_rng_below(&s->rng, (uint64_t)s->cfg.delay_max_ms -
                                             s->cfg.delay_min_ms + 1);
}

/* Puts bytes from src on the wire to dst (taking ownership of data). */
static void net_send(sim_t *s, int src, int dst, uint8_t *data, size_t len)
{
    msg_t m;

    s->res->messages_sent++;
    if (dst < 0 || !s->conn[src][dst] ||
        (s->chaos && tether_sim_rng_chance(&s->rng, s->cfg.loss_pm))) {
        s->res->messages_lost++;
        free(data);
        return;
    }
    m.src = src;
    m.dst = dst;
    m.epoch = s->epoch[src][dst];
    if (s->chaos && tether_sim_rng_chance(&s->rng, s->cfg.dup_pm)) {
        msg_t d = m;
        d.data = malloc(len);
        if (d.data != NULL) {
            memcpy(d.data, data, len);
            d.len = len;
            d.at = s->now + delay(s);
            d.seq = s->msg_seq++;
            if (heap_push(s, d) < 0)
                free(d.data);
            else
                s->res->messages_duplicated++;
        }
    }
    m.data = data;
    m.len = len;
    m.at = s->now + delay(s);
    m.seq = s->msg_seq++;
    if (heap_push(s, m) < 0)
        free(data);
}

/* ------------------------------------------------------- connections */

static void connect_pair(sim_t *s, int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;

    if (a == b || s->conn[a][b] || s->nodes[a].eng == NULL ||
        s->nodes[b].eng == NULL)
        return;
    s->conn[a][b] = s->conn[b][a] = 1;
    s->epoch[a][b]++;
    s->epoch[b][a] = s->epoch[a][b];
    /* Both ends learn of the connection in a fixed order. */
    (void)tether_engine_peer_up(s->nodes[lo].eng, s->nodes[hi].name);
    (void)tether_engine_peer_up(s->nodes[hi].eng, s->nodes[lo].name);
}

static void cut_pair(sim_t *s, int a, int b)
{
    if (!s->conn[a][b])
        return;
    s->conn[a][b] = s->conn[b][a] = 0;
    if (s->nodes[a].eng != NULL)
        (void)tether_engine_peer_down(s->nodes[a].eng, s->nodes[b].name);
    if (s->nodes[b].eng != NULL)
        (void)tether_engine_peer_down(s->nodes[b].eng, s->nodes[a].name);
}

static void reg_resolve(sim_t *s, int i, const tether_action_t *a);
static void rm_action(sim_t *s, int i, const tether_action_t *a);
static void on_user(sim_t *s, int i, const tether_action_t *a);
static void el_action(sim_t *s, int i, const tether_action_t *a);

/* Carries out every pending action of every running engine: the
 * simulator's shell. */
static void drain(sim_t *s)
{
    int again = 1;

    while (again) {
        again = 0;
        for (int i = 0; i < s->n; i++) {
            tether_action_t a;
            if (s->nodes[i].eng == NULL)
                continue;
            while (s->nodes[i].eng != NULL &&
                   tether_engine_next_action(s->nodes[i].eng, &a)) {
                int j = find_node(s, a.peer);
                again = 1;
                switch (a.kind) {
                case TETHER_ACT_SEND:
                    net_send(s, i, j, tether_engine_action_take(&a),
                             a.u.send.bytes.len);
                    break;
                case TETHER_ACT_CONNECT:
                    if (j >= 0)
                        connect_pair(s, i, j);
                    break;
                case TETHER_ACT_MESSAGE:
                    on_user(s, i, &a);
                    break;
                case TETHER_ACT_REG_LOST:
                    s->res->reg_conflicts++;
                    break;
                case TETHER_ACT_REG_RESOLVE:
                    s->res->reg_conflicts++;
                    reg_resolve(s, i, &a);
                    break;
                case TETHER_ACT_LEADER:
                    el_action(s, i, &a);
                    break;
                case TETHER_ACT_MEMBER:
                    s->last_member = s->now;
                    break;
                case TETHER_ACT_SERVICE:
                case TETHER_ACT_JOIN:
                case TETHER_ACT_SHARD:
                case TETHER_ACT_LOG:
                case TETHER_ACT_MAP:
                case TETHER_ACT_MAP_STORE:
                case TETHER_ACT_REMINDER_STORE:
                    break;
                case TETHER_ACT_REMINDER:
                case TETHER_ACT_REMINDER_REPLY:
                    rm_action(s, i, &a);
                    break;
                }
                tether_engine_action_release(&a);
            }
        }
    }
}

/* ----------------------------------------------------------- checks */

static void on_open(void *ctx, const char *self, const char *from,
                    const uint8_t sid[TETHER_ENV_SID_BYTES], uint64_t seq);

static int seen_insert(sim_t *s, uint64_t key)
{
    size_t i;

    if (key == 0)
        key = 1;
    if ((s->seen_n + 1) * 2 > s->seen_cap) {
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 4096;
        uint64_t *v = calloc(cap, sizeof *v);
        if (v == NULL)
            return TETHER_ENOMEM;
        for (size_t k = 0; k < s->seen_cap; k++) {
            if (s->seen[k] == 0)
                continue;
            for (i = s->seen[k] & (cap - 1); v[i] != 0; i = (i + 1) & (cap - 1))
                ;
            v[i] = s->seen[k];
        }
        free(s->seen);
        s->seen = v;
        s->seen_cap = cap;
    }
    for (i = key & (s->seen_cap - 1); s->seen[i] != 0;
         i = (i + 1) & (s->seen_cap - 1))
        if (s->seen[i] == key)
            return 1;
    s->seen[i] = key;
    s->seen_n++;
    return 0;
}

static uint64_t mix_bytes(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void on_open(void *ctx, const char *self, const char *from,
                    const uint8_t sid[TETHER_ENV_SID_BYTES], uint64_t seq)
{
    sim_t *s = ctx;
    uint64_t h = UINT64_C(0xcbf29ce484222325), st;
    int rc;

    h = mix_bytes(h, self, strlen(self) + 1);
    h = mix_bytes(h, sid, TETHER_ENV_SID_BYTES);
    h = mix_bytes(h, &seq, sizeof seq);
    st = h;
    h = tether_sim_splitmix64(&st);
    s->res->envelopes_opened++;
    rc = seen_insert(s, h);
    if (rc == 0 && s->cfg.break_dup_check && s->res->envelopes_opened == 1)
        rc = seen_insert(s, h);
    if (rc > 0)
        fail(s, "envelope accepted twice: %s from %s seq %llu", self, from,
             (unsigned long long)seq);
}

/*
 * The sim's own messages (SHELL type, as MESSAGE actions; {sim, Id} sent
 * straight, {simr, Id} relayed round a cut path). The invariant, for
 * both: a message is delivered only at the node it was sent to, as from
 * the node that sent it (for a relayed one: only if its origin sent it),
 * and at most once.
 */
static void on_user(sim_t *s, int i, const tether_action_t *a)
{
    const char *etf = (const char *)a->u.message.etf.ptr;
    int idx = 0, version, arity;
    unsigned long long id;
    char tag[MAXATOMLEN_UTF8];

    if (tether__etf_validate(etf, a->u.message.etf.len) < 0 ||
        ei_decode_version(etf, &idx, &version) < 0 ||
        ei_decode_tuple_header(etf, &idx, &arity) < 0 || arity != 2 ||
        ei_decode_atom(etf, &idx, tag) < 0 ||
        ei_decode_ulonglong(etf, &idx, &id) < 0 || id >= s->user_next) {
        fail(s, "%s: undecodable module message", s->nodes[i].name);
        return;
    }
    if (s->user_to[id] != i ||
        strcmp(a->peer, s->nodes[s->user_from[id]].name) != 0) {
        fail(s, "%s: module message %llu (%s) from %s, but %s sent it to %s",
             s->nodes[i].name, id, tag, a->peer,
             s->nodes[s->user_from[id]].name, s->nodes[s->user_to[id]].name);
        return;
    }
    if (s->user_seen[id / 8] & (1u << (id % 8))) {
        fail(s, "%s: module message %llu (%s) delivered twice",
             s->nodes[i].name, id, tag);
        return;
    }
    s->user_seen[id / 8] |= (uint8_t)(1u << (id % 8));
    s->res->user_delivered++;
    if (strcmp(tag, "simr") == 0)
        s->res->relay_delivered++;
}

/*
 * The partition decision. Across a drop partition (as this node knows it)
 * the other side is never a live member: calls fail with nodedown at once.
 * Across a defer partition a live member stays live
 * (its calls hang, they do not fail) until the connection is lost, it is
 * known to have left or to have restarted, or the partition turns into a
 * drop one or heals.
 */
static int check_hold(sim_t *s, int j, int i, const tether_member_t *m)
{
    const tether_partition_table_t *pt;
    int mode;

    if (s->nodes[j].left) {
        s->hold_inc[j][i] = 0;
        return 0;
    }
    /* Neither live nor held: nothing below can fail or start a hold. */
    if (!m->live && s->hold_inc[j][i] == 0)
        return 0;
    pt = tether_engine_partitions(s->nodes[j].eng);
    mode = tether__partition_between(pt, s->nodes[j].name, s->nodes[i].name);
    if (mode == TETHER_PARTITION_DROP && m->live) {
        fail(s, "%s still lists %s across a drop partition", s->nodes[j].name,
             s->nodes[i].name);
        return -1;
    }
    /* A hold ends when the member restarts: its signed restart notice
     * ends the old incarnation's session (core/engine.h). */
    if (mode != TETHER_PARTITION_DEFER || !s->conn[j][i] ||
        m->status != TETHER_MEMBER_ALIVE || m->incarnation != s->nodes[i].inc) {
        s->hold_inc[j][i] = 0;
        return 0;
    }
    if (s->hold_inc[j][i] == m->incarnation &&
        s->hold_epoch[j][i] == s->epoch[j][i] && !m->live) {
        fail(s, "%s declared %s down across a defer partition",
             s->nodes[j].name, s->nodes[i].name);
        return -1;
    }
    if (m->live) {
        s->hold_inc[j][i] = m->incarnation;
        s->hold_epoch[j][i] = s->epoch[j][i];
    } else {
        s->hold_inc[j][i] = 0;
    }
    return 0;
}

/* Checks node j's member view after a step that touched it. */
static void check_node(sim_t *s, int j)
{
    const char *mem[TETHER_SIM_NODES_MAX + 8];
    const tether_membership_t *ms;
    tether_engine_t *e = s->nodes[j].eng;
    size_t n;

    if (e == NULL)
        return;
    n = tether_engine_members(e, mem, TETHER_SIM_NODES_MAX + 8);
    if (n > TETHER_SIM_NODES_MAX + 8) {
        fail(s, "%s: %zu members", s->nodes[j].name, n);
        return;
    }
    for (size_t k = 1; k < n; k++)
        if (strcmp(mem[k - 1], mem[k]) >= 0) {
            fail(s, "%s: members not sorted", s->nodes[j].name);
            return;
        }
    ms = tether_engine_membership(e);
    for (int i = 0; i < s->n; i++) {
        const tether_member_t *m =
            tether__membership_find(ms, s->nodes[i].name);
        if (m == NULL || m->is_self)
            continue;
        if (m->status == TETHER_MEMBER_LEFT &&
            m->incarnation > s->seen_left[j][i])
            s->seen_left[j][i] = m->incarnation;
        if (check_hold(s, j, i, m) < 0)
            return;
        if (s->seen_left[j][i] != 0 && m->incarnation <= s->seen_left[j][i] &&
            (m->status != TETHER_MEMBER_LEFT || m->live)) {
            fail(s, "%s re-added %s (inc %llu) after seeing it leave",
                 s->nodes[j].name, s->nodes[i].name,
                 (unsigned long long)m->incarnation);
            return;
        }
    }
    if (!s->checking || s->nodes[j].left)
        return;
    if (n != s->nexpect) {
        fail(s, "%s sees %zu members, expected %zu", s->nodes[j].name, n,
             s->nexpect);
        return;
    }
    for (size_t k = 0; k < n; k++)
        if (strcmp(mem[k], s->expect[k]) != 0) {
            fail(s, "%s sees member %s, expected %s", s->nodes[j].name, mem[k],
                 s->expect[k]);
            return;
        }
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members every running node that has not left must agree on. */
static void compute_expect(sim_t *s)
{
    s->nexpect = 0;
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].eng != NULL && !s->nodes[i].left)
            s->expect[s->nexpect++] = s->nodes[i].name;
    if (s->cfg.break_members_check)
        s->expect[s->nexpect++] = "phantom@nowhere";
    qsort(s->expect, s->nexpect, sizeof *s->expect, name_cmp);
}

/* ------------------------------------------------------ node control */

static int running_count(const sim_t *s, int members_only)
{
    int c = 0;

    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].eng != NULL && (!members_only || !s->nodes[i].left))
            c++;
    return c;
}

/* A random running node that has not left, other than `not`; -1 none. */
static int pick_member(sim_t *s, int not )
{
    int cand[TETHER_SIM_NODES_MAX], c = 0;

    for (int i = 0; i < s->n; i++)
        if (i != not &&s->nodes[i].eng != NULL && !s->nodes[i].left)
            cand[c++] = i;
    return c ? cand[tether_sim_rng_below(&s->rng, (uint64_t)c)] : -1;
}

static int start_node(sim_t *s, int i)
{
    tether_engine_config_t cfg;
    tether_registry_config_t rcfg;
    simnode_t *sn = &s->nodes[i];
    uint64_t st = s->cfg.seed ^ ((uint64_t)i << 32) ^ sn->inc;
    int rc;

    tether_engine_config_default(&cfg);
    cfg.name = sn->name;
    cfg.incarnation = sn->inc;
    cfg.heartbeat_ms = s->cfg.heartbeat_ms;
    cfg.ttl_ms = s->cfg.ttl_ms;
    cfg.defer_max = 64;
    cfg.cluster_secret = s->secret;
    for (size_t k = 0; k < sizeof cfg.seed; k += 8) {
        uint64_t v = tether_sim_splitmix64(&st);
        memcpy(cfg.seed + k, &v, 8);
    }
    rc = tether_engine_new(&cfg, &sn->eng);
    if (rc < 0)
        return rc;
    tether_engine_set_open_hook(sn->eng, on_open, s);
    {
        tether_maps_config_t mcfg = {.sync_ms = 5 * s->cfg.heartbeat_ms};
        ei_x_buff x;
        if ((rc = tether_maps_new(&mcfg, sn->eng, &sn->maps)) < 0)
            return rc;
        if (ei_x_new_with_version(&x) < 0)
            return TETHER_ENOMEM;
        rc = ei_x_encode_atom(&x, "map") < 0
                 ? TETHER_ENOMEM
                 : tether_maps_host(sn->maps, (const uint8_t *)x.buff,
                                    (size_t)x.index, NULL, &sn->map);
        ei_x_free(&x);
        if (rc < 0)
            return rc;
    }
    tether_registry_config_default(&rcfg);
    rcfg.digest_ms = 2 * s->cfg.heartbeat_ms;
    if ((rc = tether_registry_new(&rcfg, sn->eng, &sn->reg)) < 0)
        return rc;
    {
        tether_ring_config_t ring_cfg = {.shards = SIM_RING_SHARDS};
        if ((rc = tether_ring_module_new(&ring_cfg, sn->eng, &sn->ring)) < 0)
            return rc;
    }
    {
        tether_election_config_t el_cfg = {
            .lease_ms = 3 * s->cfg.heartbeat_ms,
            .round_ms = s->cfg.heartbeat_ms,
        };
        if ((rc = tether_election_new(&el_cfg, sn->eng, &sn->el)) < 0)
            return rc;
    }
    {
        tether_reminders_config_t rm_cfg = {
            .ring = sn->ring,
            .replicas = SIM_RM_REPLICAS,
            .round_ms = 2 * s->cfg.heartbeat_ms,
            .handoff_ms = 2 * s->cfg.ttl_ms,
            .op_timeout_ms = 2 * s->cfg.ttl_ms,
        };
        if ((rc = tether_reminders_new(&rm_cfg, sn->eng, &sn->rm)) < 0)
            return rc;
        tether_reminders_subscribers(sn->rm, 1);
        memset(sn->el_cand, 0, sizeof sn->el_cand);
        memset(sn->el_leading, 0, sizeof sn->el_leading);
        /* Each incarnation's wall clock is off by up to SIM_EL_SKEW ms
         * (hybrid-logical-clock stamps, and so fences, feel it). The
         * engine's clock is brought to s->now first: the wall is set at
         * the engine's current time, and a restarted node's fresh engine
         * still reads 0 (its wall ran ahead by the restart time, so its
         * reminders were set that far in the future). */
        if ((rc = tether_engine_tick(sn->eng, s->now)) < 0)
            return rc;
        tether_engine_set_wall(sn->eng, s->now + SIM_EL_SKEW +
                                            tether_sim_splitmix64(&st) %
                                                (2 * SIM_EL_SKEW + 1) -
                                            SIM_EL_SKEW);
    }
    sn->left = 0;
    sn->ticked = 0;
    /* A new life has seen no tombstones yet and holds no leases. */
    memset(s->seen_left[i], 0, sizeof s->seen_left[i]);
    memset(s->hold_inc[i], 0, sizeof s->hold_inc[i]);
    return tether_engine_tick(sn->eng, s->now);
}

static void join_via(sim_t *s, int i, int c)
{
    if (c >= 0)
        (void)tether_engine_join(s->nodes[i].eng, s->nodes[c].name);
}

static void crash_node(sim_t *s, int i)
{
    note(s, "crash %s", s->nodes[i].name);
    for (int j = 0; j < s->n; j++)
        cut_pair(s, i, j);
    tether_engine_free(s->nodes[i].eng); /* its registry with it */
    s->nodes[i].eng = NULL;
    s->nodes[i].reg = NULL;
    s->nodes[i].ring = NULL;
    s->nodes[i].el = NULL;
    s->nodes[i].rm = NULL;
    s->res->crashes++;
}

static int restart_node(sim_t *s, int i)
{
    int rc;

    if (s->nodes[i].eng != NULL)
        crash_node(s, i); /* a left node restarts as a new incarnation */
    s->nodes[i].inc++;
    rc = start_node(s, i);
    if (rc < 0)
        return rc;
    note(s, "restart %s inc %llu", s->nodes[i].name,
         (unsigned long long)s->nodes[i].inc);
    join_via(s, i, pick_member(s, i));
    s->res->restarts++;
    return 0;
}

/* The operator's part: re-joins nodes whose join goes through a contact
 * that crashed or left before answering. */
static void fix_joins(sim_t *s)
{
    for (int i = 0; i < s->n; i++) {
        simnode_t *sn = &s->nodes[i];
        int c;
        if (sn->eng == NULL || sn->left || !tether_engine_join_pending(sn->eng))
            continue;
        c = find_node(s, tether_engine_join_contact(sn->eng));
        if (c >= 0 && s->nodes[c].eng != NULL && !s->nodes[c].left)
            continue;
        c = pick_member(s, i);
        if (c < 0)
            continue;
        note(s, "%s re-joins via %s", sn->name, s->nodes[c].name);
        join_via(s, i, c);
    }
}

static void anchor_joins(sim_t *s)
{
    int anchor = -1;

    for (int i = 0; i < s->n && anchor < 0; i++)
        if (s->nodes[i].eng != NULL && !s->nodes[i].left)
            anchor = i;
    for (int i = 0; anchor >= 0 && i < s->n; i++)
        if (i != anchor && s->nodes[i].eng != NULL && !s->nodes[i].left)
            join_via(s, i, anchor);
}

/* ------------------------------------------------------------ chaos */

static void chaos_partition(sim_t *s)
{
    const char *a[TETHER_SIM_NODES_MAX], *b[TETHER_SIM_NODES_MAX];
    size_t na = 0, nb = 0;
    int at = pick_member(s, -1), mode;
    uint64_t ref;

    if (at < 0 || s->nrefs == SIM_REFS_MAX)
        return;
    for (int i = 0; i < s->n; i++) {
        uint64_t r = tether_sim_rng_below(&s->rng, 5);
        if (r < 2)
            a[na++] = s->nodes[i].name;
        else if (r < 4)
            b[nb++] = s->nodes[i].name;
    }
    if (na == 0 || nb == 0)
        return;
    mode = tether_sim_rng_chance(&s->rng, 500) ? TETHER_PARTITION_DROP
                                               : TETHER_PARTITION_DEFER;
    if (tether_engine_partition(s->nodes[at].eng, a, na, b, nb, mode, &ref) ==
        0) {
        /* A drop partition ends the defer holds across it at once, even
         * if it heals again before a step touches the nodes ("the
         * partition turns into a drop one", see check_hold). */
        if (mode == TETHER_PARTITION_DROP)
            for (size_t x = 0; x < na; x++)
                for (size_t y = 0; y < nb; y++) {
                    int p = find_node(s, a[x]), q = find_node(s, b[y]);
                    s->hold_inc[p][q] = s->hold_inc[q][p] = 0;
                }
        s->refs[s->nrefs++] = ref;
        s->res->partitions++;
        note(s, "partition %016llx (%s, %zu|%zu) at %s",
             (unsigned long long)ref,
             mode == TETHER_PARTITION_DROP ? "drop" : "defer", na, nb,
             s->nodes[at].name);
    }
}

static void chaos_heal(sim_t *s)
{
    int at = pick_member(s, -1);
    uint64_t ref;

    if (at < 0 || s->nrefs == 0)
        return;
    ref = s->refs[tether_sim_rng_below(&s->rng, s->nrefs)];
    if (tether_engine_heal(s->nodes[at].eng, ref) == 0) {
        s->res->heals++;
        note(s, "heal %016llx at %s", (unsigned long long)ref,
             s->nodes[at].name);
    }
}

static int chaos_op(sim_t *s)
{
    uint64_t r = tether_sim_rng_below(&s->rng, 100);
    int i;

    s->last_chaos = s->now;
    if (r < 25) {
        chaos_partition(s);
    } else if (r < 45) {
        chaos_heal(s);
    } else if (r < 60) {
        if (running_count(s, 1) > 2 && (i = pick_member(s, -1)) >= 0)
            crash_node(s, i);
    } else if (r < 78) {
        i = (int)tether_sim_rng_below(&s->rng, (uint64_t)s->n);
        if (s->nodes[i].eng == NULL || s->nodes[i].left)
            return restart_node(s, i);
    } else if (r < 86) {
        if (running_count(s, 1) > 2 && (i = pick_member(s, -1)) >= 0) {
            note(s, "leave %s", s->nodes[i].name);
            s->nodes[i].left = 1;
            (void)tether_engine_leave(s->nodes[i].eng);
            s->res->leaves++;
        }
    } else {
        int a = (int)tether_sim_rng_below(&s->rng, (uint64_t)s->n);
        int b = (int)tether_sim_rng_below(&s->rng, (uint64_t)s->n);
        if (a != b && s->conn[a][b]) {
            note(s, "cut %s-%s", s->nodes[a].name, s->nodes[b].name);
            cut_pair(s, a, b);
            s->res->cuts++;
        }
    }
    return 0;
}

/* {Tag, Id} as external term bytes into x. Returns 0 or -1. */
static int user_term(ei_x_buff *x, const char *tag, uint64_t id)
{
    if (ei_x_new_with_version(x) < 0)
        return -1;
    if (ei_x_encode_tuple_header(x, 2) < 0 || ei_x_encode_atom(x, tag) < 0 ||
        ei_x_encode_ulonglong(x, id) < 0) {
        ei_x_free(x);
        return -1;
    }
    return 0;
}

/* One module message between two members; where the direct path is cut
 * (a drop partition, no session), relayed round it through the others. */
static void user_send(sim_t *s)
{
    int a = pick_member(s, -1), b, rc;
    uint64_t id = s->user_next;
    ei_x_buff x;

    if (a < 0 || (b = pick_member(s, a)) < 0)
        return;
    if (s->user_next == s->user_cap) {
        uint64_t cap = s->user_cap ? s->user_cap * 2 : 4096;
        uint8_t *v = realloc(s->user_seen, cap / 8);
        uint8_t *from = v ? realloc(s->user_from, cap) : NULL;
        uint8_t *to = from ? realloc(s->user_to, cap) : NULL;
        if (v != NULL)
            s->user_seen = v;
        if (from != NULL)
            s->user_from = from;
        if (to == NULL)
            return; /* the old sizes stand; a later send tries again */
        s->user_to = to;
        memset(v + s->user_cap / 8, 0, (cap - s->user_cap) / 8);
        s->user_cap = cap;
    }
    if (user_term(&x, "sim", id) < 0)
        return;
    s->user_from[id] = (uint8_t)a;
    s->user_to[id] = (uint8_t)b;
    s->user_next++;
    s->res->user_sent++;
    rc = tether_engine_send(s->nodes[a].eng, s->nodes[b].name,
                            TETHER_MSG_SHELL, (const uint8_t *)x.buff,
                            (size_t)x.index, 0);
    ei_x_free(&x);
    if (rc != TETHER_ECLOSED || user_term(&x, "simr", id) < 0)
        return;
    if (tether_relay_send(s->nodes[a].eng, s->nodes[b].name,
                          (const uint8_t *)x.buff, (size_t)x.index, 0) == 0)
        s->res->relay_sent++;
    ei_x_free(&x);
}

/* ---------------------------------------------------------- registry */

/* A registry name ({reg, K}) or pid ({sim_pid, Node, Inc, Serial}) as
 * external term bytes into x. Returns 0 or -1. */
static int reg_name(ei_x_buff *x, uint64_t k)
{
    return (ei_x_new_with_version(x) < 0 ||
            ei_x_encode_tuple_header(x, 2) < 0 ||
            ei_x_encode_atom(x, "reg") < 0 || ei_x_encode_ulonglong(x, k) < 0)
               ? -1
               : 0;
}

static int reg_pid(ei_x_buff *x, int node, uint64_t inc, uint64_t serial)
{
    return (ei_x_new_with_version(x) < 0 ||
            ei_x_encode_tuple_header(x, 4) < 0 ||
            ei_x_encode_atom(x, "sim_pid") < 0 ||
            ei_x_encode_long(x, node) < 0 ||
            ei_x_encode_ulonglong(x, inc) < 0 ||
            ei_x_encode_ulonglong(x, serial) < 0)
               ? -1
               : 0;
}

typedef struct sealed_ctx {
    sim_t *s;
    int from;
} sealed_ctx_t;

/* The direct path's envelopes go on the wire as the shell would send
 * them (core/registry.h, tether_registry_register_sealed). */
static void on_sealed(void *ctx, const char *peer, const uint8_t *bytes,
                      size_t len)
{
    sealed_ctx_t *c = ctx;
    uint8_t *copy = malloc(len);

    if (copy == NULL)
        return;
    memcpy(copy, bytes, len);
    net_send(c->s, c->from, find_node(c->s, peer), copy, len);
}

/* One map write on a random member: a put of a fresh value (an integer
 * never written before) or a remove of a pool key, half of them on the
 * direct path. */
static void map_op(sim_t *s)
{
    int i = pick_member(s, -1);
    uint64_t k = tether_sim_rng_below(&s->rng, SIM_MAP_KEYS);
    int put = tether_sim_rng_chance(&s->rng, 700);
    sealed_ctx_t c = {s, i};
    ei_x_buff key, val;
    int rc = TETHER_ENOMEM;

    if (i < 0 || ei_x_new_with_version(&key) < 0)
        return;
    if (ei_x_new_with_version(&val) < 0) {
        ei_x_free(&key);
        return;
    }
    if (ei_x_encode_ulonglong(&key, k) == 0 &&
        ei_x_encode_ulonglong(&val, ++s->map_value) == 0)
        rc = tether_maps_write(
            s->nodes[i].maps, s->nodes[i].map, (const uint8_t *)key.buff,
            (size_t)key.index, put ? (const uint8_t *)val.buff : NULL,
            (size_t)val.index,
            tether_sim_rng_chance(&s->rng, 500) ? on_sealed : NULL, &c);
    s->res->map_ops++;
    note(s, "map %s %llu at %s: %d", put ? "put" : "remove",
         (unsigned long long)k, s->nodes[i].name, rc);
    ei_x_free(&key);
    ei_x_free(&val);
}

/* Checks one held map value: an integer some write made. */
static void map_check_value(void *ctx, const uint8_t *key, size_t klen,
                            const uint8_t *val, size_t vlen)
{
    sim_t *s = ctx;
    unsigned long long v = 0;
    int idx = 0, ver;

    (void)key;
    (void)klen;
    (void)vlen;
    if (ei_decode_version((const char *)val, &idx, &ver) < 0 ||
        ei_decode_ulonglong((const char *)val, &idx, &v) < 0 || v == 0 ||
        v > s->map_value)
        fail(s, "map: a value no write made (%llu)", v);
}

/*
 * The maps invariant, at the end of the quiet phase: every running
 * member that has not left holds the same map (the same writes, by the
 * digest over (key, stamp, writer, tombstone), and the same live keys),
 * and every value held is one some write made.
 */
static void check_maps(sim_t *s)
{
    int first = -1;

    for (int j = 0; j < s->n && !s->res->failed; j++) {
        simnode_t *sn = &s->nodes[j];
        if (sn->eng == NULL || sn->left)
            continue;
        tether_maps_visit(sn->map, map_check_value, s);
        if (first < 0) {
            first = j;
            s->res->map_keys = tether_maps_size(sn->map);
            continue;
        }
        if (tether__maps_digest(sn->map) !=
                tether__maps_digest(s->nodes[first].map) ||
            tether_maps_size(sn->map) != tether_maps_size(s->nodes[first].map))
            fail(s,
                 "map: %s (%zu keys, %zu entries) differs from %s (%zu "
                 "keys, %zu entries)",
                 sn->name, tether_maps_size(sn->map),
                 tether__maps_entries(sn->map), s->nodes[first].name,
                 tether_maps_size(s->nodes[first].map),
                 tether__maps_entries(s->nodes[first].map));
    }
}

/* One registry operation on a random member: register a pool name for a
 * fresh pid (half of the time on the direct path), or unregister it
 * (only the owner can; others get ENOTFOUND, which is fine). */
static void reg_op(sim_t *s)
{
    int i = pick_member(s, -1);
    uint64_t k = tether_sim_rng_below(&s->rng, SIM_REG_NAMES);
    ei_x_buff n, p;
    int rc;

    if (i < 0 || reg_name(&n, k) < 0)
        return;
    if (tether_sim_rng_chance(&s->rng, 600)) {
        if (reg_pid(&p, i, s->nodes[i].inc, s->reg_pid_next++) == 0) {
            sealed_ctx_t c = {s, i};
            if (tether_sim_rng_chance(&s->rng, 500))
                rc = tether_registry_register_sealed(
                    s->nodes[i].reg, (const uint8_t *)n.buff, (size_t)n.index,
                    (const uint8_t *)p.buff, (size_t)p.index, (int)(k % 3),
                    s->now, on_sealed, &c);
            else
                rc = tether_registry_register(
                    s->nodes[i].reg, (const uint8_t *)n.buff, (size_t)n.index,
                    (const uint8_t *)p.buff, (size_t)p.index, (int)(k % 3),
                    s->now);
            note(s, "register {reg,%llu} at %s: %d", (unsigned long long)k,
                 s->nodes[i].name, rc);
        }
        ei_x_free(&p);
    } else if (tether_sim_rng_chance(&s->rng, 500)) {
        rc = tether_registry_unregister(
            s->nodes[i].reg, (const uint8_t *)n.buff, (size_t)n.index);
        note(s, "unregister {reg,%llu} at %s: %d", (unsigned long long)k,
             s->nodes[i].name, rc);
    } else if (reg_pid(&p, i, s->nodes[i].inc,
                       tether_sim_rng_below(&s->rng, s->reg_pid_next + 1)) ==
               0) {
        /* Some process of this node that once registered exits: it takes
         * its own registration with it, and never anyone else's. */
        tether_registry_t *r = s->nodes[i].reg;
        int held =
            tether_registry_holds(r, (const uint8_t *)n.buff, (size_t)n.index,
                                  (const uint8_t *)p.buff, (size_t)p.index);
        size_t before = tether_registry_count(r);
        rc = tether_registry_unregister_pid(
            r, (const uint8_t *)n.buff, (size_t)n.index,
            (const uint8_t *)p.buff, (size_t)p.index);
        note(s, "exit of a registrant of {reg,%llu} at %s: %d",
             (unsigned long long)k, s->nodes[i].name, rc);
        if ((rc == 0) != held ||
            (rc != 0 && tether_registry_count(r) != before))
            fail(s, "%s: a stale owner of {reg,%llu} removed a registration",
                 s->nodes[i].name, (unsigned long long)k);
        ei_x_free(&p);
    }
    s->res->reg_ops++;
    ei_x_free(&n);
}

/* A resolve request to node i's shell gets a verdict drawn from the
 * seed (keep the earlier registration, the later one, or neither), as a
 * registrant's resolver would answer. */
static void reg_resolve(sim_t *s, int i, const tether_action_t *a)
{
    const tether_bytes_t *name = &a->u.reg_resolve.name;
    const tether_bytes_t *pid[2] = {&a->u.reg_resolve.winner,
                                    &a->u.reg_resolve.loser};
    uint64_t pick;

    s->res->reg_resolves++;
    pick = tether_sim_rng_below(&s->rng, 3);
    note(s, "resolve at %s: keep %s", s->nodes[i].name,
         pick == 0   ? "earlier"
         : pick == 1 ? "later"
                     : "none");
    if (tether_registry_resolve(s->nodes[i].reg, name->ptr, name->len,
                                pick < 2 ? pid[pick]->ptr : NULL,
                                pick < 2 ? pid[pick]->len : 0) < 0)
        fail(s, "%s: resolve refused", s->nodes[i].name);
}

typedef struct reg_check {
    sim_t *s;
    int j;          /* the node whose table is visited */
    size_t visible; /* entries visited */
} reg_check_t;

/* Every entry must be held by its owner itself, a running member that
 * has not left, for a pid of its current incarnation. */
static void reg_check_entry(void *ctx, const uint8_t *name, size_t nlen,
                            const uint8_t *pid, size_t plen, const char *owner,
                            uint64_t stamp, int method)
{
    reg_check_t *c = ctx;
    sim_t *s = c->s;
    int o = find_node(s, owner);
    uint8_t got[TETHER_REG_PID_MAX];
    size_t glen = 0;
    char oo[TETHER_NODE_NAME_MAX + 1];

    (void)stamp;
    (void)method;
    c->visible++;
    if (o < 0 || s->nodes[o].eng == NULL || s->nodes[o].left) {
        fail(s, "%s holds a name of %s, which is not a member",
             s->nodes[c->j].name, owner);
        return;
    }
    if (tether_registry_whereis(s->nodes[o].reg, name, nlen, got, sizeof got,
                                &glen) < 0 ||
        glen != plen || memcmp(got, pid, plen) != 0 ||
        tether_registry_owner(s->nodes[o].reg, name, nlen, oo) < 0 ||
        strcmp(oo, owner) != 0)
        fail(s, "%s holds a name %s no longer owns (zombie)",
             s->nodes[c->j].name, owner);
}

/* The registry invariant, at the end of the quiet phase. */
static void check_registries(sim_t *s)
{
    int first = -1;
    uint64_t d0 = 0;

    for (int j = 0; j < s->n && !s->res->failed; j++) {
        reg_check_t c = {s, j, 0};
        uint64_t d;
        if (s->nodes[j].eng == NULL || s->nodes[j].left)
            continue;
        tether_registry_foreach(s->nodes[j].reg, reg_check_entry, &c);
        if (!s->res->failed &&
            c.visible != tether_registry_count(s->nodes[j].reg)) {
            fail(s,
                 "%s: %zu entries held for %zu names (a conflict "
                 "never resolved)",
                 s->nodes[j].name, tether_registry_count(s->nodes[j].reg),
                 c.visible);
            return;
        }
        d = tether_registry_digest(s->nodes[j].reg);
        if (first < 0) {
            first = j;
            d0 = d;
            s->res->reg_names = tether_registry_count(s->nodes[j].reg);
            if (s->cfg.break_reg_check)
                d0 ^= 1;
            else
                continue;
        }
        if (d != d0)
            fail(s, "registries differ: %s (%zu names) and %s (%zu names)",
                 s->nodes[first].name,
                 tether_registry_count(s->nodes[first].reg), s->nodes[j].name,
                 tether_registry_count(s->nodes[j].reg));
    }
}

/*
 * The ring invariant, at the end of the quiet phase: every running member
 * holds the same ring (every shard's first three owners alike), built
 * from exactly the live members, and what it says it owns is what the
 * table says.
 */
static void check_rings(sim_t *s)
{
    int first = -1;

    for (int j = 0; j < s->n && !s->res->failed; j++) {
        const tether_ring_t *rj;
        const char *mem[TETHER_SIM_NODES_MAX + 8];
        size_t n, rn;
        if (s->nodes[j].eng == NULL || s->nodes[j].left)
            continue;
        rj = tether_ring_module_table(s->nodes[j].ring);
        n = tether_engine_members(s->nodes[j].eng, mem,
                                  TETHER_SIM_NODES_MAX + 8);
        rn = tether_ring_members(rj, NULL, 0);
        if (rn != n) {
            fail(s, "%s: a ring of %zu members for %zu live ones",
                 s->nodes[j].name, rn, n);
            return;
        }
        for (uint32_t sh = 0; sh < SIM_RING_SHARDS; sh++) {
            const char *p = tether_ring_primary(rj, sh);
            if (tether_ring_module_owns(s->nodes[j].ring, sh) !=
                (p != NULL && strcmp(p, s->nodes[j].name) == 0)) {
                fail(s, "%s: shard %u owned against its own table",
                     s->nodes[j].name, sh);
                return;
            }
        }
        if (first < 0) {
            first = j;
            continue;
        }
        for (uint32_t sh = 0; sh < SIM_RING_SHARDS; sh++) {
            const char *a[3], *b[3];
            uint32_t other =
                s->cfg.break_ring_check ? (sh + 1) % SIM_RING_SHARDS : sh;
            size_t ka = tether_ring_owners(
                tether_ring_module_table(s->nodes[first].ring), other, 3, a);
            size_t kb = tether_ring_owners(rj, sh, 3, b);
            int same = ka == kb;
            for (size_t k = 0; same && k < ka; k++)
                same = strcmp(a[k], b[k]) == 0;
            if (!same) {
                fail(s, "rings differ: %s and %s on shard %u",
                     s->nodes[first].name, s->nodes[j].name, sh);
                return;
            }
        }
    }
}

/* --------------------------------------------------------- election */

/* Election name k ({el, K}) as external term bytes into x. 0 or -1. */
static int el_name(ei_x_buff *x, int k)
{
    return (ei_x_new_with_version(x) < 0 ||
            ei_x_encode_tuple_header(x, 2) < 0 ||
            ei_x_encode_atom(x, "el") < 0 || ei_x_encode_long(x, k) < 0)
               ? -1
               : 0;
}

/* The voters of the quorum name: the first 3, or 5, nodes. */
static size_t el_voters(const sim_t *s, const char **v)
{
    size_t nv = s->n >= SIM_EL_VOTERS ? SIM_EL_VOTERS : 3;

    for (size_t i = 0; i < nv; i++)
        v[i] = s->nodes[i].name;
    return nv;
}

/*
 * Node i was elected for name k with fence f. Default mode: f must
 * exceed every fence established before by i itself (this incarnation)
 * or by a leader whose view listed i (this incarnation) live then.
 * Quorum mode: f must exceed every fence established before.
 */
static void el_elected(sim_t *s, int i, int k, uint64_t f)
{
    simnode_t *sn = &s->nodes[i];
    const char *mem[TETHER_SIM_NODES_MAX + 8];
    el_est_t *e;
    size_t n;

    sn->el_leading[k] = 1;
    sn->el_fence[k] = f;
    s->res->el_elected++;
    note(s, "%s elected for {el,%d} with %llu", sn->name, k,
         (unsigned long long)f);
    if (k == SIM_EL_QUORUM) {
        if (f <= s->q_fence_max)
            fail(s, "%s leads {el,%d} with fence %llu, not above %llu",
                 sn->name, k, (unsigned long long)f,
                 (unsigned long long)s->q_fence_max);
        s->q_fence_max = f;
        return;
    }
    for (size_t x = 0; x < s->nest[k]; x++) {
        const el_est_t *p = &s->est[k][x];
        int knew = (p->node == i && p->inc == sn->inc) ||
                   p->live_inc[i] == sn->inc || s->cfg.break_el_check;
        if (knew && f <= p->fence) {
            fail(s,
                 "%s leads {el,%d} with fence %llu, not above %llu that "
                 "%s established while it knew",
                 sn->name, k, (unsigned long long)f,
                 (unsigned long long)p->fence, s->nodes[p->node].name);
            return;
        }
    }
    if (s->nest[k] == s->capest[k]) {
        size_t cap = s->capest[k] ? s->capest[k] * 2 : 64;
        el_est_t *v = realloc(s->est[k], cap * sizeof *v);
        if (v == NULL)
            return;
        s->est[k] = v;
        s->capest[k] = cap;
    }
    e = &s->est[k][s->nest[k]++];
    memset(e, 0, sizeof *e);
    e->node = i;
    e->inc = sn->inc;
    e->fence = s->cfg.break_el_check ? UINT64_MAX : f;
    n = tether_engine_members(sn->eng, mem, TETHER_SIM_NODES_MAX + 8);
    for (size_t x = 0; x < n && x < TETHER_SIM_NODES_MAX + 8; x++) {
        int j = find_node(s, mem[x]);
        if (j >= 0 && j != i)
            e->live_inc[j] = s->nodes[j].inc;
    }
}

/* A LEADER action of node i's engine. */
static void el_action(sim_t *s, int i, const tether_action_t *a)
{
    const char *b = (const char *)a->u.leader.name.ptr;
    int idx = 0, v, arity;
    char tag[MAXATOMLEN_UTF8];
    long k = -1;

    if (ei_decode_version(b, &idx, &v) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 ||
        ei_decode_atom(b, &idx, tag) < 0 || ei_decode_long(b, &idx, &k) < 0 ||
        k < 0 || k >= SIM_EL_NAMES || !s->nodes[i].el_cand[k]) {
        fail(s, "%s: a leader action for a name it has no candidate for",
             s->nodes[i].name);
        return;
    }
    if (a->u.leader.elected) {
        el_elected(s, i, (int)k, a->u.leader.fence);
        return;
    }
    s->nodes[i].el_leading[k] = 0;
    s->res->el_revoked++;
    note(s, "%s revoked for {el,%ld}", s->nodes[i].name, k);
}

/* One election operation on a random member: lead a name (with a random
 * priority), or resign it. */
static void el_op(sim_t *s)
{
    int i = pick_member(s, -1), k, outcome = 0, rc;
    const char *voters[SIM_EL_VOTERS];
    tether_election_opts_t o = {0};
    uint64_t fence = 0;
    ei_x_buff n, p;

    if (i < 0)
        return;
    k = (int)tether_sim_rng_below(&s->rng, SIM_EL_NAMES);
    if (el_name(&n, k) < 0)
        goto out;
    s->res->el_ops++;
    if (s->nodes[i].el_cand[k]) {
        if (tether_sim_rng_chance(&s->rng, 500)) {
            rc = tether_election_resign(s->nodes[i].el, (const uint8_t *)n.buff,
                                        (size_t)n.index);
            note(s, "%s resigns {el,%d}: %d", s->nodes[i].name, k, rc);
            s->nodes[i].el_cand[k] = 0;
            s->nodes[i].el_leading[k] = 0;
        }
        goto out;
    }
    o.priority = (int64_t)tether_sim_rng_below(&s->rng, 3);
    o.quorum = k == SIM_EL_QUORUM;
    o.voters = voters;
    o.nvoters = o.quorum ? el_voters(s, voters) : 0;
    if (reg_pid(&p, i, s->nodes[i].inc, s->reg_pid_next++) < 0)
        goto out;
    rc = tether_election_lead(s->nodes[i].el, (const uint8_t *)n.buff,
                              (size_t)n.index, (const uint8_t *)p.buff,
                              (size_t)p.index, &o, &outcome, &fence);
    ei_x_free(&p);
    note(s, "%s leads {el,%d} priority %lld: %d outcome %d", s->nodes[i].name,
         k, (long long)o.priority, rc, outcome);
    if (rc < 0 || (outcome != TETHER_ELECTION_FOLLOWER &&
                   outcome != TETHER_ELECTION_LEADER))
        goto out;
    s->nodes[i].el_cand[k] = 1;
    s->nodes[i].el_prio[k] = o.priority;
    if (outcome == TETHER_ELECTION_LEADER)
        el_elected(s, i, k, fence);
out:
    ei_x_free(&n);
}

/*
 * After every step: a node leads a default name exactly when its
 * actions say so; the quorum name has at most one leader, and a new
 * leadership starts only once the lease of the one before has ended.
 */
static void check_elections(sim_t *s)
{
    int leader = -1;
    uint64_t since = 0, until = 0;
    ei_x_buff n;

    for (int k = 0; k < SIM_EL_NAMES && !s->res->failed; k++) {
        if (el_name(&n, k) < 0)
            return;
        for (int i = 0; i < s->n && !s->res->failed; i++) {
            simnode_t *sn = &s->nodes[i];
            uint64_t f = 0, sc = 0, lu;
            int st;
            if (sn->eng == NULL)
                continue;
            st = tether_election_fence(sn->el, (const uint8_t *)n.buff,
                                       (size_t)n.index, s->now, &f);
            if (k != SIM_EL_QUORUM) {
                if ((st == TETHER_ELECTION_LEADER) != sn->el_leading[k] ||
                    (st == TETHER_ELECTION_LEADER && f != sn->el_fence[k]))
                    fail(s, "%s: leads {el,%d} is %d, its actions said %d",
                         sn->name, k, st == TETHER_ELECTION_LEADER,
                         sn->el_leading[k]);
                continue;
            }
            if (st != TETHER_ELECTION_LEADER)
                continue;
            if (leader >= 0) {
                fail(s, "%s and %s both lead {el,%d}", s->nodes[leader].name,
                     sn->name, k);
                break;
            }
            lu = tether_election_lease_until(sn->el, (const uint8_t *)n.buff,
                                             (size_t)n.index, &sc);
            leader = i;
            since = sc;
            until = lu;
        }
        ei_x_free(&n);
    }
    if (s->res->failed)
        return;
    if (leader >= 0 && s->qlast.node == leader &&
        s->qlast.inc == s->nodes[leader].inc && s->qlast.since == since) {
        if (until > s->qlast.until)
            s->qlast.until = until;
        return;
    }
    /* The last leadership seen is over (its node stepped down, crashed,
     * or its lease ran out): it lasted until now at the latest. */
    if (s->qlast.until > s->now)
        s->qlast.until = s->now;
    if (leader < 0)
        return;
    if (s->qlast.until > since)
        fail(s,
             "%s leads {el,%d} from t=%llu, within the lease of %s "
             "(until t=%llu)",
             s->nodes[leader].name, SIM_EL_QUORUM, (unsigned long long)since,
             s->nodes[s->qlast.node].name, (unsigned long long)s->qlast.until);
    s->qlast.node = leader;
    s->qlast.inc = s->nodes[leader].inc;
    s->qlast.since = since;
    s->qlast.until = until;
}

/*
 * The end of the quiet phase, name k: exactly the best candidate of the
 * running members (priority, then name) leads, every running member
 * names it, and in the default mode its fence exceeds every fence a
 * running member established (this incarnation), its own before.
 */
static void check_election_end(sim_t *s, int k)
{
    const char *voters[SIM_EL_VOTERS];
    int best = -1;
    size_t nv, up = 0;
    ei_x_buff n;

    for (int i = 0; i < s->n; i++) {
        const simnode_t *sn = &s->nodes[i];
        if (sn->eng == NULL || sn->left || !sn->el_cand[k])
            continue;
        if (best < 0 || sn->el_prio[k] > s->nodes[best].el_prio[k] ||
            (sn->el_prio[k] == s->nodes[best].el_prio[k] &&
             strcmp(sn->name, s->nodes[best].name) < 0))
            best = i;
    }
    nv = el_voters(s, voters);
    for (size_t v = 0; v < nv; v++)
        up += s->nodes[v].eng != NULL && !s->nodes[v].left;
    if (k == SIM_EL_QUORUM && up < nv / 2 + 1)
        return; /* no majority of the voters runs: nobody can lead */
    if (el_name(&n, k) < 0)
        return;
    for (int i = 0; i < s->n && !s->res->failed; i++) {
        const simnode_t *sn = &s->nodes[i];
        char who[TETHER_NODE_NAME_MAX + 1];
        uint64_t f = 0;
        int st, rc;
        if (sn->eng == NULL || sn->left)
            continue;
        st = tether_election_fence(sn->el, (const uint8_t *)n.buff,
                                   (size_t)n.index, s->now, &f);
        if ((st == TETHER_ELECTION_LEADER) != (i == best)) {
            fail(s, "after the quiet phase %s %s {el,%d}, best is %s", sn->name,
                 st == TETHER_ELECTION_LEADER ? "leads" : "follows", k,
                 best >= 0 ? s->nodes[best].name : "none");
            break;
        }
        rc = tether_election_leader(sn->el, (const uint8_t *)n.buff,
                                    (size_t)n.index, s->now, who, NULL, 0, NULL,
                                    NULL);
        if ((best < 0) != (rc == TETHER_ENOTFOUND) ||
            (best >= 0 && (rc < 0 || strcmp(who, s->nodes[best].name) != 0))) {
            fail(s, "after the quiet phase %s names %s the leader of {el,%d}",
                 sn->name, rc < 0 ? "nobody" : who, k);
            break;
        }
        if (i != best || k == SIM_EL_QUORUM)
            continue;
        for (size_t x = 0; x < s->nest[k]; x++) {
            const el_est_t *p = &s->est[k][x];
            const simnode_t *pn = &s->nodes[p->node];
            if (pn->eng != NULL && !pn->left && pn->inc == p->inc &&
                p->fence >= f && !(p->node == i && p->fence == f)) {
                fail(s, "%s leads {el,%d} with %llu, not above %llu of %s",
                     sn->name, k, (unsigned long long)f,
                     (unsigned long long)p->fence, pn->name);
                break;
            }
        }
    }
    ei_x_free(&n);
}

/* ------------------------------------------------------------- steps */

/* When node i next needs a tick. */
static uint64_t node_due(const sim_t *s, int i)
{
    const simnode_t *sn = &s->nodes[i];
    uint64_t d = tether_engine_next_deadline(sn->eng);

    if (sn->ticked && d <= sn->last_tick)
        d = sn->last_tick + 1;
    return d;
}

/* -------------------------------------------------------- reminders */

/* Whether write j of w's key was issued close enough before w that the
 * clocks may order them either way: stamps come from wall clocks each off
 * by up to SIM_EL_SKEW, so last writer wins by stamp, not by issue time,
 * within 2 * SIM_EL_SKEW. */
static int rm_concurrent(const rm_write_t *j, const rm_write_t *w)
{
    return j->key == w->key && j->issued + 2 * SIM_EL_SKEW >= w->issued;
}

/* Whether a chaos operation (a crash, a restart, a leave, a partition, a
 * heal or a cut) or a membership change (a member up or down on any node:
 * joins and re-joins too) happened at or after `since`: churn. */
static int churn_since(const sim_t *s, uint64_t since)
{
    if (s->last_chaos != 0 && s->last_chaos >= since)
        return 1;
    if (s->last_member != 0 && s->last_member >= since)
        return 1;
    /* A partition still active on some node is churn too (each side
     * has its own primaries). */
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].eng != NULL &&
            tether_engine_partitions(s->nodes[i].eng)->active > 0)
            return 1;
    return 0;
}

/* The canonical bytes of the pool's key `key` (an integer term) into
 * out (32 bytes). 0 or -1. */
static int rm_key(int key, uint8_t *out, size_t *len)
{
    ei_x_buff k;
    int rc;

    if (ei_x_new_with_version(&k) < 0)
        return -1;
    rc = ei_x_encode_long(&k, key) < 0 ||
                 tether_ring_canon((const uint8_t *)k.buff, (size_t)k.index,
                                   out, 32, len) != 0
             ? -1
             : 0;
    ei_x_free(&k);
    return rc;
}

/* One reminder write on a random member: set a key of the pool (its
 * payload the write's index) to fire within 2 s, or cancel one. */
static void rm_op(sim_t *s)
{
    int i = pick_member(s, -1), cancel, rc;
    rm_write_t *w;
    uint8_t key[32], pay[16];
    size_t klen, plen;

    if (i < 0 || s->nodes[i].rm == NULL || s->nrm >= SIM_RM_MAX)
        return;
    w = &s->rm[s->nrm];
    memset(w, 0, sizeof *w);
    w->key = (int)tether_sim_rng_below(&s->rng, SIM_RM_KEYS);
    cancel = tether_sim_rng_chance(&s->rng, 200);
    w->cancel = cancel;
    w->issued = s->now;
    w->fire_at = s->now + tether_sim_rng_below(&s->rng, 2000);
    if (rm_key(w->key, key, &klen) < 0)
        return;
    pay[0] = 131;
    pay[1] = 98; /* INTEGER_EXT: the write's index */
    pay[2] = 0;
    pay[3] = 0;
    pay[4] = (uint8_t)(s->nrm >> 8);
    pay[5] = (uint8_t)s->nrm;
    plen = 6;
    /* As the shells do before an API call: the time first (the write's
     * stamp and fire time read the engine's wall clock). */
    (void)tether_engine_tick(s->nodes[i].eng, s->now);
    s->nodes[i].ticked = 1;
    s->nodes[i].last_tick = s->now;
    drain(s);
    if (cancel)
        rc = tether_reminders_cancel(s->nodes[i].rm, key, klen,
                                     (uint64_t)s->nrm + 1);
    else
        rc =
            tether_reminders_set(s->nodes[i].rm, key, klen,
                                 (int64_t)tether__engine_wall(s->nodes[i].eng) +
                                     (int64_t)(w->fire_at - s->now),
                                 pay, plen, 0, (uint64_t)s->nrm + 1);
    note(s, "reminder %s key %d on %s (write %d): %d",
         cancel ? "cancel" : "set", w->key, s->nodes[i].name, s->nrm, rc);
    if (rc == 0)
        s->nrm++;
}

/* For the trace: the owners node i's ring gives write w's key. */
static void rm_note_owners(sim_t *s, int i, int w)
{
    const tether_ring_t *t = tether_ring_module_table(s->nodes[i].ring);
    const char *o[SIM_RM_REPLICAS] = {"", "", ""};
    uint8_t canon[32];
    size_t klen, n;

    if (rm_key(s->rm[w].key, canon, &klen) < 0)
        return;
    n = tether_ring_owners(
        t,
        tether_ring_shard_of_hash(tether_ring_hash_canon(canon, klen),
                                  tether_ring_shards(t)),
        SIM_RM_REPLICAS, o);
    note(s, "reminder write %d acked on %s: owners %s %s %s (%zu)", w,
         s->nodes[i].name, o[0], n > 1 ? o[1] : "", n > 2 ? o[2] : "", n);
}

static void rm_action(sim_t *s, int i, const tether_action_t *a)
{
    if (a->kind == TETHER_ACT_REMINDER_REPLY) {
        uint64_t ref = a->u.reminder_reply.ref;
        if (ref >= 1 && ref <= (uint64_t)s->nrm &&
            a->u.reminder_reply.status == TETHER_REMINDER_OK &&
            s->rm[ref - 1].acked == 0) {
            size_t members = tether_ring_members(
                tether_ring_module_table(s->nodes[i].ring), NULL, 0);
            s->rm[ref - 1].acked = s->now;
            s->rm[ref - 1].losses_at_ack = s->res->crashes + s->res->leaves;
            s->rm[ref - 1].replicas_at_ack =
                members < SIM_RM_REPLICAS ? (int)members : SIM_RM_REPLICAS;
            s->rm[ref - 1].churn_at_ack = churn_since(
                s, s->now > 2 * (uint64_t)s->cfg.ttl_ms
                       ? s->now - 2 * (uint64_t)s->cfg.ttl_ms
                       : 0);
            if (s->cfg.verbose)
                rm_note_owners(s, i, (int)ref - 1);
        }
        return;
    }
    {
        const uint8_t *p = a->u.reminder.payload.ptr;
        uint64_t f = a->u.reminder.fence;
        rm_write_t *w;
        int idx;

        if (a->u.reminder.payload.len != 6 || p[1] != 98) {
            fail(s,
                 "reminder delivered on %s with a payload never set "
                 "(%zu bytes)",
                 s->nodes[i].name, a->u.reminder.payload.len);
            return;
        }
        idx = (p[4] << 8) | p[5];
        if (idx >= s->nrm || s->rm[idx].cancel) {
            fail(s, "reminder delivered for write %d, never a set", idx);
            return;
        }
        w = &s->rm[idx];
        if (w->fence != 0 && w->fence != f) {
            fail(s, "write %d delivered with fences %llu and %llu", idx,
                 (unsigned long long)w->fence, (unsigned long long)f);
            return;
        }
        for (int k = 0; k < s->nrm; k++)
            if (k != idx && s->rm[k].fence == f) {
                fail(s, "writes %d and %d delivered with one fence", k, idx);
                return;
            }
        /* A duplicate only with churn around its fire time. */
        if (w->delivered > 0 &&
            !churn_since(s, w->fire_at > 2 * (uint64_t)s->cfg.ttl_ms
                                ? w->fire_at - 2 * (uint64_t)s->cfg.ttl_ms
                                : 0)) {
            fail(s,
                 "write %d (key %d) delivered twice on a quiet cluster "
                 "(first at %llu, fire at %llu)",
                 idx, w->key, (unsigned long long)w->first,
                 (unsigned long long)w->fire_at);
            return;
        }
        /* Cancelled ones never fire: a cancel issued after this set was
         * acknowledged, itself acknowledged, with no churn since. */
        for (int k = idx + 1; k < s->nrm; k++) {
            const rm_write_t *c = &s->rm[k];
            if (c->cancel && c->key == w->key && w->acked != 0 &&
                c->issued > w->acked && !rm_concurrent(w, c) &&
                c->acked != 0 &&
                !churn_since(s, c->issued > 2 * (uint64_t)s->cfg.ttl_ms
                                    ? c->issued - 2 * (uint64_t)s->cfg.ttl_ms
                                    : 0)) {
                fail(s, "write %d (key %d) fired after cancel %d", idx, w->key,
                     k);
                return;
            }
        }
        w->fence = f;
        if (w->delivered++ == 0)
            w->first = s->now;
    }
}

/* For a failure's trace: what each running node holds of key. */
static void rm_dump_key(sim_t *s, int key)
{
    uint8_t canon[32];
    size_t klen;

    if (rm_key(key, canon, &klen) < 0)
        return;
    for (int i = 0; i < s->n; i++) {
        const tether_reminders_stats_t *st;
        const uint8_t *p;
        size_t pl;
        int64_t at;
        int rc;
        if (s->nodes[i].rm == NULL)
            continue;
        char line[256];
        st = tether_reminders_stats(s->nodes[i].rm);
        (void)tether__reminders_describe(s->nodes[i].rm, canon, klen, line,
                                         sizeof line);
        fprintf(stderr, "  %s: %s\n", s->nodes[i].name, line);
        rc = tether_reminders_get(s->nodes[i].rm, canon, klen, 0, &at, &p, &pl);
        fprintf(stderr,
                "  %s key %d: %s; pending %llu armed %llu tombs %llu fired "
                "%llu held %llu handoffs out %llu in %llu timeouts %llu\n",
                s->nodes[i].name, key,
                rc == 1 ? "live" : rc == 0 ? "none" : "no copy",
                (unsigned long long)st->pending, (unsigned long long)st->armed,
                (unsigned long long)st->tombs, (unsigned long long)st->fired,
                (unsigned long long)st->held,
                (unsigned long long)st->handoffs_out,
                (unsigned long long)st->handoffs_in,
                (unsigned long long)st->handoff_timeouts);
    }
}

/*
 * At the end, for every key: its last write, with the writes issued
 * concurrently with it (rm_concurrent: any of them may be the one last
 * writer wins keeps), must have been delivered, once at least, when they
 * are all sets, acknowledged, due well before the end, and fewer crashes
 * or leaves happened since each was acknowledged than it had replicas
 * then (R, or fewer in the writer's view of a smaller cluster): all its
 * replicas may be gone otherwise. A write acknowledged under a partition
 * or churn is on its acknowledging majority only until anti-entropy
 * reaches the others: losing a majority may lose it then.
 */
static void check_reminders_end(sim_t *s, uint64_t due_by)
{
    for (int k = 0; k < s->nrm && !s->res->failed; k++) {
        const rm_write_t *w = &s->rm[k];
        int last = 1, required = 1, delivered = 0;
        for (int j = k + 1; j < s->nrm; j++)
            if (s->rm[j].key == w->key)
                last = 0;
        if (!last)
            continue;
        for (int j = 0; j <= k && required; j++) {
            const rm_write_t *c = &s->rm[j];
            if (j != k && !rm_concurrent(c, w))
                continue;
            uint64_t lost = s->res->crashes + s->res->leaves - c->losses_at_ack;
            if (c->cancel || c->acked == 0 || c->fire_at >= due_by ||
                lost >= (uint64_t)c->replicas_at_ack ||
                (c->churn_at_ack &&
                 lost >= (uint64_t)c->replicas_at_ack / 2 + 1))
                required = 0;
            delivered += c->delivered;
        }
        if (required && delivered == 0) {
            fail(s, "reminder write %d (key %d, fire at %llu) lost", k, w->key,
                 (unsigned long long)w->fire_at);
            if (s->cfg.verbose)
                rm_dump_key(s, w->key);
        }
    }
}

/* Checks every running node (cfg.check_all): after each chaos operation
 * as well as after each event, so a view a local API call left stale is
 * caught before the next input refreshes it. */
static void check_all_nodes(sim_t *s)
{
    for (int i = 0; i < s->n && !s->res->failed; i++)
        check_node(s, i);
    if (!s->res->failed)
        check_elections(s);
}

/* Processes one event. */
static int step(sim_t *s)
{
    uint64_t t_node = UINT64_MAX;
    int who = -1, rc;

    for (int i = 0; i < s->n; i++) {
        uint64_t d;
        if (s->nodes[i].eng == NULL)
            continue;
        d = node_due(s, i);
        if (d < t_node) {
            t_node = d;
            who = i;
        }
    }
    s->touched = -1;
    if (s->hn > 0 && (who < 0 || s->heap[0].at <= t_node)) {
        msg_t m = heap_pop(s);
        if (m.at > s->now)
            s->now = m.at;
        if (s->nodes[m.dst].eng != NULL && s->conn[m.src][m.dst] &&
            s->epoch[m.src][m.dst] == m.epoch) {
            /* As the shells do: the time first, then the input (a
             * module reads the engine's time when handling it); what
             * the tick asked for is carried out before the input. */
            (void)tether_engine_tick(s->nodes[m.dst].eng, s->now);
            s->nodes[m.dst].ticked = 1;
            s->nodes[m.dst].last_tick = s->now;
            drain(s);
            rc = tether_engine_recv(s->nodes[m.dst].eng, s->nodes[m.src].name,
                                    m.data, m.len);
            if (s->cfg.verbose > 1)
                note(s, "recv %s <- %s type %02x len %zu rc %d",
                     s->nodes[m.dst].name, s->nodes[m.src].name,
                     m.len > 1 ? m.data[1] : 0, m.len, rc);
            s->touched = m.dst;
        } else {
            s->res->messages_lost++;
            if (s->cfg.verbose > 1)
                note(s, "lost %s -> %s", s->nodes[m.src].name,
                     s->nodes[m.dst].name);
        }
        free(m.data);
    } else if (who >= 0) {
        if (t_node > s->now)
            s->now = t_node;
        rc = tether_engine_tick(s->nodes[who].eng, s->now);
        if (rc < 0)
            return rc;
        s->nodes[who].ticked = 1;
        s->nodes[who].last_tick = s->now;
        s->touched = who;
    } else {
        s->now++;
    }
    s->res->steps++;
    steps_total++;
    drain(s);
    if (s->cfg.check_all) {
        check_all_nodes(s);
    } else if (s->touched >= 0) {
        check_node(s, s->touched);
        check_elections(s);
    }
    return 0;
}

static int chaos_step(sim_t *s)
{
    int rc;

    if (tether_sim_rng_chance(&s->rng, s->cfg.op_pm)) {
        rc = chaos_op(s);
        if (rc < 0)
            return rc;
        drain(s);
        if (s->cfg.check_all)
            check_all_nodes(s);
    }
    if (tether_sim_rng_chance(&s->rng, s->cfg.user_pm)) {
        user_send(s);
        drain(s);
        if (s->cfg.check_all)
            check_all_nodes(s);
    }
    if (tether_sim_rng_chance(&s->rng, s->cfg.reg_pm)) {
        reg_op(s);
        drain(s);
        if (s->cfg.check_all)
            check_all_nodes(s);
    }
    if (tether_sim_rng_chance(&s->rng, s->cfg.rm_pm)) {
        rm_op(s);
        drain(s);
    }
    if (tether_sim_rng_chance(&s->rng, s->cfg.el_pm)) {
        el_op(s);
        drain(s);
        if (s->cfg.check_all)
            check_all_nodes(s);
    }
    if (tether_sim_rng_chance(&s->rng, s->cfg.map_pm)) {
        map_op(s);
        drain(s);
        if (s->cfg.check_all)
            check_all_nodes(s);
    }
    fix_joins(s);
    drain(s);
    return step(s);
}

static void heal_everywhere(sim_t *s)
{
    s->last_chaos = s->now; /* a heal is churn (the checks' word) */
    for (int i = 0; i < s->n; i++)
        if (s->nodes[i].eng != NULL)
            tether_engine_heal_all(s->nodes[i].eng);
    drain(s);
}

static void dump_entry(void *ctx, const uint8_t *name, size_t nlen,
                       const uint8_t *pid, size_t plen, const char *owner,
                       uint64_t stamp, int method)
{
    int idx = 0, v, ar;
    char tag[MAXATOMLEN_UTF8];
    unsigned long long k = 0, serial = 0, inc = 0;
    long node = -1;

    (void)ctx;
    (void)nlen;
    (void)plen;
    (void)(ei_decode_version((const char *)name, &idx, &v) == 0 &&
           ei_decode_tuple_header((const char *)name, &idx, &ar) == 0 &&
           ei_decode_atom((const char *)name, &idx, tag) == 0 &&
           ei_decode_ulonglong((const char *)name, &idx, &k) == 0);
    idx = 0;
    (void)(ei_decode_version((const char *)pid, &idx, &v) == 0 &&
           ei_decode_tuple_header((const char *)pid, &idx, &ar) == 0 &&
           ei_decode_atom((const char *)pid, &idx, tag) == 0 &&
           ei_decode_long((const char *)pid, &idx, &node) == 0 &&
           ei_decode_ulonglong((const char *)pid, &idx, &inc) == 0 &&
           ei_decode_ulonglong((const char *)pid, &idx, &serial) == 0);
    fprintf(stderr,
            "      {reg,%llu} -> pid %ld.%llu.%llu owner %s stamp %llu "
            "method %d\n",
            k, node, inc, serial, owner, (unsigned long long)stamp, method);
}

/* Prints every engine's view (verbose runs, on failure). */
static void dump(sim_t *s)
{
    for (int i = 0; i < s->n; i++) {
        simnode_t *sn = &s->nodes[i];
        const tether_membership_t *ms;
        if (sn->eng == NULL) {
            fprintf(stderr, "  %s: down (inc %llu)\n", sn->name,
                    (unsigned long long)sn->inc);
            continue;
        }
        ms = tether_engine_membership(sn->eng);
        fprintf(stderr, "  %s inc %llu%s join_pending=%d parts=%zu/%zu:\n",
                sn->name, (unsigned long long)sn->inc, sn->left ? " LEFT" : "",
                tether_engine_join_pending(sn->eng),
                tether_engine_partitions(sn->eng)->active,
                tether_engine_partitions(sn->eng)->n);
        for (int k = 0; k < SIM_EL_NAMES; k++) {
            char line[4096];
            ei_x_buff x;
            if (el_name(&x, k) < 0)
                continue;
            tether__election_describe(sn->el, (const uint8_t *)x.buff,
                                      (size_t)x.index, line, sizeof line);
            fprintf(stderr, "    {el,%d}: %s\n", k, line);
            ei_x_free(&x);
        }
        fprintf(stderr, "    registry (%zu held):\n",
                tether_registry_count(sn->reg));
        tether_registry_foreach_held(sn->reg, dump_entry, NULL);
        for (size_t k = 0; k < ms->n; k++) {
            const tether_member_t *m = &ms->v[k];
            int j = find_node(s, m->name);
            fprintf(stderr,
                    "    %s inc %llu %s lease %llu live %d session %d conn "
                    "%d\n",
                    m->name, (unsigned long long)m->incarnation,
                    m->status ? "left" : "alive",
                    (unsigned long long)m->lease_until, m->live,
                    tether_engine_session_up(sn->eng, m->name),
                    j >= 0 ? s->conn[i][j] : -1);
        }
    }
}

/* --------------------------------------------------------------- run */

void tether_sim_config_default(tether_sim_config_t *cfg, uint64_t seed)
{
    uint64_t st = seed;

    memset(cfg, 0, sizeof *cfg);
    cfg->seed = seed;
    cfg->nodes = 3 + (int)(tether_sim_splitmix64(&st) % 8); /* 3..10 */
    cfg->steps = SIM_DEFAULT_STEPS;
    cfg->heartbeat_ms = 100;
    cfg->ttl_ms = 400;
    cfg->delay_min_ms = 1;
    cfg->delay_max_ms = 20;
    cfg->loss_pm = 20;
    cfg->dup_pm = 20;
    cfg->op_pm = 15;
    cfg->user_pm = 60;
    cfg->reg_pm = 30;
    cfg->el_pm = 30;
    cfg->rm_pm = 40;
    cfg->map_pm = 30;
    cfg->max_total_steps = 50000000;
    cfg->check_all = 1;
}

void tether_sim_replay_line(const tether_sim_config_t *cfg, char *buf,
                            size_t cap)
{
    tether_sim_config_t def;
    int off;

    tether_sim_config_default(&def, cfg->seed);
    off = snprintf(buf, cap,
                   "c_src/build/tether_sim --seed %llu --nodes %d --steps %llu",
                   (unsigned long long)cfg->seed, cfg->nodes,
                   (unsigned long long)cfg->steps);
    if (off >= 0 && (size_t)off < cap && cfg->op_pm != def.op_pm)
        off += snprintf(buf + off, cap - (size_t)off, " --op-pm %u",
                        (unsigned)cfg->op_pm);
    if (off >= 0 && (size_t)off < cap && cfg->rm_pm != def.rm_pm)
        off += snprintf(buf + off, cap - (size_t)off, " --rm-pm %u",
                        (unsigned)cfg->rm_pm);
    if (off >= 0 && (size_t)off < cap && !cfg->check_all)
        (void)snprintf(buf + off, cap - (size_t)off, " --touched-only");
}

static void sim_free(sim_t *s)
{
    for (int i = 0; i < s->n; i++) {
        tether_engine_free(s->nodes[i].eng); /* its registry with it */
    }
    while (s->hn > 0) {
        msg_t m = heap_pop(s);
        free(m.data);
    }
    free(s->heap);
    free(s->seen);
    free(s->user_seen);
    free(s->user_from);
    free(s->user_to);
    for (int k = 0; k < SIM_EL_NAMES; k++)
        free(s->est[k]);
    free(s);
}

int tether_sim_run(const tether_sim_config_t *cfg, tether_sim_result_t *res)
{
    uint64_t bound, second_heal, check_at, end_at, st;
    sim_t *s;
    int rc = 0;

    if (cfg == NULL || res == NULL || cfg->nodes < 2 ||
        cfg->nodes > TETHER_SIM_NODES_MAX || cfg->heartbeat_ms == 0 ||
        cfg->ttl_ms <= cfg->heartbeat_ms ||
        cfg->delay_max_ms < cfg->delay_min_ms)
        return TETHER_EINVAL;
    memset(res, 0, sizeof *res);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return TETHER_ENOMEM;
    s->cfg = *cfg;
    s->res = res;
    s->n = cfg->nodes;
    s->chaos = 1;
    tether_sim_rng_seed(&s->rng, cfg->seed);
    st = cfg->seed ^ UINT64_C(0x5ec7e75ec7e75ec7);
    for (size_t k = 0; k < sizeof s->secret; k += 8) {
        uint64_t v = tether_sim_splitmix64(&st);
        memcpy(s->secret + k, &v, 8);
    }
    for (int i = 0; i < s->n; i++) {
        snprintf(s->nodes[i].name, SIM_NAME_MAX, "n%02d@sim", i);
        s->nodes[i].inc = 1;
        if ((rc = start_node(s, i)) < 0)
            goto done;
    }
    for (int i = 1; i < s->n; i++)
        join_via(s, i, 0);
    drain(s);

    for (uint64_t k = 0; k < cfg->steps && !res->failed; k++)
        if ((rc = chaos_step(s)) < 0)
            goto done;

    /* Quiet phase: no more faults; heal twice, a network delay apart.
     * The operator also re-joins every member through one anchor, as a
     * deployment's seed list would: when every node that knew of a joiner
     * crashed or left, that knowledge is gone, which no gossip protocol
     * can undo (information loss, not a protocol fault). */
    s->chaos = 0;
    heal_everywhere(s);
    anchor_joins(s);
    drain(s);
    second_heal = s->now + 2 * (uint64_t)cfg->delay_max_ms + 1;
    while (!res->failed && s->now < second_heal &&
           res->steps < cfg->max_total_steps)
        if ((rc = step(s)) < 0)
            goto done;
    heal_everywhere(s);
    fix_joins(s);
    drain(s);
    bound = cfg->agree_bound_ms
                ? cfg->agree_bound_ms
                : (uint64_t)cfg->ttl_ms + 20 * (uint64_t)cfg->heartbeat_ms;
    check_at = s->now + bound;
    end_at = check_at + SIM_QUIET_MARGIN;
    compute_expect(s);
    while (!res->failed && s->now < end_at &&
           res->steps < cfg->max_total_steps) {
        if (!s->checking && s->now >= check_at) {
            s->checking = 1;
            for (int i = 0; i < s->n && !res->failed; i++)
                check_node(s, i);
        }
        if ((rc = step(s)) < 0)
            goto done;
    }
    if (!res->failed && res->steps >= cfg->max_total_steps)
        fail(s, "step cap %llu reached",
             (unsigned long long)cfg->max_total_steps);
    for (int i = 0; i < s->n && !res->failed; i++)
        check_node(s, i);
    if (!res->failed)
        check_registries(s);
    if (!res->failed)
        check_rings(s);
    if (!res->failed)
        check_maps(s);
    for (int k = 0; k < SIM_EL_NAMES && !res->failed; k++)
        check_election_end(s, k);
    if (!res->failed)
        check_reminders_end(s, check_at);
done:
    if (res->failed && cfg->verbose)
        dump(s);
    res->virtual_ms = s->now;
    sim_free(s);
    if (rc < 0)
        return rc;
    return res->failed ? 1 : 0;
}
