//! The engine's compute threads run below the process's normal priority
//! (its own test binary: the global thread pool can be built only once).
#![cfg(target_os = "linux")]

fn this_thread_nice() -> i32 {
    // SAFETY: plain syscalls without preconditions; errno is cleared first
    // because -1 is also a valid niceness.
    unsafe {
        *libc::__errno_location() = 0;
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

#[test]
fn compute_threads_run_at_lower_priority_than_the_rest() {
    let base = this_thread_nice();
    reservoir_worker::lower_compute_priority();
    let compute: Vec<i32> = rayon::broadcast(|_| this_thread_nice());
    assert!(!compute.is_empty());
    for nice in compute {
        assert!(nice > base, "compute thread at nice {nice}, caller at {base}");
    }
    assert_eq!(this_thread_nice(), base, "the calling thread keeps its priority");
}
