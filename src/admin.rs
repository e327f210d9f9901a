//! The admin listener: `/healthz`, `/readyz` and `/metrics`, kept apart from the ingress so that
//! it is not exposed to webhook senders.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::health::Health;
use crate::metrics::Metrics;

pub struct Admin {
    pub health: Arc<Health>,
    pub metrics: Metrics,
    pub spool: Option<Arc<crate::spool::Shared>>,
    /// Where `POST /-/reload` asks the running relay to reload its configuration.
    pub reload: tokio::sync::mpsc::Sender<crate::reload::ReloadRequest>,
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/-/reload", web::post().to(reload));
}

/// The process is alive and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Whether webhooks should be routed here; 503 with the reasons when not.
async fn readyz(admin: web::Data<Admin>) -> HttpResponse {
    let reasons = admin.health.reasons();
    let degraded = admin.health.degraded();
    if reasons.is_empty() && degraded.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else if reasons.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready", "degraded": degraded }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "reasons": reasons }))
    }
}

/// Re-reads the configuration file (as SIGHUP does); 200 with what needs a restart, or 422 with
/// why the new configuration was refused (the old one stays).
async fn reload(admin: web::Data<Admin>) -> HttpResponse {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if admin.reload.send(reply).await.is_err() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "failed", "reason": "shutting down" }));
    }
    match outcome.await {
        Ok(outcome) if outcome.reason.is_none() => HttpResponse::Ok().json(outcome),
        Ok(outcome) => HttpResponse::UnprocessableEntity().json(outcome),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "failed", "reason": "shutting down" })),
    }
}

async fn metrics(admin: web::Data<Admin>) -> HttpResponse {
    admin.health.refresh_gauge();
    if let Some(spool) = &admin.spool {
        let metrics = &admin.metrics;
        metrics.spool_records.set(spool.live_records() as i64);
        metrics.spool_bytes.set(spool.live_bytes() as i64);
        metrics
            .spool_oldest_age_seconds
            .set(spool.oldest_age().as_secs_f64());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(admin.metrics.render())
}
