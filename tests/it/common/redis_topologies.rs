//! Redis as fleets run it beyond one node, started by the tests: a Redis Cluster of three primaries, and a
//! primary with a replica watched by a Redis Sentinel that fails it over. Cluster and replication speak TCP, so
//! these take TCP ports on 127.0.0.1: each server is started on a candidate port and, if the port is taken (the
//! server exits), on the next — a port is never probed, released and bound again.

// Test helpers: a failed set-up step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

/// The next candidate port; spread by process so that concurrent test runs rarely meet.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn candidate() -> u16 {
    let _ = NEXT_PORT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
    if port >= 29_900 {
        NEXT_PORT.store(20_000, Ordering::SeqCst);
    }
    port
}

/// One `redis-server` on a TCP port of 127.0.0.1.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts `redis-server` with `args` (and `--port`, its files in `dir`) on the first candidate port it
    /// can take. `sentinel`: the arguments begin with a config file, run as a sentinel.
    fn start(dir: &Path, args: &[&str], sentinel: bool) -> Server {
        for _ in 0..50 {
            let port = candidate();
            let work = dir.join(port.to_string());
            std::fs::create_dir_all(&work).unwrap();
            let mut cmd = Command::new("redis-server");
            if sentinel {
                let conf = work.join("sentinel.conf");
                std::fs::write(&conf, args.join("\n").replace("$PORT", &port.to_string())).unwrap();
                cmd.arg(&conf).arg("--sentinel");
            } else {
                cmd.args(args);
            }
            let mut child = cmd
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
                .arg(&work)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server not found: run scripts/test.sh, which installs it");
            // A hang guard only.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if reply(port, "PING").starts_with("+PONG") {
                    return Server {
                        port,
                        child: Some(child),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // most likely the port is taken: the next one
                }
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for redis-server after 50 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to clients or replicas).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command's raw reply (inline protocol).
    pub fn reply(&self, line: &str) -> String {
        reply(self.port, line)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one inline command to 127.0.0.1:`port`; the reply as text, or "" when none came.
fn reply(port: u16, line: &str) -> String {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    if conn.write_all(format!("{line}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 64 * 1024];
    let n = conn.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits (a hang guard of 60 s) until `check` holds.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis Cluster of three primaries (no replicas), its slots spread by `redis-cli --cluster create`.
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                Server::start(
                    dir.path(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    false,
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli not found: run scripts/test.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        wait_until("the cluster did not come up", || {
            nodes
                .iter()
                .all(|n| n.reply("CLUSTER INFO").contains("cluster_state:ok"))
        });
        Cluster { nodes, _dir: dir }
    }

    /// The `cluster_nodes` setting's list.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Keys on each node (DBSIZE), in node order.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                let r = n.reply("DBSIZE");
                r.trim().trim_start_matches(':').parse().unwrap_or(0)
            })
            .collect()
    }
}

/// A primary, its replica, and a sentinel watching them (quorum 1, a primary down for 1 s is failed over).
pub struct Sentinel {
    pub primary: Server,
    pub replica: Server,
    pub sentinel: Server,
    _dir: tempfile::TempDir,
}

pub const SENTINEL_MASTER: &str = "aigw-primary";

impl Sentinel {
    pub fn start() -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let plain = ["--save", "", "--appendonly", "no"];
        let primary = Server::start(dir.path(), &plain, false);
        let replica_of = format!("127.0.0.1 {}", primary.port);
        let mut args = plain.to_vec();
        args.extend(["--replicaof", &replica_of]);
        let replica = Server::start(dir.path(), &args, false);
        wait_until("the replica did not catch up", || {
            replica
                .reply("INFO replication")
                .contains("master_link_status:up")
        });
        let monitor = format!(
            "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1",
            primary.port
        );
        let down = format!("sentinel down-after-milliseconds {SENTINEL_MASTER} 1000");
        let failover = format!("sentinel failover-timeout {SENTINEL_MASTER} 5000");
        let sentinel = Server::start(
            dir.path(),
            &["port $PORT", "bind 127.0.0.1", &monitor, &down, &failover],
            true,
        );
        Sentinel {
            primary,
            replica,
            sentinel,
            _dir: dir,
        }
    }

    /// The port the sentinel names as the primary's now.
    pub fn primary_port(&self) -> u16 {
        let reply = self.sentinel.reply(&format!(
            "SENTINEL get-master-addr-by-name {SENTINEL_MASTER}"
        ));
        reply
            .lines()
            .filter_map(|l| l.trim().parse::<u16>().ok())
            .next_back()
            .unwrap_or(0)
    }
}
