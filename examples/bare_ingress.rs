//! The ceiling for `scripts/bench`: actix-web reading the request body and answering 200, with the
//! relay's worker settings and nothing else (no auth, no JSON check, no Kafka).
//!
//! Run: `cargo run --release --example bare_ingress -- [PORT] [WORKERS]`.

use actix_web::{web, App, HttpResponse, HttpServer};

async fn receive(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            "{{\"bytes\":{},\"status\":\"accepted\"}}",
            body.len()
        ))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);
    let workers: usize = args
        .next()
        .and_then(|workers| workers.parse().ok())
        .unwrap_or(1);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .route("/hooks/{source}/{event}", web::post().to(receive))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}
