/*
 * nif/nif.h: what the files of tether_nif.so share. The library is split
 * by feature, each file a group of NIFs over one part of the core:
 *
 *   load.c      loading, the atoms, the function table, shared helpers
 *   engine.c    the engine resource: create, feed, drain typed actions,
 *               membership, partitions, the direct path (seal/open), info
 *   registry.c  the name registry (core/registry.h) of an engine
 *   services.c  the cluster service table (core/service_table.h)
 *   ring.c      the consistent-hash ring (core/ring.h): key hashing,
 *               standalone rings, the cluster ring of an engine
 *   election.c  leader election (core/election.h): lead and resign
 *               through the engine, fence/leader/candidates as reads
 *   reminders.c reminders (core/reminders.h): set, cancel, read, load
 *
 * A new engine module adds one file here: its NIFs (declared below and
 * listed in load.c's table), an attach function engine_new_nif calls, and
 * a clause in engine.c's action_term() for each action kind it adds.
 *
 * Rules every file follows: every engine call is made under the
 * resource's mutex and nothing under it calls back into Erlang; readers of
 * the registry and service tables take only the read-write lock; every
 * argument is checked (badarg or {error, Reason}); no pointer into a term
 * outlives the call. Node names cross as UTF-8 binaries (or ASCII atoms).
 * Atoms are made once, in load(), and read with ATOM(name).
 */
#ifndef TETHER_NIF_NIF_H
#define TETHER_NIF_NIF_H

#include <stddef.h>
#include <stdint.h>

#include <erl_nif.h>

#include "core/engine.h"
#include "core/registry.h"
#include "core/ring.h"
#include "core/service_table.h"

/* Actions handed out by one engine_drain call. */
#define DRAIN_MAX 256
/* Name keys up to this size are built on the stack. */
#define NIF_KEY_STACK 512
/* Longest cookie accepted (core/keys.h). */
#define NIF_COOKIE_MAX TETHER_COOKIE_MAX

/*
 * One engine, the lock that serializes calls into it, and its registry.
 * The registry changes only under `lock` (it runs inside the engine) and,
 * around each change of its table, under `rw` as a writer; registry
 * readers (whereis, names) take only `rw` as readers, so they never wait
 * for the engine nor for each other.
 */
typedef struct tether_nif_res {
    ErlNifMutex *lock;
    ErlNifRWLock *rw;
    tether_engine_t *eng;   /* owned; freed by the destructor */
    tether_registry_t *reg; /* a module of eng: freed with it */
    tether_svctab_t *svc;   /* a module of eng: freed with it; same rw */
    struct tether_ring_module *ring; /* a module of eng: freed with it */
    /* The cluster ring's members as atoms, by index in its table (0 for a
     * name outside ASCII), remade under rw's write lock with every table
     * (ring.c); freed by tether__nif_ring_detach(). */
    ERL_NIF_TERM *ring_atoms;
    size_t ring_natoms;
    struct tether_election *election;   /* a module of eng: freed with it */
    struct tether_reminders *reminders; /* a module of eng: freed with it */
    struct tether_maps *maps; /* a module of eng: freed with it; same rw */
    /* The caller's monotonic ms minus the engine's time, as of the last
     * tick (atomic): readers of leases tell the engine's time now. */
    int64_t clock_offset_ms;
    /* This engine's number, never reused in the VM's life (a cache key
     * that outlives no engine by mistake, unlike its address). */
    uint64_t serial;
    /* The most CPU time one engine_tick took, in microseconds (under
     * `lock`): what a tick costs the scheduler it runs on, whatever the
     * load of the machine. */
    uint64_t tick_max_cpu_us;
} tether_nif_res_t;

/* The resource type of engines (opened in load()). */
extern ErlNifResourceType *tether__nif_engine_rt;

/*
 * Every atom of the library, made once in load(): ATOM(name) is the atom
 * `name'. A new atom is one more X(name) in this list (an X-macro: the
 * struct below and load() both expand it).
 */
#define TETHER_NIF_ATOMS(X)                                                    \
    X(ok)                                                                      \
    X(error)                                                                   \
    X(true)                                                                    \
    X(false)                                                                   \
    X(undefined)                                                               \
    X(kept_own)                                                                \
    X(yes)                                                                     \
    X(no)                                                                      \
    X(deferred)                                                                \
    X(up)                                                                      \
    X(down)                                                                    \
    X(drop)                                                                    \
    X(defer)                                                                   \
    X(send)                                                                    \
    X(connect)                                                                 \
    X(member)                                                                  \
    X(message)                                                                 \
    X(reg_lost)                                                                \
    X(reg_resolve)                                                             \
    X(service)                                                                 \
    X(name)                                                                    \
    X(incarnation)                                                             \
    X(seed)                                                                    \
    X(heartbeat_ms)                                                            \
    X(ttl_ms)                                                                  \
    X(hello_retry_ms)                                                          \
    X(defer_max)                                                               \
    X(defer_max_bytes)                                                         \
    X(cluster_secret)                                                          \
    X(cookie)                                                                  \
    X(identity_seed)                                                           \
    X(seeds)                                                                   \
    X(seed_retry_ms)                                                           \
    X(join_timeout_ms)                                                         \
    X(reconnect_max_ms)                                                        \
    X(reconnect_attempts)                                                      \
    X(public_key)                                                              \
    X(left)                                                                    \
    X(join_pending)                                                            \
    X(join_contact)                                                            \
    X(now)                                                                     \
    X(stats)                                                                   \
    X(join)                                                                    \
    X(refused)                                                                 \
    X(timeout)                                                                 \
    X(shard)                                                                   \
    X(acquired)                                                                \
    X(released)                                                                \
    X(log)                                                                     \
    X(warning)                                                                 \
    X(info)                                                                    \
    X(ring_size)                                                               \
    X(leader)                                                                  \
    X(elected)                                                                 \
    X(revoked)                                                                 \
    X(election_lease_ms)                                                       \
    X(map_sync_ms)                                                             \
    X(map)                                                                     \
    X(map_store)                                                               \
    X(not_found)                                                               \
    X(no_such_map)                                                             \
    X(too_large)                                                               \
    X(invalid_value)                                                           \
    X(drain)                                                                   \
    X(bad_record)                                                              \
    X(pending)                                                                 \
    X(bad_key)                                                                 \
    X(payload_too_large)                                                       \
    X(removed)                                                                 \
    X(follower)                                                                \
    X(not_leader)                                                              \
    X(no_quorum)                                                               \
    X(no_leader)                                                               \
    X(already_candidate)                                                       \
    X(voters_mismatch)                                                         \
    X(not_candidate)                                                           \
    X(bad_name)                                                                \
    X(too_many_names)

typedef struct tether_nif_atoms {
#define TETHER_NIF_ATOM_FIELD(name) ERL_NIF_TERM am_##name;
    TETHER_NIF_ATOMS(TETHER_NIF_ATOM_FIELD)
#undef TETHER_NIF_ATOM_FIELD
} tether_nif_atoms_t;
extern tether_nif_atoms_t tether__nif_atoms;
#define ATOM(name) (tether__nif_atoms.am_##name)

/* ---- shared helpers (load.c) ---- */

/* {error, Reason} for a negative TETHER_E* code. */
ERL_NIF_TERM tether__nif_error(ErlNifEnv *env, int rc);
/* ok, or {error, Reason} for a negative code. */
ERL_NIF_TERM tether__nif_ok(ErlNifEnv *env, int rc);
/* Copies a node name (a binary of 1..TETHER_NODE_NAME_MAX bytes, no NUL,
 * or an ASCII atom) into out, NUL-terminated. Returns 1, or 0. */
int tether__nif_get_name(ErlNifEnv *env, ERL_NIF_TERM t,
                         char out[TETHER_NODE_NAME_MAX + 1]);
/* A binary term holding a copy of the C string s / of len bytes. */
ERL_NIF_TERM tether__nif_make_name(ErlNifEnv *env, const char *s);
ERL_NIF_TERM tether__nif_make_bytes(ErlNifEnv *env, const uint8_t *data,
                                    size_t len);
/* A list of binaries built by a C iteration (each record of a dump). */
typedef struct tether_nif_bins {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
} tether_nif_bins_t;
/* Conses a binary copy of rec onto ((tether_nif_bins_t *)ctx)->list;
 * returns 0 (the shape of the core's dump callbacks). */
int tether__nif_bins_add(void *ctx, const uint8_t *rec, size_t len);
/* Finds the engine resource in t. Returns 1, or 0 if t is none. */
int tether__nif_get_res(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **out);
/* A proper list of 1..TETHER_PARTITION_GROUP_MAX names as a heap array of
 * heap strings (freed with tether__nif_free_names()). Returns 1 or 0. */
int tether__nif_get_names(ErlNifEnv *env, ERL_NIF_TERM list, char ***out,
                          size_t *n);
void tether__nif_free_names(char **v, size_t n);
/* #{K => V} from parallel arrays of n names and counters. */
ERL_NIF_TERM tether__nif_counters(ErlNifEnv *env, const char *const *k,
                                  const uint64_t *v, size_t n);
/* Erlang's system time in ms (the wall clock of the engine's HLC). */
uint64_t tether__nif_system_ms(void);
/* Write-lock hooks over a resource's rw lock (registry and services). */
void tether__nif_wlock(void *ctx);
void tether__nif_wunlock(void *ctx);

/* ---- engine.c ---- */
/* The resource destructor (load()). */
void tether__nif_engine_dtor(ErlNifEnv *env, void *obj);
/* The engine file's atoms and the resource type of the buffers it hands
 * out without a copy (load()). Returns 0 or -1. */
int tether__nif_engine_load(ErlNifEnv *env);
ERL_NIF_TERM engine_new_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_recv_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_peer_up_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_peer_down_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_join_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_tick_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_next_deadline_nif(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_drain_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_leave_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_members_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_partition_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_heal_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_heal_all_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_partitions_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_send_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_relay_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_seal_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_open_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_trust_add_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_info_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);

/* ---- registry.c ---- */
/* Creates res's registry as a module of its engine (digests every
 * digest_ms). Returns 0 or a TETHER_E* code. */
int tether__nif_registry_attach(tether_nif_res_t *res, uint32_t digest_ms);
/*
 * A name key: the name's external term format, as a C-node writes the
 * same name, on the stack or in `bin` (services use it for their names).
 */
typedef struct tether_nif_key {
    uint8_t stack[NIF_KEY_STACK];
    ErlNifBinary bin;
    int heap;
    const uint8_t *data;
    size_t len;
} tether_nif_key_t;
/* Fills k for term t: the bytes key_encode() writes for common shapes (a
 * C-node writes the same), term_to_binary otherwise. Returns 1, or 0 (no
 * memory, more than TETHER_REG_NAME_MAX bytes). */
int tether__nif_key_make(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_key_t *k);
void tether__nif_key_free(tether_nif_key_t *k);
/* Direct-path envelopes gathered as [{Peer :: binary(), Envelope}] (a
 * tether_engine_sealed_t callback and its context; registry and maps). */
typedef struct tether_nif_sealed {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
} tether_nif_sealed_t;
void tether__nif_sealed_cb(void *ctx, const char *peer, const uint8_t *bytes,
                           size_t len);
ERL_NIF_TERM reg_register_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_register_sealed_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_unregister_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_holds_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_resolve_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_whereis_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_names_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_entries_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reg_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* ---- services.c ---- */
/* Creates res's service table as a module of its engine. */
int tether__nif_services_attach(tether_nif_res_t *res, uint32_t digest_ms);
ERL_NIF_TERM svc_register_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[]);
ERL_NIF_TERM svc_unregister_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM svc_lookup_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM svc_local_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM svc_names_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM svc_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* ---- ring.c ---- */
/* Opens the resource type of standalone rings. Returns 0 or -1. */
int tether__nif_ring_load(ErlNifEnv *env);
/* Creates res's cluster ring of `shards` as a module of its engine. */
int tether__nif_ring_attach(tether_nif_res_t *res, uint32_t shards);
/* Frees what attach made beside the module (the destructor calls it). */
void tether__nif_ring_detach(tether_nif_res_t *res);
ERL_NIF_TERM ring_hash_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_shard_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_new_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_add_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_remove_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_nodes_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_place_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_owners_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_shard_of_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);
ERL_NIF_TERM ring_shard_owners_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_is_owner_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM engine_ring_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[]);

/* The canonical encoding of a term (core/ring.h, tether_ring_canon()),
 * as the C-node writes the same term: the walked fast path in key, or
 * the general one in heap. */
typedef struct tether_nif_canon {
    tether_ring_key_t key;
    uint8_t *heap;
    const uint8_t *data;
    size_t len;
} tether_nif_canon_t;
/* Fills c for t, at most max bytes. Returns 1, or 0 for a term with no
 * canonical form (a closure), too large, or no memory. */
int tether__nif_canon(ErlNifEnv *env, ERL_NIF_TERM t, size_t max,
                      tether_nif_canon_t *c);
void tether__nif_canon_free(tether_nif_canon_t *c);

/* ---- election.c ---- */
/* Makes the election's atoms (load()). */
void tether__nif_election_load(ErlNifEnv *env);
/* Creates res's election module (quorum leases of lease_ms, rounds of
 * round_ms). Returns 0 or a TETHER_E* code. */
int tether__nif_election_attach(tether_nif_res_t *res, uint32_t lease_ms,
                                uint32_t round_ms);
/* The engine's time now, for lease checks (from clock_offset_ms). */
uint64_t tether__nif_engine_now(const tether_nif_res_t *res);
ERL_NIF_TERM election_lead_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_resign_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_fence_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_is_leader_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_leader_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_candidates_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[]);
ERL_NIF_TERM election_info_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);

/* ---- maps.c ---- */
/* Makes the maps' atoms (load()). */
/* Creates res's maps module (anti-entropy every sync_ms). */
int tether__nif_maps_attach(tether_nif_res_t *res, uint32_t sync_ms);
/* Frees the maps' term copies (the destructor calls it first). */
void tether__nif_maps_detach(tether_nif_res_t *res);
ERL_NIF_TERM map_load_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_dump_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_host_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_unhost_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_notify_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_put_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_remove_nif(ErlNifEnv *env, int argc,
                            const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_get_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_list_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_size_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);
ERL_NIF_TERM map_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* ---- load.c ---- */
ERL_NIF_TERM version_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]);

/* ---- reminders.c ---- */
/* Makes the reminders' atoms (load()). */
void tether__nif_reminders_load(ErlNifEnv *env);
/* Creates res's reminders module (after its ring), with the reminder_*
 * options of the engine_new map opts. Returns 0, TETHER_EINVAL (a bad
 * option) or another TETHER_E* code. */
int tether__nif_reminders_attach(tether_nif_res_t *res, ErlNifEnv *env,
                                 ERL_NIF_TERM opts);
/* The term of a REMINDER, REMINDER_REPLY or REMINDER_STORE action. */
ERL_NIF_TERM tether__nif_reminder_action(ErlNifEnv *env,
                                         const tether_action_t *a);
ERL_NIF_TERM reminders_set_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_cancel_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_get_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_subscribers_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_load_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_dump_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);
ERL_NIF_TERM reminders_info_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[]);

#endif /* TETHER_NIF_NIF_H */
