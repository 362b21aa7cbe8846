/*
 * tether/gen_service.h: services, registered names that answer
 * gen_server:call/cast from stock Erlang.
 *
 * A message {'$gen_call', From, Request} goes to the call handler with an
 * opaque tether_from_t; the service replies once with tether_reply(), at
 * once or later from any thread (gen_server:call then returns the reply;
 * the alias form of OTP 24+ is handled). {'$gen_cast', Request} goes to
 * the cast handler, anything else to the info handler. A service that
 * calls tether_service_exit() ends with that reason: callers monitoring
 * it (as gen_server:call does) exit with {Reason, {gen_server, call,
 * ...}}.
 *
 * Terms are 131-prefixed external term format byte strings; handlers get
 * a buffer and an index for ei_decode_*(), valid during the handler only.
 *
 * Threads: registration, tether_service_exit() and everything that takes
 * a tether_service_t run on the loop thread (or before tether_node_start
 * for registration). tether_reply* and tether_from_free() may be called
 * from any thread.
 */
#ifndef TETHER_GEN_SERVICE_H
#define TETHER_GEN_SERVICE_H

#include <stddef.h>

#include <ei.h>

#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TETHER_GEN_SERVICE_H */
