//! `fake-acme`: the FAKE ACME CA of `certctl_lab_tests::fake_acme` as a
//! process, for the lab tests and the benchmark (never a real CA).
//!
//! Usage: `fake-acme [--draft 01|02] [--no-persist] [--dns IP:PORT]`.
//! It binds a free port of 127.0.0.1 and prints its directory URL as the
//! first line of stdout, then serves until killed.

use certctl_lab_tests::fake_acme::{FakeAcme, FakeConfig, FakeDraft};
use std::io::Write as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut cfg = FakeConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--draft" => {
                cfg.draft = match args.next().as_deref() {
                    Some("02") => FakeDraft::Draft02,
                    _ => FakeDraft::Draft01,
                }
            }
            "--no-persist" => cfg.offer_persist = false,
            "--dns" => match args.next().and_then(|d| d.parse().ok()) {
                Some(d) => cfg.dns = d,
                None => {
                    eprintln!("fake-acme: --dns wants IP:PORT");
                    return std::process::ExitCode::from(64);
                }
            },
            other => {
                eprintln!("fake-acme: unknown argument {other}");
                return std::process::ExitCode::from(64);
            }
        }
    }
    let ca = match FakeAcme::start(cfg).await {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("fake-acme: cannot start: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    println!("{}", ca.directory);
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
