/* clock.h — the one clock of the project: seconds on a monotonic clock, for durations (progress
 * lines, benchmarks, throughput). Not the time of day. */
#pragma once

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC); only differences mean anything. */
double time_now_s(void);
