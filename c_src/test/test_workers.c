/*
 * Criterion suite for cnode/workers.c: every job runs once, completions
 * go through the post callback, shutdown drains the queue, bad arguments.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tether/service.h"

#define JOBS 1000

static atomic_int worked, completed, posted;

static void work(void *arg)
{
    atomic_fetch_add(&worked, 1);
    (void)arg;
}

static void done(void *arg)
{
    int *slot = arg;
    (*slot)++;
    atomic_fetch_add(&completed, 1);
}

static int post(void *ctx, tether_pool_done_fn fn, void *arg)
{
    cr_assert_eq(ctx, (void *)&posted);
    atomic_fetch_add(&posted, 1);
    fn(arg);
    return 0;
}

Test(workers, runs_every_job_once)
{
    static int slots[JOBS];
    atomic_store(&worked, 0);
    atomic_store(&completed, 0);
    atomic_store(&posted, 0);
    tether_pool_t *pool;
    cr_assert_eq(tether_pool_new(4, post, (void *)&posted, &pool), 0);
    cr_assert_eq(tether_pool_threads(pool), 4u);
    for (int i = 0; i < JOBS; i++)
        cr_assert_eq(tether_pool_submit(pool, work, done, &slots[i]), 0);
    tether_pool_free(pool); /* drains */
    cr_assert_eq(atomic_load(&worked), JOBS);
    cr_assert_eq(atomic_load(&completed), JOBS);
    cr_assert_eq(atomic_load(&posted), JOBS);
    for (int i = 0; i < JOBS; i++)
        cr_assert_eq(slots[i], 1);
}

Test(workers, done_runs_on_worker_without_post)
{
    static int slot;
    atomic_store(&completed, 0);
    tether_pool_t *pool;
    cr_assert_eq(tether_pool_new(1, NULL, NULL, &pool), 0);
    cr_assert_eq(tether_pool_submit(pool, NULL, done, &slot), 0);
    tether_pool_free(pool);
    cr_assert_eq(slot, 1);
}

Test(workers, rejects_bad_arguments)
{
    tether_pool_t *pool = NULL;
    cr_assert_eq(tether_pool_new(0, NULL, NULL, &pool), TETHER_EINVAL);
    cr_assert_eq(tether_pool_new(100000, NULL, NULL, &pool), TETHER_EINVAL);
    cr_assert_eq(tether_pool_new(1, NULL, NULL, NULL), TETHER_EINVAL);
    cr_assert_eq(tether_pool_submit(NULL, work, NULL, NULL), TETHER_ECLOSED);
    tether_pool_free(NULL);
}
