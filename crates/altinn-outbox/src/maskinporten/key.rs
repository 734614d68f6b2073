//! The RSA key that signs Maskinporten grants, loaded once at start-up.
//!
//! Maskinporten accepts only RSA (RS256/384/512), identified by the `kid` registered with
//! the client. Operators get the key either as Altinn's settings carry it (a private JWK,
//! often standard-base64 encoded as `jwkBase64`) or as a PEM file plus a configured kid.
//! Every form is turned into a PKCS#1 `RSAPrivateKey` DER and validated by aws-lc
//! (`RSA_check_key`), which also signs in constant time (jsonwebtoken's `aws_lc_rs`
//! backend), so a broken key fails at start-up rather than at the first send. Errors name the source and the
//! problem but never echo key material: JSON is parsed into an untyped value first because
//! serde's type errors quote the offending value.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use num_bigint::BigUint;
use pkcs1::der::{Decode, Encode};
use pkcs1::UintRef;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

/// JWK members are base64url without padding (RFC 7518); some tools pad them anyway,
/// so decoding tolerates it while encoding never pads.
const JWK_MEMBER: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// `jwkBase64` is standard base64 (Altinn's `JsonWebKeyConverter`); padding is tolerated
/// both ways because secrets pasted through shells and YAML often lose it.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Maskinporten rejects grants signed with any other algorithm family; RS256 is what the
/// official clients use, whatever the JWK's `alg` says.
pub(crate) const JWT_ALG: &str = "RS256";

/// Where the signing key comes from. The inline forms are secrets because they carry the
/// private exponent.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Standard base64 of a private JWK's JSON, as Altinn's `jwkBase64` setting carries it.
    JwkBase64(SecretString),
    /// A private JWK's JSON text.
    JwkJson(SecretString),
    /// A file holding a private JWK's JSON.
    JwkFile(PathBuf),
    /// A PKCS#8 or PKCS#1 PEM file; PEM carries no kid, so the registered one is configured.
    PemFile { path: PathBuf, kid: String },
}

impl KeySource {
    /// The file the key is read from, if it comes from one (its permissions are checked).
    pub fn file(&self) -> Option<&Path> {
        match self {
            KeySource::JwkFile(path) | KeySource::PemFile { path, .. } => Some(path),
            KeySource::JwkBase64(_) | KeySource::JwkJson(_) => None,
        }
    }
}

/// A key could not be loaded. The message names the source and the problem only.
#[derive(Debug, thiserror::Error)]
#[error("maskinporten key {origin}: {problem}")]
pub struct KeyError {
    origin: String,
    problem: KeyProblem,
}

impl KeyError {
    pub fn problem(&self) -> &KeyProblem {
        &self.problem
    }
}

/// What is wrong with a key, without any of its material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("cannot read: {0}")]
    Unreadable(String),
    #[error("not valid base64")]
    NotBase64,
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("not a JSON object")]
    NotObject,
    #[error("JWK has no kid")]
    NoKid,
    #[error("not an RSA private key (JWK kty is {0:?}; Maskinporten accepts RSA only)")]
    NotRsa(String),
    #[error("not an RSA private key (the JWK is a public key: it has no \"d\")")]
    PublicOnly,
    #[error("JWK member {0:?} is missing or not base64url")]
    BadMember(&'static str),
    #[error("JWK member {0:?} does not match the key")]
    InconsistentMember(&'static str),
    #[error("not a valid RSA private key ({0})")]
    Invalid(String),
    #[error("JWK has no \"p\" and \"q\" (export the key with all its members)")]
    NoPrimes,
    #[error("not an RSA private key in PEM (expected PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")")]
    NotPem,
    #[error("no kid configured (PEM files carry none; use the kid registered with Maskinporten)")]
    EmptyKid,
}

/// A validated RSA private key and the kid Maskinporten knows it by.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// n and e, big-endian without leading zeros.
    public: PublicKeyComponents<Vec<u8>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads and validates the key. Called once at start-up so that a bad key stops the
    /// daemon with a message naming the file, not at the first send.
    pub fn load(source: &KeySource) -> Result<SigningKey, KeyError> {
        match source {
            KeySource::JwkBase64(b64) => {
                let origin = "jwk_base64";
                let compact: Zeroizing<String> =
                    Zeroizing::new(b64.expose_secret().chars().filter(|c| !c.is_ascii_whitespace()).collect());
                let bytes = Zeroizing::new(
                    JWK_BASE64.decode(compact.as_bytes()).map_err(|_| err(origin, KeyProblem::NotBase64))?,
                );
                let text = std::str::from_utf8(&bytes).map_err(|_| err(origin, KeyProblem::NotUtf8))?;
                from_jwk_json(text).map_err(|p| err(origin, p))
            }
            KeySource::JwkJson(json) => from_jwk_json(json.expose_secret()).map_err(|p| err("jwk_json", p)),
            KeySource::JwkFile(path) => {
                let origin = file_origin(path);
                let text = read_secret_file(path).map_err(|p| err(&origin, p))?;
                from_jwk_json(&text).map_err(|p| err(&origin, p))
            }
            KeySource::PemFile { path, kid } => {
                let origin = file_origin(path);
                if kid.trim().is_empty() {
                    return Err(err(&origin, KeyProblem::EmptyKid));
                }
                let text = read_secret_file(path).map_err(|p| err(&origin, p))?;
                let key = EncodingKey::from_rsa_pem(text.as_bytes()).map_err(|_| err(&origin, KeyProblem::NotPem))?;
                // jsonwebtoken unwraps PKCS#8 to the PKCS#1 DER inside; aws-lc validates it.
                SigningKey::from_pkcs1_der(kid.trim().to_string(), key.inner())
                    .map_err(|_| err(&origin, KeyProblem::NotPem))
            }
        }
    }

    /// The kid sent in every grant header; safe to log (it is how operators tell which
    /// registered key Maskinporten rejected or which one is about to expire).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public half as a JWKS document, ready to register with Maskinporten (or a fake).
    pub fn public_jwks_json(&self) -> String {
        public_jwks(&self.kid, &self.public.n, &self.public.e)
    }

    /// aws-lc parses and checks the key (n = pq, d·e ≡ 1 mod λ, dP, dQ, qInv consistent,
    /// 2048 to 8192 bits); jsonwebtoken's `aws_lc_rs` backend signs from the same DER.
    fn from_pkcs1_der(kid: String, der: &[u8]) -> Result<SigningKey, KeyProblem> {
        let pair = KeyPair::from_der(der).map_err(|e| KeyProblem::Invalid(e.to_string()))?;
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Ok(SigningKey { kid, encoding: EncodingKey::from_rsa_der(der), public })
    }
}

/// Generates an RSA key pair for the demo and for operators registering a new key.
/// Returns the private JWK (all twelve members Altinn's own client insists on) and the
/// public JWKS to upload to Maskinporten. aws-lc generates the key; its members are read
/// from aws-lc's PKCS#8 export with the pkcs8/pkcs1 DER parsers (no arithmetic).
///
/// # Panics
/// If `bits` is not 2048, 3072, 4096 or 8192.
pub fn generate_jwk(kid: &str, bits: usize) -> (String, String) {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        8192 => KeySize::Rsa8192,
        _ => panic!("RSA key size {bits} is not supported (use 2048, 3072, 4096 or 8192)"),
    };
    let pair = KeyPair::generate(size).expect("aws-lc RSA key generation");
    let pkcs8 = pair.as_der().expect("aws-lc exports PKCS#8");
    let info = pkcs8::PrivateKeyInfo::from_der(pkcs8.as_ref()).expect("aws-lc writes valid PKCS#8");
    let key = pkcs1::RsaPrivateKey::from_der(info.private_key).expect("an RSA PKCS#8 holds PKCS#1");
    let b = |u: UintRef<'_>| JWK_MEMBER.encode(u.as_bytes());
    let private = json!({
        "kty": "RSA", "use": "sig", "kid": kid, "alg": JWT_ALG,
        "n": b(key.modulus), "e": b(key.public_exponent), "d": b(key.private_exponent),
        "p": b(key.prime1), "q": b(key.prime2), "dp": b(key.exponent1), "dq": b(key.exponent2),
        "qi": b(key.coefficient),
    });
    let private = serde_json::to_string_pretty(&private).expect("JSON of strings serialises");
    (private, public_jwks(kid, key.modulus.as_bytes(), key.public_exponent.as_bytes()))
}

fn public_jwks(kid: &str, n: &[u8], e: &[u8]) -> String {
    let jwks = json!({ "keys": [{
        "kty": "RSA", "use": "sig", "kid": kid, "alg": JWT_ALG,
        "n": JWK_MEMBER.encode(n),
        "e": JWK_MEMBER.encode(e),
    }]});
    serde_json::to_string_pretty(&jwks).expect("JSON of strings serialises")
}

fn err(origin: &str, problem: KeyProblem) -> KeyError {
    KeyError { origin: origin.to_string(), problem }
}

fn file_origin(path: &Path) -> String {
    format!("file {}", path.display())
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeyProblem> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeyProblem::Unreadable(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyProblem::NotUtf8)?;
    Ok(Zeroizing::new(text.to_string()))
}

fn from_jwk_json(text: &str) -> Result<SigningKey, KeyProblem> {
    let value: Value =
        serde_json::from_str(text.trim()).map_err(|e| KeyProblem::NotJson { line: e.line(), column: e.column() })?;
    let jwk = value.as_object().ok_or(KeyProblem::NotObject)?;
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    if kty != "RSA" {
        return Err(KeyProblem::NotRsa(kty.to_string()));
    }
    if !jwk.contains_key("d") {
        return Err(KeyProblem::PublicOnly);
    }
    let kid = match jwk.get("kid").and_then(Value::as_str).map(str::trim) {
        Some(kid) if !kid.is_empty() => kid.to_string(),
        _ => return Err(KeyProblem::NoKid),
    };
    let der = jwk_to_pkcs1_der(jwk)?;
    SigningKey::from_pkcs1_der(kid, &der)
}

/// Builds the PKCS#1 `RSAPrivateKey` DER (RFC 8017 A.1.2) from a private JWK. Missing CRT
/// members are computed; given ones are compared, so that a damaged JWK names the member
/// (other signers, Altinn's .NET client among them, use them instead of `d`). This is plain
/// big-number arithmetic, run once at start-up; signing never touches it.
fn jwk_to_pkcs1_der(jwk: &Map<String, Value>) -> Result<Zeroizing<Vec<u8>>, KeyProblem> {
    let required = |name| member(jwk, name).and_then(|m| m.ok_or(KeyProblem::BadMember(name)));
    let (n, e, d) = (required("n")?, required("e")?, required("d")?);
    // p and q are optional in RFC 7518, but recovering them from n, e and d takes a
    // randomised factoring step (the rsa crate did it); keys Altinn and `keygen` issue carry
    // them. A JWK with only one of them is damaged.
    let (p, q) = match (member(jwk, "p")?, member(jwk, "q")?) {
        (Some(p), Some(q)) => (p, q),
        (None, None) => return Err(KeyProblem::NoPrimes),
        (None, Some(_)) => return Err(KeyProblem::BadMember("p")),
        (Some(_), None) => return Err(KeyProblem::BadMember("q")),
    };
    let one = BigUint::from(1u8);
    let (bd, bp, bq) = (BigUint::from_bytes_be(&d), BigUint::from_bytes_be(&p), BigUint::from_bytes_be(&q));
    if bp <= one || bq <= one {
        return Err(KeyProblem::Invalid("p or q is not a prime".into()));
    }
    let qi = bq.modinv(&bp).ok_or_else(|| KeyProblem::Invalid("q is not invertible mod p".into()))?;
    let mut crt = Vec::with_capacity(3);
    for (name, computed) in [("dp", &bd % (&bp - &one)), ("dq", &bd % (&bq - &one)), ("qi", qi)] {
        if let Some(given) = member(jwk, name)? {
            if BigUint::from_bytes_be(&given) != computed {
                return Err(KeyProblem::InconsistentMember(name));
            }
        }
        crt.push(Zeroizing::new(computed.to_bytes_be()));
    }
    let key = pkcs1::RsaPrivateKey {
        modulus: uint("n", &n)?,
        public_exponent: uint("e", &e)?,
        private_exponent: uint("d", &d)?,
        prime1: uint("p", &p)?,
        prime2: uint("q", &q)?,
        exponent1: uint("dp", &crt[0])?,
        exponent2: uint("dq", &crt[1])?,
        coefficient: uint("qi", &crt[2])?,
        other_prime_infos: None,
    };
    Ok(Zeroizing::new(key.to_der().map_err(|e| KeyProblem::Invalid(e.to_string()))?))
}

/// Reads an optional base64url big-endian integer member; the bytes are zeroized on drop.
fn member(jwk: &Map<String, Value>, name: &'static str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyProblem> {
    match jwk.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => {
            Ok(Some(Zeroizing::new(JWK_MEMBER.decode(s).map_err(|_| KeyProblem::BadMember(name))?)))
        }
        Some(_) => Err(KeyProblem::BadMember(name)),
    }
}

/// One member of the key as the DER integer of its big-endian bytes.
fn uint<'a>(name: &'static str, bytes: &'a [u8]) -> Result<UintRef<'a>, KeyProblem> {
    UintRef::new(bytes).map_err(|_| KeyProblem::BadMember(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
    }

    fn fixture_text(name: &str) -> String {
        std::fs::read_to_string(fixture(name)).unwrap()
    }

    fn public_key(jwks: &str) -> DecodingKey {
        let jwks: Value = serde_json::from_str(jwks).unwrap();
        let k = &jwks["keys"][0];
        DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap()).unwrap()
    }

    /// Signs a throwaway payload and verifies it with the given public JWKS.
    fn signs_for(key: &SigningKey, jwks: &str) -> bool {
        let claims = json!({ "sub": "x", "exp": 4_000_000_000u64 });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key.encoding_key()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(&token, &public_key(jwks), &validation).is_ok()
    }

    fn load_err(source: KeySource) -> KeyError {
        SigningKey::load(&source).expect_err("key should be rejected")
    }

    fn jwk_without(member: &str) -> String {
        let mut jwk: Map<String, Value> = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        jwk.remove(member);
        serde_json::to_string(&jwk).unwrap()
    }

    #[test]
    fn pem_and_jwk_of_the_same_key_verify_with_the_public_jwks() {
        let jwks = fixture_text("test-jwks-public.json");
        let from_jwk = SigningKey::load(&KeySource::JwkFile(fixture("test-jwk.json"))).unwrap();
        let from_pem =
            SigningKey::load(&KeySource::PemFile { path: fixture("test-key.pem"), kid: "outbox-test-key-1".into() })
                .unwrap();
        assert_eq!(from_jwk.kid(), "outbox-test-key-1");
        assert!(signs_for(&from_jwk, &jwks));
        assert!(signs_for(&from_pem, &jwks));
        let other = SigningKey::load(&KeySource::PemFile { path: fixture("other-key.pem"), kid: "o".into() }).unwrap();
        assert!(!signs_for(&other, &jwks));
    }

    #[test]
    fn public_jwks_matches_the_fixture() {
        let key = SigningKey::load(&KeySource::JwkFile(fixture("test-jwk.json"))).unwrap();
        let ours: Value = serde_json::from_str(&key.public_jwks_json()).unwrap();
        let fixture: Value = serde_json::from_str(&fixture_text("test-jwks-public.json")).unwrap();
        assert_eq!(ours, fixture);
    }

    #[test]
    fn base64_jwk_with_surrounding_whitespace_loads() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(fixture_text("test-jwk.json"));
        let wrapped = format!("\n  {encoded}\n");
        let key = SigningKey::load(&KeySource::JwkBase64(wrapped.into())).unwrap();
        assert_eq!(key.kid(), "outbox-test-key-1");
        assert!(signs_for(&key, &fixture_text("test-jwks-public.json")));
    }

    #[test]
    fn inline_jwk_without_crt_members_loads() {
        let mut jwk: Map<String, Value> = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        for m in ["dp", "dq", "qi"] {
            jwk.remove(m);
        }
        let key = SigningKey::load(&KeySource::JwkJson(serde_json::to_string(&jwk).unwrap().into())).unwrap();
        assert!(signs_for(&key, &fixture_text("test-jwks-public.json")));
    }

    #[test]
    fn malformed_inputs_name_the_problem_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = load_err(KeySource::JwkFile(path.clone()));
        assert_eq!(e.problem(), &KeyProblem::NotJson { line: 1, column: 2 });
        assert!(e.to_string().starts_with(&format!("maskinporten key file {}: not valid JSON", path.display())));

        std::fs::write(&path, jwk_without("kid")).unwrap();
        assert_eq!(
            load_err(KeySource::JwkFile(path.clone())).to_string(),
            format!("maskinporten key file {}: JWK has no kid", path.display())
        );

        let public = serde_json::to_string(
            &serde_json::from_str::<Value>(&fixture_text("test-jwks-public.json")).unwrap()["keys"][0],
        )
        .unwrap();
        let e = load_err(KeySource::JwkJson(public.into()));
        assert_eq!(e.problem(), &KeyProblem::PublicOnly);
        assert!(e.to_string().contains("not an RSA private key"));

        let ec = r#"{"kty":"EC","kid":"k","crv":"P-256","x":"AA","y":"AA","d":"AA"}"#;
        assert_eq!(load_err(KeySource::JwkJson(ec.into())).problem(), &KeyProblem::NotRsa("EC".into()));

        let e = load_err(KeySource::JwkFile(dir.path().join("missing.json")));
        assert!(matches!(e.problem(), KeyProblem::Unreadable(_)));
        assert!(e.to_string().contains("missing.json"));

        assert_eq!(load_err(KeySource::JwkBase64("not base64!".to_string().into())).problem(), &KeyProblem::NotBase64);
    }

    #[test]
    fn damaged_jwk_members_are_rejected() {
        let mut jwk: Map<String, Value> = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        jwk.insert("qi".into(), Value::String(jwk["dp"].as_str().unwrap().into()));
        let e = load_err(KeySource::JwkJson(serde_json::to_string(&jwk).unwrap().into()));
        assert_eq!(e.problem(), &KeyProblem::InconsistentMember("qi"));

        assert_eq!(load_err(KeySource::JwkJson(jwk_without("n").into())).problem(), &KeyProblem::BadMember("n"));
        assert_eq!(load_err(KeySource::JwkJson(jwk_without("q").into())).problem(), &KeyProblem::BadMember("q"));

        let mut jwk: Map<String, Value> = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        jwk.remove("p");
        jwk.remove("q");
        assert_eq!(
            load_err(KeySource::JwkJson(serde_json::to_string(&jwk).unwrap().into())).problem(),
            &KeyProblem::NoPrimes
        );

        // A wrong d (CRT members dropped so that they are recomputed from it): aws-lc's check.
        let mut jwk: Map<String, Value> = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        let mut d = JWK_MEMBER.decode(jwk["d"].as_str().unwrap()).unwrap();
        *d.last_mut().unwrap() ^= 2;
        jwk.insert("d".into(), JWK_MEMBER.encode(&d).into());
        for m in ["dp", "dq", "qi"] {
            jwk.remove(m);
        }
        let e = load_err(KeySource::JwkJson(serde_json::to_string(&jwk).unwrap().into()));
        assert!(matches!(e.problem(), KeyProblem::Invalid(_)), "{e}");
    }

    #[test]
    fn pem_needs_a_kid_and_a_private_key() {
        let e = load_err(KeySource::PemFile { path: fixture("test-key.pem"), kid: " ".into() });
        assert_eq!(e.problem(), &KeyProblem::EmptyKid);
        let e = load_err(KeySource::PemFile { path: fixture("test-jwk.json"), kid: "k".into() });
        assert_eq!(e.problem(), &KeyProblem::NotPem);
        assert!(e.to_string().contains("test-jwk.json"));
    }

    #[test]
    fn pkcs1_pem_loads() {
        // PKCS#8 "PRIVATE KEY" -> PKCS#1 "RSA PRIVATE KEY": the inner DER, rewrapped.
        let body: String = fixture_text("test-key.pem").lines().filter(|l| !l.starts_with("-----")).collect();
        let pkcs8 = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        let info = pkcs8::PrivateKeyInfo::from_der(&pkcs8).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(info.private_key);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", lines.join("\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let loaded = SigningKey::load(&KeySource::PemFile { path, kid: "k".into() }).unwrap();
        assert!(signs_for(&loaded, &fixture_text("test-jwks-public.json")));
    }

    #[test]
    fn debug_prints_the_kid_only() {
        let key = SigningKey::load(&KeySource::JwkFile(fixture("test-jwk.json"))).unwrap();
        let jwk: Value = serde_json::from_str(&fixture_text("test-jwk.json")).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("outbox-test-key-1"));
        for m in ["n", "d", "p", "q"] {
            assert!(!debug.contains(&jwk[m].as_str().unwrap()[..16]), "Debug leaks {m}");
        }
        let source = KeySource::JwkJson(fixture_text("test-jwk.json").into());
        assert!(!format!("{source:?}").contains(&jwk["d"].as_str().unwrap()[..16]));
    }

    #[test]
    fn generated_jwk_round_trips() {
        let (private, public) = generate_jwk("generated-1", 2048);
        let jwk: Map<String, Value> = serde_json::from_str(&private).unwrap();
        assert_eq!(jwk.len(), 12, "all members Altinn's client requires");
        let key = SigningKey::load(&KeySource::JwkJson(private.into())).unwrap();
        assert_eq!(key.kid(), "generated-1");
        assert!(signs_for(&key, &public));
    }
}
