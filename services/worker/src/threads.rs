//! The engine's compute threads run at a lower scheduling priority than the
//! rest of the process. A forward pass keeps every core busy; at equal
//! priority, a request arriving mid-step waits for the kernel to hand it a
//! core at each hop (gRPC handler, tokenizer, the engine thread's next
//! layer boundary), which on a small machine puts a long tail on time to
//! first token. Lower-priority compute threads still take every cycle that
//! request handling leaves idle, so throughput is unchanged.

/// Niceness added to the compute threads (0 is normal, 19 the lowest).
const COMPUTE_NICE: libc::c_int = 10;

/// Builds the global rayon pool (the engine's compute threads) with lowered
/// priority. Call once, before the engine runs; a later call, or a pool that
/// already exists, leaves things as they are.
pub fn lower_compute_priority() {
    let built = rayon::ThreadPoolBuilder::new().start_handler(|_| lower_this_thread()).build_global();
    if let Err(e) = built {
        tracing::debug!(error = %e, "the compute thread pool already exists; its priority is unchanged");
    }
}

#[cfg(target_os = "linux")]
fn lower_this_thread() {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a
    // thread id changes only that thread's niceness on Linux, and any failure
    // is reported through its return value.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, COMPUTE_NICE) != 0
    };
    if failed {
        tracing::debug!("cannot lower a compute thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_thread() {}
