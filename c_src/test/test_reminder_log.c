/*
 * Criterion suite for cnode/reminder_log.c: the CRC-32 against zlib's
 * check value, records appended and read back, a torn or corrupted tail
 * (the records before it are kept, its offset is told), an oversized
 * length, a record the reader refuses, a missing file, and a rewrite that
 * replaces the file and is appended to afterwards.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/reminder_log.h"

#define NODE "c1@127.0.0.1"
#define RECS_MAX 16

static char dir[64];
static tether__rlog_t log_;

static struct {
    int n, refuse_at;
    size_t len[RECS_MAX];
    char first[RECS_MAX];
} seen;

static int collect(void *ctx, const uint8_t *rec, size_t len)
{
    (void)ctx;
    if (seen.n == seen.refuse_at)
        return 1;
    cr_assert_lt(seen.n, RECS_MAX);
    seen.len[seen.n] = len;
    seen.first[seen.n++] = len ? (char)rec[0] : 0;
    return 0;
}

static long load(long *bad_at)
{
    seen.n = 0;
    return tether__rlog_load(&log_, collect, NULL, bad_at);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/tether_rlog_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(tether__rlog_init(&log_, dir, NODE), 0);
    seen.refuse_at = -1;
}

static void teardown(void)
{
    char tmp[300];
    tether__rlog_fini(&log_);
    snprintf(tmp, sizeof tmp, "%s/reminders-%s.log", dir, NODE);
    (void)unlink(tmp);
    snprintf(tmp, sizeof tmp, "%s/reminders-%s.log.tmp", dir, NODE);
    (void)unlink(tmp);
    cr_assert_eq(rmdir(dir), 0);
}

/* A fresh log holding records "a", "bb", "ccc". */
static void three(void)
{
    cr_assert_eq(tether__rlog_rewrite_begin(&log_), 0);
    cr_assert_eq(tether__rlog_rewrite_end(&log_), 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"a", 1), 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"bb", 2), 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"ccc", 3), 0);
    cr_assert(log_.dirty);
    cr_assert_eq(tether__rlog_sync(&log_), 0);
    cr_assert(!log_.dirty);
}

static off_t size_of(void)
{
    struct stat st;
    cr_assert_eq(stat(log_.path, &st), 0);
    return st.st_size;
}

Test(reminder_log, crc32_is_zlibs)
{
    cr_assert_eq(tether__rlog_crc32((const uint8_t *)"123456789", 9),
                 0xCBF43926u);
    cr_assert_eq(tether__rlog_crc32(NULL, 0), 0);
}

Test(reminder_log, missing_file_is_empty, .init = setup, .fini = teardown)
{
    long bad;
    cr_assert_eq(load(&bad), 0);
    cr_assert_eq(bad, -1);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"x", 1),
                 TETHER_ECLOSED);
}

Test(reminder_log, appended_records_read_back, .init = setup,
     .fini = teardown)
{
    long bad;
    three();
    cr_assert_eq(size_of(), 3 * TETHER_RLOG_FRAME_BYTES + 6);
    cr_assert_eq(load(&bad), 3);
    cr_assert_eq(bad, -1);
    cr_assert_eq(seen.len[1], 2);
    cr_assert_eq(seen.first[2], 'c');
}

Test(reminder_log, torn_tail_keeps_what_came_before, .init = setup,
     .fini = teardown)
{
    long bad;
    three();
    cr_assert_eq(truncate(log_.path, size_of() - 1), 0);
    cr_assert_eq(load(&bad), 2);
    cr_assert_eq(bad, 2 * TETHER_RLOG_FRAME_BYTES + 3);
    /* A header alone, cut short. */
    cr_assert_eq(truncate(log_.path, TETHER_RLOG_FRAME_BYTES - 2), 0);
    cr_assert_eq(load(&bad), 0);
    cr_assert_eq(bad, 0);
}

Test(reminder_log, corrupted_or_oversized_records_stop_the_read,
     .init = setup, .fini = teardown)
{
    long bad;
    int fd;
    three();
    /* Flip a byte of "bb": its CRC no longer matches. */
    fd = open(log_.path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, "X", 1, TETHER_RLOG_FRAME_BYTES + 1 +
                                         TETHER_RLOG_FRAME_BYTES),
                 1);
    cr_assert_eq(load(&bad), 1);
    cr_assert_eq(bad, TETHER_RLOG_FRAME_BYTES + 1);
    /* A length past TETHER_RLOG_RECORD_MAX at the start. */
    cr_assert_eq(pwrite(fd, "\xff\xff\xff\xff", 4, 0), 4);
    close(fd);
    cr_assert_eq(load(&bad), 0);
    cr_assert_eq(bad, 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"x",
                                     TETHER_RLOG_RECORD_MAX + 1),
                 TETHER_EINVAL);
}

Test(reminder_log, a_refused_record_stops_the_read, .init = setup,
     .fini = teardown)
{
    long bad;
    three();
    seen.refuse_at = 1;
    cr_assert_eq(load(&bad), 1);
    cr_assert_eq(bad, TETHER_RLOG_FRAME_BYTES + 1);
}

Test(reminder_log, rewrite_replaces_and_is_appended_to, .init = setup,
     .fini = teardown)
{
    long bad;
    three();
    cr_assert_eq(tether__rlog_rewrite_begin(&log_), 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"z", 1), 0);
    /* Until it ends, the old file is what a reader finds. */
    cr_assert_eq(load(&bad), 3);
    cr_assert_eq(tether__rlog_rewrite_end(&log_), 0);
    cr_assert_eq(log_.appended, 0);
    cr_assert_eq(tether__rlog_append(&log_, (const uint8_t *)"y", 1), 0);
    cr_assert_eq(tether__rlog_sync(&log_), 0);
    cr_assert_eq(load(&bad), 2);
    cr_assert_eq(seen.first[0], 'z');
    cr_assert_eq(seen.first[1], 'y');
    /* An abandoned rewrite leaves the file as it was. */
    cr_assert_eq(tether__rlog_rewrite_begin(&log_), 0);
    tether__rlog_rewrite_abort(&log_);
    cr_assert_eq(load(&bad), 2);
}

Test(reminder_log, the_directory_is_made_on_first_use)
{
    char base[] = "/tmp/tether_rlog_XXXXXX", sub[64], file[300];
    tether__rlog_t l;
    cr_assert_not_null(mkdtemp(base));
    snprintf(sub, sizeof sub, "%s/data", base);
    cr_assert_eq(tether__rlog_init(&l, sub, NODE), 0);
    cr_assert_eq(tether__rlog_rewrite_begin(&l), 0);
    cr_assert_eq(tether__rlog_rewrite_end(&l), 0);
    snprintf(file, sizeof file, "%s/reminders-%s.log", sub, NODE);
    cr_assert_eq(access(file, F_OK), 0);
    tether__rlog_fini(&l);
    cr_assert_eq(unlink(file), 0);
    cr_assert_eq(rmdir(sub), 0);
    cr_assert_eq(rmdir(base), 0);
}
