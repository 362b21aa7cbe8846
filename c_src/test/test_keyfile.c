/*
 * Criterion suite for cnode/keyfile.c: key files created 0600 whatever the
 * umask, never overwritten, identity pairs all or nothing, reads of exact
 * length, secrets refused when others may read them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/keyfile.h"
#include "test/util.h"

/* ---- key files ---------------------------------------------------------- */

static char tmpdir[PATH_MAX];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tether-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[PATH_MAX + 16];
    if (tmpdir[0] == '\0')
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void path_in(char *out, size_t cap, const char *file)
{
    snprintf(out, cap, "%s/%s", tmpdir, file);
}

TestSuite(keyfile, .init = make_tmpdir, .fini = remove_tmpdir);

Test(keyfile, written_0600_whatever_the_umask)
{
    char p[PATH_MAX];
    struct stat st;
    uint8_t secret[32], back[32];
    mode_t masks[] = {0, 022, 077};

    fill(secret, 32, 42);
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        char file[32];
        snprintf(file, sizeof file, "secret%zu", i);
        path_in(p, sizeof p, file);
        mode_t old = umask(masks[i]);
        int rc = tether__keyfile_write(p, secret, sizeof secret);
        umask(old);
        cr_assert_eq(rc, 0);
        cr_assert_eq(stat(p, &st), 0);
        cr_assert(S_ISREG(st.st_mode));
        cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
        cr_assert_eq(st.st_size, 32);
        cr_assert_eq(tether__keyfile_read(p, back, 32, TETHER_KEYFILE_SECRET),
                     0);
        cr_assert_eq(memcmp(back, secret, 32), 0);
    }
}

Test(keyfile, refuses_to_overwrite)
{
    char p[PATH_MAX], target[PATH_MAX];
    uint8_t a[32], b[32], back[32];
    struct stat st;

    fill(a, 32, 1);
    fill(b, 32, 2);
    path_in(p, sizeof p, "key");
    cr_assert_eq(tether__keyfile_write(p, a, 32), 0);
    cr_assert_eq(tether__keyfile_write(p, b, 32), TETHER_EEXIST);
    cr_assert_eq(tether__keyfile_read(p, back, 32, 0), 0);
    cr_assert_eq(memcmp(back, a, 32), 0, "the first file was kept");

    /* A symlink at the path is not followed, even to a missing file. */
    path_in(p, sizeof p, "link");
    path_in(target, sizeof target, "target");
    cr_assert_eq(symlink(target, p), 0);
    cr_assert_eq(tether__keyfile_write(p, a, 32), TETHER_EEXIST);
    cr_assert_neq(stat(target, &st), 0);
    cr_assert_eq(errno, ENOENT);
}

Test(keyfile, write_rejects_bad_arguments)
{
    uint8_t a[32] = {0};
    char p[PATH_MAX];

    path_in(p, sizeof p, "x");
    cr_assert_eq(tether__keyfile_write(NULL, a, 32), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_write("", a, 32), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_write(p, a, 0), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_write(p, NULL, 32), TETHER_EINVAL);
    path_in(p, sizeof p, "no/such/dir/x");
    cr_assert_eq(tether__keyfile_write(p, a, 32), TETHER_EIO);
}

Test(keyfile, identity_pair_round_trip)
{
    char sk[PATH_MAX], pk[PATH_MAX];
    uint8_t seed[32], back[32], pub[32];
    tether_identity_t id;
    struct stat st;

    fill(seed, 32, 77);
    path_in(sk, sizeof sk, "node.key");
    path_in(pk, sizeof pk, "node.pub");
    cr_assert_eq(tether__keyfile_write_identity(sk, pk, seed), 0);
    cr_assert_eq(stat(sk, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(stat(pk, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(tether__keyfile_read(sk, back, 32, TETHER_KEYFILE_SECRET), 0);
    cr_assert_eq(tether__keyfile_read(pk, pub, 32, 0), 0);
    cr_assert_eq(tether__identity_from_seed(&id, "n@h", back), 0);
    cr_assert_eq(memcmp(id.pk, pub, 32), 0);
    tether__identity_fini(&id);
    /* Both exist: refused, nothing changed. */
    cr_assert_eq(tether__keyfile_write_identity(sk, pk, seed), TETHER_EEXIST);
}

Test(keyfile, identity_pair_is_all_or_nothing)
{
    char sk[PATH_MAX], pk[PATH_MAX];
    uint8_t seed[32] = {1};
    struct stat st;

    path_in(sk, sizeof sk, "n.key");
    path_in(pk, sizeof pk, "n.pub");
    cr_assert_eq(tether__keyfile_write(pk, seed, 32), 0);
    cr_assert_eq(tether__keyfile_write_identity(sk, pk, seed), TETHER_EEXIST);
    cr_assert_neq(stat(sk, &st), 0, "the secret half was removed");
    cr_assert_eq(tether__keyfile_write_identity(sk, sk, seed), TETHER_EINVAL);
}

static void write_raw(const char *p, const void *bytes, size_t n, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

Test(keyfile, read_refuses_wrong_length)
{
    char p[PATH_MAX];
    uint8_t bytes[64], out[32];

    fill(bytes, sizeof bytes, 9);
    path_in(p, sizeof p, "k");
    size_t lens[] = {0, 1, 31, 33, 64};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unlink(p);
        write_raw(p, bytes, lens[i], 0600);
        memset(out, 0xAA, sizeof out);
        cr_assert_eq(tether__keyfile_read(p, out, 32, TETHER_KEYFILE_SECRET),
                     TETHER_EINVAL, "length %zu", lens[i]);
        cr_assert(all_zero(out, sizeof out), "wiped after length %zu", lens[i]);
    }
    /* A hex text file of the right bytes is not a key file either. */
    unlink(p);
    write_raw(p, "00112233445566778899aabbccddeeff", 32, 0600);
    cr_assert_eq(tether__keyfile_read(p, out, 32, 0), 0,
                 "exactly 32 bytes of anything is accepted as raw bytes");
    cr_assert_eq(tether__keyfile_read(p, out, 16, 0), TETHER_EINVAL);
}

Test(keyfile, read_refuses_open_permissions_for_secrets)
{
    char p[PATH_MAX];
    uint8_t bytes[32] = {5}, out[32];

    path_in(p, sizeof p, "k");
    write_raw(p, bytes, 32, 0644);
    memset(out, 0xAA, sizeof out);
    cr_assert_eq(tether__keyfile_read(p, out, 32, TETHER_KEYFILE_SECRET),
                 TETHER_EAUTH);
    cr_assert(all_zero(out, sizeof out));
    cr_assert_eq(tether__keyfile_read(p, out, 32, 0), 0, "fine for a pubkey");
    cr_assert_eq(chmod(p, 0400), 0);
    cr_assert_eq(tether__keyfile_read(p, out, 32, TETHER_KEYFILE_SECRET), 0);
}

Test(keyfile, read_refuses_missing_and_non_files)
{
    char p[PATH_MAX];
    uint8_t out[32];

    path_in(p, sizeof p, "missing");
    cr_assert_eq(tether__keyfile_read(p, out, 32, 0), TETHER_ENOTFOUND);
    cr_assert_eq(tether__keyfile_read(tmpdir, out, 32, 0), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_read("/dev/zero", out, 32, 0), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_read(p, out, 0, 0), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_read(p, out, 32, 0x80), TETHER_EINVAL);
    cr_assert_eq(tether__keyfile_read(NULL, out, 32, 0), TETHER_EINVAL);
}
