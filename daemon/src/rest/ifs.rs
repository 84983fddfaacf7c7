//! `GET /ifs`: the interfaces, their routes and the NAT per interface and family, found
//! once in the background when the daemon starts (route discovery asks STUN servers and
//! NAT classification takes seconds, too slow to do per request).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p2pd_core::nat::ClassifierConfig;
use p2pd_tokio::Tokio;
use p2pd_tokio::interfaces::{self, InterfaceFilter};
use p2pd_tokio::routes::{RouteConfig, discover};

use crate::ifs_cmd::InterfaceReport;

enum IfsState {
    Discovering { since: Instant },
    Done { json: serde_json::Value },
    Failed { why: String },
    Off,
}

/// The discovery result, shared by the daemon's requests.
#[derive(Clone)]
pub struct IfsCache {
    servers: Arc<Mutex<Vec<SocketAddr>>>,
    state: Arc<Mutex<IfsState>>,
}

impl IfsCache {
    /// A cache that will not discover anything (`--no-discovery`).
    pub fn off() -> Self {
        IfsCache {
            servers: Arc::default(),
            state: Arc::new(Mutex::new(IfsState::Off)),
        }
    }

    /// Starts discovery in the background: `servers` (run on a blocking thread, as it
    /// may resolve names) gives the STUN servers; the NAT per interface and family is
    /// classified too.
    pub fn discover(
        servers: impl FnOnce() -> Result<Vec<SocketAddr>, String> + Send + 'static,
    ) -> Self {
        let cache = IfsCache {
            servers: Arc::default(),
            state: Arc::new(Mutex::new(IfsState::Discovering {
                since: Instant::now(),
            })),
        };
        let (state, shown) = (cache.state.clone(), cache.servers.clone());
        tokio::spawn(async move {
            let result = match tokio::task::spawn_blocking(servers).await {
                Ok(Ok(list)) => {
                    *shown.lock().unwrap_or_else(|p| p.into_inner()) = list.clone();
                    run(list).await
                }
                Ok(Err(why)) => Err(why),
                Err(e) => Err(format!("resolving the STUN servers failed: {e}")),
            };
            let done = match result {
                Ok(json) => IfsState::Done { json },
                Err(why) => {
                    tracing::warn!("interface discovery failed: {why}");
                    IfsState::Failed { why }
                }
            };
            *state.lock().unwrap_or_else(|p| p.into_inner()) = done;
            tracing::info!("interface discovery finished");
        });
        cache
    }

    /// The response body.
    pub fn json(&self) -> serde_json::Value {
        let servers: Vec<String> = self
            .servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(ToString::to_string)
            .collect();
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            IfsState::Discovering { since } => serde_json::json!({
                "error": 0,
                "state": "discovering",
                "servers": servers,
                "elapsed_s": since.elapsed().as_secs(),
                "interfaces": [],
            }),
            IfsState::Done { json } => serde_json::json!({
                "error": 0,
                "state": "done",
                "servers": servers,
                "interfaces": json,
            }),
            IfsState::Failed { why } => serde_json::json!({
                "error": 0,
                "state": "failed",
                "servers": servers,
                "why": why,
                "interfaces": [],
            }),
            IfsState::Off => serde_json::json!({
                "error": 0,
                "state": "off",
                "servers": servers,
                "why": "the daemon was started with --no-discovery",
                "interfaces": [],
            }),
        }
    }
}

async fn run(servers: Vec<SocketAddr>) -> Result<serde_json::Value, String> {
    let all = interfaces::list().map_err(|e| format!("cannot list interfaces: {e}"))?;
    let chosen = interfaces::select(all, &InterfaceFilter::default()).map_err(|e| e.to_string())?;
    let config = RouteConfig {
        classify: Some(ClassifierConfig::default()),
        ..RouteConfig::new(servers)
    };
    let mut rng = p2pd_tokio::rng::os_rng().map_err(|e| e.to_string())?;
    let found = discover(&Tokio, chosen, &config, &mut rng).await;
    let reports: Vec<InterfaceReport> = found.into_iter().map(InterfaceReport::new).collect();
    serde_json::to_value(reports).map_err(|e| e.to_string())
}
