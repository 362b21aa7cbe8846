/*
 * core/partition.c: the gossiped partition table and the defer queues
 * (see partition.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/partition.h"

#define DEFER_INITIAL_CAP 8

void tether__partition_table_init(tether_partition_table_t *t)
{
    memset(t, 0, sizeof *t);
}

static void free_group(char **g, size_t n)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(g[i]);
    free(g);
}

static void free_entry(tether_partition_t *p)
{
    free_group(p->a, p->na);
    free_group(p->b, p->nb);
    memset(p, 0, sizeof *p);
}

void tether__partition_table_fini(tether_partition_table_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free_entry(&t->v[i]);
    memset(t, 0, sizeof *t);
}

static int in_group(char *const *g, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(g[i], name) == 0)
            return 1;
    return 0;
}

/* Copies a group; returns NULL on allocation failure. */
static char **copy_group(const char *const *g, size_t n)
{
    char **c = calloc(n, sizeof *c);

    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        c[i] = strdup(g[i]);
        if (c[i] == NULL) {
            free_group(c, n);
            return NULL;
        }
    }
    return c;
}

static int check_group(const char *const *g, size_t n)
{
    if (g == NULL || n == 0)
        return TETHER_EINVAL;
    if (n > TETHER_PARTITION_GROUP_MAX)
        return TETHER_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        if (tether__node_name_len(g[i]) == 0)
            return TETHER_EINVAL;
    }
    return 0;
}

/* Removes entry i, keeping the order. */
static void remove_at(tether_partition_table_t *t, size_t i)
{
    if (!t->v[i].healed)
        t->active--;
    free_entry(&t->v[i]);
    memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof *t->v);
    t->n--;
    memset(&t->v[t->n], 0, sizeof t->v[t->n]);
}

/* Makes room by evicting the oldest tombstone. Returns 0 or ETOOBIG. */
static int make_room(tether_partition_table_t *t)
{
    size_t victim = t->n;

    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].healed &&
            (victim == t->n || t->v[i].order < t->v[victim].order))
            victim = i;
    if (victim == t->n)
        return TETHER_ETOOBIG;
    remove_at(t, victim);
    return 0;
}

static tether_partition_t *find_mut(tether_partition_table_t *t, uint64_t ref)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].ref == ref)
            return &t->v[i];
    return NULL;
}

int tether__partition_add(tether_partition_table_t *t, uint64_t ref, int mode,
                          int healed, const char *const *a, size_t na,
                          const char *const *b, size_t nb)
{
    tether_partition_t *p, e;
    size_t i;
    int rc;

    if (mode != TETHER_PARTITION_DROP && mode != TETHER_PARTITION_DEFER)
        return TETHER_EINVAL;
    if ((rc = check_group(a, na)) < 0 || (rc = check_group(b, nb)) < 0)
        return rc;
    for (i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (strcmp(a[i], b[j]) == 0)
                return TETHER_EINVAL;
    p = find_mut(t, ref);
    if (p != NULL) {
        if (healed && !p->healed) {
            p->healed = 1;
            t->active--;
            return 1;
        }
        return 0;
    }
    if (t->n == TETHER_PARTITIONS_MAX && (rc = make_room(t)) < 0)
        return rc;
    memset(&e, 0, sizeof e);
    e.ref = ref;
    e.mode = mode;
    e.healed = healed ? 1 : 0;
    e.order = t->next_order++;
    e.a = copy_group(a, na);
    e.b = copy_group(b, nb);
    if (e.a == NULL || e.b == NULL)
        goto fail;
    e.na = na;
    e.nb = nb;
    for (i = 0; i < t->n && t->v[i].ref < ref; i++)
        ;
    memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof *t->v);
    t->v[i] = e;
    t->n++;
    if (!e.healed)
        t->active++;
    return 1;
fail:
    free_group(e.a, e.a ? na : 0);
    free_group(e.b, e.b ? nb : 0);
    return TETHER_ENOMEM;
}

int tether__partition_heal(tether_partition_table_t *t, uint64_t ref)
{
    tether_partition_t *p = find_mut(t, ref);

    if (p == NULL)
        return TETHER_ENOTFOUND;
    if (p->healed)
        return 0;
    p->healed = 1;
    t->active--;
    return 1;
}

size_t tether__partition_heal_all(tether_partition_table_t *t)
{
    size_t changed = 0;

    for (size_t i = 0; i < t->n; i++) {
        if (!t->v[i].healed) {
            t->v[i].healed = 1;
            changed++;
        }
    }
    t->active = 0;
    return changed;
}

const tether_partition_t *
tether__partition_find(const tether_partition_table_t *t, uint64_t ref)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].ref == ref)
            return &t->v[i];
    return NULL;
}

int tether__partition_between(const tether_partition_table_t *t, const char *x,
                              const char *y)
{
    int mode = TETHER_PARTITION_NONE;

    if (t->active == 0)
        return TETHER_PARTITION_NONE;
    for (size_t i = 0; i < t->n; i++) {
        const tether_partition_t *p = &t->v[i];
        if (p->healed)
            continue;
        if ((in_group(p->a, p->na, x) && in_group(p->b, p->nb, y)) ||
            (in_group(p->b, p->nb, x) && in_group(p->a, p->na, y))) {
            if (p->mode == TETHER_PARTITION_DROP)
                return TETHER_PARTITION_DROP;
            mode = TETHER_PARTITION_DEFER;
        }
    }
    return mode;
}

uint64_t tether__partition_digest(const tether_partition_table_t *t)
{
    uint64_t h = TETHER_FNV_OFFSET;

    for (size_t i = 0; i < t->n; i++) {
        unsigned char b[9];
        for (int k = 0; k < 8; k++)
            b[k] = (unsigned char)(t->v[i].ref >> (56 - 8 * k));
        b[8] = (unsigned char)t->v[i].healed;
        h = tether__fnv1a(h, b, sizeof b);
    }
    return h;
}

static int encode_group(ei_x_buff *x, char *const *g, size_t n)
{
    if (ei_x_encode_list_header(x, (long)n) < 0)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (tether__etf_encode_name(x, g[i]) < 0)
            return TETHER_ENOMEM;
    /* A list header of 0 already wrote [], so only a non-empty list
     * needs its tail. */
    if (n > 0 && ei_x_encode_empty_list(x) < 0)
        return TETHER_ENOMEM;
    return 0;
}

int tether__partition_encode(const tether_partition_table_t *t, ei_x_buff *x)
{
    if (ei_x_encode_list_header(x, (long)t->n) < 0)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        const tether_partition_t *p = &t->v[i];
        if (ei_x_encode_tuple_header(x, 5) < 0 ||
            ei_x_encode_ulonglong(x, p->ref) < 0 ||
            ei_x_encode_atom(
                x, p->mode == TETHER_PARTITION_DROP ? "drop" : "defer") < 0 ||
            ei_x_encode_atom(x, p->healed ? "healed" : "active") < 0 ||
            encode_group(x, p->a, p->na) < 0 ||
            encode_group(x, p->b, p->nb) < 0)
            return TETHER_ENOMEM;
    }
    /* A list header of 0 already wrote [], so only a non-empty list
     * needs its tail. */
    if (t->n > 0 && ei_x_encode_empty_list(x) < 0)
        return TETHER_ENOMEM;
    return 0;
}

/* Decodes one of two atoms into 0 (first) or 1 (second). */
static int decode_choice(const char *buf, int *index, const char *a0,
                         const char *a1, int *out)
{
    char a[MAXATOMLEN_UTF8];

    if (ei_decode_atom_as(buf, index, a, sizeof a, ERLANG_UTF8, NULL, NULL) < 0)
        return TETHER_EPROTO;
    if (strcmp(a, a0) == 0)
        *out = 0;
    else if (strcmp(a, a1) == 0)
        *out = 1;
    else
        return TETHER_EPROTO;
    return 0;
}

/* Decodes a group into a heap array of heap names (*g, *n). */
static int decode_group(const char *buf, int *index, char ***g, size_t *n)
{
    char name[TETHER_NODE_NAME_MAX + 1];
    int count;

    *g = NULL;
    *n = 0;
    if (tether__etf_list(buf, index, &count) < 0)
        return TETHER_EPROTO;
    if (count == 0 || count > TETHER_PARTITION_GROUP_MAX)
        return TETHER_EPROTO;
    *g = calloc((size_t)count, sizeof **g);
    if (*g == NULL)
        return TETHER_ENOMEM;
    for (int i = 0; i < count; i++) {
        if (tether__etf_decode_name(buf, index, name) < 0)
            return TETHER_EPROTO;
        (*g)[i] = strdup(name);
        if ((*g)[i] == NULL)
            return TETHER_ENOMEM;
        (*n)++;
    }
    return tether__etf_list_end(buf, index, count);
}

int tether__partition_decode_merge(tether_partition_table_t *t, const char *buf,
                                   int *index, int *changed, int *behind)
{
    uint64_t h = TETHER_FNV_OFFSET, ref;
    char **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    int count, drop, healed, rc = TETHER_EPROTO;

    *changed = 0;
    *behind = 0;
    if (tether__etf_list(buf, index, &count) < 0)
        return TETHER_EPROTO;
    if (count > TETHER_PARTITIONS_MAX)
        return TETHER_ETOOBIG;
    for (int i = 0; i < count; i++) {
        unsigned char d[9];
        if (tether__etf_expect_tuple(buf, index, 5) < 0 ||
            tether__etf_decode_u64(buf, index, &ref) < 0 ||
            decode_choice(buf, index, "defer", "drop", &drop) < 0 ||
            decode_choice(buf, index, "active", "healed", &healed) < 0)
            goto fail;
        if ((rc = decode_group(buf, index, &a, &na)) < 0 ||
            (rc = decode_group(buf, index, &b, &nb)) < 0)
            goto fail;
        rc = tether__partition_add(
            t, ref, drop ? TETHER_PARTITION_DROP : TETHER_PARTITION_DEFER,
            healed, (const char *const *)a, na, (const char *const *)b, nb);
        free_group(a, na);
        free_group(b, nb);
        a = b = NULL;
        na = nb = 0;
        if (rc < 0)
            return rc == TETHER_EINVAL ? TETHER_EPROTO : rc;
        if (rc > 0)
            *changed = 1;
        for (int k = 0; k < 8; k++)
            d[k] = (unsigned char)(ref >> (56 - 8 * k));
        d[8] = (unsigned char)healed;
        h = tether__fnv1a(h, d, sizeof d);
    }
    if (tether__etf_list_end(buf, index, count) < 0)
        return TETHER_EPROTO;
    *behind = h != tether__partition_digest(t);
    return 0;
fail:
    free_group(a, na);
    free_group(b, nb);
    return rc < 0 ? rc : TETHER_EPROTO;
}

void tether__defer_init(tether_defer_queue_t *q, size_t max,
                        size_t max_bytes)
{
    memset(q, 0, sizeof *q);
    q->max = max ? max : 1;
    q->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
}

void tether__defer_fini(tether_defer_queue_t *q)
{
    if (q == NULL)
        return;
    tether__defer_clear(q);
    free(q->v);
    memset(q, 0, sizeof *q);
}

/* Doubles the ring, unrolling it so head is 0. */
static int grow(tether_defer_queue_t *q)
{
    size_t cap = q->cap ? q->cap * 2 : DEFER_INITIAL_CAP;
    tether_defer_item_t *v = malloc(cap * sizeof *v);

    if (v == NULL)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < q->n; i++)
        v[i] = q->v[(q->head + i) % q->cap];
    free(q->v);
    q->v = v;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int tether__defer_push(tether_defer_queue_t *q, uint8_t type,
                       const uint8_t *data, size_t len)
{
    tether_defer_item_t *it;

    if (q->n >= q->max || len > q->max_bytes - q->bytes) {
        q->overflow++;
        return TETHER_ETOOBIG;
    }
    if (q->n == q->cap && grow(q) < 0)
        return TETHER_ENOMEM;
    it = &q->v[(q->head + q->n) % q->cap];
    it->type = type;
    it->len = len;
    it->data = malloc(len ? len : 1);
    if (it->data == NULL)
        return TETHER_ENOMEM;
    if (len)
        memcpy(it->data, data, len);
    q->n++;
    q->bytes += len;
    q->pushed++;
    return 0;
}

int tether__defer_pop(tether_defer_queue_t *q, tether_defer_item_t *out)
{
    if (q->n == 0)
        return 0;
    *out = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    q->bytes -= out->len;
    return 1;
}

size_t tether__defer_clear(tether_defer_queue_t *q)
{
    size_t n = q->n;
    tether_defer_item_t it;

    while (tether__defer_pop(q, &it))
        free(it.data);
    return n;
}
