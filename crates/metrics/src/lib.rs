//! Prometheus metrics of the edge and core daemons.
//!
//! [`Metrics`] holds the registry (`prometheus-client`) with every metric a
//! daemon exports; [`Exporter`] serves it over HTTP (`tiny_http`) at
//! `GET /metrics` in the OpenMetrics text format, which Prometheus scrapes.
//!
//! Names follow Prometheus conventions: the `pbill_` prefix, base units
//! (seconds, bytes) in the name, `_total` on counters. Label values are
//! `&'static str` from fixed tables (request kinds, refusal reasons,
//! backend names), so a member id, node id or cycle number can never become
//! a label: the series count is bounded and no household is singled out.
//!
//! | metric | type | labels | daemon |
//! | --- | --- | --- | --- |
//! | `pbill_requests_total` | counter | `kind`, `outcome` (`ok`, `refused`) | both |
//! | `pbill_refusals_total` | counter | `reason` | both |
//! | `pbill_submissions_total` | counter | | both |
//! | `pbill_bills_total` | counter | | both |
//! | `pbill_cycles_billed_total` | counter | | edge |
//! | `pbill_billing_duration_seconds` | histogram | `backend` | edge |
//! | `pbill_billing_households_per_second` | gauge | `backend` | edge |
//! | `pbill_members` | gauge | | edge |
//! | `pbill_open_cycles` | gauge | | edge |
//! | `pbill_store_size_bytes` | gauge | | both |
//! | `pbill_process_resident_memory_bytes` | gauge | | both |

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;

/// Why the metrics endpoint cannot start.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The configured address is not `IP:PORT`.
    #[error("metrics: {addr:?} is not an address of the form IP:PORT (e.g. 127.0.0.1:9464)")]
    Address {
        /// The address as configured.
        addr: String,
    },
    /// The address could not be bound (in use, not local, no permission).
    #[error("metrics: cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        reason: String,
    },
    /// The server thread could not be started.
    #[error("metrics: cannot start the server thread: {0}")]
    Thread(String),
}

/// Which daemon exports: the edge has billing metrics a core has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// The edge (billing authority).
    Edge,
    /// A household's core.
    Core,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a result.
    Ok,
    /// Refused for this reason (an error code's name).
    Refused(&'static str),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 5.8 hours.
    Histogram::new(exponential_buckets(0.01, 4.0, 11))
}

/// Every metric of a daemon and the registry that exports them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    submissions: Counter,
    bills: Counter,
    cycles_billed: Counter,
    billing_duration: Family<BackendLabels, Histogram, fn() -> Histogram>,
    households_per_second: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    members: Gauge,
    open_cycles: Gauge,
    store_size: Gauge,
    resident_memory: Gauge,
    store_file: Option<PathBuf>,
}

impl Metrics {
    /// The metrics of `daemon`; `store_file` is its store, measured at
    /// each scrape.
    pub fn new(daemon: Daemon, store_file: Option<PathBuf>) -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            refusals: Family::default(),
            submissions: Counter::default(),
            bills: Counter::default(),
            cycles_billed: Counter::default(),
            billing_duration: Family::new_with_constructor(duration_histogram),
            households_per_second: Family::default(),
            members: Gauge::default(),
            open_cycles: Gauge::default(),
            store_size: Gauge::default(),
            resident_memory: Gauge::default(),
            store_file,
        };
        let mut registry = Registry::default();
        let (submissions, bills) = match daemon {
            Daemon::Edge => (
                "Hidden submissions accepted from cores",
                "Hidden bills computed",
            ),
            Daemon::Core => (
                "Household submissions accepted by this core",
                "Bills handed to the household",
            ),
        };
        registry.register(
            "pbill_requests",
            "Requests by kind and outcome",
            m.requests.clone(),
        );
        registry.register(
            "pbill_refusals",
            "Refused requests by reason",
            m.refusals.clone(),
        );
        registry.register("pbill_submissions", submissions, m.submissions.clone());
        registry.register("pbill_bills", bills, m.bills.clone());
        if daemon == Daemon::Edge {
            registry.register(
                "pbill_cycles_billed",
                "Cycles billed by this process",
                m.cycles_billed.clone(),
            );
            registry.register_with_unit(
                "pbill_billing_duration",
                "Time to compute a cycle's bills, by compute backend",
                Unit::Seconds,
                m.billing_duration.clone(),
            );
            registry.register(
                "pbill_billing_households_per_second",
                "Households billed per second in the last billed cycle, by compute backend",
                m.households_per_second.clone(),
            );
            registry.register(
                "pbill_members",
                "Members that have joined the community",
                m.members.clone(),
            );
            registry.register(
                "pbill_open_cycles",
                "Cycles with a context that are not billed yet",
                m.open_cycles.clone(),
            );
        }
        registry.register_with_unit(
            "pbill_store_size",
            "Size of the daemon's store on disk",
            Unit::Bytes,
            m.store_size.clone(),
        );
        registry.register_with_unit(
            "pbill_process_resident_memory",
            "Resident memory of the process (VmRSS)",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one request of `kind` and how it ended.
    pub fn request(&self, kind: &'static str, outcome: Outcome) {
        let label = match outcome {
            Outcome::Ok => "ok",
            Outcome::Refused(reason) => {
                self.refusals.get_or_create(&RefusalLabels { reason }).inc();
                "refused"
            }
        };
        self.requests
            .get_or_create(&RequestLabels {
                kind,
                outcome: label,
            })
            .inc();
    }

    /// Counts one accepted submission.
    pub fn submission(&self) {
        self.submissions.inc();
    }

    /// Counts `n` bills.
    pub fn bills(&self, n: u64) {
        self.bills.inc_by(n);
    }

    /// Records a billed cycle: `households` bills computed in `took` by
    /// `backend`.
    pub fn cycle_billed(&self, backend: &'static str, took: Duration, households: u64) {
        let labels = BackendLabels { backend };
        self.cycles_billed.inc();
        self.bills(households);
        let secs = took.as_secs_f64();
        self.billing_duration.get_or_create(&labels).observe(secs);
        if secs > 0.0 {
            self.households_per_second
                .get_or_create(&labels)
                .set(households as f64 / secs);
        }
    }

    /// Sets the number of joined members.
    pub fn set_members(&self, n: usize) {
        self.members.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the number of open (unbilled) cycles.
    pub fn set_open_cycles(&self, n: usize) {
        self.open_cycles.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The exposition (OpenMetrics text), with the store size and the
    /// process memory measured now.
    pub fn encode(&self) -> String {
        if let Some(size) = self
            .store_file
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
        {
            self.store_size
                .set(i64::try_from(size.len()).unwrap_or(i64::MAX));
        }
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory
                .set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's resident memory from `/proc/self/status` (Linux), if
/// readable.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

/// The OpenMetrics content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP endpoint serving [`Metrics`] at `/metrics`; stops when dropped.
pub struct Exporter {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Binds `addr` (`IP:PORT`; port 0 picks one) and serves `metrics` on
    /// a thread of its own. Fails, with nothing left running, when the
    /// address is malformed or cannot be bound.
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<Exporter, MetricsError> {
        let wanted: SocketAddr = addr.trim().parse().map_err(|_| MetricsError::Address {
            addr: addr.to_string(),
        })?;
        let server = tiny_http::Server::http(wanted).map_err(|e| MetricsError::Bind {
            addr: wanted,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(wanted);
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    respond(request, &metrics);
                }
            })
            .map_err(|e| MetricsError::Thread(e.to_string()))?;
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
        Ok(Exporter {
            addr: bound,
            server,
            thread: Some(thread),
        })
    }

    /// The bound address (port resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(request: tiny_http::Request, metrics: &Metrics) {
    use tiny_http::{Method, Response};
    let path = request.url().split('?').next().unwrap_or("");
    let get = matches!(request.method(), Method::Get | Method::Head);
    let response = match (get, path) {
        (true, "/metrics") => {
            let mut r = Response::from_string(metrics.encode());
            if let Some(h) = header("Content-Type", CONTENT_TYPE) {
                r.add_header(h);
            }
            r
        }
        (true, _) => {
            Response::from_string("not found: metrics are at /metrics\n").with_status_code(404)
        }
        (false, _) => {
            let mut r =
                Response::from_string("method not allowed: use GET\n").with_status_code(405);
            if let Some(h) = header("Allow", "GET, HEAD") {
                r.add_header(h);
            }
            r
        }
    };
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "metrics scrape: cannot answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(addr: SocketAddr, path: &str) -> (u16, String) {
        match ureq::get(&format!("http://{addr}{path}")).call() {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
            Err(ureq::Error::StatusCode(code)) => (code, String::new()),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_units_and_labels_follow_prometheus_conventions() {
        let m = Metrics::new(Daemon::Edge, None);
        m.request("Submit", Outcome::Ok);
        m.request("Submit", Outcome::Refused("AlreadyDone"));
        m.submission();
        m.cycle_billed("cpu", Duration::from_millis(500), 10);
        m.set_members(10);
        let text = m.encode();
        for want in [
            "pbill_requests_total{kind=\"Submit\",outcome=\"ok\"} 1",
            "pbill_requests_total{kind=\"Submit\",outcome=\"refused\"} 1",
            "pbill_refusals_total{reason=\"AlreadyDone\"} 1",
            "pbill_submissions_total 1",
            "pbill_bills_total 10",
            "pbill_cycles_billed_total 1",
            "pbill_billing_duration_seconds_count{backend=\"cpu\"} 1",
            "pbill_billing_households_per_second{backend=\"cpu\"} 20.0",
            "pbill_members 10",
            "# TYPE pbill_store_size_bytes gauge",
            "# TYPE pbill_process_resident_memory_bytes gauge",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        // A core exports no billing metrics.
        let core = Metrics::new(Daemon::Core, None).encode();
        assert!(!core.contains("pbill_billing_duration"), "{core}");
        assert!(core.contains("pbill_submissions_total 0"), "{core}");
    }

    /// Every sample name an edge exports once each metric has a value.
    fn exported_names() -> std::collections::BTreeSet<String> {
        let m = Metrics::new(Daemon::Edge, Some(PathBuf::from("/")));
        m.request("Submit", Outcome::Refused("Replay"));
        m.submission();
        m.cycle_billed("cpu", Duration::from_secs(1), 3);
        m.encode()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/pbill-community.json"
        );
        let dashboard = std::fs::read_to_string(path).unwrap();
        let exported = exported_names();
        let mut used = std::collections::BTreeSet::new();
        for (i, _) in dashboard.match_indices("pbill_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
        assert!(used.len() >= 10, "{used:?}");
        for name in &used {
            assert!(
                exported.contains(name),
                "the dashboard uses {name}, which is not exported: {exported:?}"
            );
        }
        // And every exported metric is on the dashboard.
        for name in &exported {
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum");
            assert!(
                used.iter().any(|u| u.starts_with(family)),
                "{name} is not on the dashboard"
            );
        }
    }

    #[test]
    fn store_size_and_memory_are_measured_at_scrape() {
        let dir = std::env::temp_dir().join(format!("pb-metrics-{}", std::process::id()));
        std::fs::write(&dir, vec![0u8; 12345]).unwrap();
        let m = Metrics::new(Daemon::Core, Some(dir.clone()));
        let text = m.encode();
        let _ = std::fs::remove_file(&dir);
        assert!(text.contains("pbill_store_size_bytes 12345"), "{text}");
        let rss = resident_memory_bytes().unwrap();
        assert!(rss > 1 << 20, "{rss}");
        assert_eq!(
            parse_vm_rss("Name: x\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: 12 MB\n"), None);
        assert_eq!(parse_vm_rss(""), None);
    }

    #[test]
    fn the_exporter_serves_metrics_over_http_and_stops_when_dropped() {
        let m = Arc::new(Metrics::new(Daemon::Edge, None));
        let exporter = Exporter::start("127.0.0.1:0", m.clone()).unwrap();
        let addr = exporter.local_addr();
        assert_ne!(addr.port(), 0);
        let (status, before) = scrape(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(!before.contains("kind=\"GetBill\""), "{before}");
        m.request("GetBill", Outcome::Ok);
        let (_, after) = scrape(addr, "/metrics");
        assert!(
            after.contains("pbill_requests_total{kind=\"GetBill\",outcome=\"ok\"} 1"),
            "{after}"
        );
        assert_eq!(scrape(addr, "/other").0, 404);
        let post = ureq::post(&format!("http://{addr}/metrics")).send("x");
        assert!(
            matches!(post, Err(ureq::Error::StatusCode(405))),
            "{post:?}"
        );
        drop(exporter);
        assert!(ureq::get(&format!("http://{addr}/metrics")).call().is_err());
    }

    #[test]
    fn bad_and_busy_addresses_are_clear_errors() {
        let m = Arc::new(Metrics::new(Daemon::Edge, None));
        for bad in [
            "",
            "localhost",
            "127.0.0.1",
            "http://127.0.0.1:9464",
            "1.2.3.4:99999",
        ] {
            let e = Exporter::start(bad, m.clone()).unwrap_err();
            assert!(matches!(e, MetricsError::Address { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("IP:PORT"), "{e}");
        }
        let first = Exporter::start("127.0.0.1:0", m.clone()).unwrap();
        let busy = first.local_addr().to_string();
        let e = Exporter::start(&busy, m).unwrap_err();
        assert!(matches!(e, MetricsError::Bind { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains(&busy) && text.contains("in use"), "{text}");
    }
}
