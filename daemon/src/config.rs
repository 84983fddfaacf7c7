//! The configuration file: server lists, with documented defaults and flag overrides.
//!
//! Path: `--config PATH`, else `$P2PD_HOME/config.toml`, where `P2PD_HOME` defaults to
//! `$XDG_CONFIG_HOME/p2pd`, else `$HOME/.config/p2pd`. A missing file at the default path
//! means "use the defaults"; a missing file named by `--config` is an error. Keys:
//!
//! ```toml
//! stun = ["198.51.100.1:3478", "stun.example.net"]   # IP, IP:PORT, [IPv6]:PORT or HOST[:PORT]
//! names = ["198.51.100.2:5300"]                        # name servers (port 5300 by default)
//!
//! [rest]
//! token = "…"   # optional: `p2pd daemon` then requires `Authorization: Bearer …`
//! ```
//!
//! Precedence per list: `--stun` flags replace the file's list; the file's list replaces
//! the built-in defaults ([`DEFAULT_STUN`]). A node (`p2pd listen`, `p2pd connect`) also
//! reads `mqtt = ["HOST[:PORT]", …]` and `turn = ["USER:PASS@HOST:PORT", …]`, replaced
//! by `--mqtt` and `--turn` flags; they have no built-in defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use p2pd_core::addr::Broker;
use p2pd_tokio::node::TurnSpec;
use serde::Deserialize;

use crate::cli::{STUN_PORT, parse_host_port};

/// STUN servers used when neither a flag nor the config file names any. Plain Binding
/// servers: enough for routes; NAT filtering tests need RFC 5780 servers.
pub const DEFAULT_STUN: &[&str] = &["stun.cloudflare.com:3478", "stun.l.google.com:19302"];

/// The file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// STUN servers.
    #[serde(default)]
    pub stun: Option<Vec<String>>,
    /// MQTT brokers for a node's signaling, `HOST[:PORT]` (port 1883 by default).
    #[serde(default)]
    pub mqtt: Option<Vec<String>>,
    /// TURN servers for a node's relay strategy, `USER:PASS@HOST:PORT`.
    #[serde(default)]
    pub turn: Option<Vec<String>>,
    /// Name servers (`p2pd name`); there are no built-in ones.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// The REST API (`p2pd daemon`).
    #[serde(default)]
    pub rest: Option<RestConfig>,
}

/// The `[rest]` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// When set, every REST request must carry `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A node server entry (MQTT broker, TURN server) is malformed.
    #[error("{what} '{entry}' ({origin}): {problem}")]
    Entry {
        /// What kind of server.
        what: &'static str,
        /// The entry as written.
        entry: String,
        /// Where it came from.
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A server entry is neither an address nor a resolvable name.
    #[error("STUN server '{entry}' ({origin}): {problem}")]
    Server {
        /// The entry as written.
        entry: String,
        /// Where it came from.
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The default config file path, if a home directory is known.
pub fn default_path() -> Option<PathBuf> {
    Some(home_dir(None)?.join("config.toml"))
}

/// The p2pd home directory (identity key, config, state): `explicit` (`--home DIR`), else
/// `P2PD_HOME`, else `$XDG_CONFIG_HOME/p2pd`, else `$HOME/.config/p2pd`.
pub fn home_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    std::env::var_os("P2PD_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("p2pd")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/p2pd")))
}

/// The name servers to use: `flags` if any, else the file's `names` list (port 5300 by
/// default), else none (the caller says how to give one).
pub fn name_servers(
    flags: &[SocketAddr],
    config: &Config,
    file: Option<&Path>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let (Some(list), Some(path)) = (&config.names, file) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for entry in list {
        let with_port = if entry.parse::<SocketAddr>().is_ok()
            || entry.rsplit_once(':').is_some_and(|(h, p)| {
                !h.ends_with(':') && p.parse::<u16>().is_ok() && !h.contains(':')
            }) {
            entry.clone()
        } else if let Ok(ip) = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            SocketAddr::new(ip, p2pd_core::names::NAME_PORT).to_string()
        } else {
            format!("{entry}:{}", p2pd_core::names::NAME_PORT)
        };
        let addrs = resolve(&with_port).map_err(|problem| ConfigError::Server {
            entry: entry.clone(),
            origin: format!("from {}", path.display()),
            problem,
        })?;
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Loads `explicit` (which must exist) or the default path (which may be absent).
/// Returns the config and the file it came from, if any.
pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok((Config::default(), None)),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Config::default(), None));
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((config, Some(path)))
}

/// The STUN servers to use: `flags` if any, else the file's list, else the defaults.
/// Names are resolved here (blocking, once, at start-up); every address a name has is
/// kept, so both families get servers.
pub fn stun_servers(
    flags: &[SocketAddr],
    config: &Config,
    file: Option<&Path>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let (entries, origin): (Vec<String>, String) = match (&config.stun, file) {
        (Some(list), Some(path)) => (list.clone(), format!("from {}", path.display())),
        _ => (
            DEFAULT_STUN.iter().map(|s| s.to_string()).collect(),
            "built-in default".into(),
        ),
    };
    let mut out = Vec::new();
    for entry in entries {
        for a in resolve(&entry).map_err(|problem| ConfigError::Server {
            entry: entry.clone(),
            origin: origin.clone(),
            problem,
        })? {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// The MQTT brokers a node listens on: `flags` if any, else the file's `mqtt` list.
pub fn mqtt_brokers(
    flags: &[Broker],
    config: &Config,
    file: Option<&Path>,
) -> Result<Vec<Broker>, ConfigError> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let origin = file.map_or("config file".into(), |p| format!("from {}", p.display()));
    let mut out = Vec::new();
    for entry in config.mqtt.iter().flatten() {
        let b: Broker =
            entry
                .parse()
                .map_err(|e: p2pd_core::addr::BrokerError| ConfigError::Entry {
                    what: "MQTT broker",
                    entry: entry.clone(),
                    origin: origin.clone(),
                    problem: e.to_string(),
                })?;
        if !out.contains(&b) {
            out.push(b);
        }
    }
    Ok(out)
}

/// The TURN servers a node may relay through: `flags` if any, else the file's `turn` list.
pub fn turn_servers(
    flags: &[TurnSpec],
    config: &Config,
    file: Option<&Path>,
) -> Result<Vec<TurnSpec>, ConfigError> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let origin = file.map_or("config file".into(), |p| format!("from {}", p.display()));
    config
        .turn
        .iter()
        .flatten()
        .map(|entry| {
            parse_turn(entry).map_err(|problem| ConfigError::Entry {
                what: "TURN server",
                entry: entry.clone(),
                origin: origin.clone(),
                problem,
            })
        })
        .collect()
}

/// `USER:PASS@HOST:PORT` (HOST an IP, `[IPv6]`, or a name resolved now; port 3478 by
/// default). The password may contain `:` and `@`; the user may not contain `:`.
pub fn parse_turn(s: &str) -> Result<TurnSpec, String> {
    let bad = |why: &str| format!("'{s}' is not USER:PASS@HOST:PORT: {why}");
    let (creds, host) = s.rsplit_once('@').ok_or_else(|| bad("no '@'"))?;
    let (user, pass) = creds
        .split_once(':')
        .ok_or_else(|| bad("no ':' between user and password"))?;
    if user.is_empty() {
        return Err(bad("the user is empty"));
    }
    let server = resolve(host)
        .map_err(|e| bad(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| bad("the host has no address"))?;
    Ok(TurnSpec {
        server,
        username: user.to_string(),
        password: pass.to_string(),
    })
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT`, `HOST` or `HOST:PORT` (port 3478 by default).
fn resolve(entry: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = parse_host_port(entry) {
        return Ok(vec![a]);
    }
    let with_port = if entry
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        entry.to_string()
    } else {
        format!("{entry}:{STUN_PORT}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("the name has no addresses".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_replace_the_file_and_the_file_replaces_defaults() {
        let file: Config = toml::from_str(r#"stun = ["192.0.2.1", "[2001:db8::1]:9"]"#).unwrap();
        let path = Path::new("/etc/p2pd.toml");
        let from_file = stun_servers(&[], &file, Some(path)).unwrap();
        assert_eq!(
            from_file,
            [
                "192.0.2.1:3478".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:9".parse().unwrap()
            ]
        );
        let flag: SocketAddr = "192.0.2.9:1".parse().unwrap();
        assert_eq!(stun_servers(&[flag], &file, Some(path)).unwrap(), [flag]);
    }

    #[test]
    fn unknown_keys_and_bad_entries_are_named() {
        assert!(toml::from_str::<Config>("stn = []").is_err());
        let file: Config = toml::from_str(r#"stun = ["not a server!"]"#).unwrap();
        let e = stun_servers(&[], &file, Some(Path::new("/x.toml"))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'not a server!'") && msg.contains("/x.toml"),
            "{msg}"
        );
    }

    #[test]
    fn name_servers_default_to_port_5300() {
        let file: Config =
            toml::from_str(r#"names = ["192.0.2.1", "192.0.2.2:9", "[2001:db8::1]"]"#).unwrap();
        let got = name_servers(&[], &file, Some(Path::new("/c.toml"))).unwrap();
        assert_eq!(
            got,
            [
                "192.0.2.1:5300".parse::<SocketAddr>().unwrap(),
                "192.0.2.2:9".parse().unwrap(),
                "[2001:db8::1]:5300".parse().unwrap()
            ]
        );
        assert!(
            name_servers(&[], &Config::default(), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn node_servers_from_the_file_and_flags() {
        let file: Config = toml::from_str(
            r#"mqtt = ["192.0.2.5", "broker.example:1884"]
turn = ["alice:pa:ss@192.0.2.6:3479"]"#,
        )
        .unwrap();
        let b = mqtt_brokers(&[], &file, None).unwrap();
        assert_eq!(b[0], Broker::Ip("192.0.2.5:1883".parse().unwrap()));
        assert_eq!(b[1].to_string(), "broker.example:1884");
        let t = turn_servers(&[], &file, None).unwrap();
        assert_eq!(t[0].username, "alice");
        assert_eq!(t[0].password, "pa:ss");
        assert_eq!(t[0].server, "192.0.2.6:3479".parse().unwrap());
        let flag = Broker::Ip("192.0.2.9:1".parse().unwrap());
        assert_eq!(
            mqtt_brokers(std::slice::from_ref(&flag), &file, None).unwrap(),
            [flag]
        );
        let bad: Config = toml::from_str(r#"turn = ["nopassword@192.0.2.1"]"#).unwrap();
        let e = turn_servers(&[], &bad, Some(Path::new("/c.toml"))).unwrap_err();
        assert!(e.to_string().contains("USER:PASS@HOST:PORT"), "{e}");
        assert!(parse_turn("u:p@[2001:db8::1]:9").is_ok());
        assert!(parse_turn("u:p@[2001:db8::1]").is_ok());
        assert!(parse_turn(":p@192.0.2.1").is_err());
    }

    #[test]
    fn localhost_resolves_with_the_default_port() {
        let a = resolve("localhost").unwrap();
        assert!(
            a.iter()
                .all(|a| a.port() == STUN_PORT && a.ip().is_loopback()),
            "{a:?}"
        );
    }
}
