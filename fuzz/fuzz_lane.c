/*
 * fuzz_lane.c: libFuzzer target for the messaging lane's decoder of
 * batches and acks (cnode/lane.c: tether__lane_decode, the frames, the
 * reassembly of parts) and the classifier of the `tether_channel`
 * process's mailbox (cnode/channel.c: tether__channels_parse).
 *
 * Each input is tried as an opened envelope {tether_channel, Inner}: if
 * it decodes, it is handed to two lanes of the channel `default`, a
 * fresh one and one that already holds frames of its own in flight and
 * has received a batch, so both halves of the state machine see it.
 * Every term a lane emits in answer must decode again; a delivered
 * payload must be one valid term. The same bytes go to the mailbox
 * classifier, whose slices must stay inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "cnode/channel.h"
#include "cnode/lane.h"
#include "tether/term.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void emit(void *ctx, const char *etf, size_t len)
{
    tether_lane_inner_t in;
    (void)ctx;
    if (tether__lane_decode(etf, len, &in) != 0)
        abort(); /* a lane emitted what a lane cannot read */
}

static int deliver(void *ctx, const char *ref, size_t ref_len,
                   const char *payload, size_t plen)
{
    int idx = 0;
    (void)ctx;
    if (ei_skip_term(ref, &idx) < 0 || (size_t)idx != ref_len)
        abort();
    idx = 0;
    if (ei_skip_term(payload, &idx) < 0 || (size_t)idx != plen)
        abort();
    return plen % 2 ? 0 : TETHER_ENOTFOUND;
}

static void undelivered(void *ctx, void *report, tether_lane_reason_t why)
{
    (void)ctx;
    if (report == NULL ||
        (why != TETHER_LANE_TIMEOUT && why != TETHER_LANE_NOPROC))
        abort();
}

static const char ref[] = {(char)ERL_SMALL_ATOM_UTF8_EXT, 1, 'r'};
static const char payload[] = {(char)ERL_SMALL_INTEGER_EXT, 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    tether_lane_stats_t stats = {0};
    tether_lane_cb_t cb = {emit, deliver, undelivered, NULL};
    tether_lane_inner_t in;
    tether_channels_msg_t m;

    if (tether__channels_parse(buf, size, &m) != TETHER_CHANNELS_MSG_BAD &&
        m.bytes != NULL && (m.bytes < buf || m.bytes + m.len > buf + size))
        abort();
    if (tether__lane_decode(buf, size, &in) != 0)
        return 0;
    tether_lane_t *fresh = tether__lane_new("default", 0, 1, NULL, &cb, &stats);
    tether_lane_t *busy = tether__lane_new("default", 0, 2, NULL, &cb, &stats);
    if (fresh == NULL || busy == NULL)
        abort();
    for (int i = 0; i < 3; i++) {
        void *report = malloc(1);
        if (tether__lane_push(busy, 0, ref, sizeof ref, payload, sizeof payload,
                              report, 100) < 0)
            free(report);
    }
    tether__lane_recv(fresh, 0, &in);
    tether__lane_recv(busy, 0, &in);
    tether__lane_recv(busy, 1, &in); /* again: duplicates */
    tether__lane_tick(busy, 1000);
    tether__lane_free(fresh);
    tether__lane_free(busy);
    return 0;
}
