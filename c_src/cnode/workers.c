/*
 * cnode/workers.c: the worker pool (tether_pool_*, see tether/service.h).
 *
 * A FIFO of jobs under one mutex and condition variable; N threads take
 * jobs, run work(arg), then hand done(arg) to the post callback (the
 * node's loop) or run it themselves when there is none. Shutdown lets
 * the threads empty the queue, then joins them.
 */
#include <pthread.h>
#include <stdlib.h>

#include "tether/service.h"

#define POOL_THREADS_MAX 256

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
