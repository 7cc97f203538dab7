/* Deadlines on the monotonic clock, for the timed waits of the gate's and the journal's locks. */
#ifndef CCOPY_TIMING_H
#define CCOPY_TIMING_H

#include <math.h>
#include <time.h>

/* `seconds` from now, for pthread_cond_timedwait on a CLOCK_MONOTONIC condition variable. */
static inline void monotonic_deadline(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    double whole = floor(seconds);
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

#endif
