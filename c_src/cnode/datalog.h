/*
 * cnode/datalog.h: an append-only log of records, the C-node's twin of
 * src/tether_datalog.erl (same file format, so one reader of either).
 *
 * Format: records framed as Len (4 bytes) Crc32 (4 bytes) Record (Len
 * bytes), big endian, Crc32 the IEEE CRC-32 of Record (erlang:crc32/1).
 *
 * Reading (tether__datalog_load): every whole, intact record goes to a
 * callback in order. A record whose CRC does not match is skipped and
 * counted (its length still frames the next one); a last record cut short
 * (a torn write) is skipped and its offset reported; a length no record
 * can have (over TETHER_DATALOG_RECORD_MAX) counts as corrupt and ends the
 * read. The caller decides what to log; tether__datalog_keep_corrupt()
 * copies a damaged log aside before a compaction drops what it held.
 *
 * Writing. tether__datalog_append() write(2)s one framed record at the
 * end (into the page cache: short, it never waits for the disk) and
 * returns its sequence number; tether__datalog_sync() fdatasyncs what was
 * appended before it started and reports the highest sequence now on
 * disk. The sync is the slow part and is safe to run on another thread
 * while the owner thread keeps appending (the C-node runs it on a worker
 * and never in its event loop): that is the group commit: every record
 * appended while one sync runs is made durable by the next one, so N
 * concurrent writers pay about one fdatasync each round, not N.
 * tether__datalog_compact() rewrites the log from a dump through a synced
 * temporary file renamed over it; it must not run while a sync does.
 */
#ifndef TETHER_CNODE_DATALOG_H
#define TETHER_CNODE_DATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#define TETHER_DATALOG_HEADER_BYTES 8
#define TETHER_DATALOG_RECORD_MAX   (64u << 20) /* a longer length is corrupt */
#define TETHER_DATALOG_DIR_MODE     0700
#define TETHER_DATALOG_FILE_MODE    0600

typedef struct tether_datalog tether_datalog_t;

/* What a load found besides the records. */
typedef struct tether_datalog_info {
    uint64_t records; /* whole, intact records handed to the callback */
    uint64_t corrupt; /* records skipped: bad CRC or impossible length */
    int64_t torn_at;  /* offset of a torn (or unframeable) tail, or -1 */
} tether_datalog_info_t;

/* The IEEE CRC-32 of len bytes (the same as erlang:crc32/1). */
uint32_t tether__datalog_crc32(const uint8_t *p, size_t len);

/* Creates dir and its missing parents with mode 0700. Returns 0,
 * TETHER_EINVAL or TETHER_EIO (errno set). */
TETHER_MUST_CHECK int tether__datalog_mkdirs(const char *dir);

/*
 * Opens the log at path for appending, creating it (0600) and its
 * directories (0700) when absent. *out gets the log. Returns 0,
 * TETHER_EINVAL, TETHER_ENOMEM or TETHER_EIO (errno set).
 */
TETHER_MUST_CHECK int tether__datalog_open(const char *path,
                                           tether_datalog_t **out);

/* Closes the log (nothing is synced: sync first to keep the last appends
 * through a power loss). NULL is a no-op. */
void tether__datalog_close(tether_datalog_t *log);

/*
 * Appends one record of len bytes (at most TETHER_DATALOG_RECORD_MAX) with
 * one write(2). *seq (optional) gets its sequence number, counted from 1
 * since open. Returns 0, TETHER_ETOOBIG or TETHER_EIO (errno set; a short
 * write is cut back off the file so the log stays framed).
 */
TETHER_MUST_CHECK int tether__datalog_append(tether_datalog_t *log,
                                             const uint8_t *rec, size_t len,
                                             uint64_t *seq);

/* The sequence number of the last append, and of the last one known to be
 * on disk. */
uint64_t tether__datalog_appended(const tether_datalog_t *log);
uint64_t tether__datalog_synced(const tether_datalog_t *log);

/*
 * fdatasync()s the log: every record appended before the call is on disk
 * when it returns 0 (the owner thread reads tether__datalog_appended()
 * before handing the sync to another thread, and records it with
 * tether__datalog_synced_to() when the sync succeeded). May run on any
 * thread while the owner appends. Returns 0 or TETHER_EIO (errno set).
 */
TETHER_MUST_CHECK int tether__datalog_sync(tether_datalog_t *log);
/* Records on the owner thread that a sync up to `upto` succeeded. */
void tether__datalog_synced_to(tether_datalog_t *log, uint64_t upto);

/* The callback of tether__datalog_load: 0 to go on, negative to stop (the
 * load returns that value). */
typedef int (*tether_datalog_record_fn)(void *ctx, const uint8_t *rec,
                                        size_t len);

/*
 * Reads the log at path and calls fn for each intact record, in order. An
 * absent file is an empty log. info (optional) gets the counts. Returns 0,
 * fn's negative value, TETHER_ENOMEM, or TETHER_EIO (errno set).
 */
TETHER_MUST_CHECK int tether__datalog_load(const char *path,
                                           tether_datalog_record_fn fn,
                                           void *ctx,
                                           tether_datalog_info_t *info);

/* What a dump calls for each record it keeps (put_ctx is opaque). */
typedef int (*tether_datalog_put_fn)(void *put_ctx, const uint8_t *rec,
                                     size_t len);
/* A dump: calls put for every record the log is to hold; 0 or negative. */
typedef int (*tether_datalog_dump_fn)(void *ctx, tether_datalog_put_fn put,
                                      void *put_ctx);

/*
 * Rewrites the log with what dump puts: path.tmp is written, fsynced and
 * renamed over the log, the directory is synced, and appends go on in the
 * new file. On failure the old log is kept whole. Returns 0, dump's
 * negative value, TETHER_ENOMEM or TETHER_EIO (errno set).
 */
TETHER_MUST_CHECK int tether__datalog_compact(tether_datalog_t *log,
                                              tether_datalog_dump_fn dump,
                                              void *ctx);

/* Records appended since the open or the last compaction. */
uint64_t tether__datalog_since_compact(const tether_datalog_t *log);

/* Copies the log at path to path.corrupt. Returns 0, TETHER_ENOMEM or
 * TETHER_EIO. */
TETHER_MUST_CHECK int tether__datalog_keep_corrupt(const char *path);

#endif /* TETHER_CNODE_DATALOG_H */
