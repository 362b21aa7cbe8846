/*
 * nif/load.c: loading tether_nif.so: the resource type, the atoms, the
 * function table, and the helpers every NIF file shares (nif/nif.h).
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>
#include <sodium.h>

#include "core/codec.h"
#include "nif/nif.h"
#include "tether/error.h"
#include "tether/version.h"

ErlNifResourceType *tether__nif_engine_rt;
tether_nif_atoms_t tether__nif_atoms;

/* {error, Reason} for a negative TETHER_E* code. */
ERL_NIF_TERM tether__nif_error(ErlNifEnv *env, int rc)
{
    const char *r;

    switch (rc) {
    case TETHER_EINVAL:
        r = "invalid";
        break;
    case TETHER_ENOMEM:
        r = "enomem";
        break;
    case TETHER_EAGAIN:
        r = "again";
        break;
    case TETHER_EPROTO:
        r = "protocol";
        break;
    case TETHER_ETOOBIG:
        r = "too_big";
        break;
    case TETHER_EAUTH:
        r = "auth";
        break;
    case TETHER_ENOTFOUND:
        r = "not_found";
        break;
    case TETHER_EEXIST:
        r = "exists";
        break;
    case TETHER_EIO:
        r = "io";
        break;
    case TETHER_ECLOSED:
        r = "closed";
        break;
    case TETHER_ETIMEDOUT:
        r = "timeout";
        break;
    case TETHER_EREPLAY:
        r = "replay";
        break;
    case TETHER_EUNSUPP:
        r = "unsupported";
        break;
    default:
        r = "unknown";
        break;
    }
    return enif_make_tuple2(env, ATOM(error), enif_make_atom(env, r));
}

/* ok, or {error, Reason} for a negative code. */
ERL_NIF_TERM tether__nif_ok(ErlNifEnv *env, int rc)
{
    return rc < 0 ? tether__nif_error(env, rc) : ATOM(ok);
}

/* Copies a node name (a binary of 1..TETHER_NODE_NAME_MAX bytes, no NUL,
 * or an ASCII atom) into out, NUL-terminated. Returns 1, or 0 if the term
 * is not one. */
int tether__nif_get_name(ErlNifEnv *env, ERL_NIF_TERM t,
                         char out[TETHER_NODE_NAME_MAX + 1])
{
    ErlNifBinary b;
    int n;

    /* An ASCII atom (a node() as it usually is) saves the caller an
     * atom_to_binary; other atoms are refused (OTP 25's enif atom text is
     * Latin-1), and the caller passes the UTF-8 binary instead. */
    if (enif_is_atom(env, t)) {
        n = enif_get_atom(env, t, out, TETHER_NODE_NAME_MAX + 1,
                          ERL_NIF_LATIN1);
        if (n <= 1)
            return 0;
        for (int i = 0; i < n - 1; i++)
            if ((unsigned char)out[i] >= 0x80)
                return 0;
        return 1;
    }
    if (!enif_inspect_binary(env, t, &b) || b.size == 0 ||
        b.size > TETHER_NODE_NAME_MAX || memchr(b.data, 0, b.size) != NULL)
        return 0;
    memcpy(out, b.data, b.size);
    out[b.size] = '\0';
    return 1;
}

/* A binary term holding a copy of the C string s. */
ERL_NIF_TERM tether__nif_make_name(ErlNifEnv *env, const char *s)
{
    ERL_NIF_TERM t;
    size_t n = strlen(s);
    unsigned char *p = enif_make_new_binary(env, n, &t);

    if (p == NULL) /* the emulator aborts first; never reached in practice */
        return ATOM(error);
    if (n > 0)
        memcpy(p, s, n);
    return t;
}

/* A binary term holding a copy of len bytes. */
ERL_NIF_TERM tether__nif_make_bytes(ErlNifEnv *env, const uint8_t *data,
                                    size_t len)
{
    ERL_NIF_TERM t;
    unsigned char *p = enif_make_new_binary(env, len, &t);

    if (p == NULL) /* as in tether__nif_make_name() */
        return ATOM(error);
    if (len > 0)
        memcpy(p, data, len);
    return t;
}

int tether__nif_bins_add(void *ctx, const uint8_t *rec, size_t len)
{
    tether_nif_bins_t *b = ctx;

    b->list = enif_make_list_cell(b->env, tether__nif_make_bytes(b->env, rec, len),
                                  b->list);
    return 0;
}

/* Finds the engine resource in t. Returns 1, or 0 if t is none. */
int tether__nif_get_res(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **out)
{
    void *obj;

    if (!enif_get_resource(env, t, tether__nif_engine_rt, &obj))
        return 0;
    *out = obj;
    return (*out)->eng != NULL;
}

/*
 * Reads a proper list of at most TETHER_PARTITION_GROUP_MAX names into a
 * heap array of heap strings (*out, *n); the caller frees it with
 * tether__nif_free_names(). Returns 1, or 0 for a bad list (nothing left
 * allocated).
 */
void tether__nif_free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int tether__nif_get_names(ErlNifEnv *env, ERL_NIF_TERM list, char ***out,
                          size_t *n)
{
    unsigned len;
    ERL_NIF_TERM head, tail = list;
    char **v;
    size_t i = 0;

    if (!enif_get_list_length(env, list, &len) || len == 0 ||
        len > TETHER_PARTITION_GROUP_MAX)
        return 0;
    v = calloc(len, sizeof *v);
    if (v == NULL)
        return 0;
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        char name[TETHER_NODE_NAME_MAX + 1];
        if (!tether__nif_get_name(env, head, name) ||
            (v[i] = malloc(strlen(name) + 1)) == NULL)
            goto fail;
        memcpy(v[i], name, strlen(name) + 1);
        i++;
    }
    *out = v;
    *n = i;
    return 1;
fail:
    tether__nif_free_names(v, i);
    return 0;
}

/* Erlang's system time in ms (the wall clock of the engine's HLC). */
uint64_t tether__nif_system_ms(void)
{
    return (uint64_t)(enif_monotonic_time(ERL_NIF_MSEC) +
                      enif_time_offset(ERL_NIF_MSEC));
}

ERL_NIF_TERM tether__nif_counters(ErlNifEnv *env, const char *const *k,
                                  const uint64_t *v, size_t n)
{
    ERL_NIF_TERM map = enif_make_new_map(env);

    for (size_t i = 0; i < n; i++)
        if (!enif_make_map_put(env, map, enif_make_atom(env, k[i]),
                               enif_make_uint64(env, v[i]), &map))
            return tether__nif_error(env, TETHER_ENOMEM);
    return map;
}

/* Write-lock hooks of the registry (core/registry.h). */
void tether__nif_wlock(void *ctx)
{
    enif_rwlock_rwlock(ctx);
}

void tether__nif_wunlock(void *ctx)
{
    enif_rwlock_rwunlock(ctx);
}

/* version() -> binary(): the C library's version string. */
ERL_NIF_TERM version_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argv;
    if (argc != 0)
        return enif_make_badarg(env);
    return tether__nif_make_name(env, tether_version());
}

static int load(ErlNifEnv *env, void **priv_data, ERL_NIF_TERM load_info)
{
    (void)priv_data;
    (void)load_info;
    if (tether__crypto_init() < 0)
        return -1;
    tether__nif_engine_rt = enif_open_resource_type(
        env, NULL, "tether_engine", tether__nif_engine_dtor,
        ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    if (tether__nif_engine_rt == NULL)
        return -1;
#define MAKE_ATOM(name)                                                        \
    tether__nif_atoms.am_##name = enif_make_atom(env, #name);
    TETHER_NIF_ATOMS(MAKE_ATOM)
#undef MAKE_ATOM
    if (tether__nif_engine_load(env) < 0)
        return -1;
    tether__nif_election_load(env);
    tether__nif_reminders_load(env);
    return tether__nif_ring_load(env);
}

static int upgrade(ErlNifEnv *env, void **priv_data, void **old_priv_data,
                   ERL_NIF_TERM load_info)
{
    (void)old_priv_data;
    return load(env, priv_data, load_info);
}

static ErlNifFunc nif_funcs[] = {
    {"version", 0, version_nif, 0},
    {"engine_new", 1, engine_new_nif, 0},
    {"engine_recv", 3, engine_recv_nif, 0},
    {"engine_peer_up", 2, engine_peer_up_nif, 0},
    {"engine_peer_down", 2, engine_peer_down_nif, 0},
    {"engine_tick", 2, engine_tick_nif, 0},
    {"engine_next_deadline", 1, engine_next_deadline_nif, 0},
    {"engine_drain", 1, engine_drain_nif, 0},
    {"engine_join", 2, engine_join_nif, 0},
    {"engine_leave", 1, engine_leave_nif, 0},
    {"engine_members", 1, engine_members_nif, 0},
    {"engine_partition", 4, engine_partition_nif, 0},
    {"engine_heal", 2, engine_heal_nif, 0},
    {"engine_heal_all", 1, engine_heal_all_nif, 0},
    {"engine_partitions", 1, engine_partitions_nif, 0},
    {"engine_send", 3, engine_send_nif, 0},
    {"engine_relay", 3, engine_relay_nif, 0},
    /* The same two on a dirty CPU scheduler, for payloads whose MAC and
     * copy take longer than a NIF may block a normal scheduler (up to
     * TETHER_ENV_MAX_PAYLOAD); the Erlang side picks one by size. */
    {"engine_recv_dirty", 3, engine_recv_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_send_dirty", 3, engine_send_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_seal", 3, engine_seal_nif, 0},
    {"engine_open", 3, engine_open_nif, 0},
    {"engine_seal_dirty", 3, engine_seal_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_open_dirty", 3, engine_open_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_info", 1, engine_info_nif, 0},
    {"engine_trust_add", 3, engine_trust_add_nif, 0},
    {"reg_register", 5, reg_register_nif, 0},
    {"reg_register_sealed", 5, reg_register_sealed_nif, 0},
    {"reg_unregister", 2, reg_unregister_nif, 0},
    {"reg_unregister", 3, reg_unregister_nif, 0},
    {"reg_holds", 3, reg_holds_nif, 0},
    {"reg_resolve", 3, reg_resolve_nif, 0},
    {"reg_whereis", 2, reg_whereis_nif, 0},
    {"reg_names", 1, reg_names_nif, 0},
    {"reg_entries", 1, reg_entries_nif, 0},
    {"reg_info", 1, reg_info_nif, 0},
    {"svc_register", 4, svc_register_nif, 0},
    {"svc_unregister", 2, svc_unregister_nif, 0},
    {"svc_lookup", 2, svc_lookup_nif, 0},
    {"svc_local", 2, svc_local_nif, 0},
    {"svc_names", 1, svc_names_nif, 0},
    {"svc_info", 1, svc_info_nif, 0},
    {"ring_hash", 1, ring_hash_nif, 0},
    {"ring_shard", 2, ring_shard_nif, 0},
    {"ring_new", 2, ring_new_nif, 0},
    {"ring_add", 2, ring_add_nif, 0},
    {"ring_remove", 2, ring_remove_nif, 0},
    {"ring_nodes", 1, ring_nodes_nif, 0},
    {"ring_info", 1, ring_info_nif, 0},
    {"ring_place", 2, ring_place_nif, 0},
    {"ring_owners", 3, ring_owners_nif, 0},
    {"ring_shard_of", 2, ring_shard_of_nif, 0},
    {"ring_shard_owners", 3, ring_shard_owners_nif, 0},
    {"engine_place", 2, ring_place_nif, 0},
    {"engine_owners", 3, ring_owners_nif, 0},
    {"engine_shard", 2, ring_shard_of_nif, 0},
    {"engine_shard_owners", 3, ring_shard_owners_nif, 0},
    {"engine_is_owner", 2, engine_is_owner_nif, 0},
    {"engine_ring", 1, engine_ring_nif, 0},
    {"election_lead", 6, election_lead_nif, 0},
    {"election_resign", 2, election_resign_nif, 0},
    {"election_fence", 2, election_fence_nif, 0},
    {"election_is_leader", 2, election_is_leader_nif, 0},
    {"election_leader", 2, election_leader_nif, 0},
    {"election_candidates", 2, election_candidates_nif, 0},
    {"election_info", 1, election_info_nif, 0},
    {"reminders_set", 6, reminders_set_nif, 0},
    {"reminders_cancel", 3, reminders_cancel_nif, 0},
    {"reminders_get", 3, reminders_get_nif, 0},
    {"reminders_subscribers", 2, reminders_subscribers_nif, 0},
    {"reminders_load", 2, reminders_load_nif, 0},
    {"reminders_dump", 1, reminders_dump_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"reminders_info", 1, reminders_info_nif, 0},
    {"map_host", 3, map_host_nif, 0},
    {"map_host", 4, map_host_nif, 0},
    {"map_load", 3, map_load_nif, 0},
    {"map_dump", 2, map_dump_nif, 0},
    {"map_unhost", 2, map_unhost_nif, 0},
    {"map_notify", 3, map_notify_nif, 0},
    {"map_put", 4, map_put_nif, 0},
    {"map_put_dirty", 4, map_put_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"map_remove", 3, map_remove_nif, 0},
    {"map_get", 3, map_get_nif, 0},
    {"map_list", 3, map_list_nif, 0},
    {"map_size", 2, map_size_nif, 0},
    {"map_info", 2, map_info_nif, 0},
};

ERL_NIF_INIT(tether_nif, nif_funcs, load, NULL, upgrade, NULL)
