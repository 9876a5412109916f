//! The private PostgreSQL clusters the project starts itself (`scripts/pg`
//! when DATABASE_URL is unset or unreachable, and the test helper
//! `reservoir_tests::cluster`) are durable and closed: `fsync` and
//! `full_page_writes` on, and no connection without the password.

use std::path::Path;
use std::process::Command;

use reservoir_tests::cluster::Cluster;
use sqlx::{Connection, PgConnection};

/// Set in the child that `scripts/pg` runs: the test checks the database it
/// was given instead of starting one.
const CHILD: &str = "RESERVOIR_PRIVATE_CLUSTER_CHILD";

/// Checks the cluster at `url` (password included); `without_password` is
/// the same address and user with no password.
async fn assert_durable_and_closed(url: &str, without_password: &str) {
    assert_ne!(url, without_password, "the URL carries a password");
    let mut connection = PgConnection::connect(url).await.expect("connect with the password");
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&mut connection).await.expect("SHOW");
    assert_eq!(fsync, "on");
    let full_page_writes: String =
        sqlx::query_scalar("SHOW full_page_writes").fetch_one(&mut connection).await.expect("SHOW");
    assert_eq!(full_page_writes, "on");
    connection.close().await.expect("close");

    let refused = PgConnection::connect(without_password).await.expect_err("no connection without the password");
    // Refused by authentication (not, say, a server that is gone): 28P01
    // invalid_password, or the client's own "no password supplied".
    let text = refused.to_string();
    let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert!(code.as_deref() == Some("28P01") || text.contains("password"), "refused for another reason: {text}");
}

fn without_password(url: &str) -> String {
    // postgres://USER:PASSWORD@HOST:PORT/DB -> postgres://USER@HOST:PORT/DB
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, address) = rest.split_once('@').expect("credentials in the URL");
    let user = credentials.split(':').next().unwrap_or(credentials);
    format!("{scheme}://{user}@{address}")
}

#[tokio::test]
async fn the_test_cluster_is_durable_and_needs_its_password() {
    let cluster = Cluster::start();
    assert_durable_and_closed(&cluster.url(), &cluster.url_without_password()).await;
}

/// `scripts/pg` is told of a database that cannot be reached, so it starts
/// (or shares) the checkout's private cluster and runs this same test in
/// child mode against it.
#[tokio::test]
async fn the_private_cluster_of_scripts_pg_is_durable_and_needs_its_password() {
    if std::env::var_os(CHILD).is_some() {
        let url = std::env::var("DATABASE_URL").expect("scripts/pg sets DATABASE_URL");
        assert_durable_and_closed(&url, &without_password(&url)).await;
        println!("private cluster checked");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let test = "the_private_cluster_of_scripts_pg_is_durable_and_needs_its_password";
    let output = Command::new(root.join("scripts/pg"))
        .args(["run", "--"])
        .arg(std::env::current_exe().expect("this test binary"))
        .args([test, "--exact", "--nocapture"])
        .env(CHILD, "1")
        // Port 1 answers nothing: scripts/pg falls back to its private cluster.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .env_remove("PGPASSWORD")
        .current_dir(&root)
        .output()
        .expect("run scripts/pg");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scripts/pg run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("private cluster checked"), "the child did not run its checks:\n{stdout}\n{stderr}");
}
