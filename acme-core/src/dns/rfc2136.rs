//! The RFC 2136 solver: dynamic UPDATE signed with TSIG (RFC 8945), sent over
//! TCP to the zone's primary. Adding uses "add to an RRset" (§2.5.1), so other
//! values at the same name stay; cleanup uses "delete an RR from an RRset"
//! (§2.5.4), which removes exactly one value and is a no-op when it is gone.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType, TSigner};
use tracing::Instrument as _;

use super::wire::{self, name};
use super::zone::Locator;
use super::{propagation, DnsError, DnsSolver, TxtRecord};
use crate::inventory::{PropagationConfig, Rfc2136Config, Server, SolverConfig, TsigAlgorithm};
use crate::DomainName;

/// Accepted clock difference with the server (RFC 8945 §10 recommends 300 s).
const FUDGE: u16 = 300;

/// RFC 2136 + TSIG solver.
pub struct Rfc2136 {
    solver: String,
    server: Server,
    key: String,
    algorithm: TsigAlgorithm,
    signer: TSigner,
    ttl: u32,
    propagation: PropagationConfig,
    locator: Locator,
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signer holds the secret: never printed.
        f.debug_struct("Rfc2136")
            .field("solver", &self.solver)
            .field("server", &self.server)
            .field("key", &self.key)
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .field("propagation", &self.propagation)
            .finish_non_exhaustive()
    }
}

/// The wire algorithm for an inventory algorithm.
pub(super) fn hickory_algorithm(a: TsigAlgorithm) -> HickoryAlgorithm {
    match a {
        TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
    }
}

/// Builds the signer from the key name and the decoded secret bytes.
fn signer(key: &str, algorithm: TsigAlgorithm, secret: &[u8]) -> Result<TSigner, DnsError> {
    let bad = || DnsError::BadSecret { key: key.into() };
    if secret.is_empty() {
        return Err(bad());
    }
    TSigner::new(
        secret.to_vec(),
        hickory_algorithm(algorithm),
        name(key)?,
        FUDGE,
    )
    .map_err(|_| bad())
}

impl Rfc2136 {
    /// Builds the solver `solver` from its config, reading and checking the TSIG secret now.
    pub fn new(solver: &str, cfg: &Rfc2136Config) -> Result<Self, DnsError> {
        let source = cfg.tsig_secret();
        let secret = crate::secret::decode_tsig(
            &source.read()?,
            &source.origin(),
            &cfg.tsig_key,
            cfg.tsig_algorithm.name(),
        )?;
        let signer = signer(&cfg.tsig_key, cfg.tsig_algorithm, secret.expose())?;
        let propagation = SolverConfig::Rfc2136(cfg.clone()).propagation();
        Ok(Self {
            solver: solver.into(),
            server: cfg.server.clone(),
            key: cfg.tsig_key.clone(),
            algorithm: cfg.tsig_algorithm,
            signer,
            ttl: cfg.ttl,
            locator: Locator::new(propagation.resolver.clone()),
            propagation,
        })
    }

    /// Sends one signed UPDATE that adds (or deletes) `value` at `fqdn` in `zone`.
    async fn update(&self, fqdn: &str, zone: &str, value: &str, add: bool) -> Result<(), DnsError> {
        let what = if add {
            "UPDATE (add)"
        } else {
            "UPDATE (delete)"
        };
        let mut msg = update_message(fqdn, zone, value, self.ttl, add)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let server = wire::resolve(&self.server).await?;
        let bad = |e: hickory_proto::ProtoError| DnsError::BadResponse {
            server: server.to_string(),
            source: e.into(),
        };
        let verifier = msg.finalize(&self.signer, now).map_err(bad)?;
        let bytes = msg.to_vec().map_err(bad)?;
        let ask = wire::Ask {
            server,
            what,
            name: fqdn,
        };
        let answer = wire::tcp(server, &bytes, msg.metadata.id, wire::TCP_TIMEOUT)
            .await
            .map_err(|e| ask.unreachable(e))?;
        let response = Message::from_vec(&answer).map_err(|e| DnsError::BadResponse {
            server: server.to_string(),
            source: e.into(),
        })?;
        let tsig_error = response.signature.as_ref().and_then(|s| s.data.error);
        let code = response.metadata.response_code;
        if code != ResponseCode::NoError || tsig_error.is_some() {
            return Err(DnsError::Refused {
                name: fqdn.into(),
                server: server.to_string(),
                key: self.key.clone(),
                rcode: code,
                tsig_error,
            });
        }
        let signed = verifier.map(|mut v| v.verify(&answer).is_ok());
        if signed != Some(true) {
            return Err(DnsError::BadSignature {
                name: fqdn.into(),
                server: server.to_string(),
                key: self.key.clone(),
            });
        }
        Ok(())
    }
}

/// The UPDATE message (unsigned): zone section = the zone's SOA, update section = one TXT RR.
pub(super) fn update_message(
    fqdn: &str,
    zone: &str,
    value: &str,
    ttl: u32,
    add: bool,
) -> Result<Message, DnsError> {
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Update;
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name(zone)?, RecordType::SOA));
    let mut rr = Record::from_rdata(name(fqdn)?, ttl, RData::TXT(TXT::new(vec![value.into()])));
    if !add {
        // RFC 2136 §2.5.4: class NONE, TTL 0, the exact RDATA.
        rr.dns_class = DNSClass::NONE;
        rr.ttl = 0;
    }
    msg.add_authority(rr);
    Ok(msg)
}

#[async_trait::async_trait]
impl DnsSolver for Rfc2136 {
    async fn present(&self, domain: &DomainName, value: &str) -> Result<TxtRecord, DnsError> {
        let span = tracing::info_span!("dns", domain = %domain, solver = %self.solver);
        async {
            let (fqdn, zone) = self.locator.locate(domain).await?;
            self.update(&fqdn, &zone, value, true).await?;
            tracing::info!(%fqdn, %zone, server = %self.server, "TXT record added");
            Ok(TxtRecord {
                domain: DomainName::new(domain.challenge_base()).unwrap_or_else(|_| domain.clone()),
                fqdn,
                zone,
                value: value.into(),
            })
        }
        .instrument(span)
        .await
    }

    async fn present_at(&self, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(&record.fqdn, &record.zone, &record.value, true)
            .await?;
        tracing::info!(fqdn = %record.fqdn, zone = %record.zone, server = %self.server, "persistent TXT record added");
        Ok(())
    }

    async fn wait_propagated(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let span = tracing::info_span!("dns", domain = %record.domain, solver = %self.solver);
        propagation::wait(&self.locator, &self.propagation, record)
            .instrument(span)
            .await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), DnsError> {
        let span = tracing::info_span!("dns", domain = %record.domain, solver = %self.solver);
        async {
            self.update(&record.fqdn, &record.zone, &record.value, false)
                .await?;
            tracing::info!(fqdn = %record.fqdn, "TXT record removed");
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inventory_algorithm_is_supported() {
        for (a, wire_name) in [
            (TsigAlgorithm::HmacSha256, "hmac-sha256"),
            (TsigAlgorithm::HmacSha384, "hmac-sha384"),
            (TsigAlgorithm::HmacSha512, "hmac-sha512"),
        ] {
            let h = hickory_algorithm(a);
            assert!(h.supported(), "{a:?}");
            assert_eq!(h.to_name().to_ascii().trim_end_matches('.'), wire_name);
            assert!(signer("certctl-key", a, b"secret").is_ok());
        }
    }

    #[test]
    fn secret_must_not_be_empty() {
        let r = signer("k1", TsigAlgorithm::HmacSha256, b"");
        assert!(matches!(r, Err(DnsError::BadSecret { ref key }) if key == "k1"));
    }

    #[test]
    fn delete_targets_exactly_one_rr() {
        let msg =
            update_message("_acme-challenge.a.test", "a.test", "v1", 60, false).expect("message");
        assert_eq!(msg.metadata.op_code, OpCode::Update);
        assert_eq!(msg.queries[0].query_type(), RecordType::SOA);
        let rr = &msg.authorities[0];
        assert_eq!(rr.dns_class, DNSClass::NONE);
        assert_eq!(rr.ttl, 0);
        assert!(matches!(&rr.data, RData::TXT(t) if &*t.txt_data[0] == b"v1"));
        let add =
            update_message("_acme-challenge.a.test", "a.test", "v1", 60, true).expect("message");
        assert_eq!(add.authorities[0].dns_class, DNSClass::IN);
        assert_eq!(add.authorities[0].ttl, 60);
    }

    #[test]
    fn tsig_errors_use_rfc_mnemonics() {
        use super::super::wire::rcode_mnemonic;
        use hickory_proto::rr::rdata::tsig::TsigError;
        assert_eq!(rcode_mnemonic(TsigError::BadSig), "BADSIG");
        assert_eq!(rcode_mnemonic(TsigError::BadKey), "BADKEY");
        assert_eq!(rcode_mnemonic(TsigError::BadTime), "BADTIME");
    }
}
