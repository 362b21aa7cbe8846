/*
 * cnode/reminder_log.c: the C-node's reminder log (see reminder_log.h).
 */
#include "cnode/reminder_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define CRC32_POLY   0xEDB88320u /* reflected IEEE 802.3, as zlib */
#define READ_CHUNK   65536
#define TMP_SUFFIX   ".tmp"
#define LOG_PREFIX   "/reminders-"
#define LOG_SUFFIX   ".log"

uint32_t tether__rlog_crc32(const uint8_t *buf, size_t len)
{
    static uint32_t table[256];
    static bool ready;
    uint32_t c = 0xFFFFFFFFu;

    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = (v & 1u) ? CRC32_POLY ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
        ready = true;
    }
    for (size_t i = 0; i < len; i++)
        c = table[(c ^ buf[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

int tether__rlog_init(tether__rlog_t *log, const char *dir, const char *node)
{
    size_t n = strlen(dir) + strlen(LOG_PREFIX) + strlen(node) +
               strlen(LOG_SUFFIX) + strlen(TMP_SUFFIX) + 1;

    memset(log, 0, sizeof *log);
    log->fd = log->tmp_fd = -1;
    if (n > PATH_MAX)
        return TETHER_EINVAL;
    log->path = malloc(n);
    if (log->path == NULL)
        return TETHER_ENOMEM;
    snprintf(log->path, n, "%s%s%s%s", dir, LOG_PREFIX, node, LOG_SUFFIX);
    return 0;
}

void tether__rlog_fini(tether__rlog_t *log)
{
    if (log->fd >= 0)
        close(log->fd);
    if (log->tmp_fd >= 0)
        close(log->tmp_fd);
    free(log->path);
    memset(log, 0, sizeof *log);
    log->fd = log->tmp_fd = -1;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Reads the whole file into a malloc'd *out. 0 (absent: *len 0), or
 * TETHER_EIO / TETHER_ENOMEM. */
static int slurp(const char *path, uint8_t **out, size_t *len)
{
    uint8_t *buf = NULL, *nb;
    size_t n = 0, cap = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : TETHER_EIO;
    for (;;) {
        if (cap - n < READ_CHUNK) {
            nb = realloc(buf, cap + READ_CHUNK * 4);
            if (nb == NULL) {
                free(buf);
                close(fd);
                return TETHER_ENOMEM;
            }
            buf = nb;
            cap += READ_CHUNK * 4;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return TETHER_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

long tether__rlog_load(const tether__rlog_t *log,
                       int (*fn)(void *ctx, const uint8_t *rec, size_t len),
                       void *ctx, long *bad_at)
{
    uint8_t *buf;
    size_t len, off = 0;
    long fed = 0;
    int rc = slurp(log->path, &buf, &len);

    *bad_at = -1;
    if (rc < 0)
        return rc;
    while (off < len) {
        uint32_t rl, crc;
        if (len - off < TETHER_RLOG_FRAME_BYTES)
            break;
        rl = get32(buf + off);
        crc = get32(buf + off + 4);
        if (rl > TETHER_RLOG_RECORD_MAX ||
            len - off - TETHER_RLOG_FRAME_BYTES < rl ||
            tether__rlog_crc32(buf + off + TETHER_RLOG_FRAME_BYTES, rl) !=
                crc ||
            fn(ctx, buf + off + TETHER_RLOG_FRAME_BYTES, rl) != 0)
            break;
        off += TETHER_RLOG_FRAME_BYTES + rl;
        fed++;
    }
    if (off < len)
        *bad_at = (long)off;
    free(buf);
    return fed;
}

/* Writes all of iov (two pieces) to fd. 0 or TETHER_EIO. */
static int write_frame(int fd, const uint8_t *rec, size_t len)
{
    uint8_t head[TETHER_RLOG_FRAME_BYTES];
    struct iovec iov[2];
    size_t left = TETHER_RLOG_FRAME_BYTES + len;

    put32(head, (uint32_t)len);
    put32(head + 4, tether__rlog_crc32(rec, len));
    iov[0] = (struct iovec){head, sizeof head};
    iov[1] = (struct iovec){(void *)rec, len};
    while (left > 0) {
        ssize_t w = writev(fd, iov, 2);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TETHER_EIO;
        left -= (size_t)w;
        for (int i = 0; i < 2; i++) {
            size_t take = (size_t)w < iov[i].iov_len ? (size_t)w
                                                     : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            w -= (ssize_t)take;
        }
    }
    return 0;
}

int tether__rlog_append(tether__rlog_t *log, const uint8_t *rec, size_t len)
{
    int fd = log->tmp_fd >= 0 ? log->tmp_fd : log->fd;
    int rc;

    if (len > TETHER_RLOG_RECORD_MAX)
        return TETHER_EINVAL;
    if (fd < 0)
        return TETHER_ECLOSED;
    rc = write_frame(fd, rec, len);
    if (rc == 0 && log->tmp_fd < 0) {
        log->dirty = true;
        log->appended++;
    }
    return rc;
}

int tether__rlog_sync(tether__rlog_t *log)
{
    if (!log->dirty || log->fd < 0)
        return 0;
    log->dirty = false;
    return fdatasync(log->fd) == 0 ? 0 : TETHER_EIO;
}

/* The path with TMP_SUFFIX (init sized the buffer for it). */
static void tmp_path(const tether__rlog_t *log, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", log->path, TMP_SUFFIX);
}

int tether__rlog_rewrite_begin(tether__rlog_t *log)
{
    char tmp[PATH_MAX + 1];

    if (log->tmp_fd >= 0)
        close(log->tmp_fd);
    tmp_path(log, tmp, sizeof tmp);
    log->tmp_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log->tmp_fd < 0 && errno == ENOENT) {
        /* The data directory itself is made on first use, as
         * filelib:ensure_dir/1 does on the BEAM. */
        char dir[PATH_MAX + 1];
        snprintf(dir, sizeof dir, "%.*s",
                 (int)(strrchr(log->path, '/') - log->path), log->path);
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            log->tmp_fd =
                open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    return log->tmp_fd >= 0 ? 0 : TETHER_EIO;
}

/* Syncs the directory holding path (so a rename in it is durable). */
static int sync_dir(const char *path)
{
    char dir[PATH_MAX + 1];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    int fd, rc;

    if (n == 0)
        snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)n, path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return TETHER_EIO;
    rc = fsync(fd) == 0 ? 0 : TETHER_EIO;
    close(fd);
    return rc;
}

void tether__rlog_rewrite_abort(tether__rlog_t *log)
{
    char tmp[PATH_MAX + 1];

    if (log->tmp_fd < 0)
        return;
    close(log->tmp_fd);
    log->tmp_fd = -1;
    tmp_path(log, tmp, sizeof tmp);
    (void)unlink(tmp);
}

int tether__rlog_rewrite_end(tether__rlog_t *log)
{
    char tmp[PATH_MAX + 1];

    if (log->tmp_fd < 0)
        return TETHER_EIO;
    tmp_path(log, tmp, sizeof tmp);
    if (fdatasync(log->tmp_fd) != 0 || rename(tmp, log->path) != 0) {
        int e = errno;
        tether__rlog_rewrite_abort(log);
        errno = e;
        return TETHER_EIO;
    }
    if (log->fd >= 0)
        close(log->fd);
    log->fd = log->tmp_fd;
    log->tmp_fd = -1;
    log->dirty = false;
    log->appended = 0;
    return sync_dir(log->path);
}
