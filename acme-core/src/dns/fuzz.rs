//! An entry point for the fuzz targets in `fuzz/`: runs this module's parsing
//! of untrusted DNS answers on raw bytes. Not part of the API.

use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::RData;

use super::{propagation, wire, zone};

/// What the module makes of one answer. Hidden: for fuzzing only.
#[doc(hidden)]
#[derive(Debug)]
pub struct FuzzAnswer {
    /// The decoded message.
    pub message: Message,
    /// The name asked about: the question's name (as [`zone`] prints names), or
    /// `_acme-challenge.example.test` when the message has no question.
    pub owner: String,
    /// The response-code check of CNAME, SOA and NS lookups.
    pub rcode: Result<(), super::DnsError>,
    /// The CNAME target of `owner`.
    pub cname: Option<String>,
    /// The zone of `owner` from an SOA record.
    pub zone: Option<String>,
    /// Each NS name of `owner` with its glue addresses.
    pub nameservers: Vec<(String, Vec<IpAddr>)>,
}

impl FuzzAnswer {
    /// Whether the answer serves TXT `value` at `owner`, as the propagation check decides.
    pub fn served(&self, value: &str) -> Result<(), super::NotServed> {
        propagation::served(&self.message, &self.owner, value)
    }
}

/// Decodes `bytes` as the module decodes an answer from the wire, and runs
/// every function that reads answers on it. `None` if it does not decode.
#[doc(hidden)]
pub fn fuzz_parse_answer(bytes: &[u8]) -> Option<FuzzAnswer> {
    let message = Message::from_vec(bytes).ok()?;
    let owner = message
        .queries
        .first()
        .map(|q| wire::text(&q.name))
        .unwrap_or_else(|| "_acme-challenge.example.test".into());
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], 53));
    let rcode = zone::check_rcode(&message, server, "fuzz query", &owner);
    let cname = zone::cname_target(&message, &owner);
    let zone = zone::zone_from_soa(&message, &owner);
    let nameservers = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(wire::text(&ns.0)),
            _ => None,
        })
        .map(|ns| {
            let addrs = zone::glue(&message, &ns);
            (ns, addrs)
        })
        .collect();
    Some(FuzzAnswer {
        message,
        owner,
        rcode,
        cname,
        zone,
        nameservers,
    })
}
