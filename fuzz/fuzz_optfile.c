/*
 * fuzz_optfile.c: libFuzzer target for cnode/optfile.c, the reader of
 * OTP's ssl_dist_optfile (text written by people, read at start-up).
 *
 * The whole input is the file. Checked properties, any violation aborts:
 *   - the parser returns 0, TETHER_EINVAL or TETHER_ENOMEM, nothing else;
 *   - a refusal leaves a NUL-terminated reason starting "line " (or the
 *     size message), and a tiny error buffer is still NUL-terminated;
 *   - an accepted file gives versions within 1.2..1.3, min <= max, and a
 *     depth within 0..100;
 *   - parsing the same bytes twice gives the same answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/optfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_side(const tether__tls_side_t *s)
{
    if (s->min_version < TETHER_TLS_V12 || s->max_version > TETHER_TLS_V13 ||
        s->min_version > s->max_version || s->depth < 0 || s->depth > 100)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[TETHER_OPTFILE_ERR_MAX], tiny[6];
    tether__tls_opts_t o;
    int rc = tether__optfile_parse(text, size, &o, err, sizeof err);
    if (rc == 0) {
        check_side(&o.server);
        check_side(&o.client);
        tether__tls_opts_free(&o);
    } else if (rc == TETHER_EINVAL) {
        if (memchr(err, '\0', sizeof err) == NULL ||
            (strncmp(err, "line ", 5) != 0 &&
             strncmp(err, "larger than", 11) != 0))
            abort();
    } else if (rc != TETHER_ENOMEM) {
        abort();
    }
    memset(tiny, 'x', sizeof tiny);
    int rc2 = tether__optfile_parse(text, size, &o, tiny, sizeof tiny);
    if (rc2 == 0)
        tether__tls_opts_free(&o);
    if (rc2 != rc || (rc2 < 0 && memchr(tiny, '\0', sizeof tiny) == NULL))
        abort();
    return 0;
}
