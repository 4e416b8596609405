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

mod client;
mod keys;
pub mod renewal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::dns::{DnsSolver, TxtRecord};
use crate::inventory::{CertificateConfig, Inventory};
use crate::store::{Audit, Damage, Material, Release, ReleaseMeta, Store};
use crate::DomainName;

pub use renewal::{due_at, AriWindow, DueReason, RenewalRecord};

/// How often a request rejected for a bad nonce (§6.5) is sent again, on top
/// of instant-acme's own three tries.
const NONCE_RETRIES: u32 = 8;

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
    #[error("TLS configuration for the ACME client: {0}")]
    Tls(String),
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
    #[error("ACME server {directory} asks to retry after {retry_after} ({detail}); certctl will not ask again before then")]
    RateLimited {
        /// Directory URL.
        directory: String,
        /// When we may ask again.
        retry_after: OffsetDateTime,
        /// The CA's problem detail.
        detail: String,
    },
    /// An authorization or the order became invalid.
    #[error("ACME server {directory} refused the order for `{name}`: {detail}")]
    OrderInvalid {
        /// Directory URL.
        directory: String,
        /// Certificate name.
        name: String,
        /// The CA's problem details, per identifier.
        detail: String,
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
        "order for `{name}` at {directory} did not complete within {waited:?} (status {status})"
    )]
    Timeout {
        /// Directory URL.
        directory: String,
        /// Certificate name.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// The last order status seen.
        status: String,
    },
    /// Key generation or CSR failed.
    #[error("key or CSR: {reason}")]
    Key {
        /// What failed.
        reason: String,
    },
    /// The issued certificate could not be parsed.
    #[error("the CA returned a certificate certctl cannot parse: {reason}")]
    BadCertificate {
        /// Parser message.
        reason: String,
    },
    /// Stored account credentials are unreadable.
    #[error("stored ACME account for {directory} is unreadable ({reason}); move the file in <store>/accounts away to register a new account")]
    BadAccount {
        /// Directory URL.
        directory: String,
        /// Parser message.
        reason: String,
    },
    /// The EAB key is not base64url.
    #[error("EAB hmac key is not base64url")]
    BadEabKey,
    /// The account in the store is not known to the CA (RFC 8555 §7.3.1).
    #[error("the account stored for {directory} does not exist at the CA (deactivated, or the CA was reset); move its file in <store>/accounts away so the next renewal registers a new one")]
    AccountUnknown {
        /// Directory URL.
        directory: String,
    },
}

/// Shorthand.
type Result<T, E = AcmeError> = std::result::Result<T, E>;

/// What the store keeps for an account.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    credentials: AccountCredentials,
    #[serde(default)]
    contact: Vec<String>,
}

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

/// A registered account at one CA, ready to order.
pub struct Issuer {
    account: Account,
    directory: String,
    profile: Option<String>,
    log: client::RetryLog,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// Retries `$call` while the CA rejects the nonce (RFC 8555 §6.5).
macro_rules! retry_nonce {
    ($call:expr) => {{
        let mut tries = 0;
        loop {
            match $call {
                Err(instant_acme::Error::Api(p)) if is_bad_nonce(&p) && tries < NONCE_RETRIES => {
                    tries += 1;
                    tracing::debug!(tries, "bad nonce; sending again");
                }
                other => break other,
            }
        }
    }};
}

fn is_bad_nonce(p: &instant_acme::Problem) -> bool {
    p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce")
}

impl Issuer {
    /// Loads the account for `ca` from the store, or registers one (and stores
    /// it, mode 0600); updates the contacts when the inventory changed them.
    pub async fn connect(ca: &CaConfig, store: &Store) -> Result<Self> {
        Self::connect_with(ca, store, client::Health::default()).await
    }

    /// [`Issuer::connect`], sharing `health` with the run's other requests to
    /// this CA, so a CA that answers nothing is given up on once per run.
    async fn connect_with(ca: &CaConfig, store: &Store, health: client::Health) -> Result<Self> {
        let log = client::RetryLog::default();
        let http = || -> Result<Box<dyn instant_acme::HttpClient>> {
            Ok(Box::new(client::CaClient::new(
                ca.ca_bundle.as_deref(),
                log.clone(),
                health.clone(),
            )?))
        };
        let server = |step: &'static str| {
            let directory = ca.directory.clone();
            move |source| AcmeError::Server {
                directory,
                step,
                source,
            }
        };
        let stored = store.load_account(&ca.directory).ok().flatten();
        let account = match stored {
            Some(bytes) => {
                let saved: StoredAccount =
                    serde_json::from_slice(bytes.expose()).map_err(|e| AcmeError::BadAccount {
                        directory: ca.directory.clone(),
                        reason: e.to_string(),
                    })?;
                let account = Account::builder_with_http(http()?)
                    .from_credentials(saved.credentials)
                    .await
                    .map_err(server("loading the directory"))?;
                if saved.contact != ca.contact {
                    let contacts: Vec<&str> = ca.contact.iter().map(String::as_str).collect();
                    retry_nonce!(account.update_contacts(&contacts).await)
                        .map_err(server("updating the account's contacts"))?;
                    // Same credentials, new contacts.
                    let again: StoredAccount =
                        serde_json::from_slice(bytes.expose()).map_err(|e| {
                            AcmeError::BadAccount {
                                directory: ca.directory.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                    save_account(store, &ca.directory, again.credentials, &ca.contact)?;
                    tracing::info!(directory = %ca.directory, "account contacts updated");
                }
                account
            }
            None => {
                let contacts: Vec<&str> = ca.contact.iter().map(String::as_str).collect();
                let eab = match &ca.eab {
                    Some(e) => {
                        let key = e.hmac_key().read().map_err(|_| AcmeError::BadEabKey)?;
                        use base64::Engine as _;
                        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(key.expose().trim_ascii_end())
                            .map_err(|_| AcmeError::BadEabKey)?;
                        Some(ExternalAccountKey::new(e.kid.clone(), &raw))
                    }
                    None => None,
                };
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, creds) = retry_nonce!(
                    Account::builder_with_http(http()?)
                        .create(&new, ca.directory.clone(), eab.as_ref())
                        .await
                )
                .map_err(server("registering the account"))?;
                save_account(store, &ca.directory, creds, &ca.contact)?;
                tracing::info!(directory = %ca.directory, "ACME account registered");
                account
            }
        };
        Ok(Self {
            account,
            directory: ca.directory.clone(),
            profile: ca.profile.clone(),
            log,
        })
    }

    /// Maps a failed request during `step` to [`AcmeError::RateLimited`]
    /// when the CA said so, else to [`AcmeError::Server`].
    fn server_error(&self, step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        let directory = self.directory.clone();
        let log = self.log.clone();
        move |source| {
            rate_limited(&directory, &log, &source).unwrap_or(AcmeError::Server {
                directory,
                step,
                source,
            })
        }
    }

    /// The directory URL.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The CA's suggested renewal window for `release` (RFC 9773), if the CA
    /// offers ARI. Returns the window and when to ask again.
    pub async fn renewal_window(&self, release: &Release) -> Result<Option<(AriWindow, Duration)>> {
        let Some(id) = release.meta.ari_id.as_deref() else {
            return Ok(None);
        };
        let Some((aki, serial)) = id.split_once('.') else {
            return Ok(None);
        };
        let cid = CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        };
        match self.account.renewal_info(&cid).await {
            Ok((info, again)) => Ok(Some((
                AriWindow {
                    start: info.suggested_window.start,
                    end: info.suggested_window.end,
                },
                again,
            ))),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(source) => Err(AcmeError::Server {
                directory: self.directory.clone(),
                step: "fetching renewal information",
                source,
            }),
        }
    }

    /// Orders a certificate for `cert`, solving its DNS-01 challenges with
    /// `solver`, and installs it in `store`. `previous` is the version it
    /// replaces (for ARI `replaces` and key reuse).
    pub async fn issue(
        &self,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        store: &Store,
        previous: Option<&Release>,
        order_timeout: Duration,
    ) -> Result<Release, crate::Error> {
        let span = tracing::info_span!("order", certificate = %cert.name);
        self.issue_inner(cert, solver, store, previous, order_timeout)
            .instrument(span)
            .await
    }

    async fn issue_inner(
        &self,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        store: &Store,
        previous: Option<&Release>,
        order_timeout: Duration,
    ) -> Result<Release, crate::Error> {
        let started = Instant::now();
        let server = |step| self.server_error(step);
        let identifiers: Vec<Identifier> = cert
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.as_str().to_string()))
            .collect();
        let profile = cert.profile.as_deref().or(self.profile.as_deref());
        let replaces = previous
            .and_then(|p| p.meta.ari_id.as_deref())
            .and_then(|id| id.split_once('.'))
            .map(|(aki, serial)| CertificateIdentifier {
                authority_key_identifier: aki.to_string().into(),
                serial: serial.to_string().into(),
            });
        let plain = || match profile {
            Some(p) => NewOrder::new(&identifiers).profile(p),
            None => NewOrder::new(&identifiers),
        };
        let new_order = plain();
        let with_replaces = replaces.map(|r| plain().replaces(r));
        let mut order = match with_replaces {
            // Only a CA with ARI accepts `replaces`; others get a plain order.
            Some(o) => match retry_nonce!(self.account.new_order(&o).await) {
                Err(instant_acme::Error::Unsupported(_)) => {
                    retry_nonce!(self.account.new_order(&new_order).await)
                }
                other => other,
            },
            None => retry_nonce!(self.account.new_order(&new_order).await),
        }
        .map_err(server("creating the order"))?;
        tracing::debug!(url = order.url(), "order created");

        let pending = self.pending_challenges(&mut order).await?;
        // Journal the records before they exist, so a run killed before its
        // cleanup has them removed by the next run.
        let journal: Vec<JournalEntry> = pending
            .iter()
            .map(|(d, v)| JournalEntry {
                domain: d.as_str().to_string(),
                value: v.clone(),
            })
            .collect();
        store.write_state(cert.name.as_str(), TXT_JOURNAL, &journal)?;
        let mut presented: Vec<TxtRecord> = Vec::new();
        let result = self
            .solve_and_finalize(
                cert,
                solver,
                &mut order,
                &pending,
                &mut presented,
                store,
                previous,
                order_timeout,
                started,
            )
            .await;
        // TXT records go away whatever happened.
        let cleanups = futures::future::join_all(presented.iter().map(|r| solver.cleanup(r))).await;
        let mut clean = true;
        for (r, c) in presented.iter().zip(cleanups) {
            if let Err(e) = c {
                clean = false;
                tracing::warn!(fqdn = %r.fqdn, error = %crate::error::chain(&e), "TXT record cleanup failed; the next run retries it");
            }
        }
        if clean {
            store.write_state(cert.name.as_str(), TXT_JOURNAL, &Vec::<JournalEntry>::new())?;
        }
        result
    }

    /// Walks the order's authorizations and returns, for each pending one,
    /// the domain and the TXT value its dns-01 challenge wants.
    async fn pending_challenges(&self, order: &mut Order) -> Result<Vec<(DomainName, String)>> {
        let mut tries = 0;
        'again: loop {
            let mut out = Vec::new();
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = match a {
                    Ok(a) => a,
                    Err(instant_acme::Error::Api(p))
                        if is_bad_nonce(&p) && tries < NONCE_RETRIES =>
                    {
                        tries += 1;
                        continue 'again;
                    }
                    Err(source) => {
                        return Err(AcmeError::Server {
                            directory: self.directory.clone(),
                            step: "fetching authorizations",
                            source,
                        })
                    }
                };
                match a.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(AcmeError::OrderInvalid {
                            directory: self.directory.clone(),
                            name: a.identifier().to_string(),
                            detail: format!("authorization is {other:?}"),
                        })
                    }
                }
                let ident = a.identifier().to_string();
                let Some(ch) = a.challenge(ChallengeType::Dns01) else {
                    return Err(AcmeError::NoDns01 {
                        directory: self.directory.clone(),
                        identifier: ident,
                    });
                };
                let value = ch.key_authorization().dns_value();
                let domain = DomainName::new(&ident).map_err(|reason| AcmeError::OrderInvalid {
                    directory: self.directory.clone(),
                    name: ident.clone(),
                    detail: reason.to_string(),
                })?;
                out.push((domain, value));
            }
            return Ok(out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn solve_and_finalize(
        &self,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        order: &mut Order,
        pending: &[(DomainName, String)],
        presented: &mut Vec<TxtRecord>,
        store: &Store,
        previous: Option<&Release>,
        order_timeout: Duration,
        started: Instant,
    ) -> Result<Release, crate::Error> {
        let server = |step| self.server_error(step);
        // Present every record at once; keep what succeeded for cleanup.
        let results = futures::future::join_all(pending.iter().map(|(d, v)| {
            solver
                .present(d, v)
                .instrument(tracing::info_span!("dns", domain = %d))
        }))
        .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(rec) => presented.push(rec),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }
        let waits =
            futures::future::join_all(presented.iter().map(|r| solver.wait_propagated(r))).await;
        if let Some(e) = waits.into_iter().find_map(Result::err) {
            return Err(e.into());
        }
        tracing::debug!(records = presented.len(), elapsed = ?started.elapsed(), "TXT records visible on every authoritative server");

        // Answer every dns-01 challenge.
        let mut tries = 0;
        'again: loop {
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(server("fetching authorizations"))?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                let Some(mut ch) = a.challenge(ChallengeType::Dns01) else {
                    continue;
                };
                match ch.set_ready().await {
                    Ok(()) => {}
                    Err(instant_acme::Error::Api(p))
                        if is_bad_nonce(&p) && tries < NONCE_RETRIES =>
                    {
                        tries += 1;
                        continue 'again;
                    }
                    Err(e) => return Err(server("answering a challenge")(e).into()),
                }
            }
            break;
        }

        let remaining = order_timeout.saturating_sub(started.elapsed());
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(5))
            .backoff(2.0)
            .timeout(remaining);
        let status = retry_nonce!(order.poll_ready(&policy).await);
        let status = match status {
            Ok(s) => s,
            Err(instant_acme::Error::Timeout(_)) => {
                return Err(AcmeError::Timeout {
                    directory: self.directory.clone(),
                    name: cert.name.to_string(),
                    waited: started.elapsed(),
                    status: format!("{:?}", order.state().status),
                }
                .into())
            }
            Err(e) => return Err(server("waiting for validation")(e).into()),
        };
        if status != OrderStatus::Ready {
            let detail = self.failure_detail(order).await;
            return Err(AcmeError::OrderInvalid {
                directory: self.directory.clone(),
                name: cert.name.to_string(),
                detail,
            }
            .into());
        }

        // Key: fresh unless reuse is asked and the old one fits.
        let reused = match (cert.reuse_key, previous) {
            (true, Some(p)) => {
                let pem = crate::secret::Secret::new(p.read("privkey")?);
                keys::load(&pem)
                    .ok()
                    .filter(|k| keys::kind_of(k) == Some(cert.key))
            }
            _ => None,
        };
        let key = match reused {
            Some(k) => k,
            None => keys::generate(cert.key)?,
        };
        let names: Vec<String> = cert
            .domains
            .iter()
            .map(|d| d.as_str().to_string())
            .collect();
        let csr = keys::csr(&names, &key)?;
        retry_nonce!(order.finalize_csr(&csr).await).map_err(server("finalizing the order"))?;
        let remaining = order_timeout.saturating_sub(started.elapsed());
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(5))
            .backoff(2.0)
            .timeout(remaining);
        let chain_pem = retry_nonce!(order.poll_certificate(&policy).await)
            .map_err(server("downloading the certificate"))?;

        let (leaf_pem, rest_pem) = split_chain(&chain_pem);
        let facts = leaf_facts(&leaf_pem)?;
        let material = Material {
            cert_pem: leaf_pem,
            chain_pem: rest_pem,
            key_pem: keys::to_pem(&key),
            meta: ReleaseMeta {
                domains: names,
                key_type: cert.key,
                serial: facts.serial,
                issuer: facts.issuer,
                not_before: facts.not_before,
                not_after: facts.not_after,
                directory: self.directory.clone(),
                ari_id: facts.ari_id,
                stored_at: OffsetDateTime::now_utc(),
            },
        };
        let release = store.install(&cert.name, &material)?;
        tracing::info!(version = %release.version, elapsed = ?started.elapsed(), "certificate issued and stored");
        Ok(release)
    }

    /// The CA's reasons for an invalid order, per identifier.
    async fn failure_detail(&self, order: &mut Order) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &order.state().error {
            parts.push(problem_text(p));
        }
        let mut authzs = order.authorizations();
        while let Some(Ok(a)) = authzs.next().await {
            if a.status == AuthorizationStatus::Invalid {
                for c in &a.challenges {
                    if let Some(e) = &c.error {
                        parts.push(format!("{}: {}", a.identifier(), problem_text(e)));
                    }
                }
            }
        }
        if parts.is_empty() {
            format!("order is {:?}", order.state().status)
        } else {
            parts.join("; ")
        }
    }
}

fn problem_text(p: &instant_acme::Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .map(|t| t.trim_start_matches("urn:ietf:params:acme:error:"))
        .unwrap_or("error");
    match &p.detail {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_string(),
    }
}

/// Turns a rate-limit problem (or any answer that carried Retry-After) into
/// [`AcmeError::RateLimited`].
fn rate_limited(
    directory: &str,
    log: &client::RetryLog,
    e: &instant_acme::Error,
) -> Option<AcmeError> {
    let instant_acme::Error::Api(p) = e else {
        return None;
    };
    let limited = p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited")
        || p.status == Some(429)
        || p.status == Some(503);
    if !limited {
        return None;
    }
    let at = log
        .latest()
        .map(OffsetDateTime::from)
        // No header: a conservative default rather than hammering.
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::hours(1));
    Some(AcmeError::RateLimited {
        directory: directory.to_string(),
        retry_after: at,
        detail: problem_text(p),
    })
}

fn save_account(
    store: &Store,
    directory: &str,
    credentials: AccountCredentials,
    contact: &[String],
) -> Result<(), AcmeError> {
    let json = serde_json::to_vec(&StoredAccount {
        credentials,
        contact: contact.to_vec(),
    })
    .map_err(|e| AcmeError::BadAccount {
        directory: directory.to_string(),
        reason: e.to_string(),
    })?;
    store
        .save_account(directory, &json)
        .map_err(|e| AcmeError::BadAccount {
            directory: directory.to_string(),
            reason: crate::error::chain(&e),
        })
}

/// Splits a PEM chain into the leaf and the rest.
fn split_chain(pem: &str) -> (String, String) {
    const END: &str = "-----END CERTIFICATE-----";
    match pem.find(END) {
        Some(i) => {
            let cut = i + END.len();
            let leaf = format!("{}\n", pem[..cut].trim_start());
            let rest = pem[cut..].trim_start().to_string();
            (leaf, rest)
        }
        None => (pem.to_string(), String::new()),
    }
}

/// Facts of the issued leaf, parsed the same way the report parses served
/// certificates (so serials and ARI identifiers compare equal).
fn leaf_facts(pem: &str) -> Result<crate::inspect::CertFacts> {
    crate::inspect::parse_pem_chain(pem.as_bytes())
        .map_err(|e| AcmeError::BadCertificate {
            reason: e.to_string(),
        })?
        .into_iter()
        .next()
        .ok_or_else(|| AcmeError::BadCertificate {
            reason: "no certificate in the answer".into(),
        })
}

/// State record listing TXT records that may exist in DNS.
const TXT_JOURNAL: &str = "txt-journal";

/// A TXT record an order created or was about to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    domain: String,
    value: String,
}

/// Removes TXT records left by a run that died before its cleanup: each is
/// presented again (a no-op if it exists) to learn where it lives, then removed.
async fn sweep_journal(
    store: &Store,
    name: &str,
    solver: &Arc<dyn DnsSolver>,
) -> Result<(), crate::Error> {
    let entries: Vec<JournalEntry> = store.read_state(name, TXT_JOURNAL)?.unwrap_or_default();
    if entries.is_empty() {
        return Ok(());
    }
    tracing::info!(
        certificate = name,
        records = entries.len(),
        "removing TXT records left by an interrupted run"
    );
    for e in &entries {
        let Ok(domain) = DomainName::new(&e.domain) else {
            continue;
        };
        let rec = solver.present(&domain, &e.value).await?;
        solver.cleanup(&rec).await?;
    }
    store.write_state(name, TXT_JOURNAL, &Vec::<JournalEntry>::new())?;
    Ok(())
}

/// What a renewal run is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RenewOptions {
    /// Only these certificates (all when empty).
    pub names: Vec<String>,
    /// Issue even if not due (and ignore a remembered Retry-After).
    pub force: bool,
    /// Decide and report, but order nothing.
    pub dry_run: bool,
}

/// The decision and result for one certificate.
#[derive(Debug)]
pub struct RenewOutcome {
    /// Certificate name.
    pub name: String,
    /// When it is (was) due and why, if it has a sound live version.
    pub due: Option<(OffsetDateTime, DueReason)>,
    /// What happened.
    pub result: RenewResult,
    /// Damaged store files found for this certificate (a damaged record
    /// moved aside says where in [`Damage::set_aside`]).
    pub damage: Vec<Damage>,
}

impl RenewOutcome {
    /// The damage this run did not repair: a damaged live version unless a
    /// new one was issued, a damaged record unless it was moved aside.
    pub fn unrepaired(&self) -> impl Iterator<Item = &Damage> {
        let issued = matches!(self.result, RenewResult::Issued { .. });
        self.damage.iter().filter(move |d| {
            if d.part.is_release() {
                !issued
            } else {
                d.set_aside.is_none()
            }
        })
    }
}

/// What happened to one certificate.
#[derive(Debug)]
#[non_exhaustive]
pub enum RenewResult {
    /// A new version was issued and is live.
    Issued {
        /// The new release.
        release: Release,
        /// Why it was due.
        reason: DueReason,
    },
    /// Not due yet.
    NotDue,
    /// Due, but `--dry-run`.
    WouldIssue {
        /// Why.
        reason: DueReason,
    },
    /// The CA asked us to wait.
    Deferred {
        /// Until when.
        until: OffsetDateTime,
    },
    /// Issuance failed.
    Failed {
        /// Why it was attempted.
        reason: DueReason,
        /// The error.
        error: crate::Error,
    },
}

/// Decides what is due among the inventory's certificates and issues it, all
/// orders concurrently (bounded by `renewal.concurrency`). One certificate's
/// failure is recorded in its outcome and in the store; the others go on.
pub async fn renew(
    inv: &Inventory,
    store: &Store,
    opts: &RenewOptions,
) -> Result<Vec<RenewOutcome>, crate::Error> {
    let wanted: std::collections::HashSet<&str> = opts.names.iter().map(String::as_str).collect();
    let certs: Vec<&CertificateConfig> = inv
        .certificates
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(c.name.as_str()))
        .collect();
    let primary = CaConfig::primary(inv);
    let fallback = CaConfig::fallback(inv);
    let issuers = IssuerPool::new(primary, fallback);

    let mut solvers: BTreeMap<&str, Arc<dyn DnsSolver>> = BTreeMap::new();
    let now = OffsetDateTime::now_utc();
    let mut plans = Vec::new();
    for cert in certs {
        if !opts.dry_run {
            let solver = match solvers.get(cert.solver.as_str()) {
                Some(s) => Some(s.clone()),
                None => crate::dns::solver(&cert.solver, &inv.solvers[&cert.solver])
                    .ok()
                    .inspect(|s| {
                        solvers.insert(cert.solver.as_str(), s.clone());
                    }),
            };
            if let Some(solver) = solver {
                if let Err(e) = sweep_journal(store, cert.name.as_str(), &solver).await {
                    tracing::warn!(certificate = %cert.name, error = %crate::error::chain(&e), "cannot remove leftover TXT records yet");
                }
            }
        }
        // A damaged live version is not built on (no key reuse, no ARI
        // `replaces`): a fresh one is issued. A damaged record is moved aside
        // and starts afresh.
        let audit = store.audit(cert.name.as_str());
        let previous = audit.sound().cloned();
        let Audit {
            renewal,
            mut damage,
            ..
        } = audit;
        for d in damage.iter_mut() {
            tracing::warn!(certificate = %cert.name, error = %crate::error::chain(&*d), "damaged store file");
            if !opts.dry_run && !d.part.is_release() {
                match store.set_aside(d) {
                    Ok(to) => {
                        tracing::warn!(certificate = %cert.name, to = %to.display(), "moved the damaged record aside; it starts afresh")
                    }
                    Err(e) => {
                        tracing::warn!(certificate = %cert.name, error = %crate::error::chain(&e), "cannot move the damaged record aside")
                    }
                }
            }
        }
        let record = renewal.unwrap_or_default();
        plans.push((cert, previous, record, damage));
    }

    // Decide.
    let mut outcomes = Vec::new();
    let mut todo = Vec::new();
    for (cert, previous, mut record, damage) in plans {
        let name = cert.name.to_string();
        let damaged =
            damage
                .iter()
                .find(|d| d.part.is_release())
                .map(|d| DueReason::StoreDamaged {
                    file: d.path.display().to_string(),
                });
        let (due, reason) = match &previous {
            None => (None, Some(damaged.unwrap_or(DueReason::NotIssued))),
            Some(p) => {
                let changed = config_change(cert, p);
                let ari = if inv.renewal.ari && changed.is_none() && !opts.force {
                    ari_window(&issuers, store, p, &mut record, now).await
                } else {
                    None
                };
                let seed = p.meta.ari_id.as_deref().unwrap_or(&p.meta.serial);
                let (at, why, due_now) = due_at(
                    p.meta.not_before,
                    p.meta.not_after,
                    ari,
                    cert.renew_before.or(inv.renewal.renew_before),
                    seed.as_bytes(),
                );
                let reason = if opts.force {
                    Some(DueReason::Forced)
                } else if let Some(what) = changed {
                    Some(DueReason::ConfigChanged { what })
                } else if due_now {
                    Some(why.clone())
                } else {
                    None
                };
                (Some((at, why)), reason)
            }
        };
        let Some(reason) = reason else {
            outcomes.push(RenewOutcome {
                name,
                due,
                result: RenewResult::NotDue,
                damage,
            });
            continue;
        };
        if let Some(until) = record.retry_after.filter(|u| *u > now && !opts.force) {
            outcomes.push(RenewOutcome {
                name,
                due,
                result: RenewResult::Deferred { until },
                damage,
            });
            continue;
        }
        if opts.dry_run {
            outcomes.push(RenewOutcome {
                name,
                due,
                result: RenewResult::WouldIssue { reason },
                damage,
            });
            continue;
        }
        let solver = match solvers.get(cert.solver.as_str()) {
            Some(s) => s.clone(),
            None => match crate::dns::solver(&cert.solver, &inv.solvers[&cert.solver]) {
                Ok(s) => {
                    solvers.insert(cert.solver.as_str(), s.clone());
                    s
                }
                Err(e) => {
                    outcomes.push(RenewOutcome {
                        name,
                        due,
                        result: RenewResult::Failed {
                            reason,
                            error: e.into(),
                        },
                        damage,
                    });
                    continue;
                }
            },
        };
        todo.push((cert, previous, record, due, reason, solver, damage));
    }

    // Issue, concurrently.
    let timeout = inv.renewal.order_timeout;
    let issued = futures::stream::iter(todo.into_iter().map(
        |(cert, previous, mut record, due, reason, solver, damage)| {
            let issuers = &issuers;
            async move {
                let result = issuers.issue(cert, &solver, store, previous.as_ref(), timeout).await;
                let now = OffsetDateTime::now_utc();
                record.last_attempt = Some(now);
                let result = match result {
                    Ok((release, directory)) => {
                        record.last_success = Some(now);
                        record.last_error = None;
                        record.failures = 0;
                        record.retry_after = None;
                        record.ari = None;
                        record.issuer = Some(directory);
                        RenewResult::Issued { release, reason }
                    }
                    Err(error) => {
                        record.failures = record.failures.saturating_add(1);
                        record.last_error = Some(crate::error::chain(&error));
                        if let crate::Error::Acme(AcmeError::RateLimited { retry_after, .. }) = &error {
                            record.retry_after = Some(*retry_after);
                        }
                        RenewResult::Failed { reason, error }
                    }
                };
                if let Err(e) = store.write_state(cert.name.as_str(), "renewal", &record) {
                    tracing::warn!(certificate = %cert.name, error = %crate::error::chain(&e), "cannot record renewal state");
                }
                RenewOutcome { name: cert.name.to_string(), due, result, damage }
            }
        },
    ))
    .buffer_unordered(inv.renewal.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    outcomes.extend(issued);
    // Inventory order, through a map: a linear search per outcome here made
    // planning 40,000 certificates quadratic (17.7 s against 1.1 s for 10,000).
    let order: std::collections::HashMap<&str, usize> = inv
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    outcomes.sort_by_key(|o| order.get(o.name.as_str()).copied());
    Ok(outcomes)
}

/// What in the inventory differs from the live version, if anything.
fn config_change(cert: &CertificateConfig, live: &Release) -> Option<String> {
    let want: Vec<&str> = cert.domains.iter().map(|d| d.as_str()).collect();
    let mut have: Vec<&str> = live.meta.domains.iter().map(String::as_str).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort_unstable();
    have.sort_unstable();
    if want_sorted != have {
        return Some(format!("domains are now {}", want.join(", ")));
    }
    if cert.key != live.meta.key_type {
        return Some(format!("key type is now {}", cert.key));
    }
    None
}

/// The ARI window for the live version, cached in the renewal record until
/// the CA's Retry-After; `None` if the CA has no ARI or cannot be reached
/// (the lifetime rule then applies).
async fn ari_window(
    issuers: &IssuerPool,
    store: &Store,
    live: &Release,
    record: &mut RenewalRecord,
    now: OffsetDateTime,
) -> Option<AriWindow> {
    if let Some(c) = &record.ari {
        // A read-only store (a dry run) never asks the CA: that could
        // register an account. It uses the window the last run cached.
        if c.serial == live.meta.serial && (c.refresh_after > now || !store.is_writable()) {
            return Some(c.window);
        }
    }
    if !store.is_writable() {
        return None;
    }
    live.meta.ari_id.as_ref()?;
    let issuer = match issuers.primary(store).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "cannot reach the CA for renewal information; using the lifetime rule");
            return None;
        }
    };
    match issuer.renewal_window(live).await {
        Ok(Some((window, again))) => {
            record.ari = Some(renewal::AriCache {
                serial: live.meta.serial.clone(),
                window,
                refresh_after: now + again,
            });
            let _ = store.write_state(&live.name, "renewal", &*record);
            Some(window)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(certificate = %live.name, error = %crate::error::chain(&e), "renewal information unavailable; using the lifetime rule");
            None
        }
    }
}

/// The primary issuer and the optional fallback, connected on first use.
struct IssuerPool {
    primary: CaConfig,
    fallback: Option<CaConfig>,
    slots: [tokio::sync::Mutex<Option<Arc<Issuer>>>; 2],
    /// Whether each CA still answers, kept across reconnections.
    health: [client::Health; 2],
}

impl IssuerPool {
    fn new(primary: CaConfig, fallback: Option<CaConfig>) -> Self {
        Self {
            primary,
            fallback,
            slots: Default::default(),
            health: Default::default(),
        }
    }

    async fn get(&self, slot: usize, ca: &CaConfig, store: &Store) -> Result<Arc<Issuer>> {
        let mut g = self.slots[slot].lock().await;
        if let Some(i) = g.as_ref() {
            return Ok(i.clone());
        }
        let i = Arc::new(Issuer::connect_with(ca, store, self.health[slot].clone()).await?);
        *g = Some(i.clone());
        Ok(i)
    }

    /// Forgets a stored account the CA no longer knows, so the next `get` registers anew.
    async fn forget(&self, slot: usize, ca: &CaConfig, store: &Store) {
        let mut g = self.slots[slot].lock().await;
        *g = None;
        if let Err(e) = store.forget_account(&ca.directory) {
            tracing::warn!(error = %crate::error::chain(&e), "cannot remove the stale account");
        }
    }

    async fn primary(&self, store: &Store) -> Result<Arc<Issuer>> {
        self.get(0, &self.primary, store).await
    }

    async fn issue_at(
        &self,
        slot: usize,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        store: &Store,
        previous: Option<&Release>,
        timeout: Duration,
    ) -> Result<(Release, String), crate::Error> {
        let ca = match (slot, &self.fallback) {
            (1, Some(fb)) => fb,
            _ => &self.primary,
        };
        let mut again = true;
        loop {
            let issuer = self.get(slot, ca, store).await?;
            match issuer.issue(cert, solver, store, previous, timeout).await {
                Err(crate::Error::Acme(AcmeError::Server {
                    source: instant_acme::Error::Api(p),
                    ..
                })) if again
                    && p.r#type.as_deref()
                        == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
                {
                    tracing::warn!(directory = %ca.directory, "the CA no longer knows the stored account; registering a new one");
                    self.forget(slot, ca, store).await;
                    again = false;
                }
                other => return other.map(|r| (r, issuer.directory.clone())),
            }
        }
    }

    /// Issues with the primary CA, and with the fallback if the primary fails
    /// for a reason on the CA's side. Returns the release and the directory used.
    async fn issue(
        &self,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        store: &Store,
        previous: Option<&Release>,
        timeout: Duration,
    ) -> Result<(Release, String), crate::Error> {
        let first = self
            .issue_at(0, cert, solver, store, previous, timeout)
            .await;
        let (Err(err), Some(fb)) = (&first, &self.fallback) else {
            return first;
        };
        if !matches!(err, crate::Error::Acme(_)) {
            return first;
        }
        tracing::warn!(certificate = %cert.name, error = %crate::error::chain(err), fallback = %fb.directory, "primary CA failed; trying the fallback CA");
        self.issue_at(1, cert, solver, store, previous, timeout)
            .await
    }
}

/// What the CA says about the inventory's account, asked with
/// `onlyReturnExisting` (RFC 8555 §7.3.1), which never creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountLookup {
    /// The stored account exists at the CA; its URL.
    Exists(String),
    /// No account is stored: the CA's newAccount resource answered, and the
    /// first renewal registers one.
    WouldBeCreated,
}

/// Asks the CA whether `stored` (the store's account JSON for `ca`, if any)
/// exists, with `onlyReturnExisting` so nothing is created at the CA. With
/// no stored account a throwaway key is asked about, which proves the
/// directory and its newAccount resource answer.
pub async fn look_up_account(
    ca: &CaConfig,
    stored: Option<&crate::secret::Secret>,
) -> Result<AccountLookup> {
    let http = || -> Result<Box<dyn instant_acme::HttpClient>> {
        Ok(Box::new(client::CaClient::new(
            ca.ca_bundle.as_deref(),
            client::RetryLog::default(),
            client::Health::default(),
        )?))
    };
    let server = |step: &'static str| {
        let directory = ca.directory.clone();
        move |source| AcmeError::Server {
            directory,
            step,
            source,
        }
    };
    let does_not_exist = |e: &instant_acme::Error| {
        matches!(e, instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    };
    match stored {
        Some(bytes) => {
            let saved: StoredAccount =
                serde_json::from_slice(bytes.expose()).map_err(|e| AcmeError::BadAccount {
                    directory: ca.directory.clone(),
                    reason: e.to_string(),
                })?;
            let der = saved.credentials.private_key().clone_key();
            let key = || {
                instant_acme::Key::from_pkcs8_der(der.clone_key()).map_err(|e| {
                    AcmeError::BadAccount {
                        directory: ca.directory.clone(),
                        reason: e.to_string(),
                    }
                })
            };
            let found = retry_nonce!(
                Account::builder_with_http(http()?)
                    .from_key(
                        (
                            key()?,
                            rustls::pki_types::PrivateKeyDer::Pkcs8(der.clone_key())
                        ),
                        ca.directory.clone(),
                    )
                    .await
            );
            match found {
                Ok((account, _)) => Ok(AccountLookup::Exists(account.id().to_string())),
                Err(e) if does_not_exist(&e) => Err(AcmeError::AccountUnknown {
                    directory: ca.directory.clone(),
                }),
                Err(e) => Err(server("looking up the account")(e)),
            }
        }
        None => {
            let new = NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: true,
            };
            match retry_nonce!(
                Account::builder_with_http(http()?)
                    .create(&new, ca.directory.clone(), None)
                    .await
            ) {
                // A CA that ignored onlyReturnExisting made an account for
                // a throwaway key: nothing of ours, and nothing to store.
                Ok(_) => Ok(AccountLookup::WouldBeCreated),
                Err(e) if does_not_exist(&e) => Ok(AccountLookup::WouldBeCreated),
                Err(e) => Err(server("looking up the account")(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_splits_into_leaf_and_rest() {
        let pem = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
        let (leaf, rest) = split_chain(pem);
        assert_eq!(leaf.matches("BEGIN").count(), 1);
        assert!(leaf.contains("\nA\n"));
        assert!(rest.starts_with("-----BEGIN CERTIFICATE-----\nB"));
    }

    #[test]
    fn dry_run_outcomes_come_in_inventory_order_whatever_the_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = format!(
            "store = \"{}\"\n[account]\ndirectory = \"https://ca.test/dir\"\n\
             [solvers.ns]\ntype = \"exec\"\npresent = [\"true\"]\ncleanup = [\"true\"]\n",
            dir.path().join("store").display()
        );
        // Names whose sorted order is not the file order.
        let names: Vec<String> = (0..300)
            .map(|i| format!("c{}", (i * 7919) % 1000))
            .collect();
        for n in &names {
            text.push_str(&format!(
                "[[certificate]]\nname = \"{n}\"\ndomains = [\"{n}.example.test\"]\nsolver = \"ns\"\n"
            ));
        }
        let inv = Inventory::from_str(&text, &dir.path().join("certctl.toml")).expect("inventory");
        let (store, _) = Store::open(&dir.path().join("store")).expect("store");
        let opts = RenewOptions {
            dry_run: true,
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let outcomes = rt.block_on(renew(&inv, &store, &opts)).expect("renew");
        let got: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(got, names);
        assert!(outcomes.iter().all(|o| matches!(
            o.result,
            RenewResult::WouldIssue {
                reason: DueReason::NotIssued
            }
        )));
    }

    #[test]
    fn rate_limit_problem_becomes_a_deferral() {
        let log = client::RetryLog::default();
        let p: instant_acme::Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates","status":429}"#,
        )
        .expect("problem");
        let e = rate_limited("https://ca.test/dir", &log, &instant_acme::Error::Api(p))
            .expect("rate limited");
        let AcmeError::RateLimited { retry_after, .. } = e else {
            panic!("wrong variant")
        };
        assert!(retry_after > OffsetDateTime::now_utc());
    }
}
