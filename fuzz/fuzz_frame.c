/*
 * libFuzzer target: the distribution receive path. The input is a byte
 * stream of frames fed through tether__reader_next() in pieces whose sizes
 * come from the input itself, with small caps so the reassembly limits are
 * reached; every complete message is then handed to the control decoder.
 */
#include <stddef.h>
#include <stdint.h>

#include "dist/control.h"
#include "dist/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tether_dist_reader_t *r;
    size_t have, off = 0, step;

    if (size < 1)
        return 0;
    /* The first byte picks the delivery chunk size (1..256). */
    step = (size_t)data[0] + 1;
    data++;
    size--;
    r = tether__reader_new(1 << 16, 1 << 12, 4);
    if (!r)
        return 0;
    for (have = 0; have < size;) {
        have = have + step < size ? have + step : size;
        while (off < have) {
            tether_dist_ev_t ev;
            size_t used = 0;
            int rc = tether__reader_next(r, data + off, have - off, &used, &ev);
            if (rc == TETHER_EAGAIN)
                break;
            if (rc)
                goto done;
            if (used == 0 || used > have - off)
                __builtin_trap();
            off += used;
            if (ev.kind == TETHER_DIST_EV_MSG) {
                tether_ctl_t c;
                (void)tether__ctl_decode(ev.msg.data, ev.msg.len,
                                         ev.msg.versioned, &c);
            }
        }
    }
done:
    tether__reader_free(r);
    return 0;
}
