//! Finding where a challenge record lives: CNAME following, the zone (SOA
//! owner), and the zone's authoritative servers. Everything is asked of one
//! resolver, with recursion on.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::wire::{self, name, text};
use super::{DnsError, MAX_CNAME_HOPS};
use crate::inventory::Server;
use crate::DomainName;

/// Asks a resolver where records live.
#[derive(Debug, Clone)]
pub(super) struct Locator {
    /// The configured resolver; `/etc/resolv.conf` when `None`.
    resolver: Option<Server>,
}

/// An authoritative server of a zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Nameserver {
    /// Its NS name, no trailing dot.
    pub(super) name: String,
    /// One of its addresses, port 53.
    pub(super) addr: SocketAddr,
}

impl Locator {
    pub(super) fn new(resolver: Option<Server>) -> Self {
        Self { resolver }
    }

    async fn resolver(&self) -> Result<SocketAddr, DnsError> {
        match &self.resolver {
            Some(s) => wire::resolve(s).await,
            None => {
                let conf = tokio::fs::read_to_string("/etc/resolv.conf")
                    .await
                    .unwrap_or_default();
                first_nameserver(&conf)
                    .map(|ip| SocketAddr::new(ip, 53))
                    .ok_or(DnsError::NoResolver)
            }
        }
    }

    /// The TXT record's name (after CNAMEs) and its zone, for `domain`.
    pub(super) async fn locate(&self, domain: &DomainName) -> Result<(String, String), DnsError> {
        let resolver = self.resolver().await?;
        let fqdn = self
            .follow_cnames(resolver, &domain.challenge_name())
            .await?;
        let zone = self.zone_of(resolver, &fqdn).await?;
        Ok((fqdn, zone))
    }

    /// [`Locator::locate`] for any record name (`_validation-persist.<domain>`).
    pub(super) async fn locate_name(&self, start: &str) -> Result<(String, String), DnsError> {
        let resolver = self.resolver().await?;
        let fqdn = self.follow_cnames(resolver, start).await?;
        let zone = self.zone_of(resolver, &fqdn).await?;
        Ok((fqdn, zone))
    }

    /// Follows CNAMEs from `start`, one hop per query, so each hop and any loop is seen.
    async fn follow_cnames(&self, resolver: SocketAddr, start: &str) -> Result<String, DnsError> {
        let mut chain = vec![start.to_ascii_lowercase()];
        loop {
            let current = chain.last().cloned().unwrap_or_default();
            let msg = wire::query(
                resolver,
                &current,
                RecordType::CNAME,
                true,
                "CNAME query",
                None,
            )
            .await?;
            check_rcode(&msg, resolver, "CNAME query", &current)?;
            let Some(target) = cname_target(&msg, &current) else {
                return Ok(current);
            };
            if chain.contains(&target) {
                chain.push(target);
                return Err(DnsError::CnameLoop {
                    name: start.into(),
                    chain,
                });
            }
            chain.push(target);
            if chain.len() > MAX_CNAME_HOPS + 1 {
                return Err(DnsError::CnameChainTooLong {
                    name: start.into(),
                    chain,
                });
            }
            tracing::debug!(from = %current, to = %chain.last().map(String::as_str).unwrap_or(""), "following CNAME");
        }
    }

    /// The zone containing `fqdn`: the owner of the SOA record in the answer or authority section.
    async fn zone_of(&self, resolver: SocketAddr, fqdn: &str) -> Result<String, DnsError> {
        let msg = wire::query(resolver, fqdn, RecordType::SOA, true, "SOA query", None).await?;
        check_rcode(&msg, resolver, "SOA query", fqdn)?;
        zone_from_soa(&msg, fqdn).ok_or_else(|| DnsError::NoZone {
            name: fqdn.into(),
            resolver: resolver.to_string(),
        })
    }

    /// The zone's NS records and their addresses (every address of every server).
    pub(super) async fn nameservers(&self, zone: &str) -> Result<Vec<Nameserver>, DnsError> {
        let resolver = self.resolver().await?;
        let msg = wire::query(resolver, zone, RecordType::NS, true, "NS query", None).await?;
        check_rcode(&msg, resolver, "NS query", zone)?;
        let zone_name = name(zone)?;
        let mut out = BTreeSet::new();
        for record in &msg.answers {
            let RData::NS(ns) = &record.data else {
                continue;
            };
            if record.name != zone_name {
                continue;
            }
            let ns_name = text(&ns.0);
            let mut addrs = glue(&msg, &ns_name);
            if addrs.is_empty() {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    let m =
                        wire::query(resolver, &ns_name, rtype, true, "address query", None).await?;
                    addrs.extend(m.answers.iter().filter_map(|r| ip_of(&r.data)));
                }
            }
            for ip in addrs {
                out.insert(Nameserver {
                    name: ns_name.clone(),
                    addr: SocketAddr::new(ip, 53),
                });
            }
        }
        if out.is_empty() {
            return Err(DnsError::NoNameservers {
                zone: zone.into(),
                resolver: resolver.to_string(),
            });
        }
        Ok(out.into_iter().collect())
    }
}

/// NXDOMAIN is a normal answer here (the challenge name need not exist yet).
pub(super) fn check_rcode(
    msg: &Message,
    server: SocketAddr,
    what: &str,
    name: &str,
) -> Result<(), DnsError> {
    match msg.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(()),
        code => Err(DnsError::Lookup {
            server: server.to_string(),
            what: what.into(),
            name: name.into(),
            rcode: code,
        }),
    }
}

/// The CNAME target of `owner` in the answer section, lower-case, no trailing dot.
pub(super) fn cname_target(msg: &Message, owner: &str) -> Option<String> {
    msg.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(c) if text(&r.name) == owner => Some(text(&c.0)),
        _ => None,
    })
}

/// The owner of the SOA record that covers `fqdn`: in the answer section when
/// `fqdn` is the apex, else in the authority section of a negative answer.
/// The root's SOA (a resolver's answer for an undelegated TLD) is no zone.
pub(super) fn zone_from_soa(msg: &Message, fqdn: &str) -> Option<String> {
    let target = name(fqdn).ok()?;
    msg.answers
        .iter()
        .chain(msg.authorities.iter())
        .filter(|r| matches!(r.data, RData::SOA(_)) && !r.name.is_root())
        .find(|r| r.name.zone_of(&target))
        .map(|r| text(&r.name))
}

pub(super) fn glue(msg: &Message, ns_name: &str) -> Vec<IpAddr> {
    msg.additionals
        .iter()
        .filter(|r| text(&r.name) == ns_name)
        .filter_map(|r| ip_of(&r.data))
        .collect()
}

fn ip_of(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// The first `nameserver` line of a resolv.conf.
pub(super) fn first_nameserver(conf: &str) -> Option<IpAddr> {
    conf.lines()
        .map(|l| l.split(['#', ';']).next().unwrap_or(""))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            // A scope suffix (`fe80::1%eth0`) does not parse as IpAddr: such lines are skipped.
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{CNAME, SOA, TXT};
    use hickory_proto::rr::{Name, Record};

    fn soa(owner: &str) -> Record {
        Record::from_rdata(
            name(owner).expect("name"),
            300,
            RData::SOA(SOA::new(
                name(&format!("ns1.{owner}")).expect("name"),
                name(&format!("hostmaster.{owner}")).expect("name"),
                1,
                3600,
                600,
                86400,
                60,
            )),
        )
    }

    #[test]
    fn zone_is_the_soa_owner_in_the_authority_section() {
        let mut msg = Message::query();
        msg.metadata.response_code = ResponseCode::NXDomain;
        msg.add_authority(soa("challenges.test"));
        assert_eq!(
            zone_from_soa(&msg, "media.challenges.test").as_deref(),
            Some("challenges.test")
        );
    }

    #[test]
    fn zone_is_the_name_itself_at_the_apex() {
        let mut msg = Message::query();
        msg.add_answer(soa("example.test"));
        assert_eq!(
            zone_from_soa(&msg, "Example.Test.").as_deref(),
            Some("example.test")
        );
    }

    #[test]
    fn soa_of_an_unrelated_zone_is_ignored() {
        let mut msg = Message::query();
        msg.add_authority(soa("other.test"));
        assert_eq!(zone_from_soa(&msg, "a.example.test"), None);
        let mut msg = Message::query();
        msg.add_answer(Record::from_rdata(
            name("a.example.test").expect("name"),
            60,
            RData::TXT(TXT::new(vec!["x".into()])),
        ));
        assert_eq!(zone_from_soa(&msg, "a.example.test"), None);
    }

    /// Found by the `dns_wire` fuzz target: for a name under a TLD that does not
    /// exist, a resolver answers NXDOMAIN with the root's SOA, and the root was
    /// taken as the zone (so the UPDATE went to the wrong zone instead of NoZone).
    #[test]
    fn fuzz_dns_wire_root_soa_is_not_a_zone() {
        let mut msg = Message::query();
        msg.metadata.response_code = ResponseCode::NXDomain;
        msg.add_authority(Record::from_rdata(
            Name::root(),
            86400,
            RData::SOA(SOA::new(
                name("a.root-servers.net").expect("name"),
                name("nstld.verisign-grs.com").expect("name"),
                1,
                1800,
                900,
                604800,
                86400,
            )),
        ));
        assert_eq!(
            zone_from_soa(&msg, "_acme-challenge.www.example.invalid"),
            None
        );
    }

    #[test]
    fn cname_target_only_for_the_asked_owner() {
        let mut msg = Message::query();
        msg.add_answer(Record::from_rdata(
            name("_acme-challenge.media.example.test").expect("name"),
            60,
            RData::CNAME(CNAME(name("Media.Challenges.test").expect("name"))),
        ));
        assert_eq!(
            cname_target(&msg, "_acme-challenge.media.example.test").as_deref(),
            Some("media.challenges.test")
        );
        assert_eq!(cname_target(&msg, "other.example.test"), None);
    }

    #[test]
    fn resolv_conf_first_usable_nameserver() {
        let conf = "# generated\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.2 # main\nnameserver 10.0.0.3\n";
        assert_eq!(first_nameserver(conf), "10.0.0.2".parse().ok());
        assert_eq!(first_nameserver("search lan\n"), None);
    }
}
