//! The primary CA and the optional fallback, each connected on first use
//! and shared by every order of a run.

use std::sync::Arc;
use std::time::Duration;

use super::order::Issuer;
use super::run::{Ca, Issue};
use super::AriWindow;
use super::{client, AcmeError, CaConfig, Result};
use crate::dns::DnsSolver;
use crate::inventory::CertificateConfig;
use crate::store::{Release, Store};

/// The primary issuer and the optional fallback, connected on first use.
pub(super) struct IssuerPool {
    primary: CaConfig,
    fallback: Option<CaConfig>,
    slots: [tokio::sync::Mutex<Option<Arc<Issuer>>>; 2],
    /// Whether each CA still answers, kept across reconnections.
    health: [client::Health; 2],
}

impl IssuerPool {
    pub(super) fn new(primary: CaConfig, fallback: Option<CaConfig>) -> Self {
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
                other => return other.map(|r| (r, issuer.directory().to_string())),
            }
        }
    }
}

#[async_trait::async_trait]
impl Issue for IssuerPool {
    fn fallback(&self) -> Option<&str> {
        self.fallback.as_ref().map(|f| f.directory.as_str())
    }

    async fn issue(
        &self,
        ca: Ca,
        cert: &CertificateConfig,
        solver: &Arc<dyn DnsSolver>,
        store: &Store,
        previous: Option<&Release>,
        timeout: Duration,
    ) -> Result<(Release, String), crate::Error> {
        let slot = match ca {
            Ca::Primary => 0,
            Ca::Fallback => 1,
        };
        self.issue_at(slot, cert, solver, store, previous, timeout)
            .await
    }

    async fn renewal_window(
        &self,
        store: &Store,
        live: &Release,
    ) -> Result<Option<(AriWindow, Duration)>, AcmeError> {
        self.primary(store).await?.renewal_window(live).await
    }
}
