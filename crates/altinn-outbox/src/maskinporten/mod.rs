//! Maskinporten authentication and the Altinn token exchange.
//!
//! - [`key`]: loads and validates the RSA key that signs grants (JWK, base64 JWK or PEM).
//! - [`key_file`]: refuses a key file that the group or other users may read.
//! - [`grant`]: the pure function that builds a grant's claims, and its signing.
//! - [`error`]: how a failed refresh is classified (retry later, or fix configuration).
//! - [`clock`]: the offset between the host clock and Maskinporten's, from its `Date`.
//! - [`health`]: the cool-down after failed refreshes and the status for health reports.
//! - [`altinn_token`]: the Altinn token value and reading the answers that carry tokens.
//! - [`token`]: the cached, single-flight token client that turns a grant into a
//!   Maskinporten token and that into the Altinn token Correspondence calls carry.
//!
//! The key is parsed once at start-up; base URLs come from settings, so tests point
//! the client at a local fake.

pub mod altinn_token;
pub mod clock;
pub mod error;
pub mod grant;
pub mod health;
pub mod key;
pub mod key_file;
pub mod token;

pub use altinn_token::AltinnToken;
pub use error::{Step, TokenError};
pub use grant::{grant_claims, sign_grant, GrantClaims, SignError, MAX_GRANT_LIFETIME_S};
pub use health::AuthStatus;
pub use key::{generate_jwk, KeyError, KeyProblem, KeySource, SigningKey};
pub use key_file::OpenKeyFile;
pub use token::{TokenClient, TokenSettings};
