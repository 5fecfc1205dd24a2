//! REQ clients: raw bytes, JSON, and signed requests to the edge.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pb_protocol::{Audience, Envelope, NodeId, NodeKey, Request, Response};
use zeromq::{ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::NetError;
use crate::secure::{ClientHandshake, SecureError, Session};

/// A REQ connection to one endpoint that survives failures: any error or
/// timeout drops the socket and the next request connects afresh. An
/// [encrypted](Connection::encrypted) connection runs a Noise handshake
/// on every new socket and seals every request.
pub struct Connection {
    endpoint: String,
    timeout: Duration,
    socket: Option<ReqSocket>,
    secure: Option<(Arc<NodeKey>, NodeId)>,
    session: Option<Session>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.socket.is_some())
            .field("encrypted", &self.secure.is_some())
            .finish()
    }
}

impl Connection {
    /// A connection (made lazily) with a per-request timeout.
    pub fn new(endpoint: impl Into<String>, timeout: Duration) -> Connection {
        Connection {
            endpoint: endpoint.into(),
            timeout,
            socket: None,
            secure: None,
            session: None,
        }
    }

    /// Makes the connection encrypted and authenticated: every new socket
    /// first runs a Noise handshake as `key` with the server whose node id
    /// is pinned as `server` (its transport key derives from it), and
    /// every message is sealed. A server with another key fails the
    /// handshake.
    ///
    /// An open socket is kept: the next request runs a fresh handshake as
    /// `key` over it (the server replaces the socket's session), so one
    /// connection can carry several identities one after the other.
    pub fn encrypted(mut self, key: impl Into<Arc<NodeKey>>, server: NodeId) -> Connection {
        self.secure = Some((key.into(), server));
        self.session = None;
        self
    }

    /// Opens the encrypted session now if there is none (connecting
    /// first), instead of with the next request; a no-op on a plain
    /// connection. Lets a caller time a request without its handshake.
    pub async fn handshake(&mut self) -> Result<(), NetError> {
        let result = tokio::time::timeout(self.timeout, self.ensure_session()).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.socket = None;
                self.session = None;
                Err(e)
            }
            Err(_) => {
                self.socket = None;
                self.session = None;
                Err(NetError::Timeout {
                    endpoint: self.endpoint.clone(),
                    millis: self.timeout.as_millis(),
                })
            }
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Checks at once that something accepts TCP connections at the
    /// endpoint, so that a command line tool reports a refused connection
    /// as refused instead of waiting for its timeout (ZeroMQ retries
    /// connecting silently). Only `tcp://host:port` endpoints are probed.
    pub async fn probe(&self) -> Result<(), NetError> {
        let Some(address) = self.endpoint.strip_prefix("tcp://") else {
            return Ok(());
        };
        let refused = |reason: String| NetError::Connect {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let wait = self.timeout.min(Duration::from_secs(5));
        match tokio::time::timeout(wait, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(refused(
                "connection refused: nothing listens there (is the server running, and is the \
                 address right?)"
                    .into(),
            )),
            Ok(Err(e)) => Err(refused(e.to_string())),
            // Slow to answer is not refused: let the request's own timeout decide.
            Err(_) => Ok(()),
        }
    }

    /// Sends `payload` and waits for the answer's payload.
    pub async fn request(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let result = tokio::time::timeout(self.timeout, self.exchange(payload)).await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.socket = None;
                self.session = None;
                Err(e)
            }
            Err(_) => {
                self.socket = None;
                self.session = None;
                Err(NetError::Timeout {
                    endpoint: self.endpoint.clone(),
                    millis: self.timeout.as_millis(),
                })
            }
        }
    }

    async fn ensure_session(&mut self) -> Result<(), NetError> {
        let secure_error = |endpoint: &str, source: SecureError| NetError::Secure {
            endpoint: endpoint.to_string(),
            source,
        };
        if let Some((key, server)) = &self.secure {
            if self.session.is_none() || self.socket.is_none() {
                let (handshake, hello) = ClientHandshake::start(key, server)
                    .map_err(|e| secure_error(&self.endpoint, e))?;
                let answer = self.round_trip(hello).await?;
                let session = handshake
                    .finish(&answer)
                    .map_err(|e| secure_error(&self.endpoint, e))?;
                self.session = Some(session);
            }
        }
        Ok(())
    }

    async fn exchange(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let secure_error = |endpoint: &str, source: SecureError| NetError::Secure {
            endpoint: endpoint.to_string(),
            source,
        };
        self.ensure_session().await?;
        let wire = match self.session.as_mut() {
            Some(session) => session
                .seal(&payload)
                .map_err(|e| secure_error(&self.endpoint, e))?,
            None => payload,
        };
        let answer = self.round_trip(wire).await?;
        match self.session.as_mut() {
            Some(session) => session
                .open(&answer)
                .map_err(|e| secure_error(&self.endpoint, e)),
            None => Ok(answer),
        }
    }

    async fn round_trip(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let transport = |e: zeromq::ZmqError| NetError::Transport {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        };
        if self.socket.is_none() {
            let mut options = SocketOptions::default();
            options.connect_timeout(self.timeout);
            let mut socket = ReqSocket::with_options(options);
            socket
                .connect(&self.endpoint)
                .await
                .map_err(|e| NetError::Connect {
                    endpoint: self.endpoint.clone(),
                    reason: e.to_string(),
                })?;
            self.socket = Some(socket);
        }
        let Some(socket) = self.socket.as_mut() else {
            return Err(NetError::Connect {
                endpoint: self.endpoint.clone(),
                reason: "no socket".into(),
            });
        };
        socket
            .send(ZmqMessage::from(payload))
            .await
            .map_err(transport)?;
        let answer = socket.recv().await.map_err(transport)?;
        Ok(answer
            .into_vec()
            .pop()
            .map(|b| b.to_vec())
            .unwrap_or_default())
    }

    /// Sends a JSON value and parses the JSON answer.
    pub async fn json(
        &mut self,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, NetError> {
        let bytes = serde_json::to_vec(request).map_err(|e| NetError::Json {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let answer = self.request(bytes).await?;
        serde_json::from_slice(&answer).map_err(|e| NetError::Json {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })
    }
}

/// A counter for signed requests: nanoseconds since the Unix epoch, and
/// always above `last`, so it grows across restarts without being stored.
pub fn now_counter(last: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now.max(last.saturating_add(1))
}

/// A request and its answer, with the bytes that travelled.
#[derive(Debug)]
pub struct Exchange {
    /// The edge's response.
    pub response: Response,
    /// Bytes sent (the sealed request).
    pub sent: usize,
    /// Bytes received (the sealed response).
    pub received: usize,
}

/// Signed requests to the edge.
pub struct EdgeClient {
    connection: Connection,
    key: Arc<NodeKey>,
    to: Audience,
    counter: u64,
}

impl std::fmt::Debug for EdgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeClient")
            .field("connection", &self.connection)
            .field("node", &self.key.id())
            .field("edge", &self.to.edge)
            .field("community", &self.to.community)
            .finish()
    }
}

impl EdgeClient {
    /// A client signing with `key` requests for `to` (the edge's identity
    /// and the community, both signed); only responses signed by that edge
    /// and bound to the request they answer are accepted.
    ///
    /// The connection is made [encrypted](Connection::encrypted) towards
    /// `to.edge`, authenticated by `key`.
    pub fn new(connection: Connection, key: impl Into<Arc<NodeKey>>, to: Audience) -> EdgeClient {
        let key = key.into();
        EdgeClient {
            connection: connection.encrypted(key.clone(), to.edge),
            key,
            to,
            counter: 0,
        }
    }

    /// The edge endpoint.
    pub fn endpoint(&self) -> &str {
        self.connection.endpoint()
    }

    /// Opens the encrypted session now (see [`Connection::handshake`]).
    pub async fn handshake(&mut self) -> Result<(), NetError> {
        self.connection.handshake().await
    }

    /// The connection back, socket kept: [`EdgeClient::new`] with another
    /// key runs a new handshake over it (a pool of connections shared by
    /// many identities, as the load bench uses).
    pub fn into_connection(self) -> Connection {
        self.connection
    }

    /// The node id this client signs as.
    pub fn node_id(&self) -> NodeId {
        self.key.id()
    }

    /// Signs and sends `request`; checks the response's signer, that it
    /// answers this very request (signed hash of the request frame) and
    /// its counter.
    pub async fn call(&mut self, request: &Request) -> Result<Exchange, NetError> {
        self.counter = now_counter(self.counter);
        let counter = self.counter;
        let frame = Envelope::seal_request(&self.key, counter, &self.to, request);
        let sent = frame.len();
        let answer = self.connection.request(frame.clone()).await?;
        let received = answer.len();
        let endpoint = || self.connection.endpoint().to_string();
        let (signer, echoed, response) =
            Envelope::open_response(&answer, &frame).map_err(|source| NetError::Protocol {
                endpoint: endpoint(),
                source,
            })?;
        if signer != self.to.edge {
            return Err(NetError::Untrusted {
                endpoint: endpoint(),
                reason: "signed by another identity than the configured edge",
            });
        }
        if echoed != counter {
            return Err(NetError::Untrusted {
                endpoint: endpoint(),
                reason: "answers another request",
            });
        }
        Ok(Exchange {
            response,
            sent,
            received,
        })
    }
}
