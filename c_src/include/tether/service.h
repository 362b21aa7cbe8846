/*
 * tether/service.h: C code that stock Erlang calls, and C code that calls
 * Erlang.
 *
 * Terms are external term format byte strings that start with the version
 * byte 131 (what ei_x_new_with_version() starts), passed as (bytes,
 * length). Handlers get a buffer and an index for ei_decode_*(); the
 * buffer is valid during the handler only unless said otherwise.
 *
 * Functions (Module:Function/Arity). A registered function is what
 * rpc:call/4,5, rpc:cast/4, rpc:multicall/4,5, rpc:block_call/4,5,
 * erpc:call/4,5, erpc:cast/4, erpc:multicall/4,5 and erpc:send_request/4
 * reach on this node. The function completes its call exactly once, at
 * once or later from any thread, with tether_call_return() or
 * tether_call_raise(); the caller then sees the value, or the exception
 * exactly as a BEAM node would report it (throw, error with a stack
 * whose first frame is {Module, Function, Arity, []}, exit). A function
 * that is not registered raises error:undef with the stack
 * [{Module, Function, Args, []}], as the BEAM does.
 *
 * Services (registered names answering gen_server:call/cast). A message
 * {'$gen_call', From, Request} goes to the call handler with an opaque
 * tether_from_t; the service replies once with tether_reply(), at once or
 * later from any thread (gen_server:call then returns the reply; the
 * alias form of OTP 24+ is handled). {'$gen_cast', Request} goes to the
 * cast handler, anything else to the info handler. A service that calls
 * tether_service_exit() ends with that reason: callers monitoring it (as
 * gen_server:call does) exit with {Reason, {gen_server, call, ...}}.
 *
 * Threads: registration, tether_service_exit() and everything that takes
 * a tether_service_t run on the loop thread (or before tether_node_start
 * for registration). tether_call_*, tether_reply*, tether_send*,
 * tether_node_submit() and tether_erlang_call() may be called from any
 * thread.
 */
#ifndef TETHER_SERVICE_H
#define TETHER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* ---- functions -------------------------------------------------------- */

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

/* ---- services --------------------------------------------------------- */

typedef struct tether_service tether_service_t;
typedef struct tether_from tether_from_t;

/*
 * A service's handlers (all on the loop thread; any may be NULL).
 *  call       Request at buf[index]; reply once with tether_reply(from)
 *  cast       Request at buf[index]
 *  info       any other message, at buf[index]
 *  terminate  the service has exited with `reason` (131-prefixed); free
 *             ctx here. Replies still pending may be sent afterwards.
 */
typedef struct tether_service_ops {
    void (*call)(tether_service_t *svc, tether_from_t *from, const char *buf,
                 int index, void *ctx);
    void (*cast)(tether_service_t *svc, const char *buf, int index, void *ctx);
    void (*info)(tether_service_t *svc, const char *buf, int index, void *ctx);
    void (*terminate)(tether_service_t *svc, const char *reason, size_t len,
                      void *ctx);
} tether_service_ops_t;

/*
 * Registers a service under `name` (ops copied). Before
 * tether_node_start() (started with the node) or on the loop thread
 * (started at once). *svc (may be NULL) receives the handle, valid until
 * terminate returned. Returns 0, TETHER_EEXIST (name taken),
 * TETHER_EINVAL or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_service_register(tether_node_t *node,
                                              const char *name,
                                              const tether_service_ops_t *ops,
                                              void *ctx,
                                              tether_service_t **svc);

/*
 * Sends the reply `term` (131-prefixed; copied) to the caller and frees
 * `from`. Any thread, exactly once per from. Returns 0, TETHER_EINVAL or
 * TETHER_ENOMEM (from is freed in every case).
 */
int tether_reply(tether_from_t *from, const char *term, size_t len);

/* Same with an atom reply, e.g. "ok". */
int tether_reply_atom(tether_from_t *from, const char *atom);

/* Frees a from-handle without replying (the caller will time out). */
void tether_from_free(tether_from_t *from);

/*
 * Ends the service with `reason` (131-prefixed; NULL means normal): the
 * name is released, monitors get DOWN with reason, terminate runs. Loop
 * thread.
 */
void tether_service_exit(tether_service_t *svc, const char *reason, size_t len);

tether_node_t *tether_service_node(const tether_service_t *svc);
const erlang_pid *tether_service_pid(const tether_service_t *svc);

/* ---- sending ---------------------------------------------------------- */

/* Sends `term` (copied) to a pid, local or remote. Any thread. */
int tether_send(tether_node_t *node, const erlang_pid *to, const char *term,
                size_t len);

/*
 * Sends `term` to the registered `name` on node `peer` (NULL: this node;
 * an unknown local name drops the message). Connects on demand. Any thread.
 */
int tether_send_name(tether_node_t *node, const char *name, const char *peer,
                     const char *term, size_t len);

/* ---- calling Erlang --------------------------------------------------- */

/*
 * The outcome of tether_erlang_call(), on the loop thread, as erpc:call/5
 * would return or raise it: status is a tether_class_t (>= 0) and `term`
 * (131-prefixed) is
 *   RETURN  the value
 *   THROW   the thrown value
 *   ERROR   {exception, Reason, Stack}, or {erpc, Why} for erpc's own
 *           failures: {erpc, timeout}, {erpc, noconnection} (node down or
 *           unreachable), {erpc, notsup} (the node refused the spawn)
 *   EXIT    {exception, Reason} (the function exited), or
 *           {signal, Reason} (the process was killed)
 * A negative status (TETHER_ENOMEM, TETHER_ECLOSED: the node is shutting
 * down) is a local failure; `term` is then NULL or the raw exit reason.
 * `term` is valid during the callback only.
 */
typedef void (*tether_result_fn)(tether_node_t *node, int status,
                                 const char *term, size_t len, void *ctx);

/*
 * Calls module:function(Args...) on BEAM node `peer` as erpc:call/5 does
 * (SPAWN_REQUEST of erpc:execute_call/4 with a monitor; the result is
 * read from the exit reason). args is a 131-prefixed list (copied);
 * timeout_ms 0 means no timeout. done runs exactly once on the loop
 * thread. Any thread. Returns 0, TETHER_EINVAL or TETHER_ENOMEM (then done
 * is not called).
 */
TETHER_MUST_CHECK int tether_erlang_call(tether_node_t *node, const char *peer,
                                         const char *module,
                                         const char *function, const char *args,
                                         size_t args_len, unsigned timeout_ms,
                                         tether_result_fn done, void *ctx);

/*
 * The blocking form, for worker threads while the loop runs (never the
 * loop thread: that returns TETHER_EINVAL). On return >= 0 the status is a
 * tether_class_t and `result` (set up by the caller with ei_x_new_with_version
 * or ei_x_new) has the value or reason appended; a negative return is as for
 * tether_result_fn (result then holds the raw reason, if any).
 */
TETHER_MUST_CHECK int
tether_erlang_call_sync(tether_node_t *node, const char *peer,
                        const char *module, const char *function,
                        const char *args, size_t args_len, unsigned timeout_ms,
                        ei_x_buff *result);

/* ---- the worker pool -------------------------------------------------- */

/* Runs on a worker thread; may block. */
typedef void (*tether_work_fn)(void *arg);
/* Runs on the loop thread once the work is done. */
typedef void (*tether_done_fn)(tether_node_t *node, void *arg);

/*
 * Queues work(arg) on the node's worker pool (started by
 * tether_node_start with config.workers threads, default max(2, CPUs));
 * then done(node, arg) runs on the loop thread (done may be NULL). Any
 * thread. Returns 0, TETHER_ENOMEM or TETHER_ECLOSED (no pool: before
 * start or after free).
 */
TETHER_MUST_CHECK int tether_node_submit(tether_node_t *node,
                                         tether_work_fn work,
                                         tether_done_fn done, void *arg);

/*
 * A stand-alone pool, for programs without a node and for tests. post
 * hands a finished job's completion to whoever runs done; with post NULL
 * the done function runs on the worker thread right after work.
 */
typedef struct tether_pool tether_pool_t;
typedef void (*tether_pool_done_fn)(void *arg);
typedef int (*tether_pool_post_fn)(void *post_ctx, tether_pool_done_fn done,
                                   void *arg);

/* Starts `threads` workers (1..256). Returns 0, EINVAL, ENOMEM or EIO. */
TETHER_MUST_CHECK int tether_pool_new(unsigned threads,
                                      tether_pool_post_fn post, void *post_ctx,
                                      tether_pool_t **pool);

/* Queues a job (FIFO). Any thread. 0, ENOMEM or ECLOSED (shutting down). */
TETHER_MUST_CHECK int tether_pool_submit(tether_pool_t *pool,
                                         tether_work_fn work,
                                         tether_pool_done_fn done, void *arg);

/* Number of worker threads. */
unsigned tether_pool_threads(const tether_pool_t *pool);

/*
 * Runs every queued job to the end, joins the threads and frees the pool.
 * Not from one of its own workers.
 */
void tether_pool_free(tether_pool_t *pool);

/* ---- plugins ------------------------------------------------------- */

/*
 * A plugin is a shared object loaded with `tether_cnode --load PATH.so`.
 * It defines this entry point, which runs after the node started (on the
 * loop thread, before the ready line) and registers its functions and
 * services. Returning a negative TETHER_E* code stops tether_cnode with
 * an error. Plugins use the tether_* symbols of the executable: build
 * them with -fPIC -shared and do not link libtether.a into them.
 */
#define TETHER_PLUGIN_INIT_SYMBOL "tether_plugin_init"
typedef int (*tether_plugin_init_fn)(tether_node_t *node);
int tether_plugin_init(tether_node_t *node);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_SERVICE_H */
