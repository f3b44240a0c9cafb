#ifndef BERTC_SHA256_H
#define BERTC_SHA256_H
#include <stdint.h>
void bertc_sha256_hex(const void *data, uint64_t n, char out[65]);
#endif
