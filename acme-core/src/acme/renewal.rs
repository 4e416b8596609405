//! When a certificate is due (RFC 9773 ARI window where offered, else the
//! lifetime rule), and the per-certificate renewal record that remembers the
//! CA's back-off between runs.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Why a certificate is (or will be) due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
    /// A fraction of the lifetime is left (1/3, or 1/2 under 10 days).
    Lifetime {
        /// Denominator: 3 or 2.
        fraction: u8,
    },
    /// The inventory's `renew_before`.
    RenewBefore {
        /// Seconds before expiry.
        seconds: u64,
    },
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DueReason::NotIssued => f.write_str("not issued yet"),
            DueReason::ConfigChanged { what } => write!(f, "inventory changed: {what}"),
            DueReason::Forced => f.write_str("forced"),
            DueReason::Ari { start, end } => {
                write!(f, "CA renewal window {} – {}", start.date(), end.date())
            }
            DueReason::Lifetime { fraction } => write!(f, "1/{fraction} of the lifetime left"),
            DueReason::RenewBefore { seconds } => {
                write!(f, "renew_before = {}d", seconds / 86_400)
            }
        }
    }
}

/// A suggested renewal window from the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindow {
    /// Start.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// When a certificate valid from `not_before` to `not_after` is due, and why.
///
/// Precedence: the ARI window (at a point inside it fixed by `seed`, so runs
/// agree and a fleet of clients spreads out; at once if the window has
/// started before... that point), else `renew_before`, else the lifetime rule.
pub fn due_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ari: Option<AriWindow>,
    renew_before: Option<std::time::Duration>,
    seed: &[u8],
) -> (OffsetDateTime, DueReason) {
    if let Some(w) = ari.filter(|w| w.end >= w.start) {
        let span = (w.end - w.start).whole_seconds().max(0) as u64;
        let point = if span == 0 { 0 } else { fnv1a(seed) % span };
        return (
            w.start + Duration::seconds(point as i64),
            DueReason::Ari {
                start: w.start,
                end: w.end,
            },
        );
    }
    if let Some(before) = renew_before {
        let before = Duration::try_from(before).unwrap_or(Duration::MAX);
        return (
            not_after.checked_sub(before).unwrap_or(not_before),
            DueReason::RenewBefore {
                seconds: before.whole_seconds().max(0) as u64,
            },
        );
    }
    let lifetime = not_after - not_before;
    let fraction: u8 = if lifetime < Duration::days(10) { 2 } else { 3 };
    (
        not_after - lifetime / i32::from(fraction),
        DueReason::Lifetime { fraction },
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ninety_day_cert_is_due_with_a_third_left() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let (at, why) = due_at(nb, nb + Duration::days(90), None, None, b"x");
        assert_eq!(at, nb + Duration::days(60));
        assert_eq!(why, DueReason::Lifetime { fraction: 3 });
    }

    #[test]
    fn short_lived_cert_is_due_at_half() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let (at, why) = due_at(nb, nb + Duration::days(6), None, None, b"x");
        assert_eq!(at, nb + Duration::days(3));
        assert_eq!(why, DueReason::Lifetime { fraction: 2 });
        // Ten days exactly is not "under 10 days".
        let (_, why) = due_at(nb, nb + Duration::days(10), None, None, b"x");
        assert_eq!(why, DueReason::Lifetime { fraction: 3 });
    }

    #[test]
    fn ari_window_wins_and_point_is_inside_and_stable() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let w = AriWindow {
            start: datetime!(2026-02-01 0:00 UTC),
            end: datetime!(2026-02-03 0:00 UTC),
        };
        let (a, why) = due_at(
            nb,
            nb + Duration::days(90),
            Some(w),
            Some(std::time::Duration::from_secs(86_400)),
            b"serial-1",
        );
        let (b, _) = due_at(nb, nb + Duration::days(90), Some(w), None, b"serial-1");
        assert_eq!(a, b);
        assert!(a >= w.start && a < w.end);
        assert!(matches!(why, DueReason::Ari { .. }));
    }

    #[test]
    fn renew_before_overrides_lifetime() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let (at, _) = due_at(
            nb,
            nb + Duration::days(90),
            None,
            Some(std::time::Duration::from_secs(10 * 86_400)),
            b"x",
        );
        assert_eq!(at, nb + Duration::days(80));
    }
}
