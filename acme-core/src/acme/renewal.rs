//! When a certificate is due for renewal and why, and the per-certificate
//! renewal record that remembers the CA's back-off between runs. `renew`,
//! `list` and the report all ask this module, so they say the same thing in
//! the same words.
//!
//! Precedence: the CA's ARI window (RFC 9773) when one is known and ARI is
//! enabled, else a configured `renew_before`, else the lifetime rule (due
//! when a third of the lifetime is left, or half of it for certificates that
//! live less than ten days).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::inspect::{date, human_duration};
use crate::inventory::{CertificateConfig, Inventory};
use crate::store::{ReleaseMeta, Store, StoreError};

/// Below this lifetime, renew at half-life instead of with a third left.
const SHORT_LIVED: time::Duration = time::Duration::days(10);

/// The state record (`state/<name>/renewal.json`) holding [`RenewalRecord`].
pub(crate) const RECORD: &str = "renewal";

/// A renewal window suggested by the CA (RFC 9773 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    /// Start of the suggested window.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End of the suggested window.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// The policy knobs of one certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Honour the CA's ARI window when one is known.
    pub ari: bool,
    /// Renew this long before expiry (overrides the lifetime rule).
    pub renew_before: Option<Duration>,
}

impl RenewalPolicy {
    /// The policy for `cert` under `inventory`'s renewal defaults.
    pub fn for_certificate(inventory: &Inventory, cert: &CertificateConfig) -> Self {
        Self {
            ari: inventory.renewal.ari,
            renew_before: cert.renew_before.or(inventory.renewal.renew_before),
        }
    }
}

/// Why a certificate is (or will be) due. One vocabulary for `renew --json`,
/// `list --json` and `report --json`: `{"rule": "<snake_case name>", ..fields}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DueReason {
    /// Nothing in the store yet.
    NotIssued,
    /// The inventory asks for other names or another key type.
    ConfigChanged {
        /// What differs.
        what: String,
    },
    /// `--force` or `certctl issue`.
    Forced,
    /// The CA's suggested window (RFC 9773 §4.2).
    Ari {
        /// Window start.
        #[serde(with = "time::serde::rfc3339")]
        start: OffsetDateTime,
        /// Window end.
        #[serde(with = "time::serde::rfc3339")]
        end: OffsetDateTime,
    },
    /// This fraction of the lifetime is left (1/3, or 1/2 below ten days).
    Lifetime {
        /// Fraction of the lifetime left at the due time.
        fraction: f64,
    },
    /// The inventory's `renew_before`.
    RenewBefore {
        /// How long before expiry (JSON: whole seconds).
        #[serde(rename = "seconds", with = "secs")]
        before: Duration,
    },
    /// The live version in the store is damaged (see [`crate::store::Damage`]).
    StoreDamaged {
        /// The first damaged file.
        file: String,
    },
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DueReason::NotIssued => f.write_str("first issuance"),
            DueReason::ConfigChanged { what } => write!(f, "inventory changed: {what}"),
            DueReason::Forced => f.write_str("forced"),
            DueReason::Ari { start, end } => {
                write!(f, "CA renewal window {} – {}", date(*start), date(*end))
            }
            DueReason::Lifetime { fraction } if *fraction == 0.5 => {
                f.write_str("half of the lifetime left")
            }
            DueReason::Lifetime { .. } => f.write_str("a third of the lifetime left"),
            DueReason::RenewBefore { before } => {
                write!(f, "renew_before {}", human_duration(*before))
            }
            DueReason::StoreDamaged { file } => write!(f, "store file {file} is damaged"),
        }
    }
}

/// When one certificate is due for renewal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenewalWindow {
    /// The moment renewal becomes due.
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// The rule that set it.
    pub reason: DueReason,
}

impl RenewalWindow {
    /// Computes the due time of a certificate valid from `not_before` to
    /// `not_after`.
    ///
    /// With an ARI window (and `policy.ari`), the due time is a point inside
    /// the window chosen deterministically from `seed` (use the ARI
    /// certificate identifier or the serial): RFC 9773 §4.2 asks for a random
    /// point so that many clients spread their load; a hash-derived point
    /// spreads a fleet's certificates the same way while giving the same
    /// answer on every run and in every report. And [`Self::is_due`] is true
    /// as soon as the window has opened, so a window the CA moves into the
    /// past (as it does before a revocation) means "now".
    pub fn compute(
        policy: RenewalPolicy,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        ari: Option<AriWindow>,
        seed: &[u8],
    ) -> Self {
        if let (true, Some(w)) = (policy.ari, ari) {
            let span = if w.end > w.start {
                w.end - w.start
            } else {
                time::Duration::ZERO
            };
            let fraction = seed_fraction(seed);
            let offset = time::Duration::seconds_f64(span.as_seconds_f64() * fraction);
            return RenewalWindow {
                due_at: w.start + offset,
                reason: DueReason::Ari {
                    start: w.start,
                    end: w.end,
                },
            };
        }
        if let Some(before) = policy.renew_before {
            let before = time::Duration::try_from(before).unwrap_or(time::Duration::MAX);
            return RenewalWindow {
                due_at: not_after.checked_sub(before).unwrap_or(not_before),
                reason: DueReason::RenewBefore {
                    before: policy.renew_before.unwrap_or_default(),
                },
            };
        }
        let lifetime = if not_after > not_before {
            not_after - not_before
        } else {
            time::Duration::ZERO
        };
        let fraction = if lifetime < SHORT_LIVED {
            0.5
        } else {
            1.0 / 3.0
        };
        let left = time::Duration::seconds_f64(lifetime.as_seconds_f64() * fraction);
        RenewalWindow {
            due_at: not_after - left,
            reason: DueReason::Lifetime { fraction },
        }
    }

    /// Whether renewal is due at `now`: the due time has come, or the ARI
    /// window has opened.
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        match self.reason {
            DueReason::Ari { start, .. } => now >= start || now >= self.due_at,
            _ => now >= self.due_at,
        }
    }
}

/// A number in [0, 1) from the first 8 bytes of SHA-256(seed).
fn seed_fraction(seed: &[u8]) -> f64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    // 53 bits fit an f64 exactly.
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// When the version described by `meta` is due under `policy`, why, and
/// whether it is due at `now` (see [`RenewalWindow::compute`]). `ari` is the
/// CA's window for this version, if known; the seed that places the due time
/// inside it is the ARI identifier, else the serial.
pub fn due_at(
    policy: RenewalPolicy,
    meta: &ReleaseMeta,
    ari: Option<AriWindow>,
    now: OffsetDateTime,
) -> (OffsetDateTime, DueReason, bool) {
    let seed = meta.ari_id.as_deref().unwrap_or(&meta.serial);
    let w = RenewalWindow::compute(
        policy,
        meta.not_before,
        meta.not_after,
        ari,
        seed.as_bytes(),
    );
    let due = w.is_due(now);
    (w.due_at, w.reason, due)
}

/// What the store remembers about renewing one certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RenewalRecord {
    /// Last time an order was attempted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    /// Last time one succeeded.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// The last failure, as printed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The kind of the last failure (`None` after a success).
    #[serde(default)]
    pub error_kind: Option<crate::ErrorKind>,
    /// Consecutive failures.
    #[serde(default)]
    pub failures: u32,
    /// The CA asked us not to come back before this (Retry-After, rate limit).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_after: Option<OffsetDateTime>,
    /// Cached ARI window for the live serial.
    #[serde(default)]
    pub ari: Option<AriCache>,
    /// Directory URL that issued the live version.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// An ARI answer kept until the CA's Retry-After.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AriCache {
    /// Serial it is for.
    pub serial: String,
    /// The window.
    pub window: AriWindow,
    /// Fetch again after this.
    #[serde(with = "time::serde::rfc3339")]
    pub refresh_after: OffsetDateTime,
}

impl RenewalRecord {
    /// Reads the renewal record of certificate `name` (`None` if there is none yet).
    pub fn read(store: &Store, name: &str) -> Result<Option<Self>, StoreError> {
        store.read_state(name, RECORD)
    }

    /// Writes this as the renewal record of certificate `name`.
    pub fn write(&self, store: &Store, name: &str) -> Result<(), StoreError> {
        store.write_state(name, RECORD, self)
    }

    /// The cached ARI window, if it is for the version with `serial`.
    pub fn ari_for(&self, serial: &str) -> Option<AriWindow> {
        self.ari
            .as_ref()
            .filter(|a| a.serial == serial)
            .map(|a| a.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const START: OffsetDateTime = datetime!(2025-01-01 0:00 UTC);

    fn lifetime(days: i64) -> RenewalWindow {
        RenewalWindow::compute(
            RenewalPolicy {
                ari: true,
                renew_before: None,
            },
            START,
            START + time::Duration::days(days),
            None,
            b"serial",
        )
    }

    #[test]
    fn ninety_day_certificate_is_due_with_thirty_days_left() {
        let w = lifetime(90);
        assert_eq!(w.due_at, START + time::Duration::days(60));
        assert!(
            matches!(w.reason, DueReason::Lifetime { fraction } if (fraction - 1.0/3.0).abs() < 1e-9)
        );
        assert!(!w.is_due(START + time::Duration::days(60) - time::Duration::SECOND));
        assert!(w.is_due(START + time::Duration::days(60)));
    }

    #[test]
    fn six_day_certificate_is_due_at_half_life() {
        let w = lifetime(6);
        assert_eq!(w.due_at, START + time::Duration::days(3));
        assert_eq!(w.reason, DueReason::Lifetime { fraction: 0.5 });
    }

    #[test]
    fn seven_day_certificate_is_due_at_half_life() {
        let w = lifetime(7);
        assert_eq!(w.due_at, START + time::Duration::hours(84));
        assert!(w.is_due(START + time::Duration::hours(84)));
        assert!(!w.is_due(START + time::Duration::hours(83)));
    }

    #[test]
    fn ten_days_is_no_longer_short_lived() {
        let w = lifetime(10);
        assert!(matches!(w.reason, DueReason::Lifetime { fraction } if fraction < 0.5));
    }

    #[test]
    fn ari_window_wins_and_point_is_inside_and_stable() {
        let window = AriWindow {
            start: START + time::Duration::days(58),
            end: START + time::Duration::days(60),
        };
        let policy = RenewalPolicy {
            ari: true,
            renew_before: Some(Duration::from_secs(86_400)),
        };
        let end = START + time::Duration::days(90);
        let a = RenewalWindow::compute(policy, START, end, Some(window), b"id-a");
        let b = RenewalWindow::compute(policy, START, end, Some(window), b"id-a");
        assert_eq!(a, b, "deterministic");
        assert!(a.due_at >= window.start && a.due_at < window.end);
        assert!(matches!(a.reason, DueReason::Ari { .. }));
        assert!(!a.is_due(window.start - time::Duration::SECOND));
        assert!(a.is_due(window.start), "an open window means now");
        // Different certificates spread over the window.
        let points: std::collections::BTreeSet<_> = (0..20u8)
            .map(|i| RenewalWindow::compute(policy, START, end, Some(window), &[i]).due_at)
            .collect();
        assert!(points.len() > 10);
    }

    #[test]
    fn ari_window_in_the_past_is_due_immediately() {
        let window = AriWindow {
            start: START + time::Duration::days(1),
            end: START + time::Duration::days(2),
        };
        let w = RenewalWindow::compute(
            RenewalPolicy {
                ari: true,
                renew_before: None,
            },
            START,
            START + time::Duration::days(90),
            Some(window),
            b"x",
        );
        assert!(w.is_due(START + time::Duration::days(5)));
    }

    #[test]
    fn ari_disabled_falls_back_to_override_then_lifetime() {
        let window = AriWindow {
            start: START + time::Duration::days(1),
            end: START + time::Duration::days(2),
        };
        let end = START + time::Duration::days(90);
        let w = RenewalWindow::compute(
            RenewalPolicy {
                ari: false,
                renew_before: Some(Duration::from_secs(10 * 86_400)),
            },
            START,
            end,
            Some(window),
            b"x",
        );
        assert_eq!(w.due_at, end - time::Duration::days(10));
        assert_eq!(
            w.reason,
            DueReason::RenewBefore {
                before: Duration::from_secs(864_000)
            }
        );
        let w = RenewalWindow::compute(RenewalPolicy::default(), START, end, Some(window), b"x");
        assert!(matches!(w.reason, DueReason::Lifetime { .. }));
    }

    #[test]
    fn degenerate_validity_does_not_panic() {
        let w = RenewalWindow::compute(
            RenewalPolicy {
                ari: true,
                renew_before: Some(Duration::MAX),
            },
            START,
            START - time::Duration::days(1),
            None,
            b"",
        );
        assert!(w.is_due(START));
        let w = lifetime(-5);
        assert!(w.is_due(START));
    }

    fn meta(not_before: OffsetDateTime, days: i64) -> ReleaseMeta {
        ReleaseMeta {
            domains: vec!["a.example.test".into()],
            key_type: crate::inventory::KeyType::default(),
            serial: "01".into(),
            issuer: "CN=test".into(),
            not_before,
            not_after: not_before + time::Duration::days(days),
            directory: "https://ca.test/dir".into(),
            ari_id: None,
            stored_at: not_before,
        }
    }

    #[test]
    fn due_at_takes_now_from_the_caller() {
        let m = meta(START, 90);
        let (at, why, due) = due_at(RenewalPolicy::default(), &m, None, START);
        assert_eq!(at, START + time::Duration::days(60));
        assert!(matches!(why, DueReason::Lifetime { .. }));
        assert!(!due);
        let (_, _, due) = due_at(RenewalPolicy::default(), &m, None, at);
        assert!(due);
    }

    #[test]
    fn an_open_ari_window_is_due_now_only_when_ari_is_on() {
        let m = meta(START, 90);
        let w = AriWindow {
            start: START + time::Duration::days(10),
            end: START + time::Duration::days(12),
        };
        let now = START + time::Duration::days(11);
        let on = RenewalPolicy {
            ari: true,
            renew_before: None,
        };
        let (_, why, due) = due_at(on, &m, Some(w), now);
        assert!(due);
        assert_eq!(
            why,
            DueReason::Ari {
                start: w.start,
                end: w.end
            }
        );
        let (_, why, due) = due_at(RenewalPolicy::default(), &m, Some(w), now);
        assert!(!due);
        assert!(matches!(why, DueReason::Lifetime { .. }));
    }

    #[test]
    fn renew_before_is_named_after_the_inventory_key_in_json() {
        let why = DueReason::RenewBefore {
            before: Duration::from_secs(864_000),
        };
        let v = serde_json::to_value(&why).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"rule": "renew_before", "seconds": 864_000})
        );
        assert_eq!(why.to_string(), "renew_before 10d");
        let v = serde_json::to_value(DueReason::NotIssued).expect("json");
        assert_eq!(v, serde_json::json!({"rule": "not_issued"}));
    }

    #[test]
    fn cached_ari_window_is_only_used_for_its_serial() {
        let w = AriWindow {
            start: START,
            end: START + time::Duration::days(1),
        };
        let r = RenewalRecord {
            ari: Some(AriCache {
                serial: "01".into(),
                window: w,
                refresh_after: START,
            }),
            ..Default::default()
        };
        assert_eq!(r.ari_for("01"), Some(w));
        assert_eq!(r.ari_for("02"), None);
    }
}
