//! Where the boot waits instead of working: in finit_module (a module's own init, which no loader
//! can shorten), in mount(2), and on the network (DHCP replies, carrier, retry pauses). The
//! kernel side of the seam wraps those calls; the report subtracts the time during which any of
//! them was in progress (their union: parallel module loads count once) from the elapsed time,
//! which leaves `stateless`'s own time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    ModuleInit = 0,
    Mount = 1,
    Network = 2,
}

/// The wall time spent waiting, per kind and in all (each a union of intervals).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub module_init_ms: u64,
    pub mount_ms: u64,
    pub network_ms: u64,
    /// While any of them was in progress.
    pub any_ms: u64,
    /// Waiting on the server of an NFS root for lookups, attributes and listings (the kernel's
    /// execute time of those RPCs, from /proc/self/mountstats; see `fs::nfs::waited_ms`).
    #[serde(default)]
    pub nfs_ms: u64,
}

/// Union of intervals, for one kind or for all: calls in progress, since when, the sum so far.
#[derive(Clone, Copy, Debug, Default)]
struct Union {
    active: u32,
    since: Option<Instant>,
    total: Duration,
}

impl Union {
    const IDLE: Union = Union { active: 0, since: None, total: Duration::ZERO };

    fn enter(&mut self, now: Instant) {
        if self.active == 0 {
            self.since = Some(now);
        }
        self.active = self.active.saturating_add(1);
    }

    fn leave(&mut self, now: Instant) {
        self.active = self.active.saturating_sub(1);
        if self.active == 0 {
            self.total = self.so_far(now);
            self.since = None;
        }
    }

    /// The total with a wait still in progress counted up to `now`.
    fn so_far(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

#[derive(Debug, Default)]
struct Clock {
    kinds: [Union; 3],
    any: Union,
}

impl Clock {
    fn enter(&mut self, wait: Wait, now: Instant) {
        if let Some(u) = self.kinds.get_mut(wait as usize) {
            u.enter(now);
        }
        self.any.enter(now);
    }

    fn leave(&mut self, wait: Wait, now: Instant) {
        if let Some(u) = self.kinds.get_mut(wait as usize) {
            u.leave(now);
        }
        self.any.leave(now);
    }

    fn totals(&self) -> Blocked {
        let ms = |u: &Union| u64::try_from(u.total.as_millis()).unwrap_or(u64::MAX);
        let [module_init, mount, network] = &self.kinds;
        Blocked {
            module_init_ms: ms(module_init),
            mount_ms: ms(mount),
            network_ms: ms(network),
            any_ms: ms(&self.any),
            nfs_ms: 0,
        }
    }
}

static CLOCK: Mutex<Clock> = Mutex::new(Clock { kinds: [Union::IDLE; 3], any: Union::IDLE });

fn with_clock<T>(f: impl FnOnce(&mut Clock) -> T) -> T {
    // A panic elsewhere must not take the accounting (or PID 1) down with it.
    let mut clock = CLOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut clock)
}

/// Runs `f`, counting its wall time as waiting for `wait` (also when it unwinds).
pub fn during<T>(wait: Wait, f: impl FnOnce() -> T) -> T {
    struct Leave(Wait);
    impl Drop for Leave {
        fn drop(&mut self) {
            with_clock(|c| c.leave(self.0, Instant::now()));
        }
    }
    with_clock(|c| c.enter(wait, Instant::now()));
    let _leave = Leave(wait);
    f()
}

/// The time during which any wait was in progress, so far (those still in progress until now).
pub fn any() -> Duration {
    let now = Instant::now();
    with_clock(|c| c.any.so_far(now))
}

/// The waits so far.
pub fn totals() -> Blocked {
    with_clock(|c| c.totals())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_waits_count_once_in_all_and_once_per_kind() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Clock::default();
        // Two modules loading in parallel, 0-100 and 50-150; a mount at 120-130 inside the
        // second; DHCP at 200-260.
        c.enter(Wait::ModuleInit, at(0));
        c.enter(Wait::ModuleInit, at(50));
        c.leave(Wait::ModuleInit, at(100));
        c.enter(Wait::Mount, at(120));
        c.leave(Wait::Mount, at(130));
        c.leave(Wait::ModuleInit, at(150));
        c.enter(Wait::Network, at(200));
        c.leave(Wait::Network, at(260));
        assert_eq!(c.totals(), Blocked { module_init_ms: 150, mount_ms: 10, network_ms: 60, any_ms: 210, nfs_ms: 0 });
        // An unbalanced leave changes nothing.
        c.leave(Wait::Mount, at(300));
        assert_eq!(c.totals().any_ms, 210);
        // A wait in progress counts up to now, and only once it ends in the totals.
        c.enter(Wait::Network, at(300));
        assert_eq!(c.any.so_far(at(350)), Duration::from_millis(260));
        assert_eq!(c.totals().any_ms, 210);
    }
}
