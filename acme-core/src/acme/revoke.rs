//! Revocation (RFC 8555 §7.6) of a stored version, and the store's record
//! of what was revoked (`state/<name>/revocations.json`).
//!
//! `keyCompromise` is signed with the certificate's own key (a `jwk`
//! header, through [`super::jws`]); every other reason with the account
//! key, through instant-acme's [`instant_acme::Account::revoke`].

use std::str::FromStr;

use instant_acme::{Account, RevocationRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::jws::{JwsClient, JwsKey};
use super::{account, client, AcmeError, CaConfig, Result};
use crate::inventory::Inventory;
use crate::store::{Store, StoreError};

/// The state record's name.
pub(crate) const RECORD: &str = "revocations";

/// Why a certificate is revoked (RFC 5280 §5.3.1), spelled as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key is (or may be) known to someone else: the request is
    /// signed with the certificate's own key.
    KeyCompromise,
    /// The subject's name or other information changed.
    AffiliationChanged,
    /// A newer certificate replaces it.
    Superseded,
    /// The names are no longer in use.
    CessationOfOperation,
}

impl RevocationReason {
    /// Every reason, as the CLI offers them.
    pub const ALL: [RevocationReason; 5] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
    ];

    /// The RFC 5280 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
        }
    }

    fn acme(self) -> instant_acme::RevocationReason {
        use instant_acme::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revocation reason that is none of [`RevocationReason::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("`{given}` is not a revocation reason; use one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation")]
pub struct UnknownReason {
    /// What was given.
    pub given: String,
}

impl FromStr for RevocationReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, UnknownReason> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownReason { given: s.into() })
    }
}

/// Which key signed a revocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignedBy {
    /// The ACME account key (`kid` header).
    Account,
    /// The certificate's own key (`jwk` header).
    CertificateKey,
}

/// One revoked version, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Revocation {
    /// The version (directory name).
    pub version: String,
    /// Its serial, lower-case hex.
    pub serial: String,
    /// The reason given to the CA.
    pub reason: RevocationReason,
    /// Which key signed the request.
    pub signed_by: SignedBy,
    /// The CA that revoked it.
    pub directory: String,
    /// When the CA accepted the request.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The CA said it was revoked already (`alreadyRevoked`).
    #[serde(default)]
    pub already: bool,
}

/// The revocations the store recorded for certificate `name`, oldest first.
pub fn revocations(store: &Store, name: &str) -> Result<Vec<Revocation>, StoreError> {
    Ok(store.read_state(name, RECORD)?.unwrap_or_default())
}

/// The nodes whose deployment record says they have `version` of `name`
/// live (certctl's own records: what it deployed and verified).
pub fn nodes_with_version(
    store: &Store,
    name: &str,
    version: &str,
) -> Result<Vec<String>, StoreError> {
    let mut nodes = Vec::new();
    for record in store.state_records(name)? {
        if let Some(node) = record.strip_prefix("node-") {
            if let Some(s) = crate::deploy::NodeState::read(store, name, node)? {
                if s.version.as_deref() == Some(version) {
                    nodes.push(node.to_string());
                }
            }
        }
    }
    Ok(nodes)
}

/// Revokes `version` of certificate `name` at the CA that issued it and
/// records it in the store. `keyCompromise` is signed with the
/// certificate's own key, other reasons with the account key. A CA that
/// says the certificate is revoked already counts as success.
///
/// This does not look at the nodes: the caller refuses a version still
/// served ([`nodes_with_version`]).
pub async fn revoke(
    inv: &Inventory,
    store: &Store,
    name: &str,
    version: &str,
    reason: RevocationReason,
) -> Result<Revocation> {
    let release = store
        .read_release(name, version)
        .map_err(|source| AcmeError::Store { source })?;
    let ca = [Some(CaConfig::primary(inv)), CaConfig::fallback(inv)]
        .into_iter()
        .flatten()
        .find(|c| c.directory == release.meta.directory)
        .ok_or_else(|| AcmeError::IssuerGone {
            name: name.to_string(),
            version: version.to_string(),
            directory: release.meta.directory.clone(),
        })?;
    let server = |step: &'static str| {
        let directory = ca.directory.clone();
        move |source| AcmeError::Server {
            directory,
            step,
            source,
        }
    };
    let cert_pem = release
        .read("cert")
        .map_err(|source| AcmeError::Store { source })?;
    let der = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .next()
        .and_then(|c| c.ok())
        .ok_or(AcmeError::NoCertificate)?;
    let request = RevocationRequest {
        certificate: &der,
        reason: Some(reason.acme()),
    };
    let http = || -> Result<Box<dyn instant_acme::HttpClient>> {
        Ok(Box::new(client::CaClient::new(
            ca.ca_bundle.as_deref(),
            client::RetryLog::default(),
            client::Health::default(),
        )?))
    };
    let signed_by = if reason == RevocationReason::KeyCompromise {
        SignedBy::CertificateKey
    } else {
        SignedBy::Account
    };
    let res = match signed_by {
        SignedBy::CertificateKey => {
            let pem = crate::secret::Secret::new(
                release
                    .read("privkey")
                    .map_err(|source| AcmeError::Store { source })?,
            );
            let key = super::keys::load(&pem)?;
            let key = JwsKey::from_pkcs8(&key.serialize_der()).map_err(|source| {
                AcmeError::UnsupportedCertificateKey {
                    name: name.to_string(),
                    source,
                }
            })?;
            let jws = JwsClient::connect(http()?, &ca.directory)
                .await
                .map_err(server("loading the directory"))?;
            jws.revoke_with_certificate_key(&request, &key).await
        }
        SignedBy::Account => {
            account::settle_rollover(&ca, store).await?;
            let Some(bytes) = store
                .load_account(&ca.directory)
                .map_err(|source| AcmeError::Store { source })?
            else {
                return Err(AcmeError::NoAccount {
                    directory: ca.directory.clone(),
                });
            };
            let saved = account::decode(&ca.directory, &bytes)?;
            let acct = Account::builder_with_http(http()?)
                .from_credentials(saved.credentials)
                .await
                .map_err(server("loading the directory"))?;
            acct.revoke(&request).await
        }
    };
    let already = match res {
        Ok(()) => false,
        Err(instant_acme::Error::Api(p))
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:alreadyRevoked") =>
        {
            true
        }
        Err(e) => return Err(server("revoking the certificate")(e)),
    };
    let rec = Revocation {
        version: version.to_string(),
        serial: release.meta.serial.clone(),
        reason,
        signed_by,
        directory: ca.directory.clone(),
        at: OffsetDateTime::now_utc(),
        already,
    };
    let mut all = revocations(store, name).map_err(|source| AcmeError::Store { source })?;
    all.retain(|r| r.version != version);
    all.push(rec.clone());
    store
        .write_state(name, RECORD, &all)
        .map_err(|source| AcmeError::Store { source })?;
    tracing::info!(certificate = name, version, reason = %reason, "revoked");
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_their_rfc_names() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().expect("parse"), r);
        }
        assert_eq!(
            "keycompromise"
                .parse::<RevocationReason>()
                .expect("any case"),
            RevocationReason::KeyCompromise
        );
        let e = "stolen"
            .parse::<RevocationReason>()
            .expect_err("not a reason");
        assert!(e.to_string().contains("keyCompromise"), "{e}");
    }
}
