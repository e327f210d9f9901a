//! Reading a request body under a size limit, a deadline and a memory budget.
//!
//! actix-web bounds the time to receive the request head but not the body: without a deadline a
//! client sending one byte per second would hold a worker's connection for as long as it likes.
//! The size limit is checked against `Content-Length` before reading, and again as chunks of a
//! chunked body arrive, so an oversized body is refused without being buffered.
//!
//! Nor does anything bound the bodies held at once: a thousand connections that each declare a
//! large body and send all but its last byte would hold a thousand bodies until the deadline
//! (and a signature can only be checked once the body is complete). So each body takes its bytes
//! from its source's [`BodyBudget`] and from the relay's before it is read (a declared length)
//! or as it arrives (chunked), and gives them back when the request ends; a body that finds no
//! room is refused with 503 at once. A flood on one source cannot take another source's room.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use tokio::time::Instant;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Incomplete,
    /// The source's or the relay's body memory is taken by other requests.
    NoRoom,
}

/// Bytes of request bodies that may be held at once.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The bytes one request holds of its source's budget and of the relay's; given back when
/// dropped (when the request has been answered).
pub struct Held<'a> {
    source: &'a BodyBudget,
    total: &'a BodyBudget,
    bytes: usize,
}

impl<'a> Held<'a> {
    pub fn new(source: &'a BodyBudget, total: &'a BodyBudget) -> Held<'a> {
        Held {
            source,
            total,
            bytes: 0,
        }
    }

    /// Holds at least `bytes` in all; `false` (holding what it held) when a budget has no room.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let Some(more) = bytes.checked_sub(self.bytes).filter(|more| *more > 0) else {
            return true;
        };
        if !self.source.take(more) {
            return false;
        }
        if !self.total.take(more) {
            self.source.give(more);
            return false;
        }
        self.bytes = bytes;
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.source.give(self.bytes);
        self.total.give(self.bytes);
    }
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

/// Reads the whole body, at most `limit` bytes, before `deadline`, holding its bytes in `held`
/// (the declared length before the first byte is read).
pub async fn read(
    payload: &mut Payload,
    limit: usize,
    declared: Option<usize>,
    deadline: Instant,
    held: &mut Held<'_>,
) -> Result<Bytes, BodyError> {
    if !held.grow_to(declared.unwrap_or(0)) {
        return Err(BodyError::NoRoom);
    }
    tokio::time::timeout_at(deadline, collect(payload, limit, declared, held))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn collect(
    payload: &mut Payload,
    limit: usize,
    declared: Option<usize>,
    held: &mut Held<'_>,
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
        if !held.grow_to(length) {
            return Err(BodyError::NoRoom);
        }
        match (&mut joined, first.take()) {
            (Some(buffer), _) => buffer.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(previous)) => {
                // The declared length, which `held` already holds of the budgets (pages are
                // only backed as bytes arrive, and no growth copies them); a chunked body grows
                // by doubling.
                let capacity = match declared {
                    Some(declared) => declared.clamp(length, limit),
                    None => length.saturating_mul(2).min(limit),
                };
                let mut buffer = BytesMut::with_capacity(capacity);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_holds_its_bytes_of_both_budgets_until_it_is_dropped() {
        let (source, total) = (BodyBudget::new(100), BodyBudget::new(150));
        let mut first = Held::new(&source, &total);
        assert!(first.grow_to(60));
        assert!(first.grow_to(40), "holding more than asked is fine");
        let mut second = Held::new(&source, &total);
        assert!(!second.grow_to(41), "the source has 40 left");
        assert!(second.grow_to(40));
        assert_eq!((source.used(), total.used()), (100, 100));
        let other_source = BodyBudget::new(100);
        let mut third = Held::new(&other_source, &total);
        assert!(!third.grow_to(51), "the relay has 50 left");
        assert_eq!(other_source.used(), 0, "a refusal gives back what it took");
        drop(first);
        assert!(third.grow_to(51));
        drop((second, third));
        assert_eq!(
            (source.used(), other_source.used(), total.used()),
            (0, 0, 0)
        );
    }
}
