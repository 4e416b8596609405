//! The ACME account (RFC 8555 §7.3) as the store keeps it, and the
//! read-only lookup `certctl check --online` does.

use instant_acme::{Account, AccountCredentials, NewAccount};
use serde::{Deserialize, Serialize};

use super::jws::JwsClient;
use super::jws::JwsKey;
use super::order::retry_nonce;
use super::{client, AcmeError, CaConfig, Result};
use crate::store::Store;

/// What the store keeps for an account.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredAccount {
    pub(super) credentials: AccountCredentials,
    #[serde(default)]
    pub(super) contact: Vec<String>,
}

/// The account the store keeps for `directory`, from its JSON.
pub(super) fn decode(
    directory: &str,
    bytes: &crate::secret::Secret,
) -> Result<StoredAccount, AcmeError> {
    serde_json::from_slice(bytes.expose()).map_err(|source| AcmeError::BadAccount {
        directory: directory.to_string(),
        source,
    })
}

pub(super) fn save_account(
    store: &Store,
    directory: &str,
    credentials: AccountCredentials,
    contact: &[String],
) -> Result<(), AcmeError> {
    let json = serde_json::to_vec(&StoredAccount {
        credentials,
        contact: contact.to_vec(),
    })
    .map_err(|source| AcmeError::BadAccount {
        directory: directory.to_string(),
        source,
    })?;
    store
        .save_account(directory, &json)
        .map_err(|source| AcmeError::SaveAccount {
            directory: directory.to_string(),
            source,
        })
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
            let saved: StoredAccount = decode(&ca.directory, bytes)?;
            let der = saved.credentials.private_key().clone_key();
            let key = || {
                instant_acme::Key::from_pkcs8_der(der.clone_key()).map_err(|source| {
                    AcmeError::BadAccountKey {
                        directory: ca.directory.clone(),
                        source,
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

/// What `certctl account show` prints: never the key itself.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct AccountInfo {
    /// The CA's directory URL.
    pub directory: String,
    /// The account URL (RFC 8555 §7.3: the `kid` of every request).
    pub url: String,
    /// The contacts the store last told the CA.
    pub contact: Vec<String>,
    /// The key's algorithm (`ecdsa-p256` for instant-acme's keys).
    pub key_type: &'static str,
    /// The key's RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The thumbprint of a new key a rollover stored and has not settled
    /// (the CA may or may not have it); the next run settles it.
    pub pending_thumbprint: Option<String>,
}

/// The stored credentials' account URL, key and the key's DER.
struct Parts {
    url: String,
    key: JwsKey,
}

fn parts(directory: &str, saved: &StoredAccount) -> Result<Parts> {
    let v = serde_json::to_value(&saved.credentials).map_err(|source| AcmeError::BadAccount {
        directory: directory.to_string(),
        source,
    })?;
    let url = v["id"].as_str().unwrap_or_default().to_string();
    let der = saved.credentials.private_key().secret_pkcs8_der().to_vec();
    let key = JwsKey::from_pkcs8(&der).map_err(|source| AcmeError::UnsupportedAccountKey {
        directory: directory.to_string(),
        source,
    })?;
    Ok(Parts { url, key })
}

/// Credentials for account `url` at `directory` with the key `der`.
fn credentials(directory: &str, url: &str, der: &[u8]) -> Result<AccountCredentials> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(der);
    serde_json::from_value(serde_json::json!({
        "id": url, "key_pkcs8": key, "directory": directory,
    }))
    .map_err(|source| AcmeError::BadAccount {
        directory: directory.to_string(),
        source,
    })
}

/// The store's account for `ca`, read offline; `None` when none is stored.
pub fn show_account(ca: &CaConfig, store: &Store) -> Result<Option<AccountInfo>> {
    let load = |r: std::result::Result<_, crate::store::StoreError>| {
        r.map_err(|source| AcmeError::SaveAccount {
            directory: ca.directory.clone(),
            source,
        })
    };
    let Some(bytes) = load(store.load_account(&ca.directory))? else {
        return Ok(None);
    };
    let saved = decode(&ca.directory, &bytes)?;
    let p = parts(&ca.directory, &saved)?;
    let pending = match load(store.load_pending_account(&ca.directory))? {
        Some(b) => Some(
            parts(&ca.directory, &decode(&ca.directory, &b)?)?
                .key
                .thumbprint(),
        ),
        None => None,
    };
    Ok(Some(AccountInfo {
        directory: ca.directory.clone(),
        url: p.url,
        contact: saved.contact,
        key_type: p.key.kind(),
        thumbprint: p.key.thumbprint(),
        pending_thumbprint: pending,
    }))
}

/// How a rollover left behind by an earlier run was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Settled {
    /// No rollover was pending.
    Nothing,
    /// The CA still knows the current key: the pending key was dropped.
    KeptCurrent,
    /// The CA knows only the pending key: it became the account's key.
    Promoted,
}

fn jws_client_http(ca: &CaConfig) -> Result<Box<dyn instant_acme::HttpClient>> {
    Ok(Box::new(client::CaClient::new(
        ca.ca_bundle.as_deref(),
        client::RetryLog::default(),
        client::Health::default(),
    )?))
}

fn server(ca: &CaConfig, step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    let directory = ca.directory.clone();
    move |source| AcmeError::Server {
        directory,
        step,
        source,
    }
}

fn store_err(ca: &CaConfig) -> impl FnOnce(crate::store::StoreError) -> AcmeError {
    let directory = ca.directory.clone();
    move |source| AcmeError::SaveAccount { directory, source }
}

/// Settles a key rollover an earlier run left pending (killed between
/// storing the new key and swapping it in): asks the CA, with
/// `onlyReturnExisting`, which key it knows. The current key known: the
/// pending one is dropped (the CA never took it). Only the pending key
/// known: it replaces the current one (the CA took it). Neither known:
/// [`AcmeError::AccountUnknown`], and both files are left as they are.
pub async fn settle_rollover(ca: &CaConfig, store: &Store) -> Result<Settled> {
    let Some(pending) = store
        .load_pending_account(&ca.directory)
        .map_err(store_err(ca))?
    else {
        return Ok(Settled::Nothing);
    };
    let new = parts(&ca.directory, &decode(&ca.directory, &pending)?)?;
    let jws = JwsClient::connect(jws_client_http(ca)?, &ca.directory)
        .await
        .map_err(server(ca, "loading the directory"))?;
    let current = match store.load_account(&ca.directory).map_err(store_err(ca))? {
        Some(b) => Some(parts(&ca.directory, &decode(&ca.directory, &b)?)?),
        None => None,
    };
    if let Some(cur) = &current {
        if jws
            .find_account(&cur.key)
            .await
            .map_err(server(ca, "looking up the account"))?
            .is_some()
        {
            store
                .forget_pending_account(&ca.directory)
                .map_err(store_err(ca))?;
            tracing::warn!(directory = %ca.directory, "an interrupted account key rollover was not accepted by the CA; the current key stays");
            return Ok(Settled::KeptCurrent);
        }
    }
    match jws
        .find_account(&new.key)
        .await
        .map_err(server(ca, "looking up the account"))?
    {
        Some(_) => {
            store
                .promote_pending_account(&ca.directory)
                .map_err(store_err(ca))?;
            tracing::warn!(directory = %ca.directory, "an interrupted account key rollover was accepted by the CA; its new key is now the account's");
            Ok(Settled::Promoted)
        }
        None => Err(AcmeError::AccountUnknown {
            directory: ca.directory.clone(),
        }),
    }
}

/// An account key rollover (RFC 8555 §7.3.5) in its three steps, each
/// leaving the store in a state [`settle_rollover`] resolves:
/// [`AccountKeyRollover::prepare`] stores the new key as pending,
/// [`AccountKeyRollover::tell_ca`] sends keyChange,
/// [`AccountKeyRollover::commit`] swaps the pending key in.
/// [`roll_over_account_key`] runs all three.
pub struct AccountKeyRollover {
    directory: String,
    url: String,
    old: JwsKey,
    new: JwsKey,
    jws: JwsClient,
}

/// What a finished rollover did.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct RolledOver {
    /// The account URL (unchanged).
    pub url: String,
    /// The old key's thumbprint.
    pub old_thumbprint: String,
    /// The new key's thumbprint.
    pub new_thumbprint: String,
    /// How an earlier interrupted rollover was settled first.
    pub settled: Settled,
}

impl AccountKeyRollover {
    /// Settles an earlier rollover, proves the CA knows the current key,
    /// makes a new P-256 key and stores it as pending (mode 0600, atomic).
    pub async fn prepare(ca: &CaConfig, store: &Store) -> Result<(Self, Settled)> {
        let settled = settle_rollover(ca, store).await?;
        let Some(bytes) = store.load_account(&ca.directory).map_err(store_err(ca))? else {
            return Err(AcmeError::NoAccount {
                directory: ca.directory.clone(),
            });
        };
        let saved = decode(&ca.directory, &bytes)?;
        let cur = parts(&ca.directory, &saved)?;
        let jws = JwsClient::connect(jws_client_http(ca)?, &ca.directory)
            .await
            .map_err(server(ca, "loading the directory"))?;
        let url = jws
            .find_account(&cur.key)
            .await
            .map_err(server(ca, "looking up the account"))?
            .ok_or_else(|| AcmeError::AccountUnknown {
                directory: ca.directory.clone(),
            })?;
        let (_, pkcs8) = instant_acme::Key::generate_pkcs8()
            .map_err(server(ca, "making the new account key"))?;
        let der = pkcs8.secret_pkcs8_der().to_vec();
        let new = JwsKey::from_pkcs8(&der).map_err(|source| AcmeError::UnsupportedAccountKey {
            directory: ca.directory.clone(),
            source,
        })?;
        let json = serde_json::to_vec(&StoredAccount {
            credentials: credentials(&ca.directory, &url, &der)?,
            contact: saved.contact,
        })
        .map_err(|source| AcmeError::BadAccount {
            directory: ca.directory.clone(),
            source,
        })?;
        store
            .save_pending_account(&ca.directory, &json)
            .map_err(store_err(ca))?;
        Ok((
            Self {
                directory: ca.directory.clone(),
                url,
                old: cur.key,
                new,
                jws,
            },
            settled,
        ))
    }

    /// The pending key's thumbprint.
    pub fn new_thumbprint(&self) -> String {
        self.new.thumbprint()
    }

    /// Asks the CA to change the account's key to the pending one.
    pub async fn tell_ca(&self) -> Result<()> {
        self.jws
            .key_change(&self.url, &self.old, &self.new)
            .await
            .map_err(|source| AcmeError::Server {
                directory: self.directory.clone(),
                step: "changing the account key",
                source,
            })
    }

    /// Makes the pending key the account's in the store.
    pub fn commit(self, store: &Store) -> Result<RolledOver> {
        store
            .promote_pending_account(&self.directory)
            .map_err(|source| AcmeError::SaveAccount {
                directory: self.directory.clone(),
                source,
            })?;
        Ok(RolledOver {
            url: self.url,
            old_thumbprint: self.old.thumbprint(),
            new_thumbprint: self.new.thumbprint(),
            settled: Settled::Nothing,
        })
    }
}

/// Changes the account key (RFC 8555 §7.3.5) so that a run killed at any
/// moment leaves a key the CA accepts: the new key is stored as pending
/// before the CA hears of it and swapped in only after the CA accepted it;
/// [`settle_rollover`] (run by every later connection) finishes or drops
/// a rollover that was cut short. When keyChange fails the CA is asked at
/// once which key it knows, and the store follows.
pub async fn roll_over_account_key(ca: &CaConfig, store: &Store) -> Result<RolledOver> {
    let (rollover, settled) = AccountKeyRollover::prepare(ca, store).await?;
    if let Err(e) = rollover.tell_ca().await {
        // Whatever the error says, the CA is asked which key it now knows
        // (a refusal leaves the current key; a broken connection may not
        // have). If it cannot be asked, the pending key stays for the next
        // run to settle.
        if let Err(settle) = settle_rollover(ca, store).await {
            tracing::warn!(directory = %ca.directory, error = %crate::error_chain(&settle), "the interrupted key rollover is left for the next run to settle");
        }
        return Err(e);
    }
    let mut done = rollover.commit(store)?;
    done.settled = settled;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_stored_account_keeps_the_json_error_as_its_source() {
        use std::error::Error as _;
        let e = decode(
            "https://ca.test/dir",
            &crate::secret::Secret::new(b"{not json".to_vec()),
        )
        .err()
        .expect("an error");
        assert!(matches!(e, AcmeError::BadAccount { .. }), "{e:?}");
        let source = e.source().expect("source");
        assert!(source.downcast_ref::<serde_json::Error>().is_some());
        assert!(e.to_string().contains("https://ca.test/dir"));
        assert!(!e.to_string().contains(&source.to_string()), "said once");
    }
}
