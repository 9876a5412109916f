//! `reservoir up` as a user runs it: the real binary against a database of
//! its own; it writes the endpoints file, prints a token and a curl that work,
//! and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Running, reservoir_up, with_database};

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL: run the tests with ./scripts/test")
}

#[tokio::test]
async fn up_serves_prints_a_working_example_and_stops_on_sigterm() {
    let admin_url = database_url();
    let name = format!("up_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    let state = std::env::temp_dir().join(&name);

    let mut child = Running(
        reservoir_up(&with_database(&admin_url, &name), &state, 2, true)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn reservoir up"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let mut banner = Vec::new();
    // The banner comes after calibration, whose time follows the machine's
    // speed: on a 2-core machine half as fast as the usual one, with the
    // other test of this file starting its own platform beside it, it took
    // over a minute. A hung start still fails, only later.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !banner.iter().any(|l: &String| l.contains("Press Ctrl-C")) {
        let line = lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("banner in time");
        banner.push(line);
    }
    let token = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("export TOKEN="))
        .expect("a tenant token in the banner")
        .to_owned();
    assert!(banner.iter().any(|l| l.contains("curl -s -X POST")), "a curl example in the banner");
    let pool_line = banner.iter().find(|l| l.trim_start().starts_with("pool")).expect("a pool line in the banner");
    assert!(pool_line.contains("measured on start"), "the pool is calibrated on start: {pool_line}");

    let read_endpoints = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(state.join("endpoints.json")).expect("endpoints.json"))
            .expect("json")
    };
    let endpoints = read_endpoints();
    let gateway = endpoints["gateway"].as_str().expect("gateway url").to_owned();
    assert!(endpoints["contracts"].as_str().is_some_and(|c| c.starts_with("http://127.0.0.1:")));

    // The banner's example, as a user would paste it.
    let response = reqwest::Client::new()
        .post(format!("{gateway}/v1/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "first-try")
        .json(&serde_json::json!({"model": "smollm2-135m-instruct", "rate": 50, "tier": "standard", "term": "hourly"}))
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status().as_u16(), 201);
    let ready = reqwest::get(format!("{gateway}/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    // Two workers, each its own process; one killed is started again.
    let worker_pids = |e: &serde_json::Value| -> Vec<Option<u64>> {
        e["workers"].as_array().expect("workers").iter().map(|w| w["pid"].as_u64()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids = loop {
        let pids = worker_pids(&read_endpoints());
        if pids.len() == 2 && pids.iter().all(Option::is_some) {
            break pids.into_iter().flatten().collect::<Vec<u64>>();
        }
        assert!(Instant::now() < deadline, "workers did not start: {pids:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(Command::new("kill").args(["-KILL", &pids[0].to_string()]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        let now = worker_pids(&read_endpoints());
        if let Some(Some(new)) = now.first()
            && *new != pids[0]
        {
            break *new;
        }
        assert!(Instant::now() < deadline, "the killed worker was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(worker_pids(&read_endpoints())[1], Some(pids[1]), "the other worker was left alone");

    let status = child.stop(Duration::from_secs(20)).expect("reservoir up stops within 20 s of SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("Reservoir stopped")), "{rest:?}");
    for worker in [restarted, pids[1]] {
        let alive = std::path::Path::new(&format!("/proc/{worker}")).exists();
        assert!(!alive, "worker {worker} outlived reservoir up");
    }

    let _ = std::fs::remove_dir_all(&state);
    // The child's connections are closed: the database can go.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop db");
}

/// A process that is gone or a zombie (its parent, init, has not reaped it yet).
fn exited(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn workers_do_not_outlive_a_killed_up() {
    let admin_url = database_url();
    let name = format!("orphan_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    let state = std::env::temp_dir().join(&name);
    let mut up = Running(
        reservoir_up(&with_database(&admin_url, &name), &state, 1, false)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn reservoir up"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let pid = std::fs::read_to_string(state.join("endpoints.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|e| e["workers"][0]["pid"].as_u64());
        if let Some(pid) = pid {
            break pid;
        }
        assert!(Instant::now() < deadline, "the worker did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = up.0.kill();
    let _ = up.0.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exited(worker) {
        assert!(Instant::now() < deadline, "worker {worker} outlived the killed reservoir up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&state);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .expect("drop db");
}
