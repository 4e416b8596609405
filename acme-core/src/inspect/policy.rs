//! The renewal policy: when a certificate is due for renewal and why.
//!
//! Precedence: the CA's ARI window (RFC 9773) when one is known and ARI is
//! enabled, else a configured `renew_before`, else the lifetime rule (due
//! when a third of the lifetime is left, or half of it for certificates that
//! live less than ten days).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::inventory::{CertificateConfig, Inventory};

/// Below this lifetime, renew at half-life instead of with a third left.
const SHORT_LIVED: time::Duration = time::Duration::days(10);

/// A renewal window suggested by the CA (RFC 9773 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// Why renewal is due when it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DueReason {
    /// Inside the CA's ARI window.
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
    /// A configured `renew_before`.
    Override {
        /// How long before expiry.
        #[serde(rename = "seconds", with = "secs")]
        before: Duration,
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
            DueReason::Ari { start, end } => write!(
                f,
                "CA renewal window {} – {}",
                super::date(*start),
                super::date(*end)
            ),
            DueReason::Lifetime { fraction } if *fraction == 0.5 => {
                f.write_str("half of the lifetime left")
            }
            DueReason::Lifetime { .. } => f.write_str("a third of the lifetime left"),
            DueReason::Override { before: d } => {
                write!(f, "renew_before {}", super::human_duration(*d))
            }
        }
    }
}

/// When one certificate is due for renewal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
                reason: DueReason::Override {
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
            DueReason::Override {
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
}
