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
