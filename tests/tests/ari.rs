//! ARI (RFC 9773) and profiles against the project's FAKE ACME CA
//! (`certctl_lab_tests::fake_acme`): Debian's pebble 2.4 has neither, so
//! these paths are tested here; the FAKE refuses every order after recording
//! it. Everything else of the ACME flow is tested against the real pebble.

use std::path::Path;

use acme_core::acme::{self, DueReason, RenewOptions, RenewResult};
use acme_core::store::{Material, ReleaseMeta};
use acme_core::{CertName, Inventory, Store};
use certctl_lab_tests::fake_acme::{FakeAcme, FakeConfig};
use time::{Duration, OffsetDateTime};

/// The project's one FAKE ACME CA with ARI and profiles, refusing every order
/// after recording it (these tests stop at the new-order request).
async fn fake_ca(window: (OffsetDateTime, OffsetDateTime)) -> FakeAcme {
    FakeAcme::start(FakeConfig {
        ari_window: Some(window),
        profiles: true,
        refuse_orders: true,
        ..FakeConfig::default()
    })
    .await
    .expect("start the FAKE CA")
}

fn setup(dir: &Path, directory: &str) -> (Inventory, Store, String) {
    let text = format!(
        r#"
store = "{store}"
[account]
directory = "{directory}"
profile = "shortlived"
[solvers.noop]
type = "exec"
present = ["true"]
cleanup = ["true"]
skip_propagation_check = true
[[certificate]]
name = "www"
domains = ["www.example.test"]
solver = "noop"
"#,
        store = dir.join("store").display()
    );
    let inv = Inventory::from_str(&text, &dir.join("certctl.toml")).expect("inventory");
    let (store, _) = Store::open(&inv.store).expect("store");
    // A real leaf from a CA of the test's own, with an authority key id, so
    // the store's audit finds it sound and its ARI id (RFC 9773 §4.1) is
    // derived from the certificate itself.
    let now = OffsetDateTime::now_utc();
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fake CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf =
        rcgen::CertificateParams::new(vec!["www.example.test".to_string()]).expect("params");
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - Duration::days(10);
    leaf.not_after = now + Duration::days(80);
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    drop(ca_cert);
    let facts = acme_core::inspect::parse_pem_chain(cert.pem().as_bytes())
        .expect("parse")
        .remove(0);
    let material = Material {
        cert_pem: cert.pem(),
        chain_pem: String::new(),
        key_pem: acme_core::Secret::new(key.serialize_pem().into_bytes()),
        meta: ReleaseMeta {
            domains: facts.dns_names.clone(),
            key_type: Default::default(),
            serial: facts.serial.clone(),
            issuer: facts.issuer.clone(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            directory: directory.into(),
            ari_id: facts.ari_id.clone(),
            stored_at: now,
        },
    };
    store
        .install(&CertName::new("www").expect("name"), &material)
        .expect("install");
    let ari_id = facts.ari_id.expect("the leaf has an authority key id");
    (inv, store, ari_id)
}

#[tokio::test]
async fn ari_window_in_the_past_makes_it_due_and_the_order_replaces_it() {
    acme_core::install_crypto_provider();
    let now = OffsetDateTime::now_utc();
    let ca = fake_ca((now - Duration::days(2), now - Duration::days(1))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (inv, store, ari_id) = setup(dir.path(), &ca.directory);

    // By the lifetime rule (80 of 90 days left) it is not due; ARI says it is.
    let out = acme::renew(&inv, &store, &RenewOptions::default())
        .await
        .expect("renew");
    let RenewResult::Failed { reason, error } = &out[0].result else {
        panic!(
            "expected the fake CA to refuse the order: {:?}",
            out[0].result
        )
    };
    assert!(matches!(reason, DueReason::Ari { .. }), "{reason:?}");
    assert!(error.to_string().contains("creating the order"), "{error}");

    assert_eq!(
        ca.renewal_info_paths(),
        vec![format!("/renewal-info/{ari_id}")]
    );
    let order = &ca.new_orders()[0];
    assert_eq!(order["replaces"], ari_id.as_str(), "{order}");
    assert_eq!(order["profile"], "shortlived", "{order}");
    assert_eq!(order["identifiers"][0]["value"], "www.example.test");
}

#[tokio::test]
async fn ari_window_in_the_future_is_not_due_and_is_cached() {
    acme_core::install_crypto_provider();
    let now = OffsetDateTime::now_utc();
    let start = now + Duration::days(20);
    let ca = fake_ca((start, start + Duration::days(2))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (inv, store, _) = setup(dir.path(), &ca.directory);

    for _ in 0..2 {
        let out = acme::renew(&inv, &store, &RenewOptions::default())
            .await
            .expect("renew");
        assert!(
            matches!(out[0].result, RenewResult::NotDue),
            "{:?}",
            out[0].result
        );
        let (at, why) = out[0].due.clone().expect("due date");
        assert!(matches!(why, DueReason::Ari { .. }));
        assert!(at >= start && at <= start + Duration::days(2), "{at}");
    }
    // The second run used the cached window (the CA said Retry-After: 6 h).
    assert_eq!(ca.renewal_info_paths().len(), 1);
    assert!(ca.new_orders().is_empty());
}

#[tokio::test]
async fn a_remembered_retry_after_defers_the_next_run_until_forced() {
    acme_core::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
store = "{}"
[account]
directory = "https://127.0.0.1:9/dir"
[solvers.noop]
type = "exec"
present = ["true"]
cleanup = ["true"]
[[certificate]]
name = "new"
domains = ["new.example.test"]
solver = "noop"
"#,
        dir.path().join("store").display()
    );
    let inv = Inventory::from_str(&text, &dir.path().join("c.toml")).expect("inventory");
    let (store, _) = Store::open(&inv.store).expect("store");
    let until = OffsetDateTime::now_utc() + Duration::hours(2);
    let record = acme::RenewalRecord {
        retry_after: Some(until),
        last_error: Some("rateLimited: too many new orders".into()),
        ..Default::default()
    };
    record.write(&store, "new").expect("state");

    let dry = RenewOptions {
        dry_run: true,
        ..Default::default()
    };
    let out = acme::renew(&inv, &store, &dry).await.expect("renew");
    match &out[0].result {
        RenewResult::Deferred { until: u } => {
            assert_eq!(u.unix_timestamp(), until.unix_timestamp())
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
    let forced = RenewOptions {
        dry_run: true,
        force: true,
        ..Default::default()
    };
    let out = acme::renew(&inv, &store, &forced).await.expect("renew");
    assert!(
        matches!(out[0].result, RenewResult::WouldIssue { .. }),
        "{:?}",
        out[0].result
    );
}
