//! What the tests that run the real `reservoir` binary share.
#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The server URL with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{name}")
}

/// A running `reservoir` process that is stopped however the test ends: a
/// failing assertion must not leave the platform (and its workers) running.
pub struct Running(pub Child);

impl Running {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then waits (bounded) for the exit; answers whether it exited cleanly.
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) && self.stop(Duration::from_secs(15)).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The real model, fetched by `scripts/fetch-model` (`scripts/test` does).
pub fn model_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.reservoir/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `reservoir up` kept apart from anything else on the machine: its own
/// database, state folder and free ports.
pub fn reservoir_up(database_url: &str, state: &std::path::Path, workers: usize, calibrate: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reservoir"));
    command
        .args(["up", "--workers", &workers.to_string()])
        .env("DATABASE_URL", database_url)
        .env("RESERVOIR__GATEWAY__LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__CONTRACTS__LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__SCHEDULER__LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__SCHEDULER__METRICS_LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__SCHEDULER__SPOOL_DIR", state.join("spool"))
        .env("RESERVOIR__METERING__LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__SLA__LISTEN", "127.0.0.1:0")
        .env("RESERVOIR__STATE_DIR", state)
        .env("RESERVOIR__AUTH__HS256_SECRET_FILE", state.join("jwt-secret"))
        .env("RESERVOIR__CONTRACTS__DEFAULT_MODEL__CALIBRATE", calibrate.to_string())
        .env("RESERVOIR__WORKER__MODEL_PATH", model_path())
        .env("RESERVOIR_CONFIG", state.join("none.toml"));
    command
}

/// Starts `reservoir up` (without calibration) and answers it with the
/// tenant token its banner prints; the rest of its output is drained.
pub fn spawn_up(database_url: &str, state: &std::path::Path, workers: usize) -> (Running, String) {
    use std::io::{BufRead, BufReader};
    let mut up = Running(
        reservoir_up(database_url, state, workers, false)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn reservoir up"),
    );
    let stdout = up.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let token = lines
        .by_ref()
        .find_map(|l| l.trim().strip_prefix("export TOKEN=").map(str::to_owned))
        .expect("a tenant token in the banner");
    std::thread::spawn(move || lines.for_each(drop));
    (up, token)
}

/// `.reservoir/endpoints.json` of a running `reservoir up`.
pub fn endpoints(state: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("endpoints.json")).expect("endpoints.json")).expect("json")
}

/// A token minted by the binary with the state folder's secret (as an
/// operator would: `reservoir token`).
pub fn mint(state: &std::path::Path, subject: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(["token", "--tenant", subject, "--role", role])
        .env("RESERVOIR__STATE_DIR", state)
        .env("RESERVOIR__AUTH__HS256_SECRET_FILE", state.join("jwt-secret"))
        .env("RESERVOIR_CONFIG", state.join("none.toml"))
        .output()
        .expect("reservoir token");
    assert!(out.status.success(), "reservoir token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("a token line").trim().to_owned()
}
