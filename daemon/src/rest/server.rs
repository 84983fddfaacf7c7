//! Accepting HTTP connections: a bounded number at once, each one request, every step
//! bounded in time, every failure answered with a JSON error.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::State;
use super::errors::{ApiError, ErrorKind};
use super::http::{self, ReadError, Request, Response};
use super::routes::{self, Outcome};
use super::security;
use super::table::PipeGuard;

/// Most HTTP connections handled at once (pipes are bounded by the connection table and
/// do not count once relaying).
pub const MAX_HTTP_CONNS: usize = 128;
/// Most connections being refused at once with `too_many_connections`; beyond that
/// they are closed without an answer.
const MAX_REFUSING: usize = 16;
/// The longest a handler may run (its own waits are shorter: open 60 s, recv 60 s).
const HANDLER_MAX: Duration = Duration::from_secs(90);

/// Serves every listener until the task is dropped.
pub async fn serve(listeners: Vec<TcpListener>, state: Arc<State>) {
    let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(
            l,
            state.clone(),
            permits.clone(),
            refusing.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("accepting a REST connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let state = state.clone();
                tokio::spawn(async move {
                    tracing::trace!(%peer, "connection");
                    connection(stream, state, permit).await;
                });
            }
            Err(_) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    let limits = state.limits;
                    tokio::spawn(async move {
                        let e = ApiError::new(
                            ErrorKind::TooManyConnections,
                            format!(
                                "{MAX_HTTP_CONNS} HTTP connections are open, the most this daemon serves: retry shortly"
                            ),
                        );
                        respond(stream, &Response::error(&e), &limits).await;
                        drop(permit);
                    });
                } else {
                    tracing::debug!(%peer, "too many connections: closed without an answer");
                }
            }
        }
    }
}

async fn respond(mut stream: TcpStream, resp: &Response, limits: &http::Limits) {
    if http::write(&mut stream, &resp.to_bytes(), limits).await {
        http::finish(stream).await;
    }
}

/// What to do after the request was processed.
enum Step {
    Respond(Response),
    Pipe(PipeGuard, Vec<(&'static str, String)>),
    Gone,
}

async fn connection(mut stream: TcpStream, state: Arc<State>, permit: OwnedSemaphorePermit) {
    let limits = state.limits;
    let mut req = match http::read_head(&mut stream, &limits).await {
        Ok(r) => r,
        Err(ReadError::Gone) => return,
        Err(ReadError::Bad(e)) => {
            tracing::debug!("bad request: {e}");
            respond(stream, &Response::error(&e), &limits).await;
            return;
        }
    };
    match process(&mut stream, &mut req, &state).await {
        Step::Respond(resp) => {
            tracing::debug!(method = %req.method, path = %req.path, status = resp.status, "request");
            respond(stream, &resp, &limits).await;
        }
        Step::Pipe(guard, cors) => {
            tracing::debug!(name = %guard.conn.name, "pipe starts");
            if !http::write(
                &mut stream,
                &super::relay::pipe_head(&guard.conn.name, &cors),
                &limits,
            )
            .await
            {
                return;
            }
            // A relay is bounded by the connection table, not by the HTTP limit.
            drop(permit);
            let early = std::mem::take(&mut req.after_head);
            super::relay::relay(stream, early, guard).await;
        }
        Step::Gone => {}
    }
}

async fn process(stream: &mut TcpStream, req: &mut Request, state: &Arc<State>) -> Step {
    let origin = match security::check_origin(req) {
        Ok(o) => o,
        Err(e) => return Step::Respond(Response::error(&e)),
    };
    let mut cors: Vec<(&'static str, String)> = Vec::new();
    if let Some(o) = origin {
        cors.push(("Access-Control-Allow-Origin", o));
        cors.push(("Vary", "Origin".into()));
    }
    let with_cors = |mut r: Response, cors: &[(&'static str, String)]| {
        r.headers.extend_from_slice(cors);
        Step::Respond(r)
    };
    if req.method == "OPTIONS" {
        // CORS pre-flight from a page on this machine (others were refused above).
        let mut r = Response {
            status: 204,
            content_type: "text/plain",
            body: Vec::new(),
            headers: vec![
                ("Access-Control-Allow-Methods", "GET, POST".into()),
                (
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type".into(),
                ),
                ("Access-Control-Max-Age", "600".into()),
            ],
        };
        r.headers.extend_from_slice(&cors);
        return Step::Respond(r);
    }
    match run(stream, req, state).await {
        Ok(Outcome::Response(r)) => with_cors(r, &cors),
        Ok(Outcome::Pipe(guard)) => Step::Pipe(guard, cors),
        Err(Failure::Api(e)) => {
            let mut r = Response::error(&e);
            if e.kind == ErrorKind::MethodNotAllowed {
                r.headers
                    .push(("Allow", routes::allowed(&req.path).join(", ")));
            }
            with_cors(r, &cors)
        }
        Err(Failure::Gone) => Step::Gone,
    }
}

enum Failure {
    Api(ApiError),
    Gone,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

async fn run(
    stream: &mut TcpStream,
    req: &mut Request,
    state: &Arc<State>,
) -> Result<Outcome, Failure> {
    security::check_token_header(req, &state.security)?;
    let m = routes::find(&req.method, &req.path)?;
    let query = routes::parse_query(m.route, &req.query)?;
    let body = if m.route.method == "POST" {
        let len = req.content_length()?;
        if len > state.limits.body_max {
            return Err(ApiError::new(
                ErrorKind::BodyTooLarge,
                format!(
                    "the body has {len} bytes; the most one request may carry is {}: send it in parts",
                    state.limits.body_max
                ),
            )
            .into());
        }
        match http::read_body(stream, req, len, &state.limits).await {
            Ok(b) => b,
            Err(ReadError::Gone) => return Err(Failure::Gone),
            Err(ReadError::Bad(e)) => return Err(e.into()),
        }
    } else {
        Vec::new()
    };
    match tokio::time::timeout(HANDLER_MAX, routes::handle(&m, &query, body, state)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!("the request took longer than {} s", HANDLER_MAX.as_secs()),
        )
        .into()),
    }
}
