//! certctl's own health on the lab, through the `certctl` binary: a real
//! `certctl run` after a real fault writes its failure into the textfile,
//! the shipped alert rule selects it (promtool on that very file), a later
//! `certctl report --prometheus` keeps the other steps' figures, and the
//! failure notice reaches a real local HTTP listener through the shipped
//! webhook example. A failing notify command never fails the run.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use certctl_lab_tests::{cert, certctl, lab, set_node, show, unique, workspace, Restore};

/// A local HTTP listener (Python's `http.server`) that appends every POST
/// it receives, with its `X-Certctl-Notify-Kind` header, to a file as one
/// JSON line; killed when dropped.
struct Listener {
    child: Child,
    port: u16,
    log: PathBuf,
}

const LISTENER: &str = r#"
import http.server, json, sys
log = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(log, "a") as f:
            f.write(json.dumps({"kind": self.headers.get("X-Certctl-Notify-Kind"),
                                "type": self.headers.get("Content-Type"),
                                "body": body.decode()}) + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

impl Listener {
    fn start(dir: &Path) -> Self {
        let log = dir.join("received.jsonl");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(LISTENER)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        let port = line.trim().parse().expect("port number");
        Self { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every document received: (kind header, content type, parsed body).
    fn received(&self) -> Vec<(String, String, serde_json::Value)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("log line");
                (
                    v["kind"].as_str().unwrap_or("").to_string(),
                    v["type"].as_str().unwrap_or("").to_string(),
                    serde_json::from_str(v["body"].as_str().expect("body")).expect("json body"),
                )
            })
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook() -> PathBuf {
    workspace().join("contrib/notify/webhook.sh")
}

/// `[report] notify = argv` added to an inventory's text.
fn with_notify(text: &str, argv: &[&str]) -> String {
    let list = argv
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    text.replacen("[report]\n", &format!("[report]\nnotify = [{list}]\n"), 1)
}

/// The lines of a textfile that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The value of the one sample line starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let l = lines(text, prefix);
    assert_eq!(l.len(), 1, "one `{prefix}` in\n{text}");
    l[0].rsplit(' ')
        .next()
        .expect("value")
        .parse()
        .expect("number")
}

fn run(cfg: &Path, prom: &Path) -> Output {
    certctl(cfg, &["run", "--prometheus", prom.to_str().expect("utf-8")])
}

/// `promtool check metrics` on a textfile: the exposition is valid and its
/// names pass promtool's lint (units, `_total` on counters).
fn promtool_check_metrics(path: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).expect("textfile"))
        .output()
        .expect("promtool");
    assert!(out.status.success(), "{}", show(&out));
}

/// A promtool unit test of the shipped rules whose input is the textfile's
/// samples as constant series (with the job and instance a scrape adds).
fn promtool_test(dir: &Path, textfile: &str, expect: &str) -> Output {
    let mut series = String::new();
    for l in textfile.lines().filter(|l| !l.starts_with('#')) {
        let (metric, v) = l.rsplit_once(' ').expect("sample");
        let labelled = match metric.split_once('{') {
            Some((name, rest)) => format!("{name}{{job=\"node\",instance=\"ctl\",{rest}"),
            None => format!("{metric}{{job=\"node\",instance=\"ctl\"}}"),
        };
        series.push_str(&format!(
            "      - series: '{labelled}'\n        values: '{v}x10'\n"
        ));
    }
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    alert_rule_test:\n{expect}",
        workspace()
            .join("contrib/prometheus/certctl.rules.yml")
            .display()
    );
    let path = dir.join("from-run.test.yml");
    std::fs::write(&path, test).expect("write test");
    Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("promtool")
}

#[test]
fn a_stopped_dns_primary_makes_renewal_fail_in_the_textfile_the_rule_fire_and_the_webhook_hear_it()
{
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Listener::start(dir.path());
    let d = format!("{}.example.test", unique("health"));
    let cfg = lab.inventory(dir.path(), &cert("h", &[&d], ""), 0, |t| {
        let t = with_notify(
            &t,
            &["/bin/sh", webhook().to_str().expect("utf-8"), &hook.url()],
        );
        t.replacen(
            "\nresolver = \"127.0.0.1:53\"\n",
            "\nresolver = \"127.0.0.1:53\"\npropagation_timeout = \"2s\"\n",
            1,
        )
    });
    let prom = dir.path().join("certctl.prom");

    lab.must(&["stop", "named"]);
    let restore = Restore(lab, &["start", "named"]);
    for _ in 0..3 {
        let out = run(&cfg, &prom);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    }
    let text = std::fs::read_to_string(&prom).expect("textfile");
    promtool_check_metrics(&prom);
    assert_eq!(
        value(
            &text,
            "certctl_renewal_consecutive_failures{certificate=\"h\",error_kind=\"dns\"}"
        ),
        3.0
    );
    assert_eq!(value(&text, "certctl_run_last_result{step=\"renew\"}"), 0.0);
    assert_eq!(value(&text, "certctl_run_last_result{step=\"run\"}"), 0.0);
    assert_eq!(
        value(
            &text,
            "certctl_run_last_success_timestamp_seconds{step=\"run\"}"
        ),
        0.0,
        "never succeeded"
    );
    assert_eq!(
        value(&text, "certctl_run_last_result{step=\"report\"}"),
        1.0
    );
    assert!(lines(&text, "certctl_renewal_last_success_timestamp_seconds").is_empty());
    assert!(
        value(
            &text,
            "certctl_renewal_last_attempt_timestamp_seconds{certificate=\"h\"}"
        ) > 0.0
    );
    assert_eq!(value(&text, "certctl_notify_failures_total"), 0.0);

    // The shipped rule selects exactly this certificate, from this very file.
    let expect = "      - eval_time: 5m\n        alertname: CertctlRenewalFailing\n        exp_alerts:\n          - exp_labels: {severity: critical, job: node, instance: ctl, certificate: h, error_kind: dns}\n            exp_annotations:\n              summary: \"Renewal of h failed 3 times in a row (dns)\"\n              description: \"certctl could not renew h; the last error was of kind dns. `certctl list` shows the error; `certctl renew h` retries.\"\n";
    let out = promtool_test(dir.path(), &text, expect);
    assert!(out.status.success(), "{}", show(&out));

    // Every run told the webhook: a failure notice naming the step, the
    // certificate, the kind and the error (the report has no finding bad
    // enough to be sent: the certificate is not in the store yet, which
    // is a finding; whatever it sent is a report document).
    let got = hook.received();
    let failures: Vec<_> = got.iter().filter(|(k, _, _)| k == "failure").collect();
    assert_eq!(failures.len(), 3, "{got:#?}");
    for (_, ctype, v) in &failures {
        assert_eq!(ctype, "application/json");
        assert_eq!(v["schema"], "certctl.failure/v1", "{v:#}");
        assert!(v["run_id"].as_str().is_some_and(|s| !s.is_empty()), "{v:#}");
        let f = &v["failures"][0];
        assert_eq!(f["step"], "renew", "{v:#}");
        assert_eq!(f["certificate"], "h", "{v:#}");
        assert!(f["node"].is_null(), "{v:#}");
        assert_eq!(f["error_kind"], "dns", "{v:#}");
        assert!(
            f["error"].as_str().is_some_and(|e| e.contains("127.0.0.1")),
            "the error names the server: {v:#}"
        );
    }
    for (k, _, v) in got.iter().filter(|(k, _, _)| k != "failure") {
        assert_eq!(k, "report");
        assert_eq!(v["schema"], "certctl.report/v1");
    }

    // The primary back: a report alone updates its own step and keeps the
    // renew and run figures (and the certificate's failures) as they were.
    drop(restore);
    let renew_end = value(
        &text,
        "certctl_run_last_end_timestamp_seconds{step=\"renew\"}",
    );
    let report_end = value(
        &text,
        "certctl_run_last_end_timestamp_seconds{step=\"report\"}",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = certctl(
        &cfg,
        &[
            "report",
            "--no-notify",
            "--prometheus",
            prom.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.code().is_some_and(|c| c != 3), "{}", show(&out));
    let after = std::fs::read_to_string(&prom).expect("textfile");
    assert_eq!(
        value(
            &after,
            "certctl_run_last_end_timestamp_seconds{step=\"renew\"}"
        ),
        renew_end
    );
    assert_eq!(
        value(&after, "certctl_run_last_result{step=\"renew\"}"),
        0.0
    );
    assert_eq!(value(&after, "certctl_run_last_result{step=\"run\"}"), 0.0);
    assert!(
        value(
            &after,
            "certctl_run_last_end_timestamp_seconds{step=\"report\"}"
        ) > report_end
    );
    assert_eq!(
        value(
            &after,
            "certctl_renewal_consecutive_failures{certificate=\"h\",error_kind=\"dns\"}"
        ),
        3.0
    );
    assert!(after.contains("certctl_report_timestamp_seconds "));

    // And a renewal alone keeps the report's figures.
    let out = certctl(
        &cfg,
        &["renew", "--prometheus", prom.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let renewed = std::fs::read_to_string(&prom).expect("textfile");
    promtool_check_metrics(&prom);
    assert_eq!(
        lines(&renewed, "certctl_report_timestamp_seconds"),
        lines(&after, "certctl_report_timestamp_seconds")
    );
    assert_eq!(
        value(&renewed, "certctl_run_last_result{step=\"renew\"}"),
        1.0
    );
    assert_eq!(
        value(
            &renewed,
            "certctl_renewal_consecutive_failures{certificate=\"h\",error_kind=\"none\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&renewed, "certctl_run_last_result{step=\"run\"}"),
        0.0
    );
}

#[test]
fn a_failed_deployment_is_notified_and_a_failing_notify_never_fails_the_run() {
    let lab = lab();
    let _x = lab.exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Listener::start(dir.path());
    // The lab's `www`, which the nodes' nginx serve (so the deploy verifies).
    let domains = ["www.example.test", "example.test"];
    let cfg = lab.inventory(
        dir.path(),
        &cert("www", &domains, "groups = [\"edge\"]"),
        2,
        |t| {
            let t = set_node(&t, "node2", "reload", "\"false\"");
            with_notify(
                &t,
                &["/bin/sh", webhook().to_str().expect("utf-8"), &hook.url()],
            )
        },
    );
    let prom = dir.path().join("certctl.prom");
    let out = run(&cfg, &prom);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let got = hook.received();
    let notices: Vec<_> = got.iter().filter(|(k, _, _)| k == "failure").collect();
    assert_eq!(notices.len(), 1, "one notice per run: {got:#?}");
    let v = &notices[0].2;
    assert_eq!(v["schema"], "certctl.failure/v1");
    let f = v["failures"].as_array().expect("failures");
    assert_eq!(f.len(), 1, "only node2 failed: {v:#}");
    assert_eq!(f[0]["step"], "deploy");
    assert_eq!(f[0]["certificate"], "www");
    assert_eq!(f[0]["node"], "node2");
    assert_eq!(f[0]["error_kind"], "reload");
    assert!(
        f[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("`false` failed on node2")),
        "{v:#}"
    );
    let text = std::fs::read_to_string(&prom).expect("textfile");
    assert_eq!(value(&text, "certctl_run_last_result{step=\"renew\"}"), 1.0);
    assert_eq!(
        value(&text, "certctl_run_last_result{step=\"deploy\"}"),
        0.0
    );
    assert!(
        value(
            &text,
            "certctl_deploy_last_success_timestamp_seconds{certificate=\"www\",node=\"node1\"}"
        ) > 0.0
    );
    assert!(lines(
        &text,
        "certctl_deploy_last_success_timestamp_seconds{certificate=\"www\",node=\"node2\"}"
    )
    .is_empty());
    assert_eq!(
        lines(
            &text,
            "certctl_node_version_info{certificate=\"www\",node=\"node1\""
        )
        .len(),
        1,
        "{text}"
    );

    // The notify command fails (the listener is gone): the run's exit code
    // is the same, the failure is said and counted.
    drop(hook);
    let out = run(&cfg, &prom);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the failure notice was not delivered"),
        "{}",
        show(&out)
    );
    let text = std::fs::read_to_string(&prom).expect("textfile");
    assert!(
        value(&text, "certctl_notify_failures_total") >= 1.0,
        "{text}"
    );
    assert!(value(&text, "certctl_notify_last_failure_timestamp_seconds") > 0.0);
}

#[test]
fn a_run_killed_midway_leaves_the_previous_figures_and_its_start_gives_it_away() {
    let lab = lab();
    let _g = lab.shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = format!("{}.example.test", unique("healthkill"));
    // Due at every run (renew_before longer than pebble's lifetimes), so a
    // run is still ordering when it is killed.
    let cfg = lab.inventory(
        dir.path(),
        &cert("k", &[&d], "renew_before = \"2000d\"\n"),
        0,
        |t| t,
    );
    let prom = dir.path().join("certctl.prom");
    let out = certctl(
        &cfg,
        &[
            "run",
            "--no-notify",
            "--prometheus",
            prom.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let before = std::fs::read(&prom).expect("textfile");
    let text = String::from_utf8_lossy(&before).into_owned();
    let ok_end = value(
        &text,
        "certctl_run_last_end_timestamp_seconds{step=\"run\"}",
    );
    assert_eq!(value(&text, "certctl_run_last_result{step=\"run\"}"), 1.0);
    assert_eq!(
        value(
            &text,
            "certctl_run_last_success_timestamp_seconds{step=\"run\"}"
        ),
        ok_end
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let health = dir.path().join("store/health/run.json");
    let recorded = std::fs::read(&health).expect("health record");
    let mut child = Command::new(certctl_lab_tests::certctl_bin())
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--no-notify", "--prometheus"])
        .arg(&prom)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill it (SIGKILL) once it has recorded its start: it is ordering then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read(&health).is_ok_and(|h| h == recorded) {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never recorded its start"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed, not finished"
    );
    assert_eq!(
        std::fs::read(&prom).expect("textfile"),
        before,
        "the killed run left the previous textfile as it was"
    );

    // The next write shows a start after the last end and the old success:
    // the age of the last success is what the dead man's switch alerts on.
    let out = certctl(
        &cfg,
        &[
            "report",
            "--no-notify",
            "--prometheus",
            prom.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.code().is_some_and(|c| c < 3), "{}", show(&out));
    let after = std::fs::read_to_string(&prom).expect("textfile");
    assert!(
        value(
            &after,
            "certctl_run_last_start_timestamp_seconds{step=\"run\"}"
        ) > ok_end,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "certctl_run_last_end_timestamp_seconds{step=\"run\"}"
        ),
        ok_end
    );
    assert_eq!(
        value(
            &after,
            "certctl_run_last_success_timestamp_seconds{step=\"run\"}"
        ),
        ok_end
    );
}
