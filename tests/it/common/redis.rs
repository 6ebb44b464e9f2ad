//! A real Redis for the tests: `redis-server` on a free loopback port, its data in a temporary directory,
//! killed when dropped. scripts/test.sh installs Debian's redis-server when it is missing.

// Test helpers: a failed set-up step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A port that was free a moment ago. redis-server cannot be handed a bound socket, so another process may take
/// the port before it binds: `start` then sees the server exit and tries another port.
fn candidate_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        for _ in 0..10 {
            let mut redis = Redis {
                port: candidate_port(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
            };
            if redis.try_start() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 10 ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port, with no data.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start again on its port"
        );
    }

    /// Starts the server; false when it exited instead of listening (its port was taken meanwhile).
    fn try_start(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/test.sh, which installs it (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Ours once it answers PING: a process that took the port meanwhile would not, and ours would exit.
        while !answers_ping(self.port) {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        self.child = Some(child);
        true
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = [0u8; 7];
    tcp.write_all(b"PING\r\n").is_ok()
        && tcp.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
