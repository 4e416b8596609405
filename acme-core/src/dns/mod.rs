//! DNS-01 solvers, CNAME following and propagation checks.
//!
//! This module owns everything between "the CA wants TXT value V at
//! `_acme-challenge.<domain>`" and "every authoritative server of the zone
//! serves V":
//!
//! - **Locating the record**: `_acme-challenge.<base>` may be a CNAME (or a
//!   chain of them, at most [`MAX_CNAME_HOPS`]) into a dedicated challenge
//!   zone; the record is written at the final target. The zone holding it is
//!   the owner of the SOA record the resolver returns for that name. Both are
//!   asked of the solver's `resolver` (an `IP:port`), or of the first
//!   `nameserver` in `/etc/resolv.conf` when it is unset.
//! - **Writing it**: [`Rfc2136`] sends RFC 2136 UPDATE messages signed with
//!   TSIG (RFC 8945) to the zone's primary; [`Exec`] runs a command of the
//!   user's choice.
//! - **Waiting for it**: [`DnsSolver::wait_propagated`] finds the zone's NS
//!   records and asks every one of those servers directly, with recursion off,
//!   until each serves the value (first at once, then backing off from 25 ms
//!   to 1 s, bounded by `propagation_timeout`), then waits the optional
//!   `propagation_delay`.
//!
//! # The exec solver's environment
//!
//! The `present` and `cleanup` commands of an `exec` solver run without a
//! shell, with stdin closed, bounded by the solver's `timeout`, and with these
//! variables added to certctl's environment:
//!
//! | variable | value |
//! |---|---|
//! | `CERTCTL_ACTION` | `present` or `cleanup` |
//! | `CERTCTL_DOMAIN` | the certificate domain, wildcard reduced to its base (`example.com` for `*.example.com`) |
//! | `CERTCTL_FQDN` | the name that holds the TXT record, after following CNAMEs, no trailing dot |
//! | `CERTCTL_ZONE` | the zone containing `CERTCTL_FQDN`, no trailing dot |
//! | `CERTCTL_TXT_VALUE` | the TXT value to add or remove |
//! | `CERTCTL_TTL` | the TTL in seconds to give the record |
//!
//! A command must add the value without removing other values at the same
//! name (a wildcard and its base share one name), remove only that value on
//! cleanup, and exit 0 on success; a non-zero exit is reported with the tail
//! of its stderr. Cleanup of a value that is already gone must succeed.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigError;

use crate::inventory::SolverConfig;
use crate::secret::SecretError;
use crate::DomainName;

mod exec;
mod fuzz;
pub mod persist;
mod propagation;
mod rfc2136;
mod wire;
mod zone;

pub use exec::Exec;
#[doc(hidden)]
pub use fuzz::{fuzz_parse_answer, FuzzAnswer};
pub use propagation::{NotServed, Unpropagated};
pub use rfc2136::Rfc2136;

/// How many CNAMEs are followed from `_acme-challenge.<domain>` at most.
pub const MAX_CNAME_HOPS: usize = 8;

/// A TXT record presented for one DNS-01 challenge.
#[derive(Debug, Clone)]
pub struct TxtRecord {
    /// The certificate domain it is for (wildcards already reduced to their base).
    pub domain: DomainName,
    /// Absolute name that holds the TXT record after following CNAMEs, lower-case, no trailing dot.
    pub fqdn: String,
    /// The zone that contains `fqdn` (found by SOA lookup), no trailing dot.
    pub zone: String,
    /// The TXT value (base64url SHA-256 of the key authorization).
    pub value: String,
}

/// Something that can publish and remove DNS-01 TXT records (RFC 8555 §8.4).
#[async_trait::async_trait]
pub trait DnsSolver: Send + Sync + std::fmt::Debug {
    /// Adds the TXT record `value` at `domain`'s `_acme-challenge` name (after following CNAMEs).
    /// Other values at the same name are kept: a wildcard and its apex share one name.
    async fn present(&self, domain: &DomainName, value: &str) -> Result<TxtRecord, DnsError>;
    /// Waits until every authoritative nameserver of the record's zone serves the value.
    async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), DnsError>;
    /// Removes exactly this value (idempotent: a missing record is not an error).
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError>;
    /// Adds `record.value` at exactly `record.fqdn` in `record.zone`, already
    /// located (the persistent dns-persist-01 record, [`persist::locate`]).
    async fn present_at(&self, record: &TxtRecord) -> Result<(), DnsError>;
}

/// Builds the solver named `name` from its config; reads secrets now so a bad secret fails early.
pub fn solver(name: &str, cfg: &SolverConfig) -> Result<Arc<dyn DnsSolver>, DnsError> {
    Ok(match cfg {
        SolverConfig::Rfc2136(c) => Arc::new(Rfc2136::new(name, c)?),
        SolverConfig::Exec(c) => Arc::new(Exec::new(name, c)),
        SolverConfig::Persist(_) => {
            return Err(DnsError::NotADnsSolver {
                solver: name.to_string(),
            })
        }
    })
}

/// A DNS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A `type = "persist"` solver was asked to write a DNS-01 record.
    #[error("solver `{solver}` is a dns-persist-01 solver and writes no DNS record: give it a `fallback` dns-01 solver")]
    NotADnsSolver {
        /// The solver's name.
        solver: String,
    },
    /// The primary answered the UPDATE with an error (bad key, bad secret, policy).
    #[error(
        "DNS UPDATE of `{name}` refused by {server} with {} for TSIG key `{key}`: {}",
        rcode_text(*.rcode, *.tsig_error),
        refusal_hint(*.rcode, *.tsig_error)
    )]
    Refused {
        /// The name being updated.
        name: String,
        /// The server that refused.
        server: String,
        /// The TSIG key name used.
        key: String,
        /// The response code (printed as the RFCs spell it, `NOTAUTH`).
        rcode: ResponseCode,
        /// The TSIG error of the answer's signature, if any (RFC 8945 §3;
        /// printed after a slash: `NOTAUTH/BADSIG`).
        tsig_error: Option<TsigError>,
    },
    /// The primary's answer to an UPDATE is not signed with our key.
    #[error(
        "the answer of {server} to the DNS UPDATE of `{name}` is not signed with TSIG key `{key}`: \
         check that the server has the same secret and algorithm"
    )]
    BadSignature {
        /// The name being updated.
        name: String,
        /// The server that answered.
        server: String,
        /// The TSIG key name used.
        key: String,
    },
    /// A DNS server did not answer (connection refused, timeout).
    #[error("DNS server {server} did not answer the {what} for `{name}`: is the DNS server running and reachable?")]
    Unreachable {
        /// The server asked.
        server: String,
        /// What was asked (`UPDATE`, `SOA query`, ...).
        what: String,
        /// The name asked about.
        name: String,
        /// The network error (kind `TimedOut` for timeouts).
        #[source]
        source: std::io::Error,
    },
    /// A resolver answered a lookup with an error code.
    #[error("DNS server {server} answered the {what} for `{name}` with {}", wire::rcode_mnemonic(*.rcode))]
    Lookup {
        /// The server asked.
        server: String,
        /// What was asked.
        what: String,
        /// The name asked about.
        name: String,
        /// The response code (`SERVFAIL`, `REFUSED`, ...).
        rcode: ResponseCode,
    },
    /// A DNS server sent a message that cannot be decoded.
    #[error("DNS server {server} sent an answer that cannot be decoded")]
    BadResponse {
        /// The server.
        server: String,
        /// The decoding error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No SOA record was found for a name.
    #[error(
        "no zone found for `{name}`: resolver {resolver} returned no SOA record; \
         check that the zone exists and is delegated"
    )]
    NoZone {
        /// The name whose zone was looked for.
        name: String,
        /// The resolver asked.
        resolver: String,
    },
    /// The CNAME chain from `_acme-challenge.<domain>` comes back to a name it passed.
    #[error("CNAME loop from `{name}`: {}; fix the CNAME records", .chain.join(" -> "))]
    CnameLoop {
        /// Where the chain starts.
        name: String,
        /// The names followed, ending with the repeated one.
        chain: Vec<String>,
    },
    /// The CNAME chain is longer than [`MAX_CNAME_HOPS`].
    #[error("CNAME chain from `{name}` is longer than {MAX_CNAME_HOPS} hops: {}", .chain.join(" -> "))]
    CnameChainTooLong {
        /// Where the chain starts.
        name: String,
        /// The names followed.
        chain: Vec<String>,
    },
    /// No authoritative server of the zone could be found.
    #[error("zone `{zone}` has no nameserver with an address (NS lookup via {resolver})")]
    NoNameservers {
        /// The zone.
        zone: String,
        /// The resolver asked.
        resolver: String,
    },
    /// Not every authoritative server showed the value in time.
    #[error(
        "TXT `{value}` at `{fqdn}` is not served by every authoritative server after {}s; \
         not yet on: {}; check that those servers run and get NOTIFY/zone transfers from \
         the primary, or raise propagation_timeout",
        .waited.as_secs_f32().round(),
        list(.missing)
    )]
    PropagationTimeout {
        /// The record's name.
        fqdn: String,
        /// The TXT value.
        value: String,
        /// How long was waited.
        waited: Duration,
        /// The servers that did not show it, with what they last said.
        missing: Vec<propagation::Unpropagated>,
    },
    /// An exec solver command exited unsuccessfully.
    #[error("{action} command `{command}` failed ({status}): {}", stderr_or_none(.stderr_tail))]
    Exec {
        /// `present` or `cleanup`.
        action: &'static str,
        /// The command line.
        command: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// An exec solver command ran longer than the solver's `timeout`.
    #[error("{action} command `{command}` did not finish within {}s and was killed", .timeout.as_secs_f32())]
    ExecTimeout {
        /// `present` or `cleanup`.
        action: &'static str,
        /// The command line.
        command: String,
        /// The configured bound.
        timeout: Duration,
    },
    /// An exec solver command could not be started.
    #[error("cannot run {action} command `{command}`")]
    ExecSpawn {
        /// `present` or `cleanup`.
        action: &'static str,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TSIG secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The TSIG secret cannot be decoded (base64 or `tsig-keygen` block).
    #[error(transparent)]
    TsigSecret(#[from] crate::secret::TsigSecretError),
    /// The decoded TSIG secret is not usable as an HMAC key.
    #[error("the TSIG secret of key `{key}` is not usable as an HMAC key; make a new one with `tsig-keygen {key}`")]
    BadSecret {
        /// The TSIG key name.
        key: String,
    },
    /// A name is not a valid DNS name.
    #[error("`{name}` is not a valid DNS name")]
    BadName {
        /// The name.
        name: String,
    },
    /// No resolver is configured and `/etc/resolv.conf` names none.
    #[error(
        "no DNS resolver: set `resolver` in the solver or add a nameserver to /etc/resolv.conf"
    )]
    NoResolver,
    /// A server given by host name could not be resolved.
    #[error("cannot resolve the DNS server host `{host}`")]
    ServerAddress {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `NOTAUTH`, or `NOTAUTH/BADSIG` with the TSIG error.
fn rcode_text(rcode: ResponseCode, tsig_error: Option<TsigError>) -> String {
    let code = wire::rcode_mnemonic(rcode);
    match tsig_error {
        Some(t) => format!("{code}/{}", wire::rcode_mnemonic(t)),
        None => code,
    }
}

fn refusal_hint(rcode: ResponseCode, tsig_error: Option<TsigError>) -> &'static str {
    // A TSIG error can come as the signature's error or as the (extended) rcode.
    let tsig = tsig_error.or(match rcode {
        ResponseCode::BADSIG => Some(TsigError::BadSig),
        ResponseCode::BADKEY => Some(TsigError::BadKey),
        ResponseCode::BADTIME => Some(TsigError::BadTime),
        _ => None,
    });
    match (tsig, rcode) {
        (Some(TsigError::BadKey), _) => {
            "the server does not know this key name or algorithm; check tsig_key and tsig_algorithm"
        }
        (Some(TsigError::BadSig), _) => {
            "check the secret in tsig_secret_file (or tsig_secret_env) and the key's algorithm"
        }
        (Some(TsigError::BadTime), _) => {
            "the clocks of this host and the server differ by more than 5 minutes"
        }
        (_, ResponseCode::Refused) => {
            "check the key's update-policy (or allow-update) on the server for this name and TXT"
        }
        (_, ResponseCode::NotAuth | ResponseCode::NotZone) => {
            "check that the server is the primary of the zone and the key's update-policy"
        }
        _ => "check the server's log",
    }
}

/// `a, b, c`.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn stderr_or_none(tail: &str) -> &str {
    if tail.trim().is_empty() {
        "no output on stderr"
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_key_server_and_fix() {
        let e = DnsError::Refused {
            name: "_acme-challenge.x.example".into(),
            server: "127.0.0.1:53".into(),
            key: "certctl-key".into(),
            rcode: ResponseCode::NotAuth,
            tsig_error: Some(TsigError::BadSig),
        };
        assert_eq!(
            e.to_string(),
            "DNS UPDATE of `_acme-challenge.x.example` refused by 127.0.0.1:53 with NOTAUTH/BADSIG \
             for TSIG key `certctl-key`: check the secret in tsig_secret_file (or tsig_secret_env) \
             and the key's algorithm"
        );
    }

    #[test]
    fn badkey_hint_comes_from_the_tsig_error_or_the_extended_rcode() {
        let refused = |rcode, tsig_error| DnsError::Refused {
            name: "n".into(),
            server: "s".into(),
            key: "k".into(),
            rcode,
            tsig_error,
        };
        let hint = "the server does not know this key name or algorithm";
        let by_tsig = refused(ResponseCode::NotAuth, Some(TsigError::BadKey)).to_string();
        assert!(
            by_tsig.contains("NOTAUTH/BADKEY") && by_tsig.contains(hint),
            "{by_tsig}"
        );
        let by_rcode = refused(ResponseCode::BADKEY, None).to_string();
        assert!(
            by_rcode.contains("with BADKEY ") && by_rcode.contains(hint),
            "{by_rcode}"
        );
        let policy = refused(ResponseCode::Refused, None).to_string();
        assert!(
            policy.contains("with REFUSED ") && policy.contains("update-policy"),
            "{policy}"
        );
    }

    #[test]
    fn propagation_timeout_lists_missing_servers() {
        let e = DnsError::PropagationTimeout {
            fqdn: "a.example".into(),
            value: "v".into(),
            waited: Duration::from_millis(2100),
            missing: vec![propagation::Unpropagated {
                server: "ns2.example".into(),
                addr: "127.0.0.2:53".parse().expect("address"),
                why: propagation::NotServed::NoAnswer(std::sync::Arc::new(
                    std::io::ErrorKind::ConnectionRefused.into(),
                )),
            }],
        };
        let s = e.to_string();
        assert!(s.contains("after 2s"), "{s}");
        assert!(s.contains("127.0.0.2:53"), "{s}");
    }
}
