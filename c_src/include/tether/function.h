/*
 * tether/function.h: C functions that stock Erlang calls
 * (Module:Function/Arity).
 *
 * Terms are external term format byte strings that start with the version
 * byte 131 (what ei_x_new_with_version() starts), passed as (bytes,
 * length). A function gets a buffer and an index for ei_decode_*().
 *
 * A registered function is what rpc:call/4,5, rpc:cast/4,
 * rpc:multicall/4,5, rpc:block_call/4,5, erpc:call/4,5, erpc:cast/4,
 * erpc:multicall/4,5 and erpc:send_request/4 reach on this node. The
 * function completes its call exactly once, at once or later from any
 * thread, with tether_call_return() or tether_call_raise(); the caller
 * then sees the value, or the exception exactly as a BEAM node would
 * report it (throw, error with a stack whose first frame is {Module,
 * Function, Arity, []}, exit). A function that is not registered raises
 * error:undef with the stack [{Module, Function, Args, []}], as the BEAM
 * does.
 *
 * Threads: registration runs on the loop thread (or before
 * tether_node_start); tether_call_* may be called from any thread.
 */
#ifndef TETHER_FUNCTION_H
#define TETHER_FUNCTION_H

#include <stddef.h>

#include <ei.h>

#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The class of an outcome, as in Erlang's try ... catch Class:Reason. */
typedef enum tether_class {
    TETHER_RETURN = 0, /* a value, no exception */
    TETHER_THROW = 1,
    TETHER_ERROR = 2,
    TETHER_EXIT = 3,
} tether_class_t;

/* Longest module or function name in bytes, plus the NUL. */
#define TETHER_NAME_MAX MAXATOMLEN_UTF8

typedef struct tether_call tether_call_t;

/*
 * A registered function. `args` holds the `argc` arguments one after the
 * other starting at args[index] (walk them with ei_decode_* or
 * ei_skip_term). The buffer stays valid until the call is completed, so a
 * function may hand `call` to a worker and complete it there.
 */
typedef void (*tether_function_fn)(tether_call_t *call, const char *args,
                                   int index, int argc, void *ctx);

/*
 * Registers module:function/arity. Before tether_node_start() or on the
 * loop thread. Returns 0, TETHER_EEXIST (already registered),
 * TETHER_EINVAL (bad name or arity outside 0..255) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_function_register(tether_node_t *node,
                                               const char *module,
                                               const char *function, int arity,
                                               tether_function_fn fn,
                                               void *ctx);

/*
 * Completes `call` with the value `term` (131-prefixed; copied). Any
 * thread, exactly once; `call` is freed and must not be used after.
 * Returns 0, TETHER_EINVAL (not a valid term: the caller sees
 * error:badarg) or TETHER_ENOMEM (the call is still completed or freed).
 */
int tether_call_return(tether_call_t *call, const char *term, size_t len);

/* Completes `call` with the atom `atom` (e.g. "ok"). */
int tether_call_return_atom(tether_call_t *call, const char *atom);

/*
 * Completes `call` with an exception of class cls (THROW, ERROR or EXIT)
 * and `reason`. For ERROR, `stack` (131-prefixed list, may be NULL) is
 * the stack trace the caller sees; NULL means [{Module, Function,
 * Arity, []}]. Same rules as tether_call_return().
 */
int tether_call_raise(tether_call_t *call, tether_class_t cls,
                      const char *reason, size_t len, const char *stack,
                      size_t stack_len);

/* Same with an atom reason, e.g. (call, TETHER_ERROR, "badarg"). */
int tether_call_raise_atom(tether_call_t *call, tether_class_t cls,
                           const char *atom);

/* The node, module, function and arity of a call (until it completes). */
tether_node_t *tether_call_node(const tether_call_t *call);
const char *tether_call_module(const tether_call_t *call);
const char *tether_call_function(const tether_call_t *call);
int tether_call_arity(const tether_call_t *call);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_FUNCTION_H */
