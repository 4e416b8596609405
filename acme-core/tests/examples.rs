//! Every inventory shipped in `examples/` parses and validates.

use std::path::Path;

#[test]
fn shipped_example_inventories_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml")
            && path.file_name() != Some("Cargo.toml".as_ref())
        {
            let inv = acme_core::Inventory::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!inv.certificates.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example inventory found in {}", dir.display());
}

#[test]
fn unknown_keys_are_rejected() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/certctl.toml"),
    )
    .expect("read example");
    let text = text.replacen("keep_versions = 3", "keep_version = 3", 1);
    let e = acme_core::Inventory::from_str(&text, Path::new("certctl.toml"))
        .expect_err("typo must be rejected")
        .to_string();
    assert!(e.contains("unknown field `keep_version`"), "{e}");
    assert!(e.starts_with("certctl.toml:"), "{e}");
}
