/*
 * core/membership.c: the member table (see membership.h): sorted entries,
 * the merge rule, leases, digest and wire form.
 */
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/membership.h"

#define MEMBERS_INITIAL_CAP 16

static const char *status_atom(int status)
{
    return status == TETHER_MEMBER_LEFT ? "left" : "alive";
}

/* Binary search: returns the index of name or where it would go. */
static size_t lower_bound(const tether_membership_t *ms, const char *name,
                          int *found)
{
    size_t lo = 0, hi = ms->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ms->v[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static int valid_name(const char *name)
{
    return tether__node_name_len(name) != 0;
}

/* Inserts a fresh entry at position i. Returns it, or NULL on failure. */
static tether_member_t *insert_at(tether_membership_t *ms, size_t i,
                                  const char *name)
{
    tether_member_t *m;

    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : MEMBERS_INITIAL_CAP;
        tether_member_t *v = realloc(ms->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        ms->v = v;
        ms->cap = cap;
    }
    memmove(ms->v + i + 1, ms->v + i, (ms->n - i) * sizeof *ms->v);
    ms->n++;
    m = &ms->v[i];
    memset(m, 0, sizeof *m);
    memcpy(m->name, name, strlen(name) + 1);
    return m;
}

int tether__membership_init(tether_membership_t *ms, const char *self,
                            uint64_t incarnation)
{
    tether_member_t *m;

    memset(ms, 0, sizeof *ms);
    if (!valid_name(self))
        return TETHER_EINVAL;
    memcpy(ms->self, self, strlen(self) + 1);
    m = insert_at(ms, 0, self);
    if (m == NULL)
        return TETHER_ENOMEM;
    m->incarnation = incarnation;
    m->status = TETHER_MEMBER_ALIVE;
    m->is_self = 1;
    m->live = 1;
    return 0;
}

void tether__membership_fini(tether_membership_t *ms)
{
    if (ms == NULL)
        return;
    free(ms->v);
    memset(ms, 0, sizeof *ms);
}

tether_member_t *tether__membership_find(const tether_membership_t *ms,
                                         const char *name)
{
    int found;
    size_t i;

    if (!valid_name(name))
        return NULL;
    i = lower_bound(ms, name, &found);
    return found ? &ms->v[i] : NULL;
}

tether_member_t *tether__membership_self(const tether_membership_t *ms)
{
    return tether__membership_find(ms, ms->self);
}

int tether__membership_merge(tether_membership_t *ms, const char *name,
                             uint64_t incarnation, int status)
{
    tether_member_t *m;
    int found;
    size_t i;

    if (!valid_name(name) ||
        (status != TETHER_MEMBER_ALIVE && status != TETHER_MEMBER_LEFT))
        return TETHER_EINVAL;
    i = lower_bound(ms, name, &found);
    if (!found) {
        if (ms->n >= TETHER_MEMBERS_MAX)
            return TETHER_ETOOBIG;
        m = insert_at(ms, i, name);
        if (m == NULL)
            return TETHER_ENOMEM;
        m->incarnation = incarnation;
        m->status = status;
        return 1;
    }
    m = &ms->v[i];
    if (m->is_self)
        return 0;
    if (incarnation > m->incarnation) {
        m->incarnation = incarnation;
        m->status = status;
        m->lease_until = 0; /* a new incarnation earns its own lease */
        return 1;
    }
    if (incarnation == m->incarnation && status == TETHER_MEMBER_LEFT &&
        m->status != TETHER_MEMBER_LEFT) {
        m->status = TETHER_MEMBER_LEFT;
        m->lease_until = 0;
        return 1;
    }
    return 0;
}

int tether__membership_heartbeat(tether_membership_t *ms, const char *name,
                                 uint64_t inc, uint64_t now_ms, uint64_t ttl_ms)
{
    tether_member_t *m;
    int rc;

    rc = tether__membership_merge(ms, name, inc, TETHER_MEMBER_ALIVE);
    if (rc < 0)
        return rc;
    m = tether__membership_find(ms, name);
    if (m == NULL || m->is_self || m->incarnation != inc ||
        m->status != TETHER_MEMBER_ALIVE)
        return TETHER_EREPLAY;
    m->lease_until = now_ms + ttl_ms;
    return 0;
}

void tether__membership_expire(tether_membership_t *ms, const char *name)
{
    tether_member_t *m = tether__membership_find(ms, name);

    if (m != NULL && !m->is_self)
        m->lease_until = 0;
}

void tether__membership_leave_self(tether_membership_t *ms)
{
    tether_member_t *m = tether__membership_self(ms);

    m->status = TETHER_MEMBER_LEFT;
}

int tether__membership_lease_ok(const tether_member_t *m, uint64_t now_ms)
{
    if (m->status != TETHER_MEMBER_ALIVE)
        return 0;
    return m->is_self || m->lease_until > now_ms;
}

static uint64_t digest_entry(uint64_t h, const char *name, uint64_t inc,
                             int status)
{
    unsigned char b[9];

    h = tether__fnv1a(h, name, strlen(name) + 1);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(inc >> (56 - 8 * k));
    b[8] = (unsigned char)status;
    return tether__fnv1a(h, b, sizeof b);
}

uint64_t tether__membership_digest(const tether_membership_t *ms)
{
    uint64_t h = TETHER_FNV_OFFSET;

    for (size_t i = 0; i < ms->n; i++)
        h = digest_entry(h, ms->v[i].name, ms->v[i].incarnation,
                         ms->v[i].status);
    return h;
}

int tether__membership_encode(const tether_membership_t *ms, ei_x_buff *x)
{
    if (ei_x_encode_list_header(x, (long)ms->n) < 0)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < ms->n; i++) {
        const tether_member_t *m = &ms->v[i];
        if (ei_x_encode_tuple_header(x, 3) < 0 ||
            tether__etf_encode_name(x, m->name) < 0 ||
            ei_x_encode_ulonglong(x, m->incarnation) < 0 ||
            ei_x_encode_atom(x, status_atom(m->status)) < 0)
            return TETHER_ENOMEM;
    }
    /* A list header of 0 already wrote [], so only a non-empty list
     * needs its tail. */
    if (ms->n > 0 && ei_x_encode_empty_list(x) < 0)
        return TETHER_ENOMEM;
    return 0;
}

/* Decodes `alive` or `left`. */
static int decode_status(const char *buf, int *index, int *status)
{
    char a[MAXATOMLEN_UTF8];

    if (ei_decode_atom_as(buf, index, a, sizeof a, ERLANG_UTF8, NULL, NULL) < 0)
        return TETHER_EPROTO;
    if (strcmp(a, "alive") == 0)
        *status = TETHER_MEMBER_ALIVE;
    else if (strcmp(a, "left") == 0)
        *status = TETHER_MEMBER_LEFT;
    else
        return TETHER_EPROTO;
    return 0;
}

int tether__membership_decode_merge(tether_membership_t *ms, const char *buf,
                                    int *index, int *changed, int *behind)
{
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t inc, h = TETHER_FNV_OFFSET;
    int count, status, rc;

    *changed = 0;
    *behind = 0;
    if (tether__etf_list(buf, index, &count) < 0)
        return TETHER_EPROTO;
    if (count > TETHER_MEMBERS_MAX)
        return TETHER_ETOOBIG;
    for (int i = 0; i < count; i++) {
        if (tether__etf_expect_tuple(buf, index, 3) < 0 ||
            tether__etf_decode_name(buf, index, name) < 0 ||
            tether__etf_decode_u64(buf, index, &inc) < 0 ||
            decode_status(buf, index, &status) < 0)
            return TETHER_EPROTO;
        rc = tether__membership_merge(ms, name, inc, status);
        if (rc < 0)
            return rc;
        if (rc > 0)
            *changed = 1;
        h = digest_entry(h, name, inc, status);
    }
    if (tether__etf_list_end(buf, index, count) < 0)
        return TETHER_EPROTO;
    *behind = h != tether__membership_digest(ms);
    return 0;
}
