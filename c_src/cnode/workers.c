/*
 * cnode/workers.c: the worker pool (tether/workers.h).
 *
 * A FIFO of jobs under one mutex and condition variable; N threads take
 * jobs, run work(arg), then hand done(arg) to the post callback (the
 * node's loop) or run it themselves when there is none. Shutdown lets
 * the threads empty the queue, then joins them. A node's pool
 * (tether_node_submit) posts every completion to the node's loop.
 */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "tether/workers.h"

#define POOL_THREADS_MAX 256
#define WORKERS_MAX      64

typedef struct job {
    struct job *next;
    tether_work_fn work;
    tether_pool_done_fn done;
    void *arg;
} job_t;

struct tether_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *head, *tail;
    bool closing;
    tether_pool_post_fn post;
    void *post_ctx;
    unsigned nthreads;
    pthread_t threads[];
};

static void *worker_main(void *arg)
{
    tether_pool_t *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (pool->head == NULL && !pool->closing)
            pthread_cond_wait(&pool->cond, &pool->lock);
        job_t *j = pool->head;
        if (j) {
            pool->head = j->next;
            if (pool->head == NULL)
                pool->tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);
        if (j == NULL)
            return NULL; /* closing and empty */
        if (j->work)
            j->work(j->arg);
        if (j->done) {
            if (pool->post == NULL ||
                pool->post(pool->post_ctx, j->done, j->arg) < 0)
                j->done(j->arg);
        }
        free(j);
    }
}

int tether_pool_new(unsigned threads, tether_pool_post_fn post, void *post_ctx,
                    tether_pool_t **poolp)
{
    if (poolp == NULL || threads == 0 || threads > POOL_THREADS_MAX)
        return TETHER_EINVAL;
    tether_pool_t *pool = calloc(1, sizeof *pool + threads * sizeof(pthread_t));
    if (pool == NULL)
        return TETHER_ENOMEM;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->post = post;
    pool->post_ctx = post_ctx;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
            tether_pool_free(pool);
            return TETHER_EIO;
        }
        pool->nthreads++;
    }
    *poolp = pool;
    return 0;
}

int tether_pool_submit(tether_pool_t *pool, tether_work_fn work,
                       tether_pool_done_fn done, void *arg)
{
    if (pool == NULL)
        return TETHER_ECLOSED;
    job_t *j = malloc(sizeof *j);
    if (j == NULL)
        return TETHER_ENOMEM;
    j->next = NULL;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&pool->lock);
    if (pool->closing) {
        pthread_mutex_unlock(&pool->lock);
        free(j);
        return TETHER_ECLOSED;
    }
    if (pool->tail)
        pool->tail->next = j;
    else
        pool->head = j;
    pool->tail = j;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

unsigned tether_pool_threads(const tether_pool_t *pool)
{
    return pool ? pool->nthreads : 0;
}

void tether_pool_free(tether_pool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->closing = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    /* Threads drain the queue before leaving; nothing is left here. */
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

/* ---- the node's pool ----------------------------------------------- */

typedef struct node_job {
    tether_node_t *node;
    tether_done_fn done;
    void *arg;
} node_job_t;

static void node_job_done(tether_node_t *node, void *arg)
{
    node_job_t *j = arg;
    if (j->done)
        j->done(node, j->arg);
    free(j);
}

static int pool_post(void *post_ctx, tether_pool_done_fn done, void *arg)
{
    (void)done; /* always node_job_done's trampoline below */
    return tether_node_post(post_ctx, node_job_done, arg);
}

static void pool_done_unused(void *arg)
{
    /* Only reached if posting failed: the node is going away. */
    free(arg);
}

typedef struct work_wrap {
    node_job_t job;
    tether_work_fn work;
    void *arg;
} work_wrap_t;

static void wrap_work(void *arg)
{
    work_wrap_t *w = arg;
    if (w->work)
        w->work(w->arg);
}

int tether_node_submit(tether_node_t *node, tether_work_fn work,
                       tether_done_fn done, void *arg)
{
    if (node == NULL || node->pool == NULL)
        return TETHER_ECLOSED;
    work_wrap_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return TETHER_ENOMEM;
    w->job.node = node;
    w->job.done = done;
    w->job.arg = arg;
    w->work = work;
    w->arg = arg;
    /* node_job_done frees w (job is its first member). */
    int rc = tether_pool_submit(node->pool, wrap_work, pool_done_unused, w);
    if (rc < 0)
        free(w);
    return rc;
}

static unsigned default_workers(const tether_node_t *node)
{
    unsigned n = node->cfg.workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 2 ? (unsigned)cpus : 2;
    }
    return n > WORKERS_MAX ? WORKERS_MAX : n;
}

int tether__workers_start(tether_node_t *node)
{
    int rc =
        tether_pool_new(default_workers(node), pool_post, node, &node->pool);
    if (rc < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot start the worker pool: %s",
            tether_strerror(rc));
        return rc;
    }
    return 0;
}

void tether__workers_fini(tether_node_t *node)
{
    tether_pool_free(node->pool);
    node->pool = NULL;
}
