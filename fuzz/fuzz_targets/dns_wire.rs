//! DNS answers from the network, on arbitrary bytes: the module's decoding and
//! every function that reads an answer (response code, CNAME target, zone from
//! SOA, NS glue, TXT matching), through `acme_core::dns::fuzz_parse_answer`.
#![no_main]

use acme_core::dns::fuzz_parse_answer;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData};
use libfuzzer_sys::fuzz_target;

/// A name as the module prints it must mean the same name when parsed back.
fn assert_printable(what: &str, s: &str) {
    assert_eq!(s, s.to_ascii_lowercase(), "{what} {s:?} not lower-case");
    assert!(
        !s.ends_with('.') || s.ends_with("\\."),
        "{what} {s:?} ends with a dot"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(a) = fuzz_parse_answer(data) else {
        return;
    };
    let msg = &a.message;
    assert_printable("owner", &a.owner);

    let code = msg.metadata.response_code;
    assert_eq!(
        a.rcode.is_ok(),
        matches!(code, ResponseCode::NoError | ResponseCode::NXDomain),
        "{code:?}: {:?}",
        a.rcode
    );

    if let Some(target) = &a.cname {
        assert_printable("CNAME target", target);
        // The target is asked next. A target that does not parse back (binary
        // bytes in a label) ends in DnsError::BadName; one that does must mean
        // the name that was printed.
        if let Ok(again) = Name::from_ascii(format!("{target}.")) {
            let printed = again.to_ascii().trim_end_matches('.').to_ascii_lowercase();
            assert_eq!(&printed, target, "CNAME target changes when parsed back");
        }
    }

    if let Some(zone) = &a.zone {
        assert_printable("zone", zone);
        assert!(
            !zone.is_empty(),
            "the root zone was taken as the zone of {:?}",
            a.owner
        );
        assert!(
            a.owner == *zone || a.owner.ends_with(&format!(".{zone}")),
            "zone {zone:?} does not contain {:?}",
            a.owner
        );
    }

    for (ns, addrs) in &a.nameservers {
        assert_printable("NS", ns);
        assert!(addrs.len() <= msg.additionals.len());
    }

    // TXT matching: a value at the owner counts only in an authoritative NOERROR answer.
    let authoritative_ok = code == ResponseCode::NoError && msg.metadata.authoritative;
    let question = msg.queries.first().map(|q| q.name.clone());
    for r in &msg.answers {
        let RData::TXT(t) = &r.data else { continue };
        let joined: Vec<u8> = t.txt_data.iter().flat_map(|c| c.iter().copied()).collect();
        let Ok(value) = std::str::from_utf8(&joined) else {
            continue;
        };
        let served = a.served(value);
        if !authoritative_ok {
            assert!(
                served.is_err(),
                "served from a non-authoritative or failed answer"
            );
        } else if question.as_ref() == Some(&r.name) {
            assert!(
                served.is_ok(),
                "TXT {value:?} at the question's name not found: {served:?}"
            );
        }
    }
});
