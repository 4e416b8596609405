//! TLS probes: a fresh handshake to `address` with a given SNI name that
//! records the presented chain and whether it verifies, and never aborts on a
//! bad certificate (an expired or untrusted chain is a finding, not an error).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

/// Trust anchors for probes: the system roots and/or extra PEM bundles.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Include the operating system's roots.
    pub system_roots: bool,
    /// Extra PEM files of trust anchors.
    pub bundles: Vec<PathBuf>,
}

/// Why a prober could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProberError {
    /// A trust bundle could not be read.
    #[error("cannot read trust bundle {path}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A trust bundle holds no usable certificate.
    #[error("trust bundle {path} holds no usable CA certificate")]
    EmptyBundle {
        /// The file.
        path: PathBuf,
    },
    /// No trust anchors at all.
    #[error("no trust anchors: enable system roots or give a trust bundle")]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The chain verifier could not be built from the trust anchors.
    #[error("TLS configuration")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
}

/// Why a probe got no certificate.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// The address is not `host:port` or its name does not resolve.
    #[error("cannot resolve {address}")]
    Resolve {
        /// The address probed.
        address: String,
        /// The resolver's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The name resolved to no address.
    #[error("cannot resolve {address}: no address")]
    NoAddress {
        /// The address probed.
        address: String,
    },
    /// TCP connect failed (refused, unreachable).
    #[error("cannot connect to {address}")]
    Connect {
        /// The address probed.
        address: String,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The SNI name cannot be sent as a TLS server name.
    #[error("TLS handshake with {address} (SNI {sni}) failed: invalid SNI name")]
    InvalidSni {
        /// The address probed.
        address: String,
        /// SNI given.
        sni: String,
    },
    /// The TLS handshake failed before a certificate was seen.
    #[error("TLS handshake with {address} (SNI {sni}) failed")]
    Handshake {
        /// The address probed.
        address: String,
        /// SNI sent.
        sni: String,
        /// The TLS error (a [`rustls::Error`] inside, when rustls refused).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Nothing within the timeout.
    #[error("no TLS answer from {address} within {timeout:?}")]
    Timeout {
        /// The address probed.
        address: String,
        /// The bound.
        timeout: Duration,
    },
}

/// Why a served chain does not verify.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The prober has no trust anchors.
    #[error("no trust anchors configured")]
    NoAnchors,
    /// The server sent no certificate.
    #[error("no certificate presented")]
    NoCertificate,
    /// The SNI name is not a valid TLS server name.
    #[error("invalid dns name")]
    InvalidSni,
    /// rustls rejected the chain (unknown issuer, expired, wrong name...).
    #[error(transparent)]
    Rejected(rustls::Error),
}

/// What one handshake showed.
#[derive(Debug, Clone)]
pub struct Served {
    /// The chain as sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// `Ok` if the chain verifies for the SNI name against the trust anchors,
    /// else why not.
    pub verification: Result<(), VerifyError>,
    /// Handshake duration.
    pub elapsed: Duration,
}

impl Served {
    /// The leaf certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

/// Runs TLS probes with one shared configuration.
#[derive(Clone)]
pub struct Prober {
    config: Arc<ClientConfig>,
    verifier: Option<Arc<WebPkiServerVerifier>>,
    timeout: Duration,
    /// Bounds the probes in flight across every clone, if set.
    limit: Option<Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober trusting `trust`, each probe bounded by `timeout`.
    pub fn new(trust: &Trust, timeout: Duration) -> Result<Self, ProberError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        if trust.system_roots {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
        }
        for path in &trust.bundles {
            let pem = crate::fsread::read_file(path, crate::fsread::FileKind::CaBundle).map_err(
                |source| ProberError::Bundle {
                    path: path.clone(),
                    source: Arc::new(source),
                },
            )?;
            let mut added = 0;
            for der in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                if roots.add(der).is_ok() {
                    added += 1;
                }
            }
            if added == 0 {
                return Err(ProberError::EmptyBundle { path: path.clone() });
            }
        }
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(ProberError::Verifier)?,
            )
        };
        let recorder = Arc::new(AcceptAny {
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ProberError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(recorder)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            verifier,
            timeout,
            limit: None,
        })
    }

    /// The same prober with at most `n` probes in flight at once, shared by
    /// its clones: each holds a socket, so this bounds the file descriptors
    /// a large rollout uses. The wait for a slot is not part of a probe's
    /// timeout.
    pub fn with_limit(mut self, n: usize) -> Self {
        self.limit = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// The bound on one probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Handshakes with `address` (`host:port`) sending `sni`, and returns the
    /// chain and its verification result, or why no chain was seen.
    pub async fn probe(&self, address: &str, sni: &str) -> Result<Served, ProbeFailure> {
        let _slot = match &self.limit {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, self.handshake(address, sni)).await {
            Ok(Ok(chain)) => {
                let verification = self.verify(&chain, sni);
                Ok(Served {
                    chain,
                    verification,
                    elapsed: start.elapsed(),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProbeFailure::Timeout {
                address: address.to_string(),
                timeout: self.timeout,
            }),
        }
    }

    async fn handshake(
        &self,
        address: &str,
        sni: &str,
    ) -> Result<Vec<CertificateDer<'static>>, ProbeFailure> {
        let server_name =
            ServerName::try_from(sni.to_string()).map_err(|_| ProbeFailure::InvalidSni {
                address: address.into(),
                sni: sni.into(),
            })?;
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address)
            .await
            .map_err(|e| ProbeFailure::Resolve {
                address: address.into(),
                source: Arc::new(e),
            })?
            .collect();
        let Some(addr) = addrs.first() else {
            return Err(ProbeFailure::NoAddress {
                address: address.into(),
            });
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ProbeFailure::Connect {
                address: address.into(),
                source: Arc::new(e),
            })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls =
            connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| ProbeFailure::Handshake {
                    address: address.into(),
                    sni: sni.into(),
                    source: Arc::new(e),
                })?;
        let (_, conn) = tls.get_ref();
        let chain = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        Ok(chain)
    }

    /// Verifies a served chain for `sni` against the trust anchors, now.
    pub fn verify(&self, chain: &[CertificateDer<'static>], sni: &str) -> Result<(), VerifyError> {
        let Some(verifier) = &self.verifier else {
            return Err(VerifyError::NoAnchors);
        };
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(VerifyError::NoCertificate);
        };
        let name = ServerName::try_from(sni.to_string()).map_err(|_| VerifyError::InvalidSni)?;
        verifier
            .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(VerifyError::Rejected)
    }
}

/// Accepts any chain (it is checked after the handshake, so a bad chain is
/// recorded instead of aborting), but still checks the handshake signature
/// against the presented leaf, so the server proved it holds the key.
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
