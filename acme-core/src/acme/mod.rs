//! ACME (RFC 8555) with the DNS-01 challenge only: the account, orders, and
//! the renewal run that decides what is due, issues it (all orders and all
//! challenges of an order concurrently), and installs the result in the store.
//!
//! The flow of one order: new order (§7.4, with `replaces` for ARI, RFC 9773
//! §5) → for every pending authorization, the DNS-01 key authorization digest
//! (§8.4) → every TXT record presented at once → every record propagated to
//! every authoritative server → every challenge answered (§7.5.1) → poll until
//! ready → finalize with a fresh CSR → download the chain → clean up the TXT
//! records (always, also on failure) → install atomically in the store.
//!
//! - `order`: [`Issuer`], one account at one CA, and the flow of one order.
//! - `account`: the stored account and the read-only [`look_up_account`].
//! - `journal`: the TXT records an order may have left, swept by the next run.
//! - `pool`: the primary and fallback CA, connected on first use.
//! - `run`: [`renew`], deciding what is due and issuing it through a small
//!   "issue this certificate" trait (the pool, or a fake in the tests).
//! - `renewal`: when a certificate is due and why ([`RenewalPolicy`],
//!   [`DueReason`]), and its renewal record ([`RenewalRecord`]).

mod account;
mod client;
mod journal;
mod jws;
mod keys;
mod order;
pub mod persist;
mod pool;
pub(crate) mod renewal;
mod revoke;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::inventory::Inventory;

pub use account::{
    look_up_account, roll_over_account_key, settle_rollover, show_account, AccountInfo,
    AccountKeyRollover, AccountLookup, RolledOver, Settled,
};
pub use jws::UnsupportedKey;
pub use order::Issuer;
pub use renewal::{due_at, AriWindow, DueReason, RenewalPolicy, RenewalRecord, RenewalWindow};
pub use revoke::{
    nodes_with_version, revocations, revoke, Revocation, RevocationReason, SignedBy, UnknownReason,
};
pub use run::{renew, RenewOptions, RenewOutcome, RenewResult};

/// An ACME failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA bundle could not be read.
    #[error("cannot use CA bundle {path}")]
    CaBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error("TLS configuration for the ACME client")]
    Tls {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The CA could not be reached or answered with an error.
    #[error("ACME server {directory} failed while {step} (check that account.directory is right and reachable)")]
    Server {
        /// Directory URL.
        directory: String,
        /// What we were doing.
        step: &'static str,
        /// instant-acme's error (may hold the CA's problem document).
        #[source]
        source: instant_acme::Error,
    },
    /// The CA rate-limited us or asked us to wait.
    #[error("ACME server {directory} asks to retry after {retry_after} ({}); certctl will not ask again before then", order::problem_text(.problem))]
    RateLimited {
        /// Directory URL.
        directory: String,
        /// When we may ask again.
        retry_after: OffsetDateTime,
        /// The CA's problem document (RFC 8555 §6.7), boxed to keep the error small.
        problem: Box<instant_acme::Problem>,
    },
    /// The order became invalid.
    #[error("ACME server {directory} refused the order for `{name}`: {}", order::problems_text(*.status, .problems))]
    OrderInvalid {
        /// Directory URL.
        directory: String,
        /// Certificate name.
        name: String,
        /// The order's status (RFC 8555 §7.1.6).
        status: instant_acme::OrderStatus,
        /// The CA's problem documents: the order's, then each failed challenge's.
        problems: Vec<OrderProblem>,
    },
    /// An authorization of a new order is neither pending nor valid.
    #[error(
        "ACME server {directory} refused the order for `{identifier}`: authorization is {status:?}"
    )]
    AuthorizationInvalid {
        /// Directory URL.
        directory: String,
        /// The identifier it authorizes.
        identifier: String,
        /// Its status (RFC 8555 §7.1.6).
        status: instant_acme::AuthorizationStatus,
    },
    /// The CA asked to validate an identifier that is not a domain name.
    #[error("ACME server {directory} asks to validate `{identifier}`, which is not a domain name certctl can solve a dns-01 challenge for")]
    BadIdentifier {
        /// Directory URL.
        directory: String,
        /// The identifier, as the CA sent it.
        identifier: String,
    },
    /// dns-persist-01 is wanted, cannot be used, and there is no fallback.
    #[error("dns-persist-01 cannot be used for {identifier} at {directory} and the persist solver has no `fallback` (publish the record with `certctl persist-record`, or name a dns-01 solver as `fallback`)")]
    Persist {
        /// Directory URL.
        directory: String,
        /// The identifier.
        identifier: String,
        /// Why not.
        #[source]
        why: Box<persist::NotUsed>,
    },
    /// No account is stored for this CA (and none was to be registered).
    #[error("no ACME account is stored for {directory}: `certctl persist-record` registers one")]
    NoStoredAccount {
        /// Directory URL.
        directory: String,
    },
    /// The CA's directory does not describe a dns-persist-01 record.
    #[error("ACME server {directory} does not describe a dns-persist-01 record")]
    PersistUnsupported {
        /// Directory URL.
        directory: String,
        /// What is missing.
        #[source]
        source: persist::IdentityError,
    },
    /// The CA offered no dns-01 challenge for an identifier.
    #[error("ACME server {directory} offers no dns-01 challenge for {identifier}")]
    NoDns01 {
        /// Directory URL.
        directory: String,
        /// The identifier.
        identifier: String,
    },
    /// The order did not complete in time.
    #[error(
        "order for `{name}` at {directory} did not complete within {waited:?} (status {status:?})"
    )]
    Timeout {
        /// Directory URL.
        directory: String,
        /// Certificate name.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// The last order status seen.
        status: instant_acme::OrderStatus,
    },
    /// Key generation, loading or the CSR failed.
    #[error("key or CSR: {step} failed")]
    Key {
        /// What failed.
        step: KeyStep,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A stored key is not PEM text.
    #[error("key or CSR: the stored key is not PEM text")]
    KeyText {
        /// Where the bytes stop being UTF-8.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The issued certificate could not be parsed.
    #[error("the CA returned a certificate certctl cannot parse")]
    BadCertificate {
        /// The parser's error.
        #[source]
        source: crate::inspect::InspectError,
    },
    /// The CA's answer held no certificate.
    #[error("the CA returned no certificate")]
    NoCertificate,
    /// Stored account credentials are unreadable.
    #[error("stored ACME account for {directory} is unreadable; move the file in <store>/accounts away to register a new account")]
    BadAccount {
        /// Directory URL.
        directory: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored account key cannot be used.
    #[error("stored ACME account key for {directory} is unusable; move the file in <store>/accounts away to register a new account")]
    BadAccountKey {
        /// Directory URL.
        directory: String,
        /// instant-acme's error.
        #[source]
        source: instant_acme::Error,
    },
    /// The account could not be stored.
    #[error("cannot store the ACME account for {directory}")]
    SaveAccount {
        /// Directory URL.
        directory: String,
        /// The store's error.
        #[source]
        source: crate::store::StoreError,
    },
    /// The EAB key cannot be read.
    #[error("cannot read the EAB hmac key")]
    EabKey {
        /// Why.
        #[source]
        source: crate::secret::SecretError,
    },
    /// The EAB key is not base64url (the decoder's error is not kept: it
    /// would quote a byte of the secret).
    #[error("EAB hmac key is not base64url")]
    BadEabKey,
    /// The stored account key is not a key certctl can sign with.
    #[error("stored ACME account key for {directory} is of a kind certctl cannot sign with; move the file in <store>/accounts away to register a new account")]
    UnsupportedAccountKey {
        /// Directory URL.
        directory: String,
        /// What the key is not.
        #[source]
        source: jws::UnsupportedKey,
    },
    /// The store could not be read or written.
    #[error("the store failed")]
    Store {
        /// The store's error.
        #[source]
        source: crate::store::StoreError,
    },
    /// The CA that issued a version is no longer in the inventory.
    #[error("version {version} of `{name}` was issued by {directory}, which is neither account.directory nor the fallback; put that directory back to revoke it")]
    IssuerGone {
        /// Certificate name.
        name: String,
        /// Version.
        version: String,
        /// The issuing CA's directory URL.
        directory: String,
    },
    /// A certificate's key cannot sign a revocation request.
    #[error("the key of `{name}` cannot sign a revocation request")]
    UnsupportedCertificateKey {
        /// Certificate name.
        name: String,
        /// What the key is not.
        #[source]
        source: jws::UnsupportedKey,
    },
    /// The command needs an account and the store has none for the CA.
    #[error("no ACME account is stored for {directory}; `certctl issue` registers one")]
    NoAccount {
        /// Directory URL.
        directory: String,
    },
    /// The account in the store is not known to the CA (RFC 8555 §7.3.1).
    #[error("the account stored for {directory} does not exist at the CA (deactivated, or the CA was reset); move its file in <store>/accounts away so the next renewal registers a new one")]
    AccountUnknown {
        /// Directory URL.
        directory: String,
    },
}

/// What was being done with a key when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStep {
    /// Generating a fresh certificate key.
    Generate,
    /// Loading the stored key for reuse.
    Load,
    /// Taking the certificate's names into the CSR.
    CsrNames,
    /// Signing the CSR.
    CsrSign,
}

impl std::fmt::Display for KeyStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyStep::Generate => "generating the key",
            KeyStep::Load => "loading the stored key",
            KeyStep::CsrNames => "putting the names into the CSR",
            KeyStep::CsrSign => "signing the CSR",
        })
    }
}

/// One problem document of a refused order (RFC 8555 §6.7).
#[derive(Debug, Clone)]
pub struct OrderProblem {
    /// The identifier whose challenge failed; `None` for the order's own error.
    pub identifier: Option<String>,
    /// The CA's problem document.
    pub problem: instant_acme::Problem,
}

/// Shorthand.
type Result<T, E = AcmeError> = std::result::Result<T, E>;

/// Which CA to talk to and how.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// Directory URL.
    pub directory: String,
    /// Extra trust anchors for its HTTPS endpoint.
    pub ca_bundle: Option<PathBuf>,
    /// Contacts.
    pub contact: Vec<String>,
    /// EAB, resolved: key id and the HMAC key source.
    pub eab: Option<crate::inventory::EabConfig>,
    /// Profile to request.
    pub profile: Option<String>,
}

impl CaConfig {
    /// The primary CA of an inventory.
    pub fn primary(inv: &Inventory) -> Self {
        let a = &inv.account;
        Self {
            directory: a.directory.clone(),
            ca_bundle: a.ca_bundle.clone(),
            contact: a.contact.clone(),
            eab: a.eab.clone(),
            profile: a.profile.clone(),
        }
    }

    /// The fallback CA of an inventory, if configured.
    pub fn fallback(inv: &Inventory) -> Option<Self> {
        let a = &inv.account;
        a.fallback.as_ref().map(|f| Self {
            directory: f.directory.clone(),
            ca_bundle: f.ca_bundle.clone(),
            contact: a.contact.clone(),
            eab: f.eab.clone(),
            profile: None,
        })
    }
}
