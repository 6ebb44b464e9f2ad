//! The connection to the shared state, whichever Redis holds it: one node (a `ConnectionManager`, which
//! reconnects by itself), a Redis Cluster (redis-rs's cluster connection: it finds the nodes, follows slot
//! moves and reconnects), or the primary that Redis Sentinel names (asked again after any failure, so a
//! failover is followed). One type for all three, so every command and script is written once.
//!
//! Under a cluster, a script or pipeline may only touch keys of one slot: each limiter's keys share a hash tag,
//! and so do the fleet's own (API keys, usage books: `Shared::common`).

use std::time::Duration;

use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
    Cmd, Pipeline, RedisFuture, RedisResult, Value,
};

use crate::config::RedisTarget;

/// A live connection to the shared state.
#[derive(Clone)]
pub(crate) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
    /// To the primary Sentinel named; dropped on any failure so the next one asks the sentinels again.
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Whether a failed command should drop the connection for a new one (Sentinel: the primary may have moved).
    pub(crate) fn drop_on_failure(&self) -> bool {
        matches!(self, Conn::Sentinel(_))
    }
}

/// Connects to `target`, each command then bounded by `timeout`.
pub(crate) async fn connect(target: &RedisTarget, timeout: Duration) -> RedisResult<Conn> {
    let connect_timeout = timeout.max(Duration::from_millis(500));
    match target {
        RedisTarget::Node(url) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            let client = redis::Client::open(url.as_str())?;
            Ok(Conn::Node(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(nodes) => {
            let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password,
        } => {
            let node = password.as_ref().map(|password| {
                SentinelNodeConnectionInfo::default().set_redis_connection_info(
                    redis::RedisConnectionInfo::default().set_password(password),
                )
            });
            let mut client = SentinelClient::build(
                sentinels.iter().map(String::as_str).collect(),
                master.as_str(),
                node,
                SentinelServerType::Master,
            )?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(timeout));
            Ok(Conn::Sentinel(
                client.get_async_connection_with_config(&config).await?,
            ))
        }
    }
}
