//! Reading a request body under a size limit and a deadline.
//!
//! actix-web bounds the time to receive the request head but not the body: without a deadline a
//! client sending one byte per second would hold a worker's connection for as long as it likes.
//! The size limit is checked against `Content-Length` before reading, and again as chunks of a
//! chunked body arrive, so an oversized body is refused without being buffered.

use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use tokio::time::Instant;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Incomplete,
}

/// The declared `Content-Length`, if the request has a valid one.
pub fn declared_length(headers: &header::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads the whole body, at most `limit` bytes, before `deadline`.
pub async fn read(
    payload: &mut Payload,
    limit: usize,
    declared: Option<usize>,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout_at(deadline, collect(payload, limit, declared))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn collect(
    payload: &mut Payload,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, BodyError> {
    // Most bodies arrive in one chunk: keep it as is, without copying.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut length = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Incomplete)?;
        length += chunk.len();
        if length > limit {
            return Err(BodyError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(buffer), _) => buffer.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(previous)) => {
                let mut buffer =
                    BytesMut::with_capacity(declared.unwrap_or(0).clamp(length, limit));
                buffer.extend_from_slice(&previous);
                buffer.extend_from_slice(&chunk);
                joined = Some(buffer);
            }
        }
    }
    Ok(match joined {
        Some(buffer) => buffer.freeze(),
        None => first.unwrap_or_default(),
    })
}
