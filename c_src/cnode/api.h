/*
 * cnode/api.h: the service API layer (tether/function.h, gen_service.h,
 * send.h, erlang_call.h, workers.h) as the rest of the C-node and the
 * tests see it: calls the node makes into its own function table, and
 * the pure parts of the protocols: how an outcome is encoded for each
 * protocol and how an erpc exit reason is read back (erpc.c), how a
 * gen_server From is read and answered (gen_service.c).
 */
#ifndef TETHER_CNODE_API_H
#define TETHER_CNODE_API_H

#include <stdbool.h>
#include <stddef.h>

#include <ei.h>

#include "cnode/node.h"
#include "tether/function.h"

/* How a call's outcome goes back to its caller. */
typedef enum tether_reply_mode {
    TETHER_MODE_ERPC = 1, /* exit reason {Ref, return | throw | ...} */
    TETHER_MODE_REX,      /* rpc:execute_call/3 value, {badrpc, ...} */
    TETHER_MODE_CAST,     /* nothing goes back */
    TETHER_MODE_INNER,    /* {return, V} | {throw, V} | {exit, R} |
                             {error, R, Stack} to a C callback */
} tether_reply_mode_t;

/* Receives the outcome term (131-prefixed) of tether__call_invoke(). */
typedef void (*tether__call_done_fn)(tether_node_t *node, void *ctx,
                                     const char *outcome, size_t len);

/*
 * Runs the registered function module:function/length(args) with the
 * arguments of `args` (a proper list, 131-prefixed) exactly as erpc would
 * run it (undef when not registered), and hands its outcome, in the
 * INNER shapes, to done(node, ctx, ...) on the loop thread once it
 * completes (at once or later). Loop thread. Returns 0 (done will be
 * called exactly once, possibly before this returns), TETHER_EINVAL (bad
 * names or arguments) or TETHER_ENOMEM; done is not called then.
 */
TETHER_MUST_CHECK int tether__call_invoke(tether_node_t *node,
                                          const char *module,
                                          const char *function,
                                          const char *args, size_t args_len,
                                          tether__call_done_fn done, void *ctx);

/*
 * Appends to x (set up by the caller, version byte included) the term a
 * BEAM node produces for the outcome (cls, value) of a call:
 *  ERPC: {Ref, return, V} | {Ref, throw, V} | {Ref, exit, R} |
 *        {Ref, error, R, Stack}     (erpc:execute_call/4's exit reason)
 *  REX:  V | V (a throw) | {badrpc, {'EXIT', R}} |
 *        {badrpc, {'EXIT', {R, Stack}}}  (rpc's execute_call/3 reply)
 *  INNER: {return, V} | {throw, V} | {exit, R} | {error, R, Stack}
 * ref (without 131) is the Ref term; value and stack are 131-prefixed.
 * stack is only used for TETHER_ERROR (required then). Returns 0,
 * TETHER_EINVAL or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int
tether__erpc_encode_outcome(ei_x_buff *x, tether_reply_mode_t mode,
                            const char *ref, size_t ref_len, tether_class_t cls,
                            const char *value, size_t value_len,
                            const char *stack, size_t stack_len);

/*
 * Appends the stack of an error raised by a C function:
 * [{Module, Function, Arity, []}] (131-prefixed), or, when args (a list
 * term without 131, length args_len) is given, the stack of undef:
 * [{Module, Function, Args, []}].
 */
TETHER_MUST_CHECK int tether__erpc_encode_stack(ei_x_buff *x,
                                                const char *module,
                                                const char *function, int arity,
                                                const char *args,
                                                size_t args_len);

/*
 * Reads the exit reason (131-prefixed) of an erpc:execute_call/4 process
 * whose Ref is res (without 131) the way erpc:call/5 does, and appends
 * to x (version byte included) what erpc:call would raise or return:
 * returns the tether_class_t and writes V (RETURN), V (THROW),
 * {exception, R} (EXIT), {exception, R, Stack} or {erpc, R} (ERROR);
 * `noconnection` gives ERROR {erpc, noconnection}; any other reason EXIT
 * {signal, Reason}. Returns a negative code for a bad term or no memory.
 */
TETHER_MUST_CHECK int tether__erpc_decode_reason(const char *reason, size_t len,
                                                 const char *res,
                                                 size_t res_len, ei_x_buff *x);

/* A gen_server From = {Pid, Tag}, as read from a message. */
typedef struct tether__gen_from {
    erlang_pid pid;
    int tag0, tag1;       /* the Tag term: buf[tag0, tag1) */
    bool alias;           /* Tag is [alias | Ref] or [[alias | Ref] | _] */
    erlang_ref alias_ref; /* then the reply goes to this alias */
} tether__gen_from_t;

/*
 * Reads the From term at buf[idx] (buf checked with tether_term_valid).
 * Returns 0 or TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether__gen_from_parse(const char *buf, int idx,
                                             tether__gen_from_t *from);

/*
 * Replies to a gen_server call from the process self: From is the
 * 131-less slice of the {Pid, Tag} term at buf[from_index]. Sends
 * {Tag, Reply} to the alias when Tag is [alias | Ref] (or
 * [[alias | Ref] | _]), else to Pid.
 */
int tether__gen_reply(tether_proc_t *self, const char *buf, int from_index,
                      const char *reply, size_t reply_len);

#endif /* TETHER_CNODE_API_H */
