/*
 * libFuzzer target: the control message decoder on arbitrary bytes, in
 * both framings (first byte: versioned or not). Decoded slices must lie
 * inside the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_slice(const tether_etf_slice_t *s, size_t size)
{
    if (s->len && (s->off > size || s->len > size - s->off))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tether_ctl_t c;
    uint8_t *copy;
    int versioned;

    if (size < 1)
        return 0;
    versioned = data[0] & 1;
    data++;
    size--;
    /* An exact-size heap copy lets ASan catch any over-read. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    if (tether__ctl_decode(copy, size, versioned, &c) == 0) {
        check_slice(&c.reason, size);
        check_slice(&c.message, size);
        check_slice(&c.token, size);
        check_slice(&c.spawn_opts, size);
        check_slice(&c.result, size);
        /* A slice must itself be one valid term. */
        if (c.message.len) {
            size_t o = c.message.off;
            if (tether__etf_skip(copy, c.message.off + c.message.len, &o) ||
                o != c.message.off + c.message.len)
                __builtin_trap();
        }
    }
    free(copy);
    return 0;
}
