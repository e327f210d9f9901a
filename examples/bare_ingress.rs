//! The ceiling for `scripts/bench`: actix-web reading the request body and answering 200, with the
//! relay's worker settings and nothing else (no auth, no JSON check, no Kafka). Given a PEM
//! certificate and key it serves HTTPS with the relay's TLS stack (rustls, `ring` provider), the
//! ceiling of the relay with `server.tls`.
//!
//! Run: `cargo run --release --example bare_ingress -- [PORT] [WORKERS] [CERT.pem KEY.pem]`.

use actix_web::{web, App, HttpResponse, HttpServer};

/// The relay's allocator, so that the comparison is of the work, not of the allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

async fn receive(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            "{{\"bytes\":{},\"status\":\"accepted\"}}",
            body.len()
        ))
}

fn tls_config(cert: &str, key: &str) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |error: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error.to_string())
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| invalid(&error))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| invalid(&error))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|error| invalid(&error))
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
    let tls = match (args.next(), args.next()) {
        (Some(cert), Some(key)) => Some(tls_config(&cert, &key)?),
        _ => None,
    };
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .route("/hooks/{source}/{event}", web::post().to(receive))
        })
        .workers(workers);
        match tls {
            Some(tls) => server.bind_rustls_0_23(("127.0.0.1", port), tls)?,
            None => server.bind(("127.0.0.1", port))?,
        }
        .run()
        .await
    })
}
