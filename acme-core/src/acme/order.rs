//! The order flow of one certificate at one CA (RFC 8555 §7.4–§7.4.2): new
//! order, DNS-01 challenges, finalize, download, install; and the one retry
//! rule for requests the CA rejects for a bad nonce (§6.5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeStatus, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use time::OffsetDateTime;
use tracing::Instrument;

use super::account::{self, save_account};
use super::{client, journal, keys, persist, AcmeError, AriWindow, CaConfig, Result};
use crate::dns::{DnsSolver, TxtRecord};
use crate::inventory::CertificateConfig;
use crate::store::{Material, Release, ReleaseMeta, Store};
use crate::DomainName;

/// How often a request rejected for a bad nonce (§6.5) is sent again, on top
/// of instant-acme's own three tries.
const NONCE_RETRIES: u32 = 8;

/// A registered account at one CA, ready to order.
pub struct Issuer {
    account: Account,
    /// The account key, for the requests instant-acme does not make
    /// (the raw dns-persist-01 challenge object).
    key: super::jws::JwsKey,
    ca: CaConfig,
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

/// The one retry rule for requests the CA rejects for a bad nonce (RFC 8555
/// §6.5): send again, up to [`NONCE_RETRIES`] times per request.
#[derive(Debug, Default)]
pub(super) struct NonceRetry {
    tries: u32,
}

impl NonceRetry {
    /// Whether `e` is a bad-nonce rejection that may be sent again (and counts it).
    pub(super) fn again(&mut self, e: &instant_acme::Error) -> bool {
        let bad_nonce = matches!(e, instant_acme::Error::Api(p)
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"));
        if bad_nonce && self.tries < NONCE_RETRIES {
            self.tries += 1;
            tracing::debug!(tries = self.tries, "bad nonce; sending again");
            true
        } else {
            false
        }
    }
}

/// Evaluates `$call` (a request's result) again while [`NonceRetry`] says so.
macro_rules! retry_nonce {
    ($call:expr) => {{
        let mut nonce = $crate::acme::order::NonceRetry::default();
        loop {
            match $call {
                Err(e) if nonce.again(&e) => {}
                other => break other,
            }
        }
    }};
}
pub(super) use retry_nonce;

impl Issuer {
    /// Loads the account for `ca` from the store, or registers one (and stores
    /// it, mode 0600); updates the contacts when the inventory changed them.
    pub async fn connect(ca: &CaConfig, store: &Store) -> Result<Self> {
        Self::connect_with(ca, store, client::Health::default()).await
    }

    /// [`Issuer::connect`], sharing `health` with the run's other requests to
    /// this CA, so a CA that answers nothing is given up on once per run.
    pub(super) async fn connect_with(
        ca: &CaConfig,
        store: &Store,
        health: client::Health,
    ) -> Result<Self> {
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
        // A key rollover cut short by a killed run is settled first, so the
        // key loaded below is one the CA knows.
        if store
            .load_pending_account(&ca.directory)
            .ok()
            .flatten()
            .is_some()
        {
            account::settle_rollover(ca, store).await?;
        }
        let stored = store.load_account(&ca.directory).ok().flatten();
        let key_of = |c: &instant_acme::AccountCredentials| {
            super::jws::JwsKey::from_pkcs8(c.private_key().secret_pkcs8_der()).map_err(|source| {
                AcmeError::UnsupportedAccountKey {
                    directory: ca.directory.clone(),
                    source,
                }
            })
        };
        let (account, key) = match stored {
            Some(bytes) => {
                let saved = account::decode(&ca.directory, &bytes)?;
                let key = key_of(&saved.credentials)?;
                let account = Account::builder_with_http(http()?)
                    .from_credentials(saved.credentials)
                    .await
                    .map_err(server("loading the directory"))?;
                if saved.contact != ca.contact {
                    let contacts: Vec<&str> = ca.contact.iter().map(String::as_str).collect();
                    retry_nonce!(account.update_contacts(&contacts).await)
                        .map_err(server("updating the account's contacts"))?;
                    // Same credentials, new contacts.
                    let again = account::decode(&ca.directory, &bytes)?;
                    save_account(store, &ca.directory, again.credentials, &ca.contact)?;
                    tracing::info!(directory = %ca.directory, "account contacts updated");
                }
                (account, key)
            }
            None => {
                let contacts: Vec<&str> = ca.contact.iter().map(String::as_str).collect();
                let eab = match &ca.eab {
                    Some(e) => {
                        let key = e
                            .hmac_key()
                            .read()
                            .map_err(|source| AcmeError::EabKey { source })?;
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
                let key = key_of(&creds)?;
                save_account(store, &ca.directory, creds, &ca.contact)?;
                tracing::info!(directory = %ca.directory, "ACME account registered");
                (account, key)
            }
        };
        Ok(Self {
            account,
            key,
            ca: ca.clone(),
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

        let chosen = self.pending_challenges(&mut order, cert).await?;
        let pending: Vec<(DomainName, String)> = chosen
            .iter()
            .filter_map(|p| match p {
                Pending::Dns01 { domain, value } => Some((domain.clone(), value.clone())),
                Pending::Persist { .. } => None,
            })
            .collect();
        // Journal the records before they exist, so a run killed before its
        // cleanup has them removed by the next run. dns-persist-01 writes
        // nothing, so it journals nothing.
        if !pending.is_empty() {
            journal::record(store, cert.name.as_str(), &pending)?;
        }
        let mut presented: Vec<TxtRecord> = Vec::new();
        let result = self
            .solve_and_finalize(
                cert,
                solver,
                &mut order,
                &chosen,
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
        if clean && !pending.is_empty() {
            journal::clear(store, cert.name.as_str())?;
        }
        result
    }

    /// Walks the order's authorizations and chooses, for each pending one,
    /// how to answer it: dns-persist-01 when the certificate wants it, the
    /// CA offers it and the persistent record is right on every
    /// authoritative server; else dns-01 (the TXT value its key
    /// authorization wants) when there is a solver for it.
    async fn pending_challenges(
        &self,
        order: &mut Order,
        cert: &CertificateConfig,
    ) -> Result<Vec<Pending>> {
        let mut nonce = NonceRetry::default();
        'again: loop {
            let mut out = Vec::new();
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = match a {
                    Ok(a) => a,
                    Err(e) if nonce.again(&e) => continue 'again,
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
                        return Err(AcmeError::AuthorizationInvalid {
                            directory: self.directory.clone(),
                            identifier: a.identifier().to_string(),
                            status: other,
                        })
                    }
                }
                let ident = a.identifier().to_string();
                let domain = DomainName::new(&ident).map_err(|_| AcmeError::BadIdentifier {
                    directory: self.directory.clone(),
                    identifier: ident.clone(),
                })?;
                if let Some(p) = &cert.persist {
                    let kind = persist::challenge_type();
                    let offered = a
                        .challenges
                        .iter()
                        .find(|c| c.r#type == kind)
                        .map(|c| c.url.clone());
                    let why = match offered {
                        None => persist::NotUsed::NotOffered,
                        Some(url) => match self.persist_ready(p, &domain, &url).await {
                            Ok(()) => {
                                tracing::info!(identifier = %ident, "dns-persist-01: the persistent record is right; no DNS write");
                                out.push(Pending::Persist { domain });
                                continue;
                            }
                            Err(why) => why,
                        },
                    };
                    if p.fallback.is_none() {
                        return Err(AcmeError::Persist {
                            directory: self.directory.clone(),
                            identifier: ident,
                            why: Box::new(why),
                        });
                    }
                    tracing::warn!(identifier = %ident, reason = %why, "dns-persist-01 not used; falling back to dns-01");
                }
                let Some(ch) = a.challenge(ChallengeType::Dns01) else {
                    return Err(AcmeError::NoDns01 {
                        directory: self.directory.clone(),
                        identifier: ident,
                    });
                };
                let value = ch.key_authorization().dns_value();
                out.push(Pending::Dns01 { domain, value });
            }
            return Ok(out);
        }
    }

    /// Whether the persistent record for `domain` is right on every
    /// authoritative server, as this CA's challenge at `url` describes it.
    async fn persist_ready(
        &self,
        cfg: &crate::inventory::PersistConfig,
        domain: &DomainName,
        url: &str,
    ) -> std::result::Result<(), persist::NotUsed> {
        let http = client::CaClient::new(
            self.ca.ca_bundle.as_deref(),
            client::RetryLog::default(),
            client::Health::default(),
        )
        .map_err(|e| persist::NotUsed::Ca(Box::new(e)))?;
        let server = |step| {
            let directory = self.directory.clone();
            move |source| {
                persist::NotUsed::Ca(Box::new(AcmeError::Server {
                    directory,
                    step,
                    source,
                }))
            }
        };
        let jws = super::jws::JwsClient::connect(Box::new(http), &self.directory)
            .await
            .map_err(server("loading the directory"))?;
        let challenge = jws
            .post_as_get(url, &self.key, self.account.id())
            .await
            .map_err(server("fetching the dns-persist-01 challenge"))?;
        let id = persist::PersistIdentity::new(
            jws.meta(),
            Some(&challenge),
            self.account.id(),
            self.account.key_thumbprint(),
        )
        .map_err(persist::NotUsed::Identity)?;
        persist::check_served(&id, cfg.resolver.clone(), domain).await
    }

    #[allow(clippy::too_many_arguments)] // one order's state, threaded through its one flow; a struct would only rename it
    async fn solve_and_finalize(
        &self,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        order: &mut Order,
        chosen: &[Pending],
        pending: &[(DomainName, String)],
        presented: &mut Vec<TxtRecord>,
        store: &Store,
        previous: Option<&Release>,
        order_timeout: Duration,
        started: Instant,
    ) -> Result<Release, crate::Error> {
        let server = |step| self.server_error(step);
        let persist_domains: Vec<&DomainName> = chosen
            .iter()
            .filter_map(|p| match p {
                Pending::Persist { domain } => Some(domain),
                Pending::Dns01 { .. } => None,
            })
            .collect();
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

        // Answer every dns-01 challenge, each once: a rejected nonce sends
        // the same answer again (going over every authorization again would
        // answer a challenge the CA is already validating, which it refuses).
        let mut nonce = NonceRetry::default();
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(server("fetching authorizations"))?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            // The challenge chosen for it: dns-persist-01 where the record
            // was found right, else dns-01.
            let persist = match DomainName::new(&a.identifier().to_string()) {
                Ok(d) => persist_domains.iter().any(|p| **p == d),
                Err(_) => false,
            };
            let kind = if persist {
                super::persist::challenge_type()
            } else {
                ChallengeType::Dns01
            };
            let Some(mut ch) = a.challenge(kind) else {
                continue;
            };
            if ch.status != ChallengeStatus::Pending {
                continue;
            }
            loop {
                match ch.set_ready().await {
                    Ok(()) => break,
                    Err(e) if nonce.again(&e) => continue,
                    Err(e) => return Err(server("answering a challenge")(e).into()),
                }
            }
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
                    status: order.state().status,
                }
                .into())
            }
            Err(e) => return Err(server("waiting for validation")(e).into()),
        };
        if status != OrderStatus::Ready {
            let problems = failure_problems(order).await;
            return Err(AcmeError::OrderInvalid {
                directory: self.directory.clone(),
                name: cert.name.to_string(),
                status: order.state().status,
                problems,
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
}

/// How one pending authorization is answered.
#[derive(Debug)]
enum Pending {
    /// dns-01: this TXT value at `_acme-challenge.<domain>`.
    Dns01 { domain: DomainName, value: String },
    /// dns-persist-01: the persistent record is already right; nothing to write.
    Persist { domain: DomainName },
}

/// The CA's reasons for an invalid order: the order's own problem, then
/// each failed challenge's, per identifier.
async fn failure_problems(order: &mut Order) -> Vec<super::OrderProblem> {
    let mut out = Vec::new();
    if let Some(p) = &order.state().error {
        out.push(super::OrderProblem {
            identifier: None,
            problem: p.clone(),
        });
    }
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        if a.status == AuthorizationStatus::Invalid {
            for c in &a.challenges {
                if let Some(e) = &c.error {
                    out.push(super::OrderProblem {
                        identifier: Some(a.identifier().to_string()),
                        problem: e.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The problems of a refused order on one line, or its status if it gave none.
pub(super) fn problems_text(status: OrderStatus, problems: &[super::OrderProblem]) -> String {
    if problems.is_empty() {
        return format!("order is {status:?}");
    }
    let parts: Vec<String> = problems
        .iter()
        .map(|p| match &p.identifier {
            Some(id) => format!("{id}: {}", problem_text(&p.problem)),
            None => problem_text(&p.problem),
        })
        .collect();
    parts.join("; ")
}

/// A problem document as `type: detail`, the type without its ACME prefix.
pub(super) fn problem_text(p: &instant_acme::Problem) -> String {
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
        problem: Box::new(p.clone()),
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
        .map_err(|source| AcmeError::BadCertificate { source })?
        .into_iter()
        .next()
        .ok_or(AcmeError::NoCertificate)
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

    fn problem(json: &str) -> instant_acme::Problem {
        serde_json::from_str(json).expect("problem")
    }

    #[test]
    fn rate_limit_keeps_the_cas_problem_document_and_says_it_once() {
        let log = client::RetryLog::default();
        let e = rate_limited(
            "https://ca.test/dir",
            &log,
            &instant_acme::Error::Api(problem(
                r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates","status":429}"#,
            )),
        )
        .expect("rate limited");
        let AcmeError::RateLimited { problem, .. } = &e else {
            panic!("wrong variant")
        };
        assert_eq!(problem.status, Some(429));
        let text = crate::error::chain(&e);
        assert_eq!(
            text.matches("rateLimited: too many certificates").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn a_refused_order_carries_its_status_and_each_identifiers_problem() {
        let e = AcmeError::OrderInvalid {
            directory: "https://ca.test/dir".into(),
            name: "www".into(),
            status: OrderStatus::Invalid,
            problems: vec![
                super::super::OrderProblem {
                    identifier: None,
                    problem: problem(r#"{"type":"urn:ietf:params:acme:error:unauthorized"}"#),
                },
                super::super::OrderProblem {
                    identifier: Some("www.example.test".into()),
                    problem: problem(
                        r#"{"type":"urn:ietf:params:acme:error:incorrectResponse","detail":"no TXT record"}"#,
                    ),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "ACME server https://ca.test/dir refused the order for `www`: unauthorized; \
             www.example.test: incorrectResponse: no TXT record"
        );
        let none = AcmeError::OrderInvalid {
            directory: "https://ca.test/dir".into(),
            name: "www".into(),
            status: OrderStatus::Pending,
            problems: Vec::new(),
        };
        assert!(none.to_string().ends_with("order is Pending"), "{none}");
    }

    #[test]
    fn key_errors_keep_their_cause_as_the_source() {
        use std::error::Error as _;
        let not_text = keys::load(&crate::secret::Secret::new(vec![0xff, 0xfe])).err();
        assert!(
            matches!(&not_text, Some(AcmeError::KeyText { .. })),
            "{not_text:?}"
        );
        let garbage = keys::load(&crate::secret::Secret::new(b"not a key".to_vec())).err();
        let Some(
            e @ AcmeError::Key {
                step: super::super::KeyStep::Load,
                ..
            },
        ) = &garbage
        else {
            panic!("{garbage:?}")
        };
        assert!(e.source().is_some());
        assert_eq!(e.to_string(), "key or CSR: loading the stored key failed");
    }
}
