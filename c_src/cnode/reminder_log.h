/*
 * cnode/reminder_log.h: the C-node's reminder log, an append-only file of
 * records, each framed as on the BEAM (src/tether_reminder.erl):
 *
 *   <<Len:32/big, Crc32:32/big, Record:Len/binary>>
 *
 * with Crc32 the CRC-32 of zlib and erlang:crc32/1 over Record. Records
 * are the bytes of the engine's REMINDER_STORE actions; the log does not
 * look inside them. Appends are written at once and made durable with
 * tether__rlog_sync() (fdatasync), which the cluster process calls before
 * it acknowledges anything, so "a replica has it on disk" holds.
 *
 * A log is compacted by rewriting: begin, append every record the engine
 * holds, end (fsync, rename over the old file, fsync the directory); the
 * new file is then the one appended to.
 *
 * Loop thread only; the calls block on the disk (fdatasync), as the
 * BEAM's tether server does on its file:write/2.
 */
#ifndef TETHER_CNODE_REMINDER_LOG_H
#define TETHER_CNODE_REMINDER_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#define TETHER_RLOG_FRAME_BYTES 8           /* Len and Crc32 */
#define TETHER_RLOG_RECORD_MAX  (1u << 24)  /* a larger Len is corruption */

typedef struct tether__rlog {
    int fd;            /* the file appended to; -1: closed */
    int tmp_fd;        /* the rewrite under way; -1: none */
    char *path;        /* DIR/reminders-NODE.log */
    bool dirty;        /* appended since the last sync */
    uint64_t appended; /* records since the last rewrite */
} tether__rlog_t;

/* The CRC-32 of zlib (and erlang:crc32/1) of buf[0..len). */
uint32_t tether__rlog_crc32(const uint8_t *buf, size_t len);

/*
 * Sets up log for DIR/reminders-NODE.log (nothing opened yet). Returns 0,
 * TETHER_EINVAL (a path over PATH_MAX) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__rlog_init(tether__rlog_t *log, const char *dir,
                                        const char *node);
/* Closes the files and frees the path; log may be zeroed or set up. */
void tether__rlog_fini(tether__rlog_t *log);

/*
 * Feeds every whole record of the file to fn, in order, until fn returns
 * nonzero (a record the engine refuses) or the file ends. Returns the
 * records fed (>= 0), with *bad_at = -1 when the file ended cleanly or
 * was absent, else the byte offset of the torn or corrupted tail (the
 * records before it are fed); or TETHER_EIO (unreadable, errno set).
 */
long tether__rlog_load(const tether__rlog_t *log,
                       int (*fn)(void *ctx, const uint8_t *rec, size_t len),
                       void *ctx, long *bad_at);

/* Starts a rewrite (creates PATH.tmp). 0 or TETHER_EIO. */
TETHER_MUST_CHECK int tether__rlog_rewrite_begin(tether__rlog_t *log);
/* Ends it: syncs the new file, renames it over PATH, syncs the
 * directory, and appends to it from then on. 0 or TETHER_EIO (the old
 * file is kept; the rewrite is abandoned). */
TETHER_MUST_CHECK int tether__rlog_rewrite_end(tether__rlog_t *log);

/* Abandons a rewrite under way (PATH.tmp is removed; PATH is kept). */
void tether__rlog_rewrite_abort(tether__rlog_t *log);

/* Appends one record (to the rewrite when one is under way). 0,
 * TETHER_EINVAL (over TETHER_RLOG_RECORD_MAX), TETHER_ECLOSED (no file)
 * or TETHER_EIO. */
TETHER_MUST_CHECK int tether__rlog_append(tether__rlog_t *log,
                                          const uint8_t *rec, size_t len);
/* Makes what was appended durable (fdatasync) if anything was. 0 or
 * TETHER_EIO. */
TETHER_MUST_CHECK int tether__rlog_sync(tether__rlog_t *log);

#endif /* TETHER_CNODE_REMINDER_LOG_H */
