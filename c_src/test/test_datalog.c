/*
 * Criterion suite for cnode/datalog.c: records framed as the Erlang
 * tether_datalog frames them, torn tails and corrupted records skipped and
 * counted, compaction, directories 0700, syncs from another thread.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/datalog.h"
#include "test/util.h"

static char tmpdir[64];
static char logpath[PATH_MAX];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tether-datalog-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(logpath, sizeof logpath, "%s/d1/d2/x.log", tmpdir);
}

static void remove_tmpdir(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(datalog, .init = make_tmpdir, .fini = remove_tmpdir);

/* What a load saw: up to 16 records of up to 64 bytes. */
typedef struct seen {
    size_t n;
    size_t len[16];
    uint8_t rec[16][64];
} seen_t;

static int collect(void *ctx, const uint8_t *rec, size_t len)
{
    seen_t *s = ctx;
    cr_assert_lt(s->n, 16u);
    cr_assert_leq(len, 64u);
    memcpy(s->rec[s->n], rec, len);
    s->len[s->n++] = len;
    return 0;
}

static void append_str(tether_datalog_t *log, const char *s)
{
    cr_assert_eq(tether__datalog_append(log, (const uint8_t *)s, strlen(s),
                                        NULL),
                 0);
}

static void assert_rec(const seen_t *s, size_t i, const char *want)
{
    cr_assert_eq(s->len[i], strlen(want));
    cr_assert_arr_eq(s->rec[i], want, strlen(want));
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

Test(datalog, crc32_is_erlangs)
{
    /* erlang:crc32(<<"123456789">>) =:= 16#CBF43926. */
    cr_assert_eq(tether__datalog_crc32((const uint8_t *)"123456789", 9),
                 0xCBF43926u);
    cr_assert_eq(tether__datalog_crc32(NULL, 0), 0u);
}

Test(datalog, append_then_load)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    seen_t s = {0};
    uint64_t seq = 0;
    struct stat st;
    char dir[PATH_MAX];

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "one");
    append_str(log, "");
    cr_assert_eq(tether__datalog_append(log, (const uint8_t *)"three", 5, &seq),
                 0);
    cr_assert_eq(seq, 3u);
    cr_assert_eq(tether__datalog_appended(log), 3u);
    cr_assert_eq(tether__datalog_sync(log), 0);
    tether__datalog_synced_to(log, seq);
    cr_assert_eq(tether__datalog_synced(log), 3u);
    tether__datalog_close(log);
    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 3u);
    cr_assert_eq(info.corrupt, 0u);
    cr_assert_eq(info.torn_at, -1);
    assert_rec(&s, 0, "one");
    assert_rec(&s, 1, "");
    assert_rec(&s, 2, "three");
    /* The directories it made are the user's alone, the file too. */
    snprintf(dir, sizeof dir, "%s/d1/d2", tmpdir);
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(stat(logpath, &st), 0);
    cr_assert_eq(st.st_mode & 0077, 0);
}

Test(datalog, absent_file_is_empty)
{
    tether_datalog_info_t info;
    seen_t s = {0};

    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 0u);
    cr_assert_eq(info.torn_at, -1);
}

Test(datalog, every_torn_tail_is_skipped)
{
    tether_datalog_t *log;
    off_t good, full;

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "a");
    append_str(log, "bb");
    good = file_size(logpath);
    append_str(log, "ccccccc");
    tether__datalog_close(log);
    full = file_size(logpath);
    /* Every cut of the last record, header or body. */
    for (off_t cut = full - 1; cut > good; cut--) {
        tether_datalog_info_t info;
        seen_t s = {0};

        cr_assert_eq(truncate(logpath, cut), 0);
        cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
        cr_assert_eq(info.records, 2u, "cut at %ld", (long)cut);
        cr_assert_eq(info.corrupt, 0u);
        cr_assert_eq(info.torn_at, (int64_t)good);
        assert_rec(&s, 1, "bb");
    }
}

Test(datalog, corrupted_record_is_skipped)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    seen_t s = {0};
    off_t first;
    int fd;
    uint8_t x;

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "first");
    first = file_size(logpath);
    append_str(log, "second");
    append_str(log, "third");
    tether__datalog_close(log);
    /* One flipped byte in the second record's body. */
    fd = open(logpath, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &x, 1, first + TETHER_DATALOG_HEADER_BYTES), 1);
    x ^= 0xFF;
    cr_assert_eq(pwrite(fd, &x, 1, first + TETHER_DATALOG_HEADER_BYTES), 1);
    close(fd);
    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 2u);
    cr_assert_eq(info.corrupt, 1u);
    cr_assert_eq(info.torn_at, -1);
    assert_rec(&s, 0, "first");
    assert_rec(&s, 1, "third");
    cr_assert_eq(tether__datalog_keep_corrupt(logpath), 0);
}

Test(datalog, impossible_length_ends_the_read)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    seen_t s = {0};
    off_t first;
    int fd;
    const uint8_t huge[4] = {0xFF, 0xFF, 0xFF, 0xFF};

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "first");
    first = file_size(logpath);
    append_str(log, "second");
    tether__datalog_close(log);
    fd = open(logpath, O_RDWR);
    cr_assert_eq(pwrite(fd, huge, 4, first), 4);
    close(fd);
    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 1u);
    cr_assert_eq(info.corrupt, 1u);
    cr_assert_eq(info.torn_at, (int64_t)first);
}

/* Checks each big record (records_larger_than_a_read_chunk). */
static int check_big(void *ctx, const uint8_t *rec, size_t len)
{
    uint8_t want[16];
    (void)ctx;
    fill(want, sizeof want, 3);
    cr_assert_geq(len, 300000u - 4);
    cr_assert_arr_eq(rec, want, sizeof want);
    return 0;
}

Test(datalog, records_larger_than_a_read_chunk)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    static uint8_t big[300000];

    fill(big, sizeof big, 3);
    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(tether__datalog_append(log, big, sizeof big - i, NULL), 0);
    tether__datalog_close(log);
    cr_assert_eq(tether__datalog_load(logpath, check_big, NULL, &info), 0);
    cr_assert_eq(info.records, 5u);
    cr_assert_eq(info.torn_at, -1);
}

static int stop_at_second(void *ctx, const uint8_t *rec, size_t len)
{
    int *n = ctx;
    (void)rec;
    (void)len;
    return ++*n == 2 ? TETHER_EPROTO : 0;
}

Test(datalog, a_callback_can_stop_the_load)
{
    tether_datalog_t *log;
    int n = 0;

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "a");
    append_str(log, "b");
    append_str(log, "c");
    tether__datalog_close(log);
    cr_assert_eq(tether__datalog_load(logpath, stop_at_second, &n, NULL),
                 TETHER_EPROTO);
    cr_assert_eq(n, 2);
}

static int dump_two(void *ctx, tether_datalog_put_fn put, void *put_ctx)
{
    (void)ctx;
    if (put(put_ctx, (const uint8_t *)"snap1", 5) < 0)
        return TETHER_EIO;
    return put(put_ctx, (const uint8_t *)"snap2", 5);
}

static int dump_fails(void *ctx, tether_datalog_put_fn put, void *put_ctx)
{
    (void)ctx;
    (void)put(put_ctx, (const uint8_t *)"half", 4);
    return TETHER_ENOMEM;
}

Test(datalog, compact_rewrites_and_appends_go_on)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    seen_t s = {0};
    char tmp[PATH_MAX + 8];

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    for (int i = 0; i < 10; i++)
        append_str(log, "old");
    cr_assert_eq(tether__datalog_since_compact(log), 10u);
    /* A failed dump keeps the old log whole. */
    cr_assert_eq(tether__datalog_compact(log, dump_fails, NULL), TETHER_ENOMEM);
    cr_assert_eq(tether__datalog_compact(log, dump_two, NULL), 0);
    cr_assert_eq(tether__datalog_since_compact(log), 0u);
    append_str(log, "after");
    tether__datalog_close(log);
    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 3u);
    assert_rec(&s, 0, "snap1");
    assert_rec(&s, 1, "snap2");
    assert_rec(&s, 2, "after");
    snprintf(tmp, sizeof tmp, "%s.tmp", logpath);
    cr_assert_eq(access(tmp, F_OK), -1);
}

static void *sync_thread(void *arg)
{
    return (void *)(intptr_t)tether__datalog_sync(arg);
}

Test(datalog, sync_runs_on_another_thread_while_appending)
{
    tether_datalog_t *log;
    tether_datalog_info_t info;
    seen_t s = {0};
    pthread_t t;
    void *ret;
    uint64_t upto;

    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    append_str(log, "a");
    upto = tether__datalog_appended(log);
    cr_assert_eq(pthread_create(&t, NULL, sync_thread, log), 0);
    append_str(log, "b"); /* joins the next group */
    cr_assert_eq(pthread_join(t, &ret), 0);
    cr_assert_eq((intptr_t)ret, 0);
    tether__datalog_synced_to(log, upto);
    cr_assert_eq(tether__datalog_synced(log), 1u);
    tether__datalog_close(log);
    cr_assert_eq(tether__datalog_load(logpath, collect, &s, &info), 0);
    cr_assert_eq(info.records, 2u);
}

Test(datalog, bad_arguments)
{
    tether_datalog_t *log;

    cr_assert_eq(tether__datalog_open(NULL, &log), TETHER_EINVAL);
    cr_assert_eq(tether__datalog_open("", &log), TETHER_EINVAL);
    cr_assert_eq(tether__datalog_mkdirs(""), TETHER_EINVAL);
    cr_assert_eq(tether__datalog_load(NULL, collect, NULL, NULL),
                 TETHER_EINVAL);
    /* A directory under a plain file cannot be made. */
    cr_assert_eq(tether__datalog_open(logpath, &log), 0);
    tether__datalog_close(log);
    {
        char under[PATH_MAX + 16];
        snprintf(under, sizeof under, "%s/sub/y.log", logpath);
        cr_assert_eq(tether__datalog_open(under, &log), TETHER_EIO);
    }
    tether__datalog_close(NULL);
}
