/*
 * Criterion suite for core/owner_table.c, the replicated owner table that
 * engine modules share, driven as a module would drive it: configuration
 * checks, writes seen on every member with the module's hooks called
 * (changed, settle, message, round), the same write twice changing
 * nothing, limits (entries, own entries, own bytes), the value index,
 * shell data attached and released once per entry, entries dropped with
 * their owner and back by sync, and every change made under the lock.
 * Engines talk through test/harness.h.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/codec.h"
#include "core/owner_table.h"
#include "test/harness.h"

#define T_TYPE 0x30

typedef struct mod {
    tether_otab_t *t;
    int added, replaced, removed, settled, rounds, messages, freed;
    int attached, detached;
    int refuse; /* check refuses entries with this flag */
} mod_t;

typedef struct ot_h {
    harness_t h;
    mod_t m[H_MAX];
} ot_h_t;

static int m_check(void *ctx, const tether_otab_entry_t *w)
{
    mod_t *m = ctx;

    return m->refuse && w->flags == (uint32_t)m->refuse ? TETHER_EPROTO : 0;
}

static void m_changed(void *ctx, const tether_otab_entry_t *e, int what)
{
    mod_t *m = ctx;

    cr_assert_not_null(e->key);
    if (what == TETHER_OTAB_ADDED)
        m->added++;
    else if (what == TETHER_OTAB_REPLACED)
        m->replaced++;
    else
        m->removed++;
}

static void m_settle(void *ctx, const uint8_t *key, size_t klen)
{
    mod_t *m = ctx;

    (void)key;
    cr_assert_gt(klen, 0);
    m->settled++;
}

static int m_message(void *ctx, const char *from, uint32_t o, const char *tag,
                     int arity, const char *buf, int idx)
{
    mod_t *m = ctx;

    (void)buf;
    (void)idx;
    cr_assert_str_eq(tether__otab_owner_name(m->t, o), from);
    if (strcmp(tag, "tst_ping") != 0 || arity != 1)
        return TETHER_EPROTO;
    m->messages++;
    return 0;
}

static void m_round(void *ctx, uint64_t now)
{
    mod_t *m = ctx;

    (void)now;
    m->rounds++;
}

static void m_free(void *ctx)
{
    mod_t *m = ctx;

    m->freed++;
}

static void *m_attach(void *ctx, const tether_otab_entry_t *e)
{
    mod_t *m = ctx;
    int *p = malloc(sizeof *p);

    cr_assert_not_null(p);
    *p = (int)e->vlen;
    m->attached++;
    return p;
}

static void m_detach(void *ctx, void *data)
{
    mod_t *m = ctx;

    free(data);
    m->detached++;
}

static void config(tether_otab_config_t *c, mod_t *m)
{
    memset(c, 0, sizeof *c);
    c->type = T_TYPE;
    c->prefix = "tst";
    c->digest_ms = 100;
    c->key_max = 64;
    c->val_max = 64;
    c->meta_max = 16;
    c->entries_max = 100;
    c->own_max = 10;
    c->own_bytes_max = 1000;
    c->value_index = 1;
    c->check = m_check;
    c->changed = m_changed;
    c->settle = m_settle;
    c->message = m_message;
    c->round = m_round;
    c->free = m_free;
    c->mctx = m;
    c->attach = m_attach;
    c->detach = m_detach;
    c->shell_ctx = m;
}

static void start(ot_h_t *x, int n)
{
    tether_otab_config_t c;

    memset(x, 0, sizeof *x);
    h_init(&x->h, n);
    h_start_all(&x->h);
    for (int i = 0; i < n; i++) {
        config(&c, &x->m[i]);
        cr_assert_eq(tether__otab_new(&c, x->h.e[i], &x->m[i].t), 0);
    }
    h_join_all(&x->h);
}

/* Frees the engines (and the tables with them); every module was freed
 * once and released every shell datum it attached. */
static void stop(ot_h_t *x)
{
    h_free(&x->h);
    for (int i = 0; i < x->h.n; i++) {
        cr_assert_eq(x->m[i].freed, 1);
        cr_assert_eq(x->m[i].attached, x->m[i].detached, "node %d", i);
    }
}

static int put(ot_h_t *x, int i, const char *key, const char *val,
               uint32_t flags)
{
    tether_otab_write_t w = {(const uint8_t *)key,
                             (const uint8_t *)val,
                             NULL,
                             strlen(key),
                             strlen(val),
                             0,
                             flags};

    return tether__otab_put(x->m[i].t, &w, NULL, NULL);
}

/* The value node i holds for (key, owner o), or NULL. */
static const char *held(ot_h_t *x, int i, const char *key, int o, char *buf)
{
    int oi = tether__otab_owner_find(x->m[i].t, x->h.names[o]);
    const tether_otab_entry_t *e =
        oi < 0 ? NULL
               : tether__otab_find(x->m[i].t, (const uint8_t *)key, strlen(key),
                                   (uint32_t)oi);

    if (e == NULL)
        return NULL;
    memcpy(buf, e->val, e->vlen);
    buf[e->vlen] = '\0';
    return buf;
}

static void assert_same(ot_h_t *x, int n)
{
    for (int i = 1; i < n; i++)
        cr_assert_eq(tether__otab_digest(x->m[i].t),
                     tether__otab_digest(x->m[0].t), "%d and 0 differ", i);
}

Test(owner_table, config_is_checked)
{
    harness_t h;
    tether_otab_config_t c;
    tether_otab_t *t;
    mod_t m = {0};

    h_init(&h, 1);
    h_start_all(&h);
    config(&c, &m);
    c.prefix = "toolong";
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EINVAL);
    c.prefix = "";
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EINVAL);
    config(&c, &m);
    c.key_max = 0;
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EINVAL);
    config(&c, &m);
    c.wlock = (void (*)(void *))free;
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EINVAL);
    config(&c, &m);
    c.type = TETHER_MSG_SHELL;
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EINVAL);
    cr_assert_eq(m.freed, 0, "a refused module is the caller's");
    config(&c, &m);
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), 0);
    cr_assert_eq(tether__otab_new(&c, h.e[0], &t), TETHER_EEXIST);
    cr_assert_eq(m.freed, 0);
    h_free(&h);
    cr_assert_eq(m.freed, 1, "the engine frees it");
}

Test(owner_table, writes_reach_every_member_with_the_hooks)
{
    ot_h_t x;
    char buf[80];

    start(&x, 3);
    cr_assert_eq(put(&x, 0, "k1", "v1", 0), 0);
    cr_assert_eq(put(&x, 1, "k1", "w1", 0), 0);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(held(&x, i, "k1", 0, buf), "v1");
        cr_assert_str_eq(held(&x, i, "k1", 1, buf), "w1");
        cr_assert_eq(tether__otab_count(x.m[i].t), 2);
        cr_assert_eq(x.m[i].added, 2, "node %d", i);
    }
    cr_assert_eq(x.m[2].settled, 2, "one per remote write");
    cr_assert_eq(x.m[0].settled, 1);
    /* The same again: nothing sent, nothing changed. */
    cr_assert_eq(put(&x, 0, "k1", "v1", 0), 0);
    h_pump(&x.h);
    cr_assert_eq(x.m[2].added + x.m[2].replaced, 2);
    /* A rewrite replaces in place; a deletion goes everywhere. */
    cr_assert_eq(put(&x, 0, "k1", "v2", 0), 0);
    h_pump(&x.h);
    cr_assert_str_eq(held(&x, 2, "k1", 0, buf), "v2");
    cr_assert_eq(x.m[2].replaced, 1);
    tether__otab_del(x.m[0].t,
                     tether__otab_find(x.m[0].t, (const uint8_t *)"k1", 2,
                                       tether__otab_self(x.m[0].t)));
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_null(held(&x, i, "k1", 0, buf));
        cr_assert_eq(tether__otab_count(x.m[i].t), 1);
    }
    /* Iterating one key's entries. */
    {
        int n = 0;
        for (tether_otab_entry_t *e =
                 tether__otab_first(x.m[2].t, (const uint8_t *)"k1", 2);
             e != NULL; e = tether__otab_next(x.m[2].t, e))
            n++;
        cr_assert_eq(n, 1);
    }
    h_run(&x.h, 300);
    cr_assert_gt(x.m[0].rounds, 0);
    assert_same(&x, 3);
    stop(&x);
}

Test(owner_table, limits_and_the_value_index)
{
    ot_h_t x;
    char key[16];

    start(&x, 1);
    cr_assert_eq(put(&x, 0, "", "v", 0), TETHER_EINVAL, "empty key");
    cr_assert_eq(put(&x, 0, "k", "", 0), TETHER_EINVAL, "empty value");
    for (int k = 0; k < 10; k++) {
        snprintf(key, sizeof key, "k%d", k);
        cr_assert_eq(put(&x, 0, key, key, 0), 0);
    }
    cr_assert_eq(put(&x, 0, "k10", "v", 0), TETHER_ETOOBIG, "own_max");
    cr_assert_eq(put(&x, 0, "k3", "new", 0), 0, "a rewrite is no new entry");
    cr_assert_not_null(
        tether__otab_find_own_value(x.m[0].t, (const uint8_t *)"new", 3));
    cr_assert_null(
        tether__otab_find_own_value(x.m[0].t, (const uint8_t *)"k3", 2),
        "the old value left the index");
    cr_assert_eq(
        tether__otab_owner_count(x.m[0].t, tether__otab_self(x.m[0].t)), 10);
    {
        char big[70];
        memset(big, 'b', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        cr_assert_eq(put(&x, 0, "k3", big, 0), TETHER_EINVAL, "val_max");
    }
    stop(&x);
}

Test(owner_table, entries_go_with_their_owner_and_come_back_by_sync)
{
    ot_h_t x;
    char buf[80];

    start(&x, 3);
    cr_assert_eq(put(&x, 2, "k", "c", 0), 0);
    h_pump(&x.h);
    cr_assert_str_eq(held(&x, 0, "k", 2, buf), "c");
    h_cut(&x.h, 2, 0);
    h_cut(&x.h, 2, 1);
    h_pump(&x.h);
    cr_assert_null(held(&x, 0, "k", 2, buf));
    cr_assert_eq(x.m[0].removed, 1);
    /* c reconnects (the engines redial): its set is synced again. */
    h_run(&x.h, 1500);
    cr_assert_str_eq(held(&x, 0, "k", 2, buf), "c");
    cr_assert_gt(tether__otab_stats(x.m[0].t)->syncs_recv, 0);
    assert_same(&x, 3);
    stop(&x);
}

Test(owner_table, module_messages_and_refused_entries)
{
    ot_h_t x;
    ei_x_buff m;
    uint64_t bad;

    start(&x, 2);
    h_etf_begin(&m, 1, "tst_ping");
    h_send_etf(&x.h, 0, 1, T_TYPE, &m);
    cr_assert_eq(x.m[1].messages, 1);
    bad = tether__otab_stats(x.m[1].t)->bad_msgs;
    h_etf_begin(&m, 2, "tst_other");
    ei_x_encode_long(&m, 1);
    h_send_etf(&x.h, 0, 1, T_TYPE, &m);
    cr_assert_eq(tether__otab_stats(x.m[1].t)->bad_msgs, bad + 1);
    /* An entry the module's check refuses makes the message bad. */
    x.m[1].refuse = 7;
    cr_assert_eq(put(&x, 0, "k", "v", 7), 0);
    h_pump(&x.h);
    cr_assert_eq(tether__otab_stats(x.m[1].t)->bad_msgs, bad + 2);
    cr_assert_eq(tether__otab_count(x.m[1].t), 0);
    stop(&x);
}

Test(owner_table, every_change_is_made_under_the_lock)
{
    ot_h_t x;
    tether_otab_config_t c;
    h_lock_t lock = {0};

    memset(&x, 0, sizeof x);
    h_init(&x.h, 2);
    h_start_all(&x.h);
    for (int i = 0; i < 2; i++) {
        config(&c, &x.m[i]);
        c.wlock = h_wlock;
        c.wunlock = h_wunlock;
        c.lock_ctx = &lock;
        cr_assert_eq(tether__otab_new(&c, x.h.e[i], &x.m[i].t), 0);
    }
    h_join_all(&x.h);
    lock.count = 0;
    cr_assert_eq(put(&x, 0, "k", "v", 0), 0);
    h_pump(&x.h);
    cr_assert_geq(lock.count, 2, "an insert on each node");
    lock.count = 0;
    cr_assert_eq(put(&x, 0, "k", "w", 0), 0);
    h_pump(&x.h);
    cr_assert_geq(lock.count, 2, "a replace on each node");
    cr_assert_eq(lock.depth, 0);
    stop(&x);
}
