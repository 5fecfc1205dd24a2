//! The core's Prometheus metrics, fed from the household API loop: each
//! request by kind (`submit`, `get_bill`, `status`) and outcome (refusals
//! by the API's error code), submissions accepted, bills handed out, the
//! store's size and the process's memory. Counts only: the household's
//! values and ids never appear.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pb_metrics::{Daemon, Exporter, Metrics, Outcome};

use crate::CoreError;

/// The API's request kinds (the JSON object's key).
const KINDS: [&str; 3] = ["submit", "get_bill", "status"];

/// The API's error codes (see [`crate::api::ApiError::code`]).
const CODES: [&str; 6] = [
    "bad_request",
    "unknown_cycle",
    "not_member",
    "conflict",
    "edge_unavailable",
    "internal",
];

/// The first key of a JSON object, if the bytes are one.
fn key(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.as_object()?.keys().next().cloned()
}

/// The kind of a household request, or `unknown`.
pub fn request_kind(request: &[u8]) -> &'static str {
    key(request)
        .and_then(|k| KINDS.iter().find(|&&n| n == k).copied())
        .unwrap_or("unknown")
}

/// How the core's answer ended, and whether it carried a bill.
pub fn outcome(answer: &[u8]) -> (Outcome, bool) {
    let v: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let Some(obj) = v.as_ref().and_then(|v| v.as_object()) else {
        return (Outcome::Refused("internal"), false);
    };
    match obj.get("error") {
        Some(e) => {
            let code = e
                .get("code")
                .and_then(|c| c.as_str())
                .and_then(|c| CODES.iter().find(|&&n| n == c).copied())
                .unwrap_or("internal");
            (Outcome::Refused(code), false)
        }
        None => (Outcome::Ok, obj.contains_key("bill")),
    }
}

/// The core's metrics and their HTTP endpoint.
pub struct CoreMetrics {
    metrics: Arc<Metrics>,
    exporter: Exporter,
}

impl std::fmt::Debug for CoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreMetrics")
            .field("addr", &self.exporter.local_addr())
            .finish()
    }
}

impl CoreMetrics {
    /// Serves the metrics of the core whose store is in `data_dir` on
    /// `addr`.
    pub fn start(addr: &str, data_dir: &Path) -> Result<CoreMetrics, CoreError> {
        let metrics = Arc::new(Metrics::new(Daemon::Core, Some(data_dir.join("core.redb"))));
        let exporter = Exporter::start(addr, metrics.clone())?;
        Ok(CoreMetrics { metrics, exporter })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.exporter.local_addr()
    }

    /// Counts one household request and its answer.
    pub fn request(&self, request: &[u8], oversized: bool, answer: &[u8]) {
        let kind = if oversized {
            "unknown"
        } else {
            request_kind(request)
        };
        let (outcome, bill) = outcome(answer);
        self.metrics.request(kind, outcome);
        if kind == "submit" && outcome == Outcome::Ok {
            self.metrics.submission();
        }
        if bill {
            self.metrics.bills(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_outcomes_come_from_the_documented_json() {
        assert_eq!(request_kind(br#"{"submit": {"cycle_id": 1}}"#), "submit");
        assert_eq!(
            request_kind(br#"{"get_bill": {"cycle_id": 1}}"#),
            "get_bill"
        );
        assert_eq!(request_kind(br#"{"status": {}}"#), "status");
        assert_eq!(request_kind(br#"{"alice": {}}"#), "unknown");
        assert_eq!(request_kind(b"not json"), "unknown");
        let e = serde_json::to_vec(&crate::api::ApiResponse::error("conflict", "x")).unwrap();
        assert_eq!(outcome(&e), (Outcome::Refused("conflict"), false));
        let e = serde_json::to_vec(&crate::api::ApiResponse::error("made_up", "x")).unwrap();
        assert_eq!(outcome(&e), (Outcome::Refused("internal"), false));
        let b = serde_json::to_vec(&crate::api::ApiResponse::Bill(crate::api::BillReply {
            cycle_id: 1,
            bill: "1".into(),
            reward: "0".into(),
            total: "1".into(),
        }))
        .unwrap();
        assert_eq!(outcome(&b), (Outcome::Ok, true));
        assert_eq!(outcome(b"{}"), (Outcome::Ok, false));
        assert_eq!(outcome(b"["), (Outcome::Refused("internal"), false));
    }
}
