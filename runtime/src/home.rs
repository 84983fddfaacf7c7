//! The node's identity key on disk: `<home>/identity.key`, created on first use with
//! permissions 0600 (owner read/write only) and refused if others can read it.
//!
//! The home directory itself is chosen by the application (the daemon: `--home DIR`,
//! else `P2PD_HOME`, else the platform's config directory; see `daemon/src/config.rs`),
//! so several nodes can run on one machine with different homes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use p2pd_core::identity::{Identity, SECRET_LEN};
use p2pd_core::rng::Rng;

/// The key file's name inside the home directory.
pub const KEY_FILE: &str = "identity.key";
const HEADER: &str = "p2pd-ed25519-v1 ";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Reading, creating or writing failed.
    #[error("identity key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a p2pd key.
    #[error(
        "identity key {path} is not a p2pd key file (expected '{HEADER}<64 hex digits>'): restore it from a backup or delete it to make a new identity"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read the file.
    #[error(
        "identity key {path} can be read by other users (mode {mode:o}): run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Loads `<home>/identity.key`, or creates `home` and a fresh key (from `rng`) if there is none.
pub fn load_or_create_identity(home: &Path, rng: &mut Rng) -> Result<Identity, HomeError> {
    let path = home.join(KEY_FILE);
    let io_err = |source| HomeError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            parse(&text).ok_or(HomeError::Malformed { path })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(home).map_err(io_err)?;
            let id = Identity::generate(rng);
            let hex: String = id.secret().iter().map(|b| format!("{b:02x}")).collect();
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path).map_err(io_err)?;
            f.write_all(format!("{HEADER}{hex}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err)?;
            Ok(id)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn parse(text: &str) -> Option<Identity> {
    let hex = text.trim().strip_prefix(HEADER)?;
    if hex.len() != SECRET_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut seed = [0u8; SECRET_LEN];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Identity::from_secret(seed))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), HomeError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| HomeError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(HomeError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), HomeError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_reloaded() {
        let home = std::env::temp_dir().join(format!("p2pd-home-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        let mut rng = Rng::seed_from_u64(1);
        let a = load_or_create_identity(&home.join("node"), &mut rng).unwrap();
        let b = load_or_create_identity(&home.join("node"), &mut rng).unwrap();
        assert_eq!(a.public(), b.public());
        let other = load_or_create_identity(&home.join("other"), &mut rng).unwrap();
        assert_ne!(other.public(), a.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = home.join("node").join(KEY_FILE);
            assert_eq!(
                fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
            fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_identity(&home.join("node"), &mut rng).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
            fs::write(&key, "garbage").unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(
                load_or_create_identity(&home.join("node"), &mut rng),
                Err(HomeError::Malformed { .. })
            ));
        }
        let _ = fs::remove_dir_all(&home);
    }
}
