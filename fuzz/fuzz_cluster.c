/*
 * fuzz_cluster.c: libFuzzer target for the C-node cluster process's
 * mailbox classifier, tether__cluster_parse() (cnode/cluster.h).
 *
 * The whole input is a mailbox message. Whatever kind comes back, the
 * outputs must point inside the input: DATA's bytes lie within it, the
 * sender name is NUL-terminated and non-empty with an '@', and CALL's term
 * indexes are within bounds. Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tether_cluster_msg_t m;
    int kind;
    size_t nlen;

    memset(&m, 0xa5, sizeof m);
    kind = tether__cluster_parse((const char *)data, size, &m);
    if (kind != m.kind)
        abort();
    switch (kind) {
    case TETHER_CLUSTER_MSG_BAD:
    case TETHER_CLUSTER_MSG_WAKE:
    case TETHER_CLUSTER_MSG_EXIT:
        break;
    case TETHER_CLUSTER_MSG_DATA:
        if (m.bytes < data || m.len > size ||
            (size_t)(m.bytes - data) > size - m.len)
            abort();
        /* DATA also names its sender */
        nlen = strnlen(m.from, sizeof m.from);
        if (nlen == 0 || nlen == sizeof m.from ||
            memchr(m.from, '@', nlen) == NULL)
            abort();
        break;
    case TETHER_CLUSTER_MSG_CALL:
        if (m.from_index <= 0 || m.req_index <= m.from_index ||
            (size_t)m.req_index >= size)
            abort();
        break;
    default:
        abort();
    }
    return 0;
}
