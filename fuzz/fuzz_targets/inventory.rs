//! `Inventory::from_str` on arbitrary UTF-8: it returns, and every error
//! points at `fuzz.toml:<line>:<col>` inside the input.
#![no_main]

use std::path::Path;

use acme_core::inventory::InventoryError;
use acme_core::Inventory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Inventory::from_str(text, Path::new("fuzz.toml")) {
        Ok(inv) => {
            // Every certificate and node is found again by its own name.
            for c in &inv.certificates {
                assert!(inv.certificate(c.name.as_str()).is_some(), "{}", c.name);
            }
            for n in &inv.nodes {
                assert!(inv.node(n.name.as_str()).is_some(), "{}", n.name);
            }
        }
        Err(
            ref e @ InventoryError::Invalid {
                ref path,
                line,
                column,
                ref problem,
            },
        ) => {
            let shown = acme_core::error_chain(e);
            assert_eq!(path, Path::new("fuzz.toml"));
            assert!(
                !problem.to_string().trim().is_empty(),
                "empty message at {line}:{column}"
            );
            assert!(
                shown.starts_with(&format!("fuzz.toml:{line}:{column}: ")),
                "{shown}"
            );
            // `line` is 1-based and names a line of the input (the one after a
            // final newline counts: an error may point at the end of the file).
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} of {}",
                lines.len()
            );
            let width = lines[line - 1].chars().count();
            assert!(
                column >= 1 && column <= width + 1,
                "column {column} on line {line} of {width} characters"
            );
        }
        Err(InventoryError::Read { .. }) => panic!("from_str read a file"),
        // Secrets are not read by from_str, but the variant is allowed.
        Err(_) => {}
    }
});
