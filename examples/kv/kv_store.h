/*
 * kv_store.h: the key-value store of the kv example: keys and values are
 * Erlang terms in external term format (131-prefixed). Keys are hashed by
 * their canonical encoding (tether_term_normalize), so equal terms find
 * the same entry whichever encoder produced them; values are kept as the
 * exact bytes given. Not thread-safe: the kv service uses it from the
 * node's loop thread only.
 */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stddef.h>

#include <ei.h>

#include "tether/error.h"

typedef struct kv_store kv_store_t;

/* Returns a new empty store, or NULL when out of memory. */
kv_store_t *kv_store_new(void);
void kv_store_free(kv_store_t *kv);

/*
 * Stores value (copied) under key; both 131-prefixed terms. Returns 0,
 * TETHER_EINVAL (not a term) or TETHER_ENOMEM.
 */
int kv_store_put(kv_store_t *kv, const char *key, size_t key_len,
                 const char *value, size_t value_len);

/*
 * Finds key; on 0, *value / *value_len point at the stored bytes (valid
 * until the next put or delete). TETHER_ENOTFOUND, TETHER_EINVAL.
 */
int kv_store_get(kv_store_t *kv, const char *key, size_t key_len,
                 const char **value, size_t *value_len);

/* Removes key; 0 or TETHER_ENOTFOUND (or TETHER_EINVAL). */
int kv_store_delete(kv_store_t *kv, const char *key, size_t key_len);

/* Number of entries. */
size_t kv_store_count(const kv_store_t *kv);

/* Appends the list of keys (canonical form, any order) to x. 0 or ENOMEM. */
int kv_store_keys(const kv_store_t *kv, ei_x_buff *x);

#endif /* KV_STORE_H */
