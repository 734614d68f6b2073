//! Altinn Events: the receiver Altinn pushes to, so that a letter's status is read as soon as
//! something happens to it instead of on the poll's schedule.
//!
//! Altinn signs nothing, so a push is authenticated by what it cannot forge cheaply, and then
//! trusted with nothing: the source network ([`network`]), an unguessable secret in the path
//! (at least 128 bits, made once and stored, compared in constant time), a bounded body and a
//! bounded number of pushes at once. A push that passes is only a hint: it is stored once per
//! event id and moves the next status read of the letters it names to now; the read, with the
//! daemon's own token, decides the state ([`crate::outbox::events`]).
//!
//! - [`receiver`]: the listener and the handling of one push.
//! - [`network`]: where a push comes from, through a trusted reverse proxy.
//! - [`payload`]: a CloudEvent read leniently.
//! - [`tls`]: the receiver's own TLS, when no reverse proxy terminates it.
//! - [`manage`]: one instance at a time (a lease in the database) keeps the subscriptions
//!   ([`subscriptions`]) and pulls what pushes missed ([`pull`]).

pub mod manage;
pub mod network;
pub mod payload;
pub mod pull;
pub mod receiver;
pub mod subscriptions;
pub mod tls;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Bytes of randomness in a new secret: 256 bits, twice the floor.
const SECRET_BYTES: usize = 32;

/// A new receiver secret: random bytes as URL-safe base64 (a path segment as it is).
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The endpoint Altinn is given: the public URL with the secret as its last path segment.
pub fn endpoint(public_url: &url::Url, secret: &str) -> String {
    format!("{}/{secret}", public_url.as_str().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_256_bits_and_a_path_segment() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
    }

    #[test]
    fn the_endpoint_appends_the_secret_to_the_public_path() {
        let public = url::Url::parse("https://outbox.example.no/altinn/events/").unwrap();
        assert_eq!(endpoint(&public, "s3cr3t"), "https://outbox.example.no/altinn/events/s3cr3t");
    }
}
