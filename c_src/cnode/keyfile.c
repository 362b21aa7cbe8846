/*
 * cnode/keyfile.c: key files (see keyfile.h): created 0600 with O_EXCL,
 * fsync'd, never overwritten; read back with exact lengths and, for
 * secrets, a check that nobody else may read them.
 */
#include "cnode/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAX_BYTES 4096

/* Writes all `len` bytes to fd, retrying short writes and EINTR. */
static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int tether__keyfile_write(const char *path, const uint8_t *bytes, size_t len)
{
    int fd = -1;
    int rc = TETHER_EIO;
    int saved;

    if (path == NULL || path[0] == '\0' || bytes == NULL || len == 0 ||
        len > KEYFILE_MAX_BYTES)
        return TETHER_EINVAL;

    /* O_EXCL never follows or replaces an existing path, symlinks included. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              S_IRUSR | S_IWUSR);
    if (fd < 0)
        return errno == EEXIST ? TETHER_EEXIST : TETHER_EIO;
    /* The umask can only narrow the mode; make it exactly 0600 anyway. */
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0)
        goto fail;
    if (write_all(fd, bytes, len) != 0)
        goto fail;
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return 0;

fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    errno = saved;
    return rc;
}

int tether__keyfile_write_identity(const char *sk_path, const char *pk_path,
                                   const uint8_t seed[TETHER_KEY_SEED_BYTES])
{
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    uint8_t sk[TETHER_KEY_SECRET_BYTES];

    if (sk_path == NULL || pk_path == NULL || seed == NULL ||
        strcmp(sk_path, pk_path) == 0)
        return TETHER_EINVAL;
    int rc = tether__crypto_init();
    if (rc != 0)
        return rc;
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(sk, sizeof sk);

    rc = tether__keyfile_write(sk_path, seed, TETHER_KEY_SEED_BYTES);
    if (rc != 0)
        return rc;
    rc = tether__keyfile_write(pk_path, pk, sizeof pk);
    if (rc != 0) {
        int saved = errno;
        unlink(sk_path);
        errno = saved;
    }
    return rc;
}

int tether__keyfile_read(const char *path, uint8_t *out, size_t len,
                         unsigned flags)
{
    struct stat st;
    int fd = -1;
    int rc = TETHER_EIO;
    size_t got = 0;
    uint8_t extra;

    if (out == NULL || len == 0 || len > KEYFILE_MAX_BYTES)
        return TETHER_EINVAL;
    if (path == NULL || path[0] == '\0' || (flags & ~TETHER_KEYFILE_SECRET)) {
        sodium_memzero(out, len);
        return TETHER_EINVAL;
    }
    /* Symlinks are followed: secret mounts (e.g. Kubernetes) use them. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rc = errno == ENOENT ? TETHER_ENOTFOUND : TETHER_EIO;
        goto fail;
    }
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        rc = TETHER_EINVAL;
        goto fail;
    }
    if ((flags & TETHER_KEYFILE_SECRET) && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        rc = TETHER_EAUTH;
        goto fail;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size != (uint64_t)len) {
        rc = TETHER_EINVAL;
        goto fail;
    }
    /* Read exactly len bytes, then make sure nothing follows (the file may
     * have changed since fstat). */
    while (got < len) {
        ssize_t r = read(fd, out + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0) {
            rc = TETHER_EINVAL;
            goto fail;
        }
        got += (size_t)r;
    }
    for (;;) {
        ssize_t r = read(fd, &extra, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r > 0) {
            rc = TETHER_EINVAL;
            goto fail;
        }
        break;
    }
    close(fd);
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    sodium_memzero(out, len);
    sodium_memzero(&extra, sizeof extra);
    return rc;
}
