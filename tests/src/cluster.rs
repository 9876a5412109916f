//! A private PostgreSQL cluster a test can stop and start again: outages are
//! real (the server process is gone), not simulated. Debian's binaries
//! (`/usr/lib/postgresql/<version>/bin`, as `scripts/pg` uses); run as the
//! `postgres` user when the tests run as root, since `initdb` refuses root.
//! Set up as `scripts/pg` sets up its cluster: `fsync` and `full_page_writes`
//! on (an outage test must see what a real server does across a stop), and
//! a password, made per cluster, for every connection.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql (scripts/pg installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// 24 random bytes from the kernel, in hex.
fn random_password() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Cluster {
    /// Initializes and starts a cluster in a temporary folder on a free port.
    pub fn start() -> Cluster {
        let as_postgres = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        let dir = tempfile::Builder::new().prefix("reservoir-cluster-").tempdir().expect("temporary folder");
        let data = dir.path().join("data");
        let password = random_password();
        // initdb reads the password from a file; it is removed once read.
        let pwfile = dir.path().join("initdb-password");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write the password file");
        let cluster = Cluster { bin: pg_bin(), data, port: free_port(), password, as_postgres, _dir: dir };
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(cluster._dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster folder to postgres");
        }
        let data = cluster.data.to_string_lossy().to_string();
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        let init = ["-D", &data, "-U", "postgres", "--auth=scram-sha-256", &pwfile_arg, "-E", "UTF8", "--no-locale"];
        cluster.run("initdb", &init);
        std::fs::remove_file(&pwfile).expect("remove the password file");
        cluster.resume();
        cluster
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.command(tool).args(args).stdin(Stdio::null()).output().expect("run a PostgreSQL tool");
        assert!(output.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// `postgres://` URL of the cluster's `postgres` database, password included.
    pub fn url(&self) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/postgres", self.password, self.port)
    }

    /// The same URL without the password (which the cluster must refuse).
    pub fn url_without_password(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.data.to_string_lossy().to_string()
    }

    fn log(&self) -> String {
        self.data.parent().unwrap_or(Path::new("/tmp")).join("server.log").to_string_lossy().to_string()
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts the server again on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.data.parent().unwrap_or(Path::new("/tmp")).display()
        );
        self.run("pg_ctl", &["-D", &self.data(), "-l", &self.log(), "-w", "-t", "60", "-o", &options, "start"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
