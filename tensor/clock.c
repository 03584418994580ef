/* clock.c — time_now_s (clock.h). */
#include "tensor/clock.h"

#include <time.h>

double time_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
