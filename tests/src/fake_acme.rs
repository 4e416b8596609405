//! A FAKE ACME CA for the lab, in-process or as the `fake-acme` binary.
//!
//! No CA on this machine speaks dns-persist-01 (Debian's pebble 2.4 does
//! not), so this fake runs the whole RFC 8555 flow over plain HTTP on
//! 127.0.0.1: directory, nonce, account, order, authorization, challenge,
//! finalize (a real certificate, signed by a key of the fake's own with
//! rcgen) and download. It offers dns-01 and dns-persist-01 and validates
//! both by really asking the lab's bind9 (recursion on, so CNAMEs into the
//! challenge zone are followed, as a CA's resolver does).
//!
//! It is a FAKE: it does not check JWS signatures, keeps everything in
//! memory, validates synchronously, and is only for tests and benchmarks.
//! The dns-persist-01 checks are written from the draft, not shared with
//! certctl's own code, so a test against it is a second reading of the draft:
//! - draft-ietf-acme-dns-persist-01 §3.1: the challenge object is tokenless
//!   and lists `issuer-domain-names` (at most 10, lower-case, no trailing dot);
//! - -01 §4: the TXT record at `_validation-persist.<domain>` is an RFC 8659
//!   issue-value: `<issuer-domain-name>; accounturi=<account URL>`, with
//!   optional `policy=wildcard` and `persistUntil=<unix seconds>`; tags are
//!   case-insensitive; one record for this CA and account must validate;
//! - -01 §5: a wildcard identifier needs `policy=wildcard`;
//! - -01 §4 item 5 and §7 (persistUntil considerations): a record past its
//!   `persistUntil` is not valid for new validations;
//! - -02 §3.1, §7.6: the challenge object and the directory `meta` carry
//!   `issuerDomainNames`; -02 §4.1: `accounturi` is the directory's
//!   `accountHashPrefix` + `sha-256/` + base64url(SHA-256(len(domain) ||
//!   domain || key thumbprint || account URL)).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Which draft's record format the FAKE CA speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeDraft {
    /// -01: `issuer-domain-names` in the challenge; `accounturi` is the account URL.
    Draft01,
    /// -02: `issuerDomainNames` in the challenge and directory; hashed `accounturi`.
    Draft02,
}

/// How the FAKE CA behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The DNS server validations ask (the lab's bind9).
    pub dns: SocketAddr,
    /// The issuer domain name it puts in challenges.
    pub issuer: String,
    /// The record format.
    pub draft: FakeDraft,
    /// Whether authorizations offer dns-persist-01 at all.
    pub offer_persist: bool,
    /// ARI (RFC 9773): the directory has `renewalInfo`, and every
    /// certificate's suggested window is this one (Retry-After: 6 h).
    pub ari_window: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Directory `meta.profiles` (draft-ietf-acme-profiles): `shortlived`.
    pub profiles: bool,
    /// Refuse every new order (403 unauthorized) after recording it.
    pub refuse_orders: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            dns: SocketAddr::from(([127, 0, 0, 1], 53)),
            issuer: "fake-ca.test".into(),
            draft: FakeDraft::Draft01,
            offer_persist: true,
            ari_window: None,
            profiles: false,
            refuse_orders: false,
        }
    }
}

struct Account {
    url: String,
    thumbprint: String,
}

struct Challenge {
    kind: &'static str,
    token: String,
    status: &'static str,
    error: Option<Value>,
}

struct Authz {
    domain: String,
    wildcard: bool,
    account: usize,
    challenges: Vec<Challenge>,
}

struct Order {
    account: usize,
    identifiers: Vec<String>,
    authzs: Vec<usize>,
    cert: Option<usize>,
    error: Option<Value>,
}

#[derive(Default)]
struct State {
    accounts: Vec<Account>,
    authzs: Vec<Authz>,
    orders: Vec<Order>,
    certs: Vec<String>,
    nonce: u64,
    validations: HashMap<&'static str, usize>,
    new_orders: Vec<Value>,
    renewal_info_paths: Vec<String>,
}

/// A running FAKE CA.
pub struct FakeAcme {
    /// The directory URL (`http://127.0.0.1:<port>/dir`).
    pub directory: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAcme {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAcme {
    /// Starts the FAKE CA on a free port of 127.0.0.1.
    pub async fn start(cfg: FakeConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, cfg)
    }

    /// Serves on `listener`.
    pub fn serve(listener: TcpListener, cfg: FakeConfig) -> std::io::Result<Self> {
        let base = format!("http://{}", listener.local_addr()?);
        let ca = Arc::new(Ca::new(base.clone(), cfg)?);
        let state = ca.state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let ca = ca.clone();
                tokio::spawn(async move { ca.connection(sock).await });
            }
        });
        Ok(Self {
            directory: format!("{base}/dir"),
            state,
            task,
        })
    }

    /// How many validations of each challenge type it has made.
    pub fn validations(&self, kind: &str) -> usize {
        self.state
            .lock()
            .map(|s| s.validations.get(kind).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The payloads of every newOrder request, in order.
    pub fn new_orders(&self) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| s.new_orders.clone())
            .unwrap_or_default()
    }

    /// The paths of every renewal-info request, in order.
    pub fn renewal_info_paths(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.renewal_info_paths.clone())
            .unwrap_or_default()
    }

    /// How many accounts it has registered.
    pub fn account_count(&self) -> usize {
        self.state.lock().map(|s| s.accounts.len()).unwrap_or(0)
    }
}

struct Ca {
    base: String,
    cfg: FakeConfig,
    state: Arc<Mutex<State>>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    issuer_pem: String,
}

type Response = (&'static str, Vec<(&'static str, String)>, Vec<u8>);

fn problem(status: &'static str, kind: &str, detail: &str) -> Response {
    (
        status,
        vec![("content-type", "application/problem+json".into())],
        json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail})
            .to_string()
            .into_bytes(),
    )
}

fn ok_json(status: &'static str, v: Value, location: Option<String>) -> Response {
    let mut h = vec![("content-type", "application/json".to_string())];
    if let Some(l) = location {
        h.push(("location", l));
    }
    (status, h, v.to_string().into_bytes())
}

impl Ca {
    fn new(base: String, cfg: FakeConfig) -> std::io::Result<Self> {
        let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "certctl FAKE ACME CA (tests only)",
        );
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Self {
            base,
            cfg,
            state: Arc::default(),
            issuer_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    async fn connection(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head, body) = loop {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < i + 4 + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                break (head, buf[i + 4..].to_vec());
            }
        };
        let mut parts = head.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let (status, headers, body) = if method == "POST" {
            self.post(&path, &body).await
        } else {
            self.get(&path)
        };
        let nonce = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.nonce += 1;
            s.nonce
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nreplay-nonce: fake{nonce}\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = sock.write_all(head.as_bytes()).await;
        if method != "HEAD" {
            let _ = sock.write_all(&body).await;
        }
    }

    fn get(&self, path: &str) -> Response {
        let b = &self.base;
        match path {
            "/dir" => {
                // -02 §7.6: the directory names the issuer domain names and
                // the hash prefix; -01 CAs may draw them from caaIdentities.
                let mut meta = match self.cfg.draft {
                    FakeDraft::Draft01 => json!({"caaIdentities": [self.cfg.issuer]}),
                    FakeDraft::Draft02 => json!({
                        "issuerDomainNames": [self.cfg.issuer],
                        "accountHashPrefix": format!("{b}/account-hash/"),
                    }),
                };
                if self.cfg.profiles {
                    meta["profiles"] = json!({"shortlived": "6 days"});
                }
                let mut dir = json!({
                    "newNonce": format!("{b}/nonce"),
                    "newAccount": format!("{b}/new-account"),
                    "newOrder": format!("{b}/new-order"),
                    "revokeCert": format!("{b}/revoke"),
                    "keyChange": format!("{b}/key-change"),
                    "meta": meta,
                });
                if self.cfg.ari_window.is_some() {
                    dir["renewalInfo"] = json!(format!("{b}/renewal-info"));
                }
                ok_json("200 OK", dir, None)
            }
            "/nonce" => ("200 OK", Vec::new(), Vec::new()),
            p if p.starts_with("/renewal-info/") && self.cfg.ari_window.is_some() => {
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .renewal_info_paths
                    .push(p.to_string());
                let fmt = &time::format_description::well_known::Rfc3339;
                let (start, end) = self
                    .cfg
                    .ari_window
                    .unwrap_or((OffsetDateTime::UNIX_EPOCH, OffsetDateTime::UNIX_EPOCH));
                let (status, mut headers, body) = ok_json(
                    "200 OK",
                    json!({"suggestedWindow": {
                        "start": start.format(fmt).unwrap_or_default(),
                        "end": end.format(fmt).unwrap_or_default(),
                    }}),
                    None,
                );
                headers.push(("retry-after", "21600".into()));
                (status, headers, body)
            }
            _ => problem(
                "404 Not Found",
                "malformed",
                "the FAKE CA has no such resource",
            ),
        }
    }

    async fn post(&self, path: &str, body: &[u8]) -> Response {
        let jws: Value = serde_json::from_slice(body).unwrap_or_default();
        let protected: Value = B64
            .decode(jws["protected"].as_str().unwrap_or(""))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let payload_raw = B64
            .decode(jws["payload"].as_str().unwrap_or(""))
            .unwrap_or_default();
        let payload: Value = serde_json::from_slice(&payload_raw).unwrap_or(Value::Null);
        if path == "/new-account" {
            return self.new_account(&protected, &payload);
        }
        // Every other request names its account by `kid` (RFC 8555 §6.2).
        let kid = protected["kid"].as_str().unwrap_or("");
        let account = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.accounts.iter().position(|a| a.url == kid)
        };
        let Some(account) = account else {
            return problem(
                "400 Bad Request",
                "accountDoesNotExist",
                "the FAKE CA knows no such account",
            );
        };
        let (kind, id) = match path.trim_start_matches('/').split_once('/') {
            Some((k, i)) => (k, i.parse::<usize>().unwrap_or(usize::MAX)),
            None => (path.trim_start_matches('/'), 0),
        };
        match kind {
            "acct" => ok_json("200 OK", json!({"status": "valid", "contact": []}), None),
            "new-order" => self.new_order(account, &payload),
            "order" => self.order_json(id, "200 OK"),
            "authz" => self.authz_json(id),
            "chall" => self.challenge(id, !payload_raw.is_empty()).await,
            "finalize" => self.finalize(id, &payload),
            "cert" => {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match s.certs.get(id) {
                    Some(pem) => (
                        "200 OK",
                        vec![("content-type", "application/pem-certificate-chain".into())],
                        pem.clone().into_bytes(),
                    ),
                    None => problem("404 Not Found", "malformed", "no such certificate"),
                }
            }
            _ => problem(
                "404 Not Found",
                "malformed",
                "the FAKE CA has no such resource",
            ),
        }
    }

    fn new_account(&self, protected: &Value, payload: &Value) -> Response {
        let thumbprint = thumbprint(&protected["jwk"]);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = s.accounts.iter().find(|a| a.thumbprint == thumbprint) {
            return ok_json("200 OK", json!({"status": "valid"}), Some(a.url.clone()));
        }
        if payload["onlyReturnExisting"] == json!(true) {
            return problem(
                "400 Bad Request",
                "accountDoesNotExist",
                "no account for this key",
            );
        }
        let url = format!("{}/acct/{}", self.base, s.accounts.len());
        s.accounts.push(Account {
            url: url.clone(),
            thumbprint,
        });
        ok_json("201 Created", json!({"status": "valid"}), Some(url))
    }

    fn new_order(&self, account: usize, payload: &Value) -> Response {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .new_orders
            .push(payload.clone());
        if self.cfg.refuse_orders {
            return problem("403 Forbidden", "unauthorized", "the FAKE CA stops here");
        }
        let identifiers: Vec<String> = payload["identifiers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["value"].as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if identifiers.is_empty() {
            return problem("400 Bad Request", "malformed", "no identifiers");
        }
        let id = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut authzs = Vec::new();
            for ident in &identifiers {
                let (domain, wildcard) = match ident.strip_prefix("*.") {
                    Some(base) => (base.to_string(), true),
                    None => (ident.clone(), false),
                };
                let mut challenges = vec![Challenge {
                    kind: "dns-01",
                    token: B64.encode(rand::random::<[u8; 16]>()),
                    status: "pending",
                    error: None,
                }];
                if self.cfg.offer_persist {
                    challenges.push(Challenge {
                        kind: "dns-persist-01",
                        token: String::new(),
                        status: "pending",
                        error: None,
                    });
                }
                authzs.push(s.authzs.len());
                s.authzs.push(Authz {
                    domain,
                    wildcard,
                    account,
                    challenges,
                });
            }
            s.orders.push(Order {
                account,
                identifiers,
                authzs,
                cert: None,
                error: None,
            });
            s.orders.len() - 1
        };
        let (status, mut headers, body) = self.order_json(id, "201 Created");
        headers.push(("location", format!("{}/order/{id}", self.base)));
        (status, headers, body)
    }

    fn order_json(&self, id: usize, status: &'static str) -> Response {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(o) = s.orders.get(id) else {
            return problem("404 Not Found", "malformed", "no such order");
        };
        let authz_status: Vec<&str> = o
            .authzs
            .iter()
            .map(|&a| authz_status(&s.authzs[a]))
            .collect();
        let state = if o.cert.is_some() {
            "valid"
        } else if authz_status.contains(&"invalid") {
            "invalid"
        } else if authz_status.iter().all(|s| *s == "valid") {
            "ready"
        } else {
            "pending"
        };
        let b = &self.base;
        let mut v = json!({
            "status": state,
            "identifiers": o.identifiers.iter().map(|i| json!({"type": "dns", "value": i})).collect::<Vec<_>>(),
            "authorizations": o.authzs.iter().map(|a| format!("{b}/authz/{a}")).collect::<Vec<_>>(),
            "finalize": format!("{b}/finalize/{id}"),
        });
        if let Some(c) = o.cert {
            v["certificate"] = json!(format!("{b}/cert/{c}"));
        }
        if let Some(e) = &o.error {
            v["error"] = e.clone();
        }
        let _ = o.account;
        ok_json(status, v, Some(format!("{b}/order/{id}")))
    }

    fn challenge_json(&self, a: &Authz, authz: usize, i: usize) -> Value {
        let c = &a.challenges[i];
        let mut v = json!({
            "type": c.kind,
            "url": format!("{}/chall/{}", self.base, authz * 8 + i),
            "status": c.status,
        });
        if c.kind == "dns-persist-01" {
            // Tokenless (-01 §3.1): only the issuer domain names.
            let field = match self.cfg.draft {
                FakeDraft::Draft01 => "issuer-domain-names",
                FakeDraft::Draft02 => "issuerDomainNames",
            };
            v[field] = json!([self.cfg.issuer]);
        } else {
            v["token"] = json!(c.token);
        }
        if let Some(e) = &c.error {
            v["error"] = e.clone();
        }
        v
    }

    fn authz_json(&self, id: usize) -> Response {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = s.authzs.get(id) else {
            return problem("404 Not Found", "malformed", "no such authorization");
        };
        let v = json!({
            "identifier": {"type": "dns", "value": a.domain},
            "status": authz_status(a),
            "wildcard": a.wildcard,
            "challenges": (0..a.challenges.len()).map(|i| self.challenge_json(a, id, i)).collect::<Vec<_>>(),
        });
        ok_json("200 OK", v, None)
    }

    async fn challenge(&self, id: usize, answer: bool) -> Response {
        let (authz, i) = (id / 8, id % 8);
        let job = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(a) = s.authzs.get(authz) else {
                return problem("404 Not Found", "malformed", "no such challenge");
            };
            let Some(c) = a.challenges.get(i) else {
                return problem("404 Not Found", "malformed", "no such challenge");
            };
            let acct = &s.accounts[a.account];
            (answer && c.status == "pending").then(|| {
                (
                    c.kind,
                    a.domain.clone(),
                    a.wildcard,
                    c.token.clone(),
                    acct.url.clone(),
                    acct.thumbprint.clone(),
                )
            })
        };
        if let Some((kind, domain, wildcard, token, url, thumb)) = job {
            let result = match kind {
                "dns-01" => self.validate_dns01(&domain, &token, &thumb).await,
                _ => self.validate_persist(&domain, wildcard, &url, &thumb).await,
            };
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            *s.validations.entry(kind).or_default() += 1;
            let a = &mut s.authzs[authz];
            match result {
                Ok(()) => a.challenges[i].status = "valid",
                Err(detail) => {
                    a.challenges[i].status = "invalid";
                    a.challenges[i].error = Some(json!({
                        "type": "urn:ietf:params:acme:error:unauthorized",
                        "detail": detail,
                    }));
                }
            }
            // Answered: reported as processing, as a CA that validates later would.
            let mut v = self.challenge_json(a, authz, i);
            v["status"] = json!("processing");
            if let Some(m) = v.as_object_mut() {
                m.remove("error");
            }
            return ok_json("200 OK", v, None);
        }
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        ok_json(
            "200 OK",
            self.challenge_json(&s.authzs[authz], authz, i),
            None,
        )
    }

    async fn validate_dns01(&self, domain: &str, token: &str, thumb: &str) -> Result<(), String> {
        let want = B64.encode(sha256(format!("{token}.{thumb}").as_bytes()));
        let name = format!("_acme-challenge.{domain}");
        let values = txt(self.cfg.dns, &name).await?;
        if values.iter().any(|v| v == &want) {
            Ok(())
        } else {
            Err(format!(
                "no TXT record with the key authorization digest at {name}"
            ))
        }
    }

    /// -01 §4 / -02 §4: one record at `_validation-persist.<domain>` for this
    /// CA and account, with `policy=wildcard` for a wildcard (§5) and a
    /// `persistUntil` not in the past.
    async fn validate_persist(
        &self,
        domain: &str,
        wildcard: bool,
        account_url: &str,
        thumb: &str,
    ) -> Result<(), String> {
        let name = format!("_validation-persist.{domain}");
        let values = txt(self.cfg.dns, &name).await?;
        let want_account = match self.cfg.draft {
            FakeDraft::Draft01 => account_url.to_string(),
            FakeDraft::Draft02 => {
                let mut input = vec![domain.len() as u8];
                input.extend_from_slice(domain.as_bytes());
                input.extend_from_slice(thumb.as_bytes());
                input.extend_from_slice(account_url.as_bytes());
                format!(
                    "{}/account-hash/sha-256/{}",
                    self.base,
                    B64.encode(sha256(&input))
                )
            }
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut why = format!("no dns-persist-01 record at {name}");
        for v in &values {
            let mut parts = v.split(';').map(str::trim);
            let issuer = parts
                .next()
                .unwrap_or("")
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if issuer != self.cfg.issuer {
                why = format!("{name}: issuer `{issuer}` is not this CA");
                continue;
            }
            let mut params = HashMap::new();
            for p in parts {
                if let Some((k, val)) = p.split_once('=') {
                    params.insert(k.trim().to_ascii_lowercase(), val.trim().to_string());
                }
            }
            if params.get("accounturi") != Some(&want_account) {
                why = format!("{name}: accounturi is not this account");
                continue;
            }
            if wildcard
                && !params
                    .get("policy")
                    .is_some_and(|p| p.eq_ignore_ascii_case("wildcard"))
            {
                why = format!("{name}: a wildcard needs policy=wildcard");
                continue;
            }
            if let Some(until) = params.get("persistuntil") {
                match until.parse::<i64>() {
                    Ok(t) if t >= now => {}
                    Ok(_) => {
                        why = format!("{name}: persistUntil has passed");
                        continue;
                    }
                    Err(_) => {
                        why = format!("{name}: persistUntil is malformed");
                        continue;
                    }
                }
            }
            return Ok(());
        }
        Err(why)
    }

    fn finalize(&self, id: usize, payload: &Value) -> Response {
        let csr = B64
            .decode(payload["csr"].as_str().unwrap_or(""))
            .unwrap_or_default();
        let ready = {
            let (status, _, body) = self.order_json(id, "200 OK");
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            status == "200 OK" && v["status"] == "ready"
        };
        if !ready {
            return problem("403 Forbidden", "orderNotReady", "the order is not ready");
        }
        let der = rustls::pki_types::CertificateSigningRequestDer::from(csr);
        let signed = rcgen::CertificateSigningRequestParams::from_der(&der).and_then(|mut req| {
            let now = OffsetDateTime::now_utc();
            req.params.not_before = now - time::Duration::minutes(1);
            req.params.not_after = now + time::Duration::days(90);
            req.params.use_authority_key_identifier_extension = true;
            req.params.serial_number =
                Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
            req.signed_by(&self.issuer)
        });
        let cert = match signed {
            Ok(c) => c,
            Err(e) => return problem("400 Bad Request", "badCSR", &e.to_string()),
        };
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.certs.push(format!("{}{}", cert.pem(), self.issuer_pem));
            let n = s.certs.len() - 1;
            if let Some(o) = s.orders.get_mut(id) {
                o.cert = Some(n);
            }
        }
        self.order_json(id, "200 OK")
    }
}

fn authz_status(a: &Authz) -> &'static str {
    if a.challenges.iter().any(|c| c.status == "valid") {
        "valid"
    } else if a.challenges.iter().any(|c| c.status == "invalid") {
        "invalid"
    } else {
        "pending"
    }
}

fn sha256(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// RFC 7638 thumbprint of a JWK (EC or RSA): its required members in
/// lexicographic order, no spaces, SHA-256, base64url.
fn thumbprint(jwk: &Value) -> String {
    let s = |k: &str| jwk[k].as_str().unwrap_or("").to_string();
    let canonical = if jwk["kty"] == "RSA" {
        format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n"))
    } else {
        format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("x"),
            s("y")
        )
    };
    B64.encode(sha256(canonical.as_bytes()))
}

/// The TXT values at `name`, asked of `server` with recursion on.
async fn txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let qname = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("bad name {name}: {e}"))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, RecordType::TXT));
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, server)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .map_err(|_| format!("DNS server {server} did not answer for {name}"))?
        .map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}
