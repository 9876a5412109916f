//! There is no container engine here, so this test checks what can be
//! checked without one: every service, command, setting and port named in
//! docker-compose.yml exists in the code, the worker service can be scaled
//! out, and the Dockerfile builds the binary the services run.

use std::path::PathBuf;
use std::process::Command;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml");
    let mut value: Value = serde_norway::from_str(&text).expect("valid YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Runs the real binary with `args` plus `--help`: clap refuses unknown
/// subcommands and values, so success means the command exists.
fn command_exists(args: &[String]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(args.iter().filter(|a| !a.starts_with("http")))
        .arg("--help")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether `RESERVOIR__A__B` names a real configuration key.
fn config_key_exists(key: &str) -> bool {
    let config = serde_json::to_value(reservoir_platform::Config::default()).expect("config as JSON");
    let Some(path) = key.strip_prefix("RESERVOIR__") else { return key == "DATABASE_URL" };
    let mut node = &config;
    for part in path.split("__") {
        match node.get(part.to_lowercase()) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

#[test]
fn every_compose_service_exists_in_the_code() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<String> = services.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect();
    let mut reservoir_services = 0;
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        for dependency in service["depends_on"].as_mapping().map(|m| m.keys().collect::<Vec<_>>()).unwrap_or_default() {
            assert!(
                names.iter().any(|n| Some(n.as_str()) == dependency.as_str()),
                "{name} depends on unknown {dependency:?}"
            );
        }
        if service["image"].as_str() != Some("reservoir:latest") {
            continue;
        }
        reservoir_services += 1;
        let command = strings(&service["command"]);
        assert!(command_exists(&command), "{name}: `reservoir {}` does not exist", command.join(" "));
        if command.first().map(String::as_str) == Some("serve") {
            assert_eq!(command.get(1).map(String::as_str), Some(name), "service {name} serves what it is named after");
        }
        let health = strings(&service["healthcheck"]["test"]);
        if let Some(probe) = health.iter().position(|a| a == "reservoir") {
            assert!(command_exists(&health[probe + 1..]), "{name}: health check command does not exist");
        }
        let environment = service["environment"].as_mapping().expect("environment");
        let mut listen_port = None;
        let mut listen_ports = Vec::new();
        for (key, value) in environment {
            let key = key.as_str().expect("key");
            assert!(config_key_exists(key), "{name}: {key} is not a configuration key");
            if key.ends_with("LISTEN") {
                let addr: std::net::SocketAddr = value.as_str().expect("listen").parse().expect("host:port");
                listen_ports.push(addr.port());
                if key.ends_with("__LISTEN") {
                    listen_port = Some(addr.port());
                }
            }
        }
        for port in strings(&service["ports"]) {
            let container_port: u16 = port.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
            assert!(listen_ports.contains(&container_port), "{name} publishes {port} but listens on {listen_ports:?}");
            // Only the gateway authenticates its callers; internal gRPC and
            // metrics stay on the host's loopback.
            if name != "gateway" {
                assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port} beyond the host's loopback");
            }
        }
        for health_arg in &health {
            if let Some(rest) = health_arg.strip_prefix("http://127.0.0.1:") {
                let port: u16 = rest.split('/').next().and_then(|p| p.parse().ok()).expect("health port");
                assert_eq!(Some(port), listen_port, "{name}: health check on the wrong port");
            }
        }
    }
    assert!(reservoir_services >= 3, "migrate, contracts and gateway run from the reservoir image");
    for required in ["postgres", "contracts", "gateway"] {
        assert!(names.iter().any(|n| n == required), "compose lacks {required}");
    }
}

/// `docker compose up --scale worker=3` must give three workers: nothing a
/// replica would share with another (a container name, a host port, a
/// worker id or an advertised address) may be fixed in the service.
#[test]
fn the_worker_service_scales_to_distinct_workers() {
    let compose = compose();
    let worker = &compose["services"]["worker"];
    assert!(worker["container_name"].is_null(), "a fixed container name forbids replicas");
    assert!(strings(&worker["ports"]).is_empty(), "replicas would collide on a published host port");
    let environment = worker["environment"].as_mapping().expect("environment");
    for fixed in ["RESERVOIR__WORKER__ID", "RESERVOIR__WORKER__ADVERTISE_URL"] {
        assert!(!environment.keys().any(|k| k.as_str() == Some(fixed)), "{fixed} would be the same in every replica");
    }
    let listen = environment
        .iter()
        .find(|(k, _)| k.as_str() == Some("RESERVOIR__WORKER__LISTEN"))
        .and_then(|(_, v)| v.as_str())
        .expect("the worker's listen address");
    let listen: std::net::SocketAddr = listen.parse().expect("host:port");
    assert!(listen.ip().is_unspecified(), "each replica advertises its own address only when it listens on all");
    assert!(
        environment.keys().any(|k| k.as_str() == Some("RESERVOIR__WORKER__SCHEDULER_URL")),
        "replicas register themselves"
    );
}

#[test]
fn the_dockerfile_builds_the_binary_the_services_run() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked -p reservoir-platform"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["reservoir"]"#));
    assert_eq!(dockerfile.matches("FROM ").count(), 2, "a multi-stage build");
}
