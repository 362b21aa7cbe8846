/*
 * cnode/proc.c: the C process model (see proc.h).
 *
 * Every process is on the table's `all` list while it lives and in a hash
 * of pid numbers for lookup. A process that exits leaves both, moves to
 * the `dead` list and is freed by tether_procs_run() once it is off the
 * run queue, so a handler may exit itself or others safely.
 *
 * Exit signals between local processes go through a queue that is
 * drained iteratively at the end of every entry point, so a chain of
 * links never recurses.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/proc.h"

#define PROC_BUCKETS 1024u

/* Tags of the external term format used by the atom helpers. */
#define ETF_VERSION         131
#define ETF_ATOM            100
#define ETF_SMALL_ATOM      115
#define ETF_ATOM_UTF8       118
#define ETF_SMALL_ATOM_UTF8 119

typedef struct plink {
    struct plink *next;
    erlang_pid pid;
} plink_t;

/* A monitor this process holds on another (by pid or by name). */
typedef struct mon {
    struct mon *next;
    erlang_ref ref;
    bool by_name;
    erlang_pid pid;
    char name[TETHER_ATOM_MAX];
    char node[TETHER_ATOM_MAX];
} mon_t;

/* A monitor another process holds on this one. */
typedef struct watcher {
    struct watcher *next;
    erlang_ref ref;
    erlang_pid pid;
    bool by_name;
    char name[TETHER_ATOM_MAX];
} watcher_t;

typedef struct alias {
    struct alias *next;
    erlang_ref ref;
} alias_t;

typedef struct mbox_msg {
    struct mbox_msg *next;
    bool has_from;
    erlang_pid from;
    size_t len;
    char data[];
} mbox_msg_t;

typedef enum { SIG_EXIT_LINK, SIG_EXIT2 } sig_kind_t;

typedef struct sig {
    struct sig *next;
    sig_kind_t kind;
    erlang_pid from;
    erlang_pid to;
    size_t len;
    char reason[];
} sig_t;

struct tether_proc {
    tether_procs_t *procs;
    erlang_pid pid;
    char name[TETHER_ATOM_MAX];
    bool alive;
    bool trap;
    bool in_runq;
    tether_proc_spec_t spec;
    plink_t *links;
    mon_t *mons;
    watcher_t *watchers;
    alias_t *aliases;
    mbox_msg_t *mhead, *mtail;
    tether_proc_t *hnext;         /* hash chain */
    tether_proc_t *anext, *aprev; /* all list */
    tether_proc_t *rnext;         /* run queue */
    tether_proc_t *dnext;         /* dead list */
    char *reason;
    size_t reason_len;
};

struct tether_procs {
    char node[TETHER_ATOM_MAX];
    uint32_t creation;
    uint32_t next_num;
    uint32_t next_serial;
    uint64_t ref_counter;
    uint64_t unlink_id;
    tether_out_fn out;
    void *out_ctx;
    tether_proc_t *buckets[PROC_BUCKETS];
    tether_proc_t *all;
    tether_proc_t *rhead, *rtail;
    tether_proc_t *dead;
    sig_t *shead, *stail;
    bool draining;
    bool direct;     /* deliver *_send_in at once when possible */
    bool in_handler; /* a handler is running */
    tether_procs_stats_t stats;
};

/* ---- small helpers ------------------------------------------------- */

bool tether_pid_eq(const erlang_pid *a, const erlang_pid *b)
{
    return a->num == b->num && a->serial == b->serial &&
           a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

bool tether_ref_eq(const erlang_ref *a, const erlang_ref *b)
{
    /* The numbers first: they tell almost every two refs apart, and a
     * demonitor scans a process's monitors comparing refs one by one. */
    if (a->len != b->len)
        return false;
    for (int i = 0; i < a->len && i < 5; i++)
        if (a->n[i] != b->n[i])
            return false;
    return a->creation == b->creation && strcmp(a->node, b->node) == 0;
}

bool tether_node_name_valid(const char *node)
{
    if (node == NULL)
        return false;
    size_t n = strnlen(node, TETHER_ATOM_MAX);
    if (n == 0 || n >= TETHER_ATOM_MAX)
        return false;
    const char *at = strchr(node, '@');
    return at != NULL && at != node && at[1] != '\0';
}

bool tether_term_is_atom(const char *term, size_t len, const char *atom)
{
    const unsigned char *p = (const unsigned char *)term;
    size_t alen, off;
    if (term == NULL || len < 3 || p[0] != ETF_VERSION)
        return false;
    switch (p[1]) {
    case ETF_SMALL_ATOM:
    case ETF_SMALL_ATOM_UTF8:
        alen = p[2];
        off = 3;
        break;
    case ETF_ATOM:
    case ETF_ATOM_UTF8:
        if (len < 4)
            return false;
        alen = ((size_t)p[2] << 8) | p[3];
        off = 4;
        break;
    default:
        return false;
    }
    if (off + alen != len)
        return false;
    return strlen(atom) == alen && memcmp(term + off, atom, alen) == 0;
}

size_t tether_term_atom(char *buf, size_t cap, const char *atom)
{
    size_t alen = strnlen(atom, TETHER_ATOM_MAX);
    if (alen >= TETHER_ATOM_MAX || alen + 4 > cap)
        return 0;
    unsigned char *p = (unsigned char *)buf;
    p[0] = ETF_VERSION;
    if (alen < 256) {
        p[1] = ETF_SMALL_ATOM_UTF8;
        p[2] = (unsigned char)alen;
        memcpy(buf + 3, atom, alen);
        return alen + 3;
    }
    p[1] = ETF_ATOM_UTF8;
    p[2] = (unsigned char)(alen >> 8);
    p[3] = (unsigned char)alen;
    memcpy(buf + 4, atom, alen);
    return alen + 4;
}

static bool is_local_node(const tether_procs_t *procs, const char *node)
{
    return strcmp(procs->node, node) == 0;
}

bool tether_procs_is_local(const tether_procs_t *procs, const erlang_pid *pid)
{
    return is_local_node(procs, pid->node);
}

static size_t bucket_of(uint32_t num)
{
    return num % PROC_BUCKETS;
}

static int out(tether_procs_t *procs, const tether_out_t *op)
{
    if (procs->out == NULL)
        return TETHER_ECLOSED;
    return procs->out(procs->out_ctx, op);
}

/* ---- the table ----------------------------------------------------- */

int tether_procs_new(const char *node_name, uint32_t creation,
                     tether_out_fn out_fn, void *out_ctx,
                     tether_procs_t **procsp)
{
    if (!tether_node_name_valid(node_name) || procsp == NULL)
        return TETHER_EINVAL;
    tether_procs_t *procs = calloc(1, sizeof *procs);
    if (procs == NULL)
        return TETHER_ENOMEM;
    memcpy(procs->node, node_name, strlen(node_name) + 1);
    procs->creation = creation;
    procs->next_num = 1;
    procs->out = out_fn;
    procs->out_ctx = out_ctx;
    *procsp = procs;
    return 0;
}

static void free_lists(tether_proc_t *p)
{
    while (p->links) {
        plink_t *l = p->links;
        p->links = l->next;
        free(l);
    }
    while (p->mons) {
        mon_t *m = p->mons;
        p->mons = m->next;
        free(m);
    }
    while (p->watchers) {
        watcher_t *w = p->watchers;
        p->watchers = w->next;
        free(w);
    }
    while (p->aliases) {
        alias_t *a = p->aliases;
        p->aliases = a->next;
        free(a);
    }
    while (p->mhead) {
        mbox_msg_t *m = p->mhead;
        p->mhead = m->next;
        free(m);
    }
    p->mtail = NULL;
}

static void free_proc(tether_proc_t *p)
{
    free_lists(p);
    free(p->reason);
    free(p);
}

void tether_procs_free(tether_procs_t *procs)
{
    if (procs == NULL)
        return;
    char shutdown[TETHER_ATOM_TERM_MAX];
    size_t slen = tether_term_atom(shutdown, sizeof shutdown, "shutdown");
    while (procs->all) {
        tether_proc_t *p = procs->all;
        procs->all = p->anext;
        if (p->spec.on_exit)
            p->spec.on_exit(p, shutdown, slen, p->spec.arg);
        free_proc(p);
    }
    while (procs->dead) {
        tether_proc_t *p = procs->dead;
        procs->dead = p->dnext;
        if (p->spec.on_exit)
            p->spec.on_exit(p, p->reason, p->reason_len, p->spec.arg);
        free_proc(p);
    }
    while (procs->shead) {
        sig_t *s = procs->shead;
        procs->shead = s->next;
        free(s);
    }
    free(procs);
}

const char *tether_procs_node(const tether_procs_t *procs)
{
    return procs->node;
}

uint32_t tether_procs_creation(const tether_procs_t *procs)
{
    return procs->creation;
}

void tether_procs_set_creation(tether_procs_t *procs, uint32_t creation)
{
    procs->creation = creation;
}

void tether_procs_make_ref(tether_procs_t *procs, erlang_ref *ref)
{
    uint64_t c = ++procs->ref_counter;
    memset(ref, 0, sizeof *ref);
    memcpy(ref->node, procs->node, strlen(procs->node) + 1);
    ref->len = TETHER_REF_WORDS;
    ref->n[0] = (unsigned int)(c & TETHER_REF_W0_MAX);
    ref->n[1] = (unsigned int)(c >> 18);
    ref->n[2] = (unsigned int)(c >> 50);
    ref->creation = procs->creation;
}

tether_proc_t *tether_procs_find(tether_procs_t *procs, const erlang_pid *pid)
{
    if (!tether_procs_is_local(procs, pid) || pid->creation != procs->creation)
        return NULL;
    for (tether_proc_t *p = procs->buckets[bucket_of(pid->num)]; p;
         p = p->hnext)
        if (p->pid.num == pid->num && p->pid.serial == pid->serial)
            return p;
    return NULL;
}

tether_proc_t *tether_procs_whereis(tether_procs_t *procs, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return NULL;
    for (tether_proc_t *p = procs->all; p; p = p->anext)
        if (p->name[0] != '\0' && strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

void tether_procs_stats(const tether_procs_t *procs,
                        tether_procs_stats_t *stats)
{
    *stats = procs->stats;
}

bool tether_procs_pending(const tether_procs_t *procs)
{
    return procs->rhead != NULL;
}

/* ---- mailboxes and the run queue ----------------------------------- */

static void runq_push(tether_procs_t *procs, tether_proc_t *p)
{
    if (p->in_runq)
        return;
    p->in_runq = true;
    p->rnext = NULL;
    if (procs->rtail)
        procs->rtail->rnext = p;
    else
        procs->rhead = p;
    procs->rtail = p;
}

static tether_proc_t *runq_pop(tether_procs_t *procs)
{
    tether_proc_t *p = procs->rhead;
    if (p == NULL)
        return NULL;
    procs->rhead = p->rnext;
    if (procs->rhead == NULL)
        procs->rtail = NULL;
    p->in_runq = false;
    p->rnext = NULL;
    return p;
}

/* Queues a copy of `data` in p's mailbox. */
static void enqueue(tether_proc_t *p, const erlang_pid *from, const char *data,
                    size_t len)
{
    if (!p->alive)
        return;
    mbox_msg_t *m = malloc(sizeof *m + len);
    if (m == NULL) {
        p->procs->stats.dropped++;
        return;
    }
    m->next = NULL;
    m->has_from = from != NULL;
    if (from)
        m->from = *from;
    m->len = len;
    memcpy(m->data, data, len);
    if (p->mtail)
        p->mtail->next = m;
    else
        p->mhead = m;
    p->mtail = m;
    p->procs->stats.delivered++;
    runq_push(p->procs, p);
}

/* Queues a message built in an ei_x_buff, then frees the buffer. */
static void enqueue_x(tether_proc_t *p, const erlang_pid *from, ei_x_buff *x)
{
    enqueue(p, from, x->buff, (size_t)x->index);
    ei_x_free(x);
}

/* Appends a 131-prefixed term (without its version byte) to x. */
static int append_term(ei_x_buff *x, const char *term, size_t len)
{
    if (len < 2 || (unsigned char)term[0] != ETF_VERSION)
        return -1;
    return ei_x_append_buf(x, term + 1, (int)(len - 1));
}

/* {'EXIT', From, Reason} into p's mailbox. */
static void enqueue_exit_msg(tether_proc_t *p, const erlang_pid *from,
                             const char *reason, size_t len)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) < 0 ||
        ei_x_encode_atom(&x, "EXIT") < 0 || ei_x_encode_pid(&x, from) < 0 ||
        append_term(&x, reason, len) < 0) {
        ei_x_free(&x);
        return;
    }
    enqueue_x(p, from, &x);
}

/* {'DOWN', Ref, process, Pid | {Name, Node}, Reason} into p's mailbox. */
static void enqueue_down(tether_proc_t *p, const mon_t *m, const char *reason,
                         size_t len)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 5);
    rc |= ei_x_encode_atom(&x, "DOWN");
    rc |= ei_x_encode_ref(&x, &m->ref);
    rc |= ei_x_encode_atom(&x, "process");
    if (m->by_name) {
        rc |= ei_x_encode_tuple_header(&x, 2);
        rc |= ei_x_encode_atom(&x, m->name);
        rc |= ei_x_encode_atom(&x, m->node);
    } else {
        rc |= ei_x_encode_pid(&x, &m->pid);
    }
    rc |= append_term(&x, reason, len);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    enqueue_x(p, m->by_name ? NULL : &m->pid, &x);
}

size_t tether_procs_run(tether_procs_t *procs, size_t budget)
{
    size_t done = 0;
    while (budget == 0 || done < budget) {
        tether_proc_t *p = runq_pop(procs);
        if (p == NULL)
            break;
        if (!p->alive || p->mhead == NULL)
            continue;
        mbox_msg_t *m = p->mhead;
        p->mhead = m->next;
        if (p->mhead == NULL)
            p->mtail = NULL;
        tether_msg_t msg = {
            .from = m->has_from ? &m->from : NULL,
            .data = m->data,
            .len = m->len,
        };
        if (p->spec.handler) {
            bool nested = procs->in_handler;
            procs->in_handler = true;
            p->spec.handler(p, &msg, p->spec.arg);
            procs->in_handler = nested;
        }
        free(m);
        done++;
        if (p->alive && p->mhead)
            runq_push(procs, p);
    }
    /* Free exited processes that are off the run queue. */
    tether_proc_t **pp = &procs->dead;
    while (*pp) {
        tether_proc_t *p = *pp;
        if (p->in_runq) {
            pp = &p->dnext;
            continue;
        }
        *pp = p->dnext;
        if (p->spec.on_exit)
            p->spec.on_exit(p, p->reason, p->reason_len, p->spec.arg);
        free_proc(p);
    }
    return done;
}

/* ---- exit signals -------------------------------------------------- */

static void do_exit(tether_proc_t *p, const char *reason, size_t len);

static void sig_push(tether_procs_t *procs, sig_kind_t kind,
                     const erlang_pid *from, const erlang_pid *to,
                     const char *reason, size_t len)
{
    sig_t *s = malloc(sizeof *s + len);
    if (s == NULL)
        return;
    s->next = NULL;
    s->kind = kind;
    s->from = *from;
    s->to = *to;
    s->len = len;
    memcpy(s->reason, reason, len);
    if (procs->stail)
        procs->stail->next = s;
    else
        procs->shead = s;
    procs->stail = s;
}

static bool remove_link(tether_proc_t *p, const erlang_pid *pid)
{
    for (plink_t **lp = &p->links; *lp; lp = &(*lp)->next) {
        if (tether_pid_eq(&(*lp)->pid, pid)) {
            plink_t *l = *lp;
            *lp = l->next;
            free(l);
            return true;
        }
    }
    return false;
}

static bool has_link(const tether_proc_t *p, const erlang_pid *pid)
{
    for (const plink_t *l = p->links; l; l = l->next)
        if (tether_pid_eq(&l->pid, pid))
            return true;
    return false;
}

static int add_link(tether_proc_t *p, const erlang_pid *pid)
{
    if (has_link(p, pid))
        return 0;
    plink_t *l = malloc(sizeof *l);
    if (l == NULL)
        return TETHER_ENOMEM;
    l->pid = *pid;
    l->next = p->links;
    p->links = l;
    return 0;
}

/* Acts on one exit signal for a local process. */
static void handle_signal(tether_procs_t *procs, const sig_t *s)
{
    tether_proc_t *p = tether_procs_find(procs, &s->to);
    if (p == NULL || !p->alive)
        return;
    if (s->kind == SIG_EXIT_LINK && !remove_link(p, &s->from))
        return;
    if (s->kind == SIG_EXIT2 &&
        tether_term_is_atom(s->reason, s->len, "kill")) {
        char killed[TETHER_ATOM_TERM_MAX];
        size_t kl = tether_term_atom(killed, sizeof killed, "killed");
        do_exit(p, killed, kl);
        return;
    }
    if (p->trap) {
        enqueue_exit_msg(p, &s->from, s->reason, s->len);
        return;
    }
    if (tether_term_is_atom(s->reason, s->len, "normal") &&
        !tether_pid_eq(&s->from, &p->pid))
        return;
    do_exit(p, s->reason, s->len);
}

/* Processes queued exit signals until none is left (not reentrant). */
static void drain(tether_procs_t *procs)
{
    if (procs->draining)
        return;
    procs->draining = true;
    while (procs->shead) {
        sig_t *s = procs->shead;
        procs->shead = s->next;
        if (procs->shead == NULL)
            procs->stail = NULL;
        handle_signal(procs, s);
        free(s);
    }
    procs->draining = false;
}

static void unhash(tether_procs_t *procs, tether_proc_t *p)
{
    for (tether_proc_t **pp = &procs->buckets[bucket_of(p->pid.num)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == p) {
            *pp = p->hnext;
            break;
        }
    }
    if (p->aprev)
        p->aprev->anext = p->anext;
    else
        procs->all = p->anext;
    if (p->anext)
        p->anext->aprev = p->aprev;
    p->anext = p->aprev = NULL;
}

static bool remove_watcher(tether_proc_t *p, const erlang_ref *ref)
{
    for (watcher_t **wp = &p->watchers; *wp; wp = &(*wp)->next) {
        if (tether_ref_eq(&(*wp)->ref, ref)) {
            watcher_t *w = *wp;
            *wp = w->next;
            free(w);
            return true;
        }
    }
    return false;
}

static mon_t *take_mon(tether_proc_t *p, const erlang_ref *ref)
{
    for (mon_t **mp = &p->mons; *mp; mp = &(*mp)->next) {
        if (tether_ref_eq(&(*mp)->ref, ref)) {
            mon_t *m = *mp;
            *mp = m->next;
            return m;
        }
    }
    return NULL;
}

/*
 * Ends process p: tells links and monitors, drops what it holds, and
 * moves it to the dead list. The memory stays until tether_procs_run().
 */
static void do_exit(tether_proc_t *p, const char *reason, size_t len)
{
    tether_procs_t *procs = p->procs;
    if (!p->alive)
        return;
    p->alive = false;
    procs->stats.exited++;
    procs->stats.alive--;
    p->reason = malloc(len ? len : 1);
    if (p->reason) {
        memcpy(p->reason, reason, len);
        p->reason_len = len;
    }
    unhash(procs, p);
    p->dnext = procs->dead;
    procs->dead = p;

    while (p->links) {
        plink_t *l = p->links;
        p->links = l->next;
        if (is_local_node(procs, l->pid.node)) {
            sig_push(procs, SIG_EXIT_LINK, &p->pid, &l->pid, reason, len);
        } else {
            tether_out_t op = {.kind = TETHER_OUT_EXIT,
                               .node = l->pid.node,
                               .from = &p->pid,
                               .to = &l->pid,
                               .msg = reason,
                               .msg_len = len};
            (void)out(procs, &op);
        }
        free(l);
    }
    while (p->watchers) {
        watcher_t *w = p->watchers;
        p->watchers = w->next;
        if (is_local_node(procs, w->pid.node)) {
            tether_proc_t *wp = tether_procs_find(procs, &w->pid);
            mon_t *m = wp ? take_mon(wp, &w->ref) : NULL;
            if (m) {
                enqueue_down(wp, m, reason, len);
                free(m);
            }
        } else {
            tether_out_t op = {.kind = TETHER_OUT_MONITOR_EXIT,
                               .node = w->pid.node,
                               .from = &p->pid,
                               .from_name = w->by_name ? w->name : NULL,
                               .to = &w->pid,
                               .ref = &w->ref,
                               .msg = reason,
                               .msg_len = len};
            (void)out(procs, &op);
        }
        free(w);
    }
    while (p->mons) {
        mon_t *m = p->mons;
        p->mons = m->next;
        if (is_local_node(procs, m->node)) {
            tether_proc_t *t = m->by_name ? tether_procs_whereis(procs, m->name)
                                          : tether_procs_find(procs, &m->pid);
            if (t)
                remove_watcher(t, &m->ref);
        } else {
            tether_out_t op = {.kind = TETHER_OUT_DEMONITOR,
                               .node = m->node,
                               .from = &p->pid,
                               .to = m->by_name ? NULL : &m->pid,
                               .to_name = m->by_name ? m->name : NULL,
                               .ref = &m->ref};
            (void)out(procs, &op);
        }
        free(m);
    }
    p->name[0] = '\0';
    /* The mailbox is dropped; lists are already empty. */
    free_lists(p);
}

/* ---- processes ----------------------------------------------------- */

int tether_proc_spawn(tether_procs_t *procs, const tether_proc_spec_t *spec,
                      tether_proc_t **procp)
{
    tether_proc_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return TETHER_ENOMEM;
    p->procs = procs;
    p->spec = *spec;
    p->alive = true;
    memcpy(p->pid.node, procs->node, strlen(procs->node) + 1);
    /* Find a free (num, serial) pair; wrap num into the serial. */
    for (;;) {
        p->pid.num = procs->next_num;
        p->pid.serial = procs->next_serial;
        p->pid.creation = procs->creation;
        if (++procs->next_num > TETHER_PID_NUM_MAX) {
            procs->next_num = 1;
            procs->next_serial =
                (procs->next_serial + 1) & TETHER_PID_SERIAL_MAX;
        }
        if (tether_procs_find(procs, &p->pid) == NULL)
            break;
    }
    size_t b = bucket_of(p->pid.num);
    p->hnext = procs->buckets[b];
    procs->buckets[b] = p;
    p->anext = procs->all;
    if (procs->all)
        procs->all->aprev = p;
    procs->all = p;
    procs->stats.spawned++;
    procs->stats.alive++;
    if (procp)
        *procp = p;
    return 0;
}

tether_procs_t *tether_proc_procs(const tether_proc_t *self)
{
    return self->procs;
}

const erlang_pid *tether_proc_pid(const tether_proc_t *self)
{
    return &self->pid;
}

bool tether_proc_alive(const tether_proc_t *self)
{
    return self->alive;
}

void *tether_proc_arg(const tether_proc_t *self)
{
    return self->spec.arg;
}

const char *tether_proc_name(const tether_proc_t *self)
{
    return self->name[0] ? self->name : NULL;
}

int tether_proc_register(tether_proc_t *self, const char *name)
{
    if (!self->alive || name == NULL || name[0] == '\0' ||
        strnlen(name, TETHER_ATOM_MAX) >= TETHER_ATOM_MAX ||
        strcmp(name, "undefined") == 0)
        return TETHER_EINVAL;
    if (self->name[0] != '\0' ||
        tether_procs_whereis(self->procs, name) != NULL)
        return TETHER_EEXIST;
    memcpy(self->name, name, strlen(name) + 1);
    return 0;
}

int tether_procs_unregister(tether_procs_t *procs, const char *name)
{
    tether_proc_t *p = tether_procs_whereis(procs, name);
    if (p == NULL)
        return TETHER_ENOTFOUND;
    p->name[0] = '\0';
    return 0;
}

int tether_procs_send(tether_procs_t *procs, const erlang_pid *from,
                      const erlang_pid *to, const char *msg, size_t len)
{
    if (is_local_node(procs, to->node)) {
        tether_proc_t *t = tether_procs_find(procs, to);
        if (t == NULL || !t->alive) {
            procs->stats.dropped++;
            return 0; /* like `!`: sending to a dead pid succeeds */
        }
        enqueue(t, from, msg, len);
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_SEND,
                       .node = to->node,
                       .from = from,
                       .to = to,
                       .msg = msg,
                       .msg_len = len};
    return out(procs, &op);
}

int tether_proc_send(tether_proc_t *self, const erlang_pid *to, const char *msg,
                     size_t len)
{
    if (!self->alive)
        return TETHER_ECLOSED;
    return tether_procs_send(self->procs, &self->pid, to, msg, len);
}

int tether_proc_send_name(tether_proc_t *self, const char *name,
                          const char *node, const char *msg, size_t len)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    if (node == NULL || is_local_node(procs, node)) {
        tether_proc_t *t = tether_procs_whereis(procs, name);
        if (t == NULL)
            return TETHER_ENOTFOUND;
        enqueue(t, &self->pid, msg, len);
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_REG_SEND,
                       .node = node,
                       .from = &self->pid,
                       .to_name = name,
                       .msg = msg,
                       .msg_len = len};
    return out(procs, &op);
}

static tether_proc_t *find_alias(tether_procs_t *procs, const erlang_ref *ref)
{
    for (tether_proc_t *p = procs->all; p; p = p->anext)
        for (alias_t *a = p->aliases; a; a = a->next)
            if (tether_ref_eq(&a->ref, ref))
                return p;
    return NULL;
}

int tether_proc_send_alias(tether_proc_t *self, const erlang_ref *alias,
                           const char *msg, size_t len)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    if (is_local_node(procs, alias->node)) {
        tether_proc_t *t = find_alias(procs, alias);
        if (t)
            enqueue(t, &self->pid, msg, len);
        else
            procs->stats.dropped++;
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_ALIAS_SEND,
                       .node = alias->node,
                       .from = &self->pid,
                       .ref = alias,
                       .msg = msg,
                       .msg_len = len};
    return out(procs, &op);
}

int tether_proc_alias(tether_proc_t *self, erlang_ref *ref)
{
    if (!self->alive)
        return TETHER_ECLOSED;
    alias_t *a = malloc(sizeof *a);
    if (a == NULL)
        return TETHER_ENOMEM;
    tether_procs_make_ref(self->procs, &a->ref);
    a->next = self->aliases;
    self->aliases = a;
    *ref = a->ref;
    return 0;
}

int tether_proc_unalias(tether_proc_t *self, const erlang_ref *ref)
{
    for (alias_t **ap = &self->aliases; *ap; ap = &(*ap)->next) {
        if (tether_ref_eq(&(*ap)->ref, ref)) {
            alias_t *a = *ap;
            *ap = a->next;
            free(a);
            return 0;
        }
    }
    return TETHER_ENOTFOUND;
}

static size_t atom_term(char *buf, const char *atom)
{
    return tether_term_atom(buf, TETHER_ATOM_TERM_MAX, atom);
}

int tether_proc_link(tether_proc_t *self, const erlang_pid *pid)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    if (tether_pid_eq(pid, &self->pid))
        return 0;
    if (is_local_node(procs, pid->node)) {
        tether_proc_t *t = tether_procs_find(procs, pid);
        if (t == NULL || !t->alive) {
            if (self->trap) {
                char noproc[TETHER_ATOM_TERM_MAX];
                enqueue_exit_msg(self, pid, noproc,
                                 atom_term(noproc, "noproc"));
            }
            return TETHER_ENOTFOUND;
        }
        if (add_link(self, pid) < 0)
            return TETHER_ENOMEM;
        if (add_link(t, &self->pid) < 0) {
            remove_link(self, pid);
            return TETHER_ENOMEM;
        }
        return 0;
    }
    if (has_link(self, pid))
        return 0;
    if (add_link(self, pid) < 0)
        return TETHER_ENOMEM;
    tether_out_t op = {.kind = TETHER_OUT_LINK,
                       .node = pid->node,
                       .from = &self->pid,
                       .to = pid};
    int rc = out(procs, &op);
    if (rc < 0) {
        /* No way to the node: the link breaks at once. */
        char noconn[TETHER_ATOM_TERM_MAX];
        sig_push(procs, SIG_EXIT_LINK, pid, &self->pid, noconn,
                 atom_term(noconn, "noconnection"));
        drain(procs);
    }
    return 0;
}

int tether_proc_unlink(tether_proc_t *self, const erlang_pid *pid)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    if (!remove_link(self, pid))
        return 0;
    if (is_local_node(procs, pid->node)) {
        tether_proc_t *t = tether_procs_find(procs, pid);
        if (t)
            remove_link(t, &self->pid);
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_UNLINK_ID,
                       .node = pid->node,
                       .from = &self->pid,
                       .to = pid,
                       .id = ++procs->unlink_id};
    (void)out(procs, &op);
    return 0;
}

static int add_watcher(tether_proc_t *t, const erlang_ref *ref,
                       const erlang_pid *pid, const char *name)
{
    /* malloc, not calloc: a watcher holds ~3 KiB of name buffers and one
     * is made per monitor (every gen_server:call); each field is set. */
    watcher_t *w = malloc(sizeof *w);
    if (w == NULL)
        return TETHER_ENOMEM;
    w->ref = *ref;
    w->pid = *pid;
    w->by_name = name != NULL;
    if (name)
        memcpy(w->name, name, strlen(name) + 1);
    else
        w->name[0] = '\0';
    w->next = t->watchers;
    t->watchers = w;
    return 0;
}

/* Common part of monitor by pid and by name; `name` NULL for by pid. */
static int monitor(tether_proc_t *self, const erlang_pid *pid, const char *name,
                   const char *node, erlang_ref *ref)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    mon_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return TETHER_ENOMEM;
    tether_procs_make_ref(procs, &m->ref);
    *ref = m->ref;
    if (name) {
        m->by_name = true;
        memcpy(m->name, name, strlen(name) + 1);
        memcpy(m->node, node, strlen(node) + 1);
    } else {
        m->pid = *pid;
        memcpy(m->node, pid->node, strlen(pid->node) + 1);
    }
    char reason[TETHER_ATOM_TERM_MAX];
    if (is_local_node(procs, m->node)) {
        tether_proc_t *t = name ? tether_procs_whereis(procs, name)
                                : tether_procs_find(procs, pid);
        if (t == NULL || !t->alive ||
            add_watcher(t, &m->ref, &self->pid, name) < 0) {
            enqueue_down(self, m, reason, atom_term(reason, "noproc"));
            free(m);
            return 0;
        }
        m->next = self->mons;
        self->mons = m;
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_MONITOR,
                       .node = m->node,
                       .from = &self->pid,
                       .to = name ? NULL : pid,
                       .to_name = name,
                       .ref = &m->ref};
    if (out(procs, &op) < 0) {
        enqueue_down(self, m, reason, atom_term(reason, "noconnection"));
        free(m);
        return 0;
    }
    m->next = self->mons;
    self->mons = m;
    return 0;
}

int tether_proc_monitor(tether_proc_t *self, const erlang_pid *pid,
                        erlang_ref *ref)
{
    return monitor(self, pid, NULL, NULL, ref);
}

int tether_proc_monitor_name(tether_proc_t *self, const char *name,
                             const char *node, erlang_ref *ref)
{
    if (name == NULL || name[0] == '\0' ||
        strnlen(name, TETHER_ATOM_MAX) >= TETHER_ATOM_MAX)
        return TETHER_EINVAL;
    if (node == NULL)
        node = self->procs->node;
    if (!tether_node_name_valid(node))
        return TETHER_EINVAL;
    return monitor(self, NULL, name, node, ref);
}

int tether_proc_demonitor(tether_proc_t *self, const erlang_ref *ref)
{
    tether_procs_t *procs = self->procs;
    mon_t *m = take_mon(self, ref);
    if (m == NULL)
        return TETHER_ENOTFOUND;
    if (is_local_node(procs, m->node)) {
        for (tether_proc_t *t = procs->all; t; t = t->anext)
            if (remove_watcher(t, ref))
                break;
    } else {
        tether_out_t op = {.kind = TETHER_OUT_DEMONITOR,
                           .node = m->node,
                           .from = &self->pid,
                           .to = m->by_name ? NULL : &m->pid,
                           .to_name = m->by_name ? m->name : NULL,
                           .ref = &m->ref};
        (void)out(procs, &op);
    }
    free(m);
    return 0;
}

bool tether_proc_trap_exit(tether_proc_t *self, bool on)
{
    bool old = self->trap;
    self->trap = on;
    return old;
}

int tether_proc_send_exit(tether_proc_t *self, const erlang_pid *pid,
                          const char *reason, size_t len)
{
    tether_procs_t *procs = self->procs;
    if (!self->alive)
        return TETHER_ECLOSED;
    if (is_local_node(procs, pid->node)) {
        sig_push(procs, SIG_EXIT2, &self->pid, pid, reason, len);
        drain(procs);
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_EXIT2,
                       .node = pid->node,
                       .from = &self->pid,
                       .to = pid,
                       .msg = reason,
                       .msg_len = len};
    return out(procs, &op);
}

void tether_proc_exit(tether_proc_t *self, const char *reason, size_t len)
{
    char normal[TETHER_ATOM_TERM_MAX];
    if (reason == NULL) {
        reason = normal;
        len = atom_term(normal, "normal");
    }
    do_exit(self, reason, len);
    drain(self->procs);
}

/* ---- input from other nodes ---------------------------------------- */

void tether__procs_set_direct(tether_procs_t *procs, bool on)
{
    procs->direct = on;
}

/*
 * Hands an arriving message to t: at once, without a copy, when direct
 * delivery is on, no handler or exit signal is being processed and t's
 * mailbox is empty (so nothing queued for t is overtaken); queued
 * otherwise. The data is only read during the call either way.
 */
static void deliver_in(tether_proc_t *t, const erlang_pid *from,
                       const char *msg, size_t len)
{
    tether_procs_t *procs = t->procs;
    if (!procs->direct || procs->in_handler || procs->draining ||
        t->mhead != NULL || !t->alive || t->spec.handler == NULL) {
        enqueue(t, from, msg, len);
        return;
    }
    tether_msg_t m = {.from = from, .data = msg, .len = len};
    procs->stats.delivered++;
    procs->in_handler = true;
    t->spec.handler(t, &m, t->spec.arg);
    procs->in_handler = false;
}

void tether_procs_send_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to, const char *msg, size_t len)
{
    tether_proc_t *t = tether_procs_find(procs, to);
    if (t == NULL || !t->alive) {
        procs->stats.dropped++;
        return;
    }
    deliver_in(t, from, msg, len);
}

void tether_procs_reg_send_in(tether_procs_t *procs, const erlang_pid *from,
                              const char *name, const char *msg, size_t len)
{
    tether_proc_t *t = tether_procs_whereis(procs, name);
    if (t == NULL) {
        procs->stats.dropped++;
        return;
    }
    deliver_in(t, from, msg, len);
}

void tether_procs_alias_send_in(tether_procs_t *procs, const erlang_pid *from,
                                const erlang_ref *alias, const char *msg,
                                size_t len)
{
    tether_proc_t *t = find_alias(procs, alias);
    if (t == NULL) {
        procs->stats.dropped++;
        return;
    }
    deliver_in(t, from, msg, len);
}

void tether_procs_link_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to)
{
    tether_proc_t *t = tether_procs_find(procs, to);
    if (t == NULL || !t->alive) {
        char noproc[TETHER_ATOM_TERM_MAX];
        tether_out_t op = {.kind = TETHER_OUT_EXIT,
                           .node = from->node,
                           .from = to,
                           .to = from,
                           .msg = noproc,
                           .msg_len = atom_term(noproc, "noproc")};
        (void)out(procs, &op);
        return;
    }
    (void)add_link(t, from);
}

void tether_procs_unlink_in(tether_procs_t *procs, const erlang_pid *from,
                            const erlang_pid *to, uint64_t id)
{
    tether_proc_t *t = tether_procs_find(procs, to);
    if (t)
        remove_link(t, from);
    tether_out_t op = {.kind = TETHER_OUT_UNLINK_ID_ACK,
                       .node = from->node,
                       .from = to,
                       .to = from,
                       .id = id};
    (void)out(procs, &op);
}

void tether_procs_unlink_ack_in(tether_procs_t *procs, const erlang_pid *from,
                                const erlang_pid *to, uint64_t id)
{
    (void)procs;
    (void)from;
    (void)to;
    (void)id;
}

void tether_procs_exit_in(tether_procs_t *procs, const erlang_pid *from,
                          const erlang_pid *to, const char *reason,
                          size_t reason_len, bool is_exit2)
{
    sig_push(procs, is_exit2 ? SIG_EXIT2 : SIG_EXIT_LINK, from, to, reason,
             reason_len);
    drain(procs);
}

void tether_procs_monitor_in(tether_procs_t *procs, const erlang_pid *from,
                             const erlang_pid *to, const char *to_name,
                             const erlang_ref *ref)
{
    tether_proc_t *t = to_name ? tether_procs_whereis(procs, to_name)
                               : tether_procs_find(procs, to);
    if (t == NULL || !t->alive || add_watcher(t, ref, from, to_name) < 0) {
        char noproc[TETHER_ATOM_TERM_MAX];
        tether_out_t op = {.kind = TETHER_OUT_MONITOR_EXIT,
                           .node = from->node,
                           .from = to_name ? NULL : to,
                           .from_name = to_name,
                           .to = from,
                           .ref = ref,
                           .msg = noproc,
                           .msg_len = atom_term(noproc, "noproc")};
        (void)out(procs, &op);
    }
}

void tether_procs_demonitor_in(tether_procs_t *procs, const erlang_pid *from,
                               const erlang_pid *to, const char *to_name,
                               const erlang_ref *ref)
{
    (void)from;
    tether_proc_t *t = to_name ? tether_procs_whereis(procs, to_name)
                               : tether_procs_find(procs, to);
    if (t && remove_watcher(t, ref))
        return;
    /* The name may have moved since: look everywhere. */
    for (t = procs->all; t; t = t->anext)
        if (remove_watcher(t, ref))
            return;
}

void tether_procs_monitor_exit_in(tether_procs_t *procs, const erlang_pid *from,
                                  const char *from_name, const char *from_node,
                                  const erlang_pid *to, const erlang_ref *ref,
                                  const char *reason, size_t reason_len)
{
    (void)from;
    (void)from_name;
    (void)from_node;
    tether_proc_t *t = tether_procs_find(procs, to);
    if (t == NULL || !t->alive)
        return;
    mon_t *m = take_mon(t, ref);
    if (m == NULL)
        return;
    enqueue_down(t, m, reason, reason_len);
    free(m);
}

void tether_procs_node_down(tether_procs_t *procs, const char *node)
{
    char noconn[TETHER_ATOM_TERM_MAX];
    size_t nlen = atom_term(noconn, "noconnection");
    for (tether_proc_t *p = procs->all; p; p = p->anext) {
        for (plink_t *l = p->links; l; l = l->next)
            if (strcmp(l->pid.node, node) == 0)
                sig_push(procs, SIG_EXIT_LINK, &l->pid, &p->pid, noconn, nlen);
        for (mon_t **mp = &p->mons; *mp;) {
            mon_t *m = *mp;
            if (strcmp(m->node, node) == 0) {
                *mp = m->next;
                enqueue_down(p, m, noconn, nlen);
                free(m);
            } else {
                mp = &m->next;
            }
        }
        for (watcher_t **wp = &p->watchers; *wp;) {
            watcher_t *w = *wp;
            if (strcmp(w->pid.node, node) == 0) {
                *wp = w->next;
                free(w);
            } else {
                wp = &w->next;
            }
        }
    }
    drain(procs);
}
