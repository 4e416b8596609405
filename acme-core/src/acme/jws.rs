//! The two signed requests instant-acme 0.8 cannot make, built on its own
//! transport ([`instant_acme::HttpClient`], `BodyWrapper`, `BytesResponse`)
//! and its [`instant_acme::Problem`] and [`instant_acme::RevocationRequest`]
//! types, with signatures by aws-lc-rs:
//!
//! - keyChange (RFC 8555 §7.3.5) with a new key made and stored *before*
//!   the request (`Account::update_key` makes the key itself and hands it
//!   out only after the CA accepted it, so a run killed in between loses
//!   the only key the CA still knows);
//! - revokeCert (§7.6) signed by the certificate's own key with a `jwk`
//!   header (`Account::revoke` signs with the account key only);
//! - newAccount with `onlyReturnExisting` (§7.3.1) for a given key, to ask
//!   which of two keys the CA knows.
//!
//! The crate's `JoseJson`, `Signer`, `Jwk` and `Directory` are private, so
//! the flattened JWS (RFC 7515 §7.2.2), the JWK (RFC 7517) and its
//! thumbprint (RFC 7638) are written here; it is not a second ACME client.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::prelude::{Engine as _, BASE64_URL_SAFE_NO_PAD as B64};
use bytes::Bytes;
use http::{Method, Request};
use instant_acme::{BodyWrapper, HttpClient, Problem};
use serde::Deserialize;
use serde_json::{json, Value};

/// A key that signs JWS: the account key (P-256) or a certificate's key.
pub(crate) enum JwsKey {
    /// ECDSA P-256 with SHA-256.
    Es256(EcdsaKeyPair),
    /// ECDSA P-384 with SHA-384.
    Es384(EcdsaKeyPair),
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256(RsaKeyPair),
}

/// The key is none of ES256, ES384 or RS256 in PKCS#8.
#[derive(Debug, thiserror::Error)]
#[error("the key is not a PKCS#8 ECDSA P-256, P-384 or RSA key")]
pub struct UnsupportedKey;

impl JwsKey {
    /// Reads a PKCS#8 DER key of any supported kind.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, UnsupportedKey> {
        use signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(Self::Es256(k));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Ok(Self::Es384(k));
        }
        RsaKeyPair::from_pkcs8(der)
            .map(Self::Rs256)
            .map_err(|_| UnsupportedKey)
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Es384(_) => "ES384",
            Self::Rs256(_) => "RS256",
        }
    }

    /// What `certctl account show` calls the key.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ecdsa-p256",
            Self::Es384(_) => "ecdsa-p384",
            Self::Rs256(_) => "rsa",
        }
    }

    /// The public key as a JWK with its members in RFC 7638 order, so its
    /// compact serialisation is also the thumbprint's input.
    pub(crate) fn jwk(&self) -> Value {
        match self {
            Self::Es256(k) | Self::Es384(k) => {
                // Uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                let n = (point.len() - 1) / 2;
                let crv = if matches!(self, Self::Es256(_)) {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({
                    "crv": crv,
                    "kty": "EC",
                    "x": B64.encode(&point[1..1 + n]),
                    "y": B64.encode(&point[1 + n..]),
                })
            }
            Self::Rs256(k) => {
                let (n, e) = rsa_public(k.public_key().as_ref()).unwrap_or_default();
                json!({ "e": B64.encode(e), "kty": "RSA", "n": B64.encode(n) })
            }
        }
    }

    /// The RFC 7638 thumbprint: base64url of SHA-256 over the JWK's
    /// required members, in lexical order, without whitespace.
    pub(crate) fn thumbprint(&self) -> String {
        thumbprint_of(&self.jwk())
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, instant_acme::Error> {
        let rng = SystemRandom::new();
        match self {
            Self::Es256(k) | Self::Es384(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| instant_acme::Error::Crypto),
            Self::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| instant_acme::Error::Crypto)?;
                Ok(sig)
            }
        }
    }

    /// A flattened JWS of `payload` with `protected` as its header.
    fn jws(&self, protected: &Value, payload: &[u8]) -> Result<Value, instant_acme::Error> {
        let protected = B64.encode(protected.to_string());
        let payload = B64.encode(payload);
        let signature = self.sign(format!("{protected}.{payload}").as_bytes())?;
        Ok(json!({
            "protected": protected,
            "payload": payload,
            "signature": B64.encode(signature),
        }))
    }
}

/// RFC 7638 over a JWK holding only its required members.
fn thumbprint_of(jwk: &Value) -> String {
    // serde_json's map is ordered (no preserve_order feature): lexical.
    let canonical = jwk.to_string();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    B64.encode(d.as_ref())
}

/// `n` and `e` of a DER `RSAPublicKey` (RFC 8017 A.1.1), leading zeros off.
fn rsa_public(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn tlv(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = b.split_first()?;
        if t != tag {
            return None;
        }
        let (&l, rest) = rest.split_first()?;
        let (len, rest) = if l < 0x80 {
            (usize::from(l), rest)
        } else {
            let k = usize::from(l & 0x7f);
            if k > 4 || rest.len() < k {
                return None;
            }
            let len = rest[..k]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | usize::from(x));
            (len, &rest[k..])
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (seq, _) = tlv(der, 0x30)?;
    let (n, rest) = tlv(seq, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    let trim = |v: &[u8]| -> usize { v.iter().take_while(|&&b| b == 0).count() };
    Some((&n[trim(n)..], &e[trim(e)..]))
}

/// The directory members these requests need (RFC 8555 §7.1.1).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    revoke_cert: Option<String>,
    key_change: Option<String>,
    #[serde(default)]
    meta: Value,
}

/// One CA, reached through the crate's HTTP client.
pub(crate) struct JwsClient {
    http: Box<dyn HttpClient>,
    dir: Directory,
}

const JOSE_JSON: &str = "application/jose+json";

async fn body(rsp: instant_acme::BytesResponse) -> Result<Bytes, instant_acme::Error> {
    let mut b = rsp.body;
    b.into_bytes().await.map_err(instant_acme::Error::Other)
}

impl JwsClient {
    /// Reads the directory at `url`.
    pub(crate) async fn connect(
        http: Box<dyn HttpClient>,
        url: &str,
    ) -> Result<Self, instant_acme::Error> {
        let req = Request::builder().uri(url).body(BodyWrapper::default())?;
        let rsp = http.request(req).await?;
        let dir = serde_json::from_slice(&body(rsp).await?)?;
        Ok(Self { http, dir })
    }

    async fn nonce(&self) -> Result<String, instant_acme::Error> {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(&self.dir.new_nonce)
            .body(BodyWrapper::default())?;
        let rsp = self.http.request(req).await?;
        nonce_of(&rsp).ok_or(instant_acme::Error::Str("no nonce from newNonce"))
    }

    /// POSTs `payload` signed by `key` to `url`, with `key_id` (an account
    /// URL) in the header or else the key's JWK. A `badNonce` is retried
    /// with the nonce it carries, twice. A problem document is an
    /// [`instant_acme::Error::Api`]; on success the response's headers and body.
    async fn post(
        &self,
        url: &str,
        key: &JwsKey,
        key_id: Option<&str>,
        payload: &[u8],
    ) -> Result<(http::response::Parts, Bytes), instant_acme::Error> {
        let mut nonce = self.nonce().await?;
        let mut tries = 3;
        loop {
            let mut protected = json!({ "alg": key.alg(), "nonce": nonce, "url": url });
            match key_id {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = key.jwk(),
            }
            let jws = key.jws(&protected, payload)?;
            let req = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header(http::header::CONTENT_TYPE, JOSE_JSON)
                .body(BodyWrapper::from(serde_json::to_vec(&jws)?))?;
            let rsp = self.http.request(req).await?;
            let next = nonce_of(&rsp);
            let parts = rsp.parts.clone();
            let bytes = body(rsp).await?;
            if parts.status.is_success() {
                return Ok((parts, bytes));
            }
            let problem: Problem = serde_json::from_slice(&bytes)?;
            tries -= 1;
            if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce") && tries > 0
            {
                if let Some(n) = next {
                    nonce = n;
                    continue;
                }
            }
            return Err(instant_acme::Error::Api(problem));
        }
    }

    /// The directory's `meta` object (RFC 8555 §7.1.1), `null` when absent.
    pub(crate) fn meta(&self) -> &Value {
        &self.dir.meta
    }

    /// POST-as-GET (§6.3) of `url` for `account`: the raw JSON object, with
    /// every member the CA sent (instant-acme keeps only those it knows).
    pub(crate) async fn post_as_get(
        &self,
        url: &str,
        key: &JwsKey,
        account: &str,
    ) -> Result<Value, instant_acme::Error> {
        let (_, bytes) = self.post(url, key, Some(account), b"").await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The URL of the account whose key is `key`, or `None` when the CA
    /// knows no account for it (newAccount with `onlyReturnExisting`).
    pub(crate) async fn find_account(
        &self,
        key: &JwsKey,
    ) -> Result<Option<String>, instant_acme::Error> {
        let payload = json!({ "onlyReturnExisting": true }).to_string();
        match self
            .post(&self.dir.new_account, key, None, payload.as_bytes())
            .await
        {
            Ok((parts, _)) => Ok(parts
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)),
            Err(instant_acme::Error::Api(p)) if is_unknown_account(&p) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Changes the key of `account` from `old` to `new` (§7.3.5): the inner
    /// JWS signed by the new key, the outer by the old one.
    pub(crate) async fn key_change(
        &self,
        account: &str,
        old: &JwsKey,
        new: &JwsKey,
    ) -> Result<(), instant_acme::Error> {
        let url = self
            .dir
            .key_change
            .as_deref()
            .ok_or(instant_acme::Error::Unsupported("keyChange"))?;
        let inner_header = json!({ "alg": new.alg(), "jwk": new.jwk(), "url": url });
        let inner_payload = json!({ "account": account, "oldKey": old.jwk() }).to_string();
        let inner = new.jws(&inner_header, inner_payload.as_bytes())?;
        self.post(url, old, Some(account), inner.to_string().as_bytes())
            .await
            .map(|_| ())
    }

    /// Revokes a certificate with a request signed by its own key (§7.6).
    pub(crate) async fn revoke_with_certificate_key(
        &self,
        request: &instant_acme::RevocationRequest<'_>,
        key: &JwsKey,
    ) -> Result<(), instant_acme::Error> {
        let url = self
            .dir
            .revoke_cert
            .as_deref()
            .ok_or(instant_acme::Error::Unsupported("revokeCert"))?;
        let payload = serde_json::to_vec(request)?;
        self.post(url, key, None, &payload).await.map(|_| ())
    }
}

/// `accountDoesNotExist` (§7.3.1): what a CA answers for a key it knows no
/// account for, also an account's old key after a key change.
fn is_unknown_account(p: &Problem) -> bool {
    p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
}

fn nonce_of(rsp: &instant_acme::BytesResponse) -> Option<String> {
    rsp.parts
        .headers
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_rfc7638s_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({ "e": "AQAB", "kty": "RSA", "n": n });
        assert_eq!(
            thumbprint_of(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_account_key_is_es256() {
        let (_, der) = instant_acme::Key::generate_pkcs8().expect("key");
        let ours = JwsKey::from_pkcs8(der.secret_pkcs8_der()).expect("p256");
        assert_eq!(ours.kind(), "ecdsa-p256");
        let jwk = ours.jwk();
        assert_eq!(jwk["kty"], "EC");
        let x = jwk["x"].as_str().expect("x");
        assert_eq!(B64.decode(x).expect("base64url").len(), 32);
        assert_eq!(ours.thumbprint().len(), 43);
    }

    #[test]
    fn rsa_and_p384_certificate_keys_sign() {
        for kind in [
            crate::inventory::KeyType::EcdsaP384,
            crate::inventory::KeyType::Rsa2048,
        ] {
            let kp = super::super::keys::generate(kind).expect("key");
            let k = JwsKey::from_pkcs8(&kp.serialize_der()).expect("supported");
            let jws = k.jws(&json!({"alg": k.alg()}), b"{}").expect("sign");
            assert!(jws["signature"].as_str().expect("signature").len() > 80);
            if let JwsKey::Rs256(_) = k {
                let jwk = k.jwk();
                let n = B64
                    .decode(jwk["n"].as_str().expect("n"))
                    .expect("base64url");
                assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero");
                assert_eq!(k.jwk()["e"], "AQAB");
            }
        }
    }
}
