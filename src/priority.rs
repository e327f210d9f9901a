//! CPU priority of background work.
//!
//! Once an event is in the spool its sender has been answered; forwarding it to Kafka can wait for
//! a free core. So the spool's forwarder, and the Kafka producer's threads when every source
//! acknowledges at the spool, run [`BACKGROUND_NICE`] steps nicer than the request path: when the
//! cores are busy (draining a backlog after an outage), live requests go first, and when they are
//! idle the background work runs at full speed. Measured: docs/benchmarks.md, *Backlog and recovery*.
//!
//! On Linux a thread's nice value is its own, and the threads it starts inherit it; librdkafka's
//! threads are started by the thread that creates the producer.

/// Steps added to the nice value of background threads: at +10 such a thread weighs a tenth of a
/// thread at the relay's own value when both want a core. +19 (a seventieth) measured a little
/// lower live latency while draining (docs/benchmarks.md, *Backlog and recovery*) but left the
/// forwarder almost nothing while the request path keeps the cores busy (a flood of requests,
/// even unauthenticated ones), so that the spool would fill and refuse senders.
pub const BACKGROUND_NICE: i32 = 10;

/// Makes the calling thread (and the threads it starts from now on) nicer by
/// [`BACKGROUND_NICE`]. Lowering one's priority is always allowed; a failure is logged and ignored.
pub fn lower_current_thread() {
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread).and_then(|current| {
        rustix::process::setpriority_process(thread, (current + BACKGROUND_NICE).min(19))
    });
    if let Err(error) = lowered {
        tracing::debug!(%error, "cannot lower the priority of a background thread");
    }
}

/// Runs `create` on a thread of background priority, so that the threads it starts (librdkafka's)
/// inherit it; returns what it returned. When no thread can be started, `create` runs here, at
/// the caller's priority.
pub fn create_in_background<T: Send>(create: impl FnOnce() -> T + Send) -> T {
    let create = std::sync::Mutex::new(Some(create));
    let take = || {
        create
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    };
    let created = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new().spawn_scoped(scope, || {
            lower_current_thread();
            take().map(|create| create())
        });
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(error) => {
                tracing::debug!(%error, "cannot start a background thread");
                None
            }
        }
    });
    created.unwrap_or_else(|| (take().expect("not run yet"))())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_is_nicer_and_so_are_its_children() {
        let before = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let (own, child) = create_in_background(|| {
            let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
            let child = std::thread::spawn(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
            })
            .join()
            .unwrap();
            (own, child)
        });
        let expected = (before + BACKGROUND_NICE).min(19);
        assert_eq!((own, child), (expected, expected));
        let after = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(after, before, "the calling thread keeps its priority");
    }
}
