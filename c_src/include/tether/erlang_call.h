/*
 * tether/erlang_call.h: C code that calls Erlang functions on other
 * nodes, as erpc:call/5 does.
 *
 * Terms are 131-prefixed external term format byte strings.
 */
#ifndef TETHER_ERLANG_CALL_H
#define TETHER_ERLANG_CALL_H

#include <stddef.h>

#include <ei.h>

#include "tether/error.h"
#include "tether/function.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TETHER_ERLANG_CALL_H */
