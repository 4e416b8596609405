//! DNS messages on the wire: one request, one answer, over UDP (TCP when
//! truncated) or TCP, every step bounded by a timeout. Our own transport so
//! that every failure keeps the server, the raw answer and its response code.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::DnsError;
use crate::inventory::Server;

/// Bound on one UDP attempt; a second attempt gets twice as long.
const UDP_ATTEMPT: Duration = Duration::from_millis(1000);
/// Bound on one TCP exchange (connect, write, read).
pub(super) const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// A name as hickory wants it: absolute.
pub(super) fn name(s: &str) -> Result<Name, DnsError> {
    let bare = s.trim_end_matches('.');
    Name::from_ascii(format!("{bare}.")).map_err(|_| DnsError::BadName { name: s.into() })
}

/// A name as we print and store it: lower-case, no trailing dot.
pub(super) fn text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// A response code (or TSIG error, RFC 8945 §3) as the RFCs spell it
/// (`NOERROR`, `NXDOMAIN`, `BADSIG`, ...).
pub(super) fn rcode_mnemonic(code: impl Into<u16>) -> String {
    match code.into() {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        n => format!("RCODE{n}"),
    }
}

/// Turns a configured server into a socket address (resolving a host name).
pub(super) async fn resolve(server: &Server) -> Result<SocketAddr, DnsError> {
    if let Some(addr) = server.socket_addr() {
        return Ok(addr);
    }
    let err = |source| DnsError::ServerAddress {
        host: server.host.clone(),
        source,
    };
    let lookup = tokio::net::lookup_host((server.host.as_str(), server.port));
    let mut addrs = tokio::time::timeout(TCP_TIMEOUT, lookup)
        .await
        .map_err(|_| err(io::ErrorKind::TimedOut.into()))?
        .map_err(err)?;
    addrs
        .next()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// What a query is about, for error messages.
pub(super) struct Ask<'a> {
    pub(super) server: SocketAddr,
    pub(super) what: &'a str,
    pub(super) name: &'a str,
}

impl Ask<'_> {
    pub(super) fn unreachable(&self, source: io::Error) -> DnsError {
        DnsError::Unreachable {
            server: self.server.to_string(),
            what: self.what.to_string(),
            name: self.name.to_string(),
            source,
        }
    }

    fn bad(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DnsError {
        DnsError::BadResponse {
            server: self.server.to_string(),
            source: source.into(),
        }
    }
}

/// Asks `server` one question. `recurse` sets the RD bit: on for a resolver,
/// off for an authoritative server. Truncated UDP answers are retried over TCP.
/// The answer's response code is not checked here.
pub(super) async fn query(
    server: SocketAddr,
    qname: &str,
    rtype: RecordType,
    recurse: bool,
    what: &str,
    timeout: Option<Duration>,
) -> Result<Message, DnsError> {
    let ask = Ask {
        server,
        what,
        name: qname,
    };
    let mut msg = Message::query();
    msg.metadata.recursion_desired = recurse;
    msg.add_query(Query::query(name(qname)?, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let bytes = msg.to_vec().map_err(|e| ask.bad(e))?;
    let id = msg.metadata.id;

    let answer = match udp(server, &bytes, id, timeout).await {
        Ok(a) => a,
        Err(e) => return Err(ask.unreachable(e)),
    };
    let parsed = Message::from_vec(&answer).map_err(|e| ask.bad(e))?;
    if !parsed.metadata.truncation {
        return Ok(parsed);
    }
    let answer = tcp(server, &bytes, id, timeout.unwrap_or(TCP_TIMEOUT))
        .await
        .map_err(|e| ask.unreachable(e))?;
    Message::from_vec(&answer).map_err(|e| ask.bad(e))
}

/// One UDP exchange: two attempts (1 s, 2 s) unless `bound` caps the total;
/// a refused port fails at once.
async fn udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    bound: Option<Duration>,
) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected, so ICMP port unreachable surfaces as ECONNREFUSED at once.
    sock.connect(server).await?;
    let attempts = match bound {
        Some(b) => vec![b],
        None => vec![UDP_ATTEMPT, UDP_ATTEMPT * 2],
    };
    let mut buf = vec![0u8; 65_535];
    for wait in attempts {
        sock.send(request).await?;
        let recv = async {
            loop {
                let n = sock.recv(&mut buf).await?;
                // Ignore stray datagrams (a late answer to an earlier attempt is fine too).
                if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Ok::<usize, io::Error>(n);
                }
            }
        };
        match tokio::time::timeout(wait, recv).await {
            Ok(Ok(n)) => return Ok(buf[..n].to_vec()),
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no answer over UDP in time",
    ))
}

/// One TCP exchange (RFC 1035 §4.2.2 length-prefixed), bounded by `bound` as a whole.
pub(super) async fn tcp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    bound: Duration,
) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(request.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
        let mut out = Vec::with_capacity(request.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(request);
        stream.write_all(&out).await?;
        loop {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            if buf.len() >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(bound, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over TCP in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;

    #[test]
    fn names_round_trip_lower_case_without_dot() {
        let n = name("_acme-challenge.WWW.Example.test").expect("valid");
        assert!(n.is_fqdn());
        assert_eq!(text(&n), "_acme-challenge.www.example.test");
        assert_eq!(text(&name("example.test.").expect("valid")), "example.test");
    }

    #[test]
    fn rcodes_use_rfc_mnemonics() {
        assert_eq!(rcode_mnemonic(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_mnemonic(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_mnemonic(ResponseCode::NXDomain), "NXDOMAIN");
    }

    #[tokio::test]
    async fn closed_port_fails_fast() {
        // Bind and drop a UDP socket to find a port nobody listens on.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("bind")
            .port();
        let server = SocketAddr::from(([127, 0, 0, 1], port));
        let ask = query(
            server,
            "example.test",
            RecordType::SOA,
            true,
            "SOA query",
            None,
        );
        // A refused port must not be waited on until the retries run out.
        let e = tokio::time::timeout(Duration::from_secs(10), ask)
            .await
            .expect("bounded")
            .expect_err("nobody listens");
        assert!(matches!(e, DnsError::Unreachable { .. }), "{e:?}");
    }
}
