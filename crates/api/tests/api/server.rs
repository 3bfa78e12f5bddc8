//! `server()` over a real socket.

use std::io::{Read, Write};
use std::sync::Arc;

use provisioner_api::{ApiState, JwtVerifier, server};

use crate::helpers::*;

#[actix_web::test]
async fn the_server_answers_over_tcp_with_a_request_id() {
    // Arrange
    let core = provisioner_core::testing::service();
    let verifier = Arc::new(JwtVerifier::new(&hs_config()).expect("verifier"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let settings = provisioner_api::HttpSettings {
        workers: 1,
        shutdown_timeout_secs: 1,
        ..settings()
    };
    let srv = server(
        listener,
        ApiState {
            service: core.service.clone(),
            verifier,
        },
        settings,
    )
    .expect("server");
    let handle = srv.handle();
    actix_web::rt::spawn(srv);
    // Act
    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-request-id: tcp-1\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .await
    .expect("client");
    handle.stop(true).await;
    // Assert
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id: tcp-1"),
        "{answer}"
    );
    assert!(answer.ends_with("{\"status\":\"ok\"}"), "{answer}");
}
