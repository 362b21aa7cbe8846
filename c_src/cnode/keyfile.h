/*
 * cnode/keyfile.h: key files, for `tether_cnode keygen` and the C-node's
 * start-up (--cluster-secret-file, --identity-file, --trust). The engine
 * (core/) never touches a file: the C-node reads the keys and hands the
 * bytes over.
 */
#ifndef TETHER_CNODE_KEYFILE_H
#define TETHER_CNODE_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/keys.h"
#include "tether/error.h"

/*
 * Files hold raw bytes, no text:
 * an identity secret key file is the 32-byte seed, a public key file the
 * 32-byte public key, a cluster secret file 32 bytes.
 */

/* Flag for tether__keyfile_read: the file holds a secret, so refuse it if
 * group or others may read or write it (as ssh does). */
#define TETHER_KEYFILE_SECRET 1u

/*
 * Creates `path` with open(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC,
 * 0600), writes the `len` bytes, fsyncs and closes it. Never overwrites:
 * an existing path (file or symlink) gives TETHER_EEXIST. On a failed write
 * the partial file is unlinked. Returns 0, TETHER_EEXIST, TETHER_EINVAL or
 * TETHER_EIO (errno set).
 */
TETHER_MUST_CHECK int tether__keyfile_write(const char *path,
                                            const uint8_t *bytes, size_t len);

/*
 * Writes a new identity as two files, both created 0600 as above: the
 * 32-byte seed to sk_path and the public key derived from it to pk_path.
 * If the second file cannot be made the first is unlinked, so either both
 * exist or neither. Returns as tether__keyfile_write().
 */
TETHER_MUST_CHECK int
tether__keyfile_write_identity(const char *sk_path, const char *pk_path,
                               const uint8_t seed[TETHER_KEY_SEED_BYTES]);

/*
 * Reads exactly `len` bytes (1..4096) from the regular file `path` into
 * out. Symlinks are followed (secret mounts use them); anything but a
 * regular file gives TETHER_EINVAL. The file must be exactly `len` bytes
 * long: shorter or longer (also if it grows while read) gives TETHER_EINVAL.
 * With TETHER_KEYFILE_SECRET a file whose mode grants anything to group or
 * others gives TETHER_EAUTH. On any error `out` is wiped. Returns 0,
 * TETHER_EINVAL, TETHER_EAUTH, TETHER_ENOTFOUND (no such file) or TETHER_EIO.
 */
TETHER_MUST_CHECK int tether__keyfile_read(const char *path, uint8_t *out,
                                           size_t len, unsigned flags);

#endif /* TETHER_CNODE_KEYFILE_H */
