//! TLS to etcd, on aws-lc-rs.
//!
//! etcd-client's own `tls` feature builds on ring, and certctl links only
//! aws-lc-rs. So the store hands etcd-client `http://` URLs and a channel
//! builder of its own ([`TlsChannel`]) that turns each endpoint into its
//! `https://` twin with tonic's rustls configuration (`tls-aws-lc`) before
//! the balanced channel sees it. The PEM files are read and checked when
//! the store opens, so a wrong file is named at once, and a handshake the
//! members refuse is diagnosed by one direct handshake ([`diagnose`]) rather
//! than reported as a cluster that does not answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{BalancedChannelBuilder, Channel};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::transport::channel::Change;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Uri};

use super::StoreError;

/// The `tls_ca`, `tls_cert` and `tls_key` of an etcd `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA(s) that sign the etcd members' certificates.
    pub ca: PathBuf,
    /// This controller's client certificate and its key (PEM), for a
    /// cluster started with `--client-cert-auth`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The files of an [`EtcdTls`], read and checked.
pub(crate) struct Loaded {
    tonic: ClientTlsConfig,
    rustls: Arc<rustls::ClientConfig>,
}

fn read(file: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(file).map_err(|source| StoreError::EtcdTlsRead {
        file: file.to_path_buf(),
        source,
    })
}

fn malformed(file: &Path, want: &'static str) -> StoreError {
    StoreError::EtcdTlsFile {
        file: file.to_path_buf(),
        want,
    }
}

fn certs(
    file: &Path,
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, StoreError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|_| malformed(file, "PEM certificates"))?;
    if certs.is_empty() {
        return Err(malformed(file, "PEM certificates"));
    }
    Ok(certs)
}

impl EtcdTls {
    /// Reads the files; an error names the file and what it should hold.
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let ca_pem = read(&self.ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.ca, &ca_pem)? {
            roots
                .add(c)
                .map_err(|_| malformed(&self.ca, "CA certificates"))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|_| malformed(&self.ca, "CA certificates"))?
        .with_root_certificates(roots);
        let mut tonic = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
        let rustls = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert_pem = read(cert)?;
                let key_pem = read(key)?;
                let chain = certs(cert, &cert_pem)?;
                let private = rustls_pemfile::private_key(&mut &key_pem[..])
                    .ok()
                    .flatten()
                    .ok_or_else(|| malformed(key, "a PEM private key"))?;
                tonic = tonic.identity(Identity::from_pem(&cert_pem, &key_pem));
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|_| malformed(key, "the private key of tls_cert"))?
            }
        };
        // tonic parses its copy when an endpoint is configured: do it once
        // here so that no error is left for the channel's background task.
        Endpoint::from_static("https://etcd.invalid")
            .tls_config(tonic.clone())
            .map_err(|_| malformed(&self.ca, "CA certificates"))?;
        Ok(Loaded {
            tonic,
            rustls: Arc::new(rustls),
        })
    }
}

impl Loaded {
    /// tonic's copy of the settings, for [`TlsChannel`].
    pub(crate) fn tonic(&self) -> ClientTlsConfig {
        self.tonic.clone()
    }
}

/// etcd-client is given `http://host:port`; this builder connects to
/// `https://host:port` with the store's TLS settings instead.
pub(crate) struct TlsChannel {
    pub(crate) tls: ClientTlsConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
}

impl TlsChannel {
    fn https(&self, uri: &Uri) -> Option<Endpoint> {
        let authority = uri.authority()?;
        Endpoint::from_shared(format!("https://{authority}"))
            .ok()?
            .tls_config(self.tls.clone())
            .ok()
            .map(|e| {
                e.connect_timeout(self.connect_timeout)
                    .timeout(self.timeout)
            })
    }
}

impl BalancedChannelBuilder for TlsChannel {
    type Error = tonic::transport::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(Channel, mpsc::Sender<Change<Uri, Endpoint>>), Self::Error> {
        let (channel, inner) = tonic::transport::Channel::balance_channel(buffer_size);
        let (outer, mut changes) = mpsc::channel::<Change<Uri, Endpoint>>(buffer_size);
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                let change = match change {
                    Change::Insert(uri, _plain) => match self.https(&uri) {
                        Some(tls) => Change::Insert(uri, tls),
                        // Checked in `EtcdTls::load`; never a plaintext fallback.
                        None => {
                            tracing::warn!(endpoint = %uri, "etcd endpoint left out: no TLS form");
                            continue;
                        }
                    },
                    other => other,
                };
                if inner.send(change).await.is_err() {
                    break;
                }
            }
        });
        Ok((Channel::Tonic(channel), outer))
    }
}

/// After the cluster did not answer over TLS: one direct handshake with
/// each endpoint, so that a certificate the member or the controller
/// refuses is named instead of "no answer". `None` when every handshake
/// (and a short wait for a late refusal of our client certificate) went
/// through, or no member could be reached at all.
pub(crate) async fn diagnose(tls: &Loaded, endpoints: &[String]) -> Option<StoreError> {
    for e in endpoints {
        let authority = e
            .strip_prefix("https://")
            .or_else(|| e.strip_prefix("http://"))
            .unwrap_or(e);
        let host = match authority.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => authority,
        };
        let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
            continue;
        };
        let Ok(Ok(tcp)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(authority),
        )
        .await
        else {
            continue;
        };
        let connector = tokio_rustls::TlsConnector::from(tls.rustls.clone());
        let refused = |source: std::io::Error| StoreError::EtcdTls {
            endpoint: format!("https://{authority}"),
            source,
        };
        match tokio::time::timeout(Duration::from_secs(2), connector.connect(name, tcp)).await {
            Ok(Err(source)) => return Some(refused(source)),
            Ok(Ok(mut stream)) => {
                // TLS 1.3: a member that wants a client certificate says so
                // after the client's side of the handshake is done.
                let mut byte = [0u8; 1];
                let late =
                    tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
                if let Ok(Err(source)) = late {
                    return Some(refused(source));
                }
            }
            Err(_) => continue,
        }
    }
    None
}
