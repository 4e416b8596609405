//! The ACME account (RFC 8555 §7.3) as the store keeps it, and the
//! read-only lookup `certctl check --online` does.

use instant_acme::{Account, AccountCredentials, NewAccount};
use serde::{Deserialize, Serialize};

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
