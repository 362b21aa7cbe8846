/*
 * error.c: tether_strerror() and tether_version(), the two functions every
 * layer and both shells (NIF, C-node) share.
 */
#include "tether/error.h"
#include "tether/version.h"

const char *tether_strerror(int code)
{
    switch (code) {
    case TETHER_OK:
        return "success";
    case TETHER_EINVAL:
        return "invalid argument";
    case TETHER_ENOMEM:
        return "out of memory";
    case TETHER_EAGAIN:
        return "incomplete input, more bytes needed";
    case TETHER_EPROTO:
        return "protocol error";
    case TETHER_ETOOBIG:
        return "input larger than its limit";
    case TETHER_EAUTH:
        return "authentication failed";
    case TETHER_ENOTFOUND:
        return "not found";
    case TETHER_EEXIST:
        return "already exists";
    case TETHER_EIO:
        return "input/output error";
    case TETHER_ECLOSED:
        return "closed";
    case TETHER_ETIMEDOUT:
        return "timed out";
    case TETHER_EREPLAY:
        return "replayed message";
    case TETHER_EUNSUPP:
        return "not supported";
    default:
        return "unknown error";
    }
}

const char *tether_version(void)
{
    return TETHER_VERSION_STRING;
}
