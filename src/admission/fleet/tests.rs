//! The Lua scripts and the key names, against a real `redis-server` (scripts/test.sh installs it): what each
//! verdict records, and what a refusal leaves behind (nothing).

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use redis::{AsyncCommands, Script};

use super::{ADMIT, CANCEL, RECONCILE};

/// A redis-server on a unix socket in its own directory (no TCP port to race for), killed when dropped.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pong(socket: &Path) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = [0u8; 7];
    conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server not found: run scripts/test.sh, which installs it");
    // A hang guard only, never a speed bound.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pong(&socket) {
        assert!(child.try_wait().unwrap().is_none(), "redis-server exited");
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, dir }
}

const KEYS: [&str; 6] = [
    "t:{k}:req",
    "t:{k}:tok",
    "t:{k}:tok:amount",
    "t:{k}:tok:total",
    "t:{k}:spend:1",
    "t:{k}:spend:m1",
];

/// ADMIT with rpm, tpm, tokens, reservation id and budget (-1: none), over a one-minute window: its verdict and
/// number.
async fn admit(
    c: &mut redis::aio::MultiplexedConnection,
    args: (u32, u64, u64, &str, f64),
) -> (String, String) {
    let mut reply = admit_reply(c, args).await.into_iter();
    (reply.next().unwrap(), reply.next().unwrap())
}

/// ADMIT's whole reply.
async fn admit_reply(
    c: &mut redis::aio::MultiplexedConnection,
    (rpm, tpm, tokens, id, budget): (u32, u64, u64, &str, f64),
) -> Vec<String> {
    let script = Script::new(ADMIT);
    let mut call = script.prepare_invoke();
    for k in KEYS {
        call.key(k);
    }
    call.arg(rpm)
        .arg(tpm)
        .arg(tokens)
        .arg(id)
        .arg(budget)
        .arg(60_000u64);
    call.invoke_async(c).await.unwrap()
}

#[tokio::test]
async fn the_scripts_admit_refuse_and_reconcile_exactly() {
    let server = server();
    let client =
        redis::Client::open(format!("redis+unix://{}", server.socket().display())).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();

    // rpm 2: two admitted, the third refused with a wait within the minute, and not recorded.
    for id in ["a", "b"] {
        assert_eq!(admit(&mut c, (2, 0, 0, id, -1.0)).await.0, "ok");
    }
    let (verdict, wait) = admit(&mut c, (2, 0, 0, "c", -1.0)).await;
    assert_eq!(verdict, "rpm");
    let wait: i64 = wait.parse().unwrap();
    assert!((0..=60_000).contains(&wait), "{wait}");
    let n: i64 = c.zcard(KEYS[0]).await.unwrap();
    assert_eq!(n, 2, "a refusal records nothing");

    // tpm 1000: 600 reserved; another 600 does not fit (and is not recorded); 1001 never fits.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    assert_eq!(admit(&mut c, (0, 1000, 600, "r1", -1.0)).await.0, "ok");
    assert_eq!(admit(&mut c, (0, 1000, 600, "r2", -1.0)).await.0, "tpm");
    assert_eq!(
        admit(&mut c, (0, 1000, 1001, "r3", -1.0)).await.0,
        "tpm_never"
    );
    let total: i64 = c.get(KEYS[3]).await.unwrap();
    assert_eq!(total, 600);

    // RECONCILE: the call used 150, so 600 more fit now; an unknown reservation changes nothing.
    let reconcile = Script::new(RECONCILE);
    let mut call = reconcile.prepare_invoke();
    call.key(KEYS[2]).key(KEYS[3]).arg("r1").arg(150u64);
    let changed: i64 = call.invoke_async(&mut c).await.unwrap();
    assert_eq!(changed, 1);
    assert_eq!(admit(&mut c, (0, 1000, 600, "r4", -1.0)).await.0, "ok");
    let mut call = reconcile.prepare_invoke();
    call.key(KEYS[2]).key(KEYS[3]).arg("gone").arg(999u64);
    let changed: i64 = call.invoke_async(&mut c).await.unwrap();
    assert_eq!(changed, 0);
    let total: i64 = c.get(KEYS[3]).await.unwrap();
    assert_eq!(total, 750);

    // A spent budget refuses before anything is recorded, and says what was spent.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let _: f64 = c.incr(KEYS[4], 2.5f64).await.unwrap();
    assert_eq!(
        admit(&mut c, (5, 1000, 10, "x", 2.0)).await,
        ("budget".to_owned(), "2.5".to_owned())
    );
    let n: i64 = c.zcard(KEYS[0]).await.unwrap();
    assert_eq!(n, 0);
    // Spent exactly: refused too.
    assert_eq!(admit(&mut c, (5, 1000, 10, "x", 2.5)).await.0, "budget");
    // Admitted, it says what the fleet has spent today and this month, for the replica to fall back on, and
    // where the key stands: 1 request and 10 tokens in the window, each leaving it in a minute.
    assert_eq!(
        admit_reply(&mut c, (5, 1000, 10, "y", 3.0)).await,
        ["ok", "2.5", "0", "1", "60000", "10", "60000"]
    );

    // Windows hold for limits set later: three calls under a budget alone are still counted by an rpm of 4
    // and a tpm of 100 given afterwards.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    for id in ["w1", "w2", "w3"] {
        assert_eq!(admit(&mut c, (0, 0, 30, id, 10.0)).await.0, "ok");
    }
    assert_eq!(admit(&mut c, (4, 100, 10, "w4", 10.0)).await.0, "ok");
    assert_eq!(admit(&mut c, (4, 0, 0, "w5", 10.0)).await.0, "rpm");
    assert_eq!(admit(&mut c, (0, 100, 1, "w6", 10.0)).await.0, "tpm");

    // A monthly budget (ARGV[7]) is checked against this month's spend (KEYS[6]).
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let _: f64 = c.incr(KEYS[5], 3.5f64).await.unwrap();
    let script = Script::new(ADMIT);
    let month = |budget: f64| {
        let mut call = script.prepare_invoke();
        for k in KEYS {
            call.key(k);
        }
        call.arg(0)
            .arg(0)
            .arg(0)
            .arg("m")
            .arg(-1.0)
            .arg(60_000u64)
            .arg(budget);
        call
    };
    let (verdict, spent): (String, String) = month(3.0).invoke_async(&mut c).await.unwrap();
    assert_eq!((verdict.as_str(), spent.as_str()), ("budget_month", "3.5"));
    let reply: Vec<String> = month(4.0).invoke_async(&mut c).await.unwrap();
    assert_eq!(reply[..3], ["ok", "0", "3.5"]);
}

#[test]
fn a_keys_names_share_one_cluster_slot_and_the_prefix() {
    let cfg = crate::config::SharedConfig {
        redis: crate::config::RedisTarget::Node("redis://127.0.0.1:1/0".into()),
        on_failure: crate::config::OnFailure::Open,
        timeout: Duration::from_secs(1),
        prefix: "fleet".into(),
    };
    let shared = super::Shared::new(&cfg, prometheus::IntGauge::new("g", "g").unwrap()).unwrap();
    let keys = shared.keys("tester");
    for k in &keys {
        assert!(k.starts_with("fleet:{tester}:"), "{k}");
    }
    assert_eq!(
        &keys[..4],
        [
            "fleet:{tester}:req",
            "fleet:{tester}:tok",
            "fleet:{tester}:tok:amount",
            "fleet:{tester}:tok:total"
        ]
    );
    assert!(keys[4].starts_with("fleet:{tester}:spend:"));
}

#[tokio::test]
async fn cancel_takes_a_request_and_its_tokens_back() {
    let server = server();
    let client =
        redis::Client::open(format!("redis+unix://{}", server.socket().display())).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(admit(&mut c, (2, 1000, 300, "kept", -1.0)).await.0, "ok");
    assert_eq!(admit(&mut c, (2, 1000, 400, "gone", -1.0)).await.0, "ok");
    let cancel = Script::new(CANCEL);
    let mut call = cancel.prepare_invoke();
    call.key(KEYS[0])
        .key(KEYS[1])
        .key(KEYS[2])
        .key(KEYS[3])
        .arg("gone");
    let removed: i64 = call.invoke_async(&mut c).await.unwrap();
    assert_eq!(removed, 1);
    let (n, total): (i64, i64) = (
        c.zcard(KEYS[0]).await.unwrap(),
        c.get(KEYS[3]).await.unwrap(),
    );
    assert_eq!((n, total), (1, 300));
    // The slot it held is free again; cancelling twice changes nothing.
    assert_eq!(admit(&mut c, (2, 1000, 400, "next", -1.0)).await.0, "ok");
    let removed: i64 = call.invoke_async(&mut c).await.unwrap();
    assert_eq!(removed, 0);
    let total: i64 = c.get(KEYS[3]).await.unwrap();
    assert_eq!(total, 700);
}
