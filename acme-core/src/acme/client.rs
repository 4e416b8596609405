//! The HTTP client under `instant-acme`: trusts the system roots plus the
//! inventory's CA bundle, and remembers the CA's `Retry-After` answers (RFC
//! 8555 §6.6) so rate limits can be honoured and stored between runs.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::AcmeError;

/// Bound on one request to the CA, connection included: a CA that accepts
/// the request but never answers (pebble deadlocks under load, for one) is
/// an error, not a run that hangs until a timer kills it.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a CA may leave every request unanswered before a run stops
/// asking it: then the remaining requests fail at once with [`Stalled`]
/// (and the fallback CA, if any, takes over), instead of each waiting out
/// its own [`REQUEST_TIMEOUT`].
const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The CA has answered no request for [`STALL_LIMIT`]; it is not asked
/// again in this run.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ACME server at {origin} has answered none of certctl's requests for {} s (each one \
     timed out); certctl stops asking it in this run: check that it is up and not stuck, \
     then run again",
    .silent_for.as_secs()
)]
pub(crate) struct Stalled {
    origin: String,
    silent_for: std::time::Duration,
}

/// Whether one CA still answers, shared by every request of a run to it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Health {
    /// When the oldest request that timed out since the last answer was sent.
    silent_since: Arc<Mutex<Option<std::time::Instant>>>,
}

impl Health {
    fn answered(&self) {
        *self.silent_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn timed_out(&self, sent: std::time::Instant) {
        let mut g = self.silent_since.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(g.map_or(sent, |old| old.min(sent)));
    }

    /// How long the CA has been silent, once that reaches `limit`.
    fn stalled(&self, limit: std::time::Duration) -> Option<std::time::Duration> {
        let g = self.silent_since.lock().unwrap_or_else(|e| e.into_inner());
        g.map(|t| t.elapsed()).filter(|d| *d >= limit)
    }
}

/// The CA did not answer one request in time.
#[derive(Debug, thiserror::Error)]
#[error("the ACME server at {uri} did not answer within {} s (is it overloaded or stuck?)", .after.as_secs())]
pub(crate) struct NoAnswer {
    uri: String,
    after: std::time::Duration,
}

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// What the CA last said about when to come back.
#[derive(Debug, Default, Clone)]
pub(crate) struct RetryLog {
    inner: Arc<Mutex<Option<SystemTime>>>,
}

impl RetryLog {
    /// The latest `Retry-After` seen on a 429 or 503 answer, if any.
    pub(crate) fn latest(&self) -> Option<SystemTime> {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, at: SystemTime) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(g.map_or(at, |old| old.max(at)));
    }
}

/// An `HttpClient` for one CA.
pub(crate) struct CaClient {
    inner: Inner,
    log: RetryLog,
    health: Health,
    timeout: std::time::Duration,
    stall_limit: std::time::Duration,
}

impl CaClient {
    /// Builds a client trusting the system roots and `bundle` (PEM), if given;
    /// `log` and `health` are shared by every client of one CA in a run.
    pub(crate) fn new(
        bundle: Option<&Path>,
        log: RetryLog,
        health: Health,
    ) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        if let Some(path) = bundle {
            let pem = crate::fsread::read_file(path, crate::fsread::FileKind::CaBundle).map_err(
                |source| AcmeError::CaBundle {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
            let mut added = 0;
            for der in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                if roots.add(der).is_ok() {
                    added += 1;
                }
            }
            if added == 0 {
                return Err(AcmeError::CaBundle {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "no PEM certificate in it",
                    ),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| AcmeError::Tls { source })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Without TCP_NODELAY the first request after the handshake waits
        // ~40 ms for a delayed ACK.
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            inner,
            log,
            health,
            timeout: REQUEST_TIMEOUT,
            stall_limit: STALL_LIMIT,
        })
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = format!(
            "{}://{}{}",
            req.uri().scheme_str().unwrap_or("https"),
            req.uri().authority().map_or("", |a| a.as_str()),
            req.uri().path()
        );
        if let Some(silent_for) = self.health.stalled(self.stall_limit) {
            let origin = format!(
                "{}://{}",
                req.uri().scheme_str().unwrap_or("https"),
                req.uri().authority().map_or("", |a| a.as_str())
            );
            return Box::pin(async move {
                Err(instant_acme::Error::Other(Box::new(Stalled {
                    origin,
                    silent_for,
                })))
            });
        }
        let fut = HttpClient::request(&self.inner, req);
        let (log, health, after) = (self.log.clone(), self.health.clone(), self.timeout);
        Box::pin(async move {
            let sent = std::time::Instant::now();
            let rsp = match tokio::time::timeout(after, fut).await {
                Ok(r) => {
                    // A refused connection is an answer too: the CA is down, not stuck.
                    health.answered();
                    r?
                }
                Err(_) => {
                    health.timed_out(sent);
                    return Err(instant_acme::Error::Other(Box::new(NoAnswer {
                        uri,
                        after,
                    })));
                }
            };
            let status = rsp.parts.status;
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                if let Some(at) = rsp
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                {
                    log.record(at);
                }
            }
            Ok(rsp)
        })
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return SystemTime::now().checked_add(std::time::Duration::from_secs(secs));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v, &fmt)
        .ok()
        .map(|t| t.assume_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ca_that_never_answers_is_an_error_naming_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts, reads, never answers.
        let held = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            drop(conn);
        });
        let mut client =
            CaClient::new(None, RetryLog::default(), Health::default()).expect("client");
        client.timeout = std::time::Duration::from_millis(300);
        let req = Request::get(format!("http://{addr}/dir"))
            .body(BodyWrapper::from(Vec::new()))
            .expect("request");
        let err = match client.request(req).await {
            Ok(_) => panic!("a silent server gave an answer"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("http://{addr}/dir")) && err.contains("did not answer within"),
            "{err}"
        );
        held.abort();
    }

    #[tokio::test]
    async fn a_ca_silent_past_the_stall_limit_is_not_asked_again_in_the_run() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        // Accepts every connection and never answers any.
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                conns.push(c);
            }
        });
        let health = Health::default();
        let mut client = CaClient::new(None, RetryLog::default(), health.clone()).expect("client");
        client.timeout = std::time::Duration::from_millis(200);
        client.stall_limit = std::time::Duration::from_millis(500);
        let get = || {
            Request::get(format!("http://{addr}/dir"))
                .body(BodyWrapper::from(Vec::new()))
                .expect("request")
        };
        // Requests time out one by one until the CA has been silent for the limit.
        let started = std::time::Instant::now();
        let mut timed_out = 0;
        let err = loop {
            match client.request(get()).await {
                Ok(_) => panic!("a silent server gave an answer"),
                Err(instant_acme::Error::Other(e)) if e.is::<NoAnswer>() => timed_out += 1,
                Err(e) => break e.to_string(),
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "never gave up"
            );
        };
        assert!(timed_out >= 2, "{timed_out}");
        assert!(
            err.contains(&format!("http://{addr}")) && err.contains("stops asking it"),
            "{err}"
        );
        // From now on no request reaches the CA, and each fails at once.
        let seen = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let t = std::time::Instant::now();
        for _ in 0..20 {
            let e = client.request(get()).await.err().expect("stalled");
            assert!(e.to_string().contains("stops asking it"), "{e}");
        }
        assert!(t.elapsed() < std::time::Duration::from_millis(200));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), seen);
        // An answer (here: a refused connection, the CA restarted) clears it.
        health.answered();
        assert!(health.stalled(client.stall_limit).is_none());
        held.abort();
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::now();
        let at = parse_retry_after("120").expect("seconds");
        let d = at.duration_since(now).expect("future").as_secs();
        assert!((119..=121).contains(&d), "{d}");
        let at = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after epoch")
                .as_secs(),
            1_445_412_480
        );
        assert!(parse_retry_after("soon").is_none());
    }

    #[test]
    fn log_keeps_the_latest() {
        let log = RetryLog::default();
        let a = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        let b = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20);
        log.record(b);
        log.record(a);
        assert_eq!(log.latest(), Some(b));
    }
}
