/*
 * tether/error.h: error codes shared by every tether module.
 *
 * Functions that can fail return 0 on success or one of the negative
 * TETHER_E* codes below; tether_strerror() turns a code into a sentence.
 */
#ifndef TETHER_ERROR_H
#define TETHER_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Marks a result the caller must read (a failed check ignored is a bug). */
#if defined(__GNUC__) || defined(__clang__)
#define TETHER_MUST_CHECK __attribute__((warn_unused_result))
#else
#define TETHER_MUST_CHECK
#endif

enum {
    TETHER_OK = 0,
    TETHER_EINVAL = -1,     /* an argument is out of its domain */
    TETHER_ENOMEM = -2,     /* an allocation failed */
    TETHER_EAGAIN = -3,     /* not enough input yet: call again with more */
    TETHER_EPROTO = -4,     /* the peer broke the protocol */
    TETHER_ETOOBIG = -5,    /* an input is larger than its configured cap */
    TETHER_EAUTH = -6,      /* authentication failed (cookie, MAC, signature) */
    TETHER_ENOTFOUND = -7,  /* no such name, key or process */
    TETHER_EEXIST = -8,     /* the name or key is already taken */
    TETHER_EIO = -9,        /* an operating-system call failed; see errno */
    TETHER_ECLOSED = -10,   /* the connection or object is closed */
    TETHER_ETIMEDOUT = -11, /* a deadline passed */
    TETHER_EREPLAY = -12,   /* a message was seen before */
    TETHER_EUNSUPP = -13,   /* the operation or message is not supported */
};

/*
 * Returns a static, human-readable sentence for a TETHER_E* code, or
 * "unknown error" for a value that is not one. Never returns NULL.
 */
const char *tether_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_ERROR_H */
