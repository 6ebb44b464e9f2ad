//! A real Redis for the tests: `redis-server` on a unix socket, its data in a temporary directory,
//! killed when dropped. scripts/test.sh installs Debian's redis-server when it is missing.

// Test helpers: a failed set-up step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    os::unix::net::UnixStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Listens on a unix socket in its own directory, never on a TCP port: nothing to pick, release and rebind.
pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.restart();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts (again) on the same socket, with no data.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/test.sh, which installs it (apt-get install redis-server)");
        // A hang guard only: the server is awaited for as long as a slow machine needs.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers_ping(&self.socket()) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "redis-server exited at start"
            );
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL: no goodbye to clients), and its data with it: `restart` starts empty.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
    }

    /// Writes a snapshot, then kills the server: `restart` loads the snapshot, as a Redis with persistence
    /// comes back after an outage.
    pub fn kill_keeping_data(&mut self) {
        assert!(command(&self.socket(), b"SAVE\r\n", b"+OK\r\n"), "SAVE");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Redis {
    /// The fleet's spend today over every key, as the gateways booked it in Redis.
    pub async fn spent_today(&self) -> f64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let names: Vec<String> = redis::cmd("KEYS")
            .arg("*:spend:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut total = 0.0;
        for name in names.iter().filter(|n| !n.contains(":spend:m")) {
            let v: String = redis::cmd("GET")
                .arg(name)
                .query_async(&mut conn)
                .await
                .unwrap();
            total += v.parse::<f64>().unwrap();
        }
        total
    }
}

fn answers_ping(socket: &std::path::Path) -> bool {
    command(socket, b"PING\r\n", b"+PONG\r\n")
}

/// Sends one inline command and says whether the reply is `want`.
fn command(socket: &std::path::Path, line: &[u8], want: &[u8]) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    // A hang guard only.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reply = vec![0u8; want.len()];
    conn.write_all(line).is_ok() && conn.read_exact(&mut reply).is_ok() && reply == want
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
