/*
 * kv_store.c: a chained hash table keyed by canonical key bytes (see
 * kv_store.h). It doubles its bucket array when the entries outnumber
 * the buckets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_store.h"
#include "tether/term.h"

#define KV_BUCKETS_MIN 64

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    char *key; /* canonical, 131-prefixed */
    size_t key_len;
    char *value; /* as given, 131-prefixed */
    size_t value_len;
} entry_t;

struct kv_store {
    entry_t **buckets;
    size_t nbuckets;
    size_t count;
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

kv_store_t *kv_store_new(void)
{
    kv_store_t *kv = calloc(1, sizeof *kv);
    if (kv == NULL)
        return NULL;
    kv->buckets = calloc(KV_BUCKETS_MIN, sizeof *kv->buckets);
    if (kv->buckets == NULL) {
        free(kv);
        return NULL;
    }
    kv->nbuckets = KV_BUCKETS_MIN;
    return kv;
}

static void entry_free(entry_t *e)
{
    free(e->key);
    free(e->value);
    free(e);
}

void kv_store_free(kv_store_t *kv)
{
    if (kv == NULL)
        return;
    for (size_t i = 0; i < kv->nbuckets; i++) {
        while (kv->buckets[i]) {
            entry_t *e = kv->buckets[i];
            kv->buckets[i] = e->next;
            entry_free(e);
        }
    }
    free(kv->buckets);
    free(kv);
}

/* The canonical key in x (caller frees); 0 or a TETHER_E* code. */
static int canon(const char *key, size_t len, ei_x_buff *x)
{
    if (ei_x_new(x) < 0)
        return TETHER_ENOMEM;
    int rc = tether_term_normalize(key, len, x);
    if (rc < 0)
        ei_x_free(x);
    return rc;
}

static entry_t **find(kv_store_t *kv, const ei_x_buff *k, uint64_t h)
{
    entry_t **pp = &kv->buckets[h % kv->nbuckets];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->key_len == (size_t)k->index &&
            memcmp((*pp)->key, k->buff, (size_t)k->index) == 0)
            return pp;
    return pp;
}

static void grow(kv_store_t *kv)
{
    size_t n = kv->nbuckets * 2;
    entry_t **b = calloc(n, sizeof *b);
    if (b == NULL)
        return; /* keep the longer chains */
    for (size_t i = 0; i < kv->nbuckets; i++) {
        while (kv->buckets[i]) {
            entry_t *e = kv->buckets[i];
            kv->buckets[i] = e->next;
            e->next = b[e->hash % n];
            b[e->hash % n] = e;
        }
    }
    free(kv->buckets);
    kv->buckets = b;
    kv->nbuckets = n;
}

int kv_store_put(kv_store_t *kv, const char *key, size_t key_len,
                 const char *value, size_t value_len)
{
    if (!tether_term_valid(value, value_len))
        return TETHER_EINVAL;
    ei_x_buff k;
    int rc = canon(key, key_len, &k);
    if (rc < 0)
        return rc;
    char *v = malloc(value_len);
    if (v == NULL) {
        ei_x_free(&k);
        return TETHER_ENOMEM;
    }
    memcpy(v, value, value_len);
    uint64_t h = fnv1a(k.buff, (size_t)k.index);
    entry_t **pp = find(kv, &k, h);
    if (*pp) {
        free((*pp)->value);
        (*pp)->value = v;
        (*pp)->value_len = value_len;
        ei_x_free(&k);
        return 0;
    }
    entry_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        free(v);
        ei_x_free(&k);
        return TETHER_ENOMEM;
    }
    e->hash = h;
    e->key = k.buff; /* ei_x_buff memory is malloc'd: keep it */
    e->key_len = (size_t)k.index;
    e->value = v;
    e->value_len = value_len;
    *pp = e;
    if (++kv->count > kv->nbuckets)
        grow(kv);
    return 0;
}

/* Finds key's slot: *out is the link that points at its entry, or at
 * NULL when there is none. Returns 0, or canon()'s error. */
static int slot(kv_store_t *kv, const char *key, size_t key_len, entry_t ***out)
{
    ei_x_buff k;
    int rc = canon(key, key_len, &k);
    if (rc < 0)
        return rc;
    *out = find(kv, &k, fnv1a(k.buff, (size_t)k.index));
    ei_x_free(&k);
    return 0;
}

/* As slot(), for a key that must be held: TETHER_ENOTFOUND otherwise. */
static int existing(kv_store_t *kv, const char *key, size_t key_len,
                    entry_t ***out)
{
    int rc = slot(kv, key, key_len, out);
    if (rc == 0 && **out == NULL)
        rc = TETHER_ENOTFOUND;
    return rc;
}

int kv_store_get(kv_store_t *kv, const char *key, size_t key_len,
                 const char **value, size_t *value_len)
{
    entry_t **pp;
    int rc = existing(kv, key, key_len, &pp);
    if (rc < 0)
        return rc;
    *value = (*pp)->value;
    *value_len = (*pp)->value_len;
    return 0;
}

int kv_store_delete(kv_store_t *kv, const char *key, size_t key_len)
{
    entry_t **pp;
    int rc = existing(kv, key, key_len, &pp);
    if (rc < 0)
        return rc;
    entry_t *e = *pp;
    *pp = e->next;
    entry_free(e);
    kv->count--;
    return 0;
}

size_t kv_store_count(const kv_store_t *kv)
{
    return kv->count;
}

int kv_store_keys(const kv_store_t *kv, ei_x_buff *x)
{
    int rc = 0;
    if (kv->count > 0)
        rc |= ei_x_encode_list_header(x, (long)kv->count);
    for (size_t i = 0; rc == 0 && i < kv->nbuckets; i++)
        for (entry_t *e = kv->buckets[i]; rc == 0 && e; e = e->next)
            rc |= ei_x_append_buf(x, e->key + 1, (int)e->key_len - 1);
    rc |= ei_x_encode_empty_list(x);
    return rc == 0 ? 0 : TETHER_ENOMEM;
}
