//! The network: the edge and core servers on their own threads inside the
//! Python process, and the two clients (household JSON API, signed
//! operator protocol).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pb_net::{Connection, EdgeClient};
use pb_protocol::{NodeId, NodeKey, Request, Response};
use pb_shared_billing::CpuBackend;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::convert::{package_error, value_error};
use crate::objects::CycleContext;

enum Running {
    Edge(pb_edge::Running),
    Core(pb_core::Running),
}

struct Live {
    runtime: Runtime,
    running: Running,
}

/// A server started by `launch_edge` or `launch_core`; `stop()` (or
/// leaving a `with` block) stops it and waits for its threads.
#[pyclass(module = "private_billing", frozen)]
pub struct ServerHandle {
    kind: &'static str,
    endpoint: String,
    node_id: Option<String>,
    stop: Arc<AtomicBool>,
    live: Mutex<Option<Live>>,
}

fn runtime(workers: usize) -> PyResult<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| value_error(format!("cannot start the runtime: {e}")))
}

#[pymethods]
impl ServerHandle {
    /// The bound endpoint (`tcp://host:port`, port resolved).
    #[getter]
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// `"edge"` or `"core"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// The edge's node id (64 hex digits); `None` for a core.
    #[getter]
    fn node_id(&self) -> Option<String> {
        self.node_id.clone()
    }

    /// Whether the server is still running.
    #[getter]
    fn running(&self) -> bool {
        self.live.lock().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Stops the server and waits for its threads; a second call does
    /// nothing.
    fn stop(&self, py: Python<'_>) {
        self.stop.store(true, Ordering::Relaxed);
        let live = self.live.lock().ok().and_then(|mut l| l.take());
        if let Some(live) = live {
            py.detach(move || {
                match live.running {
                    Running::Edge(r) => {
                        r.join();
                    }
                    Running::Core(r) => r.join(),
                }
                live.runtime.shutdown_timeout(Duration::from_secs(5));
            });
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "ServerHandle(kind='{}', endpoint='{}')",
            self.kind, self.endpoint
        )
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts an edge (configuration file as for `pbill-edge --config`) on its
/// own threads, with the CPU backend.
#[pyfunction]
#[pyo3(signature = (config_path, *, listen = None))]
pub fn launch_edge(
    py: Python<'_>,
    config_path: PathBuf,
    listen: Option<String>,
) -> PyResult<ServerHandle> {
    let mut config = pb_edge::EdgeConfig::load(&config_path).map_err(value_error)?;
    if let Some(l) = listen {
        config.listen = l;
    }
    let rt = runtime(2)?;
    let stop = Arc::new(AtomicBool::new(false));
    let running = py
        .detach(|| {
            pb_edge::spawn(
                rt.handle(),
                &config,
                Box::new(CpuBackend::new()),
                stop.clone(),
            )
        })
        .map_err(|e| value_error(format!("edge: {e}")))?;
    Ok(ServerHandle {
        kind: "edge",
        endpoint: running.endpoint.clone(),
        node_id: Some(running.node.to_hex()),
        stop,
        live: Mutex::new(Some(Live {
            runtime: rt,
            running: Running::Edge(running),
        })),
    })
}

/// Starts a household's core (configuration file as for `pbill-core
/// --config`) on its own threads.
#[pyfunction]
#[pyo3(signature = (config_path, *, listen = None))]
pub fn launch_core(
    py: Python<'_>,
    config_path: PathBuf,
    listen: Option<String>,
) -> PyResult<ServerHandle> {
    let mut config = pb_core::CoreConfig::load(&config_path).map_err(value_error)?;
    if let Some(l) = listen {
        config.listen = l;
    }
    let rt = runtime(1)?;
    let stop = Arc::new(AtomicBool::new(false));
    let running = py
        .detach(|| pb_core::spawn(rt.handle(), &config, stop.clone()))
        .map_err(|e| value_error(format!("core: {e}")))?;
    Ok(ServerHandle {
        kind: "core",
        endpoint: running.endpoint.clone(),
        node_id: None,
        stop,
        live: Mutex::new(Some(Live {
            runtime: rt,
            running: Running::Core(running),
        })),
    })
}

/// Writes a new node key to `path` (refusing to overwrite a file) and
/// returns its node id (64 hex digits), as `pbill keygen` does.
#[pyfunction]
pub fn keygen(path: PathBuf) -> PyResult<String> {
    let key = NodeKey::generate(&mut rand_core::OsRng);
    key.write_new(&path).map_err(value_error)?;
    Ok(key.id().to_hex())
}

fn client_runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// One JSON request to a core's household API; returns the JSON answer.
#[pyfunction]
pub fn core_request(
    py: Python<'_>,
    address: String,
    request: String,
    timeout: f64,
) -> PyResult<String> {
    let timeout = timeout_of(timeout)?;
    let answer = py.detach(move || -> Result<Vec<u8>, String> {
        let rt = client_runtime()?;
        let mut conn = Connection::new(address, timeout);
        rt.block_on(conn.probe()).map_err(|e| e.to_string())?;
        rt.block_on(conn.request(request.into_bytes()))
            .map_err(|e| e.to_string())
    });
    let answer = answer.map_err(|e| package_error(py, "NetworkError", e))?;
    String::from_utf8(answer)
        .map_err(|_| package_error(py, "NetworkError", "the core answered non-UTF-8".into()))
}

fn timeout_of(seconds: f64) -> PyResult<Duration> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(value_error(format!(
            "timeout must be between 0 and 3600 seconds, not {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Sends a cycle context to the edge, signed with the operator's key.
#[pyfunction]
#[pyo3(signature = (address, context, key_path, edge_id, community, timeout))]
pub fn put_context(
    py: Python<'_>,
    address: String,
    context: &Bound<'_, CycleContext>,
    key_path: PathBuf,
    edge_id: String,
    community: String,
    timeout: f64,
) -> PyResult<()> {
    let timeout = timeout_of(timeout)?;
    let key = NodeKey::read_file(&key_path).map_err(value_error)?;
    let edge = NodeId::from_hex(&edge_id)
        .ok_or_else(|| value_error("edge_id: not a node id (64 hex digits)"))?;
    if community.trim().is_empty() {
        return Err(value_error("community: must not be empty"));
    }
    // Requests are signed for one edge and one community (docs/design.md
    // section 7): a frame sent elsewhere is refused there.
    let edge_id = pb_protocol::Audience {
        edge,
        community: pb_units::CommunityId(community),
    };
    let ctx = context.get().inner.clone();
    let response = py.detach(move || -> Result<Response, String> {
        let rt = client_runtime()?;
        let connection = Connection::new(address, timeout);
        rt.block_on(connection.probe()).map_err(|e| e.to_string())?;
        let mut client = EdgeClient::new(connection, key, edge_id);
        rt.block_on(client.call(&Request::PutContext(ctx)))
            .map(|x| x.response)
            .map_err(|e| e.to_string())
    });
    match response.map_err(|e| package_error(py, "NetworkError", e))? {
        Response::Ok => Ok(()),
        Response::Error { code, message } => Err(package_error(
            py,
            "RefusedError",
            format!("the edge refused ({code:?}): {message}"),
        )),
        other => Err(package_error(
            py,
            "NetworkError",
            format!("unexpected answer from the edge: {other:?}"),
        )),
    }
}

/// Signs a member list (`members`: member id to its core's node id) with
/// the operator's key and posts it to the edge, page by page; returns the
/// list's fingerprint as households see it.
#[pyfunction]
#[pyo3(signature = (address, members, version, key_path, edge_id, community, timeout))]
#[allow(clippy::too_many_arguments)]
pub fn put_roster(
    py: Python<'_>,
    address: String,
    members: Vec<(String, String)>,
    version: u64,
    key_path: PathBuf,
    edge_id: String,
    community: String,
    timeout: f64,
) -> PyResult<String> {
    let timeout = timeout_of(timeout)?;
    let key = std::sync::Arc::new(NodeKey::read_file(&key_path).map_err(value_error)?);
    let edge = NodeId::from_hex(&edge_id)
        .ok_or_else(|| value_error("edge_id: not a node id (64 hex digits)"))?;
    if community.trim().is_empty() {
        return Err(value_error("community: must not be empty"));
    }
    let mut entries = Vec::with_capacity(members.len());
    for (member, node) in members {
        let id = pb_units::MemberId::new(member.clone()).map_err(value_error)?;
        let node = NodeId::from_hex(&node)
            .ok_or_else(|| value_error(format!("{member}: not a node id (64 hex digits)")))?;
        entries.push(pb_secagg::RosterEntry {
            member: id,
            identity: node.0,
        });
    }
    let roster = pb_secagg::Roster::new(community.clone(), version, entries)
        .map_err(|e| value_error(format!("member list: {e}")))?;
    let signed = pb_secagg::SignedRoster::sign(roster, key.signing_key());
    let fingerprint = pb_secagg::roster::show_fingerprint(&signed.roster.fingerprint());
    let to = pb_protocol::Audience {
        edge,
        community: pb_units::CommunityId(community),
    };
    let answer = py.detach(move || -> Result<Option<String>, String> {
        let rt = client_runtime()?;
        let connection = Connection::new(address, timeout);
        rt.block_on(connection.probe()).map_err(|e| e.to_string())?;
        let mut client = EdgeClient::new(connection, key, to);
        for page in pb_protocol::RosterPage::split(&signed) {
            match rt
                .block_on(client.call(&Request::PutRoster(page)))
                .map_err(|e| e.to_string())?
                .response
            {
                Response::Ok => {}
                Response::Error { code, message } => {
                    return Ok(Some(format!("the edge refused ({code:?}): {message}")));
                }
                other => return Err(format!("unexpected answer from the edge: {other:?}")),
            }
        }
        Ok(None)
    });
    match answer.map_err(|e| package_error(py, "NetworkError", e))? {
        None => Ok(fingerprint),
        Some(refused) => Err(package_error(py, "RefusedError", refused)),
    }
}

/// A `Bill` from the household API's exact decimal strings.
#[pyfunction(name = "_bill_from_api")]
pub fn bill_from_api(cycle_id: u64, bill: &str, reward: &str) -> PyResult<crate::objects::Bill> {
    crate::objects::bill_from_strings(cycle_id, bill, reward)
}
