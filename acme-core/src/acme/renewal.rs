//! When a certificate is due (RFC 9773 ARI window where offered, else the
//! lifetime rule), and the per-certificate renewal record that remembers the
//! CA's back-off between runs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// The live version in the store is damaged (see [`crate::store::Damage`]).
    StoreDamaged {
        /// The first damaged file.
        file: String,
    },
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DueReason::NotIssued => f.write_str("first issuance"),
            DueReason::ConfigChanged { what } => write!(f, "inventory changed: {what}"),
            DueReason::Forced => f.write_str("forced"),
            DueReason::Ari { start, end } => {
                write!(f, "CA renewal window {} – {}", start.date(), end.date())
            }
            DueReason::Lifetime { fraction } => write!(f, "1/{fraction} of the lifetime left"),
            DueReason::RenewBefore { seconds } => {
                write!(f, "renew_before = {}d", seconds / 86_400)
            }
            DueReason::StoreDamaged { file } => write!(f, "store file {file} is damaged"),
        }
    }
}

pub use crate::inspect::AriWindow;
use crate::inspect::{RenewalPolicy, RenewalWindow};

impl DueReason {
    /// The policy's reason, in this enum's terms.
    pub fn from_policy(r: crate::inspect::DueReason) -> Self {
        match r {
            crate::inspect::DueReason::Ari { start, end } => DueReason::Ari { start, end },
            crate::inspect::DueReason::Lifetime { fraction } => DueReason::Lifetime {
                fraction: if fraction > 0.4 { 2 } else { 3 },
            },
            crate::inspect::DueReason::Override { before } => DueReason::RenewBefore {
                seconds: before.as_secs(),
            },
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is due, why, and
/// whether it is due now (see [`RenewalWindow::compute`]: ARI window, else
/// `renew_before`, else the lifetime rule). `seed` is the ARI identifier or
/// the serial.
pub fn due_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ari: Option<AriWindow>,
    renew_before: Option<std::time::Duration>,
    seed: &[u8],
) -> (OffsetDateTime, DueReason, bool) {
    let w = RenewalWindow::compute(
        RenewalPolicy {
            ari: ari.is_some(),
            renew_before,
        },
        not_before,
        not_after,
        ari,
        seed,
    );
    let now_due = w.is_due(OffsetDateTime::now_utc());
    (w.due_at, DueReason::from_policy(w.reason), now_due)
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
    use time::Duration;

    #[test]
    fn reasons_map_from_the_policy() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let (at, why, _) = due_at(nb, nb + Duration::days(90), None, None, b"x");
        assert_eq!(at, nb + Duration::days(60));
        assert_eq!(why, DueReason::Lifetime { fraction: 3 });
        let (_, why, _) = due_at(nb, nb + Duration::days(6), None, None, b"x");
        assert_eq!(why, DueReason::Lifetime { fraction: 2 });
        let (at, why, _) = due_at(
            nb,
            nb + Duration::days(90),
            None,
            Some(std::time::Duration::from_secs(10 * 86_400)),
            b"x",
        );
        assert_eq!(at, nb + Duration::days(80));
        assert_eq!(why, DueReason::RenewBefore { seconds: 864_000 });
    }

    #[test]
    fn an_open_ari_window_is_due_now() {
        let now = OffsetDateTime::now_utc();
        let w = AriWindow {
            start: now - Duration::hours(1),
            end: now + Duration::days(2),
        };
        let (_, why, due) = due_at(
            now - Duration::days(80),
            now + Duration::days(10),
            Some(w),
            None,
            b"s",
        );
        assert!(due);
        assert!(matches!(why, DueReason::Ari { .. }));
    }
}
