//! `reservoir up` runs each inference worker as its own child process
//! (`reservoir serve worker`), so a worker crash is a real fault the platform
//! survives: a worker that exits is started again, on the same port, after a
//! back-off that grows while it keeps failing. Ctrl-C stops them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reservoir_runtime::Shutdown;
use serde::Serialize;
use tokio::process::{Child, Command};

/// Longest wait before starting a failing worker again.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that ran this long before exiting counts as healthy again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stopping worker gets to finish in-flight work.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Set on each worker child: the pid of the `reservoir up` that supervises it.
const SUPERVISOR_PID_ENV: &str = "RESERVOIR_SUPERVISOR_PID";
/// How often a supervised worker checks that its supervisor still lives.
const ORPHAN_CHECK: Duration = Duration::from_secs(1);

/// In a worker started by `reservoir up`: shuts the worker down when its
/// supervisor is gone (killed outright, it could not stop its children), so
/// no worker outlives the platform. Does nothing for workers started otherwise.
pub fn stop_when_orphaned(shutdown: &Shutdown) {
    let Some(supervisor) = std::env::var(SUPERVISOR_PID_ENV).ok().and_then(|p| p.parse::<u32>().ok()) else {
        return;
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ORPHAN_CHECK) => {}
                _ = shutdown.wait() => return,
            }
            if std::os::unix::process::parent_id() != supervisor {
                tracing::warn!(supervisor, "the supervising reservoir up is gone; stopping");
                shutdown.trigger();
                return;
            }
        }
    });
}

/// What `endpoints.json` lists of one worker.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkerEndpoint {
    pub id: String,
    pub addr: String,
    pub pid: Option<u32>,
}

/// The live view of every worker, shared with whoever writes `endpoints.json`.
pub type WorkerTable = Arc<Mutex<Vec<WorkerEndpoint>>>;

/// A free loopback port for a worker, chosen once so restarts keep the address.
pub fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// Ids and addresses for `count` workers, chosen once so a restarted worker
/// comes back at the same address.
pub fn plan(count: usize) -> anyhow::Result<Vec<WorkerEndpoint>> {
    (0..count)
        .map(|i| Ok(WorkerEndpoint { id: format!("worker-{i}"), addr: free_port()?.to_string(), pid: None }))
        .collect()
}

/// What every worker child is told besides its own address and id.
#[derive(Clone)]
pub struct ChildEnv {
    pub scheduler_url: String,
    /// The run's internal token (the children's servers require it, and
    /// they send it when they register).
    pub internal_token: Option<String>,
}

/// Starts the planned workers under supervision; `on_change` runs whenever a
/// pid changes.
pub fn spawn_all(
    planned: Vec<WorkerEndpoint>,
    child_env: &ChildEnv,
    shutdown: &Shutdown,
    on_change: impl Fn(&[WorkerEndpoint]) + Send + Sync + 'static,
) -> anyhow::Result<(WorkerTable, Vec<tokio::task::JoinHandle<()>>)> {
    let exe: PathBuf = std::env::current_exe()?;
    let count = planned.len();
    let table: WorkerTable = Arc::new(Mutex::new(planned));
    let on_change = Arc::new(on_change);
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let (table, on_change, shutdown, exe) = (table.clone(), on_change.clone(), shutdown.clone(), exe.clone());
        let child_env = child_env.clone();
        tasks.push(tokio::spawn(async move {
            supervise(index, exe, &child_env, table, on_change.as_ref(), shutdown).await;
        }));
    }
    Ok((table, tasks))
}

fn set_pid(table: &WorkerTable, index: usize, pid: Option<u32>, on_change: &(impl Fn(&[WorkerEndpoint]) + ?Sized)) {
    if let Ok(mut workers) = table.lock() {
        if let Some(w) = workers.get_mut(index) {
            w.pid = pid;
        }
        on_change(&workers);
    }
}

async fn supervise(
    index: usize,
    exe: PathBuf,
    child_env: &ChildEnv,
    table: WorkerTable,
    on_change: &(impl Fn(&[WorkerEndpoint]) + ?Sized),
    shutdown: Shutdown,
) {
    let Some((id, addr)) = table.lock().ok().and_then(|w| w.get(index).map(|w| (w.id.clone(), w.addr.clone()))) else {
        return;
    };
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_triggered() {
        let started = Instant::now();
        let mut command = Command::new(&exe);
        command
            .args(["serve", "worker"])
            .env("RESERVOIR__WORKER__LISTEN", &addr)
            .env("RESERVOIR__WORKER__ID", &id)
            .env("RESERVOIR__WORKER__SCHEDULER_URL", &child_env.scheduler_url)
            .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
            .kill_on_drop(true);
        if let Some(token) = &child_env.internal_token {
            command.env("RESERVOIR__INTERNAL__TOKEN", token);
        }
        let child = command.spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(worker = %id, error = %e, "cannot start worker");
                sleep_or_stop(backoff, &shutdown).await;
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
                continue;
            }
        };
        set_pid(&table, index, child.id(), on_change);
        tracing::info!(worker = %id, %addr, pid = child.id(), "worker started");
        tokio::select! {
            status = child.wait() => {
                set_pid(&table, index, None, on_change);
                tracing::warn!(worker = %id, ?status, "worker exited; starting it again");
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = Duration::from_millis(250);
                }
                sleep_or_stop(backoff, &shutdown).await;
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
            _ = shutdown.wait() => {
                stop(&mut child, &id).await;
                set_pid(&table, index, None, on_change);
            }
        }
    }
}

async fn sleep_or_stop(pause: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.wait() => {}
    }
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop(child: &mut Child, id: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => tracing::info!(worker = %id, "worker stopped"),
        Err(_) => {
            tracing::warn!(worker = %id, "worker did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}
