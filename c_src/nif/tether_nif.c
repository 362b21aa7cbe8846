/*
 * tether_nif.c: the erl_nif entry points of tether_nif.so.
 *
 * Every exported function checks its arguments and answers badarg or an
 * error tuple for bad input; none keeps a pointer into a term past the
 * call. Atoms are made once, in load().
 */
#include <string.h>

#include <erl_nif.h>

#include "tether/tether.h"

static ERL_NIF_TERM am_ok;
static ERL_NIF_TERM am_error;

/* version() -> binary(): the C library's version string. */
static ERL_NIF_TERM version_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    (void)argv;
    if (argc != 0)
        return enif_make_badarg(env);
    const char *v = tether_version();
    size_t n = strlen(v);
    ERL_NIF_TERM bin;
    unsigned char *p = enif_make_new_binary(env, n, &bin);
    if (p == NULL)
        return enif_raise_exception(env, enif_make_atom(env, "enomem"));
    memcpy(p, v, n);
    return bin;
}

static int load(ErlNifEnv *env, void **priv_data, ERL_NIF_TERM load_info)
{
    (void)priv_data;
    (void)load_info;
    am_ok = enif_make_atom(env, "ok");
    am_error = enif_make_atom(env, "error");
    return 0;
}

static int upgrade(ErlNifEnv *env, void **priv_data, void **old_priv_data,
                   ERL_NIF_TERM load_info)
{
    (void)old_priv_data;
    return load(env, priv_data, load_info);
}

static ErlNifFunc nif_funcs[] = {
    {"version", 0, version_nif, 0},
};

ERL_NIF_INIT(tether_nif, nif_funcs, load, NULL, upgrade, NULL)
