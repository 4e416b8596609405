//! Every state file the store reads back, on arbitrary bytes: `meta.json` of a
//! release and the `renewal` state record, parsed directly and through a real
//! `Store`. Reading returns `Ok` or `Err`, agrees with the parser, and what
//! parses can be written back and read again unchanged.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use acme_core::acme::RenewalRecord;
use acme_core::store::{ReleaseMeta, StoreError};
use acme_core::Store;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "www";
const VERSION: &str = "20260101T000000Z-01020304";

struct Fixture {
    store: Store,
    meta: PathBuf,
    renewal: PathBuf,
    // Removed when the process ends.
    _dir: tempfile::TempDir,
}

/// One store per process, with one release made live; each input overwrites its files.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = Store::open(dir.path()).expect("open store");
        let version_dir = dir.path().join("archive").join(NAME).join(VERSION);
        let state_dir = dir.path().join("state").join(NAME);
        std::fs::create_dir_all(&version_dir).expect("version dir");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        store.set_live(NAME, VERSION).expect("live link");
        Fixture {
            store,
            meta: version_dir.join("meta.json"),
            renewal: state_dir.join("renewal.json"),
            _dir: dir,
        }
    })
}

fn same_record(a: &RenewalRecord, b: &RenewalRecord) -> bool {
    // No PartialEq on the record; its JSON form is canonical enough.
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    std::fs::write(&f.meta, data).expect("write meta.json");
    std::fs::write(&f.renewal, data).expect("write renewal.json");

    // meta.json: the store agrees with the parser, and install's encoding round-trips.
    let parsed = serde_json::from_slice::<ReleaseMeta>(data);
    match (&parsed, f.store.current(NAME)) {
        (Ok(meta), Ok(Some(release))) => {
            assert_eq!(&release.meta, meta);
            assert_eq!(release.version, VERSION);
            let again = serde_json::to_vec_pretty(meta).expect("a parsed meta encodes");
            let back: ReleaseMeta = serde_json::from_slice(&again).expect("and parses again");
            assert_eq!(&back, meta);
        }
        (Err(_), Err(StoreError::Corrupt { path, .. })) => assert_eq!(path, f.meta),
        (p, s) => panic!("parser said {p:?}, store said {s:?}"),
    }
    assert_eq!(
        f.store.read_release(NAME, VERSION).is_ok(),
        parsed.is_ok(),
        "read_release disagrees with current"
    );

    // The renewal record: same agreement; write_state of what was read works.
    let parsed = serde_json::from_slice::<RenewalRecord>(data);
    match (
        &parsed,
        f.store.read_state::<RenewalRecord>(NAME, "renewal"),
    ) {
        (Ok(rec), Ok(Some(read))) => {
            assert!(same_record(rec, &read));
            let again = serde_json::to_vec_pretty(rec).expect("a parsed record encodes");
            let back: RenewalRecord = serde_json::from_slice(&again).expect("and parses again");
            assert!(same_record(rec, &back), "{rec:?} came back as {back:?}");
        }
        (Err(_), Err(StoreError::Corrupt { path, .. })) => assert_eq!(path, f.renewal),
        (p, s) => panic!("parser said {p:?}, store said {s:?}"),
    }
    // Node records are read as plain JSON values.
    let value = f.store.read_state::<serde_json::Value>(NAME, "renewal");
    assert_eq!(
        value.is_ok(),
        serde_json::from_slice::<serde_json::Value>(data).is_ok()
    );

    // Listing does not look inside files.
    assert_eq!(f.store.versions(NAME).expect("versions"), [VERSION]);
    assert_eq!(f.store.names().expect("names"), [NAME]);
});
