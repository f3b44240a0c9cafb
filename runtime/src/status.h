/* How the runtime reports a failure, everywhere: a named status code (bertc.h) returned, and a message
 * that says what to fix written into the caller's buffer of BERTC_ERROR_BYTES (the model's
 * bertc_last_error, or the thread's bertc_open_error). Internal. */
#ifndef BERTC_STATUS_H
#define BERTC_STATUS_H

#include <stdarg.h>
#include <stdio.h>

#include "../include/bertc.h"

#define BERTC_ERROR_BYTES 512

static inline bertc_status fail(char *buf, bertc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bertc_status fail(char *buf, bertc_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, BERTC_ERROR_BYTES, fmt, ap);
  va_end(ap);
  return code;
}

#endif
