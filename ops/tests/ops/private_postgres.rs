//! `dev`'s private PostgreSQL, for real: the installed server's `initdb` and
//! `postgres` (run as the `postgres` user when the test runs as root). With
//! the server programs missing, the test fails with what to install.

use ops::dev::postgres::PrivateServer;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn private_server_answers_queries_and_leaves_nothing_once_dropped() {
    let server = match PrivateServer::start().await {
        Ok(server) => server,
        Err(e) => panic!("{}", chain(&e)),
    };
    let port = server.port();
    let dir = server.dir().to_owned();
    assert!(
        dir.join("data").join("PG_VERSION").is_file(),
        "no cluster in {}",
        dir.display()
    );

    let mut connection = PgConnection::connect(&server.url("postgres"))
        .await
        .expect("trust authentication on 127.0.0.1 lets the superuser in");
    let (answer, user): (i32, String) = sqlx::query_as("SELECT 41 + 1, current_user::text")
        .fetch_one(&mut connection)
        .await
        .expect("a query");
    assert_eq!((answer, user.as_str()), (42, "postgres"));

    // The connection stays open: a fast shutdown does not wait for it.
    drop(server);

    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after the drop"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(
        sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .is_err(),
        "the open session outlived the server"
    );
}

#[tokio::test]
async fn a_panic_while_it_runs_still_stops_it_and_deletes_its_directory() {
    let (started, running) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        match PrivateServer::start().await {
            Ok(server) => {
                let _ = started.send(Ok((server.port(), server.dir().to_owned())));
                panic!("a bug while the private server runs");
            }
            Err(e) => {
                let _ = started.send(Err(chain(&e)));
            }
        }
    });
    let outcome = task.await;
    let (port, dir) = match running.await.expect("the task reports its start") {
        Ok(running) => running,
        Err(e) => panic!("{e}"),
    };
    assert!(outcome.is_err_and(|e| e.is_panic()));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after the panic"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// The error and its causes, one per line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\ncaused by: {cause}"));
        source = cause.source();
    }
    text
}
