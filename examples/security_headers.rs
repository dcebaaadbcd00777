//! Security headers and problem+json errors in an axum app of your own.
//!
//! ```sh
//! cargo run -p mcp-examples --example security_headers
//! curl -i http://127.0.0.1:3000/hello
//! curl -i http://127.0.0.1:3000/missing
//! ```

use axum::Router;
use axum::routing::get;
use mcp_core::Problem;
use mcp_headers::SecurityHeadersLayer;

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .fallback(|| async { Problem::not_found() })
        .layer(SecurityHeadersLayer::new())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = app();

    let addr = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_a_real_request_with_headers_and_problems() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app()).await });

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /missing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        assert!(response.contains("content-type: application/problem+json"));
        assert!(response.contains("x-frame-options: DENY"));
        assert!(response.contains(r#""code":"not_found""#));
    }
}
