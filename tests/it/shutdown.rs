//! Graceful shutdown: stop accepting, let calls in flight finish within the grace period, then end the rest
//! with UNAVAILABLE.

use std::time::Duration;

use crate::common::*;
use tonic::Code;

fn mock_config(grace: &str, tokens_per_second: u32) -> aigw::config::Config {
    config(&mock_config_text(
        &format!("shutdown_grace = \"{grace}\""),
        tokens_per_second,
    ))
}

#[tokio::test]
async fn in_flight_streams_finish_during_the_grace_period() {
    let mut gw = Gateway::start(mock_config("30s", 40)).await; // ~25 tokens: well under a second
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(!stream.message().await.unwrap().unwrap().delta.is_empty());
    gw.shutdown();

    let mut complete = false;
    while let Some(chunk) = stream.message().await.expect("the stream finishes cleanly") {
        complete |= chunk.is_complete;
    }
    assert!(complete, "the stream in flight was completed");
    tokio::time::timeout(Duration::from_secs(20), &mut gw.task)
        .await
        .expect("the server stopped")
        .unwrap();
    // Stopped means stopped accepting.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}

#[tokio::test]
async fn streams_still_running_when_the_grace_period_ends_get_unavailable() {
    let mut gw = Gateway::start(mock_config("200ms", 1)).await; // one token a second: far past the grace
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(!stream.message().await.unwrap().unwrap().delta.is_empty());
    gw.shutdown();
    let (_, status) = read_to_error(&mut stream).await;
    assert_status(&status, Code::Unavailable, "shutting down");
    tokio::time::timeout(Duration::from_secs(20), &mut gw.task)
        .await
        .expect("the server stopped")
        .unwrap();
}

#[tokio::test]
async fn health_reports_not_serving_while_draining() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let mut gw = Gateway::start(mock_config("30s", 1000)).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gw.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = HealthCheckRequest {
        service: "holysheepai.AIService".into(),
    };
    let mut watch = HealthClient::new(channel)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    gw.shutdown();
    // The watch is a call in flight: it stays open through the drain and sees the change.
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    drop(watch);
    tokio::time::timeout(Duration::from_secs(20), &mut gw.task)
        .await
        .expect("the server stopped")
        .unwrap();
}
