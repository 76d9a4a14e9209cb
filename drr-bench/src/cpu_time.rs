//! A criterion measurement of the benchmark thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`): on a shared machine, time spent waiting for
//! a core does not count, unlike wall time.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Nanoseconds of CPU the current thread has used.
fn thread_cpu_ns() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(secs * 1_000_000_000 + nanos)
}

/// CPU time of the benchmark thread, in nanoseconds.
pub struct CpuTime;

impl CpuTime {
    /// Whether this system reports per-thread CPU time.
    pub fn available() -> bool {
        thread_cpu_ns().is_some()
    }
}

/// Wall time formats nanoseconds; CPU time is nanoseconds too.
static NANOSECONDS: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns().unwrap_or(0)
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().unwrap_or(0).saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        NANOSECONDS.formatter()
    }
}
