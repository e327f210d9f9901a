//! CPU priority of background work.
//!
//! Once an event is in the spool its sender has been answered; forwarding it to Kafka can wait for
//! a free core. So the spool's forwarder, and the Kafka producer's threads when every source
//! acknowledges at the spool, run [`BACKGROUND_NICE`] steps nicer than the request path: when the
//! cores are busy (draining a backlog after an outage), live requests go first, and when they are
//! idle the background work runs at full speed. Measured: docs/benchmarks.md, *Backlog*.
//!
//! On Linux a thread's nice value is its own, and the threads it starts inherit it; librdkafka's
//! threads are started by the thread that creates the producer.

/// Steps added to the nice value of background threads, up to the lowest priority (19): such a
/// thread gets about 1.5 % of a core that a thread at nice 0 wants. Against 10, measured in
/// docs/benchmarks.md (*Backlog*): the drain as fast, live latency while draining lower.
pub const BACKGROUND_NICE: i32 = 19;

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
/// inherit it; returns what it returned.
pub fn create_in_background<T: Send>(create: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_current_thread();
                create()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
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
