/*
 * cnode/datalog.c: the append-only record log (see cnode/datalog.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/datalog.h"

#define READ_CHUNK (64u << 10) /* bytes read at a time while loading */

struct tether_datalog {
    int fd;            /* O_APPEND */
    char *path;        /* the log's path */
    uint64_t appended; /* sequence of the last append */
    uint64_t synced;   /* sequence of the last append known on disk */
    uint64_t since_compact;
};

/* ----------------------------------------------------------------- CRC */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t tether__datalog_crc32(const uint8_t *p, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    uint32_t c = 0xFFFFFFFFu;

    (void)pthread_once(&once, crc_init);
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* --------------------------------------------------------- directories */

int tether__datalog_mkdirs(const char *dir)
{
    char buf[PATH_MAX];
    size_t n;

    if (dir == NULL || (n = strlen(dir)) == 0 || n >= sizeof buf)
        return TETHER_EINVAL;
    memcpy(buf, dir, n + 1);
    /* Each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && buf[i] != '/')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, TETHER_DATALOG_DIR_MODE) < 0 && errno != EEXIST)
            return TETHER_EIO;
        if (i < n)
            buf[i] = '/';
    }
    return 0;
}

/* The directory part of path into buf ("." for a bare file name). */
static int dir_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;

    if (slash == path)
        n = 1; /* "/file": the root */
    if (slash == NULL) {
        buf[0] = '.';
        n = 1;
    } else {
        if (n >= cap)
            return TETHER_EINVAL;
        memcpy(buf, path, n);
    }
    buf[n] = '\0';
    return 0;
}

/* Makes a rename in dir durable (best effort: errors are not the log's). */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    int fd;

    if (dir_of(path, dir, sizeof dir) < 0)
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* ---------------------------------------------------------------- open */

static int open_append(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                TETHER_DATALOG_FILE_MODE);
}

int tether__datalog_open(const char *path, tether_datalog_t **out)
{
    char dir[PATH_MAX];
    tether_datalog_t *log;

    if (path == NULL || out == NULL || path[0] == '\0' ||
        dir_of(path, dir, sizeof dir) < 0)
        return TETHER_EINVAL;
    if (tether__datalog_mkdirs(dir) < 0)
        return TETHER_EIO;
    log = calloc(1, sizeof *log);
    if (log == NULL || (log->path = strdup(path)) == NULL) {
        free(log);
        return TETHER_ENOMEM;
    }
    log->fd = open_append(path);
    if (log->fd < 0) {
        int saved = errno;
        free(log->path);
        free(log);
        errno = saved;
        return TETHER_EIO;
    }
    *out = log;
    return 0;
}

void tether__datalog_close(tether_datalog_t *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0)
        close(log->fd);
    free(log->path);
    free(log);
}

/* -------------------------------------------------------------- writes */

/* Writes all of buf to fd; 0 or TETHER_EIO. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TETHER_EIO;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes one framed record (header and body in one buffer, so a record is
 * one write(2)). */
static int write_record(int fd, const uint8_t *rec, size_t len)
{
    uint8_t head[TETHER_DATALOG_HEADER_BYTES];
    uint8_t *buf;
    int rc;

    put_be32(head, (uint32_t)len);
    put_be32(head + 4, tether__datalog_crc32(rec, len));
    buf = malloc(sizeof head + len);
    if (buf == NULL)
        return TETHER_ENOMEM;
    memcpy(buf, head, sizeof head);
    if (len)
        memcpy(buf + sizeof head, rec, len);
    rc = write_all(fd, buf, sizeof head + len);
    free(buf);
    return rc;
}

int tether__datalog_append(tether_datalog_t *log, const uint8_t *rec,
                           size_t len, uint64_t *seq)
{
    off_t end;
    int rc;

    if (log == NULL || (rec == NULL && len > 0))
        return TETHER_EINVAL;
    if (len > TETHER_DATALOG_RECORD_MAX)
        return TETHER_ETOOBIG;
    end = lseek(log->fd, 0, SEEK_END);
    rc = write_record(log->fd, rec, len);
    if (rc == TETHER_EIO && end >= 0) {
        /* A partial record would tear the log in the middle: cut it off
         * (the errno of the write is kept for the caller). */
        int saved = errno;
        (void)ftruncate(log->fd, end);
        errno = saved;
    }
    if (rc < 0)
        return rc;
    log->appended++;
    log->since_compact++;
    if (seq)
        *seq = log->appended;
    return 0;
}

uint64_t tether__datalog_appended(const tether_datalog_t *log)
{
    return log->appended;
}

uint64_t tether__datalog_synced(const tether_datalog_t *log)
{
    return log->synced;
}

uint64_t tether__datalog_since_compact(const tether_datalog_t *log)
{
    return log->since_compact;
}

int tether__datalog_sync(tether_datalog_t *log)
{
    if (log == NULL)
        return TETHER_EINVAL;
    while (fdatasync(log->fd) < 0)
        if (errno != EINTR)
            return TETHER_EIO;
    return 0;
}

void tether__datalog_synced_to(tether_datalog_t *log, uint64_t upto)
{
    if (upto > log->synced)
        log->synced = upto;
}

/* ---------------------------------------------------------------- load */

/*
 * Frames the records of buf[0..len) from *off: calls fn for each intact
 * one, counts the bad ones, and stops at an incomplete tail (left at
 * *off). Returns 1 when the rest cannot be framed (impossible length), 0,
 * or fn's negative value.
 */
static int frame_records(const uint8_t *buf, size_t len, size_t *off,
                         tether_datalog_record_fn fn, void *ctx,
                         tether_datalog_info_t *info)
{
    while (len - *off >= TETHER_DATALOG_HEADER_BYTES) {
        const uint8_t *h = buf + *off;
        uint32_t rlen = get_be32(h), crc = get_be32(h + 4);
        int rc;

        if (rlen > TETHER_DATALOG_RECORD_MAX)
            return 1;
        if (len - *off - TETHER_DATALOG_HEADER_BYTES < rlen)
            return 0;
        h += TETHER_DATALOG_HEADER_BYTES;
        if (tether__datalog_crc32(h, rlen) != crc) {
            info->corrupt++;
        } else {
            rc = fn(ctx, h, rlen);
            if (rc < 0)
                return rc;
            info->records++;
        }
        *off += TETHER_DATALOG_HEADER_BYTES + rlen;
    }
    return 0;
}

int tether__datalog_load(const char *path, tether_datalog_record_fn fn,
                         void *ctx, tether_datalog_info_t *info)
{
    tether_datalog_info_t local;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, off = 0;
    uint64_t base = 0; /* file offset of buf[0] */
    int fd, rc = 0, eof = 0;

    if (path == NULL || fn == NULL)
        return TETHER_EINVAL;
    if (info == NULL)
        info = &local;
    info->records = info->corrupt = 0;
    info->torn_at = -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : TETHER_EIO;
    /* Reads in chunks, framing what has arrived; a record larger than the
     * buffer grows it (bounded by TETHER_DATALOG_RECORD_MAX). */
    while (!eof) {
        ssize_t r;

        if (off > 0) {
            memmove(buf, buf + off, len - off);
            len -= off;
            base += off;
            off = 0;
        }
        if (cap - len < READ_CHUNK) {
            size_t ncap = cap ? cap * 2 : READ_CHUNK * 2;
            uint8_t *nb;
            while (ncap - len < READ_CHUNK)
                ncap *= 2;
            nb = realloc(buf, ncap);
            if (nb == NULL) {
                rc = TETHER_ENOMEM;
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = TETHER_EIO;
            goto done;
        }
        eof = r == 0;
        len += (size_t)r;
        rc = frame_records(buf, len, &off, fn, ctx, info);
        if (rc < 0)
            goto done;
        if (rc == 1) {
            info->corrupt++;
            info->torn_at = (int64_t)(base + off);
            rc = 0;
            goto done;
        }
    }
    if (off < len)
        info->torn_at = (int64_t)(base + off);
done:
    {
        int saved = errno;
        close(fd);
        free(buf);
        errno = saved;
    }
    return rc;
}

/* ------------------------------------------------------------- compact */

static int put_tmp(void *put_ctx, const uint8_t *rec, size_t len)
{
    FILE *f = put_ctx;
    uint8_t head[TETHER_DATALOG_HEADER_BYTES];

    if (len > TETHER_DATALOG_RECORD_MAX)
        return TETHER_ETOOBIG;
    put_be32(head, (uint32_t)len);
    put_be32(head + 4, tether__datalog_crc32(rec, len));
    if (fwrite(head, 1, sizeof head, f) != sizeof head ||
        (len && fwrite(rec, 1, len, f) != len))
        return TETHER_EIO;
    return 0;
}

int tether__datalog_compact(tether_datalog_t *log, tether_datalog_dump_fn dump,
                            void *ctx)
{
    char tmp[PATH_MAX];
    FILE *f = NULL;
    int fd = -1, nfd, rc;

    if (log == NULL || dump == NULL ||
        (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", log->path) >= sizeof tmp)
        return TETHER_EINVAL;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              TETHER_DATALOG_FILE_MODE);
    if (fd < 0 || (f = fdopen(fd, "wb")) == NULL) {
        rc = TETHER_EIO;
        goto fail;
    }
    fd = -1; /* f owns it */
    rc = dump(ctx, put_tmp, f);
    if (rc < 0)
        goto fail;
    if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
        rc = TETHER_EIO;
        goto fail;
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = TETHER_EIO;
        goto fail;
    }
    f = NULL;
    if (rename(tmp, log->path) < 0) {
        rc = TETHER_EIO;
        goto fail;
    }
    sync_dir(log->path);
    nfd = open_append(log->path);
    if (nfd < 0)
        return TETHER_EIO; /* the old fd still appends to the renamed-over
                              inode: the caller must stop persisting */
    close(log->fd);
    log->fd = nfd;
    log->since_compact = 0;
    log->synced = log->appended; /* the new file was fsynced whole */
    return 0;
fail:
    {
        int saved = errno;
        if (f)
            fclose(f);
        if (fd >= 0)
            close(fd);
        (void)unlink(tmp);
        errno = saved;
    }
    return rc;
}

int tether__datalog_keep_corrupt(const char *path)
{
    char aside[PATH_MAX];
    uint8_t buf[READ_CHUNK];
    int in, out, rc = 0;
    ssize_t r;

    if (path == NULL ||
        (size_t)snprintf(aside, sizeof aside, "%s.corrupt", path) >=
            sizeof aside)
        return TETHER_EINVAL;
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return TETHER_EIO;
    out = open(aside, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
               TETHER_DATALOG_FILE_MODE);
    if (out < 0) {
        close(in);
        return TETHER_EIO;
    }
    while ((r = read(in, buf, sizeof buf)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || write_all(out, buf, (size_t)r) < 0) {
            rc = TETHER_EIO;
            break;
        }
    }
    if (rc == 0 && fsync(out) < 0)
        rc = TETHER_EIO;
    close(in);
    close(out);
    return rc;
}
