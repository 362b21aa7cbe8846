/*
 * tether/workers.h: worker threads for work that may block, so the loop
 * never does.
 *
 * Every node has a pool (started by tether_node_start); a handler hands
 * slow work to it with tether_node_submit() and completes its call or
 * replies from the done function (or from the worker itself, since
 * tether_call_* and tether_reply* take any thread). A stand-alone pool
 * serves programs without a node.
 */
#ifndef TETHER_WORKERS_H
#define TETHER_WORKERS_H

#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* TETHER_WORKERS_H */
