//! Harness for the integration tests against the lab (`lab/lab.sh`): real
//! pebble, bind9, and sshd + nginx edge nodes on 127.0.0.0/8.
//!
//! Each test binary brings the lab up once (idempotent, fast when it already
//! runs). Tests that break a shared component (stop named, restart pebble,
//! break a node) take [`Lab::exclusive`]; all others take [`Lab::shared`], so
//! faults never leak into unrelated tests.

pub mod fake_acme;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The running lab.
#[derive(Debug)]
pub struct Lab {
    /// The lab's state directory.
    pub dir: PathBuf,
    /// How many edge nodes it runs.
    pub nodes: usize,
}

/// Held while a test uses the lab; shared or exclusive.
#[derive(Debug)]
pub struct LabGuard {
    _file: File,
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `certctl` binary built by `cargo build` (the test command builds it first).
pub fn certctl_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CERTCTL_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    let bin = target.join("debug").join("certctl");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p certctl` before the lab tests (tests/run.sh does)",
        bin.display()
    );
    bin
}

static LAB: OnceLock<Lab> = OnceLock::new();

/// Brings the lab up (once per test binary) and returns it. The node count is
/// `CERTCTL_LAB_NODES` or 5.
pub fn lab() -> &'static Lab {
    LAB.get_or_init(|| {
        init_tracing();
        let dir = std::env::var("CERTCTL_LAB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/tmp/certctl-lab"));
        // Never shrink a running lab: other test binaries may use its nodes.
        let running: usize = std::fs::read_to_string(dir.join("nodes.count"))
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let wanted: usize = std::env::var("CERTCTL_LAB_NODES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(5);
        let nodes = wanted.max(running);
        let lab = Lab { dir, nodes };
        // `up` restarts stopped components: never while a test holds the
        // lab exclusively with a fault injected.
        let _ = std::fs::create_dir_all(&lab.dir);
        let _guard = lab.shared();
        let out = lab.sh(&["up", &nodes.to_string()]);
        assert!(
            out.status.success(),
            "lab/lab.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    })
}

/// Sends the library's logs (level from `RUST_LOG`, else warnings) to the
/// test writer, so they show beside the failing test. Once per test binary.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Another subscriber may already be set (a test's own): keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl Lab {
    /// Runs `lab/lab.sh` with `args`.
    pub fn sh(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(workspace().join("lab/lab.sh"))
            .args(args)
            .env("CERTCTL_LAB_DIR", &self.dir)
            .output()
            .expect("run lab/lab.sh")
    }

    /// Runs `lab/lab.sh` and panics with its output if it fails.
    pub fn must(&self, args: &[&str]) {
        let out = self.sh(args);
        assert!(
            out.status.success(),
            "lab/lab.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn lock(&self, exclusive: bool) -> LabGuard {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".test-lock"))
            .expect("open test lock");
        if exclusive {
            file.lock().expect("lock");
        } else {
            file.lock_shared().expect("lock_shared");
        }
        LabGuard { _file: file }
    }

    /// For tests that only use the lab.
    pub fn shared(&self) -> LabGuard {
        self.lock(false)
    }

    /// For tests that break a shared component; nothing else runs meanwhile.
    pub fn exclusive(&self) -> LabGuard {
        self.lock(true)
    }

    /// Writes an inventory into `dir` with the store at `dir/store`, after
    /// applying `edit` to the lab's text; returns the file's path.
    pub fn inventory_in(&self, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
        self.inventory_from(&self.dir.join("certctl.toml"), dir, edit)
    }

    /// Like [`Lab::inventory_in`], starting from the inventory at `source`
    /// (e.g. `load/certctl.toml`, written by `lab.sh load`).
    pub fn inventory_from(
        &self,
        source: &Path,
        dir: &Path,
        edit: impl FnOnce(String) -> String,
    ) -> PathBuf {
        let text = std::fs::read_to_string(source).expect("read lab inventory");
        let store_line = text
            .lines()
            .find(|l| l.starts_with("store = "))
            .expect("store line")
            .to_string();
        let text = text.replace(
            &store_line,
            &format!("store = \"{}\"", dir.join("store").display()),
        );
        let path = dir.join("certctl.toml");
        std::fs::write(&path, edit(text)).expect("write inventory");
        path
    }

    /// The lab's inventory with its own store in `dir`, only `certs` (see
    /// [`cert`]) and the first `nodes` nodes, after `edit`; returns the path.
    pub fn inventory(
        &self,
        dir: &Path,
        certs: &str,
        nodes: usize,
        edit: impl FnOnce(String) -> String,
    ) -> PathBuf {
        self.inventory_in(dir, |text| {
            let mut out = format!("{}\n{certs}\n", head(&text));
            out.push_str(&first_nodes(&text, nodes));
            edit(out)
        })
    }

    /// The address of node `i` (1-based).
    pub fn node_addr(&self, i: usize) -> String {
        format!("127.0.0.{}", 10 + i)
    }

    /// Pebble's current roots and intermediates (PEM), to verify issued chains.
    pub fn pebble_roots(&self) -> PathBuf {
        self.dir.join("pebble-roots.pem")
    }
}

/// Runs certctl with `args` and the inventory at `config`.
pub fn certctl(config: &Path, args: &[&str]) -> Output {
    Command::new(certctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run certctl")
}

/// Renders an `Output` for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A unique label (pid and a counter), so concurrent tests never share a DNS name.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// TXT values at `name`, asked of the lab's primary with recursion off.
pub fn txt(name: &str) -> String {
    let out = Command::new("dig")
        .args(["+short", "+norec", "@127.0.0.1", "TXT", name])
        .output()
        .expect("dig");
    assert!(out.status.success(), "dig failed: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `lab.sh` with these arguments when dropped, so a test puts the fault
/// it injected right even when it fails.
pub struct Restore<'a>(pub &'a Lab, pub &'static [&'static str]);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = self.0.sh(self.1);
    }
}

/// Replaces (or adds) `key = value` in node `node`'s block.
pub fn set_node(text: &str, node: &str, key: &str, value: &str) -> String {
    let marker = format!("name = \"{node}\"\n");
    let start = text.find(&marker).expect("node block") + marker.len();
    let end = text[start..]
        .find("[[node]]")
        .map(|e| start + e)
        .unwrap_or(text.len());
    let block: String = text[start..end]
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "{}{key} = {value}\n{}{}",
        &text[..start],
        block.trim_end_matches('\n').to_string() + "\n\n",
        &text[end..]
    )
}

/// A `[[certificate]]` block for `domains`, solved by the lab's solver, with
/// `extra` lines (e.g. `groups = ["edge"]`) and a blank line after it.
pub fn cert(name: &str, domains: &[&str], extra: &str) -> String {
    let list = domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[certificate]]\nname = \"{name}\"\ndomains = [{list}]\nsolver = \"lab\"\n{extra}\n")
}

/// The inventory `text` before its first `[[certificate]]`: the store,
/// account, solvers and settings.
pub fn head(text: &str) -> &str {
    text.split("[[certificate]]").next().unwrap_or(text)
}

/// The first `n` `[[node]]` blocks of inventory `text`, each starting on a
/// new line.
pub fn first_nodes(text: &str, n: usize) -> String {
    let mut out = String::new();
    for block in text.split("\n[[node]]\n").skip(1).take(n) {
        out.push_str("\n[[node]]\n");
        out.push_str(block.trim_end());
        out.push('\n');
    }
    out
}
